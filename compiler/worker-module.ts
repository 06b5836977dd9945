// Where a worker thread's module comes from. In the CLI bundle (dist/) each worker is
// built beside it (scripts/build.mjs); from sources (tsx, vitest) the worker's .ts file is
// bundled now by esbuild into a data: URL, with its package imports pointed at the files
// this module resolves them to (a data: URL has no node_modules to look in). Undefined
// where neither exists (this module bundled elsewhere): the caller does the work itself.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const modules = new Map<string, Promise<URL | undefined>>();

/**
 * The module of worker `name`: `name.mjs` beside `base` when built, else `name.ts` beside
 * it bundled with `packages` left as imports of their resolved files.
 */
export function workerModule(base: string | URL, name: string, packages: readonly string[]): Promise<URL | undefined> {
  const key = `${base}#${name}`;
  let found = modules.get(key);
  if (!found) {
    found = locate(new URL(base), name, packages);
    modules.set(key, found);
  }
  return found;
}

async function locate(base: URL, name: string, packages: readonly string[]): Promise<URL | undefined> {
  const built = new URL(`./${name}.mjs`, base);
  if (built.protocol === 'file:' && existsSync(built)) return built;
  const source = new URL(`./${name}.ts`, base);
  if (source.protocol !== 'file:' || !existsSync(source)) return undefined;
  try {
    const require = createRequire(base);
    const resolved = new Map(packages.map((p) => [p, pathToFileURL(require.resolve(p)).href]));
    const { build } = await import('esbuild');
    const result = await build({
      entryPoints: [fileURLToPath(source)],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      logLevel: 'silent',
      plugins: [
        {
          name: 'resolved-packages',
          setup: (b) => b.onResolve({ filter: /^[^./]/ }, (args) => {
            const path = resolved.get(args.path);
            return path ? { path, external: true } : undefined;
          }),
        },
      ],
    });
    return new URL(`data:text/javascript;base64,${Buffer.from(result.outputFiles[0].contents).toString('base64')}`);
  } catch {
    return undefined;
  }
}
