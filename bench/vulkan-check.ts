// Runs a compiled plan on whatever device the Node host picks (Vulkan on a GPU machine)
// and compares with expected outputs computed by the CPU reference at build time.
//   node .device/vulkan-check.mjs plan.mnplan expected.json
import { readFileSync } from 'node:fs';
import { loadPlan, requestNodeDevice } from '../runtime/index';

const [planPath, expectedPath] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedPath, 'utf8')) as { inputs: Record<string, number[]>; outputs: Record<string, number[]> };
const gpu = await requestNodeDevice();
console.log(`backend ${gpu.backend}: ${gpu.adapter.info.vendor} ${gpu.adapter.info.architecture} ${gpu.adapter.info.description}`);
const session = await loadPlan(new Uint8Array(readFileSync(planPath)), gpu.device);
const feeds = Object.fromEntries(Object.entries(expected.inputs).map(([k, v]) => [k, Float32Array.from(v)]));
const out = await session.run(feeds);
let worst = 0;
for (const [name, want] of Object.entries(expected.outputs)) {
  const diff = Math.max(...want.map((v, i) => Math.abs(v - out[name][i])));
  worst = Math.max(worst, diff);
  console.log(`${name}: ${want.length} values, max |gpu - cpu| = ${diff.toExponential(2)}`);
}
session.destroy();
await gpu.destroy();
console.log(worst < 1e-3 ? 'OK' : 'MISMATCH');
