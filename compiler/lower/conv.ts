// Convolution as an implicit GEMM: the output and both gradients of a grouped NCHW convolution
// are products over the same taps, so each runs through the tiled matmul kernel
// (matmul-tiled.ts), or the direct one (matmul-direct.ts) where the target's tuning asks, with operand readers that compute the window's addresses instead of
// reading stored rows (zeros in the padding). Tiling, the target's tuning and the epilogue are
// the product's own. One layer of workgroups per (image, group), or per group for dL/dw; each
// layer's [M, N] block is stored row-major, which is already the NCHW (or OIHW) layout:
//
//   forward         y[n, g·OG + o, p]      = Σ_k  w_g[o, k]          · im2col_n,g[k, p]     M = OG, N = OH·OW, K = CG·KH·KW
//   inputGradient   dx[n, g·CG + c, q]     = Σ_k  w_gᵀ[c, (o,kh,kw)] · dy window[k, q]      M = CG, N = H·W,   K = OG·KH·KW
//   weightGradient  dw[g·OG + o, (c,kh,kw)] = Σ_k dy[o, (n,p)]        · im2col_g[(n,p), ..]  M = OG, N = CG·KH·KW, K = N·OH·OW
import { attrsOf } from '../ir/graph';
import { convEpilogueProgram, convGeometry, convInputGradientGeometry, convWeightGradientGeometry, opDef, renderProgram, type ConvGeometry, type ConvRole, type OpName } from '../ir/ops';
import { broadcastStrides } from '../ir/shape';
import type { TensorType } from '../ir/types';
import type { Target } from '../target/target';
import { bindingDecls, kernelWithVariants, u32, type KernelSubject, type LoweredKernel } from './kernel';
import type { MatmulProblem } from './matmul';
import { directKernel, directSuits } from './matmul-direct';
import { chooseTiling, tiledKernel } from './matmul-tiled';
import { chainStatements } from './pointwise';

/** The geometry of the convolution a node computes, from its operands. */
function geometryOf(role: ConvRole, operands: readonly TensorType[], attrs: KernelSubject['attrs']): ConvGeometry {
  const a = attrs as never;
  if (role === 'forward') return convGeometry(operands[0].shape, operands[1].shape, a);
  if (role === 'inputGradient') return convInputGradientGeometry(operands[0].shape, operands[1].shape, a);
  return convWeightGradientGeometry(operands[0].shape, operands[1].shape, a);
}

/** WGSL lines splitting `index` into coordinates of the given sizes, outermost first (`names[i]` < sizes[i]). */
function split(index: string, names: readonly string[], sizes: readonly number[]): string[] {
  const lines: string[] = [];
  let rest = index;
  for (let i = 0; i < names.length - 1; i++) {
    const inner = sizes.slice(i + 1).reduce((p, d) => p * d, 1);
    lines.push(`let ${names[i]} = ${rest} / ${u32(inner)};`);
    if (i + 1 < names.length - 1) {
      lines.push(`let ${names[i]}_rest = ${rest} % ${u32(inner)};`);
      rest = `${names[i]}_rest`;
    } else {
      lines.push(`let ${names[names.length - 1]} = ${rest} % ${u32(inner)};`);
    }
  }
  if (names.length === 1) lines.push(`let ${names[0]} = ${rest};`);
  return lines;
}

/** A reader function: 0 outside rows × cols of the matrix, else `body`'s value. */
function reader(name: string, comment: string, params: [string, string], extents: [number, number], body: string[]): string {
  return [
    `// ${comment}`,
    `fn ${name}(batch: u32, ${params[0]}: u32, ${params[1]}: u32) -> f32 {`,
    `  if (${params[0]} >= ${u32(extents[0])} || ${params[1]} >= ${u32(extents[1])}) {`,
    '    return 0.0;',
    '  }',
    ...body.map((l) => `  ${l}`),
    '}',
  ].join('\n');
}

/** The input position a tap reads along one axis, and the test that it lies outside the padding. */
function inputAxis(name: string, out: string, tap: string, stride: number, dilation: number, pad: number, size: number): { lines: string[]; outside: string } {
  return {
    lines: [`let ${name} = i32(${out} * ${u32(stride)} + ${tap} * ${u32(dilation)}) - ${pad};`],
    outside: `${name} < 0 || ${name} >= ${size}`,
  };
}

/**
 * The output position a tap at input position `input` comes from along one axis (the input
 * gradient's gather): input + pad - tap·dilation must be a multiple of the stride, within the output.
 */
function outputAxis(name: string, input: string, tap: string, stride: number, dilation: number, pad: number, size: number): { lines: string[]; outside: string } {
  const lines = [`let ${name}_at = i32(${input}) + ${pad} - i32(${tap} * ${u32(dilation)});`];
  if (stride === 1) return { lines: [...lines, `let ${name} = ${name}_at;`], outside: `${name} < 0 || ${name} >= ${size}` };
  return {
    lines: [...lines, `let ${name} = ${name}_at / ${stride};`],
    outside: `${name}_at < 0 || ${name}_at % ${stride} != 0 || ${name} >= ${size}`,
  };
}

interface ImplicitGemm {
  m: number;
  n: number;
  k: number;
  batches: number;
  readA: string;
  readB: string;
}

/** The product, its sizes and readers (WGSL functions named `names`), that computes `role` of the convolution `g`. */
function implicitGemm(role: ConvRole, g: ConvGeometry, names = { a: 'read_a', b: 'read_b' }): ImplicitGemm {
  const [sh, sw] = g.stride;
  const [pt, pl] = g.padding;
  const [dh, dw] = g.dilation;
  const taps = g.kh * g.kw;
  const outside = (...axes: { outside: string }[]) => [`if (${axes.map((a) => a.outside).join(' || ')}) {`, '  return 0.0;', '}'];
  if (role === 'forward') {
    const [m, n, k] = [g.og, g.oh * g.ow, g.cg * taps];
    const ih = inputAxis('ih', 'oh', 'kh', sh, dh, pt, g.h);
    const iw = inputAxis('iw', 'ow', 'kw', sw, dw, pl, g.w);
    return {
      m, n, k, batches: g.n * g.groups,
      readA: reader(names.a, `A = the group's weights [OG, CG·KH·KW] (layer batch = image · ${g.groups} + group)`, ['row', 'k'], [m, k], [
        `return in1[((batch % ${u32(g.groups)}) * ${u32(g.og)} + row) * ${u32(k)} + k];`,
      ]),
      readB: reader(names.b, "B = im2col of the image's group of channels [CG·KH·KW, OH·OW]", ['k', 'col'], [k, n], [
        ...split('k', ['c', 'kh', 'kw'], [g.cg, g.kh, g.kw]),
        ...split('col', ['oh', 'ow'], [g.oh, g.ow]),
        ...ih.lines,
        ...iw.lines,
        ...outside(ih, iw),
        `let channel = (batch / ${u32(g.groups)}) * ${u32(g.c)} + (batch % ${u32(g.groups)}) * ${u32(g.cg)} + c;`,
        `return in0[(channel * ${u32(g.h)} + u32(ih)) * ${u32(g.w)} + u32(iw)];`,
      ]),
    };
  }
  if (role === 'inputGradient') {
    const [m, n, k] = [g.cg, g.h * g.w, g.og * taps];
    const oh = outputAxis('oh', 'ih', 'kh', sh, dh, pt, g.oh);
    const ow = outputAxis('ow', 'iw', 'kw', sw, dw, pl, g.ow);
    return {
      m, n, k, batches: g.n * g.groups,
      readA: reader(names.a, "A = the group's weights transposed [CG, OG·KH·KW] (layer batch = image · groups + group)", ['row', 'k'], [m, k], [
        ...split('k', ['o', 'tap'], [g.og, taps]),
        `return in1[(((batch % ${u32(g.groups)}) * ${u32(g.og)} + o) * ${u32(g.cg)} + row) * ${u32(taps)} + tap];`,
      ]),
      readB: reader(names.b, "B = dy at the outputs each input position feeds [OG·KH·KW, H·W], 0 where none", ['k', 'col'], [k, n], [
        ...split('k', ['o', 'kh', 'kw'], [g.og, g.kh, g.kw]),
        ...split('col', ['ih', 'iw'], [g.h, g.w]),
        ...oh.lines,
        ...ow.lines,
        ...outside(oh, ow),
        `let channel = (batch / ${u32(g.groups)}) * ${u32(g.o)} + (batch % ${u32(g.groups)}) * ${u32(g.og)} + o;`,
        `return in0[(channel * ${u32(g.oh)} + u32(oh)) * ${u32(g.ow)} + u32(ow)];`,
      ]),
    };
  }
  const [m, n, k] = [g.og, g.cg * taps, g.n * g.oh * g.ow];
  const ih = inputAxis('ih', 'oh', 'kh', sh, dh, pt, g.h);
  const iw = inputAxis('iw', 'ow', 'kw', sw, dw, pl, g.w);
  return {
    m, n, k, batches: g.groups,
    readA: reader(names.a, "A = the group's dy [OG, N·OH·OW] (layer batch = group)", ['row', 'k'], [m, k], [
      ...split('k', ['image', 'p'], [g.n, g.oh * g.ow]),
      `return in1[(image * ${u32(g.o)} + batch * ${u32(g.og)} + row) * ${u32(g.oh * g.ow)} + p];`,
    ]),
    readB: reader(names.b, "B = im2col of the group's channels over every image [N·OH·OW, CG·KH·KW]", ['k', 'col'], [k, n], [
      ...split('k', ['image', 'oh', 'ow'], [g.n, g.oh, g.ow]),
      ...split('col', ['c', 'kh', 'kw'], [g.cg, g.kh, g.kw]),
      ...ih.lines,
      ...iw.lines,
      ...outside(ih, iw),
      `let channel = image * ${u32(g.c)} + batch * ${u32(g.cg)} + c;`,
      `return in0[(channel * ${u32(g.h)} + u32(ih)) * ${u32(g.w)} + u32(iw)];`,
    ]),
  };
}

/** The sizes of the product a convolution op's node computes (undefined for other ops), for the schedules that split it. */
export function convProductOf(op: string, operands: readonly TensorType[], attrs: KernelSubject['attrs']): { m: number; n: number; k: number; batches: number } | undefined {
  const lowering = opDef(op as OpName).lowering;
  if (lowering.archetype !== 'convolution') return undefined;
  const { m, n, k, batches } = implicitGemm(lowering.role, geometryOf(lowering.role, operands, attrs));
  return { m, n, k, batches };
}

/**
 * Split-K's readers: layer z of `splits` × `batches` reads slice z / batches of K of the
 * whole product's layer z % batches, through the whole product's readers (conv_a, conv_b).
 */
function sliceReaders(whole: ImplicitGemm, splits: number): { a: string; b: string; k: number } {
  const k = whole.k / splits;
  const slice = (name: string, params: [string, string], kFirst: boolean) => {
    const at = (split: string) => (kFirst ? `${split} * ${u32(k)} + k, ${params[1]}` : `${params[0]}, ${split} * ${u32(k)} + k`);
    return [
      `// slice batch / ${whole.batches} of K (${k} of ${whole.k}) of layer batch % ${whole.batches}`,
      `fn read_${name}(batch: u32, ${params.map((q) => `${q}: u32`).join(', ')}) -> f32 {`,
      `  if (k >= ${u32(k)}) {`,
      '    return 0.0;',
      '  }',
      `  return conv_${name}(batch % ${u32(whole.batches)}, ${at(`(batch / ${u32(whole.batches)})`)});`,
      '}',
    ].join('\n');
  };
  return { a: slice('a', ['row', 'k'], false), b: slice('b', ['k', 'col'], true), k };
}

/**
 * The kernels of a convolution node (or its gradient's): the tiled matmul kernel over the
 * implicit product, its tiling chosen for M, N and the layers as for any product (or the
 * direct kernel, for products the target's MatmulTuning.directMacs/directRows take). A fused
 * convolution's epilogue (scale, shift, activation, residual) runs on each value as it is
 * stored. With `splits` (split-K: the node is its partial products' step) each layer of the
 * product runs as that many layers, one slice of K each, stacked on a new first axis.
 */
export function lowerConvolution(node: KernelSubject, operands: readonly TensorType[], name: string, target: Target, role: ConvRole, splits = 1): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const geometry = geometryOf(role, operands, node.attrs);
  const whole = implicitGemm(role, geometry, splits > 1 ? { a: 'conv_a', b: 'conv_b' } : undefined);
  const sliced = splits > 1 ? sliceReaders(whole, splits) : undefined;
  const gemm = sliced
    ? { ...whole, k: sliced.k, batches: whole.batches * splits, readA: `${whole.readA}\n${sliced.a}`, readB: `${whole.readB}\n${sliced.b}` }
    : whole;
  if (gemm.batches > 65535) throw new Error(`${node.op} ${node.name}: ${gemm.batches} layers (images × groups${splits > 1 ? ' × slices of K' : ''}) exceed one grid dimension`);
  const program = node.op === 'fusedConv2d' && splits === 1 ? convEpilogueProgram(attrsOf(node, 'fusedConv2d')) : [];
  const extras = program.length > 0 ? operands.slice(2) : [];
  const chain = renderProgram(program, ['x0', ...extras.map((_, j) => `x${j + 1}`)]);
  const ops = [node.op === 'fusedConv2d' ? 'conv2d' : node.op, ...chain.ops];
  // an epilogue operand at output (row, col) of layer `batch`: its broadcast strides over [N, O, OH, OW]
  const coordinates = (row: string, col: string) => [
    `(batch / ${u32(geometry.groups)})`,
    `((batch % ${u32(geometry.groups)}) * ${u32(geometry.og)} + ${row})`,
    `(${col} / ${u32(geometry.ow)})`,
    `(${col} % ${u32(geometry.ow)})`,
  ];
  const extraIndex = (j: number, row: string, col: string) => {
    const at = coordinates(row, col);
    const terms = broadcastStrides(extras[j].shape, node.type.shape).flatMap((s, d) => (s === 0 ? [] : [s === 1 ? at[d] : `${at[d]} * ${u32(s)}`]));
    return terms.length ? terms.join(' + ') : '0u';
  };
  const p: MatmulProblem = {
    name,
    node,
    operands,
    form: { transposeA: false, transposeB: false, extraViews: [], epilogue: () => chain, ops },
    m: gemm.m,
    n: gemm.n,
    k: gemm.k,
    kStored: gemm.k,
    batches: gemm.batches,
    transposeA: false,
    transposeB: false,
    batchOffsets: [],
    chain,
    plainStore: program.length === 0,
    epilogue: (product, row, col, indent) => {
      if (program.length === 0) return { lines: [], value: product };
      const loads = extras.map((_, j) => `${indent}let x${j + 1} = in${j + 2}[${extraIndex(j, row, col)}];`);
      return { lines: [`${indent}let x0 = ${product};`, ...loads, ...chainStatements(chain, indent)], value: chain.result };
    },
    extraVec4: extras.map(() => false),
    extraIndex,
    storeAt: (index, value) => `out[${index}] = ${value};`,
    readers: { a: gemm.readA, b: gemm.readB },
  };
  const { bindings } = bindingDecls(operands);
  const choices = directSuits(p, target.tuning.matmul)
    ? [{ tag: 'direct', features: [], code: directKernel(p) }]
    : chooseTiling(p, target.tuning.matmul).map((c) => ({ tag: c.tag, features: [], code: tiledKernel(p, c.config) }));
  return kernelWithVariants(name, ops, bindings, choices[choices.length - 1].code, choices.slice(0, -1));
}
