// One Dawn device per test file, created on first use: GPU suites call sharedDevice() in
// their tests and releaseSharedDevice() in afterAll.
import { requestNodeDevice, type NodeGPU } from '../runtime/index';

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
