// Stream-K: a product of many 128×256 tiles, whose count leaves part of the last wave of a
// large GPU idle (3072³: 288 tiles on 132 SMs, the third wave 24 tiles), computes all but that
// last wave's tiles whole, one workgroup each, and shares those tiles' K iterations evenly
// among one wave of workgroups, which write partial tiles; the product's kernel then sums
// each shared tile's partials and runs the epilogue. Two dispatches instead of one, chosen
// by lowering for the target, beside split-k.ts (which takes products with too few tiles;
// this takes those with many).
import type { Graph, Node } from '../ir/graph';
import { opDef, renderProgram } from '../ir/ops';
import type { TensorType } from '../ir/types';
import type { Target } from '../target/target';
import { TILINGS, type StreamKTuning } from '../target/tuning';
import type { NodeSchedule } from './kernel';
import { lowerMatmul, productAttrs, tiledProductOf, type ScheduledForm, type StreamKSchedule } from './matmul';

/** The schedule for the product at `node`, or undefined: it stays one dispatch. */
export function streamKSchedule(graph: Graph, node: Node, tuning: StreamKTuning): StreamKSchedule | undefined {
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
 * The stream-K schedule of the product at `node` where the target's tuning picks one: the
 * partial tiles `${name}.partials` (scratch), then the product with its epilogue, summing the
 * shared tiles from them.
 */
export function streamKSteps(graph: Graph, node: Node, target: Target): NodeSchedule | undefined {
  const tuning = target.tuning.streamK;
  const schedule = tuning && streamKSchedule(graph, node, tuning);
  if (!schedule) return undefined;
  const fused = productAttrs(node);
  const operandTypes = node.inputs.map((i) => graph.nodes[i].type);
  const partials: TensorType = { shape: [schedule.units + schedule.tiles - schedule.dataParallel - 1, schedule.tileM, schedule.tileN], dtype: 'f32' };
  const partialsForm: ScheduledForm = {
    transposeA: fused.transposeA,
    transposeB: fused.transposeB,
    extraViews: [],
    epilogue: (product) => renderProgram([], [product]),
    ops: [...(fused.transposeA || fused.transposeB ? ['transpose'] : []), 'matmulStreamKPartials'],
    streamK: { role: 'partials', schedule, product: node.type.shape },
  };
  // the product's form is fusedMatmul's, a plain matmul's as one with no epilogue
  const lowering = opDef('fusedMatmul').lowering;
  if (lowering.archetype !== 'matmul' || !lowering.form) throw new Error('streamKSteps: fusedMatmul has no matmul form');
  const fusedForm = lowering.form(operandTypes, fused, node.type);
  const productForm: ScheduledForm = { ...fusedForm, ops: [...fusedForm.ops, 'streamK'], streamK: { role: 'product', schedule, product: node.type.shape } };
  const partialsStep = { op: 'matmulStreamKPartials', name: `${node.name}.partials`, type: partials, attrs: {} };
  const productStep = { op: 'matmulStreamK', name: node.name, type: node.type, attrs: {} };
  const [a, b] = operandTypes;
  return {
    scratch: [partials],
    steps: [
      { subject: partialsStep, operands: [{ node: node.inputs[0] }, { node: node.inputs[1] }], operandTypes: [a, b], result: { scratch: 0 }, generate: (name) => lowerMatmul(partialsStep, [a, b], name, target, partialsForm) },
      {
        subject: productStep,
        operands: [...node.inputs.map((i) => ({ node: i })), { scratch: 0 }],
        operandTypes: [...operandTypes, partials],
        result: 'node',
        generate: (name) => lowerMatmul(productStep, [...operandTypes, partials], name, target, productForm),
      },
    ],
  };
}
