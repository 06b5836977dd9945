// Gets a GPUDevice in a browser from navigator.gpu, with the same limits and features policy
// as the Node host; a browser without WebGPU gets a PlanError that says so.
import { PlanError } from '../errors';
import { requestedDeviceDescriptor } from './limits';

export interface BrowserDeviceOptions {
  powerPreference?: GPUPowerPreference;
}

export interface BrowserGPU {
  device: GPUDevice;
  adapter: GPUAdapter;
  destroy(): void;
}

export async function requestBrowserDevice(options: BrowserDeviceOptions = {}): Promise<BrowserGPU> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) {
    throw new PlanError(
      'no-device',
      'WebGPU is not available here (navigator.gpu is undefined): use a browser with WebGPU enabled, on a secure (https or localhost) page',
    );
  }
  // Some devices (older GPUs, OpenGL ES) only offer compatibility mode; plans built for it still run.
  const adapter =
    (await gpu.requestAdapter({ powerPreference: options.powerPreference })) ??
    (await gpu.requestAdapter({ powerPreference: options.powerPreference, featureLevel: 'compatibility' }));
  if (!adapter) throw new PlanError('no-device', 'WebGPU is present but no GPU adapter is available (blocklisted GPU or disabled hardware acceleration?)');
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice(requestedDeviceDescriptor(adapter, 'mnrt (browser)'));
  } catch (error) {
    throw new PlanError('no-device', `could not create a WebGPU device: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  }
  return { device, adapter, destroy: () => device.destroy() };
}
