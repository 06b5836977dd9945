// What bench/quantized-matvec.ts and bench/quantized-prefill.ts share: a target with the
// device's own limits, and the product graph of x against w in a packed type (or f32), w made
// of SLAB_ROWS seeded rows repeated down its N rows (the JS quantizers are slow; the timings do
// not see values), with the slab's dequantized values for the checks.
import { quantize } from '../compiler/frontends/gguf/quantize';
import type { Graph } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { packedWeightTypes, type WeightDType } from '../compiler/ir/types';
import type { Target } from '../compiler/target/target';
import { GENERIC } from '../compiler/target/targets';
import { dequantize, ggmlType, SUPPORTED_TYPES, type SupportedTypeName } from '../runtime/ggml-types';
import { dtypeByteLength } from '../schemas/manifest';

/** Every packed type a GGUF file can hold, with its GGML name. */
export const PACKED_TYPES = packedWeightTypes(SUPPORTED_TYPES) as [WeightDType, SupportedTypeName][];

/** distinct rows of w quantized (and dequantized for the checks); w repeats them down its N rows */
export const SLAB_ROWS = 64;

/** GENERIC's kernels under the device's limits: the f32 weights of the largest shapes exceed WebGPU's defaults. */
export function deviceTarget(limits: GPUSupportedLimits): Target {
  return {
    ...GENERIC,
    name: 'bench-device',
    limits: {
      maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
    },
  };
}

/** Packed bytes of w [n, k]: SLAB_ROWS rows quantized, repeated; and the slab's dequantized values. */
function packedWeights(ggml: SupportedTypeName, n: number, k: number, seed: number): { bytes: Uint8Array; slab: Float32Array } {
  const u = uniformStream(seed);
  const rows = Math.min(SLAB_ROWS, n);
  const slabBytes = quantize(ggml, Float32Array.from({ length: rows * k }, () => 2 * u() - 1));
  const bytes = new Uint8Array((slabBytes.length / rows) * n);
  for (let at = 0; at < bytes.length; at += slabBytes.length) bytes.set(slabBytes.subarray(0, Math.min(slabBytes.length, bytes.length - at)), at);
  return { bytes, slab: dequantize(ggmlType(ggml), slabBytes, rows * k) };
}

/**
 * Output `y` of `g`: input x [m, k] times w in `type` — packed, w [n, k] read transposed
 * (matmulQuantized); 'f32', w [k, n] through the ordinary matmul, column c holding the slab's
 * row c % SLAB_ROWS. Returns the slab (row r of w is its row r % SLAB_ROWS) and w's bytes.
 */
export function weightProduct(g: Graph, type: string, m: number, n: number, k: number, seed: number): { slab: Float32Array; weightBytes: number } {
  if (type === 'f32') {
    const u = uniformStream(seed);
    const slab = Float32Array.from({ length: Math.min(SLAB_ROWS, n) * k }, () => 2 * u() - 1);
    const init = new Float32Array(k * n);
    for (let c = 0; c < n; c++) for (let p = 0; p < k; p++) init[p * n + c] = slab[(c % SLAB_ROWS) * k + p];
    g.output('y', g.matmul(g.input('x', [m, k]), g.parameter('w', [k, n], { init })));
    return { slab, weightBytes: 4 * n * k };
  }
  const found = PACKED_TYPES.find(([d]) => d === type);
  if (!found) throw new Error(`unknown type ${type}; known: ${PACKED_TYPES.map(([t]) => t).join(', ')}, f32`);
  const [dtype, ggml] = found;
  const packed = packedWeights(ggml, n, k, seed);
  g.output('y', g.matmulQuantized(g.input('x', [m, k]), g.packedParameter('w', [n, k], dtype, packed.bytes)));
  return { slab: packed.slab, weightBytes: dtypeByteLength(dtype, n * k) };
}
