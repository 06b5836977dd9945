// Lowering: Graph + Target → the ordered kernel steps that compute it. Each node gets a
// schedule: one dispatch of its op-table archetype, or where the target's tuning says so
// several (split-K, stream-K, split reductions) with scratch values between them. This file
// routes nodes to archetypes, resolves buffer aliases (reshape), gives every distinct kernel
// source one readable name and checks every kernel against the target's limits and features.
import { CompileError } from '../ir/errors';
import type { Graph, Node } from '../ir/graph';
import { opDef, ShapeRuleError, type OpName } from '../ir/ops';
import { broadcastStrides } from '../ir/shape';
import { lowerAttention } from './attention';
import { lowerAxis } from './axis';
import { lowerConvolution } from './conv';
import { lowerIndexed } from './indexed';
import { isWeightDType, type TensorType } from '../ir/types';
import { shapeTag, type KernelStep, type KernelSubject, type LoweredKernel, type NodeSchedule, type ScheduleStep, type StepValue } from './kernel';
import { lowerMatmul } from './matmul';
import { lowerMatmulInt8 } from './matmul-int8';
import { lowerPackedProduct } from './matmul-quantized';
import { lowerPiecewise, lowerPointwise, singleOpChain } from './pointwise';
import { lowerPool } from './pool';
import { lowerRowWrite } from './row-write';
import { scatterAddSteps } from './scatter-add';
import { splitKSteps } from './split-k';
import { splitReductionSteps } from './split-reductions';
import { streamKSteps } from './stream-k';
import { lowerUpdate } from './update';
import { DEFAULT_LIMITS, type Target } from '../target/target';

export type { KernelStep, LoweredKernel } from './kernel';

/** A value a schedule's step writes and a later one reads: a buffer of its own, no graph node. */
export interface ScratchValue {
  /** after the graph's node ids: graph.nodes.length, + 1, ... */
  id: number;
  name: string;
  type: TensorType;
  /** the node whose schedule uses it */
  node: number;
}

export interface LoweredGraph {
  steps: KernelStep[];
  /** for each node, the node whose buffer holds its value (itself unless aliased) */
  storage: number[];
  scratch: ScratchValue[];
}

type Generated = { kernel: LoweredKernel; workgroups: [number, number, number] };

/** The kernel of an op-table op (a graph node, or a schedule step named after the op it runs). */
function lowerSubject(subject: KernelSubject, operands: readonly TensorType[], name: string, target: Target): Generated {
  const def = opDef(subject.op as OpName);
  const lowering = def.lowering;
  const broadcastViews = () => operands.map((t) => ({ strides: broadcastStrides(t.shape, subject.type.shape), offset: 0 }));
  switch (lowering.archetype) {
    case 'pointwise':
      return lowerPointwise(subject, operands, name, {
        chain: (x) => singleOpChain(subject.op, lowering.expr(x, subject.attrs), lowering.helpers ?? []),
        views: lowering.views ? lowering.views(operands, subject.attrs, subject.type) : broadcastViews(),
      });
    case 'pointwiseChain':
      return lowerPointwise(subject, operands, name, { chain: (x) => lowering.chain(x, subject.attrs), views: broadcastViews() });
    case 'piecewise':
      return lowerPiecewise(subject, operands, name, lowering.views(operands, subject.attrs, subject.type));
    case 'axis':
      return lowerAxis(subject, operands, name, lowering.program(operands, subject.attrs), target.tuning.axis);
    case 'matmul': {
      const form = lowering.form?.(operands, subject.attrs, subject.type);
      // a B held packed (matmulQuantized's weight, a fusedMatmul's of it) is dequantized as it is read
      if (isWeightDType(operands[1].dtype)) return lowerPackedProduct(subject, operands, name, target, form);
      return lowerMatmul(subject, operands, name, target, form);
    }
    case 'attention':
      return lowerAttention(subject, operands, name, target.tuning.attention);
    case 'matmulInt8':
      return lowerMatmulInt8(subject, operands, name, target);
    case 'convolution':
      return lowerConvolution(subject, operands, name, target, lowering.role);
    case 'window':
      return lowerPool(subject, operands, name, lowering.role);
    case 'indexed':
      return lowerIndexed(subject, operands, name, lowering.kernel(operands, subject.attrs, subject.type));
    case 'update':
      return lowerUpdate(subject, operands, name, { writes: def.writes ?? [], body: (x, hyper) => lowering.body(x, hyper, subject.attrs) });
    case 'rowWrite':
      return lowerRowWrite(subject, operands, name);
    case 'scatterAdd':
      throw new Error(`lowerSubject: ${subject.op} is lowered by its schedule (scatter-add.ts)`);
    case 'none':
    case 'alias':
      throw new Error(`lowerSubject: ${subject.op} has no kernel`);
  }
}

/** The node's schedule where the target gives it several dispatches (the first rule that applies), else one dispatch of its own kernel. */
function scheduleNode(graph: Graph, node: Node, target: Target): NodeSchedule {
  const scheduled = splitKSteps(graph, node, target) ?? streamKSteps(graph, node, target) ?? splitReductionSteps(graph, node, target) ?? scatterAddSteps(graph, node);
  if (scheduled) return scheduled;
  const operandTypes = node.inputs.map((i) => graph.nodes[i].type);
  return { scratch: [], steps: [{ subject: node, operands: node.inputs.map((i) => ({ node: i })), operandTypes, result: 'node' }] };
}

/**
 * Lowers the nodes in `live` (default: all) in node order, for `target`: each node's
 * schedule, one dispatch or several. Update ops compute in place: their value lives in
 * operand 0's buffer and they bind no separate output.
 */
export function lowerGraph(graph: Graph, target: Target, live?: ReadonlySet<number>): LoweredGraph {
  const storage: number[] = [];
  const steps: KernelStep[] = [];
  const scratch: ScratchValue[] = [];
  // identical sources share one kernel; a name is given per distinct source
  const bySource = new Map<string, LoweredKernel>();
  const usedNames = new Map<string, number>();
  // nodes alike for lowering (op, attributes, types) get the same schedule and kernels: a
  // model's repeated layers are lowered once, not once per layer (most of this stage's time otherwise)
  const byLowering = new Map<string, { kernel: LoweredKernel; workgroups: [number, number, number] }[]>();
  const lower = (node: Node, step: ScheduleStep, name: string) => {
    try {
      return withinTarget(step.generate ? step.generate(name) : lowerSubject(step.subject, step.operandTypes, name, target), target);
    } catch (e) {
      if (e instanceof ShapeRuleError) throw new CompileError('shape', `${node.op}: ${e.message}`, node.loc, node.op);
      throw e;
    }
  };

  for (const node of graph.nodes) {
    const archetype = opDef(node.op).lowering.archetype;
    if ((live && !live.has(node.id)) || archetype === 'none') {
      storage.push(node.id);
      continue;
    }
    if (archetype === 'alias') {
      storage.push(storage[node.inputs[0]]);
      continue;
    }
    // ops that write an operand in place (optimizer steps, a cache's append) keep their value in
    // operand 0's buffer; a product stored into a cache, in its last operand's (bound as its output)
    const intoLast = opDef(node.op).storesIntoLast?.(node.attrs) ?? false;
    const inPlace = opDef(node.op).writes !== undefined || intoLast;
    storage.push(intoLast ? storage[node.inputs[node.inputs.length - 1]] : inPlace ? storage[node.inputs[0]] : node.id);
    const schedule = scheduleNode(graph, node, target);
    const scratchIds = schedule.scratch.map((type, k) => {
      const id = graph.nodes.length + scratch.length;
      const writer = schedule.steps.find((s) => s.result !== 'node' && s.result.scratch === k);
      scratch.push({ id, name: writer?.subject.name ?? `${node.name}.scratch${k}`, type, node: node.id });
      return id;
    });
    const valueId = (v: StepValue) => ('node' in v ? storage[v.node] : scratchIds[v.scratch]);
    const key = loweringKey(graph, node);
    const known = key === undefined ? undefined : byLowering.get(key);
    const made: { kernel: LoweredKernel; workgroups: [number, number, number] }[] = [];
    schedule.steps.forEach((step, k) => {
      const base = `${step.subject.op}_${shapeTag(step.subject.type.shape)}`;
      const lowered = known?.[k] ?? lower(node, step, base);
      let kernel = bySource.get(lowered.kernel.wgsl);
      if (!kernel) {
        // same op and output shape but another source (other operand shapes): next free name
        const seen = usedNames.get(base) ?? 0;
        usedNames.set(base, seen + 1);
        kernel = seen === 0 ? lowered.kernel : lower(node, step, `${base}_${seen}`).kernel;
        bySource.set(lowered.kernel.wgsl, kernel);
      }
      // the kernel as generated (its source is bySource's key), so a node alike finds the name given here
      made.push(lowered);
      const operands = step.operands.map(valueId);
      const result = step.result === 'node' ? (inPlace ? [] : [node.id]) : [scratchIds[step.result.scratch]];
      steps.push({ kernel, operands: [...operands, ...result], workgroups: [...lowered.workgroups], node: node.id, label: step.subject.name });
    });
    if (key !== undefined && !known) byLowering.set(key, made);
  }
  return { steps, storage, scratch };
}

/**
 * The check that keeps every kernel runnable where its target says: a variant may use only
 * the target's features and limits (the generators choose within them; this catches one that
 * did not), and the portable module WebGPU's defaults.
 */
function withinTarget<T extends { kernel: LoweredKernel }>(lowered: T, target: Target): T {
  const { kernel } = lowered;
  const invocations = (size: readonly number[]) => size[0] * size[1] * size[2];
  if (kernel.workgroupBytes > DEFAULT_LIMITS.maxComputeWorkgroupStorageSize || invocations(kernel.workgroupSize) > DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`kernel ${kernel.name}: the portable module needs more than WebGPU's default limits (${kernel.workgroupBytes} bytes of workgroup storage, ${invocations(kernel.workgroupSize)} invocations)`);
  }
  for (const v of kernel.variants ?? []) {
    const missing = v.features.filter((f) => !target.features.includes(f));
    const limits = target.limits;
    if (missing.length || v.workgroupBytes > limits.maxComputeWorkgroupStorageSize || invocations(v.workgroupSize) > limits.maxComputeInvocationsPerWorkgroup) {
      throw new Error(`kernel ${kernel.name}: variant ${v.tag} needs more than target ${target.name} offers (features ${v.features.join(', ') || 'none'}, ${v.workgroupBytes} bytes of workgroup storage, ${invocations(v.workgroupSize)} invocations)`);
    }
  }
  return lowered;
}

/**
 * What lowerNode reads of a node: its op, attributes, operand types and type (the kernel's
 * name derives from op and type). Undefined when an attribute is not plain data, which
 * lowers every time.
 */
function loweringKey(graph: Graph, node: Node): string | undefined {
  let plain = true;
  // JSON would write NaN, ±Infinity as null and -0 as 0; attributes may hold them (clamp bounds)
  const exact = (_key: string, value: unknown) => {
    if (typeof value === 'number' && (!Number.isFinite(value) || Object.is(value, -0))) return `#${Object.is(value, -0) ? '-0' : value}`;
    if (typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'bigint') return value;
    plain = false;
    return null;
  };
  const key = JSON.stringify([node.op, node.attrs, node.inputs.map((i) => graph.nodes[i].type), node.type], exact);
  return plain ? key : undefined;
}
