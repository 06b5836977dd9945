// The one error type the runtime throws. Every failure (a damaged file, a device that is
// too small, a wrong input) becomes a PlanError with a kind a program can switch on and a
// message a person can act on; nothing below the application prints or exits.

export type PlanErrorKind =
  /** the bytes end before the header says the file ends */
  | 'truncated'
  /** not a .mnplan file (or, from the GGUF reader, not a GGUF file) at all */
  | 'bad-magic'
  /** a .mnplan (or GGUF) of a format version this runtime does not read */
  | 'unsupported-version'
  /** header fields that contradict each other or the file */
  | 'bad-header'
  /** manifest checksum, UTF-8, JSON or structure is wrong */
  | 'bad-manifest'
  /** a section's bytes do not match its SHA-256 */
  | 'corrupt-section'
  /** a section name the manifest does not list */
  | 'missing-section'
  /** the device's limits are below what the plan needs */
  | 'device-limits'
  /** no variant of a kernel runs with the device's features */
  | 'missing-feature'
  /** a shader module or compute pipeline failed to build */
  | 'pipeline'
  /** WebGPU reported a validation error while loading or running */
  | 'validation'
  /** WebGPU ran out of memory while loading or running */
  | 'out-of-memory'
  /** the device was lost (driver reset, destroyed underneath the session) */
  | 'device-lost'
  /** a run or step passed its `timeoutMs`; the session destroyed the device to abandon the work */
  | 'timeout'
  /** fetchPlan could not get the plan (network error, HTTP status) */
  | 'fetch-failed'
  /** no WebGPU adapter or device could be obtained */
  | 'no-device'
  /** run() was called with missing, unknown or wrongly sized inputs, or an unknown entry */
  | 'bad-input'
  /** a weight file's tensor has a type (a GGUF quantization, say) this runtime does not read */
  | 'unsupported-type'
  /** a training step's loss or a gradient was NaN or infinite; the step was not applied */
  | 'non-finite'
  /** the session was used after destroy() */
  | 'destroyed';

export class PlanError extends Error {
  readonly kind: PlanErrorKind;

  constructor(kind: PlanErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PlanError';
    this.kind = kind;
  }
}

/** True for a PlanError (also one from another copy of the runtime, e.g. a second bundle). */
export function isPlanError(value: unknown): value is PlanError {
  return value instanceof PlanError || (value instanceof Error && value.name === 'PlanError' && 'kind' in value);
}
