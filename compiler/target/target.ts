// A Target describes a class of GPU a plan is compiled for: how the runtime recognises it,
// the figures the cost model and the schedules read, the WebGPU limits and features its
// kernels may use, and the tuning of each kernel family. It is data, passed explicitly from
// the CLI and compileGraph to every stage that makes a device-dependent choice.
import type { TargetMatch } from '../../schemas/manifest';
import type { TargetTuning } from './tuning';

/** The figures the extraction cost model uses, per target (egraph/cost.ts). */
export interface CostFigures {
  /** µs per dependent dispatch in one compute pass */
  dispatchMicros: number;
  /** bytes per µs a bandwidth-bound kernel moves */
  bytesPerMicro: number;
  /** matrix FLOPs per µs a tiled WGSL product reaches */
  flopsPerMicro: number;
}

/** WebGPU limits a target's kernels may use; the plan asks the device for what its kernels need, never more. */
export interface TargetLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
}

export interface Target {
  /** short and stable: what `--target` and the manifest name it by */
  name: string;
  /** one line on what it is for, for `mnc inspect` */
  summary: string;
  /** where the figures below come from */
  sources: string;
  /** which adapters the runtime gives this target (runtime/targets.ts); empty: any (a fallback) */
  match: TargetMatch;
  /** compute units (SMs, CUs, Xe-cores, GPU cores) that run workgroups at once; absent: unknown, so no schedule depends on it */
  computeUnits?: number;
  cost: CostFigures;
  limits: TargetLimits;
  /** WebGPU features kernel variants may use; each such variant has a portable twin the runtime takes where the feature is missing */
  features: readonly string[];
  /** the subgroup sizes the class has (informational: kernels that use subgroups work with any size) */
  subgroupSizes?: { min: number; max: number };
  tuning: TargetTuning;
}

/** WebGPU's default limits (the spec's, also compatibility mode's for these): what every device offers. */
export const DEFAULT_LIMITS: TargetLimits = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxStorageBuffersPerShaderStage: 8,
};
