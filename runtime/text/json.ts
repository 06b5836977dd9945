// The text layer's JSON files (tokenizer.json, tokenizer_config.json, generation_config.json)
// arrive parsed, as text or as bytes; this turns each into an object or a TextError naming it.

import { TextError } from './errors';

/** A JSON object from an object, a JSON string or UTF-8 bytes; anything else is a TextError naming `file`. */
export function parseJsonObject(json: unknown, file: string, kind: 'bad-option' | 'bad-tokenizer'): Record<string, unknown> {
  let value = json;
  if (value instanceof ArrayBuffer) value = new Uint8Array(value);
  if (value instanceof Uint8Array) {
    try {
      value = new TextDecoder('utf-8', { fatal: true }).decode(value);
    } catch (cause) {
      throw new TextError(kind, 'is not UTF-8 text', { file, cause });
    }
  }
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (cause) {
      throw new TextError(kind, `is not JSON: ${(cause as Error).message}`, { file, cause });
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TextError(kind, `must hold a JSON object; got ${Array.isArray(value) ? 'an array' : String(JSON.stringify(value))}`, { file });
  }
  return value as Record<string, unknown>;
}
