// Binding declarations for kernels that read some operands four elements at a time. Same
// contract as kernel.ts's bindingDecls (operands in order, read-only, as in0, in1, ...; then
// the output as `out`, read_write, f32 unless given); only the element type of each array differs.
import type { BindingDesc } from '../../schemas/manifest';
import type { TensorType } from '../ir/types';

/** How a kernel reads one binding: one element per array entry, or four (`array<vec4<T>>`). */
export type Access = 'scalar' | 'vec4';

const WGSL_ELEMENT: Record<string, string> = { f32: 'f32', i32: 'i32', u32: 'u32' };

/** The WGSL scalar type of a tensor's elements. */
export function scalarType(t: TensorType): string {
  const type = WGSL_ELEMENT[t.dtype];
  if (!type) throw new Error(`no kernel reads ${t.dtype} buffers yet`);
  return type;
}

export function arrayType(t: TensorType, access: Access): string {
  return access === 'vec4' ? `vec4<${scalarType(t)}>` : scalarType(t);
}

/** The bindings block with each operand (and the output) declared as `access` says. */
export function typedBindingDecls(operands: readonly TensorType[], access: readonly Access[], output: Access, outputDType: TensorType['dtype'] = 'f32'): { wgsl: string; bindings: BindingDesc[] } {
  const lines: string[] = [];
  const bindings: BindingDesc[] = [];
  for (const [k, t] of operands.entries()) {
    lines.push(`@group(0) @binding(${k}) var<storage, read> in${k}: array<${arrayType(t, access[k])}>;`);
    bindings.push({ binding: k, access: 'read' });
  }
  const result: TensorType = { shape: [], dtype: outputDType };
  lines.push(`@group(0) @binding(${operands.length}) var<storage, read_write> out: array<${arrayType(result, output)}>;`);
  bindings.push({ binding: operands.length, access: 'read_write' });
  return { wgsl: lines.join('\n'), bindings };
}
