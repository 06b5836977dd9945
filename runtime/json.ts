// JSON.parse with a nesting bound, for the JSON headers of files the runtime reads. A value
// nested thousands deep parses, but every recursive walk of it afterwards (JSON.stringify in
// `mnc inspect --json`, structuredClone, a reader's error message) overflows the stack; no
// header needs more than a few levels, so deeper text is refused before it is parsed.

/** Deeper than any manifest or safetensors header needs (a manifest uses 8 levels). */
export const MAX_JSON_DEPTH = 64;

/** The parsed value, or why the text is refused (too deep, or not JSON). */
export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): { value: unknown } | { problem: string } {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return { problem: `nests arrays and objects more than ${maxDepth} levels deep` };
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { problem: `is not valid JSON: ${(error as Error).message}` };
  }
}
