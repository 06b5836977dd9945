// Matmul archetype: C[b] = A[b] · B[b] over the last two axes, batch axes broadcast.
// Each 16×16 workgroup computes a 64×64 tile of C, 4×4 outputs per invocation, staging
// 64×16 slices of A and 16×64 slices of B through workgroup memory. Edges are guarded, so
// any M, N, K works; the tiling is the portable baseline the tuned variants build on.
// A fused form reads A or B transposed straight into the tiles (no transpose kernel) and
// runs an epilogue (bias, activation, residual) on each value before it is stored.
import type { Node } from '../ir/graph';
import type { MatmulForm, OperandView } from '../ir/ops';
import { broadcastStrides, stridesOf } from '../ir/shape';
import { elementCount, type TensorType } from '../ir/types';
import { bindingDecls, kernelHeader, u32, type LoweredKernel } from './kernel';
import { chainStatements } from './pointwise';

const TILE_M = 64;
const TILE_N = 64;
const TILE_K = 16;
const THREADS = 16; // per side: 16×16 invocations, each 4×4 outputs

/**
 * Tile loads of one operand. Plain: consecutive invocations read consecutive elements of a
 * row of the stored matrix. Transposed (stored [.., K, M] for A, [.., N, K] for B): they
 * walk the stored rows instead, so global reads stay coalesced and the tile is written
 * in its usual layout with a stride.
 */
function tileLoads(which: 'a' | 'b', transposed: boolean): string[] {
  const [row, col, value, input, tile] = which === 'a' ? ['ar', 'ac', 'av', 'in0', 'tile_a'] : ['br', 'bc', 'bv', 'in1', 'tile_b'];
  // the tile is [rows][cols]; A's is [TILE_M][TILE_K] (rows index M), B's [TILE_K][TILE_N]
  const [rows, cols, rowLimit, colLimit, rowBase, colBase] =
    which === 'a' ? ['TILE_M', 'TILE_K', 'M', 'K', 'row0', 'k0'] : ['TILE_K', 'TILE_N', 'K', 'N', 'k0', 'col0'];
  const base = `${which}_base`;
  if (!transposed) {
    return [
      `      let ${row} = ${rowBase} + e / ${cols};`,
      `      let ${col} = ${colBase} + e % ${cols};`,
      `      var ${value} = 0.0;`,
      `      if (${row} < ${rowLimit} && ${col} < ${colLimit}) {`,
      `        ${value} = ${input}[${base} + ${row} * ${colLimit} + ${col}];`,
      '      }',
      `      ${tile}[e] = ${value};`,
    ];
  }
  return [
    `      let ${row} = ${rowBase} + e % ${rows};`,
    `      let ${col} = ${colBase} + e / ${rows};`,
    `      var ${value} = 0.0;`,
    `      if (${row} < ${rowLimit} && ${col} < ${colLimit}) {`,
    `        ${value} = ${input}[${base} + ${col} * ${rowLimit} + ${row}];`,
    '      }',
    `      ${tile}[(e % ${rows}) * ${cols} + e / ${rows}] = ${value};`,
  ];
}

/** The index of an epilogue operand at the output element: batch coordinates bc{d}, then row and col. */
function viewIndex(view: OperandView, batchRank: number): string {
  const terms: string[] = [];
  view.strides.forEach((s, d) => {
    if (s === 0) return;
    const c = d < batchRank ? `bc${d}` : d === batchRank ? 'row' : 'col';
    terms.push(s === 1 ? c : `${c} * ${u32(s)}`);
  });
  if (view.offset !== 0) terms.push(u32(view.offset));
  return terms.length ? terms.join(' + ') : '0u';
}

const PLAIN: MatmulForm = {
  transposeA: false,
  transposeB: false,
  extraViews: [],
  epilogue: (product) => ({ lets: [], result: product, helpers: [], ops: [] }),
  ops: ['matmul'],
};

export function lowerMatmul(node: Node, operands: readonly TensorType[], name: string, form?: MatmulForm): {
  kernel: LoweredKernel;
  workgroups: [number, number, number];
} {
  const { transposeA, transposeB, extraViews } = form ?? PLAIN;
  const [a, b] = operands;
  const out = node.type.shape;
  const [m, n] = out.slice(-2);
  const k = transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  const batchShape = out.slice(0, -2);
  const batches = elementCount(batchShape);
  if (batches > 65535) throw new Error(`matmul ${node.name}: ${batches} batches exceed one grid dimension`);

  // per batch index: offsets of A's and B's matrices (broadcast batch axes read matrix 0)
  const aStrides = broadcastStrides(a.shape.slice(0, -2), batchShape);
  const bStrides = broadcastStrides(b.shape.slice(0, -2), batchShape);
  const batchStrides = stridesOf(batchShape);
  const offsetLines: string[] = ['  var a_base = 0u;', '  var b_base = 0u;'];
  if (batchShape.length > 0) {
    offsetLines.push('  var rem = batch;');
    for (let d = 0; d < batchShape.length; d++) {
      offsetLines.push(`  let bc${d} = rem / ${u32(batchStrides[d])};`, `  rem = rem % ${u32(batchStrides[d])};`);
      if (aStrides[d]) offsetLines.push(`  a_base += bc${d} * ${u32(aStrides[d] * m * k)};`);
      if (bStrides[d]) offsetLines.push(`  b_base += bc${d} * ${u32(bStrides[d] * k * n)};`);
    }
  }

  // the epilogue: operands after A and B read at (batch, row, col), then the chain on acc[r][c]
  const extraLoads = extraViews.map((v, j) => `        let x${j + 1} = in${j + 2}[${viewIndex(v, batchShape.length)}];`);
  const chain = (form ?? PLAIN).epilogue('x0', extraViews.map((_, j) => `x${j + 1}`));
  const store =
    form === undefined
      ? ['        out[c_base + row * N + col] = acc[r][c];']
      : ['        let x0 = acc[r][c];', ...extraLoads, ...chainStatements(chain, '        '), `        out[c_base + row * N + col] = ${chain.result};`];

  const loadsPerThread = (TILE_M * TILE_K) / (THREADS * THREADS);
  const { wgsl: decls, bindings } = bindingDecls(operands);
  const archetype = `tiled matmul, ${TILE_M}x${TILE_N}x${TILE_K} tiles, 4x4 per invocation`;
  const reads = [transposeA ? 'A' : '', transposeB ? 'B' : ''].filter(Boolean).join(' and ');
  const header = form
    ? kernelHeader(name, node, operands, `${archetype}${reads ? `, ${reads} read transposed` : ''}${chain.lets.length ? ', epilogue per value' : ''}`, form.ops)
    : kernelHeader(name, node, operands, archetype);
  const helpers = chain.helpers.length ? `\n${chain.helpers.join('\n')}\n` : '';
  const wgsl = `${header}
${decls}
${helpers}
const M: u32 = ${u32(m)};
const N: u32 = ${u32(n)};
const K: u32 = ${u32(k)};
const TILE_M: u32 = ${u32(TILE_M)};
const TILE_N: u32 = ${u32(TILE_N)};
const TILE_K: u32 = ${u32(TILE_K)};

var<workgroup> tile_a: array<f32, ${TILE_M * TILE_K}>; // [TILE_M][TILE_K]
var<workgroup> tile_b: array<f32, ${TILE_K * TILE_N}>; // [TILE_K][TILE_N]

@compute @workgroup_size(${THREADS}, ${THREADS}, 1)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let batch = wid.z;
${offsetLines.join('\n')}
  let c_base = batch * M * N;
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;

  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < K; k0 += TILE_K) {
    for (var t = 0u; t < ${u32(loadsPerThread)}; t++) {
      let e = li + t * ${u32(THREADS * THREADS)};
${[...tileLoads('a', transposeA), ...tileLoads('b', transposeB)].join('\n')}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      var a_reg: array<f32, 4>;
      var b_reg: array<f32, 4>;
      for (var r = 0u; r < 4u; r++) {
        a_reg[r] = tile_a[(lid.y * 4u + r) * TILE_K + kk];
        b_reg[r] = tile_b[kk * TILE_N + lid.x * 4u + r];
      }
      for (var r = 0u; r < 4u; r++) {
        for (var c = 0u; c < 4u; c++) {
          acc[r][c] = fma(a_reg[r], b_reg[c], acc[r][c]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var r = 0u; r < 4u; r++) {
    let row = row0 + lid.y * 4u + r;
    for (var c = 0u; c < 4u; c++) {
      let col = col0 + lid.x * 4u + c;
      if (row < M && col < N) {
${store.join('\n')}
      }
    }
  }
}
`;
  return {
    kernel: { name, ops: form ? form.ops : [node.op], wgsl, entryPoint: 'main', workgroupBytes: (TILE_M * TILE_K + TILE_K * TILE_N) * 4, workgroupSize: [THREADS, THREADS, 1], bindings },
    workgroups: [Math.ceil(n / TILE_N), Math.ceil(m / TILE_M), batches],
  };
}
