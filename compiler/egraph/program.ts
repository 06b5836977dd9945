// Runs egglog commands against an e-graph: declarations become tables, rewrites and rules
// become compiled rules in rulesets, top-level actions change the e-graph, and run / check /
// extract do what they say. Everything is type-checked against the declarations first;
// mistakes are EggErrors at the offending form's span.
import { ActionScope, compileActions, compileExpr } from './actions';
import type { EGraph, Value } from './egraph';
import { type CostFunction, extract, formatPrimitive, formatTerm } from './extract';
import { type GlobalScope, compileQuery, search } from './query';
import {
  DEFAULT_NODE_LIMIT,
  DEFAULT_RULESET,
  DEFAULT_TIME_LIMIT_MS,
  type Rule,
  type RunOptions,
  type RunReport,
  compileRewrite,
  compileRule,
  runRules,
} from './run';
import { type Command, EggError, type Expr, type Fact, type SortName, type Span } from './syntax';

/** What a command produced: a run's report, an extracted term, a passed check. */
export type ProgramOutput =
  | { kind: 'run'; report: RunReport; span: Span }
  | {
      kind: 'extract';
      /** the extracted term as an s-expression (for a primitive: its literal) */
      term: string;
      cost: number;
      /** with `(extract e n)`: up to n terms, one per e-node of the class, cheapest first */
      variants?: { term: string; cost: number }[];
      span: Span;
    }
  | { kind: 'check'; span: Span };

/** Settings for a program's `run` and `extract` commands. */
export interface ProgramOptions {
  /** node and time limits for every `run` command (iterations come from the command) */
  nodeLimit?: number;
  timeLimitMs?: number;
  /** how `extract` commands choose: tree cost (egglog's) or DAG cost; default tree */
  extraction?: 'tree' | 'dag';
  cost?: CostFunction;
}

/**
 * An egglog program being run against an e-graph. Commands may come in several batches
 * (`run` can be called again); declarations, rules and globals accumulate.
 *
 * ```ts
 * const eg = new EGraph();
 * const prog = new EggProgram(eg);
 * prog.run(parseEgg(rulesText, 'rules.egg'));      // declarations, rewrites, rules
 * const x = eg.add('Var', ['x']);                  // the bridge inserts its graph...
 * const root = eg.add('Mul', [x, eg.add('Num', [1])]);
 * const report = prog.runRules({ iterationLimit: 20 }); // ...runs the default ruleset...
 * const ex = extract(eg, [root], { mode: 'dag' });  // ...and reads the result back
 * ```
 */
export class EggProgram implements GlobalScope {
  /** every rule, in declaration order */
  readonly rules: Rule[] = [];
  readonly rulesets = new Set<string>([DEFAULT_RULESET]);
  /** every `run` command's report, in order */
  readonly reports: RunReport[] = [];
  private readonly globals = new Map<string, { sort: SortName; raw: number }>();
  private readonly ruleNames = new Set<string>();

  constructor(
    readonly eg: EGraph,
    readonly options: ProgramOptions = {},
  ) {}

  /** Runs commands in order; returns what run, extract and check produced. Throws EggError on the first failure. */
  run(commands: readonly Command[]): ProgramOutput[] {
    const out: ProgramOutput[] = [];
    for (const c of commands) {
      const o = this.command(c);
      if (o) out.push(o);
    }
    return out;
  }

  /** Runs a ruleset's rules (default: the default ruleset) with the given limits. */
  runRules(options: RunOptions = {}): RunReport {
    const ruleset = options.ruleset ?? DEFAULT_RULESET;
    if (!this.rulesets.has(ruleset)) throw new EggError(`unknown ruleset ${ruleset}`);
    const report = runRules(this.eg, this.rules, {
      nodeLimit: this.options.nodeLimit ?? DEFAULT_NODE_LIMIT,
      timeLimitMs: this.options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS,
      ...options,
      ruleset,
    });
    this.reports.push(report);
    return report;
  }

  /** The value of a top-level `let` (class ids canonical). */
  global(name: string): Value | undefined {
    const g = this.globals.get(name);
    return g && this.eg.decode(g.sort, g.raw);
  }

  lookupGlobal(name: string): { sort: SortName; read: () => number } | undefined {
    const g = this.globals.get(name);
    if (g === undefined) return undefined;
    const eg = this.eg;
    return { sort: g.sort, read: eg.isClassSort(g.sort) ? () => eg.find(g.raw) : () => g.raw };
  }

  private command(c: Command): ProgramOutput | undefined {
    const eg = this.eg;
    switch (c.kind) {
      case 'datatype':
        at(c.span, () => eg.declareSort(c.name));
        for (const v of c.variants) {
          at(v.span, () => eg.declareFunction({ name: v.name, kind: 'constructor', args: v.args, output: c.name, cost: v.cost }));
        }
        return;
      case 'sort':
        at(c.span, () => eg.declareSort(c.name));
        return;
      case 'constructor':
        at(c.span, () => eg.declareFunction({ name: c.name, kind: 'constructor', args: c.args, output: c.output, cost: c.cost }));
        return;
      case 'relation':
        at(c.span, () => eg.declareFunction({ name: c.name, kind: 'relation', args: c.args, output: 'Unit' }));
        return;
      case 'function': {
        if (!eg.hasSort(c.output)) throw new EggError(`unknown sort ${c.output} in the declaration of ${c.name}`, c.span);
        let mergeEncoded: ((old: number, next: number) => number) | undefined;
        if (c.merge) {
          const scope = new ActionScope(this);
          const oldSlot = scope.bind('old', c.output);
          const newSlot = scope.bind('new', c.output);
          const m = compileExpr(eg, c.merge, scope);
          if (m.sort !== c.output) {
            throw new EggError(`the :merge of ${c.name} must produce ${c.output}, found ${m.sort}`, c.merge.span);
          }
          const env = new Array<number>(scope.size).fill(0);
          mergeEncoded = (a, b) => {
            env[oldSlot] = a;
            env[newSlot] = b;
            return m.evaluate(env);
          };
        }
        at(c.span, () => eg.declareFunction({ name: c.name, kind: 'function', args: c.args, output: c.output, mergeEncoded }));
        return;
      }
      case 'ruleset':
        if (this.rulesets.has(c.name)) throw new EggError(`ruleset ${c.name} is already declared`, c.span);
        this.rulesets.add(c.name);
        return;
      case 'rewrite': {
        this.checkRuleset(c.ruleset, c.span);
        const rules = compileRewrite(eg, c, this, this.ruleName(c.name, c.bidirectional ? 'birewrite' : 'rewrite', c.span));
        for (const r of rules) this.rules.push(r);
        return;
      }
      case 'rule':
        this.checkRuleset(c.ruleset, c.span);
        this.rules.push(
          compileRule(
            eg,
            { name: this.ruleName(c.name, 'rule', c.span), query: c.query, actions: c.actions, ruleset: c.ruleset, span: c.span },
            this,
          ),
        );
        return;
      case 'action': {
        const a = c.action;
        if (a.kind === 'let') {
          if (this.globals.has(a.name)) throw new EggError(`${a.name} is already defined`, a.span);
          const e = compileExpr(eg, a.expr, new ActionScope(this));
          this.globals.set(a.name, { sort: e.sort, raw: e.evaluate([]) });
          return;
        }
        const actions = compileActions(eg, [a], new ActionScope(this));
        actions.run(new Array<number>(actions.envSize).fill(0));
        return;
      }
      case 'run': {
        this.checkRuleset(c.ruleset, c.span);
        const until = c.until ? compileQuery(eg, c.until, this) : undefined;
        const report = this.runRules({ iterationLimit: c.iterations, ruleset: c.ruleset ?? DEFAULT_RULESET, until });
        return { kind: 'run', report, span: c.span };
      }
      case 'check': {
        const q = compileQuery(eg, c.facts, this);
        eg.rebuild();
        if (search(eg, q, undefined, () => true) === 0) {
          throw new EggError(`check failed: ${c.facts.map((f) => formatFact(f)).join(' ')} has no match`, c.span);
        }
        return { kind: 'check', span: c.span };
      }
      case 'extract':
        return this.extractCommand(c.expr, c.variants, c.span);
    }
  }

  private extractCommand(expr: Expr, variants: number | undefined, span: Span): ProgramOutput {
    const eg = this.eg;
    const e = compileExpr(eg, expr, new ActionScope(this));
    const raw = e.evaluate([]);
    if (!eg.isClassSort(e.sort)) {
      return { kind: 'extract', term: formatPrimitive(eg.decode(e.sort, raw), e.sort), cost: 0, span };
    }
    const mode = this.options.extraction ?? 'tree';
    const cost = this.options.cost;
    const root = eg.find(raw);
    const ex = at(span, () => extract(eg, [root], { mode, cost }));
    const result: ProgramOutput = { kind: 'extract', term: formatTerm(eg, ex, root), cost: ex.cost, span };
    if (variants !== undefined) {
      // one term per e-node of the root class: that node, then the best choices below it
      const options: { term: string; cost: number }[] = [];
      for (const node of eg.nodes(root)) {
        const t = eg.table(node.head)!;
        const children = node.args.filter((_, i) => eg.isClassSort(t.argSorts[i]!)) as number[];
        if (children.includes(root)) continue;
        try {
          const sub = extract(eg, children, { mode, cost });
          const choices = new Map(sub.choices);
          choices.set(root, node);
          const term = formatTerm(eg, { ...sub, choices, roots: [root] }, root);
          options.push({ term, cost: (cost ? cost(node, root) : t.cost) + sub.cost });
        } catch (e) {
          if (!(e instanceof EggError)) throw e;
          // children with no finite term, or whose best terms go through the root: not a variant
        }
      }
      options.sort((a, b) => a.cost - b.cost);
      result.variants = options.slice(0, variants);
    }
    return result;
  }

  private checkRuleset(name: string | undefined, span: Span): void {
    if (name !== undefined && !this.rulesets.has(name)) throw new EggError(`unknown ruleset ${name}`, span);
  }

  /** The given name, or `kind file:line`; made unique with `#2`, `#3`... */
  private ruleName(given: string | undefined, kind: string, span: Span): string {
    let name = given ?? `${kind} ${span.file}:${span.line}`;
    if (this.ruleNames.has(name)) {
      if (given !== undefined) throw new EggError(`a rule named ${given} already exists`, span);
      let k = 2;
      while (this.ruleNames.has(`${name} #${k}`)) k++;
      name = `${name} #${k}`;
    }
    this.ruleNames.add(name);
    return name;
  }
}

/** Runs `f`, giving an EggError without a location the span of the form being run. */
function at<T>(span: Span, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof EggError && e.span === undefined) throw new EggError(e.message, span);
    throw e;
  }
}

/** An expression as egglog source, for messages; long ones are cut short with `…`. */
export function formatExpr(e: Expr, budget = 200): string {
  let out = '';
  const work: (Expr | string)[] = [e];
  while (work.length > 0 && out.length < budget) {
    const item = work.pop()!;
    if (typeof item === 'string') {
      out += item;
      continue;
    }
    switch (item.kind) {
      case 'int':
      case 'bool':
        out += String(item.value);
        break;
      case 'float':
        out += formatPrimitive(item.value, 'f64');
        break;
      case 'string':
        out += JSON.stringify(item.value);
        break;
      case 'var':
        out += item.name;
        break;
      case 'call':
        out += `(${item.head}`;
        work.push(')');
        for (let i = item.args.length - 1; i >= 0; i--) work.push(item.args[i]!, ' ');
    }
  }
  return work.length > 0 ? `${out}…` : out;
}

function formatFact(f: Fact): string {
  return f.kind === 'eq' ? `(= ${f.exprs.map((x) => formatExpr(x)).join(' ')})` : formatExpr(f.expr);
}
