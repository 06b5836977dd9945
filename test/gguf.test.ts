// GGUF (issue 20, first slice): the reader, the CPU dequantizers and quantizers of every
// supported ggml type, the test tooling's writer, the metadata → config mapping and the
// undoing of llama.cpp's RoPE row permutation. Expected values in the hand-made blocks are
// worked out by hand from each block layout (runtime/ggml-types.ts), not by the code under test.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ggufModelConfig, ropeRowsPermuted, unpermuteRopeRows } from '../compiler/frontends/gguf/config';
import { quantize } from '../compiler/frontends/gguf/quantize';
import { CompileError } from '../compiler/ir/errors';
import { blocksGguf, blockValues, everyValueType, randomValues, TINY_LLAMA, tinyLlamaGguf } from '../fixtures/gguf/models';
import { PlanError, type PlanErrorKind } from '../runtime/errors';
import { dequantize, ggmlType, SUPPORTED_TYPES, type GgmlTypeName, type SupportedTypeName } from '../runtime/ggml-types';
import { bytesSource, GgufType, parseGguf, readGguf, readTensorBytes, tensorBytes, type GgufFile, type GgufMetadataEntry } from '../runtime/gguf';
import { decodeSafetensors } from '../runtime/safetensors';
import { f16BitsToF32 } from '../runtime/session';
import { openFileSource } from '../runtime/hosts/file-source';
import { encodeGguf, meta, type GgufWriterTensor } from './gguf-writer';

const fixture = (name: string) => new URL(`../fixtures/gguf/${name}`, import.meta.url);

/** The block of `type` given as bytes, dequantized. */
function decode(type: GgmlTypeName, bytes: number[]): Float32Array {
  const t = ggmlType(type);
  return dequantize(t, Uint8Array.from(bytes), (bytes.length / t.blockBytes) * t.blockElements, `a ${type} block`);
}

/** `size` zero bytes with `set` ({offset: byte}) written in. */
function block(size: number, set: Record<number, number>): number[] {
  const bytes = new Array<number>(size).fill(0);
  for (const [at, v] of Object.entries(set)) bytes[Number(at)] = v;
  return bytes;
}

// f16 bit patterns used below
const H = { '0.25': [0x00, 0x34], '0.5': [0x00, 0x38], '1': [0x00, 0x3c], '2': [0x00, 0x40], '-1': [0x00, 0xbc] } as const;

describe('dequantizers on hand-made blocks', () => {
  it('F32, F16, BF16', () => {
    expect([...decode('F32', [0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc1])]).toEqual([1.5, -10]);
    // 1, -2, 65504 (largest f16), 2^-24 (smallest subnormal), +inf
    expect([...decode('F16', [0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c])]).toEqual([1, -2, 65504, 2 ** -24, Infinity]);
    // bf16 is the top half of an f32: 0x3f80 → 1, 0xc040 → -3, 0x4049 → 3.140625
    expect([...decode('BF16', [0x80, 0x3f, 0x40, 0xc0, 0x49, 0x40])]).toEqual([1, -3, 3.140625]);
  });

  it('Q8_0: x = d · qs (int8)', () => {
    const x = decode('Q8_0', block(34, { 0: H['0.5'][0], 1: H['0.5'][1], 2: 1, 3: 0xfe, 4: 127, 5: 0x80, 33: 0xff }));
    expect([x[0], x[1], x[2], x[3], x[4], x[31]]).toEqual([0.5, -1, 63.5, -64, 0, -0.5]);
  });

  it('Q4_0: x[j] = d · (low nibble − 8), x[j+16] = d · (high nibble − 8)', () => {
    const x = decode('Q4_0', block(18, { 0: H['2'][0], 1: H['2'][1], 2: 0x9f, 3: 0x08 }));
    expect([x[0], x[16], x[1], x[17], x[2]]).toEqual([14, 2, 0, -16, -16]);
  });

  it('Q4_1: x = d · q + m', () => {
    const x = decode('Q4_1', block(20, { 0: H['0.25'][0], 1: H['0.25'][1], 2: H['-1'][0], 3: H['-1'][1], 4: 0x3a }));
    expect([x[0], x[16], x[1]]).toEqual([1.5, -0.25, -1]);
  });

  it('Q5_0: the fifth bits come from qh (u32, bit i for element i)', () => {
    // qh = 0x00020001: bits 0 and 17 set
    const x = decode('Q5_0', block(22, { 0: H['1'][0], 1: H['1'][1], 2: 0x01, 4: 0x02, 6: 0x21, 7: 0x43 }));
    // element 0: (1 | 16) − 16 = 1; element 16: 2 − 16; element 1: 3 − 16; element 17: (4 | 16) − 16
    expect([x[0], x[16], x[1], x[17], x[2]]).toEqual([1, -14, -13, 4, -16]);
  });

  it('Q5_1: x = d · q + m with the fifth bit of element 31 in qh bit 31', () => {
    const x = decode('Q5_1', block(24, { 0: H['0.5'][0], 1: H['0.5'][1], 2: H['2'][0], 3: H['2'][1], 7: 0x80, 23: 0xf0 }));
    // element 15: 0·0.5 + 2; element 31: (15 | 16)·0.5 + 2
    expect([x[15], x[31], x[0]]).toEqual([2, 17.5, 2]);
  });

  // Q4_K/Q5_K sub-block scales sc = [1, 2, 3, 63, 33, 47, 17, 60] and mins m = [5, 0, 63, 7, 49, 18, 35, 2]
  // packed by hand: bytes 0–3 = sc[0..3] | (sc[4..7] >> 4) << 6; bytes 4–7 = m[0..3] | (m[4..7] >> 4) << 6;
  // bytes 8–11 = (sc[4..7] & 15) | (m[4..7] & 15) << 4
  const SCALES = [0x81, 0x82, 0x43, 0xff, 0xc5, 0x40, 0xbf, 0x07, 0x11, 0x2f, 0x31, 0x2c];
  const kHeader = (scalesAt: number) => ({ 0: H['0.5'][0], 1: H['0.5'][1], 2: H['0.25'][0], 3: H['0.25'][1], ...Object.fromEntries(SCALES.map((b, i) => [scalesAt + i, b])) });

  it('Q4_K: 6-bit packed scales and mins, x = d·sc·q − dmin·m', () => {
    // qs at 16: chunk c's byte l holds element 64c+l (low nibble) and 64c+32+l (high nibble)
    const x = decode('Q4_K', block(144, { ...kHeader(4), 16: 0x73, [16 + 32]: 0x21, [16 + 64 + 3]: 0x45, [16 + 96 + 5]: 0xe1 }));
    const expected: [number, number][] = [
      [0, 0.5 * 1 * 3 - 0.25 * 5], // sub-block 0, q 3
      [32, 0.5 * 2 * 7 - 0.25 * 0], // sub-block 1, q 7
      [64, 0.5 * 3 * 1 - 0.25 * 63], // sub-block 2
      [96, 0.5 * 63 * 2 - 0.25 * 7], // sub-block 3
      [131, 0.5 * 33 * 5 - 0.25 * 49], // sub-block 4: scale and min from the split bits
      [163, 0.5 * 47 * 4 - 0.25 * 18], // sub-block 5
      [197, 0.5 * 17 * 1 - 0.25 * 35], // sub-block 6
      [229, 0.5 * 60 * 14 - 0.25 * 2], // sub-block 7
      [1, -0.25 * 5],
      [70, -0.25 * 63],
      [130, -0.25 * 49],
      [255, -0.25 * 2],
    ];
    for (const [i, v] of expected) expect(x[i], `element ${i}`).toBe(v);
  });

  it('Q5_K: as Q4_K, with fifth bits in qh (bit 2c of qh[l] for element 64c+l, bit 2c+1 for 64c+32+l)', () => {
    const x = decode('Q5_K', block(176, { ...kHeader(4), 16: 0b11, [16 + 5]: 0b1100_0000, [16 + 10]: 0x10, 48: 0x73, [48 + 32]: 0x21, [48 + 64 + 3]: 0x45, [48 + 96 + 5]: 0xe1 }));
    const expected: [number, number][] = [
      [0, 0.5 * 1 * 19 - 0.25 * 5], // q 3 + 16
      [32, 0.5 * 2 * 23], // q 7 + 16
      [64, 0.5 * 3 * 1 - 0.25 * 63], // qh[0] bit 2 clear
      [96, 0.5 * 63 * 2 - 0.25 * 7],
      [138, 0.5 * 33 * 16 - 0.25 * 49], // qh[10] bit 4 alone: q = 16
      [197, 0.5 * 17 * 17 - 0.25 * 35], // q 1 + 16
      [229, 0.5 * 60 * 30 - 0.25 * 2], // q 14 + 16
      [1, -0.25 * 5],
    ];
    for (const [i, v] of expected) expect(x[i], `element ${i}`).toBe(v);
  });

  it('Q6_K: low nibbles in ql, 2-bit highs in qh, int8 scales per 16, x = d·sc·(q − 32)', () => {
    const sc = { [192 + 0]: 1, [192 + 2]: 0xfd, [192 + 4]: 0x7f, [192 + 6]: 0x80, [192 + 9]: 10, [192 + 15]: 0xf9 }; // 1, −3, 127, −128, 10, −7
    const x = decode('Q6_K', block(210, { ...sc, 208: H['0.5'][0], 209: H['0.5'][1], 0: 0x5a, 32: 0xf3, 128: 0x9c, 81: 0x0f, 177: 0x03, 127: 0x80 }));
    const expected: [number, number][] = [
      [0, 0.5 * 1 * (10 - 32)], // ql[0] low 10, qh[0] bits 0–1 = 0
      [32, 0.5 * -3 * (3 + 48 - 32)], // ql[32] low 3, qh[0] bits 2–3 = 3
      [64, 0.5 * 127 * (5 + 16 - 32)], // ql[0] high 5, qh[0] bits 4–5 = 1
      [96, 0.5 * -128 * (15 + 32 - 32)], // ql[32] high 15, qh[0] bits 6–7 = 2
      [145, 0.5 * 10 * (15 + 48 - 32)], // second half, l 17: ql[81], qh[32+17], scale 9
      [255, 0.5 * -7 * (8 - 32)], // second half, l 31, fourth part: ql[127] high 8, scale 15
      [1, 0.5 * 1 * -32],
      [16, -0], // scale 1 is 0: 0 · (−32)
    ];
    for (const [i, v] of expected) expect(x[i], `element ${i}`).toBe(v);
  });

  it('refuses a type it does not dequantize, naming the tensor and the type', () => {
    expect(() => dequantize(ggmlType('Q2_K'), new Uint8Array(84), 256, 'tensor "blk.0.ffn_down.weight"')).toThrowError(
      expect.objectContaining({ kind: 'unsupported-type', message: expect.stringContaining('tensor "blk.0.ffn_down.weight" has type Q2_K (ggml type 10)') }),
    );
  });
});

describe('quantizers', () => {
  it('Q8_0 and Q4_0 give ggml reference bytes on hand-checked blocks', () => {
    // Q8_0: amax 127 → d = 1, qs = roundf(x) (halves away from zero)
    const x8 = new Float32Array(32);
    x8.set([127, -63.5, 0.4, 2.5, -2.5]);
    const q8 = quantize('Q8_0', x8);
    expect([...q8.subarray(0, 7)]).toEqual([0x00, 0x3c, 127, 0xc0 /* −64 */, 0, 3, 0xfd /* −3 */]);
    // Q4_0: the value of largest magnitude (−8) sets d = −8 / −8 = 1; q = min(15, trunc(x/d + 8.5))
    const x4 = new Float32Array(32);
    x4.set([-8, 4, 7.9]);
    x4[16] = 1;
    const q4 = quantize('Q4_0', x4);
    expect([...q4.subarray(0, 5)]).toEqual([0x00, 0x3c, 0 | (9 << 4), 12 | (8 << 4), 15 | (8 << 4)]);
  });

  // Per-element bounds, from each block's stored (decoded) scales:
  //   F32   exact
  //   F16   half an f16 ulp: |x|·2^-11 (2^-25 below the normal range)
  //   BF16  half a bf16 ulp: |x|·2^-8
  //   Q8_0  d/2: no clamping (amax maps to ±127); + 127·e(d) for d's rounding to f16, where
  //         e(v) = 2^-11·|v|, or 2^-25 for a subnormal f16 (a block of values below ~1e-3)
  //   Q4_0, Q5_0  one step d: the largest magnitude maps to −8 (−16), its negation to +8 (+16),
  //         clamped to 7 (15); + qmax·e(d)
  //   Q4_1, Q5_1  d/2 (min..max maps to 0..qmax, no clamping) + qmax·e(d) + e(m) (f16 d and m)
  //   Q4_K, Q5_K  ŝ/2 with ŝ = d·sc the sub-block's decoded step: scales and mins are rounded up
  //         so [−m̂, qmax·ŝ − m̂] covers the sub-block, and q is chosen with the decoded values
  //   Q6_K  one decoded step ŝ = d·sc: as Q4_0, the clamped edge, with sc's magnitude rounded up
  // plus float32 rounding of the computation (2^-20 relative).
  const f16At = (b: Uint8Array, at: number) => f16BitsToF32(b[at] | (b[at + 1] << 8));
  function bound(type: SupportedTypeName, b: Uint8Array, i: number, x: number): number {
    const k = (n: number) => Math.floor(i / n);
    // f16 rounding of a scale or min v: half an ulp, 2^-11·|v|, or 2^-25 among the subnormals (|v| < 2^-14)
    const f16Error = (v: number) => Math.max(2 ** -11 * 1.01 * Math.abs(v), 2 ** -25);
    switch (type) {
      case 'F32': return 0;
      case 'F16': return Math.max(Math.abs(x) * 2 ** -11, 2 ** -25);
      case 'BF16': return Math.abs(x) * 2 ** -8;
      case 'Q8_0': { const d = Math.abs(f16At(b, 34 * k(32))); return d / 2 + 127 * f16Error(d); }
      case 'Q4_0': { const d = Math.abs(f16At(b, 18 * k(32))); return d + 8 * f16Error(d); }
      case 'Q5_0': { const d = Math.abs(f16At(b, 22 * k(32))); return d + 16 * f16Error(d); }
      case 'Q4_1': { const at = 20 * k(32); const d = f16At(b, at); return d / 2 + 15 * f16Error(d) + f16Error(f16At(b, at + 2)); }
      case 'Q5_1': { const at = 24 * k(32); const d = f16At(b, at); return d / 2 + 31 * f16Error(d) + f16Error(f16At(b, at + 2)); }
      case 'Q4_K':
      case 'Q5_K': {
        const size = type === 'Q4_K' ? 144 : 176;
        const at = size * k(256);
        const s = k(32) % 8;
        const sc = s < 4 ? b[at + 4 + s] & 63 : (b[at + 8 + s] & 0xf) | ((b[at + s] >> 6) << 4);
        return (f16At(b, at) * sc) / 2;
      }
      case 'Q6_K': {
        const at = 210 * k(256);
        const sc = (b[at + 192 + (k(16) % 16)] << 24) >> 24;
        return Math.abs(f16At(b, at + 208) * sc);
      }
    }
  }

  const inputs: [string, Float32Array][] = [
    ['blockValues(7)', blockValues(7)],
    ['blockValues(8)', blockValues(8)],
    ['normal, scale 1e-3', randomValues(3, 2048, 1e-3)],
    ['normal, scale 30', randomValues(4, 2048, 30)],
    ['all positive', randomValues(5, 1024, 1).map((v) => 3 + v)],
    ['all zero', new Float32Array(512)],
  ];

  for (const type of SUPPORTED_TYPES) {
    it(`${type} round trip stays within its bound`, () => {
      for (const [what, x] of inputs) {
        const bytes = quantize(type, x);
        expect(bytes.length, what).toBe((x.length / ggmlType(type).blockElements) * ggmlType(type).blockBytes);
        const y = dequantize(ggmlType(type), bytes, x.length);
        for (let i = 0; i < x.length; i++) {
          const limit = bound(type, bytes, i, x[i]) + 2 ** -20 * (Math.abs(x[i]) + Math.abs(y[i]));
          if (!(Math.abs(x[i] - y[i]) <= limit)) expect.fail(`${type}, ${what}: element ${i} is ${y[i]} for ${x[i]}, error ${Math.abs(x[i] - y[i])} > bound ${limit}`);
        }
      }
    });
  }
});

describe('the writer and the reader', () => {
  it('the committed fixtures are what make-fixtures.ts writes', () => {
    expect(Buffer.from(readFileSync(fixture('tiny-llama.gguf'))).equals(Buffer.from(tinyLlamaGguf()))).toBe(true);
    expect(Buffer.from(readFileSync(fixture('blocks.gguf'))).equals(Buffer.from(blocksGguf()))).toBe(true);
  });

  it('reads back metadata of every value type, nested arrays included, exactly', () => {
    const file = parseGguf(blocksGguf(), 'blocks.gguf');
    expect(file.version).toBe(3);
    expect(file.alignment).toBe(32);
    expect([...file.metadata]).toEqual(everyValueType());
  });

  it('reads back the tiny Llama: metadata, tensor infos (ne and row-major shape) and data views', () => {
    const bytes = tinyLlamaGguf();
    const file = parseGguf(bytes, 'tiny-llama.gguf');
    expect(file.metadata.get('general.architecture')).toEqual(meta.str('llama'));
    const tokens = file.metadata.get('tokenizer.ggml.tokens')!.value as { values: string[] };
    expect(tokens.values.length).toBe(TINY_LLAMA.vocab);
    expect(tokens.values.slice(0, 3)).toEqual(['<|endoftext|>', '<|im_start|>', '<|im_end|>']);
    expect((file.metadata.get('tokenizer.ggml.token_type')!.value as { values: Int32Array }).values).toBeInstanceOf(Int32Array);
    expect((file.metadata.get('tokenizer.ggml.merges')!.value as { values: string[] }).values[2]).toBe('Ġt he');
    const k = file.tensors.get('blk.0.attn_k.weight')!;
    expect({ type: k.type.name, ne: k.ne, shape: k.shape, elements: k.elements, byteLength: k.byteLength }).toEqual({ type: 'Q4_1', ne: [32, 16], shape: [16, 32], elements: 512, byteLength: 16 * 20 });
    expect([...file.tensors.keys()][0]).toBe('token_embd.weight');
    for (const t of file.tensors.values()) {
      expect(t.offset % 32, t.name).toBe(0);
      const view = tensorBytes(bytes, t);
      expect(view.buffer, 'a view, not a copy').toBe(bytes.buffer);
    }
    // the data survive: the embedding decodes to what was quantized
    const embd = file.tensors.get('token_embd.weight')!;
    const expected = dequantize(embd.type, quantize('Q8_0', randomValues(1, 32 * 40, 0.5)), 32 * 40);
    expect(dequantize(embd.type, tensorBytes(bytes, embd), embd.elements)).toEqual(expected);
  });

  it('reads a header by file offset, growing its first read as needed, and a tensor at a time', async () => {
    const bytes = tinyLlamaGguf();
    const whole = parseGguf(bytes, 'x.gguf');
    const source = bytesSource(bytes);
    const reads: [number, number][] = [];
    const counting = { byteLength: bytes.length, read: (o: number, n: number) => (reads.push([o, n]), source.read(o, n)) };
    const file = await readGguf(counting, 'x.gguf', { firstRead: 64 });
    expect(file).toEqual(whole);
    expect(reads.map(([, n]) => n).slice(0, 3)).toEqual([64, 256, 1024]); // 4 times longer while the header ran past
    expect(Math.max(...reads.map(([, n]) => n))).toBeLessThan(4 * whole.dataOffset);

    const onDisk = await openFileSource(fixture('tiny-llama.gguf').pathname);
    try {
      const fromFile = await readGguf(onDisk, 'tiny-llama.gguf');
      expect({ ...fromFile, source: '' }).toEqual({ ...whole, source: '' });
      const q = fromFile.tensors.get('blk.0.attn_q.weight')!;
      expect([...(await readTensorBytes(onDisk, q))]).toEqual([...tensorBytes(bytes, q)]);
    } finally {
      await onDisk.close();
    }
  });

  const reference = fixture('blocks.reference.safetensors');
  it('dequantizes blocks.gguf exactly as gguf-py does (fixtures/gguf/make-reference.py)', () => {
    const expected = decodeSafetensors(new Uint8Array(readFileSync(reference)), 'blocks.reference.safetensors');
    const bytes = new Uint8Array(readFileSync(fixture('blocks.gguf')));
    const file = parseGguf(bytes, 'blocks.gguf');
    for (const t of file.tensors.values()) {
      const ref = expected.tensors.get(t.name)!;
      expect(ref.shape, t.name).toEqual(t.shape);
      const want = new Float32Array(ref.data.slice().buffer);
      expect(dequantize(t.type, tensorBytes(bytes, t), t.elements, t.name), t.name).toEqual(want);
    }
  });
});

describe('bad GGUF files', () => {
  const tensor = (over: Partial<GgufWriterTensor> = {}): GgufWriterTensor => ({ name: 'w', type: 'Q8_0', ne: [32, 2], data: new Uint8Array(68), ...over });
  const file = (metadata: [string, GgufMetadataEntry][] = [], tensors: GgufWriterTensor[] = [tensor()]) => encodeGguf({ metadata, tensors });

  function refusal(bytes: Uint8Array, kind: PlanErrorKind): string {
    try {
      parseGguf(bytes, 'bad.gguf');
    } catch (error) {
      if (!(error instanceof PlanError)) throw new Error(`expected a PlanError, got ${String(error)}`, { cause: error });
      expect(error.kind, error.message).toBe(kind);
      expect(error.message.startsWith('bad.gguf: '), error.message).toBe(true);
      return error.message.slice('bad.gguf: '.length);
    }
    throw new Error('expected parseGguf to refuse the file');
  }
  const patched = (bytes: Uint8Array, at: number, write: (v: DataView) => void) => {
    const out = bytes.slice();
    write(new DataView(out.buffer, at));
    return out;
  };

  it('truncated anywhere: a truncated error, never a RangeError', () => {
    const bytes = blocksGguf();
    const parsed = parseGguf(bytes);
    const last = [...parsed.tensors.values()].at(-1)!;
    for (const cut of [0, 3, 7, 12, 23, 40, 300, parsed.dataOffset - 1, parsed.dataOffset + 1, last.offset + last.byteLength - 1]) {
      expect(refusal(bytes.subarray(0, cut), 'truncated'), `cut at ${cut}`).toMatch(/file ends at byte|past the end|bytes left in the file|more than the whole/);
    }
    expect(refusal(bytes.subarray(0, 12), 'truncated')).toBe('the file ends at byte 12, inside the header field tensor_count (8 bytes at byte 8)');
    expect(refusal(bytes.subarray(0, 23), 'truncated')).toMatch(/^the header field tensor_count is 11, but the 7 bytes left in the file hold at most 0$/);
  });

  it('bad magic, unsupported versions', () => {
    const bytes = file();
    expect(refusal(patched(bytes, 0, (v) => v.setUint8(3, 0x58)), 'bad-magic')).toBe('not a GGUF file: it starts with "GGUX", not "GGUF"');
    expect(refusal(new TextEncoder().encode('{"json": true}'), 'bad-magic')).toMatch(/^not a GGUF file/);
    expect(refusal(patched(bytes, 4, (v) => v.setUint32(0, 1, true)), 'unsupported-version')).toMatch(/GGUF version 1; .*no longer reads version 1/);
    expect(refusal(patched(bytes, 4, (v) => v.setUint32(0, 4, true)), 'unsupported-version')).toBe('GGUF version 4; this reader reads versions 2 and 3');
    expect(refusal(patched(bytes, 4, (v) => v.setUint32(0, 3, false)), 'unsupported-version')).toMatch(/big-endian/);
    expect(parseGguf(patched(bytes, 4, (v) => v.setUint32(0, 2, true))).version).toBe(2);
  });

  it('tensor data past the end of the file', () => {
    expect(refusal(file([], [tensor({ offset: 4096 })]), 'truncated')).toMatch(/^tensor "w" has data at bytes \d+\.\.\d+, past the end of the \d+-byte file$/);
    expect(refusal(file([], [tensor({ ne: [2 ** 40, 2 ** 40], unchecked: true })]), 'truncated')).toMatch(/^tensor "w" \(Q8_0 ne \[1099511627776, 1099511627776\]\) needs .* bytes of data, more than the whole/);
  });

  it('unknown metadata types, also as an array element type', () => {
    expect(refusal(file([['x.y', { type: 13 as GgufType, value: 0 }]]), 'bad-header')).toBe('metadata "x.y" has unknown metadata type 13');
    expect(refusal(file([['x.list', meta.array(99 as GgufType, [])]]), 'bad-header')).toBe('metadata "x.list" is an array of unknown metadata type 99');
  });

  it('unknown tensor types, naming the tensor and the type id', () => {
    expect(refusal(file([], [tensor({ name: 'blk.3.attn_q.weight', typeId: 99, unchecked: true })]), 'unsupported-type')).toBe('tensor "blk.3.attn_q.weight" has ggml type 99, which this reader does not know');
    // a known type it cannot dequantize is read, and refused when dequantized
    const q2 = file([], [tensor({ name: 'q2', type: 'Q2_K', ne: [256, 1], data: new Uint8Array(84) })]);
    const t = parseGguf(q2).tensors.get('q2')!;
    expect(() => dequantize(t.type, tensorBytes(q2, t), t.elements, `tensor "${t.name}"`)).toThrowError(/tensor "q2" has type Q2_K \(ggml type 10\)/);
  });

  it('misaligned offsets and bad alignments', () => {
    expect(refusal(file([], [tensor({ offset: 16 })]), 'bad-header')).toBe('tensor "w" has offset 16 in the data section, not a multiple of the alignment 32');
    expect(refusal(file([['general.alignment', meta.u32(64)]], [tensor({ offset: 32 })]), 'bad-header')).toMatch(/offset 32 .* alignment 64/);
    expect(refusal(file([['general.alignment', meta.u32(48)]]), 'bad-header')).toBe('metadata "general.alignment" is 48, not a power of two');
    expect(refusal(file([['general.alignment', meta.u64(32n)]]), 'bad-header')).toBe('metadata "general.alignment" is UINT64; GGUF stores it as UINT32');
    expect(refusal(file([], [tensor({ ne: [33, 2], unchecked: true })]), 'bad-header')).toBe("tensor \"w\" has ne[0] = 33, not a multiple of Q8_0's block of 32 elements");
  });

  it('absurd counts are bounded by the file size before anything is allocated', () => {
    const bytes = file([['x.list', meta.array(GgufType.UINT32, Uint32Array.of(1, 2))]]);
    expect(refusal(patched(bytes, 8, (v) => v.setBigUint64(0, 2n ** 40n, true)), 'bad-header')).toMatch(/^the header field tensor_count is 1099511627776, more than any GGUF file holds \(the \d+ bytes left in the file hold at most \d+\)$/);
    expect(refusal(patched(bytes, 16, (v) => v.setBigUint64(0, 2n ** 32n, true)), 'bad-header')).toMatch(/^the header field kv_count is 4294967296/);
    expect(refusal(patched(bytes, 8, (v) => v.setBigUint64(0, 2n ** 63n, true)), 'bad-header')).toBe('the header field tensor_count is 9223372036854775808, beyond any file');
    // the array's length: after the 24-byte header, the key (8 + 6), the type (4) and the element type (4)
    expect(refusal(patched(bytes, 24 + 14 + 8, (v) => v.setBigUint64(0, 2n ** 30n, true)), 'truncated')).toMatch(/^the length of metadata "x\.list" is 1073741824, but the \d+ bytes left/);
    expect(refusal(patched(bytes, 24, (v) => v.setBigUint64(0, 2n ** 40n, true)), 'truncated')).toMatch(/^the key of metadata entry 0 claims 1099511627776 bytes/);
    expect(refusal(file([], [tensor({ ne: [32, 1, 1, 1, 2] })]), 'bad-header')).toBe('tensor "w" has 5 dims; GGUF tensors have at most 4');
  });

  it('duplicates, deep nesting and names that are not UTF-8', () => {
    expect(refusal(file([['a', meta.u8(1)], ['a', meta.u8(2)]]), 'bad-header')).toBe('metadata key "a" appears twice');
    expect(refusal(file([], [tensor(), tensor()]), 'bad-header')).toBe('tensor "w" appears twice');
    let nested: GgufMetadataEntry = meta.array(GgufType.UINT8, new Uint8Array(0));
    for (let i = 0; i < 20; i++) nested = meta.array(GgufType.ARRAY, [nested.value as never]);
    expect(refusal(file([['deep', nested]]), 'bad-header')).toMatch(/nests arrays deeper than 16/);
    const named = file([['k\u00e9y', meta.u8(1)]]);
    const at = 24 + 8 + 1; // the key's second byte: é's first byte (0xc3)
    expect(refusal(patched(named, at, (v) => v.setUint8(0, 0xff)), 'bad-header')).toBe('the key of metadata entry 0 is not UTF-8');
  });
});

describe('metadata as a config, and the RoPE row permutation', () => {
  it('maps llama.* keys onto config.json fields', () => {
    const file = parseGguf(new Uint8Array(readFileSync(fixture('tiny-llama.gguf'))), 'tiny-llama.gguf');
    expect(ggufModelConfig(file)).toEqual({
      model_type: 'llama',
      vocab_size: 40,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 8,
      intermediate_size: 64,
      rope_theta: 10000,
      rms_norm_eps: Math.fround(1e-5),
      max_position_embeddings: 128,
      tie_word_embeddings: true,
    });
  });

  const qwen = (extra: [string, GgufMetadataEntry][] = [], tensors: GgufWriterTensor[] = []): GgufFile =>
    parseGguf(
      encodeGguf({
        metadata: [
          ['general.architecture', meta.str('qwen2')],
          ['qwen2.context_length', meta.u32(32768)],
          ['qwen2.embedding_length', meta.u32(896)],
          ['qwen2.block_count', meta.u32(24)],
          ['qwen2.feed_forward_length', meta.u32(4864)],
          ['qwen2.attention.head_count', meta.u32(14)],
          ['qwen2.attention.head_count_kv', meta.u32(2)],
          ['qwen2.rope.freq_base', meta.f32(1000000)],
          ['qwen2.attention.layer_norm_rms_epsilon', meta.f32(1e-6)],
          ['tokenizer.ggml.tokens', meta.array(GgufType.STRING, ['a', 'b', 'c'])],
          ...extra,
        ],
        tensors,
      }),
      'qwen.gguf',
    );

  it('maps qwen2.* keys; the vocabulary from the tokens, untied when output.weight exists', () => {
    const config = ggufModelConfig(qwen([], [{ name: 'output.weight', type: 'F32', ne: [1], data: new Uint8Array(4) }]));
    expect(config).toMatchObject({ model_type: 'qwen2', vocab_size: 3, hidden_size: 896, head_dim: 64, num_key_value_heads: 2, rope_theta: 1000000, tie_word_embeddings: false });
    expect(ropeRowsPermuted('qwen2')).toBe(false);
    expect(ropeRowsPermuted('llama')).toBe(true);
  });

  it('refuses unknown architectures and missing keys, naming the file and the key', () => {
    const gpt2 = parseGguf(encodeGguf({ metadata: [['general.architecture', meta.str('gpt2')]], tensors: [] }), 'gpt2.gguf');
    expect(() => ggufModelConfig(gpt2)).toThrowError(new CompileError('model', 'gpt2.gguf: metadata "general.architecture" is "gpt2"; the model builders know llama, qwen2'));
    const noEps = parseGguf(encodeGguf({ metadata: [...qwen().metadata].filter(([k]) => k !== 'qwen2.attention.layer_norm_rms_epsilon'), tensors: [] }), 'qwen.gguf');
    expect(() => ggufModelConfig(noEps)).toThrowError('qwen.gguf: metadata "qwen2.attention.layer_norm_rms_epsilon" is missing');
  });

  /**
   * llama.cpp's convert script, re-derived from its definition with explicit index arithmetic:
   * W.reshape(n, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols). After the swap, the element
   * at [h, i, j, c] (shape [n, d/2, 2, cols], flattened row-major) is the reshaped W's [h, j, i, c].
   */
  function convertScriptPermute(w: Float32Array, rows: number, n: number): Float32Array {
    const cols = w.length / rows;
    const d = rows / n;
    const out = new Float32Array(w.length);
    let flat = 0;
    for (let h = 0; h < n; h++)
      for (let i = 0; i < d / 2; i++)
        for (let j = 0; j < 2; j++)
          for (let c = 0; c < cols; c++) out[flat++] = w[((h * 2 + j) * (d / 2) + i) * cols + c];
    return out;
  }

  it('undoes the permutation of Q (n_head) and K (n_head_kv) weights and biases', () => {
    // by hand, one head of 4 rows r0..r3: reshape (1, 2, 2) = [[r0, r1], [r2, r3]], swapped [[r0, r2], [r1, r3]]
    expect([...convertScriptPermute(Float32Array.of(0, 1, 2, 3), 4, 1)]).toEqual([0, 2, 1, 3]);
    expect([...unpermuteRopeRows(Float32Array.of(0, 2, 1, 3), 4, 1)]).toEqual([0, 1, 2, 3]);
    const { hidden, heads, kvHeads } = TINY_LLAMA;
    const headDim = hidden / heads;
    const q = randomValues(21, hidden * hidden);
    const k = randomValues(22, kvHeads * headDim * hidden);
    const bias = randomValues(23, kvHeads * headDim);
    expect(unpermuteRopeRows(convertScriptPermute(q, hidden, heads), hidden, heads)).toEqual(q);
    expect(unpermuteRopeRows(convertScriptPermute(k, kvHeads * headDim, kvHeads), kvHeads * headDim, kvHeads)).toEqual(k);
    expect(unpermuteRopeRows(convertScriptPermute(bias, bias.length, kvHeads), bias.length, kvHeads)).toEqual(bias);
    expect(convertScriptPermute(q, hidden, heads)).not.toEqual(q);
  });
});
