// `mnc generate`: text from a language-model plan (prefill and decode entry points, KV cache on
// the GPU) or a GGUF model compiled on the spot, on a WebGPU device (Dawn): the checkpoint loaded by name, the prompt tokenized (or
// rendered by the chat template with --chat), tokens streamed to stdout as they come, and the
// figures (prompt tokens, prefill time, generated tokens, tokens/s) on stderr at the end.
import { loadPlan, readWeightsFiles, requestNodeDevice, type NodeBackend, type Session } from '../../runtime';
import { decodesBatches, generate, isTextError, planBatchedLanguageModel, planLanguageModel, slotLanguageModel, type GenerationOptions, type LanguageModel } from '../../runtime/text/node';
import { CompileError } from '../ir/errors';
import { languageModelPlan, languageModelText } from './language-model';

export interface GenerateCommandOptions {
  weights?: string;
  maxSequence?: string;
  target?: string;
  tokenizer?: string;
  prompt?: string;
  chat?: boolean;
  maxNewTokens?: string;
  sample?: boolean;
  temperature?: string;
  topK?: string;
  topP?: string;
  minP?: string;
  repetitionPenalty?: string;
  seed?: string;
  backend?: NodeBackend;
}

function number(flag: string, text: string | undefined, check: (v: number) => boolean, expected: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || !check(value)) throw new CompileError('input', `${flag} expects ${expected}; got '${text}'`);
  return value;
}

/** The sampling options from the flags, over the model's generation_config.json. */
function generationOptions(options: GenerateCommandOptions, defaults: GenerationOptions): GenerationOptions {
  const whole = (v: number) => Number.isInteger(v) && v >= 0;
  const sampled = options.sample || options.temperature !== undefined || options.topK !== undefined || options.topP !== undefined || options.minP !== undefined;
  const set = <T>(key: keyof GenerationOptions, value: T | undefined) => (value === undefined ? {} : { [key]: value });
  return {
    ...defaults,
    ...(sampled ? { doSample: true } : {}),
    ...set('maxNewTokens', number('--max-new-tokens', options.maxNewTokens, (v) => whole(v) && v >= 1, 'a whole number from 1')),
    ...set('temperature', number('--temperature', options.temperature, (v) => v >= 0, 'a number >= 0')),
    ...set('topK', number('--top-k', options.topK, whole, 'a whole number (0 disables)')),
    ...set('topP', number('--top-p', options.topP, (v) => v >= 0 && v <= 1, 'a number in [0, 1]')),
    ...set('minP', number('--min-p', options.minP, (v) => v >= 0 && v <= 1, 'a number in [0, 1]')),
    ...set('repetitionPenalty', number('--repetition-penalty', options.repetitionPenalty, (v) => v > 0, 'a number > 0')),
    ...set('seed', number('--seed', options.seed, whole, 'a whole number')),
  };
}

/** Times the model's calls: the prefill (prompt) apart from the decode steps. */
function timedModel(model: LanguageModel): LanguageModel & { promptTokens: number; prefillMs: number; decodeMs: number } {
  const timed = {
    maxSequenceLength: model.maxSequenceLength,
    promptTokens: 0,
    prefillMs: 0,
    decodeMs: 0,
    async prefill(tokens: readonly number[]) {
      timed.promptTokens = tokens.length;
      const started = performance.now();
      const logits = await model.prefill(tokens);
      timed.prefillMs += performance.now() - started;
      return logits;
    },
    async decode(token: number, position: number) {
      const started = performance.now();
      const logits = await model.decode(token, position);
      timed.decodeMs += performance.now() - started;
      return logits;
    },
  };
  return timed;
}

export async function generateCommand(file: string, options: GenerateCommandOptions): Promise<void> {
  if (options.prompt === undefined) throw new CompileError('input', '--prompt TEXT is required');
  const { tokenizer, defaults } = await languageModelText(file, options.tokenizer);
  const bytes = await languageModelPlan(file, options.weights, options);
  const generation = generationOptions(options, defaults);
  const gpu = await requestNodeDevice({ backend: options.backend });
  let session: Session | undefined;
  try {
    session = await loadPlan(bytes, gpu.device);
    if (options.weights) {
      const report = session.loadWeights(readWeightsFiles(options.weights));
      console.error(`${options.weights}: loaded ${report.loaded.length} parameter(s)`);
    }
    let lm: LanguageModel, vocabSize: number;
    try {
      // a plan of several slots generates in its first
      const plan = decodesBatches(session) ? planBatchedLanguageModel(session) : planLanguageModel(session);
      [lm, vocabSize] = ['decodeBatch' in plan ? slotLanguageModel(plan) : plan, plan.vocabSize];
    } catch (error) {
      if (isTextError(error)) throw new CompileError('input', `${file}: ${error.message}`);
      throw error;
    }
    if (vocabSize < tokenizer.vocabSize) {
      throw new CompileError('input', `${file}: the plan's vocabulary (${vocabSize}) is smaller than the tokenizer's (${tokenizer.vocabSize}): not this tokenizer's model`);
    }
    const model = timedModel(lm);
    const prompt = options.chat ? [{ role: 'user' as const, content: options.prompt }] : options.prompt;
    let count = 0;
    let finish: string | null = null;
    for await (const step of generate(model, prompt, { ...generation, tokenizer })) {
      process.stdout.write(step.text);
      count++;
      finish = step.finishReason;
    }
    process.stdout.write('\n');
    const decoded = Math.max(count - 1, 0);
    const rate = decoded > 0 ? ((decoded * 1000) / model.decodeMs).toFixed(1) : '-';
    console.error(
      `mnc generate: ${model.promptTokens} prompt tokens, prefill ${model.prefillMs.toFixed(1)} ms; ${count} tokens generated (${finish ?? 'length'}), ` +
        `decode ${model.decodeMs.toFixed(1)} ms: ${rate} tokens/s (on ${gpu.backend})`,
    );
  } catch (error) {
    if (isTextError(error)) throw new CompileError('input', error.message);
    throw error;
  } finally {
    session?.destroy();
    await gpu.destroy();
  }
}
