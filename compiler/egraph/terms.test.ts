// The op table drives the e-graph: every op with a `term` has its constructor, round-trips
// through the terms, and the activations a product's epilogue fuses are exactly the ones
// the table marks `epilogueActivations`, each with its generated rule.
import { describe, expect, it } from 'vitest';
import { Graph, type Tensor } from '../ir/graph';
import { interpret } from '../ir/interpret';
import { epilogueProgram, MATMUL_ACTIVATIONS, OP_NAMES, opDef, type MatmulActivation, type OpName } from '../ir/ops';
import { EGraph } from './egraph';
import { declaredArities, parseEgg } from './parse';
import { EggProgram } from './program';
import { RULE_FILES } from './rules';
import { epilogueRules, graphToEGraph, termDeclarations, TermReader } from './terms';

const withTerm = OP_NAMES.filter((op) => opDef(op).term);

/** One node of every op with a term form (attributes other than the defaults where it has any). */
function everyTermOp(): Graph {
  const g = new Graph('forms');
  const x = g.input('x', [2, 3, 4]);
  const y = g.input('y', [2, 3, 4]);
  const v = g.input('v', [4]);
  const m = g.input('m', [4, 5]);
  const out = (t: Tensor) => g.output(`o${g.outputs.length}`, t);
  [g.add(x, y), g.sub(x, y), g.mul(x, y), g.div(x, y), g.biasAdd(x, v), g.swiglu(x, y)].forEach(out);
  [g.relu(x), g.sigmoid(x), g.tanh(x), g.silu(x), g.gelu(x), g.gelu(x, { approximate: 'tanh' }), g.exp(x), g.log(x), g.neg(x), g.sqrt(x)].forEach(out);
  [g.sum(x, 1), g.mean(x, -1, { keepDims: true }), g.max(x, 0)].forEach(out);
  [g.softmax(x), g.logSoftmax(x), g.layerNorm(x, v, v, { eps: 1e-3 }), g.rmsNorm(x, v)].forEach(out);
  [g.reshape(x, [6, -1]), g.transpose(x, [2, 0, 1]), g.matmul(x, m)].forEach(out);
  out(g.attention(x, y, y, g.input('mask', [3, 3]), { scale: 0.5 }));
  out(g.attention(x, y, y, g.constant(0), { scale: 0.25, causal: true }));
  // a run-time key count: an optional operand whose flag is left out where it is absent
  out(g.attention(x, y, y, g.constant(0), { scale: 0.25, causal: true, keyCount: g.input('keys', [2], 'i32') }));
  out(g.fusedMatmul(x, m, { activation: 'gelu' }));
  out(g.fusedMatmul(x, y, { transposeB: true, bias: g.input('b', [3]), residual: g.input('r', [3]) }));
  out(g.fusedMatmul(x, m, { transposeA: false, residual: g.input('r2', [2, 3, 5]) }));
  const scaling = { kind: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 };
  out(g.rope(x, g.input('p', [2, 3]), { theta: 500, rotaryDim: 2, scaling }));
  out(g.cacheWrite(g.state('cache', [2, 8, 4]), x, g.input('at', [1])));
  const cache = g.state('kv', [3, 8, 4]);
  // a decode step's k: normed, rotated as heads of 4 at one position per row, written into the cache
  const row = g.input('row', [1, 4]);
  const rope = { positions: g.input('pos', [1, 1]), shape: [1, 3, 4], theta: 100, inverse: true, scaling };
  out(g.fusedMatmul(row, g.input('w', [12, 4]), { transposeB: true, norm: { weight: v, eps: 1e-5 }, rope, cacheWrite: { cache, rows: [3, 1, 4], offsets: g.input('at2', [1]) } }));
  // a packed weight's product, and the fused product of it
  const packed = g.packedParameter('wq', [5, 4], 'bf16');
  out(g.matmulQuantized(x, packed));
  out(g.fusedMatmul(row, packed, { transposeB: true, norm: { weight: v, eps: 1e-6 }, residual: g.input('r4', [1, 5]) }));
  const image = g.input('image', [2, 4, 7, 6]);
  const k = g.input('k', [6, 2, 3, 3]);
  out(g.conv2d(image, k, { stride: [2, 1], padding: [1, 0, 1, 2], dilation: [1, 2], groups: 2 }));
  const c = g.input('c', [6, 1, 1]);
  out(g.fusedConv2d(image, k, { groups: 2, padding: 1, shift: c, activation: 'silu', residual: g.input('r3', [6, 1, 1]) }));
  out(g.fusedConv2d(image, k, { groups: 2, scale: c, shift: c }));
  return g;
}

/** An e-graph with the `Op` datatype declared and the given rule files loaded. */
function termProgram(files: readonly string[] = []): EggProgram {
  const program = new EggProgram(new EGraph());
  const terms = parseEgg(termDeclarations(), 'terms.egg');
  program.run(terms);
  for (const file of files) program.run(parseEgg(RULE_FILES[file], file, { declared: declaredArities(terms) }));
  return program;
}
const termGraph = () => termProgram().eg;

describe('term forms from the op table', () => {
  it('declares one constructor per op with a term, its operands then its attributes', () => {
    const declared = declaredArities(parseEgg(termDeclarations(), 'terms.egg'));
    for (const op of withTerm) {
      const term = opDef(op).term!;
      const operands = term.optionalOperands ? term.optionalOperands.required + term.optionalOperands.flags.length : (opDef(op).arity as number);
      expect(declared.get(term.ctor), `${op} → ${term.ctor}`).toBe(operands + term.sorts.length);
    }
    expect(new Set(withTerm.map((op) => opDef(op).term!.ctor)).size).toBe(withTerm.length);
  });

  it('reads every such node back as its op, operands and attributes', () => {
    const g = everyTermOp();
    const covered = new Set(g.nodes.map((n) => n.op));
    expect(withTerm.filter((op) => !covered.has(op)), 'ops with a term form missing from everyTermOp()').toEqual([]);

    const eg = termGraph();
    const classOf = graphToEGraph(g, eg);
    eg.rebuild();
    const reader = new TermReader(eg);
    for (const node of g.nodes.filter((n) => opDef(n.op).term)) {
      const form = opDef(node.op).term!;
      const cls = eg.find(classOf[node.id]);
      const decoded = eg
        .nodesByClass()
        .get(cls)!
        .map((n) => reader.decode(n))
        .find((d) => d?.op === node.op)!;
      expect(decoded, node.name).toBeDefined();
      expect(decoded.operands, node.name).toEqual(node.inputs.map((i) => eg.find(classOf[i])));
      // attributes come back as the form stores them (axes negative, -1 resolved): the same
      // encoding, the same result type
      const operands = node.inputs.map((i) => g.nodes[i].type);
      expect(form.encode(decoded.attrs as never, operands), node.name).toEqual(form.encode(node.attrs as never, operands));
      expect(opDef(node.op).infer(operands, decoded.attrs), node.name).toEqual(node.type);
    }
  });

  it('keeps the attributes of attention and fusedMatmul exactly', () => {
    const g = everyTermOp();
    const eg = termGraph();
    const classOf = graphToEGraph(g, eg);
    eg.rebuild();
    const reader = new TermReader(eg);
    for (const node of g.nodes.filter((n) => n.op === 'attention' || n.op === 'fusedMatmul')) {
      const [decoded] = eg.nodesByClass().get(eg.find(classOf[node.id]))!.map((n) => reader.decode(n));
      expect(decoded?.attrs, node.name).toEqual(node.attrs);
    }
  });
});

describe('epilogue activations from the op table', () => {
  const marked = OP_NAMES.flatMap((op) => (opDef(op).epilogueActivations ?? []).map((a) => ({ op, ...a })));

  it('are the activations fusedMatmul accepts', () => {
    expect(marked.map((a) => a.name)).toEqual(expect.arrayContaining(['relu', 'gelu', 'geluTanh', 'silu', 'sigmoid', 'tanh']));
    expect(MATMUL_ACTIVATIONS).toEqual(['none', ...marked.map((a) => a.name)]);
    for (const a of marked) {
      expect(epilogueProgram({ bias: false, activation: a.name, residual: false })).toEqual([{ op: a.op, args: [{ operand: 0 }], attrs: a.attrs ?? {} }]);
    }
  });

  it('each have the generated rule, run in the kernels phase', () => {
    expect(RULE_FILES['fuse-activations.egg']).toBe(epilogueRules());
    const names = parseEgg(epilogueRules(), 'fuse-activations.egg', { declared: declaredArities(parseEgg(termDeclarations(), 'terms.egg')) }).map(
      (c) => (c.kind === 'rewrite' ? c.name : undefined),
    );
    expect(names).toEqual(['matmul', 'conv'].flatMap((kind) => marked.map((a) => `${kind}+${a.rule ?? a.name}`)));
  });

  it.each(marked.map((a) => [a.name, a] as const))('%s fuses into a product and computes its op', (_name, a) => {
    const g = new Graph('epilogue');
    const [x, w] = [g.input('x', [4, 6]), g.input('w', [6, 5])];
    const y = g.apply(a.op as OpName, [g.matmul(x, w)], a.attrs ?? {});
    g.output('y', y);
    g.output('fused', g.fusedMatmul(x, w, { activation: a.name as MatmulActivation }));

    // the rules put the fused product in the activation's e-class
    const program = termProgram(['fuse.egg', 'fuse-activations.egg']);
    const classOf = graphToEGraph(g, program.eg);
    const run = program.runRules({});
    expect(run.iterations.reduce((n, it) => n + (it.rulesFired[`matmul+${a.rule ?? a.name}`] ?? 0), 0)).toBe(1);
    const reader = new TermReader(program.eg);
    const forms = program.eg.nodesByClass().get(program.eg.find(classOf[y.id]))!.map((n) => reader.decode(n));
    expect(forms.filter((d) => d?.op === 'fusedMatmul').map((d) => d!.attrs.activation)).toEqual([a.name]);

    // and its epilogue computes the op
    const feeds = { x: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), w: Float32Array.from({ length: 30 }, (_, i) => Math.cos(i)) };
    const out = interpret(g, feeds, new Map());
    expect(Array.from(out.fused)).toEqual(Array.from(out.y));
  });
});
