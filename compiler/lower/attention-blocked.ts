// The register-blocked attention kernel: FlashAttention-2 with both products tiled as a SIMT
// matmul. A workgroup owns BR query rows, staged once in workgroup memory, and walks the keys
// in tiles of BC (K and V staged per tile from registers loaded during the previous tile's
// arithmetic). For the scores S = q·kᵀ the invocations form a (BR/4) × (BC/4) grid, each
// holding a 4-row × 4-key block (per 4 features, four vec4 reads of q and four of k feed 64
// FMAs). For the output they form 8-row × 8-column blocks, and the invocations beyond one
// per block split each tile's keys among them (per key, two vec4 reads of P and two of V feed
// 64 FMAs); the splits' blocks are added once, at the end. The tiled kernel
// (attention-tiled.ts) reads a vec4 per 4 FMAs. On an H200 workgroup memory delivers 32
// floats a cycle per SM against 128 FMAs, so that ratio bounds the tiled kernel near a
// quarter of the FMA rate and this one near half.
//
// The online softmax needs each row's tile max across the BC/4 invocations sharing the row:
// they exchange partial maxes through workgroup memory; each keeps its own share of the row
// sums (every term carries the row's common max), added once at the end. The exponentials P
// take the K tile's space (every invocation has scored the tile by then), key by key, and
// the tile's correction per row goes through workgroup memory to the output's invocations.
// Causal blocks do work in proportion to their last row, so the grid starts the last blocks
// of every batch first: the longest run first and the short ones fill in behind them (9
// heads × 2048 in 64 × 32 blocks: 394 → 265 µs on an H200).
//
// Bank conflicts: eight invocations of a warp quarter share a row group and read eight key
// blocks' rows of K at one feature chunk; K rows are staged with their vec4 chunks XOR-swizzled
// by the key block (d a multiple of 32), so those eight reads hit eight distinct banks. q and P
// reads are broadcasts within a quarter; V and output columns are consecutive across it.
import { wgslFloat } from '../ir/ops';
import type { AttentionTuning } from '../target/tuning';
import { inverseSum, keyLimit, LOWEST_F32, maskElement, type AttentionProblem } from './attention';
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
/** Rows and columns of the output block one invocation accumulates: 8 × 8, two vec4s per row. */
const OUT_BLOCK = 8;
/** invocations a variant may use: WebGPU's default limit, which most devices offer */
const MAX_INVOCATIONS = 256;

export const describeBlockedTiling = (c: BlockedAttentionTiling) =>
  `${c.br} query rows per workgroup, keys in tiles of ${c.bc}${c.prefetch ? ' (the next loaded during each)' : ''}, each invocation scoring ${BLOCK} rows × ${BLOCK} keys and summing ${OUT_BLOCK} × ${OUT_BLOCK} outputs in registers, online softmax`;

/** The invocations across a row's keys. */
const threadsAcross = (c: BlockedAttentionTiling) => c.bc / BLOCK;
const invocationsOf = (c: BlockedAttentionTiling) => (c.br / BLOCK) * threadsAcross(c);
/**
 * The output's invocation grid: 8 × 8 blocks (rb down the rows, cb across the columns) and, as
 * many times as the invocations allow, key splits (ks), each summing its share of a tile's keys.
 */
function outputGrid(p: AttentionProblem, c: BlockedAttentionTiling) {
  const rowBlocks = c.br / OUT_BLOCK;
  const colBlocks = p.dv / OUT_BLOCK;
  const splits = invocationsOf(c) / (rowBlocks * colBlocks);
  return { rowBlocks, colBlocks, splits, keysPerSplit: c.bc / splits };
}

/** Why the blocked kernel cannot run `p` with tiling `c`, or undefined when it can. */
export function blockedUnfit(p: AttentionProblem, c: BlockedAttentionTiling): string | undefined {
  if (c.br % OUT_BLOCK !== 0 || c.bc % BLOCK !== 0) return `rows ${c.br} must be a multiple of ${OUT_BLOCK} and keys ${c.bc} of ${BLOCK}`;
  if (p.d % 4 !== 0) return `d = ${p.d} is not a multiple of 4`;
  if (p.dv % OUT_BLOCK !== 0) return `dv = ${p.dv} is not a multiple of ${OUT_BLOCK}`;
  const { splits, keysPerSplit } = outputGrid(p, c);
  if (!Number.isInteger(splits) || splits < 1 || !Number.isInteger(keysPerSplit)) return `${invocationsOf(c)} invocations do not split ${c.br} rows × ${p.dv} columns in ${OUT_BLOCK} × ${OUT_BLOCK} blocks over whole keys`;
  if (splits > 1 && !mergeSpace(p, c)) return `the key splits' output blocks do not fit one of the tiles' spaces`;
  return undefined;
}

/**
 * Workgroup storage in vec4s: q rows, the K tile (whose space P takes once every invocation
 * has scored it: per key, its rows' exponentials 4 a vec4, padded), the V tile, each
 * invocation column's partial maxes (a padded row per column), and per 4 rows their
 * correction (then their sums) for the output's invocations.
 */
function storage(p: AttentionProblem, c: BlockedAttentionTiling) {
  const redStride = c.br / BLOCK + 1;
  const pStride = c.br / 4 + 1;
  return { q: c.br * (p.d / 4), kp: Math.max(c.bc * (p.d / 4), c.bc * pStride), v: c.bc * (p.dv / 4), red: threadsAcross(c) * redStride, rows: c.br / 4, redStride, pStride };
}

/** Where the key splits' output blocks meet at the end (br × dv floats): the first of the q, K and V tiles that holds them. */
function mergeSpace(p: AttentionProblem, c: BlockedAttentionTiling): string | undefined {
  const s = storage(p, c);
  const need = (c.br * p.dv) / 4;
  return need <= s.q ? 'q_tile' : need <= s.kp ? 'kp_tile' : need <= s.v ? 'v_tile' : undefined;
}

export function blockedTilingBytes(p: AttentionProblem, c: BlockedAttentionTiling): number {
  const s = storage(p, c);
  return (s.q + s.kp + s.v + s.red + s.rows) * 16;
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
export function chooseBlockedTilings(p: AttentionProblem, t: AttentionTuning): { rows: number; choices: BlockedChoice[] } | undefined {
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
  const s = storage(p, c);
  const og = outputGrid(p, c);
  const qBlocks = Math.ceil(tq / br);
  const { grid, gridX } = linearGrid(p.batches * qBlocks);
  const rowTail = tq % br !== 0;
  const keyTail = tk % bc !== 0;
  // keys past the last a row may see (TK, or the run-time count) are staged as zeros and weigh 0
  const keyGuard = keyTail || p.keyCount;
  const keysSeen = keyLimit(p);
  // eight key blocks' rows of K at one chunk land in eight banks when each row's chunks are
  // permuted within aligned groups of eight (needs d/4 a multiple of 8)
  const swizzled = d4 % 8 === 0;
  const R = Array.from({ length: BLOCK }, (_, r) => r);
  const OR = Array.from({ length: OUT_BLOCK }, (_, r) => r);
  const H = [0, 1];

  // q, k, v and the output as vec4s; the mask and the key count as scalars
  const { wgsl: decls } = bindingDecls(p.operands, (i) => i !== 3 && !(p.keyCount && i === 4));

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
    ...(swizzled ? ['let sw = tx % 8u;'] : []),
    '// where this invocation\'s rows of q and keys of K start',
    'let q_at = ty * 4u * D4;',
    'let k_at = tx * 4u * D4;',
    '// the output: this invocation\'s 8 × 8 block (rows 8·rb + r, vec4 columns cb and cb + CB), its share of each tile\'s keys (ks)',
    'let cb = lid % CB;',
    'let rb = (lid / CB) % RB;',
    'let ks = lid / (CB * RB);',
    'let p_at = ks * KEYS_PER_SPLIT * P_STRIDE + rb * 2u;',
    'let v_at = ks * KEYS_PER_SPLIT * DV4 + cb;',
    ...OR.flatMap((r) => H.map((h) => `var o${r}_${h} = vec4<f32>();`)),
  ];

  // --- one tile of keys: staged from registers loaded during the previous tile's arithmetic
  const kLoads = Math.ceil((bc * d4) / threads);
  const vLoads = Math.ceil((bc * dv4) / threads);
  const staged = [
    { name: 'xk', loads: kLoads, count: bc * d4, width: 'D4', input: 'in1', base: 'k_base' },
    { name: 'xv', loads: vLoads, count: bc * dv4, width: 'DV4', input: 'in2', base: 'v_base' },
  ];
  const stagedIndex = (n: number) => (n === 0 ? 'lid' : `lid + ${u32(n * threads)}`);
  /** Loads of the tile at key `from` into the staging registers; zeros past the keys seen (and past the tile, where the invocations do not divide it). */
  const prefetch = (from: string) =>
    staged.flatMap((o) =>
      Array.from({ length: o.loads }, (_, n) => {
        const e = stagedIndex(n);
        const guard = [(n + 1) * threads > o.count ? `${e} < ${u32(o.count)}` : '', `${from} + (${e}) / ${o.width} < ${keysSeen}`].filter(Boolean).join(' && ');
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
  const seen = (rr: number, kk: number) => [keyGuard ? `key${kk} < ${keysSeen}` : '', p.causal ? `key${kk} <= i${rr} + CAUSAL_SHIFT` : ''].filter(Boolean).join(' && ');
  const scored: string[] = [];
  for (const rr of R) {
    for (let kk = 0; kk < BLOCK; kk++) {
      const score = `s${rr}_${kk} * SCALE + ${maskElement(p, `m_row${rr}`, keyTail ? `min(key${kk}, TK - 1u)` : `key${kk}`)}`;
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
    '// every invocation has scored the tile (K is dead): P takes its space, key by key',
    ...K.map((kk) => `kp_tile[(tx * 4u + ${u32(kk)}) * P_STRIDE + ty] = vec4<f32>(${R.map((rr) => `p${rr}_${kk}`).join(', ')});`),
    'if (tx == 0u) {',
    '  rows[ty] = correction;',
    '}',
    'workgroupBarrier();',
    '// O += P·V for this invocation\'s block and keys',
    'let corr_lo = rows[rb * 2u];',
    'let corr_hi = rows[rb * 2u + 1u];',
    ...OR.flatMap((r) => H.map((h) => `o${r}_${h} = o${r}_${h} * corr_${r < 4 ? 'lo' : 'hi'}[${r % 4}];`)),
    ...Array.from({ length: og.keysPerSplit }, (_, j) => [
      `let pl${j} = kp_tile[p_at + ${u32(j * s.pStride)}];`,
      `let ph${j} = kp_tile[p_at + ${u32(j * s.pStride + 1)}];`,
      ...H.map((h) => `let v${h}_${j} = v_tile[v_at + ${u32(j * dv4 + h * og.colBlocks)}];`),
      ...OR.flatMap((r) => H.map((h) => `o${r}_${h} = fma(vec4<f32>(p${r < 4 ? 'l' : 'h'}${j}[${r % 4}]), v${h}_${j}, o${r}_${h});`)),
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
    'if (tx == 0u) {',
    '  rows[ty] = row_sum;',
    '}',
    ...(og.splits > 1
      ? [
          `// the key splits' output blocks, added into split 0 one split a round through ${mergeSpace(p, c)}`,
          'let slot = rb * CB + cb;',
          'for (var h = 1u; h < SPLITS; h++) {',
          '  workgroupBarrier();',
          '  if (ks == h) {',
          ...OR.flatMap((r) => H.map((h) => `    ${mergeSpace(p, c)}[slot + ${u32((r * 2 + h) * og.rowBlocks * og.colBlocks)}] = o${r}_${h};`)),
          '  }',
          '  workgroupBarrier();',
          '  if (ks == 0u) {',
          ...OR.flatMap((r) => H.map((h) => `    o${r}_${h} += ${mergeSpace(p, c)}[slot + ${u32((r * 2 + h) * og.rowBlocks * og.colBlocks)}];`)),
          '  }',
          '}',
        ]
      : ['workgroupBarrier();']),
    'if (ks == 0u) {',
    `  let inv_lo = ${inverseSum(p, 'rows[rb * 2u]', true)};`,
    `  let inv_hi = ${inverseSum(p, 'rows[rb * 2u + 1u]', true)};`,
    ...OR.flatMap((r) => {
      const lines = H.map((h) => `out[(batch * TQ + i) * DV4 + cb${h ? ' + CB' : ''}] = o${r}_${h} * inv_${r < 4 ? 'lo' : 'hi'}[${r % 4}];`);
      return [
        '  {',
        `    let i = row0 + rb * 8u + ${u32(r)};`,
        ...(rowTail ? ['    if (i < TQ) {', ...indent(lines, 6), '    }'] : indent(lines, 4)),
        '  }',
      ];
    }),
    '}',
  ];

  const header = kernelHeader(
    p.name,
    p.node,
    p.operands,
    `attention, register-blocked FlashAttention-2: ${describeBlockedTiling(c)}${p.causal ? ', causal (tiles past the block\'s last row skipped)' : ''}${p.keyCount ? ', over a run-time key count (tiles past it skipped)' : ''}`,
  );
  const wgsl = `${header}
${decls}

const TQ: u32 = ${u32(tq)};
const TK: u32 = ${u32(tk)};
const D4: u32 = ${u32(d4)};
const DV4: u32 = ${u32(dv4)};
const BR: u32 = ${u32(br)};
const BC: u32 = ${u32(bc)};
const TX: u32 = ${u32(tx)};
const CB: u32 = ${u32(og.colBlocks)};
const RB: u32 = ${u32(og.rowBlocks)};
const SPLITS: u32 = ${u32(og.splits)};
const KEYS_PER_SPLIT: u32 = ${u32(og.keysPerSplit)};
const P_STRIDE: u32 = ${u32(s.pStride)};
const WG: u32 = ${u32(threads)};
const RED_STRIDE: u32 = ${u32(s.redStride)};
const Q_BLOCKS: u32 = ${u32(qBlocks)};
const BATCHES: u32 = ${u32(p.batches)};
const WORKGROUPS: u32 = ${u32(p.batches * qBlocks)};
const GRID_X: u32 = ${u32(gridX)};
const SCALE: f32 = ${wgslFloat(Math.fround(p.scale))};${p.causal ? `\nconst CAUSAL_SHIFT: u32 = ${u32(tk - tq)}; // causal: query i sees keys up to i + TK - TQ` : ''}

var<workgroup> q_tile: array<vec4<f32>, ${u32(s.q)}>; // the block's q rows
var<workgroup> kp_tile: array<vec4<f32>, ${u32(s.kp)}>; // the tile's K rows${swizzled ? ' (chunks swizzled by key block)' : ''}, then its exponentials P, per key 4 rows a vec4
var<workgroup> v_tile: array<vec4<f32>, ${u32(s.v)}>; // the tile's V rows
var<workgroup> red: array<vec4<f32>, ${u32(s.red)}>; // per invocation column, 4 rows' partial maxes (then sums) a vec4
var<workgroup> rows: array<vec4<f32>, ${u32(s.rows)}>; // per 4 rows, the tile's correction (then the rows' sums)

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
${
  p.causal
    ? `  // causal: the block's last row sees keys up to its index + CAUSAL_SHIFT; later tiles are skipped\n  let keys_end = min(${keysSeen}, row0 + BR + CAUSAL_SHIFT);`
    : `  let keys_end = ${keysSeen};`
}
  for (var j0 = 0u; j0 < keys_end; j0 += BC) {
${indent(tile, 4).join('\n')}
  }
${indent(store).join('\n')}
}
`;
  return { wgsl, workgroupSize: [threads, 1, 1], workgroupBytes: blockedTilingBytes(p, c), workgroups: grid };
}
