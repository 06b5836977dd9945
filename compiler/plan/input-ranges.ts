// Index ranges of integer inputs: an input the graph uses only as class labels (oneHot, so
// also crossEntropy) accepts 0 to classes - 1, and only as embedding ids (and their
// gradient's) 0 to rows - 1, from -rows where negative ids count from the end; anything else
// gives a silent zero row. The plan records the range on the input (TensorBinding.range) so
// runtimes can refuse it.
import { attrsOf, type Graph } from '../ir/graph';

/** Ops that move or copy values without reading them as numbers. */
const VIEWS = new Set(['reshape', 'transpose', 'slice', 'broadcast']);

/** Input name → the values it may hold, for integer inputs whose every use is an index. */
export function inputRanges(graph: Graph): Map<string, { min: number; max: number }> {
  const users = new Map<number, number[]>();
  for (const node of graph.nodes) for (const i of node.inputs) users.set(i, [...(users.get(i) ?? []), node.id]);
  const ranges = new Map<string, { min: number; max: number }>();
  for (const input of graph.nodes) {
    if (input.op !== 'input' || input.type.dtype === 'f32' || input.type.dtype === 'f16') continue;
    let [min, max] = [-Infinity, Infinity];
    const within = (lo: number, hi: number) => {
      [min, max] = [Math.max(min, lo), Math.min(max, hi)];
    };
    let indexed = false;
    const pending = [input.id];
    let onlyIndices = true;
    while (pending.length > 0 && onlyIndices) {
      const value = pending.pop()!;
      for (const user of users.get(value) ?? []) {
        const node = graph.nodes[user];
        if (VIEWS.has(node.op)) pending.push(user);
        else if (node.op === 'oneHot') {
          indexed = true;
          within(0, attrsOf(node, 'oneHot').classes - 1);
        } else if ((node.op === 'embedding' || node.op === 'embeddingBackward') && node.inputs[1] === value && node.inputs[0] !== value) {
          indexed = true;
          const { fromEnd } = attrsOf(node, 'embedding', 'embeddingBackward');
          const rows = node.op === 'embedding' ? graph.nodes[node.inputs[0]].type.shape[0] : attrsOf(node, 'embeddingBackward').rows;
          within(fromEnd ? -rows : 0, rows - 1);
        } else onlyIndices = false;
      }
    }
    // u32 ids hold no negative ones to count from the end
    if (indexed && onlyIndices) ranges.set(input.name, { min: input.type.dtype === 'u32' ? Math.max(min, 0) : min, max });
  }
  return ranges;
}
