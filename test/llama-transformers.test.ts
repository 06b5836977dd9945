// models/llama.ts against transformers itself: two toy checkpoints (a SmolLM2-style Llama with
// a tied head, a Qwen2 with q/k/v biases and an untied head) saved by transformers'
// save_pretrained with its logits over a 12-token prompt and 8 greedy decode steps
// (bench/llama_torch.py --fixtures, fixtures/llama-torch/README.md). The builder reads the saved
// config.json, the plan loads model.safetensors by name, and forward, prefill and each decode
// step (fed transformers' tokens) give transformers' logits; the CPU reference of the graph too.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { interpret } from '../compiler/ir/interpret';
import { llama, llamaEntries, llamaShape, type HfLlamaConfig, type LlamaOptions } from '../models/llama';
import { decodeSafetensors, loadPlan, tensorAsF32, type SafetensorsFile } from '../runtime/index';
import { expectClose } from './close';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const fixture = (model: string, file: string) => new Uint8Array(readFileSync(new URL(`../fixtures/llama-torch/${model}/${file}`, import.meta.url)));

function f32(file: SafetensorsFile, name: string): Float32Array {
  const bytes = tensorAsF32(file.tensors.get(name)!, name);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function ids(file: SafetensorsFile, name: string): Int32Array {
  const t = file.tensors.get(name)!;
  expect(t.dtype).toBe('I64');
  return Int32Array.from(new BigInt64Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength)), Number);
}

const argmax = (x: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
};

describe.each(['smollm2-toy', 'qwen2-toy'])('%s saved by transformers', (model) => {
  const config = JSON.parse(new TextDecoder().decode(fixture(model, 'config.json'))) as HfLlamaConfig;
  const reference = decodeSafetensors(fixture(model, 'reference.safetensors'), `${model}/reference.safetensors`);
  const checkpoint = decodeSafetensors(fixture(model, 'model.safetensors'), `${model}/model.safetensors`);
  const s = llamaShape(config);
  const prompt = ids(reference, 'prompt');
  const tokens = ids(reference, 'tokens');
  const prefillLogits = f32(reference, 'prefill_logits');
  const decodeLogits = f32(reference, 'decode_logits');
  const P = prompt.length;
  const steps = tokens.length - 1;
  const row = (logits: Float32Array, i: number) => logits.subarray(i * s.vocab, (i + 1) * s.vocab);

  test('the reference is greedy: each token is the argmax of the logits before it', () => {
    expect(argmax(row(prefillLogits, P - 1))).toBe(tokens[0]);
    for (let i = 0; i < steps; i++) expect(argmax(row(decodeLogits, i))).toBe(tokens[i + 1]);
  });

  test('CPU reference of the graph: forward logits equal transformers', () => {
    const g = new Graph(`${model}_cpu`);
    const { forward_logits } = llama(g, config, { forward: P });
    g.output('forward_logits', forward_logits);
    const parameters = new Map([...checkpoint.tensors].map(([name, t]) => [name, Float64Array.from(f32(checkpoint, name))]));
    const cpu = interpret(g, { tokens: prompt }, parameters);
    expectClose(cpu.forward_logits, prefillLogits, 2e-5, 2e-5, `${model} forward_logits (CPU)`);
  });

  test('the plan with the checkpoint: forward, prefill and decode steps equal transformers', async () => {
    const options: LlamaOptions = { forward: P, maxPrompt: P, maxSequence: P + steps };
    const g = new Graph(model);
    for (const [name, t] of Object.entries(llama(g, config, options))) g.output(name, t);
    const plan = await compileGraph(g, { weights: 'none', entries: llamaEntries(options) });
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const report = session.loadWeights({ source: `${model}/model.safetensors`, file: checkpoint });
      expect(report.loaded.length).toBe(checkpoint.tensors.size);
      const forward = await session.run({ tokens: prompt }, 'forward');
      expectClose(forward.forward_logits, prefillLogits, 1e-4, 1e-4, `${model} forward_logits`);
      const prefill = await session.run({ prompt, length: Float32Array.of(P) }, 'prefill');
      expectClose(prefill.prefill_logits, row(prefillLogits, P - 1), 1e-4, 1e-4, `${model} prefill_logits`);
      for (let i = 0; i < steps; i++) {
        const step = await session.run({ token: tokens.subarray(i, i + 1), position: Float32Array.of(P + i) }, 'decode');
        expectClose(step.logits, row(decodeLogits, i), 1e-4, 1e-4, `${model} decode step ${i}`);
        expect(argmax(step.logits)).toBe(tokens[i + 1]);
      }
    } finally {
      session.destroy();
    }
  });
});
