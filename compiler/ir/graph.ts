// The IR graph and the builder API model files call (`g.matmul(x, w)` …). Nodes are
// appended in creation order, which is a topological order. Every builder call checks
// its op's shape rule at once and records the caller's source location, so a shape error
// names the user's line.
import { dtypeByteLength, type HostDType } from '../../schemas/manifest';
import { CompileError } from './errors';
import {
  opDef,
  ShapeRuleError,
  type AttrsOf,
  type AvgPool2dAttrs,
  type Pool2dAttrs,
  type PoolBackwardAttrs,
  type Conv2dAttrs,
  type Conv2dBackwardInputAttrs,
  type Conv2dBackwardWeightAttrs,
  type FusedArg,
  type FusedInstruction,
  type FusedMatmulAttrs,
  type FusedRotation,
  type GeluAttrs,
  type Init,
  type LeafAttrs,
  type Llama3RopeScaling,
  type MatmulActivation,
  type OpName,
} from './ops';
import { sameShape } from './shape';
import { blockElements, elementCount, formatShape, isPackedDType, isWeightDType, type DType, type Shape, type SourceLocation, type TensorType, type WeightDType } from './types';

export interface Node {
  readonly id: number;
  readonly op: OpName;
  readonly inputs: readonly number[];
  readonly attrs: Readonly<Record<string, unknown>>;
  readonly type: TensorType;
  /** unique within the graph: the user's name for leaves, `${op}_${id}` otherwise */
  readonly name: string;
  readonly loc?: SourceLocation;
}

/**
 * A node's attributes with its op's attribute type (`attrsOf(node, 'attention').scale`).
 * Node.attrs stays one loose record so that passes can copy any node; this is where it
 * meets the table's types, checked against the op at run time.
 */
export function attrsOf<K extends OpName>(node: { op: string; name: string; attrs: Node['attrs'] }, ...ops: [K, ...K[]]): Readonly<AttrsOf<K>> {
  if (!(ops as readonly string[]).includes(node.op)) throw new Error(`node ${node.name} is ${node.op}, not ${ops.join(' or ')}`);
  return node.attrs as Readonly<AttrsOf<K>>;
}

/** A handle to a graph value, as model code sees it. */
export class Tensor {
  /** @internal */
  constructor(
    readonly graph: Graph,
    readonly id: number,
  ) {}
  get shape(): Shape {
    return this.graph.nodes[this.id].type.shape;
  }
  get dtype(): DType {
    return this.graph.nodes[this.id].type.dtype;
  }
  get name(): string {
    return this.graph.nodes[this.id].name;
  }
}

export type TensorLike = Tensor | number;

export interface GraphOptions {
  /** where the op being recorded was called from; the default reads the JS stack */
  locate?: () => SourceLocation | undefined;
}

export interface GraphOutput {
  readonly name: string;
  readonly node: number;
  /** the element type the caller receives where it is not the tensor's f32 (an imported model's double, float16, bfloat16) */
  readonly hostDtype?: HostDType;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;

export class Graph {
  readonly nodes: Node[] = [];
  readonly outputs: GraphOutput[] = [];
  private readonly names = new Set<string>();
  private readonly locate: () => SourceLocation | undefined;
  /** set while a compiler stage records nodes on behalf of a user node (see `at`) */
  private fixedLocation: { loc: SourceLocation | undefined } | undefined;

  constructor(
    readonly name: string,
    options: GraphOptions = {},
  ) {
    this.locate = options.locate ?? callerLocation;
  }

  // --- leaves -------------------------------------------------------------------------

  /**
   * A value fed at run time. `hostDtype`: the element type the caller gives where it is
   * not this f32 (an imported model's double, float16 or bfloat16), converted by the runtime.
   */
  input(name: string, shape: Shape, dtype: DType = 'f32', options: { hostDtype?: HostDType } = {}): Tensor {
    if (isPackedDType(dtype)) this.fail('input', `'${name}' is ${dtype}: packed weights are parameters (packedParameter), not inputs`);
    if (options.hostDtype && dtype !== 'f32') this.fail('input', `'${name}' is ${dtype}: only f32 inputs exchange ${options.hostDtype} values`);
    return this.leaf('input', name, options.hostDtype ? { shape: [...shape], dtype, hostDtype: options.hostDtype } : { shape: [...shape], dtype });
  }

  /**
   * A weight stored in the plan. `init` defaults to Glorot-uniform for rank ≥ 2 and zeros
   * otherwise; values are drawn at compile time from the compile seed and the name.
   */
  parameter(name: string, shape: Shape, options: { init?: Init; trainable?: boolean } = {}): Tensor {
    const init = options.init ?? (shape.length >= 2 ? 'glorot' : 'zeros');
    if ((init instanceof Float32Array || Array.isArray(init)) && init.length !== elementCount(shape)) {
      this.fail('parameter', `initial values for '${name}' have ${init.length} elements; shape ${formatShape(shape)} needs ${elementCount(shape)}`);
    }
    return this.leaf('parameter', name, { shape: [...shape], dtype: 'f32', init, trainable: options.trainable ?? true });
  }

  /**
   * A weight stored in a packed format (ggml's block types: q8_0, q4_k, …, bf16) or f16, as
   * a GGUF file stores it: `bytes` are its stored bytes, kept as they are in the plan (default:
   * zeros, for weights loaded later), `shape` its logical [.., cols] with cols a multiple of
   * the block. It is never trained; matmulQuantized reads it in place, and the CPU reference
   * sees its dequantized values (runtime/ggml-types.ts).
   */
  packedParameter(name: string, shape: Shape, dtype: WeightDType, bytes?: Uint8Array): Tensor {
    if (!isWeightDType(dtype)) this.fail('parameter', `'${name}' has dtype ${String(dtype)}; a packed parameter is f16, bf16 or a ggml block type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)`);
    const block = blockElements(dtype);
    if (shape.length === 0 || shape[shape.length - 1] % block !== 0) {
      this.fail('parameter', `'${name}' has shape ${formatShape(shape)}; a ${dtype} tensor's last axis must be a multiple of its block of ${block}`);
    }
    const byteLength = dtypeByteLength(dtype, elementCount(shape));
    if (bytes !== undefined && !(bytes instanceof Uint8Array)) this.fail('parameter', `bytes of '${name}' must be a Uint8Array`);
    if (bytes !== undefined && bytes.length !== byteLength) {
      this.fail('parameter', `'${name}' ${formatShape(shape)} ${dtype} takes ${byteLength} bytes; got ${bytes.length}`);
    }
    return this.leaf('parameter', name, { shape: [...shape], dtype, init: bytes ?? 'zeros', trainable: false });
  }

  /**
   * Replaces a parameter's initial values, for an importer that folds fixed weights while it
   * builds the graph (a frozen convolution's weight scaled by the batch norm that follows it).
   */
  setParameterInit(t: Tensor, init: Float32Array): void {
    const node = this.nodes[t.id];
    if (t.graph !== this || node?.op !== 'parameter' || node.type.dtype !== 'f32') this.fail('parameter', `'${t.name}' is not an f32 parameter of this graph`);
    if (init.length !== elementCount(node.type.shape)) this.fail('parameter', `initial values for '${node.name}' have ${init.length} elements; shape ${formatShape(node.type.shape)} needs ${elementCount(node.type.shape)}`);
    this.nodes[t.id] = { ...node, attrs: { ...node.attrs, init } };
  }

  /** Optimizer state: a buffer kept on the device between training steps, zero at the start. */
  state(name: string, shape: Shape): Tensor {
    return this.leaf('state', name, { shape: [...shape], dtype: 'f32' });
  }

  /** A fixed tensor; a number gives a scalar (shape []). An Int32Array gives an i32 tensor. */
  constant(values: number | readonly number[] | Float32Array | Int32Array, shape?: Shape, name?: string): Tensor {
    const data = typeof values === 'number' ? new Float32Array([values]) : values instanceof Int32Array ? values.slice() : Float32Array.from(values);
    const s = shape ?? (typeof values === 'number' ? [] : [data.length]);
    if (elementCount(s) !== data.length) {
      this.fail('constant', `${data.length} values do not fill shape ${formatShape(s)} (${elementCount(s)} elements)`);
    }
    return this.leaf('constant', name ?? this.freshName('const'), { shape: [...s], dtype: data instanceof Int32Array ? 'i32' : 'f32', values: data });
  }

  // --- pointwise ----------------------------------------------------------------------

  add(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('add', a, b);
  }
  sub(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('sub', a, b);
  }
  mul(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('mul', a, b);
  }
  div(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('div', a, b);
  }
  /** x + b, with b of shape [n] for x's last axis n. */
  biasAdd(x: Tensor, b: Tensor): Tensor {
    return this.op('biasAdd', [x, b], {});
  }
  relu(x: Tensor): Tensor {
    return this.op('relu', [x], {});
  }
  sigmoid(x: Tensor): Tensor {
    return this.op('sigmoid', [x], {});
  }
  tanh(x: Tensor): Tensor {
    return this.op('tanh', [x], {});
  }
  gelu(x: Tensor, options: { approximate?: 'none' | 'tanh' } = {}): Tensor {
    return this.op('gelu', [x], { approximate: options.approximate ?? 'none' });
  }
  silu(x: Tensor): Tensor {
    return this.op('silu', [x], {});
  }
  /** silu(gate) * up, with broadcasting. */
  swiglu(gate: Tensor, up: Tensor): Tensor {
    return this.op('swiglu', [gate, up], {});
  }
  exp(x: Tensor): Tensor {
    return this.op('exp', [x], {});
  }
  log(x: Tensor): Tensor {
    return this.op('log', [x], {});
  }
  neg(x: Tensor): Tensor {
    return this.op('neg', [x], {});
  }
  sqrt(x: Tensor): Tensor {
    return this.op('sqrt', [x], {});
  }
  /** 1 where a == b, else 0 (no gradient). */
  equal(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('equal', a, b);
  }
  /** 1 where a < b, else 0 (no gradient). */
  less(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('less', a, b);
  }
  /** 1 where a > b, else 0 (no gradient). */
  greater(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('greater', a, b);
  }
  /** a where cond ≠ 0, else b (cond f32 0/1), with broadcasting. */
  where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
    const lift = (v: TensorLike) => (typeof v === 'number' ? this.constant(v) : v);
    return this.op('where', [cond, lift(a), lift(b)], {});
  }
  pow(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('pow', a, b);
  }
  erf(x: Tensor): Tensor {
    return this.op('erf', [x], {});
  }
  sin(x: Tensor): Tensor {
    return this.op('sin', [x], {});
  }
  cos(x: Tensor): Tensor {
    return this.op('cos', [x], {});
  }
  /** The least integer ≥ x, elementwise (no gradient). */
  ceil(x: Tensor): Tensor {
    return this.op('ceil', [x], {});
  }
  /** 1 where x is NaN, else 0 (no gradient). */
  isNaN(x: Tensor): Tensor {
    return this.op('isNaN', [x], {});
  }
  /** x converted to f32 or i32 (toward zero, saturating); no gradient flows through it. */
  cast(x: Tensor, to: 'f32' | 'i32'): Tensor {
    return x.dtype === to ? x : this.op('cast', [x], { to });
  }
  /** x rounded to the nearest float16 or bfloat16 value, held as f32 (the gradient passes straight through). */
  roundFloat(x: Tensor, format: 'f16' | 'bf16'): Tensor {
    return this.op('roundFloat', [x], { format });
  }
  abs(x: Tensor): Tensor {
    return this.op('abs', [x], {});
  }
  /** The elementwise smaller of a and b (f32 or i32), with broadcasting. */
  minimum(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('minimum', a, b);
  }
  /** The elementwise larger of a and b (f32 or i32), with broadcasting. */
  maximum(a: TensorLike, b: TensorLike): Tensor {
    return this.binary('maximum', a, b);
  }
  /** a mod b (f32 or i32): truncated as C's fmod, or `floored` as Python's % (the sign of b). */
  mod(a: TensorLike, b: TensorLike, options: { floored?: boolean } = {}): Tensor {
    const lift = (v: TensorLike) => (typeof v === 'number' ? this.constant(v) : v);
    return this.op('mod', [lift(a), lift(b)], { floored: options.floored ?? false });
  }
  /** x itself, but gradients stop here. */
  stopGradient(x: Tensor): Tensor {
    return this.op('stopGradient', [x], {});
  }
  /** Integer labels [..] (i32) to one-hot rows [.., classes]; out-of-range labels give zero rows. */
  oneHot(labels: Tensor, classes: number): Tensor {
    return this.op('oneHot', [labels], { classes });
  }

  /**
   * Rows of `table` [V, ..row] at integer `ids` [..] (i32 or u32): [.., ..row], by a gather (one
   * read per element). Ids outside [0, V) give zero rows and no gradient; with `fromEnd`, ids
   * in [-V, 0) count from the end (numpy, ONNX). A plan whose input ids feed it records their
   * range, and runtimes refuse ids outside it. The table's gradient adds dy's rows at the ids.
   */
  embedding(table: Tensor, ids: Tensor, options: { fromEnd?: boolean } = {}): Tensor {
    return this.op('embedding', [table, ids], { fromEnd: options.fromEnd ?? false });
  }
  /**
   * x's slices at integer `indices` along `axis` (ONNX Gather, numpy's take): the indices' axes
   * replace that axis. Axis 0 is an embedding; another axis is moved first and back.
   */
  gather(x: Tensor, indices: Tensor, axis = 0, options: { fromEnd?: boolean } = {}): Tensor {
    const rank = x.shape.length;
    const a = axis < 0 ? axis + rank : axis;
    if (!Number.isInteger(a) || a < 0 || a >= rank) this.fail('gather', `axis ${axis} is out of range for x ${formatShape(x.shape)}`);
    if (a === 0) return this.embedding(x, indices, options);
    const others = x.shape.map((_, d) => d).filter((d) => d !== a);
    const rows = this.embedding(this.transpose(x, [a, ...others]), indices, options);
    // rows is [..indices, ..others]: put the indices' axes where the gathered axis was
    const k = indices.shape.length;
    const perm = [...Array.from({ length: a }, (_, i) => k + i), ...Array.from({ length: k }, (_, i) => i), ...Array.from({ length: rank - 1 - a }, (_, i) => k + a + i)];
    return this.transpose(rows, perm);
  }
  /**
   * Rotary position embedding in HuggingFace's rotate-half form: x [.., d] (heads layout
   * [.., seq, d], as attention takes q and k), each row rotated at its position: x·cos +
   * rotate_half(x)·sin over the first `rotaryDim` features (default d), inv_freq[k] =
   * theta^(-2k / rotaryDim); the other features pass through (partial rotary). `positions`
   * (i32, u32 or f32) broadcast to x's shape less its last axis: [seq] for x [heads, seq, d];
   * absent, 0 .. seq-1 along x's second-last axis. `scaling`: Llama 3's frequency scaling.
   */
  rope(x: Tensor, positions: Tensor | undefined, options: { theta: number; rotaryDim?: number; scaling?: Llama3RopeScaling; inverse?: boolean }): Tensor {
    let at = positions;
    if (!at) {
      if (x.shape.length < 2) this.fail('rope', `without positions, x must be [.., seq, d]; got ${formatShape(x.shape)}`);
      const seq = x.shape[x.shape.length - 2];
      at = this.constant(Float32Array.from({ length: seq }, (_, i) => i), [seq], this.freshName('rope_positions'));
    }
    return this.op('rope', [x, at], {
      theta: options.theta,
      rotaryDim: options.rotaryDim ?? x.shape[x.shape.length - 1],
      inverse: options.inverse ?? false,
      ...(options.scaling ? { scaling: { ...options.scaling } } : {}),
    });
  }

  /**
   * A KV cache's append: `rows` [.., T, d] written into `cache` [.., S, d] (a state buffer,
   * written in place) from row `offset` (one i32, u32 or f32 value, known at run time); rows
   * past S are dropped. Or rows [T, d] with offsets [T]: row r to row offset[r] of the cache
   * read as [N, d] (sequences of a batch, each appending to its own rows; past N dropped).
   * Returns the updated cache: read it (not `cache`) to see the rows.
   */
  cacheWrite(cache: Tensor, rows: Tensor, offset: Tensor): Tensor {
    if (this.node(cache).op !== 'state') this.fail('cacheWrite', `the cache must be a state buffer (g.state); '${this.node(cache).name}' is a ${this.node(cache).op}`);
    return this.op('cacheWrite', [cache, rows, offset], {});
  }

  // --- backward ops (recorded by autodiff; usable directly) ----------------------------

  /** embedding's table gradient: dy's rows [.., ..row] added into [rows, ..row] at the ids, in their order (recorded by autodiff). */
  embeddingBackward(dy: Tensor, ids: Tensor, attrs: { rows: number; fromEnd?: boolean }): Tensor {
    return this.op('embeddingBackward', [dy, ids], { rows: attrs.rows, fromEnd: attrs.fromEnd ?? false });
  }

  reluBackward(dy: Tensor, x: Tensor): Tensor {
    return this.op('reluBackward', [dy, x], {});
  }
  sigmoidBackward(dy: Tensor, y: Tensor): Tensor {
    return this.op('sigmoidBackward', [dy, y], {});
  }
  tanhBackward(dy: Tensor, y: Tensor): Tensor {
    return this.op('tanhBackward', [dy, y], {});
  }
  siluBackward(dy: Tensor, x: Tensor): Tensor {
    return this.op('siluBackward', [dy, x], {});
  }
  geluBackward(dy: Tensor, x: Tensor, attrs: GeluAttrs): Tensor {
    return this.op('geluBackward', [dy, x], { approximate: attrs.approximate });
  }

  // --- along an axis ------------------------------------------------------------------

  sum(x: Tensor, axis: number, options: { keepDims?: boolean } = {}): Tensor {
    return this.op('sum', [x], { axis, keepDims: options.keepDims ?? false });
  }
  mean(x: Tensor, axis: number, options: { keepDims?: boolean } = {}): Tensor {
    return this.op('mean', [x], { axis, keepDims: options.keepDims ?? false });
  }
  max(x: Tensor, axis: number, options: { keepDims?: boolean } = {}): Tensor {
    return this.op('max', [x], { axis, keepDims: options.keepDims ?? false });
  }
  softmax(x: Tensor): Tensor {
    return this.op('softmax', [x], {});
  }
  logSoftmax(x: Tensor): Tensor {
    return this.op('logSoftmax', [x], {});
  }
  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, options: { eps?: number } = {}): Tensor {
    return this.op('layerNorm', [x, gamma, beta], { eps: options.eps ?? 1e-5 });
  }
  rmsNorm(x: Tensor, gamma: Tensor, options: { eps?: number } = {}): Tensor {
    return this.op('rmsNorm', [x, gamma], { eps: options.eps ?? 1e-6 });
  }

  /** Mean of every element: a scalar. */
  meanAll(x: Tensor): Tensor {
    return this.mean(this.reshape(x, [-1]), 0);
  }
  /** Sums x over the axes along which `shape` was broadcast to x's shape; the inverse of broadcastTo. */
  sumTo(x: Tensor, shape: Shape): Tensor {
    if (sameShape(x.shape, shape)) return x;
    const lead = x.shape.length - shape.length;
    let t = x;
    if (lead > 0) t = this.sum(this.reshape(t, [-1, ...x.shape.slice(lead)]), 0);
    for (let d = 0; d < shape.length; d++) {
      if (shape[d] === 1 && t.shape[d] !== 1) t = this.sum(t, d, { keepDims: true });
    }
    if (!sameShape(t.shape, shape)) this.fail('sumTo', `${formatShape(x.shape)} is not a broadcast of ${formatShape(shape)}`);
    return t;
  }

  // --- losses (composed of the ops above, so autodiff needs no rule of their own) ------

  /**
   * Mean cross-entropy of logits [.., C]: against integer labels [..] (i32; the op counts labels
   * outside [0, C) as zero loss, but a plan whose input labels feed it records [0, C) and
   * runtimes refuse the rest, as torch does) or against target distributions [.., C] (f32).
   */
  crossEntropy(logits: Tensor, targets: Tensor): Tensor {
    const classes = logits.shape[logits.shape.length - 1];
    const rows = logits.shape.slice(0, -1);
    let probabilities = targets;
    if (targets.dtype === 'i32' || targets.dtype === 'u32') {
      if (!sameShape(targets.shape, rows)) {
        this.fail('crossEntropy', `integer labels must have shape ${formatShape(rows)} (logits ${formatShape(logits.shape)} without the class axis); got ${formatShape(targets.shape)}`);
      }
      probabilities = this.oneHot(targets, classes);
    } else if (!sameShape(targets.shape, logits.shape)) {
      this.fail('crossEntropy', `target distributions must have the logits' shape ${formatShape(logits.shape)}; got ${formatShape(targets.shape)}`);
    }
    return this.neg(this.meanAll(this.sum(this.mul(probabilities, this.logSoftmax(logits)), -1)));
  }
  /** Mean squared error over every element. */
  mseLoss(prediction: Tensor, target: Tensor): Tensor {
    if (!sameShape(prediction.shape, target.shape)) {
      this.fail('mseLoss', `prediction ${formatShape(prediction.shape)} and target ${formatShape(target.shape)} differ in shape`);
    }
    const d = this.sub(prediction, target);
    return this.meanAll(this.mul(d, d));
  }
  /** Mean binary cross-entropy of probabilities in (0, 1) against targets in [0, 1]. */
  binaryCrossEntropy(probabilities: Tensor, target: Tensor): Tensor {
    if (!sameShape(probabilities.shape, target.shape)) {
      this.fail('binaryCrossEntropy', `probabilities ${formatShape(probabilities.shape)} and target ${formatShape(target.shape)} differ in shape`);
    }
    const p = probabilities;
    return this.neg(this.meanAll(this.add(this.mul(target, this.log(p)), this.mul(this.sub(1, target), this.log(this.sub(1, p))))));
  }
  /** Binary cross-entropy of logits, in the stable form relu(z) - z·t + log(1 + e^-|z|). */
  binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor): Tensor {
    if (!sameShape(logits.shape, target.shape)) {
      this.fail('binaryCrossEntropyWithLogits', `logits ${formatShape(logits.shape)} and target ${formatShape(target.shape)} differ in shape`);
    }
    const z = logits;
    const abs = this.add(this.relu(z), this.relu(this.neg(z)));
    return this.meanAll(this.add(this.sub(this.relu(z), this.mul(z, target)), this.log(this.add(1, this.exp(this.neg(abs))))));
  }

  // --- layout and products ------------------------------------------------------------

  /** Row-major reshape; one axis may be -1. */
  reshape(x: Tensor, shape: readonly number[]): Tensor {
    return this.op('reshape', [x], { shape: [...shape] });
  }
  /** Permutes axes; without `perm`, reverses them. */
  transpose(x: Tensor, perm?: readonly number[]): Tensor {
    return this.op('transpose', [x], { perm: perm ? [...perm] : x.shape.map((_, i) => x.shape.length - 1 - i) });
  }
  /** x repeated along broadcast axes to `shape`. */
  broadcastTo(x: Tensor, shape: Shape): Tensor {
    return this.op('broadcast', [x], { shape: [...shape] });
  }
  /** The elements with start <= index < end along `axis`. */
  slice(x: Tensor, axis: number, start: number, end: number): Tensor {
    return this.op('slice', [x], { axis, start, end });
  }
  concat(xs: readonly Tensor[], axis: number): Tensor {
    if (xs.length === 0) this.fail('concat', 'needs at least one operand');
    return this.op('concat', xs, { axis });
  }
  matmul(a: Tensor, b: Tensor): Tensor {
    return this.op('matmul', [a, b], {});
  }
  /**
   * x [.., M, K] f32 times a packed weight (packedParameter: q8_0, q4_k, …, f16, bf16),
   * dequantized as the kernel reads it: by default w is [N, K] and the result x · wᵀ
   * [.., M, N], a linear layer as GGUF stores it; `transposeB: false` takes w [K, N] and
   * gives x · w.
   */
  matmulQuantized(x: Tensor, w: Tensor, options: { transposeB?: boolean } = {}): Tensor {
    return this.op('matmulQuantized', [x, w], { transposeB: options.transposeB ?? true });
  }
  /** [M, K] i8 · [K, N] i8 → [M, N] i32 (int8 inference; on GPUs with subgroup matrices, their tensor cores) */
  matmulInt8(a: Tensor, b: Tensor): Tensor {
    return this.op('matmulInt8', [a, b], {});
  }
  /**
   * softmax(q·kᵀ·scale + mask)·v in one kernel: q [.., Tq, d], k [.., Tk, d], v [.., Tk, dv],
   * mask broadcastable to [.., Tq, Tk] (a scalar 0 for none); batch axes broadcast as in
   * matmul. The result is [.., Tq, dv]. With `causal`, query i also sees no key past
   * i + Tk - Tq (Tk ≥ Tq), and the kernel skips those keys rather than masking them.
   * With `keyCount` (a run-time value per batch matrix, broadcast to the batch axes: a decode
   * step's position + 1) the queries see keys 0 .. keyCount-1 only, and the kernels read no
   * others; a matrix whose count is 0 gives zeros.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, options: { scale: number; causal?: boolean; keyCount?: Tensor }): Tensor {
    const keyCount = options?.keyCount;
    return this.op('attention', keyCount ? [q, k, v, mask, keyCount] : [q, k, v, mask], {
      scale: options?.scale,
      ...(options?.causal ? { causal: true } : {}),
      ...(keyCount ? { keyCount: true } : {}),
    });
  }

  /**
   * 2-D convolution of NCHW x [N, C, H, W] with w [O, C/groups, KH, KW] (cross-correlation, as
   * PyTorch and ONNX), plus `bias` [O] where given: [N, O, OH, OW]. `stride` and `dilation` take
   * one number or [along H, along W]; `padding` one number, [H, W] or [top, left, bottom, right].
   */
  conv2d(x: Tensor, w: Tensor, options: Conv2dOptions = {}): Tensor {
    const y = this.op('conv2d', [x, w], conv2dAttrs(options));
    if (!options.bias) return y;
    // added by channel; the optimizer folds it into the convolution's epilogue (fusedConv2d)
    if (options.bias.shape.length !== 1 || options.bias.shape[0] !== y.shape[1]) {
      this.fail('conv2d', `bias must have shape [${y.shape[1]}] (the output channels of weight ${formatShape(w.shape)}); got ${formatShape(options.bias.shape)}`);
    }
    return this.add(y, this.reshape(options.bias, [y.shape[1], 1, 1]));
  }
  /**
   * act(conv2d(x, w) × scale + shift) + residual as one kernel (what the optimizer makes of a
   * convolution, a bias or batch norm, an activation and a residual add): scale and shift [O, 1, 1].
   */
  fusedConv2d(x: Tensor, w: Tensor, options: Omit<Conv2dOptions, 'bias'> & { scale?: Tensor; shift?: Tensor; activation?: MatmulActivation; residual?: Tensor } = {}): Tensor {
    const epilogue = [options.scale, options.shift, options.residual].filter((t): t is Tensor => t !== undefined);
    return this.op('fusedConv2d', [x, w, ...epilogue], {
      ...conv2dAttrs(options),
      scale: options.scale !== undefined,
      shift: options.shift !== undefined,
      activation: options.activation ?? 'none',
      residual: options.residual !== undefined,
    });
  }
  /**
   * Transposed convolution of x [N, Cin, H, W] with w [Cin, Cout/groups, KH, KW] (PyTorch's
   * ConvTranspose2d): the input gradient of conv2d with that weight. `outputPadding` adds rows
   * and columns at the bottom and right (less than the stride), choosing among the sizes a
   * strided convolution maps to the same H, W.
   */
  convTranspose2d(x: Tensor, w: Tensor, options: Omit<Conv2dOptions, 'bias'> & { outputPadding?: number | readonly [number, number] } = {}): Tensor {
    const attrs = conv2dAttrs(options);
    const extra = pairOf(options.outputPadding ?? 0);
    const size = (d: 0 | 1) => (x.shape[2 + d] - 1) * attrs.stride[d] - attrs.padding[d] - attrs.padding[d + 2] + attrs.dilation[d] * (w.shape[2 + d] - 1) + 1 + extra[d];
    if (x.shape.length !== 4 || w.shape.length !== 4) this.fail('convTranspose2d', `x must be [N, C, H, W] and w [C, O/groups, KH, KW]; got ${formatShape(x.shape)} and ${formatShape(w.shape)}`);
    return this.conv2dBackwardInput(x, w, { ...attrs, inputSize: [size(0), size(1)] });
  }
  /** conv2d's input gradient (recorded by autodiff; convTranspose2d for models). */
  conv2dBackwardInput(dy: Tensor, w: Tensor, attrs: Conv2dBackwardInputAttrs): Tensor {
    return this.op('conv2dBackwardInput', [dy, w], { ...attrs });
  }
  /** conv2d's weight gradient (recorded by autodiff). */
  conv2dBackwardWeight(x: Tensor, dy: Tensor, attrs: Conv2dBackwardWeightAttrs): Tensor {
    return this.op('conv2dBackwardWeight', [x, dy], { ...attrs });
  }

  /**
   * Maximum over each window of NCHW x, channel by channel: `kernel` one number or [KH, KW];
   * `stride` defaults to the kernel; padding may not leave a window without an input element, so it is never the maximum.
   */
  maxPool2d(x: Tensor, options: Pool2dOptions): Tensor {
    return this.op('maxPool2d', [x], pool2dAttrs(options));
  }
  /** Where each maxPool2d window's first maximum lies: its flat NCHW index in x (i32; no gradient). */
  maxPool2dIndices(x: Tensor, options: Pool2dOptions): Tensor {
    return this.op('maxPool2dIndices', [x], pool2dAttrs(options));
  }
  /**
   * Mean over each window of NCHW x, channel by channel, options as maxPool2d's; padding counts
   * as zeros in the divisor (KH·KW, PyTorch's default) unless `countIncludePad` is false.
   */
  avgPool2d(x: Tensor, options: Pool2dOptions & { countIncludePad?: boolean }): Tensor {
    return this.op('avgPool2d', [x], { ...pool2dAttrs(options), countIncludePad: options.countIncludePad ?? true });
  }
  /**
   * Batch normalisation of NCHW x with running statistics (inference): x·s + (β - μ·s) per
   * channel, s = γ / √(σ² + eps), with γ, β, μ, σ² vectors [C]. The optimizer folds the
   * scale and shift into a preceding convolution's epilogue (fusedConv2d).
   */
  batchNorm(x: Tensor, gamma: Tensor, beta: Tensor, mean: Tensor, variance: Tensor, options: { eps?: number } = {}): Tensor {
    const c = this.channelsOf('batchNorm', x, { gamma, beta, mean, variance });
    const scale = this.div(gamma, this.sqrt(this.add(variance, options.eps ?? 1e-5)));
    const shift = this.sub(beta, this.mul(mean, scale));
    return this.add(this.mul(x, this.reshape(scale, [c, 1, 1])), this.reshape(shift, [c, 1, 1]));
  }
  /**
   * Batch normalisation of NCHW x with the batch's own statistics (training): (x - μ) / √(σ² + eps)·γ + β,
   * μ and σ² (biased) over N, H and W per channel. Composed of means, so autodiff needs no rule of its own.
   */
  batchNormTraining(x: Tensor, gamma: Tensor, beta: Tensor, options: { eps?: number } = {}): Tensor {
    const c = this.channelsOf('batchNormTraining', x, { gamma, beta });
    const overBatch = (t: Tensor) => this.mean(this.mean(this.mean(t, 3, { keepDims: true }), 2, { keepDims: true }), 0, { keepDims: true });
    const centred = this.sub(x, overBatch(x));
    const normalised = this.div(centred, this.sqrt(this.add(overBatch(this.mul(centred, centred)), options.eps ?? 1e-5)));
    return this.add(this.mul(normalised, this.reshape(gamma, [c, 1, 1])), this.reshape(beta, [c, 1, 1]));
  }
  /** Mean over H and W of NCHW x: [N, C, 1, 1]. */
  globalAvgPool2d(x: Tensor): Tensor {
    if (x.shape.length !== 4) this.fail('globalAvgPool2d', `x must be NCHW [N, C, H, W]; got ${formatShape(x.shape)}`);
    return this.mean(this.mean(x, 3, { keepDims: true }), 2, { keepDims: true });
  }
  /** maxPool2d's input gradient (recorded by autodiff). */
  maxPool2dBackward(dy: Tensor, x: Tensor, attrs: PoolBackwardAttrs<Pool2dAttrs>): Tensor {
    return this.op('maxPool2dBackward', [dy, x], { ...attrs });
  }
  /** avgPool2d's input gradient (recorded by autodiff). */
  avgPool2dBackward(dy: Tensor, attrs: PoolBackwardAttrs<AvgPool2dAttrs>): Tensor {
    return this.op('avgPool2dBackward', [dy], { ...attrs });
  }

  // --- fused ops (what the optimizer rewrites chains into; usable directly) -----------

  /**
   * Pointwise ops of the op table as one kernel. `program` is straight-line code over the
   * operands; the last instruction's value is the result. gelu(x * w + 1) is
   * `g.fusedPointwise([x, w], [{ op: 'mul', args: [{ operand: 0 }, { operand: 1 }] },
   * { op: 'add', args: [{ value: 0 }, { scalar: 1 }] }, { op: 'gelu', args: [{ value: 1 }] }])`.
   */
  fusedPointwise(operands: readonly Tensor[], program: readonly FusedInstruction[]): Tensor {
    if (operands.length === 0) this.fail('fusedPointwise', 'needs at least one operand');
    if (!Array.isArray(program)) this.fail('fusedPointwise', 'program must be an array of instructions');
    // a copy, so the caller changing its array later does not change the node
    const copy = program.map((ins) =>
      ins && typeof ins === 'object'
        ? { ...ins, args: Array.isArray(ins.args) ? ins.args.map((a: FusedArg) => (a && typeof a === 'object' ? { ...a } : a)) : ins.args, ...(ins.attrs ? { attrs: { ...ins.attrs } } : {}) }
        : ins,
    );
    return this.op('fusedPointwise', operands, { program: copy });
  }
  /**
   * act(op(a)·op(b) + bias) + residual as one matmul kernel: `transposeA` reads a stored
   * [.., K, M] (and `transposeB` b stored [.., N, K]) with its last two axes swapped; bias is
   * a vector over the result's last axis, residual anything that broadcasts to the result.
   */
  fusedMatmul(a: Tensor, b: Tensor, options: FusedMatmulOptions = {}): Tensor {
    const cache = options.cacheWrite?.cache;
    if (cache && this.node(cache).op !== 'state') this.fail('fusedMatmul', `the cache must be a state buffer (g.state); '${this.node(cache).name}' is a ${this.node(cache).op}`);
    const { operands, attrs } = fusedProduct(a, b, options);
    return this.op('fusedMatmul', operands, attrs);
  }

  // --- optimizer steps (recorded by the training stage) -------------------------------

  /** `check`: one value; when it is not finite the update changes nothing (a skipped step). */
  sgdUpdate(p: Tensor, grad: Tensor, velocity: Tensor, hyper: Tensor, check: Tensor): Tensor {
    return this.op('sgdUpdate', [p, grad, velocity, hyper, check], {});
  }
  adamUpdate(p: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper: Tensor, check: Tensor, options: { decoupled: boolean }): Tensor {
    return this.op('adamUpdate', [p, grad, m, v, hyper, check], { decoupled: options.decoupled });
  }

  // --- outputs ------------------------------------------------------------------------

  /** Marks a value as a plan output under `name` (`hostDtype`: as for inputs). */
  output(name: string, x: Tensor, options: { hostDtype?: HostDType } = {}): void {
    if (!(x instanceof Tensor) || x.graph !== this) this.fail('output', `output '${name}' is not a tensor of this graph`);
    if (!IDENTIFIER.test(name)) this.fail('output', `output name '${name}' must be an identifier`);
    if (this.outputs.some((o) => o.name === name)) this.fail('output', `output '${name}' is defined twice`);
    if (isPackedDType(x.dtype)) this.fail('output', `output '${name}' is a packed ${x.dtype} tensor; outputs hold element dtypes`);
    if (options.hostDtype && x.dtype !== 'f32') this.fail('output', `output '${name}' is ${x.dtype}: only f32 outputs exchange ${options.hostDtype} values`);
    this.outputs.push(options.hostDtype ? { name, node: x.id, hostDtype: options.hostDtype } : { name, node: x.id });
  }

  node(t: Tensor): Node {
    return this.nodes[t.id];
  }

  tensor(id: number): Tensor {
    return new Tensor(this, id);
  }

  /**
   * Records a node by op name, for passes that rebuild graphs (the optimizer, importers);
   * leaves need their `name`, which stays unique as always.
   */
  apply(op: OpName, operands: readonly Tensor[], attrs: object, name?: string): Tensor {
    if (opDef(op).arity === 0) {
      if (name === undefined) this.fail(op, 'a leaf needs a name');
      return this.leaf(op as 'input' | 'parameter' | 'constant' | 'state', name, attrs as LeafAttrs & Record<string, unknown>);
    }
    if (name !== undefined && this.names.has(name)) this.fail(op, `the name '${name}' is already used in this graph`);
    return this.op(op, operands, attrs as AttrsOf<typeof op> & object, name);
  }

  /** Runs `record` with every node it creates located at `loc` (backward nodes point at their forward op). */
  at<T>(loc: SourceLocation | undefined, record: () => T): T {
    const saved = this.fixedLocation;
    this.fixedLocation = { loc };
    try {
      return record();
    } finally {
      this.fixedLocation = saved;
    }
  }

  // --- recording ----------------------------------------------------------------------

  private binary(op: 'add' | 'sub' | 'mul' | 'div' | 'equal' | 'less' | 'greater' | 'pow' | 'minimum' | 'maximum', a: TensorLike, b: TensorLike): Tensor {
    const lift = (v: TensorLike) => (typeof v === 'number' ? this.constant(v) : v);
    return this.op(op, [lift(a), lift(b)], {});
  }

  private leaf(op: 'input' | 'parameter' | 'constant' | 'state', name: string, attrs: LeafAttrs & Record<string, unknown>): Tensor {
    if (!IDENTIFIER.test(name)) this.fail(op, `name '${name}' must start with a letter or _ and hold only letters, digits, _ . - /`);
    if (this.names.has(name)) this.fail(op, `the name '${name}' is already used in this graph`);
    // an empty constant is the value of an empty output (frontends fold ops on empty tensors)
    const least = op === 'constant' ? 0 : 1;
    for (const d of attrs.shape) {
      if (!Number.isInteger(d) || d < least) this.fail(op, `'${name}' has shape ${formatShape(attrs.shape)}; dimensions must be ${least ? 'positive' : 'non-negative'} integers`);
    }
    return this.record(op, [], attrs, name);
  }

  private op<K extends OpName>(op: K, operands: readonly Tensor[], attrs: AttrsOf<K> & object, name?: string): Tensor {
    for (const [i, t] of operands.entries()) {
      if (!(t instanceof Tensor)) this.fail(op, `operand ${i + 1} is not a tensor (got ${typeof t})`);
      if (t.graph !== this) this.fail(op, `operand ${i + 1} belongs to another graph`);
      if (elementCount(t.shape) === 0) this.fail(op, `operand ${i + 1} has shape ${formatShape(t.shape)}, no elements: an empty tensor can only be an output (ops on empty tensors fold at compile time)`);
    }
    const def = opDef(op);
    if (def.arity !== 'variadic' && operands.length !== def.arity) {
      this.fail(op, `takes ${def.arity} operands; got ${operands.length}`);
    }
    return this.record(op, operands.map((t) => t.id), attrs, name);
  }

  private record(op: OpName, inputs: number[], attrs: object, name?: string): Tensor {
    const loc = this.fixedLocation ? this.fixedLocation.loc : this.locate();
    let type: TensorType;
    try {
      type = opDef(op).infer(inputs.map((i) => this.nodes[i].type), attrs);
    } catch (e) {
      if (e instanceof ShapeRuleError) throw new CompileError('shape', `${op}: ${e.message}`, loc, op);
      throw e;
    }
    const id = this.nodes.length;
    const nodeName = name ?? this.freshName(op);
    this.names.add(nodeName);
    this.nodes.push({ id, op, inputs, attrs: attrs as Record<string, unknown>, type, name: nodeName, loc });
    return new Tensor(this, id);
  }

  /** `${prefix}_${n}` for the first n that no node uses (rebuilt graphs keep their source's names). */
  private freshName(prefix: string): string {
    let n = this.nodes.length;
    while (this.names.has(`${prefix}_${n}`)) n++;
    return `${prefix}_${n}`;
  }

  /** C of NCHW x, checking each per-channel vector is [C]. */
  private channelsOf(op: string, x: Tensor, vectors: Record<string, Tensor>): number {
    if (x.shape.length !== 4) this.fail(op, `x must be NCHW [N, C, H, W]; got ${formatShape(x.shape)}`);
    const c = x.shape[1];
    for (const [name, v] of Object.entries(vectors)) {
      if (!sameShape(v.shape, [c])) this.fail(op, `${name} must have shape [${c}] (the channels of x ${formatShape(x.shape)}); got ${formatShape(v.shape)}`);
    }
    return c;
  }

  private fail(op: string, message: string): never {
    throw new CompileError('shape', `${op}: ${message}`, this.fixedLocation ? this.fixedLocation.loc : this.locate(), op);
  }
}

/** The nodes the given roots depend on, roots included. */
export function liveNodes(graph: Graph, roots: readonly number[]): Set<number> {
  const live = new Set<number>();
  const stack = [...roots];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (live.has(id)) continue;
    live.add(id);
    stack.push(...graph.nodes[id].inputs);
  }
  return live;
}

/** The first stack frame outside the IR package: the model code that called the builder. */
/** The epilogue and transposed reads of a fused product, as the builder takes them. */
export interface FusedMatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
  activation?: MatmulActivation;
  bias?: Tensor;
  /** swiglu(gate, value) after the activation: silu(gate)·value, gate of the result's shape */
  gate?: Tensor;
  residual?: Tensor;
  /** A's rows read through RMSNorm (weight [K], eps) as the kernel loads them; at most 16 rows a matrix */
  norm?: { weight: Tensor; eps: number };
  /**
   * last, a rope of the value seen as heads `shape` ([.., M, N/d, d]) at `positions` (one per
   * row), as g.rope takes its options; B read transposed, at most 16 rows a matrix
   */
  rope?: { positions: Tensor; shape: Shape; theta: number; rotaryDim?: number; scaling?: Llama3RopeScaling; inverse?: boolean };
  /**
   * the value, viewed as `rows`, written into `cache` (a state buffer) at `offsets`, as
   * g.cacheWrite(cache, g.reshape(value, rows), offsets) does; the result is the updated cache.
   * At most 16 rows a matrix
   */
  cacheWrite?: { cache: Tensor; rows: Shape; offsets: Tensor };
}

/** A convolution's window as the builder takes it: single numbers for both axes (and all four sides), or per axis. */
export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number] | readonly [number, number, number, number];
  dilation?: number | readonly [number, number];
  groups?: number;
  bias?: Tensor;
}

// a malformed value passes through unchanged, for the shape rule to name
const pairOf = (v: number | readonly number[]) => (typeof v === 'number' ? [v, v] : [...v]) as unknown as readonly [number, number];

/** The op's attributes from the builder's options, shorthands expanded and defaults filled in. */
export function conv2dAttrs(options: Omit<Conv2dOptions, 'bias'>): Conv2dAttrs {
  const padding = options.padding ?? 0;
  const sides = typeof padding === 'number' ? [padding, padding, padding, padding] : padding.length === 2 ? [padding[0], padding[1], padding[0], padding[1]] : [...padding];
  return {
    stride: pairOf(options.stride ?? 1),
    padding: sides as unknown as Conv2dAttrs['padding'],
    dilation: pairOf(options.dilation ?? 1),
    groups: options.groups ?? 1,
  };
}

/** A pooling window as the builder takes it: the kernel, and a convolution's window options less groups. */
export interface Pool2dOptions extends Omit<Conv2dOptions, 'bias' | 'groups'> {
  kernel: number | readonly [number, number];
}

/** The op's attributes from the builder's options (stride defaults to the kernel). */
export function pool2dAttrs(options: Pool2dOptions): Pool2dAttrs {
  const kernel = pairOf(options.kernel);
  const { stride, padding, dilation } = conv2dAttrs({ ...options, stride: options.stride ?? kernel });
  return { kernel, stride, padding, dilation };
}

/** A fused product's operands (a, b, then bias, gate, residual and the norm's weight where given) and attributes. */
function fusedProduct(a: Tensor, b: Tensor, options: FusedMatmulOptions): { operands: Tensor[]; attrs: FusedMatmulAttrs } {
  const given = (t: Tensor | undefined) => (t ? [t] : []);
  return {
    operands: [a, b, ...given(options.bias), ...given(options.gate), ...given(options.residual), ...given(options.rope?.positions), ...given(options.norm?.weight), ...given(options.cacheWrite?.offsets), ...given(options.cacheWrite?.cache)],
    attrs: {
      transposeA: options.transposeA ?? false,
      transposeB: options.transposeB ?? false,
      activation: options.activation ?? 'none',
      bias: options.bias !== undefined,
      gate: options.gate !== undefined,
      residual: options.residual !== undefined,
      norm: options.norm !== undefined,
      eps: options.norm?.eps ?? 0,
      rope: options.rope !== undefined,
      ...(options.rope ? { rotation: ropeRotation(options.rope) } : {}),
      offsets: options.cacheWrite !== undefined,
      cache: options.cacheWrite !== undefined,
      ...(options.cacheWrite ? { rows: [...options.cacheWrite.rows] } : {}),
    },
  };
}

/** The rotation of a fused rope from the builder's option, defaults filled in as g.rope does. */
function ropeRotation({ shape, theta, rotaryDim, scaling, inverse }: NonNullable<FusedMatmulOptions['rope']>): FusedRotation {
  return { shape: [...shape], theta, rotaryDim: rotaryDim ?? shape[shape.length - 1], inverse: inverse ?? false, ...(scaling ? { scaling: { ...scaling } } : {}) };
}

function callerLocation(): SourceLocation | undefined {
  const stack = new Error().stack?.split('\n').slice(1) ?? [];
  for (const line of stack) {
    const m = /\(?((?:file:\/\/)?[^()\s]+):(\d+):(\d+)\)?\s*$/.exec(line);
    if (!m) continue;
    const file = m[1].replace(/^file:\/\//, '');
    if (/[\\/]compiler[\\/]ir[\\/]/.test(file) || file.startsWith('node:')) continue;
    return { file, line: Number(m[2]), column: Number(m[3]) };
  }
  return undefined;
}
