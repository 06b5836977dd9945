// Planning: one target's lowered steps + validated shaders + initial weights → its plan
// (buffers, memory plan, dispatches, required limits), with the kernels and sections put in
// the store the compile's targets share. Every stored value gets a buffer description; the
// memory planner (memory.ts) then packs the intermediates into shared arenas by liveness.
import type { BufferDesc, BufferRole, Dispatch, EntryPoint, HostDType, KernelVariant, Manifest, TargetPlan, TensorBinding, TrainingDesc } from '../../schemas/manifest';
import { dtypeByteLength, isPackedDType, MNPLAN_FORMAT_VERSION } from '../../schemas/manifest';
import type { TrainingGraph } from '../autodiff/train';
import { attrsOf, liveNodes, type Graph, type GraphOutput } from '../ir/graph';
import { CompileError } from '../ir/errors';
import { elementCount, formatShape, type SourceLocation } from '../ir/types';
import type { LoweredGraph, LoweredKernel } from '../lower';
import type { Translations } from '../validate/naga';
import type { Target } from '../target/target';
import { planMemory, scheduleOf, slotBytes } from './memory';
import type { SectionStore, StoredValues, WeightSource } from './sections';

export const GENERATOR = { name: 'mnc', version: '0.1.0' };

/** An entry point: the outputs it returns and the nodes it runs for their effect (updates). */
export interface PlanEntry {
  name: string;
  outputs: readonly GraphOutput[];
  effects: readonly number[];
}

/**
 * The entry points of a plan: 'run' for inference (or the named entries asked for, each
 * returning its outputs); with training, 'train_step' too.
 */
export function planEntries(graph: Graph, training?: TrainingGraph, named?: Readonly<Record<string, readonly string[]>>): PlanEntry[] {
  if (!training && !named) return [{ name: 'run', outputs: graph.outputs, effects: [] }];
  const entries: PlanEntry[] = [];
  const inference = training ? graph.outputs.filter((o) => o.name !== training.loss.name) : graph.outputs;
  if (named) {
    for (const [name, outputs] of Object.entries(named)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name === TRAIN_ENTRY) throw new CompileError('model', `entry name '${name}' must be an identifier other than '${TRAIN_ENTRY}'`);
      const found = outputs.map((o) => {
        const output = inference.find((x) => x.name === o);
        if (!output) throw new CompileError('model', `entry '${name}' returns '${o}', which is not an output of the model (its outputs: ${inference.map((x) => x.name).join(', ')})`);
        return output;
      });
      if (found.length === 0) throw new CompileError('model', `entry '${name}' returns no outputs`);
      entries.push({ name, outputs: found, effects: [] });
    }
  } else if (inference.length > 0) entries.push({ name: 'run', outputs: inference, effects: [] });
  if (!training) return entries;
  entries.push({ name: TRAIN_ENTRY, outputs: [training.loss, training.check], effects: training.updates });
  return entries;
}

export const TRAIN_ENTRY = 'train_step';

/** Every node some entry needs. */
export function entryLiveNodes(graph: Graph, entries: readonly PlanEntry[]): Set<number> {
  return liveNodes(graph, entries.flatMap((e) => [...e.outputs.map((o) => o.node), ...e.effects]));
}

export interface PlanInput {
  target: Target;
  graph: Graph;
  entries: readonly PlanEntry[];
  training?: TrainingGraph;
  lowered: LoweredGraph;
  /** by WGSL source: each distinct module validated once for the whole compile */
  validated: ReadonlyMap<string, { translations: Translations }>;
  /** initial values by parameter name: in memory, or drawn when the writer reaches them */
  parameters: ReadonlyMap<string, StoredValues | WeightSource>;
  /** false: every intermediate keeps its own buffer (for comparisons and debugging); default true */
  arena?: boolean;
  /** index ranges of integer inputs (input-ranges.ts), found on the graph before optimization */
  inputRanges?: ReadonlyMap<string, { min: number; max: number }>;
  /** the element types callers exchange for f32 inputs and outputs (hostDtypes below), by name */
  hostDtypes?: { inputs: ReadonlyMap<string, HostDType>; outputs: ReadonlyMap<string, HostDType> };
}

/** The host dtypes of a graph's inputs and outputs (an imported model's double, float16, bfloat16), read before optimization. */
export function hostDtypes(graph: Graph): { inputs: Map<string, HostDType>; outputs: Map<string, HostDType> } {
  const inputs = new Map<string, HostDType>();
  for (const n of graph.nodes) if (n.op === 'input' && n.attrs.hostDtype) inputs.set(n.name, n.attrs.hostDtype as HostDType);
  const outputs = new Map(graph.outputs.filter((o) => o.hostDtype).map((o) => [o.name, o.hostDtype!]));
  return { inputs, outputs };
}

const encoder = new TextEncoder();

/** The manifest's fields every target shares. */
export function manifestHead(graph: Graph, nagaVersion: string, source: string | undefined): Pick<Manifest, 'format' | 'formatVersion' | 'generator' | 'model'> {
  return {
    format: 'mnplan',
    formatVersion: MNPLAN_FORMAT_VERSION,
    generator: { ...GENERATOR, naga: nagaVersion },
    model: source === undefined ? { name: graph.name } : { name: graph.name, source },
  };
}

export function planTarget({ target, graph, entries, training, lowered, validated, parameters, arena = true, inputRanges, hostDtypes }: PlanInput, store: SectionStore): TargetPlan {
  const outputNodes = new Set(entries.flatMap((e) => e.outputs.map((o) => lowered.storage[o.node])));
  const computed = new Set(lowered.steps.filter((s) => s.operands.at(-1) === s.node).map((s) => s.node));
  const live = entryLiveNodes(graph, entries);

  // --- buffers: every leaf and every computed value, in node order ---------------------
  const bufferOf = new Map<number, number>();
  const buffers: BufferDesc[] = [];
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
      byteLength: dtypeByteLength(node.type.dtype, elementCount(node.type.shape)),
      dtype: node.type.dtype,
      shape: [...node.type.shape],
    };
    // without initial values (compiled with weights: 'none') a parameter starts at zero until loaded
    const initial = node.op === 'parameter' ? parameters.get(node.name) : undefined;
    if (initial) desc.init = store.addWeights(initial);
    // an empty constant (an imported model's empty output) has nothing to store
    if (node.op === 'constant' && desc.byteLength > 0) {
      const values = attrsOf(node, 'constant').values;
      // an i32 constant is stored as its bytes (a Float32Array is stored as its own)
      desc.init = store.addWeights(values instanceof Int32Array ? new Uint8Array(values.buffer, values.byteOffset, values.byteLength) : values, true);
    }
    bufferOf.set(node.id, desc.id);
    buffers.push(desc);
  }
  // the values between the steps of a node's schedule (split-K's partial products, ...)
  for (const value of lowered.scratch) {
    bufferOf.set(value.id, buffers.length);
    const { shape, dtype } = value.type;
    buffers.push({ id: buffers.length, name: value.name, role: 'intermediate', byteLength: dtypeByteLength(dtype, elementCount(shape)), dtype, shape: [...shape] });
  }

  // --- kernels, each with its sources as sections (shared with the other targets where alike)
  const kernelIndex = new Map<LoweredKernel, number>();
  for (const step of lowered.steps) {
    if (kernelIndex.has(step.kernel)) continue;
    const kernel = step.kernel;
    const checked = validated.get(kernel.wgsl)!;
    // a kernel's sources under kernels/<name>, or kernels/<target>/<name> where another target's differ
    const sourceSections = (name: string, wgsl: string, t: Translations | undefined): KernelVariant => {
      const files: { suffix: string; bytes: Uint8Array }[] = [{ suffix: '.wgsl', bytes: encoder.encode(wgsl) }];
      if (t) files.push({ suffix: '.spv', bytes: t.spirv }, { suffix: '.msl', bytes: encoder.encode(t.msl) }, { suffix: '.hlsl', bytes: encoder.encode(t.hlsl) });
      const prefix = store.addAll([`kernels/${name}`, `kernels/${target.name}/${name}`], files);
      // no translations: naga cannot read the variant, and Dawn checks it on the device
      if (!t) return { features: [], wgsl: `${prefix}.wgsl`, translations: {}, validatedBy: 'dawn' };
      return { features: [], wgsl: `${prefix}.wgsl`, translations: { spirv: `${prefix}.spv`, msl: `${prefix}.msl`, hlsl: `${prefix}.hlsl` }, validatedBy: 'naga' };
    };
    // the faster variants first (the runtime takes the first the device can run), the portable kernel last
    const variants: KernelVariant[] = (kernel.variants ?? []).map((v) => {
      const desc = { ...sourceSections(`${kernel.name}.${v.tag}`, v.wgsl, v.validatedBy === 'dawn' ? undefined : validated.get(v.wgsl)?.translations), features: [...v.features] };
      if (v.deviceConstants?.length) desc.deviceConstants = [...v.deviceConstants];
      const limits: KernelVariant['requiredLimits'] = {};
      if (v.workgroupBytes > kernel.workgroupBytes) limits.maxComputeWorkgroupStorageSize = v.workgroupBytes;
      const invocations = v.workgroupSize[0] * v.workgroupSize[1] * v.workgroupSize[2];
      if (invocations > kernel.workgroupSize[0] * kernel.workgroupSize[1] * kernel.workgroupSize[2]) limits.maxComputeInvocationsPerWorkgroup = invocations;
      if (Object.keys(limits).length > 0) desc.requiredLimits = limits;
      if (v.workgroupSize.join() !== kernel.workgroupSize.join()) desc.workgroupSize = [...v.workgroupSize];
      return desc;
    });
    variants.push(sourceSections(kernel.name, kernel.wgsl, checked.translations));
    kernelIndex.set(
      kernel,
      store.addKernel({ name: kernel.name, ops: kernel.ops, entryPoint: kernel.entryPoint, workgroupSize: kernel.workgroupSize, bindings: kernel.bindings, variants }),
    );
  }

  const binding = (name: string, nodeId: number): TensorBinding => {
    const node = graph.nodes[nodeId];
    const dtype = node.type.dtype;
    // the builder refuses packed inputs and outputs; a graph made otherwise is refused here
    if (isPackedDType(dtype)) throw new CompileError('input', `'${name}' is ${dtype}: entry inputs and outputs hold element dtypes, packed weights are parameters or constants`, node.loc);
    return { name, buffer: bufferOf.get(lowered.storage[nodeId])!, dtype, shape: [...node.type.shape] };
  };
  const withHostDtype = (b: TensorBinding, byName: ReadonlyMap<string, HostDType> | undefined): TensorBinding => {
    const host = byName?.get(b.name);
    return host && b.dtype === 'f32' ? { ...b, hostDtype: host } : b;
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
        node: step.label,
      }));
    const inputs = graph.nodes
      .filter((n) => n.op === 'input' && needed.has(n.id))
      .map((n) => {
        const range = inputRanges?.get(n.name);
        return withHostDtype(range ? { ...binding(n.name, n.id), range: { ...range } } : binding(n.name, n.id), hostDtypes?.inputs);
      });
    const outputs = entry.outputs.map((o) => withHostDtype(binding(o.name, o.node), hostDtypes?.outputs));
    entryPoints[entry.name] = { inputs, outputs, dispatches };
  }

  // --- memory: intermediates share arenas; persistent and host-visible values keep their own
  // buffers (inputs are written before a call's first dispatch, outputs read after its last,
  // parameters, constants and optimizer state persist between calls, and the host addresses
  // all of them by id)
  const sizes = new Map(buffers.filter((b) => b.role === 'intermediate').map((b) => [b.id, b.byteLength]));
  let arenas: Manifest['arenas'];
  if (arena && sizes.size > 0) {
    const memory = planMemory(scheduleOf(entryPoints, store.kernels), sizes, { maxArenaBytes: target.limits.maxBufferSize });
    for (const [id, { arena: index, offset }] of memory.placements) buffers[id].arena = { index, offset };
    arenas = { alignment: memory.alignment, byteLengths: memory.arenas };
  }
  const ownBuffers = buffers.filter((b) => !b.arena).map((b) => slotBytes(b.byteLength));
  checkBufferLimits(target, buffers, arenas, (id) => {
    const node = [...bufferOf].find(([, b]) => b === id)?.[0];
    return node === undefined ? undefined : graph.nodes[node]?.loc;
  });

  const steps = lowered.steps.map((s) => s.kernel);
  const plan: TargetPlan = {
    name: target.name,
    summary: target.summary,
    match: JSON.parse(JSON.stringify(target.match)),
    requiredLimits: {
      maxStorageBufferBindingSize: Math.max(4, ...buffers.map((b) => b.byteLength)),
      maxStorageBuffersPerShaderStage: Math.max(1, ...steps.map((k) => k.bindings.length)),
      maxComputeWorkgroupStorageSize: Math.max(0, ...steps.map((k) => k.workgroupBytes)),
      maxComputeInvocationsPerWorkgroup: Math.max(1, ...steps.map((k) => k.workgroupSize[0] * k.workgroupSize[1] * k.workgroupSize[2])),
      maxBufferSize: Math.max(4, ...ownBuffers, ...(arenas?.byteLengths ?? [])),
    },
    buffers,
    ...(arenas ? { arenas } : {}),
    entryPoints,
  };
  if (training) plan.training = trainingDesc(graph, training, (node) => bufferOf.get(node)!);
  return plan;
}

/**
 * Every buffer the plan creates fits the target: each value is bound whole (in an arena, its
 * slot), so none may exceed maxStorageBufferBindingSize, and no GPUBuffer (a value's own, or
 * an arena) maxBufferSize. A device offers at least its target's limits, so a plan that
 * passes here never fails at load for a buffer's size.
 */
function checkBufferLimits(target: Target, buffers: readonly BufferDesc[], arenas: Manifest['arenas'], locOf: (buffer: number) => SourceLocation | undefined): void {
  const { maxStorageBufferBindingSize: maxBinding, maxBufferSize } = target.limits;
  const above = (bytes: number, limit: number, name: string) => `is ${formatLimitBytes(bytes)}, above target '${target.name}''s ${name} of ${formatLimitBytes(limit)}`;
  const tooLarge = (buffer: BufferDesc, bytes: number, limit: number, name: string) =>
    new CompileError('limit', `${buffer.role} '${buffer.name}' ${formatShape(buffer.shape)} ${buffer.dtype} ${above(bytes, limit, name)}`, locOf(buffer.id));
  for (const buffer of buffers) {
    if (buffer.byteLength > maxBinding) throw tooLarge(buffer, buffer.byteLength, maxBinding, 'maxStorageBufferBindingSize');
    if (!buffer.arena && slotBytes(buffer.byteLength) > maxBufferSize) throw tooLarge(buffer, slotBytes(buffer.byteLength), maxBufferSize, 'maxBufferSize');
  }
  arenas?.byteLengths.forEach((length, index) => {
    if (length <= maxBufferSize) return;
    // the packer keeps arenas within maxBufferSize unless one value alone is larger: name it
    const largest = buffers.filter((b) => b.arena?.index === index).reduce((a, b) => (b.byteLength > a.byteLength ? b : a));
    if (slotBytes(largest.byteLength) > maxBufferSize) throw tooLarge(largest, slotBytes(largest.byteLength), maxBufferSize, 'maxBufferSize');
    throw new CompileError('limit', `arena ${index} (intermediates such as '${largest.name}') ${above(length, maxBufferSize, 'maxBufferSize')}`, locOf(largest.id));
  });
}

/** Bytes, and in MiB or GiB where that reads easier. */
function formatLimitBytes(bytes: number): string {
  if (bytes < 2 ** 20) return `${bytes} bytes`;
  const unit = bytes < 2 ** 30 ? `${+(bytes / 2 ** 20).toFixed(1)} MiB` : `${+(bytes / 2 ** 30).toFixed(2)} GiB`;
  return `${bytes} bytes (${unit})`;
}

function trainingDesc(graph: Graph, training: TrainingGraph, bufferOf: (node: number) => number): TrainingDesc {
  const trained = new Map(training.parameters.map((p) => [p.node, p]));
  return {
    entry: TRAIN_ENTRY,
    loss: training.loss.name,
    check: training.check.name,
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
