// The e-graph engine on its own, on the CPU: builds workloads, runs rule sets to saturation
// (or a limit) and prints iterations, nodes, classes and times. No GPU involved, so it runs
// straight from the source:
//
//   npx tsx bench/egraph.ts [--terms 5000] [--layers 30] [--seed 1] [--report]
//
// Workloads:
//   arith        N random arithmetic terms; commutativity (guarded by !=), x*1 → x, x+0 → x,
//                x*0 → 0, and constant folding through a function with :merge.
//   arith+assoc  the same plus associativity of Add, which never saturates: run to a node limit.
//   transformer  an L-layer pre-norm transformer block graph (attention + SwiGLU MLP) with
//                28 fusion / simplification rules (saturating), then tree and DAG extraction.
//   transformer+assoc  the same plus associativity of Add: runs to the node limit.
import { EGraph } from '../compiler/egraph/egraph';
import { extract } from '../compiler/egraph/extract';
import { parseEgg } from '../compiler/egraph/parse';
import { EggProgram } from '../compiler/egraph/program';
import { type RunReport, formatReport } from '../compiler/egraph/run';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const TERMS = arg('terms', 5000);
const LAYERS = arg('layers', 30);
const SEED = arg('seed', 1);
const SHOW_REPORT = process.argv.includes('--report');

/** xorshift32: a reproducible random stream. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

const ARITH = `
(datatype Math (Num i64) (Var String) (Add Math Math) (Mul Math Math) (Neg Math))
(function const (Math) i64 :merge (min old new))

(rewrite (Add a b) (Add b a) :when ((!= a b)) :name "add-comm")
(rewrite (Mul a b) (Mul b a) :when ((!= a b)) :name "mul-comm")
(rewrite (Mul x (Num 1)) x :name "mul-one")
(rewrite (Add x (Num 0)) x :name "add-zero")
(rewrite (Mul x (Num 0)) (Num 0) :name "mul-zero")
(rewrite (Neg (Neg x)) x :name "neg-neg")
(rule ((= e (Num n))) ((set (const e) n)) :name "const-num")
(rule ((= e (Add a b)) (= (const a) x) (= (const b) y)) ((set (const e) (+ x y))) :name "const-add")
(rule ((= e (Mul a b)) (= (const a) x) (= (const b) y) (< (* x y) 1000000) (> (* x y) -1000000))
      ((set (const e) (* x y))) :name "const-mul")
(rule ((= e (Neg a)) (= (const a) x)) ((set (const e) (- 0 x))) :name "const-neg")
(rule ((= (const e) n)) ((union e (Num n))) :name "const-union")
`;

function buildArith(eg: EGraph, n: number, seed: number): number[] {
  const rnd = random(seed);
  const leaf = (): number =>
    rnd() < 0.5 ? eg.add('Var', [`x${Math.floor(rnd() * 20)}`]) : eg.add('Num', [Math.floor(rnd() * 4)]);
  const term = (depth: number): number => {
    if (depth === 0 || rnd() < 0.2) return leaf();
    const r = rnd();
    if (r < 0.1) return eg.add('Neg', [term(depth - 1)]);
    return eg.add(r < 0.55 ? 'Add' : 'Mul', [term(depth - 1), term(depth - 1)]);
  };
  const roots: number[] = [];
  for (let i = 0; i < n; i++) roots.push(term(4));
  return roots;
}

function summary(label: string, report: RunReport, eg: EGraph): void {
  const its = report.iterations;
  const sum = (f: (i: (typeof its)[0]) => number): string => its.reduce((a, i) => a + f(i), 0).toFixed(1);
  console.log(
    `${label.padEnd(12)} ${report.stopReason.padEnd(15)} iterations ${String(its.length).padStart(3)}  ` +
      `nodes ${String(eg.nodeCount).padStart(7)}  classes ${String(eg.classCount).padStart(7)}  ` +
      `search ${sum((i) => i.searchMs).padStart(7)} ms  apply ${sum((i) => i.applyMs).padStart(7)} ms  ` +
      `rebuild ${sum((i) => i.rebuildMs).padStart(6)} ms  total ${report.totalMs.toFixed(1).padStart(7)} ms`,
  );
  if (SHOW_REPORT) console.log(formatReport(report) + '\n');
}

function arith(assoc: boolean): void {
  const eg = new EGraph();
  const prog = new EggProgram(eg, { nodeLimit: 200_000, timeLimitMs: 30_000 });
  let text = ARITH;
  if (assoc) text += '(rewrite (Add (Add a b) c) (Add a (Add b c)) :name "add-assoc")\n';
  prog.run(parseEgg(text, 'arith.egg'));
  const t0 = performance.now();
  const roots = buildArith(eg, TERMS, SEED);
  const t1 = performance.now();
  console.log(`arith${assoc ? '+assoc' : ''}: ${TERMS} terms → ${eg.nodeCount} e-nodes, ${eg.classCount} classes (built in ${(t1 - t0).toFixed(1)} ms)`);
  const report = prog.runRules({ iterationLimit: 100, nodeLimit: assoc ? 100_000 : 200_000 });
  summary(assoc ? 'arith+assoc' : 'arith', report, eg);
  const t2 = performance.now();
  const tree = extract(eg, roots, { mode: 'tree' });
  const t3 = performance.now();
  const dag = extract(eg, roots, { mode: 'dag' });
  const t4 = performance.now();
  console.log(
    `  extraction: tree cost ${tree.cost} in ${(t3 - t2).toFixed(1)} ms; DAG cost ${dag.cost} (${dag.mode}) in ${(t4 - t3).toFixed(1)} ms`,
  );
}

// A transformer block per layer, in a small tensor-op language; the rules fuse and simplify
// the way the compiler's optimizer will (shapes left out: they do not change the matching).
const TRANSFORMER = `
(datatype T
  (Input String) (Param String) (Const f64)
  (MatMul T T) (Add T T) (Mul T T) (Sub T T) (Div T T)
  (Sigmoid T) (Exp T) (Rsqrt T) (Neg T) (Transpose T)
  (Mean T) (Max T) (Sum T)
  (Silu T) (SwiGLU T T) (RMSNorm T T) (Softmax T) (LinearBias T T T)
  (Attention T T T) (FusedMLP T T T T) (Scale T f64))

(rewrite (Add a b) (Add b a) :when ((!= a b)) :name "add-comm")
(rewrite (Mul a b) (Mul b a) :when ((!= a b)) :name "mul-comm")
(rewrite (Mul x (Const 1.0)) x :name "mul-one")
(rewrite (Add x (Const 0.0)) x :name "add-zero")
(rewrite (Neg (Neg x)) x :name "neg-neg")
(rewrite (Transpose (Transpose x)) x :name "transpose-transpose")
(rewrite (Sub a (Neg b)) (Add a b) :name "sub-neg")
(rewrite (Add a (Neg b)) (Sub a b) :name "add-neg")
(rewrite (Mul (Const a) (Const b)) (Const (* a b)) :name "fold-mul")
(rewrite (Add (Const a) (Const b)) (Const (+ a b)) :name "fold-add")
(rewrite (Mul x (Const c)) (Scale x c) :name "scale")
(rewrite (Scale (Scale x a) b) (Scale x (* a b)) :name "scale-scale")
(rewrite (Div x (Const c)) (Scale x (/ 1.0 c)) :when ((!= c 0.0)) :name "div-const")
(rewrite (Mul x (Sigmoid x)) (Silu x) :name "silu")
(rewrite (Mul (Silu g) u) (SwiGLU g u) :name "swiglu")
(rewrite (Mul x (Rsqrt (Add (Mean (Mul x x)) (Const eps)))) (RMSNorm x (Const eps)) :name "rmsnorm")
(rewrite (Mul (RMSNorm x e) w) (RMSNorm (Mul x w) e) :name "rmsnorm-weight")
(rewrite (Div (Exp (Sub x (Max x))) (Sum (Exp (Sub x (Max x))))) (Softmax x) :name "softmax")
(rewrite (Add (MatMul x w) b) (LinearBias x w b) :name "linear-bias")
(rewrite (MatMul (Softmax (Scale (MatMul q (Transpose k)) s)) v) (Attention q k v) :name "attention")
(rewrite (MatMul (SwiGLU (MatMul x wg) (MatMul x wu)) wd) (FusedMLP x wg wu wd) :name "fused-mlp")
(rewrite (Exp (Neg (Neg x))) (Exp x) :name "exp-negneg")
(rewrite (Sigmoid (Neg (Neg x))) (Sigmoid x) :name "sigmoid-negneg")
(rewrite (Sub x x) (Const 0.0) :name "sub-self")
(rewrite (Mul x (Const 0.0)) (Const 0.0) :name "mul-zero")
(rewrite (Div x (Const 1.0)) x :name "div-one")
(rewrite (Scale x 1.0) x :name "scale-one")
(rewrite (Transpose (MatMul a b)) (MatMul (Transpose b) (Transpose a)) :name "transpose-matmul")
`;

function buildTransformer(eg: EGraph, layers: number): number {
  const c = (v: number): number => eg.add('Const', [v]);
  const p = (name: string): number => eg.add('Param', [name]);
  const op = (head: string, ...args: number[]): number => eg.add(head, args);
  const rmsnorm = (x: number, w: number): number =>
    op('Mul', op('Mul', x, op('Rsqrt', op('Add', op('Mean', op('Mul', x, x)), c(1e-5)))), w);
  const softmax = (x: number): number => {
    const e = op('Exp', op('Sub', x, op('Max', x)));
    return op('Div', e, op('Sum', e));
  };
  let x = eg.add('Input', ['tokens']);
  for (let l = 0; l < layers; l++) {
    const h = rmsnorm(x, p(`l${l}.attn_norm`));
    const heads: number[] = [];
    for (let hd = 0; hd < 4; hd++) {
      const q = op('MatMul', h, p(`l${l}.h${hd}.wq`));
      const k = op('MatMul', h, p(`l${l}.h${hd}.wk`));
      const v = op('MatMul', h, p(`l${l}.h${hd}.wv`));
      const scores = op('Mul', op('MatMul', q, op('Transpose', k)), c(0.125));
      heads.push(op('MatMul', softmax(scores), v));
    }
    let attn = heads[0]!;
    for (const hh of heads.slice(1)) attn = op('Add', attn, hh);
    x = op('Add', x, op('Add', op('MatMul', attn, p(`l${l}.wo`)), p(`l${l}.bo`)));
    const m = rmsnorm(x, p(`l${l}.mlp_norm`));
    const g = op('MatMul', m, p(`l${l}.wg`));
    const u = op('MatMul', m, p(`l${l}.wu`));
    const act = op('Mul', op('Mul', g, op('Sigmoid', g)), u);
    x = op('Add', x, op('MatMul', act, p(`l${l}.wd`)));
  }
  return x;
}

function transformer(assoc: boolean): void {
  const eg = new EGraph();
  const prog = new EggProgram(eg, { nodeLimit: 100_000, timeLimitMs: 30_000 });
  let text = TRANSFORMER;
  if (assoc) text += '(rewrite (Add (Add a b) c) (Add a (Add b c)) :name "add-assoc")\n';
  prog.run(parseEgg(text, 'transformer.egg'));
  const root = buildTransformer(eg, LAYERS);
  console.log(`transformer${assoc ? '+assoc' : ''}: ${LAYERS} layers → ${eg.nodeCount} e-nodes, ${eg.classCount} classes, ${prog.rules.length} rules`);
  const report = prog.runRules({ iterationLimit: 30 });
  summary(assoc ? 'tr+assoc' : 'transformer', report, eg);
  const t0 = performance.now();
  const tree = extract(eg, [root], { mode: 'tree' });
  const t1 = performance.now();
  const dag = extract(eg, [root], { mode: 'dag' });
  const t2 = performance.now();
  const heads = new Map<string, number>();
  for (const n of dag.choices.values()) heads.set(n.head, (heads.get(n.head) ?? 0) + 1);
  console.log(
    `  extraction: tree cost ${tree.cost.toExponential(3)} in ${(t1 - t0).toFixed(1)} ms; DAG cost ${dag.cost} (${dag.mode}) in ${(t2 - t1).toFixed(1)} ms`,
  );
  const fused = ['Attention', 'FusedMLP', 'RMSNorm', 'LinearBias', 'Softmax', 'SwiGLU', 'Silu', 'Scale'];
  console.log(`  chosen: ${fused.map((h) => `${h} ${heads.get(h) ?? 0}`).join(', ')}`);
}

const start = performance.now();
arith(false);
arith(true);
transformer(false);
transformer(true);
console.log(`total ${(performance.now() - start).toFixed(0)} ms (node ${process.version})`);
