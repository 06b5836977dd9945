// Rebuilding a graph: passes that change a graph (the optimizer's extraction, pointwise
// fusion) copy it into a fresh Graph node by node, deciding per node what to emit. This
// keeps the Graph append-only and every node shape-checked by the builder again.
import { Graph, type Tensor } from './graph';
import type { OpName } from './ops';

export class GraphCopy {
  readonly target: Graph;
  private readonly emitted = new Map<number, Tensor>();

  constructor(readonly source: Graph) {
    this.target = new Graph(source.name, { locate: () => undefined });
  }

  /** The copy of a source node (emitted earlier). */
  of(id: number): Tensor {
    const t = this.emitted.get(id);
    if (!t) throw new Error(`GraphCopy: node ${id} (${this.source.nodes[id]?.name}) used before it was emitted`);
    return t;
  }

  has(id: number): boolean {
    return this.emitted.has(id);
  }

  /** Records that source node `id` is computed by `t` in the copy. */
  set(id: number, t: Tensor): Tensor {
    this.emitted.set(id, t);
    return t;
  }

  /** Emits a source node unchanged (operands mapped; leaves keep their names). */
  copy(id: number): Tensor {
    const node = this.source.nodes[id];
    const leaf = node.inputs.length === 0;
    return this.set(id, this.emit(node.op, node.inputs.map((i) => this.of(i)), node.attrs, node.loc, leaf ? node.name : undefined));
  }

  /** Emits a new node located at `loc` (the source node it stands for). */
  emit(op: OpName, operands: readonly Tensor[], attrs: object, loc = undefined as Graph['nodes'][number]['loc'], name?: string): Tensor {
    return this.target.at(loc, () => this.target.apply(op, operands, attrs, name));
  }

  /** Copies the outputs; returns the graph and the source → copy id map (-1: not emitted). */
  finish(): { graph: Graph; map: (id: number) => number } {
    for (const o of this.source.outputs) this.target.output(o.name, this.of(o.node), o.hostDtype ? { hostDtype: o.hostDtype } : {});
    return { graph: this.target, map: (id) => this.emitted.get(id)?.id ?? -1 };
  }
}

/**
 * Names no node of `graph` has, for the steps a pass adds beside the nodes it keeps under
 * their own names: `base`, else `base_2`, `base_3`, ...
 */
export function freshNames(graph: Graph): (base: string) => string {
  const names = new Set(graph.nodes.map((n) => n.name));
  return (base) => {
    let name = base;
    for (let k = 2; names.has(name); k++) name = `${base}_${k}`;
    names.add(name);
    return name;
  };
}
