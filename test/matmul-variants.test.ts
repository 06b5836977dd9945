// The matmul archetype's variants: which kernels a shape gets (tiled or small-M, subgroups
// first, the portable one last within WebGPU's compatibility limits), every variant naga-
// validated and written with its limits and grid, the runtime skipping variants the device
// cannot run, and every tiling and split the chooser may pick computing the right values on
// this device (each forced as the only variant of a plan, through the runtime).
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { interpret } from '../compiler/ir/interpret';
import { opDef, type MatmulForm } from '../compiler/ir/ops';
import { lowerGraph } from '../compiler/lower';
import type { KernelCode } from '../compiler/lower/kernel';
import { matmulProblem, SMALL_M } from '../compiler/lower/matmul';
import { gemvKernel, type GemvConfig } from '../compiler/lower/matmul-gemv';
import { PORTABLE_INVOCATIONS, PORTABLE_WORKGROUP_BYTES, tiledKernel, waveTilings } from '../compiler/lower/matmul-tiled';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import { TILINGS, type TileConfig } from '../compiler/target/tuning';
import { writePlanFile } from '../compiler/plan/bundle';
import { validateKernel } from '../compiler/validate/naga';
import type { Manifest } from '../schemas/manifest';
import { readBundle } from '../runtime/bundle';
import { loadPlan } from '../runtime/session';
import { expectClose } from './close';
import { inputFeeds } from './random-feeds';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { matmulCaseGraph, problemOfNode, type MatmulCase } from '../bench/matmul-case';

afterAll(releaseSharedDevice);

type Spec = MatmulCase;


/** The compiled plan with the matmul kernel's variants replaced by `code` alone (with its grid and limits). */
async function forcedPlan(bundle: Uint8Array, code: KernelCode): Promise<Uint8Array> {
  const read = await readBundle(bundle);
  const { sections: refs, ...rest } = read.manifest;
  const manifest: Omit<Manifest, 'sections'> = structuredClone(rest);
  const sections = refs.map((r) => ({ name: r.name, bytes: read.section(r.name) }));
  sections.push({ name: 'kernels/forced.wgsl', bytes: new TextEncoder().encode(code.wgsl) });
  const [kernel] = manifest.kernels;
  kernel.workgroupSize = code.workgroupSize;
  kernel.variants = [
    {
      features: [],
      wgsl: 'kernels/forced.wgsl',
      translations: {},
      validatedBy: 'naga',
      requiredLimits: { maxComputeWorkgroupStorageSize: code.workgroupBytes, maxComputeInvocationsPerWorkgroup: code.workgroupSize[0] },
    },
  ];
  for (const d of manifest.entryPoints.run.dispatches) d.workgroups = code.workgroups;
  return writePlanFile(manifest, sections).bytes;
}

/** Runs `code` as the graph's only kernel on this device and compares with the CPU reference. */
async function checkForced(s: Spec, code: (p: ReturnType<typeof matmulProblem>) => KernelCode, label: string) {
  const { g, y } = matmulCaseGraph(s);
  const node = g.node(y);
  const generated = code(problemOfNode(g, node, 'forced'));
  validateKernel({ name: 'forced', ops: [], wgsl: generated.wgsl, entryPoint: 'main', workgroupSize: generated.workgroupSize, workgroupBytes: generated.workgroupBytes, bindings: [] }, { op: node.op, node: node.name });
  const { device } = await sharedDevice();
  if (generated.workgroupBytes > device.limits.maxComputeWorkgroupStorageSize || generated.workgroupSize[0] > device.limits.maxComputeInvocationsPerWorkgroup) return;
  const plan = await compileGraph(g, { optimize: false });
  const session = await loadPlan(await forcedPlan(plan.bundle, generated), device);
  try {
    const inputs = inputFeeds(g, 7, {}, [-1, 1]);
    const got = await session.run(inputs);
    const want = interpret(g, inputs, new Map());
    expectClose(got.y, want.y, 1e-4, 1e-4, label);
  } finally {
    session.destroy();
  }
}

describe('matmul kernels per shape', () => {
  // the product's own kernel: nvidia-hopper without the schedules that split it into several dispatches
  const kernelsOf = (s: Spec, target = withTuning(NVIDIA_HOPPER, { splitK: undefined, streamK: undefined })) => {
    const { steps } = lowerGraph(matmulCaseGraph(s).g, target);
    expect(steps).toHaveLength(1);
    return steps[0];
  };

  test('large shapes get a register-blocked tiling, small ones a tiling with enough workgroups', () => {
    // enough 128×256 blocks: those with 16-deep slices in 24 KiB first, 8-deep in 12 KiB as the portable kernel
    const square = kernelsOf({ m: 4096, k: 4096, n: 4096 });
    expect(square.kernel.variants?.map((v) => [v.tag, v.workgroupBytes])).toEqual([['large', 24576]]);
    expect(square.kernel.variants![0].wgsl).toContain('128x256x16 tiles, 8x16 per invocation, 1 stage, pipelined, reads ahead at step 2, barrier first');
    expect(square.kernel.wgsl).toContain('128x256x8 tiles, 8x16 per invocation');
    expect(square.workgroups).toEqual([16, 32, 1]);
    // the code shape by layout: B read transposed has both operands' stores swizzled, each
    // with a padded row per K of its 16-deep slice
    const linear = kernelsOf({ m: 4096, k: 4096, n: 4096, transposeB: true });
    expect(linear.kernel.variants?.map((v) => [v.tag, v.workgroupBytes])).toEqual([['large', 16 * (128 + 4 + 256 + 4) * 4]]);
    expect(linear.kernel.variants![0].wgsl).toContain('swizzled stores, 16-column blocks');
    // with an epilogue, the 8-deep slices alone (they were the faster there)
    const fused = kernelsOf({ m: 4096, k: 4096, n: 4096, fused: true });
    expect(fused.kernel.variants).toBeUndefined();
    expect(fused.kernel.wgsl).toContain('128x256x8 tiles, 8x16 per invocation, 1 stage, pipelined, swizzled stores');
    // 288 of those blocks leave most of a third wave idle on a 132-SM GPU: 128×128 blocks for the
    // product alone (compileGraph first shares that wave out by stream-K: test/stream-k.test.ts)
    expect(kernelsOf({ m: 3072, k: 3072, n: 3072 }).kernel.wgsl).toContain('128x128x16 tiles, 8x8 per invocation');
    expect(kernelsOf({ m: 2048, k: 2048, n: 2048 }).kernel.variants?.[0].wgsl).toContain('128x256x16 tiles');
    const small = kernelsOf({ m: 128, k: 576, n: 1536 });
    const groups = small.workgroups[0] * small.workgroups[1];
    expect(groups).toBeGreaterThanOrEqual(96);
    // the generic target knows no wave size: the portable blocks alone, no variant
    const generic = kernelsOf({ m: 4096, k: 4096, n: 4096 }, GENERIC);
    expect(generic.kernel.variants).toBeUndefined();
    expect(generic.kernel.wgsl).toContain('128x128x16 tiles, 8x8 per invocation');
  });

  test(`M ≤ ${SMALL_M} gets the small-M kernel; B stored along K has a subgroups variant first`, () => {
    const plain = kernelsOf({ m: 1, k: 4096, n: 4096 });
    expect(plain.kernel.wgsl).toContain('small-M matmul');
    const transposed = kernelsOf({ m: 16, k: 4096, n: 4096, transposeB: true });
    expect(transposed.kernel.variants?.map((v) => v.features)).toEqual([['subgroups']]);
    expect(transposed.kernel.variants![0].wgsl).toMatch(/^enable subgroups;/);
    expect(transposed.kernel.wgsl).not.toContain('subgroup');
    expect(kernelsOf({ m: SMALL_M + 1, k: 64, n: 64 }).kernel.wgsl).toContain('tiled matmul');
    // a target without the feature gets the portable kernel alone
    expect(kernelsOf({ m: 16, k: 4096, n: 4096, transposeB: true }, GENERIC).kernel.variants).toBeUndefined();
  });

  test('every portable kernel fits compatibility limits; vec4 bindings only where rows allow', () => {
    for (const s of [
      { m: 4096, k: 4096, n: 4096 },
      { m: 1000, k: 999, n: 998 },
      { m: 3, k: 5, n: 7 },
      { m: 16, k: 4096, n: 4096, transposeB: true, fused: true },
    ]) {
      const { kernel } = kernelsOf(s);
      expect(kernel.workgroupBytes).toBeLessThanOrEqual(PORTABLE_WORKGROUP_BYTES);
      expect(kernel.workgroupSize[0] * kernel.workgroupSize[1] * kernel.workgroupSize[2]).toBeLessThanOrEqual(PORTABLE_INVOCATIONS);
    }
    const odd = kernelsOf({ m: 100, k: 99, n: 98 }).kernel.wgsl;
    expect(odd).toContain('var<storage, read> in0: array<f32>;');
    expect(odd).toContain('var<storage, read_write> out: array<f32>;');
    const aligned = kernelsOf({ m: 100, k: 96, n: 64 }).kernel.wgsl;
    expect(aligned).toContain('var<storage, read> in0: array<vec4<f32>>;');
    expect(aligned).toContain('var<storage, read_write> out: array<vec4<f32>>;');
  });

  test('plans carry every variant naga-validated, fastest first, all on one grid', async () => {
    const { g } = matmulCaseGraph({ m: 8, k: 256, n: 512, transposeB: true, fused: true });
    const plan = await compileGraph(g, { optimize: false, targets: [NVIDIA_HOPPER] });
    const read = await readBundle(plan.bundle);
    const [kernel] = plan.manifest.kernels;
    expect(kernel.variants.map((v) => v.features)).toEqual([['subgroups'], []]);
    const [sub, portable] = kernel.variants;
    expect(sub.wgsl).toBe(`kernels/${kernel.name}.subgroups.wgsl`);
    expect(read.text(sub.wgsl)).toMatch(/^enable subgroups;/);
    expect(sub.validatedBy).toBe('naga');
    expect(Object.keys(sub.translations).sort()).toEqual(['hlsl', 'msl', 'spirv']);
    // one grid for both: 8 columns per workgroup (the subgroups variant takes them 4 at a time)
    expect(plan.manifest.entryPoints.run.dispatches[0].workgroups).toEqual([64, 1, 1]);
    expect(read.text(sub.wgsl)).toContain('for (var g = 0u; g < 2u; g++)');
    expect(portable.requiredLimits).toBeUndefined();
    expect(plan.manifest.requiredLimits.maxComputeWorkgroupStorageSize).toBeLessThanOrEqual(PORTABLE_WORKGROUP_BYTES);
  });
});

describe('the runtime takes the first variant the device can run', () => {
  test('a variant needing more workgroup storage than the device has is skipped', async () => {
    const s: Spec = { m: 40, k: 24, n: 36, fused: true };
    const { g } = matmulCaseGraph(s);
    const plan = await compileGraph(g, { optimize: false });
    const read = await readBundle(plan.bundle);
    const { sections: refs, ...rest } = read.manifest;
    const manifest: Omit<Manifest, 'sections'> = structuredClone(rest);
    const sections = refs.map((r) => ({ name: r.name, bytes: read.section(r.name) }));
    sections.push({ name: 'kernels/unrunnable.wgsl', bytes: new TextEncoder().encode('not WGSL: never compiled') });
    const [kernel] = manifest.kernels;
    kernel.variants.unshift({ features: [], wgsl: 'kernels/unrunnable.wgsl', translations: {}, validatedBy: 'naga', requiredLimits: { maxComputeWorkgroupStorageSize: 1 << 30 } });
    const { device } = await sharedDevice();
    const session = await loadPlan(writePlanFile(manifest, sections).bytes, device);
    try {
      const inputs = inputFeeds(g, 3, {}, [-1, 1]);
      expectClose((await session.run(inputs)).y, interpret(g, inputs, new Map()).y, 1e-4, 1e-4, 'skipping a variant');
    } finally {
      session.destroy();
    }
  });
});

// Every tiling and split on shapes that hit every edge: ragged M, N, K; rows not a multiple of
// 4 (scalar reads); transposed reads; batches with a broadcast B; the fused epilogue.
const tiledSpecs: Spec[] = [
  { m: 130, k: 67, n: 129 },
  { m: 96, k: 64, n: 128, transposeA: true },
  { m: 70, k: 36, n: 52, transposeB: true, fused: true, batch: 2 },
  { m: 33, k: 20, n: 44, transposeA: true, transposeB: true },
  // no guards: each row's epilogue operands read before the previous row's stores
  { m: 256, k: 48, n: 256, fused: true },
];
const gemvSpecs: Spec[] = [
  { m: 1, k: 300, n: 260 },
  { m: 5, k: 129, n: 66, transposeB: true },
  { m: 16, k: 64, n: 48, fused: true, batch: 2 },
  { m: 3, k: 21, n: 19, transposeA: true },
  { m: 7, k: 40, n: 36, transposeA: true, transposeB: true, fused: true },
];
const extraTilings: Record<string, TileConfig> = {
  twoStages: { bm: 64, bn: 64, bk: 8, tm: 8, tn: 8, stages: 2 },
  // two stages with the next slice's reads and stores placed within the products
  twoStagesShaped: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, stages: 2, pipelined: true, readAhead: 2, storeStep: 8 },
  // the next step's reads spread among the products (some left for after the last)
  spacedReads: { bm: 32, bn: 64, bk: 8, tm: 4, tn: 4, stages: 1, pipelined: true, readSpacing: 6 },
  wide512: { bm: 128, bn: 256, bk: 8, tm: 8, tn: 8, stages: 1 },
  // the code-shape options together, on small blocks and on partial loads (not every invocation stores)
  shaped: { bm: 32, bn: 64, bk: 16, tm: 4, tn: 4, stages: 1, readAhead: 15, pipelined: true, barrierFirst: true, swizzledStores: true, blockColumns: 4 },
  shapedPartial: { bm: 128, bn: 256, bk: 8, tm: 8, tn: 8, stages: 1, readAhead: 3, barrierFirst: true, swizzledStores: true, blockColumns: 16 },
};
const gemvConfigs: GemvConfig[] = [
  { lanes: 4, unroll: 1, subgroups: false },
  { lanes: 2, unroll: 2, subgroups: false },
  { lanes: 8, unroll: 3, subgroups: false },
  { lanes: 1, unroll: 1, subgroups: false },
];

describe('every tiling computes the product (forced as the only variant, on this device)', () => {
  for (const [name, config] of [...Object.entries({ ...TILINGS, ...extraTilings }), ...waveTilings(NVIDIA_HOPPER.tuning.matmul)]) {
    test(name, async () => {
      for (const s of tiledSpecs) await checkForced(s, (p) => tiledKernel(p, config), `${name} ${JSON.stringify(s)}`);
    });
  }
});

test('code-shape options a tiling cannot take are refused, each named', () => {
  const { g, y } = matmulCaseGraph({ m: 64, k: 64, n: 64 });
  const p = problemOfNode(g, g.node(y), 'shape');
  const t = TILINGS.t64x64x16;
  expect(() => tiledKernel(p, { ...t, readSpacing: 4 })).toThrow('spaced reads need pipelining');
  expect(() => tiledKernel(p, { ...t, readAhead: 16 })).toThrow('reading ahead needs a step within the slice');
  expect(() => tiledKernel(p, { ...t, stages: 2, barrierFirst: true })).toThrow('the barrier first needs one prefetched stage');
  expect(() => tiledKernel(p, { ...t, storeStep: 8 })).toThrow('storing at a step needs two stages');
  expect(() => tiledKernel(p, { ...t, stages: 2, readAhead: 8, storeStep: 8 })).toThrow(/storing at a step.*: 64x64x16 tiles/);
  expect(() => tiledKernel(p, { ...t, stages: 2, pipelined: true, readAhead: 2, storeStep: 8, readSpacing: 4 })).not.toThrow();
});

describe('every small-M split computes the product (forced as the only variant, on this device)', () => {
  for (const config of gemvConfigs) {
    test(`lanes ${config.lanes}, unroll ${config.unroll}`, async () => {
      for (const s of gemvSpecs) await checkForced(s, (p) => gemvKernel(p, config), `${JSON.stringify(config)} ${JSON.stringify(s)}`);
    });
  }
  test('the subgroups variant validates with naga for every shape', () => {
    for (const s of gemvSpecs) {
      const { g, y } = matmulCaseGraph(s);
      const node = g.node(y);
      const operands = node.inputs.map((i) => g.nodes[i].type);
      const lowering = opDef(node.op).lowering as { form?: (i: unknown, a: unknown, o: unknown) => MatmulForm };
      const code = gemvKernel(matmulProblem(node, operands, 'sub', lowering.form?.(operands, node.attrs, node.type)), { lanes: 2, unroll: 2, subgroups: true });
      const checked = validateKernel({ name: 'sub', ops: [], wgsl: code.wgsl, entryPoint: 'main', workgroupSize: code.workgroupSize, workgroupBytes: code.workgroupBytes, bindings: [] }, { op: node.op, node: node.name });
      expect(checked.translations.spirv.length).toBeGreaterThan(0);
    }
  });
});
