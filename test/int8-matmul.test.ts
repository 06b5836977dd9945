// The int8 matmul: what the plan carries (the portable kernel, and for aligned shapes a
// subgroup-matrix variant that Dawn checks and the runtime sets a measured constant for),
// how the runtime picks between them on a device without subgroup matrices, and the errors
// for operands of the wrong type. Its results against the CPU reference are in ops.test.ts;
// the variant itself runs only where the adapter offers subgroup matrices (bench/suite.ts on
// the H200 checks it there).
import { afterAll, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { GENERIC, NVIDIA_HOPPER } from '../compiler/target/targets';
import { CompileError } from '../compiler/ir/errors';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { measureDeviceConstants } from '../runtime/device-constants';
import { loadPlan, PlanError, readBundle } from '../runtime/index';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

function int8Graph(m: number, k: number, n: number): Graph {
  const g = new Graph('int8');
  g.output('c', g.matmulInt8(g.input('a', [m, k], 'i8'), g.input('b', [k, n], 'i8')));
  return g;
}

const seeded = (length: number, seed: number) => Int8Array.from({ length }, (_, i) => (((i + seed) * 2654435761) >>> 24) - 128);

test('aligned shapes carry a subgroup-matrix variant that Dawn checks and that needs I8_MATRIX_UNIT', async () => {
  const { bundle } = await compileGraph(int8Graph(128, 96, 64), { targets: [NVIDIA_HOPPER] });
  // a target without subgroup matrices gets the portable kernel alone
  expect((await compileGraph(int8Graph(128, 96, 64), { targets: [GENERIC] })).manifest.kernels[0].variants).toHaveLength(1);
  const { manifest, text } = await readBundle(bundle);
  const [kernel] = manifest.kernels;
  expect(kernel.variants.map((v) => v.features)).toEqual([['chromium-experimental-subgroup-matrix'], []]);
  const [variant, portable] = kernel.variants;
  expect(variant).toMatchObject({ validatedBy: 'dawn', translations: {}, deviceConstants: ['I8_MATRIX_UNIT'], workgroupSize: [32, 1, 1] });
  expect(portable.validatedBy).toBe('naga');
  expect(Object.keys(portable.translations).sort()).toEqual(['hlsl', 'msl', 'spirv']);
  const wgsl = text(variant.wgsl);
  expect(wgsl).toMatch(/^enable chromium_experimental_subgroup_matrix;/);
  expect(wgsl).toContain('override I8_MATRIX_UNIT: u32');
  // 128 × 64 outputs in 64 × 64 blocks: one subgroup per block, each block 4 × 4 fragments of 16 × 16,
  // each step's 64 × 32 bytes of A and 32 × 64 of B staged through workgroup memory
  expect(wgsl.match(/subgroupMatrixMultiplyAccumulate/g)).toHaveLength(16);
  expect(wgsl).toMatch(/var<workgroup> a_tile: array<i32, 512>;\nvar<workgroup> b_tile: array<i32, 512>;/);
  expect(manifest.entryPoints.run.dispatches[0].workgroups).toEqual([1, 2, 1]);
});

test('shapes the tensor-core tiles do not divide carry the portable kernel only', async () => {
  for (const [m, k, n] of [
    [65, 96, 64],
    [64, 100, 64],
    [64, 96, 72],
  ]) {
    const { manifest } = await compileGraph(int8Graph(m, k, n));
    expect(manifest.kernels[0].variants, `${m}x${k}x${n}`).toHaveLength(1);
  }
});

test('without subgroup matrices the runtime measures nothing and runs the portable kernel', async () => {
  const { device } = await sharedDevice();
  expect(device.features.has('chromium-experimental-subgroup-matrix')).toBe(false);
  expect(await measureDeviceConstants(device, ['I8_MATRIX_UNIT', 'NO_SUCH_CONSTANT'])).toEqual(new Map());
  const g = int8Graph(64, 96, 128);
  const { bundle } = await compileGraph(g);
  const feeds = { a: seeded(64 * 96, 1), b: seeded(96 * 128, 2) };
  const session = await loadPlan(bundle, device);
  try {
    const { c } = await session.run(feeds);
    expect(Array.from(c)).toEqual(Array.from(interpret(g, feeds, new Map()).c));
  } finally {
    session.destroy();
  }
});

test('operands of the wrong type are refused where the graph is built, naming the op and the fix', () => {
  const g = new Graph('bad');
  expect(() => g.matmulInt8(g.input('a', [4, 8]), g.input('b', [8, 4], 'i8'))).toThrow(CompileError);
  expect(() => g.matmulInt8(g.input('c', [4, 8]), g.input('d', [8, 4], 'i8'))).toThrow('matmulInt8: operands must be i8; got f32 and i8');
  expect(() => g.matmul(g.input('e', [4, 8], 'i8'), g.input('f', [8, 4], 'i8'))).toThrow('matmul: operands must be f32; got i8 and i8 (int8 operands: use matmulInt8)');
});

test('an i8 input takes an Int8Array, or a Float32Array of integers in [-128, 127]; anything else is refused naming the element', async () => {
  const { device } = await sharedDevice();
  const { bundle } = await compileGraph(int8Graph(4, 8, 4));
  const session = await loadPlan(bundle, device);
  try {
    const a = seeded(32, 3);
    const b = seeded(32, 7);
    // the same values as Int8Array and as Float32Array give the same product, checked by hand
    const expected = new Float32Array(16);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) for (let k = 0; k < 8; k++) expected[i * 4 + j] += a[i * 8 + k] * b[k * 4 + j];
    expect((await session.run({ a, b })).c).toEqual(expected);
    expect((await session.run({ a: Float32Array.from(a), b })).c).toEqual(expected);

    const refused = async (input: Float32Array | Int32Array) => {
      const error = await session.run({ a: input, b }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PlanError);
      expect((error as PlanError).kind).toBe('bad-input');
      return (error as PlanError).message;
    };
    expect(await refused(new Int32Array(32))).toBe('input "a" (i8) must be an Int8Array or Float32Array, got Int32Array');
    expect(await refused(Float32Array.from({ length: 32 }, (_, i) => (i === 5 ? 0.5 : 1)))).toBe('input "a" (i8) holds 0.5 at element 5; it takes integers from -128 to 127');
    expect(await refused(Float32Array.from({ length: 32 }, (_, i) => (i === 9 ? 200 : 1)))).toBe('input "a" (i8) holds 200 at element 9; it takes integers from -128 to 127');
  } finally {
    session.destroy();
  }
});
