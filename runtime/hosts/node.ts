// Gets a GPUDevice in Node from the `webgpu` package (Dawn): picks a backend, requests the
// adapter's real compute limits and the optional features plans can use, and keeps Dawn's
// instance objects alive for as long as the device is in use (see HostContext below).
// MNRT_TRACE=trace.json makes every session on the device trace its runs into that file.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { PlanError } from '../errors';
import { attachTraceSink, toChromeTrace, type TraceRecord, type TraceSink } from '../trace';
import { requestedDeviceDescriptor } from './limits';

export type NodeBackend = 'auto' | 'vulkan' | 'opengl' | 'metal' | 'd3d12';
const BACKENDS: NodeBackend[] = ['auto', 'vulkan', 'opengl', 'metal', 'd3d12'];

export interface NodeDeviceOptions {
  /** default: env MNRT_BACKEND, else 'auto' (the platform's native API, then OpenGL compatibility) */
  backend?: NodeBackend;
  powerPreference?: GPUPowerPreference;
  /**
   * default: env MNRT_TRACE. A Chrome/Perfetto trace file: every session loaded on this device
   * traces every run (unless loaded with `trace: false`), and when a session is destroyed the
   * records it still holds (not taken with takeTrace()) are added to the file, which is
   * rewritten with all records of the process so far. Needs 'timestamp-query'.
   */
  traceFile?: string;
  /**
   * default: env MNRT_ALLOW_UNSAFE_APIS=1. Dawn's `allow_unsafe_apis`: adapters then offer
   * experimental features, among them 'chromium-experimental-subgroup-matrix' (the tensor
   * cores int8 matmul variants use). Off by default: these APIs are not yet in WebGPU.
   */
  allowUnsafeApis?: boolean;
}

export interface NodeGPU {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** the backend that gave the adapter */
  backend: Exclude<NodeBackend, 'auto'>;
  /** Destroys the device, then lets Dawn's instance go once the device reports it is lost. */
  destroy(): Promise<void>;
}

type WebGPUModule = typeof import('webgpu');
let webgpuModule: Promise<WebGPUModule> | undefined;

// Loaded on first use, so importing the runtime (e.g. only to read a bundle) never loads the native addon.
function loadWebGPU(): Promise<WebGPUModule> {
  webgpuModule ??= import('webgpu').then((module) => {
    // GPUBufferUsage, GPUMapMode, ... as in a browser, for code that uses the global names.
    Object.assign(globalThis, module.globals);
    return module;
  });
  return webgpuModule;
}

/**
 * Why this exists: dawn.node frees its Dawn instance when V8 garbage-collects the object
 * `create()` returned, even while the device made from it is alive and the event pump still
 * uses the instance; the process then dies in ProcessEvents (std::system_error, futex errors,
 * segfaults). So every `create()` result (a failed attempt's too) and the device live in one
 * context held by the module-level `liveHosts` set until destroy() removes it there.
 */
interface HostContext {
  instances: GPU[];
  device?: GPUDevice;
}
const liveHosts = new Set<HostContext>();

function nativeBackend(): 'vulkan' | 'metal' | 'd3d12' {
  if (process.platform === 'darwin') return 'metal';
  if (process.platform === 'win32') return 'd3d12';
  return 'vulkan';
}

export async function requestNodeDevice(options: NodeDeviceOptions = {}): Promise<NodeGPU> {
  const requested = options.backend ?? (process.env.MNRT_BACKEND as NodeBackend | undefined) ?? 'auto';
  if (!BACKENDS.includes(requested)) {
    throw new PlanError('no-device', `unknown WebGPU backend "${requested}" (from ${options.backend ? 'options' : 'MNRT_BACKEND'}); use one of ${BACKENDS.join(', ')}`);
  }
  const { create } = await loadWebGPU();
  const context: HostContext = { instances: [] };
  liveHosts.add(context);

  const tryBackend = async (backend: Exclude<NodeBackend, 'auto'>): Promise<GPUAdapter | null> => {
    // OpenGL on a machine without a display needs EGL's surfaceless platform.
    if (backend === 'opengl') process.env.EGL_PLATFORM ??= 'surfaceless';
    // Dawn rounds timestamps down to 65.536 µs unless told not to (a browser's defence against
    // timing attacks, meaningless here), which would make per-dispatch times useless.
    const toggles = [`backend=${backend}`, 'disable-dawn-features=timestamp_quantization'];
    if (options.allowUnsafeApis ?? process.env.MNRT_ALLOW_UNSAFE_APIS === '1') toggles.push('enable-dawn-features=allow_unsafe_apis');
    const instance = create(toggles);
    context.instances.push(instance);
    const adapterOptions: GPURequestAdapterOptions = { powerPreference: options.powerPreference };
    // Dawn's OpenGL backend only offers WebGPU compatibility mode.
    if (backend === 'opengl') adapterOptions.featureLevel = 'compatibility';
    return instance.requestAdapter(adapterOptions).catch(() => null);
  };

  const attempts: Exclude<NodeBackend, 'auto'>[] = requested === 'auto' ? [nativeBackend(), 'opengl'] : [requested];
  const traceFile = options.traceFile ?? (process.env.MNRT_TRACE || undefined);
  try {
    for (const backend of attempts) {
      const adapter = await tryBackend(backend);
      if (!adapter) continue;
      const device = await adapter.requestDevice(requestedDeviceDescriptor(adapter, 'mnrt (node)'));
      context.device = device;
      if (traceFile) {
        if (!device.features.has('timestamp-query')) {
          throw new PlanError(
            'missing-feature',
            `${options.traceFile ? 'traceFile' : 'MNRT_TRACE'}=${traceFile} asks for a trace, which needs the WebGPU feature "timestamp-query"; ` +
              `the ${backend} backend's adapter (${adapter.info?.description || adapter.info?.vendor || 'unknown'}) does not offer it ` +
              `(Dawn's Vulkan, Metal and D3D12 backends do, its OpenGL backend does not)`,
          );
        }
        attachTraceSink(device, traceFileSink(traceFile));
      }
      return {
        device,
        adapter,
        backend,
        destroy: () => releaseHost(context),
      };
    }
  } catch (error) {
    await releaseHost(context);
    if (error instanceof PlanError) throw error;
    throw new PlanError('no-device', `could not create a WebGPU device: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  await releaseHost(context);
  throw new PlanError(
    'no-device',
    `no WebGPU adapter found (tried ${attempts.join(', ')}); on Linux without a GPU install Mesa (llvmpipe) and use backend 'opengl' ` +
      `(MNRT_BACKEND=opengl)`,
  );
}

async function releaseHost(context: HostContext): Promise<void> {
  if (!liveHosts.has(context)) return;
  const { device } = context;
  if (device) {
    device.destroy();
    // Wait until Dawn has processed the loss, so no pending event still needs the instance;
    // bounded, in case a backend never resolves `lost`.
    await Promise.race([device.lost, new Promise((resolve) => setTimeout(resolve, 1000))]);
  }
  context.device = undefined;
  context.instances.length = 0;
  liveHosts.delete(context);
}

const traceFiles = new Map<string, TraceSink>();

/**
 * The sink of one trace file, shared by every device of the process that names it: it keeps
 * all records it was given and rewrites the whole file on each add (a JSON document cannot be
 * appended to), so the file is complete after every session's destroy().
 */
export function traceFileSink(file: string): TraceSink {
  const path = resolve(file);
  let sink = traceFiles.get(path);
  if (!sink) {
    const records: TraceRecord[] = [];
    sink = {
      add(more) {
        for (const record of more) records.push(record);
        try {
          writeFileSync(path, JSON.stringify(toChromeTrace(records)));
        } catch (error) {
          // called from a session's destroy(), which must not throw for a file
          process.emitWarning(`could not write the trace file ${path}: ${(error as Error).message}`, 'MNRT_TRACE');
        }
      },
    };
    traceFiles.set(path, sink);
  }
  return sink;
}
