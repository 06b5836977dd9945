// Matmul archetype: C[b] = A[b] · B[b] over the last two axes, batch axes broadcast, with an
// optional fused form (A or B read transposed, an epilogue on each value before it is stored).
// This file describes the problem once (sizes, batch offsets, epilogue, bindings) and picks
// kernels for it at compile time: a register-blocked tiled kernel (matmul-tiled.ts) whose
// tiling suits the shape, or for a few rows (M ≤ 16) a GEMV-style kernel (matmul-gemv.ts).
// The kernel itself is the portable variant (16 KiB workgroup storage, 256 invocations);
// faster variants (today: subgroups for small-M products with B stored along K) come before
// it, each on the same grid.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import type { FusedMatmulAttrs, MatmulForm, OperandView, PointwiseChain } from '../ir/ops';
import { broadcastStrides, stridesOf } from '../ir/shape';
import { elementCount, isWeightDType, type Shape, type TensorType } from '../ir/types';
import type { Target } from '../target/target';
import { bindingDecls, kernelHeader, kernelWithVariants, u32, type KernelCode, type KernelSubject, type LoweredKernel } from './kernel';
import { directKernel, directSuits } from './matmul-direct';
import { chooseGemv, gemvKernel } from './matmul-gemv';
import { chooseTiling, tiledKernel } from './matmul-tiled';
import { chainStatements } from './pointwise';

/**
 * How stream-K divides a product's output tiles (row-major over batch, rows, columns) among
 * workgroups: the first `dataParallel` tiles one workgroup each, whole; the rest's K
 * iterations laid end to end, tile after tile, and cut into `units` runs of `unitK` (the
 * last shorter), one workgroup each. A run's piece of tile t (counted from the first shared
 * tile) is partial tile `unit + t`: no two pieces share that index.
 */
export interface StreamKSchedule {
  tileM: number;
  tileN: number;
  tiles: number;
  dataParallel: number;
  units: number;
  /** a multiple of 16 (the tiled kernel's deepest slice), as K must be */
  unitK: number;
}

/**
 * A product's form as lowering schedules it: the op table's form, with split-K's slices or
 * one of stream-K's two kernels.
 */
export interface ScheduledForm extends MatmulForm {
  /** partial products over this many equal slices of K, stacked on a new first axis of the result */
  splits?: number;
  /**
   * one of stream-K's two kernels (lower/stream-k.ts): the partial tiles of the shared K
   * iterations, or the product (whole tiles, then the shared ones summed from the partials,
   * its last operand); `product` is the shape of A·B
   */
  streamK?: { role: 'partials' | 'product'; schedule: StreamKSchedule; product: Shape };
}

/** Everything a matmul kernel generator needs about one product, shared by every variant. */
export interface MatmulProblem {
  name: string;
  node: KernelSubject;
  operands: readonly TensorType[];
  form?: ScheduledForm;
  m: number;
  n: number;
  /** the K each output sums over (with splits: one slice's) */
  k: number;
  /** the stored length along K of A's rows (plain) and B's (transposed): K, or all the slices' with splits */
  kStored: number;
  /** workgroup layers: batches, times splits (layer z = split · batches + batch) */
  batches: number;
  transposeA: boolean;
  transposeB: boolean;
  /** statements computing a_base and b_base (element offsets of this batch's A and B) from `batch` */
  batchOffsets: string[];
  chain: PointwiseChain;
  /** each value is stored as computed: no epilogue code, vec4 stores */
  plainStore: boolean;
  /**
   * the epilogue as statements ending in a value, for the output at (row, col); plain: the
   * product itself. (EpilogueOptions: operands already read, where the norm scale is)
   */
  epilogue(product: string, row: string, col: string, indent: string, options?: EpilogueOptions): { lines: string[]; value: string };
  /**
   * per epilogue operand, whether four neighbouring outputs (col a multiple of 4, N too) read
   * four neighbouring elements from a multiple of 4: then it may be bound and read as vec4s
   */
  extraVec4: boolean[];
  /** the index of epilogue operand j at output (row, col), in elements */
  extraIndex(j: number, row: string, col: string): string;
  /**
   * operands read through an address map rather than stored rows (an implicit GEMM such as
   * convolution): WGSL defining `fn read_a(batch: u32, row: u32, k: u32) -> f32` and
   * `fn read_b(batch: u32, k: u32, col: u32) -> f32`, each 0 outside the matrix; or for B,
   * `b4`: `fn read_b4(batch: u32, row: u32, col: u32) -> vec4<f32>`, the four values at
   * columns col..col + 3 (col a multiple of 4) of B's stored row `row` (B plain: row k, columns
   * along N; transposed: row n, columns along K), 0 outside, for operands decoded four at a
   * time (packed weights, lower/matmul-quantized.ts)
   */
  readers?: { a?: string; b?: string; b4?: string };
  /**
   * A read through RMSNorm: its weight is binding `in${weight}`, which scales A as it is read,
   * and the kernel computes each row's 1/rms, which scales the product in the epilogue (by
   * default read from `norm_scale[row]`; EpilogueOptions.normScale says where else)
   */
  norm?: { eps: number; weight: number };
  /**
   * a rope of the epilogue's value (the form's, see MatmulForm.rope; B read transposed):
   * `position(row)` is the WGSL f32 position of a row of this batch. The small-M and tiled
   * kernels compute columns in pair order, `rope_column(c)` the column computed at c
   * (in each head's rotated part, a group of 4 holds the pairs (2g, 2g + H) and (2g + 1, 2g + 1 + H), H = rotaryDim/2)
   */
  rope?: NonNullable<MatmulForm['rope']> & { position(row: string): string };
  /**
   * a product written into a KV cache (the form's `cache`): `operands` leave the cache out,
   * whose buffer is bound as `out`, and values land at cache_index of their flat element
   */
  cache?: NonNullable<MatmulForm['cache']>;
  /** WGSL storing `value` as the result's flat element `index` (through cache_index into a cache) */
  storeAt(index: string, value: string): string;
}

/** How a kernel's epilogue call differs from the default. */
export interface EpilogueOptions {
  /** `given[j]`, where set, is epilogue operand j's value already read */
  given?: readonly (string | undefined)[];
  /** with a fused RMSNorm, the WGSL of the row's 1/rms (default `norm_scale[row]`) */
  normScale?: string;
}

/** The largest M the GEMV-style kernel takes; above it the tiled kernel reuses B better. */
export const SMALL_M = 16;

const PLAIN_PRODUCT: FusedMatmulAttrs = { transposeA: false, transposeB: false, activation: 'none', bias: false, gate: false, residual: false, norm: false, eps: 0, rope: false, offsets: false, cache: false };

/** A matmul or fusedMatmul node's fused attributes (a matmul's are the plain ones). */
export const productAttrs = (node: Node): FusedMatmulAttrs => (node.op === 'fusedMatmul' ? attrsOf(node, 'fusedMatmul') : PLAIN_PRODUCT);

/**
 * The product a matmul or fusedMatmul node computes, as the passes that split it see it:
 * its sizes, its batch count and its fused attributes.
 * Undefined for any other node, for products of at most SMALL_M rows, whose small-M
 * kernel splits K itself, for products of a packed B, and for products whose epilogue needs
 * the whole sum over K in the kernel (a fused RMSNorm's row scale, a rope's pairs, a cache's
 * stores).
 */
export function tiledProductOf(graph: Graph, node: Node): { m: number; n: number; k: number; batches: number; attrs: FusedMatmulAttrs } | undefined {
  if (node.op !== 'matmul' && node.op !== 'fusedMatmul') return undefined;
  // a packed B has its own kernels (matmul-quantized.ts), which split nothing
  if (isWeightDType(graph.nodes[node.inputs[1]].type.dtype)) return undefined;
  const out = node.type.shape;
  const [m, n] = out.slice(-2);
  if (m <= SMALL_M) return undefined;
  const attrs = productAttrs(node);
  if (attrs.norm || attrs.rope || attrs.cache) return undefined;
  const a = graph.nodes[node.inputs[0]].type.shape;
  const k = attrs.transposeA ? a[a.length - 2] : a[a.length - 1];
  return { m, n, k, batches: elementCount(out.slice(0, -2)), attrs };
}

/** The index of an epilogue operand at the output element: batch coordinates bc{d}, then row and col. */
function viewIndex(view: OperandView, batchRank: number, row: string, col: string): string {
  const terms: string[] = [];
  view.strides.forEach((s, d) => {
    if (s === 0) return;
    const c = d < batchRank ? `bc${d}` : d === batchRank ? row : col;
    terms.push(s === 1 ? c : `${c} * ${u32(s)}`);
  });
  if (view.offset !== 0) terms.push(u32(view.offset));
  return terms.length ? terms.join(' + ') : '0u';
}

const PLAIN_CHAIN: PointwiseChain = { lets: [], result: 'x0', helpers: [], ops: [] };

export function matmulProblem(node: KernelSubject, operands: readonly TensorType[], name: string, form?: ScheduledForm): MatmulProblem {
  const transposeA = form?.transposeA ?? false;
  const transposeB = form?.transposeB ?? false;
  const [a, b] = operands;
  const splits = form?.splits ?? 1;
  // the product's shape: the result's, less the slices' axis (split-K) or the partial tiles' shape (stream-K)
  const out = splits > 1 ? node.type.shape.slice(1) : form?.streamK?.role === 'partials' ? form.streamK.product : (form?.cache?.product ?? node.type.shape);
  const [m, n] = out.slice(-2);
  const kStored = transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  const k = kStored / splits;
  const batchShape = out.slice(0, -2);
  const batches = elementCount(batchShape) * splits;
  if (batches > 65535) throw new Error(`matmul ${node.name}: ${batches} batches${splits > 1 ? ' and slices of K' : ''} exceed one grid dimension`);

  // per layer: offsets of A's and B's matrices (broadcast batch axes read matrix 0), then of the slice of K
  const aStrides = broadcastStrides(a.shape.slice(0, -2), batchShape);
  const bStrides = broadcastStrides(b.shape.slice(0, -2), batchShape);
  const batchStrides = stridesOf(batchShape);
  const batchOffsets: string[] = ['  var a_base = 0u;', '  var b_base = 0u;'];
  if (batchShape.length > 0) {
    batchOffsets.push(`  var rem = batch${splits > 1 ? ` % ${u32(batches / splits)}` : ''};`);
    for (let d = 0; d < batchShape.length; d++) {
      batchOffsets.push(`  let bc${d} = rem / ${u32(batchStrides[d])};`, `  rem = rem % ${u32(batchStrides[d])};`);
      if (aStrides[d]) batchOffsets.push(`  a_base += bc${d} * ${u32(aStrides[d] * m * kStored)};`);
      if (bStrides[d]) batchOffsets.push(`  b_base += bc${d} * ${u32(bStrides[d] * kStored * n)};`);
    }
  }
  if (splits > 1) {
    // slice s starts K·s columns into A's rows ([.., M, K]) or K·s rows down ([.., K, M]), likewise B
    batchOffsets.push(
      `  let split = batch / ${u32(batches / splits)};`,
      `  a_base += split * ${u32(transposeA ? k * m : k)};`,
      `  b_base += split * ${u32(transposeB ? k : k * n)};`,
    );
  }

  const extraViews = form?.extraViews ?? [];
  const chain = form ? form.epilogue('x0', extraViews.map((_, j) => `x${j + 1}`)) : PLAIN_CHAIN;
  const extraIndex = (j: number, row: string, col: string) => viewIndex(extraViews[j], batchShape.length, row, col);
  const norm = form?.norm ? { eps: form.norm.eps, weight: form.norm.operand } : undefined;
  const epilogue = (rawProduct: string, row: string, col: string, indent: string, { given = [], normScale = `norm_scale[${row}]` }: EpilogueOptions = {}) => {
    // rmsNorm(a)·b = diag(1/rms)·((a ⊙ weight)·b): the weight scales A as it is read, 1/rms each row here
    const product = norm ? `${rawProduct} * ${normScale}` : rawProduct;
    if (!form) return { lines: [], value: product };
    const loads = extraViews.map((_, j) => `${indent}let x${j + 1} = ${given[j] ?? `in${j + 2}[${extraIndex(j, row, col)}]`};`);
    return { lines: [`${indent}let x0 = ${product};`, ...loads, ...chainStatements(chain, indent)], value: chain.result };
  };
  const extraVec4 = extraViews.map((v) => n % 4 === 0 && v.offset % 4 === 0 && v.strides[v.strides.length - 1] === 1 && v.strides.slice(0, -1).every((st) => st % 4 === 0));
  const rope = form?.rope && { ...form.rope, position: (row: string) => `f32(in${form.rope!.operand}[${viewIndex(form.rope!.view, batchShape.length, row, '0u')}])` };
  const cache = form?.cache;
  const plainStore = chain.lets.length === 0 && extraViews.length === 0 && !norm && !rope && !cache;
  const storeAt = (index: string, value: string) =>
    cache ? `{ let at = cache_index(${index}); if (at != CACHE_DROPPED) { out[at] = ${value}; } }` : `out[${index}] = ${value};`;
  return {
    name,
    node,
    // a cache written in place is the output binding, not an operand one
    operands: cache ? operands.slice(0, -1) : operands,
    form,
    m,
    n,
    k,
    kStored,
    batches,
    transposeA,
    transposeB,
    batchOffsets,
    chain,
    plainStore,
    epilogue,
    extraVec4,
    extraIndex,
    storeAt,
    ...(norm ? { norm } : {}),
    ...(rope ? { rope } : {}),
    ...(cache ? { cache } : {}),
  };
}

/**
 * The module's opening: header comment (op, shapes, fused ops, archetype), bindings (A, B, the
 * epilogue's operands, the output; A, B and the output as vec4 arrays where `vec4` says so),
 * the epilogue's helper functions and the size constants.
 */
export function matmulPreamble(p: MatmulProblem, archetype: string, vec4: { a: boolean; b: boolean; out: boolean; extras?: readonly boolean[] }): string {
  const reads = [p.transposeA ? 'A' : '', p.transposeB ? 'B' : ''].filter(Boolean).join(' and ');
  const split = p.kStored !== p.k ? `, partial products over ${p.kStored / p.k} slices of K = ${p.kStored}` : '';
  const described = p.form ? `${archetype}${reads ? `, ${reads} read transposed` : ''}${split}${p.chain.lets.length ? ', epilogue per value' : ''}` : archetype;
  const header = kernelHeader(p.name, p.node, p.operands, described, p.form?.ops);
  const { wgsl: decls } = bindingDecls(p.operands, (i) => (i === 0 ? vec4.a : i === 1 ? vec4.b : i === p.operands.length ? vec4.out : (vec4.extras?.[i - 2] ?? false)));
  const functions = [...epilogueHelpers(p), ...(p.readers?.a ? [p.readers.a] : []), ...(p.readers?.b ? [p.readers.b] : []), ...(p.readers?.b4 ? [p.readers.b4] : [])];
  const helpers = functions.length ? `\n${functions.join('\n')}\n` : '';
  return `${header}
${decls}
${helpers}
const M: u32 = ${u32(p.m)};
const N: u32 = ${u32(p.n)};
const K: u32 = ${u32(p.k)};${p.kStored !== p.k ? `
const K_STORED: u32 = ${u32(p.kStored)}; // rows along K hold every slice` : ''}`;
}

/** The WGSL functions the stores call: the epilogue's helpers, the rope's (and rope_column), the cache's cache_index. */
export function epilogueHelpers(p: MatmulProblem): string[] {
  return [...p.chain.helpers, ...(p.rope ? [...p.rope.helpers, ropeColumn(p.rope)] : []), ...(p.cache ? [p.cache.helper] : [])];
}

/** WGSL `rope_column(c)`: the column a rope'd product computes at c, pairs side by side (MatmulProblem.rope). */
function ropeColumn(rope: NonNullable<MatmulForm['rope']>): string {
  return [
    `// the column computed at c: in each head's first ${rope.rotaryDim} features, group g of 4 holds columns 2g, 2g + 1 and their rotation partners`,
    'fn rope_column(c: u32) -> u32 {',
    `  let j = c % ${u32(rope.width)};`,
    `  if (j >= ${u32(rope.rotaryDim)}) {`,
    '    return c;',
    '  }',
    '  let s = j % 4u;',
    `  return c - j + (j / 4u) * 2u + (s & 1u) + (s >> 1u) * ${u32(rope.rotaryDim / 2)};`,
    '}',
  ].join('\n');
}

/**
 * Kernels for one matmul node: the portable variant as the kernel, faster ones as its
 * variants (tried first by the runtime). The tiling is chosen from the shape here, at
 * compile time; nothing about it is decided on the device.
 */
export function lowerMatmul(node: KernelSubject, operands: readonly TensorType[], name: string, target: Target, form?: ScheduledForm): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const p = matmulProblem(node, operands, name, form);
  const { bindings } = bindingDecls(p.operands);
  const choices: { tag: string; features: string[]; code: KernelCode }[] = [];
  if (directSuits(p, target.tuning.matmul)) {
    choices.push({ tag: 'direct', features: [], code: directKernel(p) });
  } else if (p.m <= SMALL_M && p.kStored === p.k) {
    for (const c of chooseGemv(p, target.features)) choices.push({ tag: c.tag, features: c.features, code: gemvKernel(p, c.config) });
  } else if ((p.norm || p.rope || p.cache) && (p.kStored !== p.k || p.form?.streamK)) {
    throw new Error(`matmul ${node.name}: a ${p.norm ? 'normed' : p.rope ? "rope'd" : 'cache-writing'} product split over K has no kernel (its epilogue needs the whole sum)`);
  } else {
    for (const c of chooseTiling(p, target.tuning.matmul)) choices.push({ tag: c.tag, features: [], code: tiledKernel(p, c.config) });
  }
  return kernelWithVariants(name, form ? form.ops : [node.op], bindings, choices[choices.length - 1].code, choices.slice(0, -1));
}
