// models/llama.ts at toy sizes: the builder's full-sequence logits on the CPU reference against
// an independent float64 Llama forward (test/llama-reference.ts), and one plan per config on
// the GPU with a seeded checkpoint loaded by name: forward against the reference, then a
// prefill of a padded prompt and decode steps through the KV cache against the reference's
// full-sequence logits at each position.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { encodeSafetensors, loadPlan } from '../runtime/index';
import { expectClose } from './close';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { asSafetensors, randomCheckpoint, referenceLogits } from './llama-reference';

afterAll(releaseSharedDevice);

/** SmolLM2's config.json keys (classic spellings, tied head) with Llama 3 rope scaling, at toy size. */
const SMOL: HfLlamaConfig = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
};

/** Qwen2's (q/k/v biases, untied head) with the newer keys (rope_parameters, dtype), head_dim apart from hidden/heads. */
const QWEN: HfLlamaConfig = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 300,
  hidden_size: 48,
  head_dim: 16,
  intermediate_size: 80,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-6,
  rope_parameters: { rope_type: 'default', rope_theta: 1000000 },
  tie_word_embeddings: false,
  dtype: 'bfloat16',
};

const OPTIONS: LlamaOptions = { forward: 8, maxSequence: 12, maxPrompt: 8 };
const SEQUENCE = Int32Array.from([17, 203, 5, 99, 250, 1, 42, 131, 77, 8, 299, 60]);

test('the config keys: classic and newer spellings, GQA, head_dim, biases, tied head', () => {
  const smol = llamaShape(SMOL);
  expect(smol).toMatchObject({ heads: 4, kvHeads: 2, headDim: 16, rotaryDim: 16, ropeTheta: 100000, tied: true, qkvBias: false, outBias: false, dtype: 'bfloat16', eps: 1e-5 });
  expect(smol.ropeScaling).toEqual({ kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 });
  expect(llamaShape(QWEN)).toMatchObject({ headDim: 16, kvHeads: 1, ropeTheta: 1000000, tied: false, qkvBias: true, outBias: false, dtype: 'bfloat16' });
  expect(() => llamaShape({ ...SMOL, architectures: ['GPT2LMHeadModel'] })).toThrow(/GPT2LMHeadModel/);
  expect(() => llamaShape({ ...SMOL, num_key_value_heads: 3 })).toThrow(/multiple of num_key_value_heads/);
  const g = new Graph('names');
  llama(g, QWEN, { forward: 4 });
  const names = g.nodes.filter((n) => n.op === 'parameter').map((n) => n.name);
  expect(names).toContain('model.layers.1.self_attn.k_proj.bias');
  expect(names).toContain('lm_head.weight');
  expect(names).not.toContain('model.layers.0.self_attn.o_proj.bias');
  expect(g.nodes.find((n) => n.name === 'model.layers.0.self_attn.q_proj.weight')?.type.shape).toEqual([64, 48]);
});

describe.each([
  ['SmolLM2-style Llama (tied, GQA 4:2, Llama 3 rope scaling)', SMOL],
  ['Qwen2 (q/k/v biases, untied, head_dim 16 of hidden 48, GQA 4:1)', QWEN],
])('%s', (_label, config) => {
  const s = llamaShape(config);
  const weights = randomCheckpoint(s, 7);
  const reference = referenceLogits(s, weights, SEQUENCE);
  const row = (t: number) => reference.subarray(t * s.vocab, (t + 1) * s.vocab);

  test('CPU reference of the graph equals the independent float64 forward', () => {
    const g = new Graph('llama_cpu');
    const { forward_logits } = llama(g, config, { forward: OPTIONS.forward });
    g.output('forward_logits', forward_logits);
    const parameters = new Map([...weights].map(([name, w]) => [name, w.data]));
    const cpu = interpret(g, { tokens: SEQUENCE.subarray(0, OPTIONS.forward) }, parameters);
    expectClose(cpu.forward_logits, reference.subarray(0, OPTIONS.forward! * s.vocab), 1e-9, 1e-9, 'forward_logits (CPU)');
  });

  test('the plan with the checkpoint loaded: forward, then prefill and decode through the KV cache', async () => {
    const g = new Graph('llama_gpu');
    for (const [name, t] of Object.entries(llama(g, config, OPTIONS))) g.output(name, t);
    const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(OPTIONS) });
    expect(Object.keys(plan.manifest.entryPoints).sort()).toEqual(['decode', 'forward', 'prefill']);
    expect(plan.manifest.entryPoints.decode.inputs.map((i) => i.name).sort()).toEqual(['position', 'token']);
    // no per-head copies of the keys and values: the attention kernel broadcasts them over the group
    expect(plan.manifest.kernels.some((k) => k.ops.includes('broadcastTo'))).toBe(false);
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const report = session.loadWeights(encodeSafetensors(asSafetensors(weights)));
      expect(report.loaded.length).toBe(weights.size);
      const forward = await session.run({ tokens: SEQUENCE.subarray(0, OPTIONS.forward) }, 'forward');
      expectClose(forward.forward_logits, reference.subarray(0, OPTIONS.forward! * s.vocab), 2e-4, 2e-4, 'forward_logits');

      // a 5-token prompt padded to 8, then decode steps at positions 5 .. 11
      const promptLength = 5;
      const prompt = new Int32Array(OPTIONS.maxPrompt!);
      prompt.set(SEQUENCE.subarray(0, promptLength));
      const prefill = await session.run({ prompt, length: Float32Array.of(promptLength) }, 'prefill');
      expectClose(prefill.prefill_logits, row(promptLength - 1), 2e-4, 2e-4, 'prefill_logits');
      for (let p = promptLength; p < SEQUENCE.length; p++) {
        const step = await session.run({ token: SEQUENCE.subarray(p, p + 1), position: Float32Array.of(p) }, 'decode');
        expectClose(step.logits, row(p), 2e-4, 2e-4, `decode logits at position ${p}`);
      }
      // a second prefill starts the sequence over: the cache's old rows are overwritten or masked
      const again = await session.run({ prompt, length: Float32Array.of(3) }, 'prefill');
      expectClose(again.prefill_logits, row(2), 2e-4, 2e-4, 'prefill_logits of a shorter prompt');
      const step = await session.run({ token: SEQUENCE.subarray(3, 4), position: Float32Array.of(3) }, 'decode');
      expectClose(step.logits, row(3), 2e-4, 2e-4, 'decode after the second prefill');
    } finally {
      session.destroy();
    }
  });
});
