// The tiled attention kernel, FlashAttention-2 style: a workgroup owns BR query rows of one
// batch and walks the keys in tiles staged in workgroup memory (K and V, coalesced vec4 loads).
// Each invocation keeps one row's q and output accumulator in registers and scores its block of
// keys against the tile: rows vary fastest across invocations, so a warp reads the same K and V
// address at once (a broadcast) and every vec4 read feeds four FMAs. The softmax is online per
// row (running max and sum, the accumulator rescaled by exp(old max - new max)) and needs no
// reduction across invocations. Heads wider than 64 split a row's features over 2 or 4 lanes,
// which add their partial dot products through workgroup memory; small problems split each
// row's keys among key groups, each with its own softmax state, merged at the end. The choice
// of tiling has its knobs in AttentionTuning (a target's; bench/attention.ts sweeps
// them); the portable kernel stays within WebGPU's portable limits, and where more key groups
// need more workgroup storage a 'large' variant (32 KiB) on the same grid comes first.
import { wgslFloat } from '../ir/ops';
import type { AttentionTuning } from '../target/tuning';
import { inverseSum, keyLimit, LOWEST_F32, maskElement, type AttentionProblem } from './attention';
import { bindingDecls, indent, kernelHeader, linearGrid, u32, type KernelCode } from './kernel';
import { PORTABLE_INVOCATIONS, PORTABLE_WORKGROUP_BYTES } from './matmul-tiled';

export interface AttentionTiling {
  /** query rows per workgroup */
  br: number;
  /** keys one key group scores per tile; a tile holds groups·bc keys */
  bc: number;
  /** invocations splitting one row's keys, each with its own softmax state, merged at the end */
  groups: number;
  /** invocations sharing one row's features (partial dot products added through workgroup memory) */
  lanes: number;
  /** vec4s of q and of the output one invocation holds */
  qv: number;
  ov: number;
}

export const describeAttentionTiling = (c: AttentionTiling) =>
  `${c.br} query rows per workgroup, keys in tiles of ${c.groups * c.bc}${c.groups > 1 ? ` split ${c.groups} ways` : ''}, ` +
  `${c.lanes > 1 ? `${c.lanes} invocations per row` : 'an invocation per row'} holding q and the output in registers, online softmax`;

/** vec4s of q (and of the output) one lane may hold at most: 16 (d = 64 on one lane) is about 160 registers */
const MAX_VEC4_PER_LANE = 16;

/** What one workgroup may use. */
export interface AttentionLimits {
  workgroupBytes: number;
  invocations: number;
}
export const PORTABLE_ATTENTION_LIMITS: AttentionLimits = { workgroupBytes: PORTABLE_WORKGROUP_BYTES, invocations: PORTABLE_INVOCATIONS };

/** The K and V tiles (and, after the keys, the key groups' states) as vec4s; the partial dot products as f32s. */
function storage(c: AttentionTiling): { kvVec4: number; partials: number } {
  const tiles = c.groups * c.bc * c.lanes * (c.qv + c.ov);
  const merge = c.groups > 1 ? c.lanes * c.br * (c.ov + 1) : 0;
  return { kvVec4: Math.max(tiles, merge), partials: c.lanes > 1 ? c.groups * c.lanes * c.br * c.bc : 0 };
}

export function attentionTilingBytes(c: AttentionTiling): number {
  const { kvVec4, partials } = storage(c);
  return kvVec4 * 16 + partials * 4;
}

/**
 * The tiling for a problem within `limits`, or undefined where the row kernel should run it:
 * fewer than minTiledTq query rows, or a head wider than four lanes' registers (d or dv above
 * 4·4·maxLaneVec4). Lanes are as few as the widths allow; key groups as many as it takes to
 * reach targetInvocations (each keeping minKeysPerGroup keys); then the largest rows and key
 * tiles that fit, preferring fewer groups over tiles below minSplitTileKeys. `rows` fixes the
 * rows per workgroup (a variant must keep the portable kernel's grid).
 */
export function chooseAttentionTiling(p: AttentionProblem, t: AttentionTuning, limits: AttentionLimits = PORTABLE_ATTENTION_LIMITS, rows?: number): AttentionTiling | undefined {
  if (p.tq < t.minTiledTq) return undefined;
  const d4 = Math.ceil(p.d / 4);
  const dv4 = Math.ceil(p.dv / 4);
  // the fewest lanes within maxLaneVec4; heads too wide for that at 4 lanes still take 4 up to the register bound
  const lanesWithin = (limit: number) => [1, 2, 4].find((l) => Math.ceil(d4 / l) <= limit && Math.ceil(dv4 / l) <= limit);
  const lanes = lanesWithin(t.maxLaneVec4) ?? lanesWithin(Math.max(t.maxLaneVec4, MAX_VEC4_PER_LANE));
  if (lanes === undefined) return undefined;
  const qv = Math.ceil(d4 / lanes);
  const ov = Math.ceil(dv4 / lanes);
  const minRows = Math.min(t.minRows, 16);
  let rowsWanted = t.minRows;
  while (rowsWanted < p.tq && rowsWanted < t.maxRows) rowsWanted *= 2;
  let wantGroups = Math.max(1, t.minGroups);
  const fewRows = p.batches * p.tq * lanes < t.targetInvocations;
  while (fewRows && wantGroups < t.maxGroups && p.tk >= 2 * wantGroups * t.minKeysPerGroup) wantGroups *= 2;
  const tileKeys: number[] = [];
  for (let bc = t.maxTileKeys; bc >= 4; bc /= 2) tileKeys.push(bc);
  for (let groups = wantGroups; groups >= 1; groups /= 2) {
    const fits = (br: number) => br * groups * lanes <= limits.invocations;
    const rowChoices = rows !== undefined ? [rows] : [];
    const mostRows = 2 ** Math.floor(Math.log2(limits.invocations / (groups * lanes)));
    if (rows === undefined) for (let br = Math.min(rowsWanted, mostRows); br >= minRows; br /= 2) rowChoices.push(br);
    for (const br of rowChoices.filter(fits)) {
      for (const bc of tileKeys) {
        if (bc < t.minSplitTileKeys && groups > 1) continue;
        const c = { br, bc, groups, lanes, qv, ov };
        if (attentionTilingBytes(c) <= limits.workgroupBytes) return c;
      }
    }
  }
  return undefined;
}

/**
 * The portable tiling and, where largeWorkgroupBytes asks for one and it differs, the tiling
 * of a 'large' variant with the same rows per workgroup (hence the same grid).
 */
export function chooseAttentionTilings(p: AttentionProblem, tuning: AttentionTuning): { portable?: AttentionTiling; large?: AttentionTiling; largeLimits: AttentionLimits } {
  const largeLimits = { workgroupBytes: tuning.largeWorkgroupBytes, invocations: Math.max(tuning.largeInvocations, PORTABLE_INVOCATIONS) };
  const fallback = { portable: chooseAttentionTiling(p, tuning), largeLimits };
  if (tuning.largeWorkgroupBytes <= PORTABLE_WORKGROUP_BYTES && tuning.largeInvocations <= PORTABLE_INVOCATIONS) return fallback;
  largeLimits.workgroupBytes = Math.max(largeLimits.workgroupBytes, PORTABLE_WORKGROUP_BYTES);
  const large = chooseAttentionTiling(p, tuning, largeLimits);
  const portable = large && chooseAttentionTiling(p, tuning, PORTABLE_ATTENTION_LIMITS, large.br);
  if (!large || !portable) return fallback;
  const same = (Object.keys(large) as (keyof AttentionTiling)[]).every((k) => large[k] === portable[k]);
  return same ? { portable, largeLimits } : { portable, large, largeLimits };
}

/** One access to a row's features 4·chunk .. 4·chunk + 3: the buffer index, the vec4 component (scalar rows), the guard. */
interface ChunkAccess {
  index: string;
  component?: number;
  guard?: string;
}

/**
 * The accesses to features 4·chunk .. 4·chunk + 3 of the row of `len` elements starting at
 * element `row`: one vec4 (`vec`: the buffer is read as vec4s) or four scalars, each guarded
 * to stay inside the row. `chunk` is a number where it is known here, and so are the guards;
 * otherwise it is below `chunks`.
 */
function chunkAccesses(vec: boolean, row: string, chunk: string | number, len: number, chunks: number): ChunkAccess[] {
  if (vec) {
    const row4 = /^\w+$/.test(row) ? `${row} / 4u` : `(${row}) / 4u`;
    if (typeof chunk === 'number') return chunk < len / 4 ? [{ index: `${row4} + ${u32(chunk)}` }] : [];
    return [{ index: `${row4} + ${chunk}`, guard: chunks > len / 4 ? `${chunk} < ${u32(len / 4)}` : undefined }];
  }
  const accesses: ChunkAccess[] = [];
  for (let u = 0; u < 4; u++) {
    if (typeof chunk === 'number') {
      if (4 * chunk + u < len) accesses.push({ index: `${row} + ${u32(4 * chunk + u)}`, component: u });
    } else {
      const feature = `${/^\w+$/.test(chunk) ? chunk : `(${chunk})`} * 4u${u ? ` + ${u32(u)}` : ''}`;
      accesses.push({ index: `${row} + ${feature}`, component: u, guard: `${feature} < ${u32(len)}` });
    }
  }
  return accesses;
}

const guarded = (a: ChunkAccess, statement: string) => (a.guard ? [`if (${a.guard}) {`, `  ${statement}`, '}'] : [statement]);

/** Statements declaring `name`, a vec4 read from a row chunk of `input`; features past the row are 0. */
function loadChunk(name: string, input: string, vec: boolean, row: string, chunk: string | number, len: number, chunks: number): string[] {
  const accesses = chunkAccesses(vec, row, chunk, len, chunks);
  if (accesses.length === 1 && !accesses[0].guard && accesses[0].component === undefined) return [`let ${name} = ${input}[${accesses[0].index}];`];
  return [
    `var ${name} = vec4<f32>();`,
    ...accesses.flatMap((a) => guarded(a, a.component === undefined ? `${name} = ${input}[${a.index}];` : `${name}[${a.component}] = ${input}[${a.index}];`)),
  ];
}

/** Statements storing `value` (a vec4) to a row chunk of `out`; features past the row are dropped. */
function storeChunk(value: string, vec: boolean, row: string, chunk: string | number, len: number, chunks: number): string[] {
  return chunkAccesses(vec, row, chunk, len, chunks).flatMap((a) => guarded(a, a.component === undefined ? `out[${a.index}] = ${value};` : `out[${a.index}] = ${value}[${a.component}];`));
}

/** A balanced tree of `combine` over the terms, so the adds or maxes do not wait on one another. */
function treeOf(terms: string[], combine: (a: string, b: string) => string): string {
  if (terms.length === 1) return terms[0];
  const half = Math.ceil(terms.length / 2);
  return combine(treeOf(terms.slice(0, half), combine), treeOf(terms.slice(half), combine));
}


export function tiledAttentionKernel(p: AttentionProblem, c: AttentionTiling, limits: AttentionLimits = PORTABLE_ATTENTION_LIMITS): KernelCode {
  const { tq, tk, d, dv } = p;
  const { br, bc, groups, lanes, qv, ov } = c;
  const threads = br * groups * lanes;
  if (threads > limits.invocations || attentionTilingBytes(c) > limits.workgroupBytes) throw new Error(`tiledAttentionKernel: tiling too large: ${describeAttentionTiling(c)}`);
  const keysPerTile = groups * bc;
  const { kvVec4, partials } = storage(c);
  const qBlocks = Math.ceil(tq / br);
  const { grid, gridX } = linearGrid(p.batches * qBlocks);
  // q, k: vec4 rows when d allows; v and out when dv does
  const vecQK = d % 4 === 0;
  const vecV = dv % 4 === 0;
  const rowTail = tq % br !== 0;
  const keyTail = tk % keysPerTile !== 0;
  // keys past the last a row may see (TK, or the run-time count) are staged as zeros and weigh 0
  const keyGuard = keyTail || p.keyCount;
  const keysSeen = keyLimit(p);

  // thread coordinates: rows vary fastest, so a warp shares its lane and group and reads K and V as broadcasts
  const lane = lanes > 1 ? 'lane' : undefined;
  const group = groups > 1 ? 'group' : undefined;
  const sum = (...terms: (string | undefined)[]) => terms.filter((t): t is string => t !== undefined).join(' + ') || '0u';
  const times = (v: string | undefined, n: number) => (v === undefined ? undefined : n === 1 ? v : `${v} * ${u32(n)}`);
  // the feature chunk of this invocation's c-th vec4 (a number when there is one lane)
  const qChunk = (k: number) => (lane ? `${lane} * QV + ${u32(k)}` : k);
  const oChunk = (k: number) => (lane ? `${lane} * OV + ${u32(k)}` : k);

  // q and k, then v and the output (binding operands.length): vec4s where d and dv allow; the mask and key count: scalars
  const { wgsl: decls } = bindingDecls(p.operands, (i) => (i <= 1 ? vecQK : i === 2 || i === p.operands.length ? vecV : false));


  // --- before the keys: offsets, this row's q, the running state
  const setup: string[] = [
    '  let r = lid % BR;',
    ...(lane ? ['  let lane = (lid / BR) % LANES;'] : []),
    ...(group ? ['  let group = lid / (BR * LANES);'] : []),
    '  let i = (wg_index % Q_BLOCKS) * BR + r;',
    ...(rowTail ? ['  // rows past TQ score the last row and store nothing', '  let i_read = min(i, TQ - 1u);'] : ['  let i_read = i;']),
    ...p.batchOffsets,
    '  let q_row = q_base + i_read * D;',
    `  let m_row = m_base${p.maskRowStride ? ` + i_read * ${u32(p.maskRowStride)}` : ''};`,
  ];
  for (let k = 0; k < qv; k++) setup.push(...indent(loadChunk(`q${k}`, 'in0', vecQK, 'q_row', qChunk(k), d, lanes * qv), 2));
  for (let k = 0; k < ov; k++) setup.push(`  var o${k} = vec4<f32>();`);
  setup.push(
    `  var run_max: f32 = ${LOWEST_F32};`,
    '  var run_sum = 0.0;',
    '  // where this invocation\'s keys and features sit in the K and V tiles',
    `  let kq = ${sum(times(group, bc * lanes * qv), times(lane, qv))};`,
    `  let vq = ${sum('K_TILE', times(group, bc * lanes * ov), times(lane, ov))};`,
    ...(lanes > 1 ? [`  let pw = ${sum(times(group, bc * lanes * br), times(lane, br), 'r')};`, `  let pr = ${sum(times(group, bc * lanes * br), 'r')};`] : []),
  );

  // --- one tile: stage K and V, score, update the softmax state and the accumulator
  /** The loop staging one operand's rows of this tile: `width` vec4s per key, zeros past the keys seen and past the row. */
  const stage = (o: { count: string; width: string; chunks: number; input: string; vec: boolean; base: string; rowLength: number; rowLengthName: string; at: string }) => {
    const load = loadChunk('x', o.input, o.vec, `${o.base} + key * ${o.rowLengthName}`, 'chunk', o.rowLength, o.chunks);
    return [
      `    for (var e = lid; e < ${o.count}; e += WG) {`,
      `      let key = j0 + e / ${o.width};`,
      `      let chunk = e % ${o.width};`,
      ...(keyGuard
        ? ['      var x = vec4<f32>();', `      if (key < ${keysSeen}) {`, ...indent(load.map((l) => l.replace(/^(let|var) x = vec4<f32>\(\);$/, '').replace(/^let x = /, 'x = ')).filter(Boolean), 8), '      }']
        : indent(load, 6)),
      `      kv[${o.at}] = x;`,
      '    }',
    ];
  };
  const tile: string[] = [
    '    workgroupBarrier(); // everyone is done with the previous tile',
    ...stage({ count: 'K_TILE', width: 'KW', chunks: lanes * qv, input: 'in1', vec: vecQK, base: 'k_base', rowLength: d, rowLengthName: 'D', at: 'e' }),
    ...stage({ count: 'V_TILE', width: 'VW', chunks: lanes * ov, input: 'in2', vec: vecV, base: 'v_base', rowLength: dv, rowLengthName: 'DV', at: 'K_TILE + e' }),
    '    workgroupBarrier();',
    `    let jg = ${sum('j0', times(group, bc))};`,
    `    // q·k for this invocation's ${bc} keys${lanes > 1 ? ' (its share of the features)' : ''}`,
  ];
  for (let t = 0; t < bc; t++) {
    tile.push(`    var a${t} = q0 * kv[kq + ${u32(t * lanes * qv)}];`);
    for (let k = 1; k < qv; k++) tile.push(`    a${t} = fma(q${k}, kv[kq + ${u32(t * lanes * qv + k)}], a${t});`);
    tile.push(`    let x${t} = (a${t}.x + a${t}.y) + (a${t}.z + a${t}.w);`);
  }
  const dots = Array.from({ length: bc }, (_, t) => `x${t}`);
  if (lanes > 1) {
    tile.push('    // the lanes\' partial dot products, added in the same order by every lane of the row');
    for (let t = 0; t < bc; t++) tile.push(`    partial[pw + ${u32(t * lanes * br)}] = x${t};`);
    tile.push('    workgroupBarrier();');
    for (let t = 0; t < bc; t++) {
      const parts = Array.from({ length: lanes }, (_, l) => `partial[pr + ${u32((t * lanes + l) * br)}]`);
      tile.push(`    let dot${t} = ${parts.join(' + ')};`);
      dots[t] = `dot${t}`;
    }
  }
  // the keys this row sees in the tile: those before TK (or the key count), and with causal those up to i + TK - TQ
  const seen = (t: number) => [keyGuard ? `jg + ${u32(t)} < ${keysSeen}` : '', p.causal ? `jg + ${u32(t)} <= i_read + CAUSAL_SHIFT` : ''].filter(Boolean).join(' && ');
  tile.push(`    // scores q·k·scale + mask${seen(0) ? '; keys the row does not see score LOWEST and weigh 0' : ''}`);
  for (let t = 0; t < bc; t++) {
    const key = `jg + ${u32(t)}`;
    const score = `${dots[t]} * SCALE + ${maskElement(p, 'm_row', keyTail ? `min(${key}, TK - 1u)` : key)}`;
    tile.push(seen(t) ? `    let s${t} = select(${LOWEST_F32}, ${score}, ${seen(t)});` : `    let s${t} = ${score};`);
  }
  const scores = Array.from({ length: bc }, (_, t) => `s${t}`);
  tile.push(
    `    let new_max = max(run_max, ${treeOf(scores, (a, b) => `max(${a}, ${b})`)});`,
    '    let correction = exp(run_max - new_max);',
    ...scores.map((s, t) => (seen(t) ? `    let p${t} = select(0.0, exp(${s} - new_max), ${seen(t)});` : `    let p${t} = exp(${s} - new_max);`)),
    `    run_sum = run_sum * correction + ${treeOf(scores.map((_, t) => `p${t}`), (a, b) => `(${a} + ${b})`)};`,
    '    run_max = new_max;',
    '    // the accumulator: rescale, then add Σ_t p_t·v[t, :] for this invocation\'s columns',
    ...Array.from({ length: ov }, (_, k) => `    o${k} = o${k} * correction;`),
  );
  for (let t = 0; t < bc; t++) {
    for (let k = 0; k < ov; k++) tile.push(`    o${k} = fma(vec4<f32>(p${t}), kv[vq + ${u32(t * lanes * ov + k)}], o${k});`);
  }

  // --- after the keys: merge the key groups, normalise, store
  const merge: string[] = [];
  if (groups > 1) {
    merge.push(
      '  // merge the key groups\' states into group 0, one group a round, through the tiles\' memory',
      `  let slot = ${lane ? '(lane * BR + r)' : 'r'} * ${u32(ov + 1)};`,
      '  for (var h = 1u; h < GROUPS; h++) {',
      '    workgroupBarrier();',
      '    if (group == h) {',
      '      kv[slot] = vec4<f32>(run_max, run_sum, 0.0, 0.0);',
      ...Array.from({ length: ov }, (_, k) => `      kv[slot + ${u32(k + 1)}] = o${k};`),
      '    }',
      '    workgroupBarrier();',
      '    if (group == 0u) {',
      '      let other = kv[slot];',
      '      let m = max(run_max, other.x);',
      '      let keep = exp(run_max - m);',
      '      let take = exp(other.x - m);',
      '      run_sum = run_sum * keep + other.y * take;',
      '      run_max = m;',
      ...Array.from({ length: ov }, (_, k) => `      o${k} = fma(kv[slot + ${u32(k + 1)}], vec4<f32>(take), o${k} * keep);`),
      '    }',
      '  }',
    );
  }
  const store: string[] = ['let o_row = (batch * TQ + i) * DV;'];
  for (let k = 0; k < ov; k++) store.push(`let y${k} = o${k} * inv_sum;`, ...storeChunk(`y${k}`, vecV, 'o_row', oChunk(k), dv, lanes * ov));
  const storeGuard = [rowTail ? 'i < TQ' : '', group ? 'group == 0u' : ''].filter(Boolean).join(' && ');

  const header = kernelHeader(
    p.name,
    p.node,
    p.operands,
    `attention, FlashAttention-2 tiles: ${describeAttentionTiling(c)}${p.causal ? ', causal (tiles past the block\'s last row skipped)' : ''}${p.keyCount ? ', over a run-time key count (tiles past it skipped)' : ''}`,
  );
  const wgsl = `${header}
${decls}

const TQ: u32 = ${u32(tq)};
const TK: u32 = ${u32(tk)};
const D: u32 = ${u32(d)};
const DV: u32 = ${u32(dv)};
const BR: u32 = ${u32(br)};
const BC: u32 = ${u32(bc)};
const GROUPS: u32 = ${u32(groups)};
const LANES: u32 = ${u32(lanes)};
const QV: u32 = ${u32(qv)};
const OV: u32 = ${u32(ov)};
const WG: u32 = ${u32(threads)};
// vec4s per staged row of K and of V (a lane's share padded to QV or OV), and per tile
const KW: u32 = ${u32(lanes * qv)};
const VW: u32 = ${u32(lanes * ov)};
const K_TILE: u32 = ${u32(keysPerTile * lanes * qv)};
const V_TILE: u32 = ${u32(keysPerTile * lanes * ov)};
const KEYS_PER_TILE: u32 = ${u32(keysPerTile)};
const Q_BLOCKS: u32 = ${u32(qBlocks)};
const WORKGROUPS: u32 = ${u32(p.batches * qBlocks)};
const GRID_X: u32 = ${u32(gridX)};
const SCALE: f32 = ${wgslFloat(Math.fround(p.scale))};${p.causal ? `\nconst CAUSAL_SHIFT: u32 = ${u32(tk - tq)}; // causal: query i sees keys up to i + TK - TQ` : ''}

var<workgroup> kv: array<vec4<f32>, ${u32(kvVec4)}>; // the K tile, then the V tile${groups > 1 ? '; after the keys, the key groups\' states' : ''}${
    lanes > 1 ? `\nvar<workgroup> partial: array<f32, ${u32(partials)}>; // per key, each lane's part of the dot product` : ''
  }

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wg_index = wid.x + wid.y * GRID_X;
  if (wg_index >= WORKGROUPS) {
    return;
  }
  let batch = wg_index / Q_BLOCKS;
${setup.join('\n')}
${
  p.causal
    ? `  // causal: the block's last row sees keys up to its index + CAUSAL_SHIFT; later tiles are skipped\n  let keys_end = min(${keysSeen}, (wg_index % Q_BLOCKS) * BR + BR + CAUSAL_SHIFT);`
    : `  let keys_end = ${keysSeen};`
}
  for (var j0 = 0u; j0 < keys_end; j0 += KEYS_PER_TILE) {
${tile.join('\n')}
  }
${merge.join('\n')}${merge.length ? '\n' : ''}
  let inv_sum = ${inverseSum(p, 'run_sum')};
${storeGuard ? `  if (${storeGuard}) {\n${indent(store, 4).join('\n')}\n  }` : indent(store, 2).join('\n')}
}
`;
  return { wgsl, workgroupSize: [threads, 1, 1], workgroupBytes: attentionTilingBytes(c), workgroups: grid };
}
