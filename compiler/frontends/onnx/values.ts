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
}

export interface Computed {
  readonly kind: 'computed';
  /** the ONNX data type; float and bool are IR f32 (bool as 0/1), int32/int64 IR i32 */
  readonly dataType: number;
  readonly tensor: Tensor;
}

export type Value = Folded | Computed;

export const folded = (dataType: number, shape: readonly number[], data: Float64Array): Folded => ({ kind: 'folded', dataType, shape: [...shape], data });
export const computed = (dataType: number, tensor: Tensor): Computed => ({ kind: 'computed', dataType, tensor });

export const shapeOf = (v: Value): readonly number[] => (v.kind === 'folded' ? v.shape : v.tensor.shape);
