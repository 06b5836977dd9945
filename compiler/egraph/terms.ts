// Graphs as e-graph terms and back. Every IR op has a constructor in the `Op` datatype:
// the ops rules talk about get their own (`(MatMul a b)`, `(Sum x axis keepDims)`, ...),
// as their op table entry's `term` says, with attributes as primitive arguments; every
// other op goes in as a generic `(Node "<op and attributes as JSON>" args)`. Leaves are
// named (`(Param "w1")`), one-value constants become `(Scalar v)` so rules can fold them.
// The matmul epilogue's activation rules are generated here too, from the ops the table
// marks `epilogueActivations`, so a new activation needs no rule written by hand.
import { attrsOf, type Graph, type Node } from '../ir/graph';
import { OP_NAMES, opDef, type OpName, type TermForm, type TermValue } from '../ir/ops';
import { GraphCopy } from '../ir/rewrite';
import type { EGraph, ENode, Value } from './egraph';
import type { Extraction } from './extract';

type Attrs = Readonly<Record<string, unknown>>;

/** Ops with a constructor of their own (the op table's `term`), in table order. */
const FORMS = new Map<OpName, TermForm<any>>(OP_NAMES.flatMap((op) => (opDef(op).term ? [[op, opDef(op).term!] as const] : [])));

/** How many `Op` arguments the op's constructor takes: its operands, optional ones as (None) where absent. */
function operandCount(op: OpName, form: TermForm<any>): number {
  if (form.optionalOperands) return form.optionalOperands.required + form.optionalOperands.flags.length;
  const arity = opDef(op).arity;
  if (arity === 'variadic') throw new Error(`${op}: a variadic op's term form needs optionalOperands`);
  return arity;
}

const LEAVES: Partial<Record<OpName, string>> = { input: 'Input', parameter: 'Param', state: 'State', constant: 'Const' };

/** The `Op` sort and the constructors above, as egglog declarations the rules build on. */
export function termDeclarations(): string {
  const ctor = (name: string, args: string[], out = 'Op') => `(constructor ${name} (${args.join(' ')}) ${out})`;
  const lines = [
    ...Object.values(LEAVES).map((c) => ctor(c!, ['String'])),
    ctor('Scalar', ['f64']),
    ctor('None', []),
    ...[...FORMS].map(([op, form]) => ctor(form.ctor, [...new Array<string>(operandCount(op, form)).fill('Op'), ...form.sorts])),
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

/** A primitive as an egglog literal of its sort (an f64 needs a point or an exponent). */
function literal(v: TermValue, sort: string): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (sort !== 'f64' || typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'inf' : '-inf';
  return /[.e]/.test(String(v)) ? String(v) : `${v}.0`;
}

/**
 * The epilogue activation rules of products and convolutions: for each activation an op of
 * the table provides (`epilogueActivations`), the op applied to a product (a convolution)
 * with no activation and no residual yet becomes that product with the activation
 * ("matmul+relu", "conv+relu"). fuse.egg and fuse-conv.egg hold the rest.
 */
export function epilogueRules(): string {
  const fused = {
    matmul: (activation: string) => `(FusedMatmul a b bias (None) (None) (None) n (None) (None) ta tb ${literal(activation, 'String')} e "" "")`,
    conv: (activation: string) => `(FusedConv2d x w scale shift (None) st pd dl gr ${literal(activation, 'String')})`,
  };
  const rules = Object.entries(fused).flatMap(([kind, product]) =>
    OP_NAMES.flatMap((op) => {
      const def = opDef(op);
      return (def.epilogueActivations ?? []).map((activation) => {
        if (!def.term || def.arity !== 1) throw new Error(`${op}: an epilogue activation needs a term form and one operand`);
        const { term } = def;
        const attrs = term.encode(activation.attrs ?? {}, []).map((v, i) => ` ${literal(v, term.sorts[i])}`).join('');
        const rule = `${kind}+${activation.rule ?? activation.name}`;
        return `(rewrite (${term.ctor} ${product('none')}${attrs}) ${product(activation.name)} :name ${JSON.stringify(rule)})`;
      });
    }),
  );
  return `; generated from compiler/ir/ops.ts (epilogueActivations) by compiler/egraph/terms.ts
${rules.join('\n')}
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
  const form = FORMS.get(node.op);
  if (form) return [form.ctor, [...termOperands(form, node.attrs, operands, eg), ...form.encode(node.attrs, types)]];
  const args = operands.reduceRight((rest, c) => eg.add('Cons', [c, rest]), nil);
  return ['Node', [JSON.stringify({ op: node.op, attrs: node.attrs }, attrReplacer), args]];
}

/** The constructor's operand classes: the node's, with (None) for each optional operand it lacks. */
function termOperands(form: TermForm<any>, attrs: Attrs, operands: readonly number[], eg: EGraph): number[] {
  if (!form.optionalOperands) return [...operands];
  const { required, flags } = form.optionalOperands;
  const optional = operands.slice(required);
  return [...operands.slice(0, required), ...flags.map((flag) => (attrs[flag] ? optional.shift()! : eg.add('None', [])))];
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

const BY_CTOR = new Map([...FORMS].map(([op, form]) => [form.ctor, { op, form }]));
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
    const { op, form } = known;
    const count = operandCount(op, form);
    const operands = (node.args.slice(0, count) as number[]).map((c) => eg.find(c));
    const attrs = form.decode(node.args.slice(count));
    if (!form.optionalOperands) return { op, operands, attrs };
    // an optional operand is there where its class is not (None); its flag says so
    const { required, flags, omitAbsent } = form.optionalOperands;
    const optional = operands.slice(required);
    const present = optional.map((c) => c !== this.none);
    return {
      op,
      operands: [...operands.slice(0, required), ...optional.filter((_, i) => present[i])],
      attrs: { ...attrs, ...Object.fromEntries(flags.flatMap((flag, i) => (present[i] || !omitAbsent ? [[flag, present[i]]] : []))) },
    };
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
