// Build and run times of single products in headless Chromium on SwiftShader (Chromium's
// software WebGPU adapter), compiled for `generic` (tiled and small-M kernels) and for
// `software` (the direct kernel where its tuning says): loadPlan's time (pipeline builds
// dominate), the first run, and the median of 7 more. The figures behind the software target's
// directMacs and directRows (compiler/target/targets.ts). Not on the GPU machine: no browser.
//
//   npx tsx bench/software-kernels.ts [--shapes 32x784x128,1x64x32000]   (M x K x N)
import { parseArgs } from 'node:util';
import { compileGraph } from '../compiler/compile';
import { Graph } from '../compiler/ir/graph';
import { GENERIC, SOFTWARE } from '../compiler/target/targets';
import { browserRuntime, launchChromium, serveFiles, type ServedFile } from '../test/chromium';

const { values: args } = parseArgs({ options: { shapes: { type: 'string', default: '32x784x128,784x32x128,32x128x10,1x784x128,8x64x32000,1x64x32000,1x576x1536' } } });
const shapes = args.shapes!.split(',').map((s) => s.split('x').map(Number) as [number, number, number]);
const targets = [GENERIC, SOFTWARE];

const files: Record<string, ServedFile> = {
  '/': { type: 'text/html', body: '<!doctype html><title>software kernels</title>' },
  '/mnrt.browser.mjs': { type: 'text/javascript', body: await browserRuntime() },
};
for (const [m, k, n] of shapes) {
  for (const target of targets) {
    const g = new Graph('product');
    g.output('y', g.matmul(g.input('a', [m, k]), g.input('b', [k, n])));
    files[`/${m}x${k}x${n}.${target.name}.mnplan`] = { type: 'application/octet-stream', body: (await compileGraph(g, { targets: [target] })).bundle };
  }
}
const { server, url } = await serveFiles(files);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(url);
  console.log('| M×K×N | target | load (ms) | first run (ms) | steady run (ms) |');
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const [m, k, n] of shapes) {
    for (const target of targets) {
      const path = `/${m}x${k}x${n}.${target.name}.mnplan`;
      const r = await page.evaluate(
        async ({ path, m, k, n }) => {
          const runtime = '/mnrt.browser.mjs';
          const { loadPlan, requestBrowserDevice } = await import(runtime);
          const gpu = await requestBrowserDevice();
          const plan = new Uint8Array(await (await fetch(path)).arrayBuffer());
          const feeds = { a: new Float32Array(m * k).fill(0.5), b: new Float32Array(k * n).fill(0.25) };
          const t0 = performance.now();
          const session = await loadPlan(plan, gpu.device);
          const t1 = performance.now();
          await session.run(feeds);
          const t2 = performance.now();
          const times: number[] = [];
          for (let i = 0; i < 7; i++) {
            const t = performance.now();
            await session.run(feeds);
            times.push(performance.now() - t);
          }
          gpu.destroy();
          return { load: t1 - t0, first: t2 - t1, steady: times.sort((x, y) => x - y)[3] };
        },
        { path, m, k, n },
      );
      console.log(`| ${m}×${k}×${n} | ${target.name} | ${r.load.toFixed(0)} | ${r.first.toFixed(0)} | ${r.steady.toFixed(1)} |`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
