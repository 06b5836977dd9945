// One WGSL module through naga: parse, validate, write SPIR-V, MSL and HLSL. Pure and
// self-contained (it imports only naga-wasm), so the same function runs in the compiling
// thread and in the validation workers (naga-worker.ts); a refusal is a value that can
// cross a thread boundary, and naga.ts turns it into a CompileError naming the kernel.
import { NagaError, parseWgsl, validate, writeHlsl, writeMsl, writeSpirv } from 'naga-wasm';

export interface Translations {
  spirv: Uint8Array;
  msl: string;
  hlsl: string;
}

/** Where naga stopped and what it said: its formatted report, or the text of anything else thrown (a panic). */
export interface NagaRefusal {
  stage: 'parse' | 'validate' | 'translate';
  /** NagaError.formatted: the report with `wgsl:line:col` spans */
  formatted?: string;
  /** String(error) for anything that is not a NagaError */
  thrown?: string;
}

export type Translated = { translations: Translations } | { refusal: NagaRefusal };

/** `enable` directives Dawn needs but naga 30 refuses; they are checked by Dawn instead. */
const NAGA_UNSUPPORTED_ENABLES = /^\s*enable\s+(subgroups|chromium_experimental_subgroup_matrix)\s*;\s*$/gm;

/** The text naga checks: the kernel's WGSL without the directives it refuses. Sources equal here translate equally. */
export function nagaSource(wgsl: string): string {
  return wgsl.replace(NAGA_UNSUPPORTED_ENABLES, '');
}

/** Translates a module already passed through nagaSource. */
export function translateWgsl(source: string): Translated {
  let stage: NagaRefusal['stage'] = 'parse';
  try {
    const module = parseWgsl(source);
    try {
      stage = 'validate';
      const info = validate(module);
      try {
        stage = 'translate';
        const spirv = writeSpirv(module, info);
        return {
          translations: {
            spirv: new Uint8Array(spirv.buffer, spirv.byteOffset, spirv.byteLength),
            msl: writeMsl(module, info),
            hlsl: writeHlsl(module, info),
          },
        };
      } finally {
        info.free();
      }
    } finally {
      module.free();
    }
  } catch (e) {
    return { refusal: e instanceof NagaError ? { stage, formatted: e.formatted } : { stage, thrown: String(e) } };
  }
}
