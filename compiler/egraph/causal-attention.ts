// Causal attention from its mask: an attention node whose mask is a constant holding the
// causal pattern (0 where query i sees key j ≤ i + Tk - Tq, -1e9 or less elsewhere: the
// form models write, WGSL having no -∞ literal) becomes causal attention with the scalar 0
// as its mask, so its kernels skip the hidden keys' tiles instead of scoring them and adding
// -1e9. Exact wherever -1e9 already zeroed those keys' weights, that is for scores less than
// about 1e9 apart. The e-graph's rules cannot see a constant's values, so this runs beside
// them, on the forward graph after extraction (before autodiff, so the gradient is causal too).
import { attrsOf, type Graph, type Node } from '../ir/graph';
import type { AttentionAttrs } from '../ir/ops';
import { freshNames, GraphCopy } from '../ir/rewrite';

/** Mask values at or below this hide a key. */
export const HIDDEN_KEY = -1e9;

/** Whether `mask` is a constant [.., Tq, Tk] (leading axes of size 1) holding the causal pattern. */
function isCausalMask(mask: Node, tq: number, tk: number): boolean {
  if (mask.op !== 'constant' || tk < tq) return false;
  const shape = mask.type.shape;
  if (shape.length < 2 || shape[shape.length - 2] !== tq || shape[shape.length - 1] !== tk || shape.slice(0, -2).some((d) => d !== 1)) return false;
  const { values } = attrsOf(mask, 'constant');
  for (let i = 0; i < tq; i++) {
    for (let j = 0; j < tk; j++) {
      const v = values[i * tk + j];
      if (j <= i + tk - tq ? v !== 0 : !(v <= HIDDEN_KEY)) return false;
    }
  }
  return true;
}

/** The graph with every such attention causal, and the id map; the same graph where none is. */
export function causalAttention(graph: Graph): { graph: Graph; map: (id: number) => number; rewritten: number } {
  const causal = graph.nodes.filter((n) => {
    if (n.op !== 'attention' || attrsOf(n, 'attention').causal) return false;
    const [q, k, , mask] = n.inputs.map((i) => graph.nodes[i]);
    return isCausalMask(mask, q.type.shape[q.type.shape.length - 2], k.type.shape[k.type.shape.length - 2]);
  });
  if (causal.length === 0) return { graph, map: (id) => id, rewritten: 0 };
  const rewritten = new Set(causal.map((n) => n.id));
  // masks read by nothing but the rewritten nodes are dropped with them
  const otherUses = new Set(graph.nodes.filter((n) => !rewritten.has(n.id)).flatMap((n) => n.inputs));
  const outputs = new Set(graph.outputs.map((o) => o.node));
  const unused = freshNames(graph);
  const copy = new GraphCopy(graph);
  let zero: ReturnType<GraphCopy['emit']> | undefined;
  for (const node of graph.nodes) {
    if (node.op === 'constant' && !otherUses.has(node.id) && !outputs.has(node.id) && causal.some((n) => n.inputs[3] === node.id)) continue;
    if (!rewritten.has(node.id)) {
      copy.set(node.id, copy.emit(node.op, node.inputs.map((i) => copy.of(i)), node.attrs, node.loc, node.name));
      continue;
    }
    zero ??= copy.target.constant(0, [], unused('no_mask'));
    const [q, k, v] = node.inputs.slice(0, 3).map((i) => copy.of(i));
    // a run-time key count (operand 4) stays
    const keyCount = node.inputs.slice(4).map((i) => copy.of(i));
    const attrs: AttentionAttrs = { ...attrsOf(node, 'attention'), causal: true };
    copy.set(node.id, copy.emit('attention', [q, k, v, zero, ...keyCount], attrs, node.loc, node.name));
  }
  const { graph: result, map } = copy.finish();
  return { graph: result, map, rewritten: causal.length };
}
