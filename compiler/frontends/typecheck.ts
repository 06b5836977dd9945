// The model file's type check: the file and its local imports, against this mnc's API, by
// the TypeScript compiler (through ts-morph). It is the slowest part of reading a model
// (loading TypeScript alone takes about half a second), and nothing else waits on its
// answer, so the frontend runs it on a worker thread beside the rest of the compile
// (typecheck-worker.ts), or here where no worker can start.
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Diagnostic } from 'ts-morph';
import { CompileError } from '../ir/errors';
import type { SourceLocation } from '../ir/types';
import { workerModule } from '../worker-module';
import { displayPath, isInside } from './paths';

// ES2022's lib has no console; model files may still log while they build.
const AMBIENT = `declare var console: { log(...data: unknown[]): void; warn(...data: unknown[]): void; error(...data: unknown[]): void };\n`;

type Morph = typeof import('ts-morph');

/** Every type error of the model file and its local imports (none: it checks). */
export async function typeCheckModel(absFile: string, apiFile: string): Promise<CompileError[]> {
  return typeCheck(await import('ts-morph'), absFile, apiFile);
}

function typeCheck({ Project, ts }: Morph, absFile: string, apiFile: string): CompileError[] {
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
  return diagnostics.filter((d) => d.getCategory() === ts.DiagnosticCategory.Error).map((d) => toCompileError(ts, d));
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

// --- on a worker thread -----------------------------------------------------------------------

/** A type error as it crosses the thread boundary. */
export interface TypeErrorMessage {
  message: string;
  loc?: SourceLocation;
  detail?: string;
}

/** What the worker posts once: the errors, or what stopped it from checking. */
export type TypeCheckAnswer = { errors: TypeErrorMessage[] } | { failed: string };

export function toMessage(e: CompileError): TypeErrorMessage {
  return { message: e.message, loc: e.loc, detail: e.detail };
}

/**
 * Starts the type check on a worker thread and answers its errors; checks here instead
 * where no worker starts or one dies without an answer (the answer is the same).
 */
export function typeCheckBeside(absFile: string, apiFile: string): Promise<CompileError[]> {
  return (async () => {
    const script = await workerModule(import.meta.url, 'typecheck-worker', ['ts-morph']);
    const answer = script ? await onWorker(script, absFile, apiFile) : undefined;
    if (answer && 'errors' in answer) return answer.errors.map((e) => new CompileError('type', e.message, e.loc, undefined, e.detail));
    return typeCheckModel(absFile, apiFile);
  })();
}

function onWorker(script: URL, absFile: string, apiFile: string): Promise<TypeCheckAnswer | undefined> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      // no execArgv: the worker needs none of this process's loaders (tsx, vitest's)
      worker = new Worker(script, { workerData: { absFile, apiFile }, execArgv: [] });
    } catch {
      resolve(undefined);
      return;
    }
    worker.once('message', (answer: TypeCheckAnswer) => resolve(answer));
    worker.once('error', () => resolve(undefined));
    worker.once('exit', () => resolve(undefined));
  });
}
