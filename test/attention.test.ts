// The attention op against the unfused graph it replaces, softmax(q·kᵀ·scale + mask)·v spelled
// with transpose, matmul, mul, add and softmax: its CPU reference must equal the unfused
// graph's (same float64 evaluates, same order), and its one kernel must agree within f32
// tolerance. The row kernel (a few query rows, or wide heads) on shapes that exercise its
// tiling (Tk not a power of two, several key tiles, dv above the workgroup size, q too long to
// stage, rows beyond one grid dimension); the tiled kernel at its edges (Tq and Tk not
// multiples of its tiles, fewer keys than one tile, key groups, lanes sharing a wide head, d
// and dv not multiples of 4, -Infinity masks; cases written for one tiling pin the portable
// key groups); both under batch broadcasting; the defaults' 24 KiB variant of 4 key groups
// for few rows; and under tunings other than the defaults (a target's AttentionTuning: fixed rows,
// lanes, groups and key tiles; a 'large' variant with more invocations). The register-blocked
// kernel: swizzled and plain K rows, row and key tails, masks broadcast along rows or keys,
// batch broadcasting, causal, as the portable kernel and as variants beside the tiled kernel;
// and which kernels the benchmark shapes get. Then: causal attention, one dispatch, and the
// shape rule's refusals.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import type { Shape } from '../compiler/ir/types';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AttentionTuning } from '../compiler/target/tuning';
import { readBundle } from '../runtime/bundle';
import { expectClose } from './close';
import { inputFeeds } from './random-feeds';
import { releaseSharedDevice, runOnGpu } from './gpu';

afterAll(releaseSharedDevice);

/** The unfused graph: what the optimizer rewrites into one attention node. */
function unfusedAttention(g: Graph, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: number): Tensor {
  const r = k.shape.length;
  const kt = g.transpose(k, k.shape.map((_, i) => (i < r - 2 ? i : 2 * r - 3 - i)));
  return g.matmul(g.softmax(g.add(g.mul(g.matmul(q, kt), scale), mask)), v);
}

/** 0 on and below the diagonal, `masked` above it: query i sees keys j ≤ i. */
function causalMask(tq: number, tk: number, masked: number): Float32Array {
  return Float32Array.from({ length: tq * tk }, (_, e) => (e % tk > Math.floor(e / tk) ? masked : 0));
}

interface AttentionCase {
  label: string;
  q: Shape;
  k: Shape;
  v: Shape;
  mask: Shape;
  /** a fixed mask (a constant of the graph) instead of a random input */
  maskValues?: Float32Array;
  /** default 1/√d */
  scale?: number;
  /** |gpu - cpu| ≤ atol + 1e-4·|cpu| (default 2e-5) */
  atol?: number;
  /** the kernel's archetype line must match: which kernel runs the case, and with which tiling */
  archetype: RegExp;
  /** tiling knobs other than the defaults, set while compiling */
  tuning?: Partial<AttentionTuning>;
  /** the variants before the portable kernel (section tag, archetype, limits they require); each runs where the device allows */
  variants?: { tag: string; archetype: RegExp; limits: Record<string, number> }[];
}

/** nvidia-hopper (whose attention tuning the cases were written for) with some knobs changed */
const tuned = (attention: Partial<AttentionTuning> = {}) => withTuning(NVIDIA_HOPPER, { attention: { ...NVIDIA_HOPPER.tuning.attention, ...attention } });

/** The key groups of the portable kernel alone (no variant), as the cases pinned to a tiling were written for. */
const PORTABLE_GROUPS: Partial<AttentionTuning> = { largeWorkgroupBytes: 0, maxGroups: 8, minKeysPerGroup: 64, blockedRows: 0 };
/** The tiled kernel where the register-blocked kernel would take the shape. */
const TILED: Partial<AttentionTuning> = { blockedRows: 0 };

const ROW_KERNEL = /workgroup per query row/;
/** The tiled kernel's archetype: rows per workgroup, keys per tile (and key groups), lanes per row. */
function tiled(rows: number, keys: number, groups: number, lanes: number): RegExp {
  const split = groups > 1 ? ` split ${groups} ways` : '';
  const perRow = lanes > 1 ? `${lanes} invocations per row` : 'an invocation per row';
  return new RegExp(`FlashAttention-2 tiles: ${rows} query rows per workgroup, keys in tiles of ${keys}${split}, ${perRow} `);
}

/** The register-blocked kernel's archetype: rows per workgroup, keys per tile. */
const blocked = (rows: number, keys: number) => new RegExp(`register-blocked FlashAttention-2: ${rows} query rows per workgroup, keys in tiles of ${keys}\\b`);
const storageLimit = (bytes: number, invocations?: number) => ({ maxComputeWorkgroupStorageSize: bytes, ...(invocations ? { maxComputeInvocationsPerWorkgroup: invocations } : {}) });

/** q, k, v and the mask of the blocked kernel's d = 32 cases: Tq = 70 and Tk = 90, past whole tiles */
const D32_70X90 = { q: [2, 70, 32], k: [2, 90, 32], v: [2, 90, 32], mask: [70, 90] };

const CASES: AttentionCase[] = [
  { label: '[2, 5, 8] × [2, 7, 8] × [2, 7, 6], mask [5, 7]', q: [2, 5, 8], k: [2, 7, 8], v: [2, 7, 6], mask: [5, 7], archetype: ROW_KERNEL },
  {
    label: 'heads [9, 16, 64], causal mask [16, 16]',
    q: [9, 16, 64],
    k: [9, 16, 64],
    v: [9, 16, 64],
    mask: [16, 16],
    maskValues: causalMask(16, 16, -1e9),
    archetype: tiled(16, 16, 1, 2),
  },
  {
    label: 'a causal mask of -Infinity, Tq < Tk',
    q: [2, 6, 16],
    k: [2, 10, 16],
    v: [2, 10, 16],
    mask: [6, 10],
    maskValues: causalMask(6, 10, -Infinity),
    archetype: ROW_KERNEL,
  },
  { label: 'Tq > Tk: [3, 11, 16] queries, 4 keys', q: [3, 11, 16], k: [3, 4, 16], v: [3, 4, 8], mask: [11, 4], archetype: ROW_KERNEL },
  { label: 'Tk = 300, not a power of two', q: [2, 5, 32], k: [2, 300, 32], v: [2, 300, 20], mask: [5, 300], archetype: ROW_KERNEL },
  {
    label: 'Tk = 2500: three key tiles, the last partial; scalar mask',
    q: [3, 8],
    k: [2500, 8],
    v: [2500, 4],
    mask: [],
    // an average over 2500 keys: the running sum and the weighted sum add 2500 f32 terms
    atol: 1e-4,
    archetype: ROW_KERNEL,
  },
  { label: 'batch broadcast: q [2, 1, 4, 8], k [3, 6, 8], v [6, 5], mask [1, 6]', q: [2, 1, 4, 8], k: [3, 6, 8], v: [6, 5], mask: [1, 6], archetype: ROW_KERNEL },
  { label: 'batch broadcast of k and v: q [4, 3, 8], k [1, 5, 8], v [5, 7], mask [4, 1, 5]', q: [4, 3, 8], k: [1, 5, 8], v: [5, 7], mask: [4, 1, 5], archetype: ROW_KERNEL },
  { label: 'only v batched: q [3, 8], k [5, 8], v [2, 5, 4], mask [2, 3, 5]', q: [3, 8], k: [5, 8], v: [2, 5, 4], mask: [2, 3, 5], archetype: ROW_KERNEL },
  { label: 'dv = 300: more outputs than invocations', q: [2, 3, 8], k: [2, 9, 8], v: [2, 9, 300], mask: [3, 9], archetype: ROW_KERNEL },
  { label: 'd = 2100: q read from the buffer, not staged', q: [2, 2100], k: [3, 2100], v: [3, 4], mask: [2, 3], scale: 0.01, archetype: ROW_KERNEL },
  { label: '70000 query rows: more workgroups than one grid dimension', q: [5000, 14, 2], k: [3, 2], v: [3, 2], mask: [], archetype: ROW_KERNEL },

  // the tiled kernel
  { label: 'tiled: Tq = 20, Tk = 5 (< one tile), dv 12 ≠ d 16', q: [2, 20, 16], k: [2, 5, 16], v: [2, 5, 12], mask: [20, 5], archetype: tiled(32, 16, 1, 1) },
  { label: 'tiled: 64 rows, Tq = 70 and Tk = 90 past whole tiles', q: [2, 70, 16], k: [2, 90, 16], v: [2, 90, 16], mask: [70, 90], tuning: PORTABLE_GROUPS, archetype: tiled(64, 16, 1, 1) },
  {
    label: 'tiled: causal mask of -Infinity, Tq 40 < Tk 300, 4 key groups, 5 tiles of keys',
    q: [2, 40, 16],
    k: [2, 300, 16],
    v: [2, 300, 16],
    mask: [40, 300],
    maskValues: causalMask(40, 300, -Infinity),
    archetype: tiled(64, 64, 4, 1),
  },
  { label: 'tiled: 8 key groups over Tk = 600, scalar mask', q: [1, 16, 8], k: [1, 600, 8], v: [1, 600, 4], mask: [], atol: 5e-5, tuning: PORTABLE_GROUPS, archetype: tiled(16, 128, 8, 1) },
  {
    label: 'tiled: batch broadcast q [2, 1, 24, 8], k [3, 40, 8], v [40, 6], mask [1, 40]',
    q: [2, 1, 24, 8],
    k: [3, 40, 8],
    v: [40, 6],
    mask: [1, 40],
    archetype: tiled(32, 16, 1, 1),
  },
  { label: 'tiled: mask [4, 1, 24, 1] broadcast along keys, k and v [1, 30, 8]', q: [4, 3, 24, 8], k: [1, 30, 8], v: [1, 30, 8], mask: [4, 1, 24, 1], archetype: tiled(32, 16, 1, 1) },
  { label: 'tiled: d = 10, dv = 7 (not multiples of 4)', q: [2, 17, 10], k: [2, 33, 10], v: [2, 33, 7], mask: [17, 33], archetype: tiled(32, 16, 1, 1) },
  // d and dv kept small past the lane thresholds: llvmpipe compiles wide unrolled kernels slowly
  { label: 'tiled: 2 lanes per row for d = 36, dv = 12, 2 key groups, Tq = 20, Tk = 170', q: [1, 20, 36], k: [1, 170, 36], v: [1, 170, 12], mask: [20, 170], scale: 0.1, tuning: PORTABLE_GROUPS, archetype: tiled(32, 32, 2, 2) },
  { label: 'tiled: 4 lanes per row for d = 68, dv = 12, 2 key groups, Tq = 20, Tk = 170', q: [1, 20, 68], k: [1, 170, 68], v: [1, 170, 12], mask: [20, 170], scale: 0.1, tuning: PORTABLE_GROUPS, archetype: tiled(32, 16, 2, 4) },
  { label: 'tiled: 4 lanes per row for d = 130, dv = 18 (not multiples of 4)', q: [2, 16, 130], k: [2, 20, 130], v: [2, 20, 18], mask: [16, 20], scale: 0.08, archetype: tiled(16, 16, 1, 4) },

  // the register-blocked kernel (d = 32 and 64: K rows swizzled; d = 20: not); most cases fix
  // its rows, since the default 48 rows × 64 keys at d = 64 need more workgroup storage than the
  // test device (32 KiB) offers. Its output's key splits meet at the end in the q tile's space
  // (d ≥ dv), the K tile's (dv = 64 > d = 32) or the V tile's (d = 4).
  {
    label: 'blocked: d = dv = 32, Tq = 70 and Tk = 90 past whole tiles, 32 rows: 64 keys in a 24 KiB variant, 32 in 16 KiB',
    ...D32_70X90,
    tuning: { blockedRows: 32 },
    archetype: blocked(32, 32),
    variants: [{ tag: 'blocked24k', archetype: blocked(32, 64), limits: storageLimit(23936, 128) }],
  },
  {
    label: 'blocked: K and V loaded at each tile\'s start (no prefetch)',
    ...D32_70X90,
    tuning: { blockedRows: 32, blockedPrefetch: false },
    archetype: blocked(32, 32),
    variants: [{ tag: 'blocked24k', archetype: blocked(32, 64), limits: storageLimit(23936, 128) }],
  },
  {
    label: 'blocked: the portable kernel alone (32 keys), d = dv = 32',
    ...D32_70X90,
    tuning: { blockedRows: 32, blockedWorkgroupBytes: 16384 },
    archetype: blocked(32, 32),
  },
  {
    label: 'blocked: d = 20, dv = 16, key and row tails, mask [2, 70, 1] broadcast along keys',
    q: [2, 70, 20],
    k: [2, 45, 20],
    v: [2, 45, 16],
    mask: [2, 70, 1],
    tuning: { blockedRows: 32 },
    archetype: blocked(32, 32),
    variants: [{ tag: 'blocked18k', archetype: blocked(32, 64), limits: storageLimit(18304, 128) }],
  },
  {
    label: 'blocked: batch broadcast q [2, 1, 70, 32], k [3, 90, 32], v [90, 32], mask [1, 90]',
    q: [2, 1, 70, 32],
    k: [3, 90, 32],
    v: [90, 32],
    mask: [1, 90],
    tuning: { blockedRows: 32 },
    archetype: blocked(32, 32),
    variants: [{ tag: 'blocked24k', archetype: blocked(32, 64), limits: storageLimit(23936, 128) }],
  },
  {
    label: 'blocked: the default 48 rows (not a power of two), row and key tails: a 31 KiB variant beside 16 keys in 16 KiB',
    q: [2, 100, 32],
    k: [2, 120, 32],
    v: [2, 120, 32],
    mask: [100, 120],
    archetype: blocked(48, 16),
    variants: [{ tag: 'blocked31k', archetype: blocked(48, 64), limits: storageLimit(31168, 192) }],
  },
  {
    label: 'blocked: the defaults at d = 64, a 48 KiB variant beside the tiled kernel of 48 rows (which this device runs)',
    q: [2, 100, 64],
    k: [2, 120, 64],
    v: [2, 120, 64],
    mask: [100, 120],
    archetype: tiled(48, 16, 1, 2),
    variants: [{ tag: 'blocked48k', archetype: blocked(48, 64), limits: storageLimit(48576, 192) }],
  },
  {
    label: 'blocked: causal mask of -Infinity, Tq 80 < Tk 200, d = 64, 16 rows: a 21 KiB variant of 32 keys beside 16 keys',
    q: [2, 80, 64],
    k: [2, 200, 64],
    v: [2, 200, 64],
    mask: [80, 200],
    maskValues: causalMask(80, 200, -Infinity),
    tuning: { blockedRows: 16, blockedKeys: 32 },
    archetype: blocked(16, 16),
    variants: [{ tag: 'blocked21k', archetype: blocked(16, 32), limits: storageLimit(21184, 32) }],
  },
  {
    label: 'blocked: dv = 64 > d = 32, mask [3, 1, 150] broadcast along rows: a 32 KiB variant of 64 keys',
    q: [3, 100, 32],
    k: [3, 150, 32],
    v: [3, 150, 64],
    mask: [3, 1, 150],
    tuning: { blockedRows: 32 },
    archetype: blocked(32, 16),
    variants: [{ tag: 'blocked32k', archetype: blocked(32, 64), limits: storageLimit(32128, 128) }],
  },
  {
    label: 'blocked: d = 4, dv = 32, 16 rows × 16 keys in 16 KiB',
    q: [2, 70, 4],
    k: [2, 50, 4],
    v: [2, 50, 32],
    mask: [70, 50],
    tuning: { blockedRows: 16, blockedKeys: 16 },
    archetype: blocked(16, 16),
  },
  {
    label: 'blocked: 64 rows, d = dv = 16: a 30 KiB variant of 64 keys (256 invocations) beside 16 keys in 16 KiB',
    q: [2, 130, 16],
    k: [2, 100, 16],
    v: [2, 100, 16],
    mask: [130, 100],
    tuning: { blockedRows: 64 },
    archetype: blocked(64, 16),
    variants: [{ tag: 'blocked30k', archetype: blocked(64, 64), limits: storageLimit(30208, 256) }],
  },

  { label: 'Tq = 1 (decoding) takes the row kernel', q: [3, 1, 64], k: [3, 40, 64], v: [3, 40, 64], mask: [1, 40], archetype: ROW_KERNEL },
  { label: 'Tq = 1 over 701 keys: the value product split over 4 groups of 64 invocations', q: [3, 1, 64], k: [3, 701, 64], v: [3, 701, 64], mask: [1, 701], archetype: ROW_KERNEL },
  { label: 'd = 300 (wider than four lanes) takes the row kernel', q: [2, 16, 300], k: [2, 12, 300], v: [2, 12, 8], mask: [16, 12], scale: 0.02, archetype: ROW_KERNEL },

  // other tunings (the lane threshold lowered so that a narrow head takes 2 lanes: llvmpipe compiles wide heads slowly)
  {
    label: 'tuned: 16 rows, 2 lanes, 2 key groups of 8 keys, Tq = 40 and Tk = 50 past whole tiles, dv = 12',
    q: [2, 40, 16],
    k: [2, 50, 16],
    v: [2, 50, 12],
    mask: [40, 50],
    tuning: { minRows: 16, maxRows: 16, maxLaneVec4: 2, minGroups: 2, maxTileKeys: 8 },
    archetype: tiled(16, 16, 2, 2),
  },
  {
    label: 'tuned: a large variant (32 KiB, 512 invocations: 8 groups of 32 keys) beside the portable kernel with its rows',
    q: [2, 40, 16],
    k: [2, 300, 16],
    v: [2, 300, 16],
    mask: [40, 300],
    maskValues: causalMask(40, 300, -Infinity),
    tuning: { largeWorkgroupBytes: 32768, largeInvocations: 512, maxTileKeys: 32, minKeysPerGroup: 16, maxGroups: 8 },
    archetype: tiled(64, 128, 4, 1),
    variants: [{ tag: 'large', archetype: tiled(64, 256, 8, 1), limits: { maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 512 } }],
  },
  {
    label: 'the tiled kernel\'s defaults: 9 heads × 128 (few rows), a 24 KiB variant of 4 key groups beside the portable kernel\'s 2, both of 32 rows',
    q: [9, 128, 64],
    k: [9, 128, 64],
    v: [9, 128, 64],
    mask: [128, 128],
    maskValues: causalMask(128, 128, -1e9),
    archetype: tiled(32, 16, 2, 2),
    tuning: TILED,
    variants: [{ tag: 'large', archetype: tiled(32, 32, 4, 2), limits: { maxComputeWorkgroupStorageSize: 24576, maxComputeInvocationsPerWorkgroup: 256 } }],
  },
];

/** Records q, k, v and the mask, then the attention under `name`, fused or unfused. */
function build(c: AttentionCase, fused: boolean) {
  const g = new Graph(fused ? 'attention' : 'unfused');
  const q = g.input('q', c.q);
  const k = g.input('k', c.k);
  const v = g.input('v', c.v);
  const mask = c.maskValues ? g.constant(c.maskValues, c.mask, 'mask') : g.input('mask', c.mask);
  const scale = c.scale ?? 1 / Math.sqrt(c.q[c.q.length - 1]);
  g.output('y', fused ? g.attention(q, k, v, mask, { scale }) : unfusedAttention(g, q, k, v, mask, scale));
  return g;
}

describe.each(CASES.map((c) => [c.label, c] as const))('attention %s', (_label, c) => {
  test('CPU reference equals the unfused graph; the kernel agrees within f32 tolerance', async () => {
    const target = tuned(c.tuning);
    const fused = build(c, true);
    const unfused = build(c, false);
    const feeds = inputFeeds(fused, 17);
    const expected = interpret(unfused, feeds, new Map()).y;
    const reference = interpret(fused, feeds, new Map()).y;
    expect(reference).toEqual(expected);
    expect(expected.every(Number.isFinite)).toBe(true);

    const plan = await compileGraph(fused, { targets: [target] });
    const kernel = plan.manifest.kernels.find((k) => k.ops.includes('attention'))!;
    const bundle = await readBundle(plan.bundle);
    const archetypeOf = (v: (typeof kernel.variants)[number]) => bundle.text(v.wgsl).split('\n').find((l) => l.startsWith('// archetype:'));
    expect(archetypeOf(kernel.variants[kernel.variants.length - 1])).toMatch(c.archetype);
    const variants = c.variants ?? [];
    expect(kernel.variants).toHaveLength(variants.length + 1);
    for (const [i, v] of variants.entries()) {
      expect(kernel.variants[i].wgsl).toMatch(new RegExp(`\\.${v.tag}\\.wgsl$`));
      expect(archetypeOf(kernel.variants[i])).toMatch(v.archetype);
      expect(kernel.variants[i].requiredLimits).toEqual(v.limits);
    }
    expectClose((await runOnGpu(plan.bundle, feeds)).y, expected, c.atol ?? 2e-5, 1e-4);
  });
});

// causal: against the unfused graph with the causal mask spelled out as a constant (0 where
// query i sees key j ≤ i + Tk - Tq, -1e9 elsewhere) added to a random mask
describe('causal attention', () => {
  const causal = (tq: number, tk: number) => Float32Array.from({ length: tq * tk }, (_, e) => (e % tk > Math.floor(e / tk) + tk - tq ? -1e9 : 0));
  // [label, q, k, v, mask, archetype, tuning]
  const cases: [string, Shape, Shape, Shape, Shape, RegExp, Partial<AttentionTuning>?][] = [
    ['tiled, heads [9, 40, 64]: a row tail, 2 lanes per row', [9, 40, 64], [9, 40, 64], [9, 40, 64], [40, 40], /FlashAttention-2 tiles: .*2 invocations per row.*causal/],
    ['tiled, Tq 24 < Tk 56: aligned at the last query and key', [2, 24, 16], [2, 56, 16], [2, 56, 12], [], /FlashAttention-2 tiles: .*causal/],
    ['tiled, key groups', [1, 20, 8], [1, 300, 8], [1, 300, 8], [20, 300], /FlashAttention-2 tiles: .*split 4 ways.*causal/, { minGroups: 4, maxGroups: 4 }],
    ['blocked, Tq 70 < Tk 100: row tail, tiles past the block skipped, longest blocks first', [3, 70, 32], [3, 100, 32], [3, 100, 32], [70, 100], /register-blocked FlashAttention-2: 48 query rows .*causal/],
    ['row kernel, [3, 5, 8] × [3, 9, 8]', [3, 5, 8], [3, 9, 8], [3, 9, 6], [5, 9], /workgroup per query row.*causal/],
    ['row kernel, keys over two tiles of 1024', [1, 3, 4], [1, 1500, 4], [1, 1500, 4], [], /workgroup per query row.*causal/],
  ];
  for (const [label, qs, ks, vs, maskShape, archetype, tuning] of cases) {
    test(label, async () => {
      const target = tuned(tuning);
      const [tq, tk] = [qs[qs.length - 2], ks[ks.length - 2]];
      const graph = (fused: boolean) => {
        const g = new Graph(fused ? 'causal' : 'unfused');
        const [q, k, v, mask] = [g.input('q', qs), g.input('k', ks), g.input('v', vs), g.input('mask', maskShape)];
        const scale = 1 / Math.sqrt(qs[qs.length - 1]);
        g.output('y', fused ? g.attention(q, k, v, mask, { scale, causal: true }) : unfusedAttention(g, q, k, v, g.add(mask, g.constant(causal(tq, tk), [tq, tk])), scale));
        return g;
      };
      const fused = graph(true);
      const feeds = inputFeeds(fused, 5);
      const expected = interpret(graph(false), feeds, new Map()).y;
      expect(interpret(fused, feeds, new Map()).y).toEqual(expected);
      const plan = await compileGraph(fused, { targets: [target] });
      const [kernel] = plan.manifest.kernels;
      expect((await readBundle(plan.bundle)).text(kernel.variants[0].wgsl).split('\n').find((l) => l.startsWith('// archetype:'))).toMatch(archetype);
      expectClose((await runOnGpu(plan.bundle, feeds)).y, expected, 2e-5, 1e-4);
    });
  }

  test('the shape rule: at least as many keys as queries; causal a boolean', () => {
    const g = new Graph('causal errors');
    const [q, k] = [g.input('q', [6, 4]), g.input('k', [5, 4])];
    expect(() => g.attention(q, k, k, g.constant(0), { scale: 1, causal: true })).toThrow(/attention: causal attention needs at least as many keys as queries .*got Tq = 6, Tk = 5/);
    expect(() => g.apply('attention', [k, k, k, g.constant(0)], { scale: 1, causal: 'yes' })).toThrow(/causal must be true or false; got yes/);
  });
});

// which kernel each of the suite's attention shapes gets (compiled, not run: the llvmpipe
// device offers 32 KiB of workgroup storage, and these kernels are slow there)
describe('the blocked kernel at the benchmark shapes', () => {
  test('9 heads × 128, 512, 2048 and 2048 causal, 72 heads × 512: 48 rows × 64 keys (48 KiB) beside the tiled kernel of 48 rows', async () => {
    for (const [heads, seq, causal] of [
      [9, 128, false],
      [9, 512, false],
      [9, 2048, false],
      [9, 2048, true],
      [72, 512, false],
    ] as const) {
      const g = new Graph('bench shape');
      const [q, k, v] = ['q', 'k', 'v'].map((n) => g.input(n, [heads, seq, 64]));
      g.output('y', g.attention(q, k, v, g.constant(0), { scale: 0.125, causal }));
      const plan = await compileGraph(g, { targets: [NVIDIA_HOPPER] });
      const bundle = await readBundle(plan.bundle);
      const kernel = plan.manifest.kernels.find((kd) => kd.ops.includes('attention'))!;
      const kernels = kernel.variants.map((variant) => `${variant.wgsl.replace(/^kernels\/attention_\w+?(\.|$)/, '')} ${bundle.text(variant.wgsl).split('\n').find((l) => l.startsWith('// archetype:'))}`);
      expect(kernels).toHaveLength(2);
      expect(kernels[0]).toMatch(/^blocked48k\.wgsl .*register-blocked FlashAttention-2: 48 query rows per workgroup, keys in tiles of 64 /);
      expect(kernels[1]).toMatch(/^wgsl .*FlashAttention-2 tiles: 48 query rows per workgroup/);
      // the generic target: the portable module alone, within WebGPU's default limits
      const portable = (await compileGraph(g, { targets: [GENERIC] })).manifest.kernels.find((kd) => kd.ops.includes('attention'))!;
      expect(portable.variants).toHaveLength(1);
      expect(portable.variants[0].requiredLimits).toBeUndefined();
    }
  });
});

describe('one dispatch', () => {
  test('attention is one kernel where the unfused graph takes six', async () => {
    const c = CASES[1];
    const count = async (g: Graph) => {
      const plan = await compileGraph(g, { optimize: false });
      const run = plan.manifest.entryPoints.run;
      return { n: run.dispatches.length, kernels: run.dispatches.map((d) => plan.manifest.kernels[d.kernel]), plan };
    };
    const before = await count(build(c, false));
    const after = await count(build(c, true));
    expect(before.n).toBe(6); // transpose, matmul, mul, add, softmax, matmul
    expect(after.n).toBe(1);
    expect(after.kernels[0].ops).toEqual(['attention']);
    const text = (await readBundle(after.plan.bundle)).text(after.kernels[0].variants[0].wgsl);
    expect(text).toContain('// mnc kernel attention_9x16x64');
    expect(text).toContain('// op attention: [9, 16, 64], [9, 16, 64], [9, 16, 64], [16, 16] -> [9, 16, 64] f32');
    expect(text).toContain('// archetype: attention, FlashAttention-2 tiles: 16 query rows per workgroup, keys in tiles of 16, 2 invocations per row');

    // and through the optimizer, which must keep it whole
    const optimized = await compileGraph(build(c, true));
    expect(optimized.manifest.entryPoints.run.dispatches).toHaveLength(1);
  });
});

describe('the shape rule refuses what attention cannot compute, at the caller', () => {
  const shapeError = (shapes: Shape[], message: RegExp, dtype: 'f32' | 'i32' = 'f32') => {
    const g = new Graph('errors');
    const [q, k, v, mask] = shapes.map((s, i) => g.input(`x${i}`, s, i === 3 ? dtype : 'f32'));
    try {
      g.attention(q, k, v, mask, { scale: 0.5 });
    } catch (e) {
      expect(e).toBeInstanceOf(CompileError);
      const err = e as CompileError;
      expect(err.kind).toBe('shape');
      expect(err.message).toMatch(message);
      expect(err.loc?.file).toMatch(/attention\.test\.ts$/);
      return;
    }
    expect.fail(`no error; expected ${message}`);
  };

  test('d, Tk, batch axes, mask, rank and dtype', () => {
    shapeError([[2, 5, 8], [2, 7, 4], [2, 7, 6], [5, 7]], /^attention: q and k must have the same feature size d: q is \[2, 5, 8\] \(d = 8\) and k is \[2, 7, 4\] \(d = 4\)$/);
    shapeError([[2, 5, 8], [2, 7, 8], [2, 6, 6], [5, 7]], /k and v must have the same number of keys Tk: k is \[2, 7, 8\] \(Tk = 7\) and v is \[2, 6, 6\] \(Tk = 6\)/);
    shapeError([[2, 5, 8], [3, 7, 8], [7, 6], [5, 7]], /batch axes \[2\] \(q\), \[3\] \(k\) and \[\] \(v\) do not broadcast/);
    shapeError([[2, 5, 8], [2, 7, 8], [2, 7, 6], [7, 5]], /mask \[7, 5\] does not broadcast to the scores' shape \[2, 5, 7\] \(\[\.\., Tq, Tk\]\)/);
    // a mask may not add batch axes of its own
    shapeError([[5, 8], [7, 8], [7, 6], [2, 5, 7]], /mask \[2, 5, 7\] does not broadcast to the scores' shape \[5, 7\]/);
    shapeError([[8], [7, 8], [7, 6], []], /q must have rank 2 or more \(\[\.\., rows, features\]\); got \[8\]/);
    shapeError([[5, 8], [7, 8], [7, 6], [5, 7]], /mask is i32; expected f32/, 'i32');
  });

  test('scale must be a finite number', () => {
    const g = new Graph('scale');
    const x = g.input('x', [3, 4]);
    expect(() => g.attention(x, x, x, g.constant(0), { scale: NaN })).toThrow(/attention: scale must be a finite number; got NaN/);
  });
});
