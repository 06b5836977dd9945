// ONNX's convolution, pooling and batch-norm ops (Conv, ConvTranspose, MaxPool, AveragePool,
// GlobalAveragePool, BatchNormalization) onto the op table's 2-D (NCHW) ops (BatchNormalization
// onto pointwise ops and means, at any rank). The window's
// padding is settled here: auto_pad NOTSET reads `pads` ([x1_begin, x2_begin, x1_end,
// x2_end], the table's [top, left, bottom, right]), VALID pads nothing, and SAME_UPPER /
// SAME_LOWER compute the padding that gives ceil(input / stride) outputs, the odd row at the
// end (UPPER) or the beginning (LOWER). A 1-D op (NCL, as audio models export) runs as the
// 2-D one over [N, C, 1, L]: its per-axis attributes get a leading 1 (a 0 for pads and
// output_padding) and its result drops the unit axis. 3-D pools and ConvTranspose decompose
// into 2-D ones; 3-D Conv and the 3-D MaxPool's Indices fail naming the node; ceil_mode pads the end.
import type { Conv2dAttrs } from '../../ir/ops';
import type { Converter } from './converters';
import type { NodeContext } from './context';
import { FLOAT, INT64 } from './proto';
import { folded, type Folded, type Value } from './values';

type Pair = [number, number];
type Sides = [number, number, number, number];

/** Whether x is NCL (a 1-D op, lifted to 2-D) rather than NCHW; fails for other ranks. */
function requireSpatial(ctx: NodeContext, x: Value, what = 'input'): boolean {
  const rank = ctx.rank(x);
  if (rank !== 3 && rank !== 4) {
    const spatial = rank >= 3 ? ` (${rank - 2}-D)` : '';
    // MaxPool, AveragePool and ConvTranspose take NCDHW too, before they get here
    const ranks = ['MaxPool', 'AveragePool', 'ConvTranspose'].includes(ctx.opType) ? '1-D, 2-D and 3-D' : '1-D and 2-D';
    const layouts = ranks.includes('3-D') ? 'NCL, NCHW or NCDHW (rank 3, 4 or 5)' : 'NCL or NCHW (rank 3 or 4)';
    ctx.fail(`only ${ranks} ${ctx.opType} are supported: ${what} must be ${layouts}; got rank ${rank}${spatial}, shape [${ctx.shape(x).join(', ')}]`);
  }
  return rank === 3;
}

/** An NCL value as NCHW with H = 1 (`lift`), else as it is. */
function to2d(ctx: NodeContext, v: Value, lift: boolean): Value {
  if (!lift) return v;
  const [n, c, l] = ctx.shape(v);
  return ctx.apply('reshape', [v], { shape: [n, c, 1, l] }, FLOAT);
}

/** A lifted op's NCHW result back as NCL. */
function from2d(ctx: NodeContext, v: Value, lift: boolean): Value {
  if (!lift) return v;
  const [n, c, , l] = ctx.shape(v);
  return ctx.apply('reshape', [v], { shape: [n, c, l] }, FLOAT);
}

/**
 * A per-spatial-axis int list attribute as the 2-D op reads it: a lifted 1-D op's [v] is
 * [fill, v] (pads' [begin, end] is [0, begin, 0, end]); a list of another length is left for
 * the caller to refuse.
 */
function spatialInts(ctx: NodeContext, name: string, lift: boolean, fill: number): number[] | undefined {
  const v = ctx.ints(name);
  if (!v || !lift) return v;
  if (name === 'pads') return v.length === 2 ? [0, v[0], 0, v[1]] : v;
  return v.length === 1 ? [fill, v[0]] : v;
}

/** How many entries a per-axis attribute has for this op (1 for a 1-D one). */
const axesOf = (lift: boolean) => (lift ? '1 entry (a 1-D' : '2 entries (one per spatial axis of a 2-D');

/** A per-spatial-axis attribute ([along H, along W]), its default when absent. */
function pairAttr(ctx: NodeContext, name: string, fallback: number, lift: boolean): Pair {
  const v = spatialInts(ctx, name, lift, name === 'output_padding' ? 0 : 1);
  if (!v) return [fallback, fallback];
  if (v.length !== 2) ctx.fail(`${name} must have ${axesOf(lift)} ${ctx.opType}); got [${ctx.ints(name)!.join(', ')}]`);
  return [v[0], v[1]];
}

/**
 * The padding [top, left, bottom, right] of a convolution or pool over spatial size `size`,
 * from auto_pad and pads.
 */
function padding(ctx: NodeContext, size: readonly number[], kernel: Pair, stride: Pair, dilation: Pair, lift: boolean): Sides {
  const autoPad = ctx.string('auto_pad', 'NOTSET');
  switch (autoPad) {
    case 'NOTSET': {
      const pads = spatialInts(ctx, 'pads', lift, 0) ?? [0, 0, 0, 0];
      if (pads.length !== 4) ctx.fail(`pads must have ${lift ? 2 : 4} entries (begin and end of each spatial axis of a ${lift ? 1 : 2}-D ${ctx.opType}); got [${ctx.ints('pads')!.join(', ')}]`);
      if (pads.some((p) => p < 0)) ctx.fail(`pads must not be negative; got [${pads.join(', ')}]`);
      return [pads[0], pads[1], pads[2], pads[3]];
    }
    case 'VALID':
      return [0, 0, 0, 0];
    case 'SAME_UPPER':
    case 'SAME_LOWER': {
      const total = [0, 1].map((d) => Math.max(0, (Math.ceil(size[d] / stride[d]) - 1) * stride[d] + dilation[d] * (kernel[d] - 1) + 1 - size[d]));
      const small = total.map((t) => Math.floor(t / 2));
      const [begin, end] = autoPad === 'SAME_UPPER' ? [small, total.map((t, d) => t - small[d])] : [total.map((t, d) => t - small[d]), small];
      return [begin[0], begin[1], end[0], end[1]];
    }
    default:
      return ctx.fail(`auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER; got '${autoPad}'`);
  }
}

/** The kernel's [KH, KW] from the (lifted) weight, checked against kernel_shape where given. */
function weightKernel(ctx: NodeContext, w: Value, lift: boolean): Pair {
  if (ctx.rank(w) !== 4) ctx.fail(`the weight must have rank ${lift ? 3 : 4}, as the input; got shape [${ctx.shape(w).join(', ')}]`);
  const [, , kh, kw] = ctx.shape(w);
  const attr = spatialInts(ctx, 'kernel_shape', lift, 1);
  if (attr && (attr.length !== 2 || attr[0] !== kh || attr[1] !== kw)) ctx.fail(`kernel_shape [${attr.join(', ')}] does not match the weight's [${kh}, ${kw}]`);
  return [kh, kw];
}

/** y + bias [C] per channel of NCHW y. */
function addBias(ctx: NodeContext, y: Value, bias: Value | undefined): Value {
  if (!bias) return y;
  const c = ctx.shape(y)[1];
  if (ctx.rank(bias) !== 1 || ctx.shape(bias)[0] !== c) ctx.fail(`bias must have shape [${c}] (the output channels); got [${ctx.shape(bias).join(', ')}]`);
  return ctx.apply('add', [y, ctx.apply('reshape', [bias], { shape: [c, 1, 1] }, FLOAT)], {}, FLOAT);
}

/** Conv and ConvTranspose's operands (lifted to 2-D for a 1-D op), kernel, strides and dilations. */
function convOperands(ctx: NodeContext) {
  const [input, weight, bias] = [ctx.input(0), ctx.input(1), ctx.optional(2)];
  ctx.requireFloat(input, weight, bias);
  const lift = requireSpatial(ctx, input);
  const [x, w] = [to2d(ctx, input, lift), to2d(ctx, weight, lift && ctx.rank(weight) === 3)];
  const kernel = weightKernel(ctx, w, lift);
  return { lift, x, w, bias, kernel, stride: pairAttr(ctx, 'strides', 1, lift), dilation: pairAttr(ctx, 'dilations', 1, lift) };
}

const conv: Converter = {
  since: 1,
  convert: (ctx) => {
    const { lift, x, w, bias, kernel, stride, dilation } = convOperands(ctx);
    const attrs: Conv2dAttrs = { stride, dilation, padding: padding(ctx, ctx.shape(x).slice(2), kernel, stride, dilation, lift), groups: ctx.int('group', 1) };
    const convolve = (weight: Value, b: Value | undefined) => from2d(ctx, addBias(ctx, ctx.apply('conv2d', [x, weight], attrs, FLOAT), b), lift);
    const y = convolve(w, bias);
    // fixed weight and bias (--freeze): a batch norm that follows may fold into them
    const [weightValues, biasValues] = [ctx.fixedValue(w), bias && ctx.fixedValue(bias)];
    if (!lift && y.kind === 'computed' && weightValues.kind === 'folded' && biasValues?.kind !== 'computed') {
      ctx.imports.frozenConvs.set(y.tensor, { weight: w, weightName: ctx.node.input?.[1] ?? '', weightValues, bias: biasValues, convolve });
    }
    return [y];
  },
};

/**
 * An inference-mode batch norm with fixed statistics after a frozen convolution that nothing
 * else reads, folded into it: w' = w·s per output channel and b' = (b - μ)·s + β, s =
 * γ / √(σ² + ε), computed in f64 now, so the plan convolves with w' and adds b' and keeps no
 * per-channel scale. A frozen weight parameter keeps its name and holds w' (only this
 * convolution reads it); undefined where the fold does not apply.
 */
function foldIntoConvolution(ctx: NodeContext, x: Value, [gamma, beta, mean, variance]: Folded[], eps: number): Value | undefined {
  const conv = x.kind === 'computed' ? ctx.imports.frozenConvs.get(x.tensor) : undefined;
  if (!conv || ctx.uses(ctx.node.input?.[0]) !== 1) return undefined;
  if (conv.weight.kind === 'computed' && ctx.uses(conv.weightName) !== 1) return undefined;
  const c = gamma.data.length;
  const scale = gamma.data.map((g, k) => g / Math.sqrt(variance.data[k] + eps));
  const perChannel = conv.weightValues.data.length / c;
  const weight = conv.weightValues.data.map((v, i) => v * scale[Math.floor(i / perChannel)]);
  const bias = scale.map((s, k) => ((conv.bias?.data[k] ?? 0) - mean.data[k]) * s + beta.data[k]);
  let scaled: Value;
  if (conv.weight.kind === 'computed') {
    ctx.g.setParameterInit(conv.weight.tensor, Float32Array.from(weight));
    scaled = conv.weight;
  } else scaled = folded(FLOAT, conv.weightValues.shape, weight);
  return conv.convolve(scaled, folded(FLOAT, [c], bias));
}

/**
 * ConvTranspose: conv2d's input gradient, the weight [Cin, Cout/group, KH, KW] read as that
 * convolution's. The output size is stride·(in - 1) + output_padding + dilation·(k - 1) + 1
 * less the padding, or output_shape where given; auto_pad SAME pads so the output is in·stride
 * (or output_shape), the odd row at the end for SAME_UPPER. An output larger than the padding
 * allows grows at the bottom and right, as output_padding does.
 */
const convTranspose: Converter = {
  since: 1,
  convert: (ctx) => {
    if (ctx.rank(ctx.input(0)) === 5) return [convTranspose3d(ctx)];
    const { lift, x, w, bias, kernel, stride, dilation } = convOperands(ctx);
    const outputPadding = pairAttr(ctx, 'output_padding', 0, lift);
    const groups = ctx.int('group', 1);
    const inSize = ctx.shape(x).slice(2);
    const full = [0, 1].map((d) => stride[d] * (inSize[d] - 1) + outputPadding[d] + dilation[d] * (kernel[d] - 1) + 1);
    const autoPad = ctx.string('auto_pad', 'NOTSET');
    let outputShape = ctx.ints('output_shape');
    if (outputShape && outputShape.length === (lift ? 3 : 4)) outputShape = outputShape.slice(2);
    if (outputShape && lift && outputShape.length === 1) outputShape = [1, outputShape[0]];
    if (outputShape && outputShape.length !== 2) ctx.fail(`output_shape must have 2 entries (the output's H and W); got [${outputShape.join(', ')}]`);
    let pads: Sides;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      const target = outputShape ?? inSize.map((s, d) => s * stride[d]);
      const total = [0, 1].map((d) => Math.max(0, full[d] - target[d]));
      const small = total.map((t) => Math.floor(t / 2));
      const [begin, end] = autoPad === 'SAME_UPPER' ? [small, total.map((t, d) => t - small[d])] : [total.map((t, d) => t - small[d]), small];
      pads = [begin[0], begin[1], end[0], end[1]];
      outputShape = target;
    } else {
      pads = padding(ctx, inSize, kernel, stride, dilation, lift);
    }
    const natural = [0, 1].map((d) => full[d] - pads[d] - pads[d + 2]);
    const size = outputShape ?? natural;
    if (size.some((s, d) => s < natural[d] || s <= 0)) {
      ctx.fail(`output_shape [${size.join(', ')}] is smaller than the ${natural.join('×')} the input, kernel, strides and pads give (only larger outputs, grown at the bottom and right, are supported)`);
    }
    const attrs = { stride, dilation, padding: pads, groups, inputSize: [size[0], size[1]] };
    return [from2d(ctx, addBias(ctx, ctx.apply('conv2dBackwardInput', [x, w], attrs, FLOAT), bias), lift)];
  },
};

/**
 * A 3-D ConvTranspose as one 2-D ConvTranspose and a fixed 0/1 product along depth. The
 * weight [Cin, Cout/group, KD, KH, KW] read as [Cin, Cout/group·KD, KH, KW] makes every depth
 * tap an output channel of the 2-D op over [N·D, Cin, H, W] (groups stay contiguous); then
 * output depth od sums the taps (id, kd) with od = id·stride + kd·dilation - pad_begin, a
 * matrix product [Do, D·KD] × [N, D·KD, Cout·Ho·Wo]. Padding, output_padding, output_shape
 * and auto_pad read as for 2-D, per axis.
 */
function convTranspose3d(ctx: NodeContext): Value {
  const [x, w, bias] = [ctx.input(0), ctx.input(1), ctx.optional(2)];
  ctx.requireFloat(x, w, bias);
  if (ctx.rank(w) !== 5) ctx.fail(`the weight must have rank 5, as the input; got shape [${ctx.shape(w).join(', ')}]`);
  const [n, cin, ...size] = ctx.shape(x);
  const [, perGroup, ...kernel] = ctx.shape(w);
  const list = (name: string, fallback: number, length = 3) => {
    const v = ctx.ints(name) ?? Array<number>(length).fill(fallback);
    if (v.length !== length) ctx.fail(`${name} must have ${length} entries for a 3-D ConvTranspose; got [${v.join(', ')}]`);
    return v;
  };
  const kernelShape = ctx.ints('kernel_shape');
  if (kernelShape && kernelShape.join() !== kernel.join()) ctx.fail(`kernel_shape [${kernelShape.join(', ')}] does not match the weight's [${kernel.join(', ')}]`);
  const [stride, dilation, outputPadding] = [list('strides', 1), list('dilations', 1), list('output_padding', 0)];
  const groups = ctx.int('group', 1);
  const full = size.map((s, d) => stride[d] * (s - 1) + outputPadding[d] + dilation[d] * (kernel[d] - 1) + 1);
  let outputShape = ctx.ints('output_shape');
  if (outputShape && outputShape.length === 5) outputShape = outputShape.slice(2);
  if (outputShape && outputShape.length !== 3) ctx.fail(`output_shape must have 3 entries (the output's D, H and W); got [${outputShape.join(', ')}]`);
  const autoPad = ctx.string('auto_pad', 'NOTSET');
  let [begin, end] = [[0, 0, 0], [0, 0, 0]];
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    const target = outputShape ?? size.map((s, d) => s * stride[d]);
    const total = full.map((f, d) => Math.max(0, f - target[d]));
    const small = total.map((t) => Math.floor(t / 2));
    [begin, end] = autoPad === 'SAME_UPPER' ? [small, total.map((t, d) => t - small[d])] : [total.map((t, d) => t - small[d]), small];
    outputShape = target;
  } else if (autoPad === 'NOTSET') {
    const pads = list('pads', 0, 6);
    if (pads.some((p) => p < 0)) ctx.fail(`pads must not be negative; got [${pads.join(', ')}]`);
    [begin, end] = [pads.slice(0, 3), pads.slice(3)];
  } else if (autoPad !== 'VALID') ctx.fail(`auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER; got '${autoPad}'`);
  const natural = full.map((f, d) => f - begin[d] - end[d]);
  const out = outputShape ?? natural;
  if (out.some((s, d) => s < natural[d] || s <= 0)) {
    ctx.fail(`output_shape [${out.join(', ')}] is smaller than the ${natural.join('×')} the input, kernel, strides and pads give (only larger outputs, grown at the end of each axis, are supported)`);
  }
  const [d, kd] = [size[0], kernel[0]];
  const cout = perGroup * groups;
  const reshape = (v: Value, shape: number[]) => ctx.apply('reshape', [v], { shape }, FLOAT);
  const transpose = (v: Value, perm: number[]) => ctx.apply('transpose', [v], { perm }, FLOAT);
  const planes = reshape(transpose(x, [0, 2, 1, 3, 4]), [n * d, cin, size[1], size[2]]);
  const taps = ctx.apply(
    'conv2dBackwardInput',
    [planes, reshape(w, [ctx.shape(w)[0], perGroup * kd, kernel[1], kernel[2]])],
    { stride: [stride[1], stride[2]], dilation: [dilation[1], dilation[2]], padding: [begin[1], begin[2], end[1], end[2]], groups, inputSize: [out[1], out[2]] },
    FLOAT,
  );
  const area = out[1] * out[2];
  const byTap = reshape(transpose(reshape(taps, [n, d, cout, kd, area]), [0, 1, 3, 2, 4]), [n, d * kd, cout * area]);
  const place = new Float64Array(out[0] * d * kd);
  for (let id = 0; id < d; id++) {
    for (let k = 0; k < kd; k++) {
      const od = id * stride[0] + k * dilation[0] - begin[0];
      if (od >= 0 && od < out[0]) place[od * d * kd + id * kd + k] = 1;
    }
  }
  const depth = ctx.apply('matmul', [folded(FLOAT, [out[0], d * kd], place), byTap], {}, FLOAT);
  const y = transpose(reshape(depth, [n, out[0], cout, out[1], out[2]]), [0, 2, 1, 3, 4]);
  if (!bias) return y;
  if (ctx.rank(bias) !== 1 || ctx.shape(bias)[0] !== cout) ctx.fail(`bias must have shape [${cout}] (the output channels); got [${ctx.shape(bias).join(', ')}]`);
  return ctx.apply('add', [y, reshape(bias, [cout, 1, 1, 1])], {}, FLOAT);
}

/**
 * MaxPool and AveragePool's window over (lifted) x; refuses what the table's pools lack.
 * ceil_mode rounds the pooled size up (a last window that would start past the input and
 * its leading padding is dropped, as PyTorch and ONNX from opset 19 do) by padding the end
 * further; those positions are never a window's maximum, and a mean leaves them out only
 * with count_include_pad = 0 (`ceilAllowed` false refuses the other case).
 */
function poolAttrs(ctx: NodeContext, x: Value, lift: boolean, ceilAllowed = true) {
  const ceil = ctx.int('ceil_mode', 0) !== 0;
  if (ceil && !ceilAllowed) ctx.fail('ceil_mode = 1 with count_include_pad = 1 is not supported (which padding the divisor counts differs between exporters)');
  const kernelShape = spatialInts(ctx, 'kernel_shape', lift, 1) ?? ctx.fail('kernel_shape is required');
  if (kernelShape.length !== 2) ctx.fail(`kernel_shape must have ${axesOf(lift)} ${ctx.opType}); got [${ctx.ints('kernel_shape')!.join(', ')}]`);
  const kernel: Pair = [kernelShape[0], kernelShape[1]];
  const stride = pairAttr(ctx, 'strides', 1, lift);
  const dilation = pairAttr(ctx, 'dilations', 1, lift);
  const size = ctx.shape(x).slice(2);
  const pads = padding(ctx, size, kernel, stride, dilation, lift);
  if (ceil) {
    for (const d of [0, 1]) {
      const reach = dilation[d] * (kernel[d] - 1) + 1;
      const padded = size[d] + pads[d] + pads[d + 2];
      let out = Math.ceil(Math.max(0, padded - reach) / stride[d]) + 1;
      if ((out - 1) * stride[d] >= size[d] + pads[d]) out--;
      pads[d + 2] += Math.max(0, (out - 1) * stride[d] + reach - padded);
    }
  }
  return { kernel, stride, dilation, padding: pads };
}

/** One spatial axis of a pooling window: kernel, stride, dilation and the padding at each end. */
interface PoolAxis {
  kernel: number;
  stride: number;
  dilation: number;
  begin: number;
  end: number;
}

/**
 * A 3-D pool's axes (D, H, W) from its attributes, as poolAttrs reads a 2-D one: auto_pad,
 * pads, and ceil_mode as extra end padding.
 */
function poolAxes3d(ctx: NodeContext, size: readonly number[], ceilAllowed = true): PoolAxis[] {
  const ceil = ctx.int('ceil_mode', 0) !== 0;
  if (ceil && !ceilAllowed) ctx.fail('ceil_mode = 1 with count_include_pad = 1 is not supported (which padding the divisor counts differs between exporters)');
  const list = (name: string, fallback: number, length = 3) => {
    const v = ctx.ints(name) ?? Array(length).fill(fallback);
    if (v.length !== length) ctx.fail(`${name} must have ${length} entries for a 3-D ${ctx.opType}; got [${v.join(', ')}]`);
    return v;
  };
  const kernel = ctx.ints('kernel_shape') ?? ctx.fail('kernel_shape is required');
  if (kernel.length !== 3) ctx.fail(`kernel_shape must have 3 entries (one per spatial axis of a 3-D ${ctx.opType}); got [${kernel.join(', ')}]`);
  const [stride, dilation, pads] = [list('strides', 1), list('dilations', 1), list('pads', 0, 6)];
  if (pads.some((p) => p < 0)) ctx.fail(`pads must not be negative; got [${pads.join(', ')}]`);
  const autoPad = ctx.string('auto_pad', 'NOTSET');
  return size.map((n, d) => {
    const reach = dilation[d] * (kernel[d] - 1) + 1;
    let [begin, end] = [pads[d], pads[d + 3]];
    if (autoPad === 'VALID') [begin, end] = [0, 0];
    else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      const total = Math.max(0, (Math.ceil(n / stride[d]) - 1) * stride[d] + reach - n);
      const small = Math.floor(total / 2);
      [begin, end] = autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
    } else if (autoPad !== 'NOTSET') ctx.fail(`auto_pad must be NOTSET, VALID, SAME_UPPER or SAME_LOWER; got '${autoPad}'`);
    if (ceil) {
      const padded = n + begin + end;
      let out = Math.ceil(Math.max(0, padded - reach) / stride[d]) + 1;
      if ((out - 1) * stride[d] >= n + begin) out--;
      end += Math.max(0, (out - 1) * stride[d] + reach - padded);
    }
    return { kernel: kernel[d], stride: stride[d], dilation: dilation[d], begin, end };
  });
}

/**
 * A 3-D pool as two 2-D ones: a box's max (or mean, whose divisor is the product of each
 * axis's count, with or without the padding) is separable, so (H, W) pool over [N, C·D, H, W],
 * then D over [N, C, D, Ho·Wo] with a [KD, 1] window.
 */
function pool3d(ctx: NodeContext, x: Value, op: 'maxPool2d' | 'avgPool2d', extra: object, ceilAllowed = true): Value {
  const [n, c, d, h, w] = ctx.shape(x);
  const [ad, ah, aw] = poolAxes3d(ctx, [d, h, w], ceilAllowed);
  const attrs2 = (a: PoolAxis, b: PoolAxis) => ({ kernel: [a.kernel, b.kernel], stride: [a.stride, b.stride], dilation: [a.dilation, b.dilation], padding: [a.begin, b.begin, a.end, b.end], ...extra });
  const unit: PoolAxis = { kernel: 1, stride: 1, dilation: 1, begin: 0, end: 0 };
  const planes = ctx.apply(op, [ctx.apply('reshape', [x], { shape: [n, c * d, h, w] }, FLOAT)], attrs2(ah, aw), FLOAT);
  const [, , ho, wo] = ctx.shape(planes);
  const depth = ctx.apply(op, [ctx.apply('reshape', [planes], { shape: [n, c, d, ho * wo] }, FLOAT)], attrs2(ad, unit), FLOAT);
  return ctx.apply('reshape', [depth], { shape: [n, c, ctx.shape(depth)[2], ho, wo] }, FLOAT);
}

const maxPool: Converter = {
  since: 1,
  convert: (ctx) => {
    const input = ctx.input(0);
    // integer tensors (uint8 images) pool as f32, exact below 2^24, and convert back
    const x = ctx.convert(input, ctx.isInteger(input) ? FLOAT : input.dataType);
    ctx.requireFloat(x);
    const wantsIndices = Boolean(ctx.node.output?.[1]);
    if (ctx.rank(x) === 5) {
      if (wantsIndices) ctx.fail("a 3-D MaxPool's second output (Indices) is not supported (3-D pools run as two 2-D ones)");
      return [ctx.convert(pool3d(ctx, x, 'maxPool2d', {}), input.dataType)];
    }
    const lift = requireSpatial(ctx, x);
    const x2 = to2d(ctx, x, lift);
    const attrs = poolAttrs(ctx, x2, lift);
    const y = ctx.convert(from2d(ctx, ctx.apply('maxPool2d', [x2], attrs, FLOAT), lift), input.dataType);
    if (!wantsIndices) return [y];
    // Indices: each window's first maximum as a flat index into X (a lifted 1-D X's [N, C, 1, L] flattens as [N, C, L])
    let indices = ctx.apply('maxPool2dIndices', [x2], attrs, INT64);
    if (ctx.int('storage_order', 0) !== 0) {
      // column-major: within each (n, c) plane, h + w·H instead of h·W + w
      const [h, w] = ctx.shape(x2).slice(2);
      const int = (v: number) => folded(INT64, [], Float64Array.of(v));
      const inPlane = ctx.apply('mod', [indices, int(h * w)], { floored: false }, INT64);
      const plane = ctx.apply('sub', [indices, inPlane], {}, INT64);
      const row = ctx.apply('div', [inPlane, int(w)], {}, INT64);
      const column = ctx.apply('mod', [inPlane, int(w)], { floored: false }, INT64);
      indices = ctx.apply('add', [plane, ctx.apply('add', [row, ctx.apply('mul', [column, int(h)], {}, INT64)], {}, INT64)], {}, INT64);
    }
    return [y, lift ? ctx.apply('reshape', [indices], { shape: [...ctx.shape(y)] }, INT64) : indices];
  },
};

const averagePool: Converter = {
  // count_include_pad since opset 7
  since: 7,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    const countIncludePad = ctx.int('count_include_pad', 0) === 1;
    if (ctx.rank(x) === 5) return [pool3d(ctx, x, 'avgPool2d', { countIncludePad }, !countIncludePad)];
    const lift = requireSpatial(ctx, x);
    const x2 = to2d(ctx, x, lift);
    const attrs = { ...poolAttrs(ctx, x2, lift, !countIncludePad), countIncludePad };
    return [from2d(ctx, ctx.apply('avgPool2d', [x2], attrs, FLOAT), lift)];
  },
};

const globalAveragePool: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    const lift = requireSpatial(ctx, x);
    const overLast = ctx.apply('mean', [x], { axis: lift ? 2 : 3, keepDims: true }, FLOAT);
    return [lift ? overLast : ctx.apply('mean', [overLast], { axis: 2, keepDims: true }, FLOAT)];
  },
};

/**
 * BatchNormalization, per channel (axis 1) of X [N, C, D1, ..]. For inference, with the
 * running statistics: x·s + (β - μ·s), s = γ / √(σ² + ε), as the graph builder's batchNorm
 * writes it (so the optimizer folds it into a preceding convolution's epilogue); with frozen
 * parameters s and β - μ·s are computed now, so the plan keeps no dispatch for them, only
 * the conv's epilogue scale and shift. In training mode (training_mode = 1 from opset 14;
 * before it, the running-statistics outputs asked for) the batch's own mean and biased
 * variance over every axis but C normalise X, and the running statistics come out as
 * μ·momentum + batch_mean·(1 - momentum) (σ² likewise): means, products and sums of the op
 * table, so autodiff differentiates it with no rule of its own.
 */
const batchNormalization: Converter = {
  since: 7,
  convert: (ctx) => {
    const x = ctx.input(0);
    const [gamma, beta, mean, variance] = [1, 2, 3, 4].map((i) => ctx.fixedValue(ctx.input(i)));
    ctx.requireFloat(x, gamma, beta, mean, variance);
    const shape = ctx.shape(x);
    if (shape.length < 2) ctx.fail(`X must have rank 2 or more ([N, C, D1, ..]); got shape [${shape.join(', ')}]`);
    if (ctx.opset < 9 && ctx.int('spatial', 1) !== 1) ctx.fail('spatial = 0 (statistics per element rather than per channel) is not supported');
    const extraOutputs = (ctx.node.output ?? []).slice(1).map((o) => Boolean(o));
    const training = ctx.opset >= 14 ? ctx.int('training_mode', 0) !== 0 : extraOutputs.some((o) => o);
    if (ctx.opset >= 14 && !training && extraOutputs.some((o) => o)) ctx.fail('the running-statistics outputs are defined only with training_mode = 1');
    // before opset 14, outputs 4 and 5 are implementation-defined saved statistics (cuDNN keeps 1/√(σ² + ε))
    if (extraOutputs.slice(2).some((o) => o)) ctx.fail('the saved_mean and saved_var outputs (opsets 7–13) are not supported; only Y and the running mean and variance');
    const c = shape[1];
    for (const [name, v] of [['scale', gamma], ['B', beta], ['input_mean', mean], ['input_var', variance]] as const) {
      if (ctx.rank(v) !== 1 || ctx.shape(v)[0] !== c) ctx.fail(`${name} must have shape [${c}] (the channels of X); got [${ctx.shape(v).join(', ')}]`);
    }
    const scalar = (v: number) => folded(FLOAT, [], Float64Array.of(v));
    const eps = scalar(ctx.float('epsilon', 1e-5));
    const perChannel = (v: Value) => ctx.apply('reshape', [v], { shape: [c, ...shape.slice(2).map(() => 1)] }, FLOAT);
    const std = (v: Value) => ctx.apply('sqrt', [ctx.apply('add', [v, eps], {}, FLOAT)], {}, FLOAT);
    if (!training) {
      const fixed = [gamma, beta, mean, variance].filter((v): v is Folded => v.kind === 'folded');
      const into = fixed.length === 4 ? foldIntoConvolution(ctx, x, fixed, ctx.float('epsilon', 1e-5)) : undefined;
      if (into) return [into];
      const scale = ctx.apply('div', [gamma, std(variance)], {}, FLOAT);
      const shift = ctx.apply('sub', [beta, ctx.apply('mul', [mean, scale], {}, FLOAT)], {}, FLOAT);
      return [ctx.apply('add', [ctx.apply('mul', [x, perChannel(scale)], {}, FLOAT), perChannel(shift)], {}, FLOAT)];
    }
    const overBatch = (v: Value) => shape.reduce((m, _, axis) => (axis === 1 ? m : ctx.apply('mean', [m], { axis, keepDims: true }, FLOAT)), v);
    const batchMean = overBatch(x);
    const centred = ctx.apply('sub', [x, batchMean], {}, FLOAT);
    const batchVar = overBatch(ctx.apply('mul', [centred, centred], {}, FLOAT));
    const scale = ctx.apply('div', [perChannel(gamma), std(batchVar)], {}, FLOAT);
    const y = ctx.apply('add', [ctx.apply('mul', [centred, scale], {}, FLOAT), perChannel(beta)], {}, FLOAT);
    const momentum = ctx.float('momentum', 0.9);
    const running = (old: Value, batch: Value) =>
      ctx.apply('add', [ctx.apply('mul', [old, scalar(momentum)], {}, FLOAT), ctx.apply('mul', [ctx.apply('reshape', [batch], { shape: [c] }, FLOAT), scalar(1 - momentum)], {}, FLOAT)], {}, FLOAT);
    return [y, extraOutputs[0] ? running(mean, batchMean) : undefined, extraOutputs[1] ? running(variance, batchVar) : undefined];
  },
};

/** The ops of this file by ONNX op type. */
export const CONVOLUTION_CONVERTERS: Readonly<Record<string, Converter>> = {
  AveragePool: averagePool,
  BatchNormalization: batchNormalization,
  Conv: conv,
  ConvTranspose: convTranspose,
  GlobalAveragePool: globalAveragePool,
  MaxPool: maxPool,
};
