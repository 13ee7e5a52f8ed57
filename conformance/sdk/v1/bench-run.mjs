// SDK run() of `true` through two libmxc_ffi.so builds, interleaved in one process so that
// both see the same machine: `node bench-run.mjs OURS_DIR MXC_DIR RUNS`. The SDK loads the
// library from MXC_FFI_DIR on every call. Prints medians and the ratio as JSON.
import { run } from '@microsoft/mxc-sdk/v1';

const [ours, mxc, runsText] = process.argv.slice(2);
const runs = Number(runsText ?? '20');
const warmup = 3;
const libraries = { ours, mxc };
const times = { ours: [], mxc: [] };

for (let i = 0; i < warmup + runs; i += 1) {
  const order = i % 2 === 0 ? ['ours', 'mxc'] : ['mxc', 'ours'];
  for (const name of order) {
    process.env.MXC_FFI_DIR = libraries[name];
    const start = performance.now();
    const result = await run({ command: 'true' });
    const elapsed = performance.now() - start;
    if (result.exitCode !== 0) {
      throw new Error(`${name}: run() of true exited ${result.exitCode}: ${result.stderr}`);
    }
    if (i >= warmup) times[name].push(elapsed);
  }
}

const median = (list) => {
  const sorted = [...list].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const result = {
  runs,
  oursMs: Number(median(times.ours).toFixed(2)),
  mxcMs: Number(median(times.mxc).toFixed(2)),
};
result.ratio = Number((result.oursMs / result.mxcMs).toFixed(2));
console.log(JSON.stringify(result));
