// The pipeline as one function: Graph → (with training: backward pass and optimizer
// updates) → lowered kernels → naga-validated shaders with their SPIR-V/MSL/HLSL
// translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Manifest } from '../schemas/manifest';
import { appendTraining, type TrainingGraph, type TrainingSpec } from './autodiff/train';
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
}

export interface CompiledPlan {
  bundle: Uint8Array;
  manifest: Manifest;
  /** the parameters' initial values as stored in the plan, by name */
  parameters: Map<string, Float32Array>;
  /** the backward pass and updates added for training, when asked for */
  training?: TrainingGraph;
}

export async function compileGraph(graph: Graph, options: CompileOptions = {}): Promise<CompiledPlan> {
  const parameters = materializeParameters(graph, options.seed ?? 0);
  const training = options.training ? appendTraining(graph, options.training) : undefined;
  const entries = planEntries(graph, training);
  const lowered = lowerGraph(graph, entryLiveNodes(graph, entries));
  const validated = new Map<LoweredKernel, ValidatedKernel>();
  for (const step of lowered.steps) {
    if (validated.has(step.kernel)) continue;
    const node = graph.nodes[step.node];
    validated.set(step.kernel, validateKernel(step.kernel, { op: node.op, node: node.name }));
  }
  const { manifest, sections } = planBundle({ graph, entries, training, lowered, validated, parameters, nagaVersion: NAGA_VERSION, source: options.source });
  const written = writePlanFile(manifest, sections);
  return { bundle: written.bytes, manifest: written.manifest, parameters, training };
}
