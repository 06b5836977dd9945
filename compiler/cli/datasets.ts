// Training data for `mnc train` and the examples: one dataset per input of a training step,
// read from .npy, safetensors, IDX (plain or gzipped) or JSON files (first axis = samples),
// checked against the plan's input, shuffled each epoch by a seeded generator and cut into
// batches. A sample is one row of the input's first axis, or, for token sequences (an index
// input fed [samples, ...the input's whole shape]), the whole input: one sample per step.
import { decodeSafetensors, type SafeTensor } from '../../runtime/safetensors';
import type { TensorData } from '../../runtime/session';
import type { TensorBinding } from '../../schemas/manifest';
import { CompileError } from '../ir/errors';
import { gunzipOrFail, isGzip, looksLikeIdx, readIdx } from './idx';
import { f16ToF32, readNpy } from './npy';
import { nestedShape, parseJson, readFileOrFail } from './tensors';

/** Sample values as a file holds them; converted (and scaled) batch by batch, not all at once. */
export type SampleValues = Float32Array | Float64Array | Uint8Array | Int8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

export interface TensorFile {
  shape: number[];
  values: SampleValues;
}

/** One input's data: `samples` rows of the input's shape without its batch axis. */
export interface Dataset {
  /** the training-step input it feeds */
  input: TensorBinding;
  /** where it came from, for messages */
  source: string;
  samples: number;
  /** samples per training step: the input's first axis, or 1 where a sample fills the whole input */
  batch: number;
  values: SampleValues;
  /** each value is multiplied by this as batches are made (1/255 for u8 pixels) */
  scale: number;
}

const formatShape = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;
const describe = (t: TensorBinding) => `'${t.name}' ${t.dtype}${formatShape(t.shape)}`;

/**
 * Reads the tensor `name` needs from `file`: a .npy array, an IDX file, or the tensor called
 * `name` in a safetensors file; each may be gzipped. Recognised by content, not by name.
 */
export function readTensorData(file: string, name: string): TensorFile {
  const buffer = readFileOrFail(file, `dataset for '${name}'`);
  let bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (isGzip(bytes)) bytes = gunzipOrFail(bytes, file);
  if (bytes[0] === 0x93 && String.fromCharCode(...bytes.subarray(1, 6)) === 'NUMPY') {
    try {
      const { shape, data } = readNpy(bytes);
      return { shape, values: data };
    } catch (error) {
      throw new CompileError('input', `${file}: ${(error as Error).message}`);
    }
  }
  if (looksLikeIdx(bytes)) {
    const { shape, data } = readIdx(bytes, file);
    return { shape, values: data };
  }
  if (/\.safetensors(\.gz)?$/.test(file) || looksLikeSafetensors(bytes)) return fromSafetensors(bytes, file, name);
  if (/\.json(\.gz)?$/.test(file)) return fromJson(bytes, file);
  throw new CompileError('input', `${file}: not a dataset this reads: expected a .npy array, an IDX file (as MNIST's *-ubyte files), a .safetensors file or a .json array, each possibly gzipped`);
}

/** Nested arrays of numbers, one per sample (token ids: [[1, 5, 9], [2, 7, 3], …]). */
function fromJson(bytes: Uint8Array, file: string): TensorFile {
  const value = parseJson(bytes, file);
  const shape = nestedShape(value);
  if (typeof shape === 'string') throw new CompileError('input', `${file}: ${shape}`);
  if (shape.length === 0) throw new CompileError('input', `${file} holds one number; a dataset is an array with one entry per sample`);
  const flat = (value as unknown[]).flat(Infinity);
  const bad = flat.findIndex((v) => typeof v !== 'number');
  if (bad >= 0) throw new CompileError('input', `${file}: element ${bad} (flattened) is ${JSON.stringify(flat[bad])}, not a number`);
  return { shape, values: Float64Array.from(flat as number[]) };
}

/** An 8-byte little-endian header length followed by '{'. */
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  return bytes.length > 9 && bytes[8] === 0x7b && Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)) <= bytes.length - 8;
}

function fromSafetensors(bytes: Uint8Array, file: string, name: string): TensorFile {
  let tensors: Map<string, SafeTensor>;
  try {
    tensors = decodeSafetensors(bytes, file).tensors;
  } catch (error) {
    throw new CompileError('input', (error as Error).message);
  }
  const tensor = tensors.get(name);
  if (!tensor) {
    const names = [...tensors.keys()].map((n) => `'${n}'`).join(', ') || 'none';
    throw new CompileError('input', `${file} has no tensor '${name}' (its tensors: ${names}); a safetensors dataset holds a tensor named after the input`);
  }
  return { shape: tensor.shape, values: safetensorValues(tensor) };
}

const LITTLE_ENDIAN: Record<string, { size: number; get: (v: DataView, at: number) => number; array: new (n: number) => SampleValues }> = {
  F32: { size: 4, get: (v, at) => v.getFloat32(at, true), array: Float32Array },
  F64: { size: 8, get: (v, at) => v.getFloat64(at, true), array: Float64Array },
  F16: { size: 2, get: (v, at) => f16ToF32(v.getUint16(at, true)), array: Float32Array },
  BF16: { size: 2, get: (v, at) => bf16ToF32(v.getUint16(at, true)), array: Float32Array },
  I32: { size: 4, get: (v, at) => v.getInt32(at, true), array: Int32Array },
  U32: { size: 4, get: (v, at) => v.getUint32(at, true), array: Uint32Array },
  I64: { size: 8, get: (v, at) => Number(v.getBigInt64(at, true)), array: Float64Array },
  U8: { size: 1, get: (v, at) => v.getUint8(at), array: Uint8Array },
  I8: { size: 1, get: (v, at) => v.getInt8(at), array: Int8Array },
};

function safetensorValues(tensor: SafeTensor): SampleValues {
  const kind = LITTLE_ENDIAN[tensor.dtype];
  const count = tensor.data.length / kind.size;
  const view = new DataView(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  const values = new kind.array(count);
  for (let i = 0; i < count; i++) values[i] = kind.get(view, i * kind.size);
  return values;
}

function bf16ToF32(bits: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits << 16);
  return view.getFloat32(0);
}

const INTEGER_RANGE: Record<string, [number, number]> = { i8: [-128, 127], i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] };
const F32_MAX = 3.4028234663852886e38;

/**
 * Checks that `data` (from `source`) can feed `input` sample by sample; errors say what
 * differs. Every value is checked once here, so training never starts on data that would
 * turn the weights to NaN: integers within the input's index range (class labels below the
 * class count) or dtype, floats finite in f32 after scaling.
 */
export function datasetFor(input: TensorBinding, data: TensorFile, source: string, scale = 1): Dataset {
  const where = `dataset '${input.name}' (${source})`;
  // token sequences: [samples, ...the input's shape] for an index input ([sequence] or [batch, sequence]) feeds one sample a step
  const wholeInput = input.range !== undefined && data.shape.length === input.shape.length + 1 && data.shape.slice(1).join() === input.shape.join();
  if (input.shape.length === 0 && !wholeInput) throw new CompileError('input', `input ${describe(input)} is a scalar: it has no batch axis for a dataset to fill`);
  const sampleShape = wholeInput ? input.shape : input.shape.slice(1);
  const perSample = sampleShape.reduce((n, d) => n * d, 1);
  if (data.shape.length === 0) throw new CompileError('input', `${where} is a scalar; its first axis must count samples`);
  const samples = data.shape[0];
  const given = data.shape.slice(1).reduce((n, d) => n * d, 1);
  if (given !== perSample) {
    throw new CompileError(
      'input',
      `${where} has shape ${formatShape(data.shape)}, ${given} values per sample; input ${describe(input)} needs ${perSample} per sample (${formatShape(sampleShape)})` +
        (input.range ? `, or samples of its whole shape (${formatShape(['samples', ...input.shape])}, one a step)` : ''),
    );
  }
  const values = data.values;
  const sample = (i: number) => `sample ${Math.floor(i / Math.max(perSample, 1))}${perSample > 1 ? `, ${wholeInput ? 'position' : 'value'} ${i % perSample}` : ''}`;
  const range = INTEGER_RANGE[input.dtype];
  if (range) {
    if (scale !== 1) throw new CompileError('input', `--scale applies to float inputs; input ${describe(input)} takes integers`);
    const [min, max] = input.range ? [input.range.min, input.range.max] : range;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isInteger(v)) throw new CompileError('input', `${where} holds ${v} (${sample(i)}); input ${describe(input)} takes integers`);
      if (v < min || v > max) {
        const takes = input.range ? `indices from ${min} to ${max} (the size of the oneHot or embedding it indexes)` : `integers from ${min} to ${max}`;
        throw new CompileError('input', `${where} holds ${v} (${sample(i)}); input ${describe(input)} takes ${takes}`);
      }
    }
  } else {
    for (let i = 0; i < values.length; i++) {
      const v = values[i] * scale;
      if (!(Math.abs(v) <= F32_MAX)) {
        const what = Number.isFinite(values[i]) ? `${values[i]}, which --scale ${scale} makes ${v}` : String(values[i]);
        throw new CompileError('input', `${where} holds ${what} (${sample(i)}); training on it would make the weights NaN: remove or fix that sample`);
      }
    }
  }
  return { input, source, samples, batch: wholeInput ? 1 : input.shape[0], values: data.values, scale };
}

/**
 * Checks that the datasets feed every input exactly once with the same number of samples and
 * that the inputs share one batch size; returns that batch size and the sample count.
 */
export function checkDatasets(inputs: readonly TensorBinding[], datasets: readonly Dataset[]): { batch: number; samples: number } {
  const missing = inputs.filter((i) => !datasets.some((d) => d.input.name === i.name));
  if (missing.length > 0) {
    const list = missing.map(describe).join(', ');
    throw new CompileError('input', `no dataset for input${missing.length > 1 ? 's' : ''} ${list}; give --data ${missing[0].name}=FILE`);
  }
  const first = datasets[0];
  for (const d of datasets) {
    if (d.samples !== first.samples) {
      throw new CompileError('input', `datasets differ in sample count: '${first.input.name}' (${first.source}) has ${first.samples}, '${d.input.name}' (${d.source}) has ${d.samples}`);
    }
    if (d.batch !== first.batch) {
      throw new CompileError('input', `inputs ${describe(first.input)} and ${describe(d.input)} differ in batch size (${first.batch} and ${d.batch} samples per step)`);
    }
  }
  const batch = first.batch;
  if (first.samples < batch) throw new CompileError('input', `the datasets have ${first.samples} samples, fewer than one batch of ${batch}`);
  return { batch, samples: first.samples };
}

/** A permutation of 0..n-1 (Fisher–Yates), drawn from `random` (uniforms in [0, 1)). */
export function shuffledOrder(n: number, random: () => number): Uint32Array {
  const order = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** A typed array of the input's dtype and size to fill with fillBatch. */
export function batchBuffer(input: TensorBinding): TensorData {
  const n = input.shape.reduce((a, d) => a * d, 1);
  return input.dtype === 'i32' ? new Int32Array(n) : input.dtype === 'u32' ? new Uint32Array(n) : input.dtype === 'i8' ? new Int8Array(n) : new Float32Array(n);
}

/**
 * Fills `target` with the samples order[first], order[first+1], … (as many as the batch
 * holds), scaled. Samples past the end of `order` are zeros, so a last partial batch can be
 * padded; fillBatch returns how many real samples it copied.
 */
export function fillBatch(dataset: Dataset, order: ArrayLike<number>, first: number, target: TensorData): number {
  const batch = dataset.batch;
  const size = target.length / batch;
  const { values, scale } = dataset;
  let real = 0;
  for (let row = 0; row < batch; row++) {
    const at = row * size;
    if (first + row >= order.length) {
      target.fill(0, at, at + size);
      continue;
    }
    const from = order[first + row] * size;
    if (scale === 1) {
      target.set(values.subarray(from, from + size), at);
    } else {
      for (let k = 0; k < size; k++) target[at + k] = values[from + k] * scale;
    }
    real++;
  }
  return real;
}
