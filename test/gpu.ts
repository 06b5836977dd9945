// One Dawn device per test file, created on first use: GPU suites call sharedDevice() in
// their tests and releaseSharedDevice() in afterAll; runOnGpu runs a plan there.
import { requestNodeDevice, type NodeGPU, type TensorData } from '../runtime/index';
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
export async function runOnGpu(bundle: Uint8Array, feeds: Record<string, TensorData>): Promise<Record<string, Float32Array>> {
  const session = await loadPlan(bundle, (await sharedDevice()).device);
  try {
    return (await session.run(feeds)) as Record<string, Float32Array>;
  } finally {
    session.destroy();
  }
}
