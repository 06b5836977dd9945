// The runtime's Node entry: read and run .mnplan bundles, with a Dawn-backed device from the
// `webgpu` package. runtime/browser.ts is the same API for browsers.
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
export { matchWeights, tensorAs16Bit, tensorAsF32, type NamedSafetensors, type WeightsOptions, type WeightsReport } from './weights';
export { readWeightsFiles } from './hosts/weights-files';
export { ggufWeights, isGgufBytes } from './gguf-weights';
export { ggufTensorName, hfParameterName, unpermuteRopeRows } from './gguf-llama';
export { bytesSource, parseGguf, readGguf, readTensorBytes, tensorBytes, GgufType, type ByteSource, type GgufFile, type GgufTensorInfo, type GgufMetadataEntry, type GgufValue, type GgufArray } from './gguf';
export { dequantize, ggmlType, ggmlTypeById, SUPPORTED_TYPES, type GgmlType, type GgmlTypeName, type SupportedTypeName } from './ggml-types';
export { openFileSource, type FileSource } from './hosts/file-source';
export { requestNodeDevice, type NodeBackend, type NodeDeviceOptions, type NodeGPU } from './hosts/node';
export type { Manifest, TensorBinding } from '../schemas/manifest';
