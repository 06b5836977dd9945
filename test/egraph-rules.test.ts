// Every optimizer rule preserves results: for each named rule in compiler/egraph/rules/*.egg,
// a small graph in which it fires, a check that the extracted graph uses the rewritten form,
// and the CPU reference (float64) of the graph before and after on seeded random inputs;
// kernels-phase cases also run compiled on the GPU. Negative cases are matches the cost
// model must refuse (their rewritten form fails its shape rule), so nothing is rewritten.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { compileGraph } from '../compiler/compile';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { optimizeGraph, type OptimizePhase } from '../compiler/egraph/optimize';
import { declaredArities, parseEgg } from '../compiler/egraph/parse';
import { RULE_FILES } from '../compiler/egraph/rules';
import { termDeclarations } from '../compiler/egraph/terms';
import { Graph, liveNodes, type Node } from '../compiler/ir/graph';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { elementCount } from '../compiler/ir/types';
import { loadPlan } from '../runtime/session';
// @ts-expect-error: a plain .mjs build script, without type declarations
import { renderRulesModule } from '../scripts/embed-rules.mjs';
import { randomValues } from '../fixtures/gguf/models';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { randomFeeds } from './random-feeds';

afterAll(releaseSharedDevice);

// --- helpers ------------------------------------------------------------------------------

/** The nodes the outputs depend on (extraction keeps every leaf of the source, used or not). */
function live(graph: Graph): Node[] {
  const ids = liveNodes(graph, graph.outputs.map((o) => o.node));
  return graph.nodes.filter((n) => ids.has(n.id));
}
const opsOf = (graph: Graph) => live(graph).map((n) => n.op);
const countOf = (graph: Graph, op: string) => opsOf(graph).filter((o) => o === op).length;
const scalarsOf = (graph: Graph) =>
  live(graph)
    .filter((n) => n.op === 'constant' && n.type.shape.length === 0)
    .map((n) => (n.attrs.values as Float32Array)[0]);
const fusedMatmuls = (graph: Graph) => live(graph).filter((n) => n.op === 'fusedMatmul');
/** Every state buffer (a KV cache) at zero, as a plan starts it; fresh arrays, as interpret writes them in place. */
const zeroState = (graph: Graph) => new Map(graph.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));


/** The largest difference, relative to the expected values' magnitude (at least 1). */
function relativeDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let worst = 0;
  let scale = 1;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return worst / scale;
}

// --- the cases ----------------------------------------------------------------------------

interface Case {
  /** the rule's `:name` */
  rule: string;
  /** what varies between cases of one rule (rank, operand order) */
  label?: string;
  phase: OptimizePhase;
  build: (g: Graph) => void;
  /** asserts the extracted graph computes the rewritten form */
  form: (optimized: Graph) => void;
}

const KEEP = { keepDims: true };

/** An identity rule removes `op` (and its Scalar operand, when it has one). */
const removes = (op: string) => (o: Graph) => {
  expect(opsOf(o)).not.toContain(op);
  expect(scalarsOf(o)).toEqual([]);
};

const identity = (rule: string, op: string, build: (g: Graph, x: ReturnType<Graph['input']>) => ReturnType<Graph['input']>): Case => ({
  rule,
  phase: 'forward',
  build: (g) => g.output('y', g.exp(build(g, g.input('x', [3, 5])))),
  form: removes(op),
});

/** Folding leaves one Scalar with the folded value as x's only partner. */
const folds = (rule: string, op: string, value: number, constant: (g: Graph) => ReturnType<Graph['input']>): Case => ({
  rule,
  phase: 'forward',
  build: (g) => g.output('y', g.div(g.input('x', [4, 6]), constant(g))),
  form: (o) => {
    expect(opsOf(o)).not.toContain(op);
    expect(countOf(o, 'div')).toBe(1);
    expect(scalarsOf(o)).toEqual([value]);
  },
});

const transposeSquared = (rule: string, shape: number[], perm: number[]): Case => ({
  rule,
  label: `[${shape}] by ${perm}`,
  phase: 'forward',
  build: (g) => g.output('y', g.exp(g.transpose(g.transpose(g.input('x', shape), perm), perm))),
  form: (o) => {
    expect(opsOf(o)).not.toContain('transpose');
    expect(countOf(o, 'exp')).toBe(1);
  },
});

/** A discover rule replaces its primitive chain by one named op. */
const discovers = (rule: string, op: string, label: string | undefined, build: (g: Graph) => void, gone: string[] = []): Case => ({
  rule,
  label,
  phase: 'forward',
  build,
  form: (o) => {
    expect(countOf(o, op)).toBe(1);
    for (const g of gone) expect(opsOf(o)).not.toContain(g);
  },
});

function stableSoftmax(g: Graph, x: ReturnType<Graph['input']>, axis = -1) {
  const e = g.exp(g.sub(x, g.max(x, axis, KEEP)));
  return g.div(e, g.sum(e, axis, KEEP));
}
function rmsPrimitives(g: Graph, x: ReturnType<Graph['input']>, eps: number) {
  return g.sqrt(g.add(g.mean(g.mul(x, x), -1, KEEP), eps));
}

/** A matmul kernel with these epilogue settings, and no other product, transpose or op named in `gone`. */
const fusesTo = (attrs: Record<string, unknown>, gone: string[] = []) => (o: Graph) => {
  const fused = fusedMatmuls(o);
  expect(fused).toHaveLength(1);
  expect(fused[0].attrs).toMatchObject(attrs);
  for (const op of ['matmul', 'transpose', ...gone]) expect(opsOf(o)).not.toContain(op);
};

/** One product, plain or as a fusedMatmul with nothing fused. */
const oneProduct = (o: Graph) => {
  const products = live(o).filter((n) => n.op === 'matmul' || n.op === 'fusedMatmul');
  expect(products).toHaveLength(1);
  if (products[0].op === 'fusedMatmul') {
    expect(products[0].attrs).toMatchObject({ transposeA: false, transposeB: false, activation: 'none', bias: false, residual: false });
  }
};

const foldTranspose = (rule: string, side: 'A' | 'B', aShape: number[], bShape: number[], perm: number[]): Case => ({
  rule,
  label: `a [${aShape}], b [${bShape}]`,
  phase: 'kernels',
  build: (g) => {
    const a = g.input('a', aShape);
    const b = g.input('b', bShape);
    g.output('y', side === 'A' ? g.matmul(g.transpose(a, perm), b) : g.matmul(a, g.transpose(b, perm)));
  },
  form: fusesTo({ transposeA: side === 'A', transposeB: side === 'B', activation: 'none', bias: false, residual: false }),
});

const activation = (rule: string, act: string, apply: (g: Graph, y: ReturnType<Graph['input']>) => ReturnType<Graph['input']>, gone: string): Case => ({
  rule,
  label: 'with bias, 3-D',
  phase: 'kernels',
  build: (g) => {
    const h = g.biasAdd(g.matmul(g.input('x', [2, 3, 5]), g.input('w', [5, 4])), g.input('b', [4]));
    g.output('y', apply(g, h));
  },
  form: fusesTo({ activation: act, bias: true, residual: false }, ['biasAdd', gone]),
});

/** One convolution kernel, a fusedConv2d with these epilogue settings, and no conv2d or op named in `gone`. */
const convFusesTo = (attrs: Record<string, unknown>, gone: string[] = []) => (o: Graph) => {
  const fused = live(o).filter((n) => n.op === 'fusedConv2d');
  expect(fused).toHaveLength(1);
  expect(fused[0].attrs).toMatchObject(attrs);
  for (const op of ['conv2d', ...gone]) expect(opsOf(o)).not.toContain(op);
};
/** NCHW x [2, 4, 7, 6] and w [6, 2, 3, 3] in 2 groups, padding 1: y [2, 6, 7, 6]. */
const convOf = (g: Graph) => g.conv2d(g.input('x', [2, 4, 7, 6]), g.input('w', [6, 2, 3, 3]), { groups: 2, padding: 1 });
const perChannel = (g: Graph, name: string) => g.reshape(g.input(name, [6]), [6, 1, 1]);
const convActivation = (rule: string, act: string, apply: (g: Graph, y: ReturnType<Graph['input']>) => ReturnType<Graph['input']>, gone: string): Case => ({
  rule,
  label: 'after a bias',
  phase: 'kernels',
  build: (g) => g.output('y', apply(g, g.add(convOf(g), perChannel(g, 'b')))),
  form: convFusesTo({ scale: false, shift: true, activation: act, residual: false }, [gone]),
});

const CASES: Case[] = [
  // simplify.egg: identities
  identity('x*1', 'mul', (g, x) => g.mul(x, 1)),
  identity('1*x', 'mul', (g, x) => g.mul(1, x)),
  identity('x/1', 'div', (g, x) => g.div(x, 1)),
  identity('x+0', 'add', (g, x) => g.add(x, 0)),
  identity('0+x', 'add', (g, x) => g.add(0, x)),
  identity('x-0', 'sub', (g, x) => g.sub(x, 0)),
  identity('--x', 'neg', (g, x) => g.neg(g.neg(x))),
  {
    rule: 'x-(-y)',
    phase: 'forward',
    build: (g) => g.output('z', g.sub(g.input('x', [3, 4]), g.neg(g.input('y', [4])))),
    form: (o) => expect(opsOf(o).filter((op) => op !== 'input')).toEqual(['add']),
  },
  {
    rule: 'x+(-y)',
    phase: 'forward',
    build: (g) => g.output('z', g.add(g.input('x', [3, 4]), g.neg(g.input('y', [3, 4])))),
    form: (o) => expect(opsOf(o).filter((op) => op !== 'input')).toEqual(['sub']),
  },
  {
    rule: '(-x)(-y)',
    phase: 'forward',
    build: (g) => g.output('z', g.mul(g.neg(g.input('x', [2, 3, 4])), g.neg(g.input('y', [4])))),
    form: (o) => expect(opsOf(o).filter((op) => op !== 'input')).toEqual(['mul']),
  },
  // simplify.egg: constant folding (values exact in f32, so folding in f64 and storing the
  // result as an f32 constant loses nothing)
  folds('fold +', 'add', 5.5, (g) => g.add(g.constant(2), g.constant(3.5))),
  folds('fold -', 'sub', -1.5, (g) => g.sub(g.constant(2), g.constant(3.5))),
  folds('fold *', 'mul', 7, (g) => g.mul(g.constant(2), g.constant(3.5))),
  folds('fold neg', 'neg', -0.75, (g) => g.neg(g.constant(0.75))),
  // simplify.egg: layout chains
  {
    rule: 'reshape∘reshape',
    label: '2-D → 3-D → 2-D',
    phase: 'forward',
    build: (g) => g.output('y', g.exp(g.reshape(g.reshape(g.input('x', [4, 6]), [2, 3, 4]), [3, -1]))),
    form: (o) => {
      const reshapes = live(o).filter((n) => n.op === 'reshape');
      expect(reshapes).toHaveLength(1);
      expect(reshapes[0].type.shape).toEqual([3, 8]);
    },
  },
  transposeSquared('transpose² 2-D', [3, 5], [1, 0]),
  transposeSquared('transpose² last two (3-D)', [2, 3, 5], [0, 2, 1]),
  transposeSquared('transpose² first two (3-D)', [2, 3, 5], [1, 0, 2]),
  transposeSquared('transpose² last two (4-D)', [2, 3, 4, 5], [0, 1, 3, 2]),
  transposeSquared('transpose² middle (4-D)', [2, 3, 4, 5], [0, 2, 1, 3]),

  // discover.egg
  discovers('silu', 'silu', undefined, (g) => {
    const x = g.input('x', [4, 7]);
    g.output('y', g.mul(x, g.sigmoid(x)));
  }, ['sigmoid', 'mul']),
  discovers('silu\'', 'silu', undefined, (g) => {
    const x = g.input('x', [3, 2, 5]);
    g.output('y', g.mul(g.sigmoid(x), x));
  }, ['sigmoid', 'mul']),
  discovers('silu as x/(1+e^-x)', 'silu', undefined, (g) => {
    const x = g.input('x', [9]);
    g.output('y', g.div(x, g.add(1, g.exp(g.neg(x)))));
  }, ['exp', 'div']),
  discovers('swiglu', 'swiglu', 'of a named silu', (g) => {
    const f = g.input('f', [4, 6]);
    g.output('y', g.mul(g.silu(g.matmul(f, g.input('wg', [6, 8]))), g.matmul(f, g.input('wu', [6, 8]))));
  }, ['silu']),
  discovers('swiglu\'', 'swiglu', 'of a discovered silu, up first', (g) => {
    const gate = g.input('gate', [3, 5]);
    g.output('y', g.mul(g.input('up', [3, 5]), g.mul(gate, g.sigmoid(gate))));
  }, ['silu', 'sigmoid']),
  discovers('softmax', 'softmax', '2-D, axis given as 1', (g) => g.output('y', stableSoftmax(g, g.input('x', [4, 9]), 1)), ['exp', 'max', 'sum']),
  discovers('softmax', 'softmax', '3-D', (g) => g.output('y', stableSoftmax(g, g.input('x', [2, 3, 8]))), ['exp', 'max', 'sum']),
  discovers('softmax (unstabilised)', 'softmax', '1-D', (g) => {
    const e = g.exp(g.input('x', [12]));
    g.output('y', g.div(e, g.sum(e, 0, KEEP)));
  }, ['exp', 'sum']),
  discovers('log∘softmax', 'logSoftmax', 'of the named op', (g) => g.output('y', g.log(g.softmax(g.input('x', [5, 6])))), ['softmax', 'log']),
  discovers('log∘softmax', 'logSoftmax', 'of a discovered softmax', (g) => g.output('y', g.log(stableSoftmax(g, g.input('x', [2, 3, 4])))), ['softmax', 'log', 'exp']),
  discovers('rmsnorm', 'rmsNorm', '2-D', (g) => {
    const x = g.input('x', [6, 16]);
    g.output('y', g.mul(g.div(x, rmsPrimitives(g, x, 1e-5)), g.input('gamma', [16])));
  }, ['sqrt', 'mean']),
  discovers('rmsnorm', 'rmsNorm', '3-D', (g) => {
    const x = g.input('x', [2, 3, 8]);
    g.output('y', g.mul(g.div(x, rmsPrimitives(g, x, 1e-6)), g.input('gamma', [8])));
  }, ['sqrt', 'mean']),
  discovers('rmsnorm\'', 'rmsNorm', undefined, (g) => {
    const x = g.input('x', [5, 12]);
    g.output('y', g.mul(g.input('gamma', [12]), g.div(x, rmsPrimitives(g, x, 1e-5))));
  }, ['sqrt', 'mean']),
  discovers('rmsnorm (reciprocal)', 'rmsNorm', undefined, (g) => {
    const x = g.input('x', [2, 4, 10]);
    g.output('y', g.mul(g.mul(x, g.div(1, rmsPrimitives(g, x, 1e-5))), g.input('gamma', [10])));
  }, ['sqrt', 'mean']),
  discovers('layernorm', 'layerNorm', '2-D', (g) => {
    const x = g.input('x', [5, 16]);
    const c = g.sub(x, g.mean(x, -1, KEEP));
    const y = g.div(c, g.sqrt(g.add(g.mean(g.mul(c, c), -1, KEEP), 1e-5)));
    g.output('y', g.add(g.mul(y, g.input('gamma', [16])), g.input('beta', [16])));
  }, ['sqrt', 'mean', 'sub']),
  discovers('layernorm', 'layerNorm', '3-D', (g) => {
    const x = g.input('x', [2, 3, 8]);
    const c = g.sub(x, g.mean(x, 2, KEEP));
    const y = g.div(c, g.sqrt(g.add(g.mean(g.mul(c, c), 2, KEEP), 1e-5)));
    g.output('y', g.add(g.mul(y, g.input('gamma', [8])), g.input('beta', [8])));
  }, ['sqrt', 'mean', 'sub']),

  // discover.egg: attention, softmax(Q·Kᵀ·scale + mask)·V, with the softmax written out too
  discovers('attention 2-D', 'attention', 'with a mask', (g) => {
    const [q, k, v] = [g.input('q', [5, 8]), g.input('k', [7, 8]), g.input('v', [7, 6])];
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [1, 0])), 0.25), g.input('mask', [5, 7]));
    g.output('y', g.matmul(stableSoftmax(g, scores), v));
  }, ['softmax', 'exp', 'transpose']),
  discovers('attention 3-D', 'attention', 'heads with a causal mask', (g) => {
    const [q, k, v] = [g.input('q', [3, 6, 8]), g.input('k', [3, 6, 8]), g.input('v', [3, 6, 4])];
    const mask = new Float32Array(36).map((_, i) => (i % 6 > Math.floor(i / 6) ? -1e9 : 0));
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), 0.35), g.constant(mask, [6, 6]));
    g.output('y', g.matmul(g.softmax(scores), v));
  }, ['softmax', 'transpose']),
  discovers('attention 4-D', 'attention', undefined, (g) => {
    const [q, k, v] = [g.input('q', [2, 2, 4, 8]), g.input('k', [2, 2, 5, 8]), g.input('v', [2, 2, 5, 3])];
    const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), 0.5), g.input('mask', [4, 5]));
    g.output('y', g.matmul(g.softmax(scores), v));
  }, ['softmax', 'transpose']),
  discovers('attention 3-D, no mask', 'attention', undefined, (g) => {
    const [q, k, v] = [g.input('q', [2, 4, 8]), g.input('k', [2, 9, 8]), g.input('v', [2, 9, 5])];
    g.output('y', g.matmul(g.softmax(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), 0.125)), v));
  }, ['softmax', 'transpose']),

  // fuse.egg: the product itself. A bare FusedMatmul costs what the MatMul does, so
  // extraction may keep either; the rule is there for the rules below to match on.
  {
    rule: 'matmul',
    label: '2-D',
    phase: 'kernels',
    build: (g) => g.output('y', g.matmul(g.input('a', [6, 5]), g.parameter('w', [5, 7]))),
    form: oneProduct,
  },
  {
    rule: 'matmul',
    label: '4-D',
    phase: 'kernels',
    build: (g) => g.output('y', g.matmul(g.input('a', [2, 2, 3, 5]), g.input('b', [2, 2, 5, 4]))),
    form: oneProduct,
  },
  // fuse.egg: a packed weight's product is the fused product with that B, so the rules below apply to it
  {
    rule: 'matmul (packed B)',
    label: "a decode step's normed, rope'd q of a q8_0 weight, and a residual product",
    phase: 'kernels',
    build: (g) => {
      const x = g.input('x', [1, 32]);
      const h = g.rmsNorm(x, g.parameter('norm', [32], { init: { uniform: [0.5, 1.5] } }), { eps: 1e-5 });
      const w = (name: string, rows: number, seed: number) => g.packedParameter(name, [rows, 32], 'q8_0', quantize('Q8_0', randomValues(seed, rows * 32)));
      g.output('q', g.rope(g.reshape(g.matmulQuantized(h, w('q', 16, 1)), [1, 2, 8]), g.input('position', [1, 1]), { theta: 10000 }));
      g.output('o', g.add(x, g.matmulQuantized(g.input('a', [1, 32]), w('o', 32, 2))));
    },
    form: (o) => {
      const fused = fusedMatmuls(o);
      expect(fused).toHaveLength(2);
      expect(fused.find((n) => n.attrs.rope)?.attrs).toMatchObject({ norm: true, transposeB: true, rotation: { shape: [1, 2, 8] } });
      expect(fused.filter((n) => n.attrs.residual)).toHaveLength(1);
      expect(opsOf(o).filter((op) => ['matmulQuantized', 'rmsNorm', 'rope', 'add'].includes(op))).toEqual([]);
    },
  },
  // fuse.egg: transposes read in place
  foldTranspose('fold transpose A 2-D', 'A', [5, 6], [5, 7], [1, 0]),
  foldTranspose('fold transpose B 2-D', 'B', [6, 5], [7, 5], [1, 0]),
  foldTranspose('fold transpose A 3-D', 'A', [2, 5, 3], [2, 5, 4], [0, 2, 1]),
  foldTranspose('fold transpose B 3-D', 'B', [2, 3, 5], [2, 4, 5], [0, 2, 1]),
  foldTranspose('fold transpose A 4-D', 'A', [2, 3, 5, 4], [2, 3, 5, 6], [0, 1, 3, 2]),
  foldTranspose('fold transpose B 4-D', 'B', [2, 3, 4, 5], [2, 3, 6, 5], [0, 1, 3, 2]),
  {
    rule: 'fold transpose A 2-D',
    label: 'both sides, after a bias (A^T · B^T + b)',
    phase: 'kernels',
    build: (g) => g.output('y', g.biasAdd(g.matmul(g.transpose(g.input('a', [5, 6])), g.transpose(g.input('b', [7, 5]))), g.input('bias', [7]))),
    form: fusesTo({ transposeA: true, transposeB: true, bias: true }, ['biasAdd']),
  },
  // fuse.egg: epilogues
  {
    rule: 'matmul+bias',
    label: '2-D',
    phase: 'kernels',
    build: (g) => g.output('y', g.biasAdd(g.matmul(g.input('x', [6, 5]), g.parameter('w', [5, 8])), g.input('b', [8]))),
    form: fusesTo({ activation: 'none', bias: true, residual: false }, ['biasAdd']),
  },
  activation('matmul+relu', 'relu', (g, h) => g.relu(h), 'relu'),
  activation('matmul+gelu', 'gelu', (g, h) => g.gelu(h), 'gelu'),
  activation('matmul+gelu(tanh)', 'geluTanh', (g, h) => g.gelu(h, { approximate: 'tanh' }), 'gelu'),
  activation('matmul+silu', 'silu', (g, h) => g.silu(h), 'silu'),
  {
    rule: 'matmul+silu',
    label: 'silu discovered from h·sigmoid(h), no bias',
    phase: 'kernels',
    build: (g) => {
      const h = g.matmul(g.input('x', [4, 6]), g.input('w', [6, 5]));
      g.output('y', g.mul(h, g.sigmoid(h)));
    },
    form: fusesTo({ activation: 'silu', bias: false }, ['sigmoid', 'mul', 'silu']),
  },
  activation('matmul+sigmoid', 'sigmoid', (g, h) => g.sigmoid(h), 'sigmoid'),
  activation('matmul+tanh', 'tanh', (g, h) => g.tanh(h), 'tanh'),
  {
    rule: 'matmul+residual',
    label: 'bias, relu, then a residual of the same shape',
    phase: 'kernels',
    build: (g) => {
      const h = g.relu(g.biasAdd(g.matmul(g.input('x', [6, 5]), g.input('w', [5, 8])), g.input('b', [8])));
      g.output('y', g.add(h, g.input('r', [6, 8])));
    },
    form: fusesTo({ activation: 'relu', bias: true, residual: true }, ['biasAdd', 'relu', 'add']),
  },
  {
    rule: 'matmul+residual',
    label: '3-D, a residual that broadcasts to the product',
    phase: 'kernels',
    build: (g) => g.output('y', g.add(g.matmul(g.input('x', [2, 3, 5]), g.input('w', [5, 4])), g.input('r', [4]))),
    form: fusesTo({ activation: 'none', bias: false, residual: true }, ['add']),
  },
  {
    rule: 'residual+matmul',
    label: 'residual on the left',
    phase: 'kernels',
    build: (g) => {
      const x = g.input('x', [3, 6]);
      g.output('y', g.add(x, g.matmul(g.input('a', [3, 4]), g.input('w', [4, 6]))));
    },
    form: fusesTo({ activation: 'none', residual: true }, ['add']),
  },
  {
    rule: 'matmul+swiglu',
    label: "the up product gated by the gate product's value, then a residual",
    phase: 'kernels',
    build: (g) => {
      const x = g.input('x', [6, 5]);
      const gated = g.swiglu(g.matmul(x, g.parameter('gate', [5, 8])), g.matmul(x, g.parameter('up', [5, 8])));
      g.output('y', g.add(gated, g.input('r', [6, 8])));
    },
    form: (o) => {
      const fused = fusedMatmuls(o);
      expect(fused).toHaveLength(2);
      expect(fused.filter((n) => n.attrs.gate && n.attrs.residual)).toHaveLength(1);
      expect(opsOf(o)).not.toContain('swiglu');
    },
  },
  {
    rule: 'rmsnorm+matmul',
    label: 'one normed row read by three products (a decode step\'s q, k, v), the weight transposed',
    phase: 'kernels',
    build: (g) => {
      const h = g.rmsNorm(g.input('x', [1, 12]), g.parameter('norm', [12], { init: { uniform: [0.5, 1.5] } }), { eps: 1e-5 });
      for (const name of ['q', 'k', 'v']) g.output(name, g.matmul(h, g.transpose(g.parameter(name, [7, 12]), [1, 0])));
    },
    form: (o) => {
      const fused = fusedMatmuls(o);
      expect(fused).toHaveLength(3);
      for (const n of fused) expect(n.attrs).toMatchObject({ norm: true, eps: 1e-5, transposeB: true });
      expect(opsOf(o)).not.toContain('rmsNorm');
    },
  },

  // fuse-rope.egg: a rope of the product's value seen as heads, last in its epilogue
  {
    rule: 'matmul+rope',
    label: "a decode step's q: the normed row's product, plus a bias, viewed as 2 heads of 8 and rotated at its position",
    phase: 'kernels',
    build: (g) => {
      const h = g.rmsNorm(g.input('x', [1, 12]), g.parameter('norm', [12], { init: { uniform: [0.5, 1.5] } }), { eps: 1e-5 });
      const q = g.add(g.matmul(h, g.transpose(g.parameter('q', [16, 12]), [1, 0])), g.parameter('q_bias', [16], { init: { uniform: [-1, 1] } }));
      g.output('y', g.rope(g.reshape(q, [1, 2, 8]), g.reshape(g.input('position', [1], 'f32'), [1, 1]), { theta: 10000 }));
    },
    form: (o) => {
      const [fused] = fusedMatmuls(o);
      expect(fused.attrs).toMatchObject({ norm: true, rope: true, residual: true, transposeB: true, rotation: { shape: [1, 2, 8], theta: 10000, rotaryDim: 8, inverse: false } });
      expect(opsOf(o)).not.toContain('rope');
    },
  },
  {
    rule: 'matmul+rope',
    label: 'rows of a batch of sequences (decode_batch), partial rotary, each row at its own position',
    phase: 'kernels',
    build: (g) => {
      const k = g.matmul(g.input('x', [3, 12]), g.transpose(g.parameter('k', [16, 12]), [1, 0]));
      g.output('y', g.rope(g.reshape(k, [3, 2, 8]), g.input('positions', [3, 1]), { theta: 500, rotaryDim: 4 }));
    },
    form: (o) => {
      expect(fusedMatmuls(o)[0].attrs).toMatchObject({ rope: true, rotation: { shape: [3, 2, 8], rotaryDim: 4 } });
      expect(opsOf(o)).not.toContain('rope');
    },
  },

  // fuse-cache.egg: a product's rows appended to a KV cache as the product stores them
  {
    rule: 'matmul+cacheWrite',
    label: "a decode step's k: normed, rope'd as 2 heads of 8, its row per head written at the position",
    phase: 'kernels',
    build: (g) => {
      const h = g.rmsNorm(g.input('x', [1, 12]), g.parameter('norm', [12], { init: { uniform: [0.5, 1.5] } }), { eps: 1e-5 });
      const position = g.input('position', [1]);
      const k = g.rope(g.reshape(g.matmul(h, g.transpose(g.parameter('k', [16, 12]), [1, 0])), [1, 2, 8]), g.reshape(position, [1, 1]), { theta: 10000 });
      const cache = g.cacheWrite(g.state('cache', [2, 6, 8]), g.reshape(k, [2, 1, 8]), position);
      g.output('y', g.attention(g.input('q', [2, 1, 8]), cache, cache, g.constant(0), { scale: 0.5 }));
    },
    form: (o) => {
      const [fused] = fusedMatmuls(o);
      expect(fused.attrs).toMatchObject({ norm: true, rope: true, offsets: true, cache: true, rows: [2, 1, 8] });
      expect(opsOf(o)).not.toContain('cacheWrite');
      expect(opsOf(o)).not.toContain('rope');
    },
  },
  {
    rule: 'matmul+cacheWrite',
    label: 'rows of a batch of sequences (decode_batch): each head of each row at its own cache row',
    phase: 'kernels',
    build: (g) => {
      const v = g.matmul(g.input('x', [3, 12]), g.transpose(g.parameter('v', [16, 12]), [1, 0]));
      const offsets = g.constant(Float32Array.of(0, 7, 14, 21, 30, 35), [6], 'rows');
      g.output('y', g.cacheWrite(g.state('cache', [3, 2, 6, 8]), g.reshape(v, [6, 8]), offsets));
    },
    form: (o) => {
      expect(fusedMatmuls(o)[0].attrs).toMatchObject({ cache: true, rows: [6, 8] });
      expect(opsOf(o)).not.toContain('cacheWrite');
    },
  },

  {
    rule: 'matmul+cacheWrite',
    label: "a prompt's k (17 rows, the tiled kernel): rope'd as 2 heads of 8, each head's row to its own cache row (its norm a kernel of its own)",
    phase: 'kernels',
    build: (g) => {
      const h = g.rmsNorm(g.input('x', [17, 12]), g.parameter('norm', [12], { init: { uniform: [0.5, 1.5] } }), { eps: 1e-5 });
      const k = g.rope(g.reshape(g.matmul(h, g.transpose(g.parameter('k', [16, 12]), [1, 0])), [17, 2, 8]), g.input('positions', [17, 1]), { theta: 10000 });
      const rows = g.constant(Float32Array.from({ length: 34 }, (_, i) => (i % 2) * 20 + Math.floor(i / 2)), [34], 'rows');
      g.output('y', g.cacheWrite(g.state('cache', [2, 20, 8]), g.reshape(k, [34, 8]), rows));
    },
    form: (o) => {
      expect(fusedMatmuls(o)[0].attrs).toMatchObject({ norm: false, rope: true, cache: true, rows: [34, 8] });
      expect(opsOf(o)).not.toContain('cacheWrite');
      expect(opsOf(o)).not.toContain('rope');
      expect(opsOf(o)).toContain('rmsNorm');
    },
  },

  // fuse-conv.egg: the convolution's epilogue; its activations (generated) and residual
  {
    rule: 'conv',
    phase: 'kernels',
    build: (g) => g.output('y', convOf(g)),
    form: (o) => expect(countOf(o, 'conv2d') + countOf(o, 'fusedConv2d')).toBe(1),
  },
  {
    rule: 'conv×scale',
    label: 'then a shift: an inference batch norm',
    phase: 'kernels',
    build: (g) => g.output('y', g.add(g.mul(convOf(g), perChannel(g, 's')), perChannel(g, 't'))),
    form: convFusesTo({ scale: true, shift: true, activation: 'none', residual: false }, ['mul', 'add']),
  },
  {
    rule: 'scale×conv',
    phase: 'kernels',
    build: (g) => g.output('y', g.mul(perChannel(g, 's'), convOf(g))),
    form: convFusesTo({ scale: true, shift: false }, ['mul']),
  },
  // a lone [O, 1, 1] add is as good a residual as a shift, so these cases add an activation after it
  {
    rule: 'conv+shift',
    label: "the builder's bias, then tanh",
    phase: 'kernels',
    build: (g) => g.output('y', g.tanh(g.conv2d(g.input('x', [1, 3, 5, 5]), g.input('w', [4, 3, 3, 3]), { bias: g.input('b', [4]) }))),
    form: convFusesTo({ scale: false, shift: true, activation: 'tanh' }, ['add']),
  },
  {
    rule: 'shift+conv',
    label: 'then relu',
    phase: 'kernels',
    build: (g) => g.output('y', g.relu(g.add(perChannel(g, 't'), convOf(g)))),
    form: convFusesTo({ scale: false, shift: true, activation: 'relu' }, ['add']),
  },
  convActivation('conv+relu', 'relu', (g, h) => g.relu(h), 'relu'),
  convActivation('conv+gelu', 'gelu', (g, h) => g.gelu(h), 'gelu'),
  convActivation('conv+gelu(tanh)', 'geluTanh', (g, h) => g.gelu(h, { approximate: 'tanh' }), 'gelu'),
  convActivation('conv+silu', 'silu', (g, h) => g.silu(h), 'silu'),
  convActivation('conv+sigmoid', 'sigmoid', (g, h) => g.sigmoid(h), 'sigmoid'),
  convActivation('conv+tanh', 'tanh', (g, h) => g.tanh(h), 'tanh'),
  {
    rule: 'conv+residual',
    label: 'batch norm, relu, then the block input',
    phase: 'kernels',
    build: (g) => {
      const x = g.input('x', [2, 6, 5, 5]);
      const h = g.conv2d(x, g.input('w', [6, 6, 3, 3]), { padding: 1 });
      g.output('y', g.add(g.relu(g.add(g.mul(h, perChannel(g, 's')), perChannel(g, 't'))), x));
    },
    form: convFusesTo({ scale: true, shift: true, activation: 'relu', residual: true }, ['mul', 'add', 'relu']),
  },
  {
    rule: 'residual+conv',
    label: 'residual on the left, broadcast over the images',
    phase: 'kernels',
    build: (g) => g.output('y', g.add(g.input('r', [1, 6, 7, 6]), convOf(g))),
    form: convFusesTo({ residual: true }, ['add']),
  },
];

/** Matches the cost model must refuse: the named or fused form is absent afterwards. */
interface Refusal {
  label: string;
  phase: OptimizePhase;
  build: (g: Graph) => void;
  absent: (optimized: Graph) => void;
  /** a rule that matches (and is then refused by extraction), when one does */
  fires?: string;
}

const REFUSALS: Refusal[] = [
  {
    label: 'matmul+rope with B read as stored (its pairs are not stored rows)',
    phase: 'kernels',
    fires: 'matmul+rope',
    build: (g) => {
      const q = g.matmul(g.input('x', [17, 12]), g.input('w', [12, 16]));
      g.output('y', g.rope(g.reshape(q, [17, 2, 8]), g.input('positions', [17, 1]), { theta: 10000 }));
    },
    absent: (o) => {
      expect(opsOf(o)).toContain('rope');
      for (const n of fusedMatmuls(o)) expect(n.attrs.rope).toBe(false);
    },
  },
  {
    label: 'matmul+rope with a position per head rather than per row',
    phase: 'kernels',
    fires: 'matmul+rope',
    build: (g) => {
      const q = g.matmul(g.input('x', [1, 12]), g.transpose(g.input('w', [16, 12]), [1, 0]));
      g.output('y', g.rope(g.reshape(q, [1, 2, 8]), g.input('positions', [2]), { theta: 10000 }));
    },
    absent: (o) => {
      expect(opsOf(o)).toContain('rope');
      for (const n of fusedMatmuls(o)) expect(n.attrs.rope).toBe(false);
    },
  },
  {
    label: 'rmsnorm+matmul over 17 rows (more than the small-M kernel that computes the norms takes)',
    phase: 'kernels',
    fires: 'rmsnorm+matmul',
    build: (g) => g.output('y', g.matmul(g.rmsNorm(g.input('x', [17, 12]), g.input('norm', [12]), { eps: 1e-5 }), g.input('w', [12, 7]))),
    absent: (o) => {
      expect(opsOf(o)).toContain('rmsNorm');
      for (const n of fusedMatmuls(o)) expect(n.attrs.norm).toBe(false);
    },
  },
  {
    label: 'rmsnorm with a full [T, n] gamma (RmsNorm wants a vector)',
    phase: 'forward',
    fires: 'rmsnorm',
    build: (g) => {
      const x = g.input('x', [4, 8]);
      g.output('y', g.mul(g.div(x, rmsPrimitives(g, x, 1e-5)), g.input('gamma', [4, 8])));
    },
    absent: (o) => expect(opsOf(o)).not.toContain('rmsNorm'),
  },
  {
    label: 'rmsnorm of a vector x scaled up to [T, n] by gamma',
    phase: 'forward',
    fires: 'rmsnorm',
    build: (g) => {
      const x = g.input('x', [8]);
      g.output('y', g.mul(g.div(x, rmsPrimitives(g, x, 1e-5)), g.input('gamma', [3, 8])));
    },
    absent: (o) => expect(opsOf(o)).not.toContain('rmsNorm'),
  },
  {
    label: 'layernorm with a [T, n] beta',
    phase: 'forward',
    fires: 'layernorm',
    build: (g) => {
      const x = g.input('x', [4, 8]);
      const c = g.sub(x, g.mean(x, -1, KEEP));
      const y = g.div(c, g.sqrt(g.add(g.mean(g.mul(c, c), -1, KEEP), 1e-5)));
      g.output('y', g.add(g.mul(y, g.input('gamma', [8])), g.input('beta', [4, 8])));
    },
    absent: (o) => expect(opsOf(o)).not.toContain('layerNorm'),
  },
  {
    label: 'x·sigmoid(y) with x ≠ y is not silu',
    phase: 'kernels',
    build: (g) => g.output('z', g.mul(g.input('x', [4, 5]), g.sigmoid(g.input('y', [4, 5])))),
    absent: (o) => {
      expect(opsOf(o)).not.toContain('silu');
      for (const n of live(o)) if (n.op === 'fusedPointwise') expect(JSON.stringify(n.attrs)).not.toContain('silu');
    },
  },
  {
    label: 'a residual add that broadcasts the product up to a larger shape',
    phase: 'kernels',
    fires: 'matmul+residual',
    build: (g) => g.output('y', g.add(g.matmul(g.input('x', [4, 5]), g.input('w', [5, 6])), g.input('r', [3, 4, 6]))),
    absent: (o) => {
      for (const n of fusedMatmuls(o)) expect(n.attrs.residual).toBe(false);
      expect(countOf(o, 'add')).toBe(1);
    },
  },
  {
    label: 'a convolution times a full [N, O, OH, OW] tensor is no per-channel scale',
    phase: 'kernels',
    fires: 'conv×scale',
    build: (g) => g.output('y', g.mul(convOf(g), g.input('m', [2, 6, 7, 6]))),
    absent: (o) => {
      for (const n of live(o)) if (n.op === 'fusedConv2d') expect(n.attrs.scale).toBe(false);
    },
  },
  {
    label: 'a convolution plus a [1, 6, 1, 1] bias fuses as a residual, not as a shift',
    phase: 'kernels',
    fires: 'conv+shift',
    build: (g) => g.output('y', g.add(convOf(g), g.input('b4', [1, 6, 1, 1]))),
    absent: (o) => {
      for (const n of live(o)) if (n.op === 'fusedConv2d') expect(n.attrs.shift).toBe(false);
    },
  },
  {
    label: 'a transpose of the batch axes stays a transpose',
    phase: 'kernels',
    build: (g) => g.output('y', g.matmul(g.transpose(g.input('a', [3, 2, 5]), [1, 0, 2]), g.input('b', [2, 5, 4]))),
    absent: (o) => {
      expect(countOf(o, 'transpose')).toBe(1);
      for (const n of fusedMatmuls(o)) expect(n.attrs).toMatchObject({ transposeA: false, transposeB: false });
    },
  },
  {
    label: 'softmax over an axis other than the last',
    phase: 'forward',
    build: (g) => g.output('y', stableSoftmax(g, g.input('x', [4, 6]), 0)),
    absent: (o) => expect(opsOf(o)).not.toContain('softmax'),
  },
];

// --- the tests ----------------------------------------------------------------------------

/** Every named rule, by file, as the optimizer parses them. */
function ruleNames(): { file: string; name: string }[] {
  const declared = declaredArities(parseEgg(termDeclarations(), 'terms.egg'));
  const names: { file: string; name: string }[] = [];
  for (const [file, text] of Object.entries(RULE_FILES)) {
    for (const command of parseEgg(text, `compiler/egraph/rules/${file}`, { declared })) {
      if (command.kind !== 'rewrite' && command.kind !== 'rule') continue;
      const at = `${command.span.file}:${command.span.line}:${command.span.column}`;
      if (command.name === undefined) throw new Error(`${at}: rule without a :name; the report and this test need one`);
      names.push({ file, name: command.name });
    }
  }
  return names;
}

/** CPU reference before and after; returns the optimized graph for the form check. */
function checkPreserved(g: Graph, phase: OptimizePhase, tolerance: number) {
  const optimized = optimizeGraph(g, phase, NVIDIA_HOPPER.cost);
  const parameters = materializeParameters(g, 1);
  for (const seed of [7, 8]) {
    const feeds = randomFeeds(g, seed);
    const expected = interpret(g, feeds, parameters, { state: zeroState(g) });
    const after = interpret(optimized.graph, feeds, parameters, { state: zeroState(optimized.graph) });
    for (const o of g.outputs) expect(relativeDifference(after[o.name], expected[o.name]), `${o.name}, seed ${seed}`).toBeLessThan(tolerance);
  }
  return optimized;
}

describe('rule files', () => {
  test('every named rule has a case', () => {
    const names = ruleNames();
    expect(names.length).toBeGreaterThan(40);
    const covered = new Set(CASES.map((c) => c.rule));
    const uncovered = names.filter((r) => !covered.has(r.name)).map((r) => `${r.file}: "${r.name}"`);
    expect(uncovered, `rules without a case in test/egraph-rules.test.ts:\n${uncovered.join('\n')}`).toEqual([]);
    // and no case for a rule that no longer exists
    const known = new Set(names.map((r) => r.name));
    expect(CASES.map((c) => c.rule).filter((r) => !known.has(r))).toEqual([]);
  });

  test('rules/index.ts is generated from the .egg files', () => {
    const actual = readFileSync(new URL('../compiler/egraph/rules/index.ts', import.meta.url), 'utf8');
    expect(actual === renderRulesModule(), 'compiler/egraph/rules/index.ts is out of date: run node scripts/embed-rules.mjs').toBe(true);
  });
});

describe.each(CASES.map((c) => [c.label ? `${c.rule} (${c.label})` : c.rule, c] as const))('rule %s', (_title, c) => {
  // Every rewrite here is exact in real arithmetic; in float64 only the rounding order of
  // a few operations changes (rmsNorm multiplies by 1/sqrt where the primitives divide).
  test(`fires in the ${c.phase} phase, is extracted, and preserves results`, async () => {
    const g = new Graph('case');
    c.build(g);
    const optimized = checkPreserved(g, c.phase, 1e-9);
    expect(optimized.report.rulesFired[c.rule] ?? 0, `rules fired: ${JSON.stringify(optimized.report.rulesFired)}`).toBeGreaterThan(0);
    c.form(optimized.graph);

    if (c.phase !== 'kernels') return;
    const plan = await compileGraph(g, { seed: 1 });
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const feeds = randomFeeds(g, 7);
      const expected = interpret(g, feeds, materializeParameters(g, 1), { state: zeroState(g) });
      const actual = await session.run(feeds);
      for (const o of g.outputs) expect(relativeDifference(actual[o.name], expected[o.name]), `${o.name} on the GPU`).toBeLessThan(1e-5);
    } finally {
      session.destroy();
    }
  });
});

describe.each(REFUSALS.map((r) => [r.label, r] as const))('no rewrite: %s', (_label, r) => {
  test(`the ${r.phase} phase leaves it alone and preserves results`, () => {
    const g = new Graph('refusal');
    r.build(g);
    const optimized = checkPreserved(g, r.phase, 1e-12);
    if (r.fires) expect(optimized.report.rulesFired[r.fires] ?? 0).toBeGreaterThan(0);
    r.absent(optimized.graph);
  });
});

describe('pointwise fusion after extraction', () => {
  // A one-element constant becomes a literal (shape []) in the fused program; one of a
  // higher rank than its partners gives the result leading 1-axes, which must stay.
  test('a [1, 1] constant keeps the rank it broadcasts its partner to', async () => {
    const g = new Graph('rank');
    const x = g.input('x', [3]);
    g.output('summed', g.sum(g.exp(g.add(x, g.constant([0.5], [1, 1]))), 0));
    g.output('raised', g.tanh(g.mul(g.neg(x), g.constant([2], [1, 1, 1]))));
    g.output('flat', g.exp(g.mul(g.input('z', [2, 3]), g.constant([3], [1]))));
    const optimized = checkPreserved(g, 'kernels', 1e-12);
    for (const o of optimized.graph.outputs) expect(optimized.graph.nodes[o.node].type.shape, o.name).toEqual(g.nodes[g.outputs.find((s) => s.name === o.name)!.node].type.shape);
    expect(countOf(optimized.graph, 'fusedPointwise')).toBe(3);

    const plan = await compileGraph(g, { seed: 1 });
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const feeds = randomFeeds(g, 7);
      const expected = interpret(g, feeds, new Map());
      const actual = await session.run(feeds);
      for (const o of g.outputs) expect(relativeDifference(actual[o.name], expected[o.name]), `${o.name} on the GPU`).toBeLessThan(1e-5);
    } finally {
      session.destroy();
    }
  });
});
