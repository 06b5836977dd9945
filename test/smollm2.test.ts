// examples/smollm2/model.ts at its toy size (2 layers, hidden 48, 6 query heads over 2
// key/value heads, vocabulary 64, 16 tokens): the compiled plan on the GPU against the CPU
// reference, forward and the gradients of a training step, with the embedding a gather (tied
// with the LM head, so its gradient sums the gather's scatter-add and the product's) and rotary
// embeddings on q and k.
import { afterAll, expect, test } from 'vitest';
import { differentiate } from '../compiler/autodiff/differentiate';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { buildDecoder, SMOLLM2_TINY } from '../examples/smollm2/model';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';

afterAll(releaseSharedDevice);

const s = SMOLLM2_TINY;

function tokens(seed: number): { tokens: Int32Array; targets: Int32Array } {
  const u = uniformStream(seed);
  const ids = Int32Array.from({ length: s.seq + 1 }, () => Math.floor(s.vocab * u()));
  return { tokens: ids.subarray(0, s.seq), targets: ids.subarray(1) };
}

test('the plan gathers the embedding, applies rope to q and k, and equals the CPU reference', async () => {
  const g = new Graph('smollm2_tiny');
  const { logits, loss } = buildDecoder(g, s);
  g.output('logits', logits);
  g.output('loss', loss);
  expect(g.nodes.filter((n) => n.op === 'oneHot' && n.inputs.some((i) => g.nodes[i].name === 'tokens'))).toEqual([]);
  expect(g.nodes.filter((n) => n.op === 'rope')).toHaveLength(2 * s.layers);
  const plan = await compileGraph(g, { seed: 3 });
  const ops = new Set(plan.manifest.kernels.flatMap((k) => k.ops));
  expect(ops.has('embedding') && ops.has('rope')).toBe(true);
  expect(plan.manifest.entryPoints.run.inputs.find((i) => i.name === 'tokens')?.range).toEqual({ min: 0, max: s.vocab - 1 });
  const feeds = tokens(11);
  const expected = interpret(g, feeds, plan.parameters);
  const gpu = await runOnGpu(plan.bundle, feeds);
  expectClose(gpu.logits, expected.logits, 2e-5, 1e-4, 'logits');
  expectClose(gpu.loss, expected.loss, 1e-5, 1e-5, 'loss');
});

test('the tied embedding gets both gradients: central differences on the CPU, then the GPU', async () => {
  const g = new Graph('smollm2_tiny_grad');
  const { loss } = buildDecoder(g, s);
  g.output('loss', loss);
  const embed = g.nodes.find((n) => n.name === 'embed')!;
  const wq = g.nodes.find((n) => n.name === 'layers.0.wq')!;
  const grads = differentiate(g, g.tensor(loss.id), [embed.id, wq.id]);
  g.output('grad_embed', grads.get(embed.id)!);
  g.output('grad_wq', grads.get(wq.id)!);
  expect(g.nodes.some((n) => n.op === 'embeddingBackward')).toBe(true);

  const parameters = new Map([...materializeParameters(g, 5)].map(([name, v]) => [name, Float64Array.from(v)]));
  const feeds = tokens(12);
  const cpu = interpret(g, feeds, parameters);
  // rows a token names (gather and product) and rows none does (the product alone)
  const table = parameters.get('embed')!;
  const named = feeds.tokens[3] * s.hidden + 5;
  const unnamed = [...Array(s.vocab).keys()].find((r) => !feeds.tokens.includes(r))! * s.hidden + 7;
  for (const i of [named, unnamed]) {
    const v = table[i];
    const h = 1e-5;
    table[i] = v + h;
    const up = interpret(g, feeds, parameters, { outputs: ['loss'] }).loss[0];
    table[i] = v - h;
    const down = interpret(g, feeds, parameters, { outputs: ['loss'] }).loss[0];
    table[i] = v;
    const fd = (up - down) / (2 * h);
    expect(Math.abs(fd), `dL/dembed[${i}] is not vacuous`).toBeGreaterThan(1e-6);
    expect(Math.abs(cpu.grad_embed[i] - fd), `dL/dembed[${i}]: autodiff ${cpu.grad_embed[i]}, central difference ${fd}`).toBeLessThanOrEqual(1e-7 + 1e-4 * Math.abs(fd));
  }

  const plan = await compileGraph(g, { seed: 5 });
  const gpu = await runOnGpu(plan.bundle, feeds);
  const largest = (a: ArrayLike<number>) => Math.max(...Array.from(a, Math.abs));
  expectClose(gpu.grad_embed, cpu.grad_embed, 1e-4 * largest(cpu.grad_embed), 1e-3, 'grad_embed');
  expectClose(gpu.grad_wq, cpu.grad_wq, 1e-4 * largest(cpu.grad_wq), 1e-3, 'grad_wq');
});
