// Attention archetype: out[b, i] = softmax(q[b, i]·k[b]ᵀ·scale + mask[b, i])·v[b] in one kernel.
// This file describes the problem once (sizes, per-batch offsets of q, k, v and the mask, whose
// batch axes broadcast as in matmul) and picks a kernel at compile time: the register-blocked
// kernel (attention-blocked.ts) where it applies (enough query rows, heads it can split), with
// the FlashAttention-2 style tiled kernel (attention-tiled.ts) of the same rows per workgroup
// as its portable fallback where it needs more than the portable limits; else the tiled kernel,
// which owns a block of query rows per workgroup; or, where neither applies (a few query rows,
// as in decoding, or a head too wide for the tiled kernel's registers), the row kernel below.
// The row kernel gives one workgroup one query row: per tile of keys the scores go to
// workgroup memory and their max and sum are reduced across the workgroup (an online
// softmax), then each invocation extends its share of the dv outputs.
// A 'large' variant of the tiled kernel (more workgroup storage, same grid) is made only when
// the target's tuning asks for one.
import { attrsOf } from '../ir/graph';
import { wgslFloat } from '../ir/ops';
import { broadcastStrides, stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import type { AttentionTuning } from '../target/tuning';
import { blockedAttentionKernel, chooseBlockedTilings } from './attention-blocked';
import { chooseAttentionTiling, chooseAttentionTilings, PORTABLE_ATTENTION_LIMITS, tiledAttentionKernel } from './attention-tiled';
import { bindingDecls, kernelHeader, kernelWithVariants, linearGrid, u32, type KernelCode, type KernelSubject, type LoweredKernel } from './kernel';
import { PORTABLE_INVOCATIONS, PORTABLE_WORKGROUP_BYTES } from './matmul-tiled';

// exactly -FLT_MAX: a decimal that rounds to it is still refused by Tint as out of range
export const LOWEST_F32 = '-0x1.fffffep+127f';

/** Everything an attention kernel generator needs about one node. */
export interface AttentionProblem {
  name: string;
  node: KernelSubject;
  operands: readonly TensorType[];
  tq: number;
  tk: number;
  d: number;
  dv: number;
  /** matrices in the output's batch axes (their product) */
  batches: number;
  scale: number;
  /** query i sees keys up to i + tk - tq only */
  causal: boolean;
  /**
   * a run-time key count (operand 4): batchOffsets also declares `key_count`, the keys its
   * queries see (at most TK); the kernels end their key loops there and weigh later keys 0
   */
  keyCount: boolean;
  /** element strides of the mask along query rows and along keys (0: broadcast) */
  maskRowStride: number;
  maskKeyStride: number;
  /**
   * statements declaring q_base, k_base, v_base (element offsets of batch `batch`'s q, k and v
   * matrices) and m_base (of its mask slice) from a u32 `batch`; broadcast axes add nothing.
   * With keyCount, also key_count.
   */
  batchOffsets: string[];
}

/** The last key a row may see, exclusive, as a WGSL u32: the run-time key count, else TK. */
export const keyLimit = (p: AttentionProblem) => (p.keyCount ? 'key_count' : 'TK');

/** `1.0 / sum` of a row's (or a vec4 of rows') exponentials; with a key count, 0 where the row saw no key (its sum 0). */
export function inverseSum(p: AttentionProblem, sum: string, vec = false): string {
  if (!p.keyCount) return `1.0 / ${sum}`;
  const zero = vec ? 'vec4<f32>()' : '0.0';
  return `select(${zero}, 1.0 / ${sum}, ${sum} > ${zero})`;
}

/** WGSL: the key count of the element at `index` of operand 4, as a u32 clamped to [0, TK] (an f32 count rounded down). */
function keyCountRead(dtype: TensorType['dtype'], index: string): string {
  const value = `in4[${index}]`;
  if (dtype === 'u32') return `min(${value}, TK)`;
  if (dtype === 'i32') return `u32(clamp(${value}, 0, i32(TK)))`;
  return `u32(clamp(floor(${value}), 0.0, f32(TK)))`;
}

/** The mask element of the row starting at `row` (a WGSL u32) for key `key`, with the problem's key stride. */
export function maskElement(p: AttentionProblem, row: string, key: string): string {
  const stride = p.maskKeyStride;
  return `in3[${stride === 0 ? row : stride === 1 ? `${row} + ${key}` : `${row} + ${/^\w+$/.test(key) ? key : `(${key})`} * ${u32(stride)}`}]`;
}

export function attentionProblem(node: KernelSubject, operands: readonly TensorType[], name: string): AttentionProblem {
  const [q, k, v, mask, keyCount] = operands;
  const { scale, causal } = attrsOf(node, 'attention');
  const out = node.type.shape;
  const [tq, dv] = out.slice(-2);
  const [tk, d] = k.shape.slice(-2);
  const batchShape = out.slice(0, -2);
  const rank = out.length;

  const qStrides = broadcastStrides(q.shape.slice(0, -2), batchShape);
  const kStrides = broadcastStrides(k.shape.slice(0, -2), batchShape);
  const vStrides = broadcastStrides(v.shape.slice(0, -2), batchShape);
  const maskStrides = broadcastStrides(mask.shape, [...batchShape, tq, tk]);
  // one count (a single element) is read at 0 whatever its shape
  const countStrides = keyCount && elementCount(keyCount.shape) > 1 ? broadcastStrides(keyCount.shape, batchShape) : batchShape.map(() => 0);
  const batchStrides = stridesOf(batchShape);
  const batchOffsets = ['  var q_base = 0u;', '  var k_base = 0u;', '  var v_base = 0u;', '  var m_base = 0u;', ...(keyCount ? ['  var c_base = 0u;'] : [])];
  if (batchShape.length > 0) {
    batchOffsets.push('  var rem = batch;');
    for (let a = 0; a < batchShape.length; a++) {
      batchOffsets.push(`  let bc${a} = rem / ${u32(batchStrides[a])};`, `  rem = rem % ${u32(batchStrides[a])};`);
      if (qStrides[a]) batchOffsets.push(`  q_base += bc${a} * ${u32(qStrides[a] * tq * d)};`);
      if (kStrides[a]) batchOffsets.push(`  k_base += bc${a} * ${u32(kStrides[a] * tk * d)};`);
      if (vStrides[a]) batchOffsets.push(`  v_base += bc${a} * ${u32(vStrides[a] * tk * dv)};`);
      if (maskStrides[a]) batchOffsets.push(`  m_base += bc${a} * ${u32(maskStrides[a])};`);
      if (countStrides[a]) batchOffsets.push(`  c_base += bc${a} * ${u32(countStrides[a])};`);
    }
  }
  if (keyCount) batchOffsets.push(`  // the keys this matrix's queries see: the run-time count, at most TK`, `  let key_count = ${keyCountRead(keyCount.dtype, 'c_base')};`);
  return {
    name,
    node,
    operands,
    tq,
    tk,
    d,
    dv,
    batches: elementCount(batchShape),
    scale,
    causal: causal ?? false,
    keyCount: keyCount !== undefined,
    maskRowStride: maskStrides[rank - 2],
    maskKeyStride: maskStrides[rank - 1],
    batchOffsets,
  };
}

/** A generated module with what the plan needs to know about it. */
export function lowerAttention(node: KernelSubject, operands: readonly TensorType[], name: string, tuning: AttentionTuning): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const p = attentionProblem(node, operands, name);
  const { bindings } = bindingDecls(operands);
  const blocked = blockedKernels(p, tuning);
  if (blocked) return kernelWithVariants(name, [node.op], bindings, blocked.portable, blocked.variants);
  const tilings = chooseAttentionTilings(p, tuning);
  const code = tilings.portable ? tiledAttentionKernel(p, tilings.portable) : rowKernel(p);
  // the large variant: more workgroup storage (or invocations) than the portable limits, for devices that offer it
  const variants = tilings.large ? [{ tag: 'large', features: [], code: tiledAttentionKernel(p, tilings.large, tilings.largeLimits) }] : [];
  return kernelWithVariants(name, [node.op], bindings, code, variants);
}

/**
 * The register-blocked kernel where the tuning takes it: the portable module (blocked where
 * it fits the portable limits, else the tiled kernel with the same rows per workgroup, so the
 * same grid) and the blocked modules that need more, largest first; undefined where the
 * blocked kernel does not apply or no portable module shares its grid.
 */
function blockedKernels(p: AttentionProblem, tuning: AttentionTuning): { portable: KernelCode; variants: { tag: string; features: string[]; code: KernelCode }[] } | undefined {
  const blocked = chooseBlockedTilings(p, tuning);
  if (!blocked) return undefined;
  const portableLimits = (c: { bytes: number; invocations: number }) => c.bytes <= PORTABLE_WORKGROUP_BYTES && c.invocations <= PORTABLE_INVOCATIONS;
  const portableBlocked = blocked.choices.find(portableLimits);
  const tiled = portableBlocked ? undefined : chooseAttentionTiling(p, tuning, PORTABLE_ATTENTION_LIMITS, blocked.rows);
  if (!portableBlocked && !tiled) return undefined;
  const portable = portableBlocked ? blockedAttentionKernel(p, portableBlocked.tiling) : tiledAttentionKernel(p, tiled!);
  const variants = blocked.choices
    .filter((c) => !portableLimits(c))
    .map((c) => ({ tag: `blocked${Math.ceil(c.bytes / 1024)}k`, features: [], code: blockedAttentionKernel(p, c.tiling) }));
  return { portable, variants };
}

/** Keys per tile of the row kernel: the scores of one tile live in workgroup memory. */
const MAX_TILE = 1024;
/** q's row is staged in workgroup memory up to this many features, read from the buffer beyond. */
const MAX_STAGED_D = 2048;

/** A power of two in [32, 256] covering n, so small rows do not leave most invocations idle. */
function workgroupFor(n: number): number {
  let size = 32;
  while (size < n && size < 256) size *= 2;
  return size;
}

/** The row kernel: one workgroup per query row, any d and dv, for shapes the tiled kernel does not take. */
function rowKernel(p: AttentionProblem): KernelCode {
  const { tq, tk, d, dv } = p;
  const rows = p.batches * tq;
  const tile = Math.min(tk, MAX_TILE);
  const wg = workgroupFor(Math.max(tile, dv));
  const outPer = Math.ceil(dv / wg);
  // Where dv leaves invocations idle (decoding: dv 64 of 256), the keys of the value product
  // are split over groups of dv invocations: a decode step's row is otherwise one chain of tk
  // dependent loads per output, latency-bound (86 µs for 384 keys on an H100).
  const groups = Math.floor(wg / dv) >= 2 ? Math.floor(wg / dv) : 1;
  const stagedQ = d <= MAX_STAGED_D;
  const { grid, gridX } = linearGrid(rows);

  const mRow = p.maskRowStride ? ` + i * ${u32(p.maskRowStride)}` : '';

  const tree = (combine: (a: string, b: string) => string) => {
    const lines: string[] = [];
    for (let s = wg / 2; s >= 1; s /= 2) {
      lines.push(`    if (lid < ${u32(s)}) {`, `      scratch[lid] = ${combine('scratch[lid]', `scratch[lid + ${u32(s)}]`)};`, '    }', '    workgroupBarrier();');
    }
    return lines.join('\n');
  };

  const { wgsl: decls } = bindingDecls(p.operands);
  const header = kernelHeader(
    p.name,
    p.node,
    p.operands,
    `attention, workgroup per query row (${rows} rows), keys in tiles of ${tile} with an online softmax${stagedQ ? '' : ', q read from the buffer'}${p.causal ? ', causal' : ''}${p.keyCount ? ', over a run-time key count' : ''}`,
  );
  const wgsl = `${header}
${decls}

const ROWS: u32 = ${u32(rows)};
const TQ: u32 = ${u32(tq)};
const TK: u32 = ${u32(tk)};
const D: u32 = ${u32(d)};
const DV: u32 = ${u32(dv)};
const TILE: u32 = ${u32(tile)};
const WG: u32 = ${u32(wg)};
const OUT_PER: u32 = ${u32(outPer)};${groups > 1 ? `\nconst GROUPS: u32 = ${u32(groups)};` : ''}
const GRID_X: u32 = ${u32(gridX)};
const SCALE: f32 = ${wgslFloat(Math.fround(p.scale))};
${stagedQ ? '\nvar<workgroup> q_row: array<f32, D>;' : ''}
var<workgroup> p_tile: array<f32, TILE>; // the tile's scores, then their exponentials
var<workgroup> scratch: array<f32, WG>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * GRID_X;
  if (row >= ROWS) {
    return;
  }
  let batch = row / TQ;
  let i = row % TQ;
${p.batchOffsets.join('\n')}
  let q_base_row = q_base + i * D;
  let m_row = m_base${mRow};
${
  stagedQ
    ? `  for (var p = lid; p < D; p += WG) {
    q_row[p] = in0[q_base_row + p];
  }
  workgroupBarrier();
`
    : ''
}
  // running max and sum of the exponentials so far; acc holds Σ_j exp(s_j - run_max)·v[j, c]
  var run_max: f32 = ${LOWEST_F32};
  var run_sum = 0.0;
  var acc: array<f32, OUT_PER>;
${
  p.causal
    ? `  // causal: this row sees keys up to i + TK - TQ${p.keyCount ? ', and none from key_count on' : ''}\n  let keys_end = ${p.keyCount ? 'min(i + TK - TQ + 1u, key_count)' : 'i + TK - TQ + 1u'};`
    : `  let keys_end = ${keyLimit(p)};`
}
  for (var j0 = 0u; j0 < keys_end; j0 += TILE) {
    let n = min(TILE, keys_end - j0);
    // scores s_j = q·k_j·scale + mask_j of this tile, and their max
    var local_max: f32 = ${LOWEST_F32};
    for (var t = lid; t < n; t += WG) {
      let j = j0 + t;
      let k_row = k_base + j * D;
      var dot = 0.0;
      for (var p = 0u; p < D; p++) {
        dot = fma(${stagedQ ? 'q_row[p]' : 'in0[q_base_row + p]'}, in1[k_row + p], dot);
      }
      let s = dot * SCALE + ${maskElement(p, 'm_row', 'j')};
      p_tile[t] = s;
      local_max = max(local_max, s);
    }
    scratch[lid] = local_max;
    workgroupBarrier();
${tree((a, b) => `max(${a}, ${b})`)}
    let new_max = max(run_max, scratch[0]);
    workgroupBarrier();
    // exponentials against the new max, and their sum
    var local_sum = 0.0;
    for (var t = lid; t < n; t += WG) {
      let e = exp(p_tile[t] - new_max);
      p_tile[t] = e;
      local_sum += e;
    }
    scratch[lid] = local_sum;
    workgroupBarrier();
${tree((a, b) => `${a} + ${b}`)}
    let correction = exp(run_max - new_max);
    run_sum = run_sum * correction + scratch[0];
    run_max = new_max;
${
  groups > 1
    ? `    // this invocation's output c = lid % DV over its group's keys t ≡ lid / DV (mod GROUPS),
    // four keys in flight: rescale, then add its share of the tile's Σ_j p_j·v[j, c]
    if (lid < GROUPS * DV) {
      let c = lid % DV;
      var a0 = acc[0] * correction;
      var a1 = 0.0;
      var a2 = 0.0;
      var a3 = 0.0;
      var t = lid / DV;
      for (; t + 3u * GROUPS < n; t += 4u * GROUPS) {
        a0 = fma(p_tile[t], in2[v_base + (j0 + t) * DV + c], a0);
        a1 = fma(p_tile[t + GROUPS], in2[v_base + (j0 + t + GROUPS) * DV + c], a1);
        a2 = fma(p_tile[t + 2u * GROUPS], in2[v_base + (j0 + t + 2u * GROUPS) * DV + c], a2);
        a3 = fma(p_tile[t + 3u * GROUPS], in2[v_base + (j0 + t + 3u * GROUPS) * DV + c], a3);
      }
      for (; t < n; t += GROUPS) {
        a0 = fma(p_tile[t], in2[v_base + (j0 + t) * DV + c], a0);
      }
      acc[0] = (a0 + a1) + (a2 + a3);
    }`
    : `    // this invocation's outputs c = lid + o·WG: rescale, then add the tile's Σ_j p_j·v[j, c]
    for (var o = 0u; o < OUT_PER; o++) {
      let c = lid + o * WG;
      if (c < DV) {
        var a = acc[o] * correction;
        for (var t = 0u; t < n; t++) {
          a = fma(p_tile[t], in2[v_base + (j0 + t) * DV + c], a);
        }
        acc[o] = a;
      }
    }`
}
    // every invocation is done with p_tile and scratch before the next tile overwrites them
    workgroupBarrier();
  }

  let inv_sum = ${inverseSum(p, 'run_sum')};
${
  groups > 1
    ? `  // the groups' partial sums through scratch (free after the last tile's barrier), added by group 0
  if (lid < GROUPS * DV) {
    scratch[lid] = acc[0];
  }
  workgroupBarrier();
  if (lid < DV) {
    var total = 0.0;
    for (var k = 0u; k < GROUPS; k++) {
      total += scratch[k * DV + lid];
    }
    out[row * DV + lid] = total * inv_sum;
  }`
    : `  for (var o = 0u; o < OUT_PER; o++) {
    let c = lid + o * WG;
    if (c < DV) {
      out[row * DV + c] = acc[o] * inv_sum;
    }
  }`
}
}
`;
  const workgroupFloats = (stagedQ ? d : 0) + tile + wg;
  return { wgsl, workgroupSize: [wg, 1, 1], workgroupBytes: workgroupFloats * 4, workgroups: grid };
}
