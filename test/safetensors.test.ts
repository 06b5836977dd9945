// The runtime's safetensors reader on hostile headers: every problem is a PlanError('bad-input')
// naming the file part at fault, never a TypeError or a stack overflow (issue 17).
import { describe, expect, it } from 'vitest';
import { PlanError } from '../runtime/errors';
import { decodeSafetensors, encodeSafetensors } from '../runtime/safetensors';

/** A file whose JSON header is `header` (as text) followed by `data`. */
function file(header: string, data = new Uint8Array(16)): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function refusal(bytes: Uint8Array): string {
  try {
    decodeSafetensors(bytes, 'x.safetensors');
  } catch (error) {
    if (!(error instanceof PlanError)) throw new Error(`expected a PlanError, got ${String(error)}`, { cause: error });
    expect(error.kind).toBe('bad-input');
    return error.message;
  }
  throw new Error('expected decodeSafetensors to fail');
}

describe('decodeSafetensors', () => {
  it('round-trips what encodeSafetensors writes', () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
    const decoded = decodeSafetensors(encodeSafetensors(new Map([['w', { dtype: 'F32', shape: [3], data }]]), { format: 'pt' }));
    expect([...decoded.tensors.get('w')!.data]).toEqual([...data]);
    expect(decoded.metadata).toEqual({ format: 'pt' });
  });

  it('refuses hostile headers with a PlanError naming the part at fault', () => {
    const tensor = (fields: string) => file(`{"t":{${fields}}}`);
    const cases: [Uint8Array, string][] = [
      [tensor('"dtype":"constructor","shape":[4],"data_offsets":[0,16]'), 'x.safetensors: tensor "t" has unknown dtype "constructor"'],
      [tensor('"dtype":"toString","shape":[4],"data_offsets":[0,16]'), 'x.safetensors: tensor "t" has unknown dtype "toString"'],
      [tensor('"dtype":"F32","shape":[4],"data_offsets":16'), 'x.safetensors: tensor "t" has data_offsets 16, not [begin, end]'],
      [tensor('"dtype":"F32","shape":[4],"data_offsets":{"a":[]}'), 'x.safetensors: tensor "t" has data_offsets {"a":[]}, not [begin, end]'],
      [file('{"__metadata__":{"format":7}}'), 'x.safetensors: __metadata__ entry "format" is not a string'],
      [file('{"__metadata__":[]}'), 'x.safetensors: __metadata__ is not an object'],
      [file(`{"t":{"dtype":${'['.repeat(5000)}${']'.repeat(5000)}}}`), 'x.safetensors: the header nests arrays and objects more than 64 levels deep'],
    ];
    for (const [bytes, message] of cases) expect(refusal(bytes)).toBe(message);
  });
});
