// Causal attention from its constant mask (compiler/egraph/causal-attention.ts): attention
// written in primitives with a constant causal mask of -1e9, as the example models write it,
// compiles to one causal attention kernel with no mask buffer, and its outputs and training
// steps agree with the graph as written; a mask that differs anywhere stays a mask.
import { afterAll, describe, expect, test } from 'vitest';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { compileGraph } from '../compiler/compile';
import { causalAttention } from '../compiler/egraph/causal-attention';
import { optimizeGraph } from '../compiler/egraph/optimize';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount } from '../compiler/ir/types';
import { readBundle } from '../runtime/bundle';
import { loadTrainingPlan } from '../runtime/training';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

/** 0 where query i sees key j ≤ i + tk - tq, `hidden` elsewhere. */
const causalValues = (tq: number, tk: number, hidden = -1e9) => Float32Array.from({ length: tq * tk }, (_, e) => (e % tk > Math.floor(e / tk) + tk - tq ? hidden : 0));

/** softmax(q·kᵀ/√d + mask)·v in primitives, heads [h, t, d]. */
function attentionGraph(h: number, tq: number, tk: number, d: number, mask: Float32Array, maskShape = [tq, tk]) {
  const g = new Graph('causal');
  const [q, k, v] = [g.input('q', [h, tq, d]), g.input('k', [h, tk, d]), g.input('v', [h, tk, d])];
  const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), 1 / Math.sqrt(d)), g.constant(mask, maskShape, 'causal_mask'));
  const e = g.exp(g.sub(scores, g.max(scores, -1, { keepDims: true })));
  g.output('y', g.matmul(g.div(e, g.sum(e, -1, { keepDims: true })), v));
  return g;
}

const attentionNodes = (g: Graph) => g.nodes.filter((n) => n.op === 'attention');

describe('which masks make attention causal', () => {
  test('the causal pattern, square or aligned at the last query and key, with -1e9 or -FLT_MAX', () => {
    for (const [tq, tk, hidden, shape] of [
      [16, 16, -1e9, [16, 16]],
      [8, 20, -1e9, [1, 8, 20]],
      [16, 16, -3.4028234663852886e38, [16, 16]],
    ] as const) {
      const forward = optimizeGraph(attentionGraph(2, tq, tk, 8, causalValues(tq, tk, hidden), [...shape]), 'forward', NVIDIA_HOPPER.cost);
      const [attention] = attentionNodes(forward.graph);
      expect(attention.attrs).toMatchObject({ causal: true });
      // the mask is gone, the scalar 0 in its place
      expect(forward.graph.nodes[attention.inputs[3]].type.shape).toEqual([]);
      expect(forward.graph.nodes.some((n) => n.name === 'causal_mask')).toBe(false);
      expect(forward.report.rulesFired['causal attention from its constant mask']).toBe(1);
    }
  });

  test('a mask that differs anywhere stays a mask', () => {
    const near = causalValues(16, 16);
    near[3] = -1e8; // above the diagonal, not low enough
    const below = causalValues(16, 16);
    below[16 * 5 + 2] = -1; // below the diagonal
    const shifted = causalValues(16, 16);
    shifted[1] = 0; // one key more for query 0
    for (const mask of [near, below, shifted]) {
      const forward = optimizeGraph(attentionGraph(2, 16, 16, 8, mask), 'forward', NVIDIA_HOPPER.cost);
      const [attention] = attentionNodes(forward.graph);
      expect(attention.attrs).not.toHaveProperty('causal');
      expect(causalAttention(forward.graph).rewritten).toBe(0);
    }
  });
});

describe('causal attention from the mask on the GPU', () => {
  test('inference: one causal kernel, no mask buffer, the outputs of the graph as written', async () => {
    const g = attentionGraph(3, 40, 40, 16, causalValues(40, 40));
    const plan = await compileGraph(g);
    const run = plan.manifest.entryPoints.run;
    expect(run.dispatches).toHaveLength(1);
    const kernel = plan.manifest.kernels[run.dispatches[0].kernel];
    expect((await readBundle(plan.bundle)).text(kernel.variants[0].wgsl)).toMatch(/\/\/ archetype: attention, .*causal/);
    expect(plan.manifest.buffers.some((b) => b.name === 'causal_mask')).toBe(false);
    const u = uniformStream(3);
    const feeds = Object.fromEntries(['q', 'k', 'v'].map((n) => [n, Float32Array.from({ length: 3 * 40 * 16 }, () => 2 * u() - 1)]));
    const expected = interpret(g, feeds, new Map()).y;
    expectClose((await runOnGpu(plan.bundle, feeds)).y, expected, 2e-5, 1e-4);
  });

  test('training: the causal plan steps as the plan of the graph as written (no optimizer)', async () => {
    const compile = (optimize: boolean) => {
      const g = new Graph('trained');
      const x = g.input('x', [24, 16]);
      const p = (name: string) => g.parameter(name, [16, 16], { init: { uniform: [-0.3, 0.3] } });
      const split = (t: Tensor) => g.transpose(g.reshape(t, [24, 2, 8]), [1, 0, 2]);
      const [q, k, v] = [split(g.matmul(x, p('wq'))), split(g.matmul(x, p('wk'))), split(g.matmul(x, p('wv')))];
      const scores = g.add(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), 1 / Math.sqrt(8)), g.constant(causalValues(24, 24), [24, 24], 'causal_mask'));
      const y = g.matmul(g.softmax(scores), v);
      g.output('loss', g.mean(g.mean(g.mean(g.mul(y, y), -1), -1), 0));
      return compileGraph(g, { optimize, seed: 2, training: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.5 } } });
    };
    const [causal, written] = await Promise.all([compile(true), compile(false)]);
    const kernels = (plan: typeof causal) => plan.manifest.kernels.filter((k) => k.ops.includes('attention')).length;
    expect(kernels(causal)).toBe(1);
    expect(kernels(written)).toBe(0);
    const device = (await sharedDevice()).device;
    const sessions = await Promise.all([causal, written].map((p) => loadTrainingPlan(p.bundle, device)));
    try {
      const u = uniformStream(9);
      for (let t = 0; t < 3; t++) {
        const batch = { x: Float32Array.from({ length: elementCount([24, 16]) }, () => 2 * u() - 1) };
        const [a, b] = [await sessions[0].step(batch), await sessions[1].step(batch)];
        expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-4 * Math.abs(b));
      }
    } finally {
      for (const s of sessions) s.destroy();
    }
  });
});
