// Validation: every generated module is parsed and validated by naga (naga-wasm) and
// translated to SPIR-V, MSL and HLSL, so a plan is checked for every native backend at
// build time. A refusal becomes a CompileError carrying naga's formatted report.
// validateKernels (kernels.ts) does this for a whole compile; this file holds one kernel's.
import { nagaVersion } from 'naga-wasm';
import { CompileError } from '../ir/errors';
import type { LoweredKernel } from '../lower/kernel';
import { nagaSource, translateWgsl, type NagaRefusal, type Translations } from './translate';

export type { Translations } from './translate';

export interface ValidatedKernel {
  kernel: LoweredKernel;
  translations: Translations;
  /** the same for each of kernel.variants, in order; undefined for those Dawn checks instead */
  variants: (Translations | undefined)[];
}

/** The graph node a kernel was generated for, named in its errors. */
export interface KernelOrigin {
  op: string;
  node: string;
}

export const NAGA_VERSION: string = nagaVersion;

/** Validates the kernel and every variant of it, in this thread; the first refusal is the error. */
export function validateKernel(kernel: LoweredKernel, origin: KernelOrigin): ValidatedKernel {
  const translations = validateSource(kernel.wgsl, kernel.name, origin);
  const variants = (kernel.variants ?? []).map((v) => (v.validatedBy === 'dawn' ? undefined : validateSource(v.wgsl, variantName(kernel, v.tag), origin)));
  return { kernel, translations, variants };
}

/** How errors name a variant: `kernel (variant tag)`, its report's file `kernel.tag.wgsl`. */
export function variantName(kernel: LoweredKernel, tag: string): string {
  return `${kernel.name} (variant ${tag})`;
}

function validateSource(wgsl: string, name: string, origin: KernelOrigin): Translations {
  const result = translateWgsl(nagaSource(wgsl));
  if ('refusal' in result) throw refusalError(result.refusal, name, origin);
  return result.translations;
}

/** naga's refusal of the module `name` (a kernel or variantName) as the CompileError the CLI prints. */
export function refusalError(refusal: NagaRefusal, name: string, origin: KernelOrigin): CompileError {
  const file = name.replace(/ \(variant (.*)\)$/, '.$1');
  const report = refusal.formatted !== undefined ? refusal.formatted.replaceAll('wgsl:', `${file}.wgsl:`) : refusal.thrown ?? '';
  return new CompileError(
    'validation',
    `naga refused kernel ${name} (${refusal.stage}), generated for ${origin.op} node '${origin.node}'`,
    undefined,
    origin.op,
    report,
  );
}
