// Weights held as f16 or bf16 (CompileOptions.weightStorage, llamaModel's weightStorage,
// `mnc compile --weight-storage`): which parameters the pass stores, and a toy Llama's logits
// on the GPU with a safetensors checkpoint loaded by name, against the independent float64
// forward of test/llama-reference.ts twice: with the checkpoint's matrices rounded to the
// storage (the plan must match it to f32 accuracy: storage loses nothing beyond the rounding),
// and with the checkpoint as it is (the rounding's own effect, bounded below).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { ggufModel } from '../compiler/frontends/gguf/load';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { Graph } from '../compiler/ir/graph';
import { STORAGE_ROUNDOFF, storeWeights } from '../compiler/ir/weight-storage';
import { LLAMA_TINY_CONFIG } from '../fixtures/models/llama-tiny';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../runtime/f16';
import { encodeSafetensors, ggufTensorName, loadPlan, readBundle, tensorAs16Bit, type SafeTensor } from '../runtime/index';
import { cliRunner, diagnostics } from './cli-runner';
import { expectClose } from './close';
import { encodeGguf, meta } from './gguf-writer';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { asSafetensors, randomCheckpoint, referenceLogits, type Weights } from './llama-reference';
import { LLAMA_TRAIN_CONFIG } from '../fixtures/models/llama-train-tiny';

afterAll(releaseSharedDevice);

/** SmolLM2's shape at toy size: tied head (the embedding is also the head's weight), GQA 4:2. */
const CONFIG: HfLlamaConfig = LLAMA_TRAIN_CONFIG;
const OPTIONS: LlamaOptions = { forward: 8, maxSequence: 12, maxPrompt: 8 };
const SEQUENCE = Int32Array.from([17, 203, 5, 99, 250, 1, 42, 131, 77, 8, 299, 60]);
const s = llamaShape(CONFIG);
const weights = randomCheckpoint(s, 11);
/** the checkpoint's matrices: what the storage holds (norms stay f32) */
const MATRICES = [...weights].filter(([, w]) => w.shape.length === 2).map(([name]) => name);

function graphOf(config: HfLlamaConfig, options: LlamaOptions): Graph {
  const g = new Graph('llama_storage');
  for (const [name, t] of Object.entries(llama(g, config, options))) g.output(name, t);
  return g;
}

const ROUND = {
  f16: (v: number) => f16BitsToF32(f32ToF16Bits(v)),
  bf16: (v: number) => bf16BitsToF32(f32ToBf16Bits(v)),
};

/** The checkpoint with its matrices rounded to `storage`, as the plan holds them. */
function rounded(storage: 'f16' | 'bf16'): Weights {
  return new Map([...weights].map(([name, w]) => [name, w.shape.length === 2 ? { shape: w.shape, data: w.data.map(ROUND[storage]) } : w]));
}

test('the pass holds every matrix a product or gather reads as bf16; norms and biases stay f32; products read them in place', () => {
  const { graph, stored, f32Bytes, storedBytes } = storeWeights(graphOf(CONFIG, OPTIONS), 'bf16');
  expect([...stored].sort()).toEqual([...MATRICES].sort());
  expect(storedBytes * 2).toBe(f32Bytes);
  const dtypeOf = (name: string) => graph.nodes.find((n) => n.op === 'parameter' && n.name === name)?.type.dtype;
  expect(dtypeOf('model.embed_tokens.weight')).toBe('bf16');
  expect(dtypeOf('model.layers.1.mlp.down_proj.weight')).toBe('bf16');
  expect(dtypeOf('model.layers.0.input_layernorm.weight')).toBe('f32');
  // no f32 product reads a parameter any more, and no transpose of one is left
  const parameterIds = new Set(graph.nodes.filter((n) => n.op === 'parameter').map((n) => n.id));
  expect(graph.nodes.filter((n) => (n.op === 'matmul' || n.op === 'transpose') && n.inputs.some((i) => parameterIds.has(i)))).toEqual([]);
  // the tied head: one bf16 matrix read by the gathers and by the head's products
  const embed = graph.nodes.find((n) => n.name === 'model.embed_tokens.weight')!;
  const readers = new Set(graph.nodes.filter((n) => n.inputs.includes(embed.id)).map((n) => n.op));
  expect([...readers].sort()).toEqual(['embedding', 'matmulQuantized']);
  // Qwen2's biases stay f32, its untied head is held too
  const qwen = storeWeights(graphOf({ ...CONFIG, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: false }, { forward: 4 }), 'f16');
  expect(qwen.stored).toContain('lm_head.weight');
  expect(qwen.stored.some((n) => n.endsWith('.bias'))).toBe(false);
});

test('checkpoint tensors into 16-bit parameters: rounded to nearest even, the same type kept as it is', () => {
  const bits = (bytes: Uint8Array) => [...new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))];
  const f32 = (values: number[]): SafeTensor => ({ dtype: 'F32', shape: [values.length], data: new Uint8Array(Float32Array.from(values).buffer) });
  const halves = (dtype: 'F16' | 'BF16', values: number[]): SafeTensor => ({ dtype, shape: [values.length], data: new Uint8Array(Uint16Array.from(values).buffer) });
  // 1 + 2^-8 is a tie (to even: 1); 1 + 3·2^-9 rounds up to 1 + 2^-7
  expect(bits(tensorAs16Bit(f32([1, 1 + 2 ** -8, 1 + 3 * 2 ** -9, -2.5]), 'bf16', 'w'))).toEqual([0x3f80, 0x3f80, 0x3f81, 0xc020]);
  expect(bits(tensorAs16Bit(f32([65504, 1e-8, -2.5]), 'f16', 'w'))).toEqual([0x7bff, 0x0000, 0xc100]);
  // across the 16-bit types: F16 1.0 is BF16 0x3f80; BF16 1 + 2^-7 is F16 0x3c08
  expect(bits(tensorAs16Bit(halves('F16', [0x3c00]), 'bf16', 'w'))).toEqual([0x3f80]);
  expect(bits(tensorAs16Bit(halves('BF16', [0x3f81]), 'f16', 'w'))).toEqual([0x3c08]);
  const same = halves('BF16', [0x1234, 0xfedc]);
  expect(tensorAs16Bit(same, 'bf16', 'w')).toBe(same.data);
});

test('a training plan refuses a 16-bit storage, naming the option', async () => {
  const g = graphOf(CONFIG, { forward: 4, train: true });
  await expect(compileGraph(g, { weightStorage: 'bf16', training: { loss: 'loss', optimizer: { kind: 'adamw', lr: 1e-3 } } })).rejects.toThrow(
    /weight storage bf16 is for inference plans/,
  );
});

describe.each([
  // unit roundoff u: bf16 keeps 8 significant bits (u = 2^-8 relative), f16 11 (u = 2^-11)
  ['bf16', STORAGE_ROUNDOFF.bf16],
  ['f16', STORAGE_ROUNDOFF.f16],
] as const)('%s storage', (storage, u) => {
  const exact = referenceLogits(s, weights, SEQUENCE);
  const expected = referenceLogits(s, rounded(storage), SEQUENCE);
  const row = (logits: Float64Array, t: number) => logits.subarray(t * s.vocab, (t + 1) * s.vocab);

  test('loads an f32 checkpoint by name, rounding it: forward, prefill and decode match the reference of the rounded weights', async () => {
    const plan = await compileGraph(graphOf(CONFIG, OPTIONS), { weights: 'none', entries: llamaEntries(OPTIONS), weightStorage: storage });
    expect(plan.storedWeights?.stored.length).toBe(MATRICES.length);
    const parameters = plan.manifest.buffers.filter((b) => b.role === 'parameter');
    expect(parameters.filter((b) => b.dtype === storage).map((b) => b.name).sort()).toEqual([...MATRICES].sort());
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const report = session.loadWeights(encodeSafetensors(asSafetensors(weights)));
      expect(report.loaded.length).toBe(weights.size);
      const forward = (await session.run({ tokens: SEQUENCE.subarray(0, 8) }, 'forward')).forward_logits;
      // the same f32 accumulation tolerance as the f32 plan's test (test/llama.test.ts)
      expectClose(forward, expected.subarray(0, 8 * s.vocab), 2e-4, 2e-4, `${storage} forward_logits`);
      // the rounding's own effect, against the unrounded checkpoint's logits: each weight moves
      // by at most u of itself, independently, so the errors of a product's K terms partly cancel
      // and the logits move by a small multiple of u times their size (first order in u: f16's
      // error is bf16's over 8). Measured here (logits up to 25.5): bf16 0.067, f16 0.0086 max
      // abs, both 0.68·u·max|logit|; asserted: at most 2·u·max|logit|, and not zero.
      const size = Math.max(...exact.subarray(0, 8 * s.vocab).map(Math.abs));
      let worst = 0;
      for (let i = 0; i < 8 * s.vocab; i++) worst = Math.max(worst, Math.abs(forward[i] - exact[i]));
      expect(worst).toBeGreaterThan(0);
      expect(worst, `max |logit error| ${worst} of logits up to ${size}`).toBeLessThanOrEqual(2 * u * size);

      const prompt = new Int32Array(8);
      prompt.set(SEQUENCE.subarray(0, 5));
      const prefill = await session.run({ prompt, length: Float32Array.of(5) }, 'prefill');
      expectClose(prefill.prefill_logits, row(expected, 4), 2e-4, 2e-4, `${storage} prefill_logits`);
      for (let p = 5; p < SEQUENCE.length; p++) {
        const step = await session.run({ token: SEQUENCE.subarray(p, p + 1), position: Float32Array.of(p) }, 'decode');
        expectClose(step.logits, row(expected, p), 2e-4, 2e-4, `${storage} decode logits at position ${p}`);
      }
    } finally {
      session.destroy();
    }
  });

  test(`a ${storage.toUpperCase()} checkpoint loads as it is: the plan agrees with the f32 plan given the same file`, async () => {
    const file = new Map<string, SafeTensor>(
      [...weights].map(([name, w]) => {
        const bits = Uint16Array.from(w.data, (v) => (storage === 'f16' ? f32ToF16Bits(v) : f32ToBf16Bits(v)));
        return [name, { dtype: storage === 'f16' ? 'F16' : 'BF16', shape: w.shape, data: new Uint8Array(bits.buffer) }];
      }),
    );
    const bytes = encodeSafetensors(file);
    const options = { weights: 'none', entries: { forward: ['forward_logits'] } } as const;
    const [wide, narrow] = await Promise.all([compileGraph(graphOf(CONFIG, { forward: 8 }), options), compileGraph(graphOf(CONFIG, { forward: 8 }), { ...options, weightStorage: storage })]);
    const device = (await sharedDevice()).device;
    const logits = async (bundle: Uint8Array) => {
      const session = await loadPlan(bundle, device);
      try {
        session.loadWeights(bytes);
        return (await session.run({ tokens: SEQUENCE.subarray(0, 8) }, 'forward')).forward_logits;
      } finally {
        session.destroy();
      }
    };
    expectClose(await logits(narrow.bundle), await logits(wide.bundle), 2e-4, 2e-4, `${storage} plan against the f32 plan`);
  });
});

test('plan buffers report their storage; readBundle sees bf16 parameters of half the bytes', async () => {
  const plan = await compileGraph(graphOf(CONFIG, { forward: 4 }), { weightStorage: 'bf16', seed: 3 });
  const { manifest } = await readBundle(plan.bundle);
  const embed = manifest.buffers.find((b) => b.name === 'model.embed_tokens.weight')!;
  expect(embed.dtype).toBe('bf16');
  expect(embed.byteLength).toBe(s.vocab * s.hidden * 2);
  // embedded initial values are the seeded f32 draws rounded: the CPU reference reads them back
  expect(plan.parameters.get('model.embed_tokens.weight')!.every((v) => ROUND.bf16(v) === v)).toBe(true);
});

describe('mnc compile --weight-storage (built CLI)', () => {
  const root = new URL('..', import.meta.url).pathname;
  const mnc = cliRunner(join(root, 'dist', 'mnc.mjs'), root);
  const dir = mkdtempSync(join(tmpdir(), 'mnc-storage-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('holds the toy Llama’s matrices as bf16 and says so; mnc run --weights rounds a checkpoint into it; a training plan is refused', () => {
    const plan = join(dir, 'tiny.mnplan');
    const r = mnc('compile', 'fixtures/models/llama-tiny.ts', '--no-weights', '--weight-storage', 'bf16', '--target', 'generic', '-o', plan);
    expect(diagnostics(r)).toEqual([]);
    expect(r.stdout).toMatch(/weights held as bf16: 15 parameter\(s\), 8\.\d+ MiB in f32 → 4\.\d+ MiB/);
    const manifest = JSON.parse(mnc('inspect', plan, '--json').stdout) as { buffers: { name: string; role: string; dtype: string }[] };
    expect(manifest.buffers.find((b) => b.name === 'model.layers.1.self_attn.q_proj.weight')?.dtype).toBe('bf16');

    // the same prefill through the f32 plan and the bf16 one, the same F32 checkpoint loaded by name
    const tiny = llamaShape(LLAMA_TINY_CONFIG);
    const checkpoint = join(dir, 'model.safetensors');
    writeFileSync(checkpoint, encodeSafetensors(asSafetensors(randomCheckpoint(tiny, 5))));
    const wide = join(dir, 'tiny-f32.mnplan');
    expect(diagnostics(mnc('compile', 'fixtures/models/llama-tiny.ts', '--no-weights', '--target', 'generic', '-o', wide))).toEqual([]);
    writeFileSync(join(dir, 'inputs.json'), JSON.stringify({ prompt: [1, 415, 2936, 9060, 285, 1142, 0, 0], length: [6] }));
    const prefill = (file: string, out: string) => {
      const run = mnc('run', file, '--weights', checkpoint, '--inputs', join(dir, 'inputs.json'), '--out', join(dir, out));
      expect(diagnostics(run)).toEqual([]);
      expect(run.stdout).toContain('loaded 20 parameter(s)');
      return (JSON.parse(readFileSync(join(dir, out), 'utf8')) as { prefill_logits: number[][] }).prefill_logits.flat();
    };
    const [narrow, exact] = [prefill(plan, 'bf16.json'), prefill(wide, 'f32.json')];
    const size = Math.max(...exact.map(Math.abs));
    const worst = Math.max(...exact.map((v, i) => Math.abs(narrow[i] - v)));
    expect(worst).toBeGreaterThan(0);
    expect(worst, `max |logit error| ${worst} of logits up to ${size}`).toBeLessThanOrEqual(2 * STORAGE_ROUNDOFF.bf16 * size);
    const refused = mnc('compile', 'fixtures/models/llama-train-tiny.ts', '--no-weights', '--weight-storage', 'bf16', '-o', join(dir, 'train.mnplan'));
    expect(refused.status).toBe(1);
    expect(diagnostics(refused).join('\n')).toMatch(/weight storage bf16 is for inference plans/);
  });
});

test('an F16 GGUF file keeps its token embedding f16 too: gathered and, tied, the head read in-kernel', async () => {
  // llama.cpp's converter permutes llama's Q and K rows: GGUF row h·d + 2i + j holds HF row h·d + j·d/2 + i
  const permuted = (values: Float32Array, rows: number, heads: number) => {
    const cols = values.length / rows;
    const d = rows / heads;
    const out = new Float32Array(values.length);
    for (let h = 0; h < heads; h++) for (let i = 0; i < d / 2; i++) for (let j = 0; j < 2; j++) out.set(values.subarray((h * d + j * (d / 2) + i) * cols, (h * d + j * (d / 2) + i + 1) * cols), (h * d + 2 * i + j) * cols);
    return out;
  };
  const tensors = [...weights].map(([hf, w]) => {
    const name = ggufTensorName(hf)!;
    let values = Float32Array.from(w.data);
    if (name.includes('.attn_q.')) values = permuted(values, w.shape[0], s.heads);
    if (name.includes('.attn_k.')) values = permuted(values, w.shape[0], s.kvHeads);
    const type = w.shape.length === 2 ? ('F16' as const) : ('F32' as const);
    return { name, type, ne: [...w.shape].reverse(), data: quantize(type, values) };
  });
  const bytes = encodeGguf({
    metadata: [
      ['general.architecture', meta.str('llama')],
      ['llama.context_length', meta.u32(64)],
      ['llama.embedding_length', meta.u32(s.hidden)],
      ['llama.block_count', meta.u32(s.layers)],
      ['llama.feed_forward_length', meta.u32(s.ffn)],
      ['llama.attention.head_count', meta.u32(s.heads)],
      ['llama.attention.head_count_kv', meta.u32(s.kvHeads)],
      ['llama.attention.layer_norm_rms_epsilon', meta.f32(s.eps)],
      ['llama.rope.freq_base', meta.f32(s.ropeTheta)],
      ['llama.vocab_size', meta.u32(s.vocab)],
    ],
    tensors,
  });
  const model = ggufModel(bytes, 'toy-f16.gguf', { forward: 8 });
  const plan = await compileGraph(model.graph, { entries: model.entries });
  const embed = plan.manifest.buffers.find((b) => b.name === 'model.embed_tokens.weight')!;
  expect([embed.dtype, embed.byteLength]).toEqual(['f16', s.vocab * s.hidden * 2]);
  const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
  try {
    const logits = (await session.run({ tokens: SEQUENCE.subarray(0, 8) }, 'forward')).forward_logits;
    expectClose(logits, referenceLogits(s, rounded('f16'), SEQUENCE.subarray(0, 8)), 2e-4, 2e-4, 'forward_logits of the F16 GGUF');
  } finally {
    session.destroy();
  }
});
