// The NNEF frontend: the .dat reader's item types and refusals; the MLP and CNN of the ONNX
// fixtures, written as NNEF by fixtures/nnef/models.ts, compiled to plans, run on the GPU
// (Dawn) and on the CPU reference and compared with onnxruntime-web on the ONNX models they
// came from; the hand-written graph of syntax corners against the same arithmetic in plain
// JS; training an imported graph; and bad input (unknown op, corrupt and missing tensor
// files, shape mismatches, syntax errors) failing as CompileErrors at graph.nnef's line.
import * as ort from 'onnxruntime-web';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { loadNnefModel } from '../compiler/frontends/nnef/load';
import { decodeTensorFile, encodeTensorFile, halfToFloat, TensorFileError } from '../compiler/frontends/nnef/tensor-file';
import { CompileError } from '../compiler/ir/errors';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { cornerTensors, onnxToNnef } from '../fixtures/nnef/models';
import { cnnModel, encodeModel, mlpModel, uniform } from '../fixtures/onnx/models';
import { loadTrainingPlan } from '../runtime/training';
import { cliRunner, diagnostics, expectFailure } from './cli-runner';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const FIXTURES = new URL('../fixtures/nnef/', import.meta.url).pathname;
const ONNX_FIXTURES = new URL('../fixtures/onnx/', import.meta.url).pathname;

test('the committed fixtures are what fixtures/nnef/models.ts writes', () => {
  const same = (dir: string, files: Map<string, Uint8Array | string>) => {
    for (const [name, bytes] of files) expect(Buffer.from(readFileSync(join(FIXTURES, dir, name))).equals(Buffer.from(bytes)), `${dir}/${name}`).toBe(true);
  };
  const mlp = onnxToNnef(mlpModel(), { x: [1, 16] });
  same('mlp.nnef', new Map<string, Uint8Array | string>([['graph.nnef', mlp.graph], ...mlp.tensors]));
  const cnn = onnxToNnef(cnnModel());
  same('cnn.nnef', new Map<string, Uint8Array | string>([['graph.nnef', cnn.graph], ...cnn.tensors]));
  same('corners.nnef', cornerTensors());
});

// --- .dat files -------------------------------------------------------------------------

describe('.dat tensor files', () => {
  test('every item type reads back', () => {
    const values = [0, 1, -2, 3.5, -65504, 2 ** -14];
    for (const bits of [16, 32, 64]) expect(Array.from(decodeTensorFile(encodeTensorFile([2, 3], values, { bits })).data)).toEqual(values);
    const ints = [0, 1, -2, 127, -128, 5];
    for (const bits of [8, 16, 32, 64]) expect(Array.from(decodeTensorFile(encodeTensorFile([6], ints, { itemType: 'int', bits })).data)).toEqual(ints);
    expect(Array.from(decodeTensorFile(encodeTensorFile([3], [0, 200, 255], { itemType: 'uint', bits: 8 })).data)).toEqual([0, 200, 255]);
    expect(Array.from(decodeTensorFile(encodeTensorFile([3], [0, 65535, 7], { itemType: 'uint', bits: 16 })).data)).toEqual([0, 65535, 7]);
    const bools = [1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1];
    const packed = encodeTensorFile([11], bools, { itemType: 'bool' });
    expect(packed.length).toBe(128 + 2);
    expect(packed[128]).toBe(0b10110001);
    expect(Array.from(decodeTensorFile(packed).data)).toEqual(bools);
    expect(Array.from(decodeTensorFile(encodeTensorFile([3], [1, 0, 1], { itemType: 'bool', bits: 8 })).data)).toEqual([1, 0, 1]);
    // 1.0.0 files marked signed integers with item type 1 and a flag in the first reserved word
    const legacy = encodeTensorFile([2], [-1, 5], { itemType: 'uint', bits: 8 });
    legacy[52] = 1;
    expect(Array.from(decodeTensorFile(legacy).data)).toEqual([-1, 5]);
    expect([halfToFloat(0x7c00), halfToFloat(0xfc00), halfToFloat(0x0001)]).toEqual([Infinity, -Infinity, 2 ** -24]);
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(decodeTensorFile(encodeTensorFile([2, 1, 3], [1, 2, 3, 4, 5, 6])).shape).toEqual([2, 1, 3]);
  });

  test('refusals say what is wrong', () => {
    const good = encodeTensorFile([2, 3], [1, 2, 3, 4, 5, 6]);
    const edit = (f: (b: Uint8Array, v: DataView) => void, bytes = good) => {
      const b = bytes.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    const refusal = (bytes: Uint8Array) => {
      try {
        decodeTensorFile(bytes);
      } catch (e) {
        expect(e).toBeInstanceOf(TensorFileError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refusal(good.subarray(0, 100))).toBe('truncated: 100 bytes, shorter than the 128-byte header');
    expect(refusal(edit((b) => (b[1] = 0xee)))).toBe('bad magic 0x4E 0xEE: not an NNEF tensor file (expected 0x4E 0xEF)');
    expect(refusal(edit((b) => (b[2] = 2)))).toBe('version 2.0 is not supported (expected 1.0)');
    expect(refusal(good.subarray(0, good.length - 4))).toBe('truncated: the header gives 24 bytes of data, the file holds 20');
    expect(refusal(new Uint8Array([...good, 0, 0]))).toBe('2 bytes follow the 24 bytes of data the header gives');
    expect(refusal(edit((_, v) => v.setUint32(4, 20, true)))).toBe('data length 20 does not match extents [2, 3] at 32 bits per item (24 bytes)');
    expect(refusal(edit((_, v) => v.setUint32(16, 4, true)))).toBe('data length 24 does not match extents [2, 4] at 32 bits per item (32 bytes)');
    expect(refusal(edit((_, v) => v.setUint32(8, 9, true)))).toBe("rank 9 is more than the format's 8");
    expect(refusal(edit((_, v) => v.setUint32(48, 3, true)))).toMatch(/quantized items \(qint\) need the graph's quantization file/);
    expect(refusal(edit((_, v) => v.setUint32(48, 0x10000, true)))).toMatch(/item type 0x10000 is vendor-specific/);
    expect(refusal(edit((_, v) => v.setUint32(48, 9, true)))).toMatch(/item type code 9 is unknown/);
    expect(refusal(edit((_, v) => v.setUint32(44, 24, true)))).toBe('24 bits per float item is not supported (16, 32, 64)');
  });
});

// --- against onnxruntime-web ------------------------------------------------------------

async function ortRun(file: string, x: Float32Array, shape: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  const out = await session.run({ x: new ort.Tensor('float32', x, shape) });
  await session.release();
  return Object.values(out)[0].data as Float32Array;
}

const maxError = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

// As the ONNX frontend's tests: both sides compute in f32 in their own orders (the CPU
// reference in f64), a few ulps of O(1) values; the bound keeps a wide margin.
const TOLERANCE = 1e-5;

describe('NNEF models written from the ONNX fixtures agree with onnxruntime-web on the ONNX models', () => {
  test.each([
    ['mlp', [5, 16]],
    ['cnn', [1, 3, 16, 16]],
  ] as const)('%s', async (name, shape) => {
    const next = uniform(42);
    const x = Float32Array.from({ length: (shape as readonly number[]).reduce((a, b) => a * b, 1) }, () => 2 * next());
    const expected = await ortRun(join(ONNX_FIXTURES, `${name}.onnx`), x, [...shape]);
    // the MLP's graph.nnef declares x as [1, 16]: --shape rebinds the batch
    const loaded = loadNnefModel(join(FIXTURES, `${name}.nnef`), name === 'mlp' ? { shapes: { x: [...shape] } } : {});
    expect(loaded.inputs).toEqual(['x']);
    expect(loaded.outputs).toEqual(['logits']);
    const cpu = interpret(loaded.graph, { x }, materializeParameters(loaded.graph, 0)).logits;
    const plan = await compileGraph(loaded.graph, { seed: 0 });
    const gpu = (await runOnGpu(plan.bundle, { x })).logits;
    const [cpuError, gpuError] = [maxError(cpu, expected), maxError(gpu, expected)];
    console.log(`${name}.nnef: max |mnc - onnxruntime-web (${name}.onnx)| = ${gpuError.toExponential(2)} (GPU plan), ${cpuError.toExponential(2)} (CPU reference); ${plan.manifest.kernels.length} kernels`);
    expect(cpuError).toBeLessThanOrEqual(TOLERANCE);
    expect(gpuError).toBeLessThanOrEqual(TOLERANCE);
  }, 120_000);

  test('the CNN fuses as the ONNX import does: batch norms and biases into the convolutions', async () => {
    const fused = async (graph: Parameters<typeof compileGraph>[0]) => (await compileGraph(graph, { seed: 0 })).manifest.kernels.length;
    const { loadOnnxModel } = await import('../compiler/frontends/onnx/load');
    expect(await fused(loadNnefModel(join(FIXTURES, 'cnn.nnef')).graph)).toBe(await fused(loadOnnxModel(join(ONNX_FIXTURES, 'cnn.onnx')).graph));
  }, 120_000);

  test('variables are trainable parameters named by their labels, frozen on request', () => {
    const params = (freeze: boolean) => loadNnefModel(join(FIXTURES, 'mlp.nnef'), { freeze }).graph.nodes.filter((n) => n.op === 'parameter').map((n) => [n.name, n.attrs.trainable]);
    expect(params(false)).toEqual([['fc1/weight', true], ['fc1/bias', true], ['fc2/weight', true], ['fc2/bias', true]]);
    expect(params(true).every(([, t]) => t === false)).toBe(true);
  });
});

// --- syntax corners ---------------------------------------------------------------------

/** fixtures/nnef/corners.nnef/graph.nnef's arithmetic in plain JS. */
function cornersReference(x: Float32Array, flag: Float32Array) {
  const t = cornerTensors();
  const read = (name: string) => decodeTensorFile(t.get(name)!).data;
  const [w, b, k, mask] = [read('weights/w.dat'), read('weights/b.dat'), read('scales.dat'), read('mask.dat')];
  const c = [0.5, -0.5, 1, -1, 2, -2];
  const m = Array.from({ length: 12 }, (_, i) => {
    const [r, j] = [Math.floor(i / 6), i % 6];
    let dot = 0;
    for (let q = 0; q < 6; q++) dot += x[r * 6 + q] * w[j * 6 + q];
    return (2 * dot + b[j]) * c[j];
  });
  const row = (r: number, from: number, to: number) => m.slice(r * 6 + from, r * 6 + to);
  const mean = (v: number[]) => v.reduce((s, e) => s + e, 0) / v.length;
  const variance = (v: number[]) => mean(v.map((e) => (e - mean(v)) ** 2));
  const spread = [0, 1].map((r) => variance(row(r, 2, 6)) - mean(row(r, 2, 6)));
  const a = [row(0, 0, 2), row(1, 0, 2)].flat();
  const total = mean(a) + variance(a);
  const y: number[] = [];
  for (let r = 0; r < 2; r++) {
    const s = Array.from({ length: 6 }, (_, j) => (flag[r * 6 + j] && mask[r * 6 + j] ? x[r * 6 + j] : -1.5));
    const rk = s.map((v, j) => (v < 0 ? 0.25 * v : v) * k[j]);
    const p = [0, ...rk, 0, 0].map((v) => Math.min(Math.max(v, -4), 4));
    const e = p.map((v) => Math.exp(v - Math.max(...p)));
    y.push(...e.map((v) => v / e.reduce((s2, q) => s2 + q, 0)));
  }
  return { y, total: [total], spread };
}

describe('graph.nnef syntax', () => {
  test('the hand-written corners graph matches its arithmetic in JS, on the CPU reference and the GPU', async () => {
    const loaded = loadNnefModel(join(FIXTURES, 'corners.nnef', 'graph.nnef'));
    expect(loaded.inputs).toEqual(['x', 'flag']);
    expect(loaded.outputs).toEqual(['y', 'total', 'spread']);
    // float16 weights, float64 bias and int8 scales are parameters; the logical mask a constant
    expect(loaded.graph.nodes.filter((n) => n.op === 'parameter').map((n) => n.name)).toEqual(['weights/w', 'weights/b', 'scales']);
    const next = uniform(3);
    const x = Float32Array.from({ length: 12 }, () => 2 * next());
    const flag = Float32Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? 0 : 1));
    const expected = cornersReference(x, flag);
    const cpu = interpret(loaded.graph, { x, flag }, materializeParameters(loaded.graph, 0));
    const gpu = await runOnGpu((await compileGraph(loaded.graph, { seed: 0 })).bundle, { x, flag });
    for (const out of ['y', 'total', 'spread'] as const) {
      expect(cpu[out].length).toBe(expected[out].length);
      expect(maxError(cpu[out], expected[out]), out).toBeLessThanOrEqual(1e-5);
      expect(maxError(gpu[out], expected[out]), out).toBeLessThanOrEqual(1e-4);
    }
  }, 120_000);
});

// --- bad input ---------------------------------------------------------------------------

describe('bad input fails with a CompileError at the line of graph.nnef', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mnc-nnef-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let count = 0;
  /** a model directory holding `graph` and the tensor files given */
  const model = (graph: string, tensors: Record<string, Uint8Array> = {}) => {
    const root = join(dir, `m${count++}`);
    mkdirSync(root);
    writeFileSync(join(root, 'graph.nnef'), graph);
    for (const [name, bytes] of Object.entries(tensors)) {
      mkdirSync(dirname(join(root, name)), { recursive: true });
      writeFileSync(join(root, name), bytes);
    }
    return root;
  };
  /** the formatted diagnostic (`file:line:col: error: …`) of loading a model */
  const failure = (root: string, options = {}): string => {
    try {
      loadNnefModel(root, options);
    } catch (e) {
      expect(e).toBeInstanceOf(CompileError);
      return (e as CompileError).format();
    }
    throw new Error('expected a CompileError');
  };
  /** a graph x [2, 3] → body → y */
  const graph = (body: string, head = 'version 1.0;\n') => `${head}graph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = [2, 3]);\n${body}\n}\n`;
  const w = encodeTensorFile([3, 4], Array.from({ length: 12 }, (_, i) => i / 12));

  test('an unsupported or unknown operation names the op, the file and line, and lists what is supported', () => {
    const root = model(graph('    y = tan(x);'));
    expect(failure(root)).toMatch(
      new RegExp(`^${join(root, 'graph.nnef')}:5:9: error: tan: operation 'tan' \\(an NNEF standard operation\\) is not supported by the NNEF frontend; supported: abs, add, add_n, .*, unstack, variable$`),
    );
    expect(failure(model(graph('    y = my_block(x, size = 3);')))).toMatch(/:5:9: error: my_block: operation 'my_block' is not an NNEF standard operation \(custom operations need fragment definitions, which are not supported\); supported: abs/);
  });

  test('syntax errors give the line and column', () => {
    expect(failure(model(graph('    y = relu(x)')))).toMatch(/graph\.nnef:6:1: error: expected ';' after the assignment, found '}'$/);
    expect(failure(model(graph('    y = relu(x;')))).toMatch(/graph\.nnef:5:15: error: expected '\)' to end the arguments of 'relu', found ';'$/);
    expect(failure(model(graph("    y = pad(x, padding = [(0, 1), (1, 1)], border = 'constant);")))).toMatch(/:5:53: error: unterminated string: expected a closing ' on the same line$/);
    expect(failure(model(graph('    y = add(x, 1.5e);')))).toMatch(/:5:20: error: expected a digit in the exponent$/);
    expect(failure(model(graph('    y = relu(x);', 'version 2.0;\n')))).toMatch(/:1:9: error: NNEF version 2.0 is not supported; this reader implements version 1.0$/);
    expect(failure(model(graph('    y = relu(x);', '')))).toMatch(/:1:1: error: expected 'version 1.0;' at the start of the document, found 'graph'$/);
    expect(failure(model(graph('    y = relu(x);', 'version 1.0;\nextension KHR_enable_tensor_magic;\n')))).toMatch(/:2:11: error: extension 'KHR_enable_tensor_magic' is not supported \(known: KHR_enable_fragment_definitions, KHR_enable_operator_expressions\)$/);
    expect(failure(model(graph('    y = relu(x);', 'version 1.0;\nfragment f( a: tensor<scalar> ) -> ( b: tensor<scalar> );\n')))).toMatch(/:2:1: error: fragment definitions \(custom operations\) are not supported/);
    expect(failure(model(graph('    y = relu(x + 1.0);')))).toMatch(/:5:16: error: operator expressions are not supported \(found '\+'\)/);
    expect(failure(model(graph('    y = add(x, 2.0 * x);')))).toMatch(/:5:20: error: operator expressions are not supported \(found '\*'\)/);
    expect(failure(model(graph('    y = add(x, relu(x));')))).toMatch(/:5:20: error: nested invocations are not supported \('relu\(' inside an argument list\)/);
    expect(failure(model(graph(`    y = reshape(x, shape = ${'['.repeat(100)}6${']'.repeat(100)});`)))).toMatch(/:5:92: error: arrays and tuples nest more than 64 deep$/);
    expect(failure(model(graph('    y = relu(x);\n    z = relu(y);\n  } trailing')))).toMatch(/:7:5: error: expected the end of the document after the graph body, found 'trailing'$/);
  });

  test('arguments bind as the spec says', () => {
    const cases: [string, RegExp][] = [
      ['    y = reshape(x, [3, 2]);', /:5:20: error: reshape: 'shape' is an attribute and must be given by name \('shape = …'\)$/],
      ['    y = reshape(input = x, [3, 2]);', /:5:28: error: reshape: a positional argument follows named ones; name it \(parameters: input, shape, axis_start, axis_count\)$/],
      ['    y = reshape(x, shape = [3, 2], shape = [6]);', /:5:36: error: reshape: 'shape' is given twice$/],
      ['    y = reshape(x, form = [6]);', /:5:20: error: reshape: 'reshape' has no parameter 'form' \(parameters: input, shape, axis_start, axis_count\)$/],
      ['    y = reshape(x);', /:5:9: error: reshape: the argument 'shape' is required/],
      ['    y = relu(x, x);', /:5:17: error: relu: too many arguments: 'relu' has 1 parameter \(x\)$/],
      ['    y = reshape(x, shape = [3.0, 2]);', /:5:20: error: reshape: 'shape' must be an array of integers; got an array of 2$/],
      ['    y = pad(x, padding = [0, 1]);', /:5:16: error: pad: 'padding' must be an array of integer pairs such as \[\(0, 1\), \(1, 1\)\]; got an array of 2$/],
      ['    y = relu(z);', /:5:14: error: relu: 'z' is not defined by an earlier assignment$/],
      ['    y = relu(x);\n    y = relu(x);', /:6:5: error: relu: 'y' is already assigned \(at line 5\); NNEF identifiers are assigned once$/],
      ['    a, b = relu(x);\n    y = relu(a);', /:5:5: error: relu: the left-hand side has 2 items; 'relu' gives 1 result$/],
      ['    y = split(x, axis = 1, ratios = [1, 2]);', /:5:5: error: split: 'split' gives an array of 2 tensors; assign it to an array such as \[y0, y1\]$/],
      ['    [a, b] = split(x, axis = 1, ratios = [1, 1, 1]);\n    y = relu(a);', /:5:5: error: split: 'split' gives 3 tensors here; the left-hand array has 2 items$/],
      ['    x2 = external<scalar>(shape = [1]);\n    y = relu(x);', /:5:5: error: external: 'x2' is not an input of graph 'g'; external declares the graph's inputs \(x\)$/],
    ];
    for (const [body, message] of cases) expect(failure(model(graph(body))), body).toMatch(message);
    expect(failure(model('version 1.0;\ngraph g( x ) -> ( y )\n{\n    y = constant(shape = [1], value = [1.0]);\n}\n'))).toMatch(/graph\.nnef:2:1: error: graph input 'x' is never declared by an external operation$/);
    expect(failure(model(graph('    z = relu(x);')))).toMatch(/graph\.nnef:2:1: error: graph output 'y' is never assigned$/);
  });

  test('tensor files: missing, bad header, truncated, a shape other than declared', () => {
    const decl = (label: string, shape = '[3, 4]') => graph(`    w = variable<scalar>(shape = ${shape}, label = '${label}');\n    y = matmul(x, w);`);
    let root = model(decl('fc/w'));
    expect(failure(root)).toBe(`${join(root, 'graph.nnef')}:5:9: error: ${join(root, 'fc/w.dat')}: cannot read the tensor file: no such file (variable 'fc/w' of ${join(root, 'graph.nnef')}:5)`);
    root = model(decl('w'), { 'w.dat': Uint8Array.from(w, (b, i) => (i === 0 ? 0x50 : b)) });
    expect(failure(root)).toBe(`${join(root, 'graph.nnef')}:5:9: error: ${join(root, 'w.dat')}: bad magic 0x50 0xEF: not an NNEF tensor file (expected 0x4E 0xEF) (variable 'w' of ${join(root, 'graph.nnef')}:5)`);
    root = model(decl('w'), { 'w.dat': w.subarray(0, w.length - 8) });
    expect(failure(root)).toMatch(/w\.dat: truncated: the header gives 48 bytes of data, the file holds 40 \(variable 'w' of .*graph\.nnef:5\)$/);
    root = model(decl('w', '[4, 3]'), { 'w.dat': w });
    expect(failure(root)).toMatch(/:5:9: error: .*w\.dat: holds a tensor of shape \[3, 4\]; the variable declares \[4, 3\] \(variable 'w' of .*\)$/);
    expect(failure(model(decl('../outside'), {}))).toMatch(/label '\.\.\/outside' names a file outside the model directory/);
    // a [3, 4] file serves a [3, 4, 1] variable: NNEF leaves trailing unit axes implicit
    expect(() => loadNnefModel(model(graph("    w = variable<scalar>(shape = [3, 4, 1], label = 'w');\n    y = relu(w);"), { 'w.dat': w }))).not.toThrow();
  });

  test('a missing model, shapes that do not fit, and refused attribute values', () => {
    expect(failure(join(dir, 'absent.nnef'))).toMatch(/error: cannot read NNEF graph '.*absent\.nnef': no such file \(an NNEF model is a directory holding graph\.nnef and its \.dat files\)$/);
    const emptyDir = join(dir, 'empty');
    mkdirSync(emptyDir);
    expect(failure(emptyDir)).toMatch(/cannot read NNEF graph '.*empty\/graph\.nnef': no such file/);
    const cases: [string, RegExp][] = [
      ['    y = matmul(x, x);', /:5:9: error: matmul: matmul: inner dimensions differ/],
      ['    y = reshape(x, shape = [4, -1]);', /:5:9: error: reshape: shape \[4, -1\] cannot cover the 6 elements of axes 0\.\.1 of \[2, 3\]$/],
      ["    y = pad(x, padding = [(0, 0), (1, 1)], border = 'reflect');", /:5:9: error: pad: border 'reflect' is not supported; only 'constant'$/],
      ['    y = conv(x, x);', /:5:9: error: conv: only 1-D and 2-D conv are supported: the input must be NCL or NCHW \(rank 3 or 4\); got \[2, 3\]$/],
      ['    y = transpose(x, axes = [0, 2]);', /:5:9: error: transpose: axes \[0, 2\] must be a permutation of 0\.\.1 within the rank 2$/],
      ['    y = softmax(x, axes = [2]);', /:5:9: error: softmax: softmax axis 2 is out of range for a tensor of rank 2 \(NNEF axes count from 0\)$/],
      ['    y = slice(x, axes = [1], begin = [2], end = [1]);', /:5:9: error: slice: slice 2:1:1 is invalid for axis 1 of extent 3$/],
    ];
    for (const [body, message] of cases) expect(failure(model(graph(body))), body).toMatch(message);
    const pool = (body: string) => model(`version 1.0;\ngraph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = [1, 2, 4, 4]);\n${body}\n}\n`);
    expect(failure(pool('    y = max_pool(x, size = [1, 2, 2, 2]);'))).toMatch(/:5:9: error: max_pool: size \[1, 2, 2, 2\] spans the batch or channel axis; only windows over the spatial axes are supported$/);
    expect(failure(pool("    y = avg_pool(x, size = [1, 1, 2, 2], border = 'reflect');"))).toMatch(/:5:9: error: avg_pool: border 'reflect' is not supported for avg_pool; only 'constant' and 'ignore'$/);
    expect(failure(model(graph('    y = relu(x);')), { shapes: { z: [1] } })).toMatch(/--shape names 'z', which is not an input of the graph \(inputs: x\)$/);
    expect(failure(model(graph('    y = relu(x);')), { shapes: { x: [6] } })).toMatch(/:4:9: error: external: --shape x=6 has rank 1; the graph declares \[2, 3\]$/);
  });
});

// --- windows and shapes against onnxruntime-web --------------------------------------------

describe('window and shape operations agree with onnxruntime-web', () => {
  // each graph.nnef beside the ONNX graph that computes the same, both on x [1, 2, 7, 7] (or [1, 2, 7])
  const cases: [string, string, object[], object[]][] = [];
  const intsAttr = (name: string, ints: number[]) => ({ name, type: 7, ints });
  const intAttr = (name: string, i: number) => ({ name, type: 2, i });
  const strAttr = (name: string, s: string) => ({ name, type: 3, s: new TextEncoder().encode(s) });
  const next = uniform(11);
  const w = Float32Array.from({ length: 4 * 2 * 3 * 3 }, () => 0.5 * next());
  const wDeconv = Float32Array.from({ length: 2 * 1 * 3 * 3 }, () => 0.5 * next());
  const weights = [
    { name: 'w', dims: [4, 2, 3, 3], dataType: 1, floatData: Array.from(w) },
    { name: 'wd', dims: [2, 1, 3, 3], dataType: 1, floatData: Array.from(wDeconv) },
  ];
  cases.push([
    // onnxruntime takes no auto_pad with dilations: the padding NNEF's automatic rule gives, written out
    'conv with automatic padding, stride 2, dilation 2',
    "    w = variable<scalar>(shape = [4, 2, 3, 3], label = 'w');\n    y = conv(x, w, stride = [2, 2], dilation = [2, 2]);",
    [{ opType: 'Conv', input: ['x', 'w'], output: ['y'], attribute: [intsAttr('strides', [2, 2]), intsAttr('dilations', [2, 2]), intsAttr('pads', [2, 2, 2, 2])] }],
    weights,
  ]);
  cases.push([
    'deconv with automatic padding, depthwise (groups = 0)',
    "    w = variable<scalar>(shape = [2, 1, 3, 3], label = 'wd');\n    y = deconv(x, w, stride = [2, 2], groups = 0);",
    [{ opType: 'ConvTranspose', input: ['x', 'wd'], output: ['y'], attribute: [intsAttr('strides', [2, 2]), intAttr('group', 2), strAttr('auto_pad', 'SAME_UPPER')] }],
    weights,
  ]);
  cases.push([
    "max_pool with a 'constant' border (its zeros take part) and automatic padding",
    "    y = max_pool(x, size = [1, 1, 3, 3], stride = [1, 1, 2, 2], border = 'constant');",
    [
      { opType: 'Pad', input: ['x', 'pads'], output: ['p'] },
      { opType: 'MaxPool', input: ['p'], output: ['y'], attribute: [intsAttr('kernel_shape', [3, 3]), intsAttr('strides', [2, 2])] },
    ],
    [{ name: 'pads', dims: [8], dataType: 7, int64Data: [0, 0, 1, 1, 0, 0, 1, 1] }],
  ]);
  cases.push([
    "avg_pool with a 'constant' border (divides by the whole window)",
    "    y = avg_pool(x, size = [1, 1, 3, 3], padding = [(0, 0), (0, 0), (1, 1), (0, 2)], border = 'constant');",
    [{ opType: 'AveragePool', input: ['x'], output: ['y'], attribute: [intsAttr('kernel_shape', [3, 3]), intsAttr('pads', [1, 0, 1, 2]), intAttr('count_include_pad', 1)] }],
    [],
  ]);
  cases.push([
    'box (a window sum), slice with a stride, transpose, reshape over an axis range, softmax over two axes',
    [
      "    s = box(x, size = [1, 1, 2, 2], stride = [1, 1, 2, 2], padding = [(0, 0), (0, 0), (0, 1), (0, 1)]);",
      '    t = slice(s, axes = [2, 3], begin = [-1, 0], end = [-5, 0], stride = [-2, 1]);',
      '    u = transpose(t, axes = [0, 3, 1, 2]);',
      '    v = reshape(u, shape = [-1], axis_start = 1, axis_count = 2);',
      '    y = softmax(v, axes = [1, 2]);',
    ].join('\n'),
    [
      { opType: 'AveragePool', input: ['x'], output: ['a'], attribute: [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2]), intsAttr('pads', [0, 0, 1, 1]), intAttr('count_include_pad', 1)] },
      { opType: 'Mul', input: ['a', 'four'], output: ['s'] },
      { opType: 'Slice', input: ['s', 'starts', 'ends', 'axes', 'steps'], output: ['t'] },
      { opType: 'Transpose', input: ['t'], output: ['u'], attribute: [intsAttr('perm', [0, 3, 1, 2])] },
      { opType: 'Reshape', input: ['u', 'shape'], output: ['v'] },
      { opType: 'Reshape', input: ['v', 'flat'], output: ['vf'] },
      { opType: 'Softmax', input: ['vf'], output: ['yf'], attribute: [intAttr('axis', 1)] },
      { opType: 'Reshape', input: ['yf', 'shape'], output: ['y'] },
    ],
    [
      { name: 'four', dims: [], dataType: 1, floatData: [4] },
      { name: 'starts', dims: [2], dataType: 7, int64Data: [-1, 0] },
      { name: 'ends', dims: [2], dataType: 7, int64Data: [-5, 4] },
      { name: 'axes', dims: [2], dataType: 7, int64Data: [2, 3] },
      { name: 'steps', dims: [2], dataType: 7, int64Data: [-2, 1] },
      { name: 'shape', dims: [3], dataType: 7, int64Data: [1, 8, 2] },
      { name: 'flat', dims: [2], dataType: 7, int64Data: [1, 16] },
    ],
  ]);

  // a 1-D case, on x [1, 2, 7]: run as the 2-D ops over [N, C, 1, L]
  const w1 = Float32Array.from({ length: 3 * 2 * 3 }, () => 0.5 * next());
  const oneD: [string, string, object[], object[]] = [
    '1-D conv (explicit padding, stride 2) and max_pool (automatic padding)',
    "    w = variable<scalar>(shape = [3, 2, 3], label = 'w1');\n    c = conv(x, w, padding = [(1, 2)], stride = [2]);\n    y = max_pool(c, size = [1, 1, 3], border = 'ignore');",
    [
      { opType: 'Conv', input: ['x', 'w1'], output: ['c'], attribute: [intsAttr('strides', [2]), intsAttr('pads', [1, 2])] },
      { opType: 'MaxPool', input: ['c'], output: ['y'], attribute: [intsAttr('kernel_shape', [3]), intsAttr('pads', [1, 1])] },
    ],
    [{ name: 'w1', dims: [3, 2, 3], dataType: 1, floatData: Array.from(w1) }],
  ];
  cases.push(oneD);

  const dir = mkdtempSync(join(tmpdir(), 'mnc-nnef-ops-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  test.each(cases.map((c, i) => [c[0], i] as const))('%s', async (_, i) => {
    const [, body, nodes, initializer] = cases[i];
    const shape = cases[i] === oneD ? [1, 2, 7] : [1, 2, 7, 7];
    const root = join(dir, `case${i}`);
    mkdirSync(root);
    writeFileSync(join(root, 'graph.nnef'), `version 1.0;\ngraph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = ${JSON.stringify(shape).replaceAll(',', ', ')});\n${body}\n}\n`);
    writeFileSync(join(root, 'w1.dat'), encodeTensorFile([3, 2, 3], w1));
    writeFileSync(join(root, 'w.dat'), encodeTensorFile([4, 2, 3, 3], w));
    writeFileSync(join(root, 'wd.dat'), encodeTensorFile([2, 1, 3, 3], wDeconv));
    const onnxFile = join(root, 'model.onnx');
    const valueInfo = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
    writeFileSync(onnxFile, encodeModel({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'g', node: nodes, initializer, input: [valueInfo('x', shape)], output: [{ name: 'y', type: { tensorType: { elemType: 1 } } }] } }));
    const values = uniform(100 + i);
    const x = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * values() - 0.5);
    const expected = await ortRun(onnxFile, x, shape);
    const loaded = loadNnefModel(root);
    const cpu = interpret(loaded.graph, { x }, materializeParameters(loaded.graph, 0)).y;
    const gpu = (await runOnGpu((await compileGraph(loaded.graph, { seed: 0 })).bundle, { x })).y;
    expect(maxError(cpu, expected)).toBeLessThanOrEqual(TOLERANCE);
    expect(maxError(gpu, expected)).toBeLessThanOrEqual(TOLERANCE);
  }, 120_000);
});

// --- training ------------------------------------------------------------------------------

test('an imported graph trains on the GPU: its variables are parameters the loss falls with', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mnc-nnef-train-'));
  try {
    const next = uniform(4);
    writeFileSync(
      join(dir, 'graph.nnef'),
      [
        'version 1.0;',
        'graph regression( x, target ) -> ( loss )',
        '{',
        '    x = external<scalar>(shape = [8, 4]);',
        '    target = external<scalar>(shape = [8, 2]);',
        "    w = variable<scalar>(shape = [2, 4], label = 'w');",
        "    b = variable<scalar>(shape = [1, 2], label = 'b');",
        '    pred = linear(x, w, b);',
        '    diff = sub(pred, target);',
        '    sq = sqr(diff);',
        '    total = mean_reduce(sq, axes = [0, 1]);',
        '    loss = reshape(total, shape = []);',
        '}',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'w.dat'), encodeTensorFile([2, 4], Array.from({ length: 8 }, next)));
    writeFileSync(join(dir, 'b.dat'), encodeTensorFile([1, 2], [0, 0]));
    const loaded = loadNnefModel(dir);
    const plan = await compileGraph(loaded.graph, { seed: 0, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.3 } } });
    const session = await loadTrainingPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const x = Float32Array.from({ length: 32 }, next);
      const target = Float32Array.from({ length: 16 }, (_, i) => x[Math.floor(i / 2) * 4] - 0.5 * x[Math.floor(i / 2) * 4 + 1 + (i % 2)]);
      const losses: number[] = [];
      for (let step = 0; step < 60; step++) losses.push(await session.step({ x, target }));
      const cpu = interpret(loaded.graph, { x, target }, materializeParameters(loaded.graph, 0)).loss[0];
      expect(Math.abs(losses[0] - cpu)).toBeLessThanOrEqual(1e-5);
      expect(losses[59]).toBeLessThan(0.1 * losses[0]);
    } finally {
      session.destroy();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

// --- the CLI ------------------------------------------------------------------------------

describe('mnc compile model.nnef/', () => {
  const root = new URL('..', import.meta.url).pathname;
  const work = mkdtempSync(join(tmpdir(), 'mnc-nnef-cli-'));
  const mnc = cliRunner(join(root, 'dist', 'mnc.mjs'), root);
  beforeAll(() => {
    execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test('a model directory or its graph.nnef compiles; --shape and --freeze apply', () => {
    const plan = join(work, 'cnn.mnplan');
    const r = mnc('compile', 'fixtures/nnef/cnn.nnef/', '-o', plan);
    expect(diagnostics(r)).toEqual([]);
    expect(r.stdout).toMatch(/cnn\.mnplan: model 'cnn' for target generic, \d+ kernels/);
    const mlp = join(work, 'mlp.mnplan');
    const m = mnc('compile', 'fixtures/nnef/mlp.nnef/graph.nnef', '--shape', 'x=4x16', '--freeze', '-o', mlp);
    expect(diagnostics(m)).toEqual([]);
    expect(m.stdout).toMatch(/mlp\.mnplan: model 'mlp'/);
    const manifest = JSON.parse(mnc('inspect', mlp, '--json').stdout);
    expect(manifest.entryPoints.run.inputs.map((i: { name: string; shape: number[] }) => [i.name, i.shape])).toEqual([['x', [4, 16]]]);
  });

  test('errors print as file:line:col', () => {
    const dir = join(work, 'bad.nnef');
    mkdirSync(dir);
    writeFileSync(join(dir, 'graph.nnef'), 'version 1.0;\ngraph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = [2]);\n    y = erf(x);\n}\n');
    expectFailure(mnc('compile', dir, '-o', join(work, 'bad.mnplan')), [
      expect.stringMatching(new RegExp(`^${join(dir, 'graph.nnef')}:5:9: error: erf: operation 'erf' is not an NNEF standard operation`)) as unknown as string,
    ]);
  });
});
