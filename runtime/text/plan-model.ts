// A language-model plan as generate()'s LanguageModel: the plan's 'prefill' entry (prompt
// [P] i32 padded with zeros, its length as one f32) fills the KV cache held in the plan's state
// buffers and returns the last prompt position's logits; 'decode' (token [1] i32, position [1]
// f32) appends one token and returns its logits. models/llama.ts compiles such plans. A prompt
// longer than P has its first P tokens prefilled and the rest decoded one by one, which the
// cache makes equivalent.
import type { TensorBinding } from '../../schemas/manifest';
import type { Session } from '../session';
import { TextError } from './errors';
import type { LanguageModel } from './generate';

/** A LanguageModel over a session; one sequence at a time (the cache holds one). */
export interface PlanLanguageModel extends LanguageModel {
  readonly maxSequenceLength: number;
  /** the longest prompt one prefill call takes; longer ones continue by decode steps */
  readonly maxPromptLength: number;
  /** logits per position (the plan's vocabulary) */
  readonly vocabSize: number;
}

/**
 * A checker of the plan's entry inputs: input(entry, name, dtype, elements?) returns the
 * binding, or throws naming what the plan has instead (`kind`: what the plan was expected to be).
 */
export function entryInputs(session: Session, kind: string): (entry: string, name: string, dtype: string, elements?: number) => TensorBinding {
  const { entryPoints, model } = session.manifest;
  const where = `plan "${model.name}"`;
  return (entry, name, dtype, elements) => {
    const e = entryPoints[entry];
    if (!e) throw new TextError('bad-input', `${where} is not ${kind}: it has no '${entry}' entry point (it has: ${Object.keys(entryPoints).join(', ')})`);
    const b = e.inputs.find((i) => i.name === name);
    const count = b?.shape.reduce((a, n) => a * n, 1);
    if (!b || b.dtype !== dtype || (elements !== undefined && count !== elements)) {
      throw new TextError('bad-input', `${where}: entry '${entry}' needs input '${name}' (${dtype}${elements ? `, ${elements} value${elements > 1 ? 's' : ''}` : ''}); it has ${e.inputs.map((i) => `${i.name} ${i.dtype} [${i.shape}]`).join(', ')}`);
    }
    return b;
  };
}

/** Checks the session's plan has the entry points a language model needs and wraps it. */
export function planLanguageModel(session: Session): PlanLanguageModel {
  const { entryPoints, buffers, model } = session.manifest;
  const where = `plan "${model.name}"`;
  const input = entryInputs(session, 'a language-model plan');
  const prompt = input('prefill', 'prompt', 'i32');
  input('prefill', 'length', 'f32', 1);
  input('decode', 'token', 'i32', 1);
  input('decode', 'position', 'f32', 1);
  const [prefillOut] = entryPoints.prefill.outputs;
  const [decodeOut] = entryPoints.decode.outputs;
  const vocabSize = decodeOut.shape[decodeOut.shape.length - 1];
  // the cache's rows: the second-last axis of the plan's state buffers (every layer's alike)
  const cache = buffers.find((b) => b.role === 'state' && b.shape.length >= 2);
  if (!cache) throw new TextError('bad-input', `${where} keeps no KV cache (no state buffer)`);
  const maxSequenceLength = cache.shape[cache.shape.length - 2];
  const maxPromptLength = prompt.shape.reduce((a, n) => a * n, 1);
  const padded = new Int32Array(maxPromptLength);

  const decode = async (token: number, position: number): Promise<Float32Array> => {
    if (!Number.isInteger(position) || position < 0 || position >= maxSequenceLength) {
      throw new TextError('bad-input', `position ${position} is outside the plan's sequence of ${maxSequenceLength}`);
    }
    const out = await session.run({ token: Int32Array.of(token), position: Float32Array.of(position) }, 'decode');
    return out[decodeOut.name];
  };
  return {
    maxSequenceLength,
    maxPromptLength,
    vocabSize,
    async prefill(tokens) {
      if (tokens.length === 0) throw new TextError('bad-input', 'prefill needs at least one token');
      if (tokens.length > maxSequenceLength) throw new TextError('bad-input', `a prompt of ${tokens.length} tokens does not fit the plan's sequence of ${maxSequenceLength}`);
      const first = Math.min(tokens.length, maxPromptLength);
      padded.fill(0);
      padded.set(tokens.slice(0, first));
      let logits = (await session.run({ prompt: padded, length: Float32Array.of(first) }, 'prefill'))[prefillOut.name];
      for (let p = first; p < tokens.length; p++) logits = await decode(tokens[p], p);
      return logits;
    },
    decode,
  };
}
