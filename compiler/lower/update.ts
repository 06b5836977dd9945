// Update archetype: optimizer steps that rewrite a parameter and its state in place, one
// invocation per element. Operands the op writes are bound read_write and assigned; the
// last two are the small hyper-parameter vector every invocation reads and the step check,
// one value: when it is NaN or ±Inf (exponent bits all ones) nothing is written.
import { hyperIndex, type HyperField } from '../ir/ops';
import { elementCount, type TensorType } from '../ir/types';
import type { BindingDesc } from '../../schemas/manifest';
import { kernelHeader, linearGrid, type KernelSubject, type LoweredKernel } from './kernel';
import { elementwiseShell, linearKernel, WORKGROUP } from './pointwise';

export interface UpdateLowering {
  writes: readonly number[];
  body: (x: string[], hyper: (field: HyperField) => string) => string;
}

export function lowerUpdate(node: KernelSubject, operands: readonly TensorType[], name: string, spec: UpdateLowering): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const total = elementCount(node.type.shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const hyperSlot = operands.length - 2;
  const checkSlot = operands.length - 1;
  const bindings: BindingDesc[] = operands.map((_, k) => ({ binding: k, access: spec.writes.includes(k) ? 'read_write' : 'read' }));
  const decls = bindings
    .map((b) => `@group(0) @binding(${b.binding}) var<storage, ${b.access}> in${b.binding}: array<f32>;`)
    .join('\n');
  const elements = operands.slice(0, hyperSlot).map((_, k) => `in${k}[i]`);
  // WGSL has no isNan/isInf, and a compiler may assume floats are finite: test the bits
  const skip = [`  if ((bitcast<u32>(in${checkSlot}[0]) & 0x7f800000u) == 0x7f800000u) {`, '    return;', '  }'].join('\n');
  const body = `${skip}\n${spec.body(elements, (field) => `in${hyperSlot}[${hyperIndex(field)}]`)}`;
  const header = kernelHeader(name, node, operands, 'in-place update');
  const wgsl = elementwiseShell(header, decls, [], total, gridX, body);
  return linearKernel(name, [node.op], wgsl, bindings, grid);
}
