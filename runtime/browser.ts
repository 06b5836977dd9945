// The runtime's browser entry (bundled into dist/mnrt.browser.mjs): read and run .mnplan
// bundles on a device from navigator.gpu. Same API as runtime/index.ts minus the Node host.
export { readBundle, type PlanBundle } from './bundle';
export { fetchPlan, type FetchPlanOptions } from './fetch-plan';
export { describeAdapter, type AdapterDescription } from './adapter';
export { PlanError, isPlanError, type PlanErrorKind } from './errors';
export { hostValues, loadPlan, type LoadOptions, type RunOptions, type Session, type TensorData, type WeightsInput } from './session';
export { DEFAULT_MEMORY_BUDGET } from './memory-budget';
export { loadTrainingPlan, type TrainingSession } from './training';
export { chooseTarget, targetManifest, targetsOf, type ChosenTarget, type DeviceDescription } from './targets';
export { toChromeTrace, kernelSummary, formatKernelSummary, type TraceRecord, type TraceEvent, type KernelTime } from './trace';
export { decodeSafetensors, encodeSafetensors, type SafeTensor, type SafetensorsFile } from './safetensors';
export type { NamedSafetensors, WeightsOptions, WeightsReport } from './weights';
export { requestBrowserDevice, type BrowserDeviceOptions, type BrowserGPU } from './hosts/browser';
export type { Manifest, TensorBinding } from '../schemas/manifest';
