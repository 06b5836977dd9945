// Embeds the optimizer's rule files, then builds the shipped artifacts with esbuild:
//   dist/mnc.mjs             the compiler CLI for Node (native/wasm packages left external)
//   dist/naga-worker.mjs     the CLI's validation worker and its type-check worker
//   dist/typecheck-worker.mjs  (worker-module.ts looks for them beside the module they
//                            are bundled into)
//   dist/mnrt.browser.mjs    the runtime as one minified ESM file for browsers
//   dist/mntext.browser.mjs  the text layer (runtime/text: tokenizer, chat templates, sampling,
//                            generate) likewise, apart so a plan runtime does not carry it
//   dist/mnrt.node.mjs       the runtime for Node (runtime/index.ts: the Dawn host; `webgpu` external)
//   dist/mntext.node.mjs     the text layer for Node (runtime/text/node.ts; packages external)
//   dist/types/              .d.ts declarations of those entries (tsc, tsconfig.types.json), their
//                            relative imports given .js extensions so Node16/NodeNext resolution finds them
// (package.json's `exports` name them: mnc/runtime, mnc/runtime/browser, mnc/text), and prints
// each entry's minified+gzipped size.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { renderRulesModule } from './embed-rules.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

// the optimizer's .egg rules, as a module the bundle carries
writeFileSync(new URL('../compiler/egraph/rules/index.ts', import.meta.url), renderRulesModule());

// Node bundles keep their packages external (native and wasm ones among them); browser
// bundles carry everything, minified
const forNode = { absWorkingDir: root, bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', logLevel: 'warning' };
const forBrowser = { absWorkingDir: root, bundle: true, platform: 'browser', format: 'esm', target: 'es2022', minify: true, sourcemap: true, logLevel: 'warning' };

await build({ ...forNode, entryPoints: ['compiler/cli/mnc.ts'], outfile: 'dist/mnc.mjs', sourcemap: true });
await build({
  ...forNode,
  entryPoints: { 'naga-worker': 'compiler/validate/naga-worker.ts', 'typecheck-worker': 'compiler/frontends/typecheck-worker.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
});
await build({ ...forBrowser, entryPoints: ['runtime/browser.ts'], outfile: 'dist/mnrt.browser.mjs' });
await build({ ...forBrowser, entryPoints: ['runtime/text/index.ts'], outfile: 'dist/mntext.browser.mjs' });
await build({
  ...forNode,
  entryPoints: { 'mnrt.node': 'runtime/index.ts', 'mntext.node': 'runtime/text/node.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
});

// type declarations: tsc emits them beside each other under dist/types, mirroring the source tree
rmSync(join(root, 'dist/types'), { recursive: true, force: true });
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.types.json'], { cwd: root, stdio: 'inherit' });
addJsExtensions(join(root, 'dist/types'));

/**
 * tsc keeps the sources' extensionless relative imports ('./bundle'), which a consumer's
 * Node16/NodeNext resolution does not find in an ESM package: make them './bundle.js' (or
 * './dir/index.js'), which resolve to the .d.ts beside them. The runtime entries also pull in
 * WebGPU's global types (GPUDevice, ...) from @webgpu/types, a dependency of `webgpu`.
 */
function addJsExtensions(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      addJsExtensions(path);
      continue;
    }
    if (!name.endsWith('.d.ts')) continue;
    let text = readFileSync(path, 'utf8').replace(/(from |import\()(['"])(\.{1,2}\/[^'"]+)\2/g, (whole, lead, quote, spec) => {
      if (/\.(js|mjs|json)$/.test(spec)) return whole;
      const base = join(dirname(path), spec);
      if (existsSync(`${base}.d.ts`)) return `${lead}${quote}${spec}.js${quote}`;
      if (existsSync(join(base, 'index.d.ts'))) return `${lead}${quote}${spec}/index.js${quote}`;
      throw new Error(`build: ${path} imports ${spec}, which has no declaration file`);
    });
    if (/^runtime\/(index|browser)\.d\.ts$/.test(path.slice(join(root, 'dist/types').length + 1))) {
      text = `/// <reference types="@webgpu/types" />\n${text}`;
    }
    writeFileSync(path, text);
  }
}

for (const file of ['dist/mnrt.browser.mjs', 'dist/mntext.browser.mjs', 'dist/mnrt.node.mjs', 'dist/mntext.node.mjs']) {
  const bytes = readFileSync(`${root}/${file}`);
  console.log(`${file}: ${bytes.length} bytes${file.includes('.browser.') ? ' minified' : ''}, ${gzipSync(bytes, { level: 9 }).length} bytes gzipped`);
}
