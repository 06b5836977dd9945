// Split-K: a product with too few output tiles to fill the GPU but a long K (128×1536 · 1536×576
// gives 72 tiles of 32×32 for 132 SMs on an H200) is computed as partial products over equal
// slices of K, each slice its own layer of workgroups, then a sum over the slices, which a
// fused epilogue (bias, activation, residual) takes as one pointwise kernel that adds the
// slices as it reads them. Convolutions (lower/conv.ts) split their implicit product the same
// way. A lowering decision: the graph keeps one product node, and its schedule two dispatches.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { convEpilogueProgram, epilogueProgram, opDef, renderProgram, type AxisAttrs, type ConvRole, type FusedPointwiseAttrs } from '../ir/ops';
import { convProductOf, lowerConvolution } from './conv';
import { broadcastStrides, stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import type { Target } from '../target/target';
import type { SplitKTuning } from '../target/tuning';
import type { NodeSchedule, ScheduleStep } from './kernel';
import { lowerMatmul, productAttrs, tiledProductOf } from './matmul';
import { lowerPointwise } from './pointwise';

/** How many slices of K the product at `node` gets; undefined: it stays whole. */
export function splitKSlices(graph: Graph, node: Node, tuning: SplitKTuning): number | undefined {
  const product = tiledProductOf(graph, node);
  return product && slicesOf(product, tuning);
}

/** How many slices of K a product of these sizes gets; undefined: it stays whole. */
function slicesOf({ m, n, k, batches }: { m: number; n: number; k: number; batches: number }, tuning: SplitKTuning): number | undefined {
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
 * The split-K schedule of the product at `node` where the target's tuning picks one:
 * `${name}.partials` [slices, ..product] (scratch), then their sum (the product's value), or
 * with an epilogue one pointwise kernel summing them as it reads them.
 */
export function splitKSteps(graph: Graph, node: Node, target: Target): NodeSchedule | undefined {
  if (opDef(node.op).lowering.archetype === 'convolution') return convSplitKSteps(graph, node, target);
  const tuning = target.tuning.splitK;
  const slices = tuning && splitKSlices(graph, node, tuning);
  if (!slices) return undefined;
  const fused = productAttrs(node);
  const program = epilogueProgram(fused);
  const [a, b, ...extras] = node.inputs.map((i) => graph.nodes[i].type);
  const partials: TensorType = { shape: [slices, ...node.type.shape], dtype: 'f32' };
  const form = {
    transposeA: fused.transposeA,
    transposeB: fused.transposeB,
    extraViews: [],
    epilogue: (product: string) => renderProgram([], [product]),
    ops: [...(fused.transposeA || fused.transposeB ? ['transpose'] : []), 'matmulSplitK'],
    splits: slices,
  };
  const partialsStep = { op: 'matmulSplitK', name: `${node.name}.partials`, type: partials, attrs: {} };
  const products: ScheduleStep = {
    subject: partialsStep,
    operands: [{ node: node.inputs[0] }, { node: node.inputs[1] }],
    operandTypes: [a, b],
    result: { scratch: 0 },
    generate: (name) => lowerMatmul(partialsStep, [a, b], name, target, form),
  };
  return summedSchedule(node, products, program, extras);
}

/**
 * The same schedule for a convolution (or a gradient of one) whose implicit product has few
 * tiles and a long K (a weight gradient sums over every image's outputs): `${name}.partials`,
 * their sum, then a fused convolution's epilogue as one pointwise kernel.
 */
function convSplitKSteps(graph: Graph, node: Node, target: Target): NodeSchedule | undefined {
  const operandTypes = node.inputs.map((i) => graph.nodes[i].type);
  const product = convProductOf(node.op, operandTypes, node.attrs);
  const slices = target.tuning.splitK && product && slicesOf(product, target.tuning.splitK);
  if (!slices) return undefined;
  const program = node.op === 'fusedConv2d' ? convEpilogueProgram(attrsOf(node, 'fusedConv2d')) : [];
  const role = (opDef(node.op).lowering as { role: ConvRole }).role;
  const [x, w, ...extras] = operandTypes;
  const partials: TensorType = { shape: [slices, ...node.type.shape], dtype: 'f32' };
  const partialsStep = { op: `${node.op === 'fusedConv2d' ? 'conv2d' : node.op}SplitK`, name: `${node.name}.partials`, type: partials, attrs: node.attrs };
  const products: ScheduleStep = {
    subject: partialsStep,
    operands: [{ node: node.inputs[0] }, { node: node.inputs[1] }],
    operandTypes: [x, w],
    result: { scratch: 0 },
    generate: (name) => lowerConvolution(partialsStep, [x, w], name, target, role, slices),
  };
  return summedSchedule(node, products, program, extras);
}

/**
 * A split-K schedule from its first step (the partial products, scratch 0): without an
 * epilogue, their sum over the slices; with one, the epilogue `program` as one pointwise
 * kernel that sums the slices as it reads them, then reads the node's operands after the
 * product's two (`extras` their types): no sum written out and read back, one dispatch fewer.
 */
function summedSchedule(node: Node, products: ScheduleStep, program: FusedPointwiseAttrs['program'], extras: TensorType[]): NodeSchedule {
  const partials = products.subject.type;
  if (program.length === 0) {
    const sumAttrs: AxisAttrs = { axis: 0, keepDims: false };
    const sum = { op: 'sum', name: node.name, type: node.type, attrs: { ...sumAttrs } };
    return { scratch: [partials], steps: [products, { subject: sum, operands: [{ scratch: 0 }], operandTypes: [partials], result: 'node' }] };
  }
  const epilogue: FusedPointwiseAttrs = { program };
  const subject = { op: 'fusedPointwise', name: node.name, type: node.type, attrs: { ...epilogue } };
  const operandTypes = [partials, ...extras];
  const out = node.type.shape;
  return {
    scratch: [partials],
    steps: [
      products,
      {
        subject,
        operands: [{ scratch: 0 }, ...node.inputs.slice(2).map((i) => ({ node: i }))],
        operandTypes,
        result: 'node',
        generate: (name) =>
          lowerPointwise(subject, operandTypes, name, {
            chain: (x) => {
              const chain = renderProgram(program, x);
              return { ...chain, ops: ['sum', ...chain.ops] };
            },
            // the first slice as the result's own layout, the others a slice apart
            views: [{ strides: stridesOf(out), offset: 0 }, ...extras.map((t) => ({ strides: broadcastStrides(t.shape, out), offset: 0 }))],
            summed: { operand: 0, count: partials.shape[0], stride: elementCount(out) },
          }),
      },
    ],
  };
}
