// The fused ops against the unfused graphs they replace. Each case builds the unfused graph
// with ordinary builder calls and the fused op over the same inputs, then checks the fused
// op's own CPU reference (exactly) and its kernel on the GPU (within f32 tolerance) against
// the unfused graph's CPU reference; and that fusion really saves dispatches.
import { afterAll, describe, expect, test } from 'vitest';
import { compileGraph } from '../compiler/compile';
import { CompileError } from '../compiler/ir/errors';
import { Graph, type Tensor } from '../compiler/ir/graph';
import { uniformStream } from '../compiler/ir/init';
import { interpret } from '../compiler/ir/interpret';
import { isChainable, MATMUL_ACTIVATIONS, type FusedArg, type FusedInstruction, type MatmulActivation } from '../compiler/ir/ops';
import { broadcastShapes } from '../compiler/ir/shape';
import { elementCount, type Shape } from '../compiler/ir/types';
import type { Target } from '../compiler/target/target';
import { GENERIC, SOFTWARE } from '../compiler/target/targets';
import { readBundle } from '../runtime/bundle';
import { expectClose } from './close';
import { inputFeeds } from './random-feeds';
import { loadPlan } from '../runtime/session';
import { releaseSharedDevice, runOnGpu, sharedDevice } from './gpu';

afterAll(releaseSharedDevice);

// ---------------------------------------------------------------------------------------
// Running and comparing

type Ranges = Record<string, [number, number]>;

/** One fused op and its unfused graph, as outputs `${key}/fused` and `${key}/unfused`. */
interface Pair {
  key: string;
  label: string;
  atol: number;
  rtol: number;
}

/** Records the pairs' outputs; with `unfused` false only the fused ones (the GPU plan, one kernel per pair). */
type PairBuilder = (g: Graph, unfused: boolean) => Pair[];

async function checkPairs(name: string, build: PairBuilder, seed: number, ranges?: Ranges, targets?: readonly Target[]): Promise<void> {
  const both = new Graph(name);
  const pairs = build(both, true);
  const feeds = inputFeeds(both, seed, ranges);
  // state (a KV cache) starts at zero, as a plan's does
  const state = new Map(both.nodes.filter((n) => n.op === 'state').map((n) => [n.name, new Float64Array(elementCount(n.type.shape))]));
  const cpu = interpret(both, feeds, new Map(), { state });
  const fusedOnly = new Graph(`${name}_fused`);
  build(fusedOnly, false);
  const gpu = await runOnGpu((await compileGraph(fusedOnly, targets ? { targets } : {})).bundle, feeds);
  for (const p of pairs) {
    const expected = cpu[`${p.key}/unfused`];
    // the fused op's own reference runs the same float64 evaluates in the same order
    expect(cpu[`${p.key}/fused`], `${p.label}: fused CPU reference`).toEqual(expected);
    expectClose(gpu[`${p.key}/fused`], expected, p.atol, p.rtol, p.label);
  }
}

// ---------------------------------------------------------------------------------------
// fusedPointwise

/** The unfused graph of a program: one ordinary builder call per instruction. */
function unfold(g: Graph, operands: readonly Tensor[], program: readonly FusedInstruction[]): Tensor {
  const values: Tensor[] = [];
  for (const ins of program) {
    const [x, y] = ins.args.map((a) => ('operand' in a ? operands[a.operand] : 'value' in a ? values[a.value] : g.constant(a.scalar)));
    const approximate = { approximate: (ins.attrs?.approximate as 'none' | 'tanh' | undefined) ?? 'none' };
    const calls: Record<string, () => Tensor> = {
      add: () => g.add(x, y),
      sub: () => g.sub(x, y),
      mul: () => g.mul(x, y),
      div: () => g.div(x, y),
      biasAdd: () => g.biasAdd(x, y),
      relu: () => g.relu(x),
      sigmoid: () => g.sigmoid(x),
      tanh: () => g.tanh(x),
      silu: () => g.silu(x),
      gelu: () => g.gelu(x, approximate),
      exp: () => g.exp(x),
      log: () => g.log(x),
      neg: () => g.neg(x),
      sqrt: () => g.sqrt(x),
      equal: () => g.equal(x, y),
      reluBackward: () => g.reluBackward(x, y),
      sigmoidBackward: () => g.sigmoidBackward(x, y),
      tanhBackward: () => g.tanhBackward(x, y),
      siluBackward: () => g.siluBackward(x, y),
      geluBackward: () => g.geluBackward(x, y, approximate),
    };
    const call = calls[ins.op];
    if (!call) throw new Error(`unfold: no builder call for ${ins.op}`);
    values.push(call());
  }
  return values[values.length - 1];
}

interface ProgramCase {
  label: string;
  shapes: Shape[];
  program: FusedInstruction[];
  ranges?: [number, number][];
}

const I = (op: FusedInstruction['op'], args: FusedArg[], attrs?: Record<string, unknown>): FusedInstruction => ({ op, args, ...(attrs ? { attrs } : {}) });
const op = (k: number): FusedArg => ({ operand: k });
const val = (j: number): FusedArg => ({ value: j });
const num = (x: number): FusedArg => ({ scalar: x });

const handWritten: ProgramCase[] = [
  {
    label: 'gelu(x * w + 1), w over the last axis',
    shapes: [[7, 13], [13]],
    program: [I('mul', [op(0), op(1)]), I('add', [val(0), num(1)]), I('gelu', [val(1)], { approximate: 'none' })],
  },
  { label: 'x * sigmoid(x) (silu spelled out)', shapes: [[1000]], program: [I('sigmoid', [op(0)]), I('mul', [op(0), val(0)])] },
  {
    label: 'both operands broadcast: [4, 1, 5] and [3, 1]',
    shapes: [[4, 1, 5], [3, 1]],
    program: [I('sub', [op(0), op(1)]), I('tanh', [val(0)]), I('mul', [val(1), num(-2.5)])],
  },
  {
    label: 'a value used three times, negative scalars under neg and exp',
    shapes: [[3, 5, 67]],
    program: [I('mul', [op(0), num(-0.5)]), I('neg', [val(0)]), I('exp', [val(0)]), I('add', [val(1), val(2)]), I('mul', [val(3), val(0)])],
  },
  {
    label: 'backward chain: geluBackward then reluBackward then siluBackward',
    shapes: [[9, 17], [9, 17], [17]],
    program: [
      I('geluBackward', [op(0), op(1)], { approximate: 'none' }),
      I('reluBackward', [val(0), op(1)]),
      I('siluBackward', [val(1), op(2)]),
      I('geluBackward', [val(2), op(2)], { approximate: 'tanh' }),
    ],
  },
  {
    label: 'sigmoid and tanh backward from their outputs',
    shapes: [[2, 3, 4], [2, 3, 4]],
    program: [I('sigmoid', [op(1)]), I('sigmoidBackward', [op(0), val(0)]), I('tanh', [op(1)]), I('tanhBackward', [val(1), val(2)])],
  },
  {
    label: 'log, sqrt and div on positive operands, biasAdd',
    shapes: [[6, 10], [10], [6, 1]],
    ranges: [[0.1, 3], [-1, 1], [0.5, 2]],
    program: [I('log', [op(0)]), I('sqrt', [op(0)]), I('div', [val(0), op(2)]), I('biasAdd', [val(2), op(1)]), I('add', [val(3), val(1)])],
  },
  {
    label: 'equal against a scalar, scalar-only instructions',
    shapes: [[5, 8]],
    program: [I('relu', [op(0)]), I('equal', [val(0), num(0)]), I('exp', [num(0.5)]), I('mul', [val(1), val(2)]), I('add', [val(3), val(0)])],
  },
  { label: 'one instruction', shapes: [[1]], program: [I('gelu', [op(0)], { approximate: 'tanh' })] },
  { label: 'a rank-4 result of a scalar operand and a row', shapes: [[], [2, 3, 4, 5], [5]], program: [I('add', [op(1), op(0)]), I('silu', [val(0)]), I('mul', [val(1), op(2)])] },
];

/**
 * A random program of 2–8 instructions. Each step consumes the previous value (so no value is
 * dead) and, where an op needs another argument, an operand, an earlier value or a scalar;
 * log, sqrt and div only see values kept away from zero, so f32 and float64 agree.
 */
function randomProgram(seed: number): ProgramCase {
  const u = uniformStream(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(u() * xs.length)];
  const out = pick<Shape>([[7, 13], [3, 5, 67], [1000], [2, 3, 4, 5], [1], [33, 2]]);
  const variants: Shape[] = [out, out.slice(1), out.map((d, i) => (i === out.length - 1 ? d : 1)), out.map((d, i) => (i === 0 ? d : 1)), []];
  const shapes: Shape[] = [out];
  for (let k = Math.floor(u() * 3); k > 0; k--) shapes.push(pick(variants));
  const program: FusedInstruction[] = [];
  const valueShapes: Shape[] = [];
  const shapeOf = (a: FusedArg): Shape => ('operand' in a ? shapes[a.operand] : 'value' in a ? valueShapes[a.value] : []);
  const emit = (name: FusedInstruction['op'], args: FusedArg[], attrs?: Record<string, unknown>): FusedArg => {
    program.push(I(name, args, attrs));
    valueShapes.push(args.map(shapeOf).reduce((s, t) => broadcastShapes(s, t)!, [] as Shape));
    return val(program.length - 1);
  };
  const other = (): FusedArg => {
    const r = u();
    if (r < 0.45) return op(Math.floor(u() * shapes.length));
    if (r < 0.75 && program.length > 0) return val(Math.floor(u() * program.length));
    return num(Math.round((u() * 4 - 2) * 16) / 16); // exact in f32, as the unfused graph's constant stores it
  };
  const approximate = () => ({ approximate: pick(['none', 'tanh']) });
  const positive = (x: FusedArg, floor: number) => emit('add', [emit('sigmoid', [x]), num(floor)]);
  const steps: [number, (p: FusedArg) => FusedArg][] = [
    [1, (p) => emit(pick(['relu', 'sigmoid', 'tanh', 'silu', 'neg'] as const), [p])],
    [1, (p) => emit('gelu', [p], approximate())],
    [2, (p) => emit('exp', [emit('tanh', [p])])],
    [3, (p) => emit(pick(['log', 'sqrt'] as const), [positive(p, 0.125)])],
    [1, (p) => emit(pick(['add', 'sub', 'mul'] as const), u() < 0.5 ? [p, other()] : [other(), p])],
    [3, (p) => emit('div', [p, positive(other(), 0.5)])],
    [1, (p) => emit(pick(['reluBackward', 'siluBackward'] as const), [p, other()])],
    [1, (p) => emit('geluBackward', [p, other()], approximate())],
    [2, (p) => emit('sigmoidBackward', [p, emit('sigmoid', [other()])])],
    [2, (p) => emit('tanhBackward', [p, emit('tanh', [other()])])],
    [2, (p) => emit('equal', [emit('relu', [p]), num(0)])],
    [1, (p) => {
      const s = shapeOf(p);
      if (s.length === 0) return emit('neg', [p]);
      shapes.push([s[s.length - 1]]);
      return emit('biasAdd', [p, op(shapes.length - 1)]);
    }],
  ];
  const length = 2 + Math.floor(u() * 7);
  let prev: FusedArg = op(Math.floor(u() * shapes.length));
  while (program.length < length) {
    const fitting = steps.filter(([n]) => program.length + n <= Math.max(length, 2));
    prev = pick(fitting)[1](prev);
  }
  // operands no instruction reads are dropped (the op refuses them)
  const used = [...new Set(program.flatMap((ins) => ins.args.flatMap((a) => ('operand' in a ? [a.operand] : []))))].sort((a, b) => a - b);
  const renumber = (a: FusedArg): FusedArg => ('operand' in a ? op(used.indexOf(a.operand)) : a);
  return {
    label: `random program ${seed}: ${program.map((ins) => ins.op).join(' ')} over ${used.map((k) => JSON.stringify(shapes[k])).join(' ')}`,
    shapes: used.map((k) => shapes[k]),
    program: program.map((ins) => ({ ...ins, args: ins.args.map(renumber) })),
  };
}

describe('fusedPointwise equals its unfused chain', () => {
  const randomCases = Array.from({ length: 40 }, (_, k) => randomProgram(9000 + k));
  test.each([...handWritten, ...randomCases].map((c) => [c.label, c] as const))('%s', async (_label, c) => {
    const build: PairBuilder = (g, unfused) => {
      const operands = c.shapes.map((s, k) => g.input(`x${k}`, s));
      g.output('case/fused', g.fusedPointwise(operands, c.program));
      if (unfused) g.output('case/unfused', unfold(g, operands, c.program));
      return [{ key: 'case', label: c.label, atol: 1e-4, rtol: 1e-4 }];
    };
    const ranges = Object.fromEntries((c.ranges ?? []).map((r, k) => [`x${k}`, r]));
    await checkPairs('fused_pointwise', build, 17, ranges);
  });

  test('the random programs cover every fusable op', () => {
    const seen = new Set<string>(Array.from({ length: 40 }, (_, k) => randomProgram(9000 + k)).flatMap((c) => c.program.map((ins) => ins.op)));
    for (const c of handWritten) for (const ins of c.program) seen.add(ins.op);
    const fusable = ['add', 'sub', 'mul', 'div', 'biasAdd', 'relu', 'sigmoid', 'tanh', 'silu', 'gelu', 'exp', 'log', 'neg', 'sqrt', 'equal'];
    const backward = ['reluBackward', 'sigmoidBackward', 'tanhBackward', 'siluBackward', 'geluBackward'];
    for (const name of [...fusable, ...backward]) {
      expect(isChainable(name), name).toBe(true);
      expect(seen.has(name), name).toBe(true);
    }
    for (const name of ['transpose', 'slice', 'oneHot', 'broadcast', 'matmul', 'softmax', 'sum', 'reshape', 'fusedPointwise']) expect(isChainable(name), name).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------
// fusedMatmul

const swapLast = (g: Graph, t: Tensor) => g.transpose(t, t.shape.map((_, i, s) => (i < s.length - 2 ? i : 2 * s.length - 3 - i)));
const stored = (shape: Shape, transposed: boolean): Shape => (transposed ? [...shape.slice(0, -2), shape[shape.length - 1], shape[shape.length - 2]] : shape);

interface MatmulFlags {
  transposeA: boolean;
  transposeB: boolean;
  activation: MatmulActivation;
  bias: boolean;
  /** the residual's shape, when there is one */
  residual?: Shape;
}

/** The unfused graph: transpose, matmul, biasAdd, activation, add. */
function unfusedMatmul(g: Graph, a: Tensor, b: Tensor, flags: MatmulFlags, bias?: Tensor, residual?: Tensor): Tensor {
  let y = g.matmul(flags.transposeA ? swapLast(g, a) : a, flags.transposeB ? swapLast(g, b) : b);
  if (bias) y = g.biasAdd(y, bias);
  const activations: Record<MatmulActivation, (x: Tensor) => Tensor> = {
    none: (x) => x,
    relu: (x) => g.relu(x),
    gelu: (x) => g.gelu(x),
    geluTanh: (x) => g.gelu(x, { approximate: 'tanh' }),
    silu: (x) => g.silu(x),
    sigmoid: (x) => g.sigmoid(x),
    tanh: (x) => g.tanh(x),
  };
  y = activations[flags.activation](y);
  return residual ? g.add(y, residual) : y;
}

/** Every flag combination as a fused/unfused output pair, over shared inputs. */
const matmulPairs = (aShape: Shape, bShape: Shape, combos: readonly MatmulFlags[]): PairBuilder => (g, unfused) => {
  const k = aShape[aShape.length - 1];
  const n = bShape[bShape.length - 1];
  const inputs = new Map<string, Tensor>();
  const input = (key: string, shape: Shape) => {
    const id = `${key}_${shape.join('x') || 'scalar'}`;
    if (!inputs.has(id)) inputs.set(id, g.input(id, shape));
    return inputs.get(id)!;
  };
  const pairs: Pair[] = [];
  for (const flags of combos) {
    const a = input(flags.transposeA ? 'aT' : 'a', stored(aShape, flags.transposeA));
    const b = input(flags.transposeB ? 'bT' : 'b', stored(bShape, flags.transposeB));
    const bias = flags.bias ? input('bias', [n]) : undefined;
    const residual = flags.residual ? input('residual', flags.residual) : undefined;
    const label = `${flags.transposeA ? 'aT' : 'a'}·${flags.transposeB ? 'bT' : 'b'}${flags.bias ? ' +bias' : ''} ${flags.activation}${residual ? ` +residual${JSON.stringify(flags.residual)}` : ''}`;
    const key = `c${pairs.length}`;
    g.output(`${key}/fused`, g.fusedMatmul(a, b, { ...flags, bias, residual }));
    if (unfused) g.output(`${key}/unfused`, unfusedMatmul(g, a, b, flags, bias, residual));
    // f32 sums of K products of values in [-2, 2]
    pairs.push({ key, label, atol: 1e-5 + 1e-5 * k, rtol: 1e-4 });
  }
  return pairs;
};

const TRANSPOSES = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const;

describe('fusedMatmul equals transpose, matmul, biasAdd, activation and add', () => {
  // M 37, N 70 (two column tiles), K 21 (two K tiles), batch 3 with b shared
  const aShape = [3, 37, 21];
  const bShape = [21, 70];
  test.each(TRANSPOSES.map(([ta, tb]) => [`${ta ? 'Aᵀ' : 'A'}·${tb ? 'Bᵀ' : 'B'}`, ta, tb] as const))(
    '%s: every activation with and without bias and residual',
    async (_label, transposeA, transposeB) => {
      const combos: MatmulFlags[] = [];
      for (const activation of MATMUL_ACTIVATIONS) {
        for (const bias of [false, true]) {
          for (const residual of [undefined, [3, 37, 70]]) combos.push({ transposeA, transposeB, activation, bias, residual });
        }
      }
      await checkPairs('fused_matmul_flags', matmulPairs(aShape, bShape, combos), 23);
    },
  );

  // shapes: tiny, exact tiles, not multiples of 64, batched, batch-broadcast both ways; residuals of broadcast shapes
  const shapeCases: [Shape, Shape, Shape][] = [
    [[1, 1], [1, 1], [1]],
    [[5, 7], [7, 3], [5, 1]],
    [[64, 64], [64, 64], [64, 64]],
    [[65, 130], [130, 67], [67]],
    [[3, 17, 9], [3, 9, 20], [3, 1, 20]],
    [[2, 3, 17, 9], [9, 5], [3, 17, 5]],
    [[4, 1, 6, 8], [3, 8, 2], [4, 3, 6, 2]],
    [[1, 70, 33], [2, 33, 129], [2, 1, 129]],
  ];
  test.each(shapeCases.map(([sa, sb, sr]) => [JSON.stringify(sa), JSON.stringify(sb), sa, sb, sr] as const))(
    '%s · %s, every transpose, plain and with bias, silu and residual',
    async (_a, _b, aShape, bShape, residual) => {
      const combos: MatmulFlags[] = TRANSPOSES.flatMap(([transposeA, transposeB]) => [
        { transposeA, transposeB, activation: 'none' as const, bias: false },
        { transposeA, transposeB, activation: 'silu' as const, bias: true, residual },
        { transposeA, transposeB, activation: 'geluTanh' as const, bias: false, residual },
      ]);
      await checkPairs('fused_matmul_shapes', matmulPairs(aShape, bShape, combos), 29);
    },
  );
});

/** A fused RMSNorm prologue and SwiGLU gate on top of the other flags. */
interface NormGateFlags {
  transposeB: boolean;
  norm: boolean;
  gate: boolean;
  bias: boolean;
  residual: boolean;
}

/** Pairs over shared inputs: rmsNorm (eps 1e-5), matmul, biasAdd, swiglu(gate, ·), add against one fusedMatmul. */
const normGatePairs = (aShape: Shape, bShape: Shape, combos: readonly NormGateFlags[]): PairBuilder => (g, unfused) => {
  const k = aShape[aShape.length - 1];
  const n = bShape[bShape.length - 1];
  const out = [...aShape.slice(0, -1), n];
  const inputs = new Map<string, Tensor>();
  const input = (name: string, shape: Shape) => inputs.get(name) ?? inputs.set(name, g.input(name, shape)).get(name)!;
  const a = input('a', aShape);
  const eps = 1e-5;
  return combos.map((f, c) => {
    const key = `c${c}`;
    const right = f.transposeB ? input('bT', stored(bShape, true)) : input('b', bShape);
    const weight = f.norm ? input('weight', [k]) : undefined!;
    const bias = f.bias ? input('bias', [n]) : undefined!;
    const gate = f.gate ? input('gate', out) : undefined!;
    const residual = f.residual ? input('residual', out) : undefined!;
    const options = {
      transposeB: f.transposeB,
      ...(f.norm ? { norm: { weight, eps } } : {}),
      ...(f.bias ? { bias } : {}),
      ...(f.gate ? { gate } : {}),
      ...(f.residual ? { residual } : {}),
    };
    g.output(`${key}/fused`, g.fusedMatmul(a, right, options));
    if (unfused) {
      let y = g.matmul(f.norm ? g.rmsNorm(a, weight, { eps }) : a, f.transposeB ? swapLast(g, right) : right);
      if (f.bias) y = g.biasAdd(y, bias);
      if (f.gate) y = g.swiglu(gate, y);
      if (f.residual) y = g.add(y, residual);
      g.output(`${key}/unfused`, y);
    }
    const label = `${f.norm ? 'rmsNorm(a)' : 'a'}·${f.transposeB ? 'bT' : 'b'}${f.bias ? ' +bias' : ''}${f.gate ? ' gated' : ''}${f.residual ? ' +residual' : ''}`;
    return { key, label, atol: 1e-5 + 2e-5 * k, rtol: 1e-4 };
  });
};

describe("fusedMatmul's RMSNorm prologue and SwiGLU gate equal rmsNorm, matmul and swiglu", () => {
  const combos: NormGateFlags[] = [false, true].flatMap((transposeB) => [
    { transposeB, norm: true, gate: false, bias: false, residual: false },
    { transposeB, norm: true, gate: true, bias: false, residual: false },
    { transposeB, norm: true, gate: true, bias: true, residual: true },
    { transposeB, norm: false, gate: true, bias: false, residual: false },
    { transposeB, norm: false, gate: true, bias: true, residual: true },
  ]);
  // rows: one (a decode step), a few, batched, the most a normed product takes (fewer cases:
  // slow on a software GPU); K a multiple of 4 or not; N not a multiple of the column group
  const shapes: [Shape, Shape, NormGateFlags[]][] = [
    [[1, 40], [40, 70], combos],
    [[5, 21], [21, 9], combos],
    [[3, 2, 24], [24, 12], combos],
    [[16, 8], [8, 12], [combos[2], combos[5]]],
  ];
  test.each(shapes.map(([sa, sb, c]) => [JSON.stringify(sa), JSON.stringify(sb), sa, sb, c] as const))(
    '%s · %s',
    async (_a, _b, aShape, bShape, cases) => {
      await checkPairs('fused_matmul_norm_gate', normGatePairs(aShape, bShape, cases), 31, { weight: [0.5, 1.5] });
    },
    300_000,
  );
  test('the gate alone on a tiled product (37 rows) and on a split-K one (128 rows, K 1536)', async () => {
    const gated = combos.filter((f) => !f.norm);
    await checkPairs('fused_matmul_gate_tiled', normGatePairs([37, 21], [21, 70], gated), 37);
    await checkPairs('fused_matmul_gate_split', normGatePairs([128, 1536], [1536, 64], gated.slice(0, 1)), 41);
  }, 300_000);
});

/** A fused rope (last in the epilogue) on top of a norm, a bias and a residual. */
interface RopeFlags {
  norm: boolean;
  bias: boolean;
  residual: boolean;
  /** rotary features of each head (default: all d) */
  rotaryDim?: number;
  inverse?: boolean;
}

/**
 * Pairs over shared inputs: a [.., M, K] · bT [N, K]ᵀ, its epilogue, then rope of the value
 * viewed as heads [.., M, N/d, d] at `positions` (one per row), against one fusedMatmul.
 */
const ropePairs = (aShape: Shape, n: number, d: number, positionsShape: Shape, combos: readonly RopeFlags[]): PairBuilder => (g, unfused) => {
  const k = aShape[aShape.length - 1];
  const out = [...aShape.slice(0, -1), n];
  const heads = [...aShape.slice(0, -1), n / d, d];
  const inputs = new Map<string, Tensor>();
  const input = (name: string, shape: Shape) => inputs.get(name) ?? inputs.set(name, g.input(name, shape)).get(name)!;
  const a = input('a', aShape);
  const bT = input('bT', [n, k]);
  const positions = input('positions', positionsShape);
  const eps = 1e-5;
  return combos.map((f, c) => {
    const key = `c${c}`;
    const weight = f.norm ? input('weight', [k]) : undefined!;
    const bias = f.bias ? input('bias', [n]) : undefined!;
    const residual = f.residual ? input('residual', out) : undefined!;
    const rope = { theta: 10000, ...(f.rotaryDim ? { rotaryDim: f.rotaryDim } : {}), inverse: f.inverse ?? false };
    g.output(
      `${key}/fused`,
      g.fusedMatmul(a, bT, {
        transposeB: true,
        ...(f.norm ? { norm: { weight, eps } } : {}),
        ...(f.bias ? { bias } : {}),
        ...(f.residual ? { residual } : {}),
        rope: { positions, shape: heads, ...rope },
      }),
    );
    if (unfused) {
      let y = g.matmul(f.norm ? g.rmsNorm(a, weight, { eps }) : a, swapLast(g, bT));
      if (f.bias) y = g.biasAdd(y, bias);
      if (f.residual) y = g.add(y, residual);
      g.output(`${key}/unfused`, g.reshape(g.rope(g.reshape(y, heads), positions, rope), out));
    }
    const label = `rope(${f.norm ? 'rmsNorm(a)' : 'a'}·bT${f.bias ? ' +bias' : ''}${f.residual ? ' +residual' : ''})${f.rotaryDim ? `, ${f.rotaryDim} of ${d} rotated` : ''}${f.inverse ? ', inverse' : ''}`;
    return { key, label, atol: 1e-4 + 2e-5 * k, rtol: 1e-4 };
  });
};

describe("fusedMatmul's rope epilogue equals the product, its epilogue and rope", () => {
  const combos: RopeFlags[] = [
    { norm: false, bias: false, residual: false },
    { norm: true, bias: false, residual: false },
    { norm: true, bias: true, residual: true, inverse: true },
    { norm: true, bias: true, residual: false, rotaryDim: 4 },
  ];
  // one row (a decode step: 3 heads of 8), several rows with one position each, batched
  // rows, a prompt's rows (the tiled kernel, N not a multiple of its tile); K a multiple of 4
  // or not; the small-M and tiled kernels (generic) and the direct one (software)
  const shapes: [Shape, number, number, Shape][] = [
    [[1, 40], 24, 8, [1, 1]],
    [[5, 21], 32, 16, [5, 1]],
    [[3, 2, 24], 16, 8, [3, 2, 1]],
    [[37, 21], 48, 16, [37, 1]],
  ];
  // a normed product takes at most 16 rows
  const combosOf = (aShape: Shape) => (aShape[aShape.length - 2] > 16 ? combos.map((c) => ({ ...c, norm: false })) : combos);
  test.each(shapes.flatMap(([sa, n, d, sp]) => [GENERIC, SOFTWARE].map((t) => [JSON.stringify(sa), n, d, t.name, sa, sp, t] as const)))(
    '%s · [%d, K]ᵀ as heads of %d, %s',
    async (_a, n, d, _t, aShape, positionsShape, target) => {
      await checkPairs('fused_matmul_rope', ropePairs(aShape, n, d, positionsShape, combosOf(aShape)), 43, { weight: [0.5, 1.5], positions: [0, 300] }, [target]);
    },
    300_000,
  );
});

/** A product whose value goes into a KV cache: a [.., M, K] · bT [N, K]ᵀ, normed (at most 16 rows), optionally rope'd as heads of d. */
interface CacheCase {
  label: string;
  a: Shape;
  n: number;
  /** the value as cacheWrite's rows, and the cache (a state, zero at the start) */
  rows: Shape;
  cache: Shape;
  /** one random offset, or these (distinct: two rows written to one place have no order on a GPU) */
  offsets: Shape | number[];
  /** heads of d rotated at one position per row (positions [M, 1]); absent: no rope */
  rope?: number;
}

/** Pairs over shared inputs: the product (and rope), cacheWrite into its own cache, against one fusedMatmul writing another. */
const cachePairs = (cases: readonly CacheCase[]): PairBuilder => (g, unfused) =>
  cases.map((c, j) => {
    const key = `c${j}`;
    const k = c.a[c.a.length - 1];
    const a = g.input(`a${j}`, c.a);
    const bT = g.input(`bT${j}`, [c.n, k]);
    const normed = c.a[c.a.length - 2] <= 16;
    const weight = normed ? g.input(`weight${j}`, [k]) : undefined!;
    const offsets = c.offsets.length > 1 ? g.constant(Float32Array.from(c.offsets), [c.offsets.length], `offsets${j}`) : g.input(`offsets${j}`, c.offsets);
    const heads = c.rope ? [...c.a.slice(0, -1), c.n / c.rope, c.rope] : undefined;
    const positions = c.rope ? g.input(`positions${j}`, [...c.a.slice(0, -1), 1]) : undefined;
    const rope = { theta: 10000 };
    g.output(
      `${key}/fused`,
      g.fusedMatmul(a, bT, {
        transposeB: true,
        ...(normed ? { norm: { weight, eps: 1e-5 } } : {}),
        ...(heads ? { rope: { positions: positions!, shape: heads, ...rope } } : {}),
        cacheWrite: { cache: g.state(`cache${j}/fused`, c.cache), rows: c.rows, offsets },
      }),
    );
    if (unfused) {
      let y = g.matmul(normed ? g.rmsNorm(a, weight, { eps: 1e-5 }) : a, swapLast(g, bT));
      if (heads) y = g.rope(g.reshape(y, heads), positions!, rope);
      g.output(`${key}/unfused`, g.cacheWrite(g.state(`cache${j}/unfused`, c.cache), g.reshape(y, c.rows), offsets));
    }
    return { key, label: c.label, atol: 1e-4 + 2e-5 * k, rtol: 1e-4 };
  });

describe("fusedMatmul's cache write equals the product, then cacheWrite of its rows", () => {
  // offsets past the cache's end drop their rows, as cacheWrite does
  const cases: CacheCase[] = [
    { label: "a decode step's k: rope'd, 3 heads of 8 into cache [3, 8, 8] at one offset", a: [1, 20], n: 24, rows: [3, 1, 8], cache: [3, 8, 8], offsets: [1], rope: 8 },
    { label: "a decode step's v into cache [3, 8, 8] at one offset", a: [1, 20], n: 24, rows: [3, 1, 8], cache: [3, 8, 8], offsets: [1] },
    { label: 'decode_batch: 4 rows of 2 heads of 8, each head to its own cache row of [4, 2, 8, 8]', a: [4, 21], n: 16, rows: [8, 8], cache: [4, 2, 8, 8], offsets: [5, 13, 22, 64, 40, 47, 70, 58], rope: 8 },
    { label: 'batched products [2, 1, 16] as rows [2, 2, 1, 8] into cache [2, 2, 6, 8]', a: [2, 1, 12], n: 16, rows: [2, 2, 1, 8], cache: [2, 2, 6, 8], offsets: [1] },
    {
      label: "a prompt's k (the tiled kernel, not normed): 36 rows of 2 heads of 8, rope'd, each head's row to its own cache row of [2, 40, 8]",
      a: [36, 21],
      n: 16,
      rows: [72, 8],
      cache: [2, 40, 8],
      offsets: Array.from({ length: 72 }, (_, i) => (i % 2) * 40 + Math.floor(i / 2) + 3),
      rope: 8,
    },
  ];
  test.each([GENERIC, SOFTWARE].map((t) => [t.name, t] as const))('%s', async (_t, target) => {
    const ranges: Ranges = Object.fromEntries(cases.flatMap((c, j) => [[`weight${j}`, [0.5, 1.5]], [`positions${j}`, [0, 300]], [`offsets${j}`, [0, 9]]]));
    await checkPairs('fused_matmul_cache', cachePairs(cases), 47, ranges, [target]);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------
// Dispatches and kernels

/** The plan's 'run' dispatches; baselines compile without the optimizer, so each op is its own kernel. */
async function dispatches(g: Graph, optimize = false) {
  const plan = await compileGraph(g, { optimize });
  const run = plan.manifest.entryPoints.run;
  return { count: run.dispatches.length, kernels: run.dispatches.map((d) => plan.manifest.kernels[d.kernel]), plan };
}

describe('fusion saves dispatches', () => {
  test('gelu(x * w + 1): three pointwise dispatches become one', async () => {
    const program = handWritten[0].program;
    const unfused = new Graph('unfused');
    unfused.output('y', unfold(unfused, [unfused.input('x', [7, 13]), unfused.input('w', [13])], program));
    const fused = new Graph('fused');
    fused.output('y', fused.fusedPointwise([fused.input('x', [7, 13]), fused.input('w', [13])], program));
    const before = await dispatches(unfused);
    const after = await dispatches(fused);
    expect(before.count).toBe(3);
    expect(after.count).toBe(1);
    expect(after.kernels[0].ops).toEqual(['mul', 'add', 'gelu']);
    const text = (await readBundle(after.plan.bundle)).text(after.kernels[0].variants[0].wgsl);
    expect(text).toContain('// op fusedPointwise: [7, 13], [13] -> [7, 13] f32');
    expect(text).toContain('// fuses: mul, add, gelu');
    expect(text).toContain('let v2 = (0.5 * v1 * (1.0 + mn_erf(v1 * 0.7071067811865476))); // gelu');
    expect(text.match(/fn mn_erf/g)).toHaveLength(1);
  });

  test('a backward layer, relu(Aᵀ·B + bias) + residual: five dispatches become one', async () => {
    const build = (g: Graph, fuse: boolean) => {
      const [a, b, bias, residual] = [g.input('a', [40, 30]), g.input('b', [40, 20]), g.input('bias', [20]), g.input('r', [30, 20])];
      const flags = { transposeA: true, transposeB: false, activation: 'relu' as const, bias: true };
      g.output('y', fuse ? g.fusedMatmul(a, b, { ...flags, bias, residual }) : unfusedMatmul(g, a, b, { ...flags, residual: residual.shape }, bias, residual));
      return g;
    };
    const before = await dispatches(build(new Graph('unfused'), false));
    const after = await dispatches(build(new Graph('fused'), true));
    expect(before.count).toBe(5);
    expect(after.count).toBe(1);
    expect(after.kernels[0].ops).toEqual(['transpose', 'matmul', 'biasAdd', 'relu', 'add']);
    const text = (await readBundle(after.plan.bundle)).text(after.kernels[0].variants[0].wgsl);
    expect(text).toContain('// fuses: transpose, matmul, biasAdd, relu, add');
    expect(text).toContain('A read transposed, epilogue per value');
  });

  test('plain matmul kernels are unchanged by the fused form', async () => {
    const g = new Graph('plain');
    g.output('y', g.matmul(g.input('a', [3, 17, 9]), g.input('b', [9, 20])));
    const { kernels, plan } = await dispatches(g);
    const text = (await readBundle(plan.bundle)).text(kernels[0].variants[0].wgsl);
    expect(kernels[0].ops).toEqual(['matmul']);
    expect(text).not.toContain('fuses');
    // the product is stored as accumulated, and A is read in place (no transposed read, no epilogue)
    expect(text).toContain('out[(c_base + row * N + col) / 4u] = vec4<f32>(acc0_0_0, acc0_0_1, acc0_0_2, acc0_0_3);');
    expect(text).toContain('let a_off0 = a_base + (row0 + a_r0) * K + a_q0 * 4u;');
    expect(text).not.toContain('let x0');
  });
});

// ---------------------------------------------------------------------------------------
// Shape errors

describe('fusion stays within the bindings every device offers', () => {
  test('a chain of 20 adds of distinct inputs becomes kernels of at most 7 operands (8 bindings), computing the same sum', async () => {
    const g = new Graph('longChain');
    const inputs = Array.from({ length: 20 }, (_, k) => g.input(`x${k}`, [64]));
    g.output('y', inputs.slice(1).reduce((sum, x) => g.add(sum, x), inputs[0]));
    const plan = await compileGraph(g);
    expect(plan.manifest.requiredLimits.maxStorageBuffersPerShaderStage).toBeLessThanOrEqual(8);
    for (const kernel of plan.manifest.kernels) expect(kernel.bindings.length, kernel.name).toBeLessThanOrEqual(8);
    expect(plan.manifest.entryPoints.run.dispatches.length).toBeLessThan(19); // still fused, in pieces
    const u = uniformStream(4);
    const feeds = Object.fromEntries(inputs.map((x) => [x.name, Float32Array.from({ length: 64 }, () => 2 * u() - 1)]));
    const session = await loadPlan(plan.bundle, (await sharedDevice()).device);
    try {
      const y = (await session.run(feeds)).y;
      expectClose(y, interpret(g, feeds, new Map()).y, 1e-5, 1e-5);
    } finally {
      session.destroy();
    }
  });
});

describe('fused ops refuse what they cannot compute, at the caller', () => {
  const shapeError = (build: (g: Graph) => unknown, message: RegExp) => {
    const g = new Graph('errors');
    try {
      build(g);
    } catch (e) {
      expect(e).toBeInstanceOf(CompileError);
      const err = e as CompileError;
      expect(err.kind).toBe('shape');
      expect(err.message).toMatch(message);
      expect(err.loc?.file).toMatch(/fusion-kernels\.test\.ts$/);
      return;
    }
    expect.fail(`no error; expected ${message}`);
  };
  const x = (g: Graph) => g.input('x', [4, 5]);

  test('fusedPointwise', () => {
    shapeError((g) => g.fusedPointwise([x(g)], [I('relu', [val(1)]), I('neg', [val(0)])]), /instruction 0 \(relu\), argument 0: refers to value 1, which is not computed before it/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('transpose', [op(0)], { perm: [1, 0] })]), /instruction 0 \(transpose\) cannot be fused: only pointwise ops/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('softmax', [op(0)])]), /instruction 0 \(softmax\) cannot be fused/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('add', [op(0)])]), /instruction 0 \(add\) takes 2 arguments; got 1/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('add', [op(0), op(1)])]), /operand 1 does not exist/);
    shapeError((g) => g.fusedPointwise([x(g), g.input('y', [3])], [I('add', [op(0), op(1)])]), /instruction 0 \(add\): operands of shapes \[4, 5\] and \[3\] do not broadcast/);
    shapeError((g) => g.fusedPointwise([x(g), g.input('y', [5])], [I('relu', [op(0)])]), /operand 1 is not used/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('relu', [op(0)]), I('neg', [op(0)])]), /value 0 \(relu\) is not used by a later instruction/);
    shapeError((g) => g.fusedPointwise([x(g)], []), /program is empty/);
    shapeError((g) => g.fusedPointwise([x(g)], [I('mul', [op(0), num(Infinity)])]), /scalar Infinity is not a finite number/);
    shapeError((g) => g.fusedPointwise([g.input('l', [4], 'i32')], [I('neg', [op(0)])]), /operand 0 is i32; fused programs read f32 operands/);
    shapeError((g) => g.fusedPointwise([x(g), g.input('b', [4])], [I('biasAdd', [op(0), op(1)])]), /instruction 0 \(biasAdd\): bias must have shape \[5\]/);
  });

  test('fusedMatmul', () => {
    shapeError((g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [4, 6])), /inner dimensions differ/);
    shapeError(
      (g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [4, 6]), { transposeB: true }),
      /inner dimensions differ.*a \[4, 5\], b \[4, 6\] \(read transposed: \[6, 4\]\)/,
    );
    shapeError((g) => g.fusedMatmul(g.input('a', [5]), g.input('b', [5, 6])), /a and b must have rank 2 or more/);
    shapeError((g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [5, 6]), { bias: g.input('bias', [4]) }), /bias must have shape \[6\]/);
    shapeError(
      (g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [5, 6]), { residual: g.input('r', [2, 4, 6]) }),
      /residual \[2, 4, 6\] does not broadcast to the product's shape \[4, 6\]/,
    );
    shapeError((g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [5, 6]), { activation: 'softplus' as MatmulActivation }), /activation 'softplus' is not one of/);
    const weight = (g: Graph, k = 5) => g.input('w', [k]);
    shapeError((g) => g.fusedMatmul(g.input('a', [17, 5]), g.input('b', [5, 6]), { norm: { weight: weight(g), eps: 1e-5 } }), /a normed product takes at most 16 rows a matrix.*A has 17/);
    shapeError((g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [5, 6]), { norm: { weight: weight(g, 6), eps: 1e-5 } }), /the norm's weight must have shape \[5\]/);
    shapeError((g) => g.fusedMatmul(g.input('a', [5, 4]), g.input('b', [5, 6]), { transposeA: true, norm: { weight: weight(g), eps: 1e-5 } }), /a normed product reads A as stored/);
    shapeError((g) => g.fusedMatmul(g.input('a', [4, 5]), g.input('b', [5, 6]), { gate: g.input('gate', [6]) }), /gate must have the product's shape \[4, 6\]; got \[6\]/);
  });
});
