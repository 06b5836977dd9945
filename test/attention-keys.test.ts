// Attention over a run-time key count (the attention op's keyCount operand): against the masked
// form it replaces (-1e9 added at keys j ≥ n, as models/llama.ts's decode did) in the CPU
// reference, and its kernels against the reference at several counts, 1 and Tk included, from
// one plan (the count is an input). Each kernel the count reaches: the row kernel (decode's one
// query row, its value product split over key groups; a second tile of keys skipped), the tiled
// kernel (key groups, lanes), the register-blocked kernel, each also causal. The GPU runs on k
// and v whose rows at and past each matrix's count are NaN: a kernel that read one, even to
// weigh it 0, would give NaN. A count of 0 gives zeros; per-matrix counts broadcast over the
// batch axes (decode_batch's one per slot); i32 counts; the shape rule's refusals.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { broadcastShapes, broadcastStrides, stridesOf } from '../compiler/ir/shape';
import { elementCount, type Shape } from '../compiler/ir/types';
import { NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { AttentionTuning } from '../compiler/target/tuning';
import { readBundle } from '../runtime/bundle';
import { loadPlan } from '../runtime/session';
import { expectClose } from './close';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { inputFeeds } from './random-feeds';

afterAll(releaseSharedDevice);

interface KeyCountCase {
  label: string;
  q: Shape;
  k: Shape;
  v: Shape;
  mask: Shape;
  /** the count's shape (broadcast to the batch axes) */
  counts: Shape;
  /** count values to run, one array per run (each of elementCount(counts) values) */
  runs: number[][];
  causal?: boolean;
  /** the kernel's archetype line must match */
  archetype: RegExp;
  tuning?: Partial<AttentionTuning>;
  dtype?: 'f32' | 'i32';
}

const ROW = /workgroup per query row.*over a run-time key count/;
const TILED = /FlashAttention-2 tiles: .*over a run-time key count \(tiles past it skipped\)/;
const BLOCKED = /register-blocked FlashAttention-2: .*over a run-time key count \(tiles past it skipped\)/;

const CASES: KeyCountCase[] = [
  {
    label: "decode: grouped-query q [2, 3, 1, 16] over a cache k, v [2, 1, 40, 16], one count (the row kernel's value product in 4 key groups)",
    q: [2, 3, 1, 16],
    k: [2, 1, 40, 16],
    v: [2, 1, 40, 16],
    mask: [],
    counts: [1],
    runs: [[1], [17], [40], [0]],
    archetype: /workgroup per query row.*over a run-time key count/,
  },
  {
    label: 'decode_batch: q [3, 2, 2, 1, 8] over slots k, v [3, 2, 1, 30, 8], a count per slot [3, 1, 1]',
    q: [3, 2, 2, 1, 8],
    k: [3, 2, 1, 30, 8],
    v: [3, 2, 1, 30, 8],
    mask: [],
    counts: [3, 1, 1],
    runs: [
      [1, 30, 12],
      [0, 5, 30],
    ],
    archetype: ROW,
  },
  {
    label: 'row kernel, Tq 3 over 1500 keys (two tiles of 1024): the second skipped below 1025, causal as well',
    q: [1, 3, 4],
    k: [1, 1500, 4],
    v: [1, 1500, 4],
    mask: [3, 1500],
    counts: [],
    runs: [[1], [700], [1100], [1500]],
    causal: true,
    archetype: /workgroup per query row.*causal, over a run-time key count/,
  },
  {
    label: 'tiled: q [2, 20, 16] over k, v [2, 300, 16], mask [20, 300], 4 key groups, a count per head',
    q: [2, 20, 16],
    k: [2, 300, 16],
    v: [2, 300, 16],
    mask: [20, 300],
    counts: [2],
    runs: [
      [1, 300],
      [129, 64],
      [300, 0],
    ],
    archetype: /FlashAttention-2 tiles: .*split 4 ways.*over a run-time key count/,
    tuning: { blockedRows: 0 },
  },
  {
    label: 'tiled: 2 lanes per row (d = 36), 2 key groups, Tq 20 over 170 keys, causal',
    q: [1, 20, 36],
    k: [1, 170, 36],
    v: [1, 170, 12],
    mask: [20, 170],
    counts: [1],
    runs: [[151], [170], [160]],
    causal: true,
    archetype: /FlashAttention-2 tiles: .*2 invocations per row.*causal.*over a run-time key count/,
    tuning: { largeWorkgroupBytes: 0, maxGroups: 8, minKeysPerGroup: 64, blockedRows: 0 },
  },
  {
    label: 'blocked: q [2, 70, 32] over k, v [2, 90, 32], mask [70, 90] (a prefill over a cache, count = the prompt length), i32 counts',
    q: [2, 70, 32],
    k: [2, 90, 32],
    v: [2, 90, 32],
    mask: [70, 90],
    counts: [1],
    runs: [[1], [33], [90]],
    archetype: BLOCKED,
    tuning: { blockedRows: 32, blockedWorkgroupBytes: 16384 },
    dtype: 'i32',
  },
  {
    label: 'blocked, causal: q [3, 70, 32] over k, v [3, 100, 32], a count per head',
    q: [3, 70, 32],
    k: [3, 100, 32],
    v: [3, 100, 32],
    mask: [],
    counts: [3],
    runs: [
      [31, 100, 64],
      [100, 40, 0],
    ],
    causal: true,
    archetype: /register-blocked FlashAttention-2: .*causal.*over a run-time key count/,
    tuning: { blockedRows: 32, blockedWorkgroupBytes: 16384 },
  },
];

const tuned = (attention: Partial<AttentionTuning> = {}) => withTuning(NVIDIA_HOPPER, { attention: { ...NVIDIA_HOPPER.tuning.attention, ...attention } });
const keyAxis = (s: Shape) => s[s.length - 2];

/** The attention over the count (input 'count'), or the masked form with 'hidden' [..counts, 1, Tk] added to the mask. */
function build(c: KeyCountCase, form: 'count' | 'masked'): Graph {
  const g = new Graph(form);
  const [q, k, v, mask] = [g.input('q', c.q), g.input('k', c.k), g.input('v', c.v), g.input('mask', c.mask)];
  const scale = 1 / Math.sqrt(c.q[c.q.length - 1]);
  const causal = c.causal ?? false;
  if (form === 'count') g.output('y', g.attention(q, k, v, mask, { scale, causal, keyCount: g.input('count', c.counts, c.dtype ?? 'f32') }));
  else g.output('y', g.attention(q, k, v, g.add(mask, g.input('hidden', [...c.counts, 1, keyAxis(c.k)])), { scale, causal }));
  return g;
}

/** The masked form's additive mask for `counts`: -1e9 at keys j ≥ n of each matrix. */
function hiddenFor(counts: number[], tk: number): Float32Array {
  return Float32Array.from({ length: counts.length * tk }, (_, e) => (e % tk >= counts[Math.floor(e / tk)] ? -1e9 : 0));
}

/** The count of batch matrix `b` (its coordinates in `batch`, the counts broadcast over them). */
function countOf(b: number, batch: Shape, countShape: Shape, counts: number[]): number {
  if (elementCount(countShape) === 1) return counts[0];
  const byCount = broadcastStrides(countShape, batch);
  return counts[stridesOf(batch).reduce((m, st, a) => m + (Math.floor(b / st) % batch[a]) * byCount[a], 0)];
}

/**
 * k or v (shape `s`) with NaN in every row at or past the largest count of the batch matrices
 * that read it (its batch axes broadcast to `batch`, the counts' to `batch` too).
 */
function poisoned(values: Float32Array, s: Shape, batch: Shape, countShape: Shape, counts: number[]): Float32Array {
  const [rows, width] = s.slice(-2);
  const own = broadcastStrides(s.slice(0, -2), batch);
  const strides = stridesOf(batch);
  const seen = new Map<number, number>();
  for (let b = 0; b < elementCount(batch); b++) {
    const matrix = strides.reduce((m, st, a) => m + (Math.floor(b / st) % batch[a]) * own[a], 0);
    seen.set(matrix, Math.max(seen.get(matrix) ?? 0, countOf(b, batch, countShape, counts)));
  }
  const out = values.slice();
  for (const [matrix, n] of seen) out.fill(NaN, (matrix * rows + Math.min(n, rows)) * width, (matrix + 1) * rows * width);
  return out;
}

describe.each(CASES.map((c) => [c.label, c] as const))('attention over a key count: %s', (_label, c) => {
  test('the reference equals the masked form; the kernel agrees at every count and reads no key past it', async () => {
    const [keyed, masked] = [build(c, 'count'), build(c, 'masked')];
    const base = inputFeeds(keyed, 11);
    const batch = broadcastShapes(broadcastShapes(c.q.slice(0, -2), c.k.slice(0, -2))!, c.v.slice(0, -2))!;
    const tk = keyAxis(c.k);

    const plan = await compileGraph(keyed, { targets: [tuned(c.tuning)] });
    const kernel = plan.manifest.kernels.find((kd) => kd.ops.includes('attention'))!;
    const variant = kernel.variants[kernel.variants.length - 1];
    expect((await readBundle(plan.bundle)).text(variant.wgsl).split('\n').find((l) => l.startsWith('// archetype:'))).toMatch(c.archetype);
    // one dispatch: the count is read by the kernel, not made into a mask
    expect(plan.manifest.entryPoints.run.dispatches).toHaveLength(1);

    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      for (const counts of c.runs) {
        const count = c.dtype === 'i32' ? Int32Array.from(counts) : Float32Array.from(counts);
        const feeds = { ...base, count };
        const reference = interpret(keyed, feeds, new Map()).y;
        const matrices = elementCount(batch);
        const perMatrix = reference.length / matrices;
        if (counts.every((n) => n > 0) && c.counts.length <= batch.length) {
          // the masked form: exp(-1e9) is 0 in float64 too, so the weights are the same
          const written = interpret(masked, { ...base, hidden: hiddenFor(counts, tk) }, new Map()).y;
          expectClose(reference, written, 1e-12, 0, `reference at counts ${counts}`);
        }
        // a matrix that sees no key gives zeros
        for (let b = 0; b < matrices; b++) {
          if (countOf(b, batch, c.counts, counts) === 0) expect(reference.subarray(b * perMatrix, (b + 1) * perMatrix).every((x) => x === 0)).toBe(true);
        }
        expect(reference.every(Number.isFinite)).toBe(true);
        const gpuFeeds = { ...feeds, k: poisoned(base.k, c.k, batch, c.counts, counts), v: poisoned(base.v, c.v, batch, c.counts, counts) };
        const y = (await session.run(gpuFeeds)).y as Float32Array;
        expectClose(y, reference, 2e-5, 1e-4, `output at counts ${counts}`);
      }
    } finally {
      session.destroy();
    }
  });
});

describe('the shape rule', () => {
  test('the count is f32, i32 or u32, one value or one per batch matrix', () => {
    const g = new Graph('errors');
    const [q, k] = [g.input('q', [2, 3, 5, 4]), g.input('k', [3, 7, 4])];
    const zero = g.constant(0);
    const attend = (count: ReturnType<Graph['input']>) => () => g.attention(q, k, k, zero, { scale: 1, keyCount: count });
    expect(attend(g.input('c1', [2, 3], 'i32'))).not.toThrow();
    expect(attend(g.input('c2', [1, 1, 1]))).not.toThrow();
    expect(attend(g.input('c3', [2, 1]))).not.toThrow();
    expect(attend(g.input('c4', [4]))).toThrow(/attention: keyCount \[4\] must be one value or broadcast to the batch axes \[2, 3\] \(one count per matrix\)/);
    expect(attend(g.input('c5', [2, 3, 1]))).toThrow(/keyCount \[2, 3, 1\] must be one value or broadcast to the batch axes \[2, 3\]/);
    expect(attend(g.input('c6', [1], 'f16'))).toThrow(/keyCount must be f32, i32 or u32; got f16/);
    expect(() => g.apply('attention', [q, k, k, zero, g.input('c7', [1])], { scale: 1 })).toThrow(/attention: takes 4 operands \(q, k, v, mask\); got 5/);
    expect(() => g.apply('attention', [q, k, k, zero], { scale: 1, keyCount: true })).toThrow(/takes 5 operands \(q, k, v, mask, keyCount\); got 4/);
  });
});
