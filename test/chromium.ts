// Debian's Chromium as the suites drive it (browser.test.ts, trace.test.ts): where it is and
// the flags that give WebGPU on SwiftShader, offline, runnable as root in a container.
// The only flag WebGPU needs here (no GPU, no display) is --enable-unsafe-webgpu: without it
// requestAdapter() gives null; with it Chromium offers its SwiftShader fallback adapter. The
// rest keep the browser offline (every host but 127.0.0.1 fails to resolve; no background,
// component-update, sync or QUIC traffic) and able to run as root.

import { build } from 'esbuild';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium package; MNC_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.MNC_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export interface ServedFile {
  type: string;
  body: string | Uint8Array;
}

/** A response the server sent: its path, the range asked for (if any) and the body's bytes. */
export interface ServedRequest {
  path: string;
  range?: string;
  bytes: number;
}

/**
 * Serves `files` (by path) on 127.0.0.1 at an ephemeral port; anything else is a 404. A
 * `Range: bytes=a-b` request gets those bytes (206), as static file servers do; `sent` lists
 * every response, so a test can count the bytes a page fetched.
 */
export async function serveFiles(files: Record<string, ServedFile>): Promise<{ server: Server; url: string; sent: ServedRequest[] }> {
  const sent: ServedRequest[] = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const file = files[path];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const body = typeof file.body === 'string' ? Buffer.from(file.body) : file.body;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const headers = { 'content-type': file.type, 'cache-control': 'no-store', 'accept-ranges': 'bytes' };
    if (range && Number(range[1]) < body.length) {
      const from = Number(range[1]);
      const to = Math.min(range[2] ? Number(range[2]) : body.length - 1, body.length - 1);
      sent.push({ path, range: req.headers.range, bytes: to + 1 - from });
      res.writeHead(206, { ...headers, 'content-range': `bytes ${from}-${to}/${body.length}` }).end(body.subarray(from, to + 1));
      return;
    }
    sent.push({ path, bytes: body.length });
    res.writeHead(200, headers).end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/`, sent };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/**
 * Opens `url` in a new page, waits for the page to define `window[entry]`, calls it and returns
 * what its promise gives; a failure carries the page's console and errors.
 */
export async function runInPage<T>(browser: Browser, url: string, entry: string): Promise<T> {
  const page = await browser.newPage();
  const log: string[] = [];
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  await page.goto(url);
  try {
    await page.waitForFunction((name) => typeof (window as unknown as Record<string, unknown>)[name] === 'function', entry, { timeout: 15_000 });
    return await page.evaluate((name) => (window as unknown as Record<string, () => Promise<T>>)[name](), entry);
  } catch (error) {
    throw new Error(`the page failed: ${(error as Error).message}\n${log.join('\n')}`, { cause: error });
  }
}

/** The browser runtime as scripts/build.mjs ships it (one minified ESM file), built in memory. */
export async function browserRuntime(): Promise<string> {
  const result = await build({
    absWorkingDir: fileURLToPath(new URL('..', import.meta.url)),
    entryPoints: ['runtime/browser.ts'],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}
