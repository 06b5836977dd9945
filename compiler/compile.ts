// The pipeline as one function: Graph → (with training: backward pass and optimizer
// updates) → lowered kernels → naga-validated shaders with their SPIR-V/MSL/HLSL
// translations → buffer and dispatch plan → .mnplan bytes.
// Each stage is its own module; this file only threads values from one to the next.
import type { Manifest, OptimizationDesc } from '../schemas/manifest';
import type { EntrySpec } from './api';
import { CompileError } from './ir/errors';
import { appendTraining, remapTraining, type TrainingGraph, type TrainingSpec } from './autodiff/train';
import { optimizeGraph, type OptimizeReport } from './egraph/optimize';
import { attrsOf, type Graph, type Node } from './ir/graph';
import type { LoweredKernel } from './lower';
import { materializeParameters, parameterSources, storedParameters } from './ir/interpret';
import { initialValues } from './ir/init';
import { checkWeightStorage, storeWeights, type StoredWeights, type WeightStorage } from './ir/weight-storage';
import { lowerGraph } from './lower';
import { fileSink, memorySink, writePlan, type BundleSink } from './plan/bundle';
import { inputRanges } from './plan/input-ranges';
import { entryLiveNodes, hostDtypes, manifestHead, planEntries, planTarget } from './plan/plan';
import { SectionStore, type StoredValues, type WeightSource } from './plan/sections';
import { DEFAULT_TARGETS } from './target/targets';
import { dispatchOverBound } from '../schemas/dispatch-work';
import type { Target } from './target/target';
import { validateKernels } from './validate/kernels';
import { NAGA_VERSION, type Translations } from './validate/naga';

/** A validated module's translations, looked up by its WGSL source. */
export interface ValidatedSource {
  translations: Translations;
}

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
  /** entry points by name, each the outputs it returns (default: 'run', every output) */
  entries?: EntrySpec;
  /** run the optimizer (default true); false compiles every op as its own kernel */
  optimize?: boolean;
  /**
   * the GPU classes the plan is for, each with its kernels and schedules; the runtime picks
   * one at load (default: [generic], which runs on any WebGPU device)
   */
  targets?: readonly Target[];
  /** threads running naga, this one included (1: validate in this thread); default: from the work and the cores */
  validationThreads?: number;
  /**
   * how weights read only by products and embedding gathers are held (default f32): f16 or
   * bf16 halves their bytes, read in-kernel (ir/weight-storage.ts); inference plans only
   */
  weightStorage?: WeightStorage;
}

export interface CompiledPlan {
  bundle: Uint8Array;
  manifest: Manifest;
  /** the parameters' initial values as stored in the plan (packed parameters': dequantized, as the CPU reference reads them), by name (empty with weights: 'none') */
  parameters: Map<string, Float32Array>;
  /** the backward pass and updates added for training, when asked for (on the graph given) */
  training?: TrainingGraph;
  /** milliseconds per stage: parameters, optimize, autodiff, lower, validate, plan, write */
  timings: Record<string, number>;
  /** what the optimizer did, when it ran: before autodiff and on the kernels */
  optimization?: { forward: OptimizeReport; kernels: OptimizeReport };
  /** with weightStorage f16 or bf16: the parameters held so and their bytes */
  storedWeights?: Omit<StoredWeights, 'graph'>;
}

/** The graph to compile: `graph` itself, or with weightStorage its weights held as f16 or bf16. */
function withWeightStorage(graph: Graph, options: CompileOptions): { graph: Graph; storedWeights?: Omit<StoredWeights, 'graph'> } {
  const storage = checkWeightStorage(options.weightStorage ?? 'f32', options.training !== undefined);
  if (storage === 'f32') return { graph };
  const seed = options.seed ?? 0;
  const values = options.weights === 'none' ? undefined : (node: Node) => {
    const { init, shape } = attrsOf(node, 'parameter');
    return initialValues(init, shape, node.name, seed);
  };
  const { graph: stored, ...report } = storeWeights(graph, storage, values);
  return { graph: stored, storedWeights: report };
}

export async function compileGraph(given: Graph, options: CompileOptions = {}): Promise<CompiledPlan> {
  const timings: Record<string, number> = {};
  const started = performance.now();
  const { graph, storedWeights } = withWeightStorage(given, options);
  const parameters = options.weights === 'none' ? new Map<string, Float32Array>() : materializeParameters(graph, options.seed ?? 0);
  timings.parameters = performance.now() - started;
  const sink = memorySink();
  // packed parameters: the CPU reference's values are dequantized, the plan stores their bytes
  const compiled = await compileTo(graph, options, storedParameters(graph, parameters), sink, timings);
  return { bundle: sink.bytes(), parameters, ...compiled, ...(storedWeights ? { storedWeights } : {}) };
}

/**
 * compileGraph writing the plan to `file` as it is made: each parameter's initial values
 * are drawn from the seed when the writer reaches them and dropped once written, so memory
 * follows the largest tensor and the kernels, not the total of the weights.
 */
export async function compileGraphToFile(
  given: Graph,
  file: string,
  options: CompileOptions = {},
): Promise<Omit<CompiledPlan, 'bundle' | 'parameters'> & { byteLength: number }> {
  // 'parameters' is the time spent drawing them, which happens while writing: not counted twice
  const timings: Record<string, number> = { parameters: 0 };
  const { graph, storedWeights } = withWeightStorage(given, options);
  const sources = options.weights === 'none' ? new Map<string, WeightSource>() : parameterSources(graph, options.seed ?? 0);
  const parameters = new Map(
    [...sources].map(([name, source]) => [
      name,
      {
        byteLength: source.byteLength,
        values: () => {
          const started = performance.now();
          const values = source.values();
          timings.parameters += performance.now() - started;
          return values;
        },
      },
    ]),
  );
  const sink = fileSink(file);
  try {
    const compiled = await compileTo(graph, options, parameters, sink, timings);
    timings.write -= timings.parameters;
    return { ...compiled, byteLength: sink.length(), ...(storedWeights ? { storedWeights } : {}) };
  } finally {
    sink.close();
  }
}

async function compileTo(
  graph: Graph,
  options: CompileOptions,
  parameters: ReadonlyMap<string, StoredValues | WeightSource>,
  sink: BundleSink,
  timings: Record<string, number>,
): Promise<Omit<CompiledPlan, 'bundle' | 'parameters'>> {
  const timed = <T>(stage: string, work: () => T): T => {
    const started = performance.now();
    const result = work();
    const add = () => void (timings[stage] = (timings[stage] ?? 0) + performance.now() - started);
    if (result instanceof Promise) return result.finally(add) as T;
    add();
    return result;
  };
  const targets = checkTargets(options.targets ?? DEFAULT_TARGETS);
  // What each target runs: the optimizer's graph (made per distinct cost model: targets with
  // the same figures share it) and its lowering. The optimizer works on copies; the caller's
  // graph gets the plain training step appended afterwards, as the reference the plan must
  // agree with (without the optimizer, it is what every target runs).
  const optimizedFor = new Map<string, Optimized>();
  if (options.optimize !== false) {
    for (const target of targets) {
      const key = JSON.stringify(target.cost);
      if (!optimizedFor.has(key)) optimizedFor.set(key, optimizeFor(graph, options.training, target, timed));
    }
  }
  const ranges = inputRanges(graph);
  const hosts = hostDtypes(graph);
  const training = options.training ? timed('autodiff', () => appendTraining(graph, options.training!)) : undefined;
  const lowerings = targets.map((target) => {
    const optimized = optimizedFor.get(JSON.stringify(target.cost)) ?? { graph, training };
    const entries = planEntries(optimized.graph, optimized.training, options.entries);
    const lowered = timed('lower', () => lowerGraph(optimized.graph, target, entryLiveNodes(optimized.graph, entries)));
    return { target, ...optimized, entries, lowered };
  });
  const validated = await timed('validate', () => validateAll(lowerings.flatMap((l) => l.lowered.steps.map((step) => ({ kernel: step.kernel, node: l.graph.nodes[step.node] }))), options.validationThreads));

  const store = new SectionStore();
  const plans = timed('plan', () =>
    lowerings.map((l) => planTarget({ target: l.target, graph: l.graph, entries: l.entries, training: l.training, lowered: l.lowered, validated, parameters, inputRanges: ranges, hostDtypes: hosts }, store)),
  );
  const [first, ...others] = plans;
  const { name, summary, match, ...plan } = first;
  const firstReports = lowerings[0].reports;
  const manifest: Omit<Manifest, 'sections'> = {
    ...manifestHead(graph, NAGA_VERSION, options.source),
    target: { name, summary, match },
    ...plan,
    kernels: store.kernels,
    ...(others.length ? { otherTargets: others } : {}),
    ...(firstReports ? { optimization: firstReports.map(optimizationDesc) } : {}),
  };
  // the runtime refuses a plan over the dispatch bound, so a lowering that breaks it is a compiler bug
  const overBound = dispatchOverBound(manifest);
  if (overBound) throw new Error(`internal error: plan "${manifest.model.name}" breaks the dispatch bound: ${overBound}`);
  const written = timed('write', () => writePlan(manifest, store.finish(), sink));
  return {
    manifest: written,
    training,
    timings,
    ...(firstReports ? { optimization: { forward: firstReports[0], kernels: firstReports[1] } } : {}),
  };
}

/** A graph the optimizer made for a target's cost model, with its training step and the optimizer's reports. */
interface Optimized {
  graph: Graph;
  training?: TrainingGraph;
  reports?: [OptimizeReport, OptimizeReport];
}

/**
 * The optimizer works on copies: named ops are rediscovered in the forward graph, which is
 * then differentiated and fused into kernels under the target's cost model.
 */
function optimizeFor(graph: Graph, spec: TrainingSpec | undefined, target: Target, timed: <T>(stage: string, work: () => T) => T): Optimized {
  const forward = timed('optimize', () => optimizeGraph(graph, 'forward', target.cost));
  const trained = spec ? timed('autodiff', () => appendTraining(forward.graph, spec)) : undefined;
  const kernels = timed('optimize', () => optimizeGraph(forward.graph, 'kernels', target.cost, trained?.updates ?? []));
  return { graph: kernels.graph, training: trained && remapTraining(trained, kernels.graph, kernels.map), reports: [forward.report, kernels.report] };
}

function optimizationDesc(r: OptimizeReport): OptimizationDesc {
  return {
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
  };
}

function checkTargets(targets: readonly Target[]): readonly Target[] {
  if (targets.length === 0) throw new CompileError('input', 'compile for at least one target');
  const names = targets.map((t) => t.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new CompileError('input', `target '${twice}' is named twice`);
  return targets;
}

/**
 * Every distinct module of the compile's kernels (all targets', variants included) validated
 * and translated once (validate/kernels.ts), as translations by WGSL source.
 */
async function validateAll(kernels: readonly { kernel: LoweredKernel; node: Node }[], threads: number | undefined): Promise<Map<string, ValidatedSource>> {
  const { validated } = await validateKernels(
    kernels.map(({ kernel, node }) => ({ kernel, origin: { op: node.op, node: node.name } })),
    { threads },
  );
  const bySource = new Map<string, ValidatedSource>();
  for (const [kernel, checked] of validated) {
    bySource.set(kernel.wgsl, { translations: checked.translations });
    (kernel.variants ?? []).forEach((v, j) => {
      const t = checked.variants[j];
      if (t) bySource.set(v.wgsl, { translations: t });
    });
  }
  return bySource;
}
