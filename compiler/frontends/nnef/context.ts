// What one NNEF operation's converter sees: its arguments bound to the operation's
// parameters (tensors as IR values, attributes as literals, defaults filled in), the graph
// to record into, and `fail`, whose errors carry the assignment's line and column in
// graph.nnef and name the operation. Values follow NNEF's broadcasting, which aligns shapes
// at their first axis (trailing axes of size 1 may be left out: [1, C] against [N, C, H, W]
// is [1, C, 1, 1]), where the IR's aligns them at the last as numpy does; `align` pads the
// shorter shapes with trailing 1s so the two agree.
import { CompileError } from '../../ir/errors';
import type { Graph, Tensor } from '../../ir/graph';
import type { OpName } from '../../ir/ops';
import { elementCount, formatShape, type SourceLocation } from '../../ir/types';
import type { Literal } from './operations';

export type NnefType = 'scalar' | 'integer' | 'logical';

/** A tensor of the graph: its IR value (logical as 0/1 float) and its NNEF element type. */
export interface NnefValue {
  tensor: Tensor;
  type: NnefType;
}

export type Bound = { kind: 'tensor'; value: NnefValue } | { kind: 'tensors'; values: NnefValue[] } | { kind: 'literal'; value: Literal };

/** The most elements a constant made at compile time may hold (weights come from .dat files, not literals). */
export const CONSTANT_LIMIT = 1 << 24;

/** Refuses integer tensors: the plan computes float32 (logical as 0/1). */
export function floats(ctx: OperationContext, ...values: NnefValue[]): Tensor[] {
  for (const v of values) if (v.type === 'integer') ctx.fail('computing on integer tensors is not supported (the plan computes float32 and logical values)');
  return values.map((v) => v.tensor);
}

/** One entry per result of the operation: a tensor, or an array of tensors. */
export type Results = (NnefValue | NnefValue[])[];
export type Converter = (ctx: OperationContext) => Results;

export class OperationContext {
  constructor(
    readonly g: Graph,
    readonly op: string,
    private readonly args: ReadonlyMap<string, Bound>,
    readonly loc: SourceLocation,
  ) {}

  fail(message: string, kind: 'model' | 'shape' = 'model'): never {
    throw new CompileError(kind, `${this.op}: ${message}`, this.loc, this.op);
  }

  // --- arguments -----------------------------------------------------------------------

  private arg(name: string): Bound {
    const a = this.args.get(name);
    if (!a) throw new Error(`internal: ${this.op} has no parameter '${name}'`);
    return a;
  }
  /** A tensor argument; a literal becomes a scalar constant. */
  tensor(name: string): NnefValue {
    const a = this.arg(name);
    if (a.kind === 'tensor') return a.value;
    if (a.kind === 'literal' && (typeof a.value === 'number' || typeof a.value === 'boolean')) {
      return { tensor: this.g.constant(Number(a.value)), type: typeof a.value === 'boolean' ? 'logical' : 'scalar' };
    }
    return this.fail(`'${name}' must be a tensor or a number`);
  }
  /** A tensor argument given as a number literal (a default such as bias = 0.0), else undefined. */
  literalNumber(name: string): number | undefined {
    const a = this.arg(name);
    return a.kind === 'literal' && typeof a.value === 'number' ? a.value : undefined;
  }
  tensors(name: string): NnefValue[] {
    const a = this.arg(name);
    if (a.kind !== 'tensors') return this.fail(`'${name}' must be an array of tensors`);
    return a.values;
  }
  private literal(name: string): Literal {
    const a = this.arg(name);
    if (a.kind !== 'literal') this.fail(`'${name}' must be a literal, not a tensor`);
    return a.value;
  }
  int(name: string): number {
    return this.literal(name) as number;
  }
  ints(name: string): number[] {
    return [...(this.literal(name) as number[])];
  }
  pairs(name: string): [number, number][] {
    return (this.literal(name) as number[][]).map((pair) => [pair[0], pair[1]]);
  }
  scalar(name: string): number {
    return this.literal(name) as number;
  }
  logical(name: string): boolean {
    return this.literal(name) as boolean;
  }
  string(name: string): string {
    return this.literal(name) as string;
  }
  values(name: string): Literal[] {
    return [...(this.literal(name) as Literal[])];
  }

  // --- recording -----------------------------------------------------------------------

  /** Records an IR op, a shape rule's refusal becoming this operation's error. */
  record(op: OpName, operands: readonly Tensor[], attrs: object = {}): Tensor {
    try {
      return this.g.at(this.loc, () => this.g.apply(op, operands, attrs));
    } catch (e) {
      if (e instanceof CompileError) this.fail(e.message, 'shape');
      throw e;
    }
  }
  scalarConstant(v: number): Tensor {
    return this.g.at(this.loc, () => this.g.constant(v));
  }
  constant(values: Float32Array, shape: readonly number[]): Tensor {
    return this.g.at(this.loc, () => this.g.constant(values, shape));
  }
  /** `v` filled into `shape` without storing every element. */
  filled(v: number, shape: readonly number[]): Tensor {
    const s = this.scalarConstant(v);
    return shape.length === 0 ? s : this.record('broadcast', [s], { shape: [...shape] });
  }
  reshape(t: Tensor, shape: readonly number[]): Tensor {
    if (t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])) return t;
    if (elementCount(t.shape) !== elementCount(shape)) this.fail(`cannot reshape ${formatShape(t.shape)} (${elementCount(t.shape)} elements) to ${formatShape(shape)} (${elementCount(shape)})`, 'shape');
    return this.record('reshape', [t], { shape: [...shape] });
  }
  transpose(t: Tensor, perm: readonly number[]): Tensor {
    if (perm.every((p, i) => p === i)) return t;
    return this.record('transpose', [t], { perm: [...perm] });
  }

  /** NNEF broadcasting: each value of lower rank (except scalars) gets trailing axes of size 1. */
  align(...values: Tensor[]): Tensor[] {
    const rank = Math.max(...values.map((t) => t.shape.length));
    return values.map((t) => (t.shape.length === 0 || t.shape.length === rank ? t : this.reshape(t, [...t.shape, ...Array(rank - t.shape.length).fill(1)])));
  }
  /** Normalises an axis, refusing one outside [0, rank) (NNEF axes are never negative). */
  axis(axis: number, rank: number, what = 'axis'): number {
    if (!Number.isInteger(axis) || axis < 0 || axis >= rank) this.fail(`${what} ${axis} is out of range for a tensor of rank ${rank} (NNEF axes count from 0)`);
    return axis;
  }
}
