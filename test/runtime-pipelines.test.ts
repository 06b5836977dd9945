// loadPlan does not wait for the compute pipelines, and a run waits only for the pipelines of
// its next dispatches: on a Dawn device (llvmpipe) whose createComputePipelineAsync answers are
// held back by the test and released late and out of order, the load finishes with none
// built, the first dispatches are submitted while later pipelines are still missing, and the
// outputs equal the hand plan's values computed here (test/hand-plan.ts).
import { afterAll, describe, expect, it } from 'vitest';
import { openPlan } from '../runtime/session';
import { handPlan, expected, N, C } from './hand-plan';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

/** What the instrumented device saw, in order: pipelines asked for and released, submits (with the number of pipelines released by then). */
type Event = { kind: 'asked' | 'released'; kernel: string } | { kind: 'submit'; released: number };

/**
 * The shared Dawn device, with each createComputePipelineAsync answer held until release(name),
 * and every queue.submit recorded. Everything else goes to the real device.
 */
function heldPipelines(device: GPUDevice) {
  const events: Event[] = [];
  const held = new Map<string, () => void>();
  let released = 0;
  const queue = new Proxy(device.queue, {
    get(target, prop) {
      if (prop === 'submit') {
        return (buffers: GPUCommandBuffer[]) => {
          events.push({ kind: 'submit', released });
          target.submit(buffers);
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const proxy = new Proxy(device, {
    get(target, prop) {
      if (prop === 'queue') return queue;
      if (prop === 'createComputePipelineAsync') {
        return async (descriptor: GPUComputePipelineDescriptor) => {
          const kernel = descriptor.label!.split('/').pop()!;
          events.push({ kind: 'asked', kernel });
          const pipeline = await target.createComputePipelineAsync(descriptor);
          await new Promise<void>((resolve) => held.set(kernel, resolve));
          released++;
          events.push({ kind: 'released', kernel });
          return pipeline;
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  /** Lets kernel `name`'s pipeline through, once it has been built and is held. */
  const release = async (name: string) => {
    await until(() => held.has(name), `the pipeline of "${name}" to be built`);
    held.get(name)!();
    await until(() => events.some((e) => e.kind === 'released' && e.kernel === name), `"${name}" to be released`);
  };
  return { device: proxy, events, release };
}

/** Polls `condition` (Dawn's callbacks need the event loop) for up to 20 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const input = (seed: number) => Float32Array.from({ length: N }, (_, i) => Math.cos(i * 0.29 + seed) * 2);
const submits = (events: Event[]) => events.filter((e): e is Extract<Event, { kind: 'submit' }> => e.kind === 'submit');

function expectOutputs(out: Record<string, Float32Array>, a: Float32Array, c = C) {
  const want = expected(a);
  // expected() uses the plan's c; a rewritten c changes y = t*t - c[i % 4] and s = sum(y)
  const y = want.y.map((v, i) => Math.fround(v + C[i % 4] - c[i % 4]));
  const s = y.reduce((sum, v) => Math.fround(sum + v), 0);
  for (let i = 0; i < N; i++) {
    expect(Math.abs(out.t[i] - want.t[i]), `t[${i}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want.t[i])));
    expect(Math.abs(out.y[i] - y[i]), `y[${i}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(y[i])));
  }
  expect(Math.abs(out.s[0] - s)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(s)));
}

describe('the first run dispatches while later pipelines are still being built', () => {
  it('submits the first dispatch before the other pipelines exist, and computes the right values', async () => {
    const { device, events, release } = heldPipelines((await sharedDevice()).device);
    // the load finishes with no pipeline released (it would wait forever if it needed them)
    const session = await openPlan(handPlan(), device);
    expect(events.flatMap((e) => (e.kind === 'asked' ? [e.kernel] : []))).toEqual(['scale_add', 'square_offset', 'sum']); // first-use order
    expect(events.some((e) => e.kind === 'released')).toBe(false);
    const a = input(1);
    const first = session.run({ a });
    await release('scale_add');
    // the run submits t = a*2 + b now, with square_offset and sum still missing
    await until(() => submits(events).length > 0, 'the first submit');
    expect(submits(events)[0].released).toBe(1);
    // a write while the run waits between its chunks lands after the run, not inside it
    const c2 = Float32Array.of(1, 2, 3, 4);
    session.writeBuffer(2, new Uint8Array(c2.buffer));
    // out of order: sum before square_offset, which the next dispatch needs
    await release('sum');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(submits(events).length).toBe(1);
    await release('square_offset');
    expectOutputs(await first, a);
    expect(submits(events).length).toBe(2);
    await session.ready;
    // every pipeline exists: one submit per run, and the write above is in effect
    const b = input(2);
    expectOutputs(await session.run({ a: b }), b, c2);
    expect(submits(events).length).toBe(3);
    session.destroy();
  });

  it('computes the right values when the pipelines arrive in reverse order of use', async () => {
    const { device, events, release } = heldPipelines((await sharedDevice()).device);
    const session = await openPlan(handPlan(), device);
    const a = input(3);
    const runs = [session.run({ a }), session.run({ a: input(4) })];
    await release('sum');
    await release('square_offset');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(submits(events)).toEqual([]);
    await release('scale_add');
    const [first, second] = await Promise.all(runs);
    expectOutputs(first, a);
    expectOutputs(second, input(4));
    session.destroy();
  });

  // last: a deadline that did count the compiling would destroy the shared device
  it("starts a run's deadline once the pipelines exist", async () => {
    const { device, release } = heldPipelines((await sharedDevice()).device);
    const session = await openPlan(handPlan(), device);
    const a = input(5);
    const run = session.run({ a }, { timeoutMs: 1000 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const name of ['sum', 'square_offset', 'scale_add']) await release(name);
    expectOutputs(await run, a);
    session.destroy();
  });
});
