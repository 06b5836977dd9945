// The egglog-subset parser: every command form, literals and names, file:line:col spans of
// forms and nested terms, and each refusal with the place it points at.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { declaredArities, parseEgg } from './parse';
import { type Action, type Command, EggError, type Expr, type Fact } from './syntax';

const parse = (text: string) => parseEgg(text, 'test.egg');
const one = (text: string): Command => {
  const commands = parse(text);
  expect(commands).toHaveLength(1);
  return commands[0]!;
};

/** A term printed back as egglog text, so expectations read like the source. */
function egg(e: Expr): string {
  switch (e.kind) {
    case 'int':
      return String(e.value);
    case 'float':
      return Number.isInteger(e.value) ? `${e.value}.0` : String(e.value);
    case 'string':
      return JSON.stringify(e.value);
    case 'bool':
      return String(e.value);
    case 'var':
      return e.name;
    case 'call':
      return `(${[e.head, ...e.args.map(egg)].join(' ')})`;
  }
}
const fact = (f: Fact) => (f.kind === 'eq' ? `(= ${f.exprs.map(egg).join(' ')})` : egg(f.expr));
function action(a: Action): string {
  switch (a.kind) {
    case 'let':
      return `(let ${a.name} ${egg(a.expr)})`;
    case 'union':
      return `(union ${egg(a.a)} ${egg(a.b)})`;
    case 'set':
      return `(set ${egg(a.call)} ${egg(a.value)})`;
    case 'delete':
      return `(delete ${egg(a.call)})`;
    case 'term':
      return egg(a.expr);
  }
}
/** The term of a top-level `(extract e)`, the handiest way to parse one expression. */
const term = (text: string): Expr => {
  const c = one(`(extract ${text})`);
  if (c.kind !== 'extract') throw new Error('not an extract');
  return c.expr;
};

/** Parses `text`, expecting an EggError at line:column whose message matches. */
function refuses(text: string, line: number, column: number, message: RegExp | string): EggError {
  let error: unknown;
  try {
    parse(text);
  } catch (e) {
    error = e;
  }
  expect(error, `expected ${JSON.stringify(text)} to be refused`).toBeInstanceOf(EggError);
  const egg = error as EggError;
  expect(egg.span).toEqual({ file: 'test.egg', line, column });
  expect(egg.message.startsWith(`test.egg:${line}:${column}: `)).toBe(true);
  if (typeof message === 'string') expect(egg.message).toContain(message);
  else expect(egg.message).toMatch(message);
  return egg;
}

describe('reader', () => {
  test('comments run to the end of the line and may sit anywhere', () => {
    const cs = parse(`; a file comment
(sort Math) ; after a form
(ruleset ; inside a form
  opt)
;; the end`);
    expect(cs.map((c) => c.kind)).toEqual(['sort', 'ruleset']);
    expect(cs[1]).toMatchObject({ name: 'opt', span: { line: 3, column: 1 } });
  });

  test('an empty file, or one with only comments, has no commands', () => {
    expect(parse('')).toEqual([]);
    expect(parse('  \n; nothing\n\t\n')).toEqual([]);
  });

  test('CRLF line ends count as one line', () => {
    const cs = parse('(sort A)\r\n(sort B)\r\n  (sort C)');
    expect(cs.map((c) => c.span)).toEqual([
      { file: 'test.egg', line: 1, column: 1 },
      { file: 'test.egg', line: 2, column: 1 },
      { file: 'test.egg', line: 3, column: 3 },
    ]);
  });

  test('strings keep `;` and parentheses, and take the escapes \\" \\\\ \\n \\t', () => {
    expect(term(String.raw`(S "a ; (b)")`)).toMatchObject({ args: [{ kind: 'string', value: 'a ; (b)' }] });
    expect(term(String.raw`(S "say \"hi\"\\" "x\ty\nz" "")`)).toMatchObject({
      args: [
        { kind: 'string', value: 'say "hi"\\' },
        { kind: 'string', value: 'x\ty\nz' },
        { kind: 'string', value: '' },
      ],
    });
  });

  test('a string may span lines, and what follows it keeps its true position', () => {
    const e = term('(S "two\nlines" x)');
    expect(e).toMatchObject({
      args: [
        { kind: 'string', value: 'two\nlines', span: { line: 1, column: 13 } },
        { kind: 'var', name: 'x', span: { line: 2, column: 8 } },
      ],
    });
  });

  test('integers, optionally signed, are int', () => {
    for (const [text, value] of [
      ['0', 0],
      ['42', 42],
      ['-7', -7],
      ['+3', 3],
      ['-0', 0],
      ['9007199254740991', 2 ** 53 - 1],
      ['-9007199254740991', -(2 ** 53 - 1)],
    ] as const) {
      const e = term(text);
      expect(e, text).toMatchObject({ kind: 'int', value });
      expect(Object.is((e as { value: number }).value, -0), text).toBe(false);
    }
  });

  test('numbers with a point or exponent are float, as are inf, -inf and NaN', () => {
    for (const [text, value] of [
      ['1.5', 1.5],
      ['-2.25', -2.25],
      ['1.0', 1],
      ['1.', 1],
      ['.5', 0.5],
      ['-.5', -0.5],
      ['1e3', 1000],
      ['2.5E-2', 0.025],
      ['+1.5e+2', 150],
      ['inf', Infinity],
      ['-inf', -Infinity],
    ] as const) {
      expect(term(text), text).toMatchObject({ kind: 'float', value });
    }
    const nan = term('NaN');
    expect(nan.kind).toBe('float');
    expect(Number.isNaN((nan as { value: number }).value)).toBe(true);
  });

  test("+inf, nan and Infinity are names, as in egglog's reader", () => {
    expect(term('(F +inf nan Infinity)')).toMatchObject({
      args: [
        { kind: 'var', name: '+inf' },
        { kind: 'var', name: 'nan' },
        { kind: 'var', name: 'Infinity' },
      ],
    });
  });

  test('true and false are bool', () => {
    expect(term('(B true false)')).toMatchObject({
      args: [
        { kind: 'bool', value: true },
        { kind: 'bool', value: false },
      ],
    });
  });

  test('names may hold the punctuation egglog allows', () => {
    const names = ['a-b', 'x?', '<=', '>=', '!=', 'foo.bar', '%', '&', '^', '*', '/', '+', '-', '->', 'a:b', 'set-of!', 'x_1', '<<', 'Ünï'];
    expect(term(`(f ${names.join(' ')})`)).toMatchObject({ args: names.map((name) => ({ kind: 'var', name })) });
    expect(term('(<= a b)')).toMatchObject({ kind: 'call', head: '<=' });
  });

  test('deeply nested terms (generated programs) neither overflow the stack nor lose spans', () => {
    const depth = 20_000;
    let e = term('(Neg '.repeat(depth) + 'x' + ')'.repeat(depth));
    let wrong = -1;
    for (let i = 0; i < depth; i++) {
      if (wrong < 0 && !(e.kind === 'call' && e.head === 'Neg' && e.span.column === 10 + 5 * i)) wrong = i;
      e = (e as Extract<Expr, { kind: 'call' }>).args[0]!;
    }
    expect(wrong, 'the first level whose head or span is wrong').toBe(-1);
    expect(e).toMatchObject({ kind: 'var', name: 'x', span: { line: 1, column: 10 + 5 * depth } });
  });

  test('parentheses and strings end a name without whitespace', () => {
    expect(egg(term('(Add(Num 1)x)'))).toBe('(Add (Num 1) x)');
    expect(term('(S a"b")')).toMatchObject({ args: [{ name: 'a' }, { value: 'b' }] });
  });
});

describe('terms', () => {
  test('symbols are variables, parenthesised applications are calls', () => {
    expect(egg(term('(Add (Mul x (Num 2)) y)'))).toBe('(Add (Mul x (Num 2)) y)');
    expect(term('(Nil)')).toMatchObject({ kind: 'call', head: 'Nil', args: [] });
    expect(term('x')).toMatchObject({ kind: 'var', name: 'x' });
  });

  test('spans point at the `(` of every call and the first character of every atom', () => {
    const e = term('(Add\n   (Num 1)\n  y)');
    // `(extract ` takes nine columns before the term.
    expect(e).toMatchObject({
      span: { file: 'test.egg', line: 1, column: 10 },
      args: [
        { span: { line: 2, column: 4 }, args: [{ kind: 'int', span: { line: 2, column: 9 } }] },
        { kind: 'var', span: { line: 3, column: 3 } },
      ],
    });
  });

  test('a bare name of a nullary constructor declared earlier in the text is a call', () => {
    const cs = parse(`(datatype List (Nil) (Cons i64 List))
(constructor Zero () Math)
(function counter () i64 :merge (max old new))
(rewrite (Cons x Nil) (Cons x (Nil)) :when ((= counter Zero)))`);
    const rw = cs[3] as Extract<Command, { kind: 'rewrite' }>;
    expect(egg(rw.lhs)).toBe('(Cons x (Nil))');
    expect(rw.lhs).toMatchObject({ args: [{}, { kind: 'call', head: 'Nil', args: [], span: { line: 4, column: 18 } }] });
    expect(fact(rw.conditions[0]!)).toBe('(= (counter) (Zero))');
  });

  test('a bare name used before its declaration stays a variable', () => {
    const cs = parse('(extract Nil)\n(datatype List (Nil))\n(extract Nil)');
    expect((cs[0] as { expr: Expr }).expr.kind).toBe('var');
    expect((cs[2] as { expr: Expr }).expr.kind).toBe('call');
  });

  test('options.declared carries nullary names over from an earlier file', () => {
    const prelude = parseEgg('(datatype List (Nil) (Cons i64 List))\n(relation seen (List))', 'prelude.egg');
    const declared = declaredArities(prelude);
    expect([...declared]).toEqual([
      ['Nil', 0],
      ['Cons', 2],
      ['seen', 1],
    ]);
    const rules = parseEgg('(rule ((seen Nil)) ((Cons 1 Nil)))', 'rules.egg', { declared });
    expect(rules[0]).toMatchObject({ query: [{ expr: { args: [{ kind: 'call', head: 'Nil' }] } }] });
    // Without it, Nil is a variable.
    expect(parse('(rule ((seen Nil)) ())')[0]).toMatchObject({ query: [{ expr: { args: [{ kind: 'var' }] } }] });
  });

  test('each `_` is a fresh variable that no user name can equal', () => {
    const e = term('(Add _ _)') as Extract<Expr, { kind: 'call' }>;
    const [a, b] = e.args as [Extract<Expr, { kind: 'var' }>, Extract<Expr, { kind: 'var' }>];
    expect(a.kind).toBe('var');
    expect(a.name).not.toBe(b.name);
    expect(a.name.startsWith('@')).toBe(true);
  });
});

describe('declarations', () => {
  test('datatype with variants, argument sorts and costs', () => {
    expect(one('(datatype Math (Num i64) (Var String) (Add Math Math :cost 2) (Pi))')).toEqual({
      kind: 'datatype',
      name: 'Math',
      variants: [
        { name: 'Num', args: ['i64'], span: { file: 'test.egg', line: 1, column: 16 } },
        { name: 'Var', args: ['String'], span: { file: 'test.egg', line: 1, column: 26 } },
        { name: 'Add', args: ['Math', 'Math'], cost: 2, span: { file: 'test.egg', line: 1, column: 39 } },
        { name: 'Pi', args: [], span: { file: 'test.egg', line: 1, column: 63 } },
      ],
      span: { file: 'test.egg', line: 1, column: 1 },
    });
    expect(one('(datatype Empty)')).toMatchObject({ kind: 'datatype', name: 'Empty', variants: [] });
  });

  test('sort', () => {
    expect(one('(sort Shape)')).toEqual({ kind: 'sort', name: 'Shape', span: { file: 'test.egg', line: 1, column: 1 } });
  });

  test('constructor, with and without a cost', () => {
    expect(one('(constructor MatMul (Tensor Tensor) Tensor :cost 10)')).toMatchObject({
      kind: 'constructor',
      name: 'MatMul',
      args: ['Tensor', 'Tensor'],
      output: 'Tensor',
      cost: 10,
    });
    const c = one('(constructor Zero () Math)');
    expect(c).toMatchObject({ kind: 'constructor', name: 'Zero', args: [], output: 'Math' });
    expect('cost' in c).toBe(false);
  });

  test('function with :merge, with :no-merge and with neither', () => {
    const f = one('(function size (Tensor) i64 :merge (min old new))');
    expect(f).toMatchObject({ kind: 'function', name: 'size', args: ['Tensor'], output: 'i64' });
    expect(egg((f as { merge: Expr }).merge)).toBe('(min old new)');
    for (const text of ['(function lo (Math) f64 :no-merge)', '(function lo (Math) f64)']) {
      const g = one(text);
      expect(g).toMatchObject({ kind: 'function', name: 'lo', args: ['Math'], output: 'f64' });
      expect('merge' in g).toBe(false);
    }
  });

  test('relation and ruleset', () => {
    expect(one('(relation edge (i64 i64))')).toMatchObject({ kind: 'relation', name: 'edge', args: ['i64', 'i64'] });
    expect(one('(relation done ())')).toMatchObject({ kind: 'relation', name: 'done', args: [] });
    expect(one('(ruleset fusion)')).toMatchObject({ kind: 'ruleset', name: 'fusion' });
  });
});

describe('rules', () => {
  test('rewrite with no options', () => {
    const c = one('(rewrite (Add a b) (Add b a))');
    expect(c).toMatchObject({ kind: 'rewrite', conditions: [], bidirectional: false });
    const rw = c as Extract<Command, { kind: 'rewrite' }>;
    expect([egg(rw.lhs), egg(rw.rhs)]).toEqual(['(Add a b)', '(Add b a)']);
    expect('ruleset' in rw || 'name' in rw).toBe(false);
  });

  test('rewrite with :when, :ruleset and :name, in any order', () => {
    const rw = one(`(rewrite (Div a b) (Mul a (Recip b))
  :ruleset algebra
  :when ((!= b (Num 0)) (= t (Type a)))
  :name "div-to-mul")`) as Extract<Command, { kind: 'rewrite' }>;
    expect(rw).toMatchObject({ ruleset: 'algebra', name: 'div-to-mul', bidirectional: false });
    expect(rw.conditions.map(fact)).toEqual(['(!= b (Num 0))', '(= t (Type a))']);
    expect(rw.conditions[0]!.span).toEqual({ file: 'test.egg', line: 3, column: 10 });
    expect(rw.conditions[1]).toMatchObject({ kind: 'eq', span: { line: 3, column: 25 } });
  });

  test('birewrite is a bidirectional rewrite', () => {
    expect(one('(birewrite (Add (Add x y) z) (Add x (Add y z)) :ruleset assoc)')).toMatchObject({
      kind: 'rewrite',
      bidirectional: true,
      ruleset: 'assoc',
    });
  });

  test('rule with facts, every kind of action, :ruleset and :name', () => {
    const r = one(`(rule ((= e (Mul x (Sigmoid x)))
       (shape x s)
       (= a b c))
      ((let y (Silu x))
       (union e y)
       (set (cost y) 3)
       (delete (cost e))
       (seen y))
      :ruleset fusion :name "silu")`) as Extract<Command, { kind: 'rule' }>;
    expect(r).toMatchObject({ kind: 'rule', ruleset: 'fusion', name: 'silu', span: { line: 1, column: 1 } });
    expect(r.query.map(fact)).toEqual(['(= e (Mul x (Sigmoid x)))', '(shape x s)', '(= a b c)']);
    expect(r.query.map((f) => f.kind)).toEqual(['eq', 'term', 'eq']);
    expect(r.actions.map(action)).toEqual(['(let y (Silu x))', '(union e y)', '(set (cost y) 3)', '(delete (cost e))', '(seen y)']);
    expect(r.actions.map((a) => a.kind)).toEqual(['let', 'union', 'set', 'delete', 'term']);
    expect(r.actions.map((a) => a.span.line)).toEqual([4, 5, 6, 7, 8]);
    expect(r.actions[2]).toMatchObject({ call: { head: 'cost', span: { line: 6, column: 13 } } });
  });

  test('a rule may have an empty query or no actions', () => {
    expect(one('(rule () ((edge 1 2)))')).toMatchObject({ kind: 'rule', query: [], actions: [{ kind: 'term' }] });
    expect(one('(rule ((edge a b)) ())')).toMatchObject({ kind: 'rule', actions: [] });
  });
});

describe('top-level actions and schedule', () => {
  test('let, union, set, delete and a bare term', () => {
    const cs = parse(`(let x (Num 1))
(union x (Num 2))
(set (size x) 4)
(delete (size x))
(Add (Num 1) (Num 2))`);
    expect(cs.map((c) => c.kind)).toEqual(['action', 'action', 'action', 'action', 'action']);
    expect(cs.map((c) => action((c as { action: Action }).action))).toEqual([
      '(let x (Num 1))',
      '(union x (Num 2))',
      '(set (size x) 4)',
      '(delete (size x))',
      '(Add (Num 1) (Num 2))',
    ]);
    expect(cs[4]).toMatchObject({ span: { line: 5, column: 1 }, action: { kind: 'term', span: { line: 5, column: 1 } } });
  });

  test('run, with and without a ruleset and :until', () => {
    expect(one('(run 10)')).toEqual({ kind: 'run', iterations: 10, span: { file: 'test.egg', line: 1, column: 1 } });
    expect(one('(run fusion 3)')).toMatchObject({ kind: 'run', ruleset: 'fusion', iterations: 3 });
    const until = one('(run 100 :until (= a b) (done))') as Extract<Command, { kind: 'run' }>;
    expect(until.until!.map(fact)).toEqual(['(= a b)', '(done)']);
    const listed = one('(run fusion 5 :until ((= a b) (done)))') as Extract<Command, { kind: 'run' }>;
    expect(listed).toMatchObject({ ruleset: 'fusion', iterations: 5 });
    expect(listed.until!.map(fact)).toEqual(['(= a b)', '(done)']);
    expect(one('(run 0)')).toMatchObject({ iterations: 0 });
  });

  test('extract, with and without a number of variants', () => {
    const e = one('(extract (Add x (Num 0)))');
    expect(e).toMatchObject({ kind: 'extract' });
    expect('variants' in e).toBe(false);
    expect(one('(extract x 3)')).toMatchObject({ kind: 'extract', expr: { kind: 'var', name: 'x' }, variants: 3 });
  });

  test('check', () => {
    const c = one('(check (= x (Num 3)) (edge 1 2))') as Extract<Command, { kind: 'check' }>;
    expect(c.facts.map(fact)).toEqual(['(= x (Num 3))', '(edge 1 2)']);
  });

  test('a whole program keeps order and positions', () => {
    const cs = parse(`(datatype Math (Num i64) (Add Math Math))
(ruleset simplify)

(rewrite (Add (Num a) (Num b)) (Num (+ a b)) :ruleset simplify)
(let e (Add (Num 1) (Num 2)))
(run simplify 5)
(check (= e (Num 3)))
(extract e)`);
    expect(cs.map((c) => `${c.kind}@${c.span.line}:${c.span.column}`)).toEqual([
      'datatype@1:1',
      'ruleset@2:1',
      'rewrite@4:1',
      'action@5:1',
      'run@6:1',
      'check@7:1',
      'extract@8:1',
    ]);
    expect(egg((cs[2] as { rhs: Expr }).rhs)).toBe('(Num (+ a b))');
  });
});

describe('refusals', () => {
  test('an unclosed `(` points at itself, naming the innermost one too', () => {
    refuses('(sort A)\n(rewrite (Add a b)\n  (Add b a)', 2, 1, 'this `(` is never closed');
    const e = refuses('(rule ((f x))\n  ((g x)', 1, 1, 'never closed');
    expect(e.message).toContain('innermost unclosed `(` is at 2:3');
  });

  test('a `)` with nothing open', () => {
    refuses('(sort A))', 1, 9, 'unexpected `)`');
  });

  test('unterminated strings and unknown escapes', () => {
    refuses('(extract (S "abc))', 1, 13, 'this string is never closed');
    refuses('(extract (S "abc\\', 1, 13, 'never closed');
    refuses('(extract\n (S "a\\qb"))', 2, 7, 'unknown escape `\\q`');
  });

  test('numbers out of range, and names that start like numbers', () => {
    refuses('(extract 9007199254740992)', 1, 10, 'outside the range');
    refuses('(extract (F -9007199254740993))', 1, 13, '±(2^53−1)');
    refuses('(extract 1e999)', 1, 10, 'too large for an f64');
    refuses('(extract (F 2x))', 1, 13, '`2x` is not a number');
    refuses('(extract 1.2.3)', 1, 10, 'not a number');
  });

  test('egglog commands outside the subset say so and list the supported ones', () => {
    const e = refuses('(sort A)\n  (push)', 2, 4, 'push is an egglog command this subset does not support');
    expect(e.message).toContain('datatype, sort, constructor, function, relation, ruleset, rewrite, birewrite, rule, run, extract, check, let, union, set, delete');
    refuses('(include "other.egg")', 1, 2, 'include is an egglog command');
    refuses('(run-schedule (saturate simplify))', 1, 2, '(run ruleset n)');
    refuses('(define x (Num 1))', 1, 2, 'write (let name term)');
  });

  test('a misspelt command is an unknown command, not a term', () => {
    const e = refuses('(rewirte (Add a b) (Add b a))', 1, 2, 'unknown command `rewirte` (did you mean rewrite?)');
    expect(e.message).toContain('it is neither a supported command (datatype, sort, constructor');
    refuses('(datatpe Math (Num i64))', 1, 2, 'did you mean datatype?');
    // A declared name one edit from a command is a term, as is a name far from every command.
    expect(parse('(relation rule_ (i64))\n(rule_ 1)')[1]).toMatchObject({ kind: 'action' });
    expect(parse('(Add (Num 1) (Num 2))')[0]).toMatchObject({ kind: 'action' });
  });

  test('a top-level form that is not a command in parentheses', () => {
    refuses('(sort A)\nfoo', 2, 1, 'expected a command in parentheses, such as (rewrite lhs rhs); found the symbol foo');
    refuses('42', 1, 1, 'found the number 42');
    refuses('()', 1, 1, 'found an empty list ()');
    refuses('((rewrite a b))', 1, 2, 'a command starts with its name');
  });

  test('wrong numbers of arguments quote the form', () => {
    refuses('(rewrite (Add a b))', 1, 1, 'rewrite expects (rewrite lhs rhs [:when (fact...)] [:ruleset name] [:name "name"]); got 1 argument');
    refuses('(birewrite a b c)', 1, 1, 'birewrite expects (birewrite lhs rhs');
    refuses('\n  (rule ((f x)))', 2, 3, 'rule expects (rule (fact...) (action...) [:ruleset name] [:name "name"]); got 1 argument');
    refuses('(sort)', 1, 1, 'sort expects (sort Name); got 0 arguments');
    refuses('(constructor Num (i64))', 1, 1, 'constructor expects (constructor Name (Sort...) Sort [:cost n]); got 2 arguments');
    refuses('(function f (i64))', 1, 1, 'function expects');
    refuses('(relation r)', 1, 1, 'relation expects (relation Name (Sort...)); got 1 argument');
    refuses('(ruleset a b)', 1, 1, 'ruleset expects (ruleset name); got 2 arguments');
    refuses('(run)', 1, 1, 'run expects (run [ruleset] iterations [:until fact...]); got 0 arguments');
    refuses('(run a 1 2)', 1, 1, 'got 3 arguments');
    refuses('(extract)', 1, 1, 'extract expects (extract term [variants]); got 0 arguments');
    refuses('(check)', 1, 1, 'check expects (check fact...); got 0 arguments');
    refuses('(let x)', 1, 1, 'let expects (let name term); got 1 argument');
    refuses('(union a)', 1, 1, 'union expects (union term term)');
    refuses('(rule () ((set (f x))))', 1, 11, 'set expects (set (function arg...) value); got 1 argument');
    refuses('(delete)', 1, 1, 'delete expects (delete (function arg...)); got 0 arguments');
  });

  test('arguments of the wrong kind', () => {
    refuses('(sort 3)', 1, 7, 'expected the sort name (a symbol); found the number 3');
    refuses('(datatype Math Num)', 1, 16, 'expected a variant such as (Add Math Math) in datatype Math; found the symbol Num');
    refuses('(datatype Math (Num "i64"))', 1, 21, 'expected the sort of argument 1 of variant Num (a symbol); found the string "i64"');
    refuses('(constructor Num i64 Math)', 1, 18, 'the input sorts go in parentheses, () when there are none; found the symbol i64');
    refuses('(relation r (i64 (Vec i64)))', 1, 18, 'expected the sort of input 2');
    refuses('(run simplify)', 1, 6, 'no iteration count (write (run simplify n))');
    refuses('(run 1.5)', 1, 6, 'expected the number of iterations (a non-negative integer); found the number 1.5');
    refuses('(run -1)', 1, 6, 'found the number -1');
    refuses('(run 2 3)', 1, 6, 'expected the ruleset name (a symbol); found the number 2');
    refuses('(extract x many)', 1, 12, 'expected the number of variants (a non-negative integer); found the symbol many');
    refuses('(rewrite a b :name simplify)', 1, 20, 'expected the rule name after :name (a string); found the symbol simplify');
    refuses('(rewrite a b :ruleset "r")', 1, 23, 'expected a ruleset name after :ruleset (a symbol); found the string "r"');
    refuses('(constructor C () M :cost -2)', 1, 27, 'expected the cost after :cost (a non-negative integer)');
    refuses('(let 3 (Num 1))', 1, 6, 'expected the name to bind (a symbol)');
    refuses('(set x 3)', 1, 6, 'its first argument is a function applied to arguments; found the symbol x');
    refuses('(delete 4)', 1, 9, 'found the number 4');
    refuses('(sort V (Vec i64))', 1, 9, 'container sorts such as (Vec i64) are not supported');
  });

  test('facts and actions must be lists, and a single one must be wrapped', () => {
    refuses('(rule (= a b) ())', 1, 7, 'found a single fact (= a b). Wrap it in another pair of parentheses: ((= a b))');
    refuses('(rewrite a b :when (= a c))', 1, 20, 'found a single fact (= a c)');
    refuses('(rule () (union a b))', 1, 10, 'found a single action (union a b)');
    refuses('(rule x ())', 1, 7, "expected the rule's query (a list of facts), such as ((= x y) (Add x y)); found the symbol x");
    refuses('(rule ((f x)) y)', 1, 15, "expected the rule's actions");
    refuses('(rule ((f x) y) ())', 1, 14, 'expected a fact in parentheses, such as (= x y) or (Add x y); found the symbol y');
    refuses('(check 3)', 1, 8, 'expected a fact in parentheses');
    refuses('(rule () ((union a b) x))', 1, 23, 'expected an action in parentheses');
    refuses('(check (= a))', 1, 8, '= expects (= term term...); got 1 term');
    refuses('(rule () ((subsume (Add a b))))', 1, 12, 'subsume is an egglog action this subset does not support');
  });

  test('options: unknown, unsupported, repeated, or with the wrong number of values', () => {
    refuses('(rewrite a b :whenever ((f a)))', 1, 14, 'rewrite has no option `:whenever`; its options are :when, :ruleset, :name');
    refuses('(rewrite a b :subsume)', 1, 14, "egglog's `:subsume` option of rewrite is not supported in this subset");
    refuses('(rule () () :naive)', 1, 13, 'not supported in this subset; its options are :ruleset, :name');
    refuses('(constructor C () M :unextractable)', 1, 21, '`:unextractable` option of constructor is not supported');
    refuses('(datatype M (C :unextractable))', 1, 16, '`:unextractable` option of variant C is not supported');
    refuses('(datatype M (C :costs 2))', 1, 16, 'variant C has no option `:costs`; its options are :cost');
    refuses('(extract x :extractor greedy-dag)', 1, 12, 'not supported');
    refuses('(relation r (i64) :cost 1)', 1, 19, 'relation has no option `:cost`; it takes no options');
    refuses('(rewrite a b :ruleset r :ruleset s)', 1, 25, 'option `:ruleset` is given twice');
    refuses('(rewrite a b :ruleset)', 1, 14, 'option `:ruleset` takes one value (a ruleset name); got 0 values');
    refuses('(rewrite a b :ruleset r s)', 1, 25, 'got 2 values');
    refuses('(function f () i64 :no-merge 3)', 1, 30, 'option `:no-merge` takes no value; found the number 3');
    refuses('(function f () i64 :merge old :no-merge)', 1, 31, 'either :merge or :no-merge, not both');
    refuses('(run 5 :until)', 1, 8, 'option `:until` takes one or more facts; got none');
  });

  test('terms: options, Unit, reserved names and applied names out of place', () => {
    refuses('(extract (Add :x y))', 1, 15, 'unexpected option `:x` where a term was expected');
    refuses('(extract (Add () y))', 1, 15, "`()` (egglog's Unit value) is not supported");
    refuses('(extract ((f) x))', 1, 11, 'a term in parentheses starts with a constructor, function or primitive name');
    refuses('(extract (3 x))', 1, 11, 'found the number 3');
    refuses('(extract @tmp)', 1, 10, 'names starting with `@` are reserved');
    refuses('(datatype M (Add M M))\n(rewrite Add (Add a b))', 2, 10, '`Add` is the constructor declared at test.egg:1:14, which takes 2 arguments, so it cannot be a variable');
  });

  test('declarations: twice, and let over a declared name', () => {
    refuses('(datatype M (Num i64))\n(constructor Num (i64) M)', 2, 14, '`Num` is declared twice: it is already the constructor declared at test.egg:1:14');
    refuses('(datatype M (Nil))\n(let Nil (Nil))', 2, 6, 'let cannot bind `Nil`');
    refuses('(rule () ((let _ (Nil))))', 1, 16, 'let cannot bind `_`');
    const earlier = new Map([['Num', 1]]);
    expect(() => parseEgg('(constructor Num (i64) M)', 'x.egg', { declared: earlier })).toThrow('declared by an earlier file');
  });

  test('messages start with file:line:col', () => {
    expect(() => parseEgg('\n\n   (push)', 'rules/fusion.egg')).toThrow(/^rules\/fusion\.egg:3:5: push is an egglog command/);
  });
});

test("README's error examples are what the parser says", () => {
  const readme = readFileSync(new URL('./README.md', import.meta.url), 'utf8');
  const examples = [
    '(rewrite (Add a b))',
    '(rule (= a b) ())',
    '(sort A)\n(rewrite (Add a b)\n  (Add b a)',
    '(push)',
    '(rewrite a b :subsume)',
    '(datatype M (Num i64) (Add M M))\n(rewrite Add a)',
  ];
  for (const text of examples) {
    let message = '';
    try {
      parseEgg(text, 'rules.egg');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(readme, `README.md should quote ${JSON.stringify(text)}'s error`).toContain(message.replace(/^rules\.egg:\d+:\d+: /, ''));
  }
});
