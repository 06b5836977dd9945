// Row-write archetype: cacheWrite's kernel, one invocation per element of the rows written.
// Operand 0 (the cache, a state buffer) is bound read_write and written in place, as update
// ops write theirs; the row offset is read from operand 2 at run time, so one kernel serves
// every position of a decode. With one offset per row (a batch of sequences decoding together)
// row r goes to row offset[r] of the whole cache.
import { cacheWritesPerRow } from '../ir/ops';
import { elementCount, type TensorType } from '../ir/types';
import type { BindingDesc } from '../../schemas/manifest';
import { elementType, kernelHeader, linearGrid, u32, type KernelSubject, type LoweredKernel } from './kernel';
import { elementwiseShell, linearKernel, WORKGROUP } from './pointwise';

export function lowerRowWrite(node: KernelSubject, operands: readonly TensorType[], name: string): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const [cache, rows, offset] = operands;
  const [s, d] = cache.shape.slice(-2);
  const t = rows.shape[rows.shape.length - 2];
  const total = elementCount(rows.shape);
  const perRow = cacheWritesPerRow(cache.shape, rows.shape, offset.shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const bindings: BindingDesc[] = [
    { binding: 0, access: 'read_write' },
    { binding: 1, access: 'read' },
    { binding: 2, access: 'read' },
  ];
  const decls = [
    '@group(0) @binding(0) var<storage, read_write> in0: array<f32>;',
    '@group(0) @binding(1) var<storage, read> in1: array<f32>;',
    `@group(0) @binding(2) var<storage, read> in2: array<${elementType(offset)}>;`,
  ].join('\n');
  // an f32 offset is truncated toward zero and a negative one clamped, as the CPU reference does
  const at = perRow ? 'in2[row]' : 'in2[0]';
  const start = offset.dtype === 'f32' ? `u32(max(${at}, 0.0))` : offset.dtype === 'i32' ? `u32(max(${at}, 0))` : at;
  const body = perRow
    ? [
        `  let row = i / ${u32(d)};`,
        `  let dst = ${start};`,
        `  if (dst >= ${u32(elementCount(cache.shape) / d)}) {`,
        '    return;',
        '  }',
        `  in0[dst * ${u32(d)} + i % ${u32(d)}] = in1[i];`,
      ].join('\n')
    : [
        `  let row = (i / ${u32(d)}) % ${u32(t)};`,
        `  let dst = ${start} + row;`,
        `  if (dst >= ${u32(s)}) {`,
        '    return;',
        '  }',
        `  let batch = i / ${u32(t * d)};`,
        `  in0[(batch * ${u32(s)} + dst) * ${u32(d)} + i % ${u32(d)}] = in1[i];`,
      ].join('\n');
  const header = kernelHeader(name, node, operands, 'row write (in place, run-time offset)');
  const wgsl = elementwiseShell(header, decls, [], total, gridX, body);
  return linearKernel(name, [node.op], wgsl, bindings, grid);
}
