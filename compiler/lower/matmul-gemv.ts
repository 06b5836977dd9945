// The small-M matmul kernel (M ≤ 16, GEMV-like): the product is bound by reading B once, so
// each workgroup takes a slice of 4·LANES columns for all M rows and splits K among its
// invocations. Every invocation reads a 4×4 block of B per step (vec4 along B's stored rows,
// coalesced with its neighbours) and A's matching 4 values per row, keeping M vec4 sums; the
// K-split partial sums are then added in workgroup memory (a tree, a few rows at a time).
// The subgroups variant takes the same slice with the same grid, one group of 4 columns
// after another, all 256 invocations splitting K, and adds the sums with subgroupAdd.
// A fused rope computes each group of 4 columns of a head's rotated part as two rotated pairs
// (rope_column), so the invocation that stores them holds both values of each pair; a product
// written into a KV cache stores each value at its cache address (cache_index).
import { wgslFloat } from '../ir/ops';
import { u32, type KernelCode } from './kernel';
import { matmulPreamble, type EpilogueOptions, type MatmulProblem } from './matmul';

export interface GemvConfig {
  /** vec4 column groups per workgroup; the other 256 / LANES invocations split K (subgroups: all 256, group after group) */
  lanes: number;
  /** K steps each invocation loads before it multiplies (loads in flight) */
  unroll: number;
  /** reduce within subgroups first (needs the `subgroups` feature) */
  subgroups: boolean;
}

const THREADS = 256;

export const describeGemv = (c: GemvConfig) =>
  `${4 * c.lanes} columns per workgroup, K split ${c.subgroups ? THREADS : THREADS / c.lanes} ways${c.subgroups && c.lanes > 1 ? ` for 4 at a time` : ''}, ` +
  `${c.unroll} step${c.unroll > 1 ? 's' : ''} in flight${c.subgroups ? ', subgroup reduction' : ''}`;

export function gemvKernel(p: MatmulProblem, c: GemvConfig): KernelCode {
  const { m, n, k } = p;
  const lanes = c.lanes;
  // invocations splitting K for one group of 4 columns
  const ks = c.subgroups ? THREADS : THREADS / lanes;
  const kq = Math.ceil(k / 4);
  const vecA = !p.transposeA && k % 4 === 0;
  const vecB = (p.transposeB ? k : n) % 4 === 0;
  // a rope's columns are stored one by one, in pair order (matmul.ts: rope_column), and a
  // cache's at the cache's addresses
  const vecOut = n % 4 === 0 && !p.rope && !p.cache;
  const kGuard = k % 4 !== 0;
  const colGuard = n % (4 * lanes) !== 0;
  // B stored along N: lanes side by side along a row; stored along K: K-split side by side
  const laneMajor = !p.transposeB && !c.subgroups;
  const ksStride = laneMajor ? lanes : 1;

  const at = (cond: string[], value: string, zero = '0.0') => (cond.length ? `select(${zero}, ${value}, ${cond.join(' && ')})` : value);
  // A's 4 values of row r at K offsets k..k+3, as a vec4
  const aStored = (r: number, kv: string) => {
    if (vecA) return `in0[(a_base + ${u32(r * k)} + ${kv}) / 4u]`;
    const el = (cc: number) =>
      p.transposeA ? `in0[a_base + (${kv} + ${u32(cc)}) * M + ${u32(r)}]` : `in0[a_base + ${u32(r * k)} + ${kv} + ${u32(cc)}]`;
    return `vec4<f32>(${[0, 1, 2, 3].map((cc) => at(kGuard ? [`${kv} + ${u32(cc)} < K`] : [], el(cc))).join(', ')})`;
  };
  // with a fused RMSNorm, times the norm's weight at the same K offsets (1/rms is the epilogue's)
  const normWeight = p.norm && `in${p.norm.weight}`;
  const aLoad = (r: number, kv: string) =>
    normWeight
      ? `${aStored(r, kv)} * vec4<f32>(${[0, 1, 2, 3].map((cc) => at(kGuard ? [`${kv} + ${u32(cc)} < K`] : [], `${normWeight}[${kv} + ${u32(cc)}]`)).join(', ')})`
      : aStored(r, kv);
  // B's 4×4 block at K offsets k..k+3 and columns col..col+3, as 4 vec4s: rows of B (plain) or of Bᵀ (transposed)
  const bLoad = (cc: number, kv: string) => {
    if (!p.transposeB) {
      const row = `${kv} + ${u32(cc)}`;
      if (vecB) return at([...(colGuard ? ['col < N'] : []), ...(kGuard ? [`${row} < K`] : [])], `in1[(b_base + (${row}) * N + col) / 4u]`, 'vec4<f32>()');
      return `vec4<f32>(${[0, 1, 2, 3].map((j) => at([`col + ${u32(j)} < N`, ...(kGuard ? [`${row} < K`] : [])], `in1[b_base + (${row}) * N + col + ${u32(j)}]`)).join(', ')})`;
    }
    const col = `col + ${u32(cc)}`;
    // the stored row of B this column reads: with a rope, the column computed there
    const bRow = p.rope ? `rope_column(${col})` : col;
    if (vecB) return at(colGuard ? [`${col} < N`] : [], `in1[(b_base + (${bRow}) * K + ${kv}) / 4u]`, 'vec4<f32>()');
    return `vec4<f32>(${[0, 1, 2, 3].map((j) => at([`${col} < N`, ...(kGuard ? [`${kv} + ${u32(j)} < K`] : [])], `in1[b_base + (${bRow}) * K + ${kv} + ${u32(j)}]`)).join(', ')})`;
  };
  // B's block first; then row by row, A's 4 values and their products, so only one row of A is live at a time
  const step = (u: number, q: string) => {
    const kv = `k${u}`;
    return {
      loads: [`let ${kv} = (${q}) * 4u;`, ...[0, 1, 2, 3].map((cc) => `let b${u}_${cc} = ${bLoad(cc, kv)};`)],
      math: Array.from({ length: m }, (_, r) => [
        '{',
        `  let a = ${aLoad(r, kv)};`,
        ...(p.transposeB
          ? [`  acc${r} += vec4<f32>(${[0, 1, 2, 3].map((cc) => `dot(a, b${u}_${cc})`).join(', ')});`]
          : [0, 1, 2, 3].map((cc) => `  acc${r} = fma(vec4<f32>(a[${cc}]), b${u}_${cc}, acc${r});`)),
        '}',
      ]).flat(),
    };
  };
  const block = (count: number) => {
    const steps = Array.from({ length: count }, (_, u) => step(u, u === 0 ? 'q' : `q + ${u32(u * ks)}`));
    return [...steps.flatMap((s) => s.loads), ...steps.flatMap((s) => s.math)];
  };
  const ind = (lines: string[], w: number) => lines.map((l) => ' '.repeat(w) + l);
  const loop: string[] = ['var q = ks;'];
  if (c.unroll > 1) {
    loop.push(`for (; q + ${u32((c.unroll - 1) * ks)} < ${u32(kq)}; q += ${u32(c.unroll * ks)}) {`, ...ind(block(c.unroll), 2), '}');
  }
  loop.push(`for (; q < ${u32(kq)}; q += ${u32(ks)}) {`, ...ind(block(1), 2), '}');

  // the final phase: one invocation per row and 4 columns stores them from vec4 `v`; the
  // epilogue is written once, for a row known only at run time
  const store = (v: string, row: string, col: string): string[] => {
    const lines: string[] = [`let row = ${row};`, `let col = ${col};`];
    if (p.rope) return [...lines, ...(colGuard ? ['if (col < N) {', ...ind(ropeStore(p, v), 2), '}'] : ropeStore(p, v))];
    if (vecOut) {
      let body: string[];
      if (p.plainStore) body = [`out[(c_base + row * N + col) / 4u] = ${v};`];
      else {
        body = ['var o: vec4<f32>;'];
        for (let cc = 0; cc < 4; cc++) {
          const e = p.epilogue(`${v}[${cc}]`, 'row', 'cc', '  ');
          body.push('{', `  let cc = col + ${u32(cc)};`, ...e.lines, `  o[${cc}] = ${e.value};`, '}');
        }
        body.push('out[(c_base + row * N + col) / 4u] = o;');
      }
      return [...lines, ...(colGuard ? ['if (col < N) {', ...ind(body, 2), '}'] : body)];
    }
    for (let cc = 0; cc < 4; cc++) {
      const e = p.epilogue(`${v}[${cc}]`, 'row', 'cc', '    ');
      lines.push('{', `  let cc = col + ${u32(cc)};`, '  if (cc < N) {', ...e.lines, `    ${p.storeAt('c_base + row * N + cc', e.value)}`, '  }', '}');
    }
    return lines;
  };
  const accDecls = Array.from({ length: m }, (_, r) => `var acc${r} = vec4<f32>();`);
  // a fused RMSNorm's 1/rms per row, computed after the K loop (the first group's, with
  // subgroups): only the stores need it, so B's reads start at once; A's rows are in cache by then
  const norm =
    p.norm &&
    rowNorms({ m: p.m, rowsConst: 'M', k: p.k, eps: p.norm.eps, vec4: vecA, read: (nr, j) => (vecA ? `in0[(a_base + ${nr} * K) / 4u + ${j}]` : `in0[a_base + ${nr} * K + ${j}]`) });
  let body: string[];

  const reduce: string[] = [];
  let shared: string;
  let sharedBytes: number;
  if (!c.subgroups) {
    // rows of partial sums reduced at a time: what fits in 16 KiB beside the M·LANES sums
    const rows = Math.max(1, Math.min(m, Math.floor((16384 - m * lanes * 16) / (THREADS * 16))));
    shared = [
      `// partial sums of ${rows} row${rows > 1 ? 's' : ''} at a time, one vec4 per invocation and row; then the sums per row and lane`,
      `var<workgroup> red: array<vec4<f32>, ${rows * THREADS}>;`,
      `var<workgroup> sums: array<vec4<f32>, ${m * lanes}>;`,
    ].join('\n');
    sharedBytes = (rows * THREADS + m * lanes) * 16;
    for (let m0 = 0; m0 < m; m0 += rows) {
      const these = Math.min(rows, m - m0);
      if (m0 > 0) reduce.push('workgroupBarrier();');
      for (let rr = 0; rr < these; rr++) reduce.push(`red[${u32(rr * THREADS)} + li] = acc${m0 + rr};`);
      reduce.push('workgroupBarrier();');
      for (let s = ks / 2; s >= 1; s /= 2) {
        reduce.push(`if (ks < ${u32(s)}) {`);
        for (let rr = 0; rr < these; rr++) reduce.push(`  red[${u32(rr * THREADS)} + li] += red[${u32(rr * THREADS + s * ksStride)} + li];`);
        reduce.push('}', 'workgroupBarrier();');
      }
      reduce.push('if (ks == 0u) {');
      for (let rr = 0; rr < these; rr++) reduce.push(`  sums[${u32((m0 + rr) * lanes)} + lane] = red[${u32(rr * THREADS)} + li];`);
      reduce.push('}');
    }
    reduce.push('workgroupBarrier();', `if (li < ${u32(m * lanes)}) {`, ...ind(store('sums[li]', `li / ${u32(lanes)}`, `wid.x * ${u32(4 * lanes)} + (li % ${u32(lanes)}) * 4u`), 2), '}');
    body = [
      `let lane = ${laneMajor ? `li % ${u32(lanes)}` : `li / ${u32(ks)}`};`,
      `let ks = ${laneMajor ? `li / ${u32(lanes)}` : `li % ${u32(ks)}`};`,
      `let col = wid.x * ${u32(4 * lanes)} + lane * 4u;`,
      ...accDecls,
      ...loop,
      ...(norm?.lines ?? []),
      ...reduce,
    ];
  } else {
    // All invocations hold sums for the same 4 columns, so a subgroupAdd over any subgroup is
    // a partial sum over K, whatever the mapping of invocations to subgroups; each subgroup
    // claims a slot for its sums and M invocations add the slots up. Nothing depends on the
    // subgroup size or on subgroups being full.
    shared = `// one vec4 per row and subgroup (at most 64 subgroups of 4 or more invocations)\nvar<workgroup> partial: array<vec4<f32>, ${m * 64}>;\nvar<workgroup> slots: atomic<u32>;`;
    sharedBytes = m * 64 * 16 + 4;
    reduce.push(...Array.from({ length: m }, (_, r) => `let s${r} = subgroupAdd(acc${r});`));
    reduce.push('if (sid == 0u) {', ...Array.from({ length: m }, (_, r) => `  partial[${u32(r * 64)} + slot] = s${r};`), '}', 'workgroupBarrier();');
    reduce.push('if (li < M) {', '  var v = vec4<f32>();', '  for (var j = 0u; j < used; j++) {', '    v += partial[li * 64u + j];', '  }', ...ind(store('v', 'li', 'col'), 2), '}');
    body = [
      'var claimed = 0u;',
      'if (sid == 0u) {',
      '  claimed = atomicAdd(&slots, 1u);',
      '}',
      'let slot = subgroupBroadcastFirst(claimed);',
      'workgroupBarrier();',
      'let used = atomicLoad(&slots);',
      'let ks = li;',
      `for (var g = 0u; g < ${u32(lanes)}; g++) {`,
      `  let col = wid.x * ${u32(4 * lanes)} + g * 4u;`,
      ...ind([...accDecls, ...loop, ...(norm ? ['if (g == 0u) {', ...ind(norm.lines, 2), '}'] : []), ...reduce, 'workgroupBarrier();'], 2),
      '}',
    ];
  }

  if (norm) {
    shared = `${norm.shared}\n${shared}`;
    sharedBytes += norm.bytes;
  }

  const builtins = c.subgroups ? ', @builtin(subgroup_invocation_id) sid: u32' : '';
  const wgsl = `${c.subgroups ? 'enable subgroups;\n' : ''}${matmulPreamble(p, `small-M matmul, ${describeGemv(c)}`, { a: vecA, b: vecB, out: vecOut })}

${shared}

@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32${builtins}) {
  let batch = wid.z;
${p.batchOffsets.join('\n')}
  let c_base = batch * M * N;
${ind(body, 2).join('\n')}
}
`;
  return { wgsl, workgroupSize: [THREADS, 1, 1], workgroupBytes: sharedBytes, workgroups: [Math.ceil(n / (4 * lanes)), 1, p.batches] };
}

/**
 * The stores of a rope'd product (`row`, `col` and `c_base` in scope): columns col..col + 3 hold `v`, computed at the columns
 * rope_column gives: in a head's rotated part, two pairs (c0, c0 + H) and (c0 + 1, c0 + 1 + H)
 * as v's (x, z) and (y, w), each element through the epilogue at its own column, then rotated.
 */
export function ropeStore(p: MatmulProblem, v: string, options: EpilogueOptions = {}): string[] {
  const rope = p.rope!;
  const sign = wgslFloat(rope.inverse ? -1 : 1);
  const lines = ['var e: vec4<f32>;'];
  for (let cc = 0; cc < 4; cc++) {
    const e = p.epilogue(`${v}[${cc}]`, 'row', 'cc', '  ', options);
    lines.push('{', `  let cc = rope_column(col + ${u32(cc)});`, ...e.lines, `  e[${cc}] = ${e.value};`, '}');
  }
  lines.push(
    `let j = col % ${u32(rope.width)};`,
    `if (j < ${u32(rope.rotaryDim)}) {`,
    `  let pos = ${rope.position('row')};`,
    // group j / 4 holds pairs j/2 and j/2 + 1 of the head
    '  let cs0 = cos_sin(pos * INV_FREQ[j / 2u]);',
    '  let cs1 = cos_sin(pos * INV_FREQ[j / 2u + 1u]);',
    `  let s0 = ${sign} * cs0.y;`,
    `  let s1 = ${sign} * cs1.y;`,
    '  e = vec4<f32>(e.x * cs0.x - e.z * s0, e.y * cs1.x - e.w * s1, e.z * cs0.x + e.x * s0, e.w * cs1.x + e.y * s1);',
    '}',
    ...[0, 1, 2, 3].map((cc) => p.storeAt(`c_base + row * N + rope_column(col + ${u32(cc)})`, `e[${cc}]`)),
  );
  return lines;
}

/**
 * A fused RMSNorm's row scales: each of the M rows' 1/rms = (mean(a²) + eps)^-½ into
 * `norm_scale`, the workgroup's invocations splitting the rows' K among them (R rows side by
 * side, R the power of two at or above M) and adding their parts in a tree. Every workgroup
 * computes them for itself: M·K reads, against the K·N of B each one shares out. `read(row, j)`
 * is A's value j of a row (vec4 j with `vec4`); `rowsConst` the WGSL for M. Also the quantized
 * matrix-vector kernel's (matmul-quantized-matvec.ts), whose x rows are all its matrices' rows.
 */
export function rowNorms(a: { m: number; rowsConst: string; k: number; eps: number; vec4: boolean; read: (row: string, j: string) => string }): { shared: string; bytes: number; lines: string[] } {
  const rows = 2 ** Math.ceil(Math.log2(a.m));
  const parts = THREADS / rows;
  const n = a.vec4 ? a.k / 4 : a.k;
  const lines = [
    '// RMSNorm of A\'s rows, fused: their 1/rms, for the stores',
    '{',
    `  let nr = li % ${u32(rows)};`,
    `  let part = li / ${u32(rows)};`,
    '  var s = 0.0;',
    ...(rows > a.m ? [`  if (nr < ${a.rowsConst}) {`] : ['  {']),
    `    for (var j = part; j < ${u32(n)}; j += ${u32(parts)}) {`,
    `      let v = ${a.read('nr', 'j')};`,
    `      s += ${a.vec4 ? 'dot(v, v)' : 'v * v'};`,
    '    }',
    '  }',
    '  norm_part[li] = s;',
    '  workgroupBarrier();',
  ];
  for (let stride = parts / 2; stride >= 1; stride /= 2) {
    lines.push(`  if (part < ${u32(stride)}) {`, `    norm_part[li] += norm_part[li + ${u32(stride * rows)}];`, '  }', '  workgroupBarrier();');
  }
  lines.push(`  if (li < ${a.rowsConst}) {`, `    norm_scale[li] = inverseSqrt(norm_part[li] / ${wgslFloat(a.k)} + ${wgslFloat(a.eps)});`, '  }', '  workgroupBarrier();', '}');
  return {
    shared: `// the fused RMSNorm's partial sums of squares, then each row's 1/rms\nvar<workgroup> norm_part: array<f32, ${THREADS}>;\nvar<workgroup> norm_scale: array<f32, ${a.m}>;`,
    bytes: (THREADS + a.m) * 4,
    lines,
  };
}

/**
 * GEMV configurations for a shape, fastest first; the last is portable. Measured on an H200
 * (bench/matmul.ts): B stored along N reads best with 16 columns per workgroup (64-byte row
 * pieces, N/16 workgroups); B stored along K with 8, or with subgroups, with all 256
 * invocations on 4 columns at a time and subgroupAdd reducing (a quarter faster at M = 16).
 * Every variant of a kernel keeps the portable one's grid.
 */
export function chooseGemv(p: MatmulProblem, features: readonly string[]): { tag: string; features: string[]; config: GemvConfig }[] {
  if (!p.transposeB) return [{ tag: 'portable', features: [], config: { lanes: 4, unroll: 1, subgroups: false } }];
  return [
    ...(features.includes('subgroups') ? [{ tag: 'subgroups', features: ['subgroups'], config: { lanes: 2, unroll: 1, subgroups: true } }] : []),
    { tag: 'portable', features: [], config: { lanes: 2, unroll: 2, subgroups: false } },
  ];
}
