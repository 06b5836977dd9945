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
 * neither order wins on every graph, and a pass is cheap. No arena grows past
 * `maxArenaBytes` (the target's maxBufferSize) unless one value alone is larger.
 *
 * The runtime relies on a kernel writing every element of its output, since an arena slot
 * starts with another value's bytes rather than zeros.
 */
export function planMemory(
  schedule: readonly ScheduleEntry[],
  sizes: ReadonlyMap<number, number>,
  options: { alignment?: number; maxArenaBytes?: number } = {},
): MemoryPlan {
  const alignment = options.alignment ?? ARENA_ALIGNMENT;
  const maxArenaBytes = options.maxArenaBytes ?? Infinity;
  const intervals = liveIntervals(schedule, sizes);
  const slot = (v: number) => slotBytes(sizes.get(v)!);

  // the packer works on dense indices into `values`, with typed arrays: it compares every
  // pair of values that may share an arena (millions for a 30-layer training step)
  const values = [...sizes.keys()];
  const index = new Map(values.map((v, i) => [v, i]));
  const live = liveTable(values, schedule.length, intervals);
  // pairs that may not share an arena: a written value and every other value of its dispatch
  const apart: Set<number>[] = values.map(() => new Set<number>());
  for (const entry of schedule) {
    for (const step of entry.steps) {
      const bound = [...step.reads, ...step.writes].filter((v) => sizes.has(v)).map((v) => index.get(v)!);
      for (const w of step.writes) {
        if (!sizes.has(w)) continue;
        const i = index.get(w)!;
        for (const j of bound) {
          if (j === i) continue;
          apart[i].add(j);
          apart[j].add(i);
        }
      }
    }
  }
  const slots = Float64Array.from(values, (v) => slot(v));

  const firstUse = (v: number) => {
    const live = intervals.get(v)![0];
    return live ? live.entry * 1e9 + live.first : Infinity;
  };
  const lifetime = (v: number) => intervals.get(v)!.reduce((n, live) => n + live.last - live.first + 1, 0);
  const byKey = (key: (v: number) => number) => [...sizes.keys()].sort((a, b) => key(b) - key(a) || firstUse(a) - firstUse(b) || a - b);
  const layouts = [byKey(slot), byKey((v) => slot(v) * lifetime(v))].map((order) =>
    pack(
      order.map((v) => index.get(v)!),
      { slots, live, apart: apart.map((set) => [...set]) },
      alignment,
      maxArenaBytes,
    ),
  );
  const best = layouts.reduce((best, layout) => (total(layout.arenas) < total(best.arenas) ? layout : best));
  const placements = new Map<number, Placement>(values.map((v, i) => [v, { arena: best.arena[i], offset: best.offset[i] }]));
  return {
    alignment,
    arenas: best.arenas,
    arenaBytes: total(best.arenas),
    placements,
    peakLiveBytes: peakLiveBytes(schedule, sizes, intervals),
    totalIntermediateBytes: [...sizes.keys()].reduce((n, v) => n + slot(v), 0),
  };
}

/** Each value's interval per entry, by dense index: first[i * entries + e] is -1 where value i does not occur in entry e. */
interface LiveTable {
  entries: number;
  first: Int32Array;
  last: Int32Array;
}

function liveTable(values: readonly number[], entries: number, intervals: ReadonlyMap<number, readonly LiveInterval[]>): LiveTable {
  const first = new Int32Array(values.length * entries).fill(-1);
  const last = new Int32Array(values.length * entries).fill(-1);
  for (const [i, v] of values.entries()) {
    for (const live of intervals.get(v)!) {
      first[i * entries + live.entry] = live.first;
      last[i * entries + live.entry] = live.last;
    }
  }
  return { entries, first, last };
}

/** Whether values i and j are live at one step of some entry. */
function overlaps({ entries, first, last }: LiveTable, i: number, j: number): boolean {
  for (let e = 0, a = i * entries, b = j * entries; e < entries; e++, a++, b++) {
    if (first[a] >= 0 && first[b] >= 0 && first[a] <= last[b] && first[b] <= last[a]) return true;
  }
  return false;
}

const total = (lengths: readonly number[]) => lengths.reduce((n, l) => n + l, 0);

/** First fit of `order` (dense indices) into arenas (see planMemory): each value's arena and offset, and the arenas' lengths. */
function pack(
  order: readonly number[],
  { slots, live, apart }: { slots: Float64Array; live: LiveTable; apart: readonly (readonly number[])[] },
  alignment: number,
  maxArenaBytes: number,
): { arenas: number[]; arena: Int32Array; offset: Float64Array } {
  const arenas: { length: number; members: number[] }[] = [];
  const arenaOf = new Int32Array(slots.length).fill(-1);
  const offsetOf = new Float64Array(slots.length);
  const busy: number[] = [];
  const byStart = (a: number, b: number) => offsetOf[a] - offsetOf[b];
  for (const v of order) {
    const size = slots[v];
    let best: { arena: number; offset: number; growth: number } | undefined;
    for (const [a, arena] of arenas.entries()) {
      if (apart[v].some((m) => arenaOf[m] === a)) continue;
      // the members live at the same time as v, by offset
      busy.length = 0;
      for (const m of arena.members) if (overlaps(live, v, m)) busy.push(m);
      busy.sort(byStart);
      let offset = 0;
      for (const m of busy) {
        if (offset + size <= offsetOf[m]) break;
        offset = Math.max(offset, alignUp(offsetOf[m] + slots[m], alignment));
      }
      // no arena grows past the target's largest buffer: a value that would push it there opens another
      if (offset + size > maxArenaBytes) continue;
      const growth = Math.max(0, offset + size - arena.length);
      if (!best || growth < best.growth) best = { arena: a, offset, growth };
    }
    if (!best) {
      arenas.push({ length: 0, members: [] });
      best = { arena: arenas.length - 1, offset: 0, growth: size };
    }
    const arena = arenas[best.arena];
    arena.members.push(v);
    arena.length = Math.max(arena.length, best.offset + size);
    arenaOf[v] = best.arena;
    offsetOf[v] = best.offset;
  }
  return { arenas: arenas.map((a) => a.length), arena: arenaOf, offset: offsetOf };
}
