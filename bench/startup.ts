// Start-up in a browser (issue 22): this runtime against onnxruntime-web (its WebGPU and wasm
// backends) on the same ONNX models, each measurement in a fresh headless Chromium launch.
// The ONNX file is what onnxruntime-web loads; the ONNX frontend compiles the same file into
// the plan this runtime loads, so both sides compute the same function (checked: the first
// outputs must agree). Models: the MLP 784-128-10 (batch 1), four transformer-FFN blocks
// 576→1536→576 (GELU through Erf as torch exports it, residual; `--tokens` rows, default 1, a
// decode step), the small CNN of fixtures/onnx/cnn.onnx (1×3×16×16), and the toy Llama of
// fixtures/models/llama-tiny.ts (seeded random weights, 32000-token vocabulary): its first
// token, the prefill of an 8-token prompt to the next token's logits (this runtime only: the
// model builder's plan, with its KV cache), and `llama-onnx`, the Llama-style decoder of
// fixtures/onnx/architectures.ts at the same toy size (2 layers, hidden 64, 4 query heads over
// 2 key/value heads, 32000-token vocabulary, an untied head) as torch.onnx.export writes it,
// which both engines run: 8 prompt ids to logits [1, 8, 32000], the last row the first token's.
//
//   npx tsx bench/startup.ts [--rounds 3] [--runs 20] [--models mlp,ffn4,cnn,llama,llama-onnx] [--engines mnc,mnc-whole,mnc-wait,ort-webgpu,ort-wasm]
//                            [--tokens 1] [--targets generic,software] [--json out.json]
//
// --targets: the targets the plans are compiled for (default generic,software: the runtime
// picks software's quickly built kernels on SwiftShader; `generic` alone is the plan before).
//
// Engines: `mnc` fetches the plan with fetchPlan (no native translations), `mnc-whole` fetches
// the whole file as before (the "before" of that cut), `mnc-wait` awaits session.ready (every
// pipeline) before the first run, as loadPlan did before runs stopped waiting for the last
// pipeline (the "before" of that change, its session ready then includes the wait), `ort-webgpu` and `ort-wasm` are
// onnxruntime-web's ort.webgpu.min.mjs and ort.wasm.min.mjs (one wasm thread: the page is not
// cross-origin isolated, as most pages are not). Times are from the page's navigation start
// (performance.now()): session ready (runtime imported, device, plan or model fetched and
// loaded), first result (the first run's outputs on the CPU), then the median of `runs`
// further runs. Bytes fetched: what the server sent for the page, JS and wasm gzip-encoded
// (level 9, as a static host would), plans and models as they are. Medians over `rounds`
// launches. Here Chromium's WebGPU is SwiftShader (a CPU): the figures compare start-up work,
// not GPUs.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { chromium, type Page } from 'playwright-core';
import { compileGraph } from '../compiler/compile';
import type { EntrySpec } from '../compiler/api';
import { Graph } from '../compiler/ir/graph';
import { parseTargets } from '../compiler/target/targets';
import { LLAMA_TINY_CONFIG, LLAMA_TINY_OPTIONS } from '../fixtures/models/llama-tiny';
import { llama, llamaEntries } from '../models/llama';
import { importOnnxModel } from '../compiler/frontends/onnx/load';
import { decodeModel } from '../compiler/frontends/onnx/proto';
import { readBundle } from '../runtime/bundle';
import { llamaModel } from '../fixtures/onnx/architectures';
import { encodeModel, floatTensor, model as onnxModel, node, randomValues, uniform, valueInfo } from '../fixtures/onnx/models';
import { CHROMIUM, CHROMIUM_ARGS } from '../test/chromium';

const root = new URL('..', import.meta.url).pathname;
const ORT_DIST = join(root, 'node_modules/onnxruntime-web/dist');
const FLOAT = 1;

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '20' },
    models: { type: 'string', default: 'mlp,ffn4,cnn' },
    engines: { type: 'string', default: 'mnc,mnc-whole,ort-webgpu,ort-wasm' },
    json: { type: 'string' },
    tokens: { type: 'string', default: '1' },
    targets: { type: 'string', default: 'generic,software' },
  },
});

// --- the models -------------------------------------------------------------------------------

interface BenchModel {
  name: string;
  /** absent: this runtime only (the graph is built here) */
  onnx?: Uint8Array;
  graph?: () => { graph: Graph; entries?: EntrySpec };
  /** the float input, random values in [-1, 1) (absent: integer inputs only) */
  input?: { name: string; shape: number[] };
  output: string;
  /** the entry point run, and integer inputs (name → values and shape; int64 for onnxruntime) */
  entry?: string;
  ints?: Record<string, { values: number[]; shape: number[] }>;
  /** where in the output the compared values start (the first token's row of a language model's logits) */
  from?: number;
  /** the shapes the ONNX frontend fixes the graph's symbolic dimensions to */
  shapes?: Record<string, number[]>;
}

function mlp(): BenchModel {
  const next = uniform(11);
  const onnx = encodeModel(
    onnxModel({
      name: 'mlp',
      node: [node('MatMul', ['x', 'w1'], ['h0']), node('Add', ['h0', 'b1'], ['h1']), node('Relu', ['h1'], ['h2']), node('MatMul', ['h2', 'w2'], ['h3']), node('Add', ['h3', 'b2'], ['logits'])],
      initializer: [
        floatTensor('w1', [784, 128], randomValues(784 * 128, 1 / 28, next)),
        floatTensor('b1', [128], randomValues(128, 0.1, next)),
        floatTensor('w2', [128, 10], randomValues(128 * 10, 1 / 11, next)),
        floatTensor('b2', [10], randomValues(10, 0.1, next)),
      ],
      input: [valueInfo('x', FLOAT, [1, 784])],
      output: [valueInfo('logits', FLOAT, [1, 10])],
    }),
  );
  return { name: 'mlp', onnx, input: { name: 'x', shape: [1, 784] }, output: 'logits' };
}

function ffn4(tokens = 16, d = 576, hidden = 1536): BenchModel {
  const next = uniform(12);
  const nodes: object[] = [];
  const initializer: object[] = [];
  const scalar = (name: string, v: number) => initializer.push(floatTensor(name, [], Float32Array.of(v)));
  scalar('sqrt2', Math.SQRT2);
  scalar('one', 1);
  scalar('half', 0.5);
  let x = 'x';
  for (let b = 0; b < 4; b++) {
    const p = (s: string) => `b${b}.${s}`;
    initializer.push(
      floatTensor(p('up.weight'), [d, hidden], randomValues(d * hidden, 1 / Math.sqrt(d), next)),
      floatTensor(p('up.bias'), [hidden], randomValues(hidden, 0.02, next)),
      floatTensor(p('down.weight'), [hidden, d], randomValues(hidden * d, 1 / Math.sqrt(hidden), next)),
      floatTensor(p('down.bias'), [d], randomValues(d, 0.02, next)),
    );
    const y = b === 3 ? 'y' : p('out');
    nodes.push(
      node('MatMul', [x, p('up.weight')], [p('up')]),
      node('Add', [p('up'), p('up.bias')], [p('upb')]),
      // GELU as torch exports it at opset 17: x · 0.5 · (1 + erf(x / √2))
      node('Div', [p('upb'), 'sqrt2'], [p('s')]),
      node('Erf', [p('s')], [p('erf')]),
      node('Add', [p('erf'), 'one'], [p('erf1')]),
      node('Mul', [p('upb'), p('erf1')], [p('g2')]),
      node('Mul', [p('g2'), 'half'], [p('gelu')]),
      node('MatMul', [p('gelu'), p('down.weight')], [p('down')]),
      node('Add', [p('down'), p('down.bias')], [p('downb')]),
      node('Add', [x, p('downb')], [y]),
    );
    x = y;
  }
  const onnx = encodeModel(onnxModel({ name: 'ffn4', node: nodes, initializer, input: [valueInfo('x', FLOAT, [tokens, d])], output: [valueInfo('y', FLOAT, [tokens, d])] }));
  return { name: 'ffn4', onnx, input: { name: 'x', shape: [tokens, d] }, output: 'y' };
}

function cnn(): BenchModel {
  return { name: 'cnn', onnx: readFileSync(join(root, 'fixtures/onnx/cnn.onnx')), input: { name: 'x', shape: [1, 3, 16, 16] }, output: 'logits' };
}

/** The toy Llama's first token: prefill of 8 prompt ids (length as f32) to the next token's logits. */
function llamaFirstToken(): BenchModel {
  return {
    name: 'llama',
    graph: () => {
      const graph = new Graph('llama_tiny');
      for (const [name, t] of Object.entries(llama(graph, LLAMA_TINY_CONFIG, LLAMA_TINY_OPTIONS))) graph.output(name, t);
      return { graph, entries: llamaEntries(LLAMA_TINY_OPTIONS) };
    },
    input: { name: 'length', shape: [1] },
    output: 'prefill_logits',
    entry: 'prefill',
    ints: { prompt: { values: PROMPT, shape: [PROMPT.length] } },
  };
}

/** An 8-token prompt (Mistral-7B tokenizer ids). */
const PROMPT = [1, 415, 2936, 9060, 285, 1142, 461, 10575];

/**
 * The ONNX Llama decoder at llama-tiny's widths, seeded random weights: the logits of all 8
 * prompt positions (a forward pass without a cache, as torch exports it), compared on the last.
 */
function llamaOnnxFirstToken(): BenchModel {
  const vocab = 32000;
  return {
    name: 'llama-onnx',
    onnx: encodeModel(llamaModel(14, { d: 64, heads: 4, kvHeads: 2, vocab, ffn: 128 })),
    output: 'logits',
    ints: { input_ids: { values: PROMPT, shape: [1, PROMPT.length] } },
    from: (PROMPT.length - 1) * vocab,
    shapes: { input_ids: [1, PROMPT.length] },
  };
}

const MODELS: Record<string, () => BenchModel> = { mlp, ffn4: () => ffn4(Number(args.tokens)), cnn, llama: llamaFirstToken, 'llama-onnx': llamaOnnxFirstToken };

// --- the page -----------------------------------------------------------------------------------

/** One page for every engine and model: ?engine=…&model=…; sets window.result or window.failure. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>startup</title>
<script type="module">
const q = new URLSearchParams(location.search);
const [engine, model, runs] = [q.get('engine'), q.get('model'), Number(q.get('runs'))];
const info = JSON.parse(q.get('info'));
const x = new Float32Array(info.shape ? info.shape.reduce((a, b) => a * b, 1) : 0);
let s = 1234567;
for (let i = 0; i < x.length; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; x[i] = (s / 4294967296) * 2 - 1; }
// integer inputs (a prompt's ids) replace the random values: a float input is then their count
const feeds = info.input ? { [info.input]: x } : {};
for (const [name, ids] of Object.entries(info.ints ?? {})) { feeds[name] = Int32Array.from(ids.values); x.fill(ids.values.length); }
const median = (v) => { const o = [...v].sort((a, b) => a - b); return o[o.length >> 1]; };
try {
  const t = {};
  let run, adapter;
  if (engine.startsWith('mnc')) {
    const { fetchPlan, loadPlan, requestBrowserDevice } = await import('/mnrt.browser.mjs');
    t.imported = performance.now();
    const [gpu, plan] = await Promise.all([
      requestBrowserDevice().then((gpu) => ((t.device = performance.now()), gpu)),
      (engine === 'mnc-whole' ? fetch('/' + model + '.mnplan').then((r) => r.arrayBuffer()).then((b) => new Uint8Array(b)) : fetchPlan('/' + model + '.mnplan')).then((plan) => ((t.fetched = performance.now()), plan)),
    ]);
    // submits counted, to show the first run's chunks (one submit per run once every pipeline exists)
    const queue = gpu.device.queue, submit = queue.submit.bind(queue);
    queue.submit = (buffers) => { t.submits = (t.submits ?? 0) + 1; submit(buffers); };
    const session = await loadPlan(plan, gpu.device);
    session.ready.then(() => (t.pipelines = performance.now()), () => undefined);
    // mnc-wait: every pipeline built before the first run, as loadPlan did before it stopped waiting
    if (engine === 'mnc-wait') await session.ready;
    adapter = session.adapter;
    run = async () => (await session.run(feeds, info.entry ?? 'run'))[info.output];
  } else {
    const ort = await import(engine === 'ort-webgpu' ? '/ort/ort.webgpu.min.mjs' : '/ort/ort.wasm.min.mjs');
    t.imported = performance.now();
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = 1;
    const bytes = new Uint8Array(await (await fetch('/' + model + '.onnx')).arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, { executionProviders: [engine === 'ort-webgpu' ? 'webgpu' : 'wasm'] });
    const feeds = info.input ? { [info.input]: new ort.Tensor('float32', x, info.shape) } : {};
    for (const [name, ids] of Object.entries(info.ints ?? {})) feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids.values, BigInt), ids.shape);
    run = async () => {
      const out = await session.run(feeds);
      const tensor = out[session.outputNames[0]];
      return tensor.location === 'cpu' ? tensor.data : await tensor.getData();
    };
  }
  t.ready = performance.now();
  const first = await run();
  t.first = performance.now();
  t.firstSubmits = t.submits;
  const times = [];
  for (let i = 0; i < runs; i++) { const a = performance.now(); await run(); times.push(performance.now() - a); }
  window.result = { ...t, steady: median(times), out: Array.from(first.slice(info.from ?? 0, (info.from ?? 0) + 16)), adapter };
} catch (e) {
  window.failure = String(e && e.stack || e);
}
</script>`;

// --- the server ------------------------------------------------------------------------------

interface Served {
  type: string;
  body: Uint8Array;
  gzip?: Uint8Array;
}

async function serve(files: Map<string, Served>) {
  let sent = 0;
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    let file = files.get(path);
    if (!file && path.startsWith('/ort/')) {
      // onnxruntime-web's files, as its loader asks for them
      const name = path.slice('/ort/'.length);
      if (/^[\w.-]+$/.test(name)) {
        try {
          const body = readFileSync(join(ORT_DIST, name));
          file = { type: name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript', body, gzip: gzipSync(body, { level: 9 }) };
          files.set(path, file);
        } catch {
          // not there: 404
        }
      }
    }
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const headers = { 'content-type': file.type, 'cache-control': 'no-store', 'accept-ranges': 'bytes' };
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    let body: Uint8Array;
    if (range && Number(range[1]) < file.body.length) {
      const from = Number(range[1]);
      const to = Math.min(range[2] ? Number(range[2]) : file.body.length - 1, file.body.length - 1);
      body = file.body.subarray(from, to + 1);
      res.writeHead(206, { ...headers, 'content-range': `bytes ${from}-${to}/${file.body.length}` });
    } else if (file.gzip && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
      body = file.gzip;
      res.writeHead(200, { ...headers, 'content-encoding': 'gzip' });
    } else {
      body = file.body;
      res.writeHead(200, headers);
    }
    sent += body.length;
    requests.push(`${path}${range ? ` [${range[0]}]` : ''}: ${body.length}`);
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    take: () => {
      const taken = { bytes: sent, requests: requests.splice(0) };
      sent = 0;
      return taken;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// --- the race -------------------------------------------------------------------------------

interface Measurement {
  /** the engine's module imported (all times from navigation start, ms) */
  imported: number;
  /** mnc: the device obtained, the plan fetched (both start once the runtime is imported) */
  device?: number;
  fetched?: number;
  /** mnc: every pipeline built; the submits of the first run (more than one: it went ahead in chunks) */
  pipelines?: number;
  firstSubmits?: number;
  ready: number;
  first: number;
  steady: number;
  bytes: number;
  out: number[];
}

async function measure(base: string, engine: string, model: BenchModel, runs: number): Promise<Omit<Measurement, 'bytes'> & { adapter?: unknown }> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  try {
    const page = await browser.newPage();
    const log: string[] = [];
    page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
    page.on('crash', () => log.push('page crashed'));
    try {
      return await measurePage(page, base, engine, model, runs);
    } catch (error) {
      throw new Error(`${engine} on ${model.name}: ${(error as Error).message}\n${log.join('\n')}`, { cause: error });
    }
  } finally {
    await browser.close();
  }
}

async function measurePage(page: Page, base: string, engine: string, model: BenchModel, runs: number): Promise<Omit<Measurement, 'bytes'> & { adapter?: unknown }> {
  {
    const info = JSON.stringify({ input: model.input?.name, shape: model.input?.shape, output: model.output, entry: model.entry, ints: model.ints, from: model.from });
    await page.goto(`${base}/?engine=${engine}&model=${model.name}&runs=${runs}&info=${encodeURIComponent(info)}`);
    await page.waitForFunction(() => 'result' in window || 'failure' in window, undefined, { timeout: 300_000, polling: 50 });
    const failure = await page.evaluate(() => (window as unknown as { failure?: string }).failure);
    if (failure) throw new Error(`${engine} on ${model.name}: ${failure}`);
    return page.evaluate(() => (window as unknown as { result: Measurement & { adapter?: unknown } }).result);
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];

async function main() {
  const rounds = Number(args.rounds);
  const runs = Number(args.runs);
  const engines = args.engines!.split(',');
  const models = args.models!.split(',').map((name) => {
    if (!MODELS[name]) throw new Error(`unknown model ${name} (have: ${Object.keys(MODELS).join(', ')})`);
    return MODELS[name]();
  });

  const runtime = (await build({ absWorkingDir: root, entryPoints: ['runtime/browser.ts'], bundle: true, platform: 'browser', format: 'esm', target: 'es2022', minify: true, write: false, logLevel: 'warning' })).outputFiles[0].contents;
  const files = new Map<string, Served>([
    ['/', { type: 'text/html; charset=utf-8', body: new TextEncoder().encode(PAGE) }],
    ['/mnrt.browser.mjs', { type: 'text/javascript', body: runtime, gzip: gzipSync(runtime, { level: 9 }) }],
  ]);
  const targets = parseTargets(args.targets!);
  for (const model of models) {
    const { graph, entries } = model.onnx ? { graph: importOnnxModel(decodeModel(model.onnx, `${model.name}.onnx`), `${model.name}.onnx`, { freeze: true, ...(model.shapes ? { shapes: model.shapes } : {}) }).graph, entries: undefined } : model.graph!();
    const plan = (await compileGraph(graph, { seed: 0, targets, ...(entries ? { entries } : {}) })).bundle;
    const { manifest } = await readBundle(plan);
    const prefix = new DataView(plan.buffer, plan.byteOffset).getUint32(20, true) + (manifest.translationsOffset ?? plan.length);
    console.error(`${model.name}: ${model.onnx ? `ONNX ${model.onnx.length} bytes` : 'no ONNX'}; targets ${args.targets}; plan ${plan.length} bytes, ${prefix} up to its translations, ${manifest.kernels.length} kernels`);
    if (model.onnx) files.set(`/${model.name}.onnx`, { type: 'application/octet-stream', body: model.onnx });
    files.set(`/${model.name}.mnplan`, { type: 'application/octet-stream', body: plan });
  }
  const server = await serve(files);
  console.error(`runtime: ${runtime.length} bytes, ${gzipSync(runtime, { level: 9 }).length} gzipped; Chromium ${CHROMIUM}`);

  const results: Record<string, Record<string, Measurement[]>> = {};
  let adapter: unknown;
  for (let round = 0; round < rounds; round++) {
    for (const model of models) {
      for (const engine of engines) {
        if (!model.onnx && engine.startsWith('ort')) continue;
        server.take();
        const m = await measure(server.url, engine, model, runs);
        const { bytes, requests } = server.take();
        adapter ??= m.adapter;
        ((results[model.name] ??= {})[engine] ??= []).push({ ...m, bytes });
        const steps = [
          `imported ${m.imported.toFixed(0)}`,
          ...(m.device ? [`device ${m.device.toFixed(0)}`, `fetched ${m.fetched!.toFixed(0)}`, `every pipeline ${m.pipelines?.toFixed(0)}`, `first run in ${m.firstSubmits} submits`] : []),
        ].join(', ');
        console.error(`round ${round + 1} ${model.name} ${engine}: ${steps}, ready ${m.ready.toFixed(0)} ms, first ${m.first.toFixed(0)} ms, steady ${m.steady.toFixed(2)} ms, ${bytes} bytes (${requests.join('; ')})`);
      }
    }
  }
  await server.close();

  console.log(`Chromium headless, WebGPU adapter ${JSON.stringify(adapter)}; medians of ${rounds} fresh launches, steady = median of ${runs} runs`);
  console.log('');
  console.log('| model | engine | session ready (ms) | first result (ms) | steady run (ms) | bytes fetched | max abs diff vs ort-wasm |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const model of models) {
    const reference = results[model.name]['ort-wasm']?.[0]?.out;
    for (const engine of engines) {
      const ms = results[model.name][engine];
      if (!ms) continue;
      const diff = reference ? Math.max(...ms[0].out.map((v, i) => Math.abs(v - reference[i]))) : NaN;
      console.log(
        `| ${model.name} | ${engine} | ${median(ms.map((m) => m.ready)).toFixed(0)} | ${median(ms.map((m) => m.first)).toFixed(0)} | ${median(ms.map((m) => m.steady)).toFixed(2)} | ${(median(ms.map((m) => m.bytes)) / 1024).toFixed(1)} KiB | ${Number.isNaN(diff) ? '–' : diff.toExponential(1)} |`,
      );
    }
  }
  if (args.json) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(args.json, JSON.stringify({ adapter, rounds, runs, results }, null, 2));
  }
}

await main();
