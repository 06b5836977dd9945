// The direct matmul kernel: one invocation per output value, a plain loop over K reading A and
// B from storage (or through a convolution's operand readers), then the epilogue (with a fused
// rope, the rotation partner's product too, to rotate the pair). No
// workgroup memory, no unrolling: a module of a few dozen lines. Where compiling a pipeline
// costs more than running it — a software adapter (SwiftShader, llvmpipe) compiles the 32×32×16
// tiled module in 1.5–4 s and this one in tens of ms, and runs it faster than the small-M
// kernel — targets take it for products up to MatmulTuning.directMacs or .directRows.
import { wgslFloat } from '../ir/ops';
import type { MatmulTuning } from '../target/tuning';
import { u32, type KernelCode } from './kernel';
import { matmulPreamble, type MatmulProblem } from './matmul';

const THREADS = 64;

/** Whether the direct kernel can compute `p`: whole products only (no split-K slices, no stream-K, no packed operands). */
export function directFits(p: MatmulProblem): boolean {
  return p.kStored === p.k && !p.form?.streamK && !p.readers?.b4;
}

/** Whether the target's tuning gives `p` the direct kernel: it fits, is small or has few rows, and its grid fits one dimension. */
export function directSuits(p: MatmulProblem, tuning: MatmulTuning): boolean {
  const small = p.m * p.n * p.k * p.batches <= (tuning.directMacs ?? -1) || p.m <= (tuning.directRows ?? -1);
  return small && directFits(p) && Math.ceil((p.m * p.n) / THREADS) <= 65535 && p.batches <= 65535;
}

export function directKernel(p: MatmulProblem): KernelCode {
  if (!directFits(p)) throw new Error(`matmul ${p.name}: the direct kernel takes whole products only`);
  const a = p.readers?.a ? 'read_a(batch, row, k)' : p.transposeA ? 'in0[a_base + k * M + row]' : 'in0[a_base + row * K + k]';
  const bAt = (col: string) => (p.readers?.b ? `read_b(batch, k, ${col})` : p.transposeB ? `in1[b_base + ${col} * K + k]` : `in1[b_base + k * N + ${col}]`);
  const b = bAt('col');
  const e = p.epilogue('acc', 'row', 'col', '', { normScale: 'row_scale' });
  const outputs = p.m * p.n;
  // a fused RMSNorm: A times the norm's weight as it is read, the row's sum of squares beside
  // the product, and 1/rms in row_scale, where the epilogue reads it
  const norm = p.norm;
  const loop = norm
    ? [
        'var sum_squares = 0.0;',
        'for (var k = 0u; k < K; k++) {',
        `  let a_k = ${a};`,
        '  sum_squares = fma(a_k, a_k, sum_squares);',
        `  acc = fma(a_k * in${norm.weight}[k], ${b}, acc);`,
        ...(p.rope ? [`  partner_acc = fma(a_k * in${norm.weight}[k], ${bAt('partner')}, partner_acc);`] : []),
        '}',
        `let row_scale = inverseSqrt(sum_squares / ${wgslFloat(p.k)} + ${wgslFloat(norm.eps)});`,
      ]
    : p.rope
      ? ['for (var k = 0u; k < K; k++) {', `  let a_k = ${a};`, `  acc = fma(a_k, ${b}, acc);`, `  partner_acc = fma(a_k, ${bAt('partner')}, partner_acc);`, '}']
      : ['for (var k = 0u; k < K; k++) {', `  acc = fma(${a}, ${b}, acc);`, '}'];
  // a fused rope: the rotation partner's product too (column j ± rotaryDim/2 of the head), each through the epilogue, then rotated
  const rope = p.rope;
  const half = rope ? rope.rotaryDim / 2 : 0;
  const ropeLines = rope
    ? [
        'var partner_acc = 0.0;',
        `let j = col % ${u32(rope.width)};`,
        `let partner = select(col, select(col + ${u32(half)}, col - ${u32(half)}, j >= ${u32(half)}), j < ${u32(rope.rotaryDim)});`,
      ]
    : [];
  const partnerE = rope && p.epilogue('partner_acc', 'row', 'partner', '  ', { normScale: 'row_scale' });
  const store = rope
    ? [
        'var value = 0.0;',
        'var other = 0.0;',
        '{',
        ...e.lines.map((l) => `  ${l}`),
        `  value = ${e.value};`,
        '}',
        '{',
        ...partnerE!.lines,
        `  other = ${partnerE!.value};`,
        '}',
        `if (j < ${u32(rope.rotaryDim)}) {`,
        `  let cs = cos_sin(${rope.position('row')} * INV_FREQ[j % ${u32(half)}]);`,
        `  value = value * cs.x + select(${wgslFloat(rope.inverse ? 1 : -1)}, ${wgslFloat(rope.inverse ? -1 : 1)}, j >= ${u32(half)}) * other * cs.y;`,
        '}',
        p.storeAt('c_base + row * N + col', 'value'),
      ]
    : [...e.lines, p.storeAt('c_base + row * N + col', e.value)];
  const body = [
    'let index = gid.x;',
    `if (index >= ${u32(outputs)}) {`,
    '  return;',
    '}',
    'let batch = gid.z;',
    ...p.batchOffsets.map((l) => l.trimStart()),
    'let c_base = batch * M * N;',
    'let row = index / N;',
    'let col = index % N;',
    'var acc = 0.0;',
    ...ropeLines,
    ...loop,
    ...store,
  ];
  const wgsl = `${matmulPreamble(p, 'direct matmul, one output per invocation', { a: false, b: false, out: false, extras: p.extraVec4.map(() => false) })}

@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
${body.map((l) => `  ${l}`).join('\n')}
}
`;
  return { wgsl, workgroupSize: [THREADS, 1, 1], workgroupBytes: 0, workgroups: [Math.ceil(outputs / THREADS), 1, p.batches] };
}
