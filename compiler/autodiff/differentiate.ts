// Reverse-mode autodiff over the IR: walks the graph backwards from a scalar loss and
// records the backward pass into the same graph with each op's gradient rule (kept in the
// op table, beside the op). A value used several times gets the sum of its gradients.
import { CompileError } from '../ir/errors';
import type { Graph, Tensor } from '../ir/graph';
import { opDef } from '../ir/ops';
import { sameShape } from '../ir/shape';
import { elementCount, formatShape } from '../ir/types';

/**
 * Appends dL/dx for every node in `wrt` to the graph and returns them by node id. Nodes in
 * `wrt` that the loss does not depend on are absent from the result.
 */
export function differentiate(graph: Graph, loss: Tensor, wrt: readonly number[]): Map<number, Tensor> {
  const lossNode = graph.nodes[loss.id];
  if (elementCount(lossNode.type.shape) !== 1 || lossNode.type.dtype !== 'f32') {
    throw new CompileError(
      'autodiff',
      `the loss '${lossNode.name}' must be one f32 value; it has shape ${formatShape(lossNode.type.shape)} (reduce it with g.meanAll or g.sum)`,
      lossNode.loc,
      lossNode.op,
    );
  }

  // Gradients flow only through nodes that lie between a wrt node and the loss.
  const dependsOnWrt = new Set<number>(wrt);
  for (const node of graph.nodes.slice(0, loss.id + 1)) {
    if (node.inputs.some((i) => dependsOnWrt.has(i))) dependsOnWrt.add(node.id);
  }
  if (!dependsOnWrt.has(loss.id)) return new Map();

  const pending = new Map<number, Tensor[]>();
  const contribute = (id: number, g: Tensor) => {
    const list = pending.get(id);
    if (list) list.push(g);
    else pending.set(id, [g]);
  };
  contribute(loss.id, graph.constant(new Float32Array(elementCount(lossNode.type.shape)).fill(1), lossNode.type.shape, `${lossNode.name}.seed`));

  const gradients = new Map<number, Tensor>();
  const wanted = new Set(wrt);
  for (let id = loss.id; id >= 0; id--) {
    const parts = pending.get(id);
    if (!parts || !dependsOnWrt.has(id)) continue;
    pending.delete(id);
    const node = graph.nodes[id];
    const dy = graph.at(node.loc, () => parts.reduce((sum, g) => graph.add(sum, g)));
    if (wanted.has(id)) gradients.set(id, dy);
    if (node.inputs.length === 0) continue;

    const def = opDef(node.op);
    if (!def.grad) {
      throw new CompileError(
        'autodiff',
        `${node.op} '${node.name}' has no gradient rule, and the loss depends on a trainable parameter through it`,
        node.loc,
        node.op,
      );
    }
    const inputs = node.inputs.map((i) => graph.tensor(i));
    const grads = graph.at(node.loc, () => def.grad!({ g: graph, inputs, output: graph.tensor(id), dy, attrs: node.attrs }));
    node.inputs.forEach((input, k) => {
      const g = grads[k];
      if (!g || !dependsOnWrt.has(input)) return;
      const want = graph.nodes[input].type.shape;
      if (!sameShape(g.shape, want)) {
        // a wrong rule in the op table, not a user error: say which one
        throw new CompileError('autodiff', `gradient rule of ${node.op} gave ${formatShape(g.shape)} for operand ${k + 1} of shape ${formatShape(want)}`, node.loc, node.op);
      }
      contribute(input, g);
    });
  }
  return gradients;
}
