// The memory planner: liveness and arena packing on hand-made schedules, the layouts of
// compiled plans checked pair by pair against an independent liveness computation, the
// manifest checks on arena fields, and plans run on the GPU with and without their arenas.
import { readFileSync } from 'node:fs';
import Ajv from 'ajv';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGraph, model } from '../compiler/api';
import { compileGraph, type CompiledPlan } from '../compiler/compile';
import { describePlan } from '../compiler/cli/inspect';
import { writeBundle } from '../compiler/plan/bundle';
import { ARENA_ALIGNMENT, planMemory, slotBytes, type MemoryPlan, type ScheduleEntry } from '../compiler/plan/memory';
import { readBundle } from '../runtime/bundle';
import { PlanError } from '../runtime/errors';
import { loadPlan, openPlan } from '../runtime/session';
import { loadTrainingPlan } from '../runtime/training';
import type { Manifest } from '../schemas/manifest';
import { mnist } from '../examples/mnist/model';
import { releaseSharedDevice, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

const schema = JSON.parse(readFileSync(new URL('../schemas/mnplan.schema.json', import.meta.url), 'utf8'));
const validateSchema = new Ajv({ allErrors: true }).compile(schema);

/** One step: the values read, then the values written. */
const step = (reads: number[], writes: number[]) => ({ reads, writes });
const entry = (name: string, ...steps: ReturnType<typeof step>[]): ScheduleEntry => ({ name, steps });

/** Per value and entry, [first, last] step that binds it: computed here without the planner's code. */
function intervalsOf(schedule: readonly ScheduleEntry[]): Map<number, Map<number, [number, number]>> {
  const out = new Map<number, Map<number, [number, number]>>();
  schedule.forEach((e, entryIndex) =>
    e.steps.forEach((s, i) => {
      for (const v of [...s.reads, ...s.writes]) {
        if (!out.has(v)) out.set(v, new Map());
        const range = out.get(v)!.get(entryIndex);
        out.get(v)!.set(entryIndex, range ? [range[0], i] : [i, i]);
      }
    }),
  );
  return out;
}

/**
 * Every rule a layout must keep, checked by brute force over every pair of planned values:
 * aligned offsets inside their arena; values sharing bytes never live at the same step of
 * one entry; and per dispatch WebGPU's rules: no binding overlaps a writable one, and the
 * arena of a written value holds nothing else the dispatch binds.
 */
function layoutProblems(schedule: readonly ScheduleEntry[], sizes: ReadonlyMap<number, number>, plan: Pick<MemoryPlan, 'alignment' | 'arenas' | 'placements'>): string[] {
  const problems: string[] = [];
  const live = intervalsOf(schedule);
  const range = (v: number) => {
    const p = plan.placements.get(v)!;
    return { arena: p.arena, start: p.offset, end: p.offset + slotBytes(sizes.get(v)!) };
  };
  for (const v of sizes.keys()) {
    const p = plan.placements.get(v);
    if (!p) {
      problems.push(`value ${v} has no placement`);
      continue;
    }
    if (p.offset % plan.alignment !== 0) problems.push(`value ${v} at ${p.offset} is not aligned to ${plan.alignment}`);
    if (range(v).end > plan.arenas[p.arena]) problems.push(`value ${v} ends past arena ${p.arena}`);
  }
  const values = [...sizes.keys()];
  for (const [i, a] of values.entries()) {
    for (const b of values.slice(i + 1)) {
      const [x, y] = [range(a), range(b)];
      if (x.arena !== y.arena || x.end <= y.start || y.end <= x.start) continue;
      for (const [e, [s0, s1]] of live.get(a) ?? []) {
        const other = live.get(b)?.get(e);
        if (other && s0 <= other[1] && other[0] <= s1) problems.push(`values ${a} and ${b} share bytes while both live in entry ${e}`);
      }
    }
  }
  schedule.forEach((e) =>
    e.steps.forEach((s, i) => {
      const bound = [...s.reads.map((v) => ({ v, write: false })), ...s.writes.map((v) => ({ v, write: true }))].filter((b) => sizes.has(b.v));
      for (const [j, p] of bound.entries()) {
        for (const q of bound.slice(j + 1)) {
          if (!p.write && !q.write) continue;
          const [x, y] = [range(p.v), range(q.v)];
          if (x.arena !== y.arena) continue;
          problems.push(`step ${i} of "${e.name}" binds arena ${x.arena} writable (value ${p.write ? p.v : q.v}) and again (value ${p.write ? q.v : p.v})`);
          if (x.start < y.end && y.start < x.end) problems.push(`step ${i} of "${e.name}": values ${p.v} and ${q.v} overlap and one is written`);
        }
      }
    }),
  );
  return problems;
}

describe('planMemory on hand-made schedules', () => {
  it('lets values with disjoint lifetimes share bytes, and keeps a read and a write of one step apart', () => {
    // 1 → 2 → 3 → 4, each 1000 bytes: 1 and 3 never live together, nor 2 and 4
    const schedule = [entry('run', step([], [1]), step([1], [2]), step([2], [3]), step([3], [4]))];
    const sizes = new Map([1, 2, 3, 4].map((v) => [v, 1000]));
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    expect(plan.totalIntermediateBytes).toBe(4000);
    expect(plan.peakLiveBytes).toBe(2000);
    expect(plan.arenaBytes).toBe(2000);
    expect(plan.placements.get(3)).toEqual(plan.placements.get(1));
    expect(plan.placements.get(4)).toEqual(plan.placements.get(2));
    expect(plan.placements.get(1)!.arena).not.toBe(plan.placements.get(2)!.arena);
  });

  it('never overlaps values live at the same time', () => {
    // 1 and 2 are both read by step 2; 3 is read at the end together with 4
    const schedule = [entry('run', step([], [1]), step([], [2]), step([1, 2], [3]), step([], [4]), step([3, 4], [5]))];
    const sizes = new Map([[1, 400], [2, 300], [3, 200], [4, 100], [5, 50]]);
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    const [p1, p2] = [plan.placements.get(1)!, plan.placements.get(2)!];
    if (p1.arena === p2.arena) expect(p1.offset + 400 <= p2.offset || p2.offset + 300 <= p1.offset).toBe(true);
    expect(plan.peakLiveBytes).toBe(900); // step 2: 400 + 300 + 200
    expect(plan.arenaBytes).toBeGreaterThanOrEqual(plan.peakLiveBytes);
  });

  it('grows no arena past maxArenaBytes: values live together that would open another', () => {
    // 1..4 (1024 bytes each) all live until step 4 reads them; 5 is written there
    const schedule = [entry('run', step([], [1]), step([], [2]), step([], [3]), step([], [4]), step([1, 2, 3, 4], [5]))];
    const sizes = new Map([1, 2, 3, 4, 5].map((v) => [v, 1024]));
    expect(planMemory(schedule, sizes).arenas).toEqual([4096, 1024]);
    const capped = planMemory(schedule, sizes, { maxArenaBytes: 2048 });
    expect(layoutProblems(schedule, sizes, capped)).toEqual([]);
    expect(capped.arenas).toEqual([2048, 2048, 1024]);
  });

  it('aligns offsets and rounds sizes up to 4 bytes', () => {
    // 1 and 2 live together in one arena (3 reads both and is written elsewhere)
    const schedule = [entry('run', step([], [1]), step([], [2]), step([1, 2], [3]))];
    const sizes = new Map([[1, 6], [2, 10], [3, 1]]);
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    expect(plan.alignment).toBe(ARENA_ALIGNMENT);
    expect(plan.totalIntermediateBytes).toBe(8 + 12 + 4);
    const [p1, p2, p3] = [1, 2, 3].map((v) => plan.placements.get(v)!);
    expect(p1.arena).toBe(p2.arena);
    expect(p3.arena).not.toBe(p1.arena);
    expect(p2.offset).toBe(0); // the larger value goes first
    expect(p1.offset).toBe(256);
    expect(plan.arenas[p1.arena]).toBe(256 + 8);
    expect(plan.arenas[p3.arena]).toBe(4);
    // another alignment is honoured too
    const tight = planMemory(schedule, sizes, { alignment: 16 });
    expect(layoutProblems(schedule, sizes, tight)).toEqual([]);
    expect(tight.arenas[tight.placements.get(1)!.arena]).toBe(16 + 8);
  });

  it("keeps WebGPU's per-dispatch rules: a written value's arena holds nothing else of its dispatch", () => {
    // z = x + f(x): x, f(x) and z are bound together by the last step, so three arenas
    const schedule = [entry('run', step([0], [1]), step([1], [2]), step([1, 2], [3]), step([3], [4]))];
    const sizes = new Map([[1, 64], [2, 64], [3, 64], [4, 64]]);
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    expect(new Set([1, 2, 3].map((v) => plan.placements.get(v)!.arena)).size).toBe(3);
    // the checker itself notices a layout that breaks the rules
    const shared: MemoryPlan = { ...plan, placements: new Map([...plan.placements].map(([v, p]) => [v, { arena: 0, offset: p.offset }])) };
    expect(layoutProblems(schedule, sizes, shared).some((p) => p.includes('writable'))).toBe(true);
    const overlapping: MemoryPlan = { ...plan, arenas: [64], placements: new Map([...sizes.keys()].map((v) => [v, { arena: 0, offset: 0 }])) };
    expect(layoutProblems(schedule, sizes, overlapping).some((p) => p.includes('overlap'))).toBe(true);
    expect(layoutProblems(schedule, sizes, overlapping).some((p) => p.includes('share bytes'))).toBe(true);
  });

  it('a value read twice by one dispatch stays a plain read', () => {
    const schedule = [entry('run', step([], [1]), step([1, 1], [2]), step([2, 2], [3]))];
    const sizes = new Map([[1, 100], [2, 100], [3, 100]]);
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    expect(plan.arenaBytes).toBe(200); // 1 and 3 share
  });

  it('lets values of different entries share, and checks a shared value in each entry', () => {
    // 'run' and 'train' never run at once; 5 occurs in both, overlapping 1 only in 'train'
    const schedule = [
      entry('run', step([], [1]), step([1], [2]), step([2], [5])),
      entry('train', step([], [5]), step([5], [3]), step([3, 5], [1]), step([1], [4])),
    ];
    const sizes = new Map([[1, 512], [2, 512], [3, 512], [4, 512], [5, 512]]);
    const plan = planMemory(schedule, sizes);
    expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
    expect(plan.peakLiveBytes).toBe(3 * 512); // 'train' step 2: 3, 5 and 1
    expect(plan.arenaBytes).toBeLessThan(plan.totalIntermediateBytes);
    // 2 (only in 'run') may take the bytes of 3 or 4 (only in 'train')
    const sameBytes = (a: number, b: number) => JSON.stringify(plan.placements.get(a)) === JSON.stringify(plan.placements.get(b));
    expect(sameBytes(2, 3) || sameBytes(2, 4) || sameBytes(2, 5) || sameBytes(2, 1)).toBe(true);
  });

  it('refuses a schedule that reads an intermediate before writing it', () => {
    const schedule = [entry('run', step([1], [2]), step([], [1]))];
    expect(() => planMemory(schedule, new Map([[1, 4], [2, 4]]))).toThrow(/value 1 is read at step 0 of entry "run" before/);
  });

  it('handles an empty plan', () => {
    const plan = planMemory([entry('run')], new Map());
    expect(plan).toMatchObject({ arenas: [], arenaBytes: 0, peakLiveBytes: 0, totalIntermediateBytes: 0 });
  });
});

/** The planner's input rebuilt from a manifest, independently of scheduleOf. */
function manifestSchedule(manifest: Manifest): { schedule: ScheduleEntry[]; sizes: Map<number, number>; plan: MemoryPlan } {
  const schedule = Object.entries(manifest.entryPoints).map(([name, e]) =>
    entry(
      name,
      ...e.dispatches.map((d) => {
        const bindings = manifest.kernels[d.kernel].bindings;
        return step(
          d.buffers.filter((_, j) => bindings[j].access === 'read'),
          d.buffers.filter((_, j) => bindings[j].access === 'read_write'),
        );
      }),
    ),
  );
  const arena = manifest.buffers.filter((b) => b.arena);
  const sizes = new Map(arena.map((b) => [b.id, b.byteLength]));
  const placements = new Map(arena.map((b) => [b.id, { arena: b.arena!.index, offset: b.arena!.offset }]));
  const lengths = manifest.arenas?.byteLengths ?? [];
  return {
    schedule,
    sizes,
    plan: { alignment: manifest.arenas?.alignment ?? 0, arenas: lengths, arenaBytes: lengths.reduce((n, l) => n + l, 0), placements, peakLiveBytes: 0, totalIntermediateBytes: 0 },
  };
}

/** A deeper MLP with residual blocks: 64 → 6 × (256, tanh, + skip) → 10, trained with SGD. */
const deep = model(
  (g) => {
    const x = g.input('x', [16, 64]);
    const labels = g.input('labels', [16], 'i32');
    let h = g.relu(g.biasAdd(g.matmul(x, g.parameter('w_in', [64, 256])), g.parameter('b_in', [256])));
    for (let i = 0; i < 6; i++) {
      const f = g.tanh(g.biasAdd(g.matmul(h, g.parameter(`w${i}`, [256, 256])), g.parameter(`b${i}`, [256])));
      h = g.add(h, f);
    }
    const logits = g.biasAdd(g.matmul(h, g.parameter('w_out', [256, 10])), g.parameter('b_out', [10]));
    return { logits, loss: g.crossEntropy(logits, labels) };
  },
  { train: { loss: 'loss', optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.5 } } },
);

describe('the memory plans of compiled models', () => {
  const compiled = new Map<string, Promise<CompiledPlan>>();
  const compile = (name: 'mnist' | 'deep') => {
    if (!compiled.has(name)) {
      const definition = name === 'mnist' ? mnist : deep;
      // unoptimized: one kernel per op gives the planner the most values and the plans these checks were written for
      compiled.set(name, compileGraph(buildGraph(name, definition), { training: definition.train, optimize: false }));
    }
    return compiled.get(name)!;
  };

  for (const name of ['mnist', 'deep'] as const) {
    it(`${name}: arenas smaller than the sum of intermediates, every pair checked`, async () => {
      const { manifest } = await compile(name);
      const intermediates = manifest.buffers.filter((b) => b.role === 'intermediate');
      expect(intermediates.length).toBeGreaterThan(0);
      expect(intermediates.every((b) => b.arena)).toBe(true);
      expect(manifest.buffers.filter((b) => b.role !== 'intermediate').every((b) => !b.arena)).toBe(true);
      const { schedule, sizes, plan } = manifestSchedule(manifest);
      expect(layoutProblems(schedule, sizes, plan)).toEqual([]);
      expect(plan.alignment).toBe(256);

      const sum = intermediates.reduce((n, b) => n + slotBytes(b.byteLength), 0);
      const again = planMemory(schedule, sizes);
      expect(again.totalIntermediateBytes).toBe(sum);
      expect(plan.arenaBytes).toBe(again.arenaBytes);
      expect(plan.arenaBytes).toBeLessThan(sum);
      expect(plan.arenaBytes).toBeGreaterThanOrEqual(again.peakLiveBytes);
      expect(manifest.requiredLimits.maxBufferSize).toBe(Math.max(...manifest.buffers.filter((b) => !b.arena).map((b) => slotBytes(b.byteLength)), ...plan.arenas));
      expect(validateSchema(manifest), JSON.stringify(validateSchema.errors)).toBe(true);

      const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
      console.log(
        `${name} training plan: intermediates ${kib(sum)} (${intermediates.length} values), arenas ${kib(plan.arenaBytes)} ` +
          `(${plan.arenas.length}: ${plan.arenas.map(kib).join(', ')}), peak live ${kib(again.peakLiveBytes)}, ${Math.round((100 * plan.arenaBytes) / sum)}% of the sum`,
      );
      expect(describePlan(`${name}.mnplan`, 0, manifest)).toMatch(/\nmemory: intermediates [\d.]+ [KM]iB in \d arenas, [\d.]+ [KM]iB in all \(peak live [\d.]+ [KM]iB; \d+% of the sum\), persistent buffers/);
    });
  }

  it('deep: sharing saves most of the intermediates (the residual adds need three arenas)', async () => {
    const { manifest } = await compile('deep');
    const { plan } = manifestSchedule(manifest);
    const sum = manifest.buffers.filter((b) => b.role === 'intermediate').reduce((n, b) => n + slotBytes(b.byteLength), 0);
    expect(plan.arenas.length).toBeGreaterThanOrEqual(3);
    expect(plan.arenaBytes).toBeLessThan(0.75 * sum);
  });

  describe('on the GPU', () => {
    /** The same plan re-written without arenas: what a reader that ignores them would run. */
    async function withoutArenas(bytes: Uint8Array): Promise<Uint8Array> {
      return rewrite(bytes, (m) => {
        delete m.arenas;
        for (const b of m.buffers) delete b.arena;
      });
    }

    it('a plan runs to the same bits with its arenas and without them (inference and training)', async () => {
      const { device } = await sharedDevice();
      const { bundle } = await compile('deep');
      const x = Float32Array.from({ length: 16 * 64 }, (_, i) => Math.sin(i * 0.37));
      const labels = Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 10);
      const results: { logits: Float32Array; losses: number[]; state: Uint8Array }[] = [];
      for (const bytes of [bundle, await withoutArenas(bundle)]) {
        const session = await loadTrainingPlan(bytes, device);
        const losses: number[] = [];
        for (let k = 0; k < 4; k++) losses.push(await session.step({ x, labels }));
        const { logits } = await session.run({ x });
        results.push({ logits, losses, state: await session.exportState() });
        session.destroy();
      }
      const [arena, separate] = results;
      expect(arena.losses[3]).toBeLessThan(arena.losses[0]);
      expect(arena.losses).toEqual(separate.losses);
      expect(arena.logits).toEqual(separate.logits);
      expect(Buffer.compare(arena.state, separate.state)).toBe(0);
    });

    it('readBuffers and writeBuffer address an arena-resident buffer by its range', async () => {
      const { device } = await sharedDevice();
      const { bundle, manifest } = await compile('mnist');
      const session = await openPlan(bundle, device);
      try {
        // two intermediates sharing an arena at different offsets
        const inArena = manifest.buffers.filter((b) => b.arena);
        const a = inArena.find((v) => v.arena!.index === 0 && v.byteLength >= 128)!;
        const b = inArena.find((v) => v.arena!.index === 0 && v.byteLength >= 128 && v.arena!.offset >= a.arena!.offset + slotBytes(a.byteLength))!;
        expect(b).toBeDefined();
        const bytesA = Uint8Array.from({ length: a.byteLength }, (_, i) => i % 251);
        const bytesB = Uint8Array.from({ length: b.byteLength }, (_, i) => (i * 3) % 253);
        session.writeBuffer(a.id, bytesA);
        session.writeBuffer(b.id, bytesB);
        const read = await session.readBuffers([a.id, b.id]);
        expect(read.get(a.id)).toEqual(bytesA);
        expect(read.get(b.id)).toEqual(bytesB);
        expect(() => session.writeBuffer(b.id, new Uint8Array(b.byteLength + 4))).toThrow(/do not fit buffer/);
      } finally {
        session.destroy();
      }
    });

    it('refuses a device whose limits the arenas exceed, naming the arena', async () => {
      const { device } = await sharedDevice();
      const { bundle, manifest } = await compile('mnist');
      const largest = Math.max(...manifest.arenas!.byteLengths);
      const small = withLimits(device, { maxBufferSize: largest - 4 });
      const error = await loadPlan(bundle, small).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PlanError);
      expect((error as PlanError).kind).toBe('device-limits');
      expect((error as PlanError).message).toMatch(/maxBufferSize >= \d+ \(arena \d, shared by intermediates/);
      // a device that needs coarser offsets than the plan's alignment
      const coarse = withLimits(device, { minStorageBufferOffsetAlignment: 512 });
      const misaligned = await loadPlan(bundle, coarse).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((misaligned as PlanError).kind).toBe('device-limits');
      expect((misaligned as PlanError).message).toContain('minStorageBufferOffsetAlignment');
      // and the real device accepts 256-aligned offsets, whatever alignment it reports
      expect(256 % device.limits.minStorageBufferOffsetAlignment).toBe(0);
    });
  });

  it('the manifest check refuses arena fields that do not add up', async () => {
    const { bundle, manifest } = await compile('mnist');
    const slot = manifest.buffers.find((b) => b.arena && b.arena.offset > 0)!;
    const parameter = manifest.buffers.find((b) => b.role === 'parameter')!;
    const output = manifest.buffers.find((b) => b.role === 'output')!;
    // a dispatch writing an arena value and reading another of the same arena
    const run = manifest.entryPoints.run;
    const write = run.dispatches.findIndex((d) => d.buffers.slice(0, -1).some((id) => manifest.buffers[id].arena) && manifest.buffers[d.buffers.at(-1)!].arena);
    const cases: [string, (m: Manifest) => void, RegExp][] = [
      ['a misaligned offset', (m) => (m.buffers[slot.id].arena!.offset += 4), /arena\.offset \(\d+\) is not a multiple of the arena alignment 256/],
      ['a slot past its arena', (m) => (m.buffers[slot.id].arena!.offset = m.arenas!.byteLengths[slot.arena!.index]), /lies outside arena/],
      ['an arena index out of range', (m) => (m.buffers[slot.id].arena!.index = 9), /arena\.index \(9\) is out of range/],
      ['an arena slot without arenas', (m) => delete m.arenas, /has no arenas/],
      ['a parameter in an arena', (m) => (m.buffers[parameter.id].arena = { index: 0, offset: 0 }), /only intermediates may live there/],
      ['an odd alignment', (m) => (m.arenas!.alignment = 96), /power of two/],
      ['an arena length not a multiple of 4', (m) => (m.arenas!.byteLengths[0] += 2), /multiple of 4/],
      ['an output in an arena', (m) => {
        m.buffers[output.id].role = 'intermediate';
        m.buffers[output.id].arena = { index: 0, offset: 0 };
      }, /lives in an arena; entry outputs need buffers of their own/],
      ['a written arena bound twice in one dispatch', (m) => {
        const d = m.entryPoints.run.dispatches[write];
        for (const id of d.buffers.slice(0, -1)) if (m.buffers[id].arena) m.buffers[id].arena = { ...m.buffers[d.buffers.at(-1)!].arena! };
      }, /binds arena \d twice with write access/],
    ];
    expect(write).toBeGreaterThanOrEqual(0);
    for (const [what, edit, message] of cases) {
      const error = await readBundle(await rewrite(bundle, edit)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, what).toBeInstanceOf(PlanError);
      expect((error as PlanError).kind, what).toBe('bad-manifest');
      expect((error as PlanError).message, what).toMatch(message);
    }
    await expect(readBundle(await rewrite(bundle, () => {}))).resolves.toBeDefined();
  });
});

/** The device with some limits replaced: enough for the load-time checks, which come first. */
function withLimits(device: GPUDevice, changed: Record<string, number>): GPUDevice {
  const limits = new Proxy(device.limits, { get: (target, key) => (typeof key === 'string' && key in changed ? changed[key] : Reflect.get(target, key)) });
  return { limits, features: device.features } as unknown as GPUDevice;
}

/** Re-writes a bundle around an edited copy of its manifest, keeping every section. */
async function rewrite(bytes: Uint8Array, edit: (m: Manifest) => void): Promise<Uint8Array> {
  const bundle = await readBundle(bytes);
  const { sections, ...manifest } = structuredClone(bundle.manifest);
  edit(manifest as Manifest);
  return writeBundle(manifest, sections.map((s) => ({ name: s.name, bytes: bundle.section(s.name) })));
}
