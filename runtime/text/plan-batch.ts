// A language-model plan that decodes several sequences per call as scheduler.ts's
// BatchedLanguageModel: models/llama.ts with `decodeBatch: B` compiles it. Its 'prefill' entry
// (prompt [P] i32 zero-padded, length [1] f32, slot [1] f32) fills one slot of the KV cache and
// returns the prompt's last logits; 'decode_batch' (tokens [B] i32, positions [B] f32) advances
// every slot by one token in one set of dispatches, row b being slot b, and returns [B, vocab].
// Slots with no request this step get position -1, which the plan reads as idle (no write).
import type { Session } from '../session';
import type { BatchedLanguageModel, DecodeRequest } from './batch';
import { TextError } from './errors';
import { entryInputs } from './plan-model';

/** A BatchedLanguageModel over a session whose plan decodes a batch of slots. */
export interface PlanBatchedLanguageModel extends BatchedLanguageModel {
  readonly maxSequenceLength: number;
  /** the longest prompt one prefill call takes; longer ones continue by decode steps of their slot alone */
  readonly maxPromptLength: number;
  /** logits per position (the plan's vocabulary) */
  readonly vocabSize: number;
}

/** Whether the session's plan has the batched decode entry (so planBatchedLanguageModel applies). */
export function decodesBatches(session: Session): boolean {
  return 'decode_batch' in session.manifest.entryPoints;
}

/** Checks the session's plan has the entry points a batched language model needs and wraps it. */
export function planBatchedLanguageModel(session: Session): PlanBatchedLanguageModel {
  const { entryPoints, buffers, model } = session.manifest;
  const where = `plan "${model.name}"`;
  const input = entryInputs(session, 'a batched language-model plan');
  const prompt = input('prefill', 'prompt', 'i32');
  input('prefill', 'length', 'f32', 1);
  input('prefill', 'slot', 'f32', 1);
  const tokensInput = input('decode_batch', 'tokens', 'i32');
  const maxBatch = tokensInput.shape.reduce((a, n) => a * n, 1);
  input('decode_batch', 'positions', 'f32', maxBatch);
  const [prefillOut] = entryPoints.prefill.outputs;
  const [decodeOut] = entryPoints.decode_batch.outputs;
  const vocabSize = decodeOut.shape[decodeOut.shape.length - 1];
  if (decodeOut.shape.reduce((a, n) => a * n, 1) !== maxBatch * vocabSize) throw new TextError('bad-input', `${where}: decode_batch's output ${decodeOut.name} [${decodeOut.shape}] is not [${maxBatch}, vocab]`);
  // the cache, [B, .., S, d] per layer: S rows per slot
  const cache = buffers.find((b) => b.role === 'state' && b.shape.length >= 3);
  if (!cache || cache.shape[0] !== maxBatch) throw new TextError('bad-input', `${where} keeps no KV cache of ${maxBatch} slots (a state buffer [${maxBatch}, .., S, d])`);
  const maxSequenceLength = cache.shape[cache.shape.length - 2];
  const maxPromptLength = prompt.shape.reduce((a, n) => a * n, 1);
  const padded = new Int32Array(maxPromptLength);
  const tokens = new Int32Array(maxBatch);
  const positions = new Float32Array(maxBatch);

  const checkSlot = (slot: number) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= maxBatch) throw new TextError('bad-input', `slot ${slot} is outside [0, ${maxBatch})`);
  };
  const decodeBatch = async (requests: readonly DecodeRequest[]): Promise<Float32Array[]> => {
    tokens.fill(0);
    positions.fill(-1); // idle
    for (const r of requests) {
      checkSlot(r.slot);
      if (positions[r.slot] !== -1) throw new TextError('bad-input', `slot ${r.slot} appears twice in one decode step`);
      if (!Number.isInteger(r.position) || r.position < 0 || r.position >= maxSequenceLength) {
        throw new TextError('bad-input', `position ${r.position} is outside the plan's sequence of ${maxSequenceLength}`);
      }
      tokens[r.slot] = r.token;
      positions[r.slot] = r.position;
    }
    const logits = (await session.run({ tokens, positions }, 'decode_batch'))[decodeOut.name];
    return requests.map((r) => logits.subarray(r.slot * vocabSize, (r.slot + 1) * vocabSize));
  };
  return {
    maxBatch,
    maxSequenceLength,
    maxPromptLength,
    vocabSize,
    async prefill(slot, ids) {
      checkSlot(slot);
      if (ids.length === 0) throw new TextError('bad-input', 'prefill needs at least one token');
      if (ids.length > maxSequenceLength) throw new TextError('bad-input', `a prompt of ${ids.length} tokens does not fit the plan's sequence of ${maxSequenceLength}`);
      const first = Math.min(ids.length, maxPromptLength);
      padded.fill(0);
      padded.set(ids.slice(0, first));
      let logits = (await session.run({ prompt: padded, length: Float32Array.of(first), slot: Float32Array.of(slot) }, 'prefill'))[prefillOut.name];
      // the rest of a long prompt: decode steps of this slot alone (the others' rows untouched)
      for (let p = first; p < ids.length; p++) [logits] = await decodeBatch([{ slot, token: ids[p], position: p }]);
      return logits;
    },
    decodeBatch,
    release: (slot) => checkSlot(slot), // the next prefill of the slot replaces its rows
  };
}
