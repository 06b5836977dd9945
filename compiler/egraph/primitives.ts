// The primitive sorts' operations in one table: name → overloads (argument sorts, output
// sort, JS implementation). Queries use them as guards and computations, actions and
// `:merge` expressions as functions. Adding an operation means adding one row here.
import type { SortName } from './syntax';

/** A primitive value as the API sees it: i64 and f64 are numbers, String a string, bool a boolean. */
export type PrimitiveValue = number | string | boolean;

/** Stands for "any sort, the same for every `ANY` argument" in an overload (e.g. `!=`). */
export const ANY = '*';

/**
 * One signature of a primitive operation. `apply` gets decoded values and returns the
 * result, or `undefined` when the operation is not defined there (division by zero, a
 * false comparison used as a guard): a query then has no match, an action fails.
 */
export interface PrimitiveOverload {
  readonly args: readonly SortName[];
  readonly output: SortName;
  readonly apply: (args: readonly PrimitiveValue[]) => PrimitiveValue | undefined;
}

/** Raised by an operation whose result cannot be represented (i64 overflow). */
export class PrimitiveError extends Error {}

/**
 * An i64 result: an integer JS numbers hold exactly (within ±(2^53−1), the parser's range
 * too; egglog's i64 is wider), or a PrimitiveError.
 */
export function checkI64(v: number, what: string): number {
  if (!Number.isSafeInteger(v)) {
    throw new PrimitiveError(`i64 overflow in ${what}: the result ${v} is outside ±(2^53−1)`);
  }
  return v === 0 ? 0 : v; // no -0 among integers
}

type Num = (a: number, b: number) => number | undefined;
type Cmp = (a: number, b: number) => boolean;

function i64(name: string, f: Num): PrimitiveOverload {
  return {
    args: ['i64', 'i64'],
    output: 'i64',
    apply: ([a, b]) => {
      const r = f(a as number, b as number);
      return r === undefined ? undefined : checkI64(r, `(${name} ${a} ${b})`);
    },
  };
}
function f64(f: Num): PrimitiveOverload {
  return { args: ['f64', 'f64'], output: 'f64', apply: ([a, b]) => f(a as number, b as number) };
}
function cmp(sort: SortName, f: Cmp): PrimitiveOverload {
  return { args: [sort, sort], output: 'bool', apply: ([a, b]) => f(a as number, b as number) };
}
function bothCmp(f: Cmp): PrimitiveOverload[] {
  return [cmp('i64', f), cmp('f64', f)];
}

const shiftFactor = (b: number): number | undefined => (b >= 0 && b <= 63 ? 2 ** b : undefined);

/**
 * Every primitive operation. Comparisons return bool; used as a query fact, a false result
 * means "no match". i64 arithmetic is exact and refuses results beyond ±(2^53−1); `/` and `%`
 * truncate toward zero and are undefined for a zero divisor.
 */
export const PRIMITIVES: Readonly<Record<string, readonly PrimitiveOverload[]>> = {
  '+': [
    i64('+', (a, b) => a + b),
    f64((a, b) => a + b),
    { args: ['String', 'String'], output: 'String', apply: ([a, b]) => (a as string) + (b as string) },
  ],
  '-': [i64('-', (a, b) => a - b), f64((a, b) => a - b)],
  '*': [i64('*', (a, b) => a * b), f64((a, b) => a * b)],
  '/': [i64('/', (a, b) => (b === 0 ? undefined : Math.trunc(a / b))), f64((a, b) => a / b)],
  '%': [i64('%', (a, b) => (b === 0 ? undefined : a % b))],
  min: [i64('min', Math.min), f64(Math.min)],
  max: [i64('max', Math.max), f64(Math.max)],
  '<<': [
    i64('<<', (a, b) => {
      const f = shiftFactor(b);
      return f === undefined ? undefined : a * f;
    }),
  ],
  '>>': [
    i64('>>', (a, b) => {
      const f = shiftFactor(b);
      return f === undefined ? undefined : Math.floor(a / f);
    }),
  ],
  neg: [
    { args: ['f64'], output: 'f64', apply: ([a]) => -(a as number) },
    { args: ['i64'], output: 'i64', apply: ([a]) => checkI64(-(a as number), `(neg ${a})`) },
  ],
  '<': bothCmp((a, b) => a < b),
  '>': bothCmp((a, b) => a > b),
  '<=': bothCmp((a, b) => a <= b),
  '>=': bothCmp((a, b) => a >= b),
  '=': [{ args: [ANY, ANY], output: 'bool', apply: ([a, b]) => sameValue(a!, b!) }],
  '!=': [{ args: [ANY, ANY], output: 'bool', apply: ([a, b]) => !sameValue(a!, b!) }],
  and: [{ args: ['bool', 'bool'], output: 'bool', apply: ([a, b]) => (a as boolean) && (b as boolean) }],
  or: [{ args: ['bool', 'bool'], output: 'bool', apply: ([a, b]) => (a as boolean) || (b as boolean) }],
  not: [{ args: ['bool'], output: 'bool', apply: ([a]) => !(a as boolean) }],
  'to-f64': [{ args: ['i64'], output: 'f64', apply: ([a]) => a as number }],
  'to-i64': [{ args: ['f64'], output: 'i64', apply: ([a]) => checkI64(Math.trunc(a as number), `(to-i64 ${a})`) }],
};

/** Equality of primitive values as egglog's ordered floats see it: NaN equals NaN. */
export function sameValue(a: PrimitiveValue, b: PrimitiveValue): boolean {
  return a === b || (a !== a && b !== b);
}

export function isPrimitiveOp(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(PRIMITIVES, name);
}

/**
 * The overloads of `name` compatible with what is known of its argument and output sorts
 * (`undefined` = unknown). `ANY` arguments must all have one sort.
 */
export function matchingOverloads(
  name: string,
  argSorts: readonly (SortName | undefined)[],
  outSort: SortName | undefined,
): PrimitiveOverload[] {
  const all = PRIMITIVES[name] ?? [];
  return all.filter((o) => {
    if (o.args.length !== argSorts.length) return false;
    if (outSort !== undefined && o.output !== outSort) return false;
    let any: SortName | undefined;
    for (let i = 0; i < o.args.length; i++) {
      const want = o.args[i]!;
      const got = argSorts[i];
      if (want === ANY) {
        if (got === undefined) continue;
        if (any !== undefined && any !== got) return false;
        any = got;
      } else if (got !== undefined && got !== want) return false;
    }
    return true;
  });
}

/** The argument sorts of an overload once its `ANY` is known. */
export function resolveArgSorts(o: PrimitiveOverload, argSorts: readonly (SortName | undefined)[]): (SortName | undefined)[] {
  const any = o.args.map((s, i) => (s === ANY ? argSorts[i] : undefined)).find((s) => s !== undefined);
  return o.args.map((s) => (s === ANY ? any : s));
}
