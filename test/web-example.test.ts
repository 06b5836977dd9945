// The example web app (examples/web, issue 22) in headless Chromium, started as a user starts
// it (`node examples/web/serve.mjs`): the page loads the MNIST training plan on SwiftShader
// and says that it is a software adapter; 200 training steps on the real MNIST files lower the
// loss; after 800 steps in all, a digit drawn on the pad with synthetic mouse strokes (one
// horizontal stroke per run of ink in a row of a known test image, one image per digit, the
// first the model classifies right when given the image itself) is classified as that
// image's label; the Export button downloads the trained weights as safetensors. Generation:
// the page, which has not fetched the text entry while classifying and training, streams a
// seeded sample of the toy Llama plan (out/web/llama-tiny.mnplan, as the server built it) whose
// token ids and text equal generate()'s in Node on the same plan (Dawn). Screenshots of the
// page go to out/web-test/mnist-page.png and out/web-test/generate.png (out/ is not committed).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ensureTokenizerFixtures } from '../scripts/tokenizer-fixtures.mjs';
import { loadPlan } from '../runtime/index';
import { decodeSafetensors } from '../runtime/safetensors';
import { generate, planLanguageModel } from '../runtime/text';
import { loadTokenizerDirectory } from '../runtime/text/node';
import { CHROMIUM, launchChromium } from './chromium';
import { releaseSharedDevice, sharedDevice } from './gpu';

const root = new URL('..', import.meta.url).pathname;
const OUT = join(root, 'out/web-test');
/** the pad is 280×280 canvas pixels for 28×28 image pixels */
const CELL = 10;

let server: ChildProcess | undefined;
let browser: Browser | undefined;
let page: Page;
const log: string[] = [];
/** the paths the page requested, in order */
const requested: string[] = [];

interface GenerateOptions {
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
}

declare const mnistApp: {
  ready: Promise<{ adapter: { fallback: boolean; architecture: string }; target: { name: string } }>;
  train(options: { epochs?: number; steps?: number; testLimit?: number }): Promise<{ losses: number[]; epochs: { epoch: number; steps: number; meanLoss: number; accuracy: number; msPerStep: number }[] }>;
  testImage(index: number): Promise<{ pixels: number[]; label: number }>;
  classifyPixels(pixels: number[]): Promise<number>;
  generate(options: GenerateOptions): Promise<{ ids: number[]; text: string }>;
};

/** Starts the example's server on an ephemeral port; resolves to the URL it prints first. */
function startServer(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'examples/web/serve.mjs'), '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    server = child;
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const url = /^(http:\/\/127\.0\.0\.1:\d+\/)$/m.exec(out)?.[1];
      if (url) resolve(url);
    });
    child.stderr!.on('data', (chunk) => (err += chunk));
    child.on('exit', (code) => reject(new Error(`examples/web/serve.mjs exited (${code}) before serving:\n${err}`)));
  });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) expect.fail(`Chromium not found at ${CHROMIUM}: run \`bash scripts/setup.sh\`, or set MNC_CHROMIUM`);
  const url = await startServer();
  browser = await launchChromium();
  page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1100, height: 1300 } });
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  page.on('request', (r) => requested.push(new URL(r.url()).pathname));
  await page.goto(url);
}, 180_000);

afterAll(async () => {
  await browser?.close();
  server?.kill();
  await releaseSharedDevice();
});

/** Runs `work` in the page; a failure carries the page's console. */
async function inPage<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await page.evaluate(work);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${log.join('\n')}`, { cause: error });
  }
}

test('the page loads the plan and says the adapter is a software one', { timeout: 60_000 }, async () => {
  const ready = await inPage(() => mnistApp.ready);
  console.log(`[web] adapter ${JSON.stringify(ready.adapter)}, target ${ready.target.name}; ${await page.textContent('#status')}`);
  expect(ready.adapter.fallback).toBe(true);
  // the plan carries generic and software kernels (serve.mjs); SwiftShader gets the software ones
  expect(ready.target.name).toBe('software');
  expect(await page.textContent('#adapter')).toMatch(/^No GPU: WebGPU runs on a software adapter/);
  expect(await page.textContent('#adapter')).toMatch(/SwiftShader/i);
});

test('200 training steps on the MNIST files lower the loss', { timeout: 180_000 }, async () => {
  const { losses, epochs } = await page.evaluate(() => mnistApp.train({ epochs: 1, steps: 200, testLimit: 1000 }));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [first, last] = [mean(losses.slice(0, 20)), mean(losses.slice(-20))];
  console.log(`[web] 200 steps: loss ${first.toFixed(3)} (first 20) → ${last.toFixed(3)} (last 20), ${epochs[0].msPerStep.toFixed(1)} ms/step, test accuracy ${(epochs[0].accuracy * 100).toFixed(1)}% on 1000 images`);
  expect(losses).toHaveLength(200);
  expect(last).toBeLessThan(0.5 * first);
  expect(await page.locator('#epochs-table tbody tr').count()).toBe(1);
});

test('digits drawn with the mouse from known test images are classified as their labels', { timeout: 300_000 }, async () => {
  const { epochs } = await page.evaluate(() => mnistApp.train({ epochs: 1, steps: 600, testLimit: 1000 }));
  console.log(`[web] after 800 steps: test accuracy ${(epochs.at(-1)!.accuracy * 100).toFixed(1)}% on 1000 images`);
  expect(epochs.at(-1)!.accuracy).toBeGreaterThan(0.85);

  // the first test image of each digit that the model, given the image itself, classifies
  // right: what is checked here is the way from mouse strokes to the model's input
  const chosen = new Map<number, { index: number; pixels: number[] }>();
  const skipped: number[] = [];
  for (let index = 0; chosen.size < 10; index++) {
    const { pixels, label } = await page.evaluate((i) => mnistApp.testImage(i), index);
    if (chosen.has(label)) continue;
    if ((await page.evaluate((p) => mnistApp.classifyPixels(p), pixels)) === label) chosen.set(label, { index, pixels });
    else skipped.push(index);
  }
  console.log(`[web] test images the model itself gets wrong, skipped: ${skipped.join(', ') || 'none'}`);
  const box = (await page.locator('#pad').boundingBox())!;
  const results: { label: number; index: number; drawn: number; strokes: number }[] = [];
  for (const [label, { index, pixels }] of [...chosen].sort((a, b) => a[0] - b[0])) {
    await page.click('#clear');
    let strokes = 0;
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        if (pixels[y * 28 + x] < 128) continue;
        let end = x;
        while (end + 1 < 28 && pixels[y * 28 + end + 1] >= 128) end++;
        const at = (px: number) => [box.x + ((px * CELL + CELL / 2) * box.width) / 280, box.y + ((y * CELL + CELL / 2) * box.height) / 280] as const;
        await page.mouse.move(...at(x));
        await page.mouse.down();
        await page.mouse.move(...at(end), { steps: 2 });
        await page.mouse.up();
        strokes++;
        x = end;
      }
    }
    await page.waitForSelector(`#prediction[data-strokes="${strokes}"]`);
    results.push({ label, index, drawn: Number(await page.getAttribute('#prediction', 'data-digit')), strokes });
  }
  console.log(`[web] drawn digits: ${results.map((r) => `${r.label}→${r.drawn} (test image ${r.index}, ${r.strokes} strokes)`).join(', ')}`);
  expect(results.map((r) => r.drawn)).toEqual(results.map((r) => r.label));
});

test("generation streams the Node runtime's tokens for the same prompt and seed; the text entry loads only then", { timeout: 300_000 }, async () => {
  // classifying and training (the tests above) never fetched the text layer
  expect(requested).toContain('/mnrt.browser.mjs');
  expect(requested).not.toContain('/mntext.browser.mjs');
  expect(requested).not.toContain('/llama-tiny.mnplan');

  const options: GenerateOptions = { prompt: 'The quick brown fox jumps over the lazy dog', maxNewTokens: 10, temperature: 0.8, topP: 0.95, seed: 7 };
  // the page, watching the token count rise one token at a time as they stream in
  await page.evaluate(() => {
    const w = window as unknown as { tokenCounts: string[] };
    w.tokenCounts = [];
    const out = document.getElementById('generated')!;
    new MutationObserver(() => w.tokenCounts.push(out.dataset.tokens!)).observe(out, { attributes: true, attributeFilter: ['data-tokens'] });
  });
  const inBrowser = await page.evaluate((o) => mnistApp.generate(o), options).catch((error) => {
    throw new Error(`${(error as Error).message}\n${log.join('\n')}`, { cause: error });
  });
  const counts = await page.evaluate(() => (window as unknown as { tokenCounts: string[] }).tokenCounts);
  expect(requested).toContain('/mntext.browser.mjs');

  // the same plan file and sampling in Node, on Dawn
  const tokenizer = await loadTokenizerDirectory(ensureTokenizerFixtures()['mistral-7b']);
  const session = await loadPlan(new Uint8Array(readFileSync(join(root, 'out/web/llama-tiny.mnplan'))), (await sharedDevice()).device);
  const inNode = { ids: [] as number[], text: '' };
  try {
    const { prompt, ...sampling } = options;
    // the page samples whenever the temperature is above 0
    for await (const step of generate(planLanguageModel(session), prompt, { tokenizer, ...sampling, doSample: true })) {
      inNode.ids.push(step.token);
      inNode.text += step.text;
    }
  } finally {
    session.destroy();
  }
  console.log(`[web] generated ${JSON.stringify(inBrowser.ids)} ${JSON.stringify(inBrowser.text)}; ${await page.textContent('#generate-status')}`);
  expect(tokenizer.encode(options.prompt).length).toBeGreaterThan(8); // longer than one prefill: the rest goes by decode steps
  expect(inBrowser.ids).toHaveLength(options.maxNewTokens);
  // a real sample (the plan's weights loaded), not one token repeated
  expect(new Set(inBrowser.ids).size).toBeGreaterThan(options.maxNewTokens / 2);
  expect(inBrowser.text.trim()).not.toBe('');
  expect(inBrowser.ids).toEqual(inNode.ids);
  expect(inBrowser.text).toBe(inNode.text);
  expect(await page.textContent('#generated .continuation')).toBe(inNode.text);
  // streamed: the page showed each count from 0 up as its token came
  expect(counts).toEqual(['0', ...Array.from({ length: options.maxNewTokens }, (_, i) => String(i + 1))]);
  mkdirSync(OUT, { recursive: true });
  await page.locator('#generate').screenshot({ path: join(OUT, 'generate.png') });
  console.log(`[web] screenshot: ${join(OUT, 'generate.png')}`);
});

test('Export downloads the trained weights as safetensors; a screenshot of the page is kept', { timeout: 60_000 }, async () => {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  expect(download.suggestedFilename()).toBe('mnist-weights.safetensors');
  const file = decodeSafetensors(readFileSync((await download.path())!));
  const shapes = Object.fromEntries([...file.tensors].map(([name, t]) => [name, t.shape]));
  expect(shapes).toMatchObject({ w1: [784, 128], b1: [128], w2: [128, 10], b2: [10] });
  mkdirSync(OUT, { recursive: true });
  const path = join(OUT, 'mnist-page.png');
  await page.screenshot({ path, fullPage: true });
  console.log(`[web] screenshot: ${path}`);
});
