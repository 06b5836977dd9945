// Actions (what a rule does with a match, and top-level commands): typed once against the
// declarations, then compiled to closures over an environment of encoded values. A
// constructor call adds (hash-conses) its e-node, a function call reads its value, a
// primitive computes; `union`, `set`, `delete` and `let` change the e-graph or the scope.
import type { EGraph } from './egraph';
import { isPrimitiveOp, matchingOverloads } from './primitives';
import { NO_GLOBALS, type GlobalScope, encodedPrimitive } from './query';
import { type Action, EggError, type Expr, type SortName, type Span } from './syntax';
import type { Table } from './table';

/** An expression compiled against a scope: its sort, and how to compute its encoded value. */
export interface CompiledExpr {
  readonly sort: SortName;
  readonly evaluate: (env: number[]) => number;
}

/**
 * The names an action can see, each in a slot of the environment array; `let` adds slots.
 * Rules seed it with the query's variables.
 */
export class ActionScope {
  private readonly slots = new Map<string, { slot: number; sort: SortName }>();
  size = 0;

  constructor(readonly globals: GlobalScope = NO_GLOBALS) {}

  /** Adds a name in the next slot. */
  bind(name: string, sort: SortName, span?: Span): number {
    if (this.slots.has(name)) throw new EggError(`${name} is already bound`, span);
    const slot = this.size++;
    this.slots.set(name, { slot, sort });
    return slot;
  }

  lookup(name: string): { slot: number; sort: SortName } | undefined {
    return this.slots.get(name);
  }
}

/** Compiled actions: run them with an environment whose first slots hold the scope's inputs. */
export class CompiledActions {
  constructor(
    /** environment size needed (inputs plus lets) */
    readonly envSize: number,
    private readonly steps: readonly ((env: number[]) => void)[],
  ) {}

  run(env: number[]): void {
    for (const s of this.steps) s(env);
  }
}

/** Compiles `actions` in `scope` (which `let` extends). */
export function compileActions(eg: EGraph, actions: readonly Action[], scope: ActionScope): CompiledActions {
  const steps = actions.map((a) => compileAction(eg, a, scope));
  return new CompiledActions(scope.size, steps);
}

function compileAction(eg: EGraph, a: Action, scope: ActionScope): (env: number[]) => void {
  switch (a.kind) {
    case 'let': {
      const e = compileExpr(eg, a.expr, scope);
      const slot = scope.bind(a.name, e.sort, a.span);
      return (env) => {
        env[slot] = e.evaluate(env);
      };
    }
    case 'union': {
      const x = compileExpr(eg, a.a, scope);
      const y = compileExpr(eg, a.b, scope);
      if (x.sort !== y.sort) throw new EggError(`cannot union a ${x.sort} with a ${y.sort}`, a.span);
      if (!eg.isClassSort(x.sort)) throw new EggError(`cannot union values of the primitive sort ${x.sort}`, a.span);
      return (env) => {
        eg.union(x.evaluate(env), y.evaluate(env));
      };
    }
    case 'set': {
      const { table, args } = compileTableCall(eg, a.call, scope);
      if (table.kind === 'constructor') {
        throw new EggError(`set needs a function, but ${table.name} is a constructor (use union)`, a.call.span);
      }
      const v = compileExpr(eg, a.value, scope);
      if (v.sort !== table.outputSort) {
        throw new EggError(`sort mismatch: ${table.name} holds ${table.outputSort}, found a ${v.sort}`, a.value.span);
      }
      return (env) => {
        const key = args.map((e) => e.evaluate(env));
        key.push(v.evaluate(env));
        eg.setEncoded(table, key);
      };
    }
    case 'delete': {
      const { table, args } = compileTableCall(eg, a.call, scope);
      return (env) =>
        eg.deleteEncoded(
          table,
          args.map((e) => e.evaluate(env)),
        );
    }
    case 'term': {
      const e = compileExpr(eg, a.expr, scope);
      return (env) => {
        e.evaluate(env);
      };
    }
  }
}

function compileTableCall(eg: EGraph, call: Expr & { kind: 'call' }, scope: ActionScope) {
  const table = eg.table(call.head);
  if (!table) throw new EggError(`unknown function ${call.head}`, call.span);
  return { table, args: compileArgs(eg, call, table.argSorts, scope) };
}

function compileArgs(eg: EGraph, call: Expr & { kind: 'call' }, sorts: readonly SortName[], scope: ActionScope): CompiledExpr[] {
  if (call.args.length !== sorts.length) {
    throw new EggError(
      `${call.head} takes ${sorts.length} argument${sorts.length === 1 ? '' : 's'}, found ${call.args.length}`,
      call.span,
    );
  }
  return call.args.map((arg, i) => {
    const e = compileExpr(eg, arg, scope);
    if (e.sort !== sorts[i]) {
      throw new EggError(`sort mismatch: argument ${i + 1} of ${call.head} must be ${sorts[i]}, found ${e.sort}`, arg.span);
    }
    return e;
  });
}

// Expressions compile to postfix code for a small stack machine, typed and evaluated without
// recursion, so generated terms thousands of levels deep are fine.
const enum Op {
  Const,
  Local,
  Global,
  /** hash-cons a constructor's e-node */
  Add,
  /** assert a relation's fact; pushes Unit */
  Fact,
  /** read a function's value */
  Get,
  Prim,
}

type Instr =
  | { op: Op.Const; value: number }
  | { op: Op.Local; slot: number }
  | { op: Op.Global; read: () => number }
  | { op: Op.Add | Op.Fact | Op.Get; table: Table; n: number; span: Span }
  | { op: Op.Prim; apply: (args: readonly number[]) => number | undefined; n: number; head: string; span: Span };

/** Types and compiles an expression; unknown names, arity and sort errors are EggErrors at the offending span. */
export function compileExpr(eg: EGraph, root: Expr, scope: ActionScope): CompiledExpr {
  const code: Instr[] = [];
  const sorts: SortName[] = [];
  const work: { e: Expr; ready: boolean }[] = [{ e: root, ready: false }];
  while (work.length > 0) {
    const item = work.pop()!;
    const e = item.e;
    switch (e.kind) {
      case 'int':
        code.push({ op: Op.Const, value: eg.encode('i64', e.value) });
        sorts.push('i64');
        continue;
      case 'float':
        code.push({ op: Op.Const, value: e.value });
        sorts.push('f64');
        continue;
      case 'string':
        code.push({ op: Op.Const, value: eg.intern(e.value) });
        sorts.push('String');
        continue;
      case 'bool':
        code.push({ op: Op.Const, value: e.value ? 1 : 0 });
        sorts.push('bool');
        continue;
      case 'var': {
        const local = scope.lookup(e.name);
        if (local) {
          code.push({ op: Op.Local, slot: local.slot });
          sorts.push(local.sort);
          continue;
        }
        const g = scope.globals.lookupGlobal(e.name);
        if (!g) throw new EggError(`unbound variable ${e.name}`, e.span);
        code.push({ op: Op.Global, read: g.read });
        sorts.push(g.sort);
        continue;
      }
      case 'call': {
        const table = eg.table(e.head);
        const n = e.args.length;
        if (!item.ready) {
          if (!table && !isPrimitiveOp(e.head)) throw new EggError(`unknown function ${e.head}`, e.span);
          if (table && n !== table.arity) {
            throw new EggError(`${e.head} takes ${table.arity} argument${table.arity === 1 ? '' : 's'}, found ${n}`, e.span);
          }
          item.ready = true;
          work.push(item);
          for (let i = n - 1; i >= 0; i--) work.push({ e: e.args[i]!, ready: false });
          continue;
        }
        const argSorts = sorts.splice(sorts.length - n, n);
        if (table) {
          argSorts.forEach((got, i) => {
            if (got !== table.argSorts[i]) {
              throw new EggError(
                `sort mismatch: argument ${i + 1} of ${e.head} must be ${table.argSorts[i]}, found ${got}`,
                e.args[i]!.span,
              );
            }
          });
          const op = table.kind === 'constructor' ? Op.Add : table.kind === 'relation' ? Op.Fact : Op.Get;
          code.push({ op, table, n, span: e.span });
          sorts.push(table.kind === 'relation' ? 'Unit' : table.outputSort);
          continue;
        }
        const options = matchingOverloads(e.head, argSorts, undefined);
        if (options.length === 0) throw new EggError(`no primitive ${e.head} takes (${argSorts.join(' ')})`, e.span);
        const o = options[0]!;
        code.push({ op: Op.Prim, apply: encodedPrimitive(eg, o, argSorts, e.span), n, head: e.head, span: e.span });
        sorts.push(o.output);
        continue;
      }
    }
  }
  const sort = sorts[0]!;
  const only = code.length === 1 ? code[0]! : undefined;
  if (only?.op === Op.Const) {
    const v = only.value;
    return { sort, evaluate: () => v };
  }
  if (only?.op === Op.Local) {
    const slot = only.slot;
    return { sort, evaluate: (env) => env[slot]! };
  }
  return { sort, evaluate: (env) => execute(eg, code, env) };
}

function execute(eg: EGraph, code: readonly Instr[], env: number[]): number {
  const stack: number[] = [];
  for (const ins of code) {
    switch (ins.op) {
      case Op.Const:
        stack.push(ins.value);
        break;
      case Op.Local:
        stack.push(env[ins.slot]!);
        break;
      case Op.Global:
        stack.push(ins.read());
        break;
      case Op.Add: {
        const args = stack.splice(stack.length - ins.n, ins.n);
        stack.push(eg.addEncoded(ins.table, args));
        break;
      }
      case Op.Fact: {
        const key = stack.splice(stack.length - ins.n, ins.n);
        key.push(0);
        eg.setEncoded(ins.table, key);
        stack.push(0);
        break;
      }
      case Op.Get: {
        const t = ins.table;
        const row = eg.findEncoded(t, stack.splice(stack.length - ins.n, ins.n));
        if (row < 0) throw new EggError(`${t.name} has no value for these arguments`, ins.span);
        const out = t.output(row);
        stack.push(t.outputIsClass ? eg.find(out) : out);
        break;
      }
      case Op.Prim: {
        const r = ins.apply(stack.splice(stack.length - ins.n, ins.n));
        if (r === undefined) throw new EggError(`${ins.head} is undefined for these arguments`, ins.span);
        stack.push(r);
        break;
      }
    }
  }
  return stack[0]!;
}
