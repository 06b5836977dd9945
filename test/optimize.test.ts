// The optimization stage preserves results and saves dispatches: optimized graphs must
// compute what the original computes (CPU reference before and after, and the GPU plan
// against the original's reference), with fewer kernels where pointwise ops chain.
import { afterAll, describe, expect, test } from 'vitest';
import { NVIDIA_HOPPER } from '../compiler/target/targets';
import { compileGraph } from '../compiler/compile';
import { optimizeGraph } from '../compiler/egraph/optimize';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret, materializeParameters } from '../compiler/ir/interpret';
import { loadPlan } from '../runtime/session';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { randomFeeds } from './random-feeds';

afterAll(releaseSharedDevice);


function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

interface Case {
  label: string;
  build: (g: Graph) => void;
  /** dispatches of 'run' without and with the optimizer */
  dispatches: [number, number];
}

const cases: Case[] = [
  {
    label: 'a chain of five pointwise ops becomes one kernel',
    build: (g) => {
      const x = g.input('x', [33, 17]);
      g.output('y', g.tanh(g.add(g.mul(g.exp(g.neg(x)), 0.5), g.input('b', [17]))));
    },
    dispatches: [5, 1],
  },
  {
    label: 'a value with two consumers stays materialised',
    build: (g) => {
      const x = g.input('x', [8, 9]);
      const shared = g.sigmoid(g.mul(x, x)); // one kernel: mul + sigmoid
      g.output('a', g.relu(g.add(shared, 1))); // add + relu
      g.output('b', g.exp(shared)); // exp
    },
    dispatches: [5, 3],
  },
  {
    label: 'an output in the middle of a chain is written out',
    build: (g) => {
      const x = g.input('x', [40]);
      const mid = g.sqrt(g.add(g.mul(x, x), 1));
      g.output('mid', mid);
      g.output('y', g.log(mid));
    },
    dispatches: [4, 2],
  },
  {
    label: 'reductions and matmuls bound the groups',
    build: (g) => {
      const x = g.input('x', [6, 20]);
      const h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w', [20, 12])), g.parameter('b', [12])));
      const centred = g.sub(h, g.mean(h, -1, { keepDims: true }));
      g.output('y', g.mul(centred, g.div(1, g.sqrt(g.add(g.mean(g.mul(centred, centred), -1, { keepDims: true }), 1e-5)))));
    },
    // matmul + bias + relu become one fused matmul; add, sqrt, div and the last mul one pointwise kernel
    dispatches: [11, 6],
  },
];

describe.each(cases.map((c) => [c.label, c] as const))('%s', (_label, c) => {
  test('same results on the CPU and the GPU, fewer dispatches', async () => {
    const g = new Graph('case');
    c.build(g);
    const parameters = materializeParameters(g, 1);
    const feeds = randomFeeds(g, 7);
    const expected = interpret(g, feeds, parameters);

    const optimized = optimizeGraph(g, 'kernels', NVIDIA_HOPPER.cost);
    const after = interpret(optimized.graph, feeds, parameters);
    for (const o of g.outputs) expect(maxDifference(after[o.name], expected[o.name]), o.name).toBeLessThan(1e-6);

    const plain = await compileGraph(g, { seed: 1, optimize: false });
    const plan = await compileGraph(g, { seed: 1 });
    expect([plain.manifest.entryPoints.run.dispatches.length, plan.manifest.entryPoints.run.dispatches.length]).toEqual(c.dispatches);
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const actual = await session.run(feeds);
      for (const o of g.outputs) expect(maxDifference(actual[o.name], expected[o.name]), o.name).toBeLessThan(1e-5);
    } finally {
      session.destroy();
    }
  });
});

describe('training plans', () => {
  test('an optimized training step equals the unoptimized one', async () => {
    const build = () => {
      const g = new Graph('mlp');
      const x = g.input('x', [8, 12]);
      const labels = g.input('labels', [8], 'i32');
      const h = g.tanh(g.biasAdd(g.matmul(x, g.parameter('w1', [12, 16])), g.parameter('b1', [16])));
      const logits = g.biasAdd(g.matmul(g.silu(h), g.parameter('w2', [16, 5])), g.parameter('b2', [5]));
      g.output('loss', g.crossEntropy(logits, labels));
      return g;
    };
    const device = (await sharedDevice()).device;
    const losses: number[][] = [];
    for (const optimize of [false, true]) {
      const plan = await compileGraph(build(), { seed: 2, optimize, training: { loss: 'loss', optimizer: { kind: 'adam', lr: 0.01 } } });
      const { loadTrainingPlan } = await import('../runtime/training');
      const session = await loadTrainingPlan(plan.bundle, device);
      const run: number[] = [];
      for (let t = 0; t < 5; t++) {
        const u = uniformStream(50 + t);
        run.push(await session.step({ x: Float32Array.from({ length: 96 }, () => 2 * u() - 1), labels: Int32Array.from({ length: 8 }, () => Math.floor(5 * u())) }));
      }
      session.destroy();
      losses.push(run);
    }
    expect(maxDifference(losses[0], losses[1])).toBeLessThan(1e-5);
  });
});
