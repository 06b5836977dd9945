// The lowered form every archetype produces: a WGSL compute module specialised to static
// shapes, its bindings (operands first, the output last) and the grid to dispatch.
import type { BindingDesc } from '../../schemas/manifest';
import type { Node } from '../ir/graph';
import { formatShape, type TensorType } from '../ir/types';

export interface LoweredKernel {
  /** readable and unique per distinct source: `${op}_${shape}` */
  name: string;
  ops: string[];
  wgsl: string;
  entryPoint: 'main';
  workgroupSize: [number, number, number];
  /** bytes of var<workgroup> storage the kernel declares */
  workgroupBytes: number;
  bindings: BindingDesc[];
  /**
   * Faster forms of the same kernel, in the order the runtime should try them: each needs a
   * device feature (subgroups) or more than the portable limits (workgroup storage,
   * invocations). All run with the same bindings and grid as the kernel. The fields above
   * describe the portable variant, which every device runs and which the runtime takes last.
   */
  variants?: LoweredVariant[];
}

/** What an archetype's generator makes of one module: the WGSL, its workgroup and the grid it needs. */
export interface KernelCode {
  wgsl: string;
  workgroupSize: [number, number, number];
  workgroupBytes: number;
  workgroups: [number, number, number];
}

/** One alternative module for a kernel; the bindings are the kernel's. */
export interface LoweredVariant {
  /** short and unique among the kernel's variants, for section names: 'large', 'subgroups' */
  tag: string;
  features: string[];
  wgsl: string;
  workgroupSize: [number, number, number];
  workgroupBytes: number;
  /** 'dawn': naga cannot parse it (subgroup matrices), so Dawn checks it when the runtime builds it */
  validatedBy?: 'dawn';
  /** pipeline-overridable constants the runtime measures on the device and sets (see runtime/device-constants.ts) */
  deviceConstants?: string[];
}

/**
 * A kernel from its portable module and the faster variants the runtime tries first. The
 * manifest has one grid per dispatch, whichever variant runs it, so each variant must need
 * the portable module's grid.
 */
export function kernelWithVariants(
  name: string,
  ops: string[],
  bindings: BindingDesc[],
  portable: KernelCode,
  variants: readonly ({ tag: string; features: string[]; code: KernelCode } & Pick<LoweredVariant, 'validatedBy' | 'deviceConstants'>)[],
): { kernel: LoweredKernel; workgroups: [number, number, number] } {
  const lowered = variants.map(({ tag, features, code, validatedBy, deviceConstants }): LoweredVariant => {
    if (code.workgroups.join() !== portable.workgroups.join()) throw new Error(`kernel ${name}: variant ${tag} needs another grid than the portable kernel`);
    return { tag, features, wgsl: code.wgsl, workgroupSize: code.workgroupSize, workgroupBytes: code.workgroupBytes, ...(validatedBy ? { validatedBy } : {}), ...(deviceConstants ? { deviceConstants } : {}) };
  });
  const kernel: LoweredKernel = {
    name,
    ops,
    wgsl: portable.wgsl,
    entryPoint: 'main',
    workgroupSize: portable.workgroupSize,
    workgroupBytes: portable.workgroupBytes,
    bindings,
    ...(lowered.length ? { variants: lowered } : {}),
  };
  return { kernel, workgroups: portable.workgroups };
}

/**
 * What a kernel generator needs of the value its kernel computes: a graph node, or one step of
 * a node's schedule (split-K's partial products, a split reduction's first pass), which has
 * an op name for the kernel's header and name, a type and attributes of its own.
 */
export type KernelSubject = Pick<Node, 'name' | 'attrs' | 'type'> & { op: string };

/** A value one step of a schedule binds: a graph node's, or one of the schedule's scratch values. */
export type StepValue = { node: number } | { scratch: number };

/**
 * How a node is computed in more than one dispatch (split-K, stream-K, split reductions): a
 * lowering decision, made per target, so the graph keeps one node. The steps run in order;
 * the last writes the node's value, the others scratch values that live only in between.
 */
export interface NodeSchedule {
  scratch: TensorType[];
  steps: ScheduleStep[];
}

export interface ScheduleStep {
  /** what the step computes: names its kernel (`${op}_${shape}`) and, by `name`, its dispatch */
  subject: KernelSubject;
  operands: StepValue[];
  operandTypes: TensorType[];
  /** a scratch value, or 'node': the scheduled node's own value */
  result: { scratch: number } | 'node';
  /** the step's kernel generator; absent: the op table's lowering of `subject.op` */
  generate?: (name: string) => { kernel: LoweredKernel; workgroups: [number, number, number] };
}

/** One dispatch of a kernel: which values feed its bindings and how many workgroups. */
export interface KernelStep {
  kernel: LoweredKernel;
  /** value ids (graph nodes, or scratch values numbered after them), one per binding, in binding order; the last is the value computed (in-place updates: operands only) */
  operands: number[];
  workgroups: [number, number, number];
  /** the graph node this dispatch helps compute (a schedule's steps all name theirs) */
  node: number;
  /** what the dispatch computes, for traces: the node's name, or its step's (`matmul_2.partials`) */
  label: string;
}

/** WebGPU's default (and compatibility-mode) limit on workgroups per grid dimension. */
export const MAX_WORKGROUPS_PER_DIMENSION = 65535;

/**
 * Spreads `groups` workgroups over x and y so neither exceeds the per-dimension limit;
 * kernels rebuild the linear index as `wid.x + wid.y * gridX` and skip the overhang.
 */
export function linearGrid(groups: number): { grid: [number, number, number]; gridX: number } {
  const rows = Math.ceil(groups / MAX_WORKGROUPS_PER_DIMENSION);
  const gridX = Math.ceil(groups / rows);
  return { grid: [gridX, rows, 1], gridX };
}

/** WGSL source lines, each indented by n spaces. */
export function indent(lines: readonly string[], n = 2): string[] {
  return lines.map((l) => ' '.repeat(n) + l);
}

export function u32(v: number): string {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`index constant ${v} does not fit in u32`);
  return `${v}u`;
}

export function shapeTag(shape: readonly number[]): string {
  return shape.length === 0 ? 'scalar' : shape.join('x');
}

const WGSL_ELEMENT: Record<string, string> = { f32: 'f32', i32: 'i32', u32: 'u32' };

export function elementType(t: TensorType): string {
  const type = WGSL_ELEMENT[t.dtype];
  if (!type) throw new Error(`no kernel reads ${t.dtype} buffers yet`);
  return type;
}

/**
 * The bindings block: operands read-only, in order, then the output (f32 unless `output`
 * says otherwise); f32 bindings that `vec4` picks are read as vec4s.
 */
export function bindingDecls(operands: readonly TensorType[], vec4: (binding: number) => boolean = () => false, output: TensorType['dtype'] = 'f32'): { wgsl: string; bindings: BindingDesc[] } {
  const lines: string[] = [];
  const bindings: BindingDesc[] = [];
  const f32s = (binding: number) => (vec4(binding) ? 'vec4<f32>' : 'f32');
  for (const [k, t] of operands.entries()) {
    lines.push(`@group(0) @binding(${k}) var<storage, read> in${k}: array<${t.dtype === 'f32' ? f32s(k) : elementType(t)}>;`);
    bindings.push({ binding: k, access: 'read' });
  }
  const outType = output === 'f32' ? f32s(operands.length) : elementType({ shape: [], dtype: output });
  lines.push(`@group(0) @binding(${operands.length}) var<storage, read_write> out: array<${outType}>;`);
  bindings.push({ binding: operands.length, access: 'read_write' });
  return { wgsl: lines.join('\n'), bindings };
}

/**
 * The header comment naming the kernel, its op, operand and result types, and for a fused op
 * the ops it fuses. It names no graph node, so nodes with the same op and shapes produce the
 * same source and share one kernel.
 */
export function kernelHeader(name: string, node: KernelSubject, operands: readonly TensorType[], archetype: string, fused?: readonly string[]): string {
  const ins = operands.map((t) => `${formatShape(t.shape)}`).join(', ');
  return [
    `// mnc kernel ${name}`,
    `// op ${node.op}: ${ins} -> ${formatShape(node.type.shape)} ${node.type.dtype}`,
    ...(fused ? [`// fuses: ${fused.join(', ')}`] : []),
    `// archetype: ${archetype}`,
  ].join('\n');
}
