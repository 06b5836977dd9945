// NNEF's sliding-window operations (conv, deconv, max_pool, avg_pool, box) and
// batch_normalization onto the op table's 2-D (NCHW) ops. A 1-D operation (NCL) runs as the
// 2-D one over [N, C, 1, L]. Padding is per spatial axis as (front, back) pairs; the empty
// list asks for NNEF's automatic padding, which gives ceil(input / stride) outputs with
// the odd element at the back (front = ⌊total / 2⌋). Pools take their window, strides,
// dilations and padding over every axis, batch and channel included: those must be 1 and 0.
// Borders: conv and deconv pad with zeros ('constant'); a pool's 'constant' border counts
// the zeros (max_pool sees them, avg_pool divides by the whole window) and 'ignore' leaves
// them out. Other borders (reflect, replicate) are refused.
import type { Tensor } from '../../ir/graph';
import { elementCount, formatShape } from '../../ir/types';
import { floats, type Converter, type NnefValue, type OperationContext } from './context';

type Pair = [number, number];
type Sides = [number, number, number, number];

const scalarValue = (tensor: Tensor): NnefValue => ({ tensor, type: 'scalar' });

/** Whether x is NCL (lifted to [N, C, 1, L]) rather than NCHW; fails for other ranks. */
function spatialRank(ctx: OperationContext, x: Tensor): boolean {
  const rank = x.shape.length;
  if (rank !== 3 && rank !== 4) ctx.fail(`only 1-D and 2-D ${ctx.op} are supported: the input must be NCL or NCHW (rank 3 or 4); got ${formatShape(x.shape)}`);
  return rank === 3;
}
const lift = (ctx: OperationContext, t: Tensor, lifted: boolean) => (lifted ? ctx.reshape(t, [t.shape[0], t.shape[1], 1, t.shape[2]]) : t);
const unlift = (ctx: OperationContext, t: Tensor, lifted: boolean) => (lifted ? ctx.reshape(t, [t.shape[0], t.shape[1], t.shape[3]]) : t);

/** A per-spatial-axis list ([] for its default), as [along H, along W]. */
function spatialPair(ctx: OperationContext, name: string, values: number[], lifted: boolean, fallback: number): Pair {
  const axes = lifted ? 1 : 2;
  if (values.length === 0) return [fallback, fallback];
  if (values.length !== axes) ctx.fail(`${name} must have ${axes} entr${axes === 1 ? 'y' : 'ies'} (one per spatial axis) or none; got [${values.join(', ')}]`);
  if (values.some((v) => !Number.isInteger(v) || v < 1)) ctx.fail(`${name} entries must be positive; got [${values.join(', ')}]`);
  return lifted ? [fallback, values[0]] : [values[0], values[1]];
}

/** NNEF's automatic padding of one axis: the total that gives `out` outputs, front ⌊total / 2⌋. */
function autoPadding(inSize: number, out: number, kernel: number, stride: number, dilation: number): Pair {
  const total = Math.max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - inSize);
  const front = Math.floor(total / 2);
  return [front, total - front];
}

/** [top, left, bottom, right] from spatial (front, back) pairs, or automatic for []. */
function sides(ctx: OperationContext, padding: Pair[], lifted: boolean, automatic: (axis: number) => Pair): Sides {
  const axes = lifted ? 1 : 2;
  let pairs: Pair[];
  if (padding.length === 0) pairs = [0, 1].map(automatic);
  else {
    if (padding.length !== axes) ctx.fail(`padding must have ${axes} pair${axes === 1 ? '' : 's'} (one per spatial axis) or none (automatic); got ${padding.length}`);
    if (padding.flat().some((v) => v < 0)) ctx.fail(`padding must not be negative; got ${padding.map((p) => `(${p.join(', ')})`).join(', ')}`);
    pairs = lifted ? [[0, 0], padding[0]] : padding;
  }
  return [pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]];
}

/** A per-channel vector ([1, C], trailing 1s allowed) as [C, 1, …] against an input of `rank`, else NNEF-aligned. */
function perChannel(ctx: OperationContext, v: Tensor, channels: number, input: Tensor): Tensor {
  const s = [...v.shape];
  while (s.length > 2 && s[s.length - 1] === 1) s.pop();
  if (s.length === 2 && s[0] === 1 && s[1] === channels) return ctx.reshape(v, [channels, ...Array(input.shape.length - 2).fill(1)]);
  if (s.length === 0) return v;
  return ctx.align(input, v)[1];
}

function requireConstantBorder(ctx: OperationContext): void {
  const border = ctx.string('border');
  if (border !== 'constant') ctx.fail(`border '${border}' is not supported for ${ctx.op}; only 'constant' (zeros)`);
}

function addBias(ctx: OperationContext, y: Tensor): Tensor {
  if (ctx.literalNumber('bias') === 0) return y;
  const [bias] = floats(ctx, ctx.tensor('bias'));
  return ctx.record('add', [y, perChannel(ctx, bias, y.shape[1], y)]);
}

function groupsOf(ctx: OperationContext, fallback: number): number {
  const groups = ctx.int('groups');
  if (groups < 0) ctx.fail(`groups must not be negative; got ${groups}`);
  return groups === 0 ? fallback : groups;
}

function convOperands(ctx: OperationContext) {
  requireConstantBorder(ctx);
  const [input, filter] = floats(ctx, ctx.tensor('input'), ctx.tensor('filter'));
  const lifted = spatialRank(ctx, input);
  if (filter.shape.length !== input.shape.length) ctx.fail(`the filter must have the input's rank ${input.shape.length}; got ${formatShape(filter.shape)}`, 'shape');
  const [x, w] = [lift(ctx, input, lifted), lift(ctx, filter, lifted)];
  const kernel: Pair = [w.shape[2], w.shape[3]];
  const stride = spatialPair(ctx, 'stride', ctx.ints('stride'), lifted, 1);
  const dilation = spatialPair(ctx, 'dilation', ctx.ints('dilation'), lifted, 1);
  return { lifted, x, w, kernel, stride, dilation };
}

const conv: Converter = (ctx) => {
  const { lifted, x, w, kernel, stride, dilation } = convOperands(ctx);
  const size = x.shape.slice(2);
  const padding = sides(ctx, ctx.pairs('padding'), lifted, (d) => autoPadding(size[d], Math.ceil(size[d] / stride[d]), kernel[d], stride[d], dilation[d]));
  const y = ctx.record('conv2d', [x, w], { stride, dilation, padding, groups: groupsOf(ctx, x.shape[1]) });
  return [scalarValue(unlift(ctx, addBias(ctx, y), lifted))];
};

/**
 * deconv: conv2d's input gradient, the filter [C_in, C_out / groups, KH, KW] read as that
 * convolution's. The output is output_shape where given, else (in - 1)·stride + window -
 * padding, or in·stride with automatic padding; an output larger than the padding gives
 * grows at the bottom and right.
 */
const deconv: Converter = (ctx) => {
  const { lifted, x, w, kernel, stride, dilation } = convOperands(ctx);
  const inSize = x.shape.slice(2);
  const outputShape = ctx.ints('output_shape');
  let groups = ctx.int('groups');
  if (groups === 0) groups = outputShape.length ? outputShape[1] : x.shape[1];
  if (groups < 0) ctx.fail(`groups must not be negative; got ${groups}`);
  let out: number[];
  if (outputShape.length) {
    const rank = lifted ? 3 : 4;
    if (outputShape.length !== rank) ctx.fail(`output_shape must have ${rank} entries (the output's full shape); got [${outputShape.join(', ')}]`);
    if (outputShape[0] !== x.shape[0] || outputShape[1] !== w.shape[1] * groups) {
      ctx.fail(`output_shape [${outputShape.join(', ')}] must have the input's batch ${x.shape[0]} and the filter's ${w.shape[1] * groups} output channels`, 'shape');
    }
    out = lifted ? [1, outputShape[2]] : outputShape.slice(2);
  } else {
    out = [0, 1].map((d) => inSize[d] * stride[d]);
  }
  const padding = sides(ctx, ctx.pairs('padding'), lifted, (d) => autoPadding(out[d], inSize[d], kernel[d], stride[d], dilation[d]));
  const natural = [0, 1].map((d) => (inSize[d] - 1) * stride[d] + dilation[d] * (kernel[d] - 1) + 1 - padding[d] - padding[d + 2]);
  if (!outputShape.length && ctx.pairs('padding').length) out = natural;
  if (out.some((s, d) => s < natural[d] || s < 1)) {
    ctx.fail(`output extent ${out.join('×')} is smaller than the ${natural.join('×')} the input, filter, stride and padding give`, 'shape');
  }
  const y = ctx.record('conv2dBackwardInput', [x, w], { stride, dilation, padding, groups, inputSize: [out[0], out[1]] });
  return [scalarValue(unlift(ctx, addBias(ctx, y), lifted))];
};

/** A pool's window over (lifted) x: batch and channel axes must have window 1, stride 1, no padding. */
function poolWindow(ctx: OperationContext, x: Tensor) {
  const rank = x.shape.length;
  const lifted = spatialRank(ctx, x);
  const perAxis = (name: string, values: number[]) => {
    if (values.length && values.length !== rank) ctx.fail(`${name} must have ${rank} entries (one per axis of the input) or none; got [${values.join(', ')}]`);
    if (values.slice(0, 2).some((v) => v !== 1)) ctx.fail(`${name} [${values.join(', ')}] spans the batch or channel axis; only windows over the spatial axes are supported`);
    return values.slice(2);
  };
  const size = ctx.ints('size');
  if (size.length !== rank) ctx.fail(`size must have ${rank} entries (one per axis of the input); got [${size.join(', ')}]`);
  const kernel = spatialPair(ctx, 'size', perAxis('size', size), lifted, 1);
  const stride = spatialPair(ctx, 'stride', perAxis('stride', ctx.ints('stride')), lifted, 1);
  const dilation = spatialPair(ctx, 'dilation', perAxis('dilation', ctx.ints('dilation')), lifted, 1);
  const padding = ctx.pairs('padding');
  if (padding.length && padding.length !== rank) ctx.fail(`padding must have ${rank} pairs (one per axis of the input) or none (automatic); got ${padding.length}`);
  if (padding.slice(0, 2).some(([a, b]) => a !== 0 || b !== 0)) ctx.fail('padding of the batch or channel axis is not supported');
  const x2 = lift(ctx, x, lifted);
  const size2 = x2.shape.slice(2);
  const pads = sides(ctx, padding.slice(2), lifted, (d) => autoPadding(size2[d], Math.ceil(size2[d] / stride[d]), kernel[d], stride[d], dilation[d]));
  const border = ctx.string('border');
  if (border !== 'constant' && border !== 'ignore') ctx.fail(`border '${border}' is not supported for ${ctx.op}; only 'constant' and 'ignore'`);
  return { lifted, x: x2, window: { kernel, stride, dilation, padding: pads }, border };
}

const maxPool: Converter = (ctx) => {
  const [input] = floats(ctx, ctx.tensor('input'));
  const { lifted, x, window, border } = poolWindow(ctx, input);
  const padded = window.padding.some((p) => p > 0);
  if (border === 'constant' && padded) {
    // the zeros of a constant border take part in the maximum: pad explicitly, pool without
    const [top, left, bottom, right] = window.padding;
    const zeros = padConstant(ctx, x, [[0, 0], [0, 0], [top, bottom], [left, right]], 0);
    return [scalarValue(unlift(ctx, ctx.record('maxPool2d', [zeros], { ...window, padding: [0, 0, 0, 0] }), lifted))];
  }
  return [scalarValue(unlift(ctx, ctx.record('maxPool2d', [x], window), lifted))];
};

function average(ctx: OperationContext, sum: boolean): NnefValue[] {
  const [input] = floats(ctx, ctx.tensor('input'));
  const { lifted, x, window, border } = poolWindow(ctx, input);
  // a sum counts the border's zeros either way: the mean over the whole window, times its size
  const countIncludePad = sum || border === 'constant';
  let y = ctx.record('avgPool2d', [x], { ...window, countIncludePad });
  if (sum) y = ctx.record('mul', [y, ctx.scalarConstant(window.kernel[0] * window.kernel[1])]);
  return [scalarValue(unlift(ctx, y, lifted))];
}

/**
 * batch_normalization: offset + scale·(x - mean) / √(variance + ε), written as the graph
 * builder's x·s + (offset - mean·s) with s = scale / √(variance + ε), per channel as [C, 1, 1],
 * so the optimizer folds it into a preceding convolution's epilogue.
 */
const batchNormalization: Converter = (ctx) => {
  const [x, mean, variance, offset, scale] = floats(ctx, ...['input', 'mean', 'variance', 'offset', 'scale'].map((n) => ctx.tensor(n)));
  if (x.shape.length < 2) ctx.fail(`the input must have a channel axis (rank 2 or more); got ${formatShape(x.shape)}`);
  const eps = ctx.scalarConstant(ctx.scalar('epsilon'));
  const [m, v, o, sc] = ctx.align(mean, variance, offset, scale);
  const s = ctx.record('div', [sc, ctx.record('sqrt', [ctx.record('add', [v, eps])])]);
  const shift = ctx.record('sub', [o, ctx.record('mul', [m, s])]);
  const c = x.shape[1];
  for (const [name, t] of [['mean', m], ['variance', v], ['offset', o], ['scale', sc]] as const) {
    if (elementCount(t.shape) !== 1 && !t.shape.every((d, i) => d === 1 || d === x.shape[i])) ctx.fail(`${name} of shape ${formatShape(t.shape)} does not broadcast to the input's ${formatShape(x.shape)}`, 'shape');
  }
  return [scalarValue(ctx.record('add', [ctx.record('mul', [x, perChannel(ctx, s, c, x)]), perChannel(ctx, shift, c, x)]))];
};

/** pad with a constant border: the value concatenated before and after along each padded axis. */
export function padConstant(ctx: OperationContext, x: Tensor, padding: readonly (readonly [number, number])[], value: number): Tensor {
  let y = x;
  padding.forEach(([before, after], axis) => {
    if (before < 0 || after < 0) ctx.fail(`padding (${before}, ${after}) of axis ${axis} is negative`);
    if (before === 0 && after === 0) return;
    const side = (n: number) => ctx.filled(value, y.shape.map((d, i) => (i === axis ? n : d)));
    y = ctx.record('concat', [...(before ? [side(before)] : []), y, ...(after ? [side(after)] : [])], { axis });
  });
  return y;
}

/** The operations of this file by name. */
export const WINDOW_CONVERTERS: Readonly<Record<string, Converter>> = {
  conv,
  deconv,
  max_pool: maxPool,
  avg_pool: (ctx) => average(ctx, false),
  box: (ctx) => (ctx.logical('normalize') ? average(ctx, false) : average(ctx, true)),
  batch_normalization: batchNormalization,
};
