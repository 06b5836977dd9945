// Embeds the optimizer's rule files, then builds the shipped artifacts with esbuild:
//   dist/mnc.mjs             the compiler CLI for Node (native/wasm packages left external)
//   dist/naga-worker.mjs     the CLI's validation worker and its type-check worker
//   dist/typecheck-worker.mjs  (worker-module.ts looks for them beside the module they
//                            are bundled into)
//   dist/mnrt.browser.mjs    the runtime as one minified ESM file for browsers
//   dist/mntext.browser.mjs  the text layer (runtime/text: tokenizer, chat templates, sampling,
//                            generate) likewise, apart so a plan runtime does not carry it
// and prints the browser bundles' minified+gzipped sizes.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { renderRulesModule } from './embed-rules.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

// the optimizer's .egg rules, as a module the bundle carries
writeFileSync(new URL('../compiler/egraph/rules/index.ts', import.meta.url), renderRulesModule());

await build({
  absWorkingDir: root,
  entryPoints: ['compiler/cli/mnc.ts'],
  outfile: 'dist/mnc.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  packages: 'external',
  logLevel: 'warning',
});

await build({
  absWorkingDir: root,
  entryPoints: { 'naga-worker': 'compiler/validate/naga-worker.ts', 'typecheck-worker': 'compiler/frontends/typecheck-worker.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  logLevel: 'warning',
});

await build({
  absWorkingDir: root,
  entryPoints: ['runtime/browser.ts'],
  outfile: 'dist/mnrt.browser.mjs',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});

await build({
  absWorkingDir: root,
  entryPoints: ['runtime/text/index.ts'],
  outfile: 'dist/mntext.browser.mjs',
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});

for (const file of ['dist/mnrt.browser.mjs', 'dist/mntext.browser.mjs']) {
  const bytes = readFileSync(`${root}/${file}`);
  console.log(`${file}: ${bytes.length} bytes minified, ${gzipSync(bytes, { level: 9 }).length} bytes gzipped`);
}
