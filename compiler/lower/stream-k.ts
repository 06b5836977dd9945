// Stream-K: a product of many 128×256 tiles, whose count leaves part of the last wave of a
// large GPU idle (3072³: 288 tiles on 132 SMs, the third wave 24 tiles), computes all but that
// last wave's tiles whole, one workgroup each, and shares those tiles' K iterations evenly
// among one wave of workgroups, which write partial tiles; the product's kernel then sums
// each shared tile's partials and runs the epilogue. Two dispatches instead of one:
// matmulStreamKPartials, then matmulStreamK. A Graph → Graph pass run before lowering,
// beside split-k.ts (which takes products with too few tiles; this takes those with many).
import { replaceTrainedNodes, type TrainingGraph } from '../autodiff/train';
import type { Graph, Node } from '../ir/graph';
import type { MatmulStreamKAttrs, MatmulStreamKPartialsAttrs, StreamKSchedule } from '../ir/ops';
import { productAttrs, tiledProductOf } from './matmul';
import { LARGE_GPU_SMS, TILINGS } from './matmul-tiled';

/** The rule's knobs; tests lower them to reach small shapes. */
export interface StreamKTuning {
  /** workgroups that run at once: the SMs of the GPU the plan is for (one 128×256 workgroup per SM) */
  units: number;
  /** share the last wave's tiles when they fill at most this fraction of it */
  maxLastWave: number;
  /** the same for products that read an operand transposed */
  maxLastWaveTransposed: number;
  /** ... and the K iterations that wave leaves idle, per unit, are at least this many */
  minIdleK: number;
  /** the fewest K iterations per shared run, a multiple of 16 */
  minUnitK: number;
}

// Measured on the H200 (bench/matmul.ts, stream-K): the shared runs go at nearly the whole
// tiles' rate per K iteration (4096³: 618 µs for 116 tiles' K on 132 SMs, 610 at that rate)
// and the sums and the second dispatch cost about 40 µs, some 240 K iterations of a tile. So
// the idle part of the last wave must be worth more than that: 3072³ (last wave 0.18 full)
// 1179 µs against 1364 for 128×128 blocks, 8192³ (0.52) 21.3 ms against 21.9, 4096³ (0.88,
// 496 idle K iterations) 2695 µs against 2756. Fuller last waves were not measured. With a
// transposed read, 4096³ lost (Aᵀ 2727 µs against 2715, Bᵀ 2836 against 2786), so those keep
// the earlier limit, under which every product measured gained.
const DEFAULT_TUNING: StreamKTuning = { units: LARGE_GPU_SMS, maxLastWave: 0.9, maxLastWaveTransposed: 0.75, minIdleK: 256, minUnitK: 256 };
let tuning: StreamKTuning = { ...DEFAULT_TUNING };

/** Overrides the rule's knobs (for tests); with no argument, restores the defaults. */
export function setStreamKTuning(overrides: Partial<StreamKTuning> = {}): void {
  tuning = { ...DEFAULT_TUNING, ...overrides };
}

/** The schedule for the product at `node`, or undefined: it stays one dispatch. */
export function streamKSchedule(graph: Graph, node: Node): StreamKSchedule | undefined {
  const product = tiledProductOf(graph, node);
  if (!product) return undefined;
  const { m, n, k, batches, attrs: { transposeA, transposeB } } = product;
  const { bm, bn } = TILINGS.t128x256x16;
  const tiles = Math.ceil(m / bm) * Math.ceil(n / bn) * batches;
  const { units: wave, minIdleK, minUnitK } = tuning;
  const maxLastWave = transposeA || transposeB ? tuning.maxLastWaveTransposed : tuning.maxLastWave;
  const shared = tiles % wave;
  // K in the kernels' 16-deep slices; a whole wave before the shared tiles; one grid dimension
  if (k % 16 !== 0 || tiles <= wave || shared === 0 || tiles > 65535) return undefined;
  if (shared > maxLastWave * wave || ((wave - shared) / wave) * k < minIdleK) return undefined;
  const iterations = shared * k;
  const unitK = Math.max(minUnitK, Math.ceil(iterations / wave / 16) * 16);
  return { tileM: bm, tileN: bn, tiles, dataParallel: tiles - shared, units: Math.ceil(iterations / unitK), unitK };
}

/**
 * The graph with every product that streamKSchedule picks computed as partial tiles and
 * then the product, and the training description remapped onto it; the same graph (and
 * training) when none qualifies. The product keeps the node's name.
 */
export function streamK(graph: Graph, training?: TrainingGraph): { graph: Graph; training?: TrainingGraph } {
  return replaceTrainedNodes(
    graph,
    training,
    (node) => streamKSchedule(graph, node),
    (copy, node, operands, schedule, unused) => {
      const fused = productAttrs(node);
      const partialsAttrs: MatmulStreamKPartialsAttrs = { transposeA: fused.transposeA, transposeB: fused.transposeB, schedule };
      const partials = copy.emit('matmulStreamKPartials', operands.slice(0, 2), partialsAttrs, node.loc, unused(`${node.name}.partials`));
      const attrs: MatmulStreamKAttrs = { ...fused, schedule };
      return copy.emit('matmulStreamK', [...operands, partials], attrs, node.loc, node.name);
    },
  );
}
