// Memory planning: liveness over the static schedule, then packing of intermediates into a
// few arena buffers so that values whose lifetimes do not overlap share bytes. A pure
// function of the schedule and the value sizes; plan.ts applies its result to the manifest.
import type { EntryPoint, KernelDesc } from '../../schemas/manifest';

/**
 * Offsets are multiples of this. 256 is WebGPU's default and the largest value the spec
 * allows for `minStorageBufferOffsetAlignment` (an alignment limit: devices may offer less,
 * never more), so a 256-aligned offset is valid on every device. The manifest records it
 * and the runtime checks that the device's alignment divides it.
 */
export const ARENA_ALIGNMENT = 256;

/** One dispatch as the planner sees it: the values it binds read-only and those it writes. */
export interface MemoryStep {
  reads: readonly number[];
  writes: readonly number[];
}

/** An entry point's dispatches in order. */
export interface ScheduleEntry {
  name: string;
  steps: readonly MemoryStep[];
}

/** Where a value lives: arena `arena`, bytes [offset, offset + slotBytes(size)). */
export interface Placement {
  arena: number;
  offset: number;
}

export interface MemoryPlan {
  alignment: number;
  /** byte length of each arena buffer */
  arenas: number[];
  /** all arenas together: what the planned values cost */
  arenaBytes: number;
  placements: Map<number, Placement>;
  /** the most bytes live at any one step of any entry: no layout can use less */
  peakLiveBytes: number;
  /** every planned value in its own buffer: what the plan would cost without sharing */
  totalIntermediateBytes: number;
}

/** A value's inclusive step range within one entry. */
export interface LiveInterval {
  entry: number;
  first: number;
  last: number;
}

/** Bytes a value occupies: WebGPU binding sizes are multiples of 4, and never 0. */
export function slotBytes(byteLength: number): number {
  return Math.max(4, Math.ceil(byteLength / 4) * 4);
}

const alignUp = (value: number, alignment: number) => Math.ceil(value / alignment) * alignment;

/**
 * The planner's view of a manifest's entry points: per dispatch, the buffer ids at `read`
 * bindings and those at `read_write` ones. In-place updates read what they write; counting
 * those as writes is enough here, since only intermediates are planned and none is updated.
 */
export function scheduleOf(entryPoints: Record<string, EntryPoint>, kernels: readonly KernelDesc[]): ScheduleEntry[] {
  return Object.entries(entryPoints).map(([name, entry]) => ({
    name,
    steps: entry.dispatches.map((d) => {
      const access = kernels[d.kernel].bindings;
      return {
        reads: d.buffers.filter((_, j) => access[j].access === 'read'),
        writes: d.buffers.filter((_, j) => access[j].access === 'read_write'),
      };
    }),
  }));
}

/**
 * Live intervals of `values`, per entry where they occur: from the step that first touches
 * a value to the last one that does. Intermediates never carry from one call to the next,
 * so a value whose first use in an entry is a read is a bug in an earlier stage (it would
 * read whatever the arena held) and throws.
 */
export function liveIntervals(schedule: readonly ScheduleEntry[], values: ReadonlySet<number> | ReadonlyMap<number, unknown>): Map<number, LiveInterval[]> {
  const intervals = new Map<number, LiveInterval[]>();
  for (const v of values.keys()) intervals.set(v, []);
  schedule.forEach((entry, e) => {
    const open = new Map<number, LiveInterval>();
    entry.steps.forEach((step, s) => {
      for (const v of step.writes) {
        if (!values.has(v)) continue;
        const live = open.get(v);
        if (live) live.last = s;
        else open.set(v, { entry: e, first: s, last: s });
      }
      for (const v of step.reads) {
        if (!values.has(v)) continue;
        const live = open.get(v);
        if (!live) throw new Error(`planMemory: value ${v} is read at step ${s} of entry "${entry.name}" before any step of that entry writes it`);
        live.last = s;
      }
    });
    for (const [v, live] of open) intervals.get(v)!.push(live);
  });
  return intervals;
}

/** The largest sum of slot sizes live at one step, over every entry. */
export function peakLiveBytes(schedule: readonly ScheduleEntry[], sizes: ReadonlyMap<number, number>, intervals = liveIntervals(schedule, sizes)): number {
  let peak = 0;
  schedule.forEach((entry, e) => {
    const delta = new Float64Array(entry.steps.length + 1);
    for (const [v, list] of intervals) {
      for (const live of list) {
        if (live.entry !== e) continue;
        delta[live.first] += slotBytes(sizes.get(v)!);
        delta[live.last + 1] -= slotBytes(sizes.get(v)!);
      }
    }
    let live = 0;
    for (let s = 0; s < entry.steps.length; s++) peak = Math.max(peak, (live += delta[s]));
  });
  return peak;
}

/**
 * Places every value of `sizes` (id → byte length) in an arena. Two rules:
 *
 * - bytes: values may overlap only if their live intervals are disjoint in every entry
 *   where both occur. Different entries share freely: one queue executes a session's
 *   submissions in order (runs may overlap on the host, never on the GPU timeline), and
 *   nothing planned here outlives a call. A dispatch that reads A and writes B has both live at its step, so they never
 *   overlap, which keeps WebGPU's rule that a writable binding overlaps no other binding.
 * - buffers: a value a dispatch writes shares no arena with any other value that dispatch
 *   binds. WebGPU forbids a buffer used writable and read-only in one dispatch (Dawn:
 *   "includes writable usage and another usage in the same synchronization scope"), and a
 *   `var<storage, read>` binding needs a read-only layout, so a kernel cannot read one
 *   value of an arena while writing another. Hence several arenas, not one: `y = f(x)`
 *   puts x and y in different ones, and `z = x + f(x)` needs three.
 *
 * Packing is first-fit decreasing: largest value first, each at the lowest aligned offset
 * clear of the values already placed there that are live at the same time, in the arena it
 * grows least (an existing one where allowed, else a new one). It runs twice, ordering by
 * size and by size × lifetime (long-lived values first), and keeps the smaller layout:
 * neither order wins on every graph, and a pass is cheap.
 *
 * The runtime relies on a kernel writing every element of its output, since an arena slot
 * starts with another value's bytes rather than zeros.
 */
export function planMemory(schedule: readonly ScheduleEntry[], sizes: ReadonlyMap<number, number>, options: { alignment?: number } = {}): MemoryPlan {
  const alignment = options.alignment ?? ARENA_ALIGNMENT;
  const intervals = liveIntervals(schedule, sizes);
  const slot = (v: number) => slotBytes(sizes.get(v)!);

  // per value: entry → interval, for the overlap test
  const byEntry = new Map<number, Map<number, LiveInterval>>();
  for (const [v, list] of intervals) byEntry.set(v, new Map(list.map((live) => [live.entry, live])));
  const overlaps = (a: number, b: number) => {
    const other = byEntry.get(b)!;
    for (const [e, x] of byEntry.get(a)!) {
      const y = other.get(e);
      if (y && x.first <= y.last && y.first <= x.last) return true;
    }
    return false;
  };

  // pairs that may not share an arena: a written value and every other value of its dispatch
  const apart = new Map<number, Set<number>>([...sizes.keys()].map((v) => [v, new Set<number>()]));
  for (const entry of schedule) {
    for (const step of entry.steps) {
      const bound = [...step.reads, ...step.writes].filter((v) => sizes.has(v));
      for (const w of step.writes) {
        if (!sizes.has(w)) continue;
        for (const v of bound) {
          if (v === w) continue;
          apart.get(w)!.add(v);
          apart.get(v)!.add(w);
        }
      }
    }
  }

  const firstUse = (v: number) => {
    const live = intervals.get(v)![0];
    return live ? live.entry * 1e9 + live.first : Infinity;
  };
  const lifetime = (v: number) => intervals.get(v)!.reduce((n, live) => n + live.last - live.first + 1, 0);
  const byKey = (key: (v: number) => number) => [...sizes.keys()].sort((a, b) => key(b) - key(a) || firstUse(a) - firstUse(b) || a - b);
  const layouts = [byKey(slot), byKey((v) => slot(v) * lifetime(v))].map((order) => pack(order, slot, overlaps, apart, alignment));
  const { arenas, placements } = layouts.reduce((best, layout) => (total(layout.arenas) < total(best.arenas) ? layout : best));
  return {
    alignment,
    arenas,
    arenaBytes: total(arenas),
    placements,
    peakLiveBytes: peakLiveBytes(schedule, sizes, intervals),
    totalIntermediateBytes: [...sizes.keys()].reduce((n, v) => n + slot(v), 0),
  };
}

const total = (lengths: readonly number[]) => lengths.reduce((n, l) => n + l, 0);

/** First fit of `order` into arenas (see planMemory). */
function pack(
  order: readonly number[],
  slot: (v: number) => number,
  overlaps: (a: number, b: number) => boolean,
  apart: ReadonlyMap<number, ReadonlySet<number>>,
  alignment: number,
): { arenas: number[]; placements: Map<number, Placement> } {
  const arenas: { length: number; members: number[] }[] = [];
  const placements = new Map<number, Placement>();
  for (const v of order) {
    const size = slot(v);
    let best: { arena: number; offset: number; growth: number } | undefined;
    arenas.forEach((arena, a) => {
      if (arena.members.some((m) => apart.get(v)!.has(m))) return;
      const busy = arena.members
        .filter((m) => overlaps(v, m))
        .map((m) => ({ start: placements.get(m)!.offset, end: placements.get(m)!.offset + slot(m) }))
        .sort((x, y) => x.start - y.start);
      let offset = 0;
      for (const range of busy) {
        if (offset + size <= range.start) break;
        offset = Math.max(offset, alignUp(range.end, alignment));
      }
      const growth = Math.max(0, offset + size - arena.length);
      if (!best || growth < best.growth) best = { arena: a, offset, growth };
    });
    if (!best) {
      arenas.push({ length: 0, members: [] });
      best = { arena: arenas.length - 1, offset: 0, growth: size };
    }
    const arena = arenas[best.arena];
    arena.members.push(v);
    arena.length = Math.max(arena.length, best.offset + size);
    placements.set(v, { arena: best.arena, offset: best.offset });
  }
  return { arenas: arenas.map((a) => a.length), placements };
}
