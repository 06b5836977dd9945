// The NNEF frontend: a model directory (graph.nnef and the .dat tensor files its variables
// name by label) becomes a Graph. The graph's inputs are its `external` tensors, keeping
// their NNEF names (`--shape` may rebind one's static shape); `variable<scalar>` tensors
// become parameters of the plan named by their labels, trainable unless frozen; integer and
// logical variables and `constant` tensors become constants. Every IR node remembers the
// line of graph.nnef that made it, so errors point there.
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { CompileError } from '../../ir/errors';
import { Graph } from '../../ir/graph';
import { elementCount, formatShape, type SourceLocation } from '../../ir/types';
import { CONSTANT_LIMIT, OperationContext, type Bound, type NnefType, type NnefValue } from './context';
import { CONVERTERS } from './converters';
import { PROTOTYPES, SUPPORTED_OPERATIONS, UNSUPPORTED_STANDARD_OPS, type Literal, type Param, type Prototype } from './operations';
import { locationOf, parseGraph, type Argument, type Assignment, type Expr } from './syntax';
import { decodeTensorFile, TensorFileError } from './tensor-file';
import { parameterName } from '../parameter-names';

export interface NnefLoadOptions {
  /** static shapes for inputs, by external name, replacing the shapes graph.nnef declares */
  shapes?: Readonly<Record<string, readonly number[]>>;
  /** parameters are not trainable */
  freeze?: boolean;
}

export interface LoadedNnefModel {
  graph: Graph;
  name: string;
  /** the graph's inputs and outputs, in graph.nnef's order */
  inputs: string[];
  outputs: string[];
  /** the graph.nnef read */
  file: string;
}

/** How the importer reads a variable's tensor file: its bytes and the path to name in errors. */
export type TensorReader = (label: string) => { bytes: Uint8Array; file: string };

/** Where a model path's graph.nnef and tensor files are: a directory, or the graph.nnef in one. */
export function nnefPaths(path: string): { graphFile: string; directory: string } {
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    // a missing path is reported when graph.nnef is read
  }
  return isDirectory ? { graphFile: join(path, 'graph.nnef'), directory: path } : { graphFile: path, directory: dirname(path) };
}

/** Whether a model path given to `mnc compile` names an NNEF model (a directory, or a .nnef file). */
export function isNnefPath(path: string): boolean {
  if (/\.nnef[\\/]?$/i.test(path)) return true;
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Reads and imports a model; every failure is a CompileError naming the file. */
export function loadNnefModel(path: string, options: NnefLoadOptions = {}): LoadedNnefModel {
  const { graphFile, directory } = nnefPaths(path);
  let text: string;
  try {
    text = readFileSync(graphFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CompileError('io', `cannot read NNEF graph '${graphFile}': ${code === 'ENOENT' ? 'no such file (an NNEF model is a directory holding graph.nnef and its .dat files)' : String(e)}`);
  }
  const readTensor: TensorReader = (label) => {
    const file = join(directory, `${label}.dat`);
    const rel = relative(resolve(directory), resolve(file));
    if (rel.startsWith('..') || isAbsolute(rel)) throw new TensorFileError(`label '${label}' names a file outside the model directory`, file);
    try {
      return { bytes: readFileSync(file), file };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new TensorFileError(`cannot read the tensor file: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : String(e)}`, file);
    }
  };
  return importNnefModel(text, graphFile, readTensor, options);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.\-/]*$/;

/** Imports graph.nnef's text; `readTensor` gives the bytes of a variable's .dat file by label. */
export function importNnefModel(text: string, file: string, readTensor: TensorReader, options: NnefLoadOptions = {}): LoadedNnefModel {
  const doc = parseGraph(text, file);
  const g = new Graph(doc.name, { locate: () => undefined });
  const values = new Map<string, { value: NnefValue; line: number }>();
  const params = new Set(doc.params);
  const parameterNames = new Set<string>();
  const inputs: string[] = [];

  for (const a of doc.body) {
    const loc = locationOf(file, a.opAt);
    const fail = (message: string, at: SourceLocation = loc): never => {
      throw new CompileError('model', `${a.op}: ${message}`, at, a.op);
    };
    const proto =
      (Object.hasOwn(PROTOTYPES, a.op) ? PROTOTYPES[a.op] : undefined) ??
      fail(
        UNSUPPORTED_STANDARD_OPS.has(a.op)
          ? `operation '${a.op}' (an NNEF standard operation) is not supported by the NNEF frontend; supported: ${SUPPORTED_OPERATIONS.join(', ')}`
          : `operation '${a.op}' is not an NNEF standard operation (custom operations need fragment definitions, which are not supported); supported: ${SUPPORTED_OPERATIONS.join(', ')}`,
      );
    if (a.results.length !== proto.results.length) {
      fail(`the left-hand side has ${a.results.length} item${a.results.length === 1 ? '' : 's'}; '${a.op}' gives ${proto.results.length} result${proto.results.length === 1 ? '' : 's'}`, locationOf(file, a.at));
    }
    const declares = names(a.results);
    for (const n of declares) {
      if (a.op === 'external' && !params.has(n.name)) fail(`'${n.name}' is not an input of graph '${doc.name}'; external declares the graph's inputs (${doc.params.join(', ')})`, locationOf(file, n.at));
      if (a.op !== 'external' && params.has(n.name)) fail(`'${n.name}' is an input of the graph; only external may assign it`, locationOf(file, n.at));
      const earlier = values.get(n.name);
      if (earlier) fail(`'${n.name}' is already assigned (at line ${earlier.line}); NNEF identifiers are assigned once`, locationOf(file, n.at));
    }
    const args = bind(a, proto, values, file, fail);
    const ctx = new OperationContext(g, a.op, args, loc);

    let results: (NnefValue | NnefValue[])[];
    const dtype = a.dtype ?? 'scalar';
    if (a.op === 'external') {
      const name = (a.results[0] as { name: string }).name;
      results = [externalInput(ctx, name, dtype, options.shapes?.[name])];
      inputs.push(name);
    } else if (a.op === 'variable') {
      results = [variable(ctx, dtype, readTensor, parameterNames, options.freeze ?? false)];
    } else if (a.op === 'constant') {
      results = [constant(ctx, dtype)];
    } else {
      results = CONVERTERS[a.op](ctx);
    }
    a.results.forEach((lhs, i) => assign(lhs, results[i], values, a, file, fail));
  }

  const graphAt = locationOf(file, doc.at);
  for (const name of doc.params) {
    if (!inputs.includes(name)) throw new CompileError('model', `graph input '${name}' is never declared by an external operation`, graphAt);
  }
  for (const bound of Object.keys(options.shapes ?? {})) {
    if (!inputs.includes(bound)) throw new CompileError('input', `${file}: --shape names '${bound}', which is not an input of the graph (inputs: ${inputs.join(', ')})`);
  }
  for (const name of doc.results) {
    const v = values.get(name) ?? throwAt(graphAt, `graph output '${name}' is never assigned`);
    if (!IDENTIFIER.test(name)) throwAt(graphAt, `output name '${name}' is not usable as a plan output name`);
    g.output(name, v.value.tensor);
  }
  return { graph: g, name: doc.name, inputs, outputs: [...doc.results], file };
}

function throwAt(at: SourceLocation, message: string): never {
  throw new CompileError('model', message, at);
}

/** The identifiers a left-hand side declares. */
function names(lhs: readonly Expr[]): { name: string; at: Expr['at'] }[] {
  return lhs.flatMap((e) => (e.kind === 'identifier' ? [{ name: e.name, at: e.at }] : e.kind === 'array' || e.kind === 'tuple' ? names(e.items) : []));
}

function assign(
  lhs: Expr,
  result: NnefValue | NnefValue[],
  values: Map<string, { value: NnefValue; line: number }>,
  a: Assignment,
  file: string,
  fail: (message: string, at?: SourceLocation) => never,
): void {
  const at = locationOf(file, lhs.at);
  if (lhs.kind === 'identifier') {
    if (Array.isArray(result)) fail(`'${a.op}' gives an array of ${result.length} tensors; assign it to an array such as [${result.map((_, i) => `${lhs.name}${i}`).join(', ')}]`, at);
    values.set(lhs.name, { value: result, line: a.at.line });
  } else if (lhs.kind === 'array') {
    if (!Array.isArray(result)) return fail(`'${a.op}' gives one tensor; assign it to an identifier, not an array`, at);
    if (result.length !== lhs.items.length) fail(`'${a.op}' gives ${result.length} tensors here; the left-hand array has ${lhs.items.length} items`, at);
    lhs.items.forEach((item, i) => assign(item, result[i], values, a, file, fail));
  } else {
    fail('a nested tuple on the left-hand side is not supported', at);
  }
}

// --- arguments ----------------------------------------------------------------------------

const isAttribute = (p: Param) => p.kind !== 'tensor' && p.kind !== 'tensors';

/** Binds an invocation's arguments to the operation's parameters (NNEF's rules), defaults filled in. */
function bind(
  a: Assignment,
  proto: Prototype,
  values: ReadonlyMap<string, { value: NnefValue }>,
  file: string,
  fail: (message: string, at?: SourceLocation) => never,
): Map<string, Bound> {
  const bound = new Map<string, Bound>();
  const list = proto.params.map((p) => p.name).join(', ');
  let named = false;
  a.args.forEach((arg, index) => {
    const at = locationOf(file, arg.at);
    let param: Param;
    if (arg.name !== undefined) {
      param = proto.params.find((p) => p.name === arg.name) ?? fail(`'${a.op}' has no parameter '${arg.name}' (parameters: ${list})`, at);
      named = true;
    } else {
      if (named) fail(`a positional argument follows named ones; name it (parameters: ${list})`, at);
      param = proto.params[index] ?? fail(`too many arguments: '${a.op}' has ${proto.params.length} parameter${proto.params.length === 1 ? '' : 's'} (${list})`, at);
      if (isAttribute(param)) fail(`'${param.name}' is an attribute and must be given by name ('${param.name} = …')`, at);
    }
    if (bound.has(param.name)) fail(`'${param.name}' is given twice`, at);
    bound.set(param.name, argument(param, arg, values, at, fail));
  });
  for (const p of proto.params) {
    if (bound.has(p.name)) continue;
    if (p.default === undefined) fail(`the argument '${p.name}' is required (parameters: ${list})`);
    bound.set(p.name, { kind: 'literal', value: p.default });
  }
  return bound;
}

const KIND_NAMES: Record<Param['kind'], string> = {
  tensor: 'a tensor (an identifier or a number)',
  tensors: 'an array of tensors',
  integer: 'an integer',
  integers: 'an array of integers',
  pairs: 'an array of integer pairs such as [(0, 1), (1, 1)]',
  scalar: 'a number',
  logical: 'true or false',
  string: 'a string',
  values: 'an array of numbers or logicals',
};

function describe(e: Expr): string {
  switch (e.kind) {
    case 'number':
      return e.integer ? `the integer ${e.value}` : `the number ${e.value}`;
    case 'string':
      return `the string '${e.value}'`;
    case 'logical':
      return String(e.value);
    case 'identifier':
      return `the tensor '${e.name}'`;
    default:
      return `${e.kind === 'array' ? 'an array' : 'a tuple'} of ${e.items.length}`;
  }
}

function argument(param: Param, arg: Argument, values: ReadonlyMap<string, { value: NnefValue }>, at: SourceLocation, fail: (message: string, at?: SourceLocation) => never): Bound {
  const e = arg.value;
  const wrong = (): never => fail(`'${param.name}' must be ${KIND_NAMES[param.kind]}; got ${describe(e)}`, at);
  const tensorOf = (x: Expr): NnefValue => {
    if (x.kind !== 'identifier') return wrong();
    return values.get(x.name)?.value ?? fail(`'${x.name}' is not defined by an earlier assignment`, at);
  };
  const integer = (x: Expr): number => (x.kind === 'number' && x.integer ? x.value : wrong());
  switch (param.kind) {
    case 'tensor':
      if (e.kind === 'number' || e.kind === 'logical') return { kind: 'literal', value: e.value };
      return { kind: 'tensor', value: tensorOf(e) };
    case 'tensors':
      return e.kind === 'array' ? { kind: 'tensors', values: e.items.map(tensorOf) } : wrong();
    case 'integer':
      return { kind: 'literal', value: integer(e) };
    case 'integers':
      return e.kind === 'array' ? { kind: 'literal', value: e.items.map(integer) } : wrong();
    case 'pairs':
      if (e.kind !== 'array') return wrong();
      return { kind: 'literal', value: e.items.map((t) => (t.kind === 'tuple' && t.items.length === 2 ? t.items.map(integer) : wrong())) };
    case 'scalar':
      return e.kind === 'number' ? { kind: 'literal', value: e.value } : wrong();
    case 'logical':
      return e.kind === 'logical' ? { kind: 'literal', value: e.value } : wrong();
    case 'string':
      return e.kind === 'string' ? { kind: 'literal', value: e.value } : wrong();
    case 'values':
      if (e.kind !== 'array') return wrong();
      return { kind: 'literal', value: e.items.map((x) => (x.kind === 'number' || x.kind === 'logical' ? x.value : wrong())) as Literal[] };
  }
}

// --- tensor declarations ------------------------------------------------------------------

/** A declared shape: positive integers. */
function declaredShape(ctx: OperationContext): number[] {
  const shape = ctx.ints('shape');
  if (shape.some((d) => d < 1)) ctx.fail(`shape [${shape.join(', ')}] must hold positive extents (the plan carries no zero-size or dynamic tensors)`);
  return shape;
}

function externalInput(ctx: OperationContext, name: string, dtype: NnefType, bound: readonly number[] | undefined): NnefValue {
  let shape = declaredShape(ctx);
  if (dtype === 'integer') ctx.fail(`integer inputs are not supported ('${name}'): the operations the frontend implements compute on scalar and logical tensors`);
  if (!IDENTIFIER.test(name)) ctx.fail(`input name '${name}' is not usable as a plan input name`);
  if (bound) {
    if (bound.length !== shape.length) ctx.fail(`--shape ${name}=${bound.join('x')} has rank ${bound.length}; the graph declares ${formatShape(shape)}`);
    shape = [...bound];
  }
  return { tensor: ctx.g.at(ctx.loc, () => ctx.g.input(name, shape, 'f32')), type: dtype };
}

/** Shapes equal up to trailing extents of 1 (which NNEF leaves implicit). */
function sameUpToTrailingOnes(a: readonly number[], b: readonly number[]): boolean {
  const strip = (s: readonly number[]) => {
    const t = [...s];
    while (t.length && t[t.length - 1] === 1) t.pop();
    return t;
  };
  const [x, y] = [strip(a), strip(b)];
  return x.length === y.length && x.every((d, i) => d === y[i]);
}



function variable(ctx: OperationContext, dtype: NnefType, readTensor: TensorReader, parameterNames: Set<string>, freeze: boolean): NnefValue {
  const shape = declaredShape(ctx);
  const label = ctx.string('label');
  if (label === '') ctx.fail('label must name the tensor file (label.dat beside graph.nnef)');
  let file = `${label}.dat`;
  let data: Float64Array;
  try {
    const read = readTensor(label);
    file = read.file;
    const tensor = decodeTensorFile(read.bytes);
    if (!sameUpToTrailingOnes(tensor.shape, shape)) {
      throw new TensorFileError(`holds a tensor of shape ${formatShape(tensor.shape)}; the variable declares ${formatShape(shape)}`);
    }
    data = tensor.data;
  } catch (e) {
    if (e instanceof TensorFileError) {
      throw new CompileError('model', `${e.file ?? file}: ${e.message} (variable '${label}' of ${ctx.loc.file}:${ctx.loc.line})`, ctx.loc, 'variable');
    }
    throw e;
  }
  if (dtype !== 'scalar') return { tensor: ctx.constant(Float32Array.from(data), shape), type: dtype };
  const name = parameterName(label, parameterNames);
  const tensor = ctx.g.at(ctx.loc, () => ctx.g.parameter(name, shape, { init: Float32Array.from(data), trainable: !freeze }));
  return { tensor, type: 'scalar' };
}

function constant(ctx: OperationContext, dtype: NnefType): NnefValue {
  const shape = declaredShape(ctx);
  const count = elementCount(shape);
  const values = ctx.values('value');
  if (values.some((v) => typeof v !== 'number' && typeof v !== 'boolean')) ctx.fail('value must hold numbers or logicals');
  const numbers = values.map(Number);
  if (numbers.length === 1) return { tensor: ctx.filled(numbers[0], shape), type: dtype };
  if (numbers.length !== count) ctx.fail(`value has ${numbers.length} items; shape ${formatShape(shape)} needs ${count} (or one, repeated)`);
  if (count > CONSTANT_LIMIT) ctx.fail(`a constant of ${count} elements is too large (at most ${CONSTANT_LIMIT}); store it as a variable`);
  return { tensor: ctx.constant(Float32Array.from(numbers), shape), type: dtype };
}
