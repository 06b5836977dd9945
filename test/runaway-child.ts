// Child process of runaway.test.ts: loads a plan file on a fresh device and runs it once (with
// a deadline when given one), printing one JSON line: { ok }, or the PlanError's kind and
// message, the kind a second run then fails with, and whether a third plan file then runs on
// a new device. Run in a child so that a plan which hangs the GPU ends in the parent's timeout
// instead of hanging the suite, and so that a crash at exit shows in the exit status.
import { readFileSync } from 'node:fs';
import { isPlanError, loadPlan, requestNodeDevice, type Session } from '../runtime/index';

const [file, timeoutMs, after] = process.argv.slice(2);
const gpu = await requestNodeDevice();
const failure = async (run: () => Promise<unknown>) => {
  try {
    await run();
    return undefined;
  } catch (error) {
    return isPlanError(error) ? { kind: error.kind, message: error.message } : { kind: 'internal', message: String(error) };
  }
};
try {
  let session: Session | undefined;
  const run = () => {
    const inputs = Object.fromEntries(session!.inputs.map((t) => [t.name, new Float32Array(t.shape.reduce((n, d) => n * d, 1))]));
    return timeoutMs ? session!.run(inputs, { timeoutMs: Number(timeoutMs) }) : session!.run(inputs);
  };
  const first = await failure(async () => {
    session = await loadPlan(new Uint8Array(readFileSync(file)), gpu.device);
    await run();
  });
  const again = first && session ? await failure(run) : undefined;
  const fresh = after ? await failure(() => runOnNewDevice(after)) : undefined;
  console.log(JSON.stringify(first ? { ...first, again: again?.kind, ...(after ? { after: fresh?.kind ?? 'ok' } : {}) } : { ok: true }));
} finally {
  await gpu.destroy();
}

async function runOnNewDevice(plan: string): Promise<void> {
  const next = await requestNodeDevice();
  try {
    const session = await loadPlan(new Uint8Array(readFileSync(plan)), next.device);
    await session.run(Object.fromEntries(session.inputs.map((t) => [t.name, new Float32Array(t.shape.reduce((n, d) => n * d, 1))])));
    session.destroy();
  } finally {
    await next.destroy();
  }
}
