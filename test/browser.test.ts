// A compiled plan run in a real browser: Debian's Chromium (headless, WebGPU on SwiftShader
// when there is no GPU) loads the minified browser runtime built from runtime/browser.ts,
// fetches the plan and the inputs from a local server, runs the plan and hands the outputs
// back, which must equal the CPU reference interpreter's within the stated tolerance.
//
// No skipping: without Chromium this test fails and says how to install it (scripts/setup.sh).
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { afterAll, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { elementCount, type Shape } from '../compiler/ir/types';
import { browserRuntime, CHROMIUM, launchChromium, runInPage, serveFiles, type ServedFile } from './chromium';
import { GENERIC, INTEL_XE, NVIDIA_HOPPER } from '../compiler/target/targets';
import { expectClose } from './close';


// |browser - cpu| ≤ ATOL + RTOL·|cpu|, as in test/ops.test.ts (layerNorm and K-term matmul
// sums round differently on the GPU).
const ATOL = 1e-4;
const RTOL = 1e-4;

const INPUTS: Record<string, Shape> = { x: [6, 24], y: [7, 6] };

/** Several archetypes in one plan: tiled matmul + biasAdd + gelu, layerNorm and softmax (row
 * reductions), transpose and concat (layout), and a pointwise op on a transposed value. */
function model(): Graph {
  const g = new Graph('browser_case');
  const init = { uniform: [-0.5, 0.5] as [number, number] };
  const x = g.input('x', INPUTS.x);
  const y = g.input('y', INPUTS.y);
  const h = g.gelu(g.biasAdd(g.matmul(x, g.parameter('w1', [24, 33])), g.parameter('b1', [33], { init })));
  const n = g.layerNorm(h, g.parameter('gamma', [33], { init: { uniform: [0.5, 1.5] } }), g.parameter('beta', [33], { init }));
  const probs = g.softmax(g.biasAdd(g.matmul(n, g.parameter('w2', [33, 10])), g.parameter('b2', [10], { init })));
  g.output('probs', probs);
  g.output('mixed', g.concat([probs, g.tanh(g.transpose(y))], 1));
  return g;
}

function randomInput(shape: Shape, seed: number): Float32Array {
  const u = uniformStream(seed);
  return Float32Array.from({ length: elementCount(shape) }, () => -2 + 4 * u());
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>mnrt browser test</title>
<script type="module">
  import { requestBrowserDevice, loadPlan } from './mnrt.browser.mjs';
  window.runPlan = async () => {
    const [plan, inputs] = await Promise.all([
      fetch('./plan.mnplan').then((r) => r.arrayBuffer()),
      fetch('./inputs.json').then((r) => r.json()),
    ]);
    const gpu = await requestBrowserDevice();
    const { vendor, architecture, device, description } = gpu.adapter.info;
    const adapter = { vendor, architecture, device, description, isFallbackAdapter: gpu.adapter.info.isFallbackAdapter, features: [...gpu.device.features].sort() };
    const session = await loadPlan(new Uint8Array(plan), gpu.device);
    try {
      const feeds = Object.fromEntries(Object.entries(inputs).map(([name, values]) => [name, Float32Array.from(values)]));
      const outputs = await session.run(feeds);
      return { adapter, target: session.target, outputs: Object.fromEntries(Object.entries(outputs).map(([name, values]) => [name, Array.from(values)])) };
    } finally {
      session.destroy();
      gpu.destroy();
    }
  };
</script>
`;

interface PageResult {
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean; features: string[] };
  target: { name: string; reason: string };
  outputs: Record<string, number[]>;
}

let server: Server | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

test('a compiled plan runs in headless Chromium (WebGPU) and equals the CPU reference', { timeout: 60_000 }, async () => {
  if (!existsSync(CHROMIUM)) {
    expect.fail(`Chromium not found at ${CHROMIUM}: run \`bash scripts/setup.sh\` (installs Debian's chromium), or set MNC_CHROMIUM to a Chromium binary`);
  }
  const t0 = performance.now();
  const lap = (label: string) => console.log(`[browser test] ${label}: ${Math.round(performance.now() - t0)} ms`);

  const g = model();
  // generic last: the page must pick it from the adapter (SwiftShader matches no GPU class)
  const plan = await compileGraph(g, { seed: 11, targets: [NVIDIA_HOPPER, INTEL_XE, GENERIC] });
  const feeds = Object.fromEntries(Object.entries(INPUTS).map(([name, shape], k) => [name, randomInput(shape, 500 + k)]));
  const expected = interpret(g, feeds, plan.parameters);
  lap(`compiled ${plan.bundle.length}-byte plan, CPU reference done`);

  const runtimeText = await browserRuntime();
  lap(`built the browser runtime (${runtimeText.length} bytes)`);

  const files: Record<string, ServedFile> = {
    '/': { type: 'text/html; charset=utf-8', body: PAGE },
    '/mnrt.browser.mjs': { type: 'text/javascript; charset=utf-8', body: runtimeText },
    '/plan.mnplan': { type: 'application/octet-stream', body: plan.bundle },
    '/inputs.json': { type: 'application/json', body: JSON.stringify(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, Array.from(v)]))) },
  };
  const served = await serveFiles(files);
  server = served.server;

  browser = await launchChromium();
  lap(`launched Chromium ${browser.version()}`);

  const result = await runInPage<PageResult>(browser, served.url, 'runPlan');
  lap('ran the plan in the page');
  console.log(`[browser test] adapter: ${JSON.stringify(result.adapter)}`);

  expect(result.adapter.vendor || result.adapter.architecture || result.adapter.description, 'adapter info').toBeTruthy();
  expect(result.target).toMatchObject({ name: 'generic', reason: 'fallback' });
  expect(Object.keys(result.outputs).sort()).toEqual(['mixed', 'probs']);
  for (const [name, want] of Object.entries(expected)) {
    expectClose(result.outputs[name], want, ATOL, RTOL, name);
  }
});
