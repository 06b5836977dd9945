// The plan's compute pipelines, built in the background in the order runs first dispatch them.
// loadPlan does not wait for them: a run encodes the dispatches whose pipelines exist, submits
// them, and waits only for the pipeline its next dispatch needs (session.ts, encodeRun), so the
// first dispatches execute while later pipelines are still compiling.
import type { Manifest } from '../schemas/manifest';
import type { PlanBundle } from './bundle';
import { PlanError } from './errors';
import { STAGE_COMPUTE } from './gpu-flags';

/** A kernel's variant as the runtime builds it: its WGSL section and any override constants. */
export interface PipelineSource {
  wgsl: string;
  constants?: Record<string, number>;
}

export class PipelineBuilds {
  /** per kernel, its pipeline once built (undefined while it compiles, or when it failed) */
  readonly built: (GPUComputePipeline | undefined)[];
  /** per kernel, its bind group layout (explicit, so bind groups exist before the pipelines) */
  readonly layouts: GPUBindGroupLayout[];
  /**
   * Settles when every pipeline has been built; rejects with one PlanError('pipeline') naming
   * every kernel that failed, with the shader compiler's messages.
   */
  readonly ready: Promise<void>;
  /** whether every pipeline has been built (ready fulfilled) */
  done = false;
  private readonly pending: Promise<GPUComputePipeline>[] = [];

  /**
   * Asks for every pipeline at once (createComputePipelineAsync), in the order of first use:
   * the 'run' entry's dispatches (or the first entry's), then the other entries', then any unused.
   */
  constructor(bundle: PlanBundle, sources: readonly PipelineSource[], device: GPUDevice, label: string) {
    const { kernels } = bundle.manifest;
    const modules = new Map<string, GPUShaderModule>();
    const moduleFor = (section: string) => {
      let module = modules.get(section);
      if (!module) {
        module = device.createShaderModule({ label: `${label}/${section}`, code: bundle.text(section) });
        modules.set(section, module);
      }
      return module;
    };
    this.layouts = kernels.map((kernel) =>
      device.createBindGroupLayout({
        label: `${label}/${kernel.name}`,
        entries: kernel.bindings.map((b) => ({
          binding: b.binding,
          visibility: STAGE_COMPUTE,
          buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
        })),
      }),
    );
    this.built = kernels.map(() => undefined);
    // a shader that does not compile is reported by its pipeline's failure (naming the kernel,
    // with the compiler's messages), not as a bare validation error of the load's scope
    device.pushErrorScope('validation');
    for (const k of firstUseOrder(bundle.manifest)) {
      const kernel = kernels[k];
      this.pending[k] = device
        .createComputePipelineAsync({
          label: `${label}/${kernel.name}`,
          layout: device.createPipelineLayout({ label: `${label}/${kernel.name}`, bindGroupLayouts: [this.layouts[k]] }),
          compute: { module: moduleFor(sources[k].wgsl), entryPoint: kernel.entryPoint, ...(sources[k].constants ? { constants: sources[k].constants } : {}) },
        })
        .then((pipeline) => (this.built[k] = pipeline));
    }
    device.popErrorScope().catch(() => null);
    // allSettled, so one failure can name every failing kernel
    this.ready = Promise.allSettled(this.pending).then(async (results) => {
      const failures: string[] = [];
      for (const [k, result] of results.entries()) {
        if (result.status === 'fulfilled') continue;
        const kernel = kernels[k];
        const info = await moduleFor(sources[k].wgsl).getCompilationInfo().catch(() => undefined);
        const messages = (info?.messages ?? []).map((m) => `  ${m.type} at ${m.lineNum}:${m.linePos}: ${m.message}`);
        const reason = (result.reason instanceof Error ? result.reason.message : String(result.reason)).trim();
        failures.push(`kernel "${kernel.name}" (WGSL section "${sources[k].wgsl}", entry point "${kernel.entryPoint}"): ${reason}${messages.length ? '\n' + messages.join('\n') : ''}`);
      }
      if (failures.length > 0) throw new PlanError('pipeline', `${failures.length} compute pipeline(s) failed to build:\n${failures.join('\n')}`);
      this.done = true;
    });
    // a session nobody runs must not leave an unhandled rejection; callers awaiting ready still see it
    this.ready.catch(() => undefined);
  }

  /** Kernel k's pipeline once built; a failed build rejects with `ready`'s error (every failing kernel named). */
  async waitFor(k: number): Promise<GPUComputePipeline> {
    const pipeline = await this.pending[k].catch(() => undefined);
    if (pipeline) return pipeline;
    await this.ready;
    throw new PlanError('pipeline', `the pipeline of kernel ${k} failed to build`); // not reached: ready rejected
  }
}

/** The plan's kernel indices in the order runs first dispatch them: the 'run' entry (else the first) first, then the other entries, then any unused. */
function firstUseOrder(manifest: Manifest): number[] {
  const names = Object.keys(manifest.entryPoints);
  const first = names.includes('run') ? 'run' : names[0];
  const order = new Set<number>();
  for (const name of [first, ...names.filter((n) => n !== first)]) for (const d of manifest.entryPoints[name]?.dispatches ?? []) order.add(d.kernel);
  manifest.kernels.forEach((_, k) => order.add(k));
  return [...order];
}
