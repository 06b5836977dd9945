// The .mnplan manifest: the contract between the compiler's bundle writer and the
// runtime's reader. Types only plus the layout constants; both sides import this file,
// neither imports the other. mnplan.schema.json describes the same shape for other tools.

/** First 8 bytes of every bundle. The 0x89 byte catches a text-mode transfer, as PNG's does. */
export const MNPLAN_MAGIC = new Uint8Array([0x89, 0x4d, 0x4e, 0x50, 0x4c, 0x41, 0x4e, 0x0a]); // "\x89MNPLAN\n"
/** 2: plans carry targets (`target`, `otherTargets`); a version-1 plan is recompiled, not read */
export const MNPLAN_FORMAT_VERSION = 2;
/**
 * Fixed header, little-endian; schemas/mnplan-layout.md describes it for other tools:
 *   0  magic[8]   8 u32 formatVersion   12 u32 headerBytes (64)   16 u32 manifestLength
 *  20 u32 dataOffset (manifest end rounded up to the section alignment)
 *  24 u64 fileLength   32 sha256(manifest bytes)[32]
 * The UTF-8 JSON manifest starts at byte 64.
 */
export const MNPLAN_HEADER_BYTES = 64;
/** Every section starts at a multiple of this, so weights can be viewed in place. */
export const MNPLAN_SECTION_ALIGNMENT = 256;

/** Element types: one value per element, what entry inputs and outputs hold. */
export type ElementDType = 'f32' | 'f16' | 'i32' | 'u32' | 'i8';

/** Bytes per element of each element dtype, as buffers and weight slices store them. */
export const DTYPE_BYTES: Record<ElementDType, number> = { f32: 4, f16: 2, i32: 4, u32: 4, i8: 1 };

/**
 * Packed weight formats: ggml's tensor types, stored as GGUF stores them (runtime/ggml-types.ts
 * gives each block's byte layout), `bytes` per block of `elements` consecutive values along the
 * last axis, blocks back to back with no padding. A buffer of a packed dtype holds
 * `elementCount(shape) / elements · bytes` bytes (its GPUBuffer rounded up to 4, as every
 * buffer's); only parameters and constants have one, and only kernels that know the format
 * (compiler/lower/matmul-quantized.ts) read it. One dtype per format rather than one 'gguf'
 * dtype with the type beside it: shape rules, lowering, the memory plan and the runtime all
 * see a value's type as (dtype, shape), and each needs the format to size or read the bytes.
 */
export const PACKED_DTYPES = {
  bf16: { ggml: 'BF16', elements: 1, bytes: 2 },
  q8_0: { ggml: 'Q8_0', elements: 32, bytes: 34 },
  q4_0: { ggml: 'Q4_0', elements: 32, bytes: 18 },
  q4_1: { ggml: 'Q4_1', elements: 32, bytes: 20 },
  q5_0: { ggml: 'Q5_0', elements: 32, bytes: 22 },
  q5_1: { ggml: 'Q5_1', elements: 32, bytes: 24 },
  q4_k: { ggml: 'Q4_K', elements: 256, bytes: 144 },
  q5_k: { ggml: 'Q5_K', elements: 256, bytes: 176 },
  q6_k: { ggml: 'Q6_K', elements: 256, bytes: 210 },
} as const;
export type PackedDType = keyof typeof PACKED_DTYPES;

export type DType = ElementDType | PackedDType;

/** Every dtype a manifest may name; a reader refuses any other. */
export const DTYPES: readonly DType[] = [...(Object.keys(DTYPE_BYTES) as ElementDType[]), ...(Object.keys(PACKED_DTYPES) as PackedDType[])];

export const isPackedDType = (dtype: string): dtype is PackedDType => Object.hasOwn(PACKED_DTYPES, dtype);

/** Bytes that `elements` values of `dtype` take (packed: a whole number of blocks, rounded up otherwise). */
export function dtypeByteLength(dtype: DType, elements: number): number {
  if (!isPackedDType(dtype)) return elements * DTYPE_BYTES[dtype];
  const block = PACKED_DTYPES[dtype];
  return Math.ceil(elements / block.elements) * block.bytes;
}

/**
 * A byte range of the data area, checked by SHA-256 before use. `offset` is from the start
 * of the data area (the header's dataOffset), so the manifest never depends on its own length.
 */
export interface SectionRef {
  name: string;
  offset: number;
  length: number;
  /** lowercase hex */
  sha256: string;
}

/** A range inside a named section (e.g. one parameter's initial values inside "weights"). */
export interface SectionSlice {
  section: string;
  offset: number;
  length: number;
}

export type BufferRole = 'input' | 'output' | 'parameter' | 'constant' | 'state' | 'intermediate';

export interface BufferDesc {
  id: number;
  /** the graph value (or parameter) stored here, for inspect and traces */
  name: string;
  role: BufferRole;
  byteLength: number;
  dtype: DType;
  shape: number[];
  /** initial contents (parameters, constants); absent means zero-filled */
  init?: SectionSlice;
  /**
   * Intermediates only: the value lives at bytes [offset, offset + byteLength rounded up to
   * 4) of arena buffer `index` (manifest.arenas), sharing it with values whose lifetimes do
   * not overlap. Absent: the buffer is a GPUBuffer of its own.
   */
  arena?: { index: number; offset: number };
}

/**
 * The arena buffers of a plan's memory plan. A reader may ignore this (and every buffer's
 * `arena`) and give each buffer its own GPUBuffer: that layout is always valid, only larger.
 */
export interface ArenaLayout {
  /** every arena offset is a multiple of this; the device's minStorageBufferOffsetAlignment must divide it */
  alignment: number;
  /** byte length of each arena buffer (a multiple of 4) */
  byteLengths: number[];
}

export type ShaderTarget = 'wgsl' | 'spirv' | 'msl' | 'hlsl';

export interface KernelVariant {
  /** WebGPU features the variant needs; the runtime takes the first variant the device offers */
  features: string[];
  /** section holding the WGSL the runtime compiles (UTF-8; may carry `enable` directives naga cannot check) */
  wgsl: string;
  /** section names of naga's translations, by target */
  translations: Partial<Record<Exclude<ShaderTarget, 'wgsl'>, string>>;
  /** how the variant was checked at build time */
  validatedBy: 'naga' | 'dawn';
  /**
   * Device limits the variant needs beyond the plan's `requiredLimits` (e.g. more workgroup
   * storage); a device below any of them gets a later variant. Absent: the plan's limits.
   * Every variant of a kernel runs with the dispatches' grid and bindings.
   */
  requiredLimits?: Partial<Record<VariantLimit, number>>;
  /** the variant's @workgroup_size when it differs from the kernel's (informational: its limits are in requiredLimits) */
  workgroupSize?: [number, number, number];
  /**
   * Pipeline-overridable constants the runtime measures on the device and sets when it builds
   * the variant; a runtime that cannot measure one skips the variant. Known: 'I8_MATRIX_UNIT'
   * (what an i8 subgroup-matrix offset or stride counts: 1, bytes, or 4, words).
   */
  deviceConstants?: string[];
}

/** The limits a variant may ask for beyond the plan's. */
export type VariantLimit = 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup';
export const VARIANT_LIMITS: readonly VariantLimit[] = ['maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup'];

export interface BindingDesc {
  binding: number;
  access: 'read' | 'read_write';
}

export interface KernelDesc {
  name: string;
  /** IR ops this kernel implements (more than one once fusion runs) */
  ops: string[];
  entryPoint: string;
  workgroupSize: [number, number, number];
  /** all bindings live in @group(0), in this order */
  bindings: BindingDesc[];
  variants: KernelVariant[];
}

export interface Dispatch {
  /** index into manifest.kernels */
  kernel: number;
  /** buffer ids, one per kernel binding, in binding order */
  buffers: number[];
  workgroups: [number, number, number];
  /** the IR node this dispatch computes, for traces and errors */
  node: string;
}

export interface TensorBinding {
  name: string;
  buffer: number;
  dtype: ElementDType;
  shape: number[];
  /**
   * Integer inputs the plan uses only as indices (class labels of a oneHot, so of a
   * cross-entropy; ids of an embedding): the values it accepts, min to max inclusive. A value outside would be
   * silently wrong (a zero row), so a runtime refuses it. Absent: any value of the dtype.
   */
  range?: { min: number; max: number };
  /**
   * The element type the caller exchanges where it is not `dtype`: an imported model's
   * double, float16 or bfloat16 input or output, computed as f32 inside the plan (its f16
   * and bf16 outputs hold values already rounded to the format). run() also takes a
   * Float64Array (f64) or a Uint16Array of bit patterns (f16, bf16) for such an input;
   * hostValues() turns an output into its Float64Array or bit patterns.
   */
  hostDtype?: HostDType;
}

/** The wider or narrower float types a plan's f32 inputs and outputs exchange with the caller. */
export type HostDType = 'f64' | 'f16' | 'bf16';

export interface EntryPoint {
  inputs: TensorBinding[];
  outputs: TensorBinding[];
  dispatches: Dispatch[];
}

/** One parameter of a training plan, with the optimizer state buffers that belong to it. */
export interface TrainingParameter {
  name: string;
  buffer: number;
  /** frozen parameters are listed (they are exported) but never updated */
  trainable: boolean;
  /** PyTorch's state_dict names: momentum_buffer (SGD), exp_avg and exp_avg_sq (Adam) */
  state: { name: string; buffer: number; slot: string }[];
}

/**
 * How to drive a training plan: `entry` runs forward, backward and the optimizer update;
 * the runtime fills the `hyper` input from its own hyper-parameter values and step count.
 */
export interface TrainingDesc {
  entry: string;
  /** the output of `entry` holding the loss */
  loss: string;
  /**
   * The output of `entry` holding the step check: loss + the sum of every gradient, one
   * value, finite exactly when they all are. When it is NaN or ±Inf the update dispatches
   * left every parameter and optimizer state unchanged (the step was skipped); a runtime
   * reports that rather than counting the step. Absent in plans that do not check.
   */
  check?: string;
  optimizer: 'sgd' | 'adam' | 'adamw';
  hyper: {
    /** the f32 input of `entry` the update kernels read */
    input: string;
    /** its element order; biasCorrection1/2 are 1 - beta1^t and 1 - beta2^t for step t (from 1), oneMinusBeta1/2 are 1 - beta1 and 1 - beta2 */
    fields: string[];
    /** the fields setHyper may change */
    settable: string[];
    defaults: Record<string, number>;
  };
  parameters: TrainingParameter[];
}

/** One optimizer phase, for `mnc inspect`: sizes, why the rules stopped, what fired, the estimated saving. */
export interface OptimizationDesc {
  phase: string;
  nodesBefore: number;
  nodesAfter: number;
  eNodes: number;
  eClasses: number;
  iterations: number;
  stopReason: string;
  rulesFired: Record<string, number>;
  /** the cost model's estimate in µs of the graph before and after */
  costBefore: number;
  costAfter: number;
  /** pointwise kernels made from chains of ops */
  fusedKernels: number;
}

/** Which adapters a target is for, from GPUAdapterInfo (lowercase); no vendors: any adapter (a fallback target). */
export interface TargetMatch {
  vendors?: string[];
  /** `info.architecture` values; with `devices`, either may match; neither: any of the vendors' adapters */
  architectures?: string[];
  /** fragments of `info.device` or `info.description` (Dawn reports no architecture for some GPUs, e.g. Hopper) */
  devices?: string[];
}

/** The GPU class a target's plan is for (compiler/target/). */
export interface TargetDesc {
  name: string;
  summary: string;
  match: TargetMatch;
}

/** Minimum device limits a target's plan needs (checked at load). */
export interface RequiredLimits {
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  /** the largest GPUBuffer the plan creates: an arena or a buffer of its own */
  maxBufferSize?: number;
}

/**
 * One target's plan: its buffers and memory plan, its dispatches (indexing the manifest's
 * shared `kernels`) and the limits they need. The manifest's top level holds the first
 * target's; `otherTargets` the rest.
 */
export interface TargetPlan extends TargetDesc {
  requiredLimits: RequiredLimits;
  buffers: BufferDesc[];
  /** present when intermediates share arena buffers */
  arenas?: ArenaLayout;
  entryPoints: Record<string, EntryPoint>;
  /** present in plans compiled for training */
  training?: TrainingDesc;
}

export interface Manifest {
  format: 'mnplan';
  formatVersion: number;
  generator: { name: string; version: string; naga: string };
  model: { name: string; source?: string };
  /** the GPU class the top-level plan below is for */
  target: TargetDesc;
  requiredLimits: RequiredLimits;
  /**
   * Where the naga translations (SPIR-V, MSL, HLSL) begin in the data area (added within
   * version 2, optional): every section from this offset on is a translation and every other
   * section ends before it, so a WebGPU runtime, which compiles only WGSL, may read the file up
   * to `dataOffset + translationsOffset` and no further. Absent when the plan has no translations.
   */
  translationsOffset?: number;
  sections: SectionRef[];
  buffers: BufferDesc[];
  /** present when intermediates share arena buffers */
  arenas?: ArenaLayout;
  /** every target's kernels, each distinct kernel once */
  kernels: KernelDesc[];
  entryPoints: Record<string, EntryPoint>;
  /** present in plans compiled for training */
  training?: TrainingDesc;
  /** the plans for the other targets the plan was compiled for, in the order given; the runtime picks one at load (runtime/targets.ts) */
  otherTargets?: TargetPlan[];
  /** what the optimizer did, phase by phase (informational; a runtime ignores it) */
  optimization?: OptimizationDesc[];
}
