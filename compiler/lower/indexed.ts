// Indexed archetype: one invocation per output element, running statements the op table
// writes (ir/ops.ts `indexed` lowerings) that read operands at addresses they compute: a
// gather's row at an id read from another operand, rope's partner element half a rotation
// away. The module is the pointwise shell's (256 invocations, a linear grid); integer
// operands are bound as i32/u32 arrays, 16-bit weights as u32 words.
import type { IndexedKernel } from '../ir/ops';
import { elementCount, type TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, linearGrid, type KernelSubject, type LoweredKernel } from './kernel';
import { elementwiseShell, linearKernel, WORKGROUP } from './pointwise';

export function lowerIndexed(node: KernelSubject, operands: readonly TensorType[], name: string, code: IndexedKernel): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const total = elementCount(node.type.shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  // a weight stored as f16 or bf16 (an embedding's table) is read as 32-bit words
  const bound = operands.map((t): TensorType => (t.dtype === 'f16' || t.dtype === 'bf16' ? { shape: t.shape, dtype: 'u32' } : t));
  const { wgsl: decls, bindings } = bindingDecls(bound);
  const header = kernelHeader(name, node, operands, `indexed, ${code.summary}`);
  const wgsl = elementwiseShell(header, decls, code.helpers ?? [], total, gridX, code.statements.map((l) => `  ${l}`).join('\n'));
  return linearKernel(name, [node.op], wgsl, bindings, grid);
}
