// Every gradient rule in the op table, checked against two independent oracles: central
// finite differences of the float64 CPU reference, and the same backward graph compiled and
// run on the GPU. Each op sits mid-graph (parameters → pre-op → op → post-op → weighted sum),
// so a rule is exercised with a non-trivial dL/dy. Then autodiff's own behaviour: gradient
// accumulation, frozen parameters, and its errors.
import { afterAll, describe, expect, test } from 'vitest';
import { differentiate } from '../compiler/autodiff/differentiate';
import { appendTraining } from '../compiler/autodiff/train';
import { compileGraph } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { conv2dAttrs, Graph, type Conv2dOptions, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { convGeometry, OPS, opDef, type OpName } from '../compiler/ir/ops';
import { loadPlan } from '../runtime/session';
import {
  checkFiniteDifferences,
  checkOnGpu,
  cpuGradients,
  LOSS,
  prepareCase,
  type CaseBuilder,
  type GradCase,
  type PreparedCase,
} from './gradcheck';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { randomValues } from '../fixtures/gguf/models';

// --- tolerances -------------------------------------------------------------------------
//
// Finite differences: the loss is evaluated in float64 at p ± h with h = FD_STEP·max(1, |p|).
// The central difference's truncation error is h²·|L‴|/6 ≈ 1e-12·|L‴| and its rounding error
// about ε·|L|/h ≈ 1e-16·|L|/1e-6 = 1e-10·|L|; with |L| ≲ 100 and |L‴| ≲ 1e3 on these inputs
// (log and sqrt kept ≥ 0.3) both stay below 1e-8. The autodiff side is exact f64 except for
// the constants gradient rules record, which the IR stores as f32 (mean's 1/n: up to 6e-8
// relative). Seen: |ad - fd| ≤ 5e-8 in every case; so |ad - fd| ≤ 1e-6 + 1e-5·|fd| keeps a
// margin of 20× absolute and more relative, while a wrong rule (a lost factor, a sign, a
// missed broadcast sum) is off by O(|fd|).
const FD_STEP = 1e-6;
const FD_ATOL = 1e-6;
const FD_RTOL = 1e-5;

// GPU: the kernels compute in f32 (one ulp at 1 is 2^-23 = 1.2e-7) what the CPU computes in
// f64. GPU_RTOL covers the relative part (seen: a few 1e-7). The atol covers elements near
// zero: pointwise chains of O(1..10) values are off by ~1e-6 (seen ≤ 5e-6 on gradients up to
// 41), so GPU_ATOL = 1e-5; where the backward pass sums `terms` products of size up to
// `magnitude` (matmul, norms), a result near zero can keep about one ulp of the largest term
// per term summed.
const GPU_RTOL = 1e-3;
const GPU_ATOL = 1e-5;
const F32_ULP = 2 ** -23;
const sumAtol = (terms: number, magnitude: number) => Math.max(GPU_ATOL, terms * magnitude * F32_ULP);

afterAll(releaseSharedDevice);

// --- cases ------------------------------------------------------------------------------

/** Operand shape pairs for the broadcasting binary ops: same shape, either side broadcast, both, scalars. */
const BROADCAST_PAIRS: [number[] | 'literal', number[] | 'literal'][] = [
  [[3, 4], [3, 4]],
  [[3, 4], [4]],
  [[4], [3, 4]],
  [[3, 1], [1, 4]],
  [[2, 1, 4], [3, 1]],
  [[3, 4], []],
  [[], [3, 4]],
  [[3, 4], 'literal'],
  ['literal', [3, 4]],
];

function binaryCases(op: 'add' | 'sub' | 'mul' | 'div'): GradCase[] {
  return BROADCAST_PAIRS.map(([sa, sb]) => ({
    label: `${op} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`,
    op,
    build: ({ g, p }: CaseBuilder) => {
      // a divisor stays away from zero, on both signs
      const a = sa === 'literal' ? 1.75 : p('a', sa);
      const b = sb === 'literal' ? (op === 'div' ? -1.25 : 0.75) : p('b', sb, op === 'div' ? { range: [-2, 2], gap: 0.5 } : {});
      return g[op](a, b);
    },
  }));
}

/** sum/mean/max over each axis of a rank-3 tensor, with and without keepDims, and a vector to a scalar. */
function reductionCases(op: 'sum' | 'mean' | 'max'): GradCase[] {
  const axes: [number[], number, boolean][] = [
    [[2, 3, 4], 0, false],
    [[2, 3, 4], 1, true],
    [[2, 3, 4], 1, false],
    [[2, 3, 4], -1, false],
    [[2, 3, 4], 2, true],
    [[7], 0, false],
  ];
  return axes.map(([shape, axis, keepDims]) => ({
    label: `${op} ${JSON.stringify(shape)} axis ${axis}${keepDims ? ' keepDims' : ''}`,
    op,
    build: ({ g, p }: CaseBuilder) => g[op](p('x', shape), axis, { keepDims }),
  }));
}

function unaryCase(op: OpName, label: string, shape: number[], spec: Parameters<CaseBuilder['p']>[2], f: (g: Graph, x: Tensor) => Tensor): GradCase {
  return { label: `${label} ${JSON.stringify(shape)}`, op, build: ({ g, p }) => f(g, p('x', shape, spec)) };
}

function matmulCase(sa: number[], sb: number[]): GradCase {
  return {
    label: `matmul ${JSON.stringify(sa)} · ${JSON.stringify(sb)}`,
    op: 'matmul',
    build: ({ g, p }) => g.matmul(p('a', sa), p('b', sb)),
    // dA sums N·(b's broadcast batch) terms, dB M·(a's broadcast batch) terms: at most 12 here;
    // |a| ≤ 2 and |dL/dy| ≤ 1.5·(1 + |y|/2) with |y| ≤ 4K = 16, so a term is at most ~27
    gpuAtol: sumAtol(12, 32),
  };
}

// a norm's backward pass takes row means (and gamma's gradient sums rows) of ≤ 8 terms of
// dy·γ·x̂, each at most ~50 here
const NORM_ATOL = sumAtol(8, 50);

/** Convolution geometries: padding, stride with asymmetric padding, dilation, groups, depthwise, odd sizes. */
const CONV_GRAD_GEOMETRIES: { label: string; x: number[]; w: number[]; options: Conv2dOptions; bias?: boolean }[] = [
  { label: '3×3 padding 1 with bias', x: [2, 3, 5, 5], w: [4, 3, 3, 3], options: { padding: 1 }, bias: true },
  { label: '3×3 stride 2 padding [0, 1, 1, 0]', x: [1, 2, 7, 6], w: [3, 2, 3, 3], options: { stride: 2, padding: [0, 1, 1, 0] } },
  { label: '2×3 dilation [2, 1] stride [1, 2]', x: [2, 2, 7, 7], w: [2, 2, 2, 3], options: { dilation: [2, 1], stride: [1, 2] } },
  { label: '2 groups padding 1 with bias', x: [1, 4, 5, 4], w: [6, 2, 3, 3], options: { groups: 2, padding: 1 }, bias: true },
  { label: 'depthwise stride 2 padding 1', x: [2, 3, 6, 5], w: [3, 1, 3, 3], options: { groups: 3, stride: 2, padding: 1 } },
];

function convGradCases(): GradCase[] {
  const gpuAtol = sumAtol(72, 30);
  return CONV_GRAD_GEOMETRIES.flatMap(({ label, x, w, options, bias }): GradCase[] => {
    const attrs = conv2dAttrs(options);
    const geo = convGeometry(x, w, attrs);
    const y = [geo.n, geo.o, geo.oh, geo.ow];
    return [
      {
        label: `conv2d ${label}: x ${JSON.stringify(x)}, w ${JSON.stringify(w)} w.r.t. x, w${bias ? ', bias' : ''}`,
        op: 'conv2d',
        build: ({ g, p }) => g.conv2d(p('x', x), p('w', w), { ...options, bias: bias ? p('b', [geo.o]) : undefined }),
        gpuAtol,
      },
      {
        label: `conv2dBackwardInput (transposed convolution) ${label} w.r.t. dy, w`,
        op: 'conv2dBackwardInput',
        build: ({ g, p }) => g.conv2dBackwardInput(p('dy', y), p('w', w), { ...attrs, inputSize: [x[2], x[3]] }),
        gpuAtol,
      },
      {
        label: `conv2dBackwardWeight ${label} w.r.t. x, dy`,
        op: 'conv2dBackwardWeight',
        build: ({ g, p }) => g.conv2dBackwardWeight(p('x', x), p('dy', y), { ...attrs, kernelSize: [w[2], w[3]] }),
        gpuAtol,
      },
    ];
  });
}

const CASES: GradCase[] = [
  ...binaryCases('add'),
  ...binaryCases('sub'),
  ...binaryCases('mul'),
  ...binaryCases('div'),
  { label: 'biasAdd [4, 6] + [6]', op: 'biasAdd', build: ({ g, p }) => g.biasAdd(p('x', [4, 6]), p('b', [6])) },
  { label: 'biasAdd [2, 3, 5] + [5]', op: 'biasAdd', build: ({ g, p }) => g.biasAdd(p('x', [2, 3, 5]), p('b', [5])) },

  unaryCase('relu', 'relu', [3, 5], { gap: 0.2 }, (g, x) => g.relu(x)),
  unaryCase('sigmoid', 'sigmoid', [3, 5], { range: [-4, 4] }, (g, x) => g.sigmoid(x)),
  unaryCase('abs', 'abs', [3, 5], { gap: 0.2 }, (g, x) => g.abs(x)),
  // a and b drawn apart (a in [0.2, 1], b in [-1, -0.2] then shifted per column) so no pair ties within the finite-difference step
  { label: 'minimum [3, 5] · [5]', op: 'minimum', build: ({ g, p }) => g.minimum(p('a', [3, 5], { range: [-1, 1] }), g.add(p('b', [5], { range: [-0.1, 0.1] }), g.constant([-2, 2, -2, 2, -2]))) },
  { label: 'maximum [3, 5] · [3, 1]', op: 'maximum', build: ({ g, p }) => g.maximum(p('a', [3, 5], { range: [-1, 1] }), g.add(p('b', [3, 1], { range: [-0.1, 0.1] }), g.constant([-2, 2, -2], [3, 1]))) },
  // cast to i32 is piecewise constant: m gets no gradient (x·f32(i32(m)))
  { label: 'cast: x · f32(i32(m))', op: 'cast', build: ({ g, p }) => { const x = p('x', [3, 5]); return g.mul(x, g.cast(g.cast(g.mul(p('m', [3, 5]), 3), 'i32'), 'f32')); }, noGradient: ['m'] },
  unaryCase('tanh', 'tanh', [3, 5], { range: [-3, 3] }, (g, x) => g.tanh(x)),
  unaryCase('silu', 'silu', [3, 5], { range: [-4, 4] }, (g, x) => g.silu(x)),
  { label: 'swiglu [3, 5] · [3, 5]', op: 'swiglu', build: ({ g, p }) => g.swiglu(p('gate', [3, 5], { range: [-4, 4] }), p('up', [3, 5])) },
  { label: 'swiglu [2, 3, 4] · [4] (broadcast up)', op: 'swiglu', build: ({ g, p }) => g.swiglu(p('gate', [2, 3, 4], { range: [-4, 4] }), p('up', [4])) },
  unaryCase('gelu', 'gelu exact', [3, 5], { range: [-3, 3] }, (g, x) => g.gelu(x)),
  unaryCase('gelu', 'gelu tanh', [3, 5], { range: [-3, 3] }, (g, x) => g.gelu(x, { approximate: 'tanh' })),
  unaryCase('exp', 'exp', [3, 5], { range: [-2, 2] }, (g, x) => g.exp(x)),
  unaryCase('log', 'log', [3, 5], { range: [0.3, 3] }, (g, x) => g.log(x)),
  unaryCase('neg', 'neg', [3, 5], {}, (g, x) => g.neg(x)),
  unaryCase('sqrt', 'sqrt', [3, 5], { range: [0.3, 4] }, (g, x) => g.sqrt(x)),
  unaryCase('erf', 'erf', [3, 5], { range: [-2, 2] }, (g, x) => g.erf(x)),
  unaryCase('sin', 'sin', [3, 5], { range: [-3, 3] }, (g, x) => g.sin(x)),
  unaryCase('cos', 'cos', [3, 5], { range: [-3, 3] }, (g, x) => g.cos(x)),
  { label: 'pow [3, 5] ^ [5]', op: 'pow', build: ({ g, p }) => g.pow(p('a', [3, 5], { range: [0.5, 2] }), p('b', [5], { range: [-2, 2] })) },
  {
    label: 'where(x > 0, a, b) [3, 5], b [5]',
    op: 'where',
    build: ({ g, p }) => g.where(g.greater(g.constant(Float32Array.from({ length: 15 }, (_, i) => (i % 3) - 1), [3, 5]), 0), p('a', [3, 5]), p('b', [5])),
  },
  // less, greater and isNaN are piecewise constant: their parameter gets a zero gradient
  { label: 'less: x · (x < m)', op: 'less', build: ({ g, p }) => { const x = p('x', [3, 5]); return g.mul(x, g.less(x, p('m', [5]))); }, noGradient: ['m'] },
  { label: 'greater: x · (x > m)', op: 'greater', build: ({ g, p }) => { const x = p('x', [3, 5]); return g.mul(x, g.greater(x, p('m', [5]))); }, noGradient: ['m'] },
  { label: 'ceil: x · ceil(m)', op: 'ceil', build: ({ g, p }) => g.mul(p('x', [3, 5]), g.ceil(p('m', [3, 5], { range: [1.1, 1.9] }))), noGradient: ['m'] },
  { label: 'isNaN: x · (1 - isNaN(m))', op: 'isNaN', build: ({ g, p }) => { const x = p('x', [3, 5]); return g.mul(x, g.sub(1, g.isNaN(p('m', [3, 5])))); }, noGradient: ['m'] },

  // equal is piecewise constant: x·[x == rowmax(x)] has gradient mask·dy and nothing through
  // the mask, and m, which only feeds equal, gets none at all (finite differences agree: 0)
  {
    label: 'equal: x · (x == rowmax(x)) + (m == rowmax(m))',
    op: 'equal',
    build: ({ g, p }) => {
      const x = p('x', [3, 5]);
      const m = p('m', [3, 5]);
      return g.add(g.mul(x, g.equal(x, g.max(x, 1, { keepDims: true }))), g.equal(m, g.max(m, 1, { keepDims: true })));
    },
    noGradient: ['m'],
  },

  { label: 'broadcast [3, 1] to [2, 3, 4]', op: 'broadcast', build: ({ g, p }) => g.broadcastTo(p('x', [3, 1]), [2, 3, 4]) },
  { label: 'broadcast [] to [5]', op: 'broadcast', build: ({ g, p }) => g.broadcastTo(p('x', []), [5]) },
  { label: 'broadcast [4] to [3, 4]', op: 'broadcast', build: ({ g, p }) => g.broadcastTo(p('x', [4]), [3, 4]) },

  ...reductionCases('sum'),
  ...reductionCases('mean'),
  ...reductionCases('max'),

  { label: 'softmax [2, 3, 5]', op: 'softmax', build: ({ g, p }) => g.softmax(p('x', [2, 3, 5], { range: [-3, 3] })) },
  { label: 'softmax [4, 6]', op: 'softmax', build: ({ g, p }) => g.softmax(p('x', [4, 6], { range: [-3, 3] })) },
  { label: 'logSoftmax [2, 3, 5]', op: 'logSoftmax', build: ({ g, p }) => g.logSoftmax(p('x', [2, 3, 5], { range: [-3, 3] })) },
  { label: 'logSoftmax [4, 6]', op: 'logSoftmax', build: ({ g, p }) => g.logSoftmax(p('x', [4, 6], { range: [-3, 3] })) },
  {
    label: 'layerNorm [2, 3, 6] w.r.t. x, gamma, beta',
    op: 'layerNorm',
    build: ({ g, p }) => g.layerNorm(p('x', [2, 3, 6]), p('gamma', [6]), p('beta', [6])),
    gpuAtol: NORM_ATOL,
  },
  {
    label: 'layerNorm [4, 8] eps 0.1 w.r.t. x, gamma, beta',
    op: 'layerNorm',
    build: ({ g, p }) => g.layerNorm(p('x', [4, 8]), p('gamma', [8]), p('beta', [8]), { eps: 0.1 }),
    gpuAtol: NORM_ATOL,
  },
  {
    label: 'rmsNorm [2, 3, 6] w.r.t. x, gamma',
    op: 'rmsNorm',
    build: ({ g, p }) => g.rmsNorm(p('x', [2, 3, 6]), p('gamma', [6])),
    gpuAtol: NORM_ATOL,
  },
  {
    label: 'rmsNorm [4, 8] eps 0.1 w.r.t. x, gamma',
    op: 'rmsNorm',
    build: ({ g, p }) => g.rmsNorm(p('x', [4, 8]), p('gamma', [8]), { eps: 0.1 }),
    gpuAtol: NORM_ATOL,
  },

  { label: 'reshape [3, 4] to [2, 6]', op: 'reshape', build: ({ g, p }) => g.reshape(p('x', [3, 4]), [2, 6]) },
  { label: 'reshape [2, 3, 4] to [6, -1]', op: 'reshape', build: ({ g, p }) => g.reshape(p('x', [2, 3, 4]), [6, -1]) },
  { label: 'transpose [3, 5] reversed', op: 'transpose', build: ({ g, p }) => g.transpose(p('x', [3, 5])) },
  { label: 'transpose [2, 3, 4] perm [2, 0, 1]', op: 'transpose', build: ({ g, p }) => g.transpose(p('x', [2, 3, 4]), [2, 0, 1]) },
  { label: 'transpose [2, 3, 4, 2] perm [0, 2, 1, 3]', op: 'transpose', build: ({ g, p }) => g.transpose(p('x', [2, 3, 4, 2]), [0, 2, 1, 3]) },
  { label: 'slice [4, 6] axis 1 [0, 2) at the start', op: 'slice', build: ({ g, p }) => g.slice(p('x', [4, 6]), 1, 0, 2) },
  { label: 'slice [4, 6] axis 1 [2, 5) in the middle', op: 'slice', build: ({ g, p }) => g.slice(p('x', [4, 6]), 1, 2, 5) },
  { label: 'slice [4, 6] axis 0 [1, 4) at the end', op: 'slice', build: ({ g, p }) => g.slice(p('x', [4, 6]), 0, 1, 4) },
  { label: 'slice [2, 5, 3] axis -2 [3, 5) at the end', op: 'slice', build: ({ g, p }) => g.slice(p('x', [2, 5, 3]), -2, 3, 5) },
  { label: 'slice [3, 4] axis 0 [0, 3) whole', op: 'slice', build: ({ g, p }) => g.slice(p('x', [3, 4]), 0, 0, 3) },
  {
    label: 'concat of three [2, 1|4|2, 3] along axis 1',
    op: 'concat',
    build: ({ g, p }) => g.concat([p('a', [2, 1, 3]), p('b', [2, 4, 3]), p('c', [2, 2, 3])], 1),
  },
  { label: 'concat of two [2|3, 4] along axis 0', op: 'concat', build: ({ g, p }) => g.concat([p('a', [2, 4]), p('b', [3, 4])], 0) },

  matmulCase([3, 4], [4, 5]),
  matmulCase([2, 3, 4], [2, 4, 5]),
  matmulCase([2, 3, 4], [4, 5]),
  matmulCase([3, 4], [2, 4, 5]),
  matmulCase([1, 3, 4], [2, 4, 5]),
  matmulCase([2, 3, 4], [1, 4, 5]),
  matmulCase([2, 1, 3, 4], [3, 4, 2]),

  // attention's rule recomputes the scores and softmax; the mask is a parameter here so its
  // gradient (dS summed over the broadcast axes) is checked too
  {
    label: 'attention q [2, 3, 4], k [2, 5, 4], v [2, 5, 3], mask [3, 5] w.r.t. all four',
    op: 'attention',
    build: ({ g, p }) => g.attention(p('q', [2, 3, 4]), p('k', [2, 5, 4]), p('v', [2, 5, 3]), p('mask', [3, 5]), { scale: 0.5 }),
  },
  {
    label: 'attention with broadcast batches: q [2, 1, 3, 4], k [3, 5, 4], v [5, 2], mask [1, 5]',
    op: 'attention',
    build: ({ g, p }) => g.attention(p('q', [2, 1, 3, 4]), p('k', [3, 5, 4]), p('v', [5, 2]), p('mask', [1, 5]), { scale: 0.7 }),
  },
  {
    label: 'causal attention q [2, 3, 4], k [2, 5, 4] (query i sees keys up to i + 2), v [2, 5, 3], mask [3, 5]',
    op: 'attention',
    build: ({ g, p }) => g.attention(p('q', [2, 3, 4]), p('k', [2, 5, 4]), p('v', [2, 5, 3]), p('mask', [3, 5]), { scale: 0.5, causal: true }),
  },
  {
    // no training plan passes a key count; the rule is checked all the same (a matrix seeing no keys: zeros, gradient 0)
    label: 'attention over a run-time key count: q [3, 2, 4], k [3, 6, 4], v [3, 6, 3], mask [2, 6], counts 4, 0, 6',
    op: 'attention',
    build: ({ g, p }) =>
      g.attention(p('q', [3, 2, 4]), p('k', [3, 6, 4]), p('v', [3, 6, 3]), p('mask', [2, 6]), { scale: 0.5, keyCount: g.constant(Float32Array.of(4, 0, 6), [3], 'key_count') }),
  },

  // convolution: the rules for x, w and bias; the gradient ops' own rules (double backward)
  // with the gradient op mid-graph. dx and dw sum up to OG·KH·KW and N·OH·OW products of
  // size up to ~30 (|x|, |w| ≤ 2 after the pre-op, dL/dy from the post-op)
  ...convGradCases(),

  // pooling: windows that overlap (a value in two windows gets both gradients), padding,
  // dilation; max pooling's values are distinct, so each window's maximum is one element
  { label: 'maxPool2d 3×3 stride 2 padding 1 [2, 3, 7, 6]', op: 'maxPool2d', build: ({ g, p }) => g.maxPool2d(p('x', [2, 3, 7, 6]), { kernel: 3, stride: 2, padding: 1 }) },
  { label: 'maxPool2d 2×3 stride 1 dilation [2, 1] [1, 2, 6, 5]', op: 'maxPool2d', build: ({ g, p }) => g.maxPool2d(p('x', [1, 2, 6, 5]), { kernel: [2, 3], stride: 1, dilation: [2, 1] }) },
  ...[true, false].map((countIncludePad): GradCase => ({
    label: `avgPool2d 3×3 stride 2 padding [1, 0, 1, 1], countIncludePad ${countIncludePad} [2, 3, 7, 6]`,
    op: 'avgPool2d',
    build: ({ g, p }) => g.avgPool2d(p('x', [2, 3, 7, 6]), { kernel: 3, stride: 2, padding: [1, 0, 1, 1], countIncludePad }),
  })),
  {
    label: 'avgPool2dBackward 3×3 stride 2 padding 1, countIncludePad false, w.r.t. dy',
    op: 'avgPool2dBackward',
    build: ({ g, p }) => g.avgPool2dBackward(p('dy', [2, 3, 4, 3]), { kernel: [3, 3], stride: [2, 2], padding: [1, 1, 1, 1], dilation: [1, 1], countIncludePad: false, inputSize: [7, 6] }),
  },
  {
    label: 'batchNorm (inference) [2, 3, 4, 5] w.r.t. x, gamma, beta, mean, var',
    op: 'sqrt',
    build: ({ g, p }) => g.batchNorm(p('x', [2, 3, 4, 5]), p('gamma', [3]), p('beta', [3]), p('mean', [3]), p('var', [3], { range: [0.3, 2] })),
  },
  {
    label: 'batchNormTraining [2, 3, 4, 5] (batch statistics) w.r.t. x, gamma, beta',
    op: 'mean',
    build: ({ g, p }) => g.batchNormTraining(p('x', [2, 3, 4, 5]), p('gamma', [3]), p('beta', [3]), { eps: 0.01 }),
    gpuAtol: NORM_ATOL,
  },
  {
    label: 'ResNet basic block in training: relu(bn(conv(relu(bn(conv(x))))) + x)',
    op: 'conv2d',
    build: ({ g, p }) => {
      const x = p('x', [2, 3, 5, 5]);
      const bn = (t: Tensor, k: string) => g.batchNormTraining(t, p(`gamma${k}`, [3]), p(`beta${k}`, [3]), { eps: 0.01 });
      const h = g.relu(bn(g.conv2d(x, p('w1', [3, 3, 3, 3]), { padding: 1 }), '1'));
      return g.relu(g.add(bn(g.conv2d(h, p('w2', [3, 3, 3, 3]), { padding: 1 }), '2'), x));
    },
    gpuAtol: sumAtol(72, 30),
  },
  {
    label: 'CNN block: globalAvgPool(maxPool(relu(conv2d(x, w) + b)))·W',
    op: 'conv2d',
    build: ({ g, p }) => {
      const h = g.relu(g.conv2d(p('x', [2, 3, 8, 8]), p('w', [4, 3, 3, 3]), { padding: 1, bias: p('b', [4]) }));
      const pooled = g.globalAvgPool2d(g.maxPool2d(h, { kernel: 2 }));
      return g.matmul(g.reshape(pooled, [2, 4]), p('fc', [4, 5]));
    },
    gpuAtol: sumAtol(72, 30),
  },

  // embedding: the table's gradient adds dy's rows at the ids (a repeated id twice, unnamed rows zero)
  {
    label: 'embedding [6, 4] table at ids [2, 0, 2, 5, 3]',
    op: 'embedding',
    build: ({ g, p, labels }) => g.embedding(p('table', [6, 4]), labels('ids', [5], [2, 0, 2, 5, 3])),
  },
  {
    label: 'embedding [5, 2, 3] table at [2, 2] ids, negative ids from the end',
    op: 'embedding',
    build: ({ g, p, labels }) => g.embedding(p('table', [5, 2, 3]), labels('ids', [2, 2], [-1, 3, 0, 4]), { fromEnd: true }),
  },
  {
    // tied embeddings: the LM head's weight is the table, so its gradient sums the gather's and the product's
    label: 'tied embeddings: tanh(embedding(E, ids)) · Eᵀ, E [6, 4]',
    op: 'embedding',
    build: ({ g, p, labels }) => {
      const table = p('table', [6, 4]);
      return g.matmul(g.tanh(g.embedding(table, labels('ids', [5], [1, 4, 1, 0, 5]))), g.transpose(table, [1, 0]));
    },
    gpuAtol: sumAtol(6, 16),
  },
  {
    label: 'embeddingBackward of dy [5, 4] into [6, 4] at ids [2, 0, 2, 5, 3]',
    op: 'embeddingBackward',
    build: ({ g, p, labels }) => g.embeddingBackward(p('dy', [5, 4]), labels('ids', [5], [2, 0, 2, 5, 3]), { rows: 6 }),
  },
  // rope: rotations at the positions; its gradient is the inverse rotation
  {
    label: 'rope heads [2, 5, 8] at positions [0, 3, 1, 7, 12], theta 10000',
    op: 'rope',
    build: ({ g, p, labels }) => g.rope(p('x', [2, 5, 8]), labels('pos', [5], [0, 3, 1, 7, 12]), { theta: 10000 }),
  },
  {
    label: 'rope [seq 3, heads 2, 6] at positions [3, 1], partial rotary 4 of 6',
    op: 'rope',
    build: ({ g, p, labels }) => g.rope(p('x', [3, 2, 6]), labels('pos', [3, 1], [5, 2, 9]), { theta: 100000, rotaryDim: 4 }),
  },
  {
    label: 'inverse rope [4, 16] at 0 .. 3 with Llama 3 scaling',
    op: 'rope',
    build: ({ g, p }) =>
      g.rope(p('x', [4, 16]), undefined, { theta: 500000, inverse: true, scaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } }),
  },

  // the losses are compositions of the ops above: their gradients come from those rules
  {
    // (labels outside [0, 5) are refused by the runtime: the plan records the range, test/training.test.ts)
    label: 'crossEntropy of logits [4, 5] against integer labels',
    op: 'logSoftmax',
    build: ({ g, p, labels }) => g.crossEntropy(p('logits', [4, 5], { range: [-3, 3] }), labels('labels', [4], [2, 0, 3, 4])),
  },
  {
    label: 'crossEntropy of logits [2, 3, 5] against probability targets',
    op: 'logSoftmax',
    build: ({ g, p }) => g.crossEntropy(p('logits', [2, 3, 5], { range: [-3, 3] }), g.softmax(p('targets', [2, 3, 5]))),
  },
  { label: 'mseLoss [3, 4]', op: 'sub', build: ({ g, p }) => g.mseLoss(p('prediction', [3, 4]), p('target', [3, 4])) },
  {
    label: 'binaryCrossEntropy [3, 4]',
    op: 'log',
    build: ({ g, p }) => g.binaryCrossEntropy(p('probabilities', [3, 4], { range: [0.1, 0.9] }), p('target', [3, 4], { range: [0, 1] })),
  },
  {
    label: 'binaryCrossEntropyWithLogits [3, 4]',
    op: 'relu',
    build: ({ g, p }) => g.binaryCrossEntropyWithLogits(p('logits', [3, 4], { range: [-4, 4], gap: 0.2 }), p('target', [3, 4], { range: [0, 1] })),
  },
  {
    label: 'MLP block: layerNorm(gelu(x·W + b)) → softmax',
    op: 'matmul',
    build: ({ g, p }) => {
      const h = g.gelu(g.biasAdd(g.matmul(p('x', [2, 3, 4]), p('w', [4, 6])), p('b', [6])), { approximate: 'tanh' });
      return g.softmax(g.layerNorm(h, p('gamma', [6]), p('beta', [6])));
    },
    gpuAtol: NORM_ATOL,
  },

  // matmulQuantized: x̄ through the product of the other layout; the packed weight has no gradient
  ...(
    [
      ['q4_k w [5, 256], x·wᵀ (matrix-vector forward, tiled backward)', [3, 256], 'q4_k', [5, 256], true],
      ['q8_0 w [6, 64], x·w (tiled forward, matrix-vector backward)', [2, 6], 'q8_0', [6, 64], false],
    ] as const
  ).map(
    ([label, xShape, dtype, wShape, transposeB]): GradCase => ({
      label: `matmulQuantized ${label}`,
      op: 'matmulQuantized',
      build: ({ g, p, packed }) =>
        g.matmulQuantized(p('x', [...xShape]), packed('w', [...wShape], dtype, quantize(dtype === 'q4_k' ? 'Q4_K' : 'Q8_0', randomValues(5, wShape[0] * wShape[1], 0.1))), { transposeB }),
      // x̄ sums N terms of dL/dy·w, |w| ≤ 0.1 and |dL/dy| ≲ 1.5·(1 + |y|/2) with |y| ≲ 2·0.1·256
      gpuAtol: sumAtol(256, 10),
    }),
  ),
];

// --- ops whose rule passes no gradient ----------------------------------------------------
//
// stopGradient and oneHot cannot be checked by finite differences (stopGradient changes what
// the gradient means; oneHot's operand is an integer), so each gets a check of its own. equal
// is checked by the finite differences above (a piecewise-constant function has derivative 0).

const tanhDerivative = (x: number) => 1 - Math.tanh(x) ** 2;

interface ZeroGradientCheck {
  op: OpName;
  label: string;
  run: () => Promise<void>;
}

const ZERO_GRADIENT_CHECKS: ZeroGradientCheck[] = [
  {
    op: 'stopGradient',
    label: 'x · stopGradient(x) has gradient stopGradient(x), not 2x (x = tanh(a) mid-graph)',
    run: async () => {
      const g = new Graph('stop_gradient');
      const u = uniformStream(11);
      const init = Float32Array.from({ length: 12 }, () => 4 * u() - 2);
      const weights = Float32Array.from({ length: 12 }, () => 2 * u() - 1);
      const a = g.parameter('a', [3, 4], { init });
      const x = g.tanh(a);
      const loss = g.sum(g.reshape(g.mul(g.mul(x, g.stopGradient(x)), g.constant(weights, [3, 4])), [-1]), 0);
      g.output(LOSS, loss);
      const grad = differentiate(g, loss, [a.id]).get(a.id)!;
      g.output('grad_a', grad);

      const parameters = new Map([['a', Float64Array.from(init)]]);
      const ad = interpret(g, {}, parameters).grad_a;
      // dL/da = w·x·tanh'(a): the stopped factor is a constant; the full derivative would be twice that
      const expected = Array.from(init, (v, i) => weights[i] * Math.tanh(v) * tanhDerivative(v));
      ad.forEach((v, i) => expect(Math.abs(v - expected[i]), `dL/da[${i}]`).toBeLessThanOrEqual(1e-12));
      const prepared: PreparedCase = {
        graph: g,
        gradients: new Map([['a', 'grad_a']]),
        parameters,
        frozen: new Map(),
        feeds: {},
        differentiatedOps: new Set(),
      };
      await checkOnGpu(prepared, new Map([['a', ad]]), GPU_ATOL, GPU_RTOL);
    },
  },
  {
    // finite differences of a rounding are 0 or a jump: its rule is straight-through by design
    op: 'roundFloat',
    label: 'w · roundFloat(tanh(a), f16) has the gradient of w · tanh(a) (straight through the rounding)',
    run: async () => {
      const g = new Graph('round_float');
      const u = uniformStream(12);
      const init = Float32Array.from({ length: 12 }, () => 4 * u() - 2);
      const weights = Float32Array.from({ length: 12 }, () => 2 * u() - 1);
      const a = g.parameter('a', [3, 4], { init });
      const loss = g.sum(g.reshape(g.mul(g.roundFloat(g.tanh(a), 'f16'), g.constant(weights, [3, 4])), [-1]), 0);
      g.output(LOSS, loss);
      g.output('grad_a', differentiate(g, loss, [a.id]).get(a.id)!);
      const parameters = new Map([['a', Float64Array.from(init)]]);
      const ad = interpret(g, {}, parameters).grad_a;
      ad.forEach((v, i) => expect(Math.abs(v - weights[i] * tanhDerivative(init[i])), `dL/da[${i}]`).toBeLessThanOrEqual(1e-7));
      const prepared: PreparedCase = { graph: g, gradients: new Map([['a', 'grad_a']]), parameters, frozen: new Map(), feeds: {}, differentiatedOps: new Set() };
      await checkOnGpu(prepared, new Map([['a', ad]]), GPU_ATOL, GPU_RTOL);
    },
  },
  {
    op: 'maxPool2dIndices',
    label: 'the argmax positions are integers: no gradient reaches x through them',
    run: async () => {
      const g = new Graph('max_pool_indices');
      const x = g.parameter('x', [1, 2, 4, 4], { init: Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)) });
      const loss = g.sum(g.reshape(g.mul(g.maxPool2d(x, { kernel: 2, stride: 2 }), g.cast(g.maxPool2dIndices(x, { kernel: 2, stride: 2 }), 'f32')), [-1]), 0);
      const grads = differentiate(g, loss, [x.id]);
      expect(g.nodes.some((n) => n.op === 'maxPool2dIndices')).toBe(true);
      // only maxPool2d's rule contributes: one backward op, no path through the indices
      expect(g.nodes.filter((n) => n.op === 'maxPool2dBackward')).toHaveLength(1);
      expect(grads.has(x.id)).toBe(true);
    },
  },
  {
    op: 'oneHot',
    label: 'crossEntropy against integer labels: no gradient reaches the labels through oneHot',
    run: async () => {
      const g = new Graph('one_hot');
      const logits = g.parameter('logits', [4, 5], { init: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)) });
      const labels = g.input('labels', [4], 'i32');
      const loss = g.crossEntropy(g.tanh(logits), labels);
      // asking for the labels' gradient makes autodiff visit oneHot and apply its rule
      const grads = differentiate(g, loss, [labels.id, logits.id]);
      expect(g.nodes.some((n) => n.op === 'oneHot')).toBe(true);
      expect(grads.has(labels.id)).toBe(false);
      expect(grads.has(logits.id)).toBe(true);
    },
  },
];

// --- checks -----------------------------------------------------------------------------

const prepared = new Map<GradCase, PreparedCase>();
const prepare = (c: GradCase) => {
  let p = prepared.get(c);
  if (!p) prepared.set(c, (p = prepareCase(c)));
  return p;
};
/** CPU gradients, kept for the GPU comparison (computed before any perturbation). */
const cpuResults = new Map<GradCase, Map<string, Float64Array>>();
const cpuOf = (c: GradCase) => {
  let r = cpuResults.get(c);
  if (!r) cpuResults.set(c, (r = cpuGradients(prepare(c))));
  return r;
};

describe.each(CASES.map((c) => [c.label, c] as const))('%s', (_label, c) => {
  test('autodiff matches central finite differences of the CPU reference (f64)', () => {
    const p = prepare(c);
    expect([...p.differentiatedOps], `${c.op} must lie between a parameter and the loss`).toContain(c.op);
    for (const name of c.noGradient ?? []) expect(p.gradients.get(name), `gradient of ${name}`).toBeUndefined();
    const ad = cpuOf(c);
    const result = checkFiniteDifferences(p, ad, { step: FD_STEP, atol: FD_ATOL, rtol: FD_RTOL });
    expect(result.checked).toBeGreaterThan(0);
    // a check where everything is zero proves nothing: every differentiable operand must matter
    for (const [name, largest] of result.largest) {
      if (!c.noGradient?.includes(name)) expect(largest, `largest |dL/d${name}|`).toBeGreaterThan(1e-3);
    }
  });

  test('GPU gradients match the CPU gradients', async () => {
    const p = prepare(c);
    await checkOnGpu(p, cpuOf(c), c.gpuAtol ?? GPU_ATOL, GPU_RTOL);
  });
});

describe('ops whose gradient rule passes nothing', () => {
  test.each(ZERO_GRADIENT_CHECKS.map((z) => [`${z.op}: ${z.label}`, z] as const))('%s', async (_label, z) => {
    await z.run();
  });
});

test('every op with a gradient rule has a gradient check', () => {
  const withRule = (Object.keys(OPS) as OpName[]).filter((op) => opDef(op).grad);
  const checked = new Set<OpName>(ZERO_GRADIENT_CHECKS.map((z) => z.op));
  // an op counts where it is the op a case names and actually lies on a parameter→loss path;
  // ops the pre- and post-ops bring along do not count on their own
  for (const c of CASES) {
    if (prepare(c).differentiatedOps.has(c.op)) checked.add(c.op);
  }
  const missing = withRule.filter((op) => !checked.has(op));
  console.log(`gradient checks: ${withRule.length - missing.length} ops checked of ${withRule.length} with a gradient rule`);
  expect(missing).toEqual([]);
});

// --- autodiff behaviour -----------------------------------------------------------------

describe('autodiff', () => {
  test('a value used several times accumulates its gradients: d(x·x + x)/dx = 2x + 1', async () => {
    const g = new Graph('accumulate');
    const init = Float32Array.from([-1.5, -0.25, 0.5, 2]);
    const weights = Float32Array.from([0.5, -1, 2, 1.5]);
    const x = g.parameter('x', [4], { init });
    const loss = g.sum(g.mul(g.add(g.mul(x, x), x), g.constant(weights)), 0);
    g.output(LOSS, loss);
    g.output('grad_x', differentiate(g, loss, [x.id]).get(x.id)!);
    const parameters = new Map([['x', Float64Array.from(init)]]);
    const ad = interpret(g, {}, parameters).grad_x;
    ad.forEach((v, i) => expect(Math.abs(v - weights[i] * (2 * init[i] + 1)), `dL/dx[${i}]`).toBeLessThanOrEqual(1e-12));

    const plan = await compileGraph(g);
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const gpu = (await session.run({})).grad_x;
      gpu.forEach((v, i) => expect(v).toBeCloseTo(ad[i], 5));
    } finally {
      session.destroy();
    }
  });

  test('a parameter with trainable: false gets no gradient and no update', () => {
    const g = new Graph('frozen');
    const x = g.input('x', [2, 3]);
    const w = g.parameter('w', [3, 4]);
    const frozen = g.parameter('frozen', [4], { init: 'ones', trainable: false });
    g.output(LOSS, g.meanAll(g.mul(g.matmul(x, w), frozen)));
    const training = appendTraining(g, { loss: LOSS, optimizer: { kind: 'sgd', lr: 0.1 } });
    expect(training.parameters.map((p) => p.name)).toEqual(['w']);
    expect(training.unused).toEqual([]);
    const updated = g.nodes.filter((n) => n.op === 'sgdUpdate').map((n) => g.nodes[n.inputs[0]].name);
    expect(updated).toEqual(['w']);
    expect(g.nodes.some((n) => n.name.includes('optimizer.frozen'))).toBe(false);
  });

  test('a loss that is not one value is refused, naming the loss', () => {
    const g = new Graph('vector_loss');
    const w = g.parameter('w', [3], { init: [1, 2, 3] });
    const y = g.relu(w);
    let error: unknown;
    try {
      differentiate(g, y, [w.id]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CompileError);
    expect((error as CompileError).kind).toBe('autodiff');
    expect((error as CompileError).message).toContain(`'${y.name}'`);
    expect((error as CompileError).message).toContain('[3]');

    // through the training stage too, which names the output the user chose as the loss
    g.output('per_element', y);
    expect(() => appendTraining(g, { loss: 'per_element', optimizer: { kind: 'sgd', lr: 0.1 } })).toThrow(
      expect.objectContaining({ kind: 'autodiff', message: expect.stringContaining("the loss output 'per_element' must be one value") }),
    );
  });

  test('a loss reached through an op without a gradient rule is refused, naming the op', () => {
    const g = new Graph('no_rule');
    const w = g.parameter('w', [4], { init: [0.5, -1, 2, 0.25] });
    const x = g.constant([1, -1, 1, -1]);
    const back = g.reluBackward(w, x);
    const loss = g.sum(back, 0);
    let error: unknown;
    try {
      differentiate(g, loss, [w.id]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(CompileError);
    const e = error as CompileError;
    expect(e.kind).toBe('autodiff');
    expect(e.op).toBe('reluBackward');
    expect(e.message).toContain(`reluBackward '${back.name}' has no gradient rule`);
    expect(e.loc?.file).toMatch(/gradients\.test\.ts$/);
  });
});
