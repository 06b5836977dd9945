// ONNX ops (default domain, opsets 13–23) onto the IR op table. Each converter reads its
// node's attributes with ONNX's defaults for the model's opset and returns the node's
// outputs; ops the table lacks decompose here (Gemm, Clip, Gather of known indices as a
// one-hot product, GatherElements, Slice with steps; the losses in losses.ts), and shape
// ops fold at compile time.
import { broadcastShapes } from '../../ir/shape';
import { elementCount, formatShape } from '../../ir/types';
import type { NodeContext } from './context';
import { CONTROL_FLOW_CONVERTERS } from './control-flow';
import { CONVOLUTION_CONVERTERS } from './convolution';
import { LOSS_CONVERTERS } from './losses';
import { RESIZE_CONVERTERS } from './resize';
import { BOOL, dataTypeName, FLOAT, INT64, isFloatType, isIntegerType } from './proto';
import { computed, foldable, folded, type Folded, type Value } from './values';

export interface Converter {
  /** the first opset whose semantics this converter implements (the op's introduction) */
  since: number;
  convert(ctx: NodeContext): (Value | undefined)[];
}

const F = FLOAT;

/** A unary op; those in `integer` take integer tensors as well (IR i32). */
function unaryOp(op: 'relu' | 'sigmoid' | 'tanh' | 'neg' | 'abs' | 'sqrt' | 'erf' | 'sin' | 'cos' | 'exp' | 'log' | 'ceil', since = 6, integer = false): Converter {
  return {
    since,
    convert: (ctx) => {
      const x = ctx.input(0);
      if (!integer) ctx.requireFloat(x);
      return [ctx.apply(op, [x], {}, x.dataType)];
    },
  };
}

/** Elementwise arithmetic on float or integer tensors (integers as i32; Div truncates toward zero, as ONNX's integer Div). */
function arithmetic(op: 'add' | 'sub' | 'mul' | 'div'): Converter {
  return {
    // numpy broadcasting from opset 7
    since: 7,
    convert: (ctx) => {
      const a = ctx.input(0);
      const b = ctx.input(1);
      return [ctx.apply(op, [a, b], {}, a.dataType)];
    },
  };
}

/**
 * Pow: the base's type is the result's; an integer base or exponent computes in f32 (exact
 * for the integer powers below 2^24), and an integer result is rounded to the nearest when
 * the exponent is an integer (f32's pow may land a hair below the exact power), truncated
 * otherwise (as the double result is cast).
 */
const pow: Converter = {
  since: 7,
  convert: (ctx) => {
    const a = ctx.input(0);
    const b = ctx.input(1);
    if (!ctx.isInteger(a) && !ctx.isInteger(b)) return [ctx.apply('pow', [a, b], {}, a.dataType)];
    const y = ctx.apply('pow', [ctx.convert(a, F), ctx.convert(b, F)], {}, F);
    if (!ctx.isInteger(a)) return [y];
    if (!ctx.isInteger(b)) return [ctx.convert(y, a.dataType)];
    const half = (v: number) => folded(F, [], Float64Array.of(v));
    const rounded = ctx.apply('where', [ctx.apply('less', [y, half(0)], {}, BOOL), ctx.apply('sub', [y, half(0.5)], {}, F), ctx.apply('add', [y, half(0.5)], {}, F)], {}, F);
    return [ctx.convert(rounded, a.dataType)];
  },
};

/** A comparison of float or integer tensors (both the same type): a bool. */
function comparison(op: 'equal' | 'less' | 'greater', negate = false, since = 7): Converter {
  return {
    since,
    convert: (ctx) => {
      const a = ctx.input(0);
      const b = ctx.input(1);
      const y = ctx.apply(op, [a, b], {}, BOOL);
      // a <= b is not (a > b), a >= b is not (a < b)
      return [negate ? ctx.apply('sub', [folded(F, [], Float64Array.of(1)), y], {}, BOOL) : y];
    },
  };
}

/** And, Or, Xor and Not on bools (0/1 f32): a·b, max(a, b), a ≠ b, 1 - a. */
function logical(op: 'and' | 'or' | 'xor' | 'not'): Converter {
  return {
    // Not is unchanged since opset 1; And, Or and Xor broadcast from 7
    since: op === 'not' ? 1 : 7,
    convert: (ctx) => {
      const a = ctx.input(0);
      const one = folded(F, [], Float64Array.of(1));
      if (op === 'not') return [ctx.apply('sub', [one, a], {}, BOOL)];
      const b = ctx.input(1);
      if (op === 'and') return [ctx.apply('mul', [a, b], {}, BOOL)];
      if (op === 'or') return [ctx.apply('maximum', [a, b], {}, BOOL)];
      return [ctx.apply('sub', [one, ctx.apply('equal', [a, b], {}, BOOL)], {}, BOOL)];
    },
  };
}

/**
 * HardSigmoid, max(0, min(1, αx + β)) (α 0.2, β 0.5 by default), and HardSwish, x times the
 * same with α = 1/6 (MobileNetV3's h-swish): minimum and maximum of the table, so both train.
 */
function hard(swish: boolean): Converter {
  return {
    since: swish ? 14 : 6,
    convert: (ctx) => {
      const x = ctx.input(0);
      ctx.requireFloat(x);
      const scalar = (v: number) => folded(F, [], Float64Array.of(v));
      const alpha = swish ? 1 / 6 : ctx.float('alpha', 0.2);
      const beta = swish ? 0.5 : ctx.float('beta', 0.5);
      const line = ctx.apply('add', [ctx.apply('mul', [x, scalar(alpha)], {}, F), scalar(beta)], {}, F);
      const gate = ctx.apply('maximum', [ctx.apply('minimum', [line, scalar(1)], {}, F), scalar(0)], {}, F);
      return [swish ? ctx.apply('mul', [x, gate], {}, F) : gate];
    },
  };
}

/** Min and Max: the elementwise extreme of one or more tensors, with broadcasting (floats or integers). */
function extreme(op: 'minimum' | 'maximum'): Converter {
  return {
    since: 8,
    convert: (ctx) => {
      const xs = Array.from({ length: ctx.inputCount }, (_, i) => ctx.input(i));
      return [xs.slice(1).reduce((y, x) => ctx.apply(op, [y, x], {}, xs[0].dataType), xs[0])];
    },
  };
}

/** Mod: fmod = 1 is C's fmod (the sign of the dividend), fmod = 0 Python's % (the divisor's sign; integers). */
const mod: Converter = {
  since: 10,
  convert: (ctx) => {
    const a = ctx.input(0);
    const b = ctx.input(1);
    const fmod = ctx.int('fmod', 0);
    if (!ctx.isInteger(a) && fmod !== 1) ctx.fail('fmod must be 1 for float tensors');
    return [ctx.apply('mod', [a, b], { floored: fmod === 0 }, a.dataType)];
  },
};

const identity: Converter = { since: 1, convert: (ctx) => [ctx.input(0)] };

function reshapeTo(ctx: NodeContext, x: Value, shape: readonly number[]): Value {
  // an empty tensor reshapes to any empty shape (the IR's reshape takes positive dims); -1 beside a 0 is ambiguous
  if (ctx.count(x) === 0 && shape.some((d) => d === 0)) {
    if (shape.some((d) => d < 0)) ctx.fail(`cannot infer the -1 of [${shape.join(', ')}] for an empty tensor`);
    return folded(x.dataType, shape, new Float64Array(0));
  }
  return ctx.apply('reshape', [x], { shape: [...shape] }, x.dataType);
}

function transposeBy(ctx: NodeContext, x: Value, perm: readonly number[]): Value {
  if (perm.every((p, i) => p === i)) return x;
  return ctx.apply('transpose', [x], { perm: [...perm] }, x.dataType);
}

/**
 * Reduce over several axes: one IR reduction per axis, dims kept, then dropped if asked.
 * ReduceMin is -max(-x). Integer tensors reduce in f32 and convert back (exact while sums
 * stay below 2^24; a mean truncates toward zero).
 */
function reduceOp(op: 'sum' | 'mean' | 'max' | 'min', axesInputSince: number): Converter {
  return {
    since: 1,
    convert: (ctx) => {
      const input = ctx.input(0);
      const x = ctx.convert(input, ctx.isInteger(input) ? F : input.dataType);
      const rank = ctx.rank(x);
      const keep = ctx.int('keepdims', 1) === 1;
      let axes = ctx.opset >= axesInputSince ? ctx.knownInts(1, 'axes') : ctx.ints('axes');
      if (!axes || axes.length === 0) {
        if (ctx.int('noop_with_empty_axes', 0) === 1) return [input];
        axes = Array.from({ length: rank }, (_, i) => i);
      }
      const normalized = [...new Set(axes.map((a) => ctx.axis(a, rank, 'axes entry')))];
      const negate = (v: Value) => ctx.apply('neg', [v], {}, v.dataType);
      let y = op === 'min' ? negate(x) : x;
      for (const a of normalized) y = ctx.apply(op === 'min' ? 'max' : op, [y], { axis: a, keepDims: true }, x.dataType);
      if (op === 'min') y = negate(y);
      if (!keep) y = reshapeTo(ctx, y, ctx.shape(x).filter((_, i) => !normalized.includes(i)));
      return [ctx.convert(y, input.dataType)];
    },
  };
}

/** An op over the last axis applied along `axis`: moved last and back. */
function alongAxis(ctx: NodeContext, x: Value, axis: number, f: (y: Value) => Value): Value {
  const rank = ctx.rank(x);
  const a = ctx.axis(axis, rank);
  if (a === rank - 1) return f(x);
  const perm = Array.from({ length: rank }, (_, i) => (i === a ? rank - 1 : i === rank - 1 ? a : i));
  return transposeBy(ctx, f(transposeBy(ctx, x, perm)), perm);
}

/**
 * ArgMax and ArgMin (of -x) along an axis as int64: the first (or with select_last_index the
 * last) position holding the row's maximum, from the maximum, a comparison and a second
 * maximum over the positions (f32, exact for axes shorter than 2^24).
 */
function argExtreme(min: boolean): Converter {
  return {
    since: 1,
    convert: (ctx) => {
      const input = ctx.input(0);
      let x = ctx.convert(input, ctx.isInteger(input) ? F : input.dataType);
      if (min) x = ctx.apply('neg', [x], {}, F);
      const shape = ctx.shape(x);
      const axis = ctx.axis(ctx.int('axis', 0), shape.length);
      const keep = ctx.int('keepdims', 1) === 1;
      const last = ctx.opset >= 12 && ctx.int('select_last_index', 0) === 1;
      const n = shape[axis];
      const best = ctx.apply('max', [x], { axis, keepDims: true }, F);
      const hit = ctx.apply('equal', [x, best], {}, BOOL);
      // the position counted so the wanted one is the largest: j for the last, n - j for the first
      const along = shape.map((d, i) => (i === axis ? d : 1));
      const scores = folded(F, along, Float64Array.from({ length: n }, (_, j) => (last ? j : n - j)));
      const picked = ctx.apply('max', [ctx.apply('where', [hit, scores, folded(F, [], Float64Array.of(-1))], {}, F)], { axis, keepDims: true }, F);
      let index = last ? picked : ctx.apply('sub', [folded(F, [], Float64Array.of(n)), picked], {}, F);
      if (!keep) index = reshapeTo(ctx, index, shape.filter((_, i) => i !== axis));
      return [ctx.convert(index, INT64)];
    },
  };
}

function softmaxOp(op: 'softmax' | 'logSoftmax'): Converter {
  return {
    since: 13,
    convert: (ctx) => {
      const x = ctx.input(0);
      ctx.requireFloat(x);
      if (ctx.rank(x) === 0) ctx.fail('needs a tensor of rank 1 or more');
      return [alongAxis(ctx, x, ctx.int('axis', -1), (y) => ctx.apply(op, [y], {}, x.dataType))];
    },
  };
}

/** LayerNormalization and RMSNormalization: normalise over axes [axis, rank), as one last axis. */
function normalization(op: 'layerNorm' | 'rmsNorm', since: number): Converter {
  return {
    since,
    convert: (ctx) => {
      const x = ctx.input(0);
      ctx.requireFloat(x, ctx.input(1), ctx.optional(2));
      const shape = ctx.shape(x);
      const axis = ctx.axis(ctx.int('axis', -1), shape.length);
      const inner = shape.slice(axis);
      const n = elementCount(inner);
      const eps = ctx.float('epsilon', 1e-5);
      const flat = (v: Value) => reshapeTo(ctx, broadcastValue(ctx, v, inner), [n]);
      const rows = reshapeTo(ctx, x, [...shape.slice(0, axis), n]);
      const operands = [rows, flat(ctx.input(1))];
      if (op === 'layerNorm') operands.push(ctx.optional(2) ? flat(ctx.input(2)) : folded(F, [n], new Float64Array(n)));
      const y = reshapeTo(ctx, ctx.apply(op, operands, { eps }, x.dataType), shape);
      if (!ctx.node.output?.slice(1).some((o) => o)) return [y];
      // the optional statistics, shaped [..axis, 1, .., 1]: mean and 1/sqrt(var + eps) (for RMS, of the mean square)
      const kept = [...shape.slice(0, axis), ...inner.map(() => 1)];
      const scalar = (v: number) => folded(F, [], Float64Array.of(v));
      const mean = ctx.apply('mean', [rows], { axis: axis, keepDims: true }, F);
      const centred = op === 'layerNorm' ? ctx.apply('sub', [rows, mean], {}, F) : rows;
      const variance = ctx.apply('mean', [ctx.apply('mul', [centred, centred], {}, F)], { axis: axis, keepDims: true }, F);
      const invStd = ctx.apply('div', [scalar(1), ctx.apply('sqrt', [ctx.apply('add', [variance, scalar(eps)], {}, F)], {}, F)], {}, F);
      return op === 'layerNorm' ? [y, reshapeTo(ctx, mean, kept), reshapeTo(ctx, invStd, kept)] : [y, reshapeTo(ctx, invStd, kept)];
    },
  };
}

function broadcastValue(ctx: NodeContext, v: Value, shape: readonly number[]): Value {
  const s = ctx.shape(v);
  if (s.length === shape.length && s.every((d, i) => d === shape[i])) return v;
  return ctx.apply('broadcast', [v], { shape: [...shape] }, v.dataType);
}

/** Gathers `indices` along `axis` of a folded value, in JS (negative indices count from the end). */
function takeFolded(ctx: NodeContext, x: Folded, axis: number, indices: Folded): Folded {
  const n = x.shape[axis];
  const outer = elementCount(x.shape.slice(0, axis));
  const inner = elementCount(x.shape.slice(axis + 1));
  foldable([...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)]);
  const idx = Array.from(indices.data, (i) => {
    const j = i < 0 ? i + n : i;
    if (!Number.isInteger(j) || j < 0 || j >= n) ctx.fail(`index ${i} is out of range for axis ${axis} of size ${n}`);
    return j;
  });
  const out = new Float64Array(outer * idx.length * inner);
  for (let o = 0; o < outer; o++) {
    idx.forEach((j, k) => out.set(x.data.subarray((o * n + j) * inner, (o * n + j + 1) * inner), (o * idx.length + k) * inner));
  }
  return folded(x.dataType, [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], out);
}

/**
 * Gather along `axis` at run time. Run-time indices: an embedding (a gather kernel, one read
 * per element) of x with the axis moved first, negative indices counting from the end as ONNX
 * says; its gradient adds rows back (a scatter-add), so embeddings train. Known indices into a
 * run-time x (takeAlong's non-contiguous positions): a product with one-hot rows folded here.
 * Either way the indices' axes go where the gathered axis was.
 */
function gatherComputed(ctx: NodeContext, x: Value, axis: number, indices: Value): Value {
  // integer data is gathered as f32 (exact below 2^24) and converted back
  if (ctx.isInteger(x)) return ctx.convert(gatherComputed(ctx, ctx.convert(x, F), axis, indices), x.dataType);
  ctx.requireFloat(x);
  const shape = ctx.shape(x);
  const n = shape[axis];
  const rest = [...shape.slice(0, axis), ...shape.slice(axis + 1)];
  const idxShape = ctx.shape(indices);
  const m = elementCount(idxShape);
  const moved = transposeBy(ctx, x, [axis, ...shape.map((_, i) => i).filter((i) => i !== axis)]);
  let y: Value;
  if (indices.kind === 'folded') {
    const onehot = new Float64Array(foldable([m, n]));
    indices.data.forEach((i, r) => {
      const j = i < 0 ? i + n : i;
      if (!Number.isInteger(j) || j < 0 || j >= n) ctx.fail(`index ${i} is out of range for axis ${axis} of size ${n}`);
      onehot[r * n + j] = 1;
    });
    const product = ctx.apply('matmul', [folded(F, [m, n], onehot), reshapeTo(ctx, moved, [n, elementCount(rest)])], {}, x.dataType);
    y = reshapeTo(ctx, product, [...idxShape, ...rest]);
  } else {
    if (isIntegerType(indices.dataType) === false) ctx.fail('indices must be integers');
    y = computed(x.dataType, ctx.record('embedding', [ctx.tensor(moved), indices.tensor], { fromEnd: true }));
  }
  // y is [idx..., pre..., post...]; ONNX wants [pre..., idx..., post...]
  const k = idxShape.length;
  const perm = [...Array.from({ length: axis }, (_, i) => k + i), ...Array.from({ length: k }, (_, i) => i), ...Array.from({ length: rest.length - axis }, (_, i) => k + axis + i)];
  return transposeBy(ctx, y, perm);
}

/** x's elements at the given positions along `axis`: folded, a slice when contiguous, else a gather. */
function takeAlong(ctx: NodeContext, x: Value, axis: number, positions: number[]): Value {
  const indices = folded(INT64, [positions.length], Float64Array.from(positions));
  if (x.kind === 'folded') return takeFolded(ctx, x, axis, indices);
  // nothing taken: an empty value of the kept shape
  if (positions.length === 0) return folded(x.dataType, ctx.shape(x).map((d, i) => (i === axis ? 0 : d)), new Float64Array(0));
  const start = positions[0];
  if (positions.every((p, i) => p === start + i)) {
    if (start === 0 && positions.length === ctx.shape(x)[axis]) return x;
    return ctx.apply('slice', [x], { axis, start, end: start + positions.length }, x.dataType);
  }
  return gatherComputed(ctx, x, axis, indices);
}

const gather: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    const indices = ctx.input(1);
    const axis = ctx.axis(ctx.int('axis', 0), ctx.rank(x));
    if (x.kind === 'folded' && indices.kind === 'folded') return [takeFolded(ctx, x, axis, indices)];
    // a scalar known index: a slice, then the axis dropped
    if (indices.kind === 'folded' && indices.shape.length === 0) {
      const n = ctx.shape(x)[axis];
      const i = indices.data[0] < 0 ? indices.data[0] + n : indices.data[0];
      if (!Number.isInteger(i) || i < 0 || i >= n) ctx.fail(`index ${indices.data[0]} is out of range for axis ${axis} of size ${n}`);
      const y = takeAlong(ctx, x, axis, [i]);
      return [reshapeTo(ctx, y, ctx.shape(x).filter((_, d) => d !== axis))];
    }
    return [gatherComputed(ctx, x, axis, indices)];
  },
};

/**
 * GatherElements: y[…, i, …] = x[…, indices[…, i, …], …] along `axis`, y shaped as the
 * indices. Folded when both are known; otherwise x cut to the indices' extent on the other
 * axes, and each index compared with the axis's positions over a new axis beside it: the
 * one-hot picks its element by a sum (integer x in f32, exact below 2^24), so x's gradient
 * flows back to the picked elements.
 */
const gatherElements: Converter = {
  since: 11,
  convert: (ctx) => {
    const x = ctx.input(0);
    const indices = ctx.input(1);
    const shape = ctx.shape(x);
    const idxShape = ctx.shape(indices);
    if (!ctx.isInteger(indices)) ctx.fail('indices must be integers');
    if (idxShape.length !== shape.length) ctx.fail(`indices have rank ${idxShape.length}; the data has rank ${shape.length} (they must match)`);
    const axis = ctx.axis(ctx.int('axis', 0), shape.length);
    idxShape.forEach((d, i) => {
      if (i !== axis && d > shape[i]) ctx.fail(`indices' axis ${i} has size ${d}, more than the data's ${shape[i]}`);
    });
    const n = shape[axis];
    if (indices.kind === 'folded') {
      indices.data.forEach((j) => {
        if (!Number.isInteger(j) || j < -n || j >= n) ctx.fail(`index ${j} is out of range for axis ${axis} of size ${n}`);
      });
    }
    if (x.kind === 'folded' && indices.kind === 'folded') {
      const out = new Float64Array(foldable(idxShape));
      const strides = (s: readonly number[]) => s.map((_, i) => elementCount(s.slice(i + 1)));
      const [xStrides, idxStrides] = [strides(shape), strides(idxShape)];
      out.forEach((_, p) => {
        let at = 0;
        idxShape.forEach((__, i) => {
          const coordinate = Math.floor(p / idxStrides[i]) % idxShape[i];
          const j = i === axis ? (indices.data[p] < 0 ? indices.data[p] + n : indices.data[p]) : coordinate;
          at += j * xStrides[i];
        });
        out[p] = x.data[at];
      });
      return [folded(x.dataType, idxShape, out)];
    }
    const data = ctx.isInteger(x) ? ctx.convert(x, F) : x;
    ctx.requireFloat(data);
    let cut = data;
    idxShape.forEach((d, i) => {
      if (i !== axis && d < shape[i]) cut = takeAlong(ctx, cut, i, Array.from({ length: d }, (_, k) => k));
    });
    const cutShape = idxShape.map((d, i) => (i === axis ? n : d));
    // indices [.., m, 1, ..] against positions [1.., 1, n, 1..]: the one-hot over the new axis axis + 1
    const column = reshapeTo(ctx, indices, [...idxShape.slice(0, axis + 1), 1, ...idxShape.slice(axis + 1)]);
    const fromEnd = ctx.apply('where', [ctx.apply('less', [column, folded(INT64, [], Float64Array.of(0))], {}, BOOL), ctx.apply('add', [column, folded(INT64, [], Float64Array.of(n))], {}, indices.dataType), column], {}, indices.dataType);
    const positions = folded(INT64, [...idxShape.slice(0, axis + 1).map(() => 1), n, ...idxShape.slice(axis + 1).map(() => 1)], Float64Array.from({ length: n }, (_, k) => k));
    const hit = ctx.apply('equal', [fromEnd, positions], {}, BOOL);
    const rows = reshapeTo(ctx, cut, [...cutShape.slice(0, axis), 1, n, ...cutShape.slice(axis + 1)]);
    const picked = ctx.apply('sum', [ctx.apply('where', [hit, rows, folded(F, [], Float64Array.of(0))], {}, F)], { axis: axis + 1, keepDims: false }, F);
    return [ctx.convert(picked, x.dataType)];
  },
};

/** Slice (opset 10+ form: starts, ends, axes, steps as inputs), clamped as numpy does. */
const slice: Converter = {
  since: 10,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const starts = ctx.knownInts(1, 'starts')!;
    const ends = ctx.knownInts(2, 'ends')!;
    const axes = ctx.knownInts(3, 'axes') ?? starts.map((_, i) => i);
    const steps = ctx.knownInts(4, 'steps') ?? starts.map(() => 1);
    if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length) ctx.fail('starts, ends, axes and steps differ in length');
    let y = x;
    axes.forEach((rawAxis, k) => {
      const axis = ctx.axis(rawAxis, shape.length);
      const n = shape[axis];
      const step = steps[k];
      if (step === 0) ctx.fail('a step of 0');
      const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + n : v, lo), hi);
      const [lo, hi] = step > 0 ? [0, n] : [-1, n - 1];
      const start = clamp(starts[k], lo, hi);
      const end = clamp(ends[k], lo, hi);
      const positions: number[] = [];
      for (let i = start; step > 0 ? i < end : i > end; i += step) positions.push(i);
      y = takeAlong(ctx, y, axis, positions);
    });
    return [y];
  },
};

const concat: Converter = {
  since: 4,
  convert: (ctx) => {
    const all = Array.from({ length: ctx.inputCount }, (_, i) => ctx.input(i));
    // empty inputs add nothing; all empty: an empty result
    const xs = all.some((v) => ctx.count(v) > 0) ? all.filter((v) => ctx.count(v) > 0) : all;
    const axis = ctx.axis(ctx.int('axis', 0), ctx.rank(xs[0]));
    if (xs.length === 1) return [xs[0]];
    return [ctx.apply('concat', xs, { axis }, xs[0].dataType)];
  },
};

const split: Converter = {
  since: 2,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const axis = ctx.axis(ctx.int('axis', 0), shape.length);
    const outputs = ctx.node.output?.length ?? 1;
    const n = shape[axis];
    let sizes = ctx.opset >= 13 ? ctx.knownInts(1, 'split') : ctx.ints('split');
    if (!sizes) {
      const parts = ctx.opset >= 18 && ctx.has('num_outputs') ? ctx.int('num_outputs', outputs) : outputs;
      const each = Math.ceil(n / parts);
      sizes = Array.from({ length: parts }, (_, i) => Math.min(each, n - i * each));
    }
    if (sizes.reduce((a, b) => a + b, 0) !== n || sizes.some((s) => s < 0)) ctx.fail(`split sizes [${sizes.join(', ')}] do not add up to axis ${axis} of size ${n}`);
    let start = 0;
    return sizes.map((s) => {
      const part = takeAlong(ctx, x, axis, Array.from({ length: s }, (_, i) => start + i));
      start += s;
      return part;
    });
  },
};

const reshape: Converter = {
  since: 5,
  convert: (ctx) => {
    const x = ctx.input(0);
    const target = ctx.knownInts(1, 'shape')!;
    const allowZero = ctx.opset >= 14 && ctx.int('allowzero', 0) === 1;
    const shape = target.map((d, i) => (d === 0 && !allowZero ? ctx.shape(x)[i] : d));
    return [reshapeTo(ctx, x, shape)];
  },
};

const flatten: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const raw = ctx.int('axis', 1);
    const axis = raw < 0 ? raw + shape.length : raw;
    if (axis < 0 || axis > shape.length) ctx.fail(`axis ${raw} is out of range for rank ${shape.length}`);
    return [reshapeTo(ctx, x, [elementCount(shape.slice(0, axis)), elementCount(shape.slice(axis))])];
  },
};

const squeeze: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const raw = ctx.opset >= 13 ? ctx.knownInts(1, 'axes') : ctx.ints('axes');
    const axes = raw ? raw.map((a) => ctx.axis(a, shape.length)) : shape.flatMap((d, i) => (d === 1 ? [i] : []));
    for (const a of axes) if (shape[a] !== 1) ctx.fail(`cannot squeeze axis ${a} of size ${shape[a]}`);
    return [reshapeTo(ctx, x, shape.filter((_, i) => !axes.includes(i)))];
  },
};

const unsqueeze: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const raw = (ctx.opset >= 13 ? ctx.knownInts(1, 'axes') : ctx.ints('axes')) ?? ctx.fail('axes are required');
    const rank = shape.length + raw.length;
    const axes = raw.map((a) => ctx.axis(a, rank));
    if (new Set(axes).size !== axes.length) ctx.fail(`axes [${raw.join(', ')}] repeat an axis`);
    const out: number[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) out.push(axes.includes(i) ? 1 : shape[k++]);
    return [reshapeTo(ctx, x, out)];
  },
};

const transpose: Converter = {
  since: 1,
  convert: (ctx) => {
    const x = ctx.input(0);
    const rank = ctx.rank(x);
    const perm = ctx.ints('perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    return [transposeBy(ctx, x, perm)];
  },
};

const expand: Converter = {
  since: 8,
  convert: (ctx) => {
    const x = ctx.input(0);
    const target = ctx.knownInts(1, 'shape')!;
    const shape = broadcastShapes(ctx.shape(x), target) ?? ctx.fail(`${formatShape(ctx.shape(x))} does not broadcast with ${formatShape(target)}`);
    return [broadcastValue(ctx, x, shape)];
  },
};

const matmul: Converter = {
  since: 1,
  convert: (ctx) => {
    let a = ctx.input(0);
    let b = ctx.input(1);
    ctx.requireFloat(a, b);
    const ra = ctx.rank(a);
    const rb = ctx.rank(b);
    if (ra === 1) a = reshapeTo(ctx, a, [1, ctx.shape(a)[0]]);
    if (rb === 1) b = reshapeTo(ctx, b, [ctx.shape(b)[0], 1]);
    let y = ctx.apply('matmul', [a, b], {}, a.dataType);
    if (ra === 1 || rb === 1) {
      const s = ctx.shape(y);
      y = reshapeTo(ctx, y, s.filter((_, i) => !((ra === 1 && i === s.length - 2) || (rb === 1 && i === s.length - 1))));
    }
    return [y];
  },
};

const gemm: Converter = {
  since: 7,
  convert: (ctx) => {
    const swap = (v: Value) => transposeBy(ctx, v, [1, 0]);
    let a = ctx.input(0);
    let b = ctx.input(1);
    const c = ctx.optional(2);
    ctx.requireFloat(a, b, c);
    if (ctx.int('transA', 0)) a = swap(a);
    if (ctx.int('transB', 0)) b = swap(b);
    const alpha = ctx.float('alpha', 1);
    const beta = ctx.float('beta', 1);
    const scalar = (v: number) => folded(F, [], Float64Array.of(v));
    let y = ctx.apply('matmul', [a, b], {}, F);
    if (alpha !== 1) y = ctx.apply('mul', [y, scalar(alpha)], {}, F);
    if (c && beta !== 0) y = ctx.apply('add', [y, beta === 1 ? c : ctx.apply('mul', [c, scalar(beta)], {}, F)], {}, F);
    return [y];
  },
};

const where: Converter = {
  since: 9,
  convert: (ctx) => {
    const [cond, a, b] = [ctx.input(0), ctx.input(1), ctx.input(2)];
    return [ctx.apply('where', [ctx.convert(cond, BOOL), a, b], {}, a.dataType)];
  },
};

const clip: Converter = {
  since: 6,
  convert: (ctx) => {
    const x = ctx.input(0);
    // bounds are attributes before opset 11, optional inputs since
    const bound = (i: number, attr: string, none: number) =>
      ctx.opset >= 11 ? ctx.optional(i) : ctx.has(attr) ? folded(F, [], Float64Array.of(ctx.float(attr, none))) : undefined;
    const lo = bound(1, 'min', -Infinity);
    const hi = bound(2, 'max', Infinity);
    if (ctx.isInteger(x)) {
      // integers: max and min (no NaN to keep)
      let z = x;
      if (lo) z = ctx.apply('maximum', [z, lo], {}, x.dataType);
      if (hi) z = ctx.apply('minimum', [z, hi], {}, x.dataType);
      return [z];
    }
    ctx.requireFloat(x, lo, hi);
    let y = x;
    if (lo) y = ctx.apply('where', [ctx.apply('less', [y, lo], {}, BOOL), lo, y], {}, x.dataType);
    if (hi) y = ctx.apply('where', [ctx.apply('greater', [y, hi], {}, BOOL), hi, y], {}, x.dataType);
    return [y];
  },
};

/**
 * Cast between the float types, bool and the integer types: folded values convert now; at
 * run time every float type and bool are f32 and every integer type i32, so a cast is an IR
 * cast (float to integer toward zero), x ≠ 0 (to bool), a rounding to float16/bfloat16 or
 * nothing. Other types (string, complex) are refused.
 */
const cast: Converter = {
  since: 6,
  convert: (ctx) => {
    const x = ctx.input(0);
    const to = ctx.int('to', 0);
    const carried = (t: number) => isFloatType(t) || t === BOOL || isIntegerType(t);
    if (x.kind === 'computed' && (!carried(x.dataType) || !carried(to))) {
      ctx.fail(`a run-time cast from ${dataTypeName(x.dataType)} to ${dataTypeName(to)} is not supported (the plan computes the float types as float32, bool as 0/1 float32 and integers as int32)`);
    }
    if (x.kind === 'folded' && !carried(to)) return [folded(to, x.shape, x.data)];
    return [ctx.convert(x, to)];
  },
};

const constant: Converter = {
  since: 1,
  convert: (ctx) => {
    const t = ctx.tensorAttr('value');
    if (t) return [folded(t.dataType, t.shape, t.data, ctx.node.output?.[0])];
    if (ctx.has('value_float')) return [folded(F, [], Float64Array.of(ctx.float('value_float', 0)))];
    if (ctx.has('value_int')) return [folded(INT64, [], Float64Array.of(ctx.int('value_int', 0)))];
    const floats = ctx.has('value_floats') ? ctx.node.attribute!.find((a) => a.name === 'value_floats')!.floats ?? [] : undefined;
    if (floats) return [folded(F, [floats.length], Float64Array.from(floats))];
    const ints = ctx.ints('value_ints');
    if (ints) return [folded(INT64, [ints.length], Float64Array.from(ints))];
    return ctx.fail(`only value, value_float(s) and value_int(s) are supported; got ${ctx.attributeNames().join(', ') || 'no attribute'}`);
  },
};

const shapeOp: Converter = {
  since: 1,
  convert: (ctx) => {
    const s = ctx.shape(ctx.input(0));
    const r = s.length;
    const clampAxis = (a: number) => Math.min(Math.max(a < 0 ? a + r : a, 0), r);
    const start = ctx.opset >= 15 ? clampAxis(ctx.int('start', 0)) : 0;
    const end = ctx.opset >= 15 ? clampAxis(ctx.int('end', r)) : r;
    const dims = s.slice(start, Math.max(start, end));
    return [folded(INT64, [dims.length], Float64Array.from(dims))];
  },
};

const size: Converter = { since: 1, convert: (ctx) => [folded(INT64, [], Float64Array.of(ctx.count(ctx.input(0))))] };

const constantOfShape: Converter = {
  since: 9,
  convert: (ctx) => {
    const shape = ctx.knownInts(0, 'shape')!;
    const value = ctx.tensorAttr('value') ?? folded(F, [1], Float64Array.of(0));
    return [folded(value.dataType, shape, new Float64Array(foldable(shape)).fill(value.data[0] ?? 0))];
  },
};

const range: Converter = {
  since: 11,
  convert: (ctx) => {
    const [start, limit, delta] = [0, 1, 2].map((i) => ctx.known(i, ['start', 'limit', 'delta'][i]));
    const [s, l, d] = [start.data[0], limit.data[0], delta.data[0]];
    if (d === 0) ctx.fail('delta is 0');
    const n = foldable([Math.max(Math.ceil((l - s) / d), 0)]);
    const data = Float64Array.from({ length: n }, (_, i) => s + i * d);
    return [folded(start.dataType, [n], start.dataType === F ? data.map(Math.fround) : data)];
  },
};

const trilu: Converter = {
  since: 14,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    if (shape.length < 2) ctx.fail('needs a tensor of rank 2 or more');
    const k = ctx.optional(1) ? ctx.known(1, 'k').data[0] : 0;
    const upper = ctx.int('upper', 1) === 1;
    const [rows, cols] = shape.slice(-2);
    const keep = (i: number, j: number) => (upper ? j - i >= k : j - i <= k);
    const mask = Float64Array.from({ length: foldable([rows, cols]) }, (_, p) => (keep(Math.floor(p / cols), p % cols) ? 1 : 0));
    if (x.kind === 'folded') return [folded(x.dataType, shape, x.data.map((v, p) => (mask[p % (rows * cols)] ? v : 0)))];
    return [ctx.apply('where', [folded(BOOL, [rows, cols], mask), x, folded(x.dataType === BOOL ? F : x.dataType, [], Float64Array.of(0))], {}, x.dataType)];
  },
};

/**
 * Dropout: the identity with an all-true mask for inference (training_mode false or absent),
 * and in training mode with ratio 0 (nothing dropped, a scale of 1). Training mode with a
 * positive ratio draws a random mask, which the plan has no generator for: refused.
 */
const dropout: Converter = {
  since: 7,
  convert: (ctx) => {
    const x = ctx.input(0);
    const training = ctx.optional(2) ? ctx.known(2, 'training_mode').data[0] !== 0 : false;
    if (training) {
      const ratio = ctx.optional(1) ? ctx.known(1, 'ratio').data[0] : 0.5;
      if (ratio !== 0) ctx.fail(`training_mode = true with ratio ${ratio} draws a random mask, which the plan cannot draw; Dropout imports for inference (training_mode false) or for training with ratio 0`);
    }
    const wantsMask = Boolean(ctx.node.output?.[1]);
    return [x, wantsMask ? folded(BOOL, ctx.shape(x), new Float64Array(foldable(ctx.shape(x))).fill(1)) : undefined];
  },
};

/**
 * Tile: each axis i repeated repeats[i] times, as one broadcast of x viewed as
 * [1, d0, 1, d1, ..] to [r0, d0, r1, d1, ..] and a reshape to [r0·d0, r1·d1, ..].
 */
const tile: Converter = {
  since: 6,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const repeats = ctx.knownInts(1, 'repeats')!;
    if (repeats.length !== shape.length) ctx.fail(`repeats has ${repeats.length} entries; the input has rank ${shape.length}`);
    if (repeats.some((r) => !Number.isInteger(r) || r < 0)) ctx.fail(`repeats must be non-negative integers; got [${repeats.join(', ')}]`);
    const out = shape.map((d, i) => d * repeats[i]);
    if (repeats.every((r) => r === 1)) return [x];
    if (out.some((d) => d === 0)) return [folded(x.dataType, out, new Float64Array(0))];
    const spread = reshapeTo(ctx, x, shape.flatMap((d) => [1, d]));
    return [reshapeTo(ctx, broadcastValue(ctx, spread, shape.flatMap((d, i) => [repeats[i], d])), out)];
  },
};

/**
 * Pad (pads and constant_value as inputs from opset 11, axes from 18): per padded axis, the
 * left and right blocks concatenated around x. constant: a block of the value; edge: the
 * first or last element repeated; reflect: the elements mirrored about the first or last
 * (not repeating it); wrap: the other end's. Negative pads crop. pads and axes must be known.
 */
const pad: Converter = {
  since: 11,
  convert: (ctx) => {
    const x = ctx.input(0);
    const shape = ctx.shape(x);
    const rank = shape.length;
    const mode = ctx.string('mode', 'constant');
    if (!['constant', 'edge', 'reflect', 'wrap'].includes(mode) || (mode === 'wrap' && ctx.opset < 19)) ctx.fail(`mode must be constant, edge, reflect${ctx.opset >= 19 ? ' or wrap' : ''}; got '${mode}'`);
    const pads = ctx.knownInts(1, 'pads')!;
    // the constant: known, or a value computed at run time (an initializer, trainable) broadcast into each block
    const given = ctx.optional(2);
    const value = given?.kind === 'folded' ? (given.data[0] ?? 0) : 0;
    const axes = (ctx.opset >= 18 ? ctx.knownInts(3, 'axes') : undefined)?.map((a) => ctx.axis(a, rank, 'axes entry')) ?? shape.map((_, i) => i);
    if (pads.length !== 2 * axes.length) ctx.fail(`pads has ${pads.length} entries; it needs ${2 * axes.length} (a begin and an end for each of ${axes.length} axes)`);
    let y = x;
    axes.forEach((axis, k) => {
      const [begin, end] = [pads[k], pads[k + axes.length]];
      // crop first (negative pads), then pad what is left
      const n0 = ctx.shape(y)[axis];
      const keepFrom = Math.max(0, -begin);
      const keepTo = n0 - Math.max(0, -end);
      if (keepTo < keepFrom) ctx.fail(`pads [${pads.join(', ')}] crop more than axis ${axis} of size ${n0} holds`);
      if (keepFrom > 0 || keepTo < n0) y = takeAlong(ctx, y, axis, Array.from({ length: keepTo - keepFrom }, (_, i) => keepFrom + i));
      const n = keepTo - keepFrom;
      const [left, right] = [Math.max(0, begin), Math.max(0, end)];
      if (left === 0 && right === 0) return;
      if (mode !== 'constant' && n === 0) ctx.fail(`${mode} padding of an empty axis ${axis}`);
      if (mode === 'reflect' && (left > n - 1 || right > n - 1)) ctx.fail(`reflect padding of ${Math.max(left, right)} needs axis ${axis} longer than that; it has ${n}`);
      // the source position of each padded element, -1 for the constant
      const source = (i: number): number => {
        if (mode === 'constant') return -1;
        if (mode === 'edge') return Math.min(Math.max(i, 0), n - 1);
        if (mode === 'wrap') return ((i % n) + n) % n;
        return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
      };
      const block = (positions: number[]): Value => {
        if (mode !== 'constant') return takeAlong(ctx, y, axis, positions.map(source));
        const blockShape = ctx.shape(y).map((d, i) => (i === axis ? positions.length : d));
        if (given?.kind === 'computed') return broadcastValue(ctx, reshapeTo(ctx, given, []), blockShape);
        return folded(x.dataType, blockShape, new Float64Array(foldable(blockShape)).fill(value));
      };
      const parts = [
        ...(left > 0 ? [block(Array.from({ length: left }, (_, i) => i - left))] : []),
        ...(n > 0 ? [y] : []),
        ...(right > 0 ? [block(Array.from({ length: right }, (_, i) => n + i))] : []),
      ];
      y = parts.length === 1 ? parts[0] : ctx.apply('concat', parts, { axis }, x.dataType);
    });
    return [y];
  },
};

/**
 * InstanceNormalization: each (n, c) plane of X [N, C, D1, ..] normalised over its elements
 * (the op table's layerNorm over the flattened plane, unit weight and zero bias), then
 * scale·y + B per channel.
 */
const instanceNormalization: Converter = {
  since: 6,
  convert: (ctx) => {
    const [x, scale, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
    const { shape, normalised } = normalisedGroups(ctx, x, scale, bias, (c) => c);
    const c = shape[1];
    for (const [name, v] of [['scale', scale], ['B', bias]] as const) {
      if (ctx.rank(v) !== 1 || ctx.shape(v)[0] !== c) ctx.fail(`${name} must have shape [${c}] (the channels of X); got [${ctx.shape(v).join(', ')}]`);
    }
    const perChannel = (v: Value) => reshapeTo(ctx, v, [c, ...shape.slice(2).map(() => 1)]);
    return [ctx.apply('add', [ctx.apply('mul', [normalised, perChannel(scale)], {}, F), perChannel(bias)], {}, F)];
  },
};

/**
 * X [N, C, D1, ..] normalised over each of `groups(C)` groups of channels and their elements:
 * the op table's layerNorm over [N, G, C/G·D1·..], unit weight and zero bias, back in X's shape.
 */
function normalisedGroups(ctx: NodeContext, x: Value, scale: Value, bias: Value, groupsOf: (channels: number) => number): { shape: readonly number[]; normalised: Value } {
  ctx.requireFloat(x, scale, bias);
  const shape = ctx.shape(x);
  if (shape.length < 3) ctx.fail(`X must have rank 3 or more ([N, C, D1, ..]); got shape [${shape.join(', ')}]`);
  const [n, c] = shape;
  const groups = groupsOf(c);
  const span = (c / groups) * elementCount(shape.slice(2));
  const ones = folded(F, [span], new Float64Array(span).fill(1));
  const zeros = folded(F, [span], new Float64Array(span));
  return { shape, normalised: reshapeTo(ctx, ctx.apply('layerNorm', [reshapeTo(ctx, x, [n, groups, span]), ones, zeros], { eps: ctx.float('epsilon', 1e-5) }, x.dataType), shape) };
}

/**
 * GroupNormalization: X [N, C, D1, ..] normalised over each group of C/num_groups channels
 * and their elements (layerNorm over [N, G, C/G·D1·..]), then scale·y + bias per channel
 * (opset 21; opset 18's scale and bias are per group, each value applying to its group's
 * channels).
 */
const groupNormalization: Converter = {
  since: 18,
  convert: (ctx) => {
    const [x, scale, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
    const groups = ctx.int('num_groups', 0);
    const { shape, normalised } = normalisedGroups(ctx, x, scale, bias, (c) => {
      if (!(groups > 0) || c % groups !== 0) ctx.fail(`num_groups must divide the ${c} channels; got ${groups}`);
      return groups;
    });
    const c = shape[1];
    const perGroup = ctx.opset < 21;
    const width = perGroup ? groups : c;
    for (const [name, v] of [['scale', scale], ['bias', bias]] as const) {
      if (ctx.rank(v) !== 1 || ctx.shape(v)[0] !== width) ctx.fail(`${name} must have shape [${width}] (${perGroup ? 'one per group, opset 18' : 'one per channel'}); got [${ctx.shape(v).join(', ')}]`);
    }
    // per channel: [C, 1, ..]; a per-group value broadcast over its group's channels first
    const perChannel = (v: Value) => {
      const channels = perGroup ? reshapeTo(ctx, broadcastValue(ctx, reshapeTo(ctx, v, [groups, 1]), [groups, c / groups]), [c]) : v;
      return reshapeTo(ctx, channels, [c, ...shape.slice(2).map(() => 1)]);
    };
    return [ctx.apply('add', [ctx.apply('mul', [normalised, perChannel(scale)], {}, F), perChannel(bias)], {}, F)];
  },
};

const reciprocal: Converter = {
  since: 6,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    return [ctx.apply('div', [folded(F, [], Float64Array.of(1)), x], {}, x.dataType)];
  },
};

const gelu: Converter = {
  since: 20,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    const approximate = ctx.string('approximate', 'none');
    if (approximate !== 'none' && approximate !== 'tanh') ctx.fail(`approximate must be 'none' or 'tanh'; got '${approximate}'`);
    return [ctx.apply('gelu', [x], { approximate }, x.dataType)];
  },
};

const isNaN: Converter = {
  since: 9,
  convert: (ctx) => {
    const x = ctx.input(0);
    ctx.requireFloat(x);
    return [ctx.apply('isNaN', [x], {}, BOOL)];
  },
};

/** The supported ops by ONNX op type (default domain). */
export const CONVERTERS: Readonly<Record<string, Converter>> = {
  ...CONVOLUTION_CONVERTERS,
  ...LOSS_CONVERTERS,
  ...CONTROL_FLOW_CONVERTERS,
  ...RESIZE_CONVERTERS,
  Abs: unaryOp('abs', 6, true),
  Add: arithmetic('add'),
  And: logical('and'),
  ArgMax: argExtreme(false),
  ArgMin: argExtreme(true),
  Cast: cast,
  Ceil: unaryOp('ceil'),
  Clip: clip,
  Concat: concat,
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Cos: unaryOp('cos', 7),
  Div: arithmetic('div'),
  Dropout: dropout,
  Equal: comparison('equal'),
  Erf: unaryOp('erf', 9),
  Exp: unaryOp('exp'),
  Expand: expand,
  Flatten: flatten,
  Gather: gather,
  GatherElements: gatherElements,
  Gelu: gelu,
  Gemm: gemm,
  Greater: comparison('greater'),
  GroupNormalization: groupNormalization,
  HardSigmoid: hard(false),
  HardSwish: hard(true),
  GreaterOrEqual: comparison('less', true, 12),
  Identity: identity,
  InstanceNormalization: instanceNormalization,
  IsNaN: isNaN,
  LayerNormalization: normalization('layerNorm', 17),
  Less: comparison('less'),
  LessOrEqual: comparison('greater', true, 12),
  Log: unaryOp('log'),
  LogSoftmax: softmaxOp('logSoftmax'),
  MatMul: matmul,
  Max: extreme('maximum'),
  Min: extreme('minimum'),
  Mod: mod,
  Mul: arithmetic('mul'),
  Neg: unaryOp('neg', 6, true),
  Not: logical('not'),
  Or: logical('or'),
  Pad: pad,
  Pow: pow,
  RMSNormalization: normalization('rmsNorm', 23),
  Range: range,
  Reciprocal: reciprocal,
  ReduceMax: reduceOp('max', 18),
  ReduceMean: reduceOp('mean', 18),
  ReduceMin: reduceOp('min', 18),
  ReduceSum: reduceOp('sum', 13),
  Relu: unaryOp('relu'),
  Reshape: reshape,
  Shape: shapeOp,
  Sigmoid: unaryOp('sigmoid'),
  Sin: unaryOp('sin', 7),
  Size: size,
  Slice: slice,
  Softmax: softmaxOp('softmax'),
  Split: split,
  Sqrt: unaryOp('sqrt'),
  Squeeze: squeeze,
  Sub: arithmetic('sub'),
  Tanh: unaryOp('tanh'),
  Tile: tile,
  Transpose: transpose,
  Trilu: trilu,
  Unsqueeze: unsqueeze,
  Where: where,
  Xor: logical('xor'),
};
