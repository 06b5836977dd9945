// Pointwise archetype: one invocation per output element. Each operand is read through a
// view (strides per output axis), which covers broadcasting and transposes alike, then a
// chain of `let`s computes the value (one op's expression, or a fused op's whole program);
// the piecewise form picks, per element, the one operand whose range holds it (concat).
import type { Node } from '../ir/graph';
import type { OperandView, PiecewiseView, PointwiseChain } from '../ir/ops';
import { stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, linearGrid, u32, type LoweredKernel } from './kernel';

export const WORKGROUP = 256;

interface Indexing {
  /** statements computing the coordinates c0..c{r-1} from the linear index i */
  coords: string;
  /** the index expression reading a view at those coordinates */
  index: (strides: readonly number[], offset: number, shifted?: { axis: number; start: number }) => string;
}

function indexing(shape: readonly number[], needCoords: boolean): Indexing {
  const outStrides = stridesOf(shape);
  const rank = shape.length;
  const lines: string[] = [];
  if (needCoords && rank > 0) {
    lines.push('  var rem = i;');
    for (let d = 0; d < rank; d++) {
      if (d === rank - 1) lines.push(`  let c${d} = rem;`);
      else lines.push(`  let c${d} = rem / ${u32(outStrides[d])};`, `  rem = rem % ${u32(outStrides[d])};`);
    }
  }
  const contiguous = (strides: readonly number[]) => strides.every((s, d) => s === outStrides[d] || shape[d] === 1);
  return {
    coords: lines.join('\n'),
    index: (strides, offset, shifted) => {
      if (!shifted && offset === 0 && strides.length === rank && contiguous(strides)) return 'i';
      const terms: string[] = [];
      for (let d = 0; d < rank; d++) {
        if (strides[d] === 0 || shape[d] === 1) continue;
        const c = shifted && shifted.axis === d ? `(c${d} - ${u32(shifted.start)})` : `c${d}`;
        terms.push(strides[d] === 1 ? c : `${c} * ${u32(strides[d])}`);
      }
      if (offset !== 0) terms.push(u32(offset));
      return terms.length ? terms.join(' + ') : '0u';
    },
  };
}

/** A module with one invocation per element i < total; `body` runs for each (pointwise, piecewise, update). */
export function elementwiseShell(header: string, decls: string, helpers: readonly string[], total: number, gridX: number, body: string): string {
  return `${header}
${decls}
${helpers.join('\n')}${helpers.length ? '\n' : ''}
const TOTAL: u32 = ${u32(total)};
const GRID_X: u32 = ${u32(gridX)};

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * GRID_X) * ${u32(WORKGROUP)} + lid;
  if (i >= TOTAL) {
    return;
  }
${body}
}
`;
}

export interface PointwiseLowering {
  /** the value at one element, from the operands loaded as x0, x1, ... */
  chain: (x: string[]) => PointwiseChain;
  views: OperandView[];
}

/** A single op's expression as a chain of no `let`s. */
export function singleOpChain(op: string, expr: string, helpers: readonly string[]): PointwiseChain {
  return { lets: [], result: expr, helpers: [...helpers], ops: [op] };
}

/** The chain's statements, indented for a kernel body; each `let` names its op. */
export function chainStatements(chain: PointwiseChain, indent: string): string[] {
  return chain.lets.map((l) => `${indent}let ${l.name} = ${l.expr}; // ${l.op}`);
}

export function lowerPointwise(node: Node, operands: readonly TensorType[], name: string, spec: PointwiseLowering): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const shape = node.type.shape;
  const total = elementCount(shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const outStrides = stridesOf(shape);
  const needCoords = spec.views.some((v) => v.offset !== 0 || v.strides.some((s, d) => s !== outStrides[d] && shape[d] !== 1));
  const ix = indexing(shape, needCoords);
  const loads = spec.views.map((v, k) => `  let x${k} = in${k}[${ix.index(v.strides, v.offset)}];`);
  const chain = spec.chain(spec.views.map((_, k) => `x${k}`));
  const body = [ix.coords, ...loads, ...chainStatements(chain, '  '), `  out[i] = ${chain.result};`].filter(Boolean).join('\n');
  const { wgsl: decls, bindings } = bindingDecls(operands);
  const fused = chain.lets.length > 0;
  const header = fused ? kernelHeader(name, node, operands, `pointwise chain of ${chain.lets.length}`, chain.ops) : kernelHeader(name, node, operands, 'pointwise');
  return {
    kernel: { name, ops: chain.ops, wgsl: elementwiseShell(header, decls, chain.helpers, total, gridX, body), entryPoint: 'main', workgroupBytes: 0, workgroupSize: [WORKGROUP, 1, 1], bindings },
    workgroups: grid,
  };
}

export function lowerPiecewise(node: Node, operands: readonly TensorType[], name: string, views: readonly PiecewiseView[]): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const shape = node.type.shape;
  const total = elementCount(shape);
  const { grid, gridX } = linearGrid(Math.ceil(total / WORKGROUP));
  const ix = indexing(shape, true);
  const branches = views.map((v, k) => {
    const read = `out[i] = in${k}[${ix.index(v.strides, 0, { axis: v.axis, start: v.start })}];`;
    if (k === views.length - 1) return views.length === 1 ? `  ${read}` : `  } else {\n    ${read}\n  }`;
    const test = `c${v.axis} < ${u32(v.end)}`;
    return k === 0 ? `  if (${test}) {\n    ${read}` : `  } else if (${test}) {\n    ${read}`;
  });
  const body = [ix.coords, ...branches].join('\n');
  const { wgsl: decls, bindings } = bindingDecls(operands);
  const header = kernelHeader(name, node, operands, 'piecewise copy');
  return {
    kernel: { name, ops: [node.op], wgsl: elementwiseShell(header, decls, [], total, gridX, body), entryPoint: 'main', workgroupBytes: 0, workgroupSize: [WORKGROUP, 1, 1], bindings },
    workgroups: grid,
  };
}
