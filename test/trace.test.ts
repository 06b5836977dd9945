// Profiling: the trace formats as pure functions of hand-made records; on Dawn/llvmpipe (no
// timestamp-query) the errors that say so, from the runtime, the Node host and the CLI; and in
// headless Chromium (SwiftShader offers timestamp-query) real traced runs of a hand-written
// plan, one of them longer than one query set, whose outputs equal the untraced runs'.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { traceFileSink } from '../runtime/hosts/node';
import { formatKernelSummary, isPlanError, kernelSummary, loadPlan, requestNodeDevice, toChromeTrace, type TraceRecord } from '../runtime/index';
import { attachTraceSink, MAX_QUERIES_PER_SET } from '../runtime/trace';
import { cliRunner, diagnostics } from './cli-runner';
import { releaseSharedDevice, sharedDevice } from './gpu';
import { handPlan, N } from './hand-plan';
import { browserRuntime, CHROMIUM, launchChromium, runInPage, serveFiles, type ServedFile } from './chromium';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mnc-trace-'));

afterAll(async () => {
  await releaseSharedDevice();
  rmSync(work, { recursive: true, force: true });
});

// --- pure functions ---------------------------------------------------------------------------

function record(over: Partial<TraceRecord>): TraceRecord {
  return {
    plan: 'p',
    entry: 'run',
    run: 1,
    index: 0,
    kernel: 'k',
    ops: ['matmul', 'biasAdd', 'relu'],
    node: 'h',
    workgroups: [4, 2, 1],
    bindings: [
      { name: 'x', dtype: 'f32', shape: [32, 784], access: 'read' },
      { name: 'h', dtype: 'f32', shape: [32, 128], access: 'read_write' },
    ],
    startNs: 0,
    endNs: 0,
    ...over,
  };
}

// two runs of a 3-dispatch entry on a GPU clock far from zero, and one run of another plan
const T0 = 5_000_000_000;
const RECORDS: TraceRecord[] = [
  record({ index: 0, kernel: 'mm', startNs: T0, endNs: T0 + 10_000 }),
  record({ index: 1, kernel: 'softmax', ops: ['softmax'], node: 'p', startNs: T0 + 12_000, endNs: T0 + 15_000 }),
  record({ index: 2, kernel: 'mm', node: 'h2', startNs: T0 + 16_000, endNs: T0 + 26_000 }),
  record({ run: 2, index: 0, kernel: 'mm', startNs: T0 + 100_000, endNs: T0 + 120_000 }),
  record({ run: 2, index: 1, kernel: 'softmax', ops: ['softmax'], node: 'p', startNs: T0 + 121_000, endNs: T0 + 124_000 }),
  record({ run: 2, index: 2, kernel: 'mm', node: 'h2', startNs: T0 + 125_000, endNs: T0 + 135_000 }),
  record({ plan: 'q', entry: 'train_step', index: 0, kernel: 'adam', ops: ['adam'], startNs: T0 + 200_000, endNs: T0 + 202_000 }),
];

describe('toChromeTrace', () => {
  const trace = toChromeTrace(RECORDS);
  const slices = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'dispatch');

  it('has one complete ("X") slice per dispatch, named after the kernel, in µs from the earliest record', () => {
    expect(slices.map((e) => e.name)).toEqual(RECORDS.map((r) => r.kernel));
    expect(slices.map((e) => e.ts)).toEqual([0, 12, 16, 100, 121, 125, 200]);
    expect(slices.map((e) => e.dur)).toEqual([10, 3, 10, 20, 3, 10, 2]);
    expect(slices[0].args).toEqual({ ops: 'matmul + biasAdd + relu', node: 'h', shapes: ['x: f32[32, 784]', 'h: f32[32, 128] (written)'], workgroups: '4x2x1', dispatch: 0, run: 1 });
  });

  it('puts each plan in a process and each entry point in a thread, named by metadata events', () => {
    const names = trace.traceEvents.filter((e) => e.ph === 'M').map((e) => [e.name, e.pid, e.tid, (e.args as { name: string }).name]);
    expect(names).toEqual([
      ['process_name', 1, 0, 'p'],
      ['thread_name', 1, 1, 'run'],
      ['process_name', 2, 0, 'q'],
      ['thread_name', 2, 2, 'train_step'],
    ]);
    expect(slices.map((e) => [e.pid, e.tid])).toEqual([...Array(6).fill([1, 1]), [2, 2]]);
  });

  it('wraps each traced run in a slice that encloses its dispatches', () => {
    const runs = trace.traceEvents.filter((e) => e.cat === 'run');
    expect(runs.map((e) => [e.name, e.ts, e.dur, e.tid])).toEqual([
      ['run #1', 0, 26, 1],
      ['run #2', 100, 35, 1],
      ['train_step #1', 200, 2, 2],
    ]);
  });

  it('is JSON that round-trips, with only the fields the Trace Event Format knows', () => {
    const parsed = JSON.parse(JSON.stringify(trace));
    expect(parsed).toEqual(trace);
    for (const e of parsed.traceEvents) {
      expect(Object.keys(e).every((k) => ['name', 'cat', 'ph', 'ts', 'dur', 'pid', 'tid', 'args'].includes(k))).toBe(true);
      if (e.ph === 'X') expect(typeof e.ts === 'number' && e.dur >= 0).toBe(true);
    }
  });

  it('clamps an end before its start to a zero-length slice, and takes no records', () => {
    const [slice] = toChromeTrace([record({ startNs: 10, endNs: 5 })]).traceEvents.filter((e) => e.cat === 'dispatch');
    expect(slice.dur).toBe(0);
    expect(toChromeTrace([]).traceEvents).toEqual([]);
  });
});

describe('kernelSummary', () => {
  it('sums calls and time per kernel, largest total first, with means and shares', () => {
    const rows = kernelSummary(RECORDS);
    expect(rows.map((r) => [r.kernel, r.calls, r.totalUs, r.meanUs])).toEqual([
      ['mm', 4, 50, 12.5],
      ['softmax', 2, 6, 3],
      ['adam', 1, 2, 2],
    ]);
    expect(rows.map((r) => r.share)).toEqual([50 / 58, 6 / 58, 2 / 58]);
    expect(rows[0].ops).toEqual(['matmul', 'biasAdd', 'relu']);
  });

  it('formats as a table with a total line, folding rows past the limit into one', () => {
    const text = formatKernelSummary(kernelSummary(RECORDS), { limit: 2 });
    const lines = text.split('\n');
    expect(lines[0].split(/\s{2,}/)).toEqual(['kernel', 'ops', 'calls', 'total', 'mean', '%']);
    expect(lines[1].split(/\s{2,}/)).toEqual(['mm', 'matmul+biasAdd+relu', '4', '50.0 µs', '12.5 µs', '86.2']);
    expect(lines[3].split(/\s{2,}/)).toEqual(['(1 more kernels)', '1', '2.0 µs', '2.0 µs', '3.4']);
    expect(lines[4].split(/\s{2,}/)).toEqual(['total', '7', '58.0 µs', '8.3 µs', '100.0']);
  });
});

describe('MNRT_TRACE file sink', () => {
  it('rewrites the whole file with every record added so far, shared per path', () => {
    const file = join(work, 'sink.json');
    traceFileSink(file).add(RECORDS.slice(0, 3));
    expect(JSON.parse(readFileSync(file, 'utf8')).traceEvents.filter((e: { cat?: string }) => e.cat === 'dispatch')).toHaveLength(3);
    traceFileSink(file).add(RECORDS.slice(3));
    const trace = JSON.parse(readFileSync(file, 'utf8'));
    expect(trace).toEqual(JSON.parse(JSON.stringify(toChromeTrace(RECORDS))));
  });
});

// --- Dawn on llvmpipe: no timestamp-query ---------------------------------------------------

const resolved = (): never => expect.fail('expected a rejection');

describe('tracing on a device without timestamp-query (Dawn OpenGL on llvmpipe)', () => {
  const expectMissingFeature = (error: unknown) => {
    expect(isPlanError(error), String(error)).toBe(true);
    expect((error as { kind: string }).kind).toBe('missing-feature');
    expect((error as Error).message).toContain('"timestamp-query"');
  };

  it('refuses loadPlan({ trace: true }) and turning tracing on, and runs untraced as before', async () => {
    const { device } = await sharedDevice();
    expect(device.features.has('timestamp-query')).toBe(false);
    await loadPlan(handPlan(), device, { trace: true }).then(resolved, expectMissingFeature);
    const session = await loadPlan(handPlan(), device);
    try {
      expect(session.tracing).toBe(false);
      expect(() => (session.tracing = true)).toThrow(/timestamp-query/);
      expect(session.tracing).toBe(false);
      const out = await session.run({ a: new Float32Array(N).fill(1) });
      expect(out.s).toHaveLength(1);
      expect(session.takeTrace()).toEqual([]);
    } finally {
      session.destroy();
    }
  });

  it('makes a device with a trace sink trace by default (here: refuse), unless a session says trace: false', async () => {
    // a device of its own, so the sink does not outlive this test on the shared one
    const gpu = await requestNodeDevice();
    try {
      attachTraceSink(gpu.device, { add: () => expect.fail('nothing was traced') });
      await loadPlan(handPlan(), gpu.device).then(resolved, expectMissingFeature);
      const session = await loadPlan(handPlan(), gpu.device, { trace: false });
      await session.run({ a: new Float32Array(N) });
      session.destroy();
    } finally {
      await gpu.destroy();
    }
  });

  it('refuses MNRT_TRACE (or traceFile) in requestNodeDevice, naming the backend', async () => {
    await requestNodeDevice({ traceFile: join(work, 'never.json') }).then(resolved, (error) => {
      expectMissingFeature(error);
      expect((error as Error).message).toMatch(/^traceFile=.*never\.json asks for a trace, .* the opengl backend's adapter/);
    });
    const saved = process.env.MNRT_TRACE;
    process.env.MNRT_TRACE = join(work, 'env.json');
    try {
      await requestNodeDevice().then(resolved, (error) => {
        expectMissingFeature(error);
        expect((error as Error).message).toMatch(/^MNRT_TRACE=/);
      });
    } finally {
      if (saved === undefined) delete process.env.MNRT_TRACE;
      else process.env.MNRT_TRACE = saved;
    }
    expect(existsSync(join(work, 'env.json'))).toBe(false);
  });

  it('mnc run --trace and mnc train --trace fail in one line', async () => {
    const cli = join(root, 'dist', 'test-trace', 'mnc.mjs');
    await build({ absWorkingDir: root, entryPoints: ['compiler/cli/mnc.ts'], outfile: cli, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' });
    const plan = join(work, 'tiny.mnplan');
    execFileSync(process.execPath, [cli, 'compile', 'fixtures/models/tiny-train.ts', '-o', plan], { cwd: root, stdio: 'pipe' });
    const mnc = cliRunner(cli, root);
    const ran = mnc('run', plan, '--random', '--trace', join(work, 'run.json'));
    expect(ran.status).toBe(1);
    expect(diagnostics(ran)).toEqual([expect.stringMatching(/^\S*tiny\.mnplan: error: tracing plan "tinyTrain" needs the WebGPU feature "timestamp-query"/)]);
    const trained = mnc('train', plan, '--trace', join(work, 'train.json'), '--trace-steps', '0');
    expect(trained.status).toBe(1);
    expect(diagnostics(trained)).toEqual(["error: --trace-steps expects a positive integer; got '0'"]);
    expect(existsSync(join(work, 'run.json'))).toBe(false);
  });
});

// --- Chromium (SwiftShader): real timestamps --------------------------------------------------


/** The hand plan's three dispatches repeated until 'long' needs more than one query set. */
const REPEATS = Math.ceil(MAX_QUERIES_PER_SET / 6) + 20;

function tracePlan(): Uint8Array {
  return handPlan(({ manifest }) => {
    const run = manifest.entryPoints.run;
    manifest.entryPoints.long = { ...run, dispatches: Array.from({ length: REPEATS }, () => run.dispatches).flat() };
  });
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>mnrt trace test</title>
<script type="module">
  import { requestBrowserDevice, loadPlan, toChromeTrace } from './mnrt.browser.mjs';
  window.tracePlan = async () => {
    const plan = new Uint8Array(await fetch('./plan.mnplan').then((r) => r.arrayBuffer()));
    const gpu = await requestBrowserDevice();
    const features = [...gpu.device.features].sort();
    const a = Float32Array.from({ length: ${N} }, (_, i) => Math.sin(i * 0.37) * 3);
    const plain = await loadPlan(plan, gpu.device);
    const traced = await loadPlan(plan, gpu.device, { trace: true, label: 'traced' });
    try {
      const expected = { run: await plain.run({ a }), long: await plain.run({ a }, 'long') };
      const got = { run: await traced.run({ a }), long: await traced.run({ a }, 'long') };
      traced.tracing = false;
      const untracedAfter = await traced.run({ a });
      const records = traced.takeTrace();
      const again = traced.takeTrace();
      const same = (x, y) => Object.keys(x).every((k) => x[k].length === y[k].length && x[k].every((v, i) => Object.is(v, y[k][i])));
      return {
        features,
        tracingAfter: traced.tracing,
        outputsEqual: same(expected.run, got.run) && same(expected.long, got.long) && same(expected.run, untracedAfter),
        records,
        takenTwice: again.length,
        slices: toChromeTrace(records).traceEvents.filter((e) => e.ph === 'X' && e.cat === 'dispatch').length,
      };
    } finally {
      plain.destroy();
      traced.destroy();
      gpu.destroy();
    }
  };
</script>
`;

interface PageResult {
  features: string[];
  tracingAfter: boolean;
  outputsEqual: boolean;
  records: TraceRecord[];
  takenTwice: number;
  slices: number;
}

let server: Server | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

describe('tracing in headless Chromium (WebGPU on SwiftShader, which has timestamp-query)', () => {
  it('times every dispatch, across query sets, and leaves the outputs as the untraced runs give them', { timeout: 90_000 }, async () => {
    if (!existsSync(CHROMIUM)) expect.fail(`Chromium not found at ${CHROMIUM}: run \`bash scripts/setup.sh\`, or set MNC_CHROMIUM to a Chromium binary`);
    const runtimeText = await browserRuntime();
    const files: Record<string, ServedFile> = {
      '/': { type: 'text/html; charset=utf-8', body: PAGE },
      '/mnrt.browser.mjs': { type: 'text/javascript; charset=utf-8', body: runtimeText },
      '/plan.mnplan': { type: 'application/octet-stream', body: tracePlan() },
    };
    const served = await serveFiles(files);
    server = served.server;
    browser = await launchChromium();
    const result = await runInPage<PageResult>(browser, served.url, 'tracePlan');

    expect(result.features).toContain('timestamp-query');
    expect(result.outputsEqual, 'traced outputs equal untraced ones').toBe(true);
    expect(result.tracingAfter).toBe(false);
    expect(result.takenTwice).toBe(0);

    const { records } = result;
    const run = records.filter((r) => r.entry === 'run');
    const long = records.filter((r) => r.entry === 'long');
    // the third run, after tracing was turned off, left no records
    expect([run.length, long.length, records.length]).toEqual([3, 3 * REPEATS, 3 + 3 * REPEATS]);
    expect(2 * long.length).toBeGreaterThan(MAX_QUERIES_PER_SET);
    expect(result.slices).toBe(records.length);
    expect(run.map((r) => [r.plan, r.run, r.index, r.kernel, r.ops.join('+'), r.node, r.workgroups.join('x')])).toEqual([
      ['traced', 1, 0, 'scale_add', 'mul+add', 't', '2x1x1'],
      ['traced', 1, 1, 'square_offset', 'mul+sub', 'y', '2x1x1'],
      ['traced', 1, 2, 'sum', 'sum', 's', '1x1x1'],
    ]);
    expect(run[0].bindings).toEqual([
      { name: 'a', dtype: 'f32', shape: [N], access: 'read' },
      { name: 'b', dtype: 'f32', shape: [N], access: 'read' },
      { name: 't', dtype: 'f32', shape: [N], access: 'read_write' },
    ]);
    expect(long.every((r, i) => r.run === 2 && r.index === i && r.kernel === run[i % 3].kernel)).toBe(true);
    for (const r of records) {
      expect(Number.isFinite(r.startNs) && Number.isFinite(r.endNs), `dispatch ${r.entry}/${r.index}`).toBe(true);
      expect(r.endNs - r.startNs, `duration of ${r.entry}/${r.index}`).toBeGreaterThanOrEqual(0);
    }
    // passes run in order on one queue: each starts no earlier than the one before it, across query sets
    const starts = long.map((r) => r.startNs);
    expect(starts.every((t, i) => i === 0 || t >= starts[i - 1])).toBe(true);
    expect(long[0].startNs).toBeGreaterThanOrEqual(run[2].startNs);
    const durations = records.map((r) => r.endNs - r.startNs);
    console.log(
      `[trace test] ${records.length} dispatches traced; long run span ${((long[long.length - 1].endNs - long[0].startNs) / 1e6).toFixed(2)} ms; ` +
        `durations (ns): ${[...new Set(durations)].sort((x, y) => x - y).slice(0, 12).join(', ')}…; zero: ${durations.filter((d) => d === 0).length}`,
    );
  });
});
