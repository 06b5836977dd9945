// The embedding gather and rotary embeddings beyond test/ops.test.ts's table: the index range
// a plan records for embedding ids (and the runtime's refusal), ids out of range on the GPU
// past that check (zero rows, no gradient), the scatter-add gradient's fixed order (the same
// bits every run), and rope against an independent formula: each pair of features as a
// complex number times e^{i·pos·θ_k}.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { ropeInverseFrequencies } from '../compiler/ir/ops';
import { loadPlan } from '../runtime/session';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';
import { editPlan } from './replan';

afterAll(releaseSharedDevice);

const uniform = (n: number, seed: number, lo = -2, hi = 2) => {
  const u = uniformStream(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * u());
};

/** The plan with every input's index range dropped, so ids outside it reach the kernels. */
const withoutRanges = (bundle: Uint8Array) =>
  editPlan(bundle, (m) => {
    for (const entry of Object.values(m.entryPoints)) for (const input of entry.inputs) delete input.range;
  });

describe('embedding ids: the recorded range', () => {
  test('ids feeding an embedding (and a oneHot) get the range both accept; the runtime refuses the rest', async () => {
    const g = new Graph('ranges');
    const table = g.parameter('table', [10, 4]);
    const ids = g.input('ids', [3], 'i32');
    const signed = g.input('signed', [3], 'i32');
    const labels = g.input('labels', [3], 'i32');
    g.output('a', g.embedding(table, g.reshape(ids, [3, 1])));
    g.output('b', g.embedding(table, signed, { fromEnd: true }));
    // used by a 6-class oneHot and a 10-row embedding: 0 .. 5
    g.output('c', g.add(g.oneHot(labels, 6), g.embedding(g.parameter('wide', [10, 6]), labels)));
    const plan = await compileGraph(g, { seed: 1 });
    const ranges = Object.fromEntries(plan.manifest.entryPoints.run.inputs.map((i) => [i.name, i.range]));
    expect(ranges).toEqual({ ids: { min: 0, max: 9 }, signed: { min: -10, max: 9 }, labels: { min: 0, max: 5 } });
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const ok = { ids: Int32Array.of(0, 9, 3), signed: Int32Array.of(-10, 9, -1), labels: Int32Array.of(0, 5, 2) };
      await expect(session.run(ok)).resolves.toBeDefined();
      await expect(session.run({ ...ok, ids: Int32Array.of(0, 10, 3) })).rejects.toThrow(/input "ids" \(i32\) holds 10 at element 1; it takes indices from 0 to 9/);
      await expect(session.run({ ...ok, signed: Int32Array.of(-11, 0, 0) })).rejects.toThrow(/holds -11 at element 0; it takes indices from -10 to 9/);
    } finally {
      session.destroy();
    }
  });
});

test('u32 ids: a gather and its gradient on the GPU equal the CPU reference; the range starts at 0 even with fromEnd', async () => {
  const g = new Graph('u32_ids');
  const table = g.input('table', [6, 5]);
  const ids = g.input('ids', [8], 'u32');
  g.output('rows', g.embedding(table, ids, { fromEnd: true }));
  g.output('grad', g.embeddingBackward(g.input('dy', [8, 5]), ids, { rows: 6, fromEnd: true }));
  const plan = await compileGraph(g, { seed: 1 });
  expect(plan.manifest.entryPoints.run.inputs.find((i) => i.name === 'ids')?.range).toEqual({ min: 0, max: 5 });
  const feeds = { table: uniform(30, 7), dy: uniform(40, 8), ids: Uint32Array.of(5, 0, 3, 3, 1, 5, 2, 0) };
  const expected = interpret(g, feeds, new Map());
  const gpu = await runOnGpu(plan.bundle, feeds);
  expectClose(gpu.rows, expected.rows, 0, 0);
  expectClose(gpu.grad, expected.grad, 1e-6, 1e-6);
});

describe('ids out of range, past the runtime check', () => {
  // ids -3 .. 8 for a 5-row table: with fromEnd -3 .. -1 are rows 2 .. 4; the rest out of range
  const ids = Int32Array.of(-3, 7, 0, -1, 5, 4, 8, 2, 0, -6);
  test.each([false, true])('embedding and its gradient give zero rows and no gradient for them (fromEnd %s)', async (fromEnd) => {
    const g = new Graph('out_of_range');
    const table = g.input('table', [5, 3]);
    const dy = g.input('dy', [10, 3]);
    const idsInput = g.input('ids', [10], 'i32');
    g.output('rows', g.embedding(table, idsInput, { fromEnd }));
    g.output('grad', g.embeddingBackward(dy, idsInput, { rows: 5, fromEnd }));
    const feeds = { table: uniform(15, 1), dy: uniform(30, 2), ids };
    const expected = interpret(g, feeds, new Map());
    // the reference's own rule: a zero row for each id out of range
    const valid = (id: number) => (fromEnd && id < 0 ? id + 5 : id) >= 0 && (fromEnd && id < 0 ? id + 5 : id) < 5;
    ids.forEach((id, n) => {
      if (!valid(id)) expect(Array.from(expected.rows.subarray(n * 3, n * 3 + 3))).toEqual([0, 0, 0]);
    });
    const plan = await compileGraph(g, { seed: 1 });
    const gpu = await runOnGpu(await withoutRanges(plan.bundle), feeds);
    expectClose(gpu.rows, expected.rows, 0, 0);
    expectClose(gpu.grad, expected.grad, 1e-6, 1e-6);
  });
});

test('the scatter-add gradient sums repeated ids in a fixed order: the same bits every run', async () => {
  const g = new Graph('repeats');
  const dy = g.input('dy', [500, 7]);
  const ids = g.input('ids', [500], 'i32');
  g.output('grad', g.embeddingBackward(dy, ids, { rows: 9 }));
  // 500 ids over 9 rows: each row sums ~55 rows of dy
  const u = uniformStream(3);
  const feeds = { dy: uniform(3500, 4, -100, 100), ids: Int32Array.from({ length: 500 }, () => Math.floor(9 * u())) };
  const expected = interpret(g, feeds, new Map()).grad;
  const plan = await compileGraph(g, { seed: 1 });
  const first = (await runOnGpu(plan.bundle, feeds)).grad;
  expectClose(first, expected, 1e-3, 1e-5);
  for (let run = 0; run < 3; run++) expect(Buffer.from((await runOnGpu(plan.bundle, feeds)).grad.buffer).equals(Buffer.from(first.buffer))).toBe(true);
});

describe('rope', () => {
  /** The rotation written independently of the op: pair k of a row as z = x_k + i·x_{k+h}, times e^{i·pos·θ_k}. */
  function complexRope(x: Float32Array, d: number, positions: (row: number) => number, theta: number, rotaryDim: number): Float64Array {
    const out = Float64Array.from(x);
    const h = rotaryDim / 2;
    for (let row = 0; row < x.length / d; row++) {
      for (let k = 0; k < h; k++) {
        const angle = positions(row) * theta ** (-(2 * k) / rotaryDim);
        const [re, im] = [x[row * d + k], x[row * d + k + h]];
        const [cr, ci] = [Math.cos(angle), Math.sin(angle)];
        out[row * d + k] = re * cr - im * ci;
        out[row * d + k + h] = re * ci + im * cr;
      }
    }
    return out;
  }

  test.each([
    { label: 'heads [3, 6, 16], positions [6]', shape: [3, 6, 16], posShape: [6], rotaryDim: 16, theta: 10000, posOf: (row: number, pos: Int32Array) => pos[row % 6] },
    { label: '[seq 5, heads 2, 10], positions [5, 1], rotary 6 of 10', shape: [5, 2, 10], posShape: [5, 1], rotaryDim: 6, theta: 100000, posOf: (row: number, pos: Int32Array) => pos[Math.floor(row / 2)] },
  ])('$label: the CPU reference and the GPU equal the complex-number form', async ({ shape, posShape, rotaryDim, theta, posOf }) => {
    const g = new Graph('rope_complex');
    const x = g.input('x', shape);
    const positions = g.input('pos', posShape, 'i32');
    g.output('y', g.rope(x, positions, { theta, rotaryDim }));
    const d = shape[shape.length - 1];
    const xs = uniform(shape.reduce((a, b) => a * b, 1), 5);
    const pos = Int32Array.from({ length: posShape.reduce((a, b) => a * b, 1) }, (_, i) => (i * 13 + 2) % 50);
    const expected = complexRope(xs, d, (row) => posOf(row, pos), theta, rotaryDim);
    const cpu = interpret(g, { x: xs, pos }, new Map()).y;
    expectClose(cpu, expected, 1e-12, 1e-12);
    // features past rotaryDim pass through untouched
    for (let row = 0; row < xs.length / d; row++) for (let j = rotaryDim; j < d; j++) expect(cpu[row * d + j]).toBe(xs[row * d + j]);
    const plan = await compileGraph(g, { seed: 1 });
    // f32 angles below 50: half an ulp is 1.9e-6, times |x| ≤ 2 (see test/ops.test.ts)
    expectClose((await runOnGpu(plan.bundle, { x: xs, pos })).y, expected, 1e-5, 1e-4);
  });

  test('the inverse rotation undoes the rotation, on the GPU', async () => {
    const g = new Graph('rope_inverse');
    const x = g.input('x', [4, 9, 64]);
    const options = { theta: 100000, scaling: { kind: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } };
    g.output('y', g.rope(g.rope(x, undefined, options), undefined, { ...options, inverse: true }));
    const xs = uniform(4 * 9 * 64, 6);
    const plan = await compileGraph(g, { seed: 1 });
    expectClose((await runOnGpu(plan.bundle, { x: xs })).y, Float64Array.from(xs), 2e-6, 1e-5);
  });

  test("Llama 3's scaling keeps short wavelengths, slows long ones by the factor, blends between", () => {
    const plain = ropeInverseFrequencies({ theta: 500000, rotaryDim: 64 });
    const scaled = ropeInverseFrequencies({ theta: 500000, rotaryDim: 64, scaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } });
    const kinds = new Set<string>();
    plain.forEach((f, k) => {
      const wavelength = (2 * Math.PI) / f;
      if (wavelength < 2048) expect(scaled[k], `k ${k}`).toBe(f), kinds.add('kept');
      else if (wavelength > 8192) expect(scaled[k], `k ${k}`).toBeCloseTo(f / 8, 15), kinds.add('slowed');
      else expect(scaled[k] < f && scaled[k] > f / 8, `k ${k} between`).toBe(true), kinds.add('blended');
    });
    expect([...kinds].sort()).toEqual(['blended', 'kept', 'slowed']);
    // HF's formula at theta 500000, rotary 64: inv_freq[1] = 500000^(-2/64)
    expect(plain[1]).toBeCloseTo(500000 ** (-1 / 32), 15);
  });
});
