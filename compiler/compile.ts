// The pipeline as one function: Graph → (with training: backward pass and optimizer
// updates) → lowered kernels → naga-validated shaders with their SPIR-V/MSL/HLSL
// translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Manifest, OptimizationDesc } from '../schemas/manifest';
import { appendTraining, remapTraining, type TrainingGraph, type TrainingSpec } from './autodiff/train';
import { optimizeGraph, type OptimizeReport } from './egraph/optimize';
import type { Graph } from './ir/graph';
import { materializeParameters } from './ir/interpret';
import { lowerGraph } from './lower';
import { splitK } from './lower/split-k';
import { streamK } from './lower/stream-k';
import { splitReductions } from './lower/split-reductions';
import { writePlanFile } from './plan/bundle';
import { entryLiveNodes, planBundle, planEntries } from './plan/plan';
import { validateKernels } from './validate/kernels';
import { NAGA_VERSION } from './validate/naga';

export interface CompileOptions {
  /** seed for parameter initial values (default 0) */
  seed?: number;
  /**
   * 'embedded' (default): the plan carries every parameter's initial values. 'none': it
   * carries none (parameters start at zero; load them with a training session's
   * importState), so a large model's plan compiles and ships without its weights.
   */
  weights?: 'embedded' | 'none';
  /** where the model came from, recorded in the manifest (e.g. 'examples/mlp.ts#mlp') */
  source?: string;
  /** compile a training plan: the loss output and the optimizer (adds entry 'train_step') */
  training?: TrainingSpec;
  /** run the optimizer (default true); false compiles every op as its own kernel */
  optimize?: boolean;
  /** threads running naga, this one included (1: validate in this thread); default: from the work and the cores */
  validationThreads?: number;
}

export interface CompiledPlan {
  bundle: Uint8Array;
  manifest: Manifest;
  /** the parameters' initial values as stored in the plan, by name (empty with weights: 'none') */
  parameters: Map<string, Float32Array>;
  /** the backward pass and updates added for training, when asked for (on the graph given) */
  training?: TrainingGraph;
  /** milliseconds per stage: parameters, optimize, autodiff, lower, validate, plan, write */
  timings: Record<string, number>;
  /** what the optimizer did, when it ran: before autodiff and on the kernels */
  optimization?: { forward: OptimizeReport; kernels: OptimizeReport };
}

export async function compileGraph(graph: Graph, options: CompileOptions = {}): Promise<CompiledPlan> {
  const timings: Record<string, number> = {};
  const timed = <T>(stage: string, work: () => T): T => {
    const started = performance.now();
    const result = work();
    const add = () => void (timings[stage] = (timings[stage] ?? 0) + performance.now() - started);
    if (result instanceof Promise) return result.finally(add) as T;
    add();
    return result;
  };
  const parameters = timed('parameters', () => (options.weights === 'none' ? new Map<string, Float32Array>() : materializeParameters(graph, options.seed ?? 0)));
  if (options.optimize === false) {
    const training = timed('autodiff', () => (options.training ? appendTraining(graph, options.training) : undefined));
    return { ...(await planGraph(graph, training, parameters, options.source, timed, options.validationThreads)), parameters, training, timings };
  }
  // The optimizer works on copies: named ops are rediscovered in the forward graph, which is
  // then differentiated and fused into kernels. The caller's graph gets the plain training
  // step appended, as the reference the plan must agree with.
  const forward = timed('optimize', () => optimizeGraph(graph, 'forward'));
  const trained = timed('autodiff', () => (options.training ? appendTraining(forward.graph, options.training) : undefined));
  const kernels = timed('optimize', () => optimizeGraph(forward.graph, 'kernels', trained?.updates ?? []));
  const planned = trained && remapTraining(trained, kernels.graph, kernels.map);
  const training = options.training ? appendTraining(graph, options.training) : undefined;
  const optimization = [forward.report, kernels.report].map((r) => ({
    phase: r.phase,
    nodesBefore: r.nodesBefore,
    nodesAfter: r.nodesAfter,
    eNodes: r.eNodes,
    eClasses: r.eClasses,
    iterations: r.iterations,
    stopReason: r.stopReason,
    rulesFired: r.rulesFired,
    costBefore: Math.round(r.costBefore * 100) / 100,
    costAfter: Math.round(r.costAfter * 100) / 100,
    fusedKernels: r.fused.length,
  }));
  const result = await planGraph(kernels.graph, planned, parameters, options.source, timed, options.validationThreads, optimization);
  return { ...result, parameters, training, optimization: { forward: forward.report, kernels: kernels.report }, timings };
}

async function planGraph(
  graph: Graph,
  training: TrainingGraph | undefined,
  parameters: Map<string, Float32Array>,
  source: string | undefined,
  timed: <T>(stage: string, work: () => T) => T,
  validationThreads: number | undefined,
  optimization?: OptimizationDesc[],
) {
  // products and reductions with too few tiles or rows to fill the GPU become two steps
  // (lower/split-k.ts, lower/split-reductions.ts), and so do products whose tiles fill the
  // last wave only in part (lower/stream-k.ts)
  ({ graph, training } = timed('lower', () => splitK(graph, training)));
  ({ graph, training } = timed('lower', () => streamK(graph, training)));
  ({ graph, training } = timed('lower', () => splitReductions(graph, training)));
  const entries = planEntries(graph, training);
  const lowered = timed('lower', () => lowerGraph(graph, entryLiveNodes(graph, entries)));
  const kernels = lowered.steps.map((step) => ({ kernel: step.kernel, origin: { op: graph.nodes[step.node].op, node: graph.nodes[step.node].name } }));
  const { validated } = await timed('validate', () => validateKernels(kernels, { threads: validationThreads }));
  const { manifest, sections } = timed('plan', () => planBundle({ graph, entries, training, lowered, validated, parameters, nagaVersion: NAGA_VERSION, source }));
  if (optimization) manifest.optimization = optimization;
  const written = timed('write', () => writePlanFile(manifest, sections));
  return { bundle: written.bytes, manifest: written.manifest };
}
