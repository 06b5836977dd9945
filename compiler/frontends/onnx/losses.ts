// The ONNX loss ops torch.onnx writes for F.nll_loss and F.cross_entropy, decomposed into the
// op table (so they train): NegativeLogLikelihoodLoss picks each target's log-probability
// through a one-hot mask of the target against the class positions, and
// SoftmaxCrossEntropyLoss is the same after a LogSoftmax over the classes (axis 1).
import type { Converter } from './converters';
import type { NodeContext } from './context';
import { BOOL, FLOAT, INT64 } from './proto';
import { folded, type Value } from './values';

const scalar = (v: number) => folded(FLOAT, [], Float64Array.of(v));

/** The sum of every element of v, a scalar. */
function sumAll(ctx: NodeContext, v: Value): Value {
  const flat = ctx.apply('reshape', [v], { shape: [ctx.count(v)] }, FLOAT);
  return ctx.apply('sum', [flat], { axis: 0, keepDims: false }, FLOAT);
}

/**
 * -logProb[n, target[n, d…], d…] · weight[target], reduced as `reduction` says: 'none' keeps
 * [N, d…], 'sum' adds, 'mean' divides the sum by the targets' total weight (1 each without
 * weights). A target equal to ignore_index (or, like it, outside [0, C)) weighs 0.
 */
function negativeLogLikelihood(ctx: NodeContext, logProb: Value, target: Value, weight: Value | undefined): Value {
  const shape = ctx.shape(logProb);
  const targetShape = ctx.shape(target);
  if (shape.length < 2) ctx.fail(`the input must be [N, C] or [N, C, d1, …]; got rank ${shape.length}`);
  const expected = [shape[0], ...shape.slice(2)];
  if (targetShape.length !== expected.length || targetShape.some((d, i) => d !== expected[i])) {
    ctx.fail(`the target must have shape [${expected.join(', ')}] (the input's without its class axis); got [${targetShape.join(', ')}]`);
  }
  if (!ctx.isInteger(target)) ctx.fail('the target must be an integer tensor (class indices)');
  const c = shape[1];
  if (weight && (ctx.rank(weight) !== 1 || ctx.shape(weight)[0] !== c)) ctx.fail(`the weight must have shape [${c}] (one per class); got [${ctx.shape(weight).join(', ')}]`);
  const reduction = ctx.string('reduction', 'mean');
  if (!['none', 'sum', 'mean'].includes(reduction)) ctx.fail(`reduction must be 'none', 'sum' or 'mean'; got '${reduction}'`);
  const ones = shape.slice(2).map(() => 1);

  // [N, 1, d…] targets against [1, C, 1…] positions: each target's one-hot row over the classes
  const column = ctx.apply('reshape', [target], { shape: [shape[0], 1, ...shape.slice(2)] }, target.dataType);
  const positions = folded(INT64, [1, c, ...ones], Float64Array.from({ length: c }, (_, i) => i));
  let mask = ctx.apply('equal', [column, positions], {}, BOOL);
  if (ctx.has('ignore_index')) {
    const kept = ctx.apply('sub', [scalar(1), ctx.apply('equal', [column, folded(INT64, [], Float64Array.of(ctx.int('ignore_index', 0)))], {}, BOOL)], {}, BOOL);
    mask = ctx.apply('mul', [mask, kept], {}, BOOL);
  }
  // where rather than a product with the mask: a -inf log-probability of another class stays out
  const picked = ctx.apply('sum', [ctx.apply('where', [mask, logProb, scalar(0)], {}, FLOAT)], { axis: 1, keepDims: false }, FLOAT);
  const perClass = weight ? ctx.apply('mul', [mask, ctx.apply('reshape', [weight], { shape: [1, c, ...ones] }, FLOAT)], {}, FLOAT) : mask;
  const targetWeight = ctx.apply('sum', [perClass], { axis: 1, keepDims: false }, FLOAT);
  const loss = ctx.apply('neg', [ctx.apply('mul', [picked, targetWeight], {}, FLOAT)], {}, FLOAT);
  if (reduction === 'none') return loss;
  const total = sumAll(ctx, loss);
  return reduction === 'sum' ? total : ctx.apply('div', [total, sumAll(ctx, targetWeight)], {}, FLOAT);
}

const negativeLogLikelihoodLoss: Converter = {
  since: 12,
  convert: (ctx) => {
    const input = ctx.input(0);
    ctx.requireFloat(input, ctx.optional(2));
    return [negativeLogLikelihood(ctx, input, ctx.input(1), ctx.optional(2))];
  },
};

/** The loss and, as a second output where asked, the log-probabilities. */
const softmaxCrossEntropyLoss: Converter = {
  since: 12,
  convert: (ctx) => {
    const scores = ctx.input(0);
    ctx.requireFloat(scores, ctx.optional(2));
    const rank = ctx.rank(scores);
    if (rank < 2) ctx.fail(`the scores must be [N, C] or [N, C, d1, …]; got rank ${rank}`);
    // LogSoftmax over axis 1: the classes moved last and back
    const perm = Array.from({ length: rank }, (_, i) => (i === 1 ? rank - 1 : i === rank - 1 ? 1 : i));
    const moved = (v: Value) => (rank === 2 ? v : ctx.apply('transpose', [v], { perm }, FLOAT));
    const logProb = moved(ctx.apply('logSoftmax', [moved(scores)], {}, FLOAT));
    return [negativeLogLikelihood(ctx, logProb, ctx.input(1), ctx.optional(2)), logProb];
  },
};

/** The ops of this file by ONNX op type. */
export const LOSS_CONVERTERS: Readonly<Record<string, Converter>> = {
  NegativeLogLikelihoodLoss: negativeLogLikelihoodLoss,
  SoftmaxCrossEntropyLoss: softmaxCrossEntropyLoss,
};
