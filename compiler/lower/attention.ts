// Attention archetype: out[b, i] = softmax(q[b, i]·k[b]ᵀ·scale + mask[b, i])·v[b] in one kernel.
// One workgroup owns one query row. Keys are processed in tiles with an online softmax (the
// running max and sum of FlashAttention): per tile, the scores go to workgroup memory and
// their max is reduced; the exponentials and their sum follow; then each invocation rescales
// and extends its share of the dv outputs by Σ_j p_j·v[j, :]. Any Tk fits; batch axes of q, k,
// v and the mask broadcast through per-batch offsets, as in matmul.
import type { Node } from '../ir/graph';
import { wgslFloat, type AttentionAttrs } from '../ir/ops';
import { broadcastStrides, stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, linearGrid, u32, type LoweredKernel } from './kernel';

// exactly -FLT_MAX: a decimal that rounds to it is still refused by Tint as out of range
const LOWEST_F32 = '-0x1.fffffep+127f';

/** Keys per tile: the scores of one tile live in workgroup memory. */
const MAX_TILE = 1024;
/** q's row is staged in workgroup memory up to this many features, read from the buffer beyond. */
const MAX_STAGED_D = 2048;

/** A power of two in [32, 256] covering n, so small rows do not leave most invocations idle. */
function workgroupFor(n: number): number {
  let size = 32;
  while (size < n && size < 256) size *= 2;
  return size;
}

export function lowerAttention(node: Node, operands: readonly TensorType[], name: string): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const [q, k, v, mask] = operands;
  const { scale } = node.attrs as unknown as AttentionAttrs;
  const out = node.type.shape;
  const [tq, dv] = out.slice(-2);
  const [tk, d] = k.shape.slice(-2);
  const batchShape = out.slice(0, -2);
  const rank = out.length;
  const rows = elementCount(batchShape) * tq;

  const tile = Math.min(tk, MAX_TILE);
  const wg = workgroupFor(Math.max(tile, dv));
  const outPer = Math.ceil(dv / wg);
  const stagedQ = d <= MAX_STAGED_D;
  const { grid, gridX } = linearGrid(rows);

  // per row: the batch coordinates, then each operand's offset (broadcast axes add nothing)
  const qStrides = broadcastStrides(q.shape.slice(0, -2), batchShape);
  const kStrides = broadcastStrides(k.shape.slice(0, -2), batchShape);
  const vStrides = broadcastStrides(v.shape.slice(0, -2), batchShape);
  const maskStrides = broadcastStrides(mask.shape, [...batchShape, tq, tk]);
  const batchStrides = stridesOf(batchShape);
  const offsetLines = ['  var q_base = i * D;', '  var k_base = 0u;', '  var v_base = 0u;', `  var m_base = ${maskStrides[rank - 2] ? `i * ${u32(maskStrides[rank - 2])}` : '0u'};`];
  if (batchShape.length > 0) {
    offsetLines.push('  var rem = row / TQ;');
    for (let a = 0; a < batchShape.length; a++) {
      offsetLines.push(`  let bc${a} = rem / ${u32(batchStrides[a])};`, `  rem = rem % ${u32(batchStrides[a])};`);
      if (qStrides[a]) offsetLines.push(`  q_base += bc${a} * ${u32(qStrides[a] * tq * d)};`);
      if (kStrides[a]) offsetLines.push(`  k_base += bc${a} * ${u32(kStrides[a] * tk * d)};`);
      if (vStrides[a]) offsetLines.push(`  v_base += bc${a} * ${u32(vStrides[a] * tk * dv)};`);
      if (maskStrides[a]) offsetLines.push(`  m_base += bc${a} * ${u32(maskStrides[a])};`);
    }
  }
  const maskKey = maskStrides[rank - 1] === 0 ? 'm_base' : maskStrides[rank - 1] === 1 ? 'm_base + j' : `m_base + j * ${u32(maskStrides[rank - 1])}`;

  const tree = (combine: (a: string, b: string) => string) => {
    const lines: string[] = [];
    for (let s = wg / 2; s >= 1; s /= 2) {
      lines.push(`    if (lid < ${u32(s)}) {`, `      scratch[lid] = ${combine('scratch[lid]', `scratch[lid + ${u32(s)}]`)};`, '    }', '    workgroupBarrier();');
    }
    return lines.join('\n');
  };

  const { wgsl: decls, bindings } = bindingDecls(operands);
  const header = kernelHeader(
    name,
    node,
    operands,
    `attention, workgroup per query row (${rows} rows), keys in tiles of ${tile} with an online softmax${stagedQ ? '' : ', q read from the buffer'}`,
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
const OUT_PER: u32 = ${u32(outPer)};
const GRID_X: u32 = ${u32(gridX)};
const SCALE: f32 = ${wgslFloat(Math.fround(scale))};
${stagedQ ? '\nvar<workgroup> q_row: array<f32, D>;' : ''}
var<workgroup> p_tile: array<f32, TILE>; // the tile's scores, then their exponentials
var<workgroup> scratch: array<f32, WG>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * GRID_X;
  if (row >= ROWS) {
    return;
  }
  let i = row % TQ;
${offsetLines.join('\n')}
${
  stagedQ
    ? `  for (var p = lid; p < D; p += WG) {
    q_row[p] = in0[q_base + p];
  }
  workgroupBarrier();
`
    : ''
}
  // running max and sum of the exponentials so far; acc holds Σ_j exp(s_j - run_max)·v[j, c]
  var run_max: f32 = ${LOWEST_F32};
  var run_sum = 0.0;
  var acc: array<f32, OUT_PER>;
  for (var j0 = 0u; j0 < TK; j0 += TILE) {
    let n = min(TILE, TK - j0);
    // scores s_j = q·k_j·scale + mask_j of this tile, and their max
    var local_max: f32 = ${LOWEST_F32};
    for (var t = lid; t < n; t += WG) {
      let j = j0 + t;
      let k_row = k_base + j * D;
      var dot = 0.0;
      for (var p = 0u; p < D; p++) {
        dot = fma(${stagedQ ? 'q_row[p]' : 'in0[q_base + p]'}, in1[k_row + p], dot);
      }
      let s = dot * SCALE + in3[${maskKey}];
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
    // this invocation's outputs c = lid + o·WG: rescale, then add the tile's Σ_j p_j·v[j, c]
    for (var o = 0u; o < OUT_PER; o++) {
      let c = lid + o * WG;
      if (c < DV) {
        var a = acc[o] * correction;
        for (var t = 0u; t < n; t++) {
          a = fma(p_tile[t], in2[v_base + (j0 + t) * DV + c], a);
        }
        acc[o] = a;
      }
    }
    // every invocation is done with p_tile and scratch before the next tile overwrites them
    workgroupBarrier();
  }

  let inv_sum = 1.0 / run_sum;
  for (var o = 0u; o < OUT_PER; o++) {
    let c = lid + o * WG;
    if (c < DV) {
      out[row * DV + c] = acc[o] * inv_sum;
    }
  }
}
`;
  const workgroupFloats = (stagedQ ? d : 0) + tile + wg;
  return {
    kernel: { name, ops: [node.op], wgsl, entryPoint: 'main', workgroupBytes: workgroupFloats * 4, workgroupSize: [wg, 1, 1], bindings },
    workgroups: grid,
  };
}
