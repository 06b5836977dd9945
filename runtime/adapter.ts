// What a session tells about the GPU it runs on: the adapter's identity, and whether it is a
// fallback (software) adapter such as SwiftShader or llvmpipe, so an app can say why it is slow.
import type { DeviceDescription } from './targets';

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /**
   * true for a software adapter (the CPU emulating a GPU): GPUAdapterInfo.isFallbackAdapter, or
   * an adapter naming SwiftShader, llvmpipe, lavapipe, softpipe or Microsoft's Basic Render Driver
   * (WARP), which some hosts report without the flag. Correct results, but far slower than a GPU.
   */
  fallback: boolean;
}

/** Software rasterizers by the names their adapters report (vendor, architecture, device, description). */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|basic render driver|\bwarp\b/i;

export function describeAdapter(info: DeviceDescription['info'] & { isFallbackAdapter?: boolean }): AdapterDescription {
  const [vendor, architecture, device, description] = [info.vendor, info.architecture, info.device, info.description].map((s) => s ?? '');
  const fallback = info.isFallbackAdapter === true || SOFTWARE_ADAPTER.test(`${vendor} ${architecture} ${device} ${description}`);
  return { vendor, architecture, device, description, fallback };
}
