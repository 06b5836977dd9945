// Child process of runaway.test.ts: loads a plan file on a fresh device and runs it once,
// printing one JSON line ({ ok } or { kind, message }). Run in a child so that a plan which
// hangs the GPU ends in the parent's timeout instead of hanging the suite.
import { readFileSync } from 'node:fs';
import { isPlanError, loadPlan, requestNodeDevice } from '../runtime/index';

const [file] = process.argv.slice(2);
const gpu = await requestNodeDevice();
try {
  const session = await loadPlan(new Uint8Array(readFileSync(file)), gpu.device);
  const inputs = Object.fromEntries(session.inputs.map((t) => [t.name, new Float32Array(t.shape.reduce((n, d) => n * d, 1))]));
  await session.run(inputs);
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  console.log(JSON.stringify(isPlanError(error) ? { kind: error.kind, message: error.message } : { internal: String(error) }));
} finally {
  await gpu.destroy();
}
