// `mnc serve`'s server for Node: the OpenAI-compatible HTTP API over a batched language model
// (server.ts), its request and response shapes (openai.ts), access control (access.ts),
// Prometheus metrics (metrics.ts), and a bigram TEST model to run it before a language-model
// plan exists (test-model.ts). Imports nothing from the compiler.
export { ModelServer, type ServedModel, type ServerOptions } from './server';
export { ApiError, parseChatRequest, parseCompletionRequest, type CompletionRequest } from './openai';
export { ApiKeys, RateLimiter, parseKeysFile } from './access';
export { MetricRegistry, Counter, Gauge, Histogram } from './metrics';
export { BigramTestModel, type BigramTestModelOptions } from './test-model';
