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
