// Graphs as e-graph terms and back. Every IR op has a constructor in the `Op` datatype:
// the ops rules talk about get their own (`(MatMul a b)`, `(Sum x axis keepDims)`, ...),
// with attributes as primitive arguments; every other op goes in as a generic
// `(Node "<op and attributes as JSON>" args)`. Leaves are named (`(Param "w1")`), one-value
// constants become `(Scalar v)` so rules can fold them. Axes are stored negative (-1 is
// the last axis whatever the rank), so one rule matches every rank.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { normalizeAxis } from '../ir/shape';
import { opDef, type OpName } from '../ir/ops';
import { GraphCopy } from '../ir/rewrite';
import { elementCount, type TensorType } from '../ir/types';
import type { EGraph, ENode, Value } from './egraph';
import type { Extraction } from './extract';

type Attrs = Readonly<Record<string, unknown>>;

/** How an op's attributes become primitive arguments of its constructor, and back. */
interface TermForm {
  ctor: string;
  /** the primitive sorts after the Op operands */
  sorts: string[];
  encode: (attrs: Attrs, operands: readonly TensorType[]) => Value[];
  decode: (values: readonly Value[]) => Attrs;
}

const none: Omit<TermForm, 'ctor'> = { sorts: [], encode: () => [], decode: () => ({}) };
const plain = (ctor: string): TermForm => ({ ctor, ...none });
const negativeAxis = (axis: number, rank: number) => normalizeAxis(axis, rank)! - rank;
const axisForm = (ctor: string): TermForm => ({
  ctor,
  sorts: ['i64', 'bool'],
  encode: (a, [x]) => [negativeAxis(a.axis as number, x.shape.length), a.keepDims as boolean],
  decode: ([axis, keepDims]) => ({ axis, keepDims }),
});
const list = (xs: readonly number[]) => xs.join(',');
const unlist = (s: Value) => (s === '' ? [] : String(s).split(',').map(Number));

/** Ops with a constructor of their own: the ones the rules in rules/*.egg match or build. */
const FORMS: Partial<Record<OpName, TermForm>> = {
  add: plain('Add'),
  sub: plain('Sub'),
  mul: plain('Mul'),
  div: plain('Div'),
  biasAdd: plain('BiasAdd'),
  relu: plain('Relu'),
  sigmoid: plain('Sigmoid'),
  tanh: plain('Tanh'),
  silu: plain('Silu'),
  swiglu: plain('Swiglu'),
  gelu: { ctor: 'Gelu', sorts: ['String'], encode: (a) => [a.approximate as string], decode: ([approximate]) => ({ approximate }) },
  exp: plain('Exp'),
  log: plain('Log'),
  neg: plain('Neg'),
  sqrt: plain('Sqrt'),
  sum: axisForm('Sum'),
  mean: axisForm('Mean'),
  max: axisForm('Max'),
  softmax: plain('Softmax'),
  logSoftmax: plain('LogSoftmax'),
  layerNorm: { ctor: 'LayerNorm', sorts: ['f64'], encode: (a) => [a.eps as number], decode: ([eps]) => ({ eps }) },
  rmsNorm: { ctor: 'RmsNorm', sorts: ['f64'], encode: (a) => [a.eps as number], decode: ([eps]) => ({ eps }) },
  reshape: { ctor: 'Reshape', sorts: ['String'], encode: (a, [x]) => [list(resolveShape(a.shape as number[], elementCount(x.shape)))], decode: ([s]) => ({ shape: unlist(s) }) },
  transpose: { ctor: 'Transpose', sorts: ['String'], encode: (a) => [list(a.perm as number[])], decode: ([p]) => ({ perm: unlist(p) }) },
  matmul: plain('MatMul'),
  attention: {
    ctor: 'Attention',
    sorts: ['f64', 'bool'],
    encode: (a) => [a.scale as number, (a.causal as boolean | undefined) ?? false],
    decode: ([scale, causal]) => ({ scale, ...(causal ? { causal: true } : {}) }),
  },
  fusedMatmul: {
    ctor: 'FusedMatmul',
    sorts: ['bool', 'bool', 'String'],
    encode: (a) => [a.transposeA as boolean, a.transposeB as boolean, a.activation as string],
    decode: ([transposeA, transposeB, activation]) => ({ transposeA, transposeB, activation }),
  },
};

function resolveShape(shape: readonly number[], total: number): number[] {
  const known = shape.filter((d) => d !== -1).reduce((n, d) => n * d, 1);
  return shape.map((d) => (d === -1 ? total / known : d));
}

const LEAVES: Partial<Record<OpName, string>> = { input: 'Input', parameter: 'Param', state: 'State', constant: 'Const' };

/** The `Op` sort and the constructors above, as egglog declarations the rules build on. */
export function termDeclarations(): string {
  const ctor = (name: string, args: string[], out = 'Op') => `(constructor ${name} (${args.join(' ')}) ${out})`;
  const lines = [
    ...Object.values(LEAVES).map((c) => ctor(c!, ['String'])),
    ctor('Scalar', ['f64']),
    ctor('None', []),
    ...Object.entries(FORMS).map(([op, form]) => {
      const operands = op === 'fusedMatmul' ? ['Op', 'Op', 'Op', 'Op'] : new Array<string>(opDef(op as OpName).arity as number).fill('Op');
      return ctor(form!.ctor, [...operands, ...form!.sorts]);
    }),
    ctor('Node', ['String', 'OpList']),
    ctor('Nil', [], 'OpList'),
    ctor('Cons', ['Op', 'OpList'], 'OpList'),
  ];
  return `; generated from compiler/ir/ops.ts by compiler/egraph/terms.ts
(sort Op)
(sort OpList)
${lines.join('\n')}
`;
}

/** The graph as terms: one class per node (hash-consing already merges repeated subterms). */
export function graphToEGraph(graph: Graph, eg: EGraph): number[] {
  const classOf: number[] = [];
  const nil = eg.add('Nil', []);
  for (const node of graph.nodes) classOf.push(eg.add(...encodeNode(graph, node, classOf, nil, eg)));
  return classOf;
}

function encodeNode(graph: Graph, node: Node, classOf: number[], nil: number, eg: EGraph): [string, Value[]] {
  const leaf = LEAVES[node.op];
  if (leaf) {
    if (node.op === 'constant' && node.type.shape.length === 0 && node.type.dtype === 'f32') {
      return ['Scalar', [attrsOf(node, 'constant').values[0]]];
    }
    return [leaf, [node.name]];
  }
  const operands = node.inputs.map((i) => classOf[i]);
  const types = node.inputs.map((i) => graph.nodes[i].type);
  const form = FORMS[node.op];
  if (form && node.op === 'fusedMatmul') {
    const a = node.attrs;
    const [x, w, ...rest] = operands;
    const bias = a.bias ? rest.shift()! : eg.add('None', []);
    const residual = a.residual ? rest.shift()! : eg.add('None', []);
    return [form.ctor, [x, w, bias, residual, ...form.encode(a, types)]];
  }
  if (form) return [form.ctor, [...operands, ...form.encode(node.attrs, types)]];
  const args = operands.reduceRight((rest, c) => eg.add('Cons', [c, rest]), nil);
  return ['Node', [JSON.stringify({ op: node.op, attrs: node.attrs }, attrReplacer), args]];
}

// constants carry Float32Arrays; JSON keeps them as plain arrays
function attrReplacer(_key: string, value: unknown): unknown {
  return value instanceof Float32Array ? { f32: Array.from(value) } : value;
}
function attrReviver(_key: string, value: unknown): unknown {
  return value && typeof value === 'object' && 'f32' in value ? Float32Array.from((value as { f32: number[] }).f32) : value;
}

/** An e-node as an op application: op name, operand classes, attributes. */
export interface DecodedNode {
  op: OpName;
  operands: number[];
  attrs: Attrs;
  /** leaves: the graph name; Scalar: its value */
  name?: string;
  scalar?: number;
}

const BY_CTOR = new Map(Object.entries(FORMS).map(([op, form]) => [form!.ctor, { op: op as OpName, form: form! }]));
const LEAF_BY_CTOR = new Map(Object.entries(LEAVES).map(([op, ctor]) => [ctor!, op as OpName]));

/**
 * Reads e-nodes back as op applications. Built once per (rebuilt) e-graph: it indexes the
 * list cells and the None class, and caches each distinct e-node's reading.
 */
export class TermReader {
  private readonly none: number | undefined;
  private readonly cons = new Map<number, ENode>();
  private readonly cache = new Map<string, DecodedNode | null>();

  constructor(private readonly eg: EGraph) {
    const none = eg.lookup('None', []);
    this.none = none === undefined ? undefined : eg.find(none);
    for (const [c, nodes] of eg.nodesByClass()) {
      const cell = nodes.find((n) => n.head === 'Cons');
      if (cell) this.cons.set(c, cell);
    }
  }

  /** The op an e-node applies, or undefined for the list and None helpers. */
  decode(node: ENode): DecodedNode | undefined {
    const key = `${node.head}|${node.args.join('|')}`;
    let d = this.cache.get(key);
    if (d === undefined) {
      d = this.read(node) ?? null;
      this.cache.set(key, d);
    }
    return d ?? undefined;
  }

  private read(node: ENode): DecodedNode | undefined {
    const { eg } = this;
    const leaf = LEAF_BY_CTOR.get(node.head);
    if (leaf) return { op: leaf, operands: [], attrs: {}, name: node.args[0] as string };
    if (node.head === 'Scalar') return { op: 'constant', operands: [], attrs: {}, scalar: node.args[0] as number };
    if (node.head === 'Node') {
      const { op, attrs } = JSON.parse(node.args[0] as string, attrReviver);
      return { op, operands: this.list(node.args[1] as number), attrs };
    }
    const known = BY_CTOR.get(node.head);
    if (!known) return undefined; // None, Nil, Cons: not ops
    const arity = node.head === 'FusedMatmul' ? 4 : (opDef(known.op).arity as number);
    const operands = (node.args.slice(0, arity) as number[]).map((c) => eg.find(c));
    const attrs = known.form.decode(node.args.slice(arity));
    if (node.head !== 'FusedMatmul') return { op: known.op, operands, attrs };
    const isNone = (c: number) => c === this.none;
    const [a, b, bias, residual] = operands;
    const present = [a, b, ...[bias, residual].filter((c) => !isNone(c))];
    return { op: 'fusedMatmul', operands: present, attrs: { ...attrs, bias: !isNone(bias), residual: !isNone(residual) } };
  }

  private list(cls: number): number[] {
    const out: number[] = [];
    for (let c = this.eg.find(cls); ; ) {
      const cell = this.cons.get(c);
      if (!cell) return out;
      out.push(this.eg.find(cell.args[0] as number));
      c = this.eg.find(cell.args[1] as number);
    }
  }
}

/**
 * The extracted program as a graph: every leaf of the original first (in their order, so
 * inputs and parameters keep their order), then the roots' terms depth first, with the
 * effect roots (optimizer updates) last so every read of a parameter precedes its update.
 */
export function extractionToGraph(
  source: Graph,
  eg: EGraph,
  extraction: Extraction,
  classOf: readonly number[],
  effects: readonly number[],
): { graph: Graph; map: (id: number) => number } {
  const copy = new GraphCopy(source);
  const emittedClass = new Map<number, number>(); // class → new node id
  const leafByName = new Map<string, Node>();
  for (const node of source.nodes) {
    if (node.inputs.length > 0) continue;
    leafByName.set(node.name, node);
    const t = copy.copy(node.id);
    const node0 = eg.find(classOf[node.id]);
    if (!emittedClass.has(node0) && !(node.op === 'constant' && node.type.shape.length === 0)) emittedClass.set(node0, t.id);
  }
  const reader = new TermReader(eg);
  const decodedOf = (cls: number) => {
    const choice = extraction.choices.get(cls);
    if (!choice) throw new Error(`extraction has no choice for e-class ${cls}`);
    return reader.decode(choice)!;
  };
  const locOf = new Map<number, Node['loc']>();
  for (const node of source.nodes) {
    const c = eg.find(classOf[node.id]);
    if (!locOf.has(c)) locOf.set(c, node.loc);
  }

  const emit = (root: number) => {
    const stack: [number, boolean][] = [[eg.find(root), false]];
    while (stack.length > 0) {
      const [cls, expanded] = stack.pop()!;
      if (emittedClass.has(cls)) continue;
      const d = decodedOf(cls);
      if (!expanded) {
        stack.push([cls, true]);
        for (const o of d.operands) if (!emittedClass.has(eg.find(o))) stack.push([eg.find(o), false]);
        continue;
      }
      let t;
      if (d.scalar !== undefined) t = copy.target.constant(d.scalar);
      else if (d.name !== undefined) t = copy.of(leafByName.get(d.name)!.id);
      else {
        const operands = d.operands.map((o) => copy.target.tensor(emittedClass.get(eg.find(o))!));
        t = copy.emit(d.op, operands, d.attrs, locOf.get(cls));
      }
      emittedClass.set(cls, t.id);
    }
  };
  for (const o of source.outputs) emit(classOf[o.node]);
  for (const id of effects) for (const input of source.nodes[id].inputs) emit(classOf[input]);
  for (const id of effects) emit(classOf[id]);

  const map = (id: number) => emittedClass.get(eg.find(classOf[id])) ?? -1;
  for (const node of source.nodes) {
    const mapped = map(node.id);
    if (mapped >= 0 && !copy.has(node.id)) copy.set(node.id, copy.target.tensor(mapped));
  }
  return { ...copy.finish(), map };
}
