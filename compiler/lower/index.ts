// Lowering: Graph → the ordered kernel steps that compute it. Each node's op-table hook
// names its archetype; this file routes nodes to archetypes, resolves buffer aliases
// (reshape) and gives every distinct kernel source one readable name.
import { CompileError } from '../ir/errors';
import type { Graph, Node } from '../ir/graph';
import { opDef, ShapeRuleError } from '../ir/ops';
import { broadcastStrides } from '../ir/shape';
import { lowerAttention } from './attention';
import { lowerAxis } from './axis';
import { shapeTag, type KernelStep, type LoweredKernel } from './kernel';
import { lowerMatmul } from './matmul';
import { lowerMatmulInt8 } from './matmul-int8';
import { lowerPiecewise, lowerPointwise, singleOpChain } from './pointwise';
import { lowerUpdate } from './update';

export type { KernelStep, LoweredKernel } from './kernel';

export interface LoweredGraph {
  steps: KernelStep[];
  /** for each node, the node whose buffer holds its value (itself unless aliased) */
  storage: number[];
}

function lowerNode(graph: Graph, node: Node, name: string): { kernel: LoweredKernel; workgroups: [number, number, number] } {
  const def = opDef(node.op);
  const operands = node.inputs.map((i) => graph.nodes[i].type);
  const lowering = def.lowering;
  const broadcastViews = () => operands.map((t) => ({ strides: broadcastStrides(t.shape, node.type.shape), offset: 0 }));
  switch (lowering.archetype) {
    case 'pointwise':
      return lowerPointwise(node, operands, name, {
        chain: (x) => singleOpChain(node.op, lowering.expr(x, node.attrs), lowering.helpers ?? []),
        views: lowering.views ? lowering.views(operands, node.attrs, node.type) : broadcastViews(),
      });
    case 'pointwiseChain':
      return lowerPointwise(node, operands, name, { chain: (x) => lowering.chain(x, node.attrs), views: broadcastViews() });
    case 'piecewise':
      return lowerPiecewise(node, operands, name, lowering.views(operands, node.attrs, node.type));
    case 'axis':
      return lowerAxis(node, operands, name, lowering.program(operands, node.attrs));
    case 'matmul':
      return lowerMatmul(node, operands, name, lowering.form?.(operands, node.attrs, node.type));
    case 'attention':
      return lowerAttention(node, operands, name);
    case 'matmulInt8':
      return lowerMatmulInt8(node, operands, name);
    case 'update':
      return lowerUpdate(node, operands, name, { writes: def.writes ?? [], body: (x, hyper) => lowering.body(x, hyper, node.attrs) });
    case 'none':
    case 'alias':
      throw new Error(`lowerNode: ${node.op} has no kernel`);
  }
}

/**
 * Lowers the nodes in `live` (default: all) in node order. Update ops compute in place:
 * their value lives in operand 0's buffer and they bind no separate output.
 */
export function lowerGraph(graph: Graph, live?: ReadonlySet<number>): LoweredGraph {
  const storage: number[] = [];
  const steps: KernelStep[] = [];
  // identical sources share one kernel; a name is given per distinct source
  const bySource = new Map<string, LoweredKernel>();
  const usedNames = new Map<string, number>();
  // nodes alike for lowering (op, attributes, types) give the same kernel: a model's repeated
  // layers are lowered once, not once per layer (most of this stage's time otherwise)
  const byLowering = new Map<string, { kernel: LoweredKernel; workgroups: [number, number, number] }>();
  const lower = (node: Node, name: string) => {
    try {
      return lowerNode(graph, node, name);
    } catch (e) {
      if (e instanceof ShapeRuleError) throw new CompileError('shape', `${node.op}: ${e.message}`, node.loc, node.op);
      throw e;
    }
  };

  for (const node of graph.nodes) {
    const archetype = opDef(node.op).lowering.archetype;
    if (live && !live.has(node.id)) {
      storage.push(node.id);
      continue;
    }
    if (archetype === 'none') {
      storage.push(node.id);
      continue;
    }
    if (archetype === 'alias') {
      storage.push(storage[node.inputs[0]]);
      continue;
    }
    const inPlace = archetype === 'update';
    storage.push(inPlace ? storage[node.inputs[0]] : node.id);
    const key = loweringKey(graph, node);
    let done = key === undefined ? undefined : byLowering.get(key);
    if (!done) {
      const base = `${node.op}_${shapeTag(node.type.shape)}`;
      const lowered = lower(node, base);
      let kernel = bySource.get(lowered.kernel.wgsl);
      if (!kernel) {
        // same op and output shape but another source (other operand shapes): next free name
        const seen = usedNames.get(base) ?? 0;
        usedNames.set(base, seen + 1);
        kernel = seen === 0 ? lowered.kernel : lower(node, `${base}_${seen}`).kernel;
        bySource.set(lowered.kernel.wgsl, kernel);
      }
      done = { kernel, workgroups: lowered.workgroups };
      if (key !== undefined) byLowering.set(key, done);
    }
    const operands = node.inputs.map((i) => storage[i]);
    steps.push({ kernel: done.kernel, operands: inPlace ? operands : [...operands, node.id], workgroups: [...done.workgroups], node: node.id });
  }
  return { steps, storage };
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
