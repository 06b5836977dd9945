// Rules and the runner. A rule is a compiled query plus compiled actions; a rewrite is a
// rule whose action unions its left-hand side with its right-hand side. The runner does
// equality saturation in iterations (search every rule, apply every match, rebuild) until
// saturation or one of its explicit limits, and records what each iteration did.
import { ActionScope, type CompiledActions, compileActions } from './actions';
import type { EGraph } from './egraph';
import { isPrimitiveOp } from './primitives';
import { type GlobalScope, NO_GLOBALS, type Query, compileQuery, search } from './query';
import { type Action, type Command, EggError, type Expr, type Fact, type Span } from './syntax';

/** The default ruleset's name: rules declared without `:ruleset`. */
export const DEFAULT_RULESET = '';

/**
 * A rule ready to run: when `query` matches, `actions` run with the match's variables.
 * `lastRun` is the semi-naive cursor: the timestamp from which rows count as new to it.
 */
export class Rule {
  lastRun = 0;

  constructor(
    readonly name: string,
    readonly ruleset: string,
    readonly query: Query,
    readonly actions: CompiledActions,
    /** query variables copied into the action environment's first slots, in order */
    readonly inputs: readonly number[],
    readonly span?: Span,
  ) {}
}

/** What `compileRule` needs; mirrors the `rule` command. */
export interface RuleSpec {
  name: string;
  query: readonly Fact[];
  actions: readonly Action[];
  ruleset?: string;
  span?: Span;
}

/** Types and compiles a rule against the declarations in `eg`. */
export function compileRule(eg: EGraph, spec: RuleSpec, globals: GlobalScope = NO_GLOBALS): Rule {
  const query = compileQuery(eg, spec.query, globals);
  const scope = new ActionScope(globals);
  const inputs: number[] = [];
  for (const [name, i] of query.names) {
    if (globals.lookupGlobal(name)) continue; // actions read globals themselves
    scope.bind(name, query.variables[i]!.sort);
    inputs.push(i);
  }
  const actions = compileActions(eg, spec.actions, scope);
  return new Rule(spec.name, spec.ruleset ?? DEFAULT_RULESET, query, actions, inputs, spec.span);
}

/** The variable holding a rewrite's matched left-hand side (`@` names are the engine's). */
const LHS = '@lhs';

/**
 * Compiles `(rewrite lhs rhs :when conds)` to a rule: query `(= LHS lhs)` plus the
 * conditions, action `(union LHS rhs)` (or `set` when lhs is a function with a primitive
 * value). A birewrite gives two rules, `name (→)` and `name (←)`. The name is `name`, else
 * the command's `:name`, else `rewrite file:line`.
 */
export function compileRewrite(
  eg: EGraph,
  cmd: Extract<Command, { kind: 'rewrite' }>,
  globals: GlobalScope = NO_GLOBALS,
  name?: string,
): Rule[] {
  const where = `${cmd.span.file}:${cmd.span.line}`;
  const base = name ?? cmd.name ?? `${cmd.bidirectional ? 'birewrite' : 'rewrite'} ${where}`;
  const one = (lhs: Expr, rhs: Expr, n: string): Rule => {
    if (lhs.kind !== 'call') {
      const found = lhs.kind === 'var' ? `the variable ${lhs.name}` : 'a literal';
      throw new EggError(`the left-hand side of a rewrite must be a constructor or function call; found ${found}`, lhs.span);
    }
    if (!eg.table(lhs.head)) {
      throw new EggError(
        isPrimitiveOp(lhs.head)
          ? `the left-hand side of a rewrite must be a constructor or function call; found the primitive ${lhs.head}`
          : `unknown function ${lhs.head}`,
        lhs.span,
      );
    }
    const table = eg.table(lhs.head)!;
    const root: Expr = { kind: 'var', name: LHS, span: lhs.span };
    const action: Action = table.outputIsClass
      ? { kind: 'union', a: root, b: rhs, span: rhs.span }
      : { kind: 'set', call: lhs, value: rhs, span: rhs.span };
    return compileRule(
      eg,
      {
        name: n,
        query: [{ kind: 'eq', exprs: [root, lhs], span: lhs.span }, ...cmd.conditions],
        actions: [action],
        ruleset: cmd.ruleset,
        span: cmd.span,
      },
      globals,
    );
  };
  if (!cmd.bidirectional) return [one(cmd.lhs, cmd.rhs, base)];
  return [one(cmd.lhs, cmd.rhs, `${base} (→)`), one(cmd.rhs, cmd.lhs, `${base} (←)`)];
}

// ───────────────────────────── the runner ─────────────────────────────

/** Why a run stopped. */
export type StopReason = 'saturated' | 'iteration-limit' | 'node-limit' | 'time-limit' | 'until';

/**
 * The runner's limits. Defaults (egg's, with a larger node limit): 30 iterations,
 * 100,000 e-nodes, 5 seconds.
 */
export interface RunOptions {
  iterationLimit?: number;
  /** stop once the e-graph has more e-nodes than this (checked while applying, too) */
  nodeLimit?: number;
  timeLimitMs?: number;
  /** run only the rules of this ruleset (default: every rule given) */
  ruleset?: string;
  /** stop as soon as this query has a match (`:until`), checked before each iteration */
  until?: Query;
  /**
   * false: match every rule against the whole database each iteration instead of only
   * against what is new (slower; the same result, which the tests check)
   */
  seminaive?: boolean;
}

export const DEFAULT_ITERATION_LIMIT = 30;
export const DEFAULT_NODE_LIMIT = 100_000;
export const DEFAULT_TIME_LIMIT_MS = 5_000;

/** What one iteration of the runner did: matches applied per rule, the e-graph's size after, and where the time went. */
export interface IterationReport {
  /** matches applied per rule (rules with none are left out) */
  rulesFired: Record<string, number>;
  /** e-nodes and e-classes after the iteration's rebuild */
  nodes: number;
  classes: number;
  searchMs: number;
  applyMs: number;
  rebuildMs: number;
}

/** A run: why it stopped, each iteration's report, and the wall time of the whole run. `formatReport` prints it. */
export interface RunReport {
  stopReason: StopReason;
  iterations: IterationReport[];
  totalMs: number;
}

const now = (): number => performance.now();

/**
 * Equality saturation: each iteration searches every rule (semi-naively: only matches
 * involving rows new since the rule last ran), then applies all matches, then rebuilds.
 * Stops when an iteration changes nothing (`saturated`) or a limit is reached. Limits are
 * checked between rules while searching and every few hundred matches while applying, so a
 * blow-up within one iteration still stops near the limit; rules whose matches were not
 * all applied keep their cursor, so a later run picks those matches up again.
 *
 * ```ts
 * const report = runRules(eg, prog.rules, { iterationLimit: 10, nodeLimit: 50_000 });
 * console.log(formatReport(report));
 * ```
 */
export function runRules(eg: EGraph, rules: readonly Rule[], options: RunOptions = {}): RunReport {
  const iterationLimit = options.iterationLimit ?? DEFAULT_ITERATION_LIMIT;
  const nodeLimit = options.nodeLimit ?? DEFAULT_NODE_LIMIT;
  const timeLimit = options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS;
  const active = options.ruleset === undefined ? rules : rules.filter((r) => r.ruleset === options.ruleset);
  const start = now();
  const iterations: IterationReport[] = [];
  const finish = (stopReason: StopReason): RunReport => ({ stopReason, iterations, totalMs: now() - start });

  eg.rebuild();
  while (true) {
    if (options.until && search(eg, options.until, undefined, () => true) > 0) return finish('until');
    if (iterations.length >= iterationLimit) return finish('iteration-limit');
    if (now() - start > timeLimit) return finish('time-limit');
    if (eg.nodeCount > nodeLimit) return finish('node-limit');

    // search
    const t0 = now();
    const searchStamp = eg.timestamp;
    const found: number[][] = [];
    const counts: number[] = [];
    let timedOut = false;
    for (const rule of active) {
      const buf: number[] = [];
      const inputs = rule.inputs;
      const since = options.seminaive === false ? undefined : rule.lastRun;
      const k = search(eg, rule.query, since, (values) => {
        for (let j = 0; j < inputs.length; j++) buf.push(values[inputs[j]!]!);
      });
      found.push(buf);
      counts.push(k);
      if (now() - start > timeLimit) {
        timedOut = true;
        break;
      }
    }
    if (timedOut) return finish('time-limit'); // nothing applied, no cursor moved
    // rows written from here on are new to every rule searched above
    eg.timestamp = searchStamp + 1;
    const t1 = now();

    // apply
    const versionBefore = eg.version;
    const rulesFired: Record<string, number> = {};
    let stop: StopReason | undefined;
    for (let i = 0; i < found.length && stop === undefined; i++) {
      const rule = active[i]!;
      const buf = found[i]!;
      const width = rule.inputs.length;
      const count = counts[i]!;
      const env = new Array<number>(rule.actions.envSize).fill(0);
      let applied = 0;
      for (let m = 0; m < count; m++) {
        for (let k = 0; k < width; k++) env[k] = buf[m * width + k]!;
        rule.actions.run(env);
        applied++;
        if ((applied & 255) === 0) {
          if (eg.nodeCount > nodeLimit) stop = 'node-limit';
          else if (now() - start > timeLimit) stop = 'time-limit';
          if (stop !== undefined) break;
        }
      }
      if (applied > 0) rulesFired[rule.name] = (rulesFired[rule.name] ?? 0) + applied;
      if (applied === count) rule.lastRun = searchStamp + 1;
    }
    // rules not reached keep their cursor; rules searched with no matches move on
    const t2 = now();

    // rebuild
    eg.rebuild();
    const t3 = now();
    iterations.push({
      rulesFired,
      nodes: eg.nodeCount,
      classes: eg.classCount,
      searchMs: t1 - t0,
      applyMs: t2 - t1,
      rebuildMs: t3 - t2,
    });
    if (stop !== undefined) return finish(stop);
    if (eg.version === versionBefore) return finish('saturated');
  }
}

/** A readable table of a run: one line per iteration, then each rule's total matches. */
export function formatReport(report: RunReport): string {
  const lines: string[] = [];
  const n = report.iterations.length;
  lines.push(`stopped: ${report.stopReason} after ${n} iteration${n === 1 ? '' : 's'} (${report.totalMs.toFixed(1)} ms)`);
  const header = ['iter', 'nodes', 'classes', 'search ms', 'apply ms', 'rebuild ms', 'matches'];
  const rows = report.iterations.map((it, i) => [
    String(i + 1),
    String(it.nodes),
    String(it.classes),
    it.searchMs.toFixed(1),
    it.applyMs.toFixed(1),
    it.rebuildMs.toFixed(1),
    String(Object.values(it.rulesFired).reduce((a, b) => a + b, 0)),
  ]);
  lines.push(...table(header, rows));
  const totals = new Map<string, number>();
  for (const it of report.iterations) {
    for (const [name, k] of Object.entries(it.rulesFired)) totals.set(name, (totals.get(name) ?? 0) + k);
  }
  if (totals.size > 0) {
    lines.push('');
    const sorted = [...totals].sort((a, b) => b[1] - a[1]);
    lines.push(...table(['rule', 'matches'], sorted.map(([name, k]) => [name, String(k)])));
  }
  return lines.join('\n');
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]): string =>
    cells.map((cell, c) => (c === 0 && header[0] === 'rule' ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}
