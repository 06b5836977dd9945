// Choosing the next token from a model's logits on the host, with transformers' processors
// and their semantics. The order is transformers' (GenerationMixin._get_logits_processor):
//
//   1. repetition penalty  over every token seen so far (prompt and generated), also when greedy
//   2. greedy: argmax (the first of equal maxima) — nothing below applies
//   3. temperature         scores / T
//   4. top-k               keep scores >= the k-th largest (ties with it are kept)
//   5. top-p (nucleus)     keep a token while the probability of the tokens ranked above it
//                          is < p (transformers: drop where the ascending cumsum <= 1 - p)
//   6. min-p               keep p >= min_p · max p (on the distribution left by 1–5)
//   7. renormalise the survivors and draw u ~ U[0,1) (random.ts), walking the tokens in
//                          ascending id order
//
// Probabilities are computed in float64 (transformers: float32), so a token exactly on a
// top-p or min-p boundary may fall the other way; away from boundaries the kept sets agree.

import { TextError } from './errors';

/** The processors' settings, as resolved by generation-config.ts (transformers' defaults there). */
export interface SamplingConfig {
  /** sample (true) or take the most likely token (false) */
  readonly doSample: boolean;
  /** > 0; 1 leaves scores as they are; 0 means greedy */
  readonly temperature: number;
  /** 0 disables */
  readonly topK: number;
  /** 1 disables */
  readonly topP: number;
  /** 0 disables */
  readonly minP: number;
  /** 1 disables; HF semantics: positive scores divided by it, negative ones multiplied */
  readonly repetitionPenalty: number;
}

/** The distribution the next token is drawn from: kept token ids, ascending, and their probabilities (summing to 1). */
export interface TokenDistribution {
  readonly ids: Int32Array;
  readonly probs: Float64Array;
}

/**
 * transformers' RepetitionPenaltyLogitsProcessor, in place: for every id in `seen` (duplicates
 * allowed), a score s becomes s / penalty if s > 0 and s · penalty if s < 0.
 */
export function applyRepetitionPenalty(scores: Float32Array, seen: ArrayLike<number>, penalty: number): void {
  if (penalty === 1) return;
  const done = new Set<number>();
  for (let i = 0; i < seen.length; i++) {
    const id = seen[i]!;
    if (done.has(id) || id < 0 || id >= scores.length) continue;
    done.add(id);
    const s = scores[id]!;
    scores[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/**
 * The distribution of the next token under `config`: processors 1–6 above, renormalised.
 * Greedy decoding (doSample false, or temperature 0) gives the single argmax token with
 * probability 1. `seen` is every token of the sequence so far.
 *
 *     nextTokenDistribution(new Float32Array([2, 1, 0]), [], { doSample: true, temperature: 1,
 *       topK: 2, topP: 1, minP: 0, repetitionPenalty: 1 })
 *     // { ids: [0, 1], probs: [e/(e+1), 1/(e+1)] }
 */
export function nextTokenDistribution(logits: Float32Array, seen: ArrayLike<number>, config: SamplingConfig): TokenDistribution {
  checkLogits(logits);
  let scores = logits;
  if (config.repetitionPenalty !== 1 && seen.length > 0) {
    scores = Float32Array.from(logits);
    applyRepetitionPenalty(scores, seen, config.repetitionPenalty);
  }
  if (!config.doSample || config.temperature === 0) {
    return { ids: Int32Array.of(argmax(scores)), probs: Float64Array.of(1) };
  }

  const ids = topKCandidates(scores, config.topK);
  let probs = softmax(scores, ids, config.temperature);
  let kept = ids;
  if (config.topP < 1) ({ ids: kept, probs } = nucleus(kept, probs, config.topP));
  if (config.minP > 0) ({ ids: kept, probs } = minPFilter(kept, probs, config.minP));
  return { ids: kept, probs: normalise(probs) };
}

/** The token whose cumulative probability (ascending id order) first exceeds u ∈ [0, 1). */
export function sampleFromDistribution(distribution: TokenDistribution, u: number): number {
  const { ids, probs } = distribution;
  let cumulative = 0;
  let last = ids[0]!;
  for (let j = 0; j < ids.length; j++) {
    if (probs[j]! <= 0) continue;
    cumulative += probs[j]!;
    last = ids[j]!;
    if (u < cumulative) return last;
  }
  return last; // u within rounding of 1
}

/** The first index of the largest score. */
export function argmax(scores: Float32Array): number {
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i]! > bestScore) {
      bestScore = scores[i]!;
      best = i;
    }
  }
  if (best < 0) throw new TextError('bad-logits', `every one of the ${scores.length} logits is -Infinity: no token can be chosen`);
  return best;
}

function checkLogits(logits: Float32Array): void {
  if (logits.length === 0) throw new TextError('bad-logits', 'the model returned no logits (length 0)');
  for (let i = 0; i < logits.length; i++) {
    const s = logits[i]!;
    if (s !== s || s === Infinity) throw new TextError('bad-logits', `the model's logit for token ${i} is ${s}: logits must be finite or -Infinity`);
  }
}

/** Ids (ascending) whose score is finite and >= the k-th largest score; all finite ones when k is 0 or >= the vocabulary. */
function topKCandidates(scores: Float32Array, k: number): Int32Array {
  const threshold = k > 0 && k < scores.length ? kthLargest(scores, k) : -Infinity;
  let count = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i]! >= threshold && scores[i]! > -Infinity) count++;
  if (count === 0) throw new TextError('bad-logits', `every one of the ${scores.length} logits is -Infinity: no token can be chosen`);
  const ids = new Int32Array(count);
  for (let i = 0, j = 0; i < scores.length; i++) if (scores[i]! >= threshold && scores[i]! > -Infinity) ids[j++] = i;
  return ids;
}

/** The k-th largest score, counting equal scores separately (torch.topk's k-th value): a size-k min-heap. */
function kthLargest(scores: Float32Array, k: number): number {
  const heap = new Float64Array(k);
  let size = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    if (size < k) {
      let c = size++;
      heap[c] = s;
      while (c > 0) {
        const parent = (c - 1) >> 1;
        if (heap[parent]! <= heap[c]!) break;
        [heap[parent], heap[c]] = [heap[c]!, heap[parent]!];
        c = parent;
      }
    } else if (s > heap[0]!) {
      heap[0] = s;
      let c = 0;
      for (;;) {
        const l = 2 * c + 1;
        const r = l + 1;
        let m = c;
        if (l < k && heap[l]! < heap[m]!) m = l;
        if (r < k && heap[r]! < heap[m]!) m = r;
        if (m === c) break;
        [heap[m], heap[c]] = [heap[c]!, heap[m]!];
        c = m;
      }
    }
  }
  return heap[0]!;
}

/** softmax(scores[ids] / temperature) in float64. */
function softmax(scores: Float32Array, ids: Int32Array, temperature: number): Float64Array {
  const probs = new Float64Array(ids.length);
  let max = -Infinity;
  for (let j = 0; j < ids.length; j++) max = Math.max(max, scores[ids[j]!]! / temperature);
  let sum = 0;
  for (let j = 0; j < ids.length; j++) {
    probs[j] = Math.exp(scores[ids[j]!]! / temperature - max);
    sum += probs[j]!;
  }
  for (let j = 0; j < ids.length; j++) probs[j]! /= sum;
  return probs;
}

/**
 * Top-p. A token is kept while the mass ranked above it is < p, the top token always. Tokens
 * with probability < (1 - p) / n are dropped before sorting: every token at or below them in
 * rank has probability < (1 - p) / n, so their ascending cumulative sum is < 1 - p and
 * transformers drops them too. With a peaked distribution this leaves a few dozen to sort.
 */
function nucleus(ids: Int32Array, probs: Float64Array, topP: number): TokenDistribution {
  const floor = (1 - topP) / ids.length;
  const order: number[] = [];
  for (let j = 0; j < ids.length; j++) if (probs[j]! >= floor) order.push(j);
  order.sort((a, b) => probs[b]! - probs[a]! || a - b);
  const keep: number[] = [];
  let above = 0;
  for (const j of order) {
    if (keep.length > 0 && above >= topP) break;
    keep.push(j);
    above += probs[j]!;
  }
  keep.sort((a, b) => a - b);
  return { ids: Int32Array.from(keep, (j) => ids[j]!), probs: Float64Array.from(keep, (j) => probs[j]!) };
}

/** Min-p: keep p >= minP · max p (the most likely token always passes). */
function minPFilter(ids: Int32Array, probs: Float64Array, minP: number): TokenDistribution {
  let max = 0;
  for (let j = 0; j < probs.length; j++) max = Math.max(max, probs[j]!);
  const floor = minP * max;
  const keep: number[] = [];
  for (let j = 0; j < probs.length; j++) if (probs[j]! >= floor) keep.push(j);
  return { ids: Int32Array.from(keep, (j) => ids[j]!), probs: Float64Array.from(keep, (j) => probs[j]!) };
}

function normalise(probs: Float64Array): Float64Array {
  let sum = 0;
  for (let j = 0; j < probs.length; j++) sum += probs[j]!;
  for (let j = 0; j < probs.length; j++) probs[j]! /= sum;
  return probs;
}
