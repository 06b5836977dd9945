// Validation: every generated module is parsed and validated by naga (naga-wasm) and
// translated to SPIR-V, MSL and HLSL, so a plan is checked for every native backend at
// build time. A refusal becomes a CompileError carrying naga's formatted report.
import { nagaVersion, NagaError, parseWgsl, validate, writeHlsl, writeMsl, writeSpirv } from 'naga-wasm';
import { CompileError } from '../ir/errors';
import type { LoweredKernel } from '../lower/kernel';

export interface Translations {
  spirv: Uint8Array;
  msl: string;
  hlsl: string;
}

export interface ValidatedKernel {
  kernel: LoweredKernel;
  translations: Translations;
  /** the same for each of kernel.variants, in order; undefined for those Dawn checks instead */
  variants: (Translations | undefined)[];
}

export const NAGA_VERSION: string = nagaVersion;

/** `enable` directives Dawn needs but naga 30 refuses; they are checked by Dawn instead. */
const NAGA_UNSUPPORTED_ENABLES = /^\s*enable\s+(subgroups|chromium_experimental_subgroup_matrix)\s*;\s*$/gm;

/** Validates the kernel and every variant of it; the first refusal is the error. */
export function validateKernel(kernel: LoweredKernel, origin: { op: string; node: string }): ValidatedKernel {
  const translations = validateSource(kernel.wgsl, kernel.name, origin);
  const variants = (kernel.variants ?? []).map((v) => (v.validatedBy === 'dawn' ? undefined : validateSource(v.wgsl, `${kernel.name} (variant ${v.tag})`, origin)));
  return { kernel, translations, variants };
}

function validateSource(wgsl: string, name: string, origin: { op: string; node: string }): Translations {
  const source = wgsl.replace(NAGA_UNSUPPORTED_ENABLES, '');
  let stage = 'parse';
  try {
    const module = parseWgsl(source);
    try {
      stage = 'validate';
      const info = validate(module);
      try {
        stage = 'translate';
        const spirv = writeSpirv(module, info);
        return {
          spirv: new Uint8Array(spirv.buffer, spirv.byteOffset, spirv.byteLength),
          msl: writeMsl(module, info),
          hlsl: writeHlsl(module, info),
        };
      } finally {
        info.free();
      }
    } finally {
      module.free();
    }
  } catch (e) {
    const file = name.replace(/ \(variant (.*)\)$/, '.$1');
    const report = e instanceof NagaError ? e.formatted.replaceAll('wgsl:', `${file}.wgsl:`) : String(e);
    throw new CompileError(
      'validation',
      `naga refused kernel ${name} (${stage}), generated for ${origin.op} node '${origin.node}'`,
      undefined,
      origin.op,
      report,
    );
  }
}
