// Index ranges of integer inputs: an input the graph uses only as class labels (oneHot, so
// also crossEntropy) accepts 0 to classes - 1; anything else gives a silent zero row. The
// plan records the range on the input (TensorBinding.range) so runtimes can refuse it.
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
    let max = Infinity;
    let indexed = false;
    const pending = [input.id];
    let onlyIndices = true;
    while (pending.length > 0 && onlyIndices) {
      for (const user of users.get(pending.pop()!) ?? []) {
        const node = graph.nodes[user];
        if (VIEWS.has(node.op)) pending.push(user);
        else if (node.op === 'oneHot') {
          indexed = true;
          max = Math.min(max, attrsOf(node, 'oneHot').classes - 1);
        } else onlyIndices = false;
      }
    }
    if (indexed && onlyIndices) ranges.set(input.name, { min: 0, max });
  }
  return ranges;
}
