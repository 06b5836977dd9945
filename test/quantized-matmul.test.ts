// matmulQuantized on the GPU (Dawn; llvmpipe here) against the float64 CPU reference, for
// every packed weight type: random weights quantized by compiler/frontends/gguf/quantize.ts,
// products with one row of x and several (the matrix-vector kernel up to 8, the tiled one
// beyond), K not a multiple of the matrix-vector stride, N not a multiple of its rows per
// workgroup, w in both layouts. The reference multiplies the same dequantized values, so the
// tolerance is f32 accumulation's, not the quantization's. Then a GGUF file's tensors run
// through the op with their bytes as the file holds them, and the refusals.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph, compileGraphToFile } from '../compiler/compile';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { CompileError } from '../compiler/ir/errors';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { packedWeightTypes, weightDTypeOfGgml, type WeightDType } from '../compiler/ir/types';
import { GENERIC, NVIDIA_HOPPER, withTuning } from '../compiler/target/targets';
import type { QuantizedMatvecTuning } from '../compiler/target/tuning';
import { randomValues } from '../fixtures/gguf/models';
import { loadTrainingPlan, PlanError, readBundle } from '../runtime/index';
import { decodeSafetensors } from '../runtime/safetensors';
import { dequantize, ggmlType, SUPPORTED_TYPES, type SupportedTypeName } from '../runtime/ggml-types';
import { parseGguf, tensorBytes } from '../runtime/gguf';
import { handPlan, withManifest } from './hand-plan';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const TYPES = packedWeightTypes(SUPPORTED_TYPES) as [WeightDType, SupportedTypeName][];

/**
 * w's [N, K] per type: 13 and 11 rows (16 per matrix-vector workgroup by default: 4 groups
 * of 8 lanes, 4 rows each). Its units are 32 values (f16/bf16: 4), taken 64 at a time by the
 * workgroup (f16/bf16: 256) for as many steps as the tuning loads at once, then one step at a
 * time: K = 2144 is 67 units of the 32-value blocks, 2816 is 88 units of 11 super-blocks,
 * f16/bf16's 1100 is 275 units, so each ends in a part of a step; 2144 and 1100 are no
 * multiple of the first kernel's 16-value chunks either, and the odd number of blocks per row
 * starts blocks of 18, 22 or 34 bytes on both halves of a word.
 */
const weightShape = (dtype: WeightDType): [number, number] => (dtype.endsWith('_k') ? [11, 2816] : dtype.endsWith('16') ? [13, 1100] : [13, 2144]);

/**
 * The products per type: x's shape and w's layout; rows of x 1, 3, 8 (2 × 4 folded), 9 (the
 * matrix-vector kernel adds the sums of 8 rows of x at a time: here 8, then 1) and 17; w as
 * [K, N] with 1 and 10 rows.
 */
const PRODUCTS: { x: (n: number, k: number) => number[]; transposeB: boolean; kernel: 'matrix-vector' | 'tiled' }[] = [
  { x: (_n, k) => [1, k], transposeB: true, kernel: 'matrix-vector' },
  { x: (_n, k) => [3, k], transposeB: true, kernel: 'matrix-vector' },
  { x: (_n, k) => [2, 4, k], transposeB: true, kernel: 'matrix-vector' },
  { x: (_n, k) => [9, k], transposeB: true, kernel: 'matrix-vector' },
  { x: (_n, k) => [17, k], transposeB: true, kernel: 'tiled' },
  { x: (n) => [1, n], transposeB: false, kernel: 'tiled' },
  { x: (n) => [10, n], transposeB: false, kernel: 'tiled' },
];

/**
 * Per output element, the bound on f32 accumulation error whatever the summation order:
 * |ŷ − y| ≤ (terms + 2)·u·Σ|x·w| with u = 2^-24 (one more u for the decoder's rounding of
 * d·q where it fuses differently from the reference's).
 */
function accumulationBound(x: ArrayLike<number>, w: ArrayLike<number>, m: number, k: number, n: number, transposeB: boolean): Float64Array {
  const bound = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += Math.abs(x[i * k + p] * w[transposeB ? j * k + p : p * n + j]);
      bound[i * n + j] = (k + 2) * 2 ** -24 * s;
    }
  }
  return bound;
}

function expectWithin(name: string, actual: Float32Array, expected: Float64Array, bound: Float64Array): void {
  expect(actual.length, name).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= bound[i])) expect.fail(`${name}[${i}]: gpu ${actual[i]} vs reference ${expected[i]} (|diff| ${error.toExponential(2)} > ${bound[i].toExponential(2)})`);
  }
}

describe('every packed type against the float64 reference, in one plan', () => {
  const g = new Graph('quantized_products');
  const feeds: Record<string, Float32Array> = {};
  const checks: { output: string; x: string; w: string; m: number; k: number; n: number; transposeB: boolean; kernel: string }[] = [];
  let seed = 1;
  for (const [dtype, ggml] of TYPES) {
    const [rows, cols] = weightShape(dtype);
    const w = g.packedParameter(`w_${dtype}`, [rows, cols], dtype, quantize(ggml, randomValues(seed++, rows * cols)));
    PRODUCTS.forEach((product, i) => {
      const shape = product.x(rows, cols);
      const name = `x_${dtype}_${i}`;
      const [k, n] = product.transposeB ? [cols, rows] : [rows, cols];
      feeds[name] = randomValues(seed++, shape.reduce((a, b) => a * b, 1));
      const output = `y_${dtype}_${i}`;
      g.output(output, g.matmulQuantized(g.input(name, shape), w, { transposeB: product.transposeB }));
      checks.push({ output, x: name, w: `w_${dtype}`, m: feeds[name].length / k, k, n, transposeB: product.transposeB, kernel: product.kernel });
    });
  }
  const compiled = compileGraph(g);

  test('each product runs the kernel its rows and layout call for, validated by naga', async () => {
    const { bundle, manifest } = await compiled;
    const { text } = await readBundle(bundle);
    const dispatches = manifest.entryPoints.run.dispatches;
    for (const check of checks) {
      // the dispatch writing the output's buffer (the optimizer renames nodes)
      const buffer = manifest.entryPoints.run.outputs.find((o) => o.name === check.output)!.buffer;
      const dispatch = dispatches.filter((d) => d.buffers[d.buffers.length - 1] === buffer);
      expect(dispatch, check.output).toHaveLength(1);
      const kernel = manifest.kernels[dispatch[0].kernel];
      const portable = kernel.variants[kernel.variants.length - 1];
      expect(portable.validatedBy, check.output).toBe('naga');
      expect(Object.keys(portable.translations).sort()).toEqual(['hlsl', 'msl', 'spirv']);
      const wgsl = text(portable.wgsl);
      expect(wgsl, check.output).toMatch(check.kernel === 'matrix-vector' ? /archetype: quantized matrix-vector product/ : /archetype: tiled matmul/);
      if (check.kernel === 'tiled') expect(wgsl, check.output).toContain(`fn q_dq4(bb: u32, e: u32) -> vec4<f32>`);
    }
    // each weight's bytes are stored once, as given, and bound as 32-bit words
    for (const [dtype] of TYPES) {
      const buffer = manifest.buffers.find((b) => b.name === `w_${dtype}`)!;
      expect(buffer).toMatchObject({ role: 'parameter', dtype, shape: weightShape(dtype) });
    }
  });

  test('GPU products equal the reference within f32 accumulation error', async () => {
    const { bundle, parameters } = await compiled;
    const expected = interpret(g, feeds, parameters);
    const actual = await runOnGpu(bundle, feeds);
    for (const c of checks) {
      const bound = accumulationBound(feeds[c.x], parameters.get(c.w)!, c.m, c.k, c.n, c.transposeB);
      expectWithin(c.output, actual[c.output], expected[c.output], bound);
    }
  });
});

// (nvidia-hopper's tuning, the dot4 kernel, is the next block's)
describe('the matrix-vector kernel under other tunings: the first kernel; 32 lanes a row, one row and one step; 4 lanes, four rows and three steps; 16 lanes, four rows', () => {
  const TUNINGS: QuantizedMatvecTuning[] = [
    { kernel: 'chunks', lanesPerRow: 8, rowsPerTeam: 1, stepsInFlight: 1 },
    { kernel: 'units', lanesPerRow: 32, rowsPerTeam: 1, stepsInFlight: 1 },
    { kernel: 'units', lanesPerRow: 4, rowsPerTeam: 4, stepsInFlight: 3 },
    { kernel: 'units', lanesPerRow: 16, rowsPerTeam: 4, stepsInFlight: 1 },
  ];
  // a vec4 layout, a super-block read in 2-byte-aligned words, a 32-value block in them
  const types: [WeightDType, SupportedTypeName][] = [
    ['q5_k', 'Q5_K'],
    ['q6_k', 'Q6_K'],
    ['q5_0', 'Q5_0'],
  ];
  for (const tuning of TUNINGS) {
    test(`${tuning.kernel}, ${tuning.lanesPerRow} lanes, ${tuning.rowsPerTeam} row(s), ${tuning.stepsInFlight} step(s)`, async () => {
      const g = new Graph('quantized_tunings');
      const feeds: Record<string, Float32Array> = {};
      let seed = 500;
      for (const [dtype, ggml] of types) {
        const [n, k] = weightShape(dtype);
        const w = g.packedParameter(`w_${dtype}`, [n, k], dtype, quantize(ggml, randomValues(seed++, n * k)));
        for (const m of [1, 3]) {
          feeds[`x_${dtype}_${m}`] = randomValues(seed++, m * k);
          g.output(`y_${dtype}_${m}`, g.matmulQuantized(g.input(`x_${dtype}_${m}`, [m, k]), w));
        }
      }
      const { bundle, manifest, parameters } = await compileGraph(g, { targets: [withTuning(GENERIC, { quantizedMatvec: tuning })] });
      const { text } = await readBundle(bundle);
      for (const kernel of Object.values(manifest.kernels)) {
        expect(text(kernel.variants[kernel.variants.length - 1].wgsl)).toMatch(tuning.kernel === 'chunks' ? /fn q_dq4/ : /fn q_lo4/);
      }
      const expected = interpret(g, feeds, parameters);
      const actual = await runOnGpu(bundle, feeds);
      for (const [dtype] of types) {
        const [n, k] = weightShape(dtype);
        for (const m of [1, 3]) {
          const out = `y_${dtype}_${m}`;
          expectWithin(out, actual[out], expected[out], accumulationBound(feeds[`x_${dtype}_${m}`], parameters.get(`w_${dtype}`)!, m, k, n, true));
        }
      }
    });
  }
});

describe('the dot4 kernel: x rounded to int8 per 32 values, packed 4x8-bit dot products', () => {
  // Its error against x itself is x's rounding (at most half of max|x|/127 in each 32-value
  // block, times |w|) plus f32 accumulation; a wrong word, scale or offset of any segment would
  // be off by the size of the product, hundreds of times that.
  function roundingBound(x: Float32Array, w: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
    const half = Float64Array.from(x, (_, p) => {
      let amax = 0;
      for (let q = p - (p % 32); q < p - (p % 32) + 32; q++) amax = Math.max(amax, Math.abs(x[q]));
      return (amax / 127 / 2) * 1.001;
    });
    const f32 = accumulationBound(x, w, m, k, n, true);
    return f32.map((b, at) => {
      const [i, j] = [Math.floor(at / n), at % n];
      let r = 0;
      for (let p = 0; p < k; p++) r += Math.abs(w[j * k + p]) * half[i * k + p];
      return 2 * b + r;
    });
  }
  // every integer format; f16 stays on the units kernel (no quants to multiply as integers)
  const types = TYPES.filter(([dtype]) => dtype !== 'f16' && dtype !== 'bf16');
  for (const tuning of [{ ...NVIDIA_HOPPER.tuning.quantizedMatvec!, kernel: 'dot4' as const }, { kernel: 'dot4' as const, lanesPerRow: 4, rowsPerTeam: 2, stepsInFlight: 1 }]) {
    test(`${tuning.lanesPerRow} lanes a row, ${tuning.rowsPerTeam} rows an invocation; x of 1 and 3 rows`, async () => {
      const g = new Graph('quantized_dot4');
      const feeds: Record<string, Float32Array> = {};
      let seed = 700;
      for (const [dtype, ggml] of [...types, ['f16', 'F16'] as [WeightDType, SupportedTypeName]]) {
        const [n, k] = weightShape(dtype);
        const w = g.packedParameter(`w_${dtype}`, [n, k], dtype, quantize(ggml, randomValues(seed++, n * k)));
        for (const m of [1, 3]) {
          feeds[`x_${dtype}_${m}`] = randomValues(seed++, m * k);
          g.output(`y_${dtype}_${m}`, g.matmulQuantized(g.input(`x_${dtype}_${m}`, [m, k]), w));
        }
      }
      // 32 KiB of workgroup memory (WebGPU's default is 16): x of 3 rows of 2816 values as int8 with its scales and sums is 13.4 KiB
      const roomy = { ...GENERIC, limits: { ...GENERIC.limits, maxComputeWorkgroupStorageSize: 32768 } };
      const { bundle, manifest, parameters } = await compileGraph(g, { targets: [withTuning(roomy, { quantizedMatvec: tuning })] });
      const { text } = await readBundle(bundle);
      // the first variant the device takes (llvmpipe allows 32 KiB): dot4 for every integer format
      const sources = Object.values(manifest.kernels).map((kernel) => text(kernel.variants[0].wgsl));
      expect(sources.filter((wgsl) => wgsl.includes('dot4I8Packed'))).toHaveLength(2 * types.length);
      const expected = interpret(g, feeds, parameters);
      const actual = await runOnGpu(bundle, feeds);
      for (const [dtype] of types) {
        const [n, k] = weightShape(dtype);
        for (const m of [1, 3]) {
          const out = `y_${dtype}_${m}`;
          expectWithin(out, actual[out], expected[out], roundingBound(feeds[`x_${dtype}_${m}`], parameters.get(`w_${dtype}`)!, m, k, n));
        }
      }
      // f16 took the units kernel: f32 accumulation's bound alone
      const [n, k] = weightShape('f16');
      for (const m of [1, 3]) expectWithin(`y_f16_${m}`, actual[`y_f16_${m}`], expected[`y_f16_${m}`], accumulationBound(feeds[`x_f16_${m}`], parameters.get('w_f16')!, m, k, n, true));
    });
  }
});

test('the reference is x times the dequantized weights, and differs from the unquantized product by the quantization', () => {
  const g = new Graph('reference');
  const values = randomValues(3, 4 * 256);
  const bytes = quantize('Q4_K', values);
  g.output('y', g.matmulQuantized(g.input('x', [2, 256]), g.packedParameter('w', [4, 256], 'q4_k', bytes)));
  const x = randomValues(4, 2 * 256);
  const w = dequantize(ggmlType('Q4_K'), bytes, 4 * 256);
  const parameters = new Map([['w', w]]);
  const y = interpret(g, { x }, parameters).y;
  let quantizationError = 0;
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) {
      let exact = 0;
      let unquantized = 0;
      for (let p = 0; p < 256; p++) {
        exact += x[i * 256 + p] * w[j * 256 + p];
        unquantized += x[i * 256 + p] * values[j * 256 + p];
      }
      expect(y[i * 4 + j]).toBe(exact);
      quantizationError = Math.max(quantizationError, Math.abs(exact - unquantized));
    }
  }
  // the tolerance above is not the quantization's: that is orders of magnitude larger
  expect(quantizationError).toBeGreaterThan(1e-3);
});

test("a GGUF file's tensors run through the op with their bytes as the file stores them", async () => {
  const file = new Uint8Array(readFileSync(new URL('../fixtures/gguf/blocks.gguf', import.meta.url)));
  const gguf = parseGguf(file, 'blocks.gguf');
  const g = new Graph('blocks');
  const stored = new Map<string, Uint8Array>();
  const feeds: Record<string, Float32Array> = {};
  let seed = 100;
  for (const t of gguf.tensors.values()) {
    const dtype = weightDTypeOfGgml(t.type.name);
    if (t.type.name === 'F32') continue;
    expect(dtype, t.name).toBeDefined();
    const bytes = tensorBytes(file, t);
    // a view of the file: nothing copied on the way in
    expect(bytes.buffer).toBe(file.buffer);
    stored.set(t.name, bytes);
    const w = g.packedParameter(t.name, t.shape, dtype!, bytes);
    for (const m of [1, 9]) {
      const x = `x_${dtype}_${m}`;
      feeds[x] = randomValues(seed++, m * t.shape[1]);
      g.output(`y_${dtype}_${m}`, g.matmulQuantized(g.input(x, [m, t.shape[1]]), w));
    }
  }
  expect(stored.size).toBe(10);
  const { bundle, manifest, parameters } = await compileGraph(g);
  // written as it is made (weights drawn when the writer reaches them), the same plan
  const written = join(mkdtempSync(join(tmpdir(), 'mnc-quantized-')), 'blocks.mnplan');
  await compileGraphToFile(g, written);
  expect(Buffer.from(readFileSync(written)).equals(Buffer.from(bundle))).toBe(true);
  rmSync(dirname(written), { recursive: true });
  const plan = await readBundle(bundle);
  for (const [name, bytes] of stored) {
    const buffer = manifest.buffers.find((b) => b.name === name)!;
    expect(buffer.byteLength, name).toBe(bytes.length);
    const slice = plan.section(buffer.init!.section).subarray(buffer.init!.offset, buffer.init!.offset + buffer.init!.length);
    expect(Buffer.from(slice).equals(Buffer.from(bytes)), `${name}: the plan holds the file's bytes`).toBe(true);
    // the reference reads them dequantized by the reader's own dequantizer
    const t = gguf.tensors.get(name)!;
    expect(parameters.get(name)).toEqual(dequantize(t.type, bytes, t.elements, name));
  }
  const expected = interpret(g, feeds, parameters);
  const actual = await runOnGpu(bundle, feeds);
  for (const t of gguf.tensors.values()) {
    if (t.type.name === 'F32') continue;
    const dtype = weightDTypeOfGgml(t.type.name)!;
    const [n, k] = t.shape;
    for (const m of [1, 9]) {
      const out = `y_${dtype}_${m}`;
      expectWithin(out, actual[out], expected[out], accumulationBound(feeds[`x_${dtype}_${m}`], parameters.get(t.name)!, m, k, n, true));
    }
  }
});

describe('refusals', () => {
  const refusal = (build: (g: Graph) => unknown): string => {
    try {
      build(new Graph('bad'));
    } catch (e) {
      expect(e).toBeInstanceOf(CompileError);
      return (e as Error).message;
    }
    throw new Error('not refused');
  };
  const q8 = (rows: number, cols: number) => quantize('Q8_0', randomValues(1, rows * cols));

  test('the builder names the op, the operand and what it takes', () => {
    expect(refusal((g) => g.matmulQuantized(g.input('x', [2, 64]), g.parameter('w', [3, 64])))).toMatch(
      /^matmulQuantized: w must be a packed weight \(f16, bf16, q8_0, .*\); got f32 \(use matmul\)/,
    );
    expect(refusal((g) => g.matmulQuantized(g.input('x', [2, 32]), g.packedParameter('w', [3, 64], 'q8_0', q8(3, 64))))).toMatch(
      /inner dimensions differ: x is \[2, 32\] \(K = 32\) and w is \[3, 64\] \[N, K\] \(K = 64\)/,
    );
    expect(refusal((g) => g.matmulQuantized(g.input('x', [64]), g.packedParameter('w', [3, 64], 'q8_0', q8(3, 64))))).toMatch(/x must have rank 2 or more/);
    expect(refusal((g) => g.packedParameter('w', [3, 48], 'q8_0'))).toMatch(/'w' has shape \[3, 48\]; a q8_0 tensor's last axis must be a multiple of its block of 32/);
    expect(refusal((g) => g.packedParameter('w', [3, 64], 'q4_k'))).toMatch(/multiple of its block of 256/);
    expect(refusal((g) => g.packedParameter('w', [3, 64], 'q8_0', new Uint8Array(100)))).toMatch(/'w' \[3, 64\] q8_0 takes 204 bytes; got 100/);
    expect(refusal((g) => g.packedParameter('w', [3, 64], 'q3_k' as WeightDType))).toMatch(/'w' has dtype q3_k; a packed parameter is f16, bf16 or a ggml block type/);
    expect(refusal((g) => g.matmulQuantized(g.input('x', [1, 6]), g.packedParameter('w', [2, 6], 'f16')))).toMatch(/needs a multiple of 4 values per row/);
    expect(refusal((g) => g.input('x', [2, 32], 'q8_0'))).toMatch(/'x' is q8_0: packed weights are parameters \(packedParameter\), not inputs/);
    expect(refusal((g) => g.output('w', g.packedParameter('w', [1, 32], 'q8_0')))).toMatch(/output 'w' is a packed q8_0 tensor; outputs hold element dtypes/);
  });

  test('a packed weight is frozen: training leaves it alone and x still gets its gradient', async () => {
    const g = new Graph('frozen');
    const x = g.parameter('x', [1, 64], { init: { uniform: [-1, 1] } });
    const y = g.matmulQuantized(x, g.packedParameter('w', [3, 64], 'q8_0', q8(3, 64)));
    g.output('loss', g.mean(g.reshape(g.mul(y, y), [-1]), 0));
    const { bundle, manifest } = await compileGraph(g, { training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.1 } } });
    expect(manifest.training!.parameters.map((p) => [p.name, p.trainable])).toEqual([
      ['x', true],
      ['w', false],
    ]);
    // a step runs, and the state file holds what training changes: x, not the packed w
    const session = await loadTrainingPlan(bundle, (await sharedDevice()).device);
    try {
      await session.step({});
      const state = decodeSafetensors(await session.exportState({ optimizer: false }), 'state');
      expect([...state.tensors.keys()]).toEqual(['x']);
      await session.importState(await session.exportState());
    } finally {
      session.destroy();
    }
  });

  test('the runtime refuses an unknown dtype, a packed buffer its block does not fit and a packed entry input', async () => {
    const error = async (bytes: Uint8Array) => {
      const e = await readBundle(bytes).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(e).toBeInstanceOf(PlanError);
      expect((e as PlanError).kind).toBe('bad-manifest');
      return (e as PlanError).message;
    };
    const good = handPlan();
    const setBuffer = (fields: object) => withManifest(good, (m) => Object.assign(m.buffers[1], fields));
    expect(await error(setBuffer({ dtype: 'q3_k' }))).toMatch(/buffers\[1\]\.dtype.*must be one of f32, f16, i32, u32, i8, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k/);
    expect(await error(setBuffer({ dtype: 'q4_0', shape: [100] }))).toMatch(/buffers\[1\]\.shape.*must end in a multiple of 32, the q4_0 block/);
    expect(await error(setBuffer({ dtype: 'q4_0', shape: [2, 96], byteLength: 100 }))).toMatch(/buffers\[1\]\.byteLength.*\(100\) is less than the 108 bytes of 192 q4_0 values/);
    expect(await error(withManifest(good, (m) => ((m.entryPoints.run.inputs[0] as { dtype: string }).dtype = 'q8_0')))).toMatch(/entryPoints\.run\.inputs\[0\]\.dtype.*must be one of f32, f16, i32, u32, i8$/);
  });
});
