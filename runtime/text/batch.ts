// What a server needs of a language model to decode several sequences per step: each sequence
// holds a slot (its KV cache rows), prefill fills one slot, decodeBatch advances any set of
// slots by one token in one call. scheduler.ts decides which sequences share a step; a plan
// whose decode entry point takes a batch is one such model (plan-batch.ts), batchFromModels() makes one from
// single-sequence models (generate.ts's LanguageModel), one slot per model.

import { TextError } from './errors';
import type { LanguageModel } from './generate';

/** One sequence's part of a decode step. */
export interface DecodeRequest {
  /** the sequence's slot, in [0, maxBatch), prefilled and not released since */
  readonly slot: number;
  /** the last token of the sequence */
  readonly token: number;
  /** its position (the prompt's first token is 0); every earlier position is in the slot's cache */
  readonly position: number;
}

/**
 * A model that holds up to `maxBatch` sequences at once, one per slot, and decodes any of them
 * together. The caller (scheduler.ts) gives each slot to one sequence at a time and releases it
 * before giving it to another. Returned logits may be views of one buffer the model reuses:
 * they are read before the next call and never modified.
 *
 *     const model = batchFromModels([modelA, modelB]);          // two single-sequence models
 *     const first = await model.prefill(0, promptIds);          // logits after the prompt
 *     const [next] = await model.decodeBatch([{ slot: 0, token: 42, position: promptIds.length }]);
 *     model.release(0);
 */
export interface BatchedLanguageModel {
  /** how many slots there are: the most sequences a decode step takes */
  readonly maxBatch: number;
  /** the longest sequence (prompt + generated) a slot holds */
  readonly maxSequenceLength?: number;
  /** Runs the prompt in `slot` (positions 0 … n-1), replacing whatever it held; returns the logits of position n. */
  prefill(slot: number, tokens: readonly number[]): Promise<Float32Array>;
  /** Runs one token for each request (distinct slots); returns each one's next logits, in the requests' order. */
  decodeBatch(requests: readonly DecodeRequest[]): Promise<Float32Array[]>;
  /** The slot's sequence is over; its cache may be dropped. */
  release(slot: number): void;
}

/**
 * A batched model over single-sequence models, one slot per model: a decode step runs the
 * slots one after another, so it batches nothing on the device, but it lets a server take
 * several requests with any LanguageModel (and with one model, one request at a time).
 */
export function batchFromModels(models: readonly LanguageModel[]): BatchedLanguageModel {
  if (models.length === 0) throw new TextError('bad-input', 'batchFromModels needs at least one model');
  const lengths = models.map((m) => m.maxSequenceLength).filter((n): n is number => n !== undefined);
  const slotModel = (slot: number): LanguageModel => {
    const model = models[slot];
    if (!Number.isInteger(slot) || !model) throw new TextError('bad-input', `slot ${slot} is outside [0, ${models.length})`);
    return model;
  };
  return {
    maxBatch: models.length,
    maxSequenceLength: lengths.length > 0 ? Math.min(...lengths) : undefined,
    prefill: (slot, tokens) => slotModel(slot).prefill(tokens),
    async decodeBatch(requests) {
      const out: Float32Array[] = [];
      for (const r of requests) out.push(await slotModel(r.slot).decode(r.token, r.position));
      return out;
    },
    release: () => {}, // the next prefill replaces the model's state
  };
}

/** One slot of a batched model as a single-sequence LanguageModel (generate() on a batched plan). */
export function slotLanguageModel(model: BatchedLanguageModel, slot = 0): LanguageModel {
  if (!Number.isInteger(slot) || slot < 0 || slot >= model.maxBatch) throw new TextError('bad-input', `slot ${slot} is outside [0, ${model.maxBatch})`);
  return {
    maxSequenceLength: model.maxSequenceLength,
    prefill: (tokens) => model.prefill(slot, tokens),
    decode: async (token, position) => (await model.decodeBatch([{ slot, token, position }]))[0],
  };
}

/**
 * The model's logits cut to the first `size` ids (the tokenizer's): a plan's vocabulary may be
 * padded past them (Qwen2's 151936 rows for 151669 tokens), and a padding id, if sampled,
 * could not be decoded.
 */
export function withinVocabulary(model: BatchedLanguageModel, size: number): BatchedLanguageModel {
  return {
    maxBatch: model.maxBatch,
    maxSequenceLength: model.maxSequenceLength,
    prefill: async (slot, tokens) => (await model.prefill(slot, tokens)).subarray(0, size),
    decodeBatch: async (requests) => (await model.decodeBatch(requests)).map((logits) => logits.subarray(0, size)),
    release: (slot) => model.release(slot),
  };
}
