// The pipeline as one function: Graph → (with training: backward pass and optimizer
// updates) → lowered kernels → naga-validated shaders with their SPIR-V/MSL/HLSL
// translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Manifest } from '../schemas/manifest';
import { appendTraining, remapTraining, type TrainingGraph, type TrainingSpec } from './autodiff/train';
import { optimizeGraph, type OptimizeReport } from './egraph/optimize';
import type { Graph } from './ir/graph';
import { materializeParameters } from './ir/interpret';
import { lowerGraph, type LoweredKernel } from './lower';
import { writePlanFile } from './plan/bundle';
import { entryLiveNodes, planBundle, planEntries } from './plan/plan';
import { NAGA_VERSION, validateKernel, type ValidatedKernel } from './validate/naga';

export interface CompileOptions {
  /** seed for parameter initial values (default 0) */
  seed?: number;
  /** where the model came from, recorded in the manifest (e.g. 'examples/mlp.ts#mlp') */
  source?: string;
  /** compile a training plan: the loss output and the optimizer (adds entry 'train_step') */
  training?: TrainingSpec;
  /** run the optimizer (default true); false compiles every op as its own kernel */
  optimize?: boolean;
}

export interface CompiledPlan {
  bundle: Uint8Array;
  manifest: Manifest;
  /** the parameters' initial values as stored in the plan, by name */
  parameters: Map<string, Float32Array>;
  /** the backward pass and updates added for training, when asked for (on the graph given) */
  training?: TrainingGraph;
  /** what the optimizer did, when it ran: before autodiff and on the kernels */
  optimization?: { forward: OptimizeReport; kernels: OptimizeReport };
}

export async function compileGraph(graph: Graph, options: CompileOptions = {}): Promise<CompiledPlan> {
  const parameters = materializeParameters(graph, options.seed ?? 0);
  if (options.optimize === false) {
    const training = options.training ? appendTraining(graph, options.training) : undefined;
    return { ...(await planGraph(graph, training, parameters, options.source)), parameters, training };
  }
  // The optimizer works on copies: named ops are rediscovered in the forward graph, which is
  // then differentiated and fused into kernels. The caller's graph gets the plain training
  // step appended, as the reference the plan must agree with.
  const forward = optimizeGraph(graph, 'forward');
  const trained = options.training ? appendTraining(forward.graph, options.training) : undefined;
  const kernels = optimizeGraph(forward.graph, 'kernels', trained?.updates ?? []);
  const planned = trained && remapTraining(trained, kernels.graph, kernels.map);
  const training = options.training ? appendTraining(graph, options.training) : undefined;
  const result = await planGraph(kernels.graph, planned, parameters, options.source);
  return { ...result, parameters, training, optimization: { forward: forward.report, kernels: kernels.report } };
}

async function planGraph(graph: Graph, training: TrainingGraph | undefined, parameters: Map<string, Float32Array>, source: string | undefined) {
  const entries = planEntries(graph, training);
  const lowered = lowerGraph(graph, entryLiveNodes(graph, entries));
  const validated = new Map<LoweredKernel, ValidatedKernel>();
  for (const step of lowered.steps) {
    if (validated.has(step.kernel)) continue;
    const node = graph.nodes[step.node];
    validated.set(step.kernel, validateKernel(step.kernel, { op: node.op, node: node.name }));
  }
  const { manifest, sections } = planBundle({ graph, entries, training, lowered, validated, parameters, nagaVersion: NAGA_VERSION, source });
  const written = writePlanFile(manifest, sections);
  return { bundle: written.bytes, manifest: written.manifest };
}
