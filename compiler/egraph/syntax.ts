// The egglog-language subset the optimizer's rules are written in, as the parser produces
// it and the engine runs it: commands (datatype, constructor, function, rewrite, rule, run,
// extract, ...), facts (query atoms) and actions. README.md here lists the subset.

/** Where a form starts in its .egg file, for error messages. */
export interface Span {
  file: string;
  line: number;
  column: number;
}

/** Primitive sorts plus user sorts (datatypes); `Unit` is the output of relations. */
export type SortName = string;
export const PRIMITIVE_SORTS = ['i64', 'f64', 'String', 'bool', 'Unit'] as const;

/**
 * A term. Integer literals are JS numbers (i64 values are kept within ±2^53, checked);
 * a `call` is a constructor, function or primitive applied to arguments.
 */
export type Expr =
  | { kind: 'int'; value: number; span: Span }
  | { kind: 'float'; value: number; span: Span }
  | { kind: 'string'; value: string; span: Span }
  | { kind: 'bool'; value: boolean; span: Span }
  | { kind: 'var'; name: string; span: Span }
  | { kind: 'call'; head: string; args: Expr[]; span: Span };

/** A query atom: `(= a b ...)` equates terms; a bare term must exist (or, for a primitive, hold). */
export type Fact = { kind: 'eq'; exprs: Expr[]; span: Span } | { kind: 'term'; expr: Expr; span: Span };

export type Action =
  | { kind: 'let'; name: string; expr: Expr; span: Span }
  | { kind: 'union'; a: Expr; b: Expr; span: Span }
  /** `(set (f args...) value)`: define a function's value (merged with an existing one) */
  | { kind: 'set'; call: Expr & { kind: 'call' }; value: Expr; span: Span }
  /** `(delete (f args...))` */
  | { kind: 'delete'; call: Expr & { kind: 'call' }; span: Span }
  /** a bare term: insert it */
  | { kind: 'term'; expr: Expr; span: Span };

export interface Variant {
  name: string;
  args: SortName[];
  /** per-node extraction cost (egglog's `:cost`); default 1 */
  cost?: number;
  span: Span;
}

export type Command =
  /** `(datatype Name (Variant Sort ...) ...)` */
  | { kind: 'datatype'; name: string; variants: Variant[]; span: Span }
  /** `(sort Name)`: a user sort whose constructors are declared separately */
  | { kind: 'sort'; name: string; span: Span }
  /** `(constructor Name (Sort ...) Output [:cost n])` */
  | { kind: 'constructor'; name: string; args: SortName[]; output: SortName; cost?: number; span: Span }
  /** `(function Name (Sort ...) Output [:merge expr])`; `old` and `new` are bound in merge */
  | { kind: 'function'; name: string; args: SortName[]; output: SortName; merge?: Expr; span: Span }
  /** `(relation Name (Sort ...))`: a function to Unit */
  | { kind: 'relation'; name: string; args: SortName[]; span: Span }
  /** `(ruleset name)` */
  | { kind: 'ruleset'; name: string; span: Span }
  /** `(rewrite lhs rhs [:when (facts)] [:ruleset r] [:name "n"])`, or birewrite (both directions) */
  | { kind: 'rewrite'; name?: string; lhs: Expr; rhs: Expr; conditions: Fact[]; ruleset?: string; bidirectional: boolean; span: Span }
  /** `(rule (facts) (actions) [:ruleset r] [:name "n"])` */
  | { kind: 'rule'; name?: string; query: Fact[]; actions: Action[]; ruleset?: string; span: Span }
  /** a top-level action: let, union, set, delete or a term */
  | { kind: 'action'; action: Action; span: Span }
  /** `(run [ruleset] n [:until (facts)])` */
  | { kind: 'run'; ruleset?: string; iterations: number; until?: Fact[]; span: Span }
  /** `(extract expr [variants])` */
  | { kind: 'extract'; expr: Expr; variants?: number; span: Span }
  /** `(check facts...)`: fails unless the query has a match */
  | { kind: 'check'; facts: Fact[]; span: Span };

/** A parse or type error in an .egg program, with the form's location. */
export class EggError extends Error {
  override readonly name = 'EggError';
  constructor(
    message: string,
    readonly span?: Span,
  ) {
    super(span ? `${span.file}:${span.line}:${span.column}: ${message}` : message);
  }
}
