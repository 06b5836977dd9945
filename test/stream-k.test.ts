// Stream-K (compiler/lower/stream-k.ts): which products become partial tiles and a product
// at the H200's sizes (graph only), the pieces a schedule makes, and at small sizes with a
// pretend 4-SM GPU, plans that run on the GPU and match the CPU reference of the graph as
// written, and a training plan through such a product that steps like the one-dispatch plan.
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { streamKPieces, type StreamKSchedule } from '../compiler/ir/ops';
import { elementCount } from '../compiler/ir/types';
import { setStreamKTuning, streamK, type StreamKTuning } from '../compiler/lower/stream-k';
import { expectClose } from './close';
import { releaseSharedDevice, runOnGpu } from './gpu';
import { expectStepsThroughRewrite, kernelOps, product, summary } from './rewrite-steps';

afterAll(releaseSharedDevice);
afterEach(() => setStreamKTuning());

describe('which products share their last wave (H200 defaults, graph only)', () => {
  test('3072³: 288 tiles of 128x256, the last 24 shared by 132 runs of 560; the product keeps its name', () => {
    const { graph } = streamK(product(3072, 3072, 3072));
    expect(summary(graph)).toEqual(['input 3072x3072', 'input 3072x3072', 'matmulStreamKPartials 155x128x256', 'matmulStreamK 3072x3072']);
    expect(graph.nodes[3].attrs).toMatchObject({ schedule: { tileM: 128, tileN: 256, tiles: 288, dataParallel: 264, units: 132, unitK: 560 } });
    expect(graph.nodes.map((n) => n.name)).toEqual(['a', 'b', 'matmul_2.partials', 'matmul_2']);
    expect(graph.outputs).toEqual([{ name: 'y', node: 3 }]);
  });

  test('8192³ (last wave 68 of 132) with a fused epilogue: the epilogue stays on the product', () => {
    const g = new Graph('mm');
    const y = g.fusedMatmul(g.input('a', [8192, 8192]), g.input('b', [8192, 8192]), { activation: 'gelu', bias: g.input('bias', [8192]) });
    g.output('y', y);
    const { graph } = streamK(g);
    expect(summary(graph).slice(3)).toEqual(['matmulStreamKPartials 199x128x256', 'matmulStreamK 8192x8192']);
    expect(graph.nodes[4].attrs).toMatchObject({ activation: 'gelu', bias: true, residual: false });
    expect(graph.nodes[4].inputs).toEqual([0, 1, 2, 3]);
  });

  test('4096³: the last wave 116 of 132 tiles, 16 SMs idle for 4096 K iterations: shared', () => {
    const { graph } = streamK(product(4096, 4096, 4096));
    expect(summary(graph).slice(2)).toEqual(['matmulStreamKPartials 247x128x256', 'matmulStreamK 4096x4096']);
    expect(graph.nodes[3].attrs).toMatchObject({ schedule: { tiles: 512, dataParallel: 396, units: 132, unitK: 3600 } });
  });

  test('a last wave over 0.9 full (128 of 132), or over 0.75 with a transposed read, idle for too few K iterations (4096x1024x4096: 16 SMs for 1024), under one wave, few rows, or K not a multiple of 16: one dispatch', () => {
    const linear = (m: number, k: number, n: number) => {
      const g = new Graph('linear');
      g.output('y', g.fusedMatmul(g.input('x', [m, k]), g.input('w', [n, k]), { transposeB: true }));
      return g;
    };
    const graphs = [product(2560, 4096, 3328), linear(4096, 4096, 4096), product(4096, 1024, 4096), product(2048, 2048, 2048), product(16, 4096, 65536), product(3072, 3000, 3072)];
    for (const g of graphs) expect(streamK(g).graph).toBe(g);
    expect(summary(streamK(linear(3072, 3072, 3072)).graph).slice(2)).toEqual(['matmulStreamKPartials 155x128x256', 'matmulStreamK 3072x3072']);
  });

  test('the pieces of a schedule cover each shared tile once, in order of K, each on its own partial tile', () => {
    const s: StreamKSchedule = { tileM: 128, tileN: 256, tiles: 9, dataParallel: 6, units: 5, unitK: 64 };
    const pieces = [...streamKPieces(s, 96)];
    expect(pieces.map((p) => [p.unit, p.tile, p.kFirst, p.kLast, p.slot])).toEqual([
      [0, 6, 0, 64, 0],
      [1, 6, 64, 96, 1],
      [1, 7, 0, 32, 2],
      [2, 7, 32, 96, 3],
      [3, 8, 0, 64, 5],
      [4, 8, 64, 96, 6],
    ]);
    // partial tile 4 (unit 2, tile 8; unit 3, tile 7) has no piece: unit 2 ends where tile 7 does
  });
});

// 9 to 12 tiles of 128x256 on a pretend 5-SM GPU, runs of at least 16
const SMALL: Partial<StreamKTuning> = { units: 5, maxLastWave: 0.95, maxLastWaveTransposed: 0.95, minIdleK: 0, minUnitK: 16 };

describe('stream-K plans on the GPU against the CPU reference', () => {
  const u = uniformStream(11);
  const data = (shape: number[]) => Float32Array.from({ length: elementCount(shape) }, () => 2 * u() - 1);
  const cases: [string, (g: Graph) => void][] = [
    ['[300, 96] · [96, 600]: 9 tiles, 4 shared by 5 runs of 80 (edge tiles, runs across tiles)', (g) => g.output('y', g.matmul(g.input('a', [300, 96]), g.input('b', [96, 600])))],
    [
      'gelu([2, 140, 64]ᵀ · [520, 64]ᵀ + bias) + residual: 12 tiles over 2 batches, 2 shared by 4 runs of 32',
      (g) =>
        g.output(
          'y',
          g.fusedMatmul(g.input('a', [2, 64, 140]), g.input('b', [520, 64]), { transposeA: true, transposeB: true, activation: 'gelu', bias: g.input('bias', [520]), residual: g.input('r', [2, 140, 520]) }),
        ),
    ],
  ];
  for (const [label, build] of cases) {
    for (const optimize of [false, true]) {
      test(`${label}, optimize: ${optimize}`, async () => {
        setStreamKTuning(SMALL);
        const g = new Graph('mm');
        build(g);
        expect(streamK(g).graph.nodes.some((n) => n.op === 'matmulStreamKPartials')).toBe(true);
        const plan = await compileGraph(g, { optimize });
        expect(kernelOps(plan, 'run').filter((op) => op === 'matmulStreamKPartials')).toHaveLength(1);
        if (!optimize) expect(plan.manifest.entryPoints.run.dispatches).toHaveLength(2);
        const feeds = Object.fromEntries(g.nodes.filter((n) => n.op === 'input').map((n) => [n.name, data([...n.type.shape])]));
        // f32 sums of up to 96 products of [-1, 1] values, in another order than float64's
        expectClose((await runOnGpu(plan.bundle, feeds)).y, interpret(g, feeds, new Map()).y, 2e-5 * 8);
      });
    }
  }
});

describe('training through a stream-K product', () => {
  test('the forward product keeps its gradient: steps equal those of the one-dispatch plan', async () => {
    await expectStepsThroughRewrite('matmulStreamKPartials', (shared) => setStreamKTuning(shared ? SMALL : {}), [300, 64, 600], 3);
  });
});
