// Profiling: GPU timestamps of every dispatch of a traced run, and what to make of them.
// A traced run encodes each dispatch in a compute pass of its own whose beginning and end
// write timestamp queries; the records (kernel, fused ops, node, shapes, GPU start/end) turn
// into a Chrome/Perfetto trace (toChromeTrace) or a per-kernel time table (kernelSummary).
import type { DType, EntryPoint, Manifest } from '../schemas/manifest';
import { PlanError } from './errors';
import { BUFFER_COPY_DST, BUFFER_COPY_SRC, BUFFER_MAP_READ, BUFFER_QUERY_RESOLVE, MAP_MODE_READ } from './gpu-flags';

/** WebGPU caps a query set at 4096 queries: 2048 dispatches (begin + end) per set. */
export const MAX_QUERIES_PER_SET = 4096;
/** resolveQuerySet writes at multiples of 256 bytes into its destination. */
const RESOLVE_ALIGNMENT = 256;

/** One dispatch of one traced run. Times are the GPU's timestamps in ns (an arbitrary origin, one clock per device). */
export interface TraceRecord {
  /** the session's label (default: the plan's model name) */
  plan: string;
  entry: string;
  /** the traced run's number in its session, from 1 */
  run: number;
  /** the dispatch's position in the entry's dispatch list */
  index: number;
  kernel: string;
  /** the IR ops fused into the kernel */
  ops: string[];
  /** the IR node the dispatch computes */
  node: string;
  workgroups: [number, number, number];
  /** the buffers bound, in binding order */
  bindings: { name: string; dtype: DType; shape: number[]; access: 'read' | 'read_write' }[];
  startNs: number;
  endNs: number;
}

/** The records of one traced run, less its times: built once per entry point. */
export type DispatchInfo = Omit<TraceRecord, 'run' | 'startNs' | 'endNs'>;

export function dispatchInfos(manifest: Manifest, plan: string, entry: string, desc: EntryPoint): DispatchInfo[] {
  const buffers = new Map(manifest.buffers.map((b) => [b.id, b]));
  return desc.dispatches.map((d, index) => {
    const kernel = manifest.kernels[d.kernel];
    return {
      plan,
      entry,
      index,
      kernel: kernel.name,
      ops: [...kernel.ops],
      node: d.node,
      workgroups: [...d.workgroups] as [number, number, number],
      bindings: kernel.bindings.map((b, j) => {
        const buffer = buffers.get(d.buffers[j])!;
        return { name: buffer.name, dtype: buffer.dtype, shape: [...buffer.shape], access: b.access };
      }),
    };
  });
}

/** Throws the error tracing gives on a device without timestamp queries. */
export function assertTraceable(device: GPUDevice, plan: string): void {
  if (device.features.has('timestamp-query')) return;
  throw new PlanError(
    'missing-feature',
    `tracing plan "${plan}" needs the WebGPU feature "timestamp-query", which this device does not have ` +
      `(it offers [${[...device.features].join(', ')}]). Request it when creating the device (requestNodeDevice and ` +
      `requestBrowserDevice do, whenever the adapter offers it); Dawn's Vulkan, Metal and D3D12 backends offer it, its OpenGL backend does not.`,
  );
}

/** What a traced run encodes per dispatch (the session's loaded command). */
export interface TimedCommand {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
}

/**
 * The query sets and buffers that time one entry point's dispatches: ceil(2n / 4096) query
 * sets, one resolve buffer (a 256-byte-aligned range per set) and one read-back buffer.
 * Created once, when tracing is turned on; a traced run only encodes, resolves and maps them.
 */
export class DispatchTimer {
  private readonly sets: { querySet: GPUQuerySet; count: number; offset: number }[] = [];
  private readonly resolve: GPUBuffer;
  private readonly readBack: GPUBuffer;
  private readonly size: number;

  constructor(device: GPUDevice, label: string, dispatches: number) {
    let offset = 0;
    for (let first = 0; first < 2 * dispatches; first += MAX_QUERIES_PER_SET) {
      const count = Math.min(MAX_QUERIES_PER_SET, 2 * dispatches - first);
      const querySet = device.createQuerySet({ label: `${label}/timestamps${this.sets.length}`, type: 'timestamp', count });
      this.sets.push({ querySet, count, offset });
      offset += Math.ceil((count * 8) / RESOLVE_ALIGNMENT) * RESOLVE_ALIGNMENT;
    }
    this.size = Math.max(offset, 8);
    this.resolve = device.createBuffer({ label: `${label}/timestamps:resolve`, size: this.size, usage: BUFFER_QUERY_RESOLVE | BUFFER_COPY_SRC });
    this.readBack = device.createBuffer({ label: `${label}/timestamps:read-back`, size: this.size, usage: BUFFER_MAP_READ | BUFFER_COPY_DST });
  }

  /** Each dispatch in a compute pass of its own, writing its begin and end timestamps. */
  encode(encoder: GPUCommandEncoder, commands: readonly TimedCommand[]): void {
    commands.forEach(({ pipeline, bindGroup, workgroups }, i) => {
      const query = 2 * i;
      const set = this.sets[Math.floor(query / MAX_QUERIES_PER_SET)];
      const local = query % MAX_QUERIES_PER_SET;
      const pass = encoder.beginComputePass({
        timestampWrites: { querySet: set.querySet, beginningOfPassWriteIndex: local, endOfPassWriteIndex: local + 1 },
      });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
      pass.end();
    });
    for (const { querySet, count, offset } of this.sets) encoder.resolveQuerySet(querySet, 0, count, this.resolve, offset);
    encoder.copyBufferToBuffer(this.resolve, 0, this.readBack, 0, this.size);
  }

  /** Maps the read-back buffer (after the submit); then times() reads it. */
  map(): Promise<void> {
    return this.readBack.mapAsync(MAP_MODE_READ);
  }

  /** [start, end] ns per dispatch, from the mapped read-back buffer. */
  times(): [number, number][] {
    const range = this.readBack.getMappedRange();
    const out: [number, number][] = [];
    for (const { count, offset } of this.sets) {
      const values = new BigUint64Array(range, offset, count);
      for (let q = 0; q < count; q += 2) out.push([Number(values[q]), Number(values[q + 1])]);
    }
    return out;
  }

  unmap(): void {
    this.readBack.unmap();
  }

  destroy(): void {
    for (const { querySet } of this.sets) querySet.destroy();
    this.resolve.destroy();
    this.readBack.destroy();
  }
}

// --- where sessions send records nobody took: a host's trace file (MNRT_TRACE) ---------------

/** Receives the trace records a destroyed session still held (see attachTraceSink). */
export interface TraceSink {
  add(records: TraceRecord[]): void;
}

const sinks = new WeakMap<GPUDevice, TraceSink>();

/**
 * Makes every session loaded on `device` trace its runs (unless loaded with `trace: false`)
 * and hand the records not taken with takeTrace() to `sink` when it is destroyed. The Node
 * host uses it for MNRT_TRACE; the runtime itself writes no files.
 */
export function attachTraceSink(device: GPUDevice, sink: TraceSink): void {
  sinks.set(device, sink);
}

export function traceSinkOf(device: GPUDevice): TraceSink | undefined {
  return sinks.get(device);
}

// --- reading records --------------------------------------------------------------------------

/** A Trace Event Format event (the subset written here). */
export interface TraceEvent {
  name: string;
  cat?: string;
  ph: 'X' | 'M';
  /** µs */
  ts?: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, unknown>;
}

const shapeText = (b: TraceRecord['bindings'][number]) => `${b.name}: ${b.dtype}[${b.shape.join(', ')}]${b.access === 'read_write' ? ' (written)' : ''}`;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * The records as Chrome's Trace Event Format (`{ traceEvents }`), which Perfetto
 * (ui.perfetto.dev) and chrome://tracing open: a process per plan, a thread per entry point,
 * a slice per traced run with a slice per dispatch inside it (named after the kernel; args:
 * fused ops, node, binding shapes, workgroups). Times in µs from the earliest record.
 */
export function toChromeTrace(records: readonly TraceRecord[]): { traceEvents: TraceEvent[]; displayTimeUnit: 'ns' } {
  const origin = records.reduce((min, r) => Math.min(min, r.startNs), Infinity);
  const us = (ns: number) => round3((ns - origin) / 1000);
  const pids = new Map<string, number>();
  const tids = new Map<string, number>();
  const events: TraceEvent[] = [];
  const runs = new Map<string, { pid: number; tid: number; entry: string; run: number; start: number; end: number; dispatches: number }>();
  for (const r of records) {
    let pid = pids.get(r.plan);
    if (pid === undefined) {
      pid = pids.size + 1;
      pids.set(r.plan, pid);
      events.push({ name: 'process_name', ph: 'M', pid, tid: 0, args: { name: r.plan } });
    }
    const thread = `${r.plan}\0${r.entry}`;
    let tid = tids.get(thread);
    if (tid === undefined) {
      tid = tids.size + 1;
      tids.set(thread, tid);
      events.push({ name: 'thread_name', ph: 'M', pid, tid, args: { name: r.entry } });
    }
    const key = `${thread}\0${r.run}`;
    const run = runs.get(key) ?? { pid, tid, entry: r.entry, run: r.run, start: r.startNs, end: r.endNs, dispatches: 0 };
    run.start = Math.min(run.start, r.startNs);
    run.end = Math.max(run.end, r.endNs);
    run.dispatches++;
    runs.set(key, run);
    events.push({
      name: r.kernel,
      cat: 'dispatch',
      ph: 'X',
      ts: us(r.startNs),
      dur: round3(Math.max(0, r.endNs - r.startNs) / 1000),
      pid,
      tid,
      args: {
        ops: r.ops.join(' + '),
        node: r.node,
        shapes: r.bindings.map(shapeText),
        workgroups: r.workgroups.join('x'),
        dispatch: r.index,
        run: r.run,
      },
    });
  }
  // the run slices enclose their dispatches; listed first so viewers nest them without sorting
  const runEvents: TraceEvent[] = [...runs.values()].map((r) => ({
    name: `${r.entry} #${r.run}`,
    cat: 'run',
    ph: 'X',
    ts: us(r.start),
    dur: round3(Math.max(0, r.end - r.start) / 1000),
    pid: r.pid,
    tid: r.tid,
    args: { dispatches: r.dispatches },
  }));
  return { traceEvents: [...events.filter((e) => e.ph === 'M'), ...runEvents, ...events.filter((e) => e.ph === 'X')], displayTimeUnit: 'ns' };
}

/** One kernel's share of the traced GPU time. */
export interface KernelTime {
  kernel: string;
  ops: string[];
  calls: number;
  totalUs: number;
  meanUs: number;
  /** of the summed time of all dispatches, 0..1 */
  share: number;
}

/** Per kernel (by plan and name): calls, total and mean GPU time, share; largest total first. */
export function kernelSummary(records: readonly TraceRecord[]): KernelTime[] {
  const rows = new Map<string, KernelTime>();
  let all = 0;
  for (const r of records) {
    const us = Math.max(0, r.endNs - r.startNs) / 1000;
    all += us;
    const key = `${r.plan}\0${r.kernel}`;
    const row = rows.get(key) ?? { kernel: r.kernel, ops: r.ops, calls: 0, totalUs: 0, meanUs: 0, share: 0 };
    row.calls++;
    row.totalUs += us;
    rows.set(key, row);
  }
  return [...rows.values()]
    .map((row) => ({ ...row, meanUs: row.totalUs / row.calls, share: all > 0 ? row.totalUs / all : 0 }))
    .sort((a, b) => b.totalUs - a.totalUs || a.kernel.localeCompare(b.kernel));
}

const timeText = (us: number) => (us >= 10_000 ? `${(us / 1000).toFixed(1)} ms` : us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`);

/** kernelSummary as a text table (kernel, ops, calls, total, mean, %) with a total line; `limit` rows at most. */
export function formatKernelSummary(rows: readonly KernelTime[], options: { limit?: number } = {}): string {
  const limit = options.limit ?? rows.length;
  const shown = rows.slice(0, limit);
  const opsText = (ops: string[]) => {
    const text = ops.join('+');
    return text.length > 48 ? text.slice(0, 47) + '…' : text;
  };
  const table = [
    ['kernel', 'ops', 'calls', 'total', 'mean', '%'],
    ...shown.map((r) => [r.kernel, opsText(r.ops), String(r.calls), timeText(r.totalUs), timeText(r.meanUs), (100 * r.share).toFixed(1)]),
  ];
  const rest = rows.slice(limit);
  if (rest.length > 0) {
    const calls = rest.reduce((n, r) => n + r.calls, 0);
    const total = rest.reduce((n, r) => n + r.totalUs, 0);
    table.push([`(${rest.length} more kernels)`, '', String(calls), timeText(total), timeText(total / calls), (100 * rest.reduce((n, r) => n + r.share, 0)).toFixed(1)]);
  }
  const calls = rows.reduce((n, r) => n + r.calls, 0);
  const total = rows.reduce((n, r) => n + r.totalUs, 0);
  table.push(['total', '', String(calls), timeText(total), calls ? timeText(total / calls) : '-', rows.length ? '100.0' : '-']);
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const right = new Set([2, 3, 4, 5]);
  const line = (row: string[]) => row.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(table[0]), ...table.slice(1, -1).map(line), line(table[table.length - 1])].join('\n');
}
