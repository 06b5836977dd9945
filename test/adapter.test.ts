// session.adapter (issue 22): software adapters are named as such, by the flag or by the
// names SwiftShader, llvmpipe and their kin report, so an app can say why it is slow.
import { expect, test } from 'vitest';
import { describeAdapter } from '../runtime/adapter';

test('fallback adapters are recognised by the flag or by their names; GPUs are not', () => {
  const fallback = (info: Parameters<typeof describeAdapter>[0]) => describeAdapter(info).fallback;
  expect(fallback({ vendor: 'google', architecture: 'swiftshader', device: '', description: '' })).toBe(true);
  expect(fallback({ vendor: 'mesa', device: 'llvmpipe (LLVM 19.1.7, 256 bits)' })).toBe(true);
  expect(fallback({ vendor: 'mesa', description: 'lavapipe' })).toBe(true);
  expect(fallback({ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' })).toBe(true);
  expect(fallback({ vendor: 'unknown', isFallbackAdapter: true })).toBe(true);
  expect(fallback({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200', description: 'Vulkan driver 580' })).toBe(false);
  expect(fallback({ vendor: 'apple', architecture: 'metal-3' })).toBe(false);
  expect(fallback({})).toBe(false);
  expect(describeAdapter({ vendor: 'intel' })).toEqual({ vendor: 'intel', architecture: '', device: '', description: '', fallback: false });
});
