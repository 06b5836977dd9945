// The IR graph and the builder API model files call (`g.matmul(x, w)` …). Nodes are
// appended in creation order, which is a topological order. Every builder call checks
// its op's shape rule at once and records the caller's source location, so a shape error
// names the user's line.
import { CompileError } from './errors';
import {
  opDef,
  ShapeRuleError,
  type AttrsOf,
  type Init,
  type LeafAttrs,
  type OpName,
} from './ops';
import { elementCount, formatShape, type DType, type Shape, type SourceLocation, type TensorType } from './types';

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
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;

export class Graph {
  readonly nodes: Node[] = [];
  readonly outputs: GraphOutput[] = [];
  private readonly names = new Set<string>();
  private readonly locate: () => SourceLocation | undefined;

  constructor(
    readonly name: string,
    options: GraphOptions = {},
  ) {
    this.locate = options.locate ?? callerLocation;
  }

  // --- leaves -------------------------------------------------------------------------

  /** A value fed at run time. */
  input(name: string, shape: Shape, dtype: DType = 'f32'): Tensor {
    return this.leaf('input', name, { shape: [...shape], dtype });
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

  /** A fixed tensor; a number gives a scalar (shape []). */
  constant(values: number | readonly number[] | Float32Array, shape?: Shape, name?: string): Tensor {
    const data = typeof values === 'number' ? new Float32Array([values]) : Float32Array.from(values);
    const s = shape ?? (typeof values === 'number' ? [] : [data.length]);
    if (elementCount(s) !== data.length) {
      this.fail('constant', `${data.length} values do not fill shape ${formatShape(s)} (${elementCount(s)} elements)`);
    }
    return this.leaf('constant', name ?? `const_${this.nodes.length}`, { shape: [...s], dtype: 'f32', values: data });
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

  // --- layout and products ------------------------------------------------------------

  /** Row-major reshape; one axis may be -1. */
  reshape(x: Tensor, shape: readonly number[]): Tensor {
    return this.op('reshape', [x], { shape: [...shape] });
  }
  /** Permutes axes; without `perm`, reverses them. */
  transpose(x: Tensor, perm?: readonly number[]): Tensor {
    return this.op('transpose', [x], { perm: perm ? [...perm] : x.shape.map((_, i) => x.shape.length - 1 - i) });
  }
  concat(xs: readonly Tensor[], axis: number): Tensor {
    if (xs.length === 0) this.fail('concat', 'needs at least one operand');
    return this.op('concat', xs, { axis });
  }
  matmul(a: Tensor, b: Tensor): Tensor {
    return this.op('matmul', [a, b], {});
  }

  // --- outputs ------------------------------------------------------------------------

  /** Marks a value as a plan output under `name`. */
  output(name: string, x: Tensor): void {
    if (!(x instanceof Tensor) || x.graph !== this) this.fail('output', `output '${name}' is not a tensor of this graph`);
    if (!IDENTIFIER.test(name)) this.fail('output', `output name '${name}' must be an identifier`);
    if (this.outputs.some((o) => o.name === name)) this.fail('output', `output '${name}' is defined twice`);
    this.outputs.push({ name, node: x.id });
  }

  node(t: Tensor): Node {
    return this.nodes[t.id];
  }

  // --- recording ----------------------------------------------------------------------

  private binary(op: 'add' | 'sub' | 'mul' | 'div', a: TensorLike, b: TensorLike): Tensor {
    const lift = (v: TensorLike) => (typeof v === 'number' ? this.constant(v) : v);
    return this.op(op, [lift(a), lift(b)], {});
  }

  private leaf(op: 'input' | 'parameter' | 'constant', name: string, attrs: LeafAttrs & Record<string, unknown>): Tensor {
    if (!IDENTIFIER.test(name)) this.fail(op, `name '${name}' must start with a letter or _ and hold only letters, digits, _ . - /`);
    if (this.names.has(name)) this.fail(op, `the name '${name}' is already used in this graph`);
    for (const d of attrs.shape) {
      if (!Number.isInteger(d) || d <= 0) this.fail(op, `'${name}' has shape ${formatShape(attrs.shape)}; dimensions must be positive integers`);
    }
    return this.record(op, [], attrs, name);
  }

  private op<K extends OpName>(op: K, operands: readonly Tensor[], attrs: AttrsOf<K> & object): Tensor {
    for (const [i, t] of operands.entries()) {
      if (!(t instanceof Tensor)) this.fail(op, `operand ${i + 1} is not a tensor (got ${typeof t})`);
      if (t.graph !== this) this.fail(op, `operand ${i + 1} belongs to another graph`);
    }
    const def = opDef(op);
    if (def.arity !== 'variadic' && operands.length !== def.arity) {
      this.fail(op, `takes ${def.arity} operands; got ${operands.length}`);
    }
    return this.record(op, operands.map((t) => t.id), attrs);
  }

  private record(op: OpName, inputs: number[], attrs: object, name?: string): Tensor {
    const loc = this.locate();
    let type: TensorType;
    try {
      type = opDef(op).infer(inputs.map((i) => this.nodes[i].type), attrs);
    } catch (e) {
      if (e instanceof ShapeRuleError) throw new CompileError('shape', `${op}: ${e.message}`, loc, op);
      throw e;
    }
    const id = this.nodes.length;
    const nodeName = name ?? `${op}_${id}`;
    this.names.add(nodeName);
    this.nodes.push({ id, op, inputs, attrs: attrs as Record<string, unknown>, type, name: nodeName, loc });
    return new Tensor(this, id);
  }

  private fail(op: string, message: string): never {
    throw new CompileError('shape', `${op}: ${message}`, this.locate(), op);
  }
}

/** The first stack frame outside the IR package: the model code that called the builder. */
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
