// Choosing the next token from a model's logits on the host, with transformers' processors
// and their semantics. The order is transformers' (GenerationMixin._get_logits_processor):
//
//   1. repetition penalty  over every token seen so far (prompt and generated), also when greedy
//      presence/frequency  OpenAI's penalties over the generated tokens only (vLLM's reading of
//                          "the text so far"), also when greedy: s − count·frequency − presence
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
  /** OpenAI's presence_penalty, in [-2, 2]: subtracted once from the score of every token generated so far; 0 (or absent) disables */
  readonly presencePenalty?: number;
  /** OpenAI's frequency_penalty, in [-2, 2]: subtracted from a token's score once per time it was generated; 0 (or absent) disables */
  readonly frequencyPenalty?: number;
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
 * OpenAI's presence and frequency penalties, in place: a token generated c > 0 times gets
 * s − c·frequency − presence (https://platform.openai.com/docs/advanced-usage, "frequency and
 * presence penalties").
 */
export function applyPresenceFrequencyPenalties(scores: Float32Array, generated: ArrayLike<number>, presence: number, frequency: number): void {
  if (presence === 0 && frequency === 0) return;
  const counts = new Map<number, number>();
  for (let i = 0; i < generated.length; i++) {
    const id = generated[i]!;
    if (id >= 0 && id < scores.length) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  for (const [id, count] of counts) scores[id] = scores[id]! - count * frequency - presence;
}

/**
 * The distribution of the next token under `config`: processors 1–6 above, renormalised.
 * Greedy decoding (doSample false, or temperature 0) gives the single argmax token with
 * probability 1. `seen` is every token of the sequence so far; those from index
 * `generatedFrom` on (default 0: all of them) were generated, and only they meet the
 * presence and frequency penalties.
 *
 *     nextTokenDistribution(new Float32Array([2, 1, 0]), [], { doSample: true, temperature: 1,
 *       topK: 2, topP: 1, minP: 0, repetitionPenalty: 1 })
 *     // { ids: [0, 1], probs: [e/(e+1), 1/(e+1)] }
 */
export function nextTokenDistribution(logits: Float32Array, seen: ArrayLike<number>, config: SamplingConfig, generatedFrom = 0): TokenDistribution {
  checkLogits(logits);
  let scores = logits;
  if (config.repetitionPenalty !== 1 && seen.length > 0) {
    scores = logits.slice();
    applyRepetitionPenalty(scores, seen, config.repetitionPenalty);
  }
  const presence = config.presencePenalty ?? 0;
  const frequency = config.frequencyPenalty ?? 0;
  if ((presence !== 0 || frequency !== 0) && seen.length > generatedFrom) {
    if (scores === logits) scores = logits.slice();
    const generated = Array.from({ length: seen.length - generatedFrom }, (_, i) => seen[generatedFrom + i]!);
    applyPresenceFrequencyPenalties(scores, generated, presence, frequency);
  }
  if (!config.doSample || config.temperature === 0) {
    return { ids: Int32Array.of(argmax(scores)), probs: Float64Array.of(1) };
  }

  let floor = config.topK > 0 && config.topK < scores.length ? kthLargest(scores, config.topK) : -Infinity;
  // min-p compares p with min_p · max p, i.e. s / T with max s / T + ln min_p: without top-p
  // in between it can cut the candidates before any exp (with top-p it must wait: top-p
  // sees the tokens min-p drops)
  const minPFirst = config.minP > 0 && config.topP === 1;
  if (minPFirst) floor = Math.max(floor, maxScore(scores) + config.temperature * Math.log(config.minP));
  const ids = candidates(scores, floor);
  let probs = softmax(scores, ids, config.temperature);
  let kept = ids;
  if (config.topP < 1) ({ ids: kept, probs } = nucleus(kept, probs, config.topP));
  if (config.minP > 0 && !minPFirst) ({ ids: kept, probs } = minPFilter(kept, probs, config.minP));
  return { ids: kept, probs: kept === ids ? probs : normalise(probs) };
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

/** Ids (ascending) whose score is finite and >= floor. */
function candidates(scores: Float32Array, floor: number): Int32Array {
  const ids = new Int32Array(scores.length);
  let count = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    if (s >= floor && s > -Infinity) ids[count++] = i;
  }
  if (count === 0) throw new TextError('bad-logits', `every one of the ${scores.length} logits is -Infinity: no token can be chosen`);
  return ids.subarray(0, count);
}

function maxScore(scores: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  return max;
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

/**
 * A token this far below the top (in scaled logits) gets probability 0 without an exp: e^-50 is
 * 2e-22, so all of them together (a vocabulary of 10^5) move the sum by less than a float64
 * ulp, and a draw u with 53 bits cannot land on one of them.
 */
const NEGLIGIBLE = 50;

/** softmax(scores[ids] / temperature) in float64. */
function softmax(scores: Float32Array, ids: Int32Array, temperature: number): Float64Array {
  const probs = new Float64Array(ids.length);
  let max = -Infinity;
  for (let j = 0; j < ids.length; j++) {
    const z = scores[ids[j]!]! / temperature;
    probs[j] = z;
    if (z > max) max = z;
  }
  let sum = 0;
  for (let j = 0; j < probs.length; j++) {
    const d = probs[j]! - max;
    const w = d < -NEGLIGIBLE ? 0 : Math.exp(d);
    probs[j] = w;
    sum += w;
  }
  const scale = 1 / sum;
  for (let j = 0; j < probs.length; j++) probs[j]! *= scale;
  return probs;
}

/**
 * Top-p: token j is kept while the mass ranked above it (probability descending, id ascending
 * among equals) is < p; the top token always. Found without sorting the vocabulary: tokens
 * with probability < (1 - p) / n go first (every token at or below them in rank has less, so
 * their ascending cumulative sum is < 1 - p and transformers drops them too), then a
 * quickselect on mass: split at a pivot probability into greater, equal and less; if the
 * greater part alone reaches the mass still wanted the boundary lies inside it, else it is
 * kept whole and the search goes on below it. Expected time linear in the vocabulary.
 */
function nucleus(ids: Int32Array, probs: Float64Array, topP: number): TokenDistribution {
  const floor = (1 - topP) / ids.length;
  let items: number[] = [];
  for (let j = 0; j < ids.length; j++) if (probs[j]! >= floor) items.push(j);
  const keep: number[] = [];
  let wanted = topP; // mass the kept tokens may still have above the next one
  search: while (items.length > 0) {
    const pivot = medianOfThree(probs[items[0]!]!, probs[items[items.length >> 1]!]!, probs[items[items.length - 1]!]!);
    const greater: number[] = [];
    const equal: number[] = []; // in ascending id order, as items are
    const less: number[] = [];
    let greaterMass = 0;
    for (const j of items) {
      const p = probs[j]!;
      if (p > pivot) {
        greater.push(j);
        greaterMass += p;
      } else if (p === pivot) equal.push(j);
      else less.push(j);
    }
    if (greaterMass >= wanted && greater.length > 0) {
      items = greater;
      continue;
    }
    keep.push(...greater);
    wanted -= greaterMass;
    for (const j of equal) {
      if (wanted <= 0) break search;
      keep.push(j);
      wanted -= probs[j]!;
    }
    if (wanted <= 0) break;
    items = less;
  }
  if (keep.length === 0) keep.push(mostLikely(probs));
  keep.sort((a, b) => a - b);
  return { ids: Int32Array.from(keep, (j) => ids[j]!), probs: Float64Array.from(keep, (j) => probs[j]!) };
}

function medianOfThree(a: number, b: number, c: number): number {
  return Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
}

/** The index of the largest probability (the first of equals). */
function mostLikely(probs: Float64Array): number {
  let best = 0;
  for (let j = 1; j < probs.length; j++) if (probs[j]! > probs[best]!) best = j;
  return best;
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
