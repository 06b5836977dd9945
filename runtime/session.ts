// A loaded plan on one GPUDevice: buffers, pipelines, bind groups and staging buffers are
// created once in loadPlan; run() only writes inputs, encodes the fixed dispatch list (a long
// one in a few command buffers of growing size, so the GPU starts while the host still encodes)
// and reads outputs back. No compiling or planning happens here:
// intermediates the compiler packed into arenas are bound as ranges of the arena buffers.
// loadPlan does not wait for the pipelines (pipelines.ts): until they all exist, a run submits
// its dispatches in chunks as their pipelines arrive. A traced run (trace.ts) encodes a pass
// per dispatch instead, with timestamp queries.
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './f16';
import { decodeSafetensors } from './safetensors';
import { matchWeights, type NamedSafetensors, type WeightsOptions, type WeightsReport } from './weights';
import { DTYPE_BYTES, type DType, type ElementDType, type EntryPoint, type KernelDesc, type KernelVariant, type Manifest, type TensorBinding } from '../schemas/manifest';
import { describeAdapter, type AdapterDescription } from './adapter';
import { readBundle, type PlanBundle } from './bundle';
import { measureDeviceConstants } from './device-constants';
import { PlanError } from './errors';
import { checkMemoryBudget } from './memory-budget';
import { PipelineBuilds } from './pipelines';
import { chooseTarget, targetManifest, type ChosenTarget, type DeviceDescription } from './targets';
import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_STORAGE, MAP_MODE_READ } from './gpu-flags';
import { assertTraceable, DispatchTimer, dispatchInfos, traceSinkOf, type DispatchInfo, type TraceRecord, type TraceSink } from './trace';


export interface LoadOptions {
  /** prefix for GPU object labels, so WebGPU errors and captures name this plan */
  label?: string;
  /**
   * Trace every run from the start: GPU time of each dispatch, read with session.takeTrace().
   * Needs the device feature 'timestamp-query' (else PlanError 'missing-feature'). Default:
   * on when the device has a trace sink (the Node host's MNRT_TRACE), else off.
   */
  trace?: boolean;
  /**
   * Run this target of the plan (its name) instead of the one chosen from the device
   * (runtime/targets.ts: the target made for the device's class, else the plan's fallback).
   */
  target?: string;
  /** The adapter's identity where the device does not give it (`GPUDevice.adapterInfo`, missing in older browsers). */
  adapterInfo?: DeviceDescription['info'] & { isFallbackAdapter?: boolean };
  /**
   * The most bytes of GPU buffers (own buffers and arenas) the plan may create, checked before
   * any is (else PlanError 'out-of-memory' naming both). Default: DEFAULT_MEMORY_BUDGET, 4 GiB.
   */
  memoryBudget?: number;
}

/** Options of one run() (and a training session's step()). */
export interface RunOptions {
  /** the entry point to run (default 'run') */
  entry?: string;
  /**
   * A deadline for the whole call in milliseconds: waiting for earlier runs, the GPU work and
   * the read-back. A call that takes longer rejects with PlanError('timeout'); the session then
   * destroys the device, the one way WebGPU offers to abandon submitted work, so the session
   * (and anything else on that device) is unusable afterwards. Where the backend runs the work
   * inside submit (Dawn's OpenGL backend) the timeout is noticed only once that work ends
   * (README, "What a deadline can interrupt"). The clock starts once the plan's pipelines
   * exist (session.ready), so a first run's deadline does not count their compiling.
   */
  timeoutMs?: number;
}

/**
 * What run() accepts per input: Float32Array always; Int32Array/Uint32Array also for i32/u32
 * inputs, Int8Array for i8; Float64Array for an input whose hostDtype is f64, Uint16Array bit
 * patterns where it is f16 or bf16 (converted to the plan's f32). Integer inputs must hold
 * integers of the dtype, within the binding's `range` when it has one (else PlanError 'bad-input').
 */
export type TensorData = Float32Array | Int32Array | Uint32Array | Int8Array | Float64Array | Uint16Array;

export interface Session {
  /** the manifest as this session runs it: the chosen target's plan (runtime/targets.ts) */
  readonly manifest: Manifest;
  /** the plan's target this device runs, and why it was chosen */
  readonly target: ChosenTarget;
  /** the adapter the device came from; `fallback` when it is a software one (SwiftShader, llvmpipe): correct but slow */
  readonly adapter: AdapterDescription;
  /** inputs of entry point 'run' (or of the only/first entry point when there is no 'run') */
  readonly inputs: TensorBinding[];
  /** outputs of the same entry point */
  readonly outputs: TensorBinding[];
  /**
   * Settles once every compute pipeline of the plan exists. loadPlan does not wait for them:
   * runs start at once and wait only for the pipelines of their next dispatches. Rejects with
   * PlanError('pipeline') naming every kernel whose shader failed (as does a run needing one).
   */
  readonly ready: Promise<void>;
  /**
   * Runs one entry point. Outputs come back as fresh Float32Arrays whatever the buffer's
   * dtype (f16 is widened, i32/u32 converted by value); inputs are converted the other way.
   * Runs execute on the GPU in call order. Up to three may be in flight: the next one's
   * inputs are written and its commands submitted while the previous one's outputs are
   * still being read back. The second argument is the entry's name or RunOptions. Once the
   * device is lost or a run passed its deadline, every call rejects ('device-lost', 'timeout').
   */
  run(inputs: Record<string, TensorData>, entry?: string | RunOptions): Promise<Record<string, Float32Array>>;
  /**
   * Whether runs started from now on are traced (each dispatch in a compute pass of its own,
   * timed by GPU timestamps); turning it on needs 'timestamp-query' (else PlanError
   * 'missing-feature') and creates the query sets once. Untraced runs use one compute pass.
   */
  tracing: boolean;
  /** The records of the traced runs finished so far, removed from the session (see runtime/trace.ts). */
  takeTrace(): TraceRecord[];
  /**
   * Writes the plan's parameters from safetensors files (bytes, or decoded files with a name
   * for messages; a GGUF file through ggufWeights(), runtime/gguf-weights.ts), matched by name
   * with shapes checked; F16, BF16 and F64 tensors are widened to f32. Nothing is written unless every tensor matches (runtime/weights.ts). Ordered
   * before runs submitted after it.
   */
  loadWeights(files: WeightsInput | readonly WeightsInput[], options?: WeightsOptions): WeightsReport;
  /** Frees the GPU buffers (after an in-flight run finishes); later calls throw PlanError('destroyed'). */
  destroy(): void;
}

/** A safetensors file for loadWeights: its bytes, or decoded with the name messages use. */
export type WeightsInput = Uint8Array | NamedSafetensors;

/** Where a plan buffer lives: a whole GPUBuffer of its own, or a range of an arena. */
interface BufferSlot {
  buffer: GPUBuffer;
  offset: number;
  /** bytes bound and copied: byteLength rounded up to 4 */
  size: number;
}

interface LoadedEntry {
  name: string;
  desc: EntryPoint;
  /** the dispatches: kernel index (its pipeline is PipelineBuilds.built[kernel]), bind group, grid */
  commands: { kernel: number; bindGroup: GPUBindGroup; workgroups: [number, number, number] }[];
  /** one staging buffer per distinct output buffer id */
  staging: Map<number, GPUBuffer>;
  /** staging sets not in use; a run takes one, so up to MAX_RUNS_IN_FLIGHT runs overlap */
  free: Map<number, GPUBuffer>[];
  /** staging sets made so far (the first at load, the others on demand) */
  made: number;
  /** runs waiting for a staging set, in order */
  waiting: ((set: Map<number, GPUBuffer>) => void)[];
}

/**
 * Runs of one entry that may be in flight at once: each has its own staging buffers, so the
 * next run's inputs are written and its commands submitted while the GPU still works on the
 * previous one and the host reads its outputs back.
 */
const MAX_RUNS_IN_FLIGHT = 3;
/** dispatches in a long run's first command buffer; each later one doubles (see submit) */
const FIRST_CHUNK = 32;

/** A traced entry point: its dispatch timer and the static part of its records. */
interface TracedEntry {
  timer: DispatchTimer;
  infos: DispatchInfo[];
}

/** The two error scopes popped after a submit: validation, then out-of-memory. */
interface ErrorScopes {
  validation: Promise<GPUError | null>;
  oom: Promise<GPUError | null>;
}

/** The first error of a validation scope and an out-of-memory scope, popped in that order. */
function scopeError(validation: GPUError | null, oom: GPUError | null) {
  if (validation) return { kind: 'validation' as const, message: validation.message };
  if (oom) return { kind: 'out-of-memory' as const, message: oom.message };
  return undefined;
}

const paddedSize = (byteLength: number) => Math.max(4, Math.ceil(byteLength / 4) * 4);
const elementCount = (shape: number[]) => shape.reduce((n, d) => n * d, 1);
const describe = (t: TensorBinding) => `${t.dtype}[${t.shape.join(', ')}] (${elementCount(t.shape)} elements)`;

export function loadPlan(bytes: Uint8Array, device: GPUDevice, options: LoadOptions = {}): Promise<Session> {
  return openPlan(bytes, device, options);
}

/** loadPlan, returning the session class with the buffer access training needs (runtime-internal). */
export async function openPlan(bytes: Uint8Array, device: GPUDevice, options: LoadOptions = {}): Promise<PlanSession> {
  const read = await readBundle(bytes);
  const adapterInfo: LoadOptions['adapterInfo'] = options.adapterInfo ?? (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? {};
  const described = { info: adapterInfo, limits: device.limits as unknown as Record<string, number | undefined> };
  const { index, chosen } = chooseTarget(read.manifest, described, options.target);
  const bundle: PlanBundle = { ...read, manifest: targetManifest(read.manifest, index) };
  const { manifest } = bundle;
  const label = options.label ?? manifest.model.name;
  checkLimits(manifest, device);
  checkMemoryBudget(manifest, options.memoryBudget);
  const sink = traceSinkOf(device);
  const trace = options.trace ?? sink !== undefined;
  if (trace) assertTraceable(device, label);
  const variants = await chooseVariants(manifest, device);

  const created: GPUBuffer[] = [];
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let scopesOpen = true;
  let session: PlanSession | undefined;
  const popScopes = async () => {
    scopesOpen = false;
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    return scopeError(validation, oom);
  };
  try {
    // pipelines first, in the order the first entry's dispatches use them: they build while
    // the buffers are created and the weights uploaded, and while the first runs execute the
    // dispatches whose pipelines already exist (the load does not wait for them)
    const pipelines = new PipelineBuilds(bundle, variants, device, label);
    const buffers = createBuffers(bundle, device, label, created);
    const entries = new Map<string, LoadedEntry>();
    for (const [name, desc] of Object.entries(manifest.entryPoints)) {
      entries.set(name, loadEntry(name, desc, manifest, buffers, pipelines.layouts, device, label, created));
    }
    session = new PlanSession(manifest, chosen, describeAdapter(adapterInfo), device, buffers, pipelines, entries, created, label, sink);
    if (trace) session.tracing = true;
    const error = await popScopes();
    if (error) throw new PlanError(error.kind, `WebGPU reported an error while loading plan "${label}": ${error.message}`);
    return session;
  } catch (error) {
    if (scopesOpen) await popScopes().catch(() => null);
    if (session) session.discard();
    else for (const buffer of created) buffer.destroy();
    throw error;
  }
}

function checkLimits(manifest: Manifest, device: GPUDevice): void {
  const limits = device.limits as unknown as Record<string, number | undefined>;
  const need = (limit: string, value: number, why: string) => {
    const offered = limits[limit];
    if (offered !== undefined && offered < value) {
      throw new PlanError(
        'device-limits',
        `plan "${manifest.model.name}" needs ${limit} >= ${value} (${why}); this device offers ${offered}. ` +
          `Request the adapter's full limits when creating the device, or use a larger GPU.`,
      );
    }
  };
  for (const buffer of manifest.buffers) {
    const why = `buffer "${buffer.name}" is ${buffer.byteLength} bytes`;
    if (!buffer.arena) need('maxBufferSize', paddedSize(buffer.byteLength), why);
    need('maxStorageBufferBindingSize', paddedSize(buffer.byteLength), why);
  }
  if (manifest.arenas) {
    const { alignment, byteLengths } = manifest.arenas;
    byteLengths.forEach((length, i) => need('maxBufferSize', paddedSize(length), `arena ${i}, shared by intermediates, is ${length} bytes`));
    // An alignment limit: the device accepts offsets that are multiples of its value, a power
    // of two of at most 256; plans align arena offsets to 256, which every device accepts.
    const offsetAlignment = limits.minStorageBufferOffsetAlignment;
    if (offsetAlignment !== undefined && alignment % offsetAlignment !== 0) {
      throw new PlanError(
        'device-limits',
        `plan "${manifest.model.name}" places intermediates in its arenas at multiples of ${alignment} bytes; ` +
          `this device needs storage buffer offsets to be multiples of ${offsetAlignment} (minStorageBufferOffsetAlignment).`,
      );
    }
  }
  for (const kernel of manifest.kernels) {
    need('maxStorageBuffersPerShaderStage', kernel.bindings.length, `kernel "${kernel.name}" binds ${kernel.bindings.length} buffers`);
    const [x, y, z] = kernel.workgroupSize;
    need('maxComputeInvocationsPerWorkgroup', x * y * z, `kernel "${kernel.name}" has workgroup size ${x}x${y}x${z}`);
  }
  for (const [entry, { dispatches }] of Object.entries(manifest.entryPoints)) {
    for (const d of dispatches) {
      need('maxComputeWorkgroupsPerDimension', Math.max(...d.workgroups), `dispatch "${d.node}" of entry "${entry}" uses ${d.workgroups.join('x')} workgroups`);
    }
  }
  // last, so a limit the checks above explain is reported with its reason
  for (const [limit, value] of Object.entries(manifest.requiredLimits)) need(limit, value, 'required by the plan');
}

/** A variant with the device constants it needs set, as the runtime builds it. */
export interface ChosenVariant extends KernelVariant {
  constants?: Record<string, number>;
}

/** Per kernel of the plan, the variant this device runs (see chooseVariant). */
export async function chooseVariants(manifest: Manifest, device: GPUDevice): Promise<ChosenVariant[]> {
  // constants some variants need, measured on this device (a tiny probe each, once per device)
  const wanted = manifest.kernels.flatMap((kernel) => kernel.variants.flatMap((v) => (v.features.every((f) => device.features.has(f)) ? (v.deviceConstants ?? []) : [])));
  const deviceConstants = wanted.length > 0 ? await measureDeviceConstants(device, wanted) : new Map<string, number>();
  return manifest.kernels.map((kernel) => chooseVariant(kernel, device, deviceConstants));
}

/**
 * The first variant whose features the device offers, whose own limits (beyond the plan's) it
 * meets and whose device constants were measured.
 */
function chooseVariant(kernel: KernelDesc, device: GPUDevice, deviceConstants: ReadonlyMap<string, number>): ChosenVariant {
  const limits = device.limits as unknown as Record<string, number | undefined>;
  const fits = (v: KernelVariant) => Object.entries(v.requiredLimits ?? {}).every(([limit, value]) => (limits[limit] ?? Infinity) >= (value ?? 0));
  const measured = (v: KernelVariant) => (v.deviceConstants ?? []).every((c) => deviceConstants.has(c));
  const variant = kernel.variants.find((v) => v.features.every((f) => device.features.has(f)) && fits(v) && measured(v));
  if (variant?.deviceConstants?.length) return { ...variant, constants: Object.fromEntries(variant.deviceConstants.map((c) => [c, deviceConstants.get(c)!])) };
  if (!variant) {
    const wanted = kernel.variants.map((v) => `[${v.features.join(', ')}]`).join(' or ');
    throw new PlanError(
      'missing-feature',
      `kernel "${kernel.name}" has no variant this device can run: it needs features ${wanted}; the device offers [${[...device.features].join(', ')}]`,
    );
  }
  return variant;
}

function createBuffers(bundle: PlanBundle, device: GPUDevice, label: string, created: GPUBuffer[]): Map<number, BufferSlot> {
  const usage = BUFFER_STORAGE | BUFFER_COPY_DST | BUFFER_COPY_SRC;
  const arenas = (bundle.manifest.arenas?.byteLengths ?? []).map((length, i) => {
    const buffer = device.createBuffer({ label: `${label}/arena${i}`, size: paddedSize(length), usage });
    created.push(buffer);
    return buffer;
  });
  const buffers = new Map<number, BufferSlot>();
  for (const desc of bundle.manifest.buffers) {
    const size = paddedSize(desc.byteLength);
    let slot: BufferSlot;
    if (desc.arena) {
      slot = { buffer: arenas[desc.arena.index], offset: desc.arena.offset, size };
    } else {
      const buffer = device.createBuffer({ label: `${label}/${desc.name}`, size, usage });
      created.push(buffer);
      slot = { buffer, offset: 0, size };
    }
    buffers.set(desc.id, slot);
    if (desc.init && desc.init.length > 0) {
      const slice = bundle.section(desc.init.section).subarray(desc.init.offset, desc.init.offset + desc.init.length);
      // writeBuffer wants a multiple of 4 bytes; odd-sized f16 data gets zero padding.
      const data = slice.length % 4 === 0 ? slice : padTo4(slice);
      device.queue.writeBuffer(slot.buffer, slot.offset, data);
    }
  }
  return buffers;
}

function padTo4(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const padded = new Uint8Array(Math.ceil(bytes.length / 4) * 4);
  padded.set(bytes);
  return padded;
}

function loadEntry(
  name: string,
  desc: EntryPoint,
  manifest: Manifest,
  buffers: Map<number, BufferSlot>,
  layouts: GPUBindGroupLayout[],
  device: GPUDevice,
  label: string,
  created: GPUBuffer[],
): LoadedEntry {
  const commands = desc.dispatches.map((d, i) => {
    const kernel = manifest.kernels[d.kernel];
    const bindGroup = device.createBindGroup({
      label: `${label}/${name}/${i}:${d.node}`,
      layout: layouts[d.kernel],
      entries: kernel.bindings.map((b, j) => {
        const { buffer, offset, size } = buffers.get(d.buffers[j])!;
        return { binding: b.binding, resource: { buffer, offset, size } };
      }),
    });
    return { kernel: d.kernel, bindGroup, workgroups: d.workgroups };
  });
  const staging = new Map<number, GPUBuffer>();
  for (const output of desc.outputs) {
    if (staging.has(output.buffer)) continue;
    const buffer = device.createBuffer({
      label: `${label}/${name}/staging:${output.name}`,
      size: buffers.get(output.buffer)!.size,
      usage: BUFFER_MAP_READ | BUFFER_COPY_DST,
    });
    created.push(buffer);
    staging.set(output.buffer, buffer);
  }
  return { name, desc, commands, staging, free: [staging], made: 1, waiting: [] };
}

/**
 * The sessions alive on each device, told when it is lost. One handler per device, holding
 * sessions weakly and dropping each when it is freed: a handler per session on the device's
 * lost promise would keep every session ever loaded on that device, buffers and all.
 */
const sessionsOnDevice = new WeakMap<GPUDevice, Set<WeakRef<PlanSession>>>();

export class PlanSession implements Session {
  readonly inputs: TensorBinding[];
  readonly outputs: TensorBinding[];
  readonly ready: Promise<void>;
  private destroyed = false;
  /** why the session can no longer run: its device was lost, or a run passed its deadline */
  private broken?: PlanError;
  private inFlight = 0;
  /** settles when the previous run or read-back has been submitted: submissions keep call order */
  private submitted: Promise<void> = Promise.resolve();
  /** runs that have submitted some chunks and wait for the pipeline of the next (see submit) */
  private runsBetweenChunks = 0;
  /** settles when every run and read-back so far has finished */
  private completed: Promise<void> = Promise.resolve();
  /** tracing state: timers and dispatch descriptions per entry, made when tracing is first turned on */
  private traced?: Map<string, TracedEntry>;
  private traceOn = false;
  private tracedRuns = 0;
  private records: TraceRecord[] = [];
  /** this session's entry in sessionsOnDevice */
  private watch?: WeakRef<PlanSession>;

  constructor(
    readonly manifest: Manifest,
    readonly target: ChosenTarget,
    readonly adapter: AdapterDescription,
    private readonly device: GPUDevice,
    private readonly buffers: Map<number, BufferSlot>,
    private readonly pipelines: PipelineBuilds,
    private readonly entries: Map<string, LoadedEntry>,
    private readonly created: GPUBuffer[],
    private readonly label: string = manifest.model.name,
    private readonly sink?: TraceSink,
  ) {
    const main = entries.get('run') ?? entries.values().next().value;
    this.inputs = main?.desc.inputs ?? [];
    this.outputs = main?.desc.outputs ?? [];
    this.ready = pipelines.ready;
    this.watchDevice();
  }

  /** A lost device makes the session unusable; later calls say why instead of failing in WebGPU. */
  private watchDevice(): void {
    this.watch = new WeakRef(this);
    let watching = sessionsOnDevice.get(this.device);
    if (!watching) {
      const sessions = new Set<WeakRef<PlanSession>>();
      sessionsOnDevice.set(this.device, sessions);
      void this.device.lost?.then((info) => {
        for (const ref of sessions) ref.deref()?.deviceLost(info);
      });
      watching = sessions;
    }
    watching.add(this.watch);
  }

  private deviceLost(info: GPUDeviceLostInfo | undefined): void {
    if (this.destroyed || this.broken) return;
    const reason = info?.reason === 'destroyed' ? 'the device was destroyed underneath it' : `the device was lost (${info?.reason ?? 'unknown'})`;
    this.broken = new PlanError('device-lost', `plan "${this.manifest.model.name}": ${reason}${info?.message ? `: ${info.message}` : ''}; load the plan again on a new device`);
  }

  /**
   * `work` with the deadline of RunOptions.timeoutMs: past it (or settling after it, when the
   * thread was held inside submit and no timer could fire) the call rejects with 'timeout'
   * and the device is destroyed, which abandons the queued work and ends the session.
   */
  private withDeadline<T>(work: Promise<T>, timeoutMs: number | undefined, entry: string): Promise<T> {
    if (timeoutMs === undefined) return work;
    const started = performance.now();
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const expire = () => {
        if (settled) return;
        settled = true;
        const error = new PlanError(
          'timeout',
          `entry "${entry}" of plan "${this.manifest.model.name}" did not finish within its ${timeoutMs} ms deadline ` +
            `(${(performance.now() - started).toFixed(0)} ms so far); the device was destroyed to abandon its work, so load the plan again on a new device`,
        );
        this.broken ??= error;
        this.device.destroy();
        // reject once Dawn has failed the abandoned run's map and scope callbacks (bounded): a
        // host that frees Dawn's instance while those are pending crashes the process (seen on
        // llvmpipe: aborts in pthread_mutex_lock, std::system_error, segfaults)
        let bound: ReturnType<typeof setTimeout> | undefined;
        const drained = new Promise((resolve) => (bound = setTimeout(resolve, 1000)));
        void Promise.race([work.catch(() => undefined), drained]).then(() => {
          clearTimeout(bound);
          reject(error);
        });
      };
      const timer = setTimeout(expire, timeoutMs);
      const settle = (finish: () => void) => {
        clearTimeout(timer);
        if (performance.now() - started > timeoutMs) return expire();
        if (settled) return;
        settled = true;
        finish();
      };
      work.then(
        (value) => settle(() => resolve(value)),
        (error: unknown) => settle(() => reject(error)),
      );
    });
  }

  run(inputs: Record<string, TensorData>, entry: string | RunOptions = 'run'): Promise<Record<string, Float32Array>> {
    try {
      const options = typeof entry === 'string' ? { entry } : (entry ?? {});
      return this.start(inputs, options.entry ?? 'run', options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  get tracing(): boolean {
    return this.traceOn;
  }

  set tracing(on: boolean) {
    this.assertAlive();
    if (on && !this.traced) {
      assertTraceable(this.device, this.label);
      this.traced = new Map();
      for (const [name, loaded] of this.entries) {
        const timer = new DispatchTimer(this.device, `${this.label}/${name}`, loaded.commands.length);
        // the grid as dispatched (a kernel variant may carry its own)
        const infos = dispatchInfos(this.manifest, this.label, name, loaded.desc).map((info, i) => ({ ...info, workgroups: [...loaded.commands[i].workgroups] as [number, number, number] }));
        this.traced.set(name, { timer, infos });
      }
    }
    this.traceOn = on;
  }

  takeTrace(): TraceRecord[] {
    const records = this.records;
    this.records = [];
    return records;
  }

  /** run(), but bad inputs throw at once instead of rejecting, so a caller knows the run was queued. */
  start(inputs: Record<string, TensorData>, entry: string, options: RunOptions = {}): Promise<Record<string, Float32Array>> {
    this.assertAlive();
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0 && timeoutMs <= 2 ** 31 - 1)) {
      throw new PlanError('bad-input', `timeoutMs must be a number of milliseconds from 1 to ${2 ** 31 - 1} (a timer's range); got ${String(timeoutMs)}`);
    }
    const loaded = this.entry(entry);
    const uploads = this.prepareInputs(loaded, inputs);
    // decided when the run is queued, so turning tracing off affects only later runs
    const traced = this.traceOn ? this.traced!.get(entry) : undefined;
    const earlierDone = this.completed;
    const work = this.sequenced(async (submitted) => {
      // a traced run's timer is one per entry: it waits for everything before it
      if (traced) await earlierDone;
      const set = await this.acquire(loaded);
      try {
        this.assertAlive();
        const scopes = await this.submit(loaded, uploads, set, traced);
        submitted();
        return await this.collect(loaded, set, scopes, traced);
      } finally {
        this.release(loaded, set);
      }
    });
    if (timeoutMs === undefined || this.pipelines.done) return this.withDeadline(work, timeoutMs, entry);
    // the deadline bounds the run, not the plan's shader compiles: its clock starts once every
    // pipeline exists (the run itself goes ahead meanwhile; a failed build rejects it)
    work.catch(() => undefined);
    return this.pipelines.ready.then(() => this.withDeadline(work, timeoutMs, entry));
  }

  /**
   * Runs `work` after every earlier operation has been submitted; `work` calls `submitted()`
   * once its own commands are (the wrapper makes sure of it on failure too).
   */
  private sequenced<T>(work: (submitted: () => void) => Promise<T>): Promise<T> {
    this.inFlight++;
    const previous = this.submitted;
    let markSubmitted!: () => void;
    this.submitted = new Promise<void>((resolve) => (markSubmitted = resolve));
    const result = previous.then(() => work(markSubmitted)).finally(markSubmitted);
    const done = result.then(
      () => undefined,
      () => undefined,
    );
    // resolved to nothing: Promise.all's array of the one before would chain every run ever made
    this.completed = Promise.all([this.completed, done]).then(() => undefined);
    void done.then(() => {
      if (--this.inFlight === 0 && this.destroyed) this.free();
    });
    return result;
  }

  private async acquire(loaded: LoadedEntry): Promise<Map<number, GPUBuffer>> {
    const set = loaded.free.pop();
    if (set) return set;
    if (loaded.made < MAX_RUNS_IN_FLIGHT) {
      loaded.made++;
      const fresh = new Map<number, GPUBuffer>();
      for (const [id, first] of loaded.staging) {
        const buffer = this.device.createBuffer({ label: `${first.label}#${loaded.made}`, size: first.size, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
        this.created.push(buffer);
        fresh.set(id, buffer);
      }
      return fresh;
    }
    return new Promise((resolve) => loaded.waiting.push(resolve));
  }

  private release(loaded: LoadedEntry, set: Map<number, GPUBuffer>): void {
    const next = loaded.waiting.shift();
    if (next) next(set);
    else loaded.free.push(set);
  }

  /** Copies buffers back (after every earlier run), by buffer id; an arena-resident one is its range. */
  readBuffers(ids: readonly number[]): Promise<Map<number, Uint8Array>> {
    try {
      this.assertAlive();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.sequenced(async (submitted) => {
      this.assertAlive();
      const staged = this.submitCopy(ids);
      submitted();
      return this.collectCopy(ids, staged);
    });
  }

  loadWeights(files: WeightsInput | readonly WeightsInput[], options: WeightsOptions = {}): WeightsReport {
    this.assertAlive();
    const list = files instanceof Uint8Array || !Array.isArray(files) ? [files as WeightsInput] : (files as readonly WeightsInput[]);
    const named = list.map((f, i) => (f instanceof Uint8Array ? { source: list.length > 1 ? `weights file ${i + 1}` : 'weights file', file: decodeSafetensors(f, list.length > 1 ? `weights file ${i + 1}` : 'weights file') } : f));
    const { writes, report } = matchWeights(this.manifest, named, options);
    for (const { buffer, bytes } of writes) this.writeBuffer(buffer.id, bytes());
    return report;
  }

  /** Overwrites a buffer's contents (from its start); ordered before any run submitted after it. */
  writeBuffer(id: number, bytes: Uint8Array): void {
    this.assertAlive();
    const slot = this.buffers.get(id);
    if (!slot) throw new PlanError('bad-input', `plan "${this.manifest.model.name}" has no buffer ${id}`);
    // an arena neighbour would be overwritten, and WebGPU would refuse a write past a buffer's end
    if (bytes.length > slot.size) throw new PlanError('bad-input', `${bytes.length} bytes do not fit buffer ${id} of plan "${this.manifest.model.name}" (${slot.size} bytes)`);
    const data = bytes.length % 4 === 0 ? bytes : padTo4(bytes);
    if (this.runsBetweenChunks === 0) {
      this.device.queue.writeBuffer(slot.buffer, slot.offset, data as Uint8Array<ArrayBuffer>);
      return;
    }
    // a run is submitted in part, waiting for a pipeline: write after its last chunk, never between
    // two of them (and before any run called after this), with a copy the caller cannot change
    const copy = data.slice();
    this.submitted = this.submitted.then(() => {
      if (!this.destroyed && !this.broken) this.device.queue.writeBuffer(slot.buffer, slot.offset, copy);
    });
  }

  private submitCopy(ids: readonly number[]): GPUBuffer[] {
    const { device } = this;
    const encoder = device.createCommandEncoder({ label: `${this.manifest.model.name}/read-back` });
    const staged = ids.map((id) => {
      const source = this.buffers.get(id);
      if (!source) throw new PlanError('bad-input', `plan "${this.manifest.model.name}" has no buffer ${id}`);
      const staging = device.createBuffer({ label: `${this.manifest.model.name}/read-back:${id}`, size: source.size, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
      encoder.copyBufferToBuffer(source.buffer, source.offset, staging, 0, source.size);
      return staging;
    });
    device.queue.submit([encoder.finish()]);
    return staged;
  }

  private async collectCopy(ids: readonly number[], staged: GPUBuffer[]): Promise<Map<number, Uint8Array>> {
    try {
      await Promise.all(staged.map((b) => b.mapAsync(MAP_MODE_READ)));
      const byteLength = new Map(this.manifest.buffers.map((b) => [b.id, b.byteLength]));
      return new Map(ids.map((id, k) => [id, new Uint8Array(staged[k].getMappedRange()).slice(0, byteLength.get(id))]));
    } catch (error) {
      throw new PlanError('device-lost', `reading buffers back from plan "${this.manifest.model.name}" failed: ${(error as Error).message}`, { cause: error });
    } finally {
      for (const b of staged) b.destroy();
    }
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.inFlight === 0) this.free();
  }

  private free(): void {
    sessionsOnDevice.get(this.device)?.delete(this.watch!);
    for (const buffer of this.created) buffer.destroy();
    this.created.length = 0;
    for (const { timer } of this.traced?.values() ?? []) timer.destroy();
    this.traced = undefined;
    const untaken = this.takeTrace();
    if (this.sink && untaken.length > 0) this.sink.add(untaken);
  }

  /** Frees everything at once, handing no records anywhere: a load that failed. */
  discard(): void {
    this.destroyed = true;
    this.records = [];
    this.free();
  }

  private assertAlive(): void {
    if (this.destroyed) throw new PlanError('destroyed', `session for plan "${this.manifest.model.name}" was destroyed; load the plan again`);
    if (this.broken) throw new PlanError(this.broken.kind, `session is unusable: ${this.broken.message}`);
  }

  private entry(name: string): LoadedEntry {
    const loaded = this.entries.get(name);
    if (!loaded) {
      throw new PlanError('bad-input', `plan "${this.manifest.model.name}" has no entry point "${name}" (it has: ${[...this.entries.keys()].join(', ') || 'none'})`);
    }
    return loaded;
  }

  /** Checks every input before anything is written, and converts each to its buffer's bytes. */
  private prepareInputs(loaded: LoadedEntry, inputs: Record<string, TensorData>): [BufferSlot, Uint8Array<ArrayBuffer>][] {
    if (typeof inputs !== 'object' || inputs === null) throw new PlanError('bad-input', `run("${loaded.name}") expects an object mapping input names to typed arrays`);
    const expected = new Map(loaded.desc.inputs.map((t) => [t.name, t]));
    for (const name of Object.keys(inputs)) {
      if (!expected.has(name)) {
        throw new PlanError('bad-input', `unknown input "${name}" for entry "${loaded.name}"; its inputs are: ${[...expected.keys()].join(', ') || 'none'}`);
      }
    }
    return loaded.desc.inputs.map((binding) => {
      const data = inputs[binding.name];
      if (data === undefined) throw new PlanError('bad-input', `missing input "${binding.name}" for entry "${loaded.name}": expected ${describe(binding)}`);
      const integer = binding.dtype === 'i32' || binding.dtype === 'u32';
      const host = binding.hostDtype;
      const typeOk =
        data instanceof Float32Array ||
        (host === 'f64' && data instanceof Float64Array) ||
        ((host === 'f16' || host === 'bf16') && data instanceof Uint16Array) ||
        (binding.dtype === 'i8' ? data instanceof Int8Array : integer && (data instanceof Int32Array || data instanceof Uint32Array));
      if (!typeOk) {
        const got = (data as object | null)?.constructor?.name ?? typeof data;
        const wanted =
          host === 'f64'
            ? 'Float64Array or Float32Array'
            : host
              ? `Uint16Array (${host} bit patterns) or Float32Array`
              : binding.dtype === 'i8'
                ? 'Int8Array or Float32Array'
                : integer
                  ? 'Float32Array, Int32Array or Uint32Array'
                  : 'Float32Array';
        throw new PlanError('bad-input', `input "${binding.name}" (${host ?? binding.dtype}) must be an ${wanted}, got ${got}`);
      }
      if (data.length !== elementCount(binding.shape)) {
        throw new PlanError('bad-input', `input "${binding.name}" has ${data.length} elements; expected ${describe(binding)}`);
      }
      checkIntegers(binding, data);
      // a double, float16 or bfloat16 input is the plan's f32
      const values = data instanceof Uint16Array ? Float32Array.from(data, host === 'bf16' ? bf16BitsToF32 : f16BitsToF32) : data instanceof Float64Array ? Float32Array.from(data) : data;
      return [this.buffers.get(binding.buffer)!, toBufferBytes(values, binding.dtype)];
    });
  }

  /**
   * Writes the inputs, encodes the entry's dispatches and the output copies, and submits them:
   * once every pipeline exists, in one command buffer (a long run: in chunks of growing size,
   * FIRST_CHUNK dispatches then twice as many each time, no waiting), else in chunks, each
   * submitted as soon as the pipelines of its dispatches exist, so the GPU starts on the first
   * dispatches while later pipelines still compile. Returns each chunk's error scopes.
   */
  private async submit(loaded: LoadedEntry, uploads: [BufferSlot, Uint8Array<ArrayBuffer>][], staging: Map<number, GPUBuffer>, traced?: TracedEntry) {
    const { device } = this;
    const { built } = this.pipelines;
    const { commands } = loaded;
    const scopes: ErrorScopes[] = [];
    // one chunk: push and pop its scopes synchronously, so no other work on the device lands in them
    // (the inputs' writes go with the first; a chunk with nothing to encode only writes)
    const chunk = (encode: ((encoder: GPUCommandEncoder) => void) | undefined, writes: boolean) => {
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      if (writes) for (const [slot, bytes] of uploads) device.queue.writeBuffer(slot.buffer, slot.offset, bytes);
      if (encode) {
        const encoder = device.createCommandEncoder({ label: `${this.manifest.model.name}/${loaded.name}` });
        encode(encoder);
        device.queue.submit([encoder.finish()]);
      }
      const validation = device.popErrorScope();
      const oom = device.popErrorScope();
      scopes.push({ validation, oom });
    };
    const dispatch = (encoder: GPUCommandEncoder, from: number, to: number) => {
      const pass = encoder.beginComputePass();
      for (let i = from; i < to; i++) {
        const { kernel, bindGroup, workgroups } = commands[i];
        pass.setPipeline(built[kernel]!);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
      }
      pass.end();
    };
    const copyOutputs = (encoder: GPUCommandEncoder) => {
      for (const [id, buffer] of staging) {
        const slot = this.buffers.get(id)!;
        encoder.copyBufferToBuffer(slot.buffer, slot.offset, buffer, 0, slot.size);
      }
    };
    try {
      if (traced) {
        // a pass per dispatch with timestamps: every pipeline first
        for (const { kernel } of commands) if (!built[kernel]) await this.pipelines.waitFor(kernel);
        chunk((encoder) => {
          traced.timer.encode(encoder, commands.map((c) => ({ ...c, pipeline: built[c.kernel]! })));
          copyOutputs(encoder);
        }, true);
        return scopes;
      }
      let from = 0;
      let writes = true;
      for (;;) {
        let to = from;
        while (to < commands.length && built[commands[to].kernel]) to++;
        if (to === commands.length) {
          // every pipeline exists: a long run goes in growing chunks, so the GPU starts on the
          // first dispatches while the host encodes the rest (about 4 µs a dispatch through
          // dawn.node on an H100's host: 1.4 ms for a 363-dispatch decode step, before this
          // all ahead of the GPU)
          for (let size = FIRST_CHUNK; to - from > 2 * size; size *= 2) {
            const end = from + size;
            chunk((encoder) => dispatch(encoder, from, end), writes);
            writes = false;
            from = end;
          }
          chunk((encoder) => {
            if (to > from) dispatch(encoder, from, to);
            copyOutputs(encoder);
          }, writes);
          return scopes;
        }
        if (to > from || writes) chunk(to > from ? (encoder) => dispatch(encoder, from, to) : undefined, writes);
        writes = false;
        from = to;
        this.runsBetweenChunks++;
        try {
          await this.pipelines.waitFor(commands[to].kernel);
        } finally {
          this.runsBetweenChunks--; // in the continuation that submits the next chunk: no write slips between
        }
        // a run started before destroy() finishes (its buffers wait for it); a lost device ends it
        if (this.broken) throw new PlanError(this.broken.kind, `entry "${loaded.name}" did not complete: ${this.broken.message}`);
      }
    } catch (error) {
      // chunks already submitted ran without their outputs being copied: nothing to collect
      void Promise.allSettled(scopes.flatMap((s) => [s.validation, s.oom]));
      throw error;
    }
  }

  /** Waits for a submitted run and copies its outputs out of its staging set. */
  private async collect(loaded: LoadedEntry, staging: Map<number, GPUBuffer>, scopes: ErrorScopes[], traced?: TracedEntry): Promise<Record<string, Float32Array>> {
    const staged = [...staging.values()];
    // a traced run's timestamps are mapped last, after the outputs
    const mapped = await Promise.allSettled([...staged.map((b) => b.mapAsync(MAP_MODE_READ)), ...(traced ? [traced.timer.map()] : [])]);
    let error: ReturnType<typeof scopeError>;
    for (const { validation, oom } of scopes) error ??= scopeError(await validation, await oom);
    const mapFailure = mapped.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    try {
      if (error) {
        throw new PlanError(error.kind, `WebGPU reported an error while running entry "${loaded.name}" of plan "${this.manifest.model.name}": ${error.message}`);
      }
      if (mapFailure) {
        // the device went away underneath the run: say why (a deadline, a loss) where known
        if (this.broken) throw new PlanError(this.broken.kind, `entry "${loaded.name}" did not complete: ${this.broken.message}`, { cause: mapFailure.reason });
        throw new PlanError('device-lost', `reading outputs of entry "${loaded.name}" failed (device lost?): ${String(mapFailure.reason?.message ?? mapFailure.reason)}`, {
          cause: mapFailure.reason,
        });
      }
      // getMappedRange may be called once per range, and outputs can share a buffer.
      const ranges = new Map([...staging].map(([id, buffer]) => [id, buffer.getMappedRange()]));
      const outputs: Record<string, Float32Array> = {};
      for (const binding of loaded.desc.outputs) outputs[binding.name] = fromBufferBytes(ranges.get(binding.buffer)!, binding);
      if (traced) {
        const run = ++this.tracedRuns;
        const times = traced.timer.times();
        traced.infos.forEach((info, i) => this.records.push({ ...info, run, startNs: times[i][0], endNs: times[i][1] }));
      }
      return outputs;
    } finally {
      for (const [i, buffer] of staged.entries()) if (mapped[i].status === 'fulfilled') buffer.unmap();
      if (traced && mapped[staged.length].status === 'fulfilled') traced.timer.unmap();
    }
  }
}

const INTEGER_LIMITS: Partial<Record<DType, [number, number]>> = { i8: [-128, 127], i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] };

/**
 * Integer inputs hold integers of their dtype, within the plan's index range where it gives
 * one: a fraction would be truncated and a label past the class count gives a zero row.
 */
function checkIntegers(binding: TensorBinding, data: TensorData): void {
  const limits = INTEGER_LIMITS[binding.dtype];
  if (!limits) return;
  const [min, max] = binding.range ? [binding.range.min, binding.range.max] : limits;
  // a typed array of the dtype itself holds only valid values
  const typed = (binding.dtype === 'i8' && data instanceof Int8Array) || (binding.dtype === 'i32' && data instanceof Int32Array) || (binding.dtype === 'u32' && data instanceof Uint32Array);
  if (typed && !binding.range) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (Number.isInteger(v) && v >= min && v <= max) continue;
    const takes = binding.range ? `indices from ${min} to ${max}` : `integers from ${min} to ${max}`;
    throw new PlanError('bad-input', `input "${binding.name}" (${binding.dtype}) holds ${v} at element ${i}; it takes ${takes}`);
  }
}

/**
 * An output as the caller's type for it: a Float64Array for a binding whose hostDtype is f64,
 * the bit patterns (Uint16Array) for f16 and bf16 (the plan has rounded the values already),
 * the values themselves for every other binding.
 */
export function hostValues(binding: TensorBinding, values: Float32Array): Float32Array | Float64Array | Uint16Array {
  switch (binding.hostDtype) {
    case 'f64':
      return Float64Array.from(values);
    case 'f16':
      return Uint16Array.from(values, f32ToF16Bits);
    case 'bf16':
      return Uint16Array.from(values, f32ToBf16Bits);
    default:
      return values;
  }
}

/** The bytes a buffer of `dtype` holds for these values (a fresh copy WebGPU may keep). */
function toBufferBytes(data: Exclude<TensorData, Float64Array | Uint16Array>, dtype: ElementDType): Uint8Array<ArrayBuffer> {
  let typed: Float32Array | Int32Array | Uint32Array | Uint16Array | Int8Array;
  if (dtype === 'i8') typed = data instanceof Int8Array ? data : Int8Array.from(data);
  else if (dtype === 'f32') typed = data instanceof Float32Array ? data : Float32Array.from(data);
  else if (dtype === 'i32') typed = data instanceof Int32Array ? data : Int32Array.from(data, Math.trunc);
  else if (dtype === 'u32') typed = data instanceof Uint32Array ? data : Uint32Array.from(data, Math.trunc);
  else typed = Uint16Array.from(data, f32ToF16Bits);
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.length * DTYPE_BYTES[dtype]);
  return bytes.length % 4 === 0 ? (bytes as Uint8Array<ArrayBuffer>) : padTo4(bytes);
}

/** Copies an output out of a mapped staging range into a fresh Float32Array. */
function fromBufferBytes(range: ArrayBuffer, binding: TensorBinding): Float32Array {
  const n = elementCount(binding.shape);
  switch (binding.dtype) {
    case 'f32':
      return new Float32Array(range, 0, n).slice();
    case 'i32':
      return Float32Array.from(new Int32Array(range, 0, n));
    case 'u32':
      return Float32Array.from(new Uint32Array(range, 0, n));
    case 'f16':
      return Float32Array.from(new Uint16Array(range, 0, n), f16BitsToF32);
    case 'i8':
      return Float32Array.from(new Int8Array(range, 0, n));
  }
}

export { f16BitsToF32, f32ToF16Bits };
