// Axis archetype: reductions and row-wise normalisations. One workgroup owns one row
// (all elements along the axis for one position of the others); each reduction is a
// strided pass plus a shared-memory tree, and the output is either one value per row or
// one per element. Rows along a middle axis are read with a stride, so no transpose is needed.
import type { Node } from '../ir/graph';
import { axisSplit, type AxisProgram } from '../ir/ops';
import type { TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, linearGrid, u32, type LoweredKernel } from './kernel';

// exactly -FLT_MAX: a decimal that rounds to it is still refused by Tint as out of range
const LOWEST_F32 = '-0x1.fffffep+127f';

function workgroupFor(n: number): number {
  let size = 32;
  while (size < n && size < 256) size *= 2;
  return size;
}

export function lowerAxis(node: Node, operands: readonly TensorType[], name: string, program: AxisProgram): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const x = operands[0];
  const { outer, n, inner } = axisSplit(x.shape, program.axis);
  const rows = outer * inner;
  const wg = workgroupFor(n);
  const { grid, gridX } = linearGrid(rows);
  const at = (j: string) => (inner === 1 ? `base + ${j}` : `base + ${j} * INNER`);

  const passes = program.reductions.map((r) => {
    const combine = (a: string, b: string) => (r.combine === 'add' ? `${a} + ${b}` : `max(${a}, ${b})`);
    const tree: string[] = [];
    for (let s = wg / 2; s >= 1; s /= 2) {
      tree.push(`  if (lid < ${u32(s)}) {`, `    scratch[lid] = ${combine('scratch[lid]', `scratch[lid + ${u32(s)}]`)};`, '  }', '  workgroupBarrier();');
    }
    const total = `${r.name}_total`;
    return [
      `  // reduction ${r.name}: ${r.combine}`,
      `  var ${r.name}_acc: f32 = ${r.combine === 'add' ? '0.0' : LOWEST_F32};`,
      `  for (var j = lid; j < N; j += ${u32(wg)}) {`,
      `    let x = in0[${at('j')}];`,
      `    ${r.name}_acc = ${combine(`${r.name}_acc`, r.term('x'))};`,
      '  }',
      `  scratch[lid] = ${r.name}_acc;`,
      '  workgroupBarrier();',
      ...tree,
      `  let ${total} = scratch[0];`,
      `  let ${r.name} = ${r.finish ? r.finish(total, n) : total};`,
      // every invocation must read the total before the next pass overwrites scratch
      '  workgroupBarrier();',
    ].join('\n');
  });

  const output =
    program.output.per === 'row'
      ? [`  if (lid == 0u) {`, `    out[row] = ${program.output.expr};`, '  }'].join('\n')
      : (() => {
          const extra = operands.slice(1).map((_, k) => `in${k + 1}[j]`);
          const expr = program.output.expr('x', extra);
          return [`  for (var j = lid; j < N; j += ${u32(wg)}) {`, `    let x = in0[${at('j')}];`, `    out[${at('j')}] = ${expr};`, '  }'].join('\n');
        })();

  const { wgsl: decls, bindings } = bindingDecls(operands);
  const header = kernelHeader(name, node, operands, `axis ${program.axis} (${rows} rows of ${n}), workgroup per row`);
  const wgsl = `${header}
${decls}

const ROWS: u32 = ${u32(rows)};
const N: u32 = ${u32(n)};
const INNER: u32 = ${u32(inner)};
const GRID_X: u32 = ${u32(gridX)};

var<workgroup> scratch: array<f32, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * GRID_X;
  if (row >= ROWS) {
    return;
  }
  let base = (row / INNER) * N * INNER + row % INNER;
${passes.join('\n')}
${output}
}
`;
  return {
    kernel: { name, ops: [node.op], wgsl, entryPoint: 'main', workgroupBytes: wg * 4, workgroupSize: [wg, 1, 1], bindings },
    workgroups: grid,
  };
}
