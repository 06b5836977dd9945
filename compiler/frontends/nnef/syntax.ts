// The NNEF 1.0 text syntax (graph.nnef) read into a document: the version, the extension
// lines, and the graph's declaration and body of assignments `lhs = op<type>(args);`, each
// with its line and column. Written by hand: no maintained JavaScript library reads NNEF
// (KhronosGroup's parsers are C++ and Python). The flat form only: fragment definitions
// (custom operations) and operator expressions (the KHR_enable_* extensions) are refused.
//
//   version 1.0;
//   graph net( input ) -> ( output ) {
//     input = external<scalar>(shape = [1, 16]);   # a comment
//     w = variable<scalar>(shape = [4, 16], label = 'fc/weight');
//     output = linear(input, w);
//   }
import { CompileError } from '../../ir/errors';
import type { SourceLocation } from '../../ir/types';

/** A place in graph.nnef (1-based line and column). */
export interface Position {
  line: number;
  column: number;
}

export type Expr =
  | { kind: 'number'; value: number; integer: boolean; at: Position }
  | { kind: 'string'; value: string; at: Position }
  | { kind: 'logical'; value: boolean; at: Position }
  | { kind: 'identifier'; name: string; at: Position }
  | { kind: 'array'; items: Expr[]; at: Position }
  | { kind: 'tuple'; items: Expr[]; at: Position };

export interface Argument {
  /** the parameter named (`name = value`), or undefined for a positional argument */
  name?: string;
  value: Expr;
  at: Position;
}

export interface Assignment {
  /** one left-hand item per result of the operation: identifiers, or arrays/tuples of them */
  results: Expr[];
  op: string;
  /** the generic type argument (`external<scalar>`), when given */
  dtype?: 'scalar' | 'integer' | 'logical';
  args: Argument[];
  /** where the assignment starts; `opAt` where the operation's name is */
  at: Position;
  opAt: Position;
}

export interface GraphDocument {
  version: { major: number; minor: number };
  /** where the graph declaration (`graph name( … ) -> ( … )`) is */
  at: Position;
  extensions: string[];
  name: string;
  params: string[];
  results: string[];
  body: Assignment[];
}

type TokenKind = 'identifier' | 'keyword' | 'integer' | 'fractional' | 'string' | 'symbol' | 'eof';
interface Token {
  kind: TokenKind;
  text: string;
  at: Position;
}

const KEYWORDS = new Set([
  'version', 'extension', 'graph', 'fragment', 'tensor', 'integer', 'scalar', 'logical', 'string',
  'true', 'false', 'for', 'in', 'if', 'else', 'yield', 'length_of', 'shape_of', 'range_of',
]);
const TWO_CHAR_SYMBOLS = new Set(['->', '<=', '>=', '==', '!=', '&&', '||']);
/** The operators of KHR_enable_operator_expressions, refused where they appear. */
const OPERATORS = new Set(['+', '-', '*', '/', '^', '<', '>', '<=', '>=', '==', '!=', '&&', '||']);

/** Splits graph.nnef into tokens; `#` comments run to the end of the line. */
function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const at = (): Position => ({ line, column: i - lineStart + 1 });
  while (true) {
    // whitespace and comments
    while (i < text.length) {
      const c = text[i];
      if (c === '\n' || c === '\r') {
        i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
        line++;
        lineStart = i;
      } else if (c === ' ' || c === '\t' || c === '\f' || c === '\v') {
        i++;
      } else if (c === '#') {
        while (i < text.length && text[i] !== '\n' && text[i] !== '\r') i++;
      } else {
        break;
      }
    }
    if (i >= text.length) {
      tokens.push({ kind: 'eof', text: 'end of file', at: at() });
      return tokens;
    }
    const start = at();
    const c = text[i];
    if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1);
      const newline = text.slice(i + 1, close < 0 ? undefined : close).search(/[\r\n]/);
      if (close < 0 || newline >= 0) throw syntaxError(file, start, `unterminated string: expected a closing ${c} on the same line`);
      tokens.push({ kind: 'string', text: text.slice(i + 1, close), at: start });
      i = close + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 1024))!;
      tokens.push({ kind: KEYWORDS.has(m[0]) ? 'keyword' : 'identifier', text: m[0], at: start });
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 1024))!;
      if (/^[eE]/.test(text.slice(i + m[0].length)) && !m[2]) throw syntaxError(file, { line, column: start.column + m[0].length + 1 }, 'expected a digit in the exponent');
      tokens.push({ kind: m[1] || m[2] ? 'fractional' : 'integer', text: m[0], at: start });
      i += m[0].length;
    } else {
      const two = text.slice(i, i + 2);
      const symbol = TWO_CHAR_SYMBOLS.has(two) ? two : c;
      tokens.push({ kind: 'symbol', text: symbol, at: start });
      i += symbol.length;
    }
  }
}

function syntaxError(file: string, at: Position, message: string): CompileError {
  return new CompileError('model', message, { file, line: at.line, column: at.column });
}

export function locationOf(file: string, at: Position): SourceLocation {
  return { file, line: at.line, column: at.column };
}

const describeToken = (t: Token) => (t.kind === 'eof' ? 'end of file' : t.kind === 'string' ? `string '${t.text}'` : `'${t.text}'`);

/**
 * The extensions a document may name. Khronos's two only permit things (fragment definitions,
 * operator expressions): the line is accepted, and what it permits is refused where used.
 */
export const SUPPORTED_EXTENSIONS: readonly string[] = ['KHR_enable_fragment_definitions', 'KHR_enable_operator_expressions'];

/** How deeply arrays and tuples may nest (NNEF's attributes nest two deep; the bound keeps the recursion off the stack's end). */
export const MAX_NESTING = 64;

class Parser {
  private readonly tokens: Token[];
  private next = 0;
  private depth = 0;

  constructor(
    text: string,
    private readonly file: string,
  ) {
    this.tokens = tokenize(text, file);
  }

  private get token(): Token {
    return this.tokens[this.next];
  }
  private fail(message: string, at: Position = this.token.at): never {
    throw syntaxError(this.file, at, message);
  }
  private is(text: string): boolean {
    const t = this.token;
    return (t.kind === 'symbol' || t.kind === 'keyword') && t.text === text;
  }
  private accept(text: string): boolean {
    if (!this.is(text)) return false;
    this.next++;
    return true;
  }
  private expect(text: string, context: string): Token {
    const t = this.token;
    if (!this.is(text)) this.fail(`expected '${text}' ${context}, found ${describeToken(t)}`);
    this.next++;
    return t;
  }
  private identifier(context: string): Token {
    const t = this.token;
    if (t.kind !== 'identifier') {
      const keyword = t.kind === 'keyword' ? ` (a reserved word)` : '';
      this.fail(`expected an identifier ${context}, found ${describeToken(t)}${keyword}`);
    }
    this.next++;
    return t;
  }

  document(): GraphDocument {
    if (!this.is('version')) this.fail(`expected 'version 1.0;' at the start of the document, found ${describeToken(this.token)}`);
    this.next++;
    const v = this.token;
    if (v.kind !== 'fractional' || !/^[0-9]+\.[0-9]+$/.test(v.text)) this.fail(`expected a version number such as 1.0, found ${describeToken(v)}`);
    const [major, minor] = v.text.split('.').map(Number);
    if (major !== 1 || minor !== 0) this.fail(`NNEF version ${v.text} is not supported; this reader implements version 1.0`, v.at);
    this.next++;
    this.expect(';', 'after the version');

    const extensions: string[] = [];
    while (this.accept('extension')) {
      do {
        const ext = this.identifier('naming an extension');
        if (!SUPPORTED_EXTENSIONS.includes(ext.text)) this.fail(`extension '${ext.text}' is not supported (known: ${SUPPORTED_EXTENSIONS.join(', ')})`, ext.at);
        extensions.push(ext.text);
      } while (this.accept(','));
      this.expect(';', 'after the extension list');
    }

    if (this.is('fragment')) this.fail('fragment definitions (custom operations) are not supported; the graph must use the standard operations only');
    const at = this.expect('graph', 'to begin the graph definition').at;
    const name = this.identifier('naming the graph').text;
    const params = this.identifierList('of graph inputs');
    this.expect('->', "between the graph's inputs and outputs");
    const results = this.identifierList('of graph outputs');
    this.expect('{', 'to begin the graph body');
    const body: Assignment[] = [];
    while (!this.is('}')) {
      if (this.token.kind === 'eof') this.fail("expected '}' to end the graph body, found end of file");
      body.push(this.assignment());
    }
    this.next++;
    if (this.token.kind !== 'eof') this.fail(`expected the end of the document after the graph body, found ${describeToken(this.token)}`);
    return { version: { major, minor }, at, extensions, name, params, results, body };
  }

  private identifierList(context: string): string[] {
    this.expect('(', `to begin the list ${context}`);
    const names: string[] = [];
    do names.push(this.identifier(`in the list ${context}`).text);
    while (this.accept(','));
    this.expect(')', `to end the list ${context}`);
    return names;
  }

  private assignment(): Assignment {
    const at = this.token.at;
    // the left side is a tuple of lvalues, with or without parentheses
    const results: Expr[] = [];
    if (this.is('(')) {
      const first = this.lvalue();
      if (first.kind === 'tuple') results.push(...first.items);
      else results.push(first);
    } else {
      do results.push(this.lvalue());
      while (this.accept(','));
    }
    this.expect('=', 'after the left-hand side of an assignment');
    const opToken = this.identifier('naming an operation');
    let dtype: Assignment['dtype'];
    if (this.accept('<')) {
      const t = this.token;
      if (t.kind !== 'keyword' || !['scalar', 'integer', 'logical'].includes(t.text)) this.fail(`expected a type name (scalar, integer or logical), found ${describeToken(t)}`);
      dtype = t.text as Assignment['dtype'];
      this.next++;
      this.expect('>', 'after the type argument');
    }
    this.expect('(', `after '${opToken.text}'`);
    const args: Argument[] = [];
    if (!this.is(')')) {
      do args.push(this.argument());
      while (this.accept(','));
    }
    this.expect(')', `to end the arguments of '${opToken.text}'`);
    this.expect(';', 'after the assignment');
    return { results, op: opToken.text, dtype, args, at, opAt: opToken.at };
  }

  private lvalue(): Expr {
    return this.nested(() => this.lvalueAt());
  }

  /** Runs a parse of a nested item, refusing nesting past MAX_NESTING. */
  private nested(parse: () => Expr): Expr {
    if (this.depth >= MAX_NESTING) this.fail(`arrays and tuples nest more than ${MAX_NESTING} deep`);
    this.depth++;
    try {
      return parse();
    } finally {
      this.depth--;
    }
  }

  private lvalueAt(): Expr {
    const t = this.token;
    if (this.accept('[')) {
      const items: Expr[] = [];
      if (!this.is(']')) {
        do items.push(this.lvalue());
        while (this.accept(','));
      }
      this.expect(']', 'to end the array on the left-hand side');
      return { kind: 'array', items, at: t.at };
    }
    if (this.accept('(')) {
      const items: Expr[] = [this.lvalue()];
      this.expect(',', 'in a tuple (a tuple has two or more items)');
      do items.push(this.lvalue());
      while (this.accept(','));
      this.expect(')', 'to end the tuple on the left-hand side');
      return { kind: 'tuple', items, at: t.at };
    }
    return { kind: 'identifier', name: this.identifier('on the left-hand side of an assignment').text, at: t.at };
  }

  private argument(): Argument {
    const t = this.token;
    const after = this.tokens[this.next + 1];
    if (t.kind === 'identifier' && after.kind === 'symbol' && after.text === '=') {
      this.next += 2;
      return { name: t.text, value: this.value(), at: t.at };
    }
    return { value: this.value(), at: t.at };
  }

  /** A value, which the flat syntax does not let an operator or an invocation follow. */
  private value(): Expr {
    const v = this.nested(() => this.primary());
    const t = this.token;
    if (t.kind === 'symbol' && OPERATORS.has(t.text)) this.fail(`operator expressions are not supported (found '${t.text}'); write the operation as an invocation of its own, e.g. y = add(a, b);`);
    if (v.kind === 'identifier' && t.kind === 'symbol' && t.text === '(') {
      this.fail(`nested invocations are not supported ('${v.name}(' inside an argument list); assign the inner operation's result to an identifier first`);
    }
    return v;
  }

  private primary(): Expr {
    const t = this.token;
    if (t.kind === 'integer' || t.kind === 'fractional' || this.is('-')) return this.number();
    if (t.kind === 'string') {
      this.next++;
      return { kind: 'string', value: t.text, at: t.at };
    }
    if (this.is('true') || this.is('false')) {
      this.next++;
      return { kind: 'logical', value: t.text === 'true', at: t.at };
    }
    if (t.kind === 'identifier') {
      this.next++;
      return { kind: 'identifier', name: t.text, at: t.at };
    }
    if (this.accept('[')) {
      const items: Expr[] = [];
      if (!this.is(']')) {
        do items.push(this.value());
        while (this.accept(','));
      }
      this.expect(']', 'to end the array');
      return { kind: 'array', items, at: t.at };
    }
    if (this.accept('(')) {
      const items: Expr[] = [this.value()];
      this.expect(',', 'in a tuple (a tuple has two or more items)');
      do items.push(this.value());
      while (this.accept(','));
      this.expect(')', 'to end the tuple');
      return { kind: 'tuple', items, at: t.at };
    }
    if (t.kind === 'symbol' && (OPERATORS.has(t.text) || t.text === '!')) this.fail(`operator expressions are not supported (found '${t.text}'); write the operation as an invocation of its own, e.g. y = add(a, b);`);
    return this.fail(`expected a value (an identifier, number, string, true/false, array or tuple), found ${describeToken(t)}`);
  }

  private number(): Expr {
    const at = this.token.at;
    const negative = this.accept('-');
    const t = this.token;
    if (t.kind !== 'integer' && t.kind !== 'fractional') this.fail(`expected a number after '-', found ${describeToken(t)}`);
    this.next++;
    const value = Number(t.text) * (negative ? -1 : 1);
    if (!Number.isFinite(value)) this.fail(`number ${t.text} is out of range`, t.at);
    if (t.kind === 'integer' && !Number.isSafeInteger(value)) this.fail(`integer ${t.text} is too large`, t.at);
    return { kind: 'number', value, integer: t.kind === 'integer', at };
  }
}

/** Parses graph.nnef's text; a syntax error is a CompileError at its line and column. */
export function parseGraph(text: string, file: string): GraphDocument {
  return new Parser(text, file).document();
}
