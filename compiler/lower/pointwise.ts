// Pointwise archetype: one value per output element. Each operand is read through a
// view (strides per output axis), which covers broadcasting and transposes alike, then a
// chain of `let`s computes the value (one op's expression, or a fused op's whole program);
// the piecewise form picks, per element, the one operand whose range holds it (concat).
// When every operand is read in runs of four along the last axis (contiguous, or broadcast
// along it), an invocation reads and writes vec4s; otherwise it takes four scalar elements.
import type { OperandView, PiecewiseView, PointwiseChain } from '../ir/ops';
import { stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import type { BindingDesc } from '../../schemas/manifest';
import { bindingDecls, kernelHeader, linearGrid, u32, type KernelSubject, type LoweredKernel } from './kernel';
import { scalarType, typedBindingDecls, type Access } from './vector';

export const WORKGROUP = 256;
/** Elements per invocation on the scalar path, WORKGROUP apart so a warp's loads stay contiguous. */
export const SCALAR_PER_INVOCATION = 4;

interface Indexing {
  /** statements computing the coordinates c0..c{r-1} from the linear index */
  coords: string;
  /** the index expression reading a view at those coordinates */
  index: (strides: readonly number[], offset: number, shifted?: { axis: number; start: number }) => string;
}

function indexing(shape: readonly number[], needCoords: boolean, linear = 'i'): Indexing {
  const outStrides = stridesOf(shape);
  const rank = shape.length;
  const lines: string[] = [];
  if (needCoords && rank > 0) {
    lines.push(`  var rem = ${linear};`);
    for (let d = 0; d < rank; d++) {
      if (d === rank - 1) lines.push(`  let c${d} = rem;`);
      else lines.push(`  let c${d} = rem / ${u32(outStrides[d])};`, `  rem = rem % ${u32(outStrides[d])};`);
    }
  }
  const contiguous = (strides: readonly number[]) => strides.every((s, d) => s === outStrides[d] || shape[d] === 1);
  return {
    coords: lines.join('\n'),
    index: (strides, offset, shifted) => {
      if (!shifted && offset === 0 && strides.length === rank && contiguous(strides)) return linear;
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

/** A module of WORKGROUP invocations per workgroup on a linear grid GRID_X wide, `body` its main. */
function linearModule(header: string, decls: string, helpers: readonly string[], constants: readonly string[], gridX: number, body: string): string {
  return `${header}
${decls}
${helpers.join('\n')}${helpers.length ? '\n' : ''}
${constants.join('\n')}${constants.length ? '\n' : ''}const GRID_X: u32 = ${u32(gridX)};

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${body}
}
`;
}

/** The kernel of a module built by linearModule or elementwiseShell, dispatched on `workgroups`. */
export function linearKernel(name: string, ops: string[], wgsl: string, bindings: BindingDesc[], workgroups: [number, number, number]): { kernel: LoweredKernel; workgroups: [number, number, number] } {
  return { kernel: { name, ops, wgsl, entryPoint: 'main', workgroupBytes: 0, workgroupSize: [WORKGROUP, 1, 1], bindings }, workgroups };
}

/** A module with one invocation per element i < total; `body` runs for each (pointwise, piecewise, update). */
export function elementwiseShell(header: string, decls: string, helpers: readonly string[], total: number, gridX: number, body: string): string {
  const guard = [`  let i = (wid.x + wid.y * GRID_X) * ${u32(WORKGROUP)} + lid;`, '  if (i >= TOTAL) {', '    return;', '  }'];
  return linearModule(header, decls, helpers, [`const TOTAL: u32 = ${u32(total)};`], gridX, [...guard, body].join('\n'));
}

export interface PointwiseLowering {
  /** the value at one element, from the operands loaded as x0, x1, ... */
  chain: (x: string[]) => PointwiseChain;
  views: OperandView[];
  /**
   * operand `operand` is loaded as the sum of `count` elements `stride` apart (its view gives
   * the first): a split-K product's partial slices, summed as its epilogue reads them
   */
  summed?: { operand: number; count: number; stride: number };
}

/** A single op's expression as a chain of no `let`s. */
export function singleOpChain(op: string, expr: string, helpers: readonly string[]): PointwiseChain {
  return { lets: [], result: expr, helpers: [...helpers], ops: [op] };
}

/** The chain's statements, indented for a kernel body; each `let` names its op. */
export function chainStatements(chain: PointwiseChain, indent: string): string[] {
  return chain.lets.map((l) => `${indent}let ${l.name} = ${l.expr}; // ${l.op}`);
}

/**
 * The output's shape and the operands' views with size-1 axes dropped and neighbouring axes
 * merged wherever every view steps through them as one (a contiguous operand, or one
 * broadcast along both), so indexing does the fewest divisions and runs along the last axis
 * are as long as they can be.
 */
export function collapseAxes(shape: readonly number[], views: readonly OperandView[]): { shape: number[]; views: OperandView[] } {
  const keep = shape.map((_, d) => d).filter((d) => shape[d] !== 1);
  const dims = keep.map((d) => shape[d]);
  const strides = views.map((v) => keep.map((d) => v.strides[d]));
  for (let d = dims.length - 2; d >= 0; d--) {
    if (strides.every((s) => s[d] === s[d + 1] * dims[d + 1])) {
      dims.splice(d, 2, dims[d] * dims[d + 1]);
      for (const s of strides) s.splice(d, 1);
    }
  }
  return { shape: dims, views: views.map((v, k) => ({ strides: strides[k], offset: v.offset })) };
}

/**
 * How each operand can be read four output elements at a time, or undefined when one
 * cannot: the last axis must hold whole vec4s, and an operand must step through it by one
 * (a vec4 at a multiple of four) or not at all (one scalar for all four).
 */
function vectorAccess(shape: readonly number[], views: readonly OperandView[], operands: readonly TensorType[]): ('vec4' | 'splat')[] | undefined {
  const last = shape.length - 1;
  if (last < 0 || shape[last] % 4 !== 0) return undefined;
  const access: ('vec4' | 'splat')[] = [];
  for (const [k, v] of views.entries()) {
    if (v.strides[last] === 0) access.push('splat');
    else if (v.strides[last] === 1 && v.offset % 4 === 0 && v.strides.every((s, d) => d === last || s % 4 === 0) && elementCount(operands[k].shape) % 4 === 0) access.push('vec4');
    else return undefined;
  }
  return access;
}

/** Whether index expressions read coordinates (c0, c1, ...), so the kernel must compute them. */
const usesCoords = (code: readonly string[]) => code.some((line) => /\bc\d+\b/.test(line));

/** `fn element_value(i, x0, x1, ...) -> T`: the chain at output element i, T the result's element type (f32, i32). */
function elementFunction(chain: PointwiseChain, operands: readonly TensorType[], result: TensorType): string {
  const params = ['i: u32', ...operands.map((t, k) => `x${k}: ${scalarType(t)}`)];
  return [`fn element_value(${params.join(', ')}) -> ${scalarType(result)} {`, ...chainStatements(chain, '  '), `  return ${chain.result};`, '}'].join('\n');
}

export function lowerPointwise(node: KernelSubject, operands: readonly TensorType[], name: string, spec: PointwiseLowering): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const total = elementCount(node.type.shape);
  const { shape, views } = collapseAxes(node.type.shape, spec.views);
  const chain = spec.chain(spec.views.map((_, k) => `x${k}`));
  const fused = chain.lets.length > 0;
  const describe = (form: string) =>
    fused ? kernelHeader(name, node, operands, `pointwise chain of ${chain.lets.length}, ${form}`, chain.ops) : kernelHeader(name, node, operands, `pointwise, ${form}`);
  const helpers = [...chain.helpers, elementFunction(chain, operands, node.type)];
  const outStrides = stridesOf(shape);
  // operand k at `index` (in units of `per` elements), or the sum of its slices there
  const summedRead = (k: number, index: string, per: number) => {
    const summed = spec.summed?.operand === k ? spec.summed : undefined;
    if (!summed) return `in${k}[${index}]`;
    if (summed.stride % per !== 0) throw new Error(`${name}: summed slices ${summed.stride} elements apart are not whole vec4s`);
    return Array.from({ length: summed.count }, (_, s) => `in${k}[${s === 0 ? index : `${index} + ${u32((s * summed.stride) / per)}`}]`).join(' + ');
  };
  const identity = (v: OperandView) => v.offset === 0 && v.strides.length === shape.length && v.strides.every((s, d) => s === outStrides[d]);
  const vector = vectorAccess(shape, views, operands);

  if (vector) {
    // vec4 q holds output elements 4q .. 4q+3; coordinates are over the shape with the last axis in vec4s
    const last = shape.length - 1;
    const vecShape = shape.map((d, k) => (k === last ? d / 4 : d));
    const count = total / 4;
    const { grid, gridX } = linearGrid(Math.ceil(count / WORKGROUP));
    const ix = indexing(vecShape, !views.every(identity), 'q');
    const loads = views.map((v, k) => {
      if (vector[k] === 'vec4') {
        const index = identity(v) ? 'q' : ix.index(v.strides.map((s, d) => (d === last ? 1 : s / 4)), v.offset / 4);
        return `  let v${k} = ${summedRead(k, index, 4)};`;
      }
      return `  let s${k} = ${summedRead(k, ix.index(v.strides, v.offset), 1)};`;
    });
    const lanes = ['x', 'y', 'z', 'w'].map((lane, j) => {
      const args = [j === 0 ? 'i' : `i + ${u32(j)}`, ...vector.map((a, k) => (a === 'vec4' ? `v${k}.${lane}` : `s${k}`))];
      return `element_value(${args.join(', ')})`;
    });
    const body = [
      `  let q = (wid.x + wid.y * GRID_X) * ${u32(WORKGROUP)} + lid;`,
      '  if (q >= VEC4S) {',
      '    return;',
      '  }',
      usesCoords(loads) ? ix.coords : '',
      ...loads,
      '  let i = q * 4u;',
      `  out[q] = vec4<${scalarType(node.type)}>(${lanes.join(', ')});`,
    ].filter(Boolean);
    const { wgsl: decls, bindings } = typedBindingDecls(operands, vector.map((a): Access => (a === 'vec4' ? 'vec4' : 'scalar')), 'vec4', node.type.dtype);
    const wgsl = linearModule(describe('vec4 per invocation'), decls, helpers, [`const VEC4S: u32 = ${u32(count)};`], gridX, body.join('\n'));
    return linearKernel(name, chain.ops, wgsl, bindings, grid);
  }

  const per = SCALAR_PER_INVOCATION;
  const { grid, gridX } = linearGrid(Math.ceil(total / (WORKGROUP * per)));
  const ix = indexing(shape, !views.every(identity), 'i');
  const args = ['i', ...views.map((v, k) => summedRead(k, identity(v) ? 'i' : ix.index(v.strides, v.offset), 1))];
  const body = [
    `  let first = (wid.x + wid.y * GRID_X) * ${u32(WORKGROUP * per)} + lid;`,
    `  for (var k = 0u; k < ${u32(per)}; k++) {`,
    `    let i = first + k * ${u32(WORKGROUP)};`,
    '    if (i >= TOTAL) {',
    '      break;',
    '    }',
    usesCoords(args) ? ix.coords.replace(/^/gm, '  ') : '',
    `    out[i] = element_value(${args.join(', ')});`,
    '  }',
  ].filter((l) => l.trim());
  const { wgsl: decls, bindings } = bindingDecls(operands, undefined, node.type.dtype);
  const wgsl = linearModule(describe(`${per} elements per invocation`), decls, helpers, [`const TOTAL: u32 = ${u32(total)};`], gridX, body.join('\n'));
  return linearKernel(name, chain.ops, wgsl, bindings, grid);
}

export function lowerPiecewise(node: KernelSubject, operands: readonly TensorType[], name: string, views: readonly PiecewiseView[]): {
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
  const { wgsl: decls, bindings } = bindingDecls(operands, undefined, node.type.dtype);
  const header = kernelHeader(name, node, operands, 'piecewise copy');
  return linearKernel(name, [node.op], elementwiseShell(header, decls, [], total, gridX, body), bindings, grid);
}
