// The int8 matmul archetype: C[M, N] i32 = A[M, K] i8 · B[K, N] i8, row-major, as
// torch._int_mm computes it. WGSL has no 8-bit type, so an i8 buffer is read as 32-bit words
// holding four values each; shifting a byte to the top of an i32 and back sign-extends it.
//   - portable: a workgroup of 256 computes a 64×64 block of C, each invocation 4×4 of it;
//     K advances in slices of 32, which the workgroup unpacks into workgroup memory as i32.
//   - 'subgroup-matrix' (chromium-experimental-subgroup-matrix): the same 64×64 blocks on the
//     same grid, one subgroup each, as 4×4 fragments of 16×16 i32 results accumulated by
//     16×16×32 i8 tensor-core products. Each step of 32 along K, the subgroup reads A's and B's
//     blocks as vec4s (the next step's while this one multiplies) into workgroup memory and
//     loads the fragments from there: Nvidia's driver loads fragments a byte at a time, which
//     from storage ran at 76 TOPS on an H200 and from workgroup memory at 140 (bench/int8.ts).
//     It needs M and N to be multiples of 64 and K of 32 (no edge handling), and it is checked
//     by Dawn when the runtime builds it: naga does not know subgroup matrices.
import type { Target } from '../target/target';
import type { TensorType } from '../ir/types';
import { bindingDecls, indent, kernelHeader, u32, type KernelCode, type KernelSubject, type LoweredKernel } from './kernel';

/** Rows and columns of C per workgroup, both kernels (their grids must agree). */
const BLOCK = 64;
/** K per staged slice of the portable kernel: 64×32 values of A and 32×64 of B, 16 KiB as i32. */
const SLICE = 32;
/** The one i8 subgroup-matrix shape the variant uses: M×N×K = 16×16×32. */
const FRAGMENT = { m: 16, n: 16, k: 32 };

/**
 * The override a subgroup-matrix variant divides its i8 offsets and strides by. Dawn builds
 * differ on their unit: bytes (the extension's text) or 32-bit words (webgpu 0.6.2's Dawn,
 * measured on an H200); the runtime measures it on the device and sets it (manifest
 * `deviceConstants`).
 */
export const I8_MATRIX_UNIT = 'I8_MATRIX_UNIT';
export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

/** The module text both kernels share: the header, the bindings (of u32 or i32 words), the sizes. */
function int8Sources(node: KernelSubject, operands: readonly TensorType[], name: string) {
  const [m, k] = operands[0].shape;
  const n = operands[1].shape[1];
  const header = (archetype: string) => kernelHeader(name, node, operands, archetype);
  const decls = (element: 'u32' | 'i32') =>
    [
      `@group(0) @binding(0) var<storage, read> in0: array<${element}>; // A: 4 i8 per word`,
      `@group(0) @binding(1) var<storage, read> in1: array<${element}>; // B: 4 i8 per word`,
      '@group(0) @binding(2) var<storage, read_write> out: array<i32>;',
    ].join('\n');
  const sizes = `const M: u32 = ${u32(m)};\nconst N: u32 = ${u32(n)};\nconst K: u32 = ${u32(k)};`;
  return { m, k, n, header, decls, sizes };
}

export function lowerMatmulInt8(node: KernelSubject, operands: readonly TensorType[], name: string, target: Target): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const { m, n, header, decls, sizes } = int8Sources(node, operands, name);
  const { bindings } = bindingDecls(operands.map((t) => ({ ...t, dtype: 'u32' })));

  const portable = `${header(`int8 matmul, ${BLOCK}x${BLOCK} blocks, 4x4 per invocation, K in slices of ${SLICE} unpacked to workgroup memory`)}
${decls('u32')}

${sizes}

var<workgroup> a_tile: array<i32, ${BLOCK * SLICE}>; // [row][k]
var<workgroup> b_tile: array<i32, ${SLICE * BLOCK}>; // [k][col]

/** byte e of a packed i8 buffer, sign-extended (shifts: naga's MSL writer has no extractBits) */
fn byte_of(word: u32, e: u32) -> i32 {
  return bitcast<i32>(word << (24u - (e & 3u) * 8u)) >> 24u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * ${u32(BLOCK)};
  let col0 = wid.x * ${u32(BLOCK)};
  // this invocation's outputs: rows ty + 16·i, columns tx + 16·j (neighbours read neighbouring columns)
  let tx = li % 16u;
  let ty = li / 16u;
  var acc: array<array<i32, 4>, 4>;
  for (var k0 = 0u; k0 < K; k0 += ${u32(SLICE)}) {
    // ${(BLOCK * SLICE) / 256} values of each slice per invocation; outside the matrices they are 0
    for (var t = 0u; t < ${u32((BLOCK * SLICE) / 256)}; t++) {
      let s = li + t * 256u;
      let ar = s / ${u32(SLICE)};
      let ak = s % ${u32(SLICE)};
      var av = 0;
      if (row0 + ar < M && k0 + ak < K) {
        let e = (row0 + ar) * K + k0 + ak;
        av = byte_of(in0[e >> 2u], e);
      }
      a_tile[s] = av;
      let bk = s / ${u32(BLOCK)};
      let bc = s % ${u32(BLOCK)};
      var bv = 0;
      if (k0 + bk < K && col0 + bc < N) {
        let e = (k0 + bk) * N + col0 + bc;
        bv = byte_of(in1[e >> 2u], e);
      }
      b_tile[s] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${u32(SLICE)}; kk++) {
      var a: array<i32, 4>;
      var b: array<i32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = a_tile[(ty + 16u * i) * ${u32(SLICE)} + kk];
        b[i] = b_tile[kk * ${u32(BLOCK)} + tx + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] += a[i] * b[j];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let row = row0 + ty + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + tx + 16u * j;
      if (row < M && col < N) {
        out[row * N + col] = acc[i][j];
      }
    }
  }
}
`;

  const kernel: LoweredKernel = {
    name,
    ops: [node.op],
    wgsl: portable,
    entryPoint: 'main',
    workgroupSize: [256, 1, 1],
    workgroupBytes: 2 * BLOCK * SLICE * 4,
    bindings,
  };
  const workgroups: [number, number, number] = [Math.ceil(n / BLOCK), Math.ceil(m / BLOCK), 1];
  const variant = target.features.includes(SUBGROUP_MATRIX_FEATURE) ? subgroupMatrixVariant(node, operands, name, SUBGROUP_MATRIX_TILING) : undefined;
  if (variant) {
    if (variant.workgroups.join() !== workgroups.join()) throw new Error(`int8 matmul ${name}: the subgroup-matrix tiling needs another grid than the portable kernel`);
    kernel.variants = [
      {
        tag: 'subgroup-matrix',
        features: [SUBGROUP_MATRIX_FEATURE],
        wgsl: variant.wgsl,
        workgroupSize: variant.workgroupSize,
        workgroupBytes: variant.workgroupBytes,
        validatedBy: 'dawn',
        deviceConstants: [I8_MATRIX_UNIT],
      },
    ];
  }
  return { kernel, workgroups };
}

/**
 * How the subgroup-matrix variant covers C: one subgroup per workgroup (the offsets of subgroup
 * matrix loads and stores must be uniform across the workgroup, so its subgroups could not
 * work on different blocks), FRAGS_M × FRAGS_N fragments of 16×16 results each.
 */
export interface SubgroupMatrixTiling {
  fragsM: number;
  fragsN: number;
  /** the next step's fragments (staged: blocks) read before this step's products (registers for both) */
  prefetch: boolean;
  /** each step's A and B blocks read as vec4s into workgroup memory and the fragments loaded from there */
  staged?: boolean;
  /** staged: the K of each staged step, a multiple of 32 dividing K (default 32) */
  stageK?: number;
}

/** 64×64 blocks (the portable kernel's grid), staged 32 deep and read one step ahead: the fastest on an H200 (bench/int8.ts). */
export const SUBGROUP_MATRIX_TILING: SubgroupMatrixTiling = { fragsM: 4, fragsN: 4, prefetch: true, staged: true, stageK: 32 };

export const subgroupMatrixBlock = (t: SubgroupMatrixTiling) => ({ m: t.fragsM * FRAGMENT.m, n: t.fragsN * FRAGMENT.n });

export const describeSubgroupMatrixTiling = (t: SubgroupMatrixTiling) =>
  `a subgroup per ${t.fragsM * FRAGMENT.m}x${t.fragsN * FRAGMENT.n} block, ${t.fragsM}x${t.fragsN} fragments${t.prefetch ? ', the next loaded ahead' : ''}${t.staged ? `, staged through workgroup memory ${t.stageK ?? FRAGMENT.k} deep` : ''}`;

/**
 * The subgroup-matrix module for an int8 matmul in a tiling, with its grid (one workgroup per
 * block); undefined where the blocks or steps do not divide the shape (it has no edge handling).
 */
export function subgroupMatrixVariant(node: KernelSubject, operands: readonly TensorType[], name: string, t: SubgroupMatrixTiling): KernelCode | undefined {
  const { m, k, n, header, decls, sizes } = int8Sources(node, operands, name);
  const block = subgroupMatrixBlock(t);
  const depth = t.staged ? (t.stageK ?? FRAGMENT.k) : FRAGMENT.k;
  if (m % block.m !== 0 || n % block.n !== 0 || k % depth !== 0 || depth % FRAGMENT.k !== 0) return undefined;
  return {
    wgsl: t.staged ? stagedKernel(header, sizes, t) : subgroupMatrixKernel(header, decls('i32'), sizes, t),
    workgroupSize: [32, 1, 1],
    workgroupBytes: t.staged ? (block.m + block.n) * depth : 0,
    workgroups: [n / block.n, m / block.m, 1],
  };
}

// What both subgroup-matrix forms share: the fragment types, the measured offset unit, and
// each subgroup's FRAGS_M × FRAGS_N accumulators, zeroed first and stored last.
const ids = (count: number) => Array.from({ length: count }, (_, i) => i);
const LEFT = `subgroup_matrix_left<i8, ${FRAGMENT.k}, ${FRAGMENT.m}>`;
const RIGHT = `subgroup_matrix_right<i8, ${FRAGMENT.n}, ${FRAGMENT.k}>`;
const UNIT_OVERRIDE = `/** what an i8 matrix offset or stride counts on this device: 1 (bytes) or 4 (words); set by the runtime */
override ${I8_MATRIX_UNIT}: u32 = 1u;`;
const accumulators = (t: SubgroupMatrixTiling) =>
  ids(t.fragsM * t.fragsN)
    .map((f) => `  var acc${f} = subgroup_matrix_result<i32, ${FRAGMENT.n}, ${FRAGMENT.m}>();`)
    .join('\n');
const resultStores = (t: SubgroupMatrixTiling) =>
  ids(t.fragsM * t.fragsN)
    .map((f) => `  subgroupMatrixStore<row_major>(&out, (row0 + ${u32(Math.floor(f / t.fragsN) * FRAGMENT.m)}) * N + col0 + ${u32((f % t.fragsN) * FRAGMENT.n)}, acc${f}, N);`)
    .join('\n');

/** Fragments loaded straight from storage. */
function subgroupMatrixKernel(header: (archetype: string) => string, decls: string, sizes: string, t: SubgroupMatrixTiling): string {
  const { m: fm, n: fn, k: fk } = FRAGMENT;
  const frags = ids(t.fragsM * t.fragsN);
  const loadA = (i: number, k: string) => `subgroupMatrixLoad<${LEFT}, row_major>(&in0, ((row0 + ${u32(i * fm)}) * K + ${k}) / ${I8_MATRIX_UNIT}, K / ${I8_MATRIX_UNIT})`;
  const loadB = (j: number, k: string) => `subgroupMatrixLoad<${RIGHT}, row_major>(&in1, (${k} * N + col0 + ${u32(j * fn)}) / ${I8_MATRIX_UNIT}, N / ${I8_MATRIX_UNIT})`;
  const products = frags.map((f) => `    acc${f} = subgroupMatrixMultiplyAccumulate(a${Math.floor(f / t.fragsN)}, b${f % t.fragsN}, acc${f});`);
  const loop = t.prefetch
    ? [
        ...ids(t.fragsM).map((i) => `  var a${i} = ${loadA(i, '0u')};`),
        ...ids(t.fragsN).map((j) => `  var b${j} = ${loadB(j, '0u')};`),
        `  for (var k = 0u; k < K; k += ${u32(fk)}) {`,
        '    // the last step loads its own fragments again rather than branch',
        `    let k_next = min(k + ${u32(fk)}, K - ${u32(fk)});`,
        ...ids(t.fragsM).map((i) => `    let a${i}_next = ${loadA(i, 'k_next')};`),
        ...ids(t.fragsN).map((j) => `    let b${j}_next = ${loadB(j, 'k_next')};`),
        ...products,
        ...ids(t.fragsM).map((i) => `    a${i} = a${i}_next;`),
        ...ids(t.fragsN).map((j) => `    b${j} = b${j}_next;`),
        '  }',
      ]
    : [
        `  for (var k = 0u; k < K; k += ${u32(fk)}) {`,
        ...ids(t.fragsM).map((i) => `    let a${i} = ${loadA(i, 'k')};`),
        ...ids(t.fragsN).map((j) => `    let b${j} = ${loadB(j, 'k')};`),
        ...products,
        '  }',
      ];
  return `enable chromium_experimental_subgroup_matrix;
${header(`int8 matmul on subgroup matrices (${fm}x${fn}x${fk}): ${describeSubgroupMatrixTiling(t)}, operands loaded from storage`)}
${decls}

${sizes}
${UNIT_OVERRIDE}

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let row0 = wid.y * ${u32(t.fragsM * fm)};
  let col0 = wid.x * ${u32(t.fragsN * fn)};
${accumulators(t)}
${loop.join('\n')}
${resultStores(t)}
}
`;
}

/**
 * The staged form: each step's blocks of A (rows × 32 bytes) and B (32 rows × columns) read
 * from storage as vec4s (the driver loads subgroup-matrix fragments from storage a byte at a
 * time), one step ahead into registers, stored to workgroup memory, and the fragments loaded
 * from there.
 */
function stagedKernel(header: (archetype: string) => string, sizes: string, t: SubgroupMatrixTiling): string {
  const { m: fm, n: fn, k: fk } = FRAGMENT;
  const frags = ids(t.fragsM * t.fragsN);
  const rows = t.fragsM * fm;
  const cols = t.fragsN * fn;
  const depth = t.stageK ?? fk;
  // vec4s (16 bytes) per step: A rows × depth / 16, B depth rows × cols / 16; per invocation of 32
  const aVecs = (rows * depth) / 16 / 32;
  const bVecs = (depth * cols) / 16 / 32;
  const load = (k: string) => [
    ...ids(aVecs).map((l) => `pa${l} = in0[((row0 + (li + ${u32(l * 32)}) / ${u32(depth / 16)}) * K + ${k}) / 16u + (li + ${u32(l * 32)}) % ${u32(depth / 16)}];`),
    ...ids(bVecs).map((l) => `pb${l} = in1[((${k} + (li + ${u32(l * 32)}) / ${u32(cols / 16)}) * N + col0) / 16u + (li + ${u32(l * 32)}) % ${u32(cols / 16)}];`),
  ];
  // the tiles are row-major words: A [rows][depth / 4], B [depth][cols / 4]; vec4 e is words 4e..4e+3 of either
  const store = [
    ...ids(aVecs).flatMap((l) => ids(4).map((c) => `a_tile[(li + ${u32(l * 32)}) * 4u + ${u32(c)}] = pa${l}[${c}];`)),
    ...ids(bVecs).flatMap((l) => ids(4).map((c) => `b_tile[(li + ${u32(l * 32)}) * 4u + ${u32(c)}] = pb${l}[${c}];`)),
  ];
  // each fragment step of 32 within the staged depth
  const products = ids(depth / fk).flatMap((step) => [
    ...ids(t.fragsM).map((i) => `let a${i}_${step} = subgroupMatrixLoad<${LEFT}, row_major>(&a_tile, ${u32(i * fm * depth + step * fk)} / ${I8_MATRIX_UNIT}, ${u32(depth)} / ${I8_MATRIX_UNIT});`),
    ...ids(t.fragsN).map((j) => `let b${j}_${step} = subgroupMatrixLoad<${RIGHT}, row_major>(&b_tile, ${u32(step * fk * cols + j * fn)} / ${I8_MATRIX_UNIT}, ${u32(cols)} / ${I8_MATRIX_UNIT});`),
    ...frags.map((f) => `acc${f} = subgroupMatrixMultiplyAccumulate(a${Math.floor(f / t.fragsN)}_${step}, b${f % t.fragsN}_${step}, acc${f});`),
  ]);
  // prefetched: the next step's blocks are read into registers while this one multiplies
  const loop = [
    ...(t.prefetch ? indent(load('0u')) : []),
    `  for (var k = 0u; k < K; k += ${u32(depth)}) {`,
    ...(t.prefetch ? [] : indent(load('k'), 4)),
    ...indent(store, 4),
    '    workgroupBarrier();',
    ...(t.prefetch ? [`    if (k + ${u32(depth)} < K) {`, ...indent(load(`(k + ${u32(depth)})`), 6), '    }'] : []),
    ...indent(products, 4),
    '    workgroupBarrier();',
    '  }',
  ];
  return `enable chromium_experimental_subgroup_matrix;
${header(`int8 matmul on subgroup matrices (${fm}x${fn}x${fk}): ${describeSubgroupMatrixTiling(t)}`)}
@group(0) @binding(0) var<storage, read> in0: array<vec4<i32>>; // A: 16 i8 per vec4
@group(0) @binding(1) var<storage, read> in1: array<vec4<i32>>; // B: 16 i8 per vec4
@group(0) @binding(2) var<storage, read_write> out: array<i32>;

${sizes}
${UNIT_OVERRIDE}

var<workgroup> a_tile: array<i32, ${(rows * depth) / 4}>;
var<workgroup> b_tile: array<i32, ${(depth * cols) / 4}>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row0 = wid.y * ${u32(rows)};
  let col0 = wid.x * ${u32(cols)};
${accumulators(t)}
${[...ids(aVecs).map((l) => `  var pa${l}: vec4<i32>;`), ...ids(bVecs).map((l) => `  var pb${l}: vec4<i32>;`)].join('\n')}
${loop.join('\n')}
${resultStores(t)}
}
`;
}
