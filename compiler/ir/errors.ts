// Compiler diagnostics as values: a kind, a message that reads like a sentence, and where
// it came from (the user's file:line:col, or an imported graph's node name). Only the CLI
// turns them into text on stderr and an exit code.
import type { SourceLocation } from './types';

export type DiagnosticKind =
  | 'type' // TypeScript type errors in a model file
  | 'shape' // an op's shape rule refused its operands
  | 'model' // the model file itself is malformed (no export, bad output, throws)
  | 'validation' // naga refused a generated shader
  | 'input' // bad command-line data (input files, options)
  | 'io' // a file could not be read or written
  | 'limit' // a tensor or buffer is larger than a target's WebGPU limits allow
  | 'autodiff'; // a loss cannot be differentiated (no gradient rule, not a scalar)

export class CompileError extends Error {
  override readonly name = 'CompileError';
  constructor(
    readonly kind: DiagnosticKind,
    message: string,
    readonly loc?: SourceLocation,
    /** the IR op (or imported node) the error is about */
    readonly op?: string,
    /** extra text printed after the message, such as naga's formatted report */
    readonly detail?: string,
  ) {
    super(message);
  }

  /** `file:line:col: error: message`, as compilers print them. */
  format(): string {
    const where = this.loc ? `${this.loc.file}:${this.loc.line}:${this.loc.column}: ` : '';
    const detail = this.detail ? `\n${this.detail.trimEnd()}` : '';
    return `${where}error: ${this.message}${detail}`;
  }
}

export function isCompileError(e: unknown): e is CompileError {
  return e instanceof CompileError;
}

/** Several diagnostics at once (all of a model file's type errors, say). */
export class CompileErrors extends Error {
  override readonly name = 'CompileErrors';
  constructor(readonly errors: readonly CompileError[]) {
    super(errors.map((e) => e.format()).join('\n'));
  }
}
