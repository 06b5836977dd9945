// The tiled matmul kernel: each workgroup computes a BM×BN block of C, staging BK-deep slices
// of A and B through workgroup memory (A's slice stored K-major, so both operands are read
// as vec4 along M and N); each invocation keeps TM×TN outputs in registers, one f32 each. Global
// reads are vec4 wherever the stored rows allow it (their length a multiple of 4), the next
// slice is fetched into registers while the current one is multiplied, and with two stages
// the slices alternate between two buffers (one barrier per slice). Edges are guarded only
// along the axes the tile does not divide, so any shape works and aligned shapes pay nothing.
// Stream-K's two kernels (lower/stream-k.ts) are this kernel with another prologue: runs of
// K over shared tiles writing partial tiles, and the product summing them where shared.
import { DEFAULT_LIMITS } from '../target/target';
import { TILINGS, type MatmulTuning, type TileConfig } from '../target/tuning';
import { indent, u32, type KernelCode } from './kernel';
import { matmulPreamble, type MatmulProblem, type StreamKSchedule } from './matmul';
import { ropeStore } from './matmul-gemv';

export const describeTiling = (c: TileConfig) =>
  [
    `${c.bm}x${c.bn}x${c.bk} tiles, ${c.tm}x${c.tn} per invocation, ${c.stages} stage${c.stages > 1 ? 's' : ''}`,
    ...(c.prefetch === false ? ['no prefetch'] : []),
    ...(c.pipelined ? ['pipelined'] : []),
    ...(c.readSpacing ? [`reads every ${c.readSpacing} products`] : []),
    ...(c.readAhead ? [`reads ahead at step ${c.readAhead}`] : []),
    ...(c.storeStep ? [`stores at step ${c.storeStep}`] : []),
    ...(c.barrierFirst ? ['barrier first'] : []),
    ...(c.swizzledStores ? ['swizzled stores'] : []),
    ...(c.blockColumns && c.blockColumns !== 8 ? [`${c.blockColumns}-column blocks`] : []),
  ].join(', ');

/** Bytes of workgroup storage a tiling declares for a problem (swizzled K-contiguous operands take a padded row per K). */
export function tileBytes(c: TileConfig, p: Pick<MatmulProblem, 'transposeA' | 'transposeB'>): number {
  const pad = (span: number, contiguousK: boolean) => span + (c.swizzledStores && contiguousK ? 4 : 0);
  return c.stages * c.bk * (pad(c.bm, !p.transposeA) + pad(c.bn, p.transposeB)) * 4;
}

/** The portable limits every variant without a `requiredLimits` must fit (WebGPU defaults, compatibility mode). */
export const PORTABLE_WORKGROUP_BYTES = DEFAULT_LIMITS.maxComputeWorkgroupStorageSize;
export const PORTABLE_INVOCATIONS = DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup;

/** One staged operand: how an invocation reads its share of a slice and where it goes in the tile. */
interface OperandTile {
  which: 'a' | 'b';
  input: string;
  base: string;
  /** the stored rows run along K (A plain, B transposed); otherwise along M or N */
  contiguousK: boolean;
  /** vec4 reads (the stored row length is a multiple of 4) */
  vec: boolean;
  /** the tile's M or N extent, the matrix's, the constant naming it, the block origin */
  span: number;
  extent: number;
  extentName: 'M' | 'N';
  origin: string;
  /**
   * the WGSL function returning the operand's element (A: at batch, row, k; B: at batch, k,
   * col), 0 outside the matrix, for operands read through an address map (implicit GEMM)
   */
  reader?: string;
  /** the reader returns a stored row's four values at once: `reader(batch, stored row, stored column)` (MatmulProblem.readers.b4) */
  vecReader?: boolean;
  /** WGSL mapping a tile row's M/N index to the stored row it reads (a rope's pair order; contiguousK only) */
  storedRow?: (index: string) => string;
}

function operandCode(o: OperandTile, c: TileConfig, p: MatmulProblem, threads: number) {
  const { k } = p;
  const { which: w, span } = o;
  const count = (span * c.bk) / 4; // vec4s per slice
  const loads = Math.ceil(count / threads);
  const partial = count % threads !== 0;
  const swizzled = o.contiguousK && c.swizzledStores === true;
  const stored = (index: string) => (o.storedRow ? o.storedRow(index) : `(${index})`);
  const setup: string[] = [];
  const load: (k0: string) => string[] = (k0) => {
    const lines: string[] = [];
    for (let l = 0; l < loads; l++) {
      const guards: string[] = [];
      if (partial) guards.push(`${w}_e${l} < ${u32(count)}`);
      if (o.extent % span !== 0 && (o.contiguousK || o.vec) && !o.reader) guards.push(`${w}_in${l}`);
      const kGuard = k % c.bk !== 0;
      let value: string;
      if (o.reader && o.vecReader) {
        // four neighbours along a stored row: along K (contiguousK) or along M/N
        value = o.contiguousK ? `${o.reader}(batch, ${o.storedRow ? o.storedRow(`${o.origin} + ${w}_r${l}`) : `${o.origin} + ${w}_r${l}`}, ${k0} + ${w}_q${l} * 4u)` : `${o.reader}(batch, ${k0} + ${w}_r${l}, ${o.origin} + ${w}_q${l} * 4u)`;
      } else if (o.reader) {
        // the reader returns zeros outside the matrix: no guards but the partial load's
        const at = (cc: number) => (o.contiguousK ? `${o.reader}(batch, ${o.origin} + ${w}_r${l}, ${k0} + ${w}_q${l} * 4u + ${cc}u)` : `${o.reader}(batch, ${k0} + ${w}_r${l}, ${o.origin} + ${w}_q${l} * 4u + ${cc}u)`);
        value = `vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')})`;
      } else if (o.contiguousK) {
        if (kGuard && o.vec) guards.push(`${k0} + ${w}_q${l} * 4u < K`);
        const at = (cc: number) => `${o.input}[${w}_off${l} + ${k0}${cc ? ` + ${cc}u` : ''}]`;
        value = o.vec
          ? `${o.input}[(${w}_off${l} + ${k0}) / 4u]`
          : `vec4<f32>(${[0, 1, 2, 3].map((cc) => (kGuard ? `select(0.0, ${at(cc)}, ${k0} + ${w}_q${l} * 4u + ${cc}u < K)` : at(cc))).join(', ')})`;
      } else {
        if (kGuard) guards.push(`${k0} + ${w}_r${l} < K`);
        const at = (cc: number) => `${o.input}[${w}_off${l} + ${k0} * ${o.extentName}${cc ? ` + ${cc}u` : ''}]`;
        value = o.vec
          ? `${o.input}[(${w}_off${l} + ${k0} * ${o.extentName}) / 4u]`
          : `vec4<f32>(${[0, 1, 2, 3].map((cc) => `select(0.0, ${at(cc)}, ${o.origin} + ${w}_q${l} * 4u + ${cc}u < ${o.extentName})`).join(', ')})`;
      }
      if (guards.length === 0) lines.push(`p${w}${l} = ${value};`);
      else lines.push(`p${w}${l} = vec4<f32>();`, `if (${guards.join(' && ')}) {`, `  p${w}${l} = ${value};`, '}');
    }
    return lines;
  };
  for (let l = 0; l < loads; l++) {
    setup.push(`let ${w}_e${l} = li + ${u32(l * threads)};`);
    if (o.contiguousK) {
      // vec4 e covers tile row r (along M/N), K columns 4q..4q+3
      setup.push(`let ${w}_r${l} = ${w}_e${l} / ${u32(c.bk / 4)};`, `let ${w}_q${l} = ${w}_e${l} % ${u32(c.bk / 4)};`);
      if (!o.reader) setup.push(`let ${w}_off${l} = ${o.base} + ${stored(`${o.origin} + ${w}_r${l}`)} * ${p.kStored !== p.k ? 'K_STORED' : 'K'} + ${w}_q${l} * 4u;`);
      if (o.extent % span !== 0 && !o.reader) setup.push(`let ${w}_in${l} = ${o.origin} + ${w}_r${l} < ${o.extentName};`);
      // The padding puts a row's K quads 0 and 1 (2 and 3) 16 banks apart; rotating the values
      // of quads 2 and 3 by two steps of K puts them 8 banks from those of 0 and 1
      if (swizzled) setup.push(`let ${w}_sw${l} = ${w}_q${l} & 2u;`);
    } else {
      // vec4 e covers K row r, M/N columns 4q..4q+3
      setup.push(`let ${w}_r${l} = ${w}_e${l} / ${u32(span / 4)};`, `let ${w}_q${l} = ${w}_e${l} % ${u32(span / 4)};`);
      if (!o.reader) setup.push(`let ${w}_off${l} = ${o.base} + ${w}_r${l} * ${o.extentName} + ${o.origin} + ${w}_q${l} * 4u;`);
      if (o.extent % span !== 0 && o.vec && !o.reader) setup.push(`let ${w}_in${l} = ${o.origin} + ${w}_q${l} * 4u < ${o.extentName};`);
    }
  }
  // the tile is [BK][span/4] vec4s per stage
  const store = (stage: string): string[] => {
    const lines: string[] = [];
    for (let l = 0; l < loads; l++) {
      const body: string[] = [];
      if (swizzled) {
        body.push(`let v${w}${l} = select(p${w}${l}, p${w}${l}.zwxy, ${w}_sw${l} != 0u);`);
        for (let cc = 0; cc < 4; cc++) {
          body.push(`tile_${w}${stage}[${w}_q${l} * 4u + (${w}_sw${l} ^ ${cc}u)][${w}_r${l} / 4u][${w}_r${l} % 4u] = v${w}${l}[${cc}];`);
        }
      } else if (o.contiguousK) {
        for (let cc = 0; cc < 4; cc++) {
          body.push(`tile_${w}${stage}[${w}_q${l} * 4u + ${cc}u][${w}_r${l} / 4u][${w}_r${l} % 4u] = p${w}${l}[${cc}];`);
        }
      } else {
        body.push(`tile_${w}${stage}[${w}_r${l}][${w}_q${l}] = p${w}${l};`);
      }
      if (partial) lines.push(`if (${w}_e${l} < ${u32(count)}) {`, ...body.map((b) => `  ${b}`), '}');
      else lines.push(...body);
    }
    return lines;
  };
  return { setup, load, store, loads };
}

/**
 * The invocation's column and row in the GX×GY grid of invocations. Each run of 32 invocations
 * (a subgroup on NVIDIA) covers an 8×4 block of that grid rather than a row of it: the
 * subgroup then reads fewer distinct vectors of each slice per step (8 of B and 4 of A
 * instead of 16 and 2), measured 46.9 against 44.3 TFLOP/s at 4096³ on the H200. Any other
 * subgroup size computes the same values.
 */
function threadGrid(gx: number, gy: number, blockColumns = 8): string[] {
  const lx = Math.min(blockColumns, gx);
  const ly = 32 / lx;
  if ((gx * gy) % 32 !== 0 || gy % ly !== 0) return [`let tx = li % ${u32(gx)};`, `let ty = li / ${u32(gx)};`];
  const blocksX = gx / lx;
  return [
    'let block = li / 32u;',
    'let lane = li % 32u;',
    `let tx = (block % ${u32(blocksX)}) * ${u32(lx)} + lane % ${u32(lx)};`,
    `let ty = (block / ${u32(blocksX)}) * ${u32(ly)} + lane / ${u32(lx)};`,
  ];
}

function tileType(stages: number, bk: number, span: number, padded = false): string {
  const slice = `array<array<vec4<f32>, ${span / 4 + (padded ? 1 : 0)}>, ${bk}>`;
  return stages > 1 ? `array<${slice}, ${stages}>` : slice;
}

/** Reads before products, or read r before product r × spacing (those left over after the last). */
function spread(reads: string[], products: string[], spacing = 0): string[] {
  if (spacing === 0) return [...reads, ...products];
  const lines = products.flatMap((product, n) => (n % spacing === 0 && n / spacing < reads.length ? [reads[n / spacing], product] : [product]));
  return [...lines, ...reads.slice(Math.ceil(products.length / spacing))];
}

export function tiledKernel(p: MatmulProblem, c: TileConfig): KernelCode {
  const { bm, bn, bk, tm, tn, stages } = c;
  const gx = bn / tn;
  const gy = bm / tm;
  const threads = gx * gy;
  if (tm % 4 || tn % 4 || bk % 4 || bm % tm || bn % tn) throw new Error(`tiledKernel: bad tiling ${describeTiling(c)}`);
  const shapeErrors = [
    c.readSpacing && !c.pipelined && 'spaced reads need pipelining',
    (c.readAhead ?? 0) >= bk && 'reading ahead needs a step within the slice',
    c.readAhead && stages === 1 && c.prefetch === false && 'reading ahead needs prefetched slices',
    c.barrierFirst && (stages !== 1 || c.prefetch === false) && 'the barrier first needs one prefetched stage',
    c.storeStep !== undefined && (stages !== 2 || c.storeStep <= (c.readAhead ?? 0) || c.storeStep >= bk) && 'storing at a step needs two stages and a step after the reads, within the slice',
  ].filter(Boolean);
  if (shapeErrors.length > 0) throw new Error(`tiledKernel: ${shapeErrors.join('; ')}: ${describeTiling(c)}`);
  const readers = p.readers ?? {};
  const vecA = !readers.a && (p.transposeA ? p.m : p.k) % 4 === 0;
  const vecB = !readers.b && !readers.b4 && (p.transposeB ? p.k : p.n) % 4 === 0;
  // a rope's columns are stored one by one, in pair order, and a cache's at the cache's addresses
  const vecOut = p.n % 4 === 0 && !p.rope && !p.cache;
  if (p.norm) throw new Error(`matmul ${p.name}: a normed product of ${p.m} rows has no tiled kernel (the small-M kernel computes the norms)`);
  if (p.rope && !p.transposeB) throw new Error(`matmul ${p.name}: a rope'd product reads B transposed`);
  const a = operandCode({ which: 'a', input: 'in0', base: 'a_base', contiguousK: !p.transposeA, vec: vecA, span: bm, extent: p.m, extentName: 'M', origin: 'row0', ...(readers.a ? { reader: 'read_a' } : {}) }, c, p, threads);
  const b = operandCode({ which: 'b', input: 'in1', base: 'b_base', contiguousK: p.transposeB, vec: vecB, span: bn, extent: p.n, extentName: 'N', origin: 'col0', ...(readers.b ? { reader: 'read_b' } : readers.b4 ? { reader: 'read_b4', vecReader: true } : {}), ...(p.rope ? { storedRow: (i: string) => `rope_column(${i})` } : {}) }, c, p, threads);
  const slices = Math.ceil(p.k / bk);

  // One f32 per output rather than a vec4 per four: with vec4 accumulators Nvidia's compiler
  // wrote many products into other registers than they read and copied them back at the end
  // of the loop (108 register moves at 128×256 against 50; 45.0 against 49.7 TFLOP/s).
  const acc = (row: number, j: number, cc: number) => `acc${row}_${j}_${cc}`;
  // the products of one slice, with other code (global reads, stores) inserted before given steps
  const compute = (sa: string, sb: string, ...inserts: { kk: number; lines: string[] }[]): string[] => {
    const insertedAt = (kk: number) => inserts.filter((insert) => insert.kk === kk).flatMap((insert) => insert.lines);
    const lines: string[] = [];
    const reads = (kk: number) => [
      ...Array.from({ length: tm / 4 }, (_, i) => `let a${kk}_${i} = tile_a${sa}[${kk}][ai${i}];`),
      ...Array.from({ length: tn / 4 }, (_, j) => `let b${kk}_${j} = tile_b${sb}[${kk}][bj${j}];`),
    ];
    const products = (kk: number) => {
      const out: string[] = [];
      for (let i = 0; i < tm / 4; i++) {
        for (let r = 0; r < 4; r++) {
          for (let j = 0; j < tn / 4; j++) {
            for (let cc = 0; cc < 4; cc++) out.push(`${acc(i * 4 + r, j, cc)} = fma(a${kk}_${i}[${r}], b${kk}_${j}[${cc}], ${acc(i * 4 + r, j, cc)});`);
          }
        }
      }
      return out;
    };
    if (c.pipelined) {
      lines.push(...insertedAt(0), ...reads(0));
      for (let kk = 0; kk < bk; kk++) lines.push(...insertedAt(kk + 1), ...spread(kk + 1 < bk ? reads(kk + 1) : [], products(kk), c.readSpacing));
    } else {
      for (let kk = 0; kk < bk; kk++) lines.push(...insertedAt(kk), ...reads(kk), ...products(kk));
    }
    return lines;
  };
  const loadNext = (k0: string) => [...a.load(k0), ...b.load(k0)];
  const storeAt = (sa: string, sb: string) => [...a.store(sa), ...b.store(sb)];
  // Two stages: slice t is multiplied from one buffer while slice t + 1 goes into the other,
  // one barrier per slice. Only the loads are guarded (the last iteration stores stale
  // registers into the buffer nobody reads): with the stores under the same condition, or
  // with no condition at all, Nvidia's compiler moved the loads down next to the stores and
  // exposed their whole latency (seen in the SASS). With an even slice count two slices per
  // iteration keep the stage indices constant.
  const step = (t: string, cur: string, nxt: string) => {
    const next = [`if (${t} + 1u < ${u32(slices)}) {`, ...indent(loadNext(`(${t} + 1u) * BK`), 2), '}'];
    const stores = storeAt(nxt, nxt);
    const body = [
      ...compute(cur, cur, { kk: c.readAhead ?? 0, lines: next }, ...(c.storeStep ? [{ kk: c.storeStep, lines: stores }] : [])),
      ...(c.storeStep ? [] : stores),
    ];
    return ['{', ...indent([...body, 'workgroupBarrier();'], 2), '}'];
  };
  // One stage, the next slice fetched into registers while this one is multiplied: slices
  // [first, end) of K, constants or (stream-K) expressions the workgroup computed.
  const prefetchedLoop = (first: string, end: string) => [
    ...loadNext(first === '0u' ? '0u' : `${first} * BK`),
    `for (var t = ${first}; t < ${end}; t++) {`,
    ...(c.barrierFirst ? ['  workgroupBarrier();'] : []),
    ...indent(storeAt('', ''), 2),
    '  workgroupBarrier();',
    ...indent(compute('', '', { kk: c.readAhead ?? 0, lines: [`if (t + 1u < ${end}) {`, ...indent(loadNext('(t + 1u) * BK'), 2), '}'] }), 2),
    ...(c.barrierFirst ? [] : ['  workgroupBarrier();']),
    '}',
  ];
  const loop =
    stages === 2
      ? [
          ...loadNext('0u'),
          ...storeAt('[0]', '[0]'),
          'workgroupBarrier();',
          ...(slices % 2 === 0
            ? [`for (var t = 0u; t < ${u32(slices)}; t += 2u) {`, ...indent([...step('t', '[0]', '[1]'), ...step('(t + 1u)', '[1]', '[0]')], 2), '}']
            : [`for (var t = 0u; t < ${u32(slices)}; t++) {`, '  let cur = t & 1u;', '  let nxt = 1u - cur;', ...indent(step('t', '[cur]', '[nxt]'), 2), '}']),
        ]
      : c.prefetch === false
      ? [
          `for (var t = 0u; t < ${u32(slices)}; t++) {`,
          ...indent(loadNext('t * BK'), 2),
          ...indent(storeAt('', ''), 2),
          '  workgroupBarrier();',
          ...indent(compute('', ''), 2),
          '  workgroupBarrier();',
          '}',
        ]
      : prefetchedLoop('0u', u32(slices));

  // outputs: rows (i * GY + ty) * 4 + r, columns (j * GX + tx) * 4 .. + 3, each the epilogue of
  // value(row in the invocation's block, j, cc): its accumulator, or (stream-K) a sum of partials
  const rowGuard = p.m % bm !== 0;
  const colGuard = p.n % bn !== 0;
  const columnOf = (j: number) => `col0 + (${u32(j * gx)} + tx) * 4u`;
  const rowOf = (i: number, r: number) => `row0 + (${u32(i * gy)} + ty) * 4u + ${u32(r)}`;
  const wideReads = (row: string, col: string, suffix: string) =>
    p.extraVec4.flatMap((wide, n) => (wide ? [`let e${n + 1}${suffix} = in${n + 2}[(${p.extraIndex(n, row, col)}) / 4u];`] : []));
  // One output row: its TN/4 vec4 stores, each the epilogue of four values, with the epilogue
  // operands' vec4s read beforehand as e<n><suffix(j)>, or here when there is no suffix.
  const rowStores = (value: (row: number, j: number, cc: number) => string, row: number, suffix?: (j: number) => string): string[] => {
    const body: string[] = [];
    for (let j = 0; j < tn / 4; j++) {
      const lines: string[] = [`let col = ${columnOf(j)};`];
      if (p.rope) {
        const store = [`let rope_v = vec4<f32>(${[0, 1, 2, 3].map((cc) => value(row, j, cc)).join(', ')});`, ...ropeStore(p, 'rope_v')];
        lines.push(...(colGuard ? ['if (col < N) {', ...indent(store, 2), '}'] : store));
      } else if (vecOut) {
        let store: string[];
        if (p.plainStore) store = [`out[(c_base + row * N + col) / 4u] = vec4<f32>(${[0, 1, 2, 3].map((cc) => value(row, j, cc)).join(', ')});`];
        else {
          store = ['var o: vec4<f32>;', ...(suffix ? [] : wideReads('row', 'col', ''))];
          for (let cc = 0; cc < 4; cc++) {
            const given = p.extraVec4.map((wide, n) => (wide ? `e${n + 1}${suffix ? suffix(j) : ''}[${cc}]` : undefined));
            const e = p.epilogue(value(row, j, cc), 'row', 'cc', '  ', { given });
            store.push('{', `  let cc = col + ${u32(cc)};`, ...e.lines, `  o[${cc}] = ${e.value};`, '}');
          }
          store.push('out[(c_base + row * N + col) / 4u] = o;');
        }
        lines.push(...(colGuard ? ['if (col < N) {', ...indent(store, 2), '}'] : store));
      } else {
        for (let cc = 0; cc < 4; cc++) {
          const e = p.epilogue(value(row, j, cc), 'row', 'cc', '    ');
          lines.push('{', `  let cc = col + ${u32(cc)};`, '  if (cc < N) {', ...e.lines, `    ${p.storeAt('c_base + row * N + cc', e.value)}`, '  }', '}');
        }
      }
      body.push('{', ...indent(lines, 2), '}');
    }
    return body;
  };
  // With epilogue operands, no guards and vec4 outputs, each row's operand reads are issued
  // before the previous row's stores: the driver does not move a read above an earlier store
  // to another buffer, so reads issued with their own row's stores wait out their latency
  // once per row (4096³ with bias + gelu + residual: 49.9 TFLOP/s against 49.7, the plain
  // product 50.0). Not in stream-K's product, where it was slower (see LARGE_TILINGS).
  const rowsAhead = vecOut && !p.plainStore && !colGuard && !rowGuard && !p.form?.streamK && p.extraVec4.some((wide) => wide);
  const outputAhead = (value: (row: number, j: number, cc: number) => string): string[] => {
    const rows = Array.from({ length: tm }, (_, row) => row);
    const reads = (row: number) => [
      `let row_${row} = ${rowOf(Math.floor(row / 4), row % 4)};`,
      ...Array.from({ length: tn / 4 }, (_, j) => wideReads(`row_${row}`, `(${columnOf(j)})`, `_${row}_${j}`)).flat(),
    ];
    return [
      ...reads(0),
      ...rows.flatMap((row) => [...(row + 1 < tm ? reads(row + 1) : []), '{', `  let row = row_${row};`, ...indent(rowStores(value, row, (j) => `_${row}_${j}`), 2), '}']),
    ];
  };
  const outputOf = (value: (row: number, j: number, cc: number) => string): string[] => {
    if (rowsAhead) return outputAhead(value);
    const output: string[] = [];
    for (let i = 0; i < tm / 4; i++) {
      for (let r = 0; r < 4; r++) {
        // Epilogue operands that allow it are read as one vec4 for four outputs. Where no column
        // needs a guard, the row's reads all come first (4096³ with bias + gelu + residual: 47.1
        // TFLOP/s with each read beside its store, 47.5 with the row's reads first).
        const hoisted = vecOut && !p.plainStore && !colGuard;
        const reads = hoisted ? Array.from({ length: tn / 4 }, (_, j) => wideReads('row', `(${columnOf(j)})`, `_${j}`)).flat() : [];
        const body = [...reads, ...rowStores(value, i * 4 + r, hoisted ? (j) => `_${j}` : undefined)];
        output.push('{', `  let row = ${rowOf(i, r)};`, ...indent(rowGuard ? ['if (row < M) {', ...indent(body, 2), '}'] : body, 2), '}');
      }
    }
    return output;
  };
  const output = outputOf(acc);

  const columns = [...Array.from({ length: tm / 4 }, (_, i) => `let ai${i} = ${u32(i * gy)} + ty;`), ...Array.from({ length: tn / 4 }, (_, j) => `let bj${j} = ${u32(j * gx)} + tx;`)];
  const accDecls: string[] = [];
  for (let r = 0; r < tm; r++) for (let j = 0; j < tn / 4; j++) accDecls.push([0, 1, 2, 3].map((cc) => `var ${acc(r, j, cc)} = 0.0;`).join(' '));
  const regDecls = [...Array.from({ length: a.loads }, (_, l) => `var pa${l}: vec4<f32>;`), ...Array.from({ length: b.loads }, (_, l) => `var pb${l}: vec4<f32>;`)];

  const streamK = p.form?.streamK;
  const parts: TiledParts = { threadGrid: threadGrid(gx, gy, c.blockColumns), setup: [...a.setup, ...b.setup], columns, accDecls, regDecls, prefetchedLoop, outputOf, acc };
  const body =
    streamK?.role === 'partials'
      ? streamKPartialsBody(p, c, streamK.schedule, parts)
      : [
          'let batch = wid.z;',
          ...p.batchOffsets.map((l) => l.trimStart()),
          'let c_base = batch * M * N;',
          `let row0 = wid.y * ${u32(bm)};`,
          `let col0 = wid.x * ${u32(bn)};`,
          ...threadGrid(gx, gy, c.blockColumns),
          ...(streamK ? streamKFixup(p, c, streamK.schedule, parts) : []),
          ...a.setup,
          ...b.setup,
          ...columns,
          ...accDecls,
          ...regDecls,
          ...loop,
          ...output,
        ];
  const archetype = `tiled matmul, ${describeTiling(c)}${streamK ? `, stream-K ${streamK.role === 'partials' ? 'partial tiles' : 'product'}` : ''}`;
  // the partial tiles: always whole vec4 rows of a tile; the product reads them as its last operand
  const extras = [...p.extraVec4.map((wide) => vecOut && wide), ...(streamK?.role === 'product' ? [true] : [])];
  const wgsl = `${matmulPreamble(p, archetype, { a: vecA, b: vecB, out: vecOut || streamK?.role === 'partials', extras })}
const BK: u32 = ${u32(bk)};${streamK ? `\n${streamKConstants(p, streamK.schedule)}` : ''}

// slices of A ([BK][BM] as vec4 along M) and B ([BK][BN] as vec4 along N)${stages > 1 ? `, ${stages} stages` : ''}; the
// inner loop indexes them with a constant row and a per-invocation column, so each bounds clamp is computed once
var<workgroup> tile_a: ${tileType(stages, bk, bm, c.swizzledStores && !p.transposeA)};
var<workgroup> tile_b: ${tileType(stages, bk, bn, c.swizzledStores && p.transposeB)};

@compute @workgroup_size(${threads}, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
${indent(body, 2).join('\n')}
}
`;
  return {
    wgsl,
    workgroupSize: [threads, 1, 1],
    workgroupBytes: tileBytes(c, p),
    workgroups: streamK?.role === 'partials' ? [streamK.schedule.units, 1, 1] : [Math.ceil(p.n / bn), Math.ceil(p.m / bm), p.batches],
  };
}

/** The schedule's sizes as the stream-K kernels name them. */
function streamKConstants(p: MatmulProblem, s: StreamKSchedule): string {
  return [
    `const TILES_X: u32 = ${u32(Math.ceil(p.n / s.tileN))};`,
    `const TILES_Y: u32 = ${u32(Math.ceil(p.m / s.tileM))};`,
    `const DP_TILES: u32 = ${u32(s.dataParallel)}; // computed whole, one workgroup each`,
    `const SK_TILES: u32 = ${u32(s.tiles - s.dataParallel)}; // their K iterations shared out in runs of UNIT_K`,
    `const UNIT_K: u32 = ${u32(s.unitK)};`,
    `const TILE_VEC4S: u32 = ${u32((s.tileM * s.tileN) / 4)}; // one partial tile, row-major`,
  ].join('\n');
}

interface TiledParts {
  threadGrid: string[];
  setup: string[];
  columns: string[];
  accDecls: string[];
  regDecls: string[];
  prefetchedLoop: (first: string, end: string) => string[];
  /** the stores of every output, each the epilogue of value(row in the invocation's block, j, cc) */
  outputOf: (value: (row: number, j: number, cc: number) => string) => string[];
  acc: (row: number, j: number, cc: number) => string;
}

// Each invocation's outputs in a partial tile (row-major), as the output loop visits them:
// rows (i * GY + ty) * 4 + r, vec4 columns j * GX + tx, for i < TM/4, r < 4, j < TN/4.
function partialTileParts(c: TileConfig) {
  const gx = c.bn / c.tn;
  const gy = c.bm / c.tm;
  const at = (i: number, r: number, j: number) => `slot + (${u32(i * gy)} + ty) * ${u32(c.bn)} + ${u32(r * (c.bn / 4) + j * gx)} + tx`;
  const pieces: [number, number, number][] = [];
  for (let i = 0; i < c.tm / 4; i++) for (let r = 0; r < 4; r++) for (let j = 0; j < c.tn / 4; j++) pieces.push([i, r, j]);
  return { at, pieces };
}

function checkStreamKTiling(p: MatmulProblem, c: TileConfig, s: StreamKSchedule): void {
  if (c.bm !== s.tileM || c.bn !== s.tileN || c.stages !== 1 || c.prefetch === false || p.k % 16 !== 0 || s.unitK % 16 !== 0) {
    throw new Error(`stream-K matmul ${p.name}: needs ${s.tileM}x${s.tileN} tiles in one prefetched stage and K, UNIT_K multiples of 16; got ${describeTiling(c)}, K = ${p.k}, UNIT_K = ${s.unitK}`);
  }
}

/**
 * Stream-K's partial tiles: workgroup `unit` runs its K iterations (UNIT_K of the shared
 * tiles' K laid end to end), a piece of one tile at a time, and stores each piece's sums as
 * partial tile `unit + piece_tile`.
 */
function streamKPartialsBody(p: MatmulProblem, c: TileConfig, s: StreamKSchedule, parts: TiledParts): string[] {
  checkStreamKTiling(p, c, s);
  const { at, pieces } = partialTileParts(c);
  const vec = (i: number, r: number, j: number) => [0, 1, 2, 3].map((cc) => parts.acc(i * 4 + r, j, cc));
  return [
    ...parts.threadGrid,
    'let unit = wid.x;',
    'let g_first = unit * UNIT_K;',
    'let g_last = min(g_first + UNIT_K, SK_TILES * K);',
    "// one piece of one tile per iteration: from g to the tile's end or the run's",
    'var g = g_first;',
    'loop {',
    '  if (g >= g_last) {',
    '    break;',
    '  }',
    '  let piece_tile = g / K;',
    '  let k_first = g - piece_tile * K;',
    '  let k_last = min(K, g_last - piece_tile * K);',
    '  {',
    ...indent(
      [
        'let tile = DP_TILES + piece_tile;',
        'let batch = tile / (TILES_X * TILES_Y);',
        'let tile_in_batch = tile % (TILES_X * TILES_Y);',
        `let row0 = (tile_in_batch / TILES_X) * ${u32(c.bm)};`,
        `let col0 = (tile_in_batch % TILES_X) * ${u32(c.bn)};`,
        ...p.batchOffsets.map((l) => l.trimStart()),
        ...parts.setup,
        ...parts.columns,
        ...parts.accDecls,
        ...parts.regDecls,
        ...parts.prefetchedLoop('k_first / BK', 'k_last / BK'),
        'let slot = (unit + piece_tile) * TILE_VEC4S;',
        ...pieces.map(([i, r, j]) => `out[${at(i, r, j)}] = vec4<f32>(${vec(i, r, j).join(', ')});`),
      ],
      4,
    ),
    '  }',
    '  g = piece_tile * K + k_last;',
    '}',
  ];
}

/**
 * Stream-K's product is the plain tiled kernel on the same grid, but a workgroup whose tile
 * is shared sums that tile's partials (the last operand) instead of computing it, runs the
 * epilogue on the sums and returns. The sums are their own variables, not the accumulators:
 * values merged from two paths cost the driver hundreds of register moves.
 */
function streamKFixup(p: MatmulProblem, c: TileConfig, s: StreamKSchedule, parts: TiledParts): string[] {
  checkStreamKTiling(p, c, s);
  const { at, pieces } = partialTileParts(c);
  const partials = `in${p.operands.length - 1}`;
  const sum = (i: number, r: number, j: number) => `s${i * 4 + r}_${j}`;
  return [
    'let tile = (wid.z * TILES_Y + wid.y) * TILES_X + wid.x;',
    'if (tile >= DP_TILES) {',
    ...indent([
      'let shared_tile = tile - DP_TILES;',
      ...pieces.map(([i, r, j]) => `var ${sum(i, r, j)} = vec4<f32>();`),
      '// the runs that cover this tile, in order of K',
      'let u_first = (shared_tile * K) / UNIT_K;',
      'let u_last = (shared_tile * K + K - 1u) / UNIT_K;',
      'for (var u = u_first; u <= u_last; u++) {',
      '  let slot = (u + shared_tile) * TILE_VEC4S;',
      ...indent(pieces.map(([i, r, j]) => `${sum(i, r, j)} += ${partials}[${at(i, r, j)}];`)),
      '}',
      ...parts.outputOf((row, j, cc) => `${sum(Math.floor(row / 4), row % 4, j)}[${cc}]`),
      'return;',
    ]),
    '}',
  ];
}

/**
 * Whether `workgroups` blocks fill whole waves of `units` workgroups at once: at least one
 * wave, and no more than a tenth of the last wave's units idle (4 units of slack in the first).
 */
function fillsWaves(workgroups: number, units: number): boolean {
  const waves = Math.ceil(workgroups / units);
  return workgroups >= units - 4 && workgroups >= 0.9 * waves * units;
}

const waveTilingKey = (p: MatmulProblem) =>
  `${p.transposeA ? 'Aᵀ' : 'A'}·${p.transposeB ? 'Bᵀ' : 'B'}${p.plainStore ? '' : ` epilogue${p.form?.streamK ? ', stream-K' : ''}`}`;

/** Every tiling a tuning's wave blocks may give, named, for the tests. */
export const waveTilings = (tuning: MatmulTuning): [string, TileConfig][] =>
  Object.entries(tuning.waveBlocks?.tilings ?? {}).flatMap(([key, { large, portable }]) => {
    const named: [string, TileConfig][] = [[`${key} portable`, portable]];
    if (large) named.unshift([`${key} large`, large]);
    return named;
  });

/**
 * The tilings for a shape, fastest first, the portable one (within 16 KiB and 256
 * invocations) last: the largest block that still gives enough workgroups to fill the GPU.
 * Products whose wave blocks fill whole waves (or that stream-K shares out) get them, by
 * layout and epilogue, where the tuning has them.
 */
export function chooseTiling(p: MatmulProblem, tuning: MatmulTuning): { tag: string; config: TileConfig }[] {
  const groups = (c: TileConfig) => Math.ceil(p.m / c.bm) * Math.ceil(p.n / c.bn) * p.batches;
  const wave = tuning.waveBlocks;
  if (wave && (p.form?.streamK || fillsWaves(groups(TILINGS.t128x256x16), wave.units))) {
    const { large, portable } = wave.tilings[waveTilingKey(p)];
    return [...(large ? [{ tag: 'large', config: large }] : []), { tag: 'portable', config: portable }];
  }
  const { tiling } = tuning.blocks.find((b) => groups(b.tiling) >= b.fewestWorkgroups) ?? tuning.blocks[tuning.blocks.length - 1];
  return [{ tag: 'portable', config: tiling }];
}
