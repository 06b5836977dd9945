// Split-K: a product with too few output tiles to fill the GPU but a long K (128×1536 · 1536×576
// gives 72 tiles of 32×32 for 132 SMs on an H200) becomes partial products over equal slices
// of K, each slice its own layer of workgroups (matmulSplitK), then a sum over the slices; a
// fused epilogue (bias, activation, residual) moves after the sum as one pointwise kernel.
// A Graph → Graph pass run before lowering, beside split-reductions.ts.
import { replaceTrainedNodes, type TrainingGraph } from '../autodiff/train';
import type { Graph, Node } from '../ir/graph';
import { epilogueProgram, type AxisAttrs, type MatmulSplitKAttrs } from '../ir/ops';
import { productAttrs, tiledProductOf } from './matmul';

/** The rule's knobs; bench/matmul.ts sweeps them (setSplitKTuning); the defaults are its result. */
export interface SplitKTuning {
  /** split a product whose 32×32 tiles number fewer than this (264: two per SM of an H200) ... */
  belowTiles: number;
  /** ... and whose K is at least this long ... */
  minK: number;
  /** ... into the fewest slices that give at least this many tiles in all (or the most slices allowed) */
  targetTiles: number;
  /** shortest slice of K; a multiple of 16 (the tiled kernel's slice depth) */
  minChunk: number;
  maxSplits: number;
}

// measured on the H200 (bench/matmul.ts, split-K): at 128x1536x576 (72 tiles) 6 slices take
// 15.7 µs against 30.2 whole, at 128x4096x576 16 slices 30.0 against 77.1, at 256x1536x576
// with an epilogue (144 tiles) 6 slices 27.9 against 35.6; 8 tiles per SM was the best target
const DEFAULT_TUNING: SplitKTuning = { belowTiles: 264, minK: 1024, targetTiles: 1056, minChunk: 256, maxSplits: 16 };
let tuning: SplitKTuning = { ...DEFAULT_TUNING };

/** Overrides the rule's knobs (for benchmarks and tests); with no argument, restores the defaults. */
export function setSplitKTuning(overrides: Partial<SplitKTuning> = {}): void {
  tuning = { ...DEFAULT_TUNING, ...overrides };
}

/** How many slices of K the product at `node` gets; undefined: it stays whole. */
export function splitKSlices(graph: Graph, node: Node): number | undefined {
  const product = tiledProductOf(graph, node);
  if (!product) return undefined;
  const { m, n, k, batches } = product;
  const tiles = Math.ceil(m / 32) * Math.ceil(n / 32) * batches;
  if (tiles >= tuning.belowTiles || k < tuning.minK) return undefined;
  const fits = (s: number) => k % s === 0 && (k / s) % 16 === 0 && k / s >= tuning.minChunk;
  // the fewest slices reaching the target, else the most below it
  const wanted = Math.min(tuning.maxSplits, Math.max(2, Math.ceil(tuning.targetTiles / tiles)));
  for (let s = wanted; s <= tuning.maxSplits; s++) if (fits(s)) return s;
  for (let s = wanted - 1; s >= 2; s--) if (fits(s)) return s;
  return undefined;
}

/**
 * The graph with every product that splitKSlices picks computed in slices of K, and the
 * training description remapped onto it; the same graph (and training) when none qualifies.
 * The final step of each keeps the product's name, so plans name its buffer as before.
 */
export function splitK(graph: Graph, training?: TrainingGraph): { graph: Graph; training?: TrainingGraph } {
  return replaceTrainedNodes(
    graph,
    training,
    (node) => splitKSlices(graph, node),
    (copy, node, operands, slices, unused) => {
      const fused = productAttrs(node);
      const program = epilogueProgram(fused);
      const attrs: MatmulSplitKAttrs = { transposeA: fused.transposeA, transposeB: fused.transposeB, splits: slices };
      const partials = copy.emit('matmulSplitK', operands.slice(0, 2), attrs, node.loc, unused(`${node.name}.partials`));
      const sumAttrs: AxisAttrs = { axis: 0, keepDims: false };
      const sum = copy.emit('sum', [partials], sumAttrs, node.loc, program.length ? unused(`${node.name}.sum`) : node.name);
      return program.length ? copy.emit('fusedPointwise', [sum, ...operands.slice(2)], { program }, node.loc, node.name) : sum;
    },
  );
}
