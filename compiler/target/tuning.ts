// What lowering may tune per GPU class: the knobs of each kernel family's choices, as plain
// data. A Target (target.ts) carries one value of each; the lowering files read them and
// hold no tuning of their own, so a new GPU class is new data, not new branches.

/** Knobs of the axis kernels' layout choice (lower/axis.ts); bench/bandwidth.ts sweeps them. */
export interface AxisTuning {
  /** most row values (floats) one invocation keeps in registers; longer rows stream from memory per pass */
  maxRegisterFloats: number;
  /** units (vec4s or scalars) each invocation should own in a row; teams are sized from it */
  unitsPerInvocation: number;
  /** bytes of neighbouring rows one load instruction of interleaved teams covers (sets slots per workgroup) */
  interleavedBytes: number;
  /** independent accumulators, hence loads in flight, per invocation when a row streams */
  streamAccumulators: number;
  /**
   * most workgroups of a program that streams its rows more than once (each then takes rows
   * in turn), meant to keep the rows in flight in the L2 cache between passes; 0: one
   * workgroup per row group. Off by default: its one H200 measurement was taken while the
   * GPU was shared and is inconclusive (bench/README.md, bandwidth).
   */
  streamGroups: number;
  /**
   * invocations per workgroup of the long-row variant, offered where the portable kernel
   * streams a row more than once and this many invocations hold it in registers; 0: none
   */
  largeInvocations: number;
  /** most row values (floats) one invocation of that variant keeps in registers */
  largeRegisterFloats: number;
  /** a single reduction (sum, mean, max) whose kernel would run fewer workgroups than this is split in two ... */
  splitBelowWorkgroups: number;
  /** ... when its operand has at least this many elements (below, a second dispatch costs more than it saves) */
  splitMinElements: number;
  /** the first step of a split gets the fewest chunks that give it this many workgroups */
  splitTargetWorkgroups: number;
  /** shortest chunk (elements along the axis) a split makes */
  splitMinChunk: number;
}

/**
 * Knobs of the attention kernels' tiling choice (lower/attention*.ts); bench/attention.ts sweeps them. The
 * portable kernel always fits WebGPU's portable limits; a 'large' variant (more workgroup
 * storage, or invocations) is made where largeWorkgroupBytes lets the tiling differ.
 */
export interface AttentionTuning {
  /** query rows below which the row kernel is faster: it spreads one row's keys over a whole workgroup (decoding) */
  minTiledTq: number;
  /**
   * vec4s of q, and of the output, an invocation holds (with the scores about 160 registers
   * at 16); lanes per row are the fewest of 1, 2, 4 that keep both within it (d = 64: 16 → 1 lane, 8 → 2).
   * 8 measured fastest on an H200 (bench/attention.ts: 1.24× the 1-lane layout over its five
   * shapes, geometric mean; 1.36× at 9 heads × 2048 keys): two lanes per row halve the registers.
   */
  maxLaneVec4: number;
  /** rows per workgroup: the smallest power of two from minRows covering Tq, at most maxRows (fewer where the storage does not fit) */
  minRows: number;
  maxRows: number;
  /** keys one key group scores per tile: the largest of maxTileKeys, maxTileKeys / 2, … 4 that fits */
  maxTileKeys: number;
  /** ... but at least this many once the keys are split among key groups (fewer groups are tried first) */
  minSplitTileKeys: number;
  /**
   * key groups: where fewer than targetInvocations would run with one group per row, from
   * minGroups doubled up to maxGroups while each keeps minKeysPerGroup keys; else minGroups
   */
  minGroups: number;
  maxGroups: number;
  /** invocations wanted at once to fill a large GPU (an H200 keeps about 50K of these resident) */
  targetInvocations: number;
  minKeysPerGroup: number;
  /**
   * workgroup storage bytes of a 'large' variant (same rows per workgroup, hence the same
   * grid, as the portable kernel; chosen first, the portable kernel then keeps its rows);
   * 0 or at most the portable 16 KiB: no variant
   */
  largeWorkgroupBytes: number;
  /** invocations per workgroup that variant may use */
  largeInvocations: number;
  /**
   * The register-blocked kernel (attention-blocked.ts), for at least minBlockedTq query rows:
   * blockedRows rows per workgroup (0: never) and the most keys per tile, up to blockedKeys,
   * that fit blockedWorkgroupBytes (a variant; its portable fallback is the tiled kernel with
   * the same rows) or the portable limits (then it is the portable kernel).
   */
  blockedRows: number;
  blockedKeys: number;
  /** load the next key tile into registers during each tile's arithmetic */
  blockedPrefetch: boolean;
  minBlockedTq: number;
  blockedWorkgroupBytes: number;
}

/** Split-K's knobs (lower/split-k.ts); bench/matmul.ts sweeps them. */
export interface SplitKTuning {
  /** split a product whose 32×32 tiles number fewer than this (264: two per SM of an H200) ... */
  belowTiles: number;
  /** ... and whose K is at least this long ... */
  minK: number;
  /** ... into the fewest slices that give at least this many tiles in all (or the most slices allowed) */
  targetTiles: number;
  /** shortest slice of K; a multiple of 16 (the tiled kernel's slice depth) */
  minChunk: number;
  maxSplits: number;
}

/** Stream-K's knobs (lower/stream-k.ts); tests lower them to reach small shapes. */
export interface StreamKTuning {
  /** workgroups that run at once: the SMs of the GPU the plan is for (one 128×256 workgroup per SM) */
  units: number;
  /** share the last wave's tiles when they fill at most this fraction of it */
  maxLastWave: number;
  /** the same for products that read an operand transposed */
  maxLastWaveTransposed: number;
  /** ... and the K iterations that wave leaves idle, per unit, are at least this many */
  minIdleK: number;
  /** the fewest K iterations per shared run, a multiple of 16 */
  minUnitK: number;
}

export interface TileConfig {
  /** block of C per workgroup */
  bm: number;
  bn: number;
  /** depth of each staged slice of A and B */
  bk: number;
  /** outputs per invocation along M and N (multiples of 4) */
  tm: number;
  tn: number;
  /** workgroup buffers per operand: 2 overlaps storing the next slice with using this one */
  stages: 1 | 2;
  /** one stage: false loads each slice straight into workgroup memory instead of into registers one slice ahead (fewer registers) */
  prefetch?: boolean;
  /** read the next k's A and B vectors from workgroup memory before the current k's products */
  pipelined?: boolean;
  // The options below change no value, only the code's shape, and with it how Nvidia's
  // compiler allocates registers for the loop; see the nvidia-hopper target (targets.ts) for what they bought.
  /** prefetched slices: the step of K within a slice before which the next slice's global reads are issued (default 0, before the first) */
  readAhead?: number;
  /** pipelined: the next step's workgroup-memory reads go one every this many products of this step instead of all before them */
  readSpacing?: number;
  /** two stages: the step of K within a slice before which the next slice goes into the other buffer (default: after the last) */
  storeStep?: number;
  /** the barrier after a slice's products opens the next iteration rather than closing this one (one prefetched stage) */
  barrierFirst?: boolean;
  /** K-contiguous operands (A plain, B transposed) staged with a padded row per K and each invocation's four values rotated: their scalar stores hit 32 distinct banks instead of 8 */
  swizzledStores?: boolean;
  /** invocations along N in each 32-invocation block of the invocation grid (default 8: 8×4 blocks) */
  blockColumns?: number;
}

/** The tile shapes the tiled product's choices are made of. */
export const TILINGS = {
  t128x256x16: { bm: 128, bn: 256, bk: 16, tm: 8, tn: 16, stages: 1 },
  t128x256x8: { bm: 128, bn: 256, bk: 8, tm: 8, tn: 16, stages: 1 },
  t128x128x16: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1 },
  t64x128x16: { bm: 64, bn: 128, bk: 16, tm: 8, tn: 8, stages: 1 },
  t64x64x16: { bm: 64, bn: 64, bk: 16, tm: 8, tn: 8, stages: 1 },
  t32x64x16: { bm: 32, bn: 64, bk: 16, tm: 4, tn: 4, stages: 1 },
  t32x32x16: { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4, stages: 1 },
} satisfies Record<string, TileConfig>;

/** How products pick their tiling (lower/matmul-tiled.ts). */
export interface MatmulTuning {
  /**
   * The tiled kernel's blocks, largest first, each with the fewest workgroups it must give
   * to be chosen (the last, with 0, always is): larger blocks reuse more of each load, smaller
   * ones keep more of the GPU busy.
   */
  blocks: readonly { tiling: TileConfig; fewestWorkgroups: number }[];
  /**
   * 128×256 blocks for products whose blocks fill whole waves of `units` workgroups (one per
   * compute unit), with the code shape measured per operand layout and epilogue; absent: never.
   */
  waveBlocks?: {
    units: number;
    /** keyed 'A·B', 'Aᵀ·B', …, with ' epilogue' and ', stream-K' suffixes: a variant beyond the portable limits (large) and the portable module */
    tilings: Readonly<Record<string, { large?: TileConfig; portable: TileConfig }>>;
  };
  /**
   * Products of at most this many multiply-adds (M·N·K·batches) get the direct kernel
   * (lower/matmul-direct.ts: one invocation per output, a plain loop over K) instead of the
   * small-M or tiled one; absent: never. For devices where building a pipeline costs more than
   * running it (software adapters).
   */
  directMacs?: number;
  /** Products of at most this many rows M get the direct kernel whatever their size; absent: never. */
  directRows?: number;
}

/** The quantized matrix-vector kernel's knobs (lower/matmul-quantized.ts); bench/quantized-matvec.ts compares them. */
export interface QuantizedMatvecTuning {
  /**
   * 'units': each invocation decodes 32 values at a time (a whole 32-value block, or an
   * eighth of a K super-block) with word-wide bit operations; 'chunks': the first kernel,
   * four values per read with the block's fields re-read for each, kept to compare against;
   * 'dot4': x rounded to int8 per 32 values in workgroup memory, the units multiplied by packed
   * 4x8-bit integer dot products (the integer formats; f16/bf16 and what does not fit stay on
   * 'units'). Its error against x itself is x's rounding: at most Σ|w|·scale/2.
   */
  kernel: 'units' | 'chunks' | 'dot4';
  /** invocations along a row, on neighbouring units; the other 32 / lanesPerRow groups of 32 invocations take other rows (f16 and bf16: 4 times as many, capped at 32) */
  lanesPerRow: number;
  /** rows of w each invocation takes: every value of x it reads serves them all */
  rowsPerTeam: number;
  /** 32-value steps each invocation loads before it decodes any (loads in flight; f16 and bf16 take 4 times as many 4-value steps) */
  stepsInFlight: number;
}

/** What a target without measurements of its own gets. */
export const QUANTIZED_MATVEC_DEFAULT: QuantizedMatvecTuning = { kernel: 'units', lanesPerRow: 8, rowsPerTeam: 4, stepsInFlight: 1 };

/** Every knob lowering reads, per kernel family; a schedule that is absent is never used. */
export interface TargetTuning {
  matmul: MatmulTuning;
  splitK?: SplitKTuning;
  streamK?: StreamKTuning;
  axis: AxisTuning;
  attention: AttentionTuning;
  /** absent: QUANTIZED_MATVEC_DEFAULT */
  quantizedMatvec?: QuantizedMatvecTuning;
}
