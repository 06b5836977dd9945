// Pointwise fusion: every maximal group of chainable pointwise ops in which each value
// but the last has exactly one consumer becomes one fusedPointwise node, so one kernel
// reads the group's inputs once and writes its result once. A value with several
// consumers, or one the plan returns, stays materialised (recomputing it in every consumer
// could cost more than it saves; the cost model decides that for the e-graph's rules).
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { isChainable, type FusedArg, type FusedInstruction } from '../ir/ops';
import { GraphCopy } from '../ir/rewrite';
import { elementCount } from '../ir/types';

export interface FusionResult {
  graph: Graph;
  map: (id: number) => number;
  /** kernels that replaced more than one op, with the ops they fuse */
  groups: { node: string; ops: string[] }[];
}

/** A one-element f32 constant, inlined into programs as a literal. */
function scalarValue(node: Node): number | undefined {
  if (node.op !== 'constant' || elementCount(node.type.shape) !== 1 || node.type.dtype !== 'f32') return undefined;
  return attrsOf(node, 'constant').values[0];
}

/**
 * Most operands one fused kernel reads: with its output that is 8 storage bindings, what
 * every WebGPU device offers (maxStorageBuffersPerShaderStage). A longer chain of ops with
 * distinct inputs (a training step's check adds one value per parameter) becomes several
 * kernels instead of one that no device with default limits could load.
 */
export const MAX_FUSED_OPERANDS = 7;

export function fusePointwise(graph: Graph, roots: readonly number[]): FusionResult {
  const consumers = new Map<number, number>();
  for (const node of graph.nodes) for (const i of new Set(node.inputs)) consumers.set(i, (consumers.get(i) ?? 0) + 1);
  const kept = new Set([...graph.outputs.map((o) => o.node), ...roots]);
  const chainable = (n: Node) => isChainable(n.op) && n.type.dtype === 'f32' && n.inputs.every((i) => graph.nodes[i].type.dtype === 'f32');

  // group[id] = the consumer whose kernel computes node id (itself when it is a group's root)
  const group = new Map<number, number>();
  // per root, the values its group reads from outside (an upper bound: literals are inlined later)
  const reads = new Map<number, Set<number>>();
  for (let id = graph.nodes.length - 1; id >= 0; id--) {
    const node = graph.nodes[id];
    if (!chainable(node)) continue;
    const root = group.get(id) ?? id;
    group.set(id, root);
    if (root === id) reads.set(id, new Set(node.inputs));
    const outside = reads.get(root)!;
    for (const input of node.inputs) {
      const producer = graph.nodes[input];
      if (!chainable(producer) || consumers.get(input) !== 1 || kept.has(input)) continue;
      const joined = new Set(outside);
      joined.delete(input);
      for (const i of producer.inputs) joined.add(i);
      if (joined.size > MAX_FUSED_OPERANDS) continue;
      group.set(input, root);
      outside.clear();
      for (const i of joined) outside.add(i);
    }
  }

  const members = new Map<number, number[]>();
  for (const [id, root] of group) {
    const list = members.get(root);
    if (list) list.push(id);
    else members.set(root, [id]);
  }

  const copy = new GraphCopy(graph);
  const groups: FusionResult['groups'] = [];
  for (const node of graph.nodes) {
    const root = group.get(node.id);
    if (root !== undefined && root !== node.id) continue; // emitted with its root
    const list = root === undefined ? undefined : members.get(root)!.sort((a, b) => a - b);
    if (!list || list.length === 1) {
      copy.copy(node.id);
      continue;
    }
    const inGroup = new Set(list);
    const operands: number[] = [];
    const program: FusedInstruction[] = [];
    const position = new Map<number, number>();
    const argOf = (input: number, member: Node): FusedArg => {
      if (inGroup.has(input)) return { value: position.get(input)! };
      const scalar = scalarValue(graph.nodes[input]);
      // a literal has shape []: inline a [1, 1] constant only where a partner that is not
      // a literal has at least its rank, so the member keeps its shape (x[3] + c[1, 1] is [1, 3])
      const rank = graph.nodes[input].type.shape.length;
      const partners = member.inputs.filter((i) => i !== input && scalarValue(graph.nodes[i]) === undefined);
      const partnerRank = Math.max(0, ...partners.map((i) => graph.nodes[i].type.shape.length));
      if (scalar !== undefined && Number.isFinite(scalar) && rank <= partnerRank) return { scalar };
      let k = operands.indexOf(input);
      if (k < 0) k = operands.push(input) - 1;
      return { operand: k };
    };
    for (const id of list) {
      const member = graph.nodes[id];
      const attrs = Object.keys(member.attrs).length > 0 ? { attrs: member.attrs } : {};
      program.push({ op: member.op, args: member.inputs.map((i) => argOf(i, member)), ...attrs });
      position.set(id, program.length - 1);
    }
    if (operands.length === 0) {
      // a group of constants only: nothing to read, so no kernel to fuse into
      for (const id of list) copy.copy(id);
      continue;
    }
    const fused = copy.emit('fusedPointwise', operands.map((i) => copy.of(i)), { program }, node.loc);
    copy.set(node.id, fused);
    groups.push({ node: fused.name, ops: program.map((p) => p.op) });
  }
  const { graph: fusedGraph, map } = copy.finish();
  return { graph: fusedGraph, map, groups };
}
