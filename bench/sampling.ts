// Host sampling cost per token (runtime/text/sampling.ts) over a Qwen-sized vocabulary
// (151936 logits), for each processor setting generate() may run: prints ms/token for two
// kinds of logits: `flat` (uniform over a 20-wide range, near the worst case for top-p) and
// `peaked` (normal with sd 3 and a few tokens 20 above: closer to a language model's).
// A CPU figure (no GPU involved):  npx tsx bench/sampling.ts [vocab]
import { nextTokenDistribution, sampleFromDistribution, uniform, type SamplingConfig } from '../runtime/text';

const vocab = Number(process.argv[2] ?? 151936);
const flat = Float32Array.from({ length: vocab }, (_, i) => (uniform(1n, i) - 0.5) * 20 + (i % 997 === 0 ? 8 : 0));
// Box-Muller from two draws per token
const normal = (i: number) => Math.sqrt(-2 * Math.log(1 - uniform(2n, 2 * i))) * Math.cos(2 * Math.PI * uniform(2n, 2 * i + 1));
const peaked = Float32Array.from({ length: vocab }, (_, i) => 3 * normal(i) + (i % 30011 === 0 ? 20 : 0));
const seen = Array.from({ length: 256 }, (_, i) => (i * 7919) % vocab); // a 256-token context

const base: SamplingConfig = { doSample: true, temperature: 0.7, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 };
const settings: [string, SamplingConfig][] = [
  ['greedy', { ...base, doSample: false }],
  ['greedy, repetition penalty 1.1', { ...base, doSample: false, repetitionPenalty: 1.1 }],
  ['temperature only', base],
  ['top-k 50 (transformers default)', { ...base, topK: 50 }],
  ['top-k 50, top-p 0.9, penalty 1.1', { ...base, topK: 50, topP: 0.9, repetitionPenalty: 1.1 }],
  ['top-p 0.9', { ...base, topP: 0.9 }],
  ['min-p 0.05', { ...base, minP: 0.05 }],
  ['top-p 0.95, min-p 0.05', { ...base, topP: 0.95, minP: 0.05 }],
];
function msPerToken(logits: Float32Array, config: SamplingConfig): string {
  for (let i = 0; i < 5; i++) sampleFromDistribution(nextTokenDistribution(logits, seen, config), 0.5);
  const n = 40;
  const start = performance.now();
  for (let i = 0; i < n; i++) sampleFromDistribution(nextTokenDistribution(logits, seen, config), uniform(3n, i));
  return ((performance.now() - start) / n).toFixed(2).padStart(6);
}

console.log(`vocabulary ${vocab}, ${seen.length} seen tokens; ms/token`);
console.log(`${''.padEnd(36)}   flat peaked`);
for (const [name, config] of settings) console.log(`${name.padEnd(36)} ${msPerToken(flat, config)} ${msPerToken(peaked, config)}`);
