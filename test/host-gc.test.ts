// The Node host under garbage collection: dawn.node frees its instance when V8 collects the
// object create() returned, killing the process mid-ProcessEvents unless requestNodeDevice
// keeps it alive. Here everything but the session is dropped and gc() runs between submits.
import { describe, expect, it } from 'vitest';
import { loadPlan, requestNodeDevice, type Session } from '../runtime/index';
import { N, expected, handPlan } from './hand-plan';

const gc = (globalThis as { gc?: () => void }).gc;

async function collect(): Promise<void> {
  if (!gc) throw new Error('globalThis.gc is missing: this suite needs node --expose-gc (see vitest.config.ts)');
  gc();
  // let finalizers and Dawn's event pump run before the next submit
  await new Promise((resolve) => setTimeout(resolve, 1));
  gc();
}

/** A session and the means to destroy its device; the NodeGPU, adapter and bundle are unreachable afterwards. */
async function sessionOnly(): Promise<{ session: Session; release: () => Promise<void> }> {
  const gpu = await requestNodeDevice();
  const session = await loadPlan(handPlan(), gpu.device);
  return { session, release: gpu.destroy };
}

describe('requestNodeDevice under garbage collection', () => {
  it('runs with --expose-gc (vitest.config.ts passes it to forked workers)', () => {
    expect(typeof gc, 'globalThis.gc is missing: run vitest with pool "forks" and execArgv ["--expose-gc"]').toBe('function');
  });

  it('keeps Dawn alive across 50 runs with gc() between submits', async () => {
    let { session, release } = await sessionOnly();
    await collect();
    for (let round = 0; round < 50; round++) {
      const a = Float32Array.from({ length: N }, (_, i) => ((i * 13 + round) % 17) - 8);
      const out = await session.run({ a });
      const want = expected(a);
      expect(out.y).toEqual(want.y); // small integers: exact in f32
      await collect();
    }
    session.destroy();
    await release();
    // after destroy the instance may go; collecting it must not crash the process either
    session = undefined as unknown as Session;
    release = undefined as unknown as () => Promise<void>;
    for (let i = 0; i < 5; i++) await collect();
  });

  it('survives devices created, destroyed and collected in turn', async () => {
    for (let round = 0; round < 4; round++) {
      const { session, release } = await sessionOnly();
      const a = new Float32Array(N).fill(round);
      expect((await session.run({ a })).t).toEqual(expected(a).t);
      await collect();
      session.destroy();
      await release();
      await collect();
    }
  });
});

// What a long-lived process keeps: found by the GPU soak (bench/soak.ts), where 100,000 runs
// grew the collected heap by 5 MiB and each load-run-destroy cycle kept 24 KiB
describe('a session keeps nothing per run, and a destroyed one is collected', () => {
  it('lets a destroyed session be garbage-collected while its device lives on', async () => {
    const gpu = await requestNodeDevice();
    const make = async () => {
      const session = await loadPlan(handPlan(), gpu.device);
      await session.run({ a: new Float32Array(N).fill(1) });
      session.destroy();
      return new WeakRef(session);
    };
    const refs = [await make(), await make(), await make()];
    await collect();
    await collect();
    // the device's lost promise held every session ever loaded on it, buffers and all
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true, true]);
    await gpu.destroy();
  });

  it('holds the collected heap flat over 3,000 runs of one session', async () => {
    const gpu = await requestNodeDevice();
    const session = await loadPlan(handPlan(), gpu.device);
    const a = new Float32Array(N).fill(2);
    const heapAfter = async (runs: number) => {
      for (let i = 0; i < runs; i++) await session.run({ a });
      await collect();
      await collect();
      return process.memoryUsage().heapUsed;
    };
    // code, inline caches and the host's own pools settle over the first few thousand runs
    // (+118 KB, then +22, +10, +10 KB per 3,000 runs on llvmpipe)
    const before = await heapAfter(3000);
    const after = await heapAfter(3000);
    // a chain of Promise.all arrays kept 64 bytes per run (192 KB here); what is left is noise
    expect(after - before).toBeLessThan(64 * 1024);
    session.destroy();
    await gpu.destroy();
  });
});
