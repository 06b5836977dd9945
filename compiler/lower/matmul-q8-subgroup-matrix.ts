// The Q8_0 prefill product on int8 subgroup matrices: y[M, N] = x[M, K] · dequant(w[N, K])ᵀ
// with w in Q8_0 blocks (f16 d, 32 i8 quants; 34 bytes, stored as GGUF has them) and x rounded
// to int8 per 32 values, the variant of matmulQuantized's tiled kernel for devices with
// chromium-experimental-subgroup-matrix (lower/matmul-quantized.ts puts it beside the portable
// kernel; the runtime picks it as it picks matmul-int8.ts's variant).
//   - One subgroup (workgroup of 32) per block of y, as matmul-int8.ts's staged kernel (the
//     offsets of subgroup-matrix loads and stores must be uniform across the workgroup); the
//     block is the portable tiled kernel's, 32 or 64 rows by 32 or 64 columns, as the plan
//     has one grid per dispatch whichever variant runs it.
//   - K advances one Q8_0 block (32 values) at a time, so each step's 16×16×32 i8 fragment
//     product has one scale d_w[n] per column and one d_x[m] per row: y += d_x·d_wᵀ ∘ (x_q·w_qᵀ).
//   - x is quantized here, as each step stages it (the block's rows × 32 values → i8, scale
//     max|x|/127 per row), not by a pre-pass: a pre-pass is a second dispatch and a scratch
//     buffer, and a plan's variants share the portable kernel's dispatches and bindings, so the
//     portable path would pay for it too. The cost is x's rounding repeated per column block
//     (N/64 times at 64 columns), 64 values an invocation a step at 64 rows, next to the 128
//     scale-adds below.
//   - The i32 fragment layout is opaque in WGSL, so the scaling goes through workgroup memory:
//     per row of fragments (16 rows of the block) its 16×16 i32 results are stored
//     (subgroupMatrixStore) and each invocation adds its 1 or 2 columns × 16 rows into f32
//     accumulators, fma(f32(i), d_x[m]·d_w[n], acc); 128 accumulators an invocation at 64×64.
// Cost without measurement, at 64×64 (smaller blocks keep the proportions): a step is 16
// fragment products (131072 i8 multiply-adds, about 128 cycles of one H100 SM sub-partition's
// tensor core at its int8 rate) against, per invocation, 128 scale-adds of 4 instructions (a
// workgroup-memory read, the conversion at a quarter rate, a multiply, an fma) and the staging
// (x: 64 values loaded, rounded and packed; w: 16 words): some 700 issue cycles. So the scalar
// work, not the tensor core, bounds the kernel: on the order of a quarter of the int8 kernel's
// 140 TOPS (bench/int8.ts), still several times the f32 tiled kernel's FLOP rate; w is read at
// 1.06 bytes a value, x at 4 (f32, from L2 after the first column block).
// Error against x itself: x's rounding, at most Σ_k |w[n, k]|·d_x[m, k]/2 per output (d_x its
// block's max|x|/127), plus f32 accumulation; the products of the quants are exact in i32.
// Shapes: M and N multiples of the block, K of 32 (no edge handling), w [N, K] only, and
// no epilogue (matmulQuantized carries none). The 34-byte blocks start on any even byte: w is
// read as 32-bit words and realigned (two halves) as the other Q8_0 decoders do; no re-layout.
import type { TensorType } from '../ir/types';
import { indent, kernelHeader, u32, type KernelCode, type KernelSubject } from './kernel';
import { I8_MATRIX_UNIT } from './matmul-int8';

/**
 * Rows and columns of y per workgroup, each 32 or 64: the portable kernel beside it
 * (lower/matmul-quantized.ts) has the same grid, so the block follows its tiling (32×64 when
 * few workgroups, 64×64 the largest: 128 accumulators an invocation).
 */
export interface Q8MatrixBlock {
  rows: 32 | 64;
  cols: 32 | 64;
}
export const Q8_MATRIX_SIDES: readonly number[] = [32, 64];
/** Q8_0's block: 32 values in 34 bytes (f16 d, then 32 int8). */
const Q8_VALUES = 32;
const Q8_BYTES = 34;
/** Bytes between rows of x's staged int8 tile: 48 rather than 32 (a multiple of 16, as fragment strides are kept here) spreads each invocation's row over other banks: 4-way conflicts on its stores instead of 8-way. */
const A_STRIDE = 48;
/** Bytes between w's rows in its staged tile (B column-major: row n holds B[0..31][n]); written by 8 neighbouring invocations a row, conflict-free. */
const B_STRIDE = 32;

/**
 * How the fragment products are written: 'subgroup-matrix' (the variant), or 'emulated': the
 * same module with each fragment product computed by the 32 invocations from the same tile
 * offsets and strides (dot4I8Packed), so a device without subgroup matrices can run the
 * rest of the kernel (x's rounding, w's realignment, the scaling, the stores) in tests.
 */
export type FragmentProducts = 'subgroup-matrix' | 'emulated';

/** Whether the variant takes a product of these sizes (M rows of x, w [N, K]) in these blocks. */
export const q8MatrixFits = (m: number, n: number, k: number, block: Q8MatrixBlock): boolean =>
  m % block.rows === 0 && n % block.cols === 0 && k % Q8_VALUES === 0 && m > 0 && n > 0 && k > 0;

const ids = (count: number) => Array.from({ length: count }, (_, i) => i);
const LEFT = 'subgroup_matrix_left<i8, 32, 16>';
const RIGHT = 'subgroup_matrix_right<i8, 16, 32>';
const RESULT = 'subgroup_matrix_result<i32, 16, 16>';

/**
 * The module for y[M, N] = x[M, K] · dequant(w[N, K])ᵀ, w Q8_0, its grid one workgroup per
 * block; operands are x [M, K] f32 and w [N, K] (bound as u32 words).
 */
export function q8SubgroupMatrixKernel(node: KernelSubject, operands: readonly TensorType[], name: string, block: Q8MatrixBlock, fragments: FragmentProducts): KernelCode {
  const [m, k] = operands[0].shape;
  const n = operands[1].shape[0];
  const { rows, cols } = block;
  if (!Q8_MATRIX_SIDES.includes(rows) || !Q8_MATRIX_SIDES.includes(cols) || !q8MatrixFits(m, n, k, block)) {
    throw new Error(`q8SubgroupMatrixKernel ${name}: ${m}x${k} by ${n}x${k} is not in blocks of ${rows}x${cols} (32 or 64 each) and 32 values of K`);
  }
  const fragsM = rows / 16;
  const fragsN = cols / 16;
  // columns of the block per invocation (li, li + 32) and rows of x each rounds (li, li + 32)
  const colsPer = cols / 32;
  const rowsPer = rows / 32;
  const real = fragments === 'subgroup-matrix';
  // offsets and strides in bytes; the variant divides the i8 ones by the device's unit
  const unit = (bytes: number) => (real ? `${u32(bytes)} / ${I8_MATRIX_UNIT}` : u32(bytes));
  const aOffset = (i: number) => i * 16 * A_STRIDE;
  const bOffset = (j: number) => j * 16 * B_STRIDE;
  const acc = (i: number, r: number, c: number) => `acc_${i}_${r}_${c}`;

  const round = (i: number): string[] => [
    `// fragment row ${i}: rows ${16 * i}..${16 * i + 15} of the block`,
    ...(real
      ? [
          `let a${i} = subgroupMatrixLoad<${LEFT}, row_major>(&a_tile, ${unit(aOffset(i))}, ${unit(A_STRIDE)});`,
          ...ids(fragsN).map((j) => `subgroupMatrixStore<row_major>(&r_tile, ${u32(16 * j)}, subgroupMatrixMultiplyAccumulate(a${i}, b${j}, ${RESULT}()), ${u32(cols)});`),
        ]
      : ids(fragsN).map((j) => `fragment_product(${u32(aOffset(i))}, ${u32(A_STRIDE)}, ${u32(bOffset(j))}, ${u32(B_STRIDE)}, ${u32(16 * j)}, ${u32(cols)}, li);`)),
    'workgroupBarrier();',
    ...ids(16).flatMap((r) => [
      `s = xd[${u32(16 * i + r)}];`,
      ...ids(colsPer).map((c) => `${acc(i, r, c)} = fma(f32(r_tile[${u32(r * cols + 32 * c)} + li]), s * wd${c}, ${acc(i, r, c)});`),
    ]),
    // the next row of fragments (or step) overwrites r_tile, the next step the staged tiles
    'workgroupBarrier();',
  ];

  const emulation = `/**
 * Emulates a fragment product: r_tile[ro + r·rs + c] = Σ_k A[r][k]·B[k][c] for the 16×16 block,
 * A row-major in a_tile at byte ao (rows as_ bytes apart), B column-major in b_tile at byte bo
 * (columns bs bytes apart), as the subgroup-matrix loads read them; 8 results an invocation.
 */
fn fragment_product(ao: u32, as_: u32, bo: u32, bs: u32, ro: u32, rs: u32, li: u32) {
  for (var t = 0u; t < 8u; t++) {
    let e = li + 32u * t;
    let r = e / 16u;
    let c = e % 16u;
    var sum = 0;
    for (var q = 0u; q < 8u; q++) {
      sum += dot4I8Packed(bitcast<u32>(a_tile[(ao + r * as_) / 4u + q]), bitcast<u32>(b_tile[(bo + c * bs) / 4u + q]));
    }
    r_tile[ro + r * rs + c] = sum;
  }
}
`;

  const describe = `Q8_0 weights times x rounded to int8 per 32 values, ${real ? 'on subgroup matrices (16x16x32 i8)' : 'fragment products emulated (tests)'}: a subgroup per ${rows}x${cols} block, K one block a step, each row of fragments' i32 results scaled by d_x·d_w into f32 through workgroup memory`;
  const wgsl = `${real ? 'enable chromium_experimental_subgroup_matrix;\n' : ''}${kernelHeader(name, node, operands, describe)}
@group(0) @binding(0) var<storage, read> in0: array<vec4<f32>>; // x [M, K]
@group(0) @binding(1) var<storage, read> in1: array<u32>; // w [N, K], q8_0: blocks of 34 bytes (f16 d, 32 i8) from any even byte
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // y [M, N]

const M: u32 = ${u32(m)};
const N: u32 = ${u32(n)};
const K: u32 = ${u32(k)};
const ROW_BLOCKS: u32 = ${u32(k / Q8_VALUES)};
${real ? `/** what an i8 matrix offset or stride counts on this device: 1 (bytes) or 4 (words); set by the runtime */\noverride ${I8_MATRIX_UNIT}: u32 = 1u;\n` : ''}
// this step's block of x as int8 (row r's 32 values from byte ${A_STRIDE}·r) and of w's quants (row n's from byte ${B_STRIDE}·n)
var<workgroup> a_tile: array<i32, ${(rows * A_STRIDE) / 4}>;
var<workgroup> b_tile: array<i32, ${(cols * B_STRIDE) / 4}>;
// one row of fragments' i32 products, [16][${cols}]
var<workgroup> r_tile: array<i32, ${16 * cols}>;
// this step's scales: x's max|x|/127 per row, w's d per row of w
var<workgroup> xd: array<f32, ${rows}>;
var<workgroup> wd: array<f32, ${cols}>;
${real ? '' : `\n${emulation}`}
@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * ${u32(rows)};
  let col0 = wid.x * ${u32(cols)};
  // w's staging: invocation li takes quant word li % 8 of rows li / 8 + 4p, so each row's 8
  // words come from 8 neighbouring invocations (neighbouring words of memory and of the tile)
  let wq = li % 8u;
  let wr = li / 8u;
  // this invocation's outputs: every row of the block, column li${colsPer > 1 ? ' and li + 32' : ''}
${ids(fragsM)
  .flatMap((i) => ids(16).flatMap((r) => ids(colsPer).map((c) => `  var ${acc(i, r, c)} = 0.0;`)))
  .join('\n')}
  var s: f32;
  for (var kb = 0u; kb < ROW_BLOCKS; kb++) {
    // x: row li${rowsPer > 1 ? ' and li + 32' : ''}, its 32 values of this block rounded to int8 with scale
    // max|x|/127; adding 1.5·2^23 rounds to the nearest integer and leaves it in the low byte
    for (var h = 0u; h < ${u32(rowsPer)}; h++) {
      let lr = li + 32u * h;
      let xi = (row0 + lr) * ${u32(k / 4)} + kb * 8u;
${ids(8)
  .map((j) => `      let v${j} = in0[xi + ${u32(j)}];`)
  .join('\n')}
      let a4 = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))), max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
      let amax = max(max(a4.x, a4.y), max(a4.z, a4.w));
      let inv = vec4<f32>(select(0.0, 127.0 / amax, amax > 0.0));
      xd[lr] = amax / 127.0;
${ids(8)
  .map((j) => `      a_tile[lr * ${u32(A_STRIDE / 4)} + ${u32(j)}] = bitcast<i32>(pack4xU8(bitcast<vec4<u32>>(fma(v${j}, inv, vec4<f32>(12582912.0))) & vec4<u32>(255u)));`)
  .join('\n')}
    }
    // w: ${cols} rows' blocks kb, each 34 bytes from an even byte: word q of the quants is bytes
    // 2 + 4q.. of the block, the high half of one word and the low half of the next, or a
    // whole word where the block starts 2 bytes into one
    for (var p = 0u; p < ${u32(cols / 4)}; p++) {
      let wrow = wr + 4u * p;
      let bb = ((col0 + wrow) * ROW_BLOCKS + kb) * ${u32(Q8_BYTES)};
      let i = (bb >> 2u) + wq;
      let odd = (bb & 2u) != 0u;
      let r0 = in1[i];
      let r1 = in1[i + 1u];
      b_tile[wrow * ${u32(B_STRIDE / 4)} + wq] = bitcast<i32>(select((r0 >> 16u) | (r1 << 16u), r1, odd));
      if (wq == 0u) {
        wd[wrow] = unpack2x16float(select(r0, r0 >> 16u, odd)).x;
      }
    }
    workgroupBarrier();
${ids(colsPer)
  .map((c) => `    let wd${c} = wd[li${c ? ' + 32u' : ''}];`)
  .join('\n')}
${real ? ids(fragsN).map((j) => `    let b${j} = subgroupMatrixLoad<${RIGHT}, col_major>(&b_tile, ${unit(bOffset(j))}, ${unit(B_STRIDE)});`).join('\n') + '\n' : ''}${indent(ids(fragsM).flatMap(round), 4).join('\n')}
  }
${ids(fragsM)
  .flatMap((i) => ids(16).flatMap((r) => ids(colsPer).map((c) => `  out[(row0 + ${u32(16 * i + r)}) * N + col0 + li${c ? ' + 32u' : ''}] = ${acc(i, r, c)};`)))
  .join('\n')}
}
`;
  const workgroupBytes = rows * A_STRIDE + cols * B_STRIDE + 16 * cols * 4 + (rows + cols) * 4;
  return { wgsl, workgroupSize: [32, 1, 1], workgroupBytes, workgroups: [n / cols, m / rows, 1] };
}
