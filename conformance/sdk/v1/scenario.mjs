// One scenario against MXC's SDK 1.x, driven by conformance/tests/sdk.rs: `node scenario.mjs
// NAME [REQUEST_JSON]`. Prints one JSON line: {"ok": ...} or {"error": {code, message}}.
// The library and lxc-exec are whatever MXC_FFI_DIR and MXC_BIN_DIR point at.
import {
  getAvailableBackends,
  getPlatformSupport,
  getTelemetryConsentStatus,
  probe,
  provisionContainer,
  requestTelemetryConsent,
  run,
  runInContainer,
  spawn,
  spawnInContainerWithPty,
  spawnWithPty,
  startContainer,
  stopContainer,
  validateProvision,
  withdrawTelemetryConsent,
} from '@microsoft/mxc-sdk/v1';

const [name, requestJson] = process.argv.slice(2);
const request = requestJson ? JSON.parse(requestJson) : undefined;

function until(stream, text) {
  return new Promise((resolve) => {
    let seen = '';
    const onData = (chunk) => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        stream.off('data', onData);
        resolve(seen);
      }
    };
    stream.on('data', onData);
  });
}

function collect(stream) {
  const out = { text: '' };
  stream?.on('data', (chunk) => {
    out.text += chunk.toString();
  });
  return out;
}

// The calls that only Windows backends serve: each one's outcome, {ok} or {error: {code}}.
async function windowsOnly() {
  const network = { egress: { default: 'allow' }, ingress: { default: 'allow', hostLoopback: 'allow' } };
  const calls = {
    provisionIsolationSession: () => provisionContainer({ containment: 'isolation_session', network }),
    provisionWslc: () => provisionContainer({ containment: 'wslc', image: 'alpine' }),
    validateProvision: () => validateProvision({ containment: 'isolation_session', network }),
    startContainer: () => startContainer('iso:0123456789abcdef0123456789abcdef'),
    stopContainer: () => stopContainer('wslc:0123456789abcdef'),
    runInContainer: () => runInContainer('wslc:0123456789abcdef', { command: 'true' }),
    spawnInContainerWithPty: () => spawnInContainerWithPty('iso:0123456789abcdef', { command: 'true' }),
    probe: () => probe({ command: 'true' }),
    getTelemetryConsentStatus: () => getTelemetryConsentStatus(),
    withdrawTelemetryConsent: () => withdrawTelemetryConsent(),
    requestTelemetryConsent: () => requestTelemetryConsent(() => 1),
  };
  const outcomes = {};
  for (const [name, call] of Object.entries(calls)) {
    try {
      outcomes[name] = { ok: await call() };
    } catch (error) {
      outcomes[name] = { error: { code: error.code ?? null } };
    }
  }
  return outcomes;
}

const scenarios = {
  windowsOnly,
  run: () => run(request),
  backends: () => getAvailableBackends(),
  platform: () => getPlatformSupport(),
  // Output arrives while the command still runs: it waits for input that is only sent once
  // its first line was read.
  stream: async () => {
    const child = await spawn(request);
    try {
      const stdout = collect(child.standardOutput);
      const stderr = collect(child.standardError);
      await until(child.standardOutput, 'ready');
      const runningAfterFirstLine = child.exitCode === undefined || child.exitCode === null;
      child.standardInput.end('go\n');
      const result = await child.wait();
      return { result, pid: child.id, runningAfterFirstLine, stdout: stdout.text, stderr: stderr.text };
    } finally {
      child.dispose();
    }
  },
  kill: async () => {
    const child = await spawn(request);
    try {
      const stdout = collect(child.standardOutput);
      await until(child.standardOutput, 'started');
      child.kill();
      const result = await child.wait();
      return { result, pid: child.id, stdout: stdout.text };
    } finally {
      child.dispose();
    }
  },
  // Holds a running sandbox and says so; the test then kills this Node process outright.
  hold: async () => {
    const child = await spawn(request);
    await until(child.standardOutput, 'started');
    console.log(JSON.stringify({ holding: child.id }));
    await new Promise(() => {});
  },
  wait: async () => {
    const child = await spawn(request);
    try {
      const stdout = collect(child.standardOutput);
      const result = await child.wait();
      return { result, stdout: stdout.text };
    } finally {
      child.dispose();
    }
  },
  pty: async () => {
    const terminal = await spawnWithPty(request, { size: { rows: 30, columns: 100 } });
    try {
      const output = collect(terminal.output);
      await until(terminal.output, 'size=');
      terminal.resize({ rows: 40, columns: 120 });
      terminal.input.write('go\r');
      const result = await terminal.wait();
      return { result, output: output.text };
    } finally {
      terminal.dispose();
    }
  },
};

try {
  const value = await scenarios[name]();
  console.log(JSON.stringify({ ok: value }));
} catch (error) {
  console.log(JSON.stringify({ error: { code: error.code, message: error.message } }));
}
