// Every op of the table, compiled to a plan and run on the GPU (Dawn; llvmpipe in CI),
// against the CPU reference interpreter on seeded random inputs: several shapes per op,
// broadcasting, strided axes, and sizes that are not multiples of any tile or workgroup.
import Ajv from 'ajv';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { conv2dAttrs, Graph, pool2dAttrs, type Conv2dOptions, type Pool2dOptions, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { convGeometry, OPS, poolGeometry, type OpName } from '../compiler/ir/ops';
import { elementCount, type Shape } from '../compiler/ir/types';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { randomValues } from '../fixtures/gguf/models';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';

interface InputSpec {
  shape: Shape;
  /** uniform range of the random values; log and sqrt get positive ones */
  range?: [number, number];
  /** integer inputs hold integers drawn from range (default [-1, 10]; i8: the whole [-128, 127]) */
  dtype?: 'i32' | 'i8';
  /** fixed values instead of random ones */
  values?: number[];
}

interface OpCase {
  label: string;
  inputs: Record<string, InputSpec>;
  build: (g: Graph, x: Record<string, Tensor>) => Tensor;
  /** |gpu - cpu| ≤ atol + rtol·|cpu| */
  atol?: number;
  rtol?: number;
}

const unaryShapes: Shape[] = [[1], [7, 13], [3, 5, 67], [1000]];
const unary = (op: string, build: (g: Graph, x: Tensor) => Tensor, range?: [number, number]): OpCase[] =>
  unaryShapes.map((shape) => ({ label: `${op} ${JSON.stringify(shape)}`, inputs: { a: { shape, range } }, build: (g, x) => build(g, x.a) }));

const broadcastPairs: [Shape, Shape][] = [
  [[7, 13], [7, 13]],
  [[7, 13], [13]],
  [[4, 1, 5], [3, 1]],
  [[2, 3, 4], []],
  [[1], [3, 33]],
];
const binary = (op: 'add' | 'sub' | 'mul' | 'div'): OpCase[] => [
  ...broadcastPairs.map(([sa, sb]): OpCase => ({
    label: `${op} ${JSON.stringify(sa)} ${JSON.stringify(sb)}`,
    inputs: { a: { shape: sa }, b: { shape: sb, range: op === 'div' ? [0.5, 2] : undefined } },
    build: (g, x) => g[op](x.a, x.b),
  })),
  ...integerBinary(op, (g, a, b) => g[op](a, b)),
];

/** An op on i32 operands: negative values, zeros (a divisor of 0 gives the dividend, as WGSL's i32 / does), broadcasting, products that wrap. */
function integerBinary(op: string, build: (g: Graph, a: Tensor, b: Tensor) => Tensor): OpCase[] {
  return [
    { label: `${op} i32 [7, 13] [13]`, inputs: { a: { shape: [7, 13], dtype: 'i32', range: [-50, 50] }, b: { shape: [13], dtype: 'i32', range: [-7, 7] } }, build: (g, x) => build(g, x.a, x.b) },
    { label: `${op} i32 [4, 1, 8] [3, 1]`, inputs: { a: { shape: [4, 1, 8], dtype: 'i32', range: [-9, 9] }, b: { shape: [3, 1], dtype: 'i32', range: [-3, 3] } }, build: (g, x) => build(g, x.a, x.b) },
    {
      label: `${op} i32 at the range's ends`,
      inputs: { a: { shape: [4], dtype: 'i32', values: [2 ** 31 - 1, -(2 ** 31), 65536, -7] }, b: { shape: [4], dtype: 'i32', values: [-1, 1, 65536, 2] } },
      build: (g, x) => build(g, x.a, x.b),
    },
  ];
}

/** A backward op: dy and the forward value (x or y) of one shape. */
const backward = (label: string, build: (g: Graph, dy: Tensor, v: Tensor) => Tensor, range?: [number, number]): OpCase[] =>
  ([[1], [7, 13], [1000]] as Shape[]).map((shape) => ({
    label: `${label} ${JSON.stringify(shape)}`,
    inputs: { dy: { shape }, v: { shape, range } },
    build: (g, x) => build(g, x.dy, x.v),
  }));

const reduceCases = (op: 'sum' | 'mean' | 'max'): OpCase[] =>
  (
    [
      [[37], 0, false],
      [[5, 300], 1, false],
      [[5, 300], 0, true],
      [[3, 4, 5], 1, false],
      [[2, 3, 260], -1, true],
    ] as [Shape, number, boolean][]
  ).map(([shape, axis, keepDims]) => ({
    label: `${op} ${JSON.stringify(shape)} axis ${axis}${keepDims ? ' keepDims' : ''}`,
    inputs: { a: { shape } },
    build: (g, x) => g[op](x.a, axis, { keepDims }),
    atol: 1e-4,
  }));

const rowShapes: Shape[] = [[10], [4, 10], [3, 7, 33], [2, 513]];


/** Convolution geometries for the op and both gradients: kernel sizes, strides, padding, dilation, groups, odd sizes. */
const CONV_TABLE: { label: string; x: Shape; w: Shape; options: Conv2dOptions; bias?: boolean }[] = [
  { label: '1×1', x: [2, 8, 5, 7], w: [6, 8, 1, 1], options: {} },
  { label: '3×3 padding 1, bias', x: [2, 3, 9, 9], w: [4, 3, 3, 3], options: { padding: 1 }, bias: true },
  { label: '7×7 stride 2 padding 3', x: [1, 3, 19, 17], w: [8, 3, 7, 7], options: { stride: 2, padding: 3 } },
  { label: '3×3 stride 2, padding top 0 left 1 bottom 1 right 0', x: [2, 4, 10, 11], w: [5, 4, 3, 3], options: { stride: 2, padding: [0, 1, 1, 0] } },
  { label: '3×3 dilation 2 padding 2', x: [1, 3, 12, 12], w: [4, 3, 3, 3], options: { dilation: 2, padding: 2 } },
  { label: '3 groups', x: [2, 6, 8, 8], w: [9, 2, 3, 3], options: { groups: 3, padding: 1 }, bias: true },
  { label: 'depthwise stride 2', x: [2, 8, 7, 9], w: [8, 1, 3, 3], options: { groups: 8, padding: 1, stride: 2 } },
  { label: '2×3 stride [2, 1] padding [1, 0, 0, 2] dilation [1, 2]', x: [3, 5, 13, 11], w: [7, 5, 2, 3], options: { stride: [2, 1], padding: [1, 0, 0, 2], dilation: [1, 2] } },
  { label: 'several tiles: 40 × 400 × 144', x: [2, 16, 20, 20], w: [40, 16, 3, 3], options: { padding: 1 }, bias: true },
];

type ConvRoleName = 'conv2d' | 'conv2dBackwardInput' | 'conv2dBackwardWeight';
const convCases = (op: ConvRoleName): OpCase[] =>
  CONV_TABLE.map(({ label, x, w, options, bias }) => {
    const attrs = conv2dAttrs(options);
    const geo = convGeometry(x, w, attrs);
    const y = [geo.n, geo.o, geo.oh, geo.ow];
    // K of the product each output sums: CG·KH·KW, OG·KH·KW or N·OH·OW
    const k = op === 'conv2d' ? geo.cg * geo.kh * geo.kw : op === 'conv2dBackwardInput' ? geo.og * geo.kh * geo.kw : geo.n * geo.oh * geo.ow;
    const shapes = op === 'conv2d' ? { x, w, ...(bias ? { b: [geo.o] } : {}) } : op === 'conv2dBackwardInput' ? { dy: y, w } : { x, dy: y };
    return {
      label: `${op} ${label}: x ${JSON.stringify(x)}, w ${JSON.stringify(w)}`,
      inputs: Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, { shape }])),
      build: (g: Graph, t: Record<string, Tensor>) =>
        op === 'conv2d'
          ? g.conv2d(t.x, t.w, { ...options, bias: t.b })
          : op === 'conv2dBackwardInput'
            ? g.conv2dBackwardInput(t.dy, t.w, { ...attrs, inputSize: [x[2], x[3]] })
            : g.conv2dBackwardWeight(t.x, t.dy, { ...attrs, kernelSize: [w[2], w[3]] }),
      // f32 sums of K products of values in [-2, 2]
      atol: 2e-6 * k * 4,
    };
  });


/** Pooling windows: non-overlapping, the ResNet stem's overlapping 3×3 stride 2 padding 1, dilation, asymmetric padding, odd sizes. */
const POOL_TABLE: { label: string; x: Shape; options: Pool2dOptions }[] = [
  { label: '2×2 stride 2', x: [2, 3, 8, 6], options: { kernel: 2 } },
  { label: '3×3 stride 2 padding 1', x: [2, 4, 9, 11], options: { kernel: 3, stride: 2, padding: 1 } },
  { label: '3×2 stride 1 dilation [1, 2] padding [1, 0, 0, 1]', x: [1, 5, 7, 9], options: { kernel: [3, 2], stride: 1, dilation: [1, 2], padding: [1, 0, 0, 1] } },
  { label: '7×7 stride 3 padding 3', x: [1, 2, 17, 13], options: { kernel: 7, stride: 3, padding: 3 } },
];

type PoolOp = 'maxPool2d' | 'avgPool2d' | 'maxPool2dBackward' | 'avgPool2dBackward';
const poolCases = (op: PoolOp): OpCase[] =>
  POOL_TABLE.flatMap(({ label, x, options }) =>
    (op.startsWith('avg') ? [true, false] : [true]).map((countIncludePad): OpCase => {
      const geo = poolGeometry(x, pool2dAttrs(options));
      const y = [geo.n, geo.c, geo.oh, geo.ow];
      const backward = { ...pool2dAttrs(options), inputSize: [x[2], x[3]] as const, countIncludePad };
      return {
        label: `${op} ${label}${op.startsWith('avg') ? `, countIncludePad ${countIncludePad}` : ''}: x ${JSON.stringify(x)}`,
        inputs: op.endsWith('Backward') ? { dy: { shape: y }, ...(op === 'maxPool2dBackward' ? { x: { shape: x } } : {}) } : { x: { shape: x } },
        build: (g: Graph, t: Record<string, Tensor>) =>
          op === 'maxPool2d'
            ? g.maxPool2d(t.x, options)
            : op === 'avgPool2d'
              ? g.avgPool2d(t.x, { ...options, countIncludePad })
              : op === 'maxPool2dBackward'
                ? g.maxPool2dBackward(t.dy, t.x, backward)
                : g.avgPool2dBackward(t.dy, backward),
      };
    }),
  );

const cases: Record<OpName, OpCase[]> = {
  input: [{ label: 'input passed through', inputs: { a: { shape: [3, 4] } }, build: (_g, x) => x.a }],
  parameter: [{ label: 'parameter read back', inputs: {}, build: (g) => g.parameter('w', [5, 6], { init: { uniform: [-1, 1] } }) }],
  state: [{ label: 'state starts at zero', inputs: { a: { shape: [2, 3] } }, build: (g, x) => g.add(x.a, g.state('s', [2, 3])) }],
  constant: [{ label: 'constant added', inputs: { a: { shape: [2, 3] } }, build: (g, x) => g.add(x.a, g.constant([1, 2, 3, 4, 5, 6], [2, 3])) }],
  add: binary('add'),
  sub: binary('sub'),
  mul: binary('mul'),
  div: binary('div'),
  biasAdd: [
    { label: 'biasAdd [9, 17] + [17]', inputs: { a: { shape: [9, 17] }, b: { shape: [17] } }, build: (g, x) => g.biasAdd(x.a, x.b) },
    { label: 'biasAdd [2, 3, 5] + [5]', inputs: { a: { shape: [2, 3, 5] }, b: { shape: [5] } }, build: (g, x) => g.biasAdd(x.a, x.b) },
  ],
  relu: unary('relu', (g, x) => g.relu(x)),
  sigmoid: unary('sigmoid', (g, x) => g.sigmoid(x), [-20, 20]),
  tanh: unary('tanh', (g, x) => g.tanh(x), [-20, 20]),
  gelu: [
    ...unary('gelu', (g, x) => g.gelu(x), [-6, 6]),
    ...unary('gelu tanh', (g, x) => g.gelu(x, { approximate: 'tanh' }), [-6, 6]),
  ],
  silu: unary('silu', (g, x) => g.silu(x), [-20, 20]),
  swiglu: broadcastPairs.map(([sa, sb]) => ({
    label: `swiglu ${JSON.stringify(sa)} ${JSON.stringify(sb)}`,
    inputs: { a: { shape: sa, range: [-20, 20] }, b: { shape: sb } },
    build: (g, x) => g.swiglu(x.a, x.b),
  })),
  exp: unary('exp', (g, x) => g.exp(x), [-5, 5]),
  log: unary('log', (g, x) => g.log(x), [0.05, 10]),
  neg: [...unary('neg', (g, x) => g.neg(x)), { label: 'neg i32', inputs: { a: { shape: [7, 13], dtype: 'i32', range: [-100, 100] } }, build: (g, x) => g.neg(x.a) }],
  sqrt: unary('sqrt', (g, x) => g.sqrt(x), [0, 10]),
  erf: unary('erf', (g, x) => g.erf(x), [-4, 4]),
  sin: unary('sin', (g, x) => g.sin(x), [-10, 10]),
  cos: unary('cos', (g, x) => g.cos(x), [-10, 10]),
  // exact: the GPU's bit arithmetic against runtime/f16.ts's conversions; ties to even, f16's
  // subnormals (below 2^-14), its largest values, bfloat16's 8-bit mantissa
  roundFloat: (['f16', 'bf16'] as const).flatMap((format) => [
    { label: `roundFloat ${format} of values in ±60000`, inputs: { a: { shape: [7, 13], range: [-60000, 60000] as [number, number] } }, build: (g: Graph, x: Record<string, Tensor>) => g.roundFloat(x.a, format), atol: 0, rtol: 0 },
    { label: `roundFloat ${format} of values in ±1e-4`, inputs: { a: { shape: [1000], range: [-1e-4, 1e-4] as [number, number] } }, build: (g: Graph, x: Record<string, Tensor>) => g.roundFloat(x.a, format), atol: 0, rtol: 0 },
    {
      label: `roundFloat ${format} of ties and edges`,
      inputs: { a: { shape: [10], values: [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519, -(2 ** -25), 3 * 2 ** -25, 2 ** -14 - 2 ** -26, 0] } },
      build: (g: Graph, x: Record<string, Tensor>) => g.roundFloat(x.a, format),
      atol: 0,
      rtol: 0,
    },
  ]),
  // exact: integers, halves and values just either side of them
  ceil: [
    { label: 'ceil of values in ±10', inputs: { a: { shape: [7, 13], range: [-10, 10] } }, build: (g, x) => g.ceil(x.a), atol: 0, rtol: 0 },
    { label: 'ceil of integers and their neighbours', inputs: { a: { shape: [8], values: [-2, -1.5, -0.25, 0, 0.25, 1, 1 + 2 ** -20, 3 - 2 ** -20] } }, build: (g, x) => g.ceil(x.a), atol: 0, rtol: 0 },
  ],
  isNaN: [
    { label: 'isNaN of log of values around 0', inputs: { a: { shape: [7, 13], range: [-1, 1] } }, build: (g, x) => g.isNaN(g.log(x.a)) },
    { label: 'isNaN of finite values', inputs: { a: { shape: [1000] } }, build: (g, x) => g.isNaN(x.a) },
  ],
  pow: [
    ...broadcastPairs.map(([sa, sb]) => ({
      label: `pow ${JSON.stringify(sa)} ${JSON.stringify(sb)}`,
      inputs: { a: { shape: sa, range: [0.1, 3] as [number, number] }, b: { shape: sb } },
      build: (g: Graph, x: Record<string, Tensor>) => g.pow(x.a, x.b),
      rtol: 1e-5,
    })),
    { label: 'pow of negative bases by integers', inputs: { a: { shape: [6], values: [-2, -1.5, -3, 0, 2, -0.5] } }, build: (g, x) => g.pow(x.a, g.constant([3, 2, -1, 2, 0, 4], [6])), rtol: 1e-5 },
  ],
  reluBackward: backward('reluBackward', (g, dy, x) => g.reluBackward(dy, x)),
  sigmoidBackward: backward('sigmoidBackward', (g, dy, y) => g.sigmoidBackward(dy, y), [0, 1]),
  tanhBackward: backward('tanhBackward', (g, dy, y) => g.tanhBackward(dy, y), [-1, 1]),
  siluBackward: backward('siluBackward', (g, dy, x) => g.siluBackward(dy, x), [-20, 20]),
  geluBackward: [
    ...backward('geluBackward', (g, dy, x) => g.geluBackward(dy, x, { approximate: 'none' }), [-6, 6]),
    ...backward('geluBackward tanh', (g, dy, x) => g.geluBackward(dy, x, { approximate: 'tanh' }), [-6, 6]),
  ],
  equal: [
    {
      label: 'equal [5, 4] vs row max [5, 1]',
      inputs: { a: { shape: [5, 4] } },
      build: (g, x) => g.equal(x.a, g.max(x.a, 1, { keepDims: true })),
    },
    { label: 'equal with repeated values', inputs: { a: { shape: [6], values: [1, 2, 2, 3, 2, 0] } }, build: (g, x) => g.equal(x.a, 2) },
    ...integerBinary('equal', (g, a, b) => g.equal(a, b)),
  ],
  less: [{ label: 'less [5, 4] vs [4]', inputs: { a: { shape: [5, 4] }, b: { shape: [4] } }, build: (g, x) => g.less(x.a, x.b) }, ...integerBinary('less', (g, a, b) => g.less(a, b))],
  greater: [{ label: 'greater [5, 4] vs [5, 1]', inputs: { a: { shape: [5, 4] }, b: { shape: [5, 1] } }, build: (g, x) => g.greater(x.a, x.b) }],
  where: [
    {
      label: 'where(a > 0, b, -inf-like mask) [3, 1, 5] [2, 1] []',
      inputs: { a: { shape: [3, 1, 5] }, b: { shape: [2, 1] } },
      build: (g, x) => g.where(g.greater(x.a, 0), x.b, -3.4e38),
    },
    {
      label: 'where on i32 values, an i32 constant, then a concat and a transpose of i32',
      inputs: { a: { shape: [3, 4] }, b: { shape: [3, 4], dtype: 'i32', range: [-100, 100] } },
      build: (g, x) => {
        const picked = g.where(g.greater(x.a, 0), x.b, g.constant(Int32Array.of(-7, 8, 9, 10), [4]));
        return g.transpose(g.concat([picked, x.b], 0), [1, 0]);
      },
    },
  ],
  cast: [
    { label: 'cast f32 to i32 (toward zero)', inputs: { a: { shape: [7, 13], range: [-20, 20] } }, build: (g, x) => g.cast(x.a, 'i32') },
    { label: 'cast i32 to f32, times a half', inputs: { a: { shape: [1000], dtype: 'i32', range: [-1000, 1000] } }, build: (g, x) => g.mul(g.cast(x.a, 'f32'), 0.5) },
  ],
  abs: [...unary('abs', (g, x) => g.abs(x)), { label: 'abs i32', inputs: { a: { shape: [3, 5, 67], dtype: 'i32', range: [-100, 100] } }, build: (g, x) => g.abs(x.a) }],
  minimum: [
    { label: 'minimum [5, 4] [4]', inputs: { a: { shape: [5, 4] }, b: { shape: [4] } }, build: (g, x) => g.minimum(x.a, x.b) },
    ...integerBinary('minimum', (g, a, b) => g.minimum(a, b)),
  ],
  maximum: [
    { label: 'maximum [5, 4] [5, 1]', inputs: { a: { shape: [5, 4] }, b: { shape: [5, 1] } }, build: (g, x) => g.maximum(x.a, x.b) },
    ...integerBinary('maximum', (g, a, b) => g.maximum(a, b)),
  ],
  mod: [
    { label: 'mod f32 truncated (fmod)', inputs: { a: { shape: [7, 13], range: [-10, 10] }, b: { shape: [13], range: [0.5, 3] } }, build: (g, x) => g.mod(x.a, g.mul(x.b, g.sub(g.cast(g.greater(x.b, 1.5), 'f32'), 0.5))) },
    { label: 'mod f32 floored', inputs: { a: { shape: [7, 13], range: [-10, 10] }, b: { shape: [13], range: [0.5, 3] } }, build: (g, x) => g.mod(x.a, g.mul(x.b, g.sub(g.cast(g.greater(x.b, 1.5), 'f32'), 0.5)), { floored: true }) },
    ...integerBinary('mod', (g, a, b) => g.mod(a, b)),
    ...integerBinary('mod floored', (g, a, b) => g.mod(a, b, { floored: true })),
  ],
  stopGradient: [{ label: 'stopGradient then exp', inputs: { a: { shape: [3, 4] } }, build: (g, x) => g.exp(g.stopGradient(x.a)) }],
  broadcast: [
    { label: 'broadcast [3, 1] to [2, 3, 5]', inputs: { a: { shape: [3, 1] } }, build: (g, x) => g.broadcastTo(x.a, [2, 3, 5]) },
    { label: 'broadcast [] to [7]', inputs: { a: { shape: [] } }, build: (g, x) => g.broadcastTo(x.a, [7]) },
  ],
  oneHot: [
    // labels outside the classes are refused by the runtime (the plan's index range), as torch's one_hot refuses them
    { label: 'oneHot [9] labels to 10 classes', inputs: { a: { shape: [9], dtype: 'i32', range: [0, 9] } }, build: (g, x) => g.oneHot(x.a, 10) },
    { label: 'oneHot [2, 3] labels to 4 classes', inputs: { a: { shape: [2, 3], dtype: 'i32', range: [0, 3] } }, build: (g, x) => g.oneHot(x.a, 4) },
  ],
  // ids out of range give zero rows, but a plan whose input ids feed an embedding records their
  // range and the runtime refuses the rest (test/embedding-rope.test.ts runs them past that check)
  embedding: [
    { label: 'embedding [10, 8] table at [9] ids', inputs: { t: { shape: [10, 8] }, ids: { shape: [9], dtype: 'i32', range: [0, 9] } }, build: (g, x) => g.embedding(x.t, x.ids) },
    {
      label: 'embedding [7, 3, 5] table (rows [3, 5]) at [2, 3] ids, negative ids from the end',
      inputs: { t: { shape: [7, 3, 5] }, ids: { shape: [2, 3], dtype: 'i32', range: [-7, 6] } },
      build: (g, x) => g.embedding(x.t, x.ids, { fromEnd: true }),
    },
    { label: 'embedding [300] vector at [] (a scalar id)', inputs: { t: { shape: [300] }, ids: { shape: [], dtype: 'i32', range: [0, 299] } }, build: (g, x) => g.embedding(x.t, x.ids) },
    {
      label: 'gather [4, 6, 5] along axis 1 at [2, 2] indices (transposes around an embedding)',
      inputs: { x: { shape: [4, 6, 5] }, ids: { shape: [2, 2], dtype: 'i32', range: [0, 5] } },
      build: (g, x) => g.gather(x.x, x.ids, 1),
    },
  ],
  // repeated ids sum their rows; rows no id names are zero
  embeddingBackward: [
    { label: 'embeddingBackward [40, 8] rows into [6, 8] at ids in [0, 4]', inputs: { dy: { shape: [40, 8] }, ids: { shape: [40], dtype: 'i32', range: [0, 4] } }, build: (g, x) => g.embeddingBackward(x.dy, x.ids, { rows: 6 }) },
    {
      label: 'embeddingBackward [2, 3, 5, 7] into [300, 5, 7] at [2, 3] ids, negative ids from the end',
      inputs: { dy: { shape: [2, 3, 5, 7] }, ids: { shape: [2, 3], dtype: 'i32', range: [-3, 2] } },
      build: (g, x) => g.embeddingBackward(x.dy, x.ids, { rows: 300, fromEnd: true }),
    },
  ],
  // f32 angles: pos·inv_freq rounded to f32 is off by half an ulp of the angle (up to 3.8e-6 for
  // angles below 64, times |x| ≤ 2), which the f64 reference does not round
  rope: [
    {
      label: 'rope heads [3, 5, 8] at run-time positions [5] in [0, 40], theta 10000',
      inputs: { x: { shape: [3, 5, 8] }, pos: { shape: [5], dtype: 'i32', range: [0, 40] } },
      build: (g, x) => g.rope(x.x, x.pos, { theta: 10000 }),
      atol: 2e-5,
    },
    {
      label: 'rope [seq 4, heads 2, 6] at positions [4, 1], partial rotary 4 of 6, theta 100000',
      inputs: { x: { shape: [4, 2, 6] }, pos: { shape: [4, 1], dtype: 'i32', range: [0, 60] } },
      build: (g, x) => g.rope(x.x, x.pos, { theta: 100000, rotaryDim: 4 }),
      atol: 2e-5,
    },
    {
      label: 'rope [2, 3, 7, 64] at 0 .. 6 (no positions given), theta 100000',
      inputs: { x: { shape: [2, 3, 7, 64] } },
      build: (g, x) => g.rope(x.x, undefined, { theta: 100000 }),
      atol: 2e-5,
    },
    {
      // angles up to 2000: the f32 angle itself is off by up to 6e-5, as in HF's f32 computation
      label: 'inverse rope [6, 64] at positions in [0, 2000] with Llama 3 scaling, theta 500000',
      inputs: { x: { shape: [6, 64] }, pos: { shape: [6], dtype: 'i32', range: [0, 2000] } },
      build: (g, x) => g.rope(x.x, x.pos, { theta: 500000, inverse: true, scaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } }),
      atol: 3e-4,
    },
  ],
  slice: [
    { label: 'slice [7, 13] axis 1 [2, 9)', inputs: { a: { shape: [7, 13] } }, build: (g, x) => g.slice(x.a, 1, 2, 9) },
    { label: 'slice [4, 6, 3] axis 0 [1, 2)', inputs: { a: { shape: [4, 6, 3] } }, build: (g, x) => g.slice(x.a, 0, 1, 2) },
    { label: 'slice [2, 10, 5] axis -2 [5, 10)', inputs: { a: { shape: [2, 10, 5] } }, build: (g, x) => g.slice(x.a, -2, 5, 10) },
  ],
  // a step check of NaN or Infinity skips the update: p (and its state) keep their values
  sgdUpdate: [0, NaN, -Infinity].map((check) => ({
    label: `sgd step on [33, 17] with momentum and weight decay, check ${check}`,
    inputs: { grad: { shape: [33, 17] }, hyper: { shape: [10], values: [0.1, 0, 0, 0, 0.01, 0.9, 1, 1, 1, 1] }, check: { shape: [1], values: [check] } },
    build: (g: Graph, x: Record<string, Tensor>) => g.sgdUpdate(g.parameter('p', [33, 17], { init: { uniform: [-1, 1] } }), x.grad, g.state('v', [33, 17]), x.hyper, x.check),
  })),
  adamUpdate: [
    ...[false, true].flatMap((decoupled) =>
      [1.5, Infinity].map((check) => ({
        label: `${decoupled ? 'adamw' : 'adam'} first step on [300], check ${check}`,
        inputs: { grad: { shape: [300] }, hyper: { shape: [10], values: [0.01, 0.9, 0.999, 1e-8, 0.1, 0, 0.1, 0.001, 0.1, 0.001] }, check: { shape: [1], values: [check] } },
        build: (g: Graph, x: Record<string, Tensor>) =>
          g.adamUpdate(g.parameter('p', [300], { init: { uniform: [-1, 1] } }), x.grad, g.state('m', [300]), g.state('v', [300]), x.hyper, x.check, { decoupled }),
      })),
    ),
  ],
  // the cache starts at zero; rows past its end are dropped; the offset is a run-time value of each dtype
  cacheWrite: [
    { label: 'cacheWrite rows [2, 3, 4] into cache [2, 8, 4] at i32 offset 2', inputs: { rows: { shape: [2, 3, 4] }, at: { shape: [1], dtype: 'i32', values: [2] } }, build: (g, x) => g.cacheWrite(g.state('cache', [2, 8, 4]), x.rows, x.at) },
    { label: 'cacheWrite rows [3, 5] into cache [7, 5] at f32 offset 5 (one row dropped)', inputs: { rows: { shape: [3, 5] }, at: { shape: [1], values: [5] } }, build: (g, x) => g.cacheWrite(g.state('cache', [7, 5]), x.rows, x.at) },
    // a batch of sequences: row r at row offset[r] of the cache as [8, 3], in any order; 9 is past the end (an idle slot's row, dropped)
    { label: 'cacheWrite rows [5, 3] into cache [2, 4, 3] at f32 offsets one per row', inputs: { rows: { shape: [5, 3] }, at: { shape: [5], values: [6, 0, 9, 3, 7] } }, build: (g, x) => g.cacheWrite(g.state('cache', [2, 4, 3]), x.rows, x.at) },
    { label: 'cacheWrite rows [3, 4] into cache [6, 4] at i32 offsets one per row', inputs: { rows: { shape: [3, 4] }, at: { shape: [3], dtype: 'i32', values: [5, 1, 2] } }, build: (g, x) => g.cacheWrite(g.state('cache', [6, 4]), x.rows, x.at) },
  ],
  sum: reduceCases('sum'),
  mean: reduceCases('mean'),
  max: reduceCases('max'),
  softmax: rowShapes.map((shape) => ({ label: `softmax ${JSON.stringify(shape)}`, inputs: { a: { shape, range: [-8, 8] } }, build: (g, x) => g.softmax(x.a) })),
  logSoftmax: rowShapes.map((shape) => ({
    label: `logSoftmax ${JSON.stringify(shape)}`,
    inputs: { a: { shape, range: [-8, 8] } },
    build: (g, x) => g.logSoftmax(x.a),
  })),
  layerNorm: [
    ...rowShapes.map((shape) => ({
      label: `layerNorm ${JSON.stringify(shape)}`,
      inputs: { a: { shape }, gamma: { shape: [shape[shape.length - 1]] }, beta: { shape: [shape[shape.length - 1]] } },
      build: (g: Graph, x: Record<string, Tensor>) => g.layerNorm(x.a, x.gamma, x.beta),
      atol: 1e-4,
    })),
    {
      // rows of 4096 in registers, mean and variance in one tree: a mean 2000 times the spread
      // (f32 holds x - mean to about 1e-4 of the spread here, in any order of summation)
      label: 'layerNorm [3, 4096] of values in [999, 1001]',
      inputs: { a: { shape: [3, 4096], range: [999, 1001] }, gamma: { shape: [4096] }, beta: { shape: [4096] } },
      build: (g: Graph, x: Record<string, Tensor>) => g.layerNorm(x.a, x.gamma, x.beta),
      atol: 1e-3,
    },
  ],
  rmsNorm: rowShapes.map((shape) => ({
    label: `rmsNorm ${JSON.stringify(shape)}`,
    inputs: { a: { shape }, gamma: { shape: [shape[shape.length - 1]] } },
    build: (g, x) => g.rmsNorm(x.a, x.gamma),
    atol: 1e-4,
  })),
  reshape: [
    { label: 'reshape [6, 4] to [2, -1] then relu', inputs: { a: { shape: [6, 4] } }, build: (g, x) => g.relu(g.reshape(x.a, [2, -1])) },
    { label: 'reshape as an output', inputs: { a: { shape: [3, 5] } }, build: (g, x) => g.reshape(x.a, [15]) },
  ],
  transpose: [
    { label: 'transpose [7, 13]', inputs: { a: { shape: [7, 13] } }, build: (g, x) => g.transpose(x.a) },
    { label: 'transpose [2, 3, 5] perm [1, 2, 0]', inputs: { a: { shape: [2, 3, 5] } }, build: (g, x) => g.transpose(x.a, [1, 2, 0]) },
    { label: 'transpose [4, 1, 6, 3] perm [0, 2, 1, 3]', inputs: { a: { shape: [4, 1, 6, 3] } }, build: (g, x) => g.transpose(x.a, [0, 2, 1, 3]) },
  ],
  concat: [
    {
      label: 'concat axis 0',
      inputs: { a: { shape: [2, 5] }, b: { shape: [3, 5] } },
      build: (g, x) => g.concat([x.a, x.b], 0),
    },
    {
      label: 'concat axis 1 of three',
      inputs: { a: { shape: [4, 1] }, b: { shape: [4, 6] }, c: { shape: [4, 2] } },
      build: (g, x) => g.concat([x.a, x.b, x.c], 1),
    },
    {
      label: 'concat axis -1 of rank 3',
      inputs: { a: { shape: [2, 3, 5] }, b: { shape: [2, 3, 2] } },
      build: (g, x) => g.concat([x.a, x.b], -1),
    },
  ],
  matmul: (
    [
      [[1, 1], [1, 1]],
      [[5, 7], [7, 3]],
      [[64, 64], [64, 64]],
      [[65, 130], [130, 67]],
      [[32, 784], [784, 128]],
      [[3, 17, 9], [3, 9, 20]],
      [[2, 3, 17, 9], [9, 5]],
      [[4, 1, 6, 8], [3, 8, 2]],
    ] as [Shape, Shape][]
  ).map(([sa, sb]) => ({
    label: `matmul ${JSON.stringify(sa)} · ${JSON.stringify(sb)}`,
    inputs: { a: { shape: sa }, b: { shape: sb } },
    build: (g, x) => g.matmul(x.a, x.b),
    // f32 sums of K products of values in [-2, 2]
    atol: 2e-6 * sa[sa.length - 1] * 4,
  })),
  conv2d: convCases('conv2d'),
  conv2dBackwardInput: convCases('conv2dBackwardInput'),
  conv2dBackwardWeight: convCases('conv2dBackwardWeight'),
  maxPool2d: poolCases('maxPool2d'),
  maxPool2dBackward: poolCases('maxPool2dBackward'),
  // exact: the same flat index (random f32 values do not tie)
  maxPool2dIndices: POOL_TABLE.map(({ label, x, options }): OpCase => ({ label: `maxPool2dIndices ${label}: x ${JSON.stringify(x)}`, inputs: { x: { shape: x } }, build: (g, t) => g.maxPool2dIndices(t.x, options), atol: 0, rtol: 0 })),
  avgPool2d: poolCases('avgPool2d'),
  avgPool2dBackward: poolCases('avgPool2dBackward'),
  // test/attention.test.ts checks attention against its unfused graph, on more shapes
  // exact: every product of these shapes stays below 2^24, where the f32 read-back is exact
  matmulInt8: (
    [
      [[1, 1], [1, 1]],
      [[5, 7], [7, 3]],
      [[64, 64], [64, 64]],
      [[65, 130], [130, 67]],
      [[128, 96], [96, 192]],
      [[3, 257], [257, 6]],
    ] as [Shape, Shape][]
  ).map(([sa, sb]) => ({
    label: `matmulInt8 ${JSON.stringify(sa)} · ${JSON.stringify(sb)}`,
    inputs: { a: { shape: sa, dtype: 'i8' }, b: { shape: sb, dtype: 'i8' } },
    build: (g, x) => g.matmulInt8(x.a, x.b),
    atol: 0,
    rtol: 0,
  })),
  // packed weights per type and shape: test/quantized-matmul.test.ts
  matmulQuantized: [
    {
      label: 'matmulQuantized [3, 2, 64] · q4_0 [9, 64]ᵀ (matrix-vector)',
      inputs: { a: { shape: [3, 2, 64] } },
      build: (g, x) => g.matmulQuantized(x.a, g.packedParameter('w', [9, 64], 'q4_0', quantize('Q4_0', randomValues(3, 9 * 64)))),
      atol: 2e-6 * 64 * 4,
    },
    {
      label: 'matmulQuantized [20, 256] · q6_k [256, 256] (tiled, w as [K, N])',
      inputs: { a: { shape: [20, 256] } },
      build: (g, x) => g.matmulQuantized(x.a, g.packedParameter('w', [256, 256], 'q6_k', quantize('Q6_K', randomValues(4, 256 * 256))), { transposeB: false }),
      atol: 2e-6 * 256 * 4,
    },
  ],
  attention: (
    [
      ['[2, 5, 8] keys [2, 7, 8] values [2, 7, 6], mask [5, 7]', [2, 5, 8], [2, 7, 8], [2, 7, 6], [5, 7]],
      ['heads [9, 16, 64], causal mask [16, 16]', [9, 16, 64], [9, 16, 64], [9, 16, 64], [16, 16]],
      ['Tk = 300, dv 24 > d 16, mask [3, 300]', [2, 3, 16], [2, 300, 16], [2, 300, 24], [3, 300]],
      ['batch broadcast: q [2, 1, 4, 8], k [3, 6, 8], v [6, 5], mask [1, 6]', [2, 1, 4, 8], [3, 6, 8], [6, 5], [1, 6]],
      ['Tk = 2500 in three tiles, scalar mask', [4, 8], [2500, 8], [2500, 4], []],
    ] as [string, Shape, Shape, Shape, Shape][]
  ).map(([label, sq, sk, sv, sm]) => {
    const [tq, tk] = [sq[sq.length - 2], sk[sk.length - 2]];
    const causal = label.includes('causal') ? Array.from({ length: tq * tk }, (_, e) => (e % tk > Math.floor(e / tk) ? -1e9 : 0)) : undefined;
    return {
      label: `attention ${label}`,
      inputs: { q: { shape: sq }, k: { shape: sk }, v: { shape: sv }, mask: { shape: sm, values: causal } },
      build: (g: Graph, x: Record<string, Tensor>) => g.attention(x.q, x.k, x.v, x.mask, { scale: 1 / Math.sqrt(sq[sq.length - 1]) }),
      // an average of values in [-2, 2]: weights off by the f32 error of d-term scores (and of a
      // Tk-term sum), times |v| ≤ 2
      atol: 5e-5,
    };
  }),
  // the fused ops; test/fusion-kernels.test.ts checks them against their unfused graphs
  fusedPointwise: [
    {
      label: 'fusedPointwise gelu(a * b + 1), b over the last axis',
      inputs: { a: { shape: [7, 13] }, b: { shape: [13] } },
      build: (g, x) =>
        g.fusedPointwise(
          [x.a, x.b],
          [
            { op: 'mul', args: [{ operand: 0 }, { operand: 1 }] },
            { op: 'add', args: [{ value: 0 }, { scalar: 1 }] },
            { op: 'gelu', args: [{ value: 1 }], attrs: { approximate: 'none' } },
          ],
        ),
    },
    {
      label: 'fusedPointwise reluBackward(a, b) * sigmoid(b) - 0.5, [4, 1, 5] and [3, 1]',
      inputs: { a: { shape: [4, 1, 5] }, b: { shape: [3, 1] } },
      build: (g, x) =>
        g.fusedPointwise(
          [x.a, x.b],
          [
            { op: 'reluBackward', args: [{ operand: 0 }, { operand: 1 }] },
            { op: 'sigmoid', args: [{ operand: 1 }] },
            { op: 'mul', args: [{ value: 0 }, { value: 1 }] },
            { op: 'sub', args: [{ value: 2 }, { scalar: 0.5 }] },
          ],
        ),
    },
  ],
  fusedConv2d: [
    {
      label: 'fusedConv2d relu(conv × scale + shift) + residual, 3×3 padding 1, x [2, 3, 9, 7], w [5, 3, 3, 3]',
      inputs: { x: { shape: [2, 3, 9, 7] }, w: { shape: [5, 3, 3, 3] }, s: { shape: [5, 1, 1] }, t: { shape: [5, 1, 1] }, r: { shape: [2, 5, 9, 7] } },
      build: (g, x) => g.fusedConv2d(x.x, x.w, { padding: 1, scale: x.s, shift: x.t, activation: 'relu', residual: x.r }),
      atol: 2e-6 * 27 * 8,
    },
    {
      label: 'fusedConv2d gelu(conv + shift) + residual broadcast over images [1, 6, 3, 4], 2 groups, stride 2',
      inputs: { x: { shape: [3, 4, 8, 9] }, w: { shape: [6, 2, 3, 3] }, t: { shape: [6, 1, 1] }, r: { shape: [1, 6, 3, 4] } },
      build: (g, x) => g.fusedConv2d(x.x, x.w, { stride: 2, groups: 2, shift: x.t, activation: 'gelu', residual: x.r }),
      atol: 2e-6 * 18 * 8,
    },
  ],
  fusedMatmul: [
    {
      label: 'fusedMatmul gelu([65, 130] · [130, 67] + bias)',
      inputs: { a: { shape: [65, 130] }, b: { shape: [130, 67] }, bias: { shape: [67] } },
      build: (g, x) => g.fusedMatmul(x.a, x.b, { bias: x.bias, activation: 'gelu' }),
      atol: 2e-6 * 130 * 4,
    },
    {
      label: 'fusedMatmul silu(Aᵀ · Bᵀ) + residual, A [3, 9, 17], B [20, 9], residual [17, 20]',
      inputs: { a: { shape: [3, 9, 17] }, b: { shape: [20, 9] }, r: { shape: [17, 20] } },
      build: (g, x) => g.fusedMatmul(x.a, x.b, { transposeA: true, transposeB: true, activation: 'silu', residual: x.r }),
      atol: 2e-6 * 9 * 4,
    },
  ],
};

const validateManifest = new Ajv({ allErrors: true }).compile(
  JSON.parse(readFileSync(new URL('../schemas/mnplan.schema.json', import.meta.url), 'utf8')),
);

function randomInput(spec: InputSpec, seed: number): Float32Array | Int32Array | Int8Array {
  if (spec.values) return spec.dtype === 'i32' ? Int32Array.from(spec.values) : Float32Array.from(spec.values);
  const u = uniformStream(seed);
  if (spec.dtype === 'i8') {
    const [lo, hi] = spec.range ?? [-128, 127];
    return Int8Array.from({ length: elementCount(spec.shape) }, () => Math.floor(lo + (hi - lo + 1) * u()));
  }
  if (spec.dtype === 'i32') {
    const [lo, hi] = spec.range ?? [-1, 10];
    return Int32Array.from({ length: elementCount(spec.shape) }, () => Math.floor(lo + (hi - lo + 1) * u()));
  }
  const [lo, hi] = spec.range ?? [-2, 2];
  return Float32Array.from({ length: elementCount(spec.shape) }, () => lo + (hi - lo) * u());
}

afterAll(releaseSharedDevice);

test('every op in the table has GPU cases', () => {
  for (const op of Object.keys(OPS) as OpName[]) expect(cases[op]?.length, op).toBeGreaterThan(0);
});

describe.each(Object.entries(cases))('%s on the GPU equals the CPU reference', (op, opCases) => {
  test.each(opCases.map((c) => [c.label, c] as const))('%s', async (_label, c) => {
    const g = new Graph(`${op}_case`);
    const x = Object.fromEntries(Object.entries(c.inputs).map(([name, spec]) => [name, g.input(name, spec.shape, spec.dtype)]));
    g.output('y', c.build(g, x));
    const plan = await compileGraph(g, { seed: 7 });
    expect(validateManifest(plan.manifest), JSON.stringify(validateManifest.errors)).toBe(true);
    const feeds = Object.fromEntries(Object.entries(c.inputs).map(([name, spec], k) => [name, randomInput(spec, 1000 + k)]));
    const state = new Map(g.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
    const expected = interpret(g, feeds, plan.parameters, { state }).y;

    expectClose((await runOnGpu(plan.bundle, feeds)).y, expected, c.atol ?? 1e-5, c.rtol ?? 1e-4);
  });
});
