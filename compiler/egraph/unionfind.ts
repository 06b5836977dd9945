// The union-find behind e-class ids: ids are dense integers, `find` returns the canonical
// representative, `union` merges two sets. The e-graph records every id that stops being a
// root so rebuilding can visit exactly the rows that mention it.

/**
 * A disjoint-set forest over dense integer ids, with path halving and union by size (ties
 * keep the older, smaller id as the root, so results do not depend on argument order).
 *
 * ```ts
 * const uf = new UnionFind();
 * const a = uf.makeSet(), b = uf.makeSet(), c = uf.makeSet();
 * uf.union(a, b);          // → a (both size 1: the smaller id stays the root)
 * uf.find(b) === a;        // true
 * uf.find(c) === c;        // true
 * ```
 */
export class UnionFind {
  private parents = new Int32Array(64);
  private sizes = new Int32Array(64);
  private count = 0;
  private roots = 0;

  /** How many ids have been made. */
  get size(): number {
    return this.count;
  }

  /** How many disjoint sets there are. */
  get setCount(): number {
    return this.roots;
  }

  /** A new id in a set of its own. */
  makeSet(): number {
    const id = this.count;
    if (id === this.parents.length) {
      const parents = new Int32Array(id * 2);
      parents.set(this.parents);
      this.parents = parents;
      const sizes = new Int32Array(id * 2);
      sizes.set(this.sizes);
      this.sizes = sizes;
    }
    this.parents[id] = id;
    this.sizes[id] = 1;
    this.count++;
    this.roots++;
    return id;
  }

  /** The canonical id of `id`'s set. */
  find(id: number): number {
    const parents = this.parents;
    if (!(id >= 0 && id < this.count)) throw new RangeError(`unknown e-class id ${id}`);
    while (true) {
      const p = parents[id]!;
      if (p === id) return id;
      const gp = parents[p]!;
      parents[id] = gp;
      id = gp;
    }
  }

  /** Whether `id` is the canonical id of its set. */
  isRoot(id: number): boolean {
    return this.parents[id] === id;
  }

  /** Merges the sets of `a` and `b` and returns the root of the result. */
  union(a: number, b: number): number {
    let ra = this.find(a);
    let rb = this.find(b);
    if (ra === rb) return ra;
    const sa = this.sizes[ra]!;
    const sb = this.sizes[rb]!;
    if (sb > sa || (sb === sa && rb < ra)) [ra, rb] = [rb, ra];
    this.parents[rb] = ra;
    this.sizes[ra] = sa + sb;
    this.roots--;
    return ra;
  }
}
