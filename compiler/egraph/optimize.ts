// The optimization stage: Graph → an equivalent Graph with fewer, larger kernels. The
// graph goes into an e-graph as terms, the rule files run to saturation (or a limit), the
// cheapest equivalent program under the device cost model is extracted (DAG-aware, so a
// shared value is paid for once), and chains of pointwise ops become one kernel each.
//   'forward' (before autodiff): simplify + rediscover named ops; the result stays differentiable.
//   'kernels' (after autodiff, or for inference): simplify + discover + fuse, then pointwise fusion.
import type { Graph } from '../ir/graph';
import type { TensorType } from '../ir/types';
import type { CostFigures } from '../target/target';
import { classTypes, kernelCost } from './cost';
import { EGraph } from './egraph';
import { dagCostOf, extract } from './extract';
import { causalAttention } from './causal-attention';
import { fusePointwise } from './fuse-pointwise';
import { declaredArities, parseEgg } from './parse';
import { EggProgram } from './program';
import { RULE_FILES } from './rules';
import type { RunReport, StopReason } from './run';
import { extractionToGraph, graphToEGraph, termDeclarations, TermReader } from './terms';

export type OptimizePhase = 'forward' | 'kernels';

const PHASE_RULES: Record<OptimizePhase, string[]> = {
  forward: ['simplify.egg', 'discover.egg'],
  kernels: ['simplify.egg', 'discover.egg', 'fuse.egg', 'fuse-conv.egg', 'fuse-activations.egg', 'fuse-residual.egg', 'fuse-rope.egg', 'fuse-cache.egg'],
};

/**
 * The optimizer's budget: rule iterations and e-nodes, never wall time, so a model compiles
 * to the same plan on any machine however busy (defaults: 30 iterations, 200,000 e-nodes).
 */
export interface OptimizeLimits {
  iterations?: number;
  nodes?: number;
}

export interface OptimizeReport {
  phase: OptimizePhase;
  nodesBefore: number;
  nodesAfter: number;
  /** e-graph size when the rules stopped, and why they stopped */
  eNodes: number;
  eClasses: number;
  iterations: number;
  stopReason: StopReason;
  /** how often each rule fired, summed over iterations */
  rulesFired: Record<string, number>;
  /** the cost model's estimate (µs) of the graph as given and as extracted */
  costBefore: number;
  costAfter: number;
  /** kernels that replaced chains of pointwise ops */
  fused: { node: string; ops: string[] }[];
  milliseconds: { rules: number; extract: number; total: number };
  /** the e-graph runner's own report, for `formatReport` */
  run: RunReport;
}

export interface OptimizedGraph {
  graph: Graph;
  /** old node id → new node id (-1: folded away) */
  map: (id: number) => number;
  report: OptimizeReport;
}

/** Parses the embedded rule files with the generated `Op` datatype in front. */
function ruleProgram(eg: EGraph, files: readonly string[]): EggProgram {
  const program = new EggProgram(eg);
  const terms = parseEgg(termDeclarations(), 'terms.egg');
  program.run(terms);
  const declared = declaredArities(terms);
  for (const file of files) program.run(parseEgg(RULE_FILES[file], `compiler/egraph/rules/${file}`, { declared }));
  return program;
}

/** `roots`: nodes run for their effect besides the outputs (optimizer updates); `figures`: the target's cost model. */
export function optimizeGraph(graph: Graph, phase: OptimizePhase, figures: CostFigures, roots: readonly number[] = [], limits: OptimizeLimits = {}): OptimizedGraph {
  const started = performance.now();
  const eg = new EGraph();
  const program = ruleProgram(eg, PHASE_RULES[phase]);
  const classOf = graphToEGraph(graph, eg);
  eg.rebuild();
  const run = program.runRules({ iterationLimit: limits.iterations ?? 30, nodeLimit: limits.nodes ?? 200_000, timeLimitMs: Infinity });
  const ruled = performance.now();

  const known = new Map<number, TensorType>();
  graph.nodes.forEach((n, id) => known.set(classOf[id], n.type));
  const reader = new TermReader(eg);
  const types = classTypes(eg, reader, known);
  const cost = kernelCost(eg, reader, types, figures);
  const rootClasses = [...graph.outputs.map((o) => classOf[o.node]), ...roots.map((r) => classOf[r])];
  const extraction = extract(eg, rootClasses, { mode: 'dag', cost });
  const costBefore = graphCost(graph, cost, eg, reader, classOf);
  const extracted = extractionToGraph(graph, eg, extraction, classOf, roots);
  const extractedAt = performance.now();

  let result = extracted;
  let fused: OptimizeReport['fused'] = [];
  let causal = 0;
  if (phase === 'forward') {
    const rewritten = causalAttention(extracted.graph);
    result = { graph: rewritten.graph, map: (id) => (extracted.map(id) < 0 ? -1 : rewritten.map(extracted.map(id))) };
    causal = rewritten.rewritten;
  }
  if (phase === 'kernels') {
    const pointwise = fusePointwise(extracted.graph, roots.map(extracted.map));
    result = { graph: pointwise.graph, map: (id) => (extracted.map(id) < 0 ? -1 : pointwise.map(extracted.map(id))) };
    fused = pointwise.groups;
  }
  const rulesFired: Record<string, number> = {};
  for (const it of run.iterations) for (const [rule, n] of Object.entries(it.rulesFired)) rulesFired[rule] = (rulesFired[rule] ?? 0) + n;
  if (causal) rulesFired['causal attention from its constant mask'] = causal;
  return {
    graph: result.graph,
    map: result.map,
    report: {
      phase,
      nodesBefore: graph.nodes.length,
      nodesAfter: result.graph.nodes.length,
      eNodes: eg.nodeCount,
      eClasses: eg.classCount,
      iterations: run.iterations.length,
      stopReason: run.stopReason,
      rulesFired,
      costBefore,
      costAfter: dagCostOf(eg, extraction, cost),
      fused,
      milliseconds: { rules: ruled - started, extract: extractedAt - ruled, total: performance.now() - started },
      run,
    },
  };
}

/** The cost model's figure for the graph as given: each distinct original node once. */
function graphCost(graph: Graph, cost: ReturnType<typeof kernelCost>, eg: EGraph, reader: TermReader, classOf: readonly number[]): number {
  const byClass = eg.nodesByClass();
  const seen = new Set<number>();
  let total = 0;
  graph.nodes.forEach((node, id) => {
    const cls = eg.find(classOf[id]);
    if (seen.has(cls)) return;
    seen.add(cls);
    const original = byClass.get(cls)?.find((n) => reader.decode(n)?.op === node.op);
    if (original) total += cost(original, cls);
  });
  return total;
}
