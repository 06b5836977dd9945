// WebGPU's flag values, spelled out so the runtime needs no GPUBufferUsage, GPUShaderStage or
// GPUMapMode global (Node has none until the webgpu package's globals are installed).
export const BUFFER_MAP_READ = 0x1;
export const BUFFER_COPY_SRC = 0x4;
export const BUFFER_COPY_DST = 0x8;
export const BUFFER_STORAGE = 0x80;
export const BUFFER_QUERY_RESOLVE = 0x200;
export const STAGE_COMPUTE = 0x4;
export const MAP_MODE_READ = 0x1;
