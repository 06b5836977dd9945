// What an ONNX tensor name stands for while a graph is imported: a value known at compile
// time (folded: shape arithmetic, constants, integer tensors) or an IR tensor computed at
// run time. Ops whose operands are all known are evaluated at once with the op table's CPU
// reference, so exported shape subgraphs (Shape → Gather → Concat → Reshape) vanish.
import type { Tensor } from '../../ir/graph';

export interface Folded {
  readonly kind: 'folded';
  /** the ONNX data type (TensorProto.DataType) */
  readonly dataType: number;
  readonly shape: readonly number[];
  readonly data: Float64Array;
  /** the initializer or Constant output it came from, for messages about its values */
  readonly name?: string;
}

export interface Computed {
  readonly kind: 'computed';
  /** the ONNX data type; float and bool are IR f32 (bool as 0/1), every integer type IR i32 */
  readonly dataType: number;
  readonly tensor: Tensor;
}

export type Value = Folded | Computed;

/** The most elements a value folded at compile time may hold (shape arithmetic and masks are far smaller). */
export const FOLD_LIMIT = 1 << 24;

export class FoldLimitError extends Error {}

export function folded(dataType: number, shape: readonly number[], data: Float64Array, name?: string): Folded {
  return name === undefined ? { kind: 'folded', dataType, shape: [...shape], data } : { kind: 'folded', dataType, shape: [...shape], data, name };
}

/** Elements of a value about to be folded, refused past FOLD_LIMIT (before anything is allocated). */
export function foldable(shape: readonly number[]): number {
  const n = shape.reduce((a, d) => a * d, 1);
  if (!(n <= FOLD_LIMIT) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new FoldLimitError(`a tensor of shape [${shape.join(', ')}] cannot be computed at compile time (negative, fractional or more than ${FOLD_LIMIT} elements)`);
  }
  return n;
}
export const computed = (dataType: number, tensor: Tensor): Computed => ({ kind: 'computed', dataType, tensor });

export const shapeOf = (v: Value): readonly number[] => (v.kind === 'folded' ? v.shape : v.tensor.shape);

/** ONNX names in scope while a graph imports: a subgraph's own, then its enclosing graph's. */
export class Scope {
  private readonly own = new Map<string, Value>();
  constructor(private readonly outer?: Scope) {}
  get(name: string): Value | undefined {
    return this.own.get(name) ?? this.outer?.get(name);
  }
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
  set(name: string, v: Value): void {
    this.own.set(name, v);
  }
}
