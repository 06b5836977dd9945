// The TypeScript frontend: a model file (a TS module exporting `model((g) => …)` definitions)
// becomes a Graph. esbuild bundles the file, which is then evaluated against this very
// compiler's `mnc` module so the graph is recorded by the same Graph class; the exported
// values that are model definitions are the models it offers, in the order they were made.
// Every builder call is located through esbuild's source map, so diagnostics name the
// user's file:line:col. The TypeScript compiler checks the file and its local imports
// first, or (deferTypeCheck, as the CLI does) on a worker thread meanwhile (typecheck.ts);
// its errors come before any other.
import type { Message } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire, SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import * as api from '../api';
import type { TrainingSpec } from '../autodiff/train';
import { CompileError, CompileErrors } from '../ir/errors';
import type { Graph } from '../ir/graph';
import type { SourceLocation } from '../ir/types';
import { displayPath } from './paths';
import { typeCheckBeside, typeCheckModel } from './typecheck';

export interface LoadOptions {
  /** which exported definition to build; required when the file exports several */
  model?: string;
  /**
   * Return once the graph is built, before the type check answers: `typeChecked` then
   * settles when it does (the CLI compiles meanwhile). Default: wait for it.
   */
  deferTypeCheck?: boolean;
}

export interface LoadedModel {
  graph: Graph;
  /** the export the graph was built from (also the graph's name) */
  name: string;
  /** every model definition the file exports, in the order they were made */
  available: string[];
  /** the definition's `train` option: loss output and optimizer */
  training?: TrainingSpec;
  /** the definition's `entries` option: named entry points and their outputs */
  entries?: api.EntrySpec;
  /** the definition's `weightStorage` option */
  weightStorage?: api.WeightStorage;
  /** resolves once the file type-checks; rejects with CompileErrors (every type error) otherwise */
  typeChecked: Promise<void>;
}

/**
 * Type-checks, bundles, evaluates and builds a model file. Throws CompileErrors (all type
 * errors of the file and its imports: they come first, as they explain whatever else went
 * wrong) or a CompileError.
 */
export async function loadTypeScriptModel(file: string, options: LoadOptions = {}): Promise<LoadedModel> {
  const absFile = resolve(file);
  if (!existsSync(absFile)) throw new CompileError('io', `cannot read model file '${file}': no such file`);
  if (!/\.(m?ts|tsx)$/.test(absFile)) {
    throw new CompileError('input', `'${file}' is not a TypeScript model file (expected a .ts file)`);
  }
  // deferred, the check runs on a worker thread while this one goes on; else here first (TypeScript stays loaded for the next call)
  const checking = options.deferTypeCheck ? typeCheckBeside(absFile, mncApiFile()) : typeCheckModel(absFile, mncApiFile());
  const typeChecked = checking.then((errors) => {
    if (errors.length > 0) throw new CompileErrors(errors);
  });
  typeChecked.catch(() => {}); // awaited below or by the caller; never an unhandled rejection meanwhile
  if (!options.deferTypeCheck) await typeChecked;
  let loaded: Omit<LoadedModel, 'typeChecked'>;
  try {
    loaded = await buildModel(file, absFile, options.model);
  } catch (error) {
    await typeChecked;
    throw error;
  }
  return { ...loaded, typeChecked };
}

async function buildModel(file: string, absFile: string, wanted: string | undefined): Promise<Omit<LoadedModel, 'typeChecked'>> {
  const bundle = await bundleModel(absFile);
  const { exports, made } = evaluateBundle(bundle, file);
  const available = discoverModels(exports, made);
  const name = chooseModel(file, available, wanted);
  const definition = exports[name] as api.ModelDefinition;
  const declaration = made.get(definition)?.loc;
  try {
    const graph = api.buildGraph(name === 'default' ? defaultName(absFile) : name, definition, { locate: () => bundle.locateCaller() });
    return { graph, name, available, training: definition.train, entries: definition.entries, weightStorage: definition.weightStorage };
  } catch (error) {
    if (error instanceof CompileError) {
      // builder errors carry the user's location already; a model-level one (no outputs) gets the definition's
      if (error.loc || !declaration) throw error;
      throw new CompileError(error.kind, error.message, declaration, error.op, error.detail);
    }
    if (error instanceof CompileErrors) throw error;
    throw new CompileError('model', `model '${name}' threw while building its graph: ${describe(error)}`, bundle.locateError(error) ?? declaration);
  }
}

// --- the 'mnc' module ---------------------------------------------------------------------

let cachedApiFile: string | undefined;

/** compiler/api.ts of this mnc: found from this module's location, from source or from dist/mnc.mjs. */
function mncApiFile(): string {
  if (cachedApiFile) return cachedApiFile;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'mnc') {
          const apiFile = join(dir, 'compiler', 'api.ts');
          if (!existsSync(apiFile)) break;
          return (cachedApiFile = apiFile);
        }
      } catch {
        // an unreadable package.json is not ours; keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new CompileError('io', `cannot find mnc's compiler/api.ts above ${fileURLToPath(import.meta.url)}; the model's 'mnc' import needs it`);
}

// --- discovery -------------------------------------------------------------------------------

/** Where and in which order the model file made its definitions (the `model` calls it ran). */
type MadeDefinitions = Map<api.ModelDefinition, { order: number; loc?: SourceLocation }>;

/** The exports whose values are model definitions, in the order they were made. */
function discoverModels(exports: Record<string, unknown>, made: MadeDefinitions): string[] {
  const found: { name: string; order: number }[] = [];
  for (const name of Object.keys(exports)) {
    const value = exports[name];
    if (api.isModelDefinition(value)) found.push({ name, order: made.get(value)?.order ?? Infinity });
  }
  return found.sort((a, b) => a.order - b.order).map((f) => f.name);
}

function chooseModel(file: string, available: string[], wanted: string | undefined): string {
  const list = available.map((n) => `'${n}'`).join(', ');
  if (available.length === 0) {
    throw new CompileError(
      'model',
      `${file} exports no model definition: export one, e.g. \`export const net = model((g) => { … })\` with \`import { model } from 'mnc'\``,
    );
  }
  if (wanted !== undefined) {
    if (available.includes(wanted)) return wanted;
    throw new CompileError('model', `${file} has no model named '${wanted}'; it exports ${list}`);
  }
  if (available.length > 1) throw new CompileError('model', `${file} exports ${available.length} models (${list}); choose one with --model NAME`);
  return available[0];
}

// --- bundling and evaluation -----------------------------------------------------------------

interface ModelBundle {
  code: string;
  /** the name the evaluated code runs under, as stack frames show it */
  filename: string;
  /** the first stack frame in the model code, mapped to the user's file */
  locateCaller(): SourceLocation | undefined;
  /** where a thrown value was thrown in the model code, if it is an Error that says */
  locateError(error: unknown): SourceLocation | undefined;
}

async function bundleModel(absFile: string): Promise<ModelBundle> {
  const outfile = `${absFile}.mnc-bundle.cjs`;
  const { build } = await import('esbuild');
  let result;
  try {
    result = await build({
      entryPoints: [absFile],
      absWorkingDir: dirname(absFile),
      outfile,
      bundle: true,
      write: false,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      sourcemap: 'external',
      sourcesContent: false,
      external: ['mnc'],
      packages: 'external',
      tsconfigRaw: {},
      logLevel: 'silent',
    });
  } catch (error) {
    const messages = (error as { errors?: Message[] }).errors;
    if (!messages?.length) throw error;
    throw new CompileErrors(
      messages.map((m) =>
        new CompileError(
          'model',
          `cannot bundle the model: ${m.text}`,
          m.location ? { file: displayPath(resolve(dirname(absFile), m.location.file)), line: m.location.line, column: m.location.column + 1 } : undefined,
        ),
      ),
    );
  }
  const code = result.outputFiles.find((f) => f.path.endsWith('.cjs'))!.text;
  const payload = JSON.parse(result.outputFiles.find((f) => f.path.endsWith('.map'))!.text) as SourceMapPayload;
  const map = new SourceMap(payload);
  const sourceDir = dirname(outfile);

  // stack positions are 1-based; the source map's are 0-based
  const toUser = (line: number, column: number): SourceLocation | undefined => {
    const entry = map.findEntry(line - 1, column - 1) as Partial<{ originalSource: string; originalLine: number; originalColumn: number }> | undefined;
    if (!entry?.originalSource || entry.originalLine === undefined || entry.originalColumn === undefined) return undefined;
    const source = entry.originalSource.startsWith('file://') ? fileURLToPath(entry.originalSource) : resolve(sourceDir, entry.originalSource);
    return { file: displayPath(source), line: entry.originalLine + 1, column: entry.originalColumn + 1 };
  };
  const filename = outfile;

  return {
    code,
    filename,
    locateCaller() {
      for (const site of callSites()) {
        if (site.getFileName() !== filename) continue;
        const line = site.getLineNumber();
        const column = site.getColumnNumber();
        if (line !== null && column !== null) return toUser(line, column);
      }
      return undefined;
    },
    locateError(error) {
      const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack : '';
      for (const frame of stack.split('\n')) {
        const at = frame.indexOf(`${filename}:`);
        if (at < 0) continue;
        const m = /^:(\d+):(\d+)/.exec(frame.slice(at + filename.length));
        if (m) return toUser(Number(m[1]), Number(m[2]));
      }
      return undefined;
    },
  };
}

/** The current stack as V8 call sites, whatever Error.prepareStackTrace the host installed. */
function callSites(): NodeJS.CallSite[] {
  const previous = { prepare: Error.prepareStackTrace, limit: Error.stackTraceLimit };
  try {
    Error.prepareStackTrace = (_error, sites) => sites;
    Error.stackTraceLimit = 100;
    const holder: { stack?: unknown } = {};
    Error.captureStackTrace(holder, callSites);
    return Array.isArray(holder.stack) ? (holder.stack as NodeJS.CallSite[]) : [];
  } finally {
    Error.prepareStackTrace = previous.prepare;
    Error.stackTraceLimit = previous.limit;
  }
}

/**
 * Runs the bundle as a CommonJS module whose `require('mnc')` is this compiler's api module,
 * its `model` noting each definition it makes; answers the module's exports.
 */
function evaluateBundle(bundle: ModelBundle, file: string): { exports: Record<string, unknown>; made: MadeDefinitions } {
  const made: MadeDefinitions = new Map();
  const model: typeof api.model = (build, options) => {
    const definition = api.model(build, options);
    made.set(definition, { order: made.size, loc: bundle.locateCaller() });
    return definition;
  };
  const mnc = Object.freeze({ __esModule: true, ...api, model });
  const requireFromModel = createRequire(bundle.filename);
  const require = (id: string): unknown => (id === 'mnc' ? mnc : requireFromModel(id));
  const module = { exports: {} as Record<string, unknown> };
  try {
    // compileFunction, in this realm: the model's Float32Array is the builder's Float32Array
    const run = vm.compileFunction(bundle.code, ['require', 'module', 'exports'], { filename: bundle.filename });
    run(require, module, module.exports);
  } catch (error) {
    if (error instanceof CompileError || error instanceof CompileErrors) throw error;
    throw new CompileError('model', `evaluating ${file} threw: ${describe(error)}`, bundle.locateError(error));
  }
  return { exports: module.exports, made };
}

// --- helpers --------------------------------------------------------------------------------

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function defaultName(absFile: string): string {
  return absFile.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '');
}
