// The int8 matmul archetype: C[M, N] i32 = A[M, K] i8 · B[K, N] i8, row-major, as
// torch._int_mm computes it. WGSL has no 8-bit type, so an i8 buffer is read as 32-bit words
// holding four values each; shifting a byte to the top of an i32 and back sign-extends it.
//   - portable: a workgroup of 256 computes a 64×64 block of C, each invocation 4×4 of it;
//     K advances in slices of 32, which the workgroup unpacks into workgroup memory as i32.
//   - 'subgroup-matrix' (chromium-experimental-subgroup-matrix): the same 64×64 blocks on the
//     same grid, one subgroup each, as 4×4 fragments of 16×16 i32 results accumulated by
//     16×16×32 i8 tensor-core products, the fragments of A and B loaded straight from the
//     storage buffers (staging them through workgroup memory measured 3× slower on an H200).
//     It needs M and N to be multiples of 64 and K of 32 (no edge handling), and it is checked
//     by Dawn when the runtime builds it: naga does not know subgroup matrices.
import type { Node } from '../ir/graph';
import type { TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, u32, type LoweredKernel } from './kernel';

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

export function lowerMatmulInt8(node: Node, operands: readonly TensorType[], name: string): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const [m, k] = operands[0].shape;
  const n = operands[1].shape[1];
  const header = (archetype: string) => kernelHeader(name, node, operands, archetype);
  const { bindings } = bindingDecls(operands.map((t) => ({ ...t, dtype: 'u32' })));
  const decls = (element: 'u32' | 'i32') =>
    [
      `@group(0) @binding(0) var<storage, read> in0: array<${element}>; // A: 4 i8 per word`,
      `@group(0) @binding(1) var<storage, read> in1: array<${element}>; // B: 4 i8 per word`,
      '@group(0) @binding(2) var<storage, read_write> out: array<i32>;',
    ].join('\n');
  const sizes = `const M: u32 = ${u32(m)};\nconst N: u32 = ${u32(n)};\nconst K: u32 = ${u32(k)};`;

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
  if (m % BLOCK === 0 && n % BLOCK === 0 && k % FRAGMENT.k === 0) {
    kernel.variants = [
      {
        tag: 'subgroup-matrix',
        features: ['chromium-experimental-subgroup-matrix'],
        wgsl: subgroupMatrixKernel(header, decls('i32'), sizes),
        workgroupSize: [32, 1, 1],
        workgroupBytes: 0,
        validatedBy: 'dawn',
        deviceConstants: [I8_MATRIX_UNIT],
      },
    ];
  }
  return { kernel, workgroups: [Math.ceil(n / BLOCK), Math.ceil(m / BLOCK), 1] };
}

function subgroupMatrixKernel(header: (archetype: string) => string, decls: string, sizes: string): string {
  const frags = BLOCK / FRAGMENT.m; // 4 along M, and as many along N
  const { m: fm, n: fn, k: fk } = FRAGMENT;
  const ids = (count: number) => Array.from({ length: count }, (_, i) => i);
  const left = `subgroup_matrix_left<i8, ${fk}, ${fm}>`;
  const right = `subgroup_matrix_right<i8, ${fn}, ${fk}>`;
  const result = `subgroup_matrix_result<i32, ${fn}, ${fm}>`;
  return `enable chromium_experimental_subgroup_matrix;
${header(`int8 matmul on subgroup matrices: a subgroup per ${BLOCK}x${BLOCK} block, ${frags}x${frags} fragments of ${fm}x${fn}x${fk}, operands loaded from storage`)}
${decls}

${sizes}
/** what an i8 matrix offset or stride counts on this device: 1 (bytes) or 4 (words); set by the runtime */
override ${I8_MATRIX_UNIT}: u32 = 1u;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let row0 = wid.y * ${u32(BLOCK)};
  let col0 = wid.x * ${u32(BLOCK)};
${ids(frags * frags)
  .map((f) => `  var acc${f} = ${result}();`)
  .join('\n')}
  for (var k = 0u; k < K; k += ${u32(fk)}) {
${ids(frags)
  .map((i) => `    let a${i} = subgroupMatrixLoad<${left}, row_major>(&in0, ((row0 + ${u32(i * fm)}) * K + k) / ${I8_MATRIX_UNIT}, K / ${I8_MATRIX_UNIT});`)
  .join('\n')}
${ids(frags)
  .map((j) => `    let b${j} = subgroupMatrixLoad<${right}, row_major>(&in1, (k * N + col0 + ${u32(j * fn)}) / ${I8_MATRIX_UNIT}, N / ${I8_MATRIX_UNIT});`)
  .join('\n')}
${ids(frags * frags)
  .map((f) => `    acc${f} = subgroupMatrixMultiplyAccumulate(a${Math.floor(f / frags)}, b${f % frags}, acc${f});`)
  .join('\n')}
  }
${ids(frags * frags)
  .map((f) => `  subgroupMatrixStore<row_major>(&out, (row0 + ${u32(Math.floor(f / frags) * fm)}) * N + col0 + ${u32((f % frags) * fn)}, acc${f}, N);`)
  .join('\n')}
}
`;
}
