// The device a bench program measures on, replaced when lost: a failing kernel that takes the
// device down must not end the run, only its own row.
import { requestNodeDevice, type NodeDeviceOptions, type NodeGPU } from '../runtime/index';

export interface BenchDevice {
  /** the current device: a fresh one if the last was lost */
  current(): Promise<NodeGPU>;
  destroy(): Promise<void>;
}

export async function benchDevice(options: NodeDeviceOptions = {}): Promise<BenchDevice> {
  let gpu = await requestNodeDevice(options);
  let lost = false;
  const watch = (g: NodeGPU) => {
    g.device.lost.then((info) => {
      if (info.reason !== 'destroyed') lost = true;
    });
    g.device.onuncapturederror = (e) => console.error(`uncaptured WebGPU error: ${e.error.message}`);
  };
  watch(gpu);
  return {
    async current() {
      if (lost) {
        console.error('device lost; requesting a new one');
        await gpu.destroy().catch(() => undefined);
        gpu = await requestNodeDevice(options);
        lost = false;
        watch(gpu);
      }
      return gpu;
    },
    destroy: () => gpu.destroy(),
  };
}
