// The e-graph as egglog sees it: a database of function tables over e-class ids and
// primitive values. Constructors hash-cons (the first insert of an argument tuple mints a
// class id), `union` merges classes, and `rebuild` restores canonical tables and congruence
// in batches, merging rows that collide (union for class outputs, `:merge` for values).
import type { PrimitiveValue } from './primitives';
import { EggError, PRIMITIVE_SORTS, type SortName } from './syntax';
import { type FunctionKind, Table } from './table';
import { UnionFind } from './unionfind';

/** A value as the API sees it: an e-class id (a number) for user sorts, or a primitive. */
export type Value = PrimitiveValue;

/** An e-node: a constructor applied to e-class ids and primitive values. */
export interface ENode {
  readonly head: string;
  readonly args: readonly Value[];
}

/** How to declare a constructor, function or relation through the API (EggProgram does this for `.egg` declarations). */
export interface FunctionSpec {
  name: string;
  kind: FunctionKind;
  args: readonly SortName[];
  /** the output sort; `Unit` for relations, a user sort for constructors */
  output: SortName;
  /** extraction cost of one e-node (constructors; default 1) */
  cost?: number;
  /**
   * How a function combines an existing value with a new one for the same arguments. Without
   * it, a class-valued function unions the two and a primitive-valued one refuses a change.
   */
  merge?: (old: Value, next: Value) => Value;
  /** the same on encoded values (EggProgram compiles `:merge` expressions to this); wins over `merge` */
  mergeEncoded?: (old: number, next: number) => number;
}

/**
 * An e-graph in the egglog style: every constructor, function and relation is a table from
 * argument tuples to an output; constructors' outputs are e-class ids. Changes (new rows,
 * unions) leave the tables un-canonical until `rebuild`, which canonicalises the rows that
 * mention merged-away ids and unions the outputs of rows that now coincide (congruence).
 * Queries and extraction expect a rebuilt e-graph; the runner rebuilds after every
 * iteration.
 *
 * ```ts
 * const eg = new EGraph();
 * const prog = new EggProgram(eg);
 * prog.run(parseEgg('(datatype Math (Num i64) (Var String) (Add Math Math))', 'm.egg'));
 * const x = eg.add('Var', ['x']);
 * const one = eg.add('Num', [1]);
 * const sum = eg.add('Add', [x, one]);
 * eg.add('Add', [x, one]) === sum;       // hash-consing
 * eg.union(x, one); eg.rebuild();
 * eg.lookup('Add', [one, one]) === eg.find(sum);
 * for (const [c, nodes] of eg.nodesByClass()) console.log(c, nodes); // [{ head: 'Add', args: [c1, c1] }, ...]
 * ```
 *
 * Values inside tables are encoded as numbers (`encode`/`decode`); the `...Encoded`
 * methods are the engine's fast path and take encoded, not necessarily canonical, values.
 */
export class EGraph {
  readonly unionFind = new UnionFind();
  /** the current timestamp; rows are stamped with it, the runner advances it once per iteration */
  timestamp = 0;
  /** grows on every change (a new row, a changed value, a union): "did anything happen" */
  version = 0;

  private readonly sorts = new Map<SortName, 'class' | 'primitive'>(PRIMITIVE_SORTS.map((s) => [s, 'primitive']));
  private readonly tableMap = new Map<string, Table>();
  private readonly tableList: Table[] = [];
  private readonly merges = new Map<Table, (old: number, next: number) => number>();
  /** ids that stopped being canonical since the last rebuild */
  private stale: number[] = [];
  private classSort: SortName[] = [];
  private readonly strings: string[] = [];
  private readonly stringIds = new Map<string, number>();
  private readonly rebuildKey: number[] = [];
  private readonly argKey: number[] = [];

  // ─────────────────────────── declarations ───────────────────────────

  /** Declares a user sort; its values are e-class ids. */
  declareSort(name: SortName): void {
    if (this.sorts.has(name)) throw new EggError(`sort ${name} is already declared`);
    this.sorts.set(name, 'class');
  }

  hasSort(name: SortName): boolean {
    return this.sorts.has(name);
  }

  /** Whether values of `sort` are e-class ids (a user sort), as opposed to primitives. */
  isClassSort(sort: SortName): boolean {
    return this.sorts.get(sort) === 'class';
  }

  declareFunction(spec: FunctionSpec): Table {
    if (this.tableMap.has(spec.name)) throw new EggError(`${spec.name} is already declared`);
    for (const s of [...spec.args, spec.output]) {
      if (!this.sorts.has(s)) throw new EggError(`unknown sort ${s} in the declaration of ${spec.name}`);
    }
    if (spec.kind === 'constructor' && !this.isClassSort(spec.output)) {
      throw new EggError(`constructor ${spec.name} must produce a user sort, not ${spec.output}`);
    }
    const table = new Table(spec.name, spec.kind, spec.args, spec.output, (s) => this.isClassSort(s), spec.cost ?? 1);
    this.tableMap.set(spec.name, table);
    this.tableList.push(table);
    if (spec.mergeEncoded) this.merges.set(table, spec.mergeEncoded);
    else if (spec.merge) {
      const merge = spec.merge;
      const out = spec.output;
      this.merges.set(table, (a, b) => this.encode(out, merge(this.decode(out, a), this.decode(out, b))));
    }
    return table;
  }

  /** The table of a constructor, function or relation. */
  table(name: string): Table | undefined {
    return this.tableMap.get(name);
  }

  get tables(): readonly Table[] {
    return this.tableList;
  }

  // ─────────────────────────── values ───────────────────────────

  /** A value of `sort` as stored in tables. */
  encode(sort: SortName, v: Value): number {
    switch (sort) {
      case 'i64':
        if (typeof v !== 'number' || !Number.isInteger(v)) throw new EggError(`expected an i64, found ${JSON.stringify(v)}`);
        if (!Number.isSafeInteger(v)) throw new EggError(`the i64 ${v} is outside ±(2^53−1)`);
        return v === 0 ? 0 : v;
      case 'f64':
        if (typeof v !== 'number') throw new EggError(`expected an f64, found ${JSON.stringify(v)}`);
        return v;
      case 'String':
        if (typeof v !== 'string') throw new EggError(`expected a String, found ${JSON.stringify(v)}`);
        return this.intern(v);
      case 'bool':
        if (typeof v !== 'boolean') throw new EggError(`expected a bool, found ${JSON.stringify(v)}`);
        return v ? 1 : 0;
      case 'Unit':
        return 0;
      default: {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= this.unionFind.size) {
          throw new EggError(`expected an e-class id of ${sort}, found ${JSON.stringify(v)}`);
        }
        const id = this.unionFind.find(v);
        if (this.classSort[id] !== sort) {
          throw new EggError(`e-class ${v} is of sort ${this.classSort[id]}, not ${sort}`);
        }
        return id;
      }
    }
  }

  /** A stored value of `sort` as the API sees it (class ids come back canonical). */
  decode(sort: SortName, raw: number): Value {
    switch (sort) {
      case 'i64':
      case 'f64':
      case 'Unit':
        return raw;
      case 'String':
        return this.strings[raw]!;
      case 'bool':
        return raw !== 0;
      default:
        return this.unionFind.find(raw);
    }
  }

  /** The intern id of a string. */
  intern(s: string): number {
    let id = this.stringIds.get(s);
    if (id === undefined) {
      id = this.strings.length;
      this.strings.push(s);
      this.stringIds.set(s, id);
    }
    return id;
  }

  // ─────────────────────────── the API on plain values ───────────────────────────

  /** Adds the e-node `head(args)` (hash-consed) and returns its e-class. */
  add(head: string, args: readonly Value[]): number {
    const t = this.checked(head, args);
    if (t.kind !== 'constructor') throw new EggError(`${head} is a ${t.kind}, not a constructor: use set`);
    return this.addEncoded(t, this.encodeArgs(t, args));
  }

  /** The e-class of `head(args)` if that e-node exists (after a rebuild, up to congruence). */
  lookup(head: string, args: readonly Value[]): number | undefined {
    const t = this.checked(head, args);
    if (!t.outputIsClass) throw new EggError(`${head} does not produce an e-class: use get`);
    const row = t.findRow(this.canonicalArgs(t, this.encodeArgs(t, args)));
    return row < 0 ? undefined : this.unionFind.find(t.output(row));
  }

  /** The value of a function (or constructor, or relation: `true` if the fact holds) at `args`. */
  get(name: string, args: readonly Value[]): Value | undefined {
    const t = this.checked(name, args);
    const row = t.findRow(this.canonicalArgs(t, this.encodeArgs(t, args)));
    if (row < 0) return undefined;
    return t.kind === 'relation' ? true : this.decode(t.outputSort, t.output(row));
  }

  /** Sets a function's value at `args`, merging with an existing one; for a relation, asserts the fact (`value` ignored). */
  set(name: string, args: readonly Value[], value: Value = true): void {
    const t = this.checked(name, args);
    if (t.kind === 'constructor') throw new EggError(`${name} is a constructor: use add (and union)`);
    const key = this.encodeArgs(t, args);
    key.push(t.kind === 'relation' ? 0 : this.encode(t.outputSort, value));
    this.setEncoded(t, key);
  }

  /** Removes the row of `name` at `args`, if any. */
  delete(name: string, args: readonly Value[]): void {
    const t = this.checked(name, args);
    this.deleteEncoded(t, this.encodeArgs(t, args));
  }

  /** The canonical id of `id`'s e-class. */
  find(id: number): number {
    return this.unionFind.find(id);
  }

  /** Merges two e-classes (of one sort); tables stay un-canonical until `rebuild`. Returns the new canonical id. */
  union(a: number, b: number): number {
    const ra = this.unionFind.find(a);
    const rb = this.unionFind.find(b);
    if (ra === rb) return ra;
    if (this.classSort[ra] !== this.classSort[rb]) {
      throw new EggError(`cannot union e-class ${a} of ${this.classSort[ra]} with e-class ${b} of ${this.classSort[rb]}`);
    }
    const root = this.unionFind.union(ra, rb);
    this.stale.push(root === ra ? rb : ra);
    this.version++;
    return root;
  }

  /** The sort of an e-class. */
  sortOf(id: number): SortName {
    return this.classSort[this.unionFind.find(id)]!;
  }

  /** The canonical e-class ids that have at least one live e-node. */
  classes(): number[] {
    const seen = new Uint8Array(this.unionFind.size);
    const out: number[] = [];
    for (const t of this.tableList) {
      if (t.kind !== 'constructor') continue;
      for (let r = 0; r < t.rowCount; r++) {
        if (t.live[r] === 0) continue;
        const c = this.unionFind.find(t.output(r));
        if (seen[c] === 0) {
          seen[c] = 1;
          out.push(c);
        }
      }
    }
    return out.sort((a, b) => a - b);
  }

  /** The e-nodes of an e-class (arguments canonical). Scans every constructor table: for one-off use (`nodesByClass` for all). */
  nodes(classId: number): ENode[] {
    const c = this.unionFind.find(classId);
    const out: ENode[] = [];
    for (const t of this.tableList) {
      if (t.kind !== 'constructor') continue;
      for (let r = 0; r < t.rowCount; r++) {
        if (t.live[r] !== 0 && this.unionFind.find(t.output(r)) === c) out.push(this.enode(t, r));
      }
    }
    return out;
  }

  /** Every canonical e-class with its e-nodes (arguments canonical), in one pass over the tables. */
  nodesByClass(): Map<number, ENode[]> {
    const out = new Map<number, ENode[]>();
    this.forEachNode((node, c) => {
      const list = out.get(c);
      if (list === undefined) out.set(c, [node]);
      else list.push(node);
    });
    return out;
  }

  /** Calls `f` with every live e-node and its canonical e-class. */
  forEachNode(f: (node: ENode, classId: number) => void): void {
    for (const t of this.tableList) {
      if (t.kind !== 'constructor') continue;
      for (let r = 0; r < t.rowCount; r++) {
        if (t.live[r] !== 0) f(this.enode(t, r), this.unionFind.find(t.output(r)));
      }
    }
  }

  /** The e-node stored in row `row` of constructor table `t`. */
  enode(t: Table, row: number): ENode {
    const args: Value[] = [];
    for (let i = 0; i < t.arity; i++) args.push(this.decode(t.argSorts[i]!, t.get(row, i)));
    return { head: t.name, args };
  }

  /** Live e-nodes (constructor rows). */
  get nodeCount(): number {
    let n = 0;
    for (const t of this.tableList) if (t.kind === 'constructor') n += t.liveCount;
    return n;
  }

  /** Live e-classes. */
  get classCount(): number {
    return this.unionFind.setCount;
  }

  /** Whether unions are waiting for `rebuild`. */
  get needsRebuild(): boolean {
    return this.stale.length > 0;
  }

  // ─────────────────────────── the engine's fast path (encoded values) ───────────────────────────

  /** Hash-conses `t(args)`: the existing e-class, or a fresh one. `args` holds `t.arity` encoded values. */
  addEncoded(t: Table, args: ArrayLike<number>): number {
    const key = this.canonicalArgs(t, args);
    const row = t.findRow(key);
    if (row >= 0) return this.unionFind.find(t.output(row));
    const id = this.unionFind.makeSet();
    this.classSort[id] = t.outputSort;
    key.push(id);
    t.append(key, this.timestamp);
    this.version++;
    return id;
  }

  /** The live row of `t` at `args` (canonicalised first), or -1. */
  findEncoded(t: Table, args: ArrayLike<number>): number {
    return t.findRow(this.canonicalArgs(t, args));
  }

  /**
   * Writes `key` (arguments then output) into `t`, merging with an existing row: classes are
   * unioned, other values go through the function's merge. Returns the resulting output.
   */
  setEncoded(t: Table, key: number[]): number {
    for (const c of t.classColumns) key[c] = this.unionFind.find(key[c]!);
    return this.put(t, key);
  }

  deleteEncoded(t: Table, args: ArrayLike<number>): void {
    const row = t.findRow(this.canonicalArgs(t, args));
    if (row >= 0) {
      t.kill(row);
      this.version++;
    }
  }

  /**
   * Restores the invariants after unions: every row canonical, at most one row per argument
   * tuple (rows that collide merge their outputs, which may union further classes). Visits
   * only the rows that mention merged-away ids, found through the column indexes; repeats
   * until no union is pending. Returns how many rows it rewrote.
   */
  rebuild(): number {
    let rewritten = 0;
    const uf = this.unionFind;
    while (this.stale.length > 0) {
      const stale = this.stale;
      this.stale = [];
      for (const t of this.tableList) {
        const cols = t.classColumns;
        if (cols.length === 0 || t.liveCount === 0) continue;
        const rows: number[] = [];
        if (stale.length * cols.length > t.liveCount) {
          // many merges: scanning the table is cheaper than following the index
          for (let r = 0; r < t.rowCount; r++) {
            if (t.live[r] === 0) continue;
            for (const c of cols) {
              if (!uf.isRoot(t.get(r, c))) {
                rows.push(r);
                break;
              }
            }
          }
          // (the merged-away ids keep their index entries, chains of dead rows, until the table compacts)
        } else {
          for (const c of cols) {
            const idx = t.columnIndex(c);
            for (const s of stale) {
              for (let r = idx.head(s); r >= 0; r = idx.next[r]!) if (t.live[r] !== 0) rows.push(r);
              idx.delete(s);
            }
          }
        }
        if (rows.length === 0) continue;
        const key = this.rebuildKey;
        for (const r of rows) {
          if (t.live[r] === 0) continue; // listed twice, or merged away meanwhile
          key.length = t.stride;
          for (let c = 0; c < t.stride; c++) key[c] = t.get(r, c);
          for (const c of cols) key[c] = uf.find(key[c]!);
          t.kill(r);
          this.put(t, key);
          rewritten++;
        }
      }
    }
    for (const t of this.tableList) if (t.wasteful) t.compact();
    return rewritten;
  }

  // ─────────────────────────── internals ───────────────────────────

  private put(t: Table, key: number[]): number {
    const out = t.arity;
    const row = t.findRow(key);
    if (row < 0) {
      t.append(key, this.timestamp);
      this.version++;
      return key[out]!;
    }
    const old = t.output(row);
    const next = key[out]!;
    if (old === next || (old !== old && next !== next)) return old;
    const merge = this.merges.get(t);
    if (merge === undefined) {
      if (t.outputIsClass) return this.union(old, next);
      const s = t.outputSort;
      throw new EggError(
        `${t.name}: conflicting values ${fmt(this.decode(s, old))} and ${fmt(this.decode(s, next))} for the same arguments, and no :merge`,
      );
    }
    let merged = merge(old, next);
    if (t.outputIsClass) merged = this.unionFind.find(merged);
    if (merged === old || (merged !== merged && old !== old)) return old;
    // the merge may have inserted rows (even into t): look the row up again
    const current = t.findRow(key);
    if (current >= 0) t.kill(current);
    const fresh = key.slice();
    fresh[out] = merged;
    t.append(fresh, this.timestamp);
    this.version++;
    return merged;
  }

  /** `args` canonical, in a buffer reused by the next call (callers copy before calling out). */
  private canonicalArgs(t: Table, args: ArrayLike<number>): number[] {
    const key = this.argKey;
    key.length = t.arity;
    for (let i = 0; i < t.arity; i++) key[i] = args[i]!;
    for (const c of t.classColumns) if (c < t.arity) key[c] = this.unionFind.find(key[c]!);
    return key;
  }

  private checked(name: string, args: readonly Value[]): Table {
    const t = this.tableMap.get(name);
    if (t === undefined) throw new EggError(`unknown function ${name}`);
    if (args.length !== t.arity) {
      throw new EggError(`${name} takes ${t.arity} argument${t.arity === 1 ? '' : 's'}, found ${args.length}`);
    }
    return t;
  }

  private encodeArgs(t: Table, args: readonly Value[]): number[] {
    return args.map((v, i) => this.encode(t.argSorts[i]!, v));
  }
}

function fmt(v: Value): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

