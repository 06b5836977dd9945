// A GGUF file compiled as a model (compiler/frontends/gguf/load.ts through models/llama.ts):
// fixtures/gguf/tiny-llama.gguf's plan on the GPU against the independent float64 forward
// (test/llama-reference.ts) fed the file's weights dequantized on the CPU, its Q and K rows
// put back in HF's order here with the permutation test/gguf.test.ts checks against
// llama.cpp's converter; the plan keeps the linear weights packed. Then the refusals, and
// `mnc compile model.gguf` through the built CLI.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { unpermuteRopeRows } from '../compiler/frontends/gguf/config';
import { ggufModel } from '../compiler/frontends/gguf/load';
import { CompileError } from '../compiler/ir/errors';
import { TINY_LLAMA } from '../fixtures/gguf/models';
import { llamaShape } from '../models/llama';
import { dequantize } from '../runtime/ggml-types';
import { parseGguf, tensorBytes, type GgufFile } from '../runtime/gguf';
import { cliRunner, diagnostics } from './cli-runner';
import { expectClose } from './close';
import { encodeGguf, meta } from './gguf-writer';
import { loadPlan, readBundle } from '../runtime/index';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { referenceLogits, type Weights } from './llama-reference';

afterAll(releaseSharedDevice);

const root = new URL('..', import.meta.url).pathname;
const FIXTURE = join(root, 'fixtures/gguf/tiny-llama.gguf');
const bytes = new Uint8Array(readFileSync(FIXTURE));
const file = parseGguf(bytes, 'tiny-llama.gguf');
const TOKENS = Int32Array.from([3, 17, 39, 0, 25, 8, 12, 31]);

/** HF's names for tiny-llama's tensors (one layer), written out rather than taken from the frontend. */
const HF_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'blk.0.attn_norm.weight': 'model.layers.0.input_layernorm.weight',
  'blk.0.attn_q.weight': 'model.layers.0.self_attn.q_proj.weight',
  'blk.0.attn_k.weight': 'model.layers.0.self_attn.k_proj.weight',
  'blk.0.attn_v.weight': 'model.layers.0.self_attn.v_proj.weight',
  'blk.0.attn_output.weight': 'model.layers.0.self_attn.o_proj.weight',
  'blk.0.ffn_norm.weight': 'model.layers.0.post_attention_layernorm.weight',
  'blk.0.ffn_gate.weight': 'model.layers.0.mlp.gate_proj.weight',
  'blk.0.ffn_up.weight': 'model.layers.0.mlp.up_proj.weight',
  'blk.0.ffn_down.weight': 'model.layers.0.mlp.down_proj.weight',
  'output_norm.weight': 'model.norm.weight',
};

/** The file's weights dequantized on the CPU, under HF's names, Q and K rows unpermuted. */
function referenceWeights(): Weights {
  const weights: Weights = new Map();
  for (const t of file.tensors.values()) {
    let values = dequantize(t.type, tensorBytes(bytes, t), t.elements, t.name);
    if (t.name === 'blk.0.attn_q.weight') values = unpermuteRopeRows(values, t.shape[0], TINY_LLAMA.heads);
    if (t.name === 'blk.0.attn_k.weight') values = unpermuteRopeRows(values, t.shape[0], TINY_LLAMA.kvHeads);
    weights.set(HF_NAMES[t.name], { shape: t.shape, data: Float64Array.from(values) });
  }
  return weights;
}

/** The file re-encoded with its metadata and tensors changed by `edit`. */
function variant(edit: (metadata: Map<string, GgufFile['metadata'] extends Map<string, infer E> ? E : never>, tensors: string[]) => void): Uint8Array {
  const metadata = new Map(file.metadata);
  const names = [...file.tensors.keys()];
  edit(metadata, names);
  const tensors = names.map((name) => {
    const t = file.tensors.get(name)!;
    return { name, type: t.type.name, ne: t.ne, data: tensorBytes(bytes, t) };
  });
  return encodeGguf({ metadata, tensors });
}

function refusal(data: Uint8Array, source: string): string {
  try {
    ggufModel(data, source, { forward: 4 });
  } catch (e) {
    expect(e).toBeInstanceOf(CompileError);
    return (e as Error).message;
  }
  throw new Error('not refused');
}

test('tiny-llama.gguf on the GPU gives the float64 reference logits of its dequantized weights', async () => {
  const model = ggufModel(bytes, 'tiny-llama.gguf', { forward: TOKENS.length, maxSequence: TOKENS.length, maxPrompt: 4 });
  expect(Object.keys(model.entries).sort()).toEqual(['decode', 'forward', 'prefill']);
  const { bundle, manifest } = await compileGraph(model.graph, { entries: model.entries });
  // the linear weights stay packed: each buffer as long as the file's tensor, not its f32 values
  for (const [tensor, hf] of Object.entries(HF_NAMES)) {
    const t = file.tensors.get(tensor)!;
    const buffer = manifest.buffers.find((b) => b.name === hf);
    expect(buffer, hf).toBeDefined();
    const linear = /proj\.weight$/.test(hf);
    expect(buffer!.byteLength, hf).toBe(linear ? t.byteLength : t.elements * 4);
  }
  expect(manifest.kernels.some((k) => k.ops.includes('matmulQuantized'))).toBe(true);

  const s = llamaShape({
    architectures: ['LlamaForCausalLM'],
    vocab_size: TINY_LLAMA.vocab,
    hidden_size: TINY_LLAMA.hidden,
    intermediate_size: TINY_LLAMA.ffn,
    num_hidden_layers: TINY_LLAMA.layers,
    num_attention_heads: TINY_LLAMA.heads,
    num_key_value_heads: TINY_LLAMA.kvHeads,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
  });
  const expected = referenceLogits(s, referenceWeights(), TOKENS);
  const row = (t: number) => expected.subarray(t * s.vocab, (t + 1) * s.vocab);
  const session = await loadPlan(bundle, (await sharedDevice()).device);
  try {
    const actual = (await session.run({ tokens: TOKENS }, 'forward')).forward_logits as Float32Array;
    expectClose(actual, expected, 1e-4, 1e-4, 'forward_logits');
    // a 3-token prompt (padded to 4), then decode steps through the KV cache
    const prefill = await session.run({ prompt: Int32Array.from([...TOKENS.subarray(0, 3), 0]), length: Float32Array.of(3) }, 'prefill');
    expectClose(prefill.prefill_logits as Float32Array, row(2), 1e-4, 1e-4, 'prefill_logits');
    for (let p = 3; p < TOKENS.length; p++) {
      const step = await session.run({ token: TOKENS.subarray(p, p + 1), position: Float32Array.of(p) }, 'decode');
      expectClose(step.logits as Float32Array, row(p), 1e-4, 1e-4, `decode logits at position ${p}`);
    }
  } finally {
    session.destroy();
  }
  // this model's attention is near uniform, so the logits barely see the Q/K row order: the
  // plan's packed q and k bytes are checked instead, dequantized against the unpermuted values
  const plan = await readBundle(bundle);
  const reference = referenceWeights();
  for (const [tensor, hf] of [['blk.0.attn_q.weight', 'model.layers.0.self_attn.q_proj.weight'], ['blk.0.attn_k.weight', 'model.layers.0.self_attn.k_proj.weight']]) {
    const t = file.tensors.get(tensor)!;
    const init = manifest.buffers.find((b) => b.name === hf)!.init!;
    const stored = plan.section(init.section).subarray(init.offset, init.offset + init.length);
    expect(Buffer.from(stored).equals(Buffer.from(tensorBytes(bytes, t))), `${hf}: rows moved`).toBe(false);
    expect(Float64Array.from(dequantize(t.type, stored, t.elements, hf)), hf).toEqual(reference.get(hf)!.data);
  }
});

describe('refusals name the file and the key or tensor', () => {
  test('an architecture the builders do not know', () => {
    const data = variant((m) => m.set('general.architecture', meta.str('gpt2')));
    expect(refusal(data, 'gpt2.gguf')).toBe('gpt2.gguf: metadata "general.architecture" is "gpt2"; the model builders know llama, qwen2');
  });

  test('a missing tensor', () => {
    const data = variant((_, names) => names.splice(names.indexOf('blk.0.ffn_up.weight'), 1));
    expect(refusal(data, 'no-up.gguf')).toBe('no-up.gguf: tensor "blk.0.ffn_up.weight" is missing (the model\'s model.layers.0.mlp.up_proj.weight, llama needs it)');
  });

  test('a tensor of the wrong shape', () => {
    const data = variant((m) => m.set('llama.feed_forward_length', meta.u32(32)));
    expect(refusal(data, 'ffn.gguf')).toMatch(/^ffn\.gguf: tensor "blk\.0\.ffn_gate\.weight" is \[64, 32\] \(ne \[32, 64\]\); the model's model\.layers\.0\.mlp\.gate_proj\.weight is \[32, 32\]$/);
  });

  test('a file that is not GGUF', () => {
    expect(refusal(new TextEncoder().encode('GGML nonsense'), 'bad.gguf')).toMatch(/^bad\.gguf: not a GGUF file/);
  });
});

describe('mnc compile model.gguf (built CLI)', () => {
  const cli = join(root, 'dist', 'mnc.mjs');
  const mnc = cliRunner(cli, root);
  const dir = mkdtempSync(join(tmpdir(), 'mnc-gguf-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('compiles prefill and decode with the weights packed', () => {
    const plan = join(dir, 'tiny.mnplan');
    const r = mnc('compile', 'fixtures/gguf/tiny-llama.gguf', '--max-sequence', '16', '-o', plan);
    expect(diagnostics(r)).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/model 'tiny-llama \(random weights\)'/);
    const inspect = mnc('inspect', plan, '--json');
    const manifest = JSON.parse(inspect.stdout) as { entryPoints: Record<string, unknown> };
    expect(Object.keys(manifest.entryPoints).sort()).toEqual(['decode', 'prefill']);
  });

  test('--decode-batch: a cache of several sequences and a decode_batch entry; refused for other models', () => {
    const plan = join(dir, 'tiny-batch.mnplan');
    const r = mnc('compile', 'fixtures/gguf/tiny-llama.gguf', '--max-sequence', '16', '--decode-batch', '3', '-o', plan);
    expect(diagnostics(r)).toEqual([]);
    const manifest = JSON.parse(mnc('inspect', plan, '--json').stdout) as { entryPoints: Record<string, { inputs: { name: string; shape: number[] }[] }> };
    expect(Object.keys(manifest.entryPoints).sort()).toEqual(['decode_batch', 'prefill']);
    expect(manifest.entryPoints.decode_batch.inputs.map((i) => `${i.name} [${i.shape}]`).sort()).toEqual(['positions [3]', 'tokens [3]']);
    const refused = mnc('compile', 'fixtures/models/llama-tiny.ts', '--decode-batch', '3', '-o', join(dir, 'no.mnplan'));
    expect(refused.status).toBe(1);
    expect(diagnostics(refused).join('\n')).toMatch(/--decode-batch applies to GGUF/);
  });

  test('a missing tensor is an error naming the file and the tensor', () => {
    const bad = join(dir, 'no-up.gguf');
    const data = variant((_, names) => names.splice(names.indexOf('blk.0.ffn_up.weight'), 1));
    writeFileSync(bad, data);
    const r = mnc('compile', bad, '-o', join(dir, 'bad.mnplan'));
    expect(r.status).toBe(1);
    expect(diagnostics(r)).toEqual([`error: ${bad}: tensor "blk.0.ffn_up.weight" is missing (the model's model.layers.0.mlp.up_proj.weight, llama needs it)`]);
    expect(existsSync(join(dir, 'bad.mnplan'))).toBe(false);
  });
});
