// The built-in targets, and how `--target a,b` names them. nvidia-hopper carries the choices
// measured on an H100/H200 through Dawn/Vulkan (bench/); generic assumes nothing beyond
// WebGPU's defaults; intel-xe and apple-m are built from public figures (stated with each),
// with the portable kernels and the schedules that scale with their compute units.
import { CompileError } from '../ir/errors';
import { DEFAULT_LIMITS, type Target } from './target';
import { TILINGS, type AttentionTuning, type AxisTuning, type MatmulTuning, type SplitKTuning, type TargetTuning } from './tuning';

// ---- nvidia-hopper: every figure measured on an H200 (132 SMs) through Dawn/Vulkan --------

/**
 * The tiled kernel's blocks with the fewest workgroups each needs to keep a large GPU busy;
 * measured on an H200 (bench/matmul.ts). 8×8 outputs per invocation in 128×128 blocks reach
 * the highest rate of the portable blocks; smaller blocks trade some of it for more workgroups.
 */
const BLOCKS: MatmulTuning['blocks'] = [
  { tiling: TILINGS.t128x128x16, fewestWorkgroups: 256 },
  { tiling: TILINGS.t64x128x16, fewestWorkgroups: 256 },
  { tiling: TILINGS.t64x64x16, fewestWorkgroups: 256 },
  { tiling: TILINGS.t32x64x16, fewestWorkgroups: 64 },
  { tiling: TILINGS.t32x32x16, fewestWorkgroups: 0 },
];

const T16 = TILINGS.t128x256x16;
const T8 = TILINGS.t128x256x8;
/**
 * 8×16 outputs per invocation in 128×256 blocks reach the highest rate (the fewest
 * workgroup-memory reads per product; one 213-register workgroup per SM), so they pay off
 * where they fill whole waves of the 132 SMs: at least one wave, and no more than a tenth of
 * the last wave's SMs idle. On the H200: 2048³ (128 blocks) 48.9 TFLOP/s against 46.9 for
 * 128×128; 3072³ (288 blocks, 2.2 waves) 34.3 against 42.6.
 * By operand layout (Aᵀ: A stored [K, M]; Bᵀ: B stored [N, K]) and epilogue: `large` with
 * 16-deep slices in 24 KiB, `portable` with 8-deep ones in 12 KiB. Each is the fastest of a
 * sweep over the code-shape options of TileConfig on the H200 (4096³, checked at 2048³ and
 * 8192³; bench/README, "Code shape"). The same loop gets very different register allocations
 * from Nvidia's compiler depending on the code around it, which only measuring tells apart:
 * 4096³ TFLOP/s, default shape → chosen: A·B 49.7 → 50.0, Aᵀ·B 50.3 → 50.7, A·Bᵀ 44.3 → 49.4;
 * with bias + gelu + residual (8-deep slices: 16-deep ones are slower there) A·B 48.8 → 49.9,
 * A·Bᵀ 45.8 → 48.9, Aᵀ·B 49.9 → 51.2. Two stages, 128-invocation blocks (two workgroups per
 * SM) and spaced reads were all slower for A·B (bench/README, "What is left at 4096³").
 */
const HOPPER_WAVE_TILINGS: NonNullable<MatmulTuning['waveBlocks']>['tilings'] = {
  'A·B': { large: { ...T16, readAhead: 2, pipelined: true, barrierFirst: true }, portable: T8 },
  'Aᵀ·B': { large: { ...T16, readAhead: 6, pipelined: true }, portable: T8 },
  'A·Bᵀ': { large: { ...T16, readAhead: 2, pipelined: true, swizzledStores: true, blockColumns: 16 }, portable: T8 },
  'Aᵀ·Bᵀ': { large: T16, portable: T8 },
  'A·B epilogue': { portable: { ...T8, pipelined: true, swizzledStores: true } },
  'Aᵀ·B epilogue': { portable: { ...T8, pipelined: true } },
  'A·Bᵀ epilogue': { portable: { ...T8, readAhead: 1, pipelined: true, swizzledStores: true, blockColumns: 16 } },
  'Aᵀ·Bᵀ epilogue': { portable: T8 },
  // stream-K's product sums the shared tiles' partials before its epilogue: other code around
  // the loop, measured apart (4096³ with the one-dispatch choice above: 2934 µs against 2737)
  'A·B epilogue, stream-K': { portable: { ...T8, swizzledStores: true, blockColumns: 16 } },
  'Aᵀ·B epilogue, stream-K': { portable: T8 },
  'A·Bᵀ epilogue, stream-K': { portable: { ...T8, readAhead: 6, swizzledStores: true } },
  'Aᵀ·Bᵀ epilogue, stream-K': { portable: T8 },
};

/**
 * Split-K, measured on the H200 (bench/matmul.ts, split-K): at 128x1536x576 (72 tiles) 6
 * slices take 15.7 µs against 30.2 whole, at 128x4096x576 16 slices 30.0 against 77.1, at
 * 256x1536x576 with an epilogue (144 tiles) 6 slices 27.9 against 35.6; 8 tiles per SM was the
 * best target. Below two 32×32 tiles per SM a product is split.
 */
const splitKFor = (units: number): SplitKTuning => ({ belowTiles: 2 * units, minK: 1024, targetTiles: 8 * units, minChunk: 256, maxSplits: 16 });

const HOPPER_AXIS: AxisTuning = {
  maxRegisterFloats: 64,
  unitsPerInvocation: 4,
  interleavedBytes: 128,
  streamAccumulators: 4,
  streamGroups: 0,
  // 1024 invocations at 32 floats each hold a row of 32768; 64 would leave no registers to
  // spare at 1024 invocations (65536 per SM on NVIDIA)
  largeInvocations: 1024,
  largeRegisterFloats: 32,
  // H200: 132 SMs hold about 1056 workgroups of 256; below 512 most of them idle
  splitBelowWorkgroups: 512,
  splitMinElements: 1 << 20,
  splitTargetWorkgroups: 4096,
  splitMinChunk: 256,
};

const HOPPER_ATTENTION: AttentionTuning = {
  minTiledTq: 16,
  maxLaneVec4: 8,
  minRows: 16,
  maxRows: 64,
  maxTileKeys: 16,
  minSplitTileKeys: 8,
  minGroups: 1,
  maxGroups: 4,
  targetInvocations: 65536,
  minKeysPerGroup: 32,
  // H200 (bench/attention.ts): 32 rows in 4 key groups of 8-key tiles (24 KiB, 256
  // invocations) beat the portable 2 groups by 1.07-1.24x on 9 heads at seq 128-2048; 72
  // heads at 512 keep one group of 64 rows, which fits the portable limits (no variant)
  largeWorkgroupBytes: 32768,
  largeInvocations: 256,
  // H200 (bench/attention.ts): 48 rows × 64 keys (192 invocations, 47 KiB) at 9 heads × 128,
  // 512, 2048 and 2048 causal and 72 × 512: 12.7, 38.5, 409, 239 and 228 µs against the tiled
  // kernel's 13.5, 58.9, 567, 354 and 252; 64 × 32, 40 × 64 and 32 × 64 gave 534–580 at
  // 9 × 2048, 24 × 64 and 48 × 32 (96 invocations) 755–817
  blockedRows: 48,
  blockedKeys: 64,
  blockedPrefetch: true,
  minBlockedTq: 64,
  blockedWorkgroupBytes: 49152,
};

const HOPPER_SMS = 132;

export const NVIDIA_HOPPER: Target = {
  name: 'nvidia-hopper',
  summary: 'NVIDIA H100/H200 (132 SMs, HBM3): the tuned kernels and schedules measured there',
  sources: 'measured on an H200 through Dawn/Vulkan (bench/, bench/README.md)',
  // Dawn's adapter table names no architecture for Hopper (it reports ''), so the device name
  // decides where the backend gives one (dawn.node: 'nvidia-h100-…'; Chrome hides it)
  match: { vendors: ['nvidia'], architectures: ['hopper'], devices: ['h100', 'h200', 'gh100', 'gh200'] },
  computeUnits: HOPPER_SMS,
  // 1000 small dispatches in one pass: 3.8 µs each; 3.3 TB/s, 80% of the 4.1 TB/s a WGSL copy
  // reaches; 30 TFLOP/s, what a tiled WGSL matmul reaches there
  cost: { dispatchMicros: 4, bytesPerMicro: 3.3e6, flopsPerMicro: 30e6 },
  limits: {
    maxComputeWorkgroupStorageSize: 49152,
    maxComputeInvocationsPerWorkgroup: 1024,
    maxStorageBufferBindingSize: 2147483644,
    maxBufferSize: 2147483648,
    maxStorageBuffersPerShaderStage: 10,
  },
  features: ['subgroups', 'chromium-experimental-subgroup-matrix'],
  subgroupSizes: { min: 32, max: 32 },
  tuning: {
    matmul: { blocks: BLOCKS, waveBlocks: { units: HOPPER_SMS, tilings: HOPPER_WAVE_TILINGS } },
    splitK: splitKFor(HOPPER_SMS),
    // Stream-K, measured on the H200 (bench/matmul.ts, stream-K): the shared runs go at nearly
    // the whole tiles' rate per K iteration (4096³: 618 µs for 116 tiles' K on 132 SMs, 610 at
    // that rate) and the sums and the second dispatch cost about 40 µs, some 240 K iterations
    // of a tile. So the idle part of the last wave must be worth more than that: 3072³ (last
    // wave 0.18 full) 1179 µs against 1364 for 128×128 blocks, 8192³ (0.52) 21.3 ms against
    // 21.9, 4096³ (0.88, 496 idle K iterations) 2695 µs against 2756. Fuller last waves were
    // not measured. With a transposed read, 4096³ lost (Aᵀ 2727 µs against 2715, Bᵀ 2836
    // against 2786), so those keep the earlier limit, under which every product measured gained.
    streamK: { units: HOPPER_SMS, maxLastWave: 0.9, maxLastWaveTransposed: 0.75, minIdleK: 256, minUnitK: 256 },
    axis: HOPPER_AXIS,
    attention: HOPPER_ATTENTION,
    // Measured on the H100 (bench/quantized-matvec.ts --kernel new,dot4, 2026-12-08, the
    // 4096×4096, 11008×4096 and 4096×11008 products): the dot4 kernel (x rounded to int8 per 32
    // values, integer dot products) beats the units kernel on every packed type it takes, by
    // 1.15-1.98× (of a copy's bandwidth: Q8_0 67-71% against 47-54, Q4_0 46-67 against 27-34,
    // Q5_0 50-66 against 31-38, Q4_K 49-68 against 37-46, Q6_K 48-65 against 42-50). F16/BF16
    // have no integer form and take the units kernel with the same lanes (89-93%).
    quantizedMatvec: { kernel: 'dot4', lanesPerRow: 8, rowsPerTeam: 4, stepsInFlight: 1 },
  },
};

// ---- the others: the portable kernels, and schedules from public figures --------------

/**
 * What a GPU whose measurements we lack gets: the portable blocks and kernels (within
 * WebGPU's default limits), split reductions (one workgroup streaming a million elements is
 * slow on any GPU, a second dispatch cheap), and no variant beyond the default limits.
 */
const PORTABLE_TUNING: TargetTuning = {
  matmul: { blocks: BLOCKS },
  axis: { ...HOPPER_AXIS, largeInvocations: 0 },
  attention: { ...HOPPER_ATTENTION, largeWorkgroupBytes: 0, blockedWorkgroupBytes: DEFAULT_LIMITS.maxComputeWorkgroupStorageSize },
};

/**
 * Intel Iris Xe (Tiger Lake / Alder Lake, 96 EUs in 6 sub-slices): 96 EUs × 16 FP32 FLOP per
 * clock × 1.35 GHz = 2.07 TFLOP/s; LPDDR4x-4266 on 128 bits, 68.3 GB/s, shared with the CPU.
 * The cost figures take the same fractions of peak as nvidia-hopper's measured ones (80% of
 * the bandwidth, 45% of the FLOPs); the dispatch cost is an estimate, not a measurement.
 */
export const INTEL_XE: Target = {
  name: 'intel-xe',
  summary: 'Intel Iris Xe integrated graphics (96 EUs, shared LPDDR4x): portable kernels, split-K for its 6 sub-slices',
  sources: 'public figures: Intel Iris Xe (Tiger Lake G7) 96 EUs at 1.35 GHz, 68.3 GB/s LPDDR4x-4266',
  match: { vendors: ['intel'] },
  computeUnits: 6,
  cost: { dispatchMicros: 10, bytesPerMicro: 5.5e4, flopsPerMicro: 0.93e6 },
  limits: { ...DEFAULT_LIMITS, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 },
  features: ['subgroups'],
  subgroupSizes: { min: 8, max: 32 },
  tuning: { ...PORTABLE_TUNING, splitK: splitKFor(6) },
};

/**
 * Apple M2 (base, 10 GPU cores): 3.6 TFLOP/s FP32, 100 GB/s unified LPDDR5. Cost figures as
 * for intel-xe (80% of the bandwidth, 45% of the FLOPs, an estimated dispatch cost).
 */
export const APPLE_M: Target = {
  name: 'apple-m',
  summary: 'Apple silicon GPUs (M1–M3 class, 8–10 cores, unified memory): portable kernels, split-K for 10 cores',
  sources: 'public figures: Apple M2 GPU, 10 cores, 3.6 TFLOP/s FP32, 100 GB/s',
  match: { vendors: ['apple'] },
  computeUnits: 10,
  cost: { dispatchMicros: 10, bytesPerMicro: 8e4, flopsPerMicro: 1.6e6 },
  limits: { ...DEFAULT_LIMITS, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 1024 },
  features: ['subgroups'],
  subgroupSizes: { min: 32, max: 32 },
  tuning: { ...PORTABLE_TUNING, splitK: splitKFor(10) },
};

/**
 * Any WebGPU device: the default limits, no feature, no assumption on the number of compute
 * units (so no split-K or stream-K); the cost model takes intel-xe's figures, the weakest
 * class a plan is likely to meet.
 */
export const GENERIC: Target = {
  name: 'generic',
  summary: "any WebGPU device: WebGPU's default limits, no optional feature, no schedule that depends on the GPU's size",
  sources: "WebGPU's default limits; intel-xe's cost figures",
  match: {},
  cost: INTEL_XE.cost,
  limits: DEFAULT_LIMITS,
  features: [],
  tuning: PORTABLE_TUNING,
};

/**
 * Software adapters, the CPU emulating a GPU (Chromium's SwiftShader, Mesa's llvmpipe and
 * lavapipe): there building a pipeline, not running it, dominates a first result. Measured in
 * headless Chromium on SwiftShader (2 shared cores; load = loadPlan of a one-product plan,
 * then a run's median): the tiled kernel of 32×128×10 loads in 1365 ms and runs in 3.7 ms, the
 * direct kernel 71 ms and 9.0 ms; of 32×784×128, 779 ms and 18.5 ms against 25 ms and 105 ms,
 * so only small products (up to 2^16 multiply-adds: a small CNN's convolutions) take it. The
 * small-M kernel is slow to build and to run here (1×64×32000: 449 ms and 4.0 s against 33 ms
 * and 74 ms; 1×576×1536: 593 ms and 219 ms against 17 ms and 30 ms), so products of at most 16
 * rows take the direct kernel whatever their size. Otherwise generic's.
 */
export const SOFTWARE: Target = {
  name: 'software',
  summary: 'software adapters (SwiftShader, llvmpipe, lavapipe): generic with small, quickly built kernels for products',
  sources: 'bench/startup.ts and pipeline build times measured in headless Chromium on SwiftShader',
  match: { vendors: ['google', 'mesa'], architectures: ['swiftshader'], devices: ['swiftshader', 'llvmpipe', 'lavapipe'] },
  cost: GENERIC.cost,
  limits: DEFAULT_LIMITS,
  features: [],
  tuning: { ...PORTABLE_TUNING, matmul: { ...PORTABLE_TUNING.matmul, directMacs: 1 << 16, directRows: 16 } },
};

export const BUILTIN_TARGETS: readonly Target[] = [GENERIC, NVIDIA_HOPPER, INTEL_XE, APPLE_M, SOFTWARE];

/** What `mnc compile` and compileGraph compile for when not told: the plan that runs anywhere. */
export const DEFAULT_TARGETS: readonly Target[] = [GENERIC];

/** The targets named by a comma-separated list ('generic,nvidia-hopper'), in that order. */
export function parseTargets(list: string): Target[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new CompileError('input', `--target needs at least one name (known: ${BUILTIN_TARGETS.map((t) => t.name).join(', ')})`);
  const seen = new Set<string>();
  return names.map((name) => {
    const target = BUILTIN_TARGETS.find((t) => t.name === name);
    if (!target) throw new CompileError('input', `unknown target '${name}' (known: ${BUILTIN_TARGETS.map((t) => t.name).join(', ')})`);
    if (seen.has(name)) throw new CompileError('input', `target '${name}' is named twice`);
    seen.add(name);
    return target;
  });
}

/** A target with some tuning replaced: for tests and benchmarks that sweep one family's knobs. */
export function withTuning(target: Target, tuning: Partial<TargetTuning>, name = `${target.name}+tuned`): Target {
  return { ...target, name, tuning: { ...target.tuning, ...tuning } };
}
