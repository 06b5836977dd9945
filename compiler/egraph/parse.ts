// Reads programs written in egglog's s-expression language into the Command forms of
// syntax.ts, in two steps: a reader (text → s-expressions, each with its file:line:col) and
// a converter (s-expressions → commands, facts, actions, terms). Every refusal is an EggError.
import { type Action, type Command, EggError, type Expr, type Fact, type Span, type Variant } from './syntax';

export interface ParseOptions {
  /**
   * Constructors, functions and relations declared by files parsed before this one (name →
   * number of arguments; `declaredArities` computes it). A bare symbol that names a nullary
   * one becomes a call, exactly as for declarations earlier in the same text.
   */
  declared?: ReadonlyMap<string, number>;
}

/**
 * Parses an egglog-subset program. `file` is only used for spans, so errors read
 * `file:line:col: message`.
 *
 * ```ts
 * parseEgg('(datatype Math (Num i64) (Add Math Math))\n(rewrite (Add a b) (Add b a))', 'math.egg');
 * // → [{ kind: 'datatype', name: 'Math', ... }, { kind: 'rewrite', lhs: { kind: 'call', head: 'Add', ... }, ... }]
 * ```
 */
export function parseEgg(text: string, file: string, options: ParseOptions = {}): Command[] {
  const converter = new Converter(options.declared);
  return readSexps(text, file).map((sexp) => converter.command(sexp));
}

/** Name → number of arguments of every constructor, datatype variant, function and relation declared by `commands`. */
export function declaredArities(commands: readonly Command[], into = new Map<string, number>()): Map<string, number> {
  for (const c of commands) {
    if (c.kind === 'datatype') for (const v of c.variants) into.set(v.name, v.args.length);
    else if (c.kind === 'constructor' || c.kind === 'function' || c.kind === 'relation') into.set(c.name, c.args.length);
  }
  return into;
}

// ───────────────────────────── reader ─────────────────────────────

type Literal = Extract<Expr, { kind: 'int' | 'float' | 'string' | 'bool' }>;

/** An s-expression as read, before anyone knows whether it is a command, a fact or a term. */
type Sexp =
  | { kind: 'symbol'; name: string; span: Span }
  | { kind: 'literal'; literal: Literal; text: string; span: Span }
  | { kind: 'list'; items: Sexp[]; span: Span };

type SymbolSexp = Extract<Sexp, { kind: 'symbol' }>;
type Declared = 'constructor' | 'function' | 'relation';
type ListSexp = Extract<Sexp, { kind: 'list' }>;

// The same literal rules as egglog's reader: an i64 first, then the three special floats,
// then anything Rust's f64 parser takes as a finite number; everything else is a symbol.
const INT = /^[+-]?[0-9]+$/;
const FLOAT = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;
/** Starts like a number: a symbol such as `2x` is a typo far more often than a name. */
const NUMBER_START = /^[+-]?\.?[0-9]/;

const NEWLINE = 10;
const SEMICOLON = 59;
const OPEN = 40;
const CLOSE = 41;
const QUOTE = 34;
const BACKSLASH = 92;

function isSpace(code: number): boolean {
  // ASCII by comparison; other Unicode whitespace (rare in rule files) by the regex.
  return code === 32 || (code >= 9 && code <= 13) || (code > 127 && /\s/.test(String.fromCharCode(code)));
}

/**
 * Text → top-level s-expressions. Iterative, so deeply nested generated terms cannot
 * overflow the stack. Columns count UTF-16 code units from 1, as editors and tsc do.
 */
function readSexps(text: string, file: string): Sexp[] {
  const end = text.length;
  let pos = 0;
  let line = 1;
  let lineStart = 0;
  const top: Sexp[] = [];
  const open: ListSexp[] = [];

  while (pos < end) {
    const code = text.charCodeAt(pos);
    if (code === NEWLINE) {
      pos++;
      line++;
      lineStart = pos;
      continue;
    }
    if (isSpace(code)) {
      pos++;
      continue;
    }
    if (code === SEMICOLON) {
      while (pos < end && text.charCodeAt(pos) !== NEWLINE) pos++;
      continue;
    }
    const span: Span = { file, line, column: pos - lineStart + 1 };
    let sexp: Sexp;
    if (code === OPEN) {
      open.push({ kind: 'list', items: [], span });
      pos++;
      continue;
    } else if (code === CLOSE) {
      pos++;
      const list = open.pop();
      if (!list) throw new EggError('unexpected `)`: no `(` is open here', span);
      sexp = list;
    } else if (code === QUOTE) {
      const start = pos++;
      let value = '';
      let chunk = pos;
      for (;;) {
        if (pos >= end) throw new EggError('this string is never closed: no `"` follows it before the end of the file', span);
        const c = text.charCodeAt(pos);
        if (c === QUOTE) break;
        if (c === NEWLINE) {
          line++;
          lineStart = pos + 1;
        }
        if (c !== BACKSLASH) {
          pos++;
          continue;
        }
        value += text.slice(chunk, pos);
        if (pos + 1 >= end) throw new EggError('this string is never closed: no `"` follows it before the end of the file', span);
        const e = text[pos + 1]!;
        if (e === '"' || e === '\\') value += e;
        else if (e === 'n') value += '\n';
        else if (e === 't') value += '\t';
        else {
          throw new EggError(`unknown escape \`\\${e}\` in a string; the escapes are \\" \\\\ \\n and \\t`, {
            file,
            line,
            column: pos - lineStart + 1,
          });
        }
        pos += 2;
        chunk = pos;
      }
      value += text.slice(chunk, pos);
      pos++;
      sexp = { kind: 'literal', literal: { kind: 'string', value, span }, text: text.slice(start, pos), span };
    } else {
      const start = pos;
      while (pos < end) {
        const c = text.charCodeAt(pos);
        if (c === OPEN || c === CLOSE || c === SEMICOLON || c === QUOTE || isSpace(c)) break;
        pos++;
      }
      sexp = atom(text.slice(start, pos), span);
    }
    (open.length > 0 ? open[open.length - 1]!.items : top).push(sexp);
  }

  if (open.length > 0) {
    const outer = open[0]!;
    const inner = open[open.length - 1]!;
    const also =
      inner === outer ? '' : ` (the innermost unclosed \`(\` is at ${inner.span.line}:${inner.span.column})`;
    throw new EggError(`this \`(\` is never closed: the file ends before its \`)\`${also}`, outer.span);
  }
  return top;
}

function atom(text: string, span: Span): Sexp {
  if (text === 'true' || text === 'false') return literalSexp({ kind: 'bool', value: text === 'true', span }, text);
  if (INT.test(text)) {
    const value = Number(text);
    // JS numbers hold integers exactly only up to 2^53; past that two literals could silently be equal.
    if (!Number.isSafeInteger(value)) {
      throw new EggError(
        `the integer ${text} is outside the range this engine supports (±(2^53−1), where egglog's i64 is wider)`,
        span,
      );
    }
    return literalSexp({ kind: 'int', value: value === 0 ? 0 : value, span }, text);
  }
  if (text === 'NaN') return literalSexp({ kind: 'float', value: NaN, span }, text);
  if (text === 'inf') return literalSexp({ kind: 'float', value: Infinity, span }, text);
  if (text === '-inf') return literalSexp({ kind: 'float', value: -Infinity, span }, text);
  if (FLOAT.test(text)) {
    const value = Number(text);
    if (!Number.isFinite(value)) throw new EggError(`the number ${text} is too large for an f64; write inf or -inf`, span);
    return literalSexp({ kind: 'float', value, span }, text);
  }
  if (NUMBER_START.test(text)) {
    throw new EggError(
      `\`${text}\` is not a number (integers look like 42 or -7, floats like 1.5, -2.0e-3, inf, NaN), and a name cannot start with a digit`,
      span,
    );
  }
  return { kind: 'symbol', name: text, span };
}

function literalSexp(literal: Literal, text: string): Sexp {
  return { kind: 'literal', literal, text, span: literal.span };
}

// ───────────────────────────── converter ─────────────────────────────

/** How each supported form is written, for error messages. */
const USAGE = {
  datatype: '(datatype Name (Variant Sort... [:cost n])...)',
  sort: '(sort Name)',
  constructor: '(constructor Name (Sort...) Sort [:cost n])',
  function: '(function Name (Sort...) Sort [:merge expr | :no-merge])',
  relation: '(relation Name (Sort...))',
  ruleset: '(ruleset name)',
  rewrite: '(rewrite lhs rhs [:when (fact...)] [:ruleset name] [:name "name"])',
  birewrite: '(birewrite lhs rhs [:when (fact...)] [:ruleset name] [:name "name"])',
  rule: '(rule (fact...) (action...) [:ruleset name] [:name "name"])',
  run: '(run [ruleset] iterations [:until fact...])',
  extract: '(extract term [variants])',
  check: '(check fact...)',
  let: '(let name term)',
  union: '(union term term)',
  set: '(set (function arg...) value)',
  delete: '(delete (function arg...))',
} as const;
type FormName = keyof typeof USAGE;

const SUPPORTED_COMMANDS = Object.keys(USAGE).join(', ');

/** egglog commands outside this subset, with what to write instead where there is something. */
const UNSUPPORTED_COMMANDS: Record<string, string> = {
  'datatype*': 'declare the datatypes one by one with datatype (mutual references are fine)',
  'unstable-combined-ruleset': '',
  'run-schedule': 'use a sequence of (run ruleset n) commands',
  push: '',
  pop: '',
  include: 'pass the files to the engine in order instead',
  'print-function': '',
  'print-size': '',
  'print-stats': '',
  input: '',
  output: '',
  fail: '',
  prove: '',
  'prove-exists': '',
  subsume: '',
  panic: '',
  define: 'write (let name term)',
  declare: 'write (constructor name () Sort)',
  simplify: 'write (run n) then (extract term)',
  'query-extract': 'write (extract term)',
  calc: '',
  'set-option': '',
};

/**
 * How many values an option takes. `unsupported` marks an egglog option of that form which
 * this subset leaves out, so the error says "not supported" rather than "no such option".
 */
type OptionArity = 'flag' | 'one' | 'many' | 'unsupported';
interface OptionSpec {
  arity: OptionArity;
  /** what the value is, for "option :x takes one value (...)" */
  what: string;
}
const UNSUPPORTED: OptionSpec = { arity: 'unsupported', what: '' };
const COST: OptionSpec = { arity: 'one', what: 'a non-negative integer' };
interface ParsedOption {
  key: SymbolSexp;
  values: Sexp[];
}

/** The names a misspelt top-level head is checked against. */
const TYPO_TARGETS = Object.keys(USAGE);

class Converter {
  /** names declared in this text, with what and where, for nullary resolution and messages */
  private readonly local = new Map<string, { what: Declared; arity: number; span: Span }>();
  private wildcards = 0;

  constructor(private readonly earlier: ReadonlyMap<string, number> = new Map()) {}

  // ── commands ──

  command(s: Sexp): Command {
    if (s.kind !== 'list') {
      throw new EggError(`expected a command in parentheses, such as (rewrite lhs rhs); found ${describe(s)}`, s.span);
    }
    const head = s.items[0];
    if (!head) throw new EggError(`expected a command; found an empty list (). The supported commands are ${SUPPORTED_COMMANDS}`, s.span);
    if (head.kind !== 'symbol' || head.name.startsWith(':')) {
      throw new EggError(`a command starts with its name, such as rewrite or run; found ${describe(head)}`, head.span);
    }
    const span = s.span;
    switch (head.name) {
      case 'datatype':
        return this.datatype(s);
      case 'sort': {
        const { args } = this.form(s, 'sort', 1, 2);
        if (args.length === 2) {
          const extra = args[1]!;
          throw new EggError(
            extra.kind === 'list'
              ? `container sorts such as ${show(extra)} are not supported in this subset; sort expects ${USAGE.sort}`
              : `sort expects ${USAGE.sort}; got 2 arguments`,
            extra.kind === 'list' ? extra.span : span,
          );
        }
        return { kind: 'sort', name: this.name(args[0]!, 'the sort name'), span };
      }
      case 'constructor': {
        const { args, options } = this.form(s, 'constructor', 3, 3, { ':cost': COST, ':unextractable': UNSUPPORTED });
        const inputs = sortList(args[1]!, 'constructor');
        const name = this.declare(args[0]!, 'constructor', inputs.length);
        const cost = options.get(':cost');
        return {
          kind: 'constructor',
          name,
          args: inputs,
          output: this.name(args[2]!, 'the output sort'),
          ...(cost ? { cost: this.uint(cost.values[0]!, 'the cost after :cost') } : {}),
          span,
        };
      }
      case 'function': {
        const { args, options } = this.form(s, 'function', 3, 3, {
          ':merge': { arity: 'one', what: 'a term over `old` and `new`' },
          ':no-merge': { arity: 'flag', what: '' },
          ':unextractable': UNSUPPORTED,
        });
        const inputs = sortList(args[1]!, 'function');
        const name = this.declare(args[0]!, 'function', inputs.length);
        const merge = options.get(':merge');
        const noMerge = options.get(':no-merge');
        if (merge && noMerge) {
          throw new EggError('function takes either :merge or :no-merge, not both', noMerge.key.span);
        }
        return {
          kind: 'function',
          name,
          args: inputs,
          output: this.name(args[2]!, 'the output sort'),
          ...(merge ? { merge: this.expr(merge.values[0]!) } : {}),
          span,
        };
      }
      case 'relation': {
        const { args } = this.form(s, 'relation', 2, 2);
        const inputs = sortList(args[1]!, 'relation');
        return { kind: 'relation', name: this.declare(args[0]!, 'relation', inputs.length), args: inputs, span };
      }
      case 'ruleset': {
        const { args } = this.form(s, 'ruleset', 1, 1);
        return { kind: 'ruleset', name: this.name(args[0]!, 'the ruleset name'), span };
      }
      case 'rewrite':
      case 'birewrite': {
        const { args, options } = this.form(s, head.name, 2, 2, {
          ':when': { arity: 'one', what: 'a list of facts, such as ((= x y))' },
          ':ruleset': { arity: 'one', what: 'a ruleset name' },
          ':name': { arity: 'one', what: 'a string' },
          ':subsume': UNSUPPORTED,
        });
        const when = options.get(':when');
        const ruleset = options.get(':ruleset');
        const name = options.get(':name');
        return {
          kind: 'rewrite',
          lhs: this.expr(args[0]!),
          rhs: this.expr(args[1]!),
          conditions: when ? this.factList(when.values[0]!, 'the conditions after :when') : [],
          ...(ruleset ? { ruleset: this.name(ruleset.values[0]!, 'a ruleset name after :ruleset') } : {}),
          ...(name ? { name: this.string(name.values[0]!, 'the rule name after :name (a string)') } : {}),
          bidirectional: head.name === 'birewrite',
          span,
        };
      }
      case 'rule': {
        const { args, options } = this.form(s, 'rule', 2, 2, {
          ':ruleset': { arity: 'one', what: 'a ruleset name' },
          ':name': { arity: 'one', what: 'a string' },
          ':naive': UNSUPPORTED,
          ':unsafe-seminaive': UNSUPPORTED,
          ':no-decomp': UNSUPPORTED,
        });
        const ruleset = options.get(':ruleset');
        const name = options.get(':name');
        return {
          kind: 'rule',
          query: this.factList(args[0]!, "the rule's query (a list of facts)"),
          actions: this.actionList(args[1]!),
          ...(ruleset ? { ruleset: this.name(ruleset.values[0]!, 'a ruleset name after :ruleset') } : {}),
          ...(name ? { name: this.string(name.values[0]!, 'the rule name after :name (a string)') } : {}),
          span,
        };
      }
      case 'run':
        return this.run(s);
      case 'extract': {
        const { args } = this.form(s, 'extract', 1, 2, { ':extractor': UNSUPPORTED });
        return {
          kind: 'extract',
          expr: this.expr(args[0]!),
          ...(args[1] ? { variants: this.uint(args[1], 'the number of variants') } : {}),
          span,
        };
      }
      case 'check': {
        const { args } = this.form(s, 'check', 1, Infinity);
        return { kind: 'check', facts: args.map((f) => this.fact(f)), span };
      }
      case 'let':
      case 'union':
      case 'set':
      case 'delete':
        return { kind: 'action', action: this.action(s), span };
    }
    if (head.name in UNSUPPORTED_COMMANDS) {
      const instead = UNSUPPORTED_COMMANDS[head.name];
      throw new EggError(
        `${head.name} is an egglog command this subset does not support${instead ? ` (${instead})` : ''}; the supported commands are ${SUPPORTED_COMMANDS}`,
        head.span,
      );
    }
    // Anything else is a term to insert, as in egglog. A head one edit away from a command
    // name and declared nowhere is almost surely a misspelt command, not a constructor.
    if (!this.isDeclared(head.name)) {
      const near = TYPO_TARGETS.find((c) => oneEditApart(c, head.name));
      if (near) {
        throw new EggError(
          `unknown command \`${head.name}\` (did you mean ${near}?): it is neither a supported command (${SUPPORTED_COMMANDS}) nor a declared constructor or function`,
          head.span,
        );
      }
    }
    return { kind: 'action', action: { kind: 'term', expr: this.expr(s), span }, span };
  }

  private datatype(s: ListSexp): Command {
    const { args } = this.form(s, 'datatype', 1, Infinity);
    const name = this.name(args[0]!, 'the datatype name');
    const variants: Variant[] = args.slice(1).map((v) => {
      if (v.kind !== 'list' || v.items[0]?.kind !== 'symbol') {
        throw new EggError(`expected a variant such as (Add ${name} ${name}) in datatype ${name}; found ${describe(v)}`, v.span);
      }
      const positional = v.items.slice(1);
      const optionAt = positional.findIndex(isKeyword);
      const sorts = optionAt < 0 ? positional : positional.slice(0, optionAt);
      const options = this.options(optionAt < 0 ? [] : positional.slice(optionAt), `variant ${show(v.items[0])}`, {
        ':cost': COST,
        ':unextractable': UNSUPPORTED,
      });
      const cost = options.get(':cost');
      const argSorts = sorts.map((a, i) => this.name(a, `the sort of argument ${i + 1} of variant ${show(v.items[0])}`));
      return {
        name: this.declare(v.items[0], 'constructor', argSorts.length),
        args: argSorts,
        ...(cost ? { cost: this.uint(cost.values[0]!, 'the cost after :cost') } : {}),
        span: v.span,
      };
    });
    return { kind: 'datatype', name, variants, span: s.span };
  }

  private run(s: ListSexp): Command {
    const { args, options } = this.form(s, 'run', 1, 2, { ':until': { arity: 'many', what: 'one or more facts' } });
    const iterations = args[args.length - 1]!;
    const ruleset = args.length === 2 ? this.name(args[0]!, 'the ruleset name') : undefined;
    if (args.length === 1 && iterations.kind === 'symbol') {
      throw new EggError(
        `run expects ${USAGE.run}; found the symbol ${iterations.name} but no iteration count (write (run ${iterations.name} n))`,
        iterations.span,
      );
    }
    const until = options.get(':until');
    let stop: Fact[] | undefined;
    if (until) {
      // egglog writes the facts one after another (:until (= a b) (f x)); a single list of
      // facts (:until ((= a b) (f x))) reads the same, as it does for :when.
      const only = until.values[0]!;
      stop =
        until.values.length === 1 && only.kind === 'list' && only.items[0]?.kind === 'list'
          ? this.factList(only, 'the facts after :until')
          : until.values.map((f) => this.fact(f));
    }
    return {
      kind: 'run',
      ...(ruleset !== undefined ? { ruleset } : {}),
      iterations: this.uint(iterations, 'the number of iterations'),
      ...(stop ? { until: stop } : {}),
      span: s.span,
    };
  }

  // ── facts and actions ──

  private factList(s: Sexp, what: string): Fact[] {
    return this.list(s, what, 'fact', '((= x y) (Add x y))').map((f) => this.fact(f));
  }

  private actionList(s: Sexp): Action[] {
    return this.list(s, "the rule's actions (a list of actions)", 'action', '((union x y))').map((a) => this.action(a));
  }

  /** A parenthesised list of facts or actions, with a hint when the parentheses around a single one are missing. */
  private list(s: Sexp, what: string, item: string, example: string): Sexp[] {
    if (s.kind !== 'list') throw new EggError(`expected ${what}, such as ${example}; found ${describe(s)}`, s.span);
    if (s.items[0]?.kind === 'symbol') {
      throw new EggError(
        `expected ${what}, such as ${example}; found a single ${item} ${show(s)}. Wrap it in another pair of parentheses: (${show(s)})`,
        s.span,
      );
    }
    return s.items;
  }

  private fact(s: Sexp): Fact {
    if (s.kind !== 'list' || s.items.length === 0) {
      throw new EggError(`expected a fact in parentheses, such as (= x y) or (Add x y); found ${describe(s)}`, s.span);
    }
    const head = s.items[0]!;
    if (head.kind === 'symbol' && head.name === '=') {
      const terms = s.items.slice(1);
      if (terms.length < 2) {
        throw new EggError(`= expects (= term term...); got ${count(terms.length, 'term')}`, s.span);
      }
      return { kind: 'eq', exprs: terms.map((t) => this.expr(t)), span: s.span };
    }
    return { kind: 'term', expr: this.expr(s), span: s.span };
  }

  private action(s: Sexp): Action {
    if (s.kind !== 'list' || s.items.length === 0) {
      throw new EggError(`expected an action in parentheses, such as (union x y) or (Add x y); found ${describe(s)}`, s.span);
    }
    const head = s.items[0]!;
    const span = s.span;
    if (head.kind === 'symbol') {
      switch (head.name) {
        case 'let': {
          const { args } = this.form(s, 'let', 2, 2);
          const target = args[0]!;
          const name = this.name(target, 'the name to bind');
          if (name === '_') throw new EggError('let cannot bind `_`, which matches anything and names nothing', target.span);
          if (this.isDeclared(name)) {
            throw new EggError(`let cannot bind \`${name}\`: it already names ${this.declaredWhere(name)}`, target.span);
          }
          return { kind: 'let', name, expr: this.expr(args[1]!), span };
        }
        case 'union': {
          const { args } = this.form(s, 'union', 2, 2);
          return { kind: 'union', a: this.expr(args[0]!), b: this.expr(args[1]!), span };
        }
        case 'set': {
          const { args } = this.form(s, 'set', 2, 2);
          return { kind: 'set', call: this.call(args[0]!, 'set'), value: this.expr(args[1]!), span };
        }
        case 'delete': {
          const { args } = this.form(s, 'delete', 1, 1);
          return { kind: 'delete', call: this.call(args[0]!, 'delete'), span };
        }
        case 'subsume':
        case 'panic':
        case 'extract':
          throw new EggError(
            `${head.name} is an egglog action this subset does not support; the actions are let, union, set, delete and a term to insert`,
            head.span,
          );
      }
    }
    return { kind: 'term', expr: this.expr(s), span };
  }

  /** The `(f args...)` of set and delete: an application, never a variable or literal. */
  private call(s: Sexp, form: 'set' | 'delete'): Expr & { kind: 'call' } {
    const e = s.kind === 'list' ? this.expr(s) : undefined;
    if (e?.kind !== 'call') {
      throw new EggError(`${form} expects ${USAGE[form]}: its first argument is a function applied to arguments; found ${describe(s)}`, s.span);
    }
    return e;
  }

  // ── terms ──

  /** A term. Iterative over nesting, like the reader, so generated deep terms are fine. */
  expr(root: Sexp): Expr {
    if (root.kind !== 'list') return this.leaf(root);
    type Frame = { list: ListSexp; head: string; args: Expr[]; next: number };
    const stack: Frame[] = [this.frame(root)];
    for (;;) {
      const top = stack[stack.length - 1]!;
      const item = top.list.items[top.next++];
      if (item) {
        if (item.kind === 'list') stack.push(this.frame(item));
        else top.args.push(this.leaf(item));
        continue;
      }
      stack.pop();
      const call: Expr = { kind: 'call', head: top.head, args: top.args, span: top.list.span };
      if (stack.length === 0) return call;
      stack[stack.length - 1]!.args.push(call);
    }
  }

  /** The start of a call `(head ...)`: its head must be a name. */
  private frame(s: ListSexp): { list: ListSexp; head: string; args: Expr[]; next: number } {
    const head = s.items[0];
    if (!head) throw new EggError('`()` (egglog\'s Unit value) is not supported in this subset; expected a term', s.span);
    if (head.kind !== 'symbol' || head.name.startsWith(':') || head.name === '_') {
      throw new EggError(
        `a term in parentheses starts with a constructor, function or primitive name, such as (Add x y); found ${describe(head)}`,
        head.span,
      );
    }
    return { list: s, head: head.name, args: [], next: 1 };
  }

  private leaf(s: Exclude<Sexp, ListSexp>): Expr {
    if (s.kind === 'literal') return s.literal;
    const name = s.name;
    if (name.startsWith(':')) throw new EggError(`unexpected option \`${name}\` where a term was expected`, s.span);
    // Each `_` is its own variable, as in egglog; `@` cannot start a user name, so the fresh names cannot clash.
    if (name === '_') return { kind: 'var', name: `@_${++this.wildcards}`, span: s.span };
    if (name.startsWith('@')) throw new EggError(`names starting with \`@\` are reserved for the engine; found \`${name}\``, s.span);
    const arity = this.arity(name);
    if (arity === 0) return { kind: 'call', head: name, args: [], span: s.span };
    if (arity !== undefined) {
      throw new EggError(
        `\`${name}\` is ${this.declaredWhere(name)}, which takes ${count(arity, 'argument')}, so it cannot be a variable; apply it, as (${name} ...)`,
        s.span,
      );
    }
    return { kind: 'var', name, span: s.span };
  }

  // ── shapes of forms ──

  /**
   * Splits `(head arg... :key value... ...)` into its positional arguments (checked to be
   * between min and max) and its options (checked against `spec`).
   */
  private form(
    s: ListSexp,
    form: FormName,
    min: number,
    max: number,
    spec: Record<string, OptionSpec> = {},
  ): { args: Sexp[]; options: Map<string, ParsedOption> } {
    const rest = s.items.slice(1);
    const optionAt = rest.findIndex(isKeyword);
    const args = optionAt < 0 ? rest : rest.slice(0, optionAt);
    if (args.length < min || args.length > max) {
      throw new EggError(`${form} expects ${USAGE[form]}; got ${count(args.length, 'argument')}`, s.span);
    }
    return { args, options: this.options(optionAt < 0 ? [] : rest.slice(optionAt), form, spec) };
  }

  /** `:key value...` pairs; a key's values run up to the next key. */
  private options(items: Sexp[], form: string, spec: Record<string, OptionSpec>): Map<string, ParsedOption> {
    const out = new Map<string, ParsedOption>();
    const known = Object.keys(spec).filter((k) => spec[k]!.arity !== 'unsupported');
    const offer = known.length ? `its options are ${known.join(', ')}` : 'it takes no options';
    for (let i = 0; i < items.length; ) {
      const key = items[i++] as SymbolSexp; // callers start at a keyword, and each loop stops at the next
      const values: Sexp[] = [];
      while (i < items.length && !isKeyword(items[i]!)) values.push(items[i++]!);
      const want = spec[key.name];
      if (!want) throw new EggError(`${form} has no option \`${key.name}\`; ${offer}`, key.span);
      if (want.arity === 'unsupported') {
        throw new EggError(`egglog's \`${key.name}\` option of ${form} is not supported in this subset; ${offer}`, key.span);
      }
      if (out.has(key.name)) throw new EggError(`option \`${key.name}\` is given twice`, key.span);
      const n = values.length;
      if (want.arity === 'flag' && n !== 0) {
        throw new EggError(`option \`${key.name}\` takes no value; found ${describe(values[0]!)}`, values[0]!.span);
      }
      if (want.arity === 'one' && n !== 1) {
        throw new EggError(`option \`${key.name}\` takes one value (${want.what}); got ${count(n, 'value')}`, n ? values[1]!.span : key.span);
      }
      if (want.arity === 'many' && n === 0) {
        throw new EggError(`option \`${key.name}\` takes ${want.what}; got none`, key.span);
      }
      out.set(key.name, { key, values });
    }
    return out;
  }

  private name(s: Sexp, what: string): string {
    if (s.kind !== 'symbol' || s.name.startsWith(':')) throw new EggError(`expected ${what} (a symbol); found ${describe(s)}`, s.span);
    if (s.name.startsWith('@')) throw new EggError(`names starting with \`@\` are reserved for the engine; found \`${s.name}\``, s.span);
    return s.name;
  }

  private uint(s: Sexp, what: string): number {
    if (s.kind !== 'literal' || s.literal.kind !== 'int' || s.literal.value < 0) {
      throw new EggError(`expected ${what} (a non-negative integer); found ${describe(s)}`, s.span);
    }
    return s.literal.value;
  }

  private string(s: Sexp, what: string): string {
    if (s.kind !== 'literal' || s.literal.kind !== 'string') throw new EggError(`expected ${what}; found ${describe(s)}`, s.span);
    return s.literal.value;
  }

  // ── declarations seen so far ──

  private declare(s: Sexp, what: Declared, arity: number): string {
    const name = this.name(s, `the ${what} name`);
    if (this.isDeclared(name)) {
      throw new EggError(`\`${name}\` is declared twice: it is already ${this.declaredWhere(name)}`, s.span);
    }
    this.local.set(name, { what, arity, span: s.span });
    return name;
  }

  private arity(name: string): number | undefined {
    return this.local.get(name)?.arity ?? this.earlier.get(name);
  }

  private isDeclared(name: string): boolean {
    return this.arity(name) !== undefined;
  }

  private declaredWhere(name: string): string {
    const d = this.local.get(name);
    return d ? `the ${d.what} declared at ${d.span.file}:${d.span.line}:${d.span.column}` : 'a constructor or function declared by an earlier file';
  }
}

// ───────────────────────────── helpers ─────────────────────────────

function isKeyword(s: Sexp): s is SymbolSexp {
  return s.kind === 'symbol' && s.name.startsWith(':') && s.name.length > 1;
}

/** The input sorts of a declaration: `(Sort...)`. */
function sortList(s: Sexp, form: FormName): string[] {
  if (s.kind !== 'list') {
    throw new EggError(`${form} expects ${USAGE[form]}: the input sorts go in parentheses, () when there are none; found ${describe(s)}`, s.span);
  }
  return s.items.map((item, i) => {
    if (item.kind !== 'symbol' || item.name.startsWith(':')) {
      throw new EggError(`expected the sort of input ${i + 1} (a symbol such as i64 or Math); found ${describe(item)}`, item.span);
    }
    return item.name;
  });
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** How a form is named in a message: "the symbol x", "the number 3", "the list (Add x y)". */
function describe(s: Sexp): string {
  if (s.kind === 'symbol') return s.name.startsWith(':') ? `the option ${s.name}` : `the symbol ${s.name}`;
  if (s.kind === 'list') return s.items.length === 0 ? 'the empty list ()' : `the list ${show(s)}`;
  switch (s.literal.kind) {
    case 'string':
      return `the string ${s.text}`;
    case 'bool':
      return `the boolean ${s.text}`;
    default:
      return `the number ${s.text}`;
  }
}

/** Source-like text of a form, cut short for messages. */
function show(s: Sexp, limit = 60): string {
  const text = source(s);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function source(s: Sexp): string {
  return s.kind === 'symbol' ? s.name : s.kind === 'literal' ? s.text : `(${s.items.map(source).join(' ')})`;
}

/** True when b is a one-character insertion, deletion, substitution or swap away from a (a ≠ b). */
function oneEditApart(a: string, b: string): boolean {
  if (a === b || Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) {
    if (a.slice(i + 1) === b.slice(i + 1)) return true; // substitution
    return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2); // swap
  }
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}
