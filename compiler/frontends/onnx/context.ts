// The view one ONNX node's converter has of the import: its attributes with their
// defaults, its operands as values, the model's opset, and `apply`, which records an IR op
// or, when every operand is known at compile time, evaluates it with the op table's CPU
// reference. Every error it raises names the file, node, op type and opset.
import { CompileError } from '../../ir/errors';
import type { Graph, Tensor } from '../../ir/graph';
import { opDef, type OpName } from '../../ir/ops';
import { elementCount, formatShape, type TensorType } from '../../ir/types';
import { BOOL, dataTypeName, FLOAT, isIntegerType, type AttributeProto, type NodeProto, type TensorProto, type TensorValue } from './proto';
import { computed, foldable, folded, shapeOf, type Computed, type Folded, type Value } from './values';

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
  /** Operand i, which must be known at compile time (a shape, axes, a constant). */
  known(i: number, what: string): Folded {
    const v = this.input(i);
    if (v.kind !== 'folded') this.fail(`input ${i + 1} (${what}) must be known at compile time; it is computed at run time from the graph's inputs`);
    return v;
  }
  knownInts(i: number, what: string): number[] | undefined {
    return this.optional(i) ? Array.from(this.known(i, what).data) : undefined;
  }

  /** The IR tensor of a value: a folded value becomes a constant of the plan. */
  tensor(v: Value): Tensor {
    if (v.kind === 'computed') return v.tensor;
    const cached = this.materialized.get(v);
    if (cached) return cached;
    if (v.shape.some((d) => d === 0)) this.fail(`tensor of shape ${formatShape(v.shape)} has no elements; the plan carries no zero-size tensors`);
    const t = this.g.constant(Float32Array.from(v.data), v.shape);
    this.materialized.set(v, t);
    return t;
  }

  /** Fails unless every computed operand is float or bool (IR f32): the plan computes integers only as gather indices. */
  requireFloat(...values: (Value | undefined)[]): void {
    for (const v of values) {
      if (v?.kind === 'computed' && v.dataType !== FLOAT && v.dataType !== BOOL) {
        this.fail(`computing on ${dataTypeName(v.dataType)} tensors at run time is not supported (the plan computes float32 and bool; integer tensors only index Gather, or fold at compile time)`);
      }
    }
  }

  /**
   * Op `op` of the IR table on the operands: evaluated now when all are known, recorded
   * otherwise. `dataType` is the ONNX type of the result (integers truncate when folded).
   */
  apply(op: OpName, operands: readonly Value[], attrs: object, dataType: number): Value {
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
