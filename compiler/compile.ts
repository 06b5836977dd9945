// The pipeline as one function: Graph → (with training: backward pass and optimizer
// updates) → lowered kernels → naga-validated shaders with their SPIR-V/MSL/HLSL
// translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Manifest, OptimizationDesc } from '../schemas/manifest';
import { appendTraining, remapTraining, type TrainingGraph, type TrainingSpec } from './autodiff/train';
import { optimizeGraph, type OptimizeReport } from './egraph/optimize';
import type { Graph } from './ir/graph';
import { materializeParameters } from './ir/interpret';
import { lowerGraph, type LoweredKernel } from './lower';
import { writePlanFile } from './plan/bundle';
import { entryLiveNodes, planBundle, planEntries } from './plan/plan';
import { DEFAULT_TARGETS } from './target/targets';
import type { Target } from './target/target';
import { NAGA_VERSION, validateKernel, type ValidatedKernel } from './validate/naga';

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
  /** the GPU class the plan is for (default: generic, which runs on any WebGPU device) */
  target?: Target;
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
    timings[stage] = (timings[stage] ?? 0) + performance.now() - started;
    return result;
  };
  const target = options.target ?? DEFAULT_TARGETS[0];
  const parameters = timed('parameters', () => (options.weights === 'none' ? new Map<string, Float32Array>() : materializeParameters(graph, options.seed ?? 0)));
  if (options.optimize === false) {
    const training = timed('autodiff', () => (options.training ? appendTraining(graph, options.training) : undefined));
    return { ...planGraph(graph, training, parameters, target, options.source, timed), parameters, training, timings };
  }
  // The optimizer works on copies: named ops are rediscovered in the forward graph, which is
  // then differentiated and fused into kernels. The caller's graph gets the plain training
  // step appended, as the reference the plan must agree with.
  const forward = timed('optimize', () => optimizeGraph(graph, 'forward', target.cost));
  const trained = timed('autodiff', () => (options.training ? appendTraining(forward.graph, options.training) : undefined));
  const kernels = timed('optimize', () => optimizeGraph(forward.graph, 'kernels', target.cost, trained?.updates ?? []));
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
  const result = planGraph(kernels.graph, planned, parameters, target, options.source, timed, optimization);
  return { ...result, parameters, training, optimization: { forward: forward.report, kernels: kernels.report }, timings };
}

function planGraph(
  graph: Graph,
  training: TrainingGraph | undefined,
  parameters: Map<string, Float32Array>,
  target: Target,
  source: string | undefined,
  timed: <T>(stage: string, work: () => T) => T,
  optimization?: OptimizationDesc[],
) {
  const entries = planEntries(graph, training);
  const lowered = timed('lower', () => lowerGraph(graph, target, entryLiveNodes(graph, entries)));
  const validated = new Map<LoweredKernel, ValidatedKernel>();
  timed('validate', () => {
    for (const step of lowered.steps) {
      if (validated.has(step.kernel)) continue;
      const node = graph.nodes[step.node];
      validated.set(step.kernel, validateKernel(step.kernel, { op: node.op, node: node.name }));
    }
  });
  const { manifest, sections } = timed('plan', () => planBundle({ graph, entries, training, lowered, validated, parameters, nagaVersion: NAGA_VERSION, source }));
  if (optimization) manifest.optimization = optimization;
  const written = timed('write', () => writePlanFile(manifest, sections));
  return { bundle: written.bytes, manifest: written.manifest };
}
