// The op table: every IR op defined once — operands, shape rule, CPU reference semantics,
// gradient, the lowering hook that tells compiler/lower which kernel archetype implements
// it, and what the optimizer reads: its e-graph constructor (`term`), its FLOPs for the
// cost model (`flops`) and, for an activation, its names as a matmul epilogue
// (`epilogueActivations`).
//
// A new op, fusion included, touches: this table; a builder method in graph.ts; a lowering
// file in compiler/lower only if no archetype here fits it; and a rule in
// compiler/egraph/rules/*.egg only for a fusion other than a product's epilogue activation
// (terms.ts generates the `Op` datatype and the "matmul+<activation>" rules from this table).
//
// The CPU reference is the oracle for every GPU test, so it is written independently of
// the WGSL: plain loops, float64 accumulation, a precise erf.
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../runtime/f16';
import type { Graph, Tensor } from './graph';
import { broadcastShapes, broadcastStrides, normalizeAxis, sameShape, stridesOf } from './shape';
import { elementCount, formatShape, isWeightDType, type DType, type Shape, type TensorType } from './types';

/** A shape rule's refusal; the builder adds the op name and the user's source location. */
export class ShapeRuleError extends Error {}

/** The CPU reference computes and stores in float64, so it is a sharper oracle than f32 kernels. */
export type RefArray = Float64Array;

/** A tensor as the CPU reference sees it. */
export interface RefTensor {
  readonly data: RefArray;
  readonly shape: Shape;
}

/** How one operand of a pointwise kernel is read at the output's coordinates. */
export interface OperandView {
  /** element stride per output axis (0 along broadcast axes) */
  strides: number[];
  offset: number;
}

/**
 * A concat-style operand: read only where the output coordinate along `axis` is in
 * [start, end), at that coordinate minus `start`; `strides` are the operand's own.
 */
export interface PiecewiseView {
  strides: number[];
  axis: number;
  start: number;
  end: number;
}

/** One pass over a row, reducing a term of each element; `finish` turns the total into the named value. */
export interface AxisReduction {
  name: string;
  combine: 'add' | 'max';
  term: (x: string) => string;
  finish?: (total: string, n: number) => string;
  /**
   * the term is (x - m)², m the earlier reduction named here: an 'add' of x finished as the
   * mean (÷ n). Where each invocation holds the same number of a row's values, the kernel
   * computes both in one tree (each invocation's mean and squared deviations, merged pairwise)
   */
  deviationsFrom?: string;
}

/**
 * A computation along one axis: reductions in order (each may use the earlier ones' names),
 * then either one value per row or one value per element. Element outputs may read extra
 * operands indexed by the position along the axis (a norm's gamma and beta).
 */
export interface AxisProgram {
  axis: number;
  reductions: AxisReduction[];
  output: { per: 'row'; expr: string } | { per: 'element'; expr: (x: string, extra: string[]) => string };
}

/**
 * Straight-line pointwise code: one `let` per step, in order (each may use the earlier
 * names), then the result. `ops` names the op of each step, for kernel headers and `mnc inspect`.
 */
export interface PointwiseChain {
  lets: { name: string; expr: string; op: string }[];
  result: string;
  helpers: string[];
  ops: string[];
}

/**
 * How a matmul kernel reads A and B and finishes each output value. Operands after A and B
 * are read at the output element through views over the output's axes (a bias: strides
 * [0, .., 0, 1]); the epilogue maps the accumulated product and those values to the result.
 */
export interface MatmulForm {
  /** read the operand with its last two axes swapped (it is stored [.., K, M] or [.., N, K]) */
  transposeA: boolean;
  transposeB: boolean;
  extraViews: OperandView[];
  epilogue: (product: string, extra: string[]) => PointwiseChain;
  /** A read through RMSNorm (operand `operand` its weight [K]), each row's 1/rms computed by the kernel (at most NORMED_PRODUCT_ROWS rows) */
  norm?: { eps: number; operand: number };
  /**
   * a rope of the epilogue's value, last: heads of `width` features, the first `rotaryDim`
   * rotated as pairs (j, j + rotaryDim/2) by angle position · INV_FREQ[j] (`helpers` define
   * INV_FREQ and cos_sin), negated with `inverse`; the positions are operand `operand`, read
   * at an output element through `view` (the same for every column of a row)
   */
  rope?: { operand: number; view: OperandView; width: number; rotaryDim: number; inverse: boolean; helpers: string[] };
  /**
   * the value is stored into a KV cache rather than a result of its own: the node's last
   * operand (the cache) is bound as the output, and `cache_index(f)` (the WGSL in `helper`)
   * gives the cache element of the product's flat element f, or CACHE_DROPPED for a row past
   * the cache's end; `product` is the product's shape (the node's is the cache's)
   */
  cache?: { product: Shape; helper: string };
  /** the ops the kernel implements (the product's and the epilogue's), for headers and `mnc inspect` */
  ops: string[];
}


export type Lowering<A> =
  /** a leaf (input, parameter, constant): a buffer, no kernel */
  | { archetype: 'none' }
  /** the output shares its operand's buffer (row-major reshape) */
  | { archetype: 'alias' }
  /** out[i] = expr(operands read through their views); default views broadcast */
  | {
      archetype: 'pointwise';
      expr: (x: string[], attrs: A) => string;
      /** WGSL helper functions the expression calls */
      helpers?: string[];
      views?: (inputs: readonly TensorType[], attrs: A, out: TensorType) => OperandView[];
    }
  /** out[i] = the one operand whose range holds i (concat) */
  | { archetype: 'piecewise'; views: (inputs: readonly TensorType[], attrs: A, out: TensorType) => PiecewiseView[] }
  /** reductions and row-wise normalisations */
  | { archetype: 'axis'; program: (inputs: readonly TensorType[], attrs: A) => AxisProgram }
  /**
   * several pointwise ops in one kernel (fusion's result): operands read once per element
   * through broadcast views, then the chain's `let`s in order; the last one is stored
   */
  | { archetype: 'pointwiseChain'; chain: (x: string[], attrs: A) => PointwiseChain }
  /**
   * batched matrix product; `form` adds transposed operand reads and an epilogue (default: plain
   * A·B); a B held packed (a weight dtype: ggml blocks, f16, bf16) is dequantized as it is read
   * (lower/matmul-quantized.ts)
   */
  | { archetype: 'matmul'; form?: (inputs: readonly TensorType[], attrs: A, out: TensorType) => MatmulForm }
  /** [M, K] i8 · [K, N] i8 → i32: packed bytes, with a tensor-core (subgroup-matrix) variant */
  | { archetype: 'matmulInt8' }
  /** softmax(q·kᵀ·scale + mask)·v in one kernel: a workgroup per query row, keys in tiles with an online softmax */
  | { archetype: 'attention' }
  /**
   * a convolution or one of its gradients as an implicit product (lower/conv.ts): the tiled
   * matmul kernel reading its operands through the window's addresses, one layer per (image, group)
   */
  | { archetype: 'convolution'; role: ConvRole }
  /** pooling and its gradients (lower/pool.ts): one invocation per result element, looping over its window's taps */
  | { archetype: 'window'; role: PoolRole }
  /**
   * one invocation per output element `i` (u32): WGSL statements that read the operands
   * (in0, in1, …) at addresses they compute and assign out[i] (a gather's row, rope's
   * partner element): what a broadcast view cannot say, because the address depends on a
   * value read (an index) or is not affine in the coordinates
   */
  | { archetype: 'indexed'; kernel: (inputs: readonly TensorType[], attrs: A, out: TensorType) => IndexedKernel }
  /**
   * rows of operand 0 added into the result's rows that the integer operand 1 names
   * (embeddingBackward), deterministically and without float atomics: lower/scatter-add.ts
   * schedules it as two dispatches
   */
  | { archetype: 'scatterAdd' }
  /**
   * an in-place update (optimizer step): per element, WGSL statements that read and assign
   * the operands (`x[k]` are lvalues; the last operand is the hyper-parameter vector, read
   * through `hyper(field)`); the op's `writes` operands are bound read_write
   */
  | { archetype: 'update'; body: (x: string[], hyper: (field: HyperField) => string, attrs: A) => string }
  /**
   * rows of operand 1 written in place into operand 0 from the row a run-time offset (operand
   * 2) names (a KV cache's append, lower/row-write.ts): one invocation per element written
   */
  | { archetype: 'rowWrite' };

/** An indexed kernel's code: statements run for output element `i`, the WGSL functions they call, a line for its header. */
export interface IndexedKernel {
  statements: string[];
  helpers?: string[];
  summary: string;
}

/** What a gradient rule sees: the forward node's operands and result, and dL/d(result). */
export interface GradContext<A> {
  /** the graph being extended; rules record backward nodes with its builder methods */
  g: Graph;
  inputs: readonly Tensor[];
  output: Tensor;
  dy: Tensor;
  attrs: A;
}

/** A primitive argument of an e-graph constructor (egglog's String, i64, f64, bool). */
export type TermValue = string | number | boolean;

/**
 * How the e-graph writes an op whose rules match or build it (compiler/egraph/terms.ts
 * generates the `Op` datatype from these): a constructor of its own, the operands first as
 * `Op` arguments, then the attributes as primitive ones. Ops without a form go in as a
 * generic `(Node "<op and attributes as JSON>" args)`.
 */
export interface TermForm<A> {
  /** the constructor's name in the `Op` datatype (`Relu`, `FusedMatmul`) */
  ctor: string;
  /** the primitive sorts of the attribute arguments, after the operands */
  sorts: readonly string[];
  encode(attrs: A, operands: readonly TensorType[]): TermValue[];
  /** the attributes back from the primitive arguments; the op's shape rule checks what rules made of them */
  decode(values: readonly TermValue[]): Readonly<Record<string, unknown>>;
  /**
   * operands that may be absent (fusedMatmul's bias and residual): after the `required`
   * operands, one `Op` argument for each boolean attribute in `flags`, `(None)` where it is false
   */
  optionalOperands?: {
    required: number;
    flags: readonly (keyof A & string)[];
    /** the flags of absent operands are left out of the attributes, not set false (attention's keyCount, which the builder records only where given) */
    omitAbsent?: boolean;
  };
}

/**
 * An activation a matrix product applies as it stores each value (fusedMatmul's
 * `activation`, one name per attribute variant of the op). terms.ts generates the rule that
 * folds the op into a product ("matmul+<rule>"); the epilogue runs the op's own lowering.
 */
export interface EpilogueActivation<A, Name extends string = string> {
  /** the value of fusedMatmul's `activation` attribute */
  name: Name;
  /** the op's attributes in this variant (gelu's `approximate`); default none */
  attrs?: A;
  /** the rule's name after "matmul+" (default: `name`) */
  rule?: string;
}

/** An op's definition; `Activation` names the epilogue activations it provides (none by default). */
export interface OpDef<A, Activation extends string = never> {
  /** operand count, or 'variadic' (at least one) */
  arity: number | 'variadic';
  /** one line for `mnc inspect` and the docs */
  summary: string;
  infer(inputs: readonly TensorType[], attrs: A): TensorType;
  /**
   * The CPU reference. Ops with `writes` (optimizer updates) change those operands' arrays
   * in place and return operand 0's array; every other op returns a fresh array.
   */
  evaluate(args: readonly RefTensor[], attrs: A, out: TensorType): RefArray;
  lowering: Lowering<A>;
  /**
   * Reverse mode: dL/d(operand) for each operand, or undefined where no gradient flows
   * (integer operands, stopGradient, piecewise-constant ops). Absent: the op is not
   * differentiable, and autodiff refuses a loss that depends on it through a parameter.
   */
  grad?: (ctx: GradContext<A>) => (Tensor | undefined)[];
  /** operands the op writes in place (optimizer state); the result is operand 0, updated */
  writes?: readonly number[];
  /**
   * where true, the result is the last operand updated in place (a KV cache): its kernel binds
   * that operand's buffer as its output rather than reading it (fusedMatmul writing a cache)
   */
  storesIntoLast?: (attrs: A) => boolean;
  /** its own constructor in the e-graph, for ops the rules in compiler/egraph/rules match or build */
  term?: TermForm<A>;
  /** the arithmetic of one application, for the cost model (compiler/egraph/cost.ts); default one per output element */
  flops?: (operands: readonly TensorType[], attrs: A, out: TensorType) => number;
  /** the activations of a product's epilogue this op provides (see EpilogueActivation) */
  epilogueActivations?: readonly EpilogueActivation<A, Activation>[];
}

// ---------------------------------------------------------------------------------------
// Attribute types

export type Init =
  | 'zeros'
  | 'ones'
  | 'glorot'
  | 'he'
  | { uniform: [number, number] }
  | { normal: number }
  | Float32Array
  | readonly number[]
  /** a packed parameter's stored bytes (Graph.packedParameter) */
  | Uint8Array;

export interface LeafAttrs {
  shape: Shape;
  dtype: DType;
}
export interface ParameterAttrs extends LeafAttrs {
  init: Init;
  trainable: boolean;
}
export interface ConstantAttrs extends LeafAttrs {
  /** an Int32Array for an i32 constant */
  values: Float32Array | Int32Array;
}
export interface GeluAttrs {
  approximate: 'none' | 'tanh';
}
export interface AxisAttrs {
  axis: number;
  keepDims: boolean;
}
export interface NormAttrs {
  eps: number;
}
export interface ReshapeAttrs {
  shape: Shape;
}
export interface TransposeAttrs {
  perm: readonly number[];
}
export interface ConcatAttrs {
  axis: number;
}
export interface BroadcastAttrs {
  shape: Shape;
}
export interface SliceAttrs {
  axis: number;
  start: number;
  end: number;
}
export interface OneHotAttrs {
  classes: number;
}
export interface EmbeddingAttrs {
  /**
   * ids in [-rows, 0) count from the end (numpy's and ONNX Gather's negative indices);
   * otherwise they are out of range. Out-of-range ids give zero rows and receive no gradient.
   */
  fromEnd: boolean;
}
export interface EmbeddingBackwardAttrs extends EmbeddingAttrs {
  /** the table's first axis: the result is [rows, ..row] */
  rows: number;
}
/**
 * Llama 3's frequency scaling (HF rope_type "llama3"): wavelengths above
 * originalMaxPositions / lowFreqFactor are slowed by `factor`, those below
 * originalMaxPositions / highFreqFactor kept, those between interpolated smoothly.
 */
export interface Llama3RopeScaling {
  kind: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}
export interface RopeAttrs {
  /** the base of the frequencies: inv_freq[k] = theta^(-2k / rotaryDim) (HF's rope_theta) */
  theta: number;
  /** the leading features rotated (even, at most the last axis); the rest pass through (HF's partial_rotary_factor · head_dim) */
  rotaryDim: number;
  /** rotate by minus the angle: the inverse (and transpose) of the rotation, so rope's gradient */
  inverse: boolean;
  scaling?: Llama3RopeScaling;
}
export interface AttentionAttrs {
  /** multiplies q·kᵀ before the mask is added (usually 1/√d); applied as an f32 value */
  scale: number;
  /**
   * query i also sees no key j > i + Tk - Tq (causal, aligned at the last query and key, so a
   * query appended after Tk - 1 cached keys sees them all); kernels skip those keys' tiles
   */
  causal?: boolean;
  /**
   * operand 4 is a run-time key count per batch matrix (f32 holding an integer, i32 or u32,
   * broadcast to the batch axes; a decode step's position + 1): its queries see keys 0 .. n-1
   * only, n clamped to [0, Tk], and a matrix with n = 0 gives zeros. Kernels loop over those
   * keys alone (a decode at row 128 of a 2048-row cache reads 129); the result is the masked
   * form's, -1e9 past n, where any key is seen. Absent where the builder records none.
   */
  keyCount?: boolean;
}
export interface CastAttrs {
  to: 'f32' | 'i32';
}
export interface RoundFloatAttrs {
  /** the narrower float format whose values the result takes */
  format: 'f16' | 'bf16';
}
export interface ModAttrs {
  /** Python's % (the remainder takes b's sign) rather than C's fmod (a's sign) */
  floored: boolean;
}
export interface AdamAttrs {
  /** AdamW: weight decay applied to the parameter, not added to the gradient */
  decoupled: boolean;
}
type NoAttrs = Record<string, never>;
/** matmulQuantized: how the packed weight w is laid out against the product. */
export interface MatmulQuantizedAttrs {
  /**
   * true: w is [N, K] and y = x · dequant(w)ᵀ, a linear layer as GGUF stores it (each output's
   * K weights contiguous, in blocks); false: w is [K, N] and y = x · dequant(w) (the input
   * gradient of the former)
   */
  transposeB: boolean;
}
/** A 2-D convolution's window over an NCHW input; the builder normalises the user's shorthands to these. */
export interface Conv2dAttrs {
  /** [along H, along W] */
  stride: readonly [number, number];
  /** zeros added [top, left, bottom, right] */
  padding: readonly [number, number, number, number];
  /** spacing of the kernel's taps [along H, along W] */
  dilation: readonly [number, number];
  /** channels split into this many independent convolutions (C / groups inputs, O / groups outputs each) */
  groups: number;
}
/**
 * conv2d with an epilogue on each value as it is stored: × scale, + shift (each [O, 1, 1],
 * per output channel: a bias, an inference batch norm), an activation, + residual.
 */
export interface FusedConv2dAttrs extends Conv2dAttrs {
  scale: boolean;
  shift: boolean;
  /** 'none' or an epilogue activation of the table (MATMUL_ACTIVATIONS) */
  activation: string;
  residual: boolean;
}
/** A pooling window over an NCHW input: each channel alone, as a depthwise convolution's window. */
export interface Pool2dAttrs extends Omit<Conv2dAttrs, 'groups'> {
  /** the window's [KH, KW] */
  kernel: readonly [number, number];
}
export interface AvgPool2dAttrs extends Pool2dAttrs {
  /** divide by KH·KW everywhere (PyTorch's default), or by the taps inside the input (ONNX's default) */
  countIncludePad: boolean;
}
/** A pooling gradient: the forward input's [H, W]. */
export type PoolBackwardAttrs<A extends Pool2dAttrs> = A & { inputSize: readonly [number, number] };
/** The input gradient (transposed convolution): the forward input's [H, W], which stride alone leaves ambiguous. */
export interface Conv2dBackwardInputAttrs extends Conv2dAttrs {
  inputSize: readonly [number, number];
}
/** The weight gradient: the kernel's [KH, KW]. */
export interface Conv2dBackwardWeightAttrs extends Conv2dAttrs {
  kernelSize: readonly [number, number];
}

/** An argument of a fused instruction: a fused op's operand, an earlier instruction's value, or a number. */
export type FusedArg = { operand: number } | { value: number } | { scalar: number };
/** One step of a fused pointwise program: a pointwise op of this table applied to its arguments. */
export interface FusedInstruction {
  op: OpName;
  args: readonly FusedArg[];
  /** the op's own attributes (gelu's `approximate`); default none */
  attrs?: Readonly<Record<string, unknown>>;
}
export interface FusedPointwiseAttrs {
  /** straight-line code over the operands; the last instruction's value is the result */
  program: readonly FusedInstruction[];
}
export interface FusedMatmulAttrs {
  /** A is stored [.., K, M] and read transposed */
  transposeA: boolean;
  /** B is stored [.., N, K] and read transposed */
  transposeB: boolean;
  /**
   * 'none' or an epilogue activation of the table (MATMUL_ACTIVATIONS), checked by the shape
   * rule; a string here, as the table's type cannot depend on itself (the builder's option
   * is MatmulActivation)
   */
  activation: string;
  /** operand 2 is a bias [N] added before the activation */
  bias: boolean;
  /** the operand after the bias (the result's shape) gates the value after the activation: swiglu(gate, value) = silu(gate)·value */
  gate: boolean;
  /** the operand after the gate (broadcastable to the result) is added last */
  residual: boolean;
  /**
   * A is read through RMSNorm with the last operand as its weight [K] and `eps`: the product
   * of rmsNorm(a)·op(b), each row's 1/rms computed by the kernel itself (at most
   * NORMED_PRODUCT_ROWS rows a matrix, A not transposed)
   */
  norm: boolean;
  /** the RMSNorm's epsilon (0 without `norm`) */
  eps: number;
  /**
   * the epilogue's value is rotated by `rotation` (a rope, last) at the positions operand,
   * which comes after the residual (before the norm's weight)
   */
  rope: boolean;
  /** with `rope`: rope's attributes and the shape it sees the product in */
  rotation?: FusedRotation;
  /**
   * `offsets` and `cache` (both or neither): the value, viewed as `rows`, is written into the
   * cache (the last operand, a state buffer, updated in place) at the offsets (the operand
   * before it), as cacheWrite(cache, reshape(value, rows), offsets) does; the result is the
   * updated cache. After the norm's weight.
   */
  offsets: boolean;
  cache: boolean;
  /** with `cache`: the product's value as cacheWrite's rows, [.., T, d] (or [T, d] with one offset per row) */
  rows?: Shape;
}

/**
 * The most rows a product with a fused RMSNorm takes: the small-M kernel's, which computes its
 * rows' norms in a pass of its own. (The tiled kernel could scale B by the weight and sum A's
 * squares from its tiles, but measured on an H100 that made SmolLM2's 128-row gate product 7 µs
 * slower, where one norm kernel of 3.6 µs serves three products.)
 */
export const NORMED_PRODUCT_ROWS = 16;

/** Where a fusedMatmul's optional operands sit: after a and b, bias, gate, residual, positions, norm weight, offsets, cache (those present). */
export function fusedOperandIndex(attrs: Pick<FusedMatmulAttrs, 'bias' | 'gate' | 'residual' | 'rope' | 'norm' | 'offsets'>, operand: 'positions' | 'norm' | 'offsets' | 'cache'): number {
  const order = ['bias', 'gate', 'residual', 'rope', 'norm', 'offsets'] as const;
  const before = { positions: 3, norm: 4, offsets: 5, cache: 6 }[operand];
  return 2 + order.slice(0, before).filter((flag) => attrs[flag]).length;
}

/**
 * A rope in a product's epilogue: rope's attributes, and `shape`, the product's value as rope
 * sees it: [.., M, N] viewed as [.., M, N/d, d], heads of d features (a reshape of the last axis).
 */
export interface FusedRotation extends RopeAttrs {
  shape: Shape;
}




/**
 * The optimizer's run-time hyper-parameters, in the order of the f32 vector the update
 * kernels read. The runtime fills the bias corrections (1 - beta^t) from its step count, and
 * 1 - beta itself: computed in f32 from f32(0.999), 1 - beta2 is off by 1.3e-5 relative,
 * which biases the second moment (PyTorch rounds the exact 1 - beta2 once).
 */
export const HYPER_FIELDS = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'momentum', 'biasCorrection1', 'biasCorrection2', 'oneMinusBeta1', 'oneMinusBeta2'] as const;
export type HyperField = (typeof HYPER_FIELDS)[number];
export const hyperIndex = (field: HyperField): number => HYPER_FIELDS.indexOf(field);

// ---------------------------------------------------------------------------------------
// WGSL text helpers

/** A WGSL f32 literal for a finite number (WGSL has no NaN or infinity literals). */
export function wgslFloat(v: number): string {
  if (!Number.isFinite(v)) throw new ShapeRuleError(`constant ${v} cannot be written as a WGSL f32 literal`);
  if (Object.is(v, -0)) return '-0.0';
  const s = String(Math.fround(v) === v ? v : Math.fround(v));
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

// erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), enough for f32 GELU.
const WGSL_ERF = `fn mn_erf(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
  return select(-y, y, x >= 0.0);
}`;

// f32 to the nearest binary16 value as f32, ties to even: below 2^-14 f16's subnormal steps
// of 2^-24 (WGSL's round ties to even), from 65520 on ±inf, else the mantissa cut to 10 bits.
const WGSL_ROUND_F16 = `fn mn_round_f16(x: f32) -> f32 {
  let u = bitcast<u32>(x);
  let a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {
    return x;
  }
  if (a >= 0x477ff000u) {
    return bitcast<f32>((u & 0x80000000u) | 0x7f800000u);
  }
  if (a < 0x38800000u) {
    return round(x * 16777216.0) / 16777216.0;
  }
  return bitcast<f32>((u + 0xfffu + ((u >> 13u) & 1u)) & 0xffffe000u);
}`;

// f32 to the nearest bfloat16 value as f32 (the upper 16 bits, ties to even; NaN kept).
const WGSL_ROUND_BF16 = `fn mn_round_bf16(x: f32) -> f32 {
  let u = bitcast<u32>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return x;
  }
  return bitcast<f32>((u + 0x7fffu + ((u >> 16u) & 1u)) & 0xffff0000u);
}`;

// ---------------------------------------------------------------------------------------
// CPU reference helpers

/** erf to double precision: Taylor series near 0, Lentz continued fraction for erfc beyond. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
  let f = ax;
  let c = ax;
  let d = 0;
  for (let k = 1; k < 200; k++) {
    const a = k / 2;
    d = ax + a * d;
    d = d === 0 ? 1e-300 : d;
    c = ax + a / c;
    c = c === 0 ? 1e-300 : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f);
  return Math.sign(x) * (1 - erfc);
}

function mapUnary(fn: (x: number) => number) {
  return (args: readonly RefTensor[]): RefArray => Float64Array.from(args[0].data, fn);
}

/** Elementwise over broadcast operands. */
function mapBroadcast(fn: (...x: number[]) => number) {
  return (args: readonly RefTensor[], _attrs: unknown, out: TensorType): RefArray => {
    const n = elementCount(out.shape);
    const result = new Float64Array(n);
    const outStrides = stridesOf(out.shape);
    const views = args.map((a) => broadcastStrides(a.shape, out.shape));
    const values = new Array<number>(args.length);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < args.length; k++) {
        let idx = 0;
        let rem = i;
        for (let d = 0; d < out.shape.length; d++) {
          const c = Math.floor(rem / outStrides[d]);
          rem -= c * outStrides[d];
          idx += c * views[k][d];
        }
        values[k] = args[k].data[idx];
      }
      result[i] = fn(...values);
    }
    return result;
  };
}

/** f32 to i32 as WGSL converts: toward zero, saturated at the i32 range; NaN gives 0. */
function toI32(x: number): number {
  if (Number.isNaN(x)) return 0;
  return Math.min(Math.max(Math.trunc(x), -(2 ** 31)), 2 ** 31 - 1);
}

/** a mod b, truncated or floored; an i32 divisor of 0 gives 0 as WGSL's % does. */
function modOf(a: number, b: number, floored: boolean, integer: boolean): number {
  if (integer && b === 0) return 0;
  const r = a % b;
  return floored && r !== 0 && r < 0 !== b < 0 ? r + b : r;
}

/** Splits a shape around `axis` into [outer, n, inner] so rows are (o, ·, i). */
export function axisSplit(shape: Shape, axis: number): { outer: number; n: number; inner: number } {
  let outer = 1;
  let inner = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  return { outer, n: shape[axis], inner };
}

/** Calls `fn` once per row along `axis` with a reader and writer for that row. */
function forEachRow(
  shape: Shape,
  axis: number,
  fn: (get: (j: number) => number, base: number, stride: number, row: number) => void,
  data: RefArray,
): void {
  const { outer, n, inner } = axisSplit(shape, axis);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      fn((j) => data[base + j * inner], base, inner, o * inner + i);
    }
  }
}

function checkUnaryFloat(inputs: readonly TensorType[]): TensorType {
  if (inputs[0].dtype !== 'f32') throw new ShapeRuleError(`expects an f32 operand; got ${inputs[0].dtype}`);
  return inputs[0];
}

function inferBroadcast(inputs: readonly TensorType[]): TensorType {
  const [a, b] = inputs;
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) {
    throw new ShapeRuleError(`operands of shapes ${formatShape(a.shape)} and ${formatShape(b.shape)} do not broadcast`);
  }
  if (a.dtype !== b.dtype) throw new ShapeRuleError(`operand dtypes differ: ${a.dtype} and ${b.dtype}`);
  return { shape, dtype: a.dtype };
}

function leaf<A extends LeafAttrs>(summary: string, evaluate: OpDef<A>['evaluate']): OpDef<A> {
  return {
    arity: 0,
    summary,
    infer: (_inputs, attrs) => ({ shape: attrs.shape, dtype: attrs.dtype }),
    evaluate,
    lowering: { archetype: 'none' },
  };
}

type Grad<A> = OpDef<A>['grad'];

/** Types an op written out in full (the helpers below type the rest). */
function defineOp<A>(def: OpDef<A>): OpDef<A> {
  return def;
}

/** The optional fields of a definition, as the factories below pass them on. */
type OptionalFields<A, Activation extends string = never> = Pick<OpDef<A, Activation>, 'term' | 'epilogueActivations' | 'flops'>;
/** A pointwise op's optional fields: those, and the WGSL helper functions its expression calls. */
type PointwiseFields<Activation extends string> = OptionalFields<NoAttrs, Activation> & {
  helpers?: string[];
  /**
   * the op on i32 operands as well, with this reference (wrapping at 32 bits as WGSL's i32
   * does); the WGSL expression must be written for either type. Absent: f32 only
   */
  integer?: (...x: number[]) => number;
  /** the result is a 0/1 f32 (a bool) whatever the operands' dtype (comparisons) */
  predicate?: boolean;
};

/** The result's dtype of a pointwise op on operands of `dtype`, or the refusal naming what it takes. */
function pointwiseDType(dtype: TensorType['dtype'], integer: boolean, predicate: boolean): TensorType['dtype'] {
  if (dtype !== 'f32' && !(integer && dtype === 'i32')) throw new ShapeRuleError(`expects ${integer ? 'f32 or i32' : 'f32'} operands; got ${dtype}`);
  return predicate ? 'f32' : dtype;
}

function unary<const Activation extends string = never>(
  summary: string,
  ref: (x: number) => number,
  wgsl: (x: string) => string,
  grad: Grad<NoAttrs>,
  { helpers, integer, predicate, ...fields }: PointwiseFields<Activation> = {},
): OpDef<NoAttrs, Activation> {
  return {
    arity: 1,
    summary,
    infer: ([x]) => ({ shape: x.shape, dtype: pointwiseDType(x.dtype, integer !== undefined, predicate ?? false) }),
    evaluate: (args, attrs, out) => (integer && out.dtype === 'i32' ? mapUnary(integer)(args) : mapUnary(ref)(args)),
    lowering: { archetype: 'pointwise', expr: (x) => wgsl(x[0]), helpers },
    grad,
    ...fields,
  };
}

function binary(
  summary: string,
  ref: (a: number, b: number) => number,
  wgsl: (a: string, b: string) => string,
  grad: Grad<NoAttrs>,
  { helpers, integer, predicate, ...fields }: PointwiseFields<never> = {},
): OpDef<NoAttrs> {
  return {
    arity: 2,
    summary,
    infer: (inputs) => {
      const t = inferBroadcast(inputs);
      return { shape: t.shape, dtype: pointwiseDType(t.dtype, integer !== undefined, predicate ?? false) };
    },
    // a predicate's result is f32 whatever its operands: its reference is the same for both
    evaluate: (args, attrs, out) => mapBroadcast(integer && !predicate && out.dtype === 'i32' ? integer : ref)(args, attrs, out),
    lowering: { archetype: 'pointwise', expr: (x) => wgsl(x[0], x[1]), helpers },
    grad,
    ...fields,
  };
}

/** i32 arithmetic as WGSL does it: exact, then wrapped to 32 bits (Math.imul for products, which a double cannot hold exactly). */
const I32 = {
  add: (a: number, b: number) => (a + b) | 0,
  sub: (a: number, b: number) => (a - b) | 0,
  mul: (a: number, b: number) => Math.imul(a, b),
  // WGSL: truncated toward zero; a divisor of 0 gives the dividend (and i32 min / -1 wraps to i32 min)
  div: (a: number, b: number) => (b === 0 ? a : Math.trunc(a / b) | 0),
  neg: (x: number) => -x | 0,
  same: (a: number, b: number) => (a === b ? 1 : 0),
};

function reduceAxisShape(input: TensorType, attrs: AxisAttrs): TensorType {
  const axis = normalizeAxis(attrs.axis, input.shape.length);
  if (axis === undefined) {
    throw new ShapeRuleError(`axis ${attrs.axis} is out of range for a tensor of rank ${input.shape.length} ${formatShape(input.shape)}`);
  }
  const shape = attrs.keepDims ? input.shape.map((d, i) => (i === axis ? 1 : d)) : input.shape.filter((_, i) => i !== axis);
  return { shape, dtype: input.dtype };
}

/** The reduced value's shape with the axis kept as 1, so it broadcasts against the operand. */
function keptShape(x: Tensor, axis: number): number[] {
  const a = normalizeAxis(axis, x.shape.length)!;
  return x.shape.map((d, i) => (i === a ? 1 : d));
}

function reduction(
  summary: string,
  combine: 'add' | 'max',
  finish: ((total: string, n: number) => string) | undefined,
  ref: (row: number[]) => number,
  grad: Grad<AxisAttrs>,
  fields: OptionalFields<AxisAttrs> = {},
): OpDef<AxisAttrs> {
  return {
    arity: 1,
    summary,
    infer: (inputs, attrs) => reduceAxisShape(checkUnaryFloat(inputs), attrs),
    evaluate: ([x], attrs, out) => {
      const axis = normalizeAxis(attrs.axis, x.shape.length)!;
      const result = new Float64Array(elementCount(out.shape));
      forEachRow(x.shape, axis, (get, _b, _s, row) => {
        result[row] = ref(Array.from({ length: x.shape[axis] }, (_, j) => get(j)));
      }, x.data);
      return result;
    },
    lowering: {
      archetype: 'axis',
      program: (inputs, attrs) => ({
        axis: normalizeAxis(attrs.axis, inputs[0].shape.length)!,
        reductions: [{ name: 'total', combine, term: (x) => x, finish }],
        output: { per: 'row', expr: 'total' },
      }),
    },
    grad,
    // one per element reduced, not per (fewer) output element
    flops: ([x]) => elementCount(x.shape),
    ...fields,
  };
}

/** Row ops over the last axis: softmax, logSoftmax, layerNorm, rmsNorm. */
function lastAxisRowOp<A>(
  summary: string,
  arity: number,
  program: (attrs: A) => Omit<AxisProgram, 'axis'>,
  ref: (row: number[], attrs: A, extra: readonly RefTensor[]) => number[],
  grad: Grad<A>,
  fields: OptionalFields<A> = {},
): OpDef<A> {
  return {
    arity,
    summary,
    infer: (inputs) => {
      const [x, ...extra] = inputs;
      checkUnaryFloat(inputs);
      if (x.shape.length < 1) throw new ShapeRuleError('needs a tensor of rank 1 or more; got a scalar');
      const n = x.shape[x.shape.length - 1];
      for (const [k, e] of extra.entries()) {
        if (!sameShape(e.shape, [n])) {
          throw new ShapeRuleError(
            `operand ${k + 2} must have shape [${n}] (the last axis of ${formatShape(x.shape)}); got ${formatShape(e.shape)}`,
          );
        }
      }
      return x;
    },
    evaluate: ([x, ...extra], attrs) => {
      const axis = x.shape.length - 1;
      const result = new Float64Array(x.data.length);
      forEachRow(x.shape, axis, (get, base) => {
        const n = x.shape[axis];
        const out = ref(Array.from({ length: n }, (_, j) => get(j)), attrs, extra);
        for (let j = 0; j < n; j++) result[base + j] = out[j];
      }, x.data);
      return result;
    },
    lowering: {
      archetype: 'axis',
      program: (inputs, attrs) => ({ axis: inputs[0].shape.length - 1, ...program(attrs) }),
    },
    grad,
    ...fields,
  };
}

const mean = (row: number[]) => row.reduce((s, v) => s + v, 0) / row.length;
const KEEP = { keepDims: true };

/** Shape rule of an optimizer update: state operands match the parameter; the last is the hyper vector. */
function inferUpdate(inputs: readonly TensorType[]): TensorType {
  const [p, ...rest] = inputs;
  const check = rest.pop()!;
  const hyper = rest.pop()!;
  if (elementCount(check.shape) !== 1) throw new ShapeRuleError(`the step check must be one value; got shape ${formatShape(check.shape)}`);
  for (const [k, t] of rest.entries()) {
    if (!sameShape(t.shape, p.shape)) throw new ShapeRuleError(`operand ${k + 2} has shape ${formatShape(t.shape)}; the parameter has ${formatShape(p.shape)}`);
  }
  if (!sameShape(hyper.shape, [HYPER_FIELDS.length])) {
    throw new ShapeRuleError(`the hyper-parameter vector must have shape [${HYPER_FIELDS.length}]; got ${formatShape(hyper.shape)}`);
  }
  return p;
}

const hyperOf = (h: RefTensor) => (field: HyperField) => h.data[hyperIndex(field)];
/** An update whose step check (loss + gradient sums, see autodiff/train.ts) is not finite changes nothing. */
const skipped = (check: RefTensor) => !Number.isFinite(check.data[0]);

// GELU's derivative: Φ(x) + x·φ(x) exactly, or the derivative of the tanh form.
const GELU_TANH_C = Math.sqrt(2 / Math.PI);
function geluDerivative(x: number, approximate: 'none' | 'tanh'): number {
  if (approximate === 'tanh') {
    const t = Math.tanh(GELU_TANH_C * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_TANH_C * (1 + 3 * 0.044715 * x * x);
  }
  return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

// ---------------------------------------------------------------------------------------
// Fused programs: the fused ops run other ops of this table, so their shape rule, CPU
// reference and WGSL are those ops' own, applied instruction by instruction.

// broadcast computes nothing (operands are read through broadcast views already)
const NOT_CHAINABLE = new Set<string>(['broadcast']);

/**
 * Whether `op` can be an instruction of a fused pointwise program: a pointwise op whose
 * operands are read through plain broadcast views (not transpose, slice or oneHot).
 */
export function isChainable(op: string): boolean {
  if (!Object.hasOwn(OPS, op) || NOT_CHAINABLE.has(op)) return false;
  const lowering = opDef(op as OpName).lowering;
  return lowering.archetype === 'pointwise' && !lowering.views;
}

const SCALAR_F32: TensorType = { shape: [], dtype: 'f32' };

/**
 * The type of each instruction's value, by each op's own shape rule. Refuses ops that cannot
 * be fused, references to later values or missing operands, and (for `complete` programs)
 * operands or values that nothing uses, so a program means exactly its unfused graph.
 */
function programTypes(program: readonly FusedInstruction[], operands: readonly TensorType[], complete: boolean): TensorType[] {
  if (!Array.isArray(program)) throw new ShapeRuleError('program must be an array of instructions');
  for (const [k, t] of operands.entries()) {
    if (t.dtype !== 'f32') throw new ShapeRuleError(`operand ${k} is ${t.dtype}; fused programs read f32 operands`);
  }
  const types: TensorType[] = [];
  const usedOperands = new Set<number>();
  const usedValues = new Set<number>();
  for (const [j, ins] of program.entries()) {
    const where = `instruction ${j} (${ins?.op})`;
    if (!ins || !isChainable(ins.op)) {
      const chainable = (Object.keys(OPS) as OpName[]).filter(isChainable).join(', ');
      throw new ShapeRuleError(`${where} cannot be fused: only pointwise ops read through broadcast views can (${chainable})`);
    }
    const def = opDef(ins.op);
    const args: readonly FusedArg[] = ins.args;
    if (!Array.isArray(ins.args) || args.length !== def.arity) {
      throw new ShapeRuleError(`${where} takes ${def.arity} arguments; got ${Array.isArray(ins.args) ? args.length : 'none'}`);
    }
    const argTypes = args.map((arg, p): TensorType => {
      const bad = (why: string) => new ShapeRuleError(`${where}, argument ${p}: ${why}`);
      if (typeof arg !== 'object' || arg === null || Object.keys(arg).length !== 1) {
        throw bad('must be one of { operand: k }, { value: j } or { scalar: x }');
      }
      if ('operand' in arg) {
        if (!Number.isInteger(arg.operand) || arg.operand < 0 || arg.operand >= operands.length) {
          throw bad(`operand ${arg.operand} does not exist (the op has ${operands.length} operands)`);
        }
        usedOperands.add(arg.operand);
        return operands[arg.operand];
      }
      if ('value' in arg) {
        if (!Number.isInteger(arg.value) || arg.value < 0 || arg.value >= j) {
          throw bad(`refers to value ${arg.value}, which is not computed before it (${j === 0 ? 'no values are' : `values 0..${j - 1} are`})`);
        }
        usedValues.add(arg.value);
        return types[arg.value];
      }
      if ('scalar' in arg) {
        if (typeof arg.scalar !== 'number' || !Number.isFinite(arg.scalar)) throw bad(`scalar ${arg.scalar} is not a finite number`);
        return SCALAR_F32;
      }
      throw bad(`${JSON.stringify(arg)} must be one of { operand: k }, { value: j } or { scalar: x }`);
    });
    let type: TensorType;
    try {
      type = def.infer(argTypes, ins.attrs ?? {});
    } catch (e) {
      if (e instanceof ShapeRuleError) throw new ShapeRuleError(`${where}: ${e.message}`);
      throw e;
    }
    if (type.dtype !== 'f32') throw new ShapeRuleError(`${where} gives ${type.dtype}; fused programs compute f32`);
    types.push(type);
  }
  if (complete) {
    if (program.length === 0) throw new ShapeRuleError('program is empty; it needs at least one instruction');
    for (let k = 0; k < operands.length; k++) {
      if (!usedOperands.has(k)) throw new ShapeRuleError(`operand ${k} is not used by any instruction`);
    }
    for (let j = 0; j < program.length - 1; j++) {
      if (!usedValues.has(j)) throw new ShapeRuleError(`value ${j} (${program[j].op}) is not used by a later instruction; only the last value is the result`);
    }
  }
  return types;
}

/** The CPU reference of a program: each instruction's own `evaluate`; an empty program is operand 0. */
function evaluateProgram(program: readonly FusedInstruction[], operands: readonly RefTensor[]): RefTensor {
  const values: RefTensor[] = [];
  for (const ins of program) {
    const def = opDef(ins.op);
    const attrs = ins.attrs ?? {};
    const args = ins.args.map((arg): RefTensor => {
      if ('operand' in arg) return operands[arg.operand];
      if ('value' in arg) return values[arg.value];
      return { data: Float64Array.of(arg.scalar), shape: [] };
    });
    const type = def.infer(args.map((a) => ({ shape: a.shape, dtype: 'f32' })), attrs);
    values.push({ data: def.evaluate(args, attrs, type), shape: type.shape });
  }
  return values.length > 0 ? values[values.length - 1] : operands[0];
}

/** Broadcasts a reference tensor to `shape` (a no-op when it already has it). */
function broadcastRef(x: RefTensor, shape: Shape): RefArray {
  return sameShape(x.shape, shape) ? x.data : mapBroadcast((v) => v)([x], {}, { shape, dtype: 'f32' });
}

/**
 * A program as WGSL: one `let v{j}` per instruction, from each op's own `lowering.expr` and
 * helpers (each helper once). Every value is computed at the output element, which is exact
 * for pointwise ops: broadcasting commutes with them.
 */
export function renderProgram(program: readonly FusedInstruction[], operands: readonly string[]): PointwiseChain {
  const helpers: string[] = [];
  const lets: PointwiseChain['lets'] = [];
  for (const [j, ins] of program.entries()) {
    const lowering = opDef(ins.op).lowering;
    if (lowering.archetype !== 'pointwise') throw new ShapeRuleError(`${ins.op} cannot be fused`);
    const args = ins.args.map((arg) => {
      if ('operand' in arg) return operands[arg.operand];
      if ('value' in arg) return `v${arg.value}`;
      // parenthesised when negative: the ops' expressions write `-${x}`, and `--` is WGSL's decrement
      const literal = wgslFloat(arg.scalar);
      return literal.startsWith('-') ? `(${literal})` : literal;
    });
    for (const h of lowering.helpers ?? []) if (!helpers.includes(h)) helpers.push(h);
    lets.push({ name: `v${j}`, expr: lowering.expr(args, ins.attrs ?? {}), op: ins.op });
  }
  return { lets, result: lets.length > 0 ? lets[lets.length - 1].name : operands[0], helpers, ops: program.map((ins) => ins.op) };
}

/** The epilogue of a fusedMatmul as a fused program over [product, bias?, gate?, residual?]. */
export function epilogueProgram(attrs: Pick<FusedMatmulAttrs, 'bias' | 'activation' | 'residual'> & { gate?: boolean }): FusedInstruction[] {
  const program: FusedInstruction[] = [];
  let next = 1;
  const last = (): FusedArg => (program.length > 0 ? { value: program.length - 1 } : { operand: 0 });
  if (attrs.bias) program.push({ op: 'biasAdd', args: [last(), { operand: next++ }] });
  if (attrs.activation !== 'none') {
    const { op, attrs: opAttrs } = EPILOGUE_ACTIVATIONS.get(attrs.activation)!;
    program.push({ op, args: [last()], attrs: opAttrs });
  }
  if (attrs.gate) program.push({ op: 'swiglu', args: [{ operand: next++ }, last()] });
  if (attrs.residual) program.push({ op: 'add', args: [last(), { operand: next++ }] });
  return program;
}

/** A fusedMatmul's epilogue operands (bias, gate, residual: those present), after a and b and before the norm's weight. */
export const epilogueOperandCount = (attrs: Pick<FusedMatmulAttrs, 'bias' | 'residual'> & { gate?: boolean }) => Number(attrs.bias) + Number(attrs.gate ?? false) + Number(attrs.residual);

/** Operand shapes with the last two axes swapped where the matmul reads them transposed. */
function productOperands(inputs: readonly TensorType[], attrs: Pick<FusedMatmulAttrs, 'transposeA' | 'transposeB'>): [TensorType, TensorType] {
  const swap = (t: TensorType, on: boolean): TensorType => (on ? { ...t, shape: [...t.shape.slice(0, -2), t.shape[t.shape.length - 1], t.shape[t.shape.length - 2]] } : t);
  return [swap(inputs[0], attrs.transposeA), swap(inputs[1], attrs.transposeB)];
}

/** A product's multiply-adds, two FLOPs each: every output element sums K of them. */
const productFlops = (out: TensorType, k: number) => 2 * elementCount(out.shape) * k;

const swapLastTwo = (rank: number) => Array.from({ length: rank }, (_, i) => (i < rank - 2 ? i : 2 * rank - 3 - i));

// ---------------------------------------------------------------------------------------
// E-graph term forms: how the rules see an op's attributes

/** A constructor of the operands alone. */
function plainTerm<A>(ctor: string): TermForm<A> {
  return { ctor, sorts: [], encode: () => [], decode: () => ({}) };
}

/** A constructor whose primitive arguments are the named attributes, in this order, of these sorts. */
function attributeTerm<A>(ctor: string, sorts: { readonly [K in keyof A & string]?: string }): TermForm<A> {
  const names = Object.keys(sorts) as (keyof A & string)[];
  return {
    ctor,
    sorts: names.map((name) => sorts[name]!),
    encode: (attrs) => names.map((name) => attrs[name] as TermValue),
    decode: (values) => Object.fromEntries(names.map((name, i) => [name, values[i]])),
  };
}

/** A reduction: the axis stored negative (-1 is the last axis whatever the rank, so one rule matches every rank) and keepDims. */
function axisTerm(ctor: string): TermForm<AxisAttrs> {
  return {
    ctor,
    sorts: ['i64', 'bool'],
    encode: (attrs, [x]) => [normalizeAxis(attrs.axis, x.shape.length)! - x.shape.length, attrs.keepDims],
    decode: ([axis, keepDims]) => ({ axis, keepDims }),
  };
}

// lists (shapes, permutations) as strings: "2,0,1"
const commaList = (xs: readonly number[]) => xs.join(',');
const fromCommaList = (s: TermValue) => (s === '' ? [] : String(s).split(',').map(Number));

/** A reshape's target with its -1 resolved, so one rule matches however the shape was written. */
function resolveShape(shape: readonly number[], total: number): number[] {
  const known = shape.filter((d) => d !== -1).reduce((n, d) => n * d, 1);
  return shape.map((d) => (d === -1 ? total / known : d));
}

// ---------------------------------------------------------------------------------------
// The table

export const OPS = {
  input: leaf<LeafAttrs>('a value fed at run time', () => {
    throw new ShapeRuleError('inputs are fed, not evaluated');
  }),
  parameter: leaf<ParameterAttrs>('a weight stored in the plan', () => {
    throw new ShapeRuleError('parameters are materialised, not evaluated');
  }),
  constant: leaf<ConstantAttrs>('a fixed tensor baked into the plan', (_args, attrs) => Float64Array.from(attrs.values)),
  state: leaf<LeafAttrs>('optimizer state kept on the device between steps, zero at the start', () => {
    throw new ShapeRuleError('optimizer state is materialised, not evaluated');
  }),

  add: binary('a + b with broadcasting', (a, b) => a + b, (a, b) => `(${a} + ${b})`, ({ g, inputs: [a, b], dy }) => [
    g.sumTo(dy, a.shape),
    g.sumTo(dy, b.shape),
  ], { term: plainTerm('Add'), integer: I32.add }),
  sub: binary('a - b with broadcasting', (a, b) => a - b, (a, b) => `(${a} - ${b})`, ({ g, inputs: [a, b], dy }) => [
    g.sumTo(dy, a.shape),
    g.sumTo(g.neg(dy), b.shape),
  ], { term: plainTerm('Sub'), integer: I32.sub }),
  mul: binary('a * b with broadcasting', (a, b) => a * b, (a, b) => `(${a} * ${b})`, ({ g, inputs: [a, b], dy }) => [
    g.sumTo(g.mul(dy, b), a.shape),
    g.sumTo(g.mul(dy, a), b.shape),
  ], { term: plainTerm('Mul'), integer: I32.mul }),
  div: binary('a / b with broadcasting', (a, b) => a / b, (a, b) => `(${a} / ${b})`, ({ g, inputs: [a, b], output, dy }) => [
    g.sumTo(g.div(dy, b), a.shape),
    // d(a/b)/db = -(a/b)/b
    g.sumTo(g.neg(g.div(g.mul(dy, output), b)), b.shape),
  ], { term: plainTerm('Div'), integer: I32.div }),
  biasAdd: defineOp<NoAttrs>({
    arity: 2,
    summary: 'x + b, b a vector over the last axis of x',
    infer: (inputs) => {
      const [x, b] = inputs;
      const n = x.shape[x.shape.length - 1];
      if (x.shape.length < 1 || b.shape.length !== 1 || b.shape[0] !== n) {
        throw new ShapeRuleError(`bias must have shape [${n ?? '?'}] (the last axis of x ${formatShape(x.shape)}); got ${formatShape(b.shape)}`);
      }
      return checkUnaryFloat(inputs);
    },
    evaluate: mapBroadcast((a, b) => a + b),
    lowering: { archetype: 'pointwise', expr: (x) => `(${x[0]} + ${x[1]})` },
    grad: ({ g, inputs: [, b], dy }) => [dy, g.sumTo(dy, b.shape)],
    term: plainTerm('BiasAdd'),
  }),

  relu: unary('max(x, 0)', (x) => Math.max(x, 0), (x) => `max(${x}, 0.0)`, ({ g, inputs: [x], dy }) => [g.reluBackward(dy, x)], {
    term: plainTerm('Relu'),
    epilogueActivations: [{ name: 'relu' }],
  }),
  sigmoid: unary(
    '1 / (1 + exp(-x))',
    (x) => 1 / (1 + Math.exp(-x)),
    (x) => `(1.0 / (1.0 + exp(-${x})))`,
    ({ g, output, dy }) => [g.sigmoidBackward(dy, output)],
    { term: plainTerm('Sigmoid'), epilogueActivations: [{ name: 'sigmoid' }] },
  ),
  // clamp: some backends compute tanh through exp and overflow to NaN for large |x|
  tanh: unary('hyperbolic tangent', Math.tanh, (x) => `tanh(clamp(${x}, -15.0, 15.0))`, ({ g, output, dy }) => [g.tanhBackward(dy, output)], {
    term: plainTerm('Tanh'),
    epilogueActivations: [{ name: 'tanh' }],
  }),
  silu: unary(
    'x * sigmoid(x)',
    (x) => x / (1 + Math.exp(-x)),
    (x) => `(${x} / (1.0 + exp(-${x})))`,
    ({ g, inputs: [x], dy }) => [g.siluBackward(dy, x)],
    { term: plainTerm('Silu'), epilogueActivations: [{ name: 'silu' }] },
  ),
  swiglu: binary(
    'silu(gate) * up, the gated unit of SwiGLU feed-forward layers',
    (gate, up) => (gate / (1 + Math.exp(-gate))) * up,
    (gate, up) => `(${gate} / (1.0 + exp(-${gate})) * ${up})`,
    ({ g, inputs: [gate, up], dy }) => [g.sumTo(g.siluBackward(g.mul(dy, up), gate), gate.shape), g.sumTo(g.mul(dy, g.silu(gate)), up.shape)],
    { term: plainTerm('Swiglu') },
  ),
  gelu: {
    arity: 1,
    summary: 'x * Φ(x) (exact, with erf) or its tanh approximation',
    infer: checkUnaryFloat,
    evaluate: ([x], attrs) =>
      Float64Array.from(x.data, (v) =>
        attrs.approximate === 'tanh'
          ? 0.5 * v * (1 + Math.tanh(GELU_TANH_C * (v + 0.044715 * v * v * v)))
          : 0.5 * v * (1 + erf(v / Math.SQRT2)),
      ),
    lowering: {
      archetype: 'pointwise',
      helpers: [WGSL_ERF],
      expr: ([x], attrs) =>
        attrs.approximate === 'tanh'
          ? `(0.5 * ${x} * (1.0 + tanh(clamp(0.7978845608028654 * (${x} + 0.044715 * ${x} * ${x} * ${x}), -15.0, 15.0))))`
          : `(0.5 * ${x} * (1.0 + mn_erf(${x} * 0.7071067811865476)))`,
    },
    grad: ({ g, inputs: [x], dy, attrs }) => [g.geluBackward(dy, x, attrs)],
    term: attributeTerm('Gelu', { approximate: 'String' }),
    epilogueActivations: [
      { name: 'gelu', attrs: { approximate: 'none' } },
      { name: 'geluTanh', attrs: { approximate: 'tanh' }, rule: 'gelu(tanh)' },
    ],
  } satisfies OpDef<GeluAttrs, 'gelu' | 'geluTanh'>,
  exp: unary('e^x', Math.exp, (x) => `exp(${x})`, ({ g, output, dy }) => [g.mul(dy, output)], { term: plainTerm('Exp') }),
  log: unary('natural logarithm', Math.log, (x) => `log(${x})`, ({ g, inputs: [x], dy }) => [g.div(dy, x)], { term: plainTerm('Log') }),
  neg: unary('-x', (x) => -x, (x) => `(-${x})`, ({ g, dy }) => [g.neg(dy)], { term: plainTerm('Neg'), integer: I32.neg }),
  sqrt: unary('square root', Math.sqrt, (x) => `sqrt(${x})`, ({ g, output, dy }) => [g.div(g.mul(dy, 0.5), output)], { term: plainTerm('Sqrt') }),
  erf: unary('the error function', erf, (x) => `mn_erf(${x})`, ({ g, inputs: [x], dy }) => [g.mul(dy, g.mul(g.exp(g.neg(g.mul(x, x))), 2 / Math.sqrt(Math.PI)))], {
    helpers: [WGSL_ERF],
  }),
  sin: unary('sine', Math.sin, (x) => `sin(${x})`, ({ g, inputs: [x], dy }) => [g.mul(dy, g.cos(x))]),
  cos: unary('cosine', Math.cos, (x) => `cos(${x})`, ({ g, inputs: [x], dy }) => [g.neg(g.mul(dy, g.sin(x)))]),
  // NaN compares unequal to itself only where the backend keeps IEEE semantics: test the bits
  isNaN: unary('1 where x is NaN, else 0', (x) => (Number.isNaN(x) ? 1 : 0), (x) => `select(0.0, 1.0, (bitcast<u32>(${x}) & 0x7fffffffu) > 0x7f800000u)`, () => [undefined]),
  // piecewise constant: no gradient flows through it
  ceil: unary('the least integer ≥ x', Math.ceil, (x) => `ceil(${x})`, () => [undefined]),
  // WGSL's pow is exp2(b·log2(a)), NaN for a < 0: integer exponents take |a| and the sign
  pow: binary(
    'a^b with broadcasting (negative a with integer b as well)',
    (a, b) => Math.pow(a, b),
    (a, b) => `mn_pow(${a}, ${b})`,
    ({ g, inputs: [a, b], output, dy }) => [
      g.sumTo(g.mul(dy, g.mul(b, g.pow(a, g.sub(b, 1)))), a.shape),
      g.sumTo(g.mul(dy, g.mul(output, g.log(a))), b.shape),
    ],
    {
      helpers: [`fn mn_pow(a: f32, b: f32) -> f32 {
  if (b == 0.0) {
    return 1.0;
  }
  if (a < 0.0 && b == round(b)) {
    let m = pow(-a, b);
    return select(m, -m, abs(b) % 2.0 == 1.0);
  }
  return pow(a, b);
}`],
    },
  ),

  // Integer arithmetic at run time (the ONNX frontend's int64 narrowed to i32): a dtype
  // conversion, and the elementwise ops whose WGSL is one expression for f32 and i32 alike.
  cast: {
    arity: 1,
    summary: 'x converted to f32 or i32 (f32 to i32 rounds toward zero and saturates, NaN gives 0)',
    infer: ([x], attrs) => {
      if (attrs.to !== 'f32' && attrs.to !== 'i32') throw new ShapeRuleError(`to must be 'f32' or 'i32'; got ${String(attrs.to)}`);
      if (x.dtype !== 'f32' && x.dtype !== 'i32') throw new ShapeRuleError(`converts f32 or i32 operands; got ${x.dtype}`);
      return { shape: x.shape, dtype: attrs.to };
    },
    evaluate: ([x], attrs) => Float64Array.from(x.data, attrs.to === 'f32' ? Math.fround : toI32),
    lowering: { archetype: 'pointwise', expr: ([x], attrs) => `${attrs.to}(${x})` },
    // integers carry no gradient
    grad: () => [undefined],
  } satisfies OpDef<CastAttrs>,
  // A model's float16/bfloat16 tensors compute as f32; a cast to them (and an output of
  // theirs) rounds here so the values are the narrow format's. Bit arithmetic, not
  // pack2x16float, whose result past f16's range is indeterminate.
  roundFloat: {
    arity: 1,
    summary: 'x rounded to the nearest float16 or bfloat16 value (ties to even, past the range ±inf, NaN kept), held as f32',
    infer: ([x], attrs) => {
      if (attrs.format !== 'f16' && attrs.format !== 'bf16') throw new ShapeRuleError(`format must be 'f16' or 'bf16'; got ${String(attrs.format)}`);
      if (x.dtype !== 'f32') throw new ShapeRuleError(`rounds f32 operands; got ${x.dtype}`);
      return { shape: x.shape, dtype: 'f32' };
    },
    evaluate: ([x], attrs) => Float64Array.from(x.data, attrs.format === 'f16' ? (v) => f16BitsToF32(f32ToF16Bits(v)) : (v) => bf16BitsToF32(f32ToBf16Bits(v))),
    lowering: { archetype: 'pointwise', expr: ([x], attrs) => `mn_round_${attrs.format}(${x})`, helpers: [WGSL_ROUND_F16, WGSL_ROUND_BF16] },
    // the rounding passes the gradient straight through
    grad: ({ dy }) => [dy],
  } satisfies OpDef<RoundFloatAttrs>,
  abs: unary('|x|', Math.abs, (x) => `abs(${x})`, ({ g, inputs: [x], dy }) => [g.where(g.less(x, 0), g.neg(dy), dy)], { integer: (x) => Math.abs(x) | 0 }),
  // the first operand takes the gradient where the operands tie
  minimum: binary('the smaller of a and b, with broadcasting', Math.min, (a, b) => `min(${a}, ${b})`, ({ g, inputs: [a, b], dy }) => {
    const zero = g.constant(0);
    const takesB = g.less(b, a);
    return [g.sumTo(g.where(takesB, zero, dy), a.shape), g.sumTo(g.where(takesB, dy, zero), b.shape)];
  }, { integer: Math.min }),
  maximum: binary('the larger of a and b, with broadcasting', Math.max, (a, b) => `max(${a}, ${b})`, ({ g, inputs: [a, b], dy }) => {
    const zero = g.constant(0);
    const takesB = g.greater(b, a);
    return [g.sumTo(g.where(takesB, zero, dy), a.shape), g.sumTo(g.where(takesB, dy, zero), b.shape)];
  }, { integer: Math.max }),
  mod: {
    arity: 2,
    summary: "a mod b with broadcasting: truncated (C's fmod, the sign of a) or floored (Python's %, the sign of b)",
    infer: (inputs) => {
      const t = inferBroadcast(inputs);
      return { shape: t.shape, dtype: pointwiseDType(t.dtype, true, false) };
    },
    evaluate: (args, attrs, out) => mapBroadcast((a, b) => modOf(a, b, attrs.floored, out.dtype === 'i32'))(args, attrs, out),
    lowering: {
      archetype: 'pointwise',
      // WGSL's % truncates for f32 and i32 (an i32 divisor of 0 gives 0); the floored form
      // adds b where the remainder's sign differs from b's. Operands are plain names, so the
      // repeated remainder costs nothing to write out
      expr: ([a, b], attrs) => (attrs.floored ? `select((${a} % ${b}), (${a} % ${b}) + ${b}, (${a} % ${b}) != 0 && ((${a} % ${b}) < 0) != (${b} < 0))` : `(${a} % ${b})`),
    },
  } satisfies OpDef<ModAttrs>,

  // Backward ops of the activations (as PyTorch's threshold_backward, gelu_backward, ...):
  // one kernel instead of a chain of primitives; not differentiable themselves.
  reluBackward: binary('dy where x > 0, else 0 (relu gradient)', (dy, x) => (x > 0 ? dy : 0), (dy, x) => `select(0.0, ${dy}, ${x} > 0.0)`, undefined),
  sigmoidBackward: binary('dy * y * (1 - y), y = sigmoid(x)', (dy, y) => dy * y * (1 - y), (dy, y) => `(${dy} * ${y} * (1.0 - ${y}))`, undefined),
  tanhBackward: binary('dy * (1 - y²), y = tanh(x)', (dy, y) => dy * (1 - y * y), (dy, y) => `(${dy} * (1.0 - ${y} * ${y}))`, undefined),
  siluBackward: binary(
    'dy * s * (1 + x (1 - s)), s = sigmoid(x)',
    (dy, x) => {
      const s = 1 / (1 + Math.exp(-x));
      return dy * s * (1 + x * (1 - s));
    },
    (dy, x) => `mn_silu_backward(${dy}, ${x})`,
    undefined,
    {
      helpers: [`fn mn_silu_backward(dy: f32, x: f32) -> f32 {
  let s = 1.0 / (1.0 + exp(-x));
  return dy * s * (1.0 + x * (1.0 - s));
}`],
    },
  ),
  geluBackward: {
    arity: 2,
    summary: "dy * gelu'(x), exact or tanh form",
    infer: inferBroadcast,
    evaluate: ([dy, x], attrs, out) => mapBroadcast((d, v) => d * geluDerivative(v, attrs.approximate))([dy, x], attrs, out),
    lowering: {
      archetype: 'pointwise',
      helpers: [
        WGSL_ERF,
        `fn mn_gelu_backward(dy: f32, x: f32) -> f32 {
  return dy * (0.5 * (1.0 + mn_erf(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327);
}
fn mn_gelu_tanh_backward(dy: f32, x: f32) -> f32 {
  let t = tanh(clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0));
  return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x));
}`,
      ],
      expr: ([dy, x], attrs) => (attrs.approximate === 'tanh' ? `mn_gelu_tanh_backward(${dy}, ${x})` : `mn_gelu_backward(${dy}, ${x})`),
    },
  } satisfies OpDef<GeluAttrs>,

  // comparisons of f32 or i32 operands; the result is an f32 0/1
  equal: binary('1 where a == b, else 0', (a, b) => (a === b ? 1 : 0), (a, b) => `select(0.0, 1.0, ${a} == ${b})`, () => [undefined, undefined], { integer: I32.same, predicate: true }),
  less: binary('1 where a < b, else 0', (a, b) => (a < b ? 1 : 0), (a, b) => `select(0.0, 1.0, ${a} < ${b})`, () => [undefined, undefined], { integer: I32.same, predicate: true }),
  greater: binary('1 where a > b, else 0', (a, b) => (a > b ? 1 : 0), (a, b) => `select(0.0, 1.0, ${a} > ${b})`, () => [undefined, undefined], { integer: I32.same, predicate: true }),
  where: defineOp<NoAttrs>({
    arity: 3,
    summary: 'a where cond is nonzero, else b, with broadcasting',
    infer: ([cond, a, b]) => {
      const shape = broadcastShapes(cond.shape, a.shape) && broadcastShapes(broadcastShapes(cond.shape, a.shape)!, b.shape);
      if (!shape) throw new ShapeRuleError(`operands of shapes ${formatShape(cond.shape)}, ${formatShape(a.shape)} and ${formatShape(b.shape)} do not broadcast`);
      if (a.dtype !== b.dtype) throw new ShapeRuleError(`a and b differ in dtype: ${a.dtype} and ${b.dtype}`);
      if (cond.dtype !== 'f32') throw new ShapeRuleError(`cond must be f32 (0 or 1); got ${cond.dtype}`);
      return { shape, dtype: a.dtype };
    },
    evaluate: mapBroadcast((c, a, b) => (c !== 0 ? a : b)),
    lowering: { archetype: 'pointwise', expr: ([c, a, b]) => `select(${b}, ${a}, ${c} != 0.0)` },
    grad: ({ g, inputs: [cond, a, b], dy }) => {
      const zero = g.constant(0);
      return [undefined, g.sumTo(g.where(cond, dy, zero), a.shape), g.sumTo(g.where(cond, zero, dy), b.shape)];
    },
  }),
  stopGradient: {
    arity: 1,
    summary: 'x, with no gradient flowing back through it',
    infer: ([x]) => x,
    evaluate: ([x]) => x.data,
    lowering: { archetype: 'alias' },
    grad: () => [undefined],
  } satisfies OpDef<NoAttrs>,
  broadcast: {
    arity: 1,
    summary: 'x repeated along broadcast axes to a larger shape',
    infer: ([x], attrs) => {
      const shape = broadcastShapes(x.shape, attrs.shape);
      if (!shape || !sameShape(shape, attrs.shape)) throw new ShapeRuleError(`${formatShape(x.shape)} does not broadcast to ${formatShape(attrs.shape)}`);
      return { shape, dtype: x.dtype };
    },
    evaluate: ([x], _attrs, out) => mapBroadcast((v) => v)([x], _attrs, out),
    lowering: { archetype: 'pointwise', expr: (x) => x[0] },
    grad: ({ g, inputs: [x], dy }) => [g.sumTo(dy, x.shape)],
  } satisfies OpDef<BroadcastAttrs>,
  oneHot: {
    arity: 1,
    summary: 'integer labels [..] to rows of 0/1 [.., classes]; labels outside [0, classes) give zero rows',
    infer: ([labels], attrs) => {
      if (labels.dtype !== 'i32' && labels.dtype !== 'u32') throw new ShapeRuleError(`labels must be i32 or u32; got ${labels.dtype}`);
      if (!Number.isInteger(attrs.classes) || attrs.classes < 1) throw new ShapeRuleError(`classes must be a positive integer; got ${attrs.classes}`);
      return { shape: [...labels.shape, attrs.classes], dtype: 'f32' };
    },
    evaluate: ([labels], attrs) => {
      const out = new Float64Array(labels.data.length * attrs.classes);
      labels.data.forEach((label, row) => {
        if (Number.isInteger(label) && label >= 0 && label < attrs.classes) out[row * attrs.classes + label] = 1;
      });
      return out;
    },
    lowering: {
      archetype: 'pointwise',
      // the class is the innermost coordinate of the output: i % classes
      expr: ([label], attrs) => `select(0.0, 1.0, ${label} == i32(i % ${attrs.classes}u))`,
      views: ([labels]) => [{ strides: [...stridesOf(labels.shape), 0], offset: 0 }],
    },
    grad: () => [undefined],
  } satisfies OpDef<OneHotAttrs>,
  // Rows of a table at integer ids: a gather (one read per element), not a one-hot product.
  embedding: {
    arity: 2,
    summary: 'rows of table [V, ..row] (f32, or a weight stored as f16 or bf16) at integer ids [..]: [.., ..row] f32; ids out of range give zero rows (fromEnd: negative ids count from the end)',
    infer: ([table, ids], attrs) => embeddingType(table, ids, attrs, true),
    evaluate: ([table, ids], attrs) => {
      const row = elementCount(table.shape.slice(1));
      const out = new Float64Array(ids.data.length * row);
      ids.data.forEach((id, n) => {
        const r = tableRow(id, table.shape[0], attrs.fromEnd);
        if (r >= 0) out.set(table.data.subarray(r * row, (r + 1) * row), n * row);
      });
      return out;
    },
    lowering: { archetype: 'indexed', kernel: embeddingKernel },
    // dL/dtable: dy's rows added into the rows the ids name (several times for a repeated id)
    // a 16-bit table is a frozen packed parameter: no gradient
    grad: ({ g, inputs: [table, ids], dy, attrs }) => [table.dtype === 'f32' ? g.embeddingBackward(dy, ids, { rows: table.shape[0], fromEnd: attrs.fromEnd }) : undefined, undefined],
    flops: () => 0,
  } satisfies OpDef<EmbeddingAttrs>,
  embeddingBackward: {
    arity: 2,
    summary: "embedding's table gradient: rows of dy [.., ..row] summed into [rows, ..row] at integer ids [..], in the ids' order (deterministic)",
    infer: ([dy, ids], attrs) => {
      if (!Number.isInteger(attrs.rows) || attrs.rows < 1) throw new ShapeRuleError(`rows must be a positive integer; got ${attrs.rows}`);
      const rowShape = dy.shape.slice(ids.shape.length);
      const want = embeddingType({ shape: [attrs.rows, ...rowShape], dtype: 'f32' }, ids, attrs);
      if (dy.dtype !== 'f32' || !sameShape(dy.shape, want.shape)) {
        throw new ShapeRuleError(`dy must be f32 of shape [ids' shape, ..row] (ids ${formatShape(ids.shape)}); got ${dy.dtype} ${formatShape(dy.shape)}`);
      }
      return { shape: [attrs.rows, ...rowShape], dtype: 'f32' };
    },
    evaluate: ([dy, ids], attrs, out) => {
      const row = elementCount(out.shape.slice(1));
      const result = new Float64Array(elementCount(out.shape));
      ids.data.forEach((id, n) => {
        const r = tableRow(id, attrs.rows, attrs.fromEnd);
        for (let c = 0; r >= 0 && c < row; c++) result[r * row + c] += dy.data[n * row + c];
      });
      return result;
    },
    lowering: { archetype: 'scatterAdd' },
    // linear in dy, and its adjoint is the gather
    grad: ({ g, inputs: [, ids], dy: ddx, attrs }) => [g.embedding(ddx, ids, { fromEnd: attrs.fromEnd }), undefined],
    flops: ([dy]) => elementCount(dy.shape),
  } satisfies OpDef<EmbeddingBackwardAttrs>,
  // A KV cache's append: the rows of `rows` [.., T, d] written into `cache` [.., S, d] (a state
  // buffer, in place) from row `offset`, a run-time value; rows past S are dropped. Or rows
  // [T, d] with offsets [T]: row r to row offset[r] of the cache read as a matrix [N, d] (a
  // batch of sequences, each appending to its own part of the cache), rows at or past N
  // dropped. The result is the updated cache, so attention that reads it runs after the write.
  cacheWrite: {
    arity: 3,
    summary: 'rows [.., T, d] written in place into cache [.., S, d] from the run-time row offset (one value), or rows [T, d] each to its own row offset[r] of the cache as [N, d]; rows past the end dropped',
    infer: cacheWriteType,
    evaluate: ([cache, rows, offset]) => {
      const d = cache.shape[cache.shape.length - 1];
      // an f32 offset truncated toward zero, a negative one clamped to 0, as the kernel does
      const at = (i: number) => Math.max(0, Math.trunc(offset.data[i]));
      if (cacheWritesPerRow(cache.shape, rows.shape, offset.shape)) {
        const n = cache.data.length / d;
        for (let r = 0; r < rows.shape[0]; r++) if (at(r) < n) cache.data.set(rows.data.subarray(r * d, (r + 1) * d), at(r) * d);
        return cache.data;
      }
      const s = cache.shape[cache.shape.length - 2];
      const t = rows.shape[rows.shape.length - 2];
      const batches = cache.data.length / (s * d);
      for (let b = 0; b < batches; b++) {
        for (let r = 0; r < t && at(0) + r < s; r++) {
          cache.data.set(rows.data.subarray((b * t + r) * d, (b * t + r + 1) * d), (b * s + at(0) + r) * d);
        }
      }
      return cache.data;
    },
    lowering: { archetype: 'rowWrite' },
    writes: [0],
    // a product's store makes it (fuse-cache.egg)
    term: plainTerm('CacheWrite'),
    flops: () => 0,
  } satisfies OpDef<NoAttrs>,
  // HF's rotate-half form: features k and k + rotaryDim/2 are one pair, rotated by pos·inv_freq[k].
  rope: {
    arity: 2,
    summary: 'rotary position embedding of x [.., d] at positions (broadcast to x less its last axis): x·cos + rotate_half(x)·sin over the first rotaryDim features',
    infer: ropeType,
    evaluate: evaluateRope,
    lowering: { archetype: 'indexed', kernel: ropeKernel },
    // the attributes as one JSON string: a product's epilogue takes them whole (fuse-rope.egg)
    term: { ctor: 'Rope', sorts: ['String'], encode: (attrs) => [ropeTerm(attrs)], decode: ([spec]) => JSON.parse(String(spec)) },
    // an orthogonal map: its transpose is the rotation by minus the angle
    grad: ({ g, inputs: [, positions], dy, attrs }) => [g.rope(dy, positions, { ...attrs, inverse: !attrs.inverse }), undefined],
    flops: (_inputs, attrs, out) => (elementCount(out.shape) / out.shape[out.shape.length - 1]) * attrs.rotaryDim * 4,
  } satisfies OpDef<RopeAttrs>,

  sum: reduction('sum over an axis', 'add', undefined, (row) => row.reduce((s, v) => s + v, 0), ({ g, inputs: [x], dy, attrs }) => [
    g.broadcastTo(g.reshape(dy, keptShape(x, attrs.axis)), x.shape),
  ], { term: axisTerm('Sum') }),
  mean: reduction('mean over an axis', 'add', (t, n) => `${t} / ${wgslFloat(n)}`, mean, ({ g, inputs: [x], dy, attrs }) => [
    g.mul(g.broadcastTo(g.reshape(dy, keptShape(x, attrs.axis)), x.shape), 1 / x.shape[normalizeAxis(attrs.axis, x.shape.length)!]),
  ], { term: axisTerm('Mean') }),
  // ties: every maximal element receives the gradient
  max: reduction('maximum over an axis', 'max', undefined, (row) => Math.max(...row), ({ g, inputs: [x], output, dy, attrs }) => {
    const kept = keptShape(x, attrs.axis);
    return [g.mul(g.equal(x, g.reshape(output, kept)), g.reshape(dy, kept))];
  }, { term: axisTerm('Max') }),

  softmax: lastAxisRowOp<NoAttrs>(
    'softmax over the last axis',
    1,
    () => ({
      reductions: [
        { name: 'row_max', combine: 'max', term: (x) => x },
        { name: 'row_sum', combine: 'add', term: (x) => `exp(${x} - row_max)` },
      ],
      output: { per: 'element', expr: (x) => `exp(${x} - row_max) / row_sum` },
    }),
    (row) => {
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / s);
    },
    // y ⊙ (dy - Σ dy⊙y)
    ({ g, output: y, dy }) => [g.mul(y, g.sub(dy, g.sum(g.mul(dy, y), -1, KEEP)))],
    { term: plainTerm('Softmax') },
  ),
  logSoftmax: lastAxisRowOp<NoAttrs>(
    'log of softmax over the last axis',
    1,
    () => ({
      reductions: [
        { name: 'row_max', combine: 'max', term: (x) => x },
        { name: 'log_sum', combine: 'add', term: (x) => `exp(${x} - row_max)`, finish: (t) => `log(${t})` },
      ],
      output: { per: 'element', expr: (x) => `${x} - row_max - log_sum` },
    }),
    (row) => {
      const m = Math.max(...row);
      const ls = Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
      return row.map((v) => v - m - ls);
    },
    // dy - softmax(x) Σ dy, softmax(x) = exp(y)
    ({ g, output: y, dy }) => [g.sub(dy, g.mul(g.exp(y), g.sum(dy, -1, KEEP)))],
    { term: plainTerm('LogSoftmax') },
  ),
  layerNorm: lastAxisRowOp<NormAttrs>(
    'layer normalisation over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta',
    3,
    ({ eps }) => ({
      reductions: [
        { name: 'row_mean', combine: 'add', term: (x) => x, finish: (t, n) => `${t} / ${wgslFloat(n)}` },
        {
          name: 'inv_std',
          combine: 'add',
          term: (x) => `(${x} - row_mean) * (${x} - row_mean)`,
          deviationsFrom: 'row_mean',
          finish: (t, n) => `inverseSqrt(${t} / ${wgslFloat(n)} + ${wgslFloat(eps)})`,
        },
      ],
      output: { per: 'element', expr: (x, [gamma, beta]) => `(${x} - row_mean) * inv_std * ${gamma} + ${beta}` },
    }),
    (row, { eps }, [gamma, beta]) => {
      const mu = mean(row);
      const variance = mean(row.map((v) => (v - mu) ** 2));
      return row.map((v, j) => ((v - mu) / Math.sqrt(variance + eps)) * gamma.data[j] + beta.data[j]);
    },
    // x̂ = (x - μ)·r; dx = r·(dy·γ - mean(dy·γ) - x̂·mean(dy·γ·x̂))
    ({ g, inputs: [x, gamma, beta], dy, attrs }) => {
      const centred = g.sub(x, g.mean(x, -1, KEEP));
      const r = g.div(1, g.sqrt(g.add(g.mean(g.mul(centred, centred), -1, KEEP), attrs.eps)));
      const xhat = g.mul(centred, r);
      const scaled = g.mul(dy, gamma);
      const dx = g.mul(r, g.sub(g.sub(scaled, g.mean(scaled, -1, KEEP)), g.mul(xhat, g.mean(g.mul(scaled, xhat), -1, KEEP))));
      return [dx, g.sumTo(g.mul(dy, xhat), gamma.shape), g.sumTo(dy, beta.shape)];
    },
    { term: attributeTerm('LayerNorm', { eps: 'f64' }) },
  ),
  rmsNorm: lastAxisRowOp<NormAttrs>(
    'RMS normalisation over the last axis: x / sqrt(mean(x²) + eps) * gamma',
    2,
    ({ eps }) => ({
      reductions: [
        {
          name: 'inv_rms',
          combine: 'add',
          term: (x) => `${x} * ${x}`,
          finish: (t, n) => `inverseSqrt(${t} / ${wgslFloat(n)} + ${wgslFloat(eps)})`,
        },
      ],
      output: { per: 'element', expr: (x, [gamma]) => `${x} * inv_rms * ${gamma}` },
    }),
    (row, { eps }, [gamma]) => {
      const r = 1 / Math.sqrt(mean(row.map((v) => v * v)) + eps);
      return row.map((v, j) => v * r * gamma.data[j]);
    },
    // r = (mean(x²) + eps)^-½; dx = r·(dy·γ - x·r²·mean(dy·γ·x))
    ({ g, inputs: [x, gamma], dy, attrs }) => {
      const r = g.div(1, g.sqrt(g.add(g.mean(g.mul(x, x), -1, KEEP), attrs.eps)));
      const scaled = g.mul(dy, gamma);
      const dx = g.mul(r, g.sub(scaled, g.mul(x, g.mul(g.mul(r, r), g.mean(g.mul(scaled, x), -1, KEEP)))));
      return [dx, g.sumTo(g.mul(dy, g.mul(x, r)), gamma.shape)];
    },
    { term: attributeTerm('RmsNorm', { eps: 'f64' }) },
  ),

  reshape: {
    arity: 1,
    summary: 'the same elements in row-major order under a new shape',
    infer: ([x], attrs) => {
      const known = attrs.shape.filter((d) => d !== -1);
      const holes = attrs.shape.length - known.length;
      const total = elementCount(x.shape);
      if (holes > 1 || known.some((d) => !Number.isInteger(d) || d <= 0)) {
        throw new ShapeRuleError(`target shape ${formatShape(attrs.shape)} must hold positive integers and at most one -1`);
      }
      const rest = total / elementCount(known);
      const shape = attrs.shape.map((d) => (d === -1 ? rest : d));
      if (!Number.isInteger(rest) || elementCount(shape) !== total) {
        throw new ShapeRuleError(`cannot reshape ${formatShape(x.shape)} (${total} elements) to ${formatShape(attrs.shape)}`);
      }
      return { shape, dtype: x.dtype };
    },
    evaluate: ([x]) => x.data,
    lowering: { archetype: 'alias' },
    grad: ({ g, inputs: [x], dy }) => [g.reshape(dy, x.shape)],
    term: {
      ctor: 'Reshape',
      sorts: ['String'],
      encode: (attrs, [x]) => [commaList(resolveShape(attrs.shape, elementCount(x.shape)))],
      decode: ([shape]) => ({ shape: fromCommaList(shape) }),
    },
  } satisfies OpDef<ReshapeAttrs>,

  transpose: {
    arity: 1,
    summary: 'permutes axes: out axis i is input axis perm[i]',
    infer: ([x], attrs) => {
      const r = x.shape.length;
      const ok = attrs.perm.length === r && [...attrs.perm].sort((a, b) => a - b).every((p, i) => p === i);
      if (!ok) throw new ShapeRuleError(`perm [${attrs.perm.join(', ')}] is not a permutation of the ${r} axes of ${formatShape(x.shape)}`);
      return { shape: attrs.perm.map((p) => x.shape[p]), dtype: x.dtype };
    },
    evaluate: ([x], attrs, out) => {
      const inStrides = stridesOf(x.shape);
      const outStrides = stridesOf(out.shape);
      const result = new Float64Array(x.data.length);
      for (let i = 0; i < result.length; i++) {
        let rem = i;
        let src = 0;
        for (let d = 0; d < out.shape.length; d++) {
          const c = Math.floor(rem / outStrides[d]);
          rem -= c * outStrides[d];
          src += c * inStrides[attrs.perm[d]];
        }
        result[i] = x.data[src];
      }
      return result;
    },
    lowering: {
      archetype: 'pointwise',
      expr: (x) => x[0],
      views: ([x], attrs) => {
        const s = stridesOf(x.shape);
        return [{ strides: attrs.perm.map((p) => s[p]), offset: 0 }];
      },
    },
    grad: ({ g, dy, attrs }) => {
      const inverse = new Array<number>(attrs.perm.length);
      attrs.perm.forEach((p, i) => (inverse[p] = i));
      return [g.transpose(dy, inverse)];
    },
    term: { ctor: 'Transpose', sorts: ['String'], encode: (attrs) => [commaList(attrs.perm)], decode: ([perm]) => ({ perm: fromCommaList(perm) }) },
  } satisfies OpDef<TransposeAttrs>,

  slice: {
    arity: 1,
    summary: 'the elements with start <= index < end along an axis',
    infer: ([x], attrs) => {
      const axis = normalizeAxis(attrs.axis, x.shape.length);
      if (axis === undefined) throw new ShapeRuleError(`axis ${attrs.axis} is out of range for rank ${x.shape.length}`);
      const { start, end } = attrs;
      if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > x.shape[axis] || start >= end) {
        throw new ShapeRuleError(`range [${start}, ${end}) is not a non-empty range inside axis ${axis} of ${formatShape(x.shape)}`);
      }
      return { shape: x.shape.map((d, i) => (i === axis ? end - start : d)), dtype: x.dtype };
    },
    evaluate: ([x], attrs, out) => {
      const axis = normalizeAxis(attrs.axis, x.shape.length)!;
      const { outer, inner } = axisSplit(x.shape, axis);
      const n = x.shape[axis];
      const m = attrs.end - attrs.start;
      const result = new Float64Array(elementCount(out.shape));
      for (let o = 0; o < outer; o++) result.set(x.data.subarray((o * n + attrs.start) * inner, (o * n + attrs.end) * inner), o * m * inner);
      return result;
    },
    lowering: {
      archetype: 'pointwise',
      expr: (x) => x[0],
      views: ([x], attrs) => {
        const axis = normalizeAxis(attrs.axis, x.shape.length)!;
        const strides = stridesOf(x.shape);
        return [{ strides, offset: attrs.start * strides[axis] }];
      },
    },
    // zeros around dy along the axis
    grad: ({ g, inputs: [x], dy, attrs }) => {
      const axis = normalizeAxis(attrs.axis, x.shape.length)!;
      const zeros = (n: number) => {
        const shape = x.shape.map((d, i) => (i === axis ? n : d));
        return g.constant(new Float32Array(elementCount(shape)), shape);
      };
      const parts = [];
      if (attrs.start > 0) parts.push(zeros(attrs.start));
      parts.push(dy);
      if (attrs.end < x.shape[axis]) parts.push(zeros(x.shape[axis] - attrs.end));
      return [parts.length === 1 ? dy : g.concat(parts, axis)];
    },
  } satisfies OpDef<SliceAttrs>,

  concat: {
    arity: 'variadic',
    summary: 'joins tensors along an axis',
    infer: (inputs, attrs) => {
      const first = inputs[0];
      const axis = normalizeAxis(attrs.axis, first.shape.length);
      if (axis === undefined) throw new ShapeRuleError(`axis ${attrs.axis} is out of range for rank ${first.shape.length}`);
      let total = 0;
      for (const [k, t] of inputs.entries()) {
        const fits = t.shape.length === first.shape.length && t.shape.every((d, i) => i === axis || d === first.shape[i]);
        if (!fits) {
          throw new ShapeRuleError(
            `operand ${k + 1} has shape ${formatShape(t.shape)}; every operand must match ${formatShape(first.shape)} except along axis ${axis}`,
          );
        }
        total += t.shape[axis];
      }
      return { shape: first.shape.map((d, i) => (i === axis ? total : d)), dtype: first.dtype };
    },
    evaluate: (args, attrs, out) => {
      const axis = normalizeAxis(attrs.axis, out.shape.length)!;
      const { outer, inner } = axisSplit(out.shape, axis);
      const result = new Float64Array(elementCount(out.shape));
      let start = 0;
      for (const a of args) {
        const n = a.shape[axis];
        for (let o = 0; o < outer; o++) {
          for (let j = 0; j < n * inner; j++) {
            result[o * out.shape[axis] * inner + start * inner + j] = a.data[o * n * inner + j];
          }
        }
        start += n;
      }
      return result;
    },
    lowering: {
      archetype: 'piecewise',
      views: (inputs, attrs, out) => {
        const axis = normalizeAxis(attrs.axis, out.shape.length)!;
        let start = 0;
        return inputs.map((t) => {
          const strides = stridesOf(t.shape);
          const view = { strides, axis, start, end: start + t.shape[axis] };
          start += t.shape[axis];
          return view;
        });
      },
    },
    grad: ({ g, inputs, dy, attrs }) => {
      const axis = normalizeAxis(attrs.axis, dy.shape.length)!;
      let start = 0;
      return inputs.map((x) => {
        const part = g.slice(dy, axis, start, start + x.shape[axis]);
        start += x.shape[axis];
        return part;
      });
    },
  } satisfies OpDef<ConcatAttrs>,

  matmul: {
    arity: 2,
    summary: 'matrix product over the last two axes, leading axes broadcast as batches',
    infer: ([a, b]) => {
      if (a.shape.length < 2 || b.shape.length < 2) {
        throw new ShapeRuleError(
          `operands must have rank 2 or more; got ${formatShape(a.shape)} and ${formatShape(b.shape)} (reshape a vector to [1, n] or [n, 1])`,
        );
      }
      const [m, k] = a.shape.slice(-2);
      const [k2, n] = b.shape.slice(-2);
      if (k !== k2) {
        throw new ShapeRuleError(
          `inner dimensions differ: a is ${formatShape(a.shape)} (K = ${k}) and b is ${formatShape(b.shape)} (K = ${k2})`,
        );
      }
      const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
      if (!batch) {
        throw new ShapeRuleError(`batch axes ${formatShape(a.shape.slice(0, -2))} and ${formatShape(b.shape.slice(0, -2))} do not broadcast`);
      }
      if (a.dtype !== 'f32' || b.dtype !== 'f32') {
        throw new ShapeRuleError(`operands must be f32; got ${a.dtype} and ${b.dtype}${a.dtype === 'i8' && b.dtype === 'i8' ? ' (int8 operands: use matmulInt8)' : ''}`);
      }
      return { shape: [...batch, m, n], dtype: a.dtype };
    },
    evaluate: ([a, b], _attrs, out) => {
      const r = out.shape.length;
      const [m, n] = out.shape.slice(-2);
      const k = a.shape[a.shape.length - 1];
      const batchShape = out.shape.slice(0, -2);
      const aBatch = broadcastStrides(a.shape.slice(0, -2), batchShape);
      const bBatch = broadcastStrides(b.shape.slice(0, -2), batchShape);
      const batchStrides = stridesOf(batchShape);
      const batches = elementCount(batchShape);
      const result = new Float64Array(elementCount(out.shape));
      for (let bi = 0; bi < batches; bi++) {
        let aOff = 0;
        let bOff = 0;
        let rem = bi;
        for (let d = 0; d < r - 2; d++) {
          const c = Math.floor(rem / batchStrides[d]);
          rem -= c * batchStrides[d];
          aOff += c * aBatch[d] * m * k;
          bOff += c * bBatch[d] * k * n;
        }
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let acc = 0;
            for (let p = 0; p < k; p++) acc += a.data[aOff + i * k + p] * b.data[bOff + p * n + j];
            result[bi * m * n + i * n + j] = acc;
          }
        }
      }
      return result;
    },
    lowering: { archetype: 'matmul' },
    // dA = dy·Bᵀ, dB = Aᵀ·dy, summed over the batch axes each operand was broadcast along
    grad: ({ g, inputs: [a, b], dy }) => {
      const swapLast = (t: Tensor) => g.transpose(t, t.shape.map((_, i, s) => (i < s.length - 2 ? i : 2 * s.length - 3 - i)));
      const da = g.sumTo(g.matmul(dy, swapLast(b)), a.shape);
      let db: Tensor;
      if (b.shape.length === 2 && a.shape.length > 2) {
        // a shared 2-D weight: fold the batch into rows, one product instead of a batch and a sum
        const [k, n] = b.shape;
        db = g.matmul(swapLast(g.reshape(a, [-1, k])), g.reshape(dy, [-1, n]));
      } else {
        db = g.sumTo(g.matmul(swapLast(a), dy), b.shape);
      }
      return [da, db];
    },
    term: plainTerm('MatMul'),
    flops: ([a], _attrs, out) => productFlops(out, a.shape[a.shape.length - 1]),
  } satisfies OpDef<NoAttrs>,
  // The int8 product of quantized inference (torch._int_mm): exact in i32 for K < 2^17.
  matmulInt8: {
    arity: 2,
    summary: 'int8 matrix product with int32 accumulation: [M, K] i8 · [K, N] i8 → [M, N] i32',
    infer: ([a, b]) => {
      if (a.dtype !== 'i8' || b.dtype !== 'i8') throw new ShapeRuleError(`operands must be i8; got ${a.dtype} and ${b.dtype}`);
      if (a.shape.length !== 2 || b.shape.length !== 2) {
        throw new ShapeRuleError(`operands must be matrices; got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
      }
      const [m, k] = a.shape;
      const [k2, n] = b.shape;
      if (k !== k2) throw new ShapeRuleError(`inner dimensions differ: a is ${formatShape(a.shape)} (K = ${k}) and b is ${formatShape(b.shape)} (K = ${k2})`);
      // every partial sum stays below 2^31 while K·127·128 does
      if (k > 131072) throw new ShapeRuleError(`K = ${k} could overflow the i32 accumulator (at most 131072)`);
      return { shape: [m, n], dtype: 'i32' };
    },
    evaluate: ([a, b], _attrs, out) => {
      const [m, n] = out.shape;
      const k = a.shape[1];
      const result = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += a.data[i * k + p] * b.data[p * n + j];
          result[i * n + j] = acc;
        }
      }
      return result;
    },
    lowering: { archetype: 'matmulInt8' },
    flops: ([a], _attrs, out) => productFlops(out, a.shape[1]),
  } satisfies OpDef<NoAttrs>,

  // The product of quantized inference: the weight stays in its packed format (a GGUF file's
  // bytes) and kernels dequantize it as they read. The reference multiplies the dequantized
  // values (the interpreter hands a packed parameter's values over dequantized, by
  // runtime/ggml-types.ts), so GPU and reference differ by f32 accumulation only.
  // x̄ = ȳ · dequant(w) (transposeB) or ȳ · dequant(w)ᵀ: the same op with the other layout, so
  // the same kernels. A packed weight is never trained: it has no gradient, and the builder
  // makes packed parameters frozen. It lowers as a product whose B is packed (lower/matmul.ts
  // hands those to lower/matmul-quantized.ts), and the kernel rules make it a fusedMatmul with
  // that B (fuse.egg, "matmul (packed B)"), so it takes every fusion a float product takes.
  matmulQuantized: {
    arity: 2,
    summary: 'x [.., M, K] f32 times a packed weight (q8_0, q4_k, …, f16, bf16) dequantized as read: w [N, K] and x·wᵀ (a GGUF linear layer) or w [K, N] and x·w → [.., M, N] f32',
    infer: ([x, w], attrs) => {
      if (x.dtype !== 'f32') throw new ShapeRuleError(`x must be f32; got ${x.dtype}`);
      if (!isWeightDType(w.dtype)) {
        throw new ShapeRuleError(`w must be a packed weight (f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k: Graph.packedParameter); got ${w.dtype}${w.dtype === 'f32' ? ' (use matmul)' : ''}`);
      }
      if (x.shape.length < 2) throw new ShapeRuleError(`x must have rank 2 or more; got ${formatShape(x.shape)} (reshape a vector to [1, k])`);
      if (w.shape.length !== 2) throw new ShapeRuleError(`w must be a matrix; got ${formatShape(w.shape)}`);
      const [rows, cols] = w.shape;
      // kernels read w four values at a time along its rows
      if (cols % 4 !== 0) throw new ShapeRuleError(`w ${formatShape(w.shape)} ${w.dtype} needs a multiple of 4 values per row`);
      const k = x.shape[x.shape.length - 1];
      const [wk, n] = attrs.transposeB ? [cols, rows] : [rows, cols];
      if (k !== wk) {
        throw new ShapeRuleError(`inner dimensions differ: x is ${formatShape(x.shape)} (K = ${k}) and w is ${formatShape(w.shape)} ${attrs.transposeB ? '[N, K]' : '[K, N]'} (K = ${wk})`);
      }
      return { shape: [...x.shape.slice(0, -1), n], dtype: 'f32' };
    },
    evaluate: ([x, w], attrs, out) => {
      const k = x.shape[x.shape.length - 1];
      const n = out.shape[out.shape.length - 1];
      const m = x.data.length / k;
      const result = new Float64Array(m * n);
      // w[n, k] (transposeB) or w[k, n]
      const [sn, sk] = attrs.transposeB ? [k, 1] : [1, n];
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc += x.data[i * k + p] * w.data[j * sn + p * sk];
          result[i * n + j] = acc;
        }
      }
      return result;
    },
    lowering: {
      archetype: 'matmul',
      form: (_inputs, attrs) => ({ transposeA: false, transposeB: attrs.transposeB, extraViews: [], epilogue: (product) => ({ lets: [], result: product, helpers: [], ops: [] }), ops: ['matmulQuantized'] }),
    },
    term: attributeTerm<MatmulQuantizedAttrs>('MatmulQuantized', { transposeB: 'bool' }),
    grad: ({ g, inputs: [, w], dy, attrs }) => [g.matmulQuantized(dy, w, { transposeB: !attrs.transposeB }), undefined],
    flops: ([x], _attrs, out) => productFlops(out, x.shape[x.shape.length - 1]),
  } satisfies OpDef<MatmulQuantizedAttrs>,

  attention: {
    arity: 'variadic',
    summary: 'softmax(q·kᵀ·scale + mask)·v over the last two axes, batch axes broadcast as in matmul, in one kernel; optionally causal, optionally over a run-time count of keys',
    infer: attentionType,
    evaluate: evaluateAttention,
    lowering: { archetype: 'attention' },
    grad: attentionGrad,
    term: {
      ctor: 'Attention',
      sorts: ['f64', 'bool'],
      encode: (attrs) => [attrs.scale, attrs.causal ?? false],
      // causal only where set, as the builder records it
      decode: ([scale, causal]) => ({ scale, ...(causal ? { causal: true } : {}) }),
      optionalOperands: { required: 4, flags: ['keyCount'], omitAbsent: true },
    },
    flops: attentionFlops,
  } satisfies OpDef<AttentionAttrs>,

  // Convolution: the output and both gradients are products of the same taps (forEachTap),
  // each lowered as an implicit product through the tiled matmul kernel (lower/conv.ts).
  conv2d: {
    arity: 2,
    summary: '2-D convolution (cross-correlation) of NCHW x [N, C, H, W] with w [O, C/groups, KH, KW]; stride, padding, dilation, groups',
    infer: (inputs, attrs) => conv2dType(inputs, { ...attrs, scale: false, shift: false, activation: 'none', residual: false }),
    evaluate: ([x, w], attrs, out) => {
      const y = new Float64Array(elementCount(out.shape));
      forEachTap(convGeometry(x.shape, w.shape, attrs), (xi, wi, yi) => (y[yi] += x.data[xi] * w.data[wi]));
      return y;
    },
    lowering: { archetype: 'convolution', role: 'forward' },
    grad: ({ g, inputs: [x, w], dy, attrs }) => [
      g.conv2dBackwardInput(dy, w, { ...convAttrs(attrs), inputSize: [x.shape[2], x.shape[3]] }),
      g.conv2dBackwardWeight(x, dy, { ...convAttrs(attrs), kernelSize: [w.shape[2], w.shape[3]] }),
    ],
    term: convTerm('Conv2d', {}),
    flops: ([, w], _attrs, out) => productFlops(out, w.shape[1] * w.shape[2] * w.shape[3]),
  } satisfies OpDef<Conv2dAttrs>,
  conv2dBackwardInput: {
    arity: 2,
    summary: "conv2d's input gradient dx [N, C, H, W] from dy [N, O, OH, OW] and w: the transposed convolution of dy",
    infer: (inputs, attrs) => {
      checkF32(inputs, ['dy', 'w']);
      const g = convInputGradientGeometry(inputs[0].shape, inputs[1].shape, attrs);
      return { shape: [g.n, g.c, g.h, g.w], dtype: 'f32' };
    },
    evaluate: ([dy, w], attrs, out) => {
      const dx = new Float64Array(elementCount(out.shape));
      forEachTap(convInputGradientGeometry(dy.shape, w.shape, attrs), (xi, wi, yi) => (dx[xi] += dy.data[yi] * w.data[wi]));
      return dx;
    },
    lowering: { archetype: 'convolution', role: 'inputGradient' },
    // linear in each operand: dx = Tᵀ(dy, w), so dL/d(dy) = T(ddx, w) and dL/dw pairs ddx with dy
    grad: ({ g, inputs: [dy, w], dy: ddx, attrs }) => [
      g.conv2d(ddx, w, convAttrs(attrs)),
      g.conv2dBackwardWeight(ddx, dy, { ...convAttrs(attrs), kernelSize: [w.shape[2], w.shape[3]] }),
    ],
    flops: ([dy, w]) => productFlops({ shape: dy.shape, dtype: 'f32' }, w.shape[1] * w.shape[2] * w.shape[3]),
  } satisfies OpDef<Conv2dBackwardInputAttrs>,
  conv2dBackwardWeight: {
    arity: 2,
    summary: "conv2d's weight gradient dw [O, C/groups, KH, KW] from x [N, C, H, W] and dy [N, O, OH, OW]",
    infer: (inputs, attrs) => {
      checkF32(inputs, ['x', 'dy']);
      const g = convWeightGradientGeometry(inputs[0].shape, inputs[1].shape, attrs);
      return { shape: [g.o, g.cg, g.kh, g.kw], dtype: 'f32' };
    },
    evaluate: ([x, dy], attrs, out) => {
      const dw = new Float64Array(elementCount(out.shape));
      forEachTap(convWeightGradientGeometry(x.shape, dy.shape, attrs), (xi, wi, yi) => (dw[wi] += x.data[xi] * dy.data[yi]));
      return dw;
    },
    lowering: { archetype: 'convolution', role: 'weightGradient' },
    grad: ({ g, inputs: [x, dy], dy: ddw, attrs }) => [
      g.conv2dBackwardInput(dy, ddw, { ...convAttrs(attrs), inputSize: [x.shape[2], x.shape[3]] }),
      g.conv2d(x, ddw, convAttrs(attrs)),
    ],
    flops: ([, dy], _attrs, out) => productFlops({ shape: dy.shape, dtype: 'f32' }, out.shape[1] * out.shape[2] * out.shape[3]),
  } satisfies OpDef<Conv2dBackwardWeightAttrs>,

  // Pooling: windows of one channel each, as a depthwise convolution's (forEachTap).
  maxPool2d: {
    arity: 1,
    summary: 'maximum over each KH×KW window of NCHW x, per channel; stride, padding (never the maximum), dilation',
    infer: poolType,
    evaluate: ([x], attrs) => poolReference(x, attrs, 'max'),
    lowering: { archetype: 'window', role: 'max' },
    grad: ({ g, inputs: [x], dy, attrs }) => [g.maxPool2dBackward(dy, x, { ...attrs, inputSize: [x.shape[2], x.shape[3]] })],
    flops: (_inputs, attrs, out) => elementCount(out.shape) * attrs.kernel[0] * attrs.kernel[1],
  } satisfies OpDef<Pool2dAttrs>,
  // ONNX MaxPool's Indices output; integers carry no gradient
  maxPool2dIndices: {
    arity: 1,
    summary: "the flat NCHW index in x of each window's first maximal element (maxPool2d's argmax, as i32)",
    infer: (inputs, attrs) => ({ ...poolType(inputs, attrs), dtype: 'i32' }),
    evaluate: ([x], attrs) => Float64Array.from(firstMaxima(x, poolGeometry(x.shape, attrs))),
    lowering: { archetype: 'window', role: 'argmax' },
    grad: () => [undefined],
  } satisfies OpDef<Pool2dAttrs>,
  // not differentiable itself: like reluBackward, it routes dy by a comparison
  maxPool2dBackward: {
    arity: 2,
    summary: "maxPool2d's input gradient: each window's dy added at its first maximal element of x",
    infer: ([dy, x], attrs) => {
      checkF32([dy, x], ['dy', 'x']);
      const g = poolGradientGeometry(dy.shape, attrs);
      if (!sameShape(x.shape, [g.n, g.c, g.h, g.w])) throw new ShapeRuleError(`x ${formatShape(x.shape)} must be the pooled input ${formatShape([g.n, g.c, g.h, g.w])}`);
      return x;
    },
    evaluate: ([dy, x], attrs) => {
      const dx = new Float64Array(x.data.length);
      firstMaxima(x, poolGradientGeometry(dy.shape, attrs)).forEach((xi, yi) => (dx[xi] += dy.data[yi]));
      return dx;
    },
    lowering: { archetype: 'window', role: 'maxBackward' },
  } satisfies OpDef<PoolBackwardAttrs<Pool2dAttrs>>,
  avgPool2d: {
    arity: 1,
    summary: 'mean over each KH×KW window of NCHW x, per channel, dividing by KH·KW or (countIncludePad false) by the taps inside x',
    infer: (inputs, attrs) => {
      if (typeof attrs.countIncludePad !== 'boolean') throw new ShapeRuleError(`countIncludePad must be true or false; got ${attrs.countIncludePad}`);
      return poolType(inputs, attrs);
    },
    evaluate: ([x], attrs) => poolReference(x, attrs, 'avg', attrs.countIncludePad),
    lowering: { archetype: 'window', role: 'avg' },
    flops: (_inputs, attrs, out) => elementCount(out.shape) * attrs.kernel[0] * attrs.kernel[1],
    grad: ({ g, inputs: [x], dy, attrs }) => [g.avgPool2dBackward(dy, { ...attrs, inputSize: [x.shape[2], x.shape[3]] })],
  } satisfies OpDef<AvgPool2dAttrs>,
  avgPool2dBackward: {
    arity: 1,
    summary: "avgPool2d's input gradient: each window's dy, over its divisor, added at each of its elements",
    infer: ([dy], attrs) => {
      checkF32([dy], ['dy']);
      const g = poolGradientGeometry(dy.shape, attrs);
      return { shape: [g.n, g.c, g.h, g.w], dtype: 'f32' };
    },
    evaluate: ([dy], attrs, out) => {
      const g = poolGradientGeometry(dy.shape, attrs);
      const dx = new Float64Array(elementCount(out.shape));
      const divisor = new Float64Array(dy.data.length).fill(attrs.countIncludePad ? g.kh * g.kw : 0);
      if (!attrs.countIncludePad) forEachTap(g, (_xi, _wi, yi) => divisor[yi]++);
      forEachTap(g, (xi, _wi, yi) => (dx[xi] += dy.data[yi] / divisor[yi]));
      return dx;
    },
    lowering: { archetype: 'window', role: 'avgBackward' },
    // linear: its adjoint is the pooling itself
    grad: ({ g, dy: ddx, attrs }) => [g.avgPool2d(ddx, poolAttrsOf(attrs))],
  } satisfies OpDef<PoolBackwardAttrs<AvgPool2dAttrs>>,

  // Optimizer steps: one kernel per parameter updates it and its state in place (as
  // PyTorch's fused optimizers do). The last two operands are the hyper-parameter vector and
  // the step check: one value, non-finite when the loss or any gradient is, which makes the
  // update change nothing (the step is skipped, as torch.amp.GradScaler skips one).
  sgdUpdate: {
    arity: 5,
    summary: 'SGD step in place: v = momentum·v + (g + weightDecay·p); p -= lr·v; none if the check is not finite',
    infer: inferUpdate,
    evaluate: ([p, grad, v, h, check]) => {
      if (skipped(check)) return p.data;
      const hyper = hyperOf(h);
      const [lr, wd, momentum] = [hyper('lr'), hyper('weightDecay'), hyper('momentum')];
      for (let i = 0; i < p.data.length; i++) {
        v.data[i] = momentum * v.data[i] + grad.data[i] + wd * p.data[i];
        p.data[i] -= lr * v.data[i];
      }
      return p.data;
    },
    lowering: {
      archetype: 'update',
      body: ([p, grad, v], hyper) => `  let velocity = ${hyper('momentum')} * ${v} + ${grad} + ${hyper('weightDecay')} * ${p};
  ${v} = velocity;
  ${p} = ${p} - ${hyper('lr')} * velocity;`,
    },
    writes: [0, 2],
  } satisfies OpDef<NoAttrs>,
  adamUpdate: {
    arity: 6,
    summary: 'Adam (or AdamW, decoupled weight decay) step in place on p and its moments m, v; none if the check is not finite',
    infer: inferUpdate,
    evaluate: ([p, grad, m, v, h, check], attrs) => {
      if (skipped(check)) return p.data;
      const hyper = hyperOf(h);
      const [lr, b1, b2, eps, wd] = [hyper('lr'), hyper('beta1'), hyper('beta2'), hyper('eps'), hyper('weightDecay')];
      const [bc1, bc2] = [hyper('biasCorrection1'), hyper('biasCorrection2')];
      const [c1, c2] = [hyper('oneMinusBeta1'), hyper('oneMinusBeta2')];
      for (let i = 0; i < p.data.length; i++) {
        let gi = grad.data[i];
        if (attrs.decoupled) p.data[i] *= 1 - lr * wd;
        else gi += wd * p.data[i];
        m.data[i] = b1 * m.data[i] + c1 * gi;
        v.data[i] = b2 * v.data[i] + c2 * gi * gi;
        p.data[i] -= ((lr / bc1) * m.data[i]) / (Math.sqrt(v.data[i]) / Math.sqrt(bc2) + eps);
      }
      return p.data;
    },
    lowering: {
      archetype: 'update',
      body: ([p, grad, m, v], hyper, attrs) => {
        const decay = attrs.decoupled
          ? [`  let param = ${p} * (1.0 - ${hyper('lr')} * ${hyper('weightDecay')});`, `  let gradient = ${grad};`]
          : [`  let param = ${p};`, `  let gradient = ${grad} + ${hyper('weightDecay')} * param;`];
        return [
          ...decay,
          `  let m1 = ${hyper('beta1')} * ${m} + ${hyper('oneMinusBeta1')} * gradient;`,
          `  let v1 = ${hyper('beta2')} * ${v} + ${hyper('oneMinusBeta2')} * gradient * gradient;`,
          `  ${m} = m1;`,
          `  ${v} = v1;`,
          `  let denom = sqrt(v1) / sqrt(${hyper('biasCorrection2')}) + ${hyper('eps')};`,
          `  ${p} = param - (${hyper('lr')} / ${hyper('biasCorrection1')}) * m1 / denom;`,
        ].join('\n');
      },
    },
    writes: [0, 2, 3],
  } satisfies OpDef<AdamAttrs>,

  // Fusion's results: the optimizer rewrites chains of the ops above into these, so one
  // dispatch does the work of several. No gradient rules: fusion runs after autodiff.
  fusedPointwise: {
    arity: 'variadic',
    summary: 'several pointwise ops in one kernel: a program of table ops over the operands, scalars and earlier values',
    infer: (inputs, attrs): TensorType => {
      let shape: Shape = [];
      for (const t of programTypes(attrs.program, inputs, true)) {
        const next = broadcastShapes(shape, t.shape);
        if (!next) throw new ShapeRuleError(`values of shapes ${formatShape(shape)} and ${formatShape(t.shape)} do not broadcast`);
        shape = next;
      }
      return { shape, dtype: 'f32' };
    },
    evaluate: (args, attrs, out) => broadcastRef(evaluateProgram(attrs.program, args), out.shape),
    lowering: { archetype: 'pointwiseChain', chain: (x, attrs) => renderProgram(attrs.program, x) },
    flops: (_inputs, attrs, out) => attrs.program.length * elementCount(out.shape),
  } satisfies OpDef<FusedPointwiseAttrs>,
  fusedMatmul: {
    arity: 'variadic',
    summary: 'rope(swiglu(gate, act(op(norm(a))·op(b) + bias)) + residual) in one matmul kernel; op may transpose, norm (RMSNorm of A\'s rows), bias, activation, gate, residual and rope (rotary embedding of heads, at positions per row) optional; with a cache operand the value is stored into the KV cache at its offset (cacheWrite fused) and the result is the cache; b may be a packed weight [N, K] or [K, N] (matmulQuantized\'s, dequantized as read)',
    infer: fusedMatmulType,
    evaluate: evaluateFusedMatmul,
    lowering: { archetype: 'matmul', form: fusedMatmulForm },
    term: {
      ctor: 'FusedMatmul',
      // the rotation as "<shape>|<rope's term>", "" for none: what fuse-rope.egg concatenates
      // and the cache's rows as a shape, "" for no cache write (fuse-cache.egg takes a reshape's)
      sorts: ['bool', 'bool', 'String', 'f64', 'String', 'String'],
      encode: (attrs) => [
        attrs.transposeA,
        attrs.transposeB,
        attrs.activation,
        attrs.eps,
        attrs.rotation ? `${commaList(attrs.rotation.shape)}|${ropeTerm(attrs.rotation)}` : '',
        attrs.rows ? commaList(attrs.rows) : '',
      ],
      decode: ([transposeA, transposeB, activation, eps, rotation, rows]) => {
        const bar = String(rotation).indexOf('|');
        return {
          transposeA,
          transposeB,
          activation,
          eps,
          ...(rotation ? { rotation: { shape: fromCommaList(String(rotation).slice(0, bar)), ...JSON.parse(String(rotation).slice(bar + 1)) } } : {}),
          ...(rows ? { rows: fromCommaList(rows) } : {}),
        };
      },
      optionalOperands: { required: 2, flags: ['bias', 'gate', 'residual', 'rope', 'norm', 'offsets', 'cache'] },
    },
    flops: ([a], attrs, out) => productFlops(attrs.cache && attrs.rows ? { shape: attrs.rows, dtype: 'f32' } : out, attrs.transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1]),
    storesIntoLast: (attrs) => attrs.cache,
  } satisfies OpDef<FusedMatmulAttrs>,
  fusedConv2d: {
    arity: 'variadic',
    summary: 'act(conv2d(x, w) × scale + shift) + residual in one kernel; scale and shift [O, 1, 1] per output channel, each part optional',
    infer: conv2dType,
    evaluate: (args, attrs, out) => {
      const conv: RefTensor = { data: opDef('conv2d').evaluate(args.slice(0, 2), convAttrs(attrs), out), shape: out.shape };
      return broadcastRef(evaluateProgram(convEpilogueProgram(attrs), [conv, ...args.slice(2)]), out.shape);
    },
    lowering: { archetype: 'convolution', role: 'forward' },
    term: { ...convTerm<FusedConv2dAttrs>('FusedConv2d', { activation: 'String' }), optionalOperands: { required: 2, flags: ['scale', 'shift', 'residual'] } },
    flops: ([, w], _attrs, out) => productFlops(out, w.shape[1] * w.shape[2] * w.shape[3]),
  } satisfies OpDef<FusedConv2dAttrs>,
};

// fusedMatmul's rules, outside the table so their types do not depend on it.

/** Operands [a, b, bias?, gate?, residual?, positions?, norm weight?]: the product's shape rule on the (transposed) reads, then the norm's, the epilogue's and the rope's. */
function fusedMatmulType(inputs: readonly TensorType[], attrs: FusedMatmulAttrs): TensorType {
  for (const flag of ['transposeA', 'transposeB', 'bias', 'gate', 'residual', 'rope', 'norm'] as const) {
    if (typeof attrs[flag] !== 'boolean') throw new ShapeRuleError(`${flag} must be true or false; got ${attrs[flag]}`);
  }
  if (attrs.activation !== 'none' && !EPILOGUE_ACTIVATIONS.has(attrs.activation)) {
    throw new ShapeRuleError(`activation '${attrs.activation}' is not one of ${MATMUL_ACTIVATIONS.join(', ')}`);
  }
  for (const flag of ['offsets', 'cache'] as const) {
    if (typeof attrs[flag] !== 'boolean') throw new ShapeRuleError(`${flag} must be true or false; got ${attrs[flag]}`);
  }
  const names = [
    'a',
    'b',
    ...(attrs.bias ? ['bias'] : []),
    ...(attrs.gate ? ['gate'] : []),
    ...(attrs.residual ? ['residual'] : []),
    ...(attrs.rope ? ['positions'] : []),
    ...(attrs.norm ? ['norm weight'] : []),
    ...(attrs.offsets ? ['offsets'] : []),
    ...(attrs.cache ? ['cache'] : []),
  ];
  if (inputs.length !== names.length) throw new ShapeRuleError(`takes ${names.length} operands (${names.join(', ')}); got ${inputs.length}`);
  const packed = isWeightDType(inputs[1].dtype);
  for (const [k, t] of inputs.entries()) {
    if (names[k] !== 'positions' && names[k] !== 'offsets' && t.dtype !== 'f32' && !(k === 1 && packed)) throw new ShapeRuleError(`${names[k]} is ${t.dtype}; expected f32`);
  }
  const [a, b] = inputs;
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new ShapeRuleError(`a and b must have rank 2 or more; got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  if (packed) packedProductType(inputs, attrs);
  // a packed B's values are f32 once read
  const [opA, opB] = productOperands([a, { ...b, dtype: 'f32' }], attrs);
  let product: TensorType;
  try {
    product = opDef('matmul').infer([opA, opB], {});
  } catch (e) {
    const read = (on: boolean, t: TensorType) => (on ? ` (read transposed: ${formatShape(t.shape)})` : '');
    if (e instanceof ShapeRuleError && (attrs.transposeA || attrs.transposeB)) {
      throw new ShapeRuleError(`${e.message}; a ${formatShape(a.shape)}${read(attrs.transposeA, opA)}, b ${formatShape(b.shape)}${read(attrs.transposeB, opB)}`);
    }
    throw e;
  }
  const n = product.shape[product.shape.length - 1];
  if (attrs.bias && !sameShape(inputs[2].shape, [n])) {
    throw new ShapeRuleError(`bias must have shape [${n}] (the product's last axis, ${formatShape(product.shape)}); got ${formatShape(inputs[2].shape)}`);
  }
  const extras = inputs.slice(2, 2 + epilogueOperandCount(attrs));
  if (attrs.gate) {
    const gate = extras[Number(attrs.bias)];
    if (!sameShape(gate.shape, product.shape)) throw new ShapeRuleError(`gate must have the product's shape ${formatShape(product.shape)}; got ${formatShape(gate.shape)}`);
  }
  if (attrs.residual) {
    const residual = extras[extras.length - 1];
    const shape = broadcastShapes(residual.shape, product.shape);
    if (!shape || !sameShape(shape, product.shape)) {
      throw new ShapeRuleError(`residual ${formatShape(residual.shape)} does not broadcast to the product's shape ${formatShape(product.shape)}`);
    }
  }
  if (attrs.norm) {
    const k = opA.shape[opA.shape.length - 1];
    const weight = inputs[fusedOperandIndex(attrs, 'norm')];
    if (attrs.transposeA) throw new ShapeRuleError('a normed product reads A as stored (rows along K), not transposed');
    if (!sameShape(weight.shape, [k])) throw new ShapeRuleError(`the norm's weight must have shape [${k}] (A's rows, ${formatShape(a.shape)}); got ${formatShape(weight.shape)}`);
    const m = opA.shape[opA.shape.length - 2];
    if (m > NORMED_PRODUCT_ROWS) throw new ShapeRuleError(`a normed product takes at most ${NORMED_PRODUCT_ROWS} rows a matrix (the small-M kernel computes each row's norm); A has ${m}`);
    if (!(typeof attrs.eps === 'number' && Number.isFinite(attrs.eps) && attrs.eps >= 0)) throw new ShapeRuleError(`eps must be a finite number ≥ 0; got ${attrs.eps}`);
  }
  programTypes(epilogueProgram(attrs), [product, ...extras], false);
  if (attrs.rope || attrs.rotation) rotationType(product, opA, inputs[fusedOperandIndex(attrs, 'positions')], attrs);
  if (attrs.offsets || attrs.cache || attrs.rows) return cachedType(product, opA, inputs, attrs);
  return product;
}

/**
 * A B held packed (matmulQuantized's weight, ggml blocks, f16, bf16), as the kernels read it: a
 * product with something fused, a matrix of whole rows of four values, A read as stored; a
 * normed, rope'd or cache-writing product with B [N, K] read transposed, a normed one in the
 * matrix-vector kernel's rows (at most NORMED_PRODUCT_ROWS, x's batch axes folded in).
 */
function packedProductType(inputs: readonly TensorType[], attrs: FusedMatmulAttrs): void {
  const [a, b] = inputs;
  // with nothing fused it is matmulQuantized, which the optimizer keeps: one op, so one kernel, for
  // every such product (the two would cost the same, and extraction would take either)
  if (!(attrs.bias || attrs.gate || attrs.residual || attrs.norm || attrs.rope || attrs.cache || attrs.activation !== 'none')) {
    throw new ShapeRuleError(`a product of a packed b (${b.dtype}) with nothing fused is matmulQuantized`);
  }
  if (b.shape.length !== 2) throw new ShapeRuleError(`a packed b (${b.dtype}) must be a matrix; got ${formatShape(b.shape)}`);
  if (b.shape[1] % 4 !== 0) throw new ShapeRuleError(`b ${formatShape(b.shape)} ${b.dtype} needs a multiple of 4 values per row`);
  if (attrs.transposeA) throw new ShapeRuleError(`a product of a packed b (${b.dtype}) reads A as stored, not transposed`);
  if (attrs.norm || attrs.rope || attrs.cache) {
    const fused = attrs.norm ? 'a normed' : attrs.rope ? "a rope'd" : 'a cache-writing';
    if (!attrs.transposeB) throw new ShapeRuleError(`${fused} product of a packed b (${b.dtype}) reads it as [N, K], transposed`);
  }
  const rows = elementCount(a.shape) / a.shape[a.shape.length - 1];
  if (attrs.norm && rows > NORMED_PRODUCT_ROWS) {
    throw new ShapeRuleError(`a normed product of a packed b (${b.dtype}) takes at most ${NORMED_PRODUCT_ROWS} rows of A in all (the quantized matrix-vector kernel's); A has ${rows}`);
  }
}

/**
 * The cache write of a product's value: cacheWrite's rule on the value viewed as `rows` (any
 * view of its elements in order; every product kernel stores through the cache's addresses);
 * the result is the cache's type.
 */
function cachedType(product: TensorType, opA: TensorType, inputs: readonly TensorType[], attrs: FusedMatmulAttrs): TensorType {
  const rows = attrs.rows;
  if (!attrs.offsets || !attrs.cache || !rows) throw new ShapeRuleError('a cache write needs its offsets and cache operands and its rows attribute');
  if (!Array.isArray(rows) || !rows.every((d) => Number.isInteger(d) && d > 0) || elementCount(rows) !== elementCount(product.shape)) {
    throw new ShapeRuleError(`rows must view the product ${formatShape(product.shape)} (the same number of elements); got ${JSON.stringify(rows)}`);
  }
  const cache = inputs[fusedOperandIndex(attrs, 'cache')];
  return cacheWriteType([cache, { shape: rows, dtype: 'f32' }, inputs[fusedOperandIndex(attrs, 'offsets')]]);
}

/**
 * The rope of a product's epilogue: rope's own rule on the product viewed as heads, and what
 * the kernels take: the view splits the last axis only, into heads of d = a multiple of 4
 * features with rotaryDim one too (each group of 4 columns the kernel computes is two rotated
 * pairs), the positions one per row (the same for every head) and B read transposed (the
 * columns of a pair are B's stored rows, read in pair order).
 */
function rotationType(product: TensorType, opA: TensorType, positions: TensorType | undefined, attrs: FusedMatmulAttrs): void {
  const r = attrs.rotation;
  if (!attrs.rope || !r || !positions) throw new ShapeRuleError('rope needs both its positions operand and its rotation attributes');
  if (!Array.isArray(r.shape) || !r.shape.every((d) => Number.isInteger(d) && d > 0)) throw new ShapeRuleError(`rotation.shape must be a list of positive integers; got ${JSON.stringify(r.shape)}`);
  const d = r.shape[r.shape.length - 1];
  const n = product.shape[product.shape.length - 1];
  const heads = [...product.shape.slice(0, -1), n / d];
  if (!sameShape(r.shape, [...heads, d])) {
    throw new ShapeRuleError(`a rope in the epilogue sees the product ${formatShape(product.shape)} as heads [.., M, N/d, d]; got ${formatShape(r.shape)}`);
  }
  const { shape: _shape, ...ropeAttrs } = r;
  ropeType([{ shape: r.shape, dtype: 'f32' }, positions], ropeAttrs);
  if (d % 4 !== 0 || r.rotaryDim % 4 !== 0) throw new ShapeRuleError(`a rope in the epilogue needs heads and rotary features in multiples of 4; got d ${d}, rotaryDim ${r.rotaryDim}`);
  if (positions.shape.length > 0 && positions.shape[positions.shape.length - 1] !== 1 && n / d !== 1) {
    throw new ShapeRuleError(`a rope in the epilogue takes one position per row (the same for every head); positions ${formatShape(positions.shape)}`);
  }
  if (!attrs.transposeB) throw new ShapeRuleError('a rope in the epilogue reads B transposed (stored [.., N, K])');
}

/** `x` with its last two axes swapped where `transposed` (transpose's own reference), else `x`. */
function readTransposed(x: RefTensor, transposed: boolean): RefTensor {
  if (!transposed) return x;
  const perm = swapLastTwo(x.shape.length);
  const shape = perm.map((p) => x.shape[p]);
  return { data: opDef('transpose').evaluate([x], { perm }, { shape, dtype: 'f32' }), shape };
}

/** The CPU reference, composed of transpose's, matmul's and the epilogue ops' own. */
function evaluateFusedMatmul(args: readonly RefTensor[], attrs: FusedMatmulAttrs, out: TensorType): RefArray {
  let a = args[0];
  if (attrs.norm) {
    const type: TensorType = { shape: a.shape, dtype: 'f32' };
    a = { data: opDef('rmsNorm').evaluate([a, args[fusedOperandIndex(attrs, 'norm')]], { eps: attrs.eps }, type), shape: a.shape };
  }
  const productType: TensorType = attrs.cache ? productTypeOf(args, attrs) : out;
  const product: RefTensor = {
    data: opDef('matmul').evaluate([readTransposed(a, attrs.transposeA), readTransposed(args[1], attrs.transposeB)], {}, productType),
    shape: productType.shape,
  };
  const epilogue = evaluateProgram(epilogueProgram(attrs), [product, ...args.slice(2, 2 + epilogueOperandCount(attrs))]);
  let value = broadcastRef(epilogue, productType.shape);
  if (attrs.rope) {
    const { shape, ...rope } = attrs.rotation!;
    value = opDef('rope').evaluate([{ data: value, shape }, args[fusedOperandIndex(attrs, 'positions')]], rope, { shape, dtype: 'f32' });
  }
  if (!attrs.cache) return value;
  // cacheWrite's reference writes the cache operand's values in place, as its kernel does
  const rows: RefTensor = { data: value, shape: attrs.rows! };
  return opDef('cacheWrite').evaluate([args[fusedOperandIndex(attrs, 'cache')], rows, args[fusedOperandIndex(attrs, 'offsets')]], {}, out);
}

/** The product's type (transposed reads as asked), where the node's own is another's (a cache's). */
function productTypeOf(operands: readonly { shape: Shape }[], attrs: FusedMatmulAttrs): TensorType {
  const [a, b] = productOperands(operands.slice(0, 2).map((t) => ({ shape: t.shape, dtype: 'f32' as const })), attrs);
  return opDef('matmul').infer([a, b], {});
}

/** The kernel: transposed tile loads as asked, and the epilogue program on each output value. */
function fusedMatmulForm(inputs: readonly TensorType[], attrs: FusedMatmulAttrs, result: TensorType): MatmulForm {
  // the product's value; a cache write's result is the cache
  const out = attrs.cache ? productTypeOf(inputs, attrs) : result;
  const rank = out.shape.length;
  const extraViews: OperandView[] = [];
  if (attrs.bias) extraViews.push({ strides: out.shape.map((_, d) => (d === rank - 1 ? 1 : 0)), offset: 0 });
  if (attrs.gate) extraViews.push({ strides: stridesOf(out.shape), offset: 0 });
  if (attrs.residual) extraViews.push({ strides: broadcastStrides(inputs[1 + epilogueOperandCount(attrs)].shape, out.shape), offset: 0 });
  const program = epilogueProgram(attrs);
  return {
    transposeA: attrs.transposeA,
    transposeB: attrs.transposeB,
    extraViews,
    epilogue: (product, extra) => renderProgram(program, [product, ...extra]),
    ...(attrs.norm ? { norm: { eps: attrs.eps, operand: fusedOperandIndex(attrs, 'norm') } } : {}),
    ...(attrs.rope ? { rope: rotationForm(inputs, fusedOperandIndex(attrs, 'positions'), attrs.rotation!) } : {}),
    ...(attrs.cache ? { cache: { product: out.shape, helper: cacheIndexHelper(inputs[fusedOperandIndex(attrs, 'cache')], attrs.rows!, inputs[fusedOperandIndex(attrs, 'offsets')], fusedOperandIndex(attrs, 'offsets')) } } : {}),
    ops: [
      ...(attrs.norm ? ['rmsNorm'] : []),
      // a packed B is matmulQuantized's weight, [N, K] as the layer stores it or [K, N]
      ...(isWeightDType(inputs[1].dtype) ? ['matmulQuantized'] : [...(attrs.transposeA || attrs.transposeB ? ['transpose'] : []), 'matmul']),
      ...program.map((ins) => ins.op),
      ...(attrs.rope ? ['rope'] : []),
      ...(attrs.cache ? ['cacheWrite'] : []),
    ],
  };
}

/**
 * WGSL `cache_index(f)`: where cacheWrite puts element f of its rows (the product's flat
 * element), or CACHE_DROPPED past the cache's end; offsets in binding `in${binding}`. As
 * lower/row-write.ts: an f32 offset truncated toward zero, a negative one clamped to 0.
 */
function cacheIndexHelper(cache: TensorType, rows: Shape, offsets: TensorType, binding: number): string {
  const [s, d] = cache.shape.slice(-2);
  const t = rows[rows.length - 2];
  const perRow = cacheWritesPerRow(cache.shape, rows, offsets.shape);
  const at = `in${binding}[${perRow ? 'row' : '0u'}]`;
  const start = offsets.dtype === 'f32' ? `u32(max(${at}, 0.0))` : offsets.dtype === 'i32' ? `u32(max(${at}, 0))` : at;
  const body = perRow
    ? ['  let row = f / CACHE_D;', `  let dst = ${start};`, `  if (dst >= ${u32Literal(elementCount(cache.shape) / d)}) {`, '    return CACHE_DROPPED;', '  }', '  return dst * CACHE_D + f % CACHE_D;']
    : [
        `  let row = (f / CACHE_D) % ${u32Literal(t)};`,
        `  let dst = ${start} + row;`,
        `  if (dst >= ${u32Literal(s)}) {`,
        '    return CACHE_DROPPED;',
        '  }',
        `  return ((f / ${u32Literal(t * d)}) * ${u32Literal(s)} + dst) * CACHE_D + f % CACHE_D;`,
      ];
  return [
    `// the cache element of the product's element f (rows ${formatShape(rows)}, ${perRow ? 'one offset per row' : 'from one offset'}), as cacheWrite`,
    'const CACHE_DROPPED: u32 = 0xffffffffu;',
    `const CACHE_D: u32 = ${u32Literal(d)};`,
    'fn cache_index(f: u32) -> u32 {',
    ...body,
    '}',
  ].join('\n');
}

/** The epilogue rope as the kernels take it: the positions read per row of the output, rope's helpers. */
function rotationForm(inputs: readonly TensorType[], operand: number, rotation: FusedRotation): NonNullable<MatmulForm['rope']> {
  const { shape, ...rope } = rotation;
  const positions = inputs[operand];
  // positions broadcast over the heads' rows [.., M, N/d]; the head axis's stride is 0 (the shape rule), so it stands for the column's
  const strides = broadcastStrides(positions.shape, shape.slice(0, -1));
  return {
    operand,
    view: { strides: [...strides.slice(0, -1), 0], offset: 0 },
    width: shape[shape.length - 1],
    rotaryDim: rope.rotaryDim,
    inverse: rope.inverse,
    helpers: ropeHelpers(rope),
  };
}

// convolution's rules, outside the table so their types do not depend on it.

/** Which product of a convolution a kernel computes: the output, dL/dx (a transposed convolution) or dL/dw. */
export type ConvRole = 'forward' | 'inputGradient' | 'weightGradient';

/** Every size of a grouped 2-D convolution: input [N, C, H, W], weight [O, CG, KH, KW], output [N, O, OH, OW]. */
export interface ConvGeometry extends Conv2dAttrs {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  /** channels per group: C / groups inputs, O / groups outputs */
  cg: number;
  og: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
}

function checkConvAttrs(attrs: Conv2dAttrs): void {
  const ints = (name: string, v: unknown, length: number, min: number) => {
    if (!Array.isArray(v) || v.length !== length || !v.every((d) => Number.isInteger(d) && d >= min)) {
      throw new ShapeRuleError(`${name} must be ${length} integers ≥ ${min}; got ${JSON.stringify(v)}`);
    }
  };
  ints('stride', attrs.stride, 2, 1);
  ints('padding', attrs.padding, 4, 0);
  ints('dilation', attrs.dilation, 2, 1);
  if (!Number.isInteger(attrs.groups) || attrs.groups < 1) throw new ShapeRuleError(`groups must be a positive integer; got ${attrs.groups}`);
}

/** The sizes of the convolution of an input of shape `x` with a weight of shape `w`: the shape rule of the three convolution ops. */
export function convGeometry(x: Shape, w: Shape, attrs: Conv2dAttrs): ConvGeometry {
  checkConvAttrs(attrs);
  if (x.length !== 4) throw new ShapeRuleError(`the input must be NCHW [N, C, H, W]; got ${formatShape(x)}`);
  if (w.length !== 4) throw new ShapeRuleError(`the weight must be [O, C/groups, KH, KW]; got ${formatShape(w)}`);
  const [n, c, h, width] = x;
  const [o, cg, kh, kw] = w;
  const { groups } = attrs;
  if (c % groups !== 0) throw new ShapeRuleError(`input channels C = ${c} (input ${formatShape(x)}) are not divisible by groups = ${groups}`);
  if (o % groups !== 0) throw new ShapeRuleError(`output channels O = ${o} (weight ${formatShape(w)}) are not divisible by groups = ${groups}`);
  if (cg !== c / groups) {
    throw new ShapeRuleError(`weight ${formatShape(w)} must have C / groups = ${c / groups} channels on axis 1 (input ${formatShape(x)}, groups ${groups}); got ${cg}`);
  }
  const [pt, pl, pb, pr] = attrs.padding;
  const spanH = attrs.dilation[0] * (kh - 1) + 1;
  const spanW = attrs.dilation[1] * (kw - 1) + 1;
  if (h + pt + pb < spanH || width + pl + pr < spanW) {
    throw new ShapeRuleError(
      `the kernel's window ${spanH}×${spanW} (weight ${formatShape(w)}, dilation ${attrs.dilation.join('×')}) is larger than the padded input ${h + pt + pb}×${width + pl + pr} (input ${formatShape(x)}, padding ${attrs.padding.join(', ')})`,
    );
  }
  const oh = Math.floor((h + pt + pb - spanH) / attrs.stride[0]) + 1;
  const ow = Math.floor((width + pl + pr - spanW) / attrs.stride[1]) + 1;
  return { ...convAttrs(attrs), n, c, h, w: width, o, cg, og: o / groups, kh, kw, oh, ow };
}

/** The window attributes alone (a gradient op's attributes less its own). */
export const convAttrs = (a: Conv2dAttrs): Conv2dAttrs => ({ stride: a.stride, padding: a.padding, dilation: a.dilation, groups: a.groups });

function checkSize(name: string, v: unknown): asserts v is readonly [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((d) => Number.isInteger(d) && d >= 1)) throw new ShapeRuleError(`${name} must be 2 positive integers; got ${JSON.stringify(v)}`);
}

/** The input gradient's geometry from dy [N, O, OH, OW], w and the input's [H, W], checking dy is that convolution's output. */
export function convInputGradientGeometry(dy: Shape, w: Shape, attrs: Conv2dBackwardInputAttrs): ConvGeometry {
  checkSize('inputSize', attrs.inputSize);
  if (dy.length !== 4 || w.length !== 4) throw new ShapeRuleError(`dy must be [N, O, OH, OW] and the weight [O, C/groups, KH, KW]; got ${formatShape(dy)} and ${formatShape(w)}`);
  const geometry = convGeometry([dy[0], w[1] * attrs.groups, ...attrs.inputSize], w, attrs);
  const expected = [geometry.n, geometry.o, geometry.oh, geometry.ow];
  if (!sameShape(dy, expected)) {
    throw new ShapeRuleError(`dy ${formatShape(dy)} is not the output ${formatShape(expected)} of a convolution of an input of ${attrs.inputSize.join('×')} with weight ${formatShape(w)}`);
  }
  return geometry;
}

/** The weight gradient's geometry from x, dy [N, O, OH, OW] and the kernel's [KH, KW], checking dy is that convolution's output. */
export function convWeightGradientGeometry(x: Shape, dy: Shape, attrs: Conv2dBackwardWeightAttrs): ConvGeometry {
  checkSize('kernelSize', attrs.kernelSize);
  if (x.length !== 4 || dy.length !== 4) throw new ShapeRuleError(`x must be [N, C, H, W] and dy [N, O, OH, OW]; got ${formatShape(x)} and ${formatShape(dy)}`);
  if (x[1] % attrs.groups !== 0) throw new ShapeRuleError(`input channels C = ${x[1]} (x ${formatShape(x)}) are not divisible by groups = ${attrs.groups}`);
  const geometry = convGeometry(x, [dy[1], x[1] / attrs.groups, ...attrs.kernelSize], attrs);
  const expected = [geometry.n, geometry.o, geometry.oh, geometry.ow];
  if (!sameShape(dy, expected)) {
    throw new ShapeRuleError(`dy ${formatShape(dy)} is not the output ${formatShape(expected)} of a convolution of x ${formatShape(x)} with a ${attrs.kernelSize.join('×')} kernel`);
  }
  return geometry;
}

/**
 * Calls `tap` with the flat indices (x, w, y) of every product the convolution sums:
 * y[n, o, oh, ow] += x[n, g·CG + c, oh·sh - pt + kh·dh, ow·sw - pl + kw·dw] · w[o, c, kh, kw],
 * g = o / OG, skipping taps in the padding. The output and both gradients are this one
 * bilinear form summed over different indices, so all three references share it.
 */
function forEachTap(g: ConvGeometry, tap: (xi: number, wi: number, yi: number) => void): void {
  const [sh, sw] = g.stride;
  const [pt, pl] = g.padding;
  const [dh, dw] = g.dilation;
  for (let n = 0; n < g.n; n++) {
    for (let o = 0; o < g.o; o++) {
      const firstChannel = Math.floor(o / g.og) * g.cg;
      for (let oh = 0; oh < g.oh; oh++) {
        for (let ow = 0; ow < g.ow; ow++) {
          const yi = ((n * g.o + o) * g.oh + oh) * g.ow + ow;
          for (let c = 0; c < g.cg; c++) {
            for (let kh = 0; kh < g.kh; kh++) {
              const ih = oh * sh - pt + kh * dh;
              if (ih < 0 || ih >= g.h) continue;
              for (let kw = 0; kw < g.kw; kw++) {
                const iw = ow * sw - pl + kw * dw;
                if (iw < 0 || iw >= g.w) continue;
                tap(((n * g.c + firstChannel + c) * g.h + ih) * g.w + iw, ((o * g.cg + c) * g.kh + kh) * g.kw + kw, yi);
              }
            }
          }
        }
      }
    }
  }
}

/** Shape rule of conv2d and fusedConv2d: operands x, w, then scale [O, 1, 1], shift [O, 1, 1] and a residual where the attributes say. */
function conv2dType(inputs: readonly TensorType[], attrs: FusedConv2dAttrs): TensorType {
  for (const flag of ['scale', 'shift', 'residual'] as const) {
    if (typeof attrs[flag] !== 'boolean') throw new ShapeRuleError(`${flag} must be true or false; got ${attrs[flag]}`);
  }
  if (attrs.activation !== 'none' && !EPILOGUE_ACTIVATIONS.has(attrs.activation)) {
    throw new ShapeRuleError(`activation '${attrs.activation}' is not one of ${MATMUL_ACTIVATIONS.join(', ')}`);
  }
  const names = ['x', 'w', ...(attrs.scale ? ['scale'] : []), ...(attrs.shift ? ['shift'] : []), ...(attrs.residual ? ['residual'] : [])];
  if (inputs.length !== names.length) throw new ShapeRuleError(`takes ${names.length} operands (${names.join(', ')}); got ${inputs.length}`);
  checkF32(inputs, names);
  const g = convGeometry(inputs[0].shape, inputs[1].shape, attrs);
  const out = [g.n, g.o, g.oh, g.ow];
  for (const [k, name] of names.entries()) {
    if ((name === 'scale' || name === 'shift') && !sameShape(inputs[k].shape, [g.o, 1, 1])) {
      throw new ShapeRuleError(`${name} must have shape [${g.o}, 1, 1] (one value per output channel of weight ${formatShape(inputs[1].shape)}); got ${formatShape(inputs[k].shape)}`);
    }
    if (name === 'residual') {
      const shape = broadcastShapes(inputs[k].shape, out);
      if (!shape || !sameShape(shape, out)) throw new ShapeRuleError(`residual ${formatShape(inputs[k].shape)} does not broadcast to the output's shape ${formatShape(out)}`);
    }
  }
  return { shape: out, dtype: 'f32' };
}

/** fusedConv2d's epilogue as a fused program over [the convolution's value, scale?, shift?, residual?]. */
export function convEpilogueProgram(attrs: Pick<FusedConv2dAttrs, 'scale' | 'shift' | 'activation' | 'residual'>): FusedInstruction[] {
  const program: FusedInstruction[] = [];
  let next = 1;
  const last = (): FusedArg => (program.length > 0 ? { value: program.length - 1 } : { operand: 0 });
  if (attrs.scale) program.push({ op: 'mul', args: [last(), { operand: next++ }] });
  if (attrs.shift) program.push({ op: 'add', args: [last(), { operand: next++ }] });
  if (attrs.activation !== 'none') {
    const { op, attrs: opAttrs } = EPILOGUE_ACTIVATIONS.get(attrs.activation)!;
    program.push({ op, args: [last()], attrs: opAttrs });
  }
  if (attrs.residual) program.push({ op: 'add', args: [last(), { operand: next++ }] });
  return program;
}

/** A convolution's constructor: the window as strings ("1,1") and groups, then `extra` attributes. */
function convTerm<A extends Conv2dAttrs>(ctor: string, extra: { readonly [K in keyof A & string]?: string }): TermForm<A> {
  const names = Object.keys(extra) as (keyof A & string)[];
  return {
    ctor,
    sorts: ['String', 'String', 'String', 'i64', ...names.map((n) => extra[n]!)],
    encode: (attrs) => [commaList(attrs.stride), commaList(attrs.padding), commaList(attrs.dilation), attrs.groups, ...names.map((n) => attrs[n] as TermValue)],
    decode: ([stride, padding, dilation, groups, ...rest]) => ({
      stride: fromCommaList(stride),
      padding: fromCommaList(padding),
      dilation: fromCommaList(dilation),
      groups,
      ...Object.fromEntries(names.map((n, i) => [n, rest[i]])),
    }),
  };
}

function checkF32(inputs: readonly TensorType[], names: readonly string[]): void {
  for (const [k, t] of inputs.entries()) if (t.dtype !== 'f32') throw new ShapeRuleError(`${names[k]} is ${t.dtype}; expected f32`);
}

// pooling's rules, outside the table so their types do not depend on it.

/** Which pooling a window kernel computes: the pooled value, or the gradient it passes back to its input. */
export type PoolRole = 'max' | 'avg' | 'maxBackward' | 'avgBackward' | 'argmax';

/** A pooling window's geometry over input [N, C, H, W]: a depthwise convolution's, weight [C, 1, KH, KW], groups C. */
export function poolGeometry(x: Shape, attrs: Pool2dAttrs): ConvGeometry {
  checkSize('kernel', attrs.kernel);
  if (x.length !== 4) throw new ShapeRuleError(`the input must be NCHW [N, C, H, W]; got ${formatShape(x)}`);
  const geometry = convGeometry(x, [x[1], 1, ...attrs.kernel], { stride: attrs.stride, padding: attrs.padding, dilation: attrs.dilation, groups: x[1] });
  // every window must hold at least one element of the input, or its max (and a mean that
  // leaves padding out) would have nothing to take: PyTorch keeps padding to half the window,
  // ONNX to the window less one; this is the exact condition, per axis and window
  const [pt, pl] = attrs.padding;
  const axes = [
    { axis: 'H', size: x[2], out: geometry.oh, begin: pt, stride: attrs.stride[0], dilation: attrs.dilation[0], taps: attrs.kernel[0] },
    { axis: 'W', size: x[3], out: geometry.ow, begin: pl, stride: attrs.stride[1], dilation: attrs.dilation[1], taps: attrs.kernel[1] },
  ];
  for (const a of axes) {
    for (let o = 0; o < a.out; o++) {
      const first = o * a.stride - a.begin;
      let touches = false;
      for (let j = 0; j < a.taps && !touches; j++) touches = first + j * a.dilation >= 0 && first + j * a.dilation < a.size;
      if (!touches) {
        throw new ShapeRuleError(`padding ${attrs.padding.join(', ')} leaves window ${o} along ${a.axis} (of ${a.out}) without an element of the input ${formatShape(x)}`);
      }
    }
  }
  return geometry;
}

/** A pooling gradient's geometry, checking dy [N, C, OH, OW] is the pooled output of an input of `inputSize`. */
function poolGradientGeometry(dy: Shape, attrs: PoolBackwardAttrs<Pool2dAttrs>): ConvGeometry {
  checkSize('inputSize', attrs.inputSize);
  if (dy.length !== 4) throw new ShapeRuleError(`dy must be [N, C, OH, OW]; got ${formatShape(dy)}`);
  const geometry = poolGeometry([dy[0], dy[1], ...attrs.inputSize], attrs);
  const expected = [geometry.n, geometry.c, geometry.oh, geometry.ow];
  if (!sameShape(dy, expected)) throw new ShapeRuleError(`dy ${formatShape(dy)} is not the output ${formatShape(expected)} of pooling an input of ${attrs.inputSize.join('×')}`);
  return geometry;
}

/** The pooled value per window (max, or the mean with the chosen divisor) from its taps. */
function poolReference(x: RefTensor, attrs: Pool2dAttrs, kind: 'max' | 'avg', countIncludePad = true): RefArray {
  const g = poolGeometry(x.shape, attrs);
  const size = g.n * g.c * g.oh * g.ow;
  const value = new Float64Array(size).fill(kind === 'max' ? -Infinity : 0);
  const count = new Float64Array(size);
  forEachTap(g, (xi, _wi, yi) => {
    value[yi] = kind === 'max' ? Math.max(value[yi], x.data[xi]) : value[yi] + x.data[xi];
    count[yi]++;
  });
  if (kind === 'avg') for (let i = 0; i < size; i++) value[i] /= countIncludePad ? g.kh * g.kw : count[i];
  return value;
}

/** Each window's first maximal tap (in the order kh, then kw), as a flat input index: where max pooling routes dy. */
function firstMaxima(x: RefTensor, g: ConvGeometry): Int32Array {
  const best = new Int32Array(g.n * g.c * g.oh * g.ow).fill(-1);
  forEachTap(g, (xi, _wi, yi) => {
    if (best[yi] < 0 || x.data[xi] > x.data[best[yi]]) best[yi] = xi;
  });
  return best;
}

/** A pooling gradient's attributes less its input size: the forward pooling's. */
const poolAttrsOf = ({ inputSize: _size, ...attrs }: PoolBackwardAttrs<AvgPool2dAttrs>): AvgPool2dAttrs => attrs;

/** Shape rule of the two forward poolings. */
function poolType([x]: readonly TensorType[], attrs: Pool2dAttrs): TensorType {
  checkF32([x], ['x']);
  const g = poolGeometry(x.shape, attrs);
  return { shape: [g.n, g.c, g.oh, g.ow], dtype: 'f32' };
}

/** Whether cacheWrite writes each row at its own offset: rows [T, d] with offsets [T], into a cache of higher rank or with several offsets. */
export function cacheWritesPerRow(cache: readonly number[], rows: readonly number[], offset: readonly number[]): boolean {
  return rows.length === 2 && (cache.length > 2 || elementCount(offset) > 1);
}

/**
 * cacheWrite's rule: cache f32 [.., S, d], rows f32 [.., T, d] with the same batch axes and T ≤ S,
 * offset one number; or rows [T, d] and offsets [T] (one per row) into a cache [.., d].
 */
function cacheWriteType([cache, rows, offset]: readonly TensorType[]): TensorType {
  if (cache.dtype !== 'f32' || rows.dtype !== 'f32') throw new ShapeRuleError(`cache and rows must be f32; got ${cache.dtype} and ${rows.dtype}`);
  if (!['f32', 'i32', 'u32'].includes(offset.dtype)) throw new ShapeRuleError(`offsets must be f32, i32 or u32; got ${offset.dtype}`);
  if (cache.shape.length < 2) throw new ShapeRuleError(`cache must be [.., S, d] (rank 2 or more); got ${formatShape(cache.shape)}`);
  const d = cache.shape[cache.shape.length - 1];
  if (cacheWritesPerRow(cache.shape, rows.shape, offset.shape)) {
    if (rows.shape[1] !== d || !sameShape(offset.shape, [rows.shape[0]])) {
      throw new ShapeRuleError(`rows [T, ${d}] each written at their own row need offsets [T]; got rows ${formatShape(rows.shape)}, offsets ${formatShape(offset.shape)}, cache ${formatShape(cache.shape)}`);
    }
    return { shape: [...cache.shape], dtype: 'f32' };
  }
  if (rows.shape.length !== cache.shape.length) {
    throw new ShapeRuleError(`cache [.., S, d] and rows [.., T, d] must have the same rank (or rows [T, d] with offsets [T]); got ${formatShape(cache.shape)} and ${formatShape(rows.shape)}`);
  }
  const s = cache.shape[cache.shape.length - 2];
  const [t, dr] = rows.shape.slice(-2);
  if (!sameShape(cache.shape.slice(0, -2), rows.shape.slice(0, -2)) || d !== dr || t > s) {
    throw new ShapeRuleError(`rows ${formatShape(rows.shape)} must match cache ${formatShape(cache.shape)} in every axis but the second-last, and have at most ${s} rows`);
  }
  if (elementCount(offset.shape) !== 1) throw new ShapeRuleError(`offset must be one value (or, for rows [T, d], [T] of them); got ${formatShape(offset.shape)}`);
  return { shape: [...cache.shape], dtype: 'f32' };
}

// attention's rules, outside the table so their types do not depend on it.

/** Operands q [.., Tq, d], k [.., Tk, d], v [.., Tk, dv], mask broadcastable to [.., Tq, Tk]; result [.., Tq, dv]. */
function attentionType(inputs: readonly TensorType[], attrs: AttentionAttrs): TensorType {
  if (typeof attrs.scale !== 'number' || !Number.isFinite(attrs.scale)) throw new ShapeRuleError(`scale must be a finite number; got ${attrs.scale}`);
  if (attrs.causal !== undefined && typeof attrs.causal !== 'boolean') throw new ShapeRuleError(`causal must be true or false; got ${attrs.causal}`);
  if (attrs.keyCount !== undefined && typeof attrs.keyCount !== 'boolean') throw new ShapeRuleError(`keyCount must be true or false; got ${attrs.keyCount}`);
  const arity = attrs.keyCount ? 5 : 4;
  if (inputs.length !== arity) throw new ShapeRuleError(`takes ${arity} operands (q, k, v, mask${attrs.keyCount ? ', keyCount' : ''}); got ${inputs.length}`);
  const names = ['q', 'k', 'v', 'mask'];
  for (const [i, t] of inputs.slice(0, 4).entries()) {
    if (t.dtype !== 'f32') throw new ShapeRuleError(`${names[i]} is ${t.dtype}; expected f32`);
  }
  const [q, k, v, mask, keyCount] = inputs;
  for (const [i, t] of [q, k, v].entries()) {
    if (t.shape.length < 2) throw new ShapeRuleError(`${names[i]} must have rank 2 or more ([.., rows, features]); got ${formatShape(t.shape)}`);
  }
  const [tq, d] = q.shape.slice(-2);
  const [tk, dk] = k.shape.slice(-2);
  const [tv, dv] = v.shape.slice(-2);
  if (d !== dk) {
    throw new ShapeRuleError(`q and k must have the same feature size d: q is ${formatShape(q.shape)} (d = ${d}) and k is ${formatShape(k.shape)} (d = ${dk})`);
  }
  if (tk !== tv) {
    throw new ShapeRuleError(`k and v must have the same number of keys Tk: k is ${formatShape(k.shape)} (Tk = ${tk}) and v is ${formatShape(v.shape)} (Tk = ${tv})`);
  }
  const qk = broadcastShapes(q.shape.slice(0, -2), k.shape.slice(0, -2));
  const batch = qk && broadcastShapes(qk, v.shape.slice(0, -2));
  if (!batch) {
    throw new ShapeRuleError(
      `batch axes ${formatShape(q.shape.slice(0, -2))} (q), ${formatShape(k.shape.slice(0, -2))} (k) and ${formatShape(v.shape.slice(0, -2))} (v) do not broadcast`,
    );
  }
  if (attrs.causal && tk < tq) {
    throw new ShapeRuleError(`causal attention needs at least as many keys as queries (query i sees keys up to i + Tk - Tq); got Tq = ${tq}, Tk = ${tk}`);
  }
  const scores = [...batch, tq, tk];
  const masked = broadcastShapes(mask.shape, scores);
  if (!masked || !sameShape(masked, scores)) {
    throw new ShapeRuleError(`mask ${formatShape(mask.shape)} does not broadcast to the scores' shape ${formatShape(scores)} ([.., Tq, Tk])`);
  }
  if (keyCount) {
    if (keyCount.dtype !== 'f32' && keyCount.dtype !== 'i32' && keyCount.dtype !== 'u32') throw new ShapeRuleError(`keyCount must be f32, i32 or u32; got ${keyCount.dtype}`);
    const counted = broadcastShapes(keyCount.shape, batch);
    if (elementCount(keyCount.shape) !== 1 && (!counted || !sameShape(counted, batch))) {
      throw new ShapeRuleError(`keyCount ${formatShape(keyCount.shape)} must be one value or broadcast to the batch axes ${formatShape(batch)} (one count per matrix)`);
    }
  }
  return { shape: [...batch, tq, dv], dtype: 'f32' };
}

/** The CPU reference, composed of the unfused ops' own: transpose, matmul, mul, add, softmax, matmul. */
function evaluateAttention(args: readonly RefTensor[], attrs: AttentionAttrs): RefArray {
  const apply = (op: OpName, operands: RefTensor[], opAttrs: object = {}): RefTensor => {
    const out = opDef(op).infer(operands.map((t) => ({ shape: t.shape, dtype: 'f32' as const })), opAttrs);
    return { data: opDef(op).evaluate(operands, opAttrs, out), shape: out.shape };
  };
  const [q, k, v, mask, keyCount] = args;
  // the scale as the kernel (and a constant in the unfused graph) holds it: an f32
  const scale: RefTensor = { data: Float64Array.of(Math.fround(attrs.scale)), shape: [] };
  let scores = apply('add', [apply('mul', [apply('matmul', [q, apply('transpose', [k], { perm: swapLastTwo(k.shape.length) })]), scale]), mask]);
  const [tq, tk] = scores.shape.slice(-2);
  if (attrs.causal) scores = apply('add', [scores, { data: causalMask(tq, tk, -Infinity), shape: [tq, tk] }]);
  if (!keyCount) return apply('matmul', [apply('softmax', [scores]), v]).data;
  // keys at and past each matrix's count hidden (-∞); a matrix that sees none hides nothing
  // and is multiplied by 0, as the kernels give zeros where softmax over no keys is 0/0
  const counts = Array.from(keyCount.data, (n) => Math.min(Math.max(Math.floor(n), 0), tk));
  const hidden = new Float64Array(counts.length * tk).map((_, e) => (counts[Math.floor(e / tk)] > 0 && e % tk >= counts[Math.floor(e / tk)] ? -Infinity : 0));
  scores = apply('add', [scores, { data: hidden, shape: [...keyCount.shape, 1, tk] }]);
  const seen: RefTensor = { data: Float64Array.from(counts, (n) => (n > 0 ? 1 : 0)), shape: [...keyCount.shape, 1, 1] };
  return apply('mul', [apply('matmul', [apply('softmax', [scores]), v]), seen]).data;
}

/**
 * The two products' multiply-adds (q·kᵀ, then the weights·v) over the (query, key) pairs the
 * kernel scores: all of them, or where causal the keys each query sees, as its tiles skip the
 * rest. The softmax's few operations per score are small beside 2·(d + dv).
 */
function attentionFlops([q, k]: readonly TensorType[], attrs: AttentionAttrs, out: TensorType): number {
  const [tq, d] = q.shape.slice(-2);
  const tk = k.shape[k.shape.length - 2];
  const dv = out.shape[out.shape.length - 1];
  // query i sees keys 0 .. i + tk - tq
  const pairs = attrs.causal ? tq * (tk - tq) + (tq * (tq + 1)) / 2 : tq * tk;
  return 2 * elementCount(out.shape.slice(0, -2)) * pairs * (d + dv);
}

/** The additive mask of causal attention: 0 where query i sees key j (j ≤ i + Tk - Tq), `hidden` elsewhere. */
function causalMask(tq: number, tk: number, hidden: number): Float64Array {
  const mask = new Float64Array(tq * tk);
  for (let i = 0; i < tq; i++) mask.fill(hidden, i * tk + i + tk - tq + 1, (i + 1) * tk);
  return mask;
}

/**
 * Recomputes S = q·kᵀ·scale + mask (+ the causal mask) and P = softmax(S), then dV = Pᵀ·dO, dP = dO·Vᵀ,
 * dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = dS·K·scale, dK = dSᵀ·Q·scale, dMask = dS, each summed
 * over the axes its operand was broadcast along.
 */
function attentionGrad({ g, inputs: [q, k, v, mask, keyCount], dy, attrs }: GradContext<AttentionAttrs>): (Tensor | undefined)[] {
  const swapLast = (t: Tensor) => g.transpose(t, swapLastTwo(t.shape.length));
  let scores = g.add(g.mul(g.matmul(q, swapLast(k)), attrs.scale), mask);
  const [tq, tk] = [q.shape[q.shape.length - 2], k.shape[k.shape.length - 2]];
  // the hidden keys: a finite -1e30 rather than -∞, which would make NaNs of 0·∞ in the backward products
  if (attrs.causal) scores = g.add(scores, g.constant(Float32Array.from(causalMask(tq, tk, -1e30)), [tq, tk]));
  let p = g.softmax(scores);
  if (keyCount) {
    // (training plans never pass a key count; the rule keeps the op differentiable all the same)
    // keys j ≥ n hidden, as a mask made from the count; a matrix that sees none has P = 0
    const n = g.reshape(g.cast(keyCount, 'f32'), [...keyCount.shape, 1, 1]);
    const keys = g.constant(Float32Array.from({ length: tk }, (_, j) => j), [tk]);
    const hidden = g.mul(g.greater(g.add(keys, 1), n), -1e30);
    p = g.mul(g.softmax(g.add(scores, hidden)), g.sub(1, g.greater(1, n)));
  }
  const dv = g.sumTo(g.matmul(swapLast(p), dy), v.shape);
  const dp = g.matmul(dy, swapLast(v));
  const ds = g.mul(p, g.sub(dp, g.sum(g.mul(dp, p), -1, KEEP)));
  const dsScaled = g.mul(ds, attrs.scale);
  const dq = g.sumTo(g.matmul(dsScaled, k), q.shape);
  const dk = g.sumTo(g.matmul(swapLast(dsScaled), q), k.shape);
  return [dq, dk, dv, g.sumTo(ds, mask.shape), ...(keyCount ? [undefined] : [])];
}

// embedding's rules, outside the table so their types do not depend on it.

/**
 * Shape rule of embedding (and of embeddingBackward's table): table [rows, ..row] f32 (or, for
 * embedding, a weight stored as f16 or bf16: `sixteenBit`), ids i32 or u32 [..] → [.., ..row] f32.
 */
function embeddingType(table: TensorType, ids: TensorType, attrs: EmbeddingAttrs, sixteenBit = false): TensorType {
  if (typeof attrs.fromEnd !== 'boolean') throw new ShapeRuleError(`fromEnd must be true or false; got ${attrs.fromEnd}`);
  if (ids.dtype !== 'i32' && ids.dtype !== 'u32') throw new ShapeRuleError(`ids must be i32 or u32; got ${ids.dtype}`);
  const allowed = sixteenBit ? ['f32', 'f16', 'bf16'] : ['f32'];
  if (!allowed.includes(table.dtype)) throw new ShapeRuleError(`the table must be ${allowed.join(', ')}; got ${table.dtype}`);
  if (table.shape.length < 1) throw new ShapeRuleError('the table must have rank 1 or more ([rows, ..row]); got a scalar');
  return { shape: [...ids.shape, ...table.shape.slice(1)], dtype: 'f32' };
}

/** The table row an id names, or -1 where it is out of range (the CPU reference's rule; the kernels' `table_row`). */
export function tableRow(id: number, rows: number, fromEnd: boolean): number {
  const r = fromEnd && id < 0 ? id + rows : id;
  return Number.isInteger(r) && r >= 0 && r < rows ? r : -1;
}

/** WGSL `fn table_row(id) -> i32`: the row an id (of the ids' element type) names, or -1. */
export function tableRowFunction(ids: TensorType, rows: number, fromEnd: boolean): string {
  if (ids.dtype === 'u32') return `fn table_row(id: u32) -> i32 {\n  return select(-1, i32(id), id < ${u32Literal(rows)});\n}`;
  const wrapped = fromEnd ? `select(id, id + ${rows}, id < 0)` : 'id';
  return `fn table_row(id: i32) -> i32 {\n  let r = ${wrapped};\n  return select(-1, r, r >= 0 && r < ${rows});\n}`;
}

const u32Literal = (v: number) => `${v}u`;

/**
 * One invocation per output element: its id's row of the table, or zero. A 16-bit table is
 * bound as 32-bit words (lower/indexed.ts), two values a word, the first in the low half.
 */
function embeddingKernel([table, ids]: readonly TensorType[], attrs: EmbeddingAttrs): IndexedKernel {
  const rows = table.shape[0];
  const row = elementCount(table.shape.slice(1));
  const at = `u32(r) * ${u32Literal(row)} + i % ${u32Literal(row)}`;
  // bf16 is the upper half of an f32; unpack2x16float needs no f16 extension
  const read: Record<string, string[]> = {
    f32: [`out[i] = in0[${at}];`],
    f16: [`let e = ${at};`, 'out[i] = unpack2x16float(in0[e >> 1u] >> ((e & 1u) * 16u)).x;'],
    bf16: [`let e = ${at};`, 'out[i] = bitcast<f32>((in0[e >> 1u] >> ((e & 1u) * 16u)) << 16u);'],
  };
  return {
    summary: `rows of [${rows}, ${row}]${table.dtype === 'f32' ? '' : ` ${table.dtype}`} gathered at ${elementCount(ids.shape)} ids${attrs.fromEnd ? ', negative ids from the end' : ''}, zero rows for ids out of range`,
    helpers: [tableRowFunction(ids, rows, attrs.fromEnd)],
    statements: [`let r = table_row(in1[i / ${u32Literal(row)}]);`, 'if (r < 0) {', '  out[i] = 0.0;', '  return;', '}', ...read[table.dtype]],
  };
}

// rope's rules, outside the table so their types do not depend on it.

/** Shape rule: x f32 [.., d]; positions (i32, u32 or f32 integers) broadcast to x's shape less its last axis. */
function ropeType([x, positions]: readonly TensorType[], attrs: RopeAttrs): TensorType {
  if (x.dtype !== 'f32') throw new ShapeRuleError(`x must be f32; got ${x.dtype}`);
  if (x.shape.length < 1) throw new ShapeRuleError('x must have rank 1 or more ([.., d]); got a scalar');
  if (positions.dtype !== 'i32' && positions.dtype !== 'u32' && positions.dtype !== 'f32') throw new ShapeRuleError(`positions must be i32, u32 or f32; got ${positions.dtype}`);
  const d = x.shape[x.shape.length - 1];
  const rows = x.shape.slice(0, -1);
  const spread = broadcastShapes(positions.shape, rows);
  if (!spread || !sameShape(spread, rows)) {
    throw new ShapeRuleError(`positions ${formatShape(positions.shape)} do not broadcast to x's shape less its last axis ${formatShape(rows)} (x ${formatShape(x.shape)})`);
  }
  if (typeof attrs.theta !== 'number' || !(attrs.theta > 0) || !Number.isFinite(attrs.theta)) throw new ShapeRuleError(`theta must be a positive number; got ${attrs.theta}`);
  if (!Number.isInteger(attrs.rotaryDim) || attrs.rotaryDim < 2 || attrs.rotaryDim % 2 !== 0 || attrs.rotaryDim > d) {
    throw new ShapeRuleError(`rotaryDim must be an even integer from 2 to the last axis of x (${d}); got ${attrs.rotaryDim}`);
  }
  if (typeof attrs.inverse !== 'boolean') throw new ShapeRuleError(`inverse must be true or false; got ${attrs.inverse}`);
  const s = attrs.scaling;
  if (s !== undefined) {
    const positive = [s.factor, s.lowFreqFactor, s.highFreqFactor, s.originalMaxPositions].every((v) => typeof v === 'number' && v > 0 && Number.isFinite(v));
    if (s.kind !== 'llama3' || !positive || !(s.highFreqFactor > s.lowFreqFactor)) {
      throw new ShapeRuleError(`scaling must be { kind: 'llama3', factor, lowFreqFactor < highFreqFactor, originalMaxPositions }, all positive; got ${JSON.stringify(s)}`);
    }
  }
  return x;
}

/**
 * inv_freq[k] = 1 / theta^(2k / rotaryDim), k < rotaryDim / 2, in float64 (HF computes it in
 * f32), with Llama 3's scaling where asked (transformers' _compute_llama3_parameters).
 */
export function ropeInverseFrequencies(attrs: Pick<RopeAttrs, 'theta' | 'rotaryDim' | 'scaling'>): Float64Array {
  const half = attrs.rotaryDim / 2;
  const inv = Float64Array.from({ length: half }, (_, k) => 1 / Math.pow(attrs.theta, (2 * k) / attrs.rotaryDim));
  const s = attrs.scaling;
  if (!s) return inv;
  const lowFreqWavelength = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelength = s.originalMaxPositions / s.highFreqFactor;
  return inv.map((f) => {
    const wavelength = (2 * Math.PI) / f;
    if (wavelength < highFreqWavelength) return f;
    if (wavelength > lowFreqWavelength) return f / s.factor;
    const smooth = (s.originalMaxPositions / wavelength - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** The CPU reference: each pair (k, k + rotaryDim/2) of a row rotated by pos·inv_freq[k], in float64. */
function evaluateRope([x, positions]: readonly RefTensor[], attrs: RopeAttrs): RefArray {
  const d = x.shape[x.shape.length - 1];
  const rows = x.shape.slice(0, -1);
  const half = attrs.rotaryDim / 2;
  const inv = ropeInverseFrequencies(attrs);
  const pos = broadcastRef(positions, rows);
  const sign = attrs.inverse ? -1 : 1;
  const out = Float64Array.from(x.data);
  for (let r = 0; r < pos.length; r++) {
    for (let k = 0; k < half; k++) {
      const angle = pos[r] * inv[k];
      const [c, s] = [Math.cos(angle), sign * Math.sin(angle)];
      const [x1, x2] = [x.data[r * d + k], x.data[r * d + k + half]];
      out[r * d + k] = x1 * c - x2 * s;
      out[r * d + k + half] = x2 * c + x1 * s;
    }
  }
  return out;
}

/** rope's attributes as one string (its e-graph term's), keys in a fixed order so equal ropes read alike. */
function ropeTerm(attrs: RopeAttrs): string {
  const s = attrs.scaling;
  return JSON.stringify({
    theta: attrs.theta,
    rotaryDim: attrs.rotaryDim,
    inverse: attrs.inverse,
    ...(s ? { scaling: { kind: s.kind, factor: s.factor, lowFreqFactor: s.lowFreqFactor, highFreqFactor: s.highFreqFactor, originalMaxPositions: s.originalMaxPositions } } : {}),
  });
}

/**
 * WGSL for rope's kernels: INV_FREQ (f32 inverse frequencies, HF's f32(inv_freq)) and
 * cos_sin(angle), the angle first reduced to [-π, π] in two steps (Cody–Waite: k·6.28125 is
 * exact in f32 for |k| < 2^16), as WGSL bounds cos and sin's accuracy only there.
 */
export function ropeHelpers(attrs: Pick<RopeAttrs, 'theta' | 'rotaryDim' | 'scaling'>): string[] {
  const half = attrs.rotaryDim / 2;
  const inv = Array.from(ropeInverseFrequencies(attrs), (f) => wgslFloat(Math.fround(f)));
  return [
    `var<private> INV_FREQ: array<f32, ${half}> = array<f32, ${half}>(${inv.join(', ')});`,
    [
      '// cos and sin of an angle reduced to [-π, π]: 2π as 6.28125 + 0.0019353071795864769',
      'fn cos_sin(angle: f32) -> vec2<f32> {',
      '  let k = round(angle * 0.15915494309189535);',
      '  let a = (angle - k * 6.28125) - k * 0.0019353071795864769;',
      '  return vec2<f32>(cos(a), sin(a));',
      '}',
    ].join('\n'),
  ];
}

/**
 * One invocation per output element: its pair's cosine and sine at the row's position, then
 * x·cos ∓ partner·sin. The angle is HF's, f32(pos)·f32(inv_freq), reduced to [-π, π] in two
 * steps (Cody–Waite: k·6.28125 is exact in f32 for |k| < 2^16) before cos and sin, whose
 * accuracy WGSL bounds only on [-π, π].
 */
function ropeKernel([x, positions]: readonly TensorType[], attrs: RopeAttrs): IndexedKernel {
  const d = x.shape[x.shape.length - 1];
  const rows = x.shape.slice(0, -1);
  const half = attrs.rotaryDim / 2;
  // the position's index from the row index r, through positions' broadcast strides over the rows
  const strides = broadcastStrides(positions.shape, rows);
  const rowStrides = stridesOf(rows);
  const terms = rows.flatMap((n, a) => {
    if (strides[a] === 0) return [];
    const coordinate = a === 0 ? `(r / ${u32Literal(rowStrides[a])})` : `((r / ${u32Literal(rowStrides[a])}) % ${u32Literal(n)})`;
    return [strides[a] === 1 ? coordinate : `${coordinate} * ${u32Literal(strides[a])}`];
  });
  const sign = attrs.inverse ? -1 : 1;
  return {
    summary: `rotary embedding over the first ${attrs.rotaryDim} of ${d} features, theta ${attrs.theta}${attrs.scaling ? `, ${attrs.scaling.kind} scaling` : ''}${attrs.inverse ? ', inverse rotation' : ''}`,
    helpers: ropeHelpers(attrs),
    statements: [
      `let j = i % ${u32Literal(d)};`,
      // partial rotary: the features past rotaryDim pass through
      ...(attrs.rotaryDim < d ? [`if (j >= ${u32Literal(attrs.rotaryDim)}) {`, '  out[i] = in0[i];', '  return;', '}'] : []),
      `let r = i / ${u32Literal(d)};`,
      `let pos = f32(in1[${terms.length ? terms.join(' + ') : '0u'}]);`,
      `let second = j >= ${u32Literal(half)};`,
      `let cs = cos_sin(pos * INV_FREQ[j % ${u32Literal(half)}]);`,
      // first half: x1·c - x2·s; second half: x2·c + x1·s (s negated for the inverse)
      `let partner = in0[select(i + ${u32Literal(half)}, i - ${u32Literal(half)}, second)];`,
      `out[i] = in0[i] * cs.x + select(${wgslFloat(-sign)}, ${wgslFloat(sign)}, second) * partner * cs.y;`,
    ],
  };
}

export type OpName = keyof typeof OPS;
export type AttrsOf<K extends OpName> = (typeof OPS)[K] extends OpDef<infer A, string> ? A : never;
export const OP_NAMES = Object.keys(OPS) as OpName[];

/** The activation names an op definition gives products (its `epilogueActivations`). */
type ActivationsOf<D> = D extends { epilogueActivations?: infer E } ? (NonNullable<E> extends readonly { name: infer N }[] ? N : never) : never;
/** fusedMatmul's `activation`: 'none', or one that an op of the table provides. */
export type MatmulActivation = 'none' | ActivationsOf<(typeof OPS)[OpName]>;

/** Each epilogue activation by name: the op that computes it, with its attributes. */
export const EPILOGUE_ACTIVATIONS: ReadonlyMap<string, { op: OpName; attrs: Readonly<Record<string, unknown>> }> = new Map(
  OP_NAMES.flatMap((op) => (opDef(op).epilogueActivations ?? []).map((a) => [a.name, { op, attrs: a.attrs ?? {} }] as const)),
);
export const MATMUL_ACTIVATIONS = ['none', ...EPILOGUE_ACTIVATIONS.keys()] as readonly MatmulActivation[];

export function opDef(op: OpName): OpDef<any, string> {
  return OPS[op] as OpDef<any, string>;
}
