// What rebuilding a tokenizer from GGUF metadata costs (runtime/text/gguf-tokenizer.ts): Qwen3's
// tokenizer.json (151643 tokens + 26 added, 151387 merges; fixtures/tokenizers) written as
// tokenizer.ggml.* metadata the way llama.cpp's converter writes it, then per run: the metadata
// parsed by the GGUF reader, the tokenizer rebuilt and loaded, against loading tokenizer.json
// itself. A CPU figure (no GPU involved):  npx tsx bench/gguf-tokenizer.ts [runs]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseGguf } from '../runtime/gguf';
import { loadGgufTokenizer, loadTokenizer } from '../runtime/text';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { encodeGguf } from '../test/gguf-writer';
import { tokenizerMetadata } from '../test/gguf-vocab';

const runs = Number(process.argv[2] ?? 5);
const dir = ensureTokenizerFixtures().qwen3!;
const json = readFileSync(join(dir, 'tokenizer.json'), 'utf8');
const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const bytes = encodeGguf({ metadata: tokenizerMetadata({ tokenizer: JSON.parse(json), config, model: 'gpt2', pre: 'qwen2', vocabSize: 151936 }), tensors: [] });
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
const parse: number[] = [];
const rebuild: number[] = [];
const original: number[] = [];
for (let k = 0; k < runs; k++) {
  let t = performance.now();
  const file = parseGguf(bytes, 'qwen3.gguf');
  parse.push(performance.now() - t);
  t = performance.now();
  loadGgufTokenizer(file);
  rebuild.push(performance.now() - t);
  t = performance.now();
  loadTokenizer({ tokenizer: json, config });
  original.push(performance.now() - t);
}
console.log(`Qwen3 tokenizer, ${(bytes.length / 2 ** 20).toFixed(1)} MiB of GGUF metadata, median of ${runs} runs:`);
console.log(`  GGUF header parse ${median(parse).toFixed(0)} ms, rebuild + load ${median(rebuild).toFixed(0)} ms; tokenizer.json load ${median(original).toFixed(0)} ms`);
