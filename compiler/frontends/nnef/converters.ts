// NNEF's standard operations (other than the tensor declarations, which load.ts reads) onto
// the IR op table. Operations the table lacks decompose here as the spec's own fragment
// bodies define them (min and max through select, clamp as max(min(x, b), a), elu, softplus,
// rsqrt, …); NNEF's left-aligned broadcasting is made explicit with trailing unit axes.
// Sliding-window operations live in windows.ts.
import type { Tensor } from '../../ir/graph';
import { elementCount, formatShape } from '../../ir/types';
import { CONSTANT_LIMIT, floats, type Converter, type NnefType, type NnefValue, type OperationContext } from './context';
import { padConstant, WINDOW_CONVERTERS } from './windows';

const scalarValue = (tensor: Tensor): NnefValue => ({ tensor, type: 'scalar' });
const logicalValue = (tensor: Tensor): NnefValue => ({ tensor, type: 'logical' });

function unary(f: (ctx: OperationContext, x: Tensor) => Tensor, type: NnefType = 'scalar'): Converter {
  return (ctx) => {
    const [x] = floats(ctx, ctx.tensor('x'));
    return [{ tensor: f(ctx, x), type }];
  };
}
const irUnary = (op: 'relu' | 'sigmoid' | 'tanh' | 'neg' | 'sqrt' | 'exp' | 'log' | 'sin' | 'cos' | 'silu'): Converter => unary((ctx, x) => ctx.record(op, [x]));

function binary(f: (ctx: OperationContext, a: Tensor, b: Tensor) => Tensor, type: NnefType = 'scalar'): Converter {
  return (ctx) => {
    const [a, b] = ctx.align(...floats(ctx, ctx.tensor('x'), ctx.tensor('y')));
    return [{ tensor: f(ctx, a, b), type }];
  };
}
const irBinary = (op: 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'less' | 'greater' | 'equal', type: NnefType = 'scalar'): Converter => binary((ctx, a, b) => ctx.record(op, [a, b]), type);

const one = (ctx: OperationContext) => ctx.scalarConstant(1);
/** 1 - a: logical negation, and le/ge/ne from gt/lt/eq */
const not = (ctx: OperationContext, a: Tensor) => ctx.record('sub', [one(ctx), a]);
const where = (ctx: OperationContext, c: Tensor, a: Tensor, b: Tensor) => ctx.record('where', [c, a, b]);
const minimum = (ctx: OperationContext, a: Tensor, b: Tensor) => where(ctx, ctx.record('less', [a, b]), a, b);
const maximum = (ctx: OperationContext, a: Tensor, b: Tensor) => where(ctx, ctx.record('greater', [a, b]), a, b);
const scale = (ctx: OperationContext, x: Tensor, k: number) => ctx.record('mul', [x, ctx.scalarConstant(k)]);

/** select(x < 0, alpha·(eˣ - 1), x): elu's body */
const elu = (ctx: OperationContext, x: Tensor, alpha: number) =>
  where(ctx, ctx.record('less', [x, ctx.scalarConstant(0)]), scale(ctx, ctx.record('sub', [ctx.record('exp', [x]), one(ctx)]), alpha), x);

// --- shapes and layout ------------------------------------------------------------------

/** reshape with 0 (keep the input's extent) and -1 (inferred), over axes [axis_start, axis_start + axis_count). */
const reshape: Converter = (ctx) => {
  const x = ctx.tensor('input');
  const input = x.tensor.shape;
  const start = ctx.int('axis_start');
  const count = ctx.int('axis_count');
  if (start < 0 || start > input.length) ctx.fail(`axis_start ${start} is out of range for a tensor of rank ${input.length}`);
  const length = count === -1 ? input.length - start : count;
  if (length < 0 || start + length > input.length) ctx.fail(`axis_start + axis_count (${start} + ${count}) must lie in [0, ${input.length}]`);
  const target = ctx.ints('shape');
  let inferred = -1;
  const middle = target.map((d, i) => {
    if (d === 0) {
      if (start + i >= input.length) ctx.fail(`shape entry ${i} is 0 (keep the input's extent), but the input has no axis ${start + i}`);
      return input[start + i];
    }
    if (d === -1) {
      if (inferred >= 0) ctx.fail('shape may hold at most one -1');
      inferred = i;
      return 1;
    }
    if (d < 0) ctx.fail(`shape entry ${d} is negative (only 0 and -1 have a meaning)`);
    return d;
  });
  const volume = elementCount(input.slice(start, start + length));
  const given = elementCount(middle);
  if (inferred >= 0) {
    if (given === 0 || volume % given !== 0) ctx.fail(`shape [${target.join(', ')}] cannot cover the ${volume} elements of axes ${start}..${start + length - 1} of ${formatShape(input)}`, 'shape');
    middle[inferred] = volume / given;
  } else if (given !== volume) {
    ctx.fail(`shape [${target.join(', ')}] holds ${given} elements; axes ${start}..${start + length - 1} of ${formatShape(input)} hold ${volume}`, 'shape');
  }
  return [{ tensor: ctx.reshape(x.tensor, [...input.slice(0, start), ...middle, ...input.slice(start + length)]), type: x.type }];
};

/** transpose: axes permute the leading axes; the rest stay. */
const transpose: Converter = (ctx) => {
  const x = ctx.tensor('input');
  const rank = x.tensor.shape.length;
  const axes = ctx.ints('axes');
  const sorted = [...axes].sort((a, b) => a - b);
  if (axes.length > rank || sorted.some((a, i) => a !== i)) ctx.fail(`axes [${axes.join(', ')}] must be a permutation of 0..${axes.length - 1} within the rank ${rank}`);
  return [{ tensor: ctx.transpose(x.tensor, [...axes, ...Array.from({ length: rank - axes.length }, (_, i) => axes.length + i)]), type: x.type }];
};

const squeeze: Converter = (ctx) => {
  const x = ctx.tensor('input');
  const shape = x.tensor.shape;
  const axes = ctx.ints('axes').map((a) => ctx.axis(a, shape.length, 'squeezed axis'));
  for (const a of axes) if (shape[a] !== 1) ctx.fail(`axis ${a} has extent ${shape[a]}; only axes of extent 1 can be squeezed`, 'shape');
  return [{ tensor: ctx.reshape(x.tensor, shape.filter((_, i) => !axes.includes(i))), type: x.type }];
};

const unsqueeze: Converter = (ctx) => {
  const x = ctx.tensor('input');
  const shape = x.tensor.shape;
  const axes = ctx.ints('axes');
  const rank = shape.length + axes.length;
  for (const a of axes) ctx.axis(a, rank, 'unsqueezed axis');
  if (new Set(axes).size !== axes.length) ctx.fail(`axes [${axes.join(', ')}] repeat an axis`);
  const out: number[] = [];
  for (let i = 0, k = 0; i < rank; i++) out.push(axes.includes(i) ? 1 : shape[k++]);
  return [{ tensor: ctx.reshape(x.tensor, out), type: x.type }];
};

const concat: Converter = (ctx) => {
  const values = ctx.tensors('values');
  if (values.length === 0) ctx.fail('values must not be empty');
  const axis = ctx.axis(ctx.int('axis'), values[0].tensor.shape.length);
  if (values.length === 1) return [values[0]];
  return [{ tensor: ctx.record('concat', values.map((v) => v.tensor), { axis }), type: values[0].type }];
};

/** x's entries first, first + step, … (count of them) along `axis`: a slice for step 1, else a product with one-hot rows. */
export function takeAlong(ctx: OperationContext, x: Tensor, axis: number, first: number, count: number, step = 1): Tensor {
  const shape = x.shape;
  const n = shape[axis];
  if (step === 1) {
    if (first === 0 && count === n) return x;
    return ctx.record('slice', [x], { axis, start: first, end: first + count });
  }
  if (count * n > CONSTANT_LIMIT) ctx.fail(`a strided selection of ${count} of ${n} entries is too large to import (more than ${CONSTANT_LIMIT} selector elements)`);
  const onehot = new Float32Array(count * n);
  for (let r = 0; r < count; r++) onehot[r * n + first + r * step] = 1;
  const rest = shape.filter((_, i) => i !== axis);
  const moved = ctx.transpose(x, [axis, ...shape.map((_, i) => i).filter((i) => i !== axis)]);
  const picked = ctx.record('matmul', [ctx.constant(onehot, [count, n]), ctx.reshape(moved, [n, elementCount(rest)])]);
  const y = ctx.reshape(picked, [count, ...rest]);
  // y is [picked, …rest]: the picked axis goes back where it was
  const perm = Array.from({ length: shape.length }, (_, i) => (i < axis ? i + 1 : i === axis ? 0 : i));
  return ctx.transpose(y, perm);
}

/** slice with negative indices from the end, end = 0 meaning the extent (stride 1), and strides. */
const slice: Converter = (ctx) => {
  const x = ctx.tensor('input');
  const shape = x.tensor.shape;
  const [axes, begin, end] = [ctx.ints('axes'), ctx.ints('begin'), ctx.ints('end')];
  const strides = ctx.ints('stride');
  if (begin.length !== axes.length || end.length !== axes.length) ctx.fail(`axes, begin and end differ in length (${axes.length}, ${begin.length}, ${end.length})`);
  if (strides.length !== 0 && strides.length !== axes.length) ctx.fail(`stride has ${strides.length} entries; axes has ${axes.length}`);
  let y = x.tensor;
  axes.forEach((rawAxis, k) => {
    const axis = ctx.axis(rawAxis, shape.length);
    const extent = shape[axis];
    const step = strides.length ? strides[k] : 1;
    if (step === 0) ctx.fail('stride must not be 0');
    let first = begin[k] < 0 ? begin[k] + extent : begin[k];
    let last = end[k] < 0 ? end[k] + extent : end[k] === 0 && step === 1 ? extent : end[k];
    first = Math.min(Math.max(first, -1), extent);
    last = Math.min(Math.max(last, -1), extent);
    const valid = step > 0 ? first >= 0 && last >= first : first < extent && last <= first;
    if (!valid) ctx.fail(`slice ${begin[k]}:${end[k]}:${step} is invalid for axis ${axis} of extent ${extent}`);
    const count = Math.max(0, Math.ceil((last - first) / step));
    if (count === 0) ctx.fail(`slice ${begin[k]}:${end[k]}:${step} of axis ${axis} is empty; the plan carries no zero-size tensors`);
    y = takeAlong(ctx, y, axis, first, count, step);
  });
  return [{ tensor: y, type: x.type }];
};

/** The most parts split and unstack make (each is a node of the graph). */
const PART_LIMIT = 4096;

function parts(ctx: OperationContext, x: NnefValue, axis: number, sizes: number[]): NnefValue[] {
  if (sizes.length > PART_LIMIT) ctx.fail(`${sizes.length} parts are more than the ${PART_LIMIT} the frontend makes`);
  let start = 0;
  return sizes.map((s) => {
    const part = takeAlong(ctx, x.tensor, axis, start, s);
    start += s;
    return { tensor: part, type: x.type };
  });
}

/** split into parts proportional to ratios. */
const split: Converter = (ctx) => {
  const x = ctx.tensor('value');
  const shape = x.tensor.shape;
  const axis = ctx.axis(ctx.int('axis'), shape.length);
  const ratios = ctx.ints('ratios');
  if (ratios.length === 0 || ratios.some((r) => r < 1)) ctx.fail(`ratios [${ratios.join(', ')}] must be positive`);
  const total = ratios.reduce((a, b) => a + b, 0);
  if (shape[axis] % total !== 0) ctx.fail(`the ratios' sum ${total} does not divide axis ${axis}'s extent ${shape[axis]}`, 'shape');
  const unit = shape[axis] / total;
  return [parts(ctx, x, axis, ratios.map((r) => r * unit))];
};

const stack: Converter = (ctx) => {
  const values = ctx.tensors('values');
  if (values.length === 0) ctx.fail('values must not be empty');
  const shape = values[0].tensor.shape;
  const axis = ctx.axis(ctx.int('axis'), shape.length + 1);
  const lifted = values.map((v) => ctx.reshape(v.tensor, [...v.tensor.shape.slice(0, axis), 1, ...v.tensor.shape.slice(axis)]));
  return [{ tensor: lifted.length === 1 ? lifted[0] : ctx.record('concat', lifted, { axis }), type: values[0].type }];
};

const unstack: Converter = (ctx) => {
  const x = ctx.tensor('value');
  const shape = x.tensor.shape;
  const axis = ctx.axis(ctx.int('axis'), shape.length);
  const dropped = shape.filter((_, i) => i !== axis);
  if (shape[axis] > PART_LIMIT) ctx.fail(`${shape[axis]} parts are more than the ${PART_LIMIT} the frontend makes`);
  return [parts(ctx, x, axis, Array(shape[axis]).fill(1)).map((v) => ({ tensor: ctx.reshape(v.tensor, dropped), type: x.type }))];
};

const pad: Converter = (ctx) => {
  const [x] = floats(ctx, ctx.tensor('input'));
  const padding = ctx.pairs('padding');
  const border = ctx.string('border');
  if (border !== 'constant') ctx.fail(`border '${border}' is not supported; only 'constant'`);
  if (padding.length !== x.shape.length) ctx.fail(`padding has ${padding.length} entries; the input has rank ${x.shape.length}`);
  return [scalarValue(padConstant(ctx, x, padding, ctx.scalar('value')))];
};

// --- reductions and normalisation -------------------------------------------------------

/** Reduces over each axis in turn, keeping it as extent 1 (as NNEF's reductions do). */
function reduceAxes(ctx: OperationContext, x: Tensor, axes: number[], op: 'sum' | 'mean' | 'max'): Tensor {
  const normalized = [...new Set(axes.map((a) => ctx.axis(a, x.shape.length, 'reduced axis')))];
  let y = x;
  for (const axis of normalized) y = ctx.record(op, [y], { axis, keepDims: true });
  return y;
}

function reduce(op: 'sum' | 'mean' | 'max' | 'min'): Converter {
  return (ctx) => {
    const [x] = floats(ctx, ctx.tensor('input'));
    const axes = ctx.ints('axes');
    const mean = op === 'mean' || (op === 'sum' && ctx.logical('normalize'));
    if (op === 'min') return [scalarValue(ctx.record('neg', [reduceAxes(ctx, ctx.record('neg', [x]), axes, 'max')]))];
    return [scalarValue(reduceAxes(ctx, x, axes, mean ? 'mean' : op))];
  };
}

const moments: Converter = (ctx) => {
  const [x] = floats(ctx, ctx.tensor('input'));
  const axes = ctx.ints('axes');
  const mean = reduceAxes(ctx, x, axes, 'mean');
  const centred = ctx.record('sub', [x, mean]);
  return [scalarValue(mean), scalarValue(reduceAxes(ctx, ctx.record('mul', [centred, centred]), axes, 'mean'))];
};

/** softmax over several axes: moved last and merged into one, then back. */
const softmax: Converter = (ctx) => {
  const [x] = floats(ctx, ctx.tensor('x'));
  const shape = x.shape;
  const axes = [...new Set(ctx.ints('axes').map((a) => ctx.axis(a, shape.length, 'softmax axis')))].sort((a, b) => a - b);
  if (axes.length === 0) ctx.fail('axes must not be empty');
  const others = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const perm = [...others, ...axes];
  const moved = ctx.transpose(x, perm);
  const merged = ctx.reshape(moved, [...others.map((i) => shape[i]), elementCount(axes.map((i) => shape[i]))]);
  const y = ctx.reshape(ctx.record('softmax', [merged]), moved.shape);
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return [scalarValue(ctx.transpose(y, inverse))];
};

// --- products -----------------------------------------------------------------------------

const swapLast = (ctx: OperationContext, t: Tensor) => {
  const r = t.shape.length;
  return ctx.transpose(t, [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2]);
};

const matmul: Converter = (ctx) => {
  let [a, b] = floats(ctx, ctx.tensor('A'), ctx.tensor('B'));
  if (a.shape.length !== b.shape.length || a.shape.length < 2) ctx.fail(`A and B must have the same rank, 2 or more; got ${formatShape(a.shape)} and ${formatShape(b.shape)}`, 'shape');
  if (ctx.logical('transposeA')) a = swapLast(ctx, a);
  if (ctx.logical('transposeB')) b = swapLast(ctx, b);
  return [scalarValue(ctx.record('matmul', [a, b]))];
};

/** linear: input [N, I] · filterᵀ ([O, I]) + bias ([1, O]). */
const linear: Converter = (ctx) => {
  const [x, w] = floats(ctx, ctx.tensor('input'), ctx.tensor('filter'));
  if (x.shape.length !== 2 || w.shape.length !== 2) ctx.fail(`input and filter must have rank 2; got ${formatShape(x.shape)} and ${formatShape(w.shape)}`, 'shape');
  const y = ctx.record('matmul', [x, ctx.transpose(w, [1, 0])]);
  if (ctx.literalNumber('bias') === 0) return [scalarValue(y)];
  const [bias] = floats(ctx, ctx.tensor('bias'));
  const [ya, ba] = ctx.align(y, bias);
  return [scalarValue(ctx.record('add', [ya, ba]))];
};

/** The supported operations by name (tensor declarations excepted). */
export const CONVERTERS: Readonly<Record<string, Converter>> = {
  ...WINDOW_CONVERTERS,
  copy: (ctx) => [ctx.tensor('x')],
  reshape,
  transpose,
  squeeze,
  unsqueeze,
  concat,
  split,
  stack,
  unstack,
  slice,
  pad,
  add: irBinary('add'),
  sub: irBinary('sub'),
  mul: irBinary('mul'),
  div: irBinary('div'),
  pow: irBinary('pow'),
  min: binary(minimum),
  max: binary(maximum),
  lt: irBinary('less', 'logical'),
  gt: irBinary('greater', 'logical'),
  eq: irBinary('equal', 'logical'),
  le: binary((ctx, a, b) => not(ctx, ctx.record('greater', [a, b])), 'logical'),
  ge: binary((ctx, a, b) => not(ctx, ctx.record('less', [a, b])), 'logical'),
  ne: binary((ctx, a, b) => not(ctx, ctx.record('equal', [a, b])), 'logical'),
  and: binary((ctx, a, b) => ctx.record('mul', [a, b]), 'logical'),
  // a + b - a·b: 1 when either is 1
  or: binary((ctx, a, b) => ctx.record('sub', [ctx.record('add', [a, b]), ctx.record('mul', [a, b])]), 'logical'),
  not: unary(not, 'logical'),
  select: (ctx) => {
    const [c, a, b] = ctx.align(...floats(ctx, ctx.tensor('condition'), ctx.tensor('true_value'), ctx.tensor('false_value')));
    return [scalarValue(where(ctx, c, a, b))];
  },
  clamp: (ctx) => {
    const [x, lo, hi] = ctx.align(...floats(ctx, ctx.tensor('x'), ctx.tensor('a'), ctx.tensor('b')));
    return [scalarValue(maximum(ctx, minimum(ctx, x, hi), lo))];
  },
  neg: irUnary('neg'),
  rcp: unary((ctx, x) => ctx.record('div', [one(ctx), x])),
  exp: irUnary('exp'),
  log: irUnary('log'),
  log2: unary((ctx, x) => scale(ctx, ctx.record('log', [x]), 1 / Math.LN2)),
  sin: irUnary('sin'),
  cos: irUnary('cos'),
  // |x| = relu(x) + relu(-x): one of the two is zero, so the sum is exact
  abs: unary((ctx, x) => ctx.record('add', [ctx.record('relu', [x]), ctx.record('relu', [ctx.record('neg', [x])])])),
  sign: unary((ctx, x) => ctx.record('sub', [ctx.record('greater', [x, ctx.scalarConstant(0)]), ctx.record('less', [x, ctx.scalarConstant(0)])])),
  sqr: unary((ctx, x) => ctx.record('mul', [x, x])),
  sqrt: irUnary('sqrt'),
  rsqr: unary((ctx, x) => ctx.record('div', [one(ctx), ctx.record('mul', [x, x])])),
  rsqrt: unary((ctx, x) => ctx.record('div', [one(ctx), ctx.record('sqrt', [x])])),
  add_n: (ctx) => {
    const xs = ctx.tensors('x');
    if (xs.length === 0) ctx.fail('x must not be empty');
    const aligned = ctx.align(...floats(ctx, ...xs));
    return [scalarValue(aligned.slice(1).reduce((acc, t) => ctx.record('add', [acc, t]), aligned[0]))];
  },
  relu: irUnary('relu'),
  sigmoid: irUnary('sigmoid'),
  tanh: irUnary('tanh'),
  silu: irUnary('silu'),
  // the spec defines gelu as x·Φ(x) (its fragment body is only an approximation): the exact form
  gelu: unary((ctx, x) => ctx.record('gelu', [x], { approximate: 'none' })),
  softplus: unary((ctx, x) => ctx.record('log', [ctx.record('add', [ctx.record('exp', [x]), one(ctx)])])),
  elu: (ctx) => {
    const [x] = floats(ctx, ctx.tensor('x'));
    return [scalarValue(elu(ctx, x, ctx.scalar('alpha')))];
  },
  selu: (ctx) => {
    const [x] = floats(ctx, ctx.tensor('x'));
    return [scalarValue(scale(ctx, elu(ctx, x, ctx.scalar('alpha')), ctx.scalar('lambda')))];
  },
  leaky_relu: (ctx) => {
    const [x] = floats(ctx, ctx.tensor('x'));
    return [scalarValue(where(ctx, ctx.record('less', [x, ctx.scalarConstant(0)]), scale(ctx, x, ctx.scalar('alpha')), x))];
  },
  prelu: (ctx) => {
    const [x, alpha] = ctx.align(...floats(ctx, ctx.tensor('x'), ctx.tensor('alpha')));
    return [scalarValue(where(ctx, ctx.record('less', [x, ctx.scalarConstant(0)]), ctx.record('mul', [alpha, x]), x))];
  },
  softmax,
  sum_reduce: reduce('sum'),
  mean_reduce: reduce('mean'),
  max_reduce: reduce('max'),
  min_reduce: reduce('min'),
  moments,
  matmul,
  linear,
};

export { logicalValue, scalarValue };
