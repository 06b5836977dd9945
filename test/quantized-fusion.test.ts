// Products of packed weights (matmulQuantized: f16/bf16 storage, GGUF blocks) take the float
// products' fusions (fuse.egg "matmul (packed B)": the fused product with a packed B): an
// RMSNorm read into the product, the bias/activation/SwiGLU/residual epilogue, rope and the KV
// cache write. Checked here: a packed toy Llama's decode and prefill dispatch the kernels the
// f32 plan does; the fused kernels of every matrix-vector variant (units, chunks, dot4) and the
// tiled one against the float64 CPU reference of the unfused graph, which multiplies the
// dequantized weights; and a toy Llama of Q8_0 and Q4_K weights against the independent float64
// forward (test/llama-reference.ts) given the same dequantized weights.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { elementCount, type WeightDType } from '../compiler/ir/types';
import type { Target } from '../compiler/target/target';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { QuantizedMatvecTuning } from '../compiler/target/tuning';
import { LLAMA_TRAIN_CONFIG } from '../fixtures/models/llama-train-tiny';
import { randomValues } from '../fixtures/gguf/models';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { dequantize, ggmlType, type SupportedTypeName } from '../runtime/ggml-types';
import { loadPlan } from '../runtime/index';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';
import { randomCheckpoint, referenceLogits, type Weights } from './llama-reference';
import { inputFeeds } from './random-feeds';

afterAll(releaseSharedDevice);

const GGML: Record<WeightDType, SupportedTypeName> = { f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0', q4_1: 'Q4_1', q5_0: 'Q5_0', q5_1: 'Q5_1', q4_k: 'Q4_K', q5_k: 'Q5_K', q6_k: 'Q6_K' };

/** A toy Llama whose products' K are whole Q4_K super-blocks: hidden 256, FFN 512, 4 heads of 64 over 2, 2 layers, tied head. */
const CONFIG: HfLlamaConfig = { ...LLAMA_TRAIN_CONFIG, hidden_size: 256, intermediate_size: 512 };
const s = llamaShape(CONFIG);

/** The toy Llama's graph, its projections packed as `dtype` (values from `weights`, else zeros); norms and the embedding (the tied head) stay f32. */
function packedLlama(options: LlamaOptions, dtype?: WeightDType, weights?: Weights): Graph {
  const g = new Graph('llama_packed');
  const values = (name: string) => Float32Array.from(weights!.get(name)!.data);
  const parameter = (name: string, shape: number[], role: string): Tensor | undefined => {
    if (role === 'linear' && dtype) return g.packedParameter(name, shape, dtype, weights ? quantize(GGML[dtype], values(name)) : undefined);
    return weights ? g.parameter(name, shape, { init: values(name) }) : undefined;
  };
  for (const [name, t] of Object.entries(llama(g, CONFIG, { ...options, parameter }))) g.output(name, t);
  return g;
}

/** A kernel's ops with a float product's spelled as a packed one's: `transpose matmul` (B read transposed) is matmulQuantized. */
const asPacked = (ops: readonly string[]) => (ops.includes('matmul') ? ops.filter((o) => o !== 'transpose').map((o) => (o === 'matmul' ? 'matmulQuantized' : o)) : [...ops]);

describe('a packed toy Llama dispatches what the f32 plan does', () => {
  // a prompt of 16 rows: the prefill's products take their norms, ropes and cache writes, f32 and packed alike
  const options: LlamaOptions = { maxSequence: 24, maxPrompt: 16 };
  const kernelsOf = async (g: Graph, weightStorage: 'f32' | 'bf16' = 'f32') => {
    const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(options), targets: [NVIDIA_HOPPER], weightStorage });
    const byEntry = (entry: string) => plan.manifest.entryPoints[entry].dispatches.map((d) => asPacked(plan.manifest.kernels[d.kernel].ops).join(' ')).sort();
    return { decode: byEntry('decode'), prefill: byEntry('prefill') };
  };
  test('decode and prefill: bf16 storage, Q8_0 and Q4_K projections', async () => {
    const f32 = await kernelsOf(packedLlama(options));
    // each layer's decode: q (norm, rope), k (norm, rope, cache), v (norm, cache), o (+ residual), gate (norm), up (norm, SwiGLU), down (+ residual), attention
    expect(f32.decode.filter((k) => k === 'rmsNorm matmulQuantized rope cacheWrite')).toHaveLength(s.layers);
    expect(f32.decode.filter((k) => k === 'rmsNorm matmulQuantized swiglu')).toHaveLength(s.layers);
    // the tied head is f32 in the packed-projection plans, bf16 with bf16 storage: one product either way
    const packed = { bf16: await kernelsOf(packedLlama(options), 'bf16'), q8_0: await kernelsOf(packedLlama(options, 'q8_0')), q4_k: await kernelsOf(packedLlama(options, 'q4_k')) };
    for (const [dtype, kernels] of Object.entries(packed)) {
      expect(kernels.decode, `${dtype} decode`).toEqual(f32.decode);
      expect(kernels.prefill, `${dtype} prefill`).toEqual(f32.prefill);
    }
  }, 120_000);
});

/** What a fused-product case builds: x of `m` rows through products of packed w of `dtype`, with the parts a decoder layer has. */
interface ProductCase {
  dtype: WeightDType;
  m: number;
  /**
   * k: norm, rope, cache write; q: norm, rope of the first 8 of 16 features; v: norm, cache
   * write; o: + residual; f: norm, SwiGLU; b: x of 2 matrices of m rows, normed, + a residual
   * per matrix (broadcast over its rows: the stores read it by batch)
   */
  parts: readonly ('k' | 'q' | 'v' | 'o' | 'f' | 'b')[];
}

const K = 256;
/** heads of 16 features, 2 of them: the rope'd and cached products' N */
const HEADS = [2, 16] as const;

/**
 * The unfused graph of the cases (ordinary builder calls, as models/llama.ts writes a layer),
 * outputs named `${part}${j}`; returns each output's [rows, columns] and the packed weight and
 * normed input behind it, for the dot4 bound.
 */
function productGraph(cases: readonly ProductCase[], seed: number): { g: Graph; outputs: Map<string, { w: string; x: string; norm?: string; rope: boolean }> } {
  const g = new Graph('packed_products');
  const outputs = new Map<string, { w: string; x: string; norm?: string; rope: boolean }>();
  cases.forEach((c, j) => {
    const x = g.input(`x${j}`, [c.m, K]);
    const gain = g.input(`gain${j}`, [K]);
    const h = g.rmsNorm(x, gain, { eps: 1e-5 });
    const positions = c.parts.includes('k') || c.parts.includes('q') ? g.input(`positions${j}`, [c.m, 1]) : undefined!;
    const offset = g.constant(Float32Array.of(3), [1], `offset${j}`);
    const packed = (name: string, rows: number) => g.packedParameter(`${name}${j}`, [rows, K], c.dtype, quantize(GGML[c.dtype], randomValues(seed++, rows * K)));
    const n = HEADS[0] * HEADS[1];
    for (const part of c.parts) {
      const w = packed(`w${part}`, part === 'o' ? K : part === 'f' ? 64 : n);
      const named = (y: Tensor, norm = true, rope = false) => {
        g.output(`${part}${j}`, y);
        outputs.set(`${part}${j}`, { w: `w${part}${j}`, x: part === 'o' ? `a${j}` : `x${j}`, ...(norm ? { norm: `gain${j}` } : {}), rope });
      };
      const heads = (y: Tensor) => g.reshape(y, [c.m, ...HEADS]);
      if (part === 'k') named(g.cacheWrite(g.state(`cache_k${j}`, [HEADS[0], 16, HEADS[1]]), g.reshape(g.rope(heads(g.matmulQuantized(h, w)), positions, { theta: 10000 }), [HEADS[0], c.m, HEADS[1]]), offset), true, true);
      if (part === 'q') named(g.reshape(g.rope(heads(g.matmulQuantized(h, w)), positions, { theta: 10000, rotaryDim: 8 }), [c.m, n]), true, true);
      if (part === 'v') named(g.cacheWrite(g.state(`cache_v${j}`, [HEADS[0], 16, HEADS[1]]), g.reshape(g.matmulQuantized(h, w), [HEADS[0], c.m, HEADS[1]]), offset));
      if (part === 'o') named(g.add(x, g.matmulQuantized(g.input(`a${j}`, [c.m, K]), w)), false);
      if (part === 'f') {
        const up = packed('wup', 64);
        named(g.swiglu(g.matmulQuantized(h, w), g.matmulQuantized(h, up)));
      }
      if (part === 'b') named(g.add(g.input(`r${j}`, [2, 1, n]), g.matmulQuantized(g.rmsNorm(g.input(`xb${j}`, [2, c.m, K]), gain, { eps: 1e-5 }), w)));
    }
  });
  return { g, outputs };
}

/**
 * The dot4 kernel's error: x (normed by its gain) rounded to int8 per 32 values, at most half
 * of max|x'|/127 a value, times |w|, scaled by the row's 1/rms; a rope's value mixes its
 * partner's (|cos|, |sin| ≤ 1), so a rope'd output takes the bound of its head's every column.
 */
function dot4Bound(feeds: Record<string, Float32Array>, parameters: Map<string, Float32Array>, source: { w: string; x: string; norm?: string; rope: boolean }, m: number): Float64Array {
  const x = feeds[source.x];
  const gain = source.norm ? feeds[source.norm] : undefined;
  const w = parameters.get(source.w)!;
  const n = w.length / K;
  const bound = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const row = Float64Array.from({ length: K }, (_, k) => x[i * K + k] * (gain ? gain[k] : 1));
    const scale = gain ? 1 / Math.sqrt(x.subarray(i * K, (i + 1) * K).reduce((t, v) => t + v * v, 0) / K + 1e-5) : 1;
    const half = row.map((_, k) => (Math.max(...row.subarray(k - (k % 32), k - (k % 32) + 32).map(Math.abs)) / 127 / 2) * 1.001);
    for (let jn = 0; jn < n; jn++) {
      let b = 0;
      for (let k = 0; k < K; k++) b += Math.abs(w[jn * K + k]) * half[k];
      bound[i * n + jn] = b * scale;
    }
    if (source.rope) {
      for (let h = 0; h < n; h += HEADS[1]) {
        const worst = Math.max(...bound.subarray(i * n + h, i * n + h + HEADS[1]));
        bound.fill(2 * worst, i * n + h, i * n + h + HEADS[1]);
      }
    }
  }
  return bound;
}

describe('fused products of packed weights equal the unfused graph, in every matrix-vector kernel and the tiled one', () => {
  const tuned = (tuning: QuantizedMatvecTuning, limits = GENERIC.limits): Target => withTuning({ ...GENERIC, limits }, { quantizedMatvec: tuning });
  const every = ['k', 'q', 'v', 'o', 'f'] as const;
  const plans: { label: string; target: Target; cases: ProductCase[] }[] = [
    {
      // units, 8 lanes a row, 4 rows each; 12 rows of x add their sums 8 rows at a time; 20 take
      // the tiled kernel (epilogues only: the norm stays a kernel of its own)
      label: 'units (generic)',
      target: GENERIC,
      cases: [
        { dtype: 'q8_0', m: 1, parts: [...every, 'b'] },
        { dtype: 'q4_k', m: 3, parts: every },
        { dtype: 'bf16', m: 1, parts: every },
        { dtype: 'q6_k', m: 12, parts: every },
        { dtype: 'q5_0', m: 20, parts: ['o', 'f', 'b'] },
      ],
    },
    // 32 lanes and one row an invocation: a workgroup of 1 row, so a rope takes 8 lanes to hold its pairs
    { label: 'units, 32 lanes, 1 row', target: tuned({ kernel: 'units', lanesPerRow: 32, rowsPerTeam: 1, stepsInFlight: 1 }), cases: [{ dtype: 'f16', m: 2, parts: ['k', 'q', 'o'] }, { dtype: 'q5_k', m: 1, parts: ['k', 'f'] }] },
    { label: 'chunks', target: tuned({ kernel: 'chunks', lanesPerRow: 8, rowsPerTeam: 1, stepsInFlight: 1 }), cases: [{ dtype: 'q4_0', m: 1, parts: every }, { dtype: 'q4_k', m: 11, parts: ['k', 'q'] }] },
    // 32 KiB of workgroup memory (llvmpipe has it), so the dot4 variant is the one that runs
    {
      label: 'dot4',
      target: tuned({ kernel: 'dot4', lanesPerRow: 16, rowsPerTeam: 2, stepsInFlight: 1 }, { ...GENERIC.limits, maxComputeWorkgroupStorageSize: 32768 }),
      cases: [{ dtype: 'q8_0', m: 1, parts: ['q', 'o'] }, { dtype: 'q4_k', m: 3, parts: ['q', 'o'] }],
    },
  ];
  for (const { label, target, cases } of plans) {
    test(label, async () => {
      const { g, outputs } = productGraph(cases, 900);
      const ranges = Object.fromEntries(cases.flatMap((_, j) => [[`gain${j}`, [0.5, 1.5]], [`positions${j}`, [0, 300]]])) as Record<string, [number, number]>;
      const feeds = inputFeeds(g, 31, ranges);
      const plan = await compileGraph(g, { targets: [target] });
      // the fused kernels the decoder layer's products get (above 16 rows the norm is a kernel of its own)
      const kernels = plan.manifest.entryPoints.run.dispatches.map((d) => plan.manifest.kernels[d.kernel].ops.join(' '));
      const decodeLike = cases.filter((c) => c.m <= 16);
      const fused = (ops: string, part: string) => expect(kernels.filter((k) => k === ops).length, ops).toBe(decodeLike.filter((c) => c.parts.includes(part as never)).length);
      fused('rmsNorm matmulQuantized rope cacheWrite', 'k');
      fused('rmsNorm matmulQuantized rope', 'q');
      fused('rmsNorm matmulQuantized cacheWrite', 'v');
      fused('rmsNorm matmulQuantized swiglu', 'f');
      expect(kernels.filter((k) => k === 'rmsNorm matmulQuantized add').length).toBe(cases.filter((c) => c.parts.includes('b') && 2 * c.m <= 16).length);
      // o, and b over more than 16 rows (its norm a kernel of its own)
      expect(kernels.filter((k) => k === 'matmulQuantized add').length).toBe(cases.filter((c) => c.parts.includes('o')).length + cases.filter((c) => c.parts.includes('b') && 2 * c.m > 16).length);
      const state = new Map(g.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
      const expected = interpret(g, feeds, plan.parameters, { state });
      const actual = await runOnGpu(plan.bundle, feeds);
      cases.forEach((c, j) => {
        for (const part of c.parts) {
          const name = `${part}${j}`;
          // f32 accumulation over K (fusion-kernels.test.ts's tolerance); dot4: x's int8 rounding on top
          const atol = 1e-4 + 2e-5 * K;
          if (label === 'dot4') {
            const bound = dot4Bound(feeds, plan.parameters, outputs.get(name)!, c.m);
            for (let i = 0; i < bound.length; i++) {
              const error = Math.abs(actual[name][i] - expected[name][i]);
              if (!(error <= bound[i] + atol)) expect.fail(`${name} ${c.dtype}[${i}]: gpu ${actual[name][i]} vs reference ${expected[name][i]} (|diff| ${error} > ${bound[i] + atol})`);
            }
          } else {
            expectClose(actual[name], expected[name], atol, 1e-4, `${label}: ${name} (${c.dtype}, ${c.m} rows)`);
          }
        }
      });
    }, 300_000);
  }
});

describe('a toy Llama of packed projections, decode and prefill against the float64 forward of its dequantized weights', () => {
  // a prompt of up to 20 rows: prefill's products take the tiled kernel with their epilogues, decode's the fused matrix-vector kernels
  const options: LlamaOptions = { maxSequence: 24, maxPrompt: 20 };
  const SEQUENCE = Int32Array.from([17, 203, 5, 99, 250, 1, 42, 131, 77, 8, 299, 60, 3, 141]);
  const weights = randomCheckpoint(s, 23);
  test.each([
    ['q8_0', GENERIC],
    ['q4_k', withTuning(GENERIC, { quantizedMatvec: { kernel: 'chunks', lanesPerRow: 8, rowsPerTeam: 1, stepsInFlight: 1 } })],
  ] as const)('%s', async (dtype, target) => {
    const g = packedLlama(options, dtype, weights);
    const plan = await compileGraph(g, { entries: llamaEntries(options), targets: [target] });
    const kernelsOf = (entry: string) => plan.manifest.entryPoints[entry].dispatches.map((d) => plan.manifest.kernels[d.kernel].ops.join(' '));
    const kernels = kernelsOf('decode');
    expect(kernels.filter((k) => k === 'rmsNorm matmulQuantized rope cacheWrite')).toHaveLength(s.layers);
    // prefill's 20 rows take the tiled kernel: its k and v products store into the cache (k rope'd), q is rope'd, the norms stay kernels of their own
    const prefill = kernelsOf('prefill');
    expect(prefill.filter((k) => k === 'matmulQuantized rope cacheWrite')).toHaveLength(s.layers);
    expect(prefill.filter((k) => k === 'matmulQuantized cacheWrite')).toHaveLength(s.layers);
    expect(prefill.filter((k) => k === 'rope' || k === 'cacheWrite')).toHaveLength(0);
    // the reference multiplies what the plan holds: each projection's dequantized blocks
    const dequantized: Weights = new Map(
      [...weights].map(([name, w]) => [name, w.shape.length === 2 && name !== 'model.embed_tokens.weight' ? { shape: w.shape, data: Float64Array.from(dequantize(ggmlType(GGML[dtype]), quantize(GGML[dtype], Float32Array.from(w.data)), w.data.length)) } : w]),
    );
    const expected = referenceLogits(s, dequantized, SEQUENCE);
    const row = (t: number) => expected.subarray(t * s.vocab, (t + 1) * s.vocab);
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const prompt = new Int32Array(20);
      prompt.set(SEQUENCE.subarray(0, 10));
      const prefill = await session.run({ prompt, length: Float32Array.of(10) }, 'prefill');
      expectClose(prefill.prefill_logits, row(9), 2e-4, 2e-4, `${dtype} prefill_logits`);
      for (let p = 10; p < SEQUENCE.length; p++) {
        const step = await session.run({ token: SEQUENCE.subarray(p, p + 1), position: Float32Array.of(p) }, 'decode');
        expectClose(step.logits, row(p), 2e-4, 2e-4, `${dtype} decode logits at position ${p}`);
      }
    } finally {
      session.destroy();
    }
  }, 300_000);
});

test('the fused product of a packed weight refuses what its kernels do not do, naming it', () => {
  const refusal = (build: (g: Graph) => unknown): string => {
    try {
      build(new Graph('bad'));
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('not refused');
  };
  const packed = (g: Graph) => g.packedParameter('w', [8, 64], 'q8_0', quantize('Q8_0', randomValues(1, 8 * 64)));
  const norm = (g: Graph) => ({ weight: g.input('gain', [64]), eps: 1e-5 });
  expect(refusal((g) => g.fusedMatmul(g.input('x', [1, 64]), packed(g), { transposeB: true }))).toMatch(/^fusedMatmul: a product of a packed b \(q8_0\) with nothing fused is matmulQuantized/);
  expect(refusal((g) => g.fusedMatmul(g.input('x', [17, 64]), packed(g), { transposeB: true, norm: norm(g) }))).toMatch(
    /a normed product of a packed b \(q8_0\) takes at most 16 rows of A in all \(the quantized matrix-vector kernel's\); A has 17/,
  );
  expect(refusal((g) => g.fusedMatmul(g.input('x', [2, 8]), packed(g), { norm: { weight: g.input('gain', [8]), eps: 1e-5 } }))).toMatch(/a normed product of a packed b \(q8_0\) reads it as \[N, K\], transposed/);
  expect(refusal((g) => g.fusedMatmul(g.input('x', [64, 1]), packed(g), { transposeA: true, transposeB: true, residual: g.input('r', [1, 8]) }))).toMatch(/reads A as stored, not transposed/);
});
