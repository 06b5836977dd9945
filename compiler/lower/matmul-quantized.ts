// The quantized product: y = x · dequant(w)ᵀ (or x · dequant(w)) with w kept in its packed
// format (ggml's blocks as GGUF stores them, f16, bf16) and dequantized in registers as it is
// read. The weights are bound as 32-bit words; each format has one WGSL decoder, `q_dq4`, giving
// four neighbouring values of a block from the byte layouts in runtime/ggml-types.ts (blocks
// of 18, 22, 34 or 210 bytes start on any even byte, so their words are read as two halves).
//   - decode and short prompts (M ≤ SMALL_M_QUANTIZED rows, w [N, K]): a matrix-vector kernel,
//     matmul-quantized-matvec.ts (32 values of a block per invocation and step, decoded a word
//     at a time). The target's tuning can ask instead for the first kernel, kept here to
//     compare against (bench/quantized-matvec.ts --kernel old,new): ROWS output rows per
//     workgroup, LANES invocations per row striding over the row's K in chunks of CHUNK values
//     decoded four at a time through q_dq4; the lanes' sums are added in workgroup memory.
//   - otherwise (prefill, and the transposed layout of the input gradient): the tiled matmul
//     kernel (matmul-tiled.ts) with B read through `read_b4`, which decodes four values of a
//     stored row into the B tile as it loads; the tiling is the float product's, and float
//     products emit the same WGSL as before (the reader is only set here). For a plain Q8_0
//     product, w [N, K], on a target with int8 subgroup matrices, and M, N multiples of the
//     block, the plan also carries matmul-q8-subgroup-matrix.ts's variant (x rounded to int8
//     per 32 values, tensor-core products) in the blocks of the tiled kernel beside it (at
//     most 64×64).
import { PACKED_DTYPES } from '../../schemas/manifest';
import { elementCount, isWeightDType, type TensorType, type WeightDType } from '../ir/types';
import type { Target } from '../target/target';
import { QUANTIZED_MATVEC_DEFAULT, TILINGS } from '../target/tuning';
import { bindingDecls, indent, kernelHeader, kernelWithVariants, linearGrid, u32, type KernelCode, type KernelSubject, type LoweredKernel } from './kernel';
import { epilogueHelpers, matmulProblem, type ScheduledForm } from './matmul';
import { I8_MATRIX_UNIT, SUBGROUP_MATRIX_FEATURE } from './matmul-int8';
import { Q8_MATRIX_SIDES, q8MatrixFits, q8SubgroupMatrixKernel, type Q8MatrixBlock } from './matmul-q8-subgroup-matrix';
import { dot4MatvecKernel, fusedStore, fusionBindings, fusionNorm, unitsMatvecKernel, xRead, type MatvecFusion } from './matmul-quantized-matvec';
import { chooseTiling, PORTABLE_WORKGROUP_BYTES, tiledKernel } from './matmul-tiled';

/**
 * The largest M (x's batch axes folded in) the matrix-vector kernel takes (its workgroup memory
 * holds partial sums of 8 rows of x at a time per invocation): as many as a float product's
 * small-M kernel takes.
 */
export const SMALL_M_QUANTIZED = 16;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Invocations per output row, splitting its K. */
const LANES = 32;
/** Output rows per workgroup of 256. */
const ROWS = 8;

/** A weight format's block: values, bytes, and whether every field the decoder reads is 4-byte aligned. */
function blockOf(dtype: WeightDType): { values: number; bytes: number; aligned: boolean } {
  if (dtype === 'f16') return { values: 1, bytes: 2, aligned: true };
  const { elements, bytes } = PACKED_DTYPES[dtype];
  // f16/bf16 rows start on 8 bytes (K is a multiple of 4); the others' blocks on 4 where their size is
  return { values: elements, bytes, aligned: dtype === 'bf16' || bytes % 4 === 0 };
}

/**
 * Four neighbouring values e..e+3 (e a multiple of 4) of the block at byte `bb`, per format:
 * the body of `fn q_dq4(bb: u32, e: u32) -> vec4<f32>`, each the layout comment of
 * runtime/ggml-types.ts written for four values at a time. For f16 and bf16 a "block" is one
 * value and e counts values from bb.
 */
const DECODERS: Record<WeightDType, string> = {
  f16: `let i = (bb + 2u * e) >> 2u;
  return vec4<f32>(unpack2x16float(in1[i]), unpack2x16float(in1[i + 1u]));`,
  bf16: `let i = (bb + 2u * e) >> 2u;
  let w0 = in1[i];
  let w1 = in1[i + 1u];
  return vec4<f32>(bitcast<f32>(w0 << 16u), bitcast<f32>(w0 & 0xffff0000u), bitcast<f32>(w1 << 16u), bitcast<f32>(w1 & 0xffff0000u));`,
  // d f16 | qs int8[32]: x = d · qs
  q8_0: `return q_f16(bb) * q_i8x4(q_word(bb + 2u + e));`,
  // d f16 | qs u8[16]: x[j] = d · (low nibble of qs[j] − 8), x[j + 16] = d · (high nibble − 8)
  q4_0: `let q = (q_word(bb + 2u + (e & 15u)) >> ((e >> 4u) * 4u)) & 0x0f0f0f0fu;
  return q_f16(bb) * (q_u8x4(q) - vec4<f32>(8.0));`,
  // d f16 | m f16 | qs u8[16]: x = d · nibble + m
  q4_1: `let q = (q_word(bb + 4u + (e & 15u)) >> ((e >> 4u) * 4u)) & 0x0f0f0f0fu;
  return q_f16(bb) * q_u8x4(q) + vec4<f32>(q_f16(bb + 2u));`,
  // d f16 | qh u32 (bit i: fifth bit of element i) | qs u8[16]: x = d · (q − 16)
  q5_0: `let q = (q_word(bb + 6u + (e & 15u)) >> ((e >> 4u) * 4u)) & 0x0f0f0f0fu;
  let high = (vec4<u32>(q_word(bb + 2u) >> e) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
  return q_f16(bb) * (q_u8x4(q) + vec4<f32>(high * 16u) - vec4<f32>(16.0));`,
  // d f16 | m f16 | qh u32 | qs u8[16]: x = d · q + m
  q5_1: `let q = (q_word(bb + 8u + (e & 15u)) >> ((e >> 4u) * 4u)) & 0x0f0f0f0fu;
  let high = (vec4<u32>(q_word(bb + 4u) >> e) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
  return q_f16(bb) * (q_u8x4(q) + vec4<f32>(high * 16u)) + vec4<f32>(q_f16(bb + 2u));`,
  // d f16 | dmin f16 | scales u8[12] | qs u8[128]: chunk c = e / 64 in qs[32c..], element 64c + l
  // in the low nibble of qs[32c + l], 64c + 32 + l in the high; x = d·sc[s] · q − dmin·m[s], s = e / 32
  q4_k: `let s = e >> 5u;
  let q = (q_word(bb + 16u + 32u * (e >> 6u) + (e & 31u)) >> ((s & 1u) * 4u)) & 0x0f0f0f0fu;
  let sm = q_scale_min_k4(bb, s);
  return (q_f16(bb) * sm.x) * q_u8x4(q) - vec4<f32>(q_f16(bb + 2u) * sm.y);`,
  // as q4_k with qh u8[32] at 16 (bit 2c of qh[l]: fifth bit of element 64c + l, bit 2c + 1 of 64c + 32 + l) and qs at 48
  q5_k: `let s = e >> 5u;
  let l = e & 31u;
  let q = (q_word(bb + 48u + 32u * (e >> 6u) + l) >> ((s & 1u) * 4u)) & 0x0f0f0f0fu;
  let high = (q_word(bb + 16u + l) >> s) & 0x01010101u;
  let sm = q_scale_min_k4(bb, s);
  return (q_f16(bb) * sm.x) * q_u8x4(q | (high << 4u)) - vec4<f32>(q_f16(bb + 2u) * sm.y);`,
  // ql u8[128] | qh u8[64] | scales int8[16] | d f16. Half h = e / 128, quarter t = (e / 32) % 4,
  // l = e % 32: low 4 bits in ql[64h + 32(t & 1) + l] (high nibble for t ≥ 2), high 2 bits at
  // 2t in qh[32h + l]; x = d·scales[e / 16] · (q − 32)
  q6_k: `let h = e >> 7u;
  let t = (e >> 5u) & 3u;
  let l = e & 31u;
  let low = (q_word(bb + 64u * h + 32u * (t & 1u) + l) >> ((t >> 1u) * 4u)) & 0x0f0f0f0fu;
  let high = (q_word(bb + 128u + 32u * h + l) >> (2u * t)) & 0x03030303u;
  let s = e >> 4u;
  let scale = f32(bitcast<i32>(q_word(bb + 192u + (s & 14u)) << (24u - 8u * (s & 1u))) >> 24u);
  return (q_f16(bb + 208u) * scale) * (q_u8x4(low | (high << 4u)) - vec4<f32>(32.0));`,
};

/** The WGSL a kernel needs to read w's values: word and f16 readers, the format's decoder, `q_w4(row, col)`. */
function decoderSource(dtype: WeightDType, cols: number): string {
  const block = blockOf(dtype);
  const words = block.aligned
    ? `/** the 32-bit word at byte \`byte\` of w (every field this format reads is 4-byte aligned) */
fn q_word(byte: u32) -> u32 {
  return in1[byte >> 2u];
}`
    : `/** the 32-bit word at byte \`byte\` (even) of w: blocks of ${block.bytes} bytes start on any even byte */
fn q_word(byte: u32) -> u32 {
  let i = byte >> 2u;
  if ((byte & 2u) == 0u) {
    return in1[i];
  }
  return (in1[i] >> 16u) | (in1[i + 1u] << 16u);
}`;
  const kQuant = dtype === 'q4_k' || dtype === 'q5_k';
  const lines = [
    `// w: ${dtype} [rows, ${cols}], ${block.values === 1 ? `${block.bytes} bytes a value` : `blocks of ${block.values} values in ${block.bytes} bytes, ${cols / block.values} a row`}, read as 32-bit words`,
    `const W_COLS: u32 = ${u32(cols)};`,
    `const BLOCK_VALUES: u32 = ${u32(block.values)};`,
    `const BLOCK_BYTES: u32 = ${u32(block.bytes)};`,
    `const ROW_BLOCKS: u32 = ${u32(cols / block.values)};`,
    '',
    words,
    '',
    '/** the f16 at byte `byte` (even) of w */',
    'fn q_f16(byte: u32) -> f32 {',
    '  return unpack2x16float(in1[byte >> 2u] >> ((byte & 2u) * 8u)).x;',
    '}',
    '',
    '/** the four bytes of a word, unsigned */',
    'fn q_u8x4(w: u32) -> vec4<f32> {',
    '  return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));',
    '}',
    '',
    '/** the four bytes of a word, signed (shifted to the top of an i32 and back) */',
    'fn q_i8x4(w: u32) -> vec4<f32> {',
    '  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));',
    '}',
    ...(kQuant
      ? [
          '',
          '/**',
          ' * Sub-block j\'s 6-bit scale and min from the 12 bytes at bb + 4 (ggml\'s get_scale_min_k4):',
          ' * bytes 0..3 hold sc[0..3] (bits 0-5) and bits 4-5 of sc[4..7]; bytes 4..7 m[0..3] and bits 4-5',
          ' * of m[4..7]; bytes 8..11 bits 0-3 of sc[4..7] (low nibble) and of m[4..7] (high nibble).',
          ' */',
          'fn q_scale_min_k4(bb: u32, j: u32) -> vec2<f32> {',
          '  let shift = (j & 3u) * 8u;',
          '  let a = (q_word(bb + 4u) >> shift) & 255u;',
          '  let b = (q_word(bb + 8u) >> shift) & 255u;',
          '  let c = (q_word(bb + 12u) >> shift) & 255u;',
          '  let low = vec2<u32>(a & 63u, b & 63u);',
          '  let up = vec2<u32>((c & 15u) | ((a >> 6u) << 4u), (c >> 4u) | ((b >> 6u) << 4u));',
          '  return vec2<f32>(select(up, low, j < 4u));',
          '}',
        ]
      : []),
    '',
    `/** values e..e + 3 (e a multiple of 4) of the ${dtype} block at byte bb */`,
    'fn q_dq4(bb: u32, e: u32) -> vec4<f32> {',
    `  ${DECODERS[dtype]}`,
    '}',
    '',
    '/** w[row][col..col + 3] (col a multiple of 4) */',
    'fn q_w4(row: u32, col: u32) -> vec4<f32> {',
    '  return q_dq4((row * ROW_BLOCKS + col / BLOCK_VALUES) * BLOCK_BYTES, col % BLOCK_VALUES);',
    '}',
  ];
  return lines.join('\n');
}

/** The first matrix-vector kernel ('chunks'): y[M, N] = x[M, K] · dequant(w[N, K])ᵀ for M ≤ SMALL_M_QUANTIZED. */
function chunksMatvecKernel(node: KernelSubject, operands: readonly TensorType[], name: string, m: number, dtype: WeightDType, fusion?: MatvecFusion): KernelCode {
  const [n, k] = operands[1].shape;
  const block = blockOf(dtype);
  // a chunk lies within one block: 16 values (a sixteenth of a 256-block, half of a 32-block) or f16's 4
  const chunk = k % 16 === 0 && (block.values === 1 || block.values % 16 === 0) ? 16 : 4;
  const vecs = chunk / 4;
  const groups = Math.ceil(n / ROWS);
  const { grid, gridX } = linearGrid(groups);
  const rows = Array.from({ length: m }, (_, r) => r);
  const norm = fusionNorm(fusion, m, k);
  const rope = fusion?.problem.rope;
  // the sums of 8 rows of x at a time in workgroup memory (the first 8, then the rest: up to 16)
  const mc = Math.min(m, 8);
  // lane 0 of each row stores it; a rope's pair partner (position c ^ 2) is the row 2 rows away
  const store = (r: number, at: number) =>
    fusion
      ? ['{', ...indent(fusedStore(fusion, u32(r), 'position', `partial[${u32(at * 256)} + li]`, `partial[${u32(at * 256)} + (li ^ ${u32(2 * LANES)})]`), 2), '}']
      : [`out[${r ? `${u32(r)} * N + ` : ''}row] = partial[${u32(at * 256)} + li];`];
  // x's rows x0 .. x0 + mc - 1: their sums into workgroup memory, added in a tree, stored by lane 0
  const reduce = (x0: number): string[] => {
    const these = rows.slice(x0, x0 + mc);
    const at = (r: number, plus = 0) => u32((r - x0) * 256 + plus);
    return [
      ...(x0 > 0 ? ['workgroupBarrier();'] : []),
      ...these.map((r) => `partial[${at(r)} + li] = acc${r};`),
      'workgroupBarrier();',
      ...[16, 8, 4, 2, 1]
        .filter((st) => st < LANES)
        .flatMap((st) => [`if (lane < ${u32(st)}) {`, ...these.map((r) => `  partial[${at(r)} + li] += partial[${at(r, st)} + li];`), '}', 'workgroupBarrier();']),
      `if (lane == 0u && ${fusion ? 'position' : 'row'} < N) {`,
      ...indent(these.flatMap((r) => store(r, r - x0))),
      '}',
    ];
  };
  const header = kernelHeader(name, node, operands, `quantized matrix-vector product, ${dtype} weights: ${ROWS} rows per workgroup, ${LANES} invocations a row striding over K in chunks of ${chunk}, reduced in workgroup memory${fusion ? ', epilogue per value' : ''}`, fusion?.problem.form?.ops);
  const bindings = fusion
    ? fusionBindings(fusion, 'u32', dtype)
    : `@group(0) @binding(0) var<storage, read> in0: array<vec4<f32>>; // x [M, K]
@group(0) @binding(1) var<storage, read> in1: array<u32>; // w [N, K], ${dtype}
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // y [M, N]`;
  const helpers = fusion ? epilogueHelpers(fusion.problem) : [];
  const wgsl = `${header}
${bindings}

const M: u32 = ${u32(m)};
const N: u32 = ${u32(n)};
const K: u32 = ${u32(k)};
const LANES: u32 = ${u32(LANES)};
const ROWS: u32 = ${u32(ROWS)};
const CHUNK: u32 = ${u32(chunk)};
const GRID_X: u32 = ${u32(gridX)};

${decoderSource(dtype, k)}
${helpers.length ? `\n${helpers.join('\n')}\n` : ''}
// each invocation's partial sum of each row of x${m > mc ? `, ${mc} rows at a time` : ''}
var<workgroup> partial: array<f32, ${mc * 256}>;
${norm ? `${norm.decl}\n` : ''}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lane = li % LANES;
  let ${fusion ? 'position' : 'row'} = (wid.x + wid.y * GRID_X) * ROWS + li / LANES;
${fusion ? `  // the row of w computed here${rope ? ': a rope\'s columns in pair order' : ''}\n  let row = ${rope ? 'rope_column(min(position, N - 1u))' : 'position'};\n` : ''}${rows.map((r) => `  var acc${r} = 0.0;`).join('\n')}
  if (${fusion ? 'position' : 'row'} < N) {
    for (var c = lane * CHUNK; c < K; c += LANES * CHUNK) {
      // the chunk's block and its offset there; its values decoded once for every row of x
      let bb = (row * ROW_BLOCKS + c / BLOCK_VALUES) * BLOCK_BYTES;
      let e = c % BLOCK_VALUES;
${Array.from({ length: vecs }, (_, v) => `      let w${v} = q_dq4(bb, e + ${u32(4 * v)});`).join('\n')}
${rows.map((r) => `      acc${r} += ${Array.from({ length: vecs }, (_, v) => `dot(w${v}, ${xRead(fusion, `${r ? `${u32((r * k) / 4)} + ` : ''}c / 4u + ${u32(v)}`, `c / 4u + ${u32(v)}`)})`).join(' + ')};`).join('\n')}
    }
  }
${indent([...(norm?.lines ?? []), ...range(Math.ceil(m / mc)).flatMap((c) => reduce(c * mc))]).join('\n')}
}
`;
  return { wgsl, workgroupSize: [256, 1, 1], workgroupBytes: mc * 256 * 4 + (norm?.bytes ?? 0), workgroups: grid };
}

/**
 * Kernels for a product of a packed B (matmulQuantized, or a fusedMatmul of its weight): the
 * matrix-vector kernel for a few rows of x against w [N, K], with the fused form's norm, epilogue,
 * rope and cache write; else the tiled product reading w through its decoder, with the epilogue.
 * x's leading axes are folded into M where the stores allow (the kernels see [M, K] and [M, N]:
 * row-major, the same bytes).
 */
export function lowerPackedProduct(node: KernelSubject, operands: readonly TensorType[], name: string, target: Target, form?: ScheduledForm): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const [x, w] = operands;
  const dtype = w.dtype;
  if (!isWeightDType(dtype)) throw new Error(`${node.op} ${node.name}: w is ${dtype}, not a packed weight`);
  if (!form) throw new Error(`${node.op} ${node.name}: a product of a packed weight needs its form`);
  const k = x.shape[x.shape.length - 1];
  const m = elementCount(x.shape) / k;
  // the product's shape (a cache write's node is the cache)
  const product = form.cache?.product ?? node.type.shape;
  const n = product[product.length - 1];
  const words: TensorType = { shape: [...w.shape], dtype: 'u32' };
  const folded: TensorType[] = [{ shape: [m, k], dtype: 'f32' }, words];
  const foldedSubject: KernelSubject = { ...node, type: { shape: [m, n], dtype: 'f32' } };
  if (form.transposeB && !form.transposeA && m <= SMALL_M_QUANTIZED) {
    // the epilogue over the product's own shape; the kernel applies the norm itself
    const { norm, ...rest } = form;
    const p = matmulProblem(node, [x, words, ...operands.slice(2)], name, rest);
    const fusion: MatvecFusion | undefined = p.plainStore && !norm ? undefined : { problem: p, ...(norm ? { norm: { weight: norm.operand, eps: norm.eps } } : {}), batchShape: product.slice(0, -2) };
    const subject = fusion ? node : foldedSubject;
    const operandsMv = fusion ? p.operands : [folded[0], { ...w }];
    const { bindings } = bindingDecls(fusion ? p.operands : folded);
    const tuning = target.tuning.quantizedMatvec ?? QUANTIZED_MATVEC_DEFAULT;
    const storage = target.limits.maxComputeWorkgroupStorageSize;
    const dot4 = tuning.kernel === 'dot4' ? dot4MatvecKernel(subject, operandsMv, name, m, dtype, tuning, storage, fusion) : null;
    if (dot4 && dot4.workgroupBytes > PORTABLE_WORKGROUP_BYTES) {
      // x's int8 copy outgrows WebGPU's default 16 KiB (K above ~6000): the units kernel, same
      // rows per workgroup, is the portable module beside it
      const portable = unitsMatvecKernel(subject, operandsMv, name, m, dtype, { ...tuning, kernel: 'units', rowsPerTeam: dot4.rowsPerTeam }, PORTABLE_WORKGROUP_BYTES, fusion);
      const variants = portable.workgroups.join() === dot4.workgroups.join() ? [{ tag: 'dot4', features: [], code: dot4 }] : [];
      return kernelWithVariants(name, form.ops, bindings, portable, variants);
    }
    // the kernel is the portable module: WebGPU's default workgroup memory bounds its rows per invocation (8 rows of x take 8 KiB a row)
    const code = dot4 ?? (tuning.kernel === 'chunks' ? chunksMatvecKernel(subject, operandsMv, name, m, dtype, fusion) : unitsMatvecKernel(subject, operandsMv, name, m, dtype, tuning, PORTABLE_WORKGROUP_BYTES, fusion));
    return kernelWithVariants(name, form.ops, bindings, code, []);
  }
  const [rows, cols] = w.shape;
  const readB4 = `${decoderSource(dtype, cols)}

/** four values of w's stored row \`row\` from column \`col\` (B's ${form.transposeB ? 'row n along K' : 'row k along N'}), 0 outside w */
fn read_b4(batch: u32, row: u32, col: u32) -> vec4<f32> {
  if (row >= ${u32(rows)} || col >= W_COLS) {
    return vec4<f32>();
  }
  return q_w4(row, col);
}`;
  // x's batch axes folded into M where the kernel reads no operand but x and w (an epilogue's,
  // a norm's weight, a rope's positions and a cache are bound and addressed by them); w (a
  // matrix) is read alike by every batch. The tiled kernel applies a norm, rope and cache write
  // as it does for a float B (matmul-tiled.ts).
  const fold = form.extraViews.length === 0 && !form.transposeA && !form.norm && !form.rope && !form.cache;
  const p = { ...matmulProblem(fold ? foldedSubject : node, fold ? folded : [x, words, ...operands.slice(2)], name, form), readers: { b4: readB4 } };
  const { bindings } = bindingDecls(p.operands);
  const tilings = chooseTiling(p, target.tuning.matmul);
  if (dtype === 'q8_0' && form.transposeB && fold && p.plainStore && target.features.includes(SUBGROUP_MATRIX_FEATURE)) {
    // The variant's grid is one workgroup per block of 32 or 64 rows and columns, the portable
    // kernel's: where the tiling chosen for the shape has such blocks it stays; above them
    // (64×128 and up, for products with many workgroups) the portable kernel takes 64×64
    // tiles, which devices without the feature pay for in reuse.
    const [only] = tilings;
    const block: Q8MatrixBlock =
      tilings.length === 1 && Q8_MATRIX_SIDES.includes(only.config.bm) && Q8_MATRIX_SIDES.includes(only.config.bn)
        ? { rows: only.config.bm as Q8MatrixBlock['rows'], cols: only.config.bn as Q8MatrixBlock['cols'] }
        : { rows: 64, cols: 64 };
    if (q8MatrixFits(m, n, k, block)) {
      const portable = tiledKernel(p, block.rows === only.config.bm && block.cols === only.config.bn ? only.config : TILINGS.t64x64x16);
      const variant = q8SubgroupMatrixKernel(foldedSubject, folded, name, block, 'subgroup-matrix');
      return kernelWithVariants(name, form.ops, bindings, portable, [{ tag: 'subgroup-matrix', features: [SUBGROUP_MATRIX_FEATURE], code: variant, validatedBy: 'dawn', deviceConstants: [I8_MATRIX_UNIT] }]);
    }
  }
  const choices = tilings.map((c) => ({ tag: c.tag, features: [], code: tiledKernel(p, c.config) }));
  return kernelWithVariants(name, form.ops, bindings, choices[choices.length - 1].code, choices.slice(0, -1));
}
