// One scenario against MXC's SDK 0.8.0, whose one-shot path runs the executor (`lxc-exec`,
// found through MXC_BIN_DIR) per sandbox: `node scenario.mjs NAME SCRIPT POLICY_JSON`.
// Prints one JSON line: {"ok": ...} or {"error": {code, message}}.
import { spawnSandboxAsync, spawnSandboxFromConfig, createConfigFromPolicy } from '@microsoft/mxc-sdk';

const [name, script, policyJson] = process.argv.slice(2);
const policy = JSON.parse(policyJson);

const scenarios = {
  // The PTY path (node-pty): merged output, MXC's envelope turned into an MxcError.
  pty: () => spawnSandboxAsync(script, policy),
  // The pipe path: the executor's stdout, stderr and exit status as they are.
  pipes: () =>
    new Promise((resolve, reject) => {
      const config = createConfigFromPolicy(policy);
      config.process.commandLine = script;
      const child = spawnSandboxFromConfig(config, { usePty: false });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.stdin.end();
      child.on('error', reject);
      child.on('close', (exitCode) => resolve({ stdout, stderr, exitCode }));
    }),
};

try {
  const value = await scenarios[name]();
  console.log(JSON.stringify({ ok: value }));
} catch (error) {
  console.log(JSON.stringify({ error: { code: error.code, message: error.message } }));
}
