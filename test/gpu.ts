// One Dawn device per test file, created on first use: GPU suites call sharedDevice() in
// their tests and releaseSharedDevice() in afterAll; runOnGpu and expectClose run a plan
// there and compare its outputs with a reference.
import { expect } from 'vitest';
import { requestNodeDevice, type NodeGPU } from '../runtime/index';
import { loadPlan } from '../runtime/session';

let shared: Promise<NodeGPU> | undefined;

export function sharedDevice(): Promise<NodeGPU> {
  shared ??= requestNodeDevice();
  return shared;
}

export async function releaseSharedDevice(): Promise<void> {
  const gpu = shared;
  shared = undefined;
  // A device that never came up has nothing to release (the test that asked saw the error).
  await (await gpu?.catch(() => undefined))?.destroy();
}

/** The plan's `run` outputs for `feeds`, on the shared device. */
export async function runOnGpu(bundle: Uint8Array, feeds: Record<string, Float32Array>): Promise<Record<string, Float32Array>> {
  const session = await loadPlan(bundle, (await sharedDevice()).device);
  try {
    return (await session.run(feeds)) as Record<string, Float32Array>;
  } finally {
    session.destroy();
  }
}

/** Fails at the first element where |actual - expected| > atol + rtol·|expected|. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol = 0): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= atol + rtol * Math.abs(expected[i]))) expect.fail(`element ${i}: gpu ${actual[i]} vs cpu ${expected[i]} (atol ${atol}, rtol ${rtol})`);
  }
}
