// Relational e-matching: a query's facts are flattened into atoms over function tables
// (one per call, nested calls joined through fresh variables) plus primitive calls, typed
// against the declarations, and matched by joining the atoms through the tables' hash and
// column indexes. Semi-naive evaluation restricts each join to matches that use at least
// one row written since the rule last ran.
import type { EGraph } from './egraph';
import {
  PrimitiveError,
  type PrimitiveOverload,
  type PrimitiveValue,
  isPrimitiveOp,
  matchingOverloads,
  resolveArgSorts,
} from './primitives';
import { EggError, type Expr, type Fact, type SortName, type Span } from './syntax';
import type { ColumnIndex, Table } from './table';

/** Names a compiled query or action may refer to besides its own variables (a program's top-level `let`s). */
export interface GlobalScope {
  lookupGlobal(name: string): { sort: SortName; read: () => number } | undefined;
}

export const NO_GLOBALS: GlobalScope = { lookupGlobal: () => undefined };

/** `table(vars[0..arity)) = vars[arity]`: one row of `table` whose columns hold these variables. */
export interface Atom {
  readonly table: Table;
  readonly vars: readonly number[];
  readonly span: Span;
}

/** `out = op(args)`; a guard (a primitive used as a fact) also requires a bool result to be true. */
export interface PrimitiveCall {
  readonly op: string;
  readonly args: readonly number[];
  readonly out: number;
  /** used as a fact with a bool result: the match needs `true` */
  readonly guard: boolean;
  readonly span: Span;
  /** the operation on encoded values; `undefined` = not defined there */
  readonly apply: (args: readonly number[]) => number | undefined;
}

/** A variable of a compiled query: its sort, and its value when fixed before the join (a literal or a global). */
export interface QueryVariable {
  /** the user's name; fresh variables for nested terms and literals have none */
  readonly name?: string;
  readonly sort: SortName;
  /** a literal's encoded value */
  readonly constant?: number;
  /** reads the current value of a global */
  readonly global?: () => number;
  readonly span: Span;
}

/**
 * A compiled conjunctive query: variables (numbered densely), the atoms to join and the
 * primitive calls to evaluate once their arguments are bound. Literals and globals are
 * variables bound before the join starts. `unsatisfiable` marks a query that equates two
 * different constants.
 *
 * ```ts
 * // (= e (Add a (Num 0)))  →  atoms Num(v0) = v1, Add(a, v1) = e; v0 is the constant 0
 * const q = compileQuery(eg, facts);
 * search(eg, q, undefined, (values) => console.log(values[q.variable('e')!]));
 * ```
 */
export class Query {
  constructor(
    readonly variables: readonly QueryVariable[],
    readonly atoms: readonly Atom[],
    readonly primitives: readonly PrimitiveCall[],
    readonly unsatisfiable: boolean,
    /** every user name → its variable (names equated by `=` share one) */
    readonly names: ReadonlyMap<string, number>,
  ) {}

  /** The index of a named variable. */
  variable(name: string): number | undefined {
    return this.names.get(name);
  }
}

// ───────────────────────────── compiling facts ─────────────────────────────

interface DraftVar {
  parent: number;
  name?: string;
  sort?: SortName;
  /** what first fixed the sort, for messages */
  sortWhy?: string;
  constant?: number;
  global?: () => number;
  span: Span;
}

interface DraftPrim {
  op: string;
  args: number[];
  out: number;
  guard: boolean;
  span: Span;
  overload?: PrimitiveOverload;
}

/**
 * Compiles facts into a query. Throws EggError for unknown functions, wrong arity, sort
 * mismatches, and variables the join can never bind (e.g. used only as a primitive's input).
 */
export function compileQuery(eg: EGraph, facts: readonly Fact[], globals: GlobalScope = NO_GLOBALS): Query {
  const b = new QueryBuilder(eg, globals);
  for (const f of facts) b.fact(f);
  return b.finish();
}

class QueryBuilder {
  private vars: DraftVar[] = [];
  private named = new Map<string, number>();
  private atoms: { table: Table; vars: number[]; span: Span }[] = [];
  private prims: DraftPrim[] = [];
  private unsatisfiable = false;

  constructor(
    private readonly eg: EGraph,
    private readonly globals: GlobalScope,
  ) {}

  fact(f: Fact): void {
    if (f.kind === 'eq') {
      if (f.exprs.length < 2) throw new EggError('(= ...) needs at least two terms', f.span);
      const vs = f.exprs.map((e) => this.expr(e));
      for (let i = 1; i < vs.length; i++) this.unify(vs[0]!, vs[i]!, f.exprs[i]!.span);
    } else {
      const e = f.expr;
      if (e.kind === 'call' && isPrimitiveOp(e.head) && !this.eg.table(e.head)) {
        const out = this.expr(e);
        this.prims.find((p) => p.out === out)!.guard = true;
      } else {
        this.expr(e);
      }
    }
  }

  private fresh(span: Span, init: Partial<DraftVar> = {}): number {
    const id = this.vars.length;
    this.vars.push({ parent: id, span, ...init });
    return id;
  }

  private root(v: number): number {
    while (this.vars[v]!.parent !== v) v = this.vars[v]!.parent;
    return v;
  }

  /** Flattens a term into atoms and primitive calls; returns the variable holding its value. Iterative: deep terms are fine. */
  private expr(root: Expr): number {
    const results: number[] = [];
    const work: { e: Expr; ready: boolean }[] = [{ e: root, ready: false }];
    while (work.length > 0) {
      const item = work.pop()!;
      const e = item.e;
      if (e.kind !== 'call') {
        results.push(this.leaf(e));
        continue;
      }
      const table = this.eg.table(e.head);
      const n = e.args.length;
      if (!item.ready) {
        if (!table && !isPrimitiveOp(e.head)) throw new EggError(`unknown function ${e.head}`, e.span);
        if (table && n !== table.arity) throw arityError(e.head, table.arity, n, e.span);
        item.ready = true;
        work.push(item);
        for (let i = n - 1; i >= 0; i--) work.push({ e: e.args[i]!, ready: false });
        continue;
      }
      const args = results.splice(results.length - n, n);
      if (table) {
        args.forEach((v, i) => this.constrain(v, table.argSorts[i]!, `argument ${i + 1} of ${e.head}`, e.args[i]!.span));
        const out = this.fresh(e.span, { sort: table.outputSort, sortWhy: `the output of ${e.head}` });
        args.push(out);
        this.atoms.push({ table, vars: args, span: e.span });
        results.push(out);
      } else {
        const out = this.fresh(e.span);
        this.prims.push({ op: e.head, args, out, guard: false, span: e.span });
        results.push(out);
      }
    }
    return results[0]!;
  }

  private leaf(e: Exclude<Expr, { kind: 'call' }>): number {
    switch (e.kind) {
      case 'int':
        return this.fresh(e.span, { sort: 'i64', sortWhy: `the literal ${e.value}`, constant: this.eg.encode('i64', e.value) });
      case 'float':
        return this.fresh(e.span, { sort: 'f64', sortWhy: `the literal ${e.value}`, constant: e.value });
      case 'string':
        return this.fresh(e.span, { sort: 'String', sortWhy: `the literal "${e.value}"`, constant: this.eg.intern(e.value) });
      case 'bool':
        return this.fresh(e.span, { sort: 'bool', sortWhy: `the literal ${e.value}`, constant: e.value ? 1 : 0 });
      case 'var': {
        const known = this.named.get(e.name);
        if (known !== undefined) return known;
        const g = this.globals.lookupGlobal(e.name);
        const v = g
          ? this.fresh(e.span, { name: e.name, sort: g.sort, sortWhy: `the global ${e.name}`, global: g.read })
          : this.fresh(e.span, { name: e.name });
        this.named.set(e.name, v);
        return v;
      }
    }
  }

  /** Requires variable `v` to have `sort` (what = where the requirement comes from). */
  private constrain(v: number, sort: SortName, what: string, span: Span): void {
    const r = this.vars[this.root(v)]!;
    if (r.sort === undefined) {
      r.sort = sort;
      r.sortWhy = what;
    } else if (r.sort !== sort) {
      throw new EggError(`sort mismatch: ${what} must be ${sort}, but ${describe(r)} is ${r.sort}`, span);
    }
  }

  private unify(a: number, b: number, span: Span): void {
    const ra = this.root(a);
    const rb = this.root(b);
    if (ra === rb) return;
    const va = this.vars[ra]!;
    const vb = this.vars[rb]!;
    if (va.sort !== undefined && vb.sort !== undefined && va.sort !== vb.sort) {
      throw new EggError(`sort mismatch: ${describe(va)} is ${va.sort} but ${describe(vb)} is ${vb.sort}`, span);
    }
    vb.parent = ra;
    va.sort ??= vb.sort;
    va.sortWhy ??= vb.sortWhy;
    va.name ??= vb.name;
    va.global ??= vb.global;
    if (vb.constant !== undefined) {
      if (va.constant !== undefined && va.constant !== vb.constant) this.unsatisfiable = true;
      va.constant = vb.constant;
    }
  }

  /** Resolves primitive overloads from the sorts known so far, until nothing changes. */
  private resolvePrimitives(): void {
    let pending = this.prims.filter((p) => p.overload === undefined);
    while (pending.length > 0) {
      const next: DraftPrim[] = [];
      for (const p of pending) {
        const argSorts = p.args.map((a) => this.vars[this.root(a)]!.sort);
        const outSort = this.vars[this.root(p.out)]!.sort;
        const options = matchingOverloads(p.op, argSorts, outSort);
        if (options.length === 0) {
          const shown = argSorts.map((s) => s ?? '?').join(' ');
          throw new EggError(`no primitive ${p.op} takes (${shown})${outSort ? ` to ${outSort}` : ''}`, p.span);
        }
        const o = options[0]!;
        const resolved = resolveArgSorts(o, argSorts);
        if (options.length === 1 && resolved.every((s) => s !== undefined)) {
          p.overload = o;
          p.args.forEach((a, i) => this.constrain(a, resolved[i]!, `argument ${i + 1} of ${p.op}`, p.span));
          this.constrain(p.out, o.output, `the result of ${p.op}`, p.span);
        } else {
          next.push(p);
        }
      }
      if (next.length === pending.length) {
        const p = next[0]!;
        throw new EggError(`cannot tell which ${p.op} is meant: the sorts of its arguments are unknown`, p.span);
      }
      pending = next;
    }
  }

  finish(): Query {
    this.resolvePrimitives();
    // dense numbering of the representatives
    const index = new Map<number, number>();
    const variables: QueryVariable[] = [];
    for (let v = 0; v < this.vars.length; v++) {
      const r = this.root(v);
      if (index.has(r)) continue;
      const d = this.vars[r]!;
      if (d.sort === undefined) {
        throw new EggError(`cannot infer the sort of ${d.name ?? 'this term'}`, d.span);
      }
      index.set(r, variables.length);
      variables.push({ name: d.name, sort: d.sort, constant: d.constant, global: d.global, span: d.span });
    }
    const at = (v: number): number => index.get(this.root(v))!;
    const atoms: Atom[] = this.atoms.map((a) => ({ table: a.table, vars: a.vars.map(at), span: a.span }));
    const primitives: PrimitiveCall[] = this.prims.map((p) => {
      const args = p.args.map(at);
      const out = at(p.out);
      return {
        op: p.op,
        args,
        out,
        guard: p.guard && p.overload!.output === 'bool',
        span: p.span,
        apply: encodedPrimitive(
          this.eg,
          p.overload!,
          args.map((a) => variables[a]!.sort),
          p.span,
        ),
      };
    });
    checkBindable(variables, atoms, primitives);
    const names = new Map<string, number>();
    for (const [name, v] of this.named) names.set(name, at(v));
    return new Query(variables, atoms, primitives, this.unsatisfiable, names);
  }
}

function describe(v: DraftVar): string {
  if (v.name !== undefined) return `${v.name} (from ${v.sortWhy ?? 'its use'})`;
  return v.sortWhy ?? 'this term';
}

function arityError(head: string, want: number, got: number, span: Span): EggError {
  return new EggError(`${head} takes ${want} argument${want === 1 ? '' : 's'}, found ${got}`, span);
}

/** A primitive overload working on encoded values; i64 overflow becomes an EggError at `span`. */
export function encodedPrimitive(
  eg: EGraph,
  o: PrimitiveOverload,
  argSorts: readonly SortName[],
  span: Span,
): (args: readonly number[]) => number | undefined {
  const plain = (s: SortName): boolean => s === 'i64' || s === 'f64' || s === 'Unit' || eg.isClassSort(s);
  const decodeAll = argSorts.every(plain)
    ? (raw: readonly number[]) => raw as readonly PrimitiveValue[]
    : (raw: readonly number[]) => raw.map((v, i) => eg.decode(argSorts[i]!, v));
  const out = o.output;
  const encode = plain(out) ? (v: PrimitiveValue) => v as number : (v: PrimitiveValue) => eg.encode(out, v);
  return (raw) => {
    let r: PrimitiveValue | undefined;
    try {
      r = o.apply(decodeAll(raw));
    } catch (e) {
      if (e instanceof PrimitiveError) throw new EggError(e.message, span);
      throw e;
    }
    return r === undefined ? undefined : encode(r);
  };
}

/** Refuses queries with a variable no atom or primitive can bind. */
function checkBindable(variables: readonly QueryVariable[], atoms: readonly Atom[], prims: readonly PrimitiveCall[]): void {
  const bound = variables.map((v) => v.constant !== undefined || v.global !== undefined);
  for (const a of atoms) for (const v of a.vars) bound[v] = true;
  let left = [...prims];
  for (let changed = true; changed; ) {
    changed = false;
    left = left.filter((p) => {
      if (!p.args.every((a) => bound[a])) return true;
      bound[p.out] = true;
      changed = true;
      return false;
    });
  }
  if (left.length > 0) {
    const p = left[0]!;
    const v = variables[p.args.find((a) => !bound[a])!]!;
    throw new EggError(
      `${v.name ?? 'an argument'} of ${p.op} is not bound by any pattern in the query`,
      v.name !== undefined ? v.span : p.span,
    );
  }
  const unbound = variables.findIndex((_, i) => !bound[i]);
  if (unbound >= 0) {
    const v = variables[unbound]!;
    throw new EggError(`${v.name ?? 'a term'} is not bound by any pattern in the query`, v.span);
  }
}

// ───────────────────────────── matching ─────────────────────────────

/** Which rows of its table an atom may use in one semi-naive sub-join. */
const enum Range {
  All,
  /** written since the rule last ran */
  New,
  /** written before */
  Old,
}

interface AtomStep {
  kind: 'atom';
  atom: Atom;
  range: Range;
  /** every argument column bound before this step: one hash lookup */
  lookup: boolean;
  /** columns whose variable is bound before this step */
  boundCols: number[];
  /** columns that bind a variable here (first occurrence in the atom) */
  bindCols: number[];
  /** [column, earlier column of the same newly bound variable] */
  repeatCols: [number, number][];
  /** scratch for the lookup key */
  key: number[];
}

interface PrimStep {
  kind: 'prim';
  prim: PrimitiveCall;
  outBound: boolean;
}

type Step = AtomStep | PrimStep;

/**
 * Orders a sub-join: `first` (the atom restricted to new rows) leads when given; then, one
 * at a time, the atom that is cheapest to enter: a full-key lookup, else the one with the
 * most bound columns, ties to the smaller table. Primitive calls run as soon as their
 * arguments are bound, so guards prune early.
 */
function plan(q: Query, ranges: readonly Range[], first: number): Step[] {
  const bound = q.variables.map((v) => v.constant !== undefined || v.global !== undefined);
  const steps: Step[] = [];
  const placed = new Array<boolean>(q.atoms.length).fill(false);
  const primsLeft = new Set(q.primitives);
  const schedulePrims = (): void => {
    for (let changed = true; changed; ) {
      changed = false;
      for (const p of primsLeft) {
        if (!p.args.every((a) => bound[a])) continue;
        steps.push({ kind: 'prim', prim: p, outBound: bound[p.out]! });
        bound[p.out] = true;
        primsLeft.delete(p);
        changed = true;
      }
    }
  };
  schedulePrims();
  for (let n = 0; n < q.atoms.length; n++) {
    let pick = -1;
    if (n === 0 && first >= 0) pick = first;
    else {
      let best = -Infinity;
      for (let i = 0; i < q.atoms.length; i++) {
        if (placed[i]) continue;
        const a = q.atoms[i]!;
        const ar = a.table.arity;
        let nb = 0;
        let keyBound = true;
        for (let c = 0; c < a.vars.length; c++) {
          if (bound[a.vars[c]!]) nb++;
          else if (c < ar) keyBound = false;
        }
        const score = (keyBound ? 1e12 : 0) + nb * 1e9 - Math.min(a.table.liveCount, 1e9 - 1);
        if (score > best) {
          best = score;
          pick = i;
        }
      }
    }
    placed[pick] = true;
    const atom = q.atoms[pick]!;
    const boundCols: number[] = [];
    const bindCols: number[] = [];
    const repeatCols: [number, number][] = [];
    const firstCol = new Map<number, number>();
    let lookup = true;
    for (let c = 0; c < atom.vars.length; c++) {
      const v = atom.vars[c]!;
      if (bound[v]) boundCols.push(c);
      else if (firstCol.has(v)) repeatCols.push([c, firstCol.get(v)!]);
      else {
        firstCol.set(v, c);
        bindCols.push(c);
      }
      if (c < atom.table.arity && !bound[v]) lookup = false;
    }
    for (const c of bindCols) bound[atom.vars[c]!] = true;
    steps.push({ kind: 'atom', atom, range: ranges[pick]!, lookup, boundCols, bindCols, repeatCols, key: new Array<number>(atom.table.arity) });
    schedulePrims();
  }
  return steps;
}

/**
 * Calls `emit` with the variables' values (indexed as `query.variables`) for every match.
 * With `since` given, only matches that use at least one row stamped `since` or later are
 * produced (semi-naive): the join runs once per atom, that atom restricted to new rows and
 * the atoms before it to old rows, so each new match comes out exactly once. `emit` may
 * return `true` to stop the search. Expects a rebuilt e-graph. Returns the match count.
 */
export function search(
  eg: EGraph,
  q: Query,
  since: number | undefined,
  emit: (values: Float64Array) => boolean | void,
): number {
  if (q.unsatisfiable) return 0;
  const n = q.atoms.length;
  const values = new Float64Array(q.variables.length);
  for (let i = 0; i < q.variables.length; i++) {
    const v = q.variables[i]!;
    if (v.constant !== undefined) values[i] = v.constant;
    else if (v.global !== undefined) {
      const raw = v.global();
      values[i] = eg.isClassSort(v.sort) ? eg.find(raw) : raw;
    }
  }
  const exec = new Execution(values, emit);
  if (n === 0) {
    if (since !== undefined && since > 0) return 0;
    exec.run(plan(q, [], -1));
    return exec.matches;
  }
  if (since === undefined || since <= 0) {
    exec.run(plan(q, new Array<Range>(n).fill(Range.All), -1));
    return exec.matches;
  }
  const boundaries = new Map<Table, number>();
  for (const a of q.atoms) if (!boundaries.has(a.table)) boundaries.set(a.table, a.table.firstRowSince(since));
  exec.boundaries = boundaries;
  for (let i = 0; i < n && !exec.stopped; i++) {
    const t = q.atoms[i]!.table;
    if (boundaries.get(t)! >= t.rowCount) continue; // nothing new in this atom's table
    let possible = true;
    for (let j = 0; j < i; j++) if (boundaries.get(q.atoms[j]!.table)! === 0) possible = false; // nothing old
    if (!possible) continue;
    const ranges = q.atoms.map((_, j) => (j < i ? Range.Old : j === i ? Range.New : Range.All));
    exec.run(plan(q, ranges, i));
  }
  return exec.matches;
}

/**
 * One run of the join: backtracking over the plan's steps with an explicit cursor per
 * step (no recursion, so queries with thousands of atoms are fine). An atom step's cursor
 * is the next candidate row: from a hash lookup, a column-index chain (newest first) or a
 * scan of the allowed row range.
 */
class Execution {
  matches = 0;
  stopped = false;
  boundaries = new Map<Table, number>();
  private readonly primArgs: number[] = [];

  constructor(
    private readonly values: Float64Array,
    private readonly emit: (values: Float64Array) => boolean | void,
  ) {}

  run(steps: Step[]): void {
    const n = steps.length;
    const cursor = new Int32Array(n);
    const lo = new Int32Array(n);
    const hi = new Int32Array(n);
    const chains: (Int32Array | undefined)[] = new Array(n);
    let i = 0;
    if (n > 0) this.enter(steps[0]!, 0, cursor, lo, hi, chains);
    while (i >= 0) {
      if (i === n) {
        this.matches++;
        if (this.emit(this.values) === true) {
          this.stopped = true;
          return;
        }
        i--;
        continue;
      }
      if (this.advance(steps[i]!, i, cursor, lo, hi, chains)) {
        i++;
        if (i < n) this.enter(steps[i]!, i, cursor, lo, hi, chains);
      } else {
        i--;
      }
    }
  }

  /** Sets step i's cursor to its first candidate (-1: none). */
  private enter(s: Step, i: number, cursor: Int32Array, lo: Int32Array, hi: Int32Array, chains: (Int32Array | undefined)[]): void {
    if (s.kind === 'prim') {
      cursor[i] = 0;
      return;
    }
    const t = s.atom.table;
    const from = s.range === Range.New ? this.boundaries.get(t)! : 0;
    const to = s.range === Range.Old ? this.boundaries.get(t)! : t.rowCount;
    lo[i] = from;
    hi[i] = to;
    const vars = s.atom.vars;
    const values = this.values;
    if (s.lookup) {
      const key = s.key;
      for (let c = 0; c < key.length; c++) key[c] = values[vars[c]!]!;
      const r = t.findRow(key);
      cursor[i] = r >= from && r < to ? r : -1;
      chains[i] = undefined;
      return;
    }
    if (s.boundCols.length > 0) {
      // follow the shortest chain among the bound columns' index entries
      let idx: ColumnIndex | undefined;
      let value = 0;
      let best = Infinity;
      for (const c of s.boundCols) {
        const ci = t.columnIndex(c);
        const v = values[vars[c]!]!;
        const k = ci.count(v);
        if (k < best) {
          best = k;
          idx = ci;
          value = v;
        }
        if (k === 0) break;
      }
      cursor[i] = best === 0 ? -1 : idx!.head(value);
      chains[i] = idx!.next;
      return;
    }
    cursor[i] = from;
    chains[i] = undefined;
  }

  /** Moves step i to its next binding; false when it has none left. */
  private advance(s: Step, i: number, cursor: Int32Array, lo: Int32Array, hi: Int32Array, chains: (Int32Array | undefined)[]): boolean {
    const values = this.values;
    if (s.kind === 'prim') {
      if (cursor[i] !== 0) return false;
      cursor[i] = 1;
      const p = s.prim;
      const args = this.primArgs;
      args.length = p.args.length;
      for (let k = 0; k < p.args.length; k++) args[k] = values[p.args[k]!]!;
      const r = p.apply(args);
      if (r === undefined) return false;
      if (p.guard && r === 0) return false; // a false comparison used as a fact
      if (s.outBound) return values[p.out] === r;
      values[p.out] = r;
      return true;
    }
    const t = s.atom.table;
    const live = t.live;
    const from = lo[i]!;
    const to = hi[i]!;
    if (s.lookup) {
      const r = cursor[i]!;
      cursor[i] = -1;
      return r >= 0 && this.bind(s, t, r);
    }
    const next = chains[i];
    if (next !== undefined) {
      // newest first: rows below `from` end the chain's useful part
      for (let r = cursor[i]!; r >= from; ) {
        const after = next[r]!;
        if (r < to && live[r] !== 0 && this.bind(s, t, r)) {
          cursor[i] = after;
          return true;
        }
        r = after;
      }
      cursor[i] = -1;
      return false;
    }
    for (let r = cursor[i]!; r < to; r++) {
      if (live[r] !== 0 && this.bind(s, t, r)) {
        cursor[i] = r + 1;
        return true;
      }
    }
    cursor[i] = to;
    return false;
  }

  /** Checks row r against the step's bound columns and binds its new variables. */
  private bind(s: AtomStep, t: Table, r: number): boolean {
    const data = t.data;
    const base = r * t.stride;
    const vars = s.atom.vars;
    const values = this.values;
    for (const c of s.boundCols) if (data[base + c] !== values[vars[c]!]) return false;
    for (const [c, d] of s.repeatCols) if (data[base + c] !== data[base + d]) return false;
    for (const c of s.bindCols) values[vars[c]!] = data[base + c]!;
    return true;
  }
}

/** Every match of a query as name → value (named variables only); for `check`, tests and tools. */
export function matchAll(eg: EGraph, q: Query, limit = Infinity): Record<string, PrimitiveValue>[] {
  const out: Record<string, PrimitiveValue>[] = [];
  search(eg, q, undefined, (values) => {
    const m: Record<string, PrimitiveValue> = {};
    for (const [name, i] of q.names) m[name] = eg.decode(q.variables[i]!.sort, values[i]!);
    out.push(m);
    return out.length >= limit;
  });
  return out;
}

