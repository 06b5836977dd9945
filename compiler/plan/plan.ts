// Planning: lowered steps + validated shaders + initial weights → the manifest and the
// binary sections of a bundle. Every stored value gets a buffer description; the memory
// planner (memory.ts) then packs the intermediates into shared arenas by liveness.
import type { BufferDesc, BufferRole, Dispatch, EntryPoint, KernelDesc, KernelVariant, Manifest, TensorBinding, TrainingDesc } from '../../schemas/manifest';
import { DTYPE_BYTES, MNPLAN_FORMAT_VERSION, MNPLAN_SECTION_ALIGNMENT } from '../../schemas/manifest';
import type { TrainingGraph } from '../autodiff/train';
import { attrsOf, liveNodes, type Graph, type GraphOutput } from '../ir/graph';
import { elementCount } from '../ir/types';
import type { LoweredGraph, LoweredKernel } from '../lower';
import type { Translations, ValidatedKernel } from '../validate/naga';
import { alignUp, type BundleSection } from './bundle';
import { planMemory, scheduleOf, slotBytes } from './memory';

export const GENERATOR = { name: 'mnc', version: '0.1.0' };

/** An entry point: the outputs it returns and the nodes it runs for their effect (updates). */
export interface PlanEntry {
  name: string;
  outputs: readonly GraphOutput[];
  effects: readonly number[];
}

/** The entry points of a plan: 'run' for inference; with training, 'train_step' too. */
export function planEntries(graph: Graph, training?: TrainingGraph): PlanEntry[] {
  if (!training) return [{ name: 'run', outputs: graph.outputs, effects: [] }];
  const entries: PlanEntry[] = [];
  const inference = graph.outputs.filter((o) => o.name !== training.loss.name);
  if (inference.length > 0) entries.push({ name: 'run', outputs: inference, effects: [] });
  entries.push({ name: TRAIN_ENTRY, outputs: [training.loss], effects: training.updates });
  return entries;
}

export const TRAIN_ENTRY = 'train_step';

/** Every node some entry needs. */
export function entryLiveNodes(graph: Graph, entries: readonly PlanEntry[]): Set<number> {
  return liveNodes(graph, entries.flatMap((e) => [...e.outputs.map((o) => o.node), ...e.effects]));
}

export interface PlanInput {
  graph: Graph;
  entries: readonly PlanEntry[];
  training?: TrainingGraph;
  lowered: LoweredGraph;
  validated: Map<LoweredKernel, ValidatedKernel>;
  parameters: Map<string, Float32Array>;
  nagaVersion: string;
  source?: string;
  /** false: every intermediate keeps its own buffer (for comparisons and debugging); default true */
  arena?: boolean;
}

const encoder = new TextEncoder();

function bytesOf(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function planBundle({ graph, entries, training, lowered, validated, parameters, nagaVersion, source, arena = true }: PlanInput): {
  manifest: Omit<Manifest, 'sections'>;
  sections: BundleSection[];
} {
  const outputNodes = new Set(entries.flatMap((e) => e.outputs.map((o) => lowered.storage[o.node])));
  const computed = new Set(lowered.steps.filter((s) => s.operands.at(-1) === s.node).map((s) => s.node));
  const live = entryLiveNodes(graph, entries);

  // --- buffers: every leaf and every computed value, in node order ---------------------
  const bufferOf = new Map<number, number>();
  const buffers: BufferDesc[] = [];
  const weights: Uint8Array[] = [];
  let weightsLength = 0;
  const addWeights = (data: Float32Array) => {
    const offset = alignUp(weightsLength, MNPLAN_SECTION_ALIGNMENT);
    if (offset > weightsLength) weights.push(new Uint8Array(offset - weightsLength));
    weights.push(bytesOf(data));
    weightsLength = offset + data.byteLength;
    return { section: 'weights', offset, length: data.byteLength };
  };
  for (const node of graph.nodes) {
    // every parameter is kept (frozen or unused ones still export); other values only if an entry needs them
    const leaf = node.op === 'input' || node.op === 'parameter' || node.op === 'constant' || node.op === 'state';
    if (node.op !== 'parameter' && !live.has(node.id)) continue;
    if (!leaf && !computed.has(node.id)) continue;
    const role: BufferRole = leaf ? node.op as BufferRole : outputNodes.has(node.id) ? 'output' : 'intermediate';
    const desc: BufferDesc = {
      id: buffers.length,
      name: node.name,
      role,
      byteLength: elementCount(node.type.shape) * DTYPE_BYTES[node.type.dtype],
      dtype: node.type.dtype,
      shape: [...node.type.shape],
    };
    // without initial values (compiled with weights: 'none') a parameter starts at zero until loaded
    const initial = node.op === 'parameter' ? parameters.get(node.name) : undefined;
    if (initial) desc.init = addWeights(initial);
    if (node.op === 'constant') desc.init = addWeights(attrsOf(node, 'constant').values);
    bufferOf.set(node.id, desc.id);
    buffers.push(desc);
  }

  // --- kernels, each with its sources as sections -------------------------------------
  const sections: BundleSection[] = [];
  const kernelIndex = new Map<LoweredKernel, number>();
  const kernels: KernelDesc[] = [];
  for (const step of lowered.steps) {
    if (kernelIndex.has(step.kernel)) continue;
    const { kernel, translations, variants: variantTranslations } = validated.get(step.kernel)!;
    const sourceSections = (prefix: string, wgsl: string, t: Translations | undefined): KernelVariant => {
      sections.push({ name: `${prefix}.wgsl`, bytes: encoder.encode(wgsl) });
      // no translations: naga cannot read the variant, and Dawn checks it on the device
      if (!t) return { features: [], wgsl: `${prefix}.wgsl`, translations: {}, validatedBy: 'dawn' };
      sections.push(
        { name: `${prefix}.spv`, bytes: t.spirv },
        { name: `${prefix}.msl`, bytes: encoder.encode(t.msl) },
        { name: `${prefix}.hlsl`, bytes: encoder.encode(t.hlsl) },
      );
      return {
        features: [],
        wgsl: `${prefix}.wgsl`,
        translations: { spirv: `${prefix}.spv`, msl: `${prefix}.msl`, hlsl: `${prefix}.hlsl` },
        validatedBy: 'naga',
      };
    };
    const prefix = `kernels/${kernel.name}`;
    // the faster variants first (the runtime takes the first the device can run), the portable kernel last
    const variants: KernelVariant[] = (kernel.variants ?? []).map((v, j) => {
      const desc = { ...sourceSections(`${prefix}.${v.tag}`, v.wgsl, variantTranslations[j]), features: [...v.features] };
      if (v.deviceConstants?.length) desc.deviceConstants = [...v.deviceConstants];
      const limits: KernelVariant['requiredLimits'] = {};
      if (v.workgroupBytes > kernel.workgroupBytes) limits.maxComputeWorkgroupStorageSize = v.workgroupBytes;
      const invocations = v.workgroupSize[0] * v.workgroupSize[1] * v.workgroupSize[2];
      if (invocations > kernel.workgroupSize[0] * kernel.workgroupSize[1] * kernel.workgroupSize[2]) limits.maxComputeInvocationsPerWorkgroup = invocations;
      if (Object.keys(limits).length > 0) desc.requiredLimits = limits;
      if (v.workgroupSize.join() !== kernel.workgroupSize.join()) desc.workgroupSize = [...v.workgroupSize];
      return desc;
    });
    variants.push(sourceSections(prefix, kernel.wgsl, translations));
    kernelIndex.set(kernel, kernels.length);
    kernels.push({
      name: kernel.name,
      ops: kernel.ops,
      entryPoint: kernel.entryPoint,
      workgroupSize: kernel.workgroupSize,
      bindings: kernel.bindings,
      variants,
    });
  }
  if (weightsLength > 0) sections.push({ name: 'weights', bytes: concat(weights, weightsLength) });

  const binding = (name: string, nodeId: number): TensorBinding => {
    const node = graph.nodes[nodeId];
    return { name, buffer: bufferOf.get(lowered.storage[nodeId])!, dtype: node.type.dtype, shape: [...node.type.shape] };
  };
  const entryPoints: Record<string, EntryPoint> = {};
  for (const entry of entries) {
    const needed = liveNodes(graph, [...entry.outputs.map((o) => o.node), ...entry.effects]);
    const dispatches: Dispatch[] = lowered.steps
      .filter((step) => needed.has(step.node))
      .map((step) => ({
        kernel: kernelIndex.get(step.kernel)!,
        buffers: step.operands.map((n) => bufferOf.get(n)!),
        workgroups: step.workgroups,
        node: graph.nodes[step.node].name,
      }));
    const inputs = graph.nodes.filter((n) => n.op === 'input' && needed.has(n.id)).map((n) => binding(n.name, n.id));
    entryPoints[entry.name] = { inputs, outputs: entry.outputs.map((o) => binding(o.name, o.node)), dispatches };
  }

  // --- memory: intermediates share arenas; persistent and host-visible values keep their own
  // buffers (inputs are written before a call's first dispatch, outputs read after its last,
  // parameters, constants and optimizer state persist between calls, and the host addresses
  // all of them by id)
  const sizes = new Map(buffers.filter((b) => b.role === 'intermediate').map((b) => [b.id, b.byteLength]));
  let arenas: Manifest['arenas'];
  if (arena && sizes.size > 0) {
    const memory = planMemory(scheduleOf(entryPoints, kernels), sizes);
    for (const [id, { arena: index, offset }] of memory.placements) buffers[id].arena = { index, offset };
    arenas = { alignment: memory.alignment, byteLengths: memory.arenas };
  }
  const ownBuffers = buffers.filter((b) => !b.arena).map((b) => slotBytes(b.byteLength));

  const steps = lowered.steps.map((s) => s.kernel);
  const manifest: Omit<Manifest, 'sections'> = {
    format: 'mnplan',
    formatVersion: MNPLAN_FORMAT_VERSION,
    generator: { ...GENERATOR, naga: nagaVersion },
    model: source === undefined ? { name: graph.name } : { name: graph.name, source },
    requiredLimits: {
      maxStorageBufferBindingSize: Math.max(4, ...buffers.map((b) => b.byteLength)),
      maxStorageBuffersPerShaderStage: Math.max(1, ...steps.map((k) => k.bindings.length)),
      maxComputeWorkgroupStorageSize: Math.max(0, ...steps.map((k) => k.workgroupBytes)),
      maxComputeInvocationsPerWorkgroup: Math.max(1, ...steps.map((k) => k.workgroupSize[0] * k.workgroupSize[1] * k.workgroupSize[2])),
      maxBufferSize: Math.max(4, ...ownBuffers, ...(arenas?.byteLengths ?? [])),
    },
    buffers,
    ...(arenas ? { arenas } : {}),
    kernels,
    entryPoints,
  };
  if (training) manifest.training = trainingDesc(graph, training, (node) => bufferOf.get(node)!);
  return { manifest, sections };
}

function trainingDesc(graph: Graph, training: TrainingGraph, bufferOf: (node: number) => number): TrainingDesc {
  const trained = new Map(training.parameters.map((p) => [p.node, p]));
  return {
    entry: TRAIN_ENTRY,
    loss: training.loss.name,
    optimizer: training.optimizer,
    hyper: {
      input: training.hyper.name,
      fields: [...training.hyper.fields],
      settable: [...training.hyper.settable],
      defaults: { ...training.hyper.defaults },
    },
    parameters: graph.nodes
      .filter((n) => n.op === 'parameter')
      .map((n) => ({
        name: n.name,
        buffer: bufferOf(n.id),
        trainable: trained.has(n.id),
        state: (trained.get(n.id)?.state ?? []).map((s) => ({ name: s.name, buffer: bufferOf(s.node), slot: s.slot })),
      })),
  };
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
