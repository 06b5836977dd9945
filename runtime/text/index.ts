// The text layer's entry, for Node and browsers: tokenizers, chat templates, sampling and
// generate(). Kept apart from runtime/index.ts so a plan runtime that does no text carries
// neither @huggingface/tokenizers nor @huggingface/jinja. runtime/text/node.ts adds the
// Node helpers that read a model directory.
export { TextError, isTextError, type TextErrorKind } from './errors';
export { loadTokenizer, Tokenizer, type TokenizerFiles, type SpecialToken, type AddedToken, type EncodeOptions, type DecodeOptions } from './tokenizer';
export { loadGgufTokenizer, ggufTokenizerFiles, GGUF_TOKEN_TYPE, GGUF_PRE_TOKENIZERS, type GgufTokenizerFiles } from './gguf-tokenizer';
export { TextStreamDecoder, type StreamDecoderOptions } from './stream';
export { ChatTemplate, type ChatMessage, type ChatTemplateOptions } from './chat-template';
export {
  readGenerationConfig,
  resolveGenerationOptions,
  DEFAULT_SAMPLING,
  DEFAULT_MAX_NEW_TOKENS,
  type GenerationOptions,
  type ResolvedGenerationOptions,
} from './generation-config';
export { nextTokenDistribution, sampleFromDistribution, applyRepetitionPenalty, applyPresenceFrequencyPenalties, argmax, type SamplingConfig, type TokenDistribution } from './sampling';
export { splitMix64, uniform, randomSeed } from './random';
export { generate, Generation, type LanguageModel, type GeneratedToken, type GenerateOptions } from './generate';
export { planLanguageModel, type PlanLanguageModel } from './plan-model';
export { batchFromModels, slotLanguageModel, withinVocabulary, type BatchedLanguageModel, type DecodeRequest } from './batch';
export { planBatchedLanguageModel, decodesBatches, type PlanBatchedLanguageModel } from './plan-batch';
export { BatchScheduler, SchedulerError, type SchedulerErrorKind, type SchedulerLimits, type SchedulerObserver, type ScheduledSequence } from './scheduler';
export { StopStrings } from './stop-strings';
