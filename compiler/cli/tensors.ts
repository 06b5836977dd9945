// Tensor data at the command line for `mnc run`: inputs from JSON (nested or flat arrays)
// and .npy files, seeded random fill for the rest, and outputs back out as a preview, one
// JSON file or one .npy per output. Each input comes out as the typed array of its dtype;
// integer inputs must hold integers the dtype (and the plan's index range) holds. Every
// problem is a CompileError('input' | 'io') that names the file and the input.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TensorData } from '../../runtime/session';
import type { DType, TensorBinding } from '../../schemas/manifest';
import { CompileError } from '../ir/errors';
import { initialValues } from '../ir/init';
import { readNpy, writeNpy, type NpyArray } from './npy';

const count = (shape: readonly number[]) => shape.reduce((n, d) => n * d, 1);
const formatShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Reads a file, turning a missing or unreadable file into a one-line error. */
export function readFileOrFail(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new CompileError('io', `cannot read ${what} '${file}': ${why}`);
  }
}

export function writeFileOrFail(file: string, bytes: Uint8Array | string): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, bytes);
  } catch (error) {
    throw new CompileError('io', `cannot write '${file}': ${(error as Error).message}`);
  }
}

/** Creates the directory `file` is to be written in. */
export function makeDirectoryFor(file: string): void {
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (error) {
    throw new CompileError('io', `cannot write '${file}': ${(error as Error).message}`);
  }
}

/** Moves a finished file into place; on failure `from` is removed and the error names `to`. */
export function renameOrFail(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (error) {
    rmSync(from, { force: true });
    throw new CompileError('io', `cannot write '${to}': ${(error as Error).message}`);
  }
}

/** Shape of a rectangular nested array of numbers; a message when it is not one. */
export function nestedShape(value: unknown, path = ''): number[] | string {
  if (typeof value === 'number') return [];
  if (!Array.isArray(value)) return `${path || 'the value'} is ${value === null ? 'null' : typeof value}, not a number or an array`;
  if (value.length === 0) return [0];
  const inner = nestedShape(value[0], `${path}[0]`);
  if (typeof inner === 'string') return inner;
  for (let i = 1; i < value.length; i++) {
    const s = nestedShape(value[i], `${path}[${i}]`);
    if (typeof s === 'string') return s;
    if (s.join() !== inner.join()) return `the array is ragged: ${path}[${i}] has shape ${formatShape(s)}, ${path}[0] has ${formatShape(inner)}`;
  }
  return [value.length, ...inner];
}

const INTEGER_LIMITS: Partial<Record<DType, [number, number]>> = { i8: [-128, 127], i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] };

/** The values an integer input accepts: the plan's index range, else its dtype's. */
export function integerRange(binding: TensorBinding): [number, number] | undefined {
  const limits = INTEGER_LIMITS[binding.dtype];
  if (!limits) return undefined;
  return binding.range ? [binding.range.min, binding.range.max] : limits;
}

/**
 * `values` as the typed array of the input's dtype. Integer inputs refuse fractions and
 * values outside integerRange, naming the element; `what` says where the values came from.
 */
export function typedInput(values: ArrayLike<number>, binding: TensorBinding, what: string): TensorData {
  const range = integerRange(binding);
  if (!range) return values instanceof Float32Array ? values : Float32Array.from(values);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      const why = binding.range ? `indices from ${range[0]} to ${range[1]} (the size of the oneHot or embedding it indexes)` : `integers from ${range[0]} to ${range[1]}`;
      throw new CompileError('input', `${what} holds ${v} at element ${i}; ${binding.dtype} input '${binding.name}' takes ${why}`);
    }
  }
  return binding.dtype === 'i8' ? Int8Array.from(values) : binding.dtype === 'i32' ? Int32Array.from(values) : Uint32Array.from(values);
}

/** One input's values from a JSON value: a flat array of its element count, or nested to its exact shape. */
export function tensorFromJson(value: unknown, binding: TensorBinding, source: string): TensorData {
  const shape = nestedShape(value);
  const where = `input '${binding.name}' (from ${source})`;
  if (typeof shape === 'string') throw new CompileError('input', `${where}: ${shape}`);
  const expected = count(binding.shape);
  if (shape.length <= 1) {
    const n = shape.length === 0 ? 1 : shape[0];
    if (n !== expected) throw new CompileError('input', `${where} has ${n} values; its shape ${formatShape(binding.shape)} needs ${expected}`);
  } else if (shape.join() !== binding.shape.join()) {
    throw new CompileError('input', `${where} has shape ${formatShape(shape)}; the plan expects ${formatShape(binding.shape)}`);
  }
  return typedInput(Array.isArray(value) ? (value.flat(Infinity) as number[]) : [value as number], binding, where);
}

/** One input from a .npy (exact shape; any numeric dtype whose values the input holds) or .json file. */
export function readTensorFile(file: string, binding: TensorBinding): TensorData {
  const bytes = readFileOrFail(file, `input file for '${binding.name}'`);
  if (file.endsWith('.npy')) {
    let array: NpyArray;
    try {
      array = readNpy(bytes);
    } catch (error) {
      throw new CompileError('input', `${file}: ${(error as Error).message}`);
    }
    if (array.shape.join() !== binding.shape.join()) {
      throw new CompileError('input', `input '${binding.name}' (from ${file}) has shape ${formatShape(array.shape)}; the plan expects ${formatShape(binding.shape)}`);
    }
    if (integerRange(binding) && !array.integer) {
      throw new CompileError('input', `input '${binding.name}' (from ${file}) is ${array.dtype}; the plan's input is ${binding.dtype}: save it with an integer dtype (e.g. np.${binding.dtype === 'i8' ? 'int8' : binding.dtype === 'u32' ? 'uint32' : 'int32'})`);
    }
    return typedInput(array.data, binding, `input '${binding.name}' (from ${file}, ${array.dtype})`);
  }
  return tensorFromJson(parseJson(bytes, file), binding, file);
}

export function parseJson(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new CompileError('input', `${file} is not valid JSON: ${(error as Error).message}`);
  }
}

export interface InputSources {
  /** `name=file` pairs from --input */
  files: string[];
  /** a JSON object of name → array, from --inputs */
  json?: string;
  /** fill inputs given nowhere else with uniform [-1, 1) values */
  random: boolean;
  seed: number;
}

/** Every input of the plan, from the sources in order of precedence: --input, --inputs, --random. */
export function gatherInputs(bindings: readonly TensorBinding[], sources: InputSources): Record<string, TensorData> {
  const byName = new Map(bindings.map((b) => [b.name, b]));
  const known = () => bindings.map((b) => `'${b.name}' ${b.dtype}${formatShape(b.shape)}`).join(', ') || 'none';
  const lookup = (name: string, from: string): TensorBinding => {
    const binding = byName.get(name);
    if (!binding) throw new CompileError('input', `the plan has no input '${name}' (given by ${from}); its inputs are ${known()}`);
    return binding;
  };
  const values: Record<string, TensorData> = {};

  for (const pair of sources.files) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new CompileError('input', `--input expects NAME=FILE (a .npy or .json file); got '${pair}'`);
    const name = pair.slice(0, eq);
    values[name] = readTensorFile(pair.slice(eq + 1), lookup(name, `--input ${pair}`));
  }
  if (sources.json) {
    const object = parseJson(readFileOrFail(sources.json, 'inputs file'), sources.json);
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      throw new CompileError('input', `${sources.json} must hold a JSON object mapping input names to arrays`);
    }
    for (const [name, value] of Object.entries(object)) {
      if (name in values) continue; // --input wins
      values[name] = tensorFromJson(value, lookup(name, sources.json), sources.json);
    }
  }
  const missing = bindings.filter((b) => !(b.name in values));
  if (missing.length > 0 && !sources.random) {
    const list = missing.map((b) => `'${b.name}' ${b.dtype}${formatShape(b.shape)}`).join(', ');
    throw new CompileError('input', `no value for input${missing.length > 1 ? 's' : ''} ${list}; give --input NAME=FILE, --inputs FILE.json, or --random`);
  }
  for (const b of missing) values[b.name] = randomInput(b, sources.seed);
  return values;
}

/** Uniform [-1, 1) for float inputs; uniform integers for integer ones: the index range, else -128..127 (i8) or 0..9. */
function randomInput(binding: TensorBinding, seed: number): TensorData {
  const range = integerRange(binding);
  if (!range) return initialValues({ uniform: [-1, 1] }, binding.shape, binding.name, seed);
  const uniform = initialValues({ uniform: [0, 1] }, binding.shape, binding.name, seed);
  const [lo, hi] = binding.range || binding.dtype === 'i8' ? range : [0, 9];
  return typedInput(Array.from(uniform, (u) => Math.min(hi, lo + Math.floor(u * (hi - lo + 1)))), binding, '--random');
}

// --- outputs --------------------------------------------------------------------------------

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-4 ? v.toExponential(3) : String(Number(v.toPrecision(4)));
}

/** `probs  f32[4, 10]  [0.1, 0.09, …]  min … max … mean …` */
export function previewTensor(name: string, binding: TensorBinding | undefined, data: Float32Array, width: number): string {
  const shape = binding ? `${binding.dtype}${formatShape(binding.shape)}` : `[${data.length}]`;
  const head = Array.from(data.subarray(0, 6), formatNumber).join(', ') + (data.length > 6 ? ', …' : '');
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of data) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  const stats = data.length > 0 ? `  min ${formatNumber(min)}  max ${formatNumber(max)}  mean ${formatNumber(sum / data.length)}` : '';
  return `${name.padEnd(width)}  ${shape.padEnd(14)}  [${head}]${stats}`;
}

function nest(data: Float32Array, shape: readonly number[]): unknown {
  // JSON has no NaN or Infinity: they become the strings JavaScript's Number() reads back
  const clean = (v: number) => (Number.isFinite(v) ? v : String(v));
  if (shape.length === 0) return clean(data[0]);
  const build = (offset: number, axis: number): unknown[] => {
    const n = shape[axis];
    if (axis === shape.length - 1) return Array.from(data.subarray(offset, offset + n), clean);
    const stride = count(shape.slice(axis + 1));
    return Array.from({ length: n }, (_, i) => build(offset + i * stride, axis + 1));
  };
  return build(0, 0);
}

/** One warning per output holding NaN or ±Infinity, with the counts (a model that diverged must not look fine). */
export function nonFiniteWarnings(outputs: Record<string, Float32Array>): string[] {
  const warnings: string[] = [];
  for (const [name, data] of Object.entries(outputs)) {
    let nan = 0;
    let inf = 0;
    let negInf = 0;
    let first = -1;
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (Number.isFinite(v)) continue;
      if (first < 0) first = i;
      if (Number.isNaN(v)) nan++;
      else if (v > 0) inf++;
      else negInf++;
    }
    if (first < 0) continue;
    const counts = [nan && `${nan} NaN`, inf && `${inf} Infinity`, negInf && `${negInf} -Infinity`].filter(Boolean).join(', ');
    warnings.push(`warning: output '${name}' holds ${counts} among its ${data.length} values (the first at element ${first})`);
  }
  return warnings;
}

/**
 * Writes outputs to `out`: one JSON object of nested arrays (a .json path; NaN and ±Infinity
 * as the strings "NaN", "Infinity", "-Infinity") or one .npy per output (a directory).
 */
export function writeOutputs(out: string, outputs: Record<string, Float32Array>, bindings: readonly TensorBinding[]): string[] {
  const shapeOf = (name: string, data: Float32Array) => bindings.find((b) => b.name === name)?.shape ?? [data.length];
  if (out.endsWith('.json')) {
    const object = Object.fromEntries(Object.entries(outputs).map(([name, data]) => [name, nest(data, shapeOf(name, data))]));
    writeFileOrFail(out, JSON.stringify(object) + '\n');
    return [out];
  }
  try {
    mkdirSync(out, { recursive: true });
  } catch (error) {
    throw new CompileError('io', `cannot create output directory '${out}': ${(error as Error).message}`);
  }
  return Object.entries(outputs).map(([name, data]) => {
    const file = join(out, `${name.replace(/[\\/]/g, '_')}.npy`);
    writeFileOrFail(file, writeNpy(data, shapeOf(name, data)));
    return file;
  });
}
