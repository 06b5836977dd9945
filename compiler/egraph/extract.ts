// Extraction: choosing one e-node per e-class so the terms rooted at given classes are
// cheapest. Tree cost counts a subterm every time it occurs (the classic bottom-up
// fixpoint); DAG cost counts each chosen class once, which is what a compiled program
// pays for a shared value (a greedy DAG extractor in the style of extraction-gym's
// "faster greedy dag", started from the tree result).
import type { EGraph, ENode, Value } from './egraph';
import { EggError } from './syntax';
import type { Table } from './table';

/** The cost of one e-node by itself (not counting its children): ≥ 0, or Infinity to exclude the e-node. */
export type CostFunction = (node: ENode, classId: number) => number;

/** The chosen e-node for every class reachable from the roots, and the total cost of the roots. */
export interface Extraction {
  readonly mode: 'tree' | 'dag';
  readonly choices: Map<number, ENode>;
  /** tree mode: the sum of the roots' tree costs; dag mode: the own cost of every chosen class, once */
  readonly cost: number;
  /** the canonical root classes, in the order given */
  readonly roots: readonly number[];
}

/** How to extract: tree or DAG cost, the per-node cost function, and DAG mode's memory bound. */
export interface ExtractOptions {
  mode?: 'tree' | 'dag';
  /** default: the constructor's `:cost`, else 1 */
  cost?: CostFunction;
  /**
   * DAG mode keeps a bitset of classes per class (classes² / 8 bytes); past this many
   * classes it falls back to the tree result (reported as mode `tree`). Default 30,000.
   */
  dagClassLimit?: number;
}

/**
 * Extracts the cheapest terms for `roots` (e-class ids).
 *
 * ```ts
 * const ex = extract(eg, [root], { mode: 'dag' });
 * ex.choices.get(eg.find(root));   // { head: 'Add', args: [c3, c3] }
 * formatTerm(eg, ex, root);        // "(Add (Mul x y) (Mul x y))"
 * ```
 */
export function extract(eg: EGraph, roots: readonly number[], options: ExtractOptions = {}): Extraction {
  eg.rebuild();
  const g = new NodeGraph(eg, options.cost);
  const rootIds = roots.map((r) => eg.find(r));
  const rootIdx = rootIds.map((r) => {
    const i = g.classIndex[r]!;
    if (i < 0) throw new EggError(`e-class ${r} has no e-nodes to extract`);
    return i;
  });
  const tree = treeChoice(g);
  for (const [k, r] of rootIdx.entries()) {
    if (tree.best[r]! < 0) {
      throw new EggError(`e-class ${rootIds[k]} has no finite term to extract (every e-node of it is on a cycle)`);
    }
  }
  if (options.mode !== 'dag') {
    let cost = 0;
    for (const r of rootIdx) cost += tree.cost[r]!;
    return { mode: 'tree', choices: g.choices(tree.best, rootIdx), cost, roots: rootIds };
  }
  const treeDag = g.dagCost(tree.best, rootIdx)!;
  if (g.classCount > (options.dagClassLimit ?? 30_000)) {
    return { mode: 'tree', choices: g.choices(tree.best, rootIdx), cost: treeDag, roots: rootIds };
  }
  const best = greedyDag(g, tree.best);
  shareSubterms(g, best, rootIdx);
  const dag = g.dagCost(best, rootIdx);
  const pick = dag === undefined || dag > treeDag ? tree.best : best;
  return { mode: 'dag', choices: g.choices(pick, rootIdx), cost: Math.min(dag ?? Infinity, treeDag), roots: rootIds };
}

/** Tree extraction (each occurrence of a subterm counted). */
export function extractTree(eg: EGraph, roots: readonly number[], cost?: CostFunction): Extraction {
  return extract(eg, roots, { mode: 'tree', cost });
}

/** DAG-aware extraction (shared subterms counted once). */
export function extractDag(eg: EGraph, roots: readonly number[], cost?: CostFunction): Extraction {
  return extract(eg, roots, { mode: 'dag', cost });
}

/** The DAG cost of a choice (each reachable class's chosen node counted once); for comparing extractions. */
export function dagCostOf(eg: EGraph, ex: Extraction, cost?: CostFunction): number {
  const own = cost ?? defaultCost(eg);
  const seen = new Set<number>();
  let total = 0;
  const stack = [...ex.roots];
  while (stack.length > 0) {
    const c = stack.pop()!;
    if (seen.has(c)) continue;
    seen.add(c);
    const node = ex.choices.get(c)!;
    total += own(node, c);
    stack.push(...childClasses(eg, node));
  }
  return total;
}

/** The extracted term as a tree; a class shared in the DAG is the same object at each use. */
export interface Term {
  readonly head: string;
  readonly args: readonly (Term | Value)[];
  readonly classId: number;
}

/** Builds the term of `classId` from an extraction's choices (iteratively: deep terms are fine). */
export function termOf(eg: EGraph, ex: Extraction, classId: number): Term {
  const memo = new Map<number, Term>();
  const root = eg.find(classId);
  const stack: [number, boolean][] = [[root, false]];
  const onPath = new Set<number>();
  while (stack.length > 0) {
    const [c, expanded] = stack.pop()!;
    if (memo.has(c)) continue;
    const node = ex.choices.get(c);
    if (node === undefined) throw new EggError(`e-class ${c} was not extracted`);
    const t = eg.table(node.head)!;
    if (!expanded) {
      if (onPath.has(c)) throw new EggError(`the extracted choice is cyclic at e-class ${c}`);
      onPath.add(c);
      stack.push([c, true]);
      node.args.forEach((a, i) => {
        if (eg.isClassSort(t.argSorts[i]!) && !memo.has(a as number)) stack.push([a as number, false]);
      });
      continue;
    }
    onPath.delete(c);
    const args = node.args.map((a, i) => (eg.isClassSort(t.argSorts[i]!) ? memo.get(a as number)! : a));
    memo.set(c, { head: node.head, args, classId: c });
  }
  return memo.get(root)!;
}

/** The extracted term of `classId` as an s-expression, e.g. `(Add (Num 1) (Var "x"))`. */
export function formatTerm(eg: EGraph, ex: Extraction, classId: number): string {
  const term = termOf(eg, ex, classId);
  const memo = new Map<Term, string>();
  const stack: [Term, boolean][] = [[term, false]];
  while (stack.length > 0) {
    const [t, expanded] = stack.pop()!;
    if (memo.has(t)) continue;
    if (!expanded) {
      stack.push([t, true]);
      for (const a of t.args) if (typeof a === 'object' && !memo.has(a)) stack.push([a, false]);
      continue;
    }
    const table = eg.table(t.head)!;
    const parts = t.args.map((a, i) => (typeof a === 'object' ? memo.get(a)! : formatPrimitive(a, table.argSorts[i]!)));
    memo.set(t, parts.length === 0 ? `(${t.head})` : `(${t.head} ${parts.join(' ')})`);
  }
  return memo.get(term)!;
}

/** A primitive as egglog's reader reads it back (f64 always with a point or exponent). */
export function formatPrimitive(v: Value, sort: string): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'boolean') return String(v);
  if (sort === 'f64') {
    if (Number.isNaN(v)) return 'NaN';
    if (v === Infinity) return 'inf';
    if (v === -Infinity) return '-inf';
    const s = String(v);
    return /[.eE]/.test(s) ? s : `${s}.0`;
  }
  return String(v);
}

// ───────────────────────────── internals ─────────────────────────────

function defaultCost(eg: EGraph): CostFunction {
  return (node) => eg.table(node.head)?.cost ?? 1;
}

function childClasses(eg: EGraph, node: ENode): number[] {
  const t = eg.table(node.head)!;
  const out: number[] = [];
  node.args.forEach((a, i) => {
    if (eg.isClassSort(t.argSorts[i]!)) out.push(a as number);
  });
  return out;
}

/**
 * Every live e-node as flat typed arrays: its class, own cost and child classes. Classes are
 * renumbered densely (`classIndex`: canonical id → index or -1, `classIds` back); parents
 * (the nodes having a class among their children, each once) are in CSR form.
 */
class NodeGraph {
  readonly classIndex: Int32Array;
  readonly classIds: number[] = [];
  readonly nodeClass: Int32Array;
  readonly nodeCost: Float64Array;
  /** children of node n: childList[childStart[n] .. childStart[n+1]), with repeats */
  readonly childStart: Int32Array;
  readonly childList: Int32Array;
  readonly nodeTable: Table[] = [];
  readonly nodeRow: Int32Array;
  /** parents of class c: parentList[parentStart[c] .. parentStart[c+1]) */
  readonly parentStart: Int32Array;
  readonly parentList: Int32Array;
  /** distinct child classes per node */
  readonly distinctChildren: Int32Array;

  constructor(
    private readonly eg: EGraph,
    cost: CostFunction | undefined,
  ) {
    const uf = eg.unionFind;
    let nodes = 0;
    let edges = 0;
    for (const t of eg.tables) {
      if (t.kind !== 'constructor') continue;
      nodes += t.liveCount;
      edges += t.liveCount * t.classColumns.filter((c) => c < t.arity).length;
    }
    this.classIndex = new Int32Array(uf.size).fill(-1);
    this.nodeClass = new Int32Array(nodes);
    this.nodeCost = new Float64Array(nodes);
    this.childStart = new Int32Array(nodes + 1);
    this.childList = new Int32Array(edges);
    this.nodeRow = new Int32Array(nodes);
    this.distinctChildren = new Int32Array(nodes);
    const dense = (id: number): number => {
      const c = uf.find(id);
      let i = this.classIndex[c]!;
      if (i < 0) {
        i = this.classIds.length;
        this.classIndex[c] = i;
        this.classIds.push(c);
      }
      return i;
    };
    let n = 0;
    let e = 0;
    for (const t of eg.tables) {
      if (t.kind !== 'constructor') continue;
      const cols = t.classColumns.filter((c) => c < t.arity);
      for (let r = 0; r < t.rowCount; r++) {
        if (t.live[r] === 0) continue;
        const cls = dense(t.output(r));
        const own = cost ? cost(eg.enode(t, r), this.classIds[cls]!) : t.cost;
        // Infinity marks an e-node the cost model refuses (e.g. invalid at its class's shape): never chosen
        if (own === Infinity) continue;
        if (!(own >= 0)) throw new EggError(`the cost of a ${t.name} e-node must be a number ≥ 0 or Infinity, found ${own}`);
        this.nodeClass[n] = cls;
        this.nodeTable.push(t);
        this.nodeRow[n] = r;
        this.nodeCost[n] = own;
        this.childStart[n] = e;
        for (const c of cols) this.childList[e++] = dense(t.get(r, c));
        n++;
      }
    }
    this.childStart[n] = e;
    if (n < nodes) {
      // e-nodes the cost model excluded leave the tails unused
      this.nodeClass = this.nodeClass.slice(0, n);
      this.nodeCost = this.nodeCost.slice(0, n);
      this.nodeRow = this.nodeRow.slice(0, n);
      this.distinctChildren = this.distinctChildren.slice(0, n);
      this.childStart = this.childStart.slice(0, n + 1);
    }
    // parents, counting each distinct child class once per node
    const C = this.classIds.length;
    const counts = new Int32Array(C + 1);
    const mark = new Int32Array(C).fill(-1);
    for (let m = 0; m < n; m++) {
      for (let k = this.childStart[m]!; k < this.childStart[m + 1]!; k++) {
        const c = this.childList[k]!;
        if (mark[c] === m) continue;
        mark[c] = m;
        counts[c]!++;
        this.distinctChildren[m]!++;
      }
    }
    this.parentStart = new Int32Array(C + 1);
    for (let c = 0; c < C; c++) this.parentStart[c + 1] = this.parentStart[c]! + counts[c]!;
    this.parentList = new Int32Array(this.parentStart[C]!);
    const fill = this.parentStart.slice(0, C);
    mark.fill(-1);
    for (let m = 0; m < n; m++) {
      for (let k = this.childStart[m]!; k < this.childStart[m + 1]!; k++) {
        const c = this.childList[k]!;
        if (mark[c] === m) continue;
        mark[c] = m;
        this.parentList[fill[c]!++] = m;
      }
    }
  }

  get nodeCount(): number {
    return this.nodeClass.length;
  }

  get classCount(): number {
    return this.classIds.length;
  }

  /** The e-node objects of the choices reachable from `roots` (dense indices), keyed by class id. */
  choices(best: Int32Array, roots: readonly number[]): Map<number, ENode> {
    const out = new Map<number, ENode>();
    const seen = new Uint8Array(this.classCount);
    const stack = [...roots];
    while (stack.length > 0) {
      const c = stack.pop()!;
      if (seen[c]) continue;
      seen[c] = 1;
      const n = best[c]!;
      out.set(this.classIds[c]!, this.eg.enode(this.nodeTable[n]!, this.nodeRow[n]!));
      for (let k = this.childStart[n]!; k < this.childStart[n + 1]!; k++) stack.push(this.childList[k]!);
    }
    return out;
  }

  /** The DAG cost of a choice from `roots`, or undefined if it is cyclic or incomplete. */
  dagCost(best: Int32Array, roots: readonly number[]): number | undefined {
    // 0 = unseen, 1 = on the current path, 2 = done
    const state = new Uint8Array(this.classCount);
    let total = 0;
    for (const root of roots) {
      const stack: [number, number][] = [[root, -1]];
      while (stack.length > 0) {
        const top = stack[stack.length - 1]!;
        const c = top[0];
        const n = best[c]!;
        if (n < 0) return undefined;
        if (top[1] === -1) {
          if (state[c] === 2) {
            stack.pop();
            continue;
          }
          state[c] = 1;
          top[1] = this.childStart[n]!;
        }
        if (top[1] < this.childStart[n + 1]!) {
          const child = this.childList[top[1]++]!;
          if (state[child] === 1) return undefined;
          if (state[child] === 0) stack.push([child, -1]);
          continue;
        }
        state[c] = 2;
        total += this.nodeCost[n]!;
        stack.pop();
      }
    }
    return total;
  }
}

/**
 * Tree costs by Knuth's generalisation of Dijkstra's algorithm: a node's cost (own + its
 * children's) is known once all its child classes are settled; the cheapest known node
 * settles its class. Every node is priced once, and cycles are never entered. Classes left
 * unsettled have no finite term.
 */
function treeChoice(g: NodeGraph): { best: Int32Array; cost: Float64Array } {
  const C = g.classCount;
  const cost = new Float64Array(C).fill(Infinity);
  const best = new Int32Array(C).fill(-1);
  const pending = Int32Array.from(g.distinctChildren);
  const heap = new CostHeap();
  const price = (n: number): number => {
    let total = g.nodeCost[n]!;
    for (let k = g.childStart[n]!; k < g.childStart[n + 1]!; k++) total += cost[g.childList[k]!]!;
    return total;
  };
  for (let n = 0; n < g.nodeCount; n++) if (pending[n] === 0) heap.push(price(n), n);
  while (heap.size > 0) {
    const total = heap.topCost();
    const n = heap.pop();
    const c = g.nodeClass[n]!;
    if (best[c]! >= 0) continue;
    best[c] = n;
    cost[c] = total;
    for (let k = g.parentStart[c]!; k < g.parentStart[c + 1]!; k++) {
      const p = g.parentList[k]!;
      if (--pending[p]! === 0 && best[g.nodeClass[p]!]! < 0) heap.push(price(p), p);
    }
  }
  return { best, cost };
}

/** A binary min-heap of (cost, node). */
class CostHeap {
  private costs: number[] = [];
  private items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  topCost(): number {
    return this.costs[0]!;
  }

  push(cost: number, item: number): void {
    const costs = this.costs;
    const items = this.items;
    let i = items.length;
    costs.push(cost);
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!(costs[parent]! > cost)) break;
      costs[i] = costs[parent]!;
      items[i] = items[parent]!;
      i = parent;
    }
    costs[i] = cost;
    items[i] = item;
  }

  pop(): number {
    const costs = this.costs;
    const items = this.items;
    const top = items[0]!;
    const lastCost = costs.pop()!;
    const lastItem = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && costs[child + 1]! < costs[child]!) child++;
        if (!(costs[child]! < lastCost)) break;
        costs[i] = costs[child]!;
        items[i] = items[child]!;
        i = child;
      }
      costs[i] = lastCost;
      items[i] = lastItem;
    }
    return top;
  }
}

/**
 * Greedy DAG extraction. Each class keeps the set of classes its current choice depends on
 * (a bitset, itself included) and that set's total own cost; a node's set is the union of
 * its children's sets plus its own class, so shared classes count once. A class takes a node
 * whose total beats its current one, and its parents are re-examined. Nodes whose children
 * already depend on their class would close a cycle and are skipped. Starts from the tree
 * choice, so it only ever moves to choices that look cheaper as DAGs.
 */
function greedyDag(g: NodeGraph, treeBest: Int32Array): Int32Array {
  const C = g.classCount;
  const words = (C + 31) >>> 5;
  const best = Int32Array.from(treeBest);
  const sets: (Uint32Array | undefined)[] = new Array(C);
  const totals = new Float64Array(C).fill(Infinity);
  const ownCost = new Float64Array(C);

  const scratch = new Uint32Array(words);
  /**
   * Fills `scratch` with node n's set; returns its total, or -1 if unavailable, cyclic or sure
   * to cost `bound` or more. The set holds its largest child's, so that child's total plus the
   * node's own cost is a lower bound (costs are never negative and rounding is monotone): most
   * re-examined nodes are refused on it without building a set.
   */
  const nodeSet = (n: number, bound: number): number => {
    const c = g.nodeClass[n]!;
    const from = g.childStart[n]!;
    const to = g.childStart[n + 1]!;
    // start from the child with the largest total, then add the others' new members
    let big = -1;
    for (let k = from; k < to; k++) {
      const child = g.childList[k]!;
      const s = sets[child];
      if (s === undefined) return -1;
      if ((s[c >>> 5]! & (1 << (c & 31))) !== 0) return -1;
      if (big < 0 || totals[child]! > totals[big]!) big = child;
    }
    if ((big < 0 ? 0 : totals[big]!) + g.nodeCost[n]! >= bound) return -1;
    let total: number;
    if (big < 0) {
      scratch.fill(0);
      total = 0;
    } else {
      scratch.set(sets[big]!);
      total = totals[big]!;
      for (let k = from; k < to; k++) {
        const child = g.childList[k]!;
        if (child === big) continue;
        const s = sets[child]!;
        for (let w = 0; w < words; w++) {
          const fresh = s[w]! & ~scratch[w]!;
          if (fresh === 0) continue;
          scratch[w]! |= fresh;
          let bits = fresh;
          while (bits !== 0) {
            const low = bits & -bits;
            total += ownCost[(w << 5) + (31 - Math.clz32(low))]!;
            bits ^= low;
          }
        }
      }
    }
    scratch[c >>> 5]! |= 1 << (c & 31);
    return total + g.nodeCost[n]!;
  };

  // the tree choice's sets, children first
  const order: number[] = [];
  const state = new Uint8Array(C);
  for (let root = 0; root < C; root++) {
    if (best[root]! < 0 || state[root] !== 0) continue;
    const stack: [number, number][] = [[root, -1]];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const c = top[0];
      const n = best[c]!;
      if (top[1] === -1) {
        state[c] = 1;
        top[1] = g.childStart[n]!;
      }
      if (top[1] < g.childStart[n + 1]!) {
        const child = g.childList[top[1]++]!;
        if (state[child] === 0 && best[child]! >= 0) stack.push([child, -1]);
        continue;
      }
      state[c] = 2;
      order.push(c);
      stack.pop();
    }
  }
  for (const c of order) {
    const n = best[c]!;
    ownCost[c] = g.nodeCost[n]!;
    const total = nodeSet(n, Infinity);
    if (total < 0) continue; // a zero-cost cycle in the tree choice: left for the worklist
    sets[c] = Uint32Array.from(scratch);
    totals[c] = total;
  }

  // improve: every node that is not already its class's choice, then the parents of every
  // class that changed (a class with one e-node only changes through its children). Nodes are
  // taken children first (by their class's place in the tree choice's post-order), so a change
  // reaches the roots in one sweep instead of one level per pass (the level-by-level passes
  // ran out of budget before settling on the SmolLM2 training graph; this settles in under one
  // evaluation per e-node). Within a class, e-nodes go in their order, so that repeated layers
  // break ties between equal costs alike and share kernels.
  const rank = new Float64Array(C).fill(C);
  order.forEach((c, i) => (rank[c] = i));
  const queued = new Uint8Array(g.nodeCount);
  const queue = new CostHeap();
  for (let n = 0; n < g.nodeCount; n++) {
    const c = g.nodeClass[n]!;
    if (best[c] !== n || sets[c] === undefined) {
      queued[n] = 1;
      queue.push(rank[c]! * g.nodeCount + n, n);
    }
  }
  let budget = 50 * g.nodeCount + 1000;
  while (queue.size > 0 && budget-- > 0) {
    const n = queue.pop();
    queued[n] = 0;
    const c = g.nodeClass[n]!;
    const total = nodeSet(n, totals[c]!);
    if (total < 0 || !(total < totals[c]!)) continue;
    totals[c] = total;
    best[c] = n;
    ownCost[c] = g.nodeCost[n]!;
    const s = sets[c];
    if (s === undefined) sets[c] = Uint32Array.from(scratch);
    else s.set(scratch);
    for (let k = g.parentStart[c]!; k < g.parentStart[c + 1]!; k++) {
      const p = g.parentList[k]!;
      if (queued[p] === 0) {
        queued[p] = 1;
        queue.push(rank[g.nodeClass[p]!]! * g.nodeCount + p, p);
      }
    }
  }
  return best;
}

/**
 * Local search over the whole DAG after greedyDag, which prices each class's choice on its own
 * subterms: a fused e-node that hides a product the rest of the graph needs anyway (a SwiGLU
 * folded into the up projection, where the backward pass still reads the plain product) looks
 * cheaper to its class and makes the graph compute that product twice. Here a class moves to
 * another e-node when the whole choice gets cheaper: reference counts over the chosen DAG give
 * the cost of the classes a move makes live and of those it leaves dead. Classes are visited in
 * order, twice at most, within a budget of reference changes; moves that would close a cycle are
 * refused. `best` is changed in place.
 */
function shareSubterms(g: NodeGraph, best: Int32Array, roots: readonly number[]): void {
  const C = g.classCount;
  const refs = new Int32Array(C);
  const stack: number[] = [];
  let delta = 0;
  // a budget of reference changes, so a graph whose moves each touch much of it stays linear-ish
  // (counted, not timed: the same graph gives the same choice on any machine)
  let work = 50 * g.nodeCount + 1000;
  // one more (or one fewer) reference to class c; a class that becomes live (dead) adds
  // (removes) its chosen e-node's cost and references its children (iteratively: chains are long)
  const change = (c0: number, by: 1 | -1) => {
    stack.push(c0);
    while (stack.length > 0) {
      const c = stack.pop()!;
      work--;
      refs[c] += by;
      if (refs[c] !== (by === 1 ? 1 : 0)) continue;
      const n = best[c]!;
      delta += by * g.nodeCost[n]!;
      for (let k = g.childStart[n]!; k < g.childStart[n + 1]!; k++) stack.push(g.childList[k]!);
    }
  };
  const children = (n: number, by: 1 | -1) => {
    for (let k = g.childStart[n]!; k < g.childStart[n + 1]!; k++) change(g.childList[k]!, by);
  };
  for (const r of roots) change(r, 1);
  let total = delta;

  // class → its e-nodes
  const nodeStart = new Int32Array(C + 1);
  for (let n = 0; n < g.nodeCount; n++) nodeStart[g.nodeClass[n]! + 1]++;
  for (let c = 0; c < C; c++) nodeStart[c + 1] += nodeStart[c]!;
  const nodesOf = new Int32Array(g.nodeCount);
  const fill = nodeStart.slice(0, C);
  for (let n = 0; n < g.nodeCount; n++) nodesOf[fill[g.nodeClass[n]!]++] = n;

  // does the chosen DAG below e-node n reach class c?
  const seen = new Uint8Array(C);
  const reaches = (n: number, c: number): boolean => {
    seen.fill(0);
    const stack: number[] = [];
    for (let k = g.childStart[n]!; k < g.childStart[n + 1]!; k++) stack.push(g.childList[k]!);
    while (stack.length > 0) {
      const x = stack.pop()!;
      if (x === c) return true;
      if (seen[x]) continue;
      seen[x] = 1;
      const m = best[x]!;
      for (let k = g.childStart[m]!; k < g.childStart[m + 1]!; k++) stack.push(g.childList[k]!);
    }
    return false;
  };
  const usable = (n: number) => {
    for (let k = g.childStart[n]!; k < g.childStart[n + 1]!; k++) if (best[g.childList[k]!]! < 0) return false;
    return true;
  };

  for (let pass = 0; pass < 2; pass++) {
    let moved = false;
    for (let c = 0; c < C; c++) {
      if (refs[c] === 0 || nodeStart[c + 1]! - nodeStart[c]! < 2) continue;
      for (let i = nodeStart[c]!; i < nodeStart[c + 1]! && work > 0; i++) {
        const n = nodesOf[i]!;
        const old = best[c]!;
        if (n === old || !usable(n)) continue;
        delta = g.nodeCost[n]! - g.nodeCost[old]!;
        children(n, 1);
        children(old, -1);
        if (delta < -1e-9 * total && !reaches(n, c)) {
          best[c] = n;
          total += delta;
          moved = true;
        } else {
          children(old, 1);
          children(n, -1);
        }
      }
    }
    if (!moved || work <= 0) break;
  }
}
