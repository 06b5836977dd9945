// The TypeScript frontend: a model file (a TS module exporting `model((g) => …)` definitions)
// becomes a Graph. ts-morph type-checks the file and its local imports and finds the exported
// definitions by type; esbuild bundles the file, which is then evaluated against this very
// compiler's `mnc` module so the graph is recorded by the same Graph class. Every builder
// call is located through esbuild's source map, so diagnostics name the user's file:line:col.
import type { Message } from 'esbuild';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire, SourceMap, type SourceMapPayload } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import type { Diagnostic, Project, SourceFile, Type } from 'ts-morph';
import * as api from '../api';
import type { TrainingSpec } from '../autodiff/train';
import { CompileError, CompileErrors } from '../ir/errors';
import type { Graph } from '../ir/graph';
import type { SourceLocation } from '../ir/types';

export interface LoadOptions {
  /** which exported definition to build; required when the file exports several */
  model?: string;
}

export interface LoadedModel {
  graph: Graph;
  /** the export the graph was built from (also the graph's name) */
  name: string;
  /** every model definition the file exports, in declaration order */
  available: string[];
  /** the definition's `train` option: loss output and optimizer */
  training?: TrainingSpec;
}

/**
 * Type-checks, discovers, bundles and evaluates a model file.
 * Throws CompileErrors (all type errors of the file and its imports) or a CompileError.
 */
export async function loadTypeScriptModel(file: string, options: LoadOptions = {}): Promise<LoadedModel> {
  const absFile = resolve(file);
  if (!existsSync(absFile)) throw new CompileError('io', `cannot read model file '${file}': no such file`);
  if (!/\.(m?ts|tsx)$/.test(absFile)) {
    throw new CompileError('input', `'${file}' is not a TypeScript model file (expected a .ts file)`);
  }
  const apiFile = mncApiFile();

  // loaded here, not at startup: `mnc inspect` and `mnc run` never pay for the TypeScript compiler
  const morph = await import('ts-morph');
  const { project, entry } = typeCheck(morph, absFile, apiFile);
  const available = discoverModels(morph, entry, project.getSourceFile(apiFile));
  const name = chooseModel(file, available, options.model);

  const bundle = await bundleModel(absFile);
  const definition = evaluateBundle(bundle, name, file);
  const declaration = declarationLocation(entry, name);
  try {
    const graph = api.buildGraph(name === 'default' ? defaultName(absFile) : name, definition, { locate: () => bundle.locateCaller() });
    return { graph, name, available, training: definition.train };
  } catch (error) {
    if (error instanceof CompileError) {
      // builder errors carry the user's location already; a model-level one (no outputs) gets the export's
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

// --- type checking --------------------------------------------------------------------------

// ES2022's lib has no console; model files may still log while they build.
const AMBIENT = `declare var console: { log(...data: unknown[]): void; warn(...data: unknown[]): void; error(...data: unknown[]): void };\n`;

type Morph = typeof import('ts-morph');

function typeCheck({ Project, ts }: Morph, absFile: string, apiFile: string): { project: Project; entry: SourceFile } {
  const project = new Project({
    skipAddingFilesFromTsConfig: true,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ['lib.es2022.d.ts'],
      types: [],
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      paths: { mnc: [apiFile] },
    },
  });
  const entry = project.addSourceFileAtPath(absFile);
  project.createSourceFile(join(dirname(apiFile), '__mnc_ambient__.d.ts'), AMBIENT, { overwrite: true });
  project.resolveSourceFileDependencies();

  const program = project.getProgram();
  const mncDir = dirname(dirname(apiFile)); // the repo root: compiler/ and schemas/ are not the user's
  const userFiles = project.getSourceFiles().filter((sf) => {
    const path = sf.getFilePath();
    if (sf.isDeclarationFile() || sf.isInNodeModules()) return false;
    return sf === entry || !['compiler', 'schemas'].some((d) => isInside(path, join(mncDir, d)));
  });
  const diagnostics: Diagnostic[] = [...program.getGlobalDiagnostics(), ...project.getConfigFileParsingDiagnostics()];
  for (const sf of userFiles) diagnostics.push(...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf));
  const errors = diagnostics.filter((d) => d.getCategory() === ts.DiagnosticCategory.Error).map((d) => toCompileError(ts, d));
  if (errors.length > 0) throw new CompileErrors(errors);
  return { project, entry };
}

function toCompileError(ts: Morph['ts'], d: Diagnostic): CompileError {
  const [message, ...chain] = ts.flattenDiagnosticMessageText(d.compilerObject.messageText, '\n').split('\n');
  const sf = d.getSourceFile();
  const start = d.getStart();
  let loc: SourceLocation | undefined;
  if (sf && start !== undefined) {
    const { line, column } = sf.getLineAndColumnAtPos(start);
    loc = { file: displayPath(sf.getFilePath()), line, column };
  }
  return new CompileError('type', `${message} (TS${d.getCode()})`, loc, undefined, chain.length > 0 ? chain.join('\n') : undefined);
}

// --- discovery -------------------------------------------------------------------------------

/** Exported variables (and `export default`) whose type is api.ts's ModelDefinition. */
function discoverModels({ Node }: Morph, entry: SourceFile, apiSource: SourceFile | undefined): string[] {
  if (!apiSource) return []; // the file never imports 'mnc'
  const isDefinition = (type: Type): boolean => {
    const symbol = type.getAliasSymbol() ?? type.getSymbol();
    return symbol?.getName() === 'ModelDefinition' && symbol.getDeclarations().some((d) => d.getSourceFile() === apiSource);
  };
  const names: string[] = [];
  for (const [name, declarations] of entry.getExportedDeclarations()) {
    const found = declarations.some((d) => {
      if (Node.isVariableDeclaration(d)) return isDefinition(d.getType());
      if (Node.isExpression(d)) return isDefinition(d.getType()); // export default model(…)
      return false;
    });
    if (found) names.push(name);
  }
  return names;
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

function declarationLocation(entry: SourceFile, name: string): SourceLocation | undefined {
  const node = entry.getExportedDeclarations().get(name)?.[0];
  if (!node) return undefined;
  const sf = node.getSourceFile();
  const { line, column } = sf.getLineAndColumnAtPos(node.getStart());
  return { file: displayPath(sf.getFilePath()), line, column };
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

/** Runs the bundle as a CommonJS module whose `require('mnc')` is this compiler's api module. */
function evaluateBundle(bundle: ModelBundle, name: string, file: string): api.ModelDefinition {
  const mnc = Object.freeze({ __esModule: true, ...api });
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
  const definition = module.exports[name];
  if (!api.isModelDefinition(definition)) {
    throw new CompileError('model', `export '${name}' of ${file} is not a model definition at run time (got ${typeof definition})`);
  }
  return definition;
}

// --- helpers --------------------------------------------------------------------------------

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function defaultName(absFile: string): string {
  return absFile.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '');
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** Paths in diagnostics: relative to the working directory when inside it. */
function displayPath(path: string): string {
  const abs = resolve(path);
  return isInside(abs, process.cwd()) ? relative(process.cwd(), abs) : abs;
}
