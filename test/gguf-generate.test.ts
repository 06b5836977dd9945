// A GGUF file alone, end to end: the toy Llama of fixtures/models/llama-tiny.ts with seeded weights
// written as a GGUF file (as llama.cpp's converter lays it out: GGUF tensor names, Q/K rows
// permuted) carrying Mistral-7B's real tokenizer as tokenizer.ggml.* metadata (test/gguf-vocab.ts).
// `mnc generate model.gguf` and `mnc serve model.gguf` run it with no --tokenizer, and
// `--weights model.gguf` fills a plan compiled from the builder; each greedy continuation is
// checked against the float64 reference's (test/llama-reference.ts) decoded by the original
// tokenizer.json. A quantized variant checks the GGUF weights loader against the CPU dequantizer.
// The files are made in a temp dir (the embedding alone is 8 MB in f32), not committed.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { LLAMA_TINY_CONFIG } from '../fixtures/models/llama-tiny';
import { llamaShape } from '../models/llama';
import { dequantize, ggmlType, typeBytes, type SupportedTypeName } from '../runtime/ggml-types';
import { parseGguf, tensorBytes } from '../runtime/gguf';
import { ggufTensorName, ggufWeights, loadPlan, matchWeights, readBundle, unpermuteRopeRows } from '../runtime/index';
import type { GgufMetadataEntry } from '../runtime/gguf';
import { ChatTemplate, type Tokenizer } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { cliRunner, diagnostics } from './cli-runner';
import { expectClose } from './close';
import { encodeGguf, meta, type GgufWriterTensor } from './gguf-writer';
import { tokenizerMetadata } from './gguf-vocab';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { randomCheckpoint, referenceLogits, type Weights } from './llama-reference';

const root = fileURLToPath(new URL('..', import.meta.url));
const mnc = cliRunner(join(root, 'dist', 'mnc.mjs'), root);
const s = llamaShape(LLAMA_TINY_CONFIG);
const weights = randomCheckpoint(s, 3);
const PROMPT = 'The quick brown fox jumps over the lazy dog';
const NEW_TOKENS = 5;
/** Mistral-Instruct's turn format, carried as tokenizer.chat_template (Mistral-7B's base tokenizer has none) */
const CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

let dir: string;
let tokenizerDir: string;
let tokenizer: Tokenizer;
let gguf: string;
let plan: string;
let expectedText: string;

/** llama.cpp's converter's permutation of Q/K rows (HF row h·d + j·d/2 + i → GGUF row h·d + 2i + j). */
function permuteRows(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const d = rows / heads;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < d / 2; i++)
      for (let j = 0; j < 2; j++) out.set(values.subarray((h * d + j * (d / 2) + i) * cols, (h * d + j * (d / 2) + i + 1) * cols), (h * d + 2 * i + j) * cols);
  return out;
}

/** The checkpoint as a GGUF file, each tensor of the type `typeOf` gives it. */
function ggufFile(w: Weights, typeOf: (hfName: string) => SupportedTypeName, drop: string[] = [], arch = 'llama'): Uint8Array {
  const tokenizerJson = JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(join(tokenizerDir, 'tokenizer_config.json'), 'utf8'));
  const metadata: [string, GgufMetadataEntry][] = [
    ['general.architecture', meta.str(arch)],
    ['general.name', meta.str('llama-tiny-gguf')],
    [`${arch}.context_length`, meta.u32(24)],
    [`${arch}.embedding_length`, meta.u32(s.hidden)],
    [`${arch}.block_count`, meta.u32(s.layers)],
    [`${arch}.feed_forward_length`, meta.u32(LLAMA_TINY_CONFIG.intermediate_size)],
    [`${arch}.attention.head_count`, meta.u32(s.heads)],
    [`${arch}.attention.head_count_kv`, meta.u32(s.kvHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, meta.f32(1e-5)],
    [`${arch}.rope.freq_base`, meta.f32(10000)],
    [`${arch}.vocab_size`, meta.u32(s.vocab)],
    ...tokenizerMetadata({ tokenizer: tokenizerJson, config: { ...config, chat_template: CHAT_TEMPLATE }, model: 'llama' }),
  ];
  const tensors: GgufWriterTensor[] = [];
  for (const [hf, { shape, data }] of w) {
    const name = ggufTensorName(hf)!;
    if (drop.includes(name)) continue;
    let values: Float32Array = Float32Array.from(data);
    // the converter permutes llama's Q and K rows, not qwen2's (NEOX-style RoPE, as HF's)
    if (arch === 'llama' && name.includes('.attn_q.')) values = permuteRows(values, shape[0], s.heads);
    if (arch === 'llama' && name.includes('.attn_k.')) values = permuteRows(values, shape[0], s.kvHeads);
    const type = typeOf(hf);
    tensors.push({ name, type, ne: [...shape].reverse(), data: quantize(type, values) });
  }
  return encodeGguf({ metadata, tensors });
}

beforeAll(async () => {
  tokenizerDir = ensureTokenizerFixtures()['mistral-7b'];
  tokenizer = await loadTokenizerDirectory(tokenizerDir);
  execFileSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'pipe' });
  dir = mkdtempSync(join(tmpdir(), 'mnc-gguf-'));
  gguf = join(dir, 'model.gguf');
  writeFileSync(gguf, ggufFile(weights, () => 'F32'));
  plan = join(dir, 'tiny.mnplan');
  const compiled = mnc('compile', 'fixtures/models/llama-tiny.ts', '--no-weights', '-o', plan);
  expect(compiled.status, diagnostics(compiled).join('\n')).toBe(0);

  // the reference's greedy continuation, each step clear of a near tie (so f32 picks the same)
  const ids = tokenizer.encode(PROMPT);
  const promptIds = [...ids];
  for (let n = 0; n < NEW_TOKENS; n++) {
    const logits = referenceLogits(s, weights, ids);
    const last = Array.from(logits.subarray((ids.length - 1) * s.vocab));
    const order = last.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]);
    expect(order[0][0] - order[1][0], `margin of the reference's step ${n}`).toBeGreaterThan(1e-3);
    ids.push(order[0][1]);
  }
  const text = (t: number[]) => tokenizer.decode(t, { skipSpecialTokens: true });
  expectedText = text(ids).slice(text(promptIds).length);
}, 600_000);

afterAll(async () => {
  await releaseSharedDevice();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('mnc generate model.gguf: compiled on the spot, its own tokenizer, the reference continuation', () => {
  const run = mnc('generate', gguf, '--prompt', PROMPT, '--max-new-tokens', String(NEW_TOKENS), '--max-sequence', '20', '--target', 'generic');
  expect(run.status, diagnostics(run).join('\n')).toBe(0);
  expect(run.stdout).toBe(`${expectedText}\n`);
  expect(diagnostics(run).join('\n')).toMatch(new RegExp(`^mnc generate: ${tokenizer.encode(PROMPT).length} prompt tokens`, 'm'));
}, 600_000);

test('mnc serve model.gguf answers a completion and a chat with the file alone', async () => {
  const child = spawn(process.execPath, [join(root, 'dist', 'mnc.mjs'), 'serve', gguf, '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  try {
    const started = Date.now();
    while (!/ready: model/.test(output) && child.exitCode === null && Date.now() - started < 300_000) await new Promise((r) => setTimeout(r, 100));
    const base = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    expect(/ready: model 'llama_tiny_gguf'/.test(output) && base, output).toBeTruthy();
    const response = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama_tiny_gguf', prompt: PROMPT, max_tokens: NEW_TOKENS, temperature: 0 }),
    });
    const body = (await response.json()) as { choices: { text: string }[]; usage: { prompt_tokens: number } };
    expect(response.status, JSON.stringify(body)).toBe(200);
    expect(body.choices[0].text).toBe(expectedText);
    expect(body.usage.prompt_tokens).toBe(tokenizer.encode(PROMPT).length);

    // chat through the file's own chat template: the prompt is the template's text, tokenized without adding <s> again
    // (short: the toy's sequence is 24 tokens)
    const messages = [{ role: 'user', content: 'Ça va?' }];
    const rendered = new ChatTemplate(CHAT_TEMPLATE, { bos_token: '<s>', eos_token: '</s>' }).render(messages, { addGenerationPrompt: true });
    const chat = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama_tiny_gguf', messages, max_tokens: 2, temperature: 0 }),
    });
    const answer = (await chat.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    expect(chat.status, JSON.stringify(answer)).toBe(200);
    expect(answer.usage.prompt_tokens).toBe(tokenizer.encode(rendered, { addSpecialTokens: false }).length);
    expect(answer.usage.completion_tokens).toBe(2);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
  }
}, 600_000);

test('mnc generate plan --weights model.gguf fills the builder plan from the GGUF tensors', () => {
  const run = mnc('generate', plan, '--weights', gguf, '--tokenizer', tokenizerDir, '--prompt', PROMPT, '--max-new-tokens', String(NEW_TOKENS));
  expect(run.status, diagnostics(run).join('\n')).toBe(0);
  expect(run.stdout).toBe(`${expectedText}\n`);
  expect(diagnostics(run).join('\n')).toContain(`${gguf}: loaded ${weights.size} parameter(s)`);
}, 600_000);

describe('quantized GGUF tensors into f32 parameters', () => {
  // linear weights Q8_0, Q4_0 and Q5_1 (rows of 64 and 128 elements: too short for the K types' 256), the embedding F16, the norms BF16
  const typeOf = (hf: string): SupportedTypeName => (/(q|k|o)_proj|gate_proj/.test(hf) ? 'Q8_0' : /down_proj/.test(hf) ? 'Q5_1' : /proj/.test(hf) ? 'Q4_0' : /embed/.test(hf) ? 'F16' : 'BF16');
  let bytes: Uint8Array;
  beforeAll(() => {
    bytes = ggufFile(weights, typeOf);
  });

  test('each parameter is the CPU dequantizer\'s values of its tensor, Q and K rows put back', async () => {
    const { manifest } = await readBundle(new Uint8Array(readFileSync(plan)));
    const { writes, report } = matchWeights(manifest, [ggufWeights(bytes, 'quant.gguf')]);
    expect(report.loaded).toHaveLength(weights.size);
    const file = parseGguf(bytes, 'quant.gguf');
    for (const { buffer, bytes: written } of writes) {
      const t = file.tensors.get(ggufTensorName(buffer.name)!)!;
      expect(t.type.name).toBe(typeOf(buffer.name));
      let expected = dequantize(t.type, tensorBytes(bytes, t), t.elements, t.name);
      if (t.name.includes('.attn_q.')) expected = unpermuteRopeRows(expected, t.shape[0], s.heads);
      if (t.name.includes('.attn_k.')) expected = unpermuteRopeRows(expected, t.shape[0], s.kvHeads);
      const bytesWritten = written();
      const values = new Float32Array(bytesWritten.buffer, bytesWritten.byteOffset, bytesWritten.byteLength / 4);
      // the same values bit for bit (a loop: toEqual is slow on the 2M-value embedding), and close to the checkpoint they were quantized from
      const original = weights.get(buffer.name)!.data;
      let firstDifference = -1;
      let worst = 0;
      for (let i = 0; i < values.length; i++) {
        if (firstDifference < 0 && !Object.is(values[i], expected[i])) firstDifference = i;
        worst = Math.max(worst, Math.abs(values[i] - original[i]));
      }
      expect([values.length, firstDifference], buffer.name).toEqual([expected.length, -1]);
      expect(worst, buffer.name).toBeLessThan(0.1);
    }
  });

  test('a session loads the GGUF file (ggufWeights) and computes the reference logits of the dequantized weights', async () => {
    const file = parseGguf(bytes, 'quant.gguf');
    const dequantized: Weights = new Map();
    for (const [hf, { shape }] of weights) {
      const t = file.tensors.get(ggufTensorName(hf)!)!;
      let values = dequantize(t.type, tensorBytes(bytes, t), t.elements, t.name);
      if (t.name.includes('.attn_q.')) values = unpermuteRopeRows(values, shape[0], s.heads);
      if (t.name.includes('.attn_k.')) values = unpermuteRopeRows(values, shape[0], s.kvHeads);
      dequantized.set(hf, { shape, data: Float64Array.from(values) });
    }
    const tokens = tokenizer.encode('Hello there').slice(0, 8);
    const expected = referenceLogits(s, dequantized, tokens);
    const session = await loadPlan(new Uint8Array(readFileSync(plan)), (await sharedDevice()).device);
    try {
      expect(session.loadWeights(ggufWeights(bytes, 'quant.gguf')).loaded).toHaveLength(weights.size);
      const prompt = new Int32Array(8);
      prompt.set(tokens);
      const out = await session.run({ prompt, length: Float32Array.of(tokens.length) }, 'prefill');
      expectClose(out.prefill_logits as Float32Array, expected.subarray((tokens.length - 1) * s.vocab, tokens.length * s.vocab), 1e-4, 1e-4, 'prefill_logits');
    } finally {
      session.destroy();
    }
  }, 600_000);

  test('F32 tensors load exactly, rows put back for llama and left as they are for qwen2', async () => {
    const { manifest } = await readBundle(new Uint8Array(readFileSync(plan)));
    for (const arch of ['llama', 'qwen2']) {
      const { writes } = matchWeights(manifest, [ggufWeights(ggufFile(weights, () => 'F32', [], arch), `${arch}.gguf`)]);
      for (const { buffer, bytes: written } of writes) {
        const b = written();
        expect(Buffer.from(b).equals(Buffer.from(Float32Array.from(weights.get(buffer.name)!.data).buffer)), `${arch}: ${buffer.name}`).toBe(true);
      }
    }
  });

  test('a missing tensor, a wrong shape or an unsupported type is an error naming the tensor', async () => {
    const { manifest } = await readBundle(new Uint8Array(readFileSync(plan)));
    const missing = ggufFile(weights, typeOf, ['blk.1.ffn_up.weight']);
    expect(() => matchWeights(manifest, [ggufWeights(missing, 'm.gguf')])).toThrow(/no weights file holds parameter\(s\) "model\.layers\.1\.mlp\.up_proj\.weight" \(the file's "blk\.1\.ffn_up\.weight"\)/);

    const swapped = new Map(weights);
    const up = weights.get('model.layers.0.mlp.up_proj.weight')!;
    swapped.set('model.layers.0.mlp.up_proj.weight', { shape: [...up.shape].reverse(), data: up.data });
    const shaped = ggufFile(swapped, typeOf);
    expect(() => matchWeights(manifest, [ggufWeights(shaped, 's.gguf')])).toThrow(
      /s\.gguf: tensor "model\.layers\.0\.mlp\.up_proj\.weight" \(GGUF tensor "blk\.0\.ffn_up\.weight" \(Q4_0\)\) is \[64, 128\]; plan "llamaTiny" declares \[128, 64\]/,
    );

    const q2k = ggmlType('Q2_K');
    const odd = (arch: string) => encodeGguf({ metadata: [['general.architecture', meta.str(arch)]], tensors: [{ name: 'blk.0.attn_v.weight', type: 'Q2_K', ne: [256, 2], data: new Uint8Array(typeBytes(q2k, 512)) }] });
    expect(() => ggufWeights(odd('qwen2'), 'odd.gguf')).toThrow(/odd\.gguf: GGUF tensor "blk\.0\.attn_v\.weight" \(Q2_K\) is of a type this runtime does not dequantize/);
    // a llama file's Q and K rows cannot be put back without its head count
    expect(() => ggufWeights(odd('llama'), 'odd.gguf')).toThrow(/odd\.gguf: metadata "llama\.attention\.head_count" is missing/);
  });
});

test('the CLI refuses --weights with a GGUF model, GGUF flags with a plan, and a plan without --tokenizer', () => {
  const both = mnc('generate', gguf, '--weights', gguf, '--prompt', 'x');
  expect(both.status).not.toBe(0);
  expect(diagnostics(both).join('\n')).toMatch(/--weights loads a plan's parameters; .*model\.gguf is a GGUF model, which carries its own weights/);
  const planFlags = mnc('generate', plan, '--tokenizer', tokenizerDir, '--max-sequence', '8', '--prompt', 'x');
  expect(planFlags.status).not.toBe(0);
  expect(diagnostics(planFlags).join('\n')).toMatch(/--max-sequence, --decode-batch and --target apply to a GGUF model/);
  const noTokenizer = mnc('generate', plan, '--prompt', 'x');
  expect(noTokenizer.status).not.toBe(0);
  expect(diagnostics(noTokenizer).join('\n')).toMatch(/--tokenizer DIR is required.*a \.gguf model carries its own/);
});
