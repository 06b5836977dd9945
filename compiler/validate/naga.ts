// Validation: every generated module is parsed and validated by naga (naga-wasm) and
// translated to SPIR-V, MSL and HLSL, so a plan is checked for every native backend at
// build time. A refusal becomes a CompileError carrying naga's formatted report.
import { nagaVersion, NagaError, parseWgsl, validate, writeHlsl, writeMsl, writeSpirv } from 'naga-wasm';
import { CompileError } from '../ir/errors';
import type { LoweredKernel } from '../lower/kernel';

export interface ValidatedKernel {
  kernel: LoweredKernel;
  translations: { spirv: Uint8Array; msl: string; hlsl: string };
}

export const NAGA_VERSION: string = nagaVersion;

/** `enable` directives Dawn needs but naga 30 refuses; they are checked by Dawn instead. */
const NAGA_UNSUPPORTED_ENABLES = /^\s*enable\s+(subgroups|chromium_experimental_subgroup_matrix)\s*;\s*$/gm;

export function validateKernel(kernel: LoweredKernel, origin: { op: string; node: string }): ValidatedKernel {
  const source = kernel.wgsl.replace(NAGA_UNSUPPORTED_ENABLES, '');
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
          kernel,
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
    const report = e instanceof NagaError ? e.formatted.replaceAll('wgsl:', `${kernel.name}.wgsl:`) : String(e);
    throw new CompileError(
      'validation',
      `naga refused kernel ${kernel.name} (${stage}), generated for ${origin.op} node '${origin.node}'`,
      undefined,
      origin.op,
      report,
    );
  }
}
