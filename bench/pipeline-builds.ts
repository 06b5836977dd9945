// How long headless Chromium's WebGPU (SwiftShader here) takes to build each kernel's compute
// pipeline of a plan, one after another (createShaderModule + createComputePipelineAsync with
// an automatic layout): where a plan's load time goes on a software adapter. The target's
// kernels as the runtime would take them (each kernel's portable module).
//
//   npx tsx bench/pipeline-builds.ts <plan.mnplan> [target, default generic]
import { readFileSync } from 'node:fs';
import { readBundle } from '../runtime/bundle';
import { targetManifest, targetsOf } from '../runtime/targets';
import { launchChromium, serveFiles } from '../test/chromium';

const [file, targetName = 'generic'] = process.argv.slice(2);
if (!file) throw new Error('usage: npx tsx bench/pipeline-builds.ts <plan.mnplan> [target]');
const bundle = await readBundle(new Uint8Array(readFileSync(file)));
const index = targetsOf(bundle.manifest).findIndex((t) => t.name === targetName);
if (index < 0) throw new Error(`${file} has no target '${targetName}' (it has: ${targetsOf(bundle.manifest).map((t) => t.name).join(', ')})`);
const kernels = targetManifest(bundle.manifest, index).kernels.map((k) => ({ name: k.name, entryPoint: k.entryPoint, code: bundle.text(k.variants[k.variants.length - 1].wgsl) }));

const { server, url } = await serveFiles({ '/': { type: 'text/html', body: '<!doctype html><title>pipeline builds</title>' } });
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(url);
  const times = await page.evaluate(async (kernels) => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    const out: { name: string; ms: number }[] = [];
    for (const k of kernels) {
      const t = performance.now();
      const module = device.createShaderModule({ code: k.code });
      await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: k.entryPoint } });
      out.push({ name: k.name, ms: performance.now() - t });
    }
    return out;
  }, kernels);
  for (const { name, ms } of times) console.log(`${name}: ${ms.toFixed(0)} ms`);
  console.log(`all ${times.length} one after another: ${times.reduce((a, t) => a + t.ms, 0).toFixed(0)} ms`);
} finally {
  await browser.close();
  server.close();
}
