// GPU execution time of one entry point of a plan, from timestamp queries. The session has no
// timing hooks, so this rebuilds the entry's dispatch list from the bundle the way
// runtime/session.ts does (buffers, arenas bound as ranges, pipelines, bind groups) and
// encodes `reps` whole runs back to back in one compute pass with timestamps around the pass:
// µs per run with no host work, no upload and no read-back. Dawn quantizes timestamps to
// about 65.5 µs on the H200, so passes are made long (many reps) and the median pass is kept.
// Without 'timestamp-query' (llvmpipe) it falls back to wall time around submit + done.
import { readBundle, type Manifest, type TensorData } from '../runtime/index';
import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_QUERY_RESOLVE, BUFFER_STORAGE, MAP_MODE_READ } from '../runtime/gpu-flags';
import { chooseVariants, type ChosenVariant } from '../runtime/session';

export interface TimedDispatch {
  node: string;
  kernel: string;
  workgroups: string;
}

export interface TimedPlan {
  readonly manifest: Manifest;
  readonly entry: string;
  readonly dispatches: TimedDispatch[];
  /** per kernel used, the WGSL section of the variant that runs (e.g. 'kernels/matmulInt8_4096x4096.subgroup-matrix.wgsl') */
  readonly variants: string[];
  /** 'timestamp': GPU timestamps around each pass; 'wall': submit → onSubmittedWorkDone (no timestamp-query) */
  readonly clock: 'timestamp' | 'wall';
  /** µs per run for each of `passes` passes of `reps` runs each (one submit per pass, all awaited at the end). */
  passes(reps: number, passes: number): Promise<number[]>;
  /** µs per dispatch: each dispatch of the entry repeated `reps` times in a pass of its own. */
  perDispatch(reps: number): Promise<(TimedDispatch & { us: number })[]>;
  destroy(): void;
}

interface Slot {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

const padded = (n: number) => Math.max(4, Math.ceil(n / 4) * 4);

/**
 * Builds `entry` of the plan on `device` with `feeds` written into its input buffers (f32
 * inputs as Float32Array, integer inputs as Int32Array/Uint32Array; a training entry's hyper
 * vector too, see hyperFeed). Each kernel runs the variant the runtime would pick (features,
 * limits, device constants), or with `portable` its last, portable one.
 */
export async function prepareTimedPlan(
  bytes: Uint8Array,
  device: GPUDevice,
  entry: string,
  feeds: Record<string, TensorData>,
  options: { portable?: boolean } = {},
): Promise<TimedPlan> {
  const { manifest, section, text } = await readBundle(bytes);
  const desc = manifest.entryPoints[entry];
  if (!desc) throw new Error(`plan "${manifest.model.name}" has no entry point "${entry}"`);
  const created: GPUBuffer[] = [];
  const make = (size: number, usage: number, label: string) => {
    const buffer = device.createBuffer({ label, size, usage });
    created.push(buffer);
    return buffer;
  };
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  const arenas = (manifest.arenas?.byteLengths ?? []).map((n, i) => make(padded(n), BUFFER_STORAGE | BUFFER_COPY_DST, `timed/arena${i}`));
  const slots = new Map<number, Slot>();
  for (const b of manifest.buffers) {
    const size = padded(b.byteLength);
    const slot = b.arena ? { buffer: arenas[b.arena.index], offset: b.arena.offset, size } : { buffer: make(size, BUFFER_STORAGE | BUFFER_COPY_DST, `timed/${b.name}`), offset: 0, size };
    slots.set(b.id, slot);
    if (b.init && b.init.length > 0) {
      const data = section(b.init.section).subarray(b.init.offset, b.init.offset + b.init.length);
      const aligned = data.length % 4 === 0 ? data : Uint8Array.from({ length: padded(data.length) }, (_, i) => data[i] ?? 0);
      device.queue.writeBuffer(slot.buffer, slot.offset, aligned as Uint8Array<ArrayBuffer>);
    }
  }
  for (const input of desc.inputs) {
    const data = feeds[input.name];
    if (!data) throw new Error(`no feed for input "${input.name}" of entry "${entry}"`);
    if (input.dtype === 'f16') throw new Error(`input "${input.name}" is f16; prepareTimedPlan feeds f32/i32/u32 only`);
    const slot = slots.get(input.buffer)!;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    // writeBuffer takes whole words; an i8 input of odd length gets zero padding
    device.queue.writeBuffer(slot.buffer, slot.offset, (bytes.length % 4 === 0 ? bytes : Uint8Array.from({ length: padded(bytes.length) }, (_, i) => bytes[i] ?? 0)) as Uint8Array<ArrayBuffer>);
  }
  const used = [...new Set(desc.dispatches.map((d) => d.kernel))];
  // the runtime's choice, or each kernel's last (portable) variant
  const chosen: ChosenVariant[] = options.portable ? manifest.kernels.map((kernel) => kernel.variants[kernel.variants.length - 1]) : await chooseVariants(manifest, device);
  const pipelines = new Map<number, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  await Promise.all(
    used.map(async (k) => {
      const kernel = manifest.kernels[k];
      const variant = chosen[k];
      const layout = device.createBindGroupLayout({
        entries: kernel.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.access === 'read' ? ('read-only-storage' as const) : ('storage' as const) } })),
      });
      const pipeline = await device.createComputePipelineAsync({
        label: `timed/${kernel.name}`,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module: device.createShaderModule({ code: text(variant.wgsl) }), entryPoint: kernel.entryPoint, ...(variant.constants ? { constants: variant.constants } : {}) },
      });
      pipelines.set(k, { pipeline, layout });
    }),
  );
  const commands = desc.dispatches.map((d) => {
    const { pipeline, layout } = pipelines.get(d.kernel)!;
    const kernel = manifest.kernels[d.kernel];
    const bindGroup = device.createBindGroup({
      layout,
      entries: kernel.bindings.map((b, j) => {
        const { buffer, offset, size } = slots.get(d.buffers[j])!;
        return { binding: b.binding, resource: { buffer, offset, size } };
      }),
    });
    return { pipeline, bindGroup, workgroups: d.workgroups, info: { node: d.node, kernel: kernel.name, workgroups: d.workgroups.join('x') } };
  });
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  if (validation || oom) {
    for (const b of created) b.destroy();
    throw new Error(`building the timed copy of "${entry}" failed: ${(validation ?? oom)!.message}`);
  }

  const clock = device.features.has('timestamp-query') ? ('timestamp' as const) : ('wall' as const);
  type Command = (typeof commands)[number];
  const encodeRuns = (p: GPUComputePassEncoder, list: readonly Command[], reps: number) => {
    for (let r = 0; r < reps; r++) {
      for (const c of list) {
        p.setPipeline(c.pipeline);
        p.setBindGroup(0, c.bindGroup);
        p.dispatchWorkgroups(...c.workgroups);
      }
    }
  };

  /** µs of each pass, each pass one submit of `reps` repetitions of `list`. */
  const timePasses = async (lists: readonly (readonly Command[])[], reps: number): Promise<number[]> => {
    if (clock === 'wall') {
      const out: number[] = [];
      for (const list of lists) {
        const encoder = device.createCommandEncoder();
        const p = encoder.beginComputePass();
        encodeRuns(p, list, reps);
        p.end();
        const start = performance.now();
        device.queue.submit([encoder.finish()]);
        await device.queue.onSubmittedWorkDone();
        out.push((performance.now() - start) * 1000);
      }
      return out;
    }
    device.pushErrorScope('validation');
    const times = timestampedPasses(device, lists.length, (p, i) => encodeRuns(p, lists[i], reps));
    const error = await device.popErrorScope();
    if (error) throw new Error(`timing "${entry}": ${error.message}`);
    return times;
  };

  return {
    manifest,
    entry,
    dispatches: commands.map((c) => c.info),
    variants: used.map((k) => chosen[k].wgsl),
    clock,
    async passes(reps, passes) {
      const times = await timePasses(Array.from({ length: passes }, () => commands), reps);
      return times.map((us) => us / reps);
    },
    async perDispatch(reps) {
      const times = await timePasses(commands.map((c) => [c]), reps);
      return commands.map((c, k) => ({ ...c.info, us: times[k] / reps }));
    },
    destroy() {
      for (const b of created) b.destroy();
      created.length = 0;
    },
  };
}

/**
 * µs of each of `passes` compute passes, each recorded by `record` and submitted on its own
 * with timestamps written at its start and end (the device needs 'timestamp-query').
 */
export async function timestampedPasses(device: GPUDevice, passes: number, record: (pass: GPUComputePassEncoder, index: number) => void): Promise<number[]> {
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * passes });
  const resolve = device.createBuffer({ size: 16 * passes, usage: BUFFER_QUERY_RESOLVE | BUFFER_COPY_SRC });
  const readback = device.createBuffer({ size: 16 * passes, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
  try {
    for (let i = 0; i < passes; i++) {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      record(pass, i);
      pass.end();
      device.queue.submit([encoder.finish()]);
    }
    const encoder = device.createCommandEncoder();
    encoder.resolveQuerySet(querySet, 0, 2 * passes, resolve, 0);
    encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16 * passes);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(MAP_MODE_READ);
    const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    return Array.from({ length: passes }, (_, i) => Number(stamps[2 * i + 1] - stamps[2 * i]) / 1000);
  } finally {
    querySet.destroy();
    resolve.destroy();
    readback.destroy();
  }
}

export interface GpuTime {
  /** median µs per run over the passes */
  medianUs: number;
  /** runs per pass */
  reps: number;
  /** µs per run of each pass */
  passUs: number[];
  clock: 'timestamp' | 'wall';
}

/**
 * Calibration: reps per pass chosen so that one pass lasts about `targetPassUs` (long against
 * the timestamp quantum); then `warmupUs` of GPU work at those reps; then the median of
 * `passes` passes.
 */
export async function measureGpuTime(plan: TimedPlan, options: { passes?: number; targetPassUs?: number; maxReps?: number; warmupUs?: number } = {}): Promise<GpuTime> {
  const passes = options.passes ?? 7;
  const warmupUs = options.warmupUs ?? 500_000;
  const target = options.targetPassUs ?? 10_000;
  const maxReps = options.maxReps ?? 2000;
  // warm-up and calibration: grow reps until one pass is at least a quarter of the target
  let reps = 1;
  let passUs = (await plan.passes(reps, 1))[0] * reps;
  while (passUs < target / 4 && reps < maxReps) {
    reps = Math.min(maxReps, reps * 8);
    passUs = (await plan.passes(reps, 1))[0] * reps;
  }
  if (passUs > 0) reps = Math.max(1, Math.min(maxReps, Math.round((reps * target) / passUs)));
  // more warm-up at the chosen reps: on the H200 the first passes after a stretch of host-bound
  // work (uploads) ran up to 3x slower for a few hundred ms (clocks ramping up, presumably), in
  // memory-bound kernels most of all
  for (let warmed = 0; warmed < warmupUs; ) {
    const us = (await plan.passes(reps, 1))[0] * reps;
    warmed += us > 0 ? us : warmupUs;
  }
  const passUsList = await plan.passes(reps, passes);
  return { medianUs: median(passUsList), reps, passUs: passUsList, clock: plan.clock };
}

/**
 * The hyper vector a training session would feed at step `step` (bias corrections for that
 * step, 1 - beta in float64), for timing a 'train_step' entry outside the session.
 */
export function hyperFeed(manifest: Manifest, step = 10): Record<string, Float32Array> {
  const training = manifest.training;
  if (!training) return {};
  const values: Record<string, number> = { ...training.hyper.defaults };
  const [beta1, beta2] = [values.beta1 ?? 0, values.beta2 ?? 0];
  const derived: Record<string, number> = {
    biasCorrection1: 1 - beta1 ** step,
    biasCorrection2: 1 - beta2 ** step,
    oneMinusBeta1: 1 - beta1,
    oneMinusBeta2: 1 - beta2,
  };
  return { [training.hyper.input]: Float32Array.from(training.hyper.fields, (f) => derived[f] ?? values[f] ?? 0) };
}

/**
 * Where an entry's time goes: each dispatch timed alone (`reps` times in a pass of its own),
 * summed per kernel, printed heaviest first under `label`; returns those printed.
 */
export async function printByKernel(plan: TimedPlan, label: string, reps: number, top = 14): Promise<[string, { us: number; count: number }][]> {
  const perKernel = new Map<string, { us: number; count: number }>();
  for (const d of await plan.perDispatch(reps)) {
    const k = perKernel.get(d.kernel) ?? { us: 0, count: 0 };
    perKernel.set(d.kernel, { us: k.us + d.us, count: k.count + 1 });
  }
  const heaviest = [...perKernel].sort((a, b) => b[1].us - a[1].us).slice(0, top);
  console.log(`  ${label}, dispatches timed alone, by kernel (µs total, count):`);
  for (const [kernel, k] of heaviest) console.log(`    ${k.us.toFixed(1).padStart(8)} µs  ${String(k.count).padStart(4)}×  ${kernel}`);
  return heaviest;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
