// The view one ONNX node's converter has of the import: its attributes with their
// defaults, its operands as values, the model's opset, and `apply`, which records an IR op
// or, when every operand is known at compile time, evaluates it with the op table's CPU
// reference. Every error it raises names the file, node, op type and opset.
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../../../runtime/f16';
import { CompileError } from '../../ir/errors';
import type { Graph, Tensor } from '../../ir/graph';
import { opDef, type OpName } from '../../ir/ops';
import { elementCount, formatShape, type TensorType } from '../../ir/types';
import { BFLOAT16, BOOL, dataTypeName, DOUBLE, FLOAT, FLOAT16, isFloatType, isIntegerType, type AttributeProto, type GraphProto, type NodeProto, type TensorProto, type TensorValue } from './proto';
import { computed, foldable, folded, shapeOf, type Computed, type Folded, type Value } from './values';

/** The ONNX ops that compute on integer tensors at run time (as i32), for messages. */
export const INTEGER_OPS = 'Add, Sub, Mul, Div, Mod, Neg, Abs, Min, Max, Pow, comparisons, Where, Cast, Clip, Reduce{Sum,Mean,Max,Min}, ArgMax/ArgMin, Gather and the layout ops';

/** A folded integer value as i32 constant values, refused (naming the tensor) where one does not fit. */
export function narrowToI32(v: Folded, where: string): Int32Array {
  const bad = v.data.findIndex((x) => !(x >= -(2 ** 31) && x <= 2 ** 31 - 1) || !Number.isInteger(x));
  if (bad >= 0) {
    const what = v.name ? `${dataTypeName(v.dataType)} tensor '${v.name}'` : `a computed ${dataTypeName(v.dataType)} tensor ${formatShape(v.shape)}`;
    throw new CompileError('model', `${where}: ${what} holds ${v.data[bad]} at element ${bad}, which does not fit the plan's int32 (integers run as int32: values must lie in [-2147483648, 2147483647])`);
  }
  return Int32Array.from(v.data);
}

/** x as a value of float32, or of float16/bfloat16 where `narrow` names one (ties to even). */
export function roundTo(x: number, narrow: 'f16' | 'bf16' | undefined): number {
  if (narrow === 'f16') return f16BitsToF32(f32ToF16Bits(x));
  if (narrow === 'bf16') return bf16BitsToF32(f32ToBf16Bits(x));
  return Math.fround(x);
}

/** What the converters of one import share beyond its values. */
export interface ImportState {
  /** how many nodes (of the graph and its subgraphs) and graph outputs read each ONNX name */
  uses: ReadonlyMap<string, number>;
  /** convolutions whose weight and bias are fixed at compile time, by their result */
  frozenConvs: WeakMap<Tensor, FrozenConv>;
}

/** A convolution a following inference-mode batch norm may fold into (w·s, (b - μ)·s + β). */
export interface FrozenConv {
  /** the weight operand: a frozen parameter (whose initial values a fold replaces) or a folded value */
  weight: Value;
  /** its ONNX name, to check that no other node reads it */
  weightName: string;
  weightValues: Folded;
  bias?: Folded;
  /** the convolution recorded again, on the same input with the same attributes, with this weight and bias */
  convolve(weight: Value, bias: Value): Value;
}

export class NodeContext {
  private readonly attributes: Map<string, AttributeProto>;

  constructor(
    readonly g: Graph,
    readonly node: NodeProto,
    readonly opset: number,
    readonly file: string,
    private readonly operands: (Value | undefined)[],
    private readonly readTensor: (t: TensorProto, what: string) => TensorValue,
    /** IR constants made from folded values, so one value is stored once */
    private readonly materialized: WeakMap<Folded, Tensor>,
    /** runs a subgraph attribute (a Loop's body) on values, inside this node's scope */
    readonly runSubgraph: (body: GraphProto, inputs: readonly Value[]) => Value[],
    readonly imports: ImportState,
  ) {
    this.attributes = new Map((node.attribute ?? []).map((a) => [a.name ?? '', a]));
  }

  get opType(): string {
    return this.node.opType ?? '';
  }

  /** Where this node is, for messages: file, node name, op type and opset. */
  describe(): string {
    return `${this.file}: node '${this.node.name || this.node.output?.[0] || '?'}' (${this.opType}, opset ${this.opset})`;
  }

  fail(message: string, kind: 'model' | 'shape' = 'model'): never {
    throw new CompileError(kind, `${this.describe()}: ${message}`, undefined, this.opType);
  }

  // --- attributes -------------------------------------------------------------------

  has(name: string): boolean {
    return this.attributes.has(name);
  }
  int(name: string, fallback: number): number {
    const a = this.attributes.get(name);
    return a?.i !== undefined ? Number(a.i) : fallback;
  }
  float(name: string, fallback: number): number {
    const a = this.attributes.get(name);
    return a?.f !== undefined ? a.f : fallback;
  }
  ints(name: string): number[] | undefined {
    return this.attributes.get(name)?.ints?.map(Number);
  }
  string(name: string, fallback: string): string {
    const s = this.attributes.get(name)?.s;
    return s ? new TextDecoder().decode(s) : fallback;
  }
  graph(name: string): GraphProto | undefined {
    return this.attributes.get(name)?.g;
  }
  tensorAttr(name: string): Folded | undefined {
    const t = this.attributes.get(name)?.t;
    if (!t) return undefined;
    const v = this.readTensor(t, `attribute '${name}' of ${this.describe()}`);
    return folded(v.dataType, v.shape, v.data);
  }
  attributeNames(): string[] {
    return [...this.attributes.keys()];
  }

  // --- operands ---------------------------------------------------------------------

  get inputCount(): number {
    return this.operands.length;
  }
  /** Operand i, or undefined where it is absent (an empty name, or past the end). */
  optional(i: number): Value | undefined {
    return this.operands[i];
  }
  input(i: number): Value {
    const v = this.operands[i];
    if (!v) this.fail(`input ${i + 1} is required`);
    return v;
  }
  /**
   * Operand i, which must be known at compile time (a shape, axes, a constant). A float
   * initializer here (Resize's scales, Pad's value) is read at its stored value, trainable or
   * not: nothing can train what the compiler needs fixed.
   */
  known(i: number, what: string): Folded {
    const v = this.storedValue(this.input(i));
    if (v.kind !== 'folded') this.fail(`input ${i + 1} (${what}) must be known at compile time; it is computed at run time from the graph's inputs`);
    return v;
  }
  /**
   * A value as a folded one where its values are fixed at compile time: folded already, or a
   * frozen parameter (an initializer imported with --freeze) whose initial values it holds.
   */
  fixedValue(v: Value): Value {
    if (v.kind === 'folded') return v;
    return this.g.node(v.tensor).attrs.trainable === false ? this.storedValue(v) : v;
  }
  /** A parameter (an initializer) as a folded value of its initial values; other values as they are. */
  private storedValue(v: Value): Value {
    if (v.kind === 'folded') return v;
    const n = this.g.node(v.tensor);
    const init = n.attrs.init;
    if (n.op !== 'parameter' || !(init instanceof Float32Array)) return v;
    return folded(v.dataType, n.type.shape, Float64Array.from(init), n.name);
  }
  /** How many nodes and graph outputs read ONNX name `name`. */
  uses(name: string | undefined): number {
    return name ? (this.imports.uses.get(name) ?? 0) : 0;
  }
  knownInts(i: number, what: string): number[] | undefined {
    return this.optional(i) ? Array.from(this.known(i, what).data) : undefined;
  }

  /**
   * The IR tensor of a value: a folded value becomes a constant of the plan, an integer one
   * an i32 constant, refused (naming the tensor) where a value does not fit in 32 bits.
   */
  tensor(v: Value): Tensor {
    if (v.kind === 'computed') return v.tensor;
    const cached = this.materialized.get(v);
    if (cached) return cached;
    if (v.shape.some((d) => d === 0)) this.fail(`${this.opType} of an empty tensor (shape ${formatShape(v.shape)}) with a value computed at run time is not supported (ops on empty tensors fold only where their result is empty or known)`);
    const t = this.g.constant(isIntegerType(v.dataType) ? narrowToI32(v, this.describe()) : Float32Array.from(v.data), v.shape);
    this.materialized.set(v, t);
    return t;
  }

  /** Whether a value is an integer tensor (IR i32 when computed at run time). */
  isInteger(v: Value | undefined): boolean {
    return v !== undefined && isIntegerType(v.dataType);
  }

  /**
   * Fails unless every computed operand is float or bool (IR f32): ops outside the integer
   * set (the elementwise arithmetic, comparisons, Where, Cast, Clip, the reductions, ArgMax)
   * take float tensors only.
   */
  requireFloat(...values: (Value | undefined)[]): void {
    for (const v of values) {
      if (v?.kind === 'computed' && !isFloatType(v.dataType) && v.dataType !== BOOL) {
        this.fail(`${this.opType} on ${dataTypeName(v.dataType)} tensors at run time is not supported (integers compute at run time in ${INTEGER_OPS}; other ops take float and bool)`);
      }
    }
  }

  /**
   * A value converted to ONNX type `to` (a float type, bool or an integer type): folded now,
   * or a cast of the plan. Every float type computes as f32; a conversion to float16 or
   * bfloat16 rounds to the format's values (double keeps f32's).
   */
  convert(v: Value, to: number): Value {
    const from = v.dataType;
    if (from === to || (isIntegerType(from) && isIntegerType(to))) return v.kind === 'folded' ? folded(to, v.shape, v.data) : computed(to, v.tensor);
    const narrow = to === FLOAT16 ? 'f16' : to === BFLOAT16 ? 'bf16' : undefined;
    if (v.kind === 'folded') {
      const fold = isIntegerType(to) ? Math.trunc : to === BOOL ? (x: number) => (x !== 0 ? 1 : 0) : to === DOUBLE ? (x: number) => x : (x: number) => roundTo(x, narrow);
      return folded(to, v.shape, v.data.map(fold));
    }
    const zero = (t: number) => folded(t, [], Float64Array.of(0));
    // to bool: x ≠ 0, a 0/1 f32
    if (to === BOOL) return computed(BOOL, this.record('sub', [this.tensor(folded(FLOAT, [], Float64Array.of(1))), this.record('equal', [v.tensor, this.tensor(zero(from === BOOL ? FLOAT : from))], {})], {}));
    // bool and the float types are all f32: integers convert, narrow floats round
    const f32 = isIntegerType(from) !== isIntegerType(to) ? this.record('cast', [v.tensor], { to: isIntegerType(to) ? 'i32' : 'f32' }) : v.tensor;
    return computed(to, narrow ? this.record('roundFloat', [f32], { format: narrow }) : f32);
  }

  /**
   * Op `op` of the IR table on the operands: evaluated now when all are known, recorded
   * otherwise. `dataType` is the ONNX type of the result (integers truncate when folded).
   */
  apply(op: OpName, operands: readonly Value[], attrs: object, dataType: number): Value {
    // an empty result is known whatever the operands hold: an empty constant, no kernel
    const empty = this.emptyResult(op, operands, attrs);
    if (empty) return folded(dataType, empty, new Float64Array(0));
    if (operands.every((v): v is Folded => v.kind === 'folded')) {
      const def = opDef(op);
      const types: TensorType[] = operands.map((v) => ({ shape: v.shape, dtype: 'f32' }));
      let out: TensorType;
      try {
        out = def.infer(types, attrs);
      } catch (e) {
        this.fail(`${op}: ${e instanceof Error ? e.message : String(e)}`, 'shape');
      }
      foldable(out.shape);
      let data = def.evaluate(operands.map((v) => ({ data: v.data, shape: v.shape })), attrs, out);
      if (data === operands[0]?.data) data = Float64Array.from(data);
      if (isIntegerType(dataType)) data = data.map(Math.trunc);
      else if (dataType === BOOL) data = data.map((x) => (x !== 0 ? 1 : 0));
      return folded(dataType, out.shape, data);
    }
    return computed(dataType, this.record(op, operands.map((v) => this.tensor(v)), attrs));
  }

  /** The shape of op's result where it has no elements, else undefined (a shape rule's refusal is left to the caller). */
  private emptyResult(op: OpName, operands: readonly Value[], attrs: object): number[] | undefined {
    if (!operands.some((v) => elementCount(shapeOf(v)) === 0)) return undefined;
    const types: TensorType[] = operands.map((v) => ({ shape: shapeOf(v), dtype: v.kind === 'computed' ? v.tensor.dtype : 'f32' }));
    try {
      const out = opDef(op).infer(types, attrs);
      return elementCount(out.shape) === 0 ? [...out.shape] : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records an IR op, turning a shape rule's refusal into this node's error. */
  record(op: OpName, operands: readonly Tensor[], attrs: object): Tensor {
    try {
      return this.g.apply(op, operands, attrs);
    } catch (e) {
      if (e instanceof CompileError) this.fail(e.message, 'shape');
      throw e;
    }
  }

  shape(v: Value): readonly number[] {
    return shapeOf(v);
  }
  rank(v: Value): number {
    return shapeOf(v).length;
  }
  /** Normalises an axis against a rank, or fails naming it. */
  axis(axis: number, rank: number, what = 'axis'): number {
    const a = axis < 0 ? axis + rank : axis;
    if (!Number.isInteger(a) || a < 0 || a >= rank) this.fail(`${what} ${axis} is out of range for rank ${rank}`);
    return a;
  }
  count(v: Value): number {
    return elementCount(shapeOf(v));
  }
}

export type { Computed, Folded, Value };
