// Value types of the IR: element types, static shapes and the source locations that
// let every diagnostic point at the user's line.
import { isPackedDType, PACKED_DTYPES, type DType, type PackedDType } from '../../schemas/manifest';

export type { DType, PackedDType };
export { isPackedDType };

/**
 * The dtypes a weight may be stored in and matmulQuantized read in place: the packed formats
 * (ggml's block types) and f16 (GGUF's F16, two bytes an element as the f16 dtype stores it).
 */
export type WeightDType = PackedDType | 'f16';
export const isWeightDType = (dtype: string): dtype is WeightDType => dtype === 'f16' || isPackedDType(dtype);

/**
 * The weight dtype that holds a tensor of ggml type `name` (GGUF's type names: F16, BF16, Q8_0,
 * Q4_K, …) in its stored bytes; undefined for F32 (an ordinary f32 parameter) and for the
 * types no kernel reads.
 */
export function weightDTypeOfGgml(name: string): WeightDType | undefined {
  if (name === 'F16') return 'f16';
  return (Object.keys(PACKED_DTYPES) as PackedDType[]).find((d) => PACKED_DTYPES[d].ggml === name);
}

/** Every ggml type a weight dtype holds, with that dtype, in the order ggml-types lists them (F32 is an ordinary parameter). */
export function packedWeightTypes(ggmlNames: readonly string[]): [WeightDType, string][] {
  return ggmlNames.flatMap((name) => {
    const dtype = weightDTypeOfGgml(name);
    return dtype ? [[dtype, name] as [WeightDType, string]] : [];
  });
}

/** Values per block of a weight dtype (1 for f16 and bf16). */
export const blockElements = (dtype: WeightDType): number => (dtype === 'f16' ? 1 : PACKED_DTYPES[dtype].elements);
export type Shape = readonly number[];

export interface TensorType {
  readonly shape: Shape;
  readonly dtype: DType;
}

export interface SourceLocation {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

export function elementCount(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}
