// The register-blocked attention kernel: FlashAttention-2 with both products tiled as a SIMT
// matmul. A workgroup owns BR query rows, staged once in workgroup memory, and walks the keys
// in tiles of BC (K and V staged per tile from registers loaded during the previous tile's
// arithmetic). Invocations form a (BR/4) × TX grid (TX = BC/4): each holds a 4-row × 4-key
// block of the scores S = q·kᵀ (per 4 features, four vec4 reads of q and four of k feed 64
// FMAs) and a 4-row × dv/TX block of the output (per 4 keys, four vec4 reads of P and 4·CV of
// V feed 64·CV FMAs), where the tiled kernel (attention-tiled.ts) reads a vec4 per 4 FMAs. On
// an H200 workgroup memory delivers 32 floats a cycle per SM against 128 FMAs, so that ratio
// bounds the tiled kernel near a quarter of the FMA rate and this one near half.
//
// The online softmax needs each row's tile max across the TX invocations sharing the row: they
// exchange partial maxes through workgroup memory; each keeps its own share of the row sums
// (every term carries the row's common max), added once at the end. The exponentials P take
// the K tile's space (every invocation has scored the tile by then) on their way to the
// invocations that own the output columns. Causal blocks do work in proportion to their last
// row, so the grid starts the last blocks of every batch first: the longest run first and the
// short ones fill in behind them (9 heads × 2048 in 64 × 32 blocks: 394 → 265 µs on an H200).
//
// Bank conflicts: eight invocations of a warp quarter share a row group and read eight key
// blocks' rows of K at one feature chunk; K rows are staged with their vec4 chunks XOR-swizzled
// by the key block (d a multiple of 32), so those eight reads hit eight distinct banks. q and P
// reads are broadcasts within a quarter; V and output columns are consecutive per invocation.
import { wgslFloat } from '../ir/ops';
import { LOWEST_F32, type AttentionProblem } from './attention';
import { attentionTuning } from './attention-tiled';
import { bindingDecls, indent, kernelHeader, linearGrid, u32, type KernelCode } from './kernel';
import { PORTABLE_INVOCATIONS, PORTABLE_WORKGROUP_BYTES } from './matmul-tiled';

export interface BlockedAttentionTiling {
  /** query rows per workgroup, a multiple of 4: BR/4 invocations down the rows */
  br: number;
  /** keys per tile, a multiple of 4: BC/4 invocations across the keys (TX), each scoring 4 */
  bc: number;
  /** load the next tile's K and V into registers during this tile's arithmetic (else at the tile's start) */
  prefetch: boolean;
}

/** Rows (and keys) each invocation scores: the 4 × 4 register block. */
const BLOCK = 4;
/** vec4s of the output row block one invocation may hold per row (dv / TX / 4): 4 is 64 registers */
const MAX_OUT_VEC4 = 4;
/** invocations a variant may use: WebGPU's default limit, which most devices offer */
const MAX_INVOCATIONS = 256;

export const describeBlockedTiling = (c: BlockedAttentionTiling) =>
  `${c.br} query rows per workgroup, keys in tiles of ${c.bc}${c.prefetch ? ' (the next loaded during each)' : ''}, each invocation scoring ${BLOCK} rows × ${BLOCK} keys in registers, online softmax`;

/** The invocations across a row's keys (and its output columns). */
const threadsAcross = (c: BlockedAttentionTiling) => c.bc / BLOCK;
const invocationsOf = (c: BlockedAttentionTiling) => (c.br / BLOCK) * threadsAcross(c);

/** Why the blocked kernel cannot run `p` with tiling `c`, or undefined when it can. */
export function blockedUnfit(p: AttentionProblem, c: BlockedAttentionTiling): string | undefined {
  const tx = threadsAcross(c);
  if (c.br % BLOCK !== 0 || c.bc % BLOCK !== 0) return `rows ${c.br} and keys ${c.bc} must be multiples of ${BLOCK}`;
  if (p.d % 4 !== 0) return `d = ${p.d} is not a multiple of 4`;
  if (p.dv % (4 * tx) !== 0) return `dv = ${p.dv} does not split into vec4s over ${tx} invocations`;
  if (p.dv / (4 * tx) > MAX_OUT_VEC4) return `dv = ${p.dv} needs more than ${MAX_OUT_VEC4} vec4s per row and invocation`;
  return undefined;
}

/**
 * Workgroup storage in vec4s: q rows, the K tile (whose space P takes once every invocation
 * has scored it), the V tile, and each invocation column's partial maxes (a padded row per column).
 */
function storage(p: AttentionProblem, c: BlockedAttentionTiling) {
  const redStride = c.br / BLOCK + 1;
  return { q: c.br * (p.d / 4), kp: Math.max(c.bc * (p.d / 4), (c.br * c.bc) / 4), v: c.bc * (p.dv / 4), red: threadsAcross(c) * redStride, redStride };
}

export function blockedTilingBytes(p: AttentionProblem, c: BlockedAttentionTiling): number {
  const s = storage(p, c);
  return (s.q + s.kp + s.v + s.red) * 16;
}

/** One blocked module the chooser picked, with the workgroup storage and invocations it needs. */
export interface BlockedChoice {
  tiling: BlockedAttentionTiling;
  bytes: number;
  invocations: number;
}

/**
 * The blocked kernel's rows per workgroup and, within the tuned workgroup storage and within
 * the portable limits, the tiling with the most keys per tile that fits (one where both
 * agree); undefined where the tuning leaves the problem to the other kernels (see
 * AttentionTuning) or no tiling fits.
 */
export function chooseBlockedTilings(p: AttentionProblem): { rows: number; choices: BlockedChoice[] } | undefined {
  const t = attentionTuning();
  if (t.blockedRows < BLOCK || p.tq < t.minBlockedTq) return undefined;
  const rows = t.blockedRows;
  const choices: BlockedChoice[] = [];
  for (const [budget, maxInvocations] of [
    [t.blockedWorkgroupBytes, MAX_INVOCATIONS],
    [PORTABLE_WORKGROUP_BYTES, PORTABLE_INVOCATIONS],
  ]) {
    for (let bc = t.blockedKeys; bc >= BLOCK; bc /= 2) {
      const tiling = { br: rows, bc, prefetch: t.blockedPrefetch };
      const bytes = blockedTilingBytes(p, tiling);
      const invocations = invocationsOf(tiling);
      if (blockedUnfit(p, tiling) || bytes > budget || invocations > maxInvocations) continue;
      if (!choices.some((c) => c.tiling.bc === bc)) choices.push({ tiling, bytes, invocations });
      break;
    }
  }
  return choices.length ? { rows, choices } : undefined;
}

export function blockedAttentionKernel(p: AttentionProblem, c: BlockedAttentionTiling): KernelCode {
  const unfit = blockedUnfit(p, c);
  if (unfit) throw new Error(`blockedAttentionKernel: ${unfit}`);
  const { tq, tk, d, dv } = p;
  const { br, bc } = c;
  const tx = threadsAcross(c);
  const threads = invocationsOf(c);
  const d4 = d / 4;
  const dv4 = dv / 4;
  const cv = dv4 / tx;
  const s = storage(p, c);
  const qBlocks = Math.ceil(tq / br);
  const { grid, gridX } = linearGrid(p.batches * qBlocks);
  const rowTail = tq % br !== 0;
  const keyTail = tk % bc !== 0;
  // eight key blocks' rows of K at one chunk land in eight banks when each row's chunks are
  // permuted within aligned groups of eight (needs d/4 a multiple of 8)
  const swizzled = d4 % 8 === 0;
  const R = Array.from({ length: BLOCK }, (_, r) => r);
  const C = Array.from({ length: cv }, (_, cc) => cc);

  const decls = bindingDecls(p.operands)
    .wgsl.split('\n')
    .map((line, i) => (i <= 2 || i === 4 ? line.replace('array<f32>', 'array<vec4<f32>>') : line));
  const maskAt = (rr: number, key: string) =>
    p.maskKeyStride === 0 ? `in3[m_row${rr}]` : p.maskKeyStride === 1 ? `in3[m_row${rr} + ${key}]` : `in3[m_row${rr} + (${key}) * ${u32(p.maskKeyStride)}]`;

  const setup: string[] = [
    'let tx = lid % TX;',
    'let ty = lid / TX;',
    '// the q rows of the block (rows past TQ repeat the last and store nothing)',
    'for (var e = lid; e < BR * D4; e += WG) {',
    '  let row = min(row0 + e / D4, TQ - 1u);',
    '  q_tile[e] = in0[q_base / 4u + row * D4 + e % D4];',
    '}',
    '// this invocation\'s rows: row0 + 4·ty + r',
    ...R.flatMap((rr) => [
      `let i${rr} = row0 + ty * 4u + ${u32(rr)};`,
      `let m_row${rr} = m_base${p.maskRowStride ? ` + ${rowTail ? `min(i${rr}, TQ - 1u)` : `i${rr}`} * ${u32(p.maskRowStride)}` : ''};`,
    ]),
    `var run_max = vec4<f32>(${LOWEST_F32});`,
    '// this invocation\'s share of each row\'s sum of exponentials (its keys only)',
    'var run_sum = vec4<f32>();',
    ...R.flatMap((rr) => C.map((cc) => `var o${rr}_${cc} = vec4<f32>();`)),
    ...(swizzled ? ['let sw = tx % 8u;'] : []),
    '// where this invocation\'s rows of q and P, keys of K and columns of V start',
    'let q_at = ty * 4u * D4;',
    'let k_at = tx * 4u * D4;',
    'let p_at = ty * 4u * BC4;',
    'let v_at = tx;',
  ];

  // --- one tile of keys: staged from registers loaded during the previous tile's arithmetic
  const kLoads = Math.ceil((bc * d4) / threads);
  const vLoads = Math.ceil((bc * dv4) / threads);
  const staged = [
    { name: 'xk', loads: kLoads, count: bc * d4, width: 'D4', input: 'in1', base: 'k_base' },
    { name: 'xv', loads: vLoads, count: bc * dv4, width: 'DV4', input: 'in2', base: 'v_base' },
  ];
  const stagedIndex = (n: number) => (n === 0 ? 'lid' : `lid + ${u32(n * threads)}`);
  /** Loads of the tile at key `from` into the staging registers; zeros past TK (and past the tile, where the invocations do not divide it). */
  const prefetch = (from: string) =>
    staged.flatMap((o) =>
      Array.from({ length: o.loads }, (_, n) => {
        const e = stagedIndex(n);
        const guard = [(n + 1) * threads > o.count ? `${e} < ${u32(o.count)}` : '', `${from} + (${e}) / ${o.width} < TK`].filter(Boolean).join(' && ');
        return [`${o.name}${n} = vec4<f32>();`, `if (${guard}) {`, `  ${o.name}${n} = ${o.input}[${o.base} / 4u + (${from}) * ${o.width} + ${e}];`, '}'];
      }).flat(),
    );
  const kAt = (e: string) => (swizzled ? `kp_tile[((${e}) / D4) * D4 + (((${e}) % D4) ^ ((${e}) / D4 / 4u % 8u))]` : `kp_tile[${e}]`);
  const stores = staged.flatMap((o) =>
    Array.from({ length: o.loads }, (_, n) => {
      const e = stagedIndex(n);
      const store = `${o.name === 'xk' ? kAt(e) : `v_tile[${e}]`} = ${o.name}${n};`;
      return (n + 1) * threads > o.count ? [`if (${e} < ${u32(o.count)}) {`, `  ${store}`, '}'] : [store];
    }).flat(),
  );
  setup.push(
    `// the staging registers${c.prefetch ? ', first loaded with the first tile' : ''}`,
    ...staged.flatMap((o) => Array.from({ length: o.loads }, (_, n) => `var ${o.name}${n}: vec4<f32>;`)),
    ...(c.prefetch ? prefetch('0u') : []),
  );
  const seen = (rr: number, kk: number) => [keyTail ? `key${kk} < TK` : '', p.causal ? `key${kk} <= i${rr} + CAUSAL_SHIFT` : ''].filter(Boolean).join(' && ');
  const scored: string[] = [];
  for (const rr of R) {
    for (let kk = 0; kk < BLOCK; kk++) {
      const score = `s${rr}_${kk} * SCALE + ${maskAt(rr, keyTail ? `min(key${kk}, TK - 1u)` : `key${kk}`)}`;
      scored.push(seen(rr, kk) ? `s${rr}_${kk} = select(${LOWEST_F32}, ${score}, ${seen(rr, kk)});` : `s${rr}_${kk} = ${score};`);
    }
  }
  const K = Array.from({ length: BLOCK }, (_, kk) => kk);
  /** `base + scale·at` as a constant WGSL index */
  const offset = (base: number, at: number, scale = 1) => u32(base + scale * at);
  const tile: string[] = [
    'workgroupBarrier(); // everyone is done with the previous tile',
    ...(c.prefetch ? [] : prefetch('j0')),
    ...stores,
    'workgroupBarrier();',
    ...(c.prefetch ? ['// the next tile\'s loads, in flight during this tile\'s arithmetic', ...prefetch('j0 + BC')] : []),
    '// S = q·kᵀ for rows 4·ty + r, keys 4·tx + k of the tile',
    ...R.flatMap((rr) => K.map((kk) => `var s${rr}_${kk} = 0.0;`)),
    ...Array.from({ length: d4 }, (_, ci) => [
      `// features ${4 * ci}..${4 * ci + 3}`,
      ...R.map((rr) => `let q${rr}_${ci} = q_tile[q_at + ${offset(rr * d4, ci)}];`),
      ...(swizzled ? [`let kc${ci} = ${ci === 0 ? 'sw' : `${u32(ci)} ^ sw`};`] : []),
      ...K.map((kk) => `let k${kk}_${ci} = kp_tile[k_at + ${swizzled ? `${u32(kk * d4)} + kc${ci}` : offset(kk * d4, ci)}];`),
      ...R.flatMap((rr) =>
        K.map((kk) => {
          const [q, k, acc] = [`q${rr}_${ci}`, `k${kk}_${ci}`, `s${rr}_${kk}`];
          return `${acc} = fma(${q}.w, ${k}.w, fma(${q}.z, ${k}.z, fma(${q}.y, ${k}.y, fma(${q}.x, ${k}.x, ${acc}))));`;
        }),
      ),
    ]).flat(),
    ...K.map((kk) => `let key${kk} = j0 + tx * 4u + ${u32(kk)};`),
    `// scores q·k·scale + mask${seen(0, 0) ? '; keys a row does not see score LOWEST and weigh 0' : ''}`,
    ...scored,
    '// the rows\' maxes over the tile: this invocation\'s 4 keys, then across the TX invocations of the rows',
    `red[tx * RED_STRIDE + ty] = vec4<f32>(${R.map((rr) => `max(max(s${rr}_0, s${rr}_1), max(s${rr}_2, s${rr}_3))`).join(', ')});`,
    'workgroupBarrier();',
    'var tile_max = red[ty];',
    'for (var t = 1u; t < TX; t++) {',
    '  tile_max = max(tile_max, red[t * RED_STRIDE + ty]);',
    '}',
    'let new_max = max(run_max, tile_max);',
    'let correction = exp(run_max - new_max);',
    'run_max = new_max;',
    ...R.flatMap((rr) =>
      K.map((kk) => {
        const e = `exp(s${rr}_${kk} - new_max[${rr}])`;
        return seen(rr, kk) ? `let p${rr}_${kk} = select(0.0, ${e}, ${seen(rr, kk)});` : `let p${rr}_${kk} = ${e};`;
      }),
    ),
    `run_sum = run_sum * correction + vec4<f32>(${R.map((rr) => `(p${rr}_0 + p${rr}_1) + (p${rr}_2 + p${rr}_3)`).join(', ')});`,
    '// every invocation has scored the tile (K is dead): P takes its space',
    ...R.map((rr) => `kp_tile[p_at + ${u32(rr)} * BC4 + tx] = vec4<f32>(p${rr}_0, p${rr}_1, p${rr}_2, p${rr}_3);`),
    ...R.flatMap((rr) => C.map((cc) => `o${rr}_${cc} = o${rr}_${cc} * correction[${rr}];`)),
    'workgroupBarrier();',
    '// O += P·V for rows 4·ty + r, output vec4s tx + TX·c',
    ...Array.from({ length: bc / 4 }, (_, g) => [
      ...R.map((rr) => `let pr${rr}_${g} = kp_tile[p_at + ${offset(rr * (bc / 4), g)}];`),
      ...K.flatMap((kk) => [
        ...C.map((cc) => `let v${kk}_${cc}_${g} = v_tile[v_at + ${offset(kk * dv4 + cc * tx, g, 4 * dv4)}];`),
        ...R.flatMap((rr) => C.map((cc) => `o${rr}_${cc} = fma(vec4<f32>(pr${rr}_${g}[${kk}]), v${kk}_${cc}_${g}, o${rr}_${cc});`)),
      ]),
    ]).flat(),
  ];

  const store: string[] = [
    '// the rows\' sums: the TX invocations\' shares, through the maxes\' memory',
    'workgroupBarrier();',
    'red[tx * RED_STRIDE + ty] = run_sum;',
    'workgroupBarrier();',
    'var row_sum = red[ty];',
    'for (var t = 1u; t < TX; t++) {',
    '  row_sum += red[t * RED_STRIDE + ty];',
    '}',
    'let inv_sum = 1.0 / row_sum;',
    ...R.flatMap((rr) => {
      const lines = C.map((cc) => `out[(batch * TQ + i${rr}) * DV4 + tx + ${u32(cc * tx)}] = o${rr}_${cc} * inv_sum[${rr}];`);
      return rowTail ? [`if (i${rr} < TQ) {`, ...indent(lines), '}'] : lines;
    }),
  ];

  const header = kernelHeader(p.name, p.node, p.operands, `attention, register-blocked FlashAttention-2: ${describeBlockedTiling(c)}${p.causal ? ', causal (tiles past the block\'s last row skipped)' : ''}`);
  const wgsl = `${header}
${decls.join('\n')}

const TQ: u32 = ${u32(tq)};
const TK: u32 = ${u32(tk)};
const D4: u32 = ${u32(d4)};
const DV4: u32 = ${u32(dv4)};
const BR: u32 = ${u32(br)};
const BC: u32 = ${u32(bc)};
const BC4: u32 = ${u32(bc / 4)};
const TX: u32 = ${u32(tx)};
const WG: u32 = ${u32(threads)};
const RED_STRIDE: u32 = ${u32(s.redStride)};
const Q_BLOCKS: u32 = ${u32(qBlocks)};
const BATCHES: u32 = ${u32(p.batches)};
const WORKGROUPS: u32 = ${u32(p.batches * qBlocks)};
const GRID_X: u32 = ${u32(gridX)};
const SCALE: f32 = ${wgslFloat(Math.fround(p.scale))};${p.causal ? `\nconst CAUSAL_SHIFT: u32 = ${u32(tk - tq)}; // causal: query i sees keys up to i + TK - TQ` : ''}

var<workgroup> q_tile: array<vec4<f32>, ${u32(s.q)}>; // the block's q rows
var<workgroup> kp_tile: array<vec4<f32>, ${u32(s.kp)}>; // the tile's K rows${swizzled ? ' (chunks swizzled by key block)' : ''}, then its exponentials P, 4 keys a vec4
var<workgroup> v_tile: array<vec4<f32>, ${u32(s.v)}>; // the tile's V rows
var<workgroup> red: array<vec4<f32>, ${u32(s.red)}>; // per invocation column, 4 rows' partial maxes (then sums) a vec4

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wg_index = wid.x + wid.y * GRID_X;
  if (wg_index >= WORKGROUPS) {
    return;
  }
${
  p.causal
    ? `  // causal blocks grow with their rows: the last blocks of every batch start first (longest first)
  let batch = wg_index % BATCHES;
  let row0 = (Q_BLOCKS - 1u - wg_index / BATCHES) * BR;`
    : `  let batch = wg_index / Q_BLOCKS;
  let row0 = (wg_index % Q_BLOCKS) * BR;`
}
${p.batchOffsets.join('\n')}
${indent(setup).join('\n')}
${p.causal ? "  // causal: the block's last row sees keys up to its index + CAUSAL_SHIFT; later tiles are skipped\n  let keys_end = min(TK, row0 + BR + CAUSAL_SHIFT);" : '  let keys_end = TK;'}
  for (var j0 = 0u; j0 < keys_end; j0 += BC) {
${indent(tile, 4).join('\n')}
  }
${indent(store).join('\n')}
}
`;
  return { wgsl, workgroupSize: [threads, 1, 1], workgroupBytes: blockedTilingBytes(p, c), workgroups: grid };
}
