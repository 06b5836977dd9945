// Structural check of a parsed manifest, done before the runtime trusts any of it: types of
// the fields it reads, every section/buffer/kernel reference in range, every section inside
// the data area, every arena slot aligned and inside its arena, and no dispatch binding a
// GPUBuffer it writes twice, no two sections overlapping (so hashing reads each byte once),
// no buffer or arena larger than the plan's own requiredLimits; each target's plan (the top
// level and every one of otherTargets) checked alike. Names are looked up as own properties
// only, so `constructor` or `__proto__` in a file finds nothing inherited. Unknown extra
// fields are ignored so that optional additions stay readable.
import { DTYPE_BYTES, DTYPES, dtypeByteLength, isPackedDType, MNPLAN_SECTION_ALIGNMENT, PACKED_DTYPES, VARIANT_LIMITS, type DType, type ElementDType, type Manifest } from '../schemas/manifest';
import { PlanError } from './errors';

const BUFFER_ROLES = ['input', 'output', 'parameter', 'constant', 'state', 'intermediate'];
const OPTIMIZERS = ['sgd', 'adam', 'adamw'];
const ACCESS_MODES = ['read', 'read_write'];
const VALIDATORS = ['naga', 'dawn'];
const TRANSLATION_TARGETS = ['spirv', 'msl', 'hlsl'];
const HOST_DTYPES = ['f64', 'f16', 'bf16'];
const REQUIRED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
] as const;

/**
 * Binding numbers stay below 1000: WebGPU's guaranteed maxBindingsPerBindGroup, so every
 * device accepts them (and createBindGroupLayout never sees a number it cannot convert).
 */
const MAX_BINDING = 1000;

function fail(path: string, problem: string): never {
  throw new PlanError('bad-manifest', `invalid manifest: ${path} ${problem}`);
}

type Obj = Record<string, unknown>;

function object(value: unknown, path: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'must be an object');
  return value as Obj;
}
function array(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail(path, 'must be an array');
  return value;
}
function string(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, 'must be a string');
  return value;
}
function count(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(path, 'must be a non-negative integer');
  return value;
}
function oneOf(value: unknown, allowed: string[], path: string): string {
  if (typeof value !== 'string' || !allowed.includes(value)) fail(path, `must be one of ${allowed.join(', ')}`);
  return value;
}
function triple(value: unknown, path: string, min: number): void {
  const items = array(value, path);
  if (items.length !== 3) fail(path, 'must have 3 entries');
  items.forEach((v, i) => {
    if (count(v, `${path}[${i}]`) < min) fail(`${path}[${i}]`, `must be at least ${min}`);
  });
}
function finite(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(path, 'must be a finite number');
  return value;
}
/** A GPUBuffer's size: byteLength rounded up to 4, at least 4 (as the session creates it). */
const paddedSize = (byteLength: number) => Math.max(4, Math.ceil(byteLength / 4) * 4);
function shape(value: unknown, path: string): number {
  return array(value, path).reduce<number>((n, d, i) => n * count(d, `${path}[${i}]`), 1);
}

/**
 * Returns `value` typed as a Manifest once it is safe to use, else throws
 * PlanError('bad-manifest') naming the offending field by path.
 * `dataLength` is the size of the data area the sections must fit in.
 */
export function checkManifest(value: unknown, formatVersion: number, dataLength: number): Manifest {
  const m = object(value, 'manifest');
  if (m.format !== 'mnplan') fail('format', 'must be "mnplan"');
  if (m.formatVersion !== formatVersion) fail('formatVersion', `is ${JSON.stringify(m.formatVersion)} but the header says ${formatVersion}`);
  const generator = object(m.generator, 'generator');
  for (const field of ['name', 'version', 'naga']) string(generator[field], `generator.${field}`);
  const model = object(m.model, 'model');
  string(model.name, 'model.name');
  if (model.source !== undefined) string(model.source, 'model.source');

  const sectionLength = new Map<string, number>();
  const sectionRange = new Map<string, { offset: number; end: number }>();
  const ranges: { offset: number; end: number; index: number }[] = [];
  array(m.sections, 'sections').forEach((raw, i) => {
    const path = `sections[${i}]`;
    const s = object(raw, path);
    const name = string(s.name, `${path}.name`);
    const offset = count(s.offset, `${path}.offset`);
    const length = count(s.length, `${path}.length`);
    if (sectionLength.has(name)) fail(`${path}.name`, `"${name}" is listed twice`);
    if (offset % MNPLAN_SECTION_ALIGNMENT !== 0) fail(`${path}.offset`, `(${offset}) is not a multiple of ${MNPLAN_SECTION_ALIGNMENT}`);
    if (offset + length > dataLength) {
      fail(path, `("${name}", bytes ${offset}..${offset + length}) lies outside the ${dataLength}-byte data area`);
    }
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) fail(`${path}.sha256`, 'must be 64 lowercase hex digits');
    sectionLength.set(name, length);
    sectionRange.set(name, { offset, end: offset + length });
    if (length > 0) ranges.push({ offset, end: offset + length, index: i });
  });
  // Disjoint sections: the reader hashes each byte of the file at most once, so a small file
  // cannot make it hash (and copy) gigabytes by listing one range many times.
  ranges.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < ranges.length; i++) {
    const [before, after] = [ranges[i - 1], ranges[i]];
    if (after.offset < before.end) fail(`sections[${after.index}]`, `(bytes ${after.offset}..${after.end}) overlaps sections[${before.index}] (bytes ${before.offset}..${before.end})`);
  }
  const section = (name: unknown, path: string): number => {
    const length = sectionLength.get(string(name, path));
    if (length === undefined) fail(path, `names section "${String(name)}", which the manifest does not list`);
    return length;
  };

  const wgslSections = new Set<string>();
  const translationSections = new Set<string>();
  const kernels = array(m.kernels, 'kernels').map((raw, i) => {
    const path = `kernels[${i}]`;
    const k = object(raw, path);
    string(k.name, `${path}.name`);
    array(k.ops, `${path}.ops`).forEach((op, j) => string(op, `${path}.ops[${j}]`));
    string(k.entryPoint, `${path}.entryPoint`);
    triple(k.workgroupSize, `${path}.workgroupSize`, 1);
    const bindingNumbers = new Set<number>();
    const access = array(k.bindings, `${path}.bindings`).map((rawBinding, j) => {
      const b = object(rawBinding, `${path}.bindings[${j}]`);
      const n = count(b.binding, `${path}.bindings[${j}].binding`);
      if (n >= MAX_BINDING) fail(`${path}.bindings[${j}].binding`, `(${n}) must be below ${MAX_BINDING}, the bindings per group every WebGPU device offers`);
      if (bindingNumbers.has(n)) fail(`${path}.bindings[${j}].binding`, `${n} appears twice`);
      bindingNumbers.add(n);
      return oneOf(b.access, ACCESS_MODES, `${path}.bindings[${j}].access`);
    });
    const variants = array(k.variants, `${path}.variants`);
    if (variants.length === 0) fail(`${path}.variants`, 'must not be empty');
    variants.forEach((rawVariant, j) => {
      const vpath = `${path}.variants[${j}]`;
      const v = object(rawVariant, vpath);
      array(v.features, `${vpath}.features`).forEach((f, n) => string(f, `${vpath}.features[${n}]`));
      section(v.wgsl, `${vpath}.wgsl`);
      wgslSections.add(v.wgsl as string);
      for (const [target, name] of Object.entries(object(v.translations, `${vpath}.translations`))) {
        oneOf(target, TRANSLATION_TARGETS, `${vpath}.translations key`);
        section(name, `${vpath}.translations.${target}`);
        translationSections.add(name as string);
      }
      oneOf(v.validatedBy, VALIDATORS, `${vpath}.validatedBy`);
      if (v.requiredLimits !== undefined) {
        for (const [limit, value] of Object.entries(object(v.requiredLimits, `${vpath}.requiredLimits`))) {
          oneOf(limit, VARIANT_LIMITS as string[], `${vpath}.requiredLimits key`);
          count(value, `${vpath}.requiredLimits.${limit}`);
        }
      }
      if (v.workgroupSize !== undefined) triple(v.workgroupSize, `${vpath}.workgroupSize`, 1);
      if (v.deviceConstants !== undefined) array(v.deviceConstants, `${vpath}.deviceConstants`).forEach((c, n) => string(c, `${vpath}.deviceConstants[${n}]`));
    });
    return access;
  });


  if (m.translationsOffset !== undefined) checkTranslationsOffset(count(m.translationsOffset, 'translationsOffset'), sectionRange, wgslSections, translationSections);
  if (m.optimization !== undefined) checkOptimization(m.optimization);
  checkTargetPlan(m, '', section, kernels);
  const names = new Set([checkTargetDesc(m.target, 'target')]);
  if (m.otherTargets !== undefined) {
    array(m.otherTargets, 'otherTargets').forEach((raw, i) => {
      const path = `otherTargets[${i}]`;
      const t = object(raw, path);
      const name = checkTargetDesc(t, path);
      if (names.has(name)) fail(`${path}.name`, `"${name}" is the name of another target`);
      names.add(name);
      checkTargetPlan(t, `${path}.`, section, kernels);
    });
  }
  return m as unknown as Manifest;
}

/**
 * `translationsOffset` splits the data area in two: before it every section but the naga
 * translations, from it on only translations (none of them also a kernel's WGSL), so a reader
 * given the file up to there has everything it runs (readBundle's partial read).
 */
function checkTranslationsOffset(
  at: number,
  ranges: Map<string, { offset: number; end: number }>,
  wgsl: Set<string>,
  translations: Set<string>,
): void {
  for (const [name, range] of ranges) {
    if (translations.has(name)) {
      if (wgsl.has(name)) fail('translationsOffset', `is given, but section "${name}" is both a kernel's WGSL and a translation`);
      if (range.offset < at && range.end > range.offset) fail('translationsOffset', `(${at}) lies after the start of translation section "${name}" (byte ${range.offset})`);
    } else if (range.end > at) {
      fail('translationsOffset', `(${at}) lies before the end of section "${name}" (byte ${range.end}), which is not a translation`);
    }
  }
}

/** A target's description: its name, summary and match (lists of lowercase strings). */
function checkTargetDesc(value: unknown, path: string): string {
  const t = object(value, path);
  const name = string(t.name, `${path}.name`);
  string(t.summary, `${path}.summary`);
  const match = object(t.match, `${path}.match`);
  for (const key of ['vendors', 'architectures', 'devices']) {
    if (match[key] !== undefined) array(match[key], `${path}.match.${key}`).forEach((v, i) => string(v, `${path}.match.${key}[${i}]`));
  }
  return name;
}

/**
 * One target's plan (the manifest's top level, `at` = '', or otherTargets[i]): its limits,
 * buffers and arenas, entry points (dispatches index the shared kernels, whose bindings'
 * access `kernels` gives) and training description.
 */
function checkTargetPlan(m: Obj, at: string, section: (name: unknown, path: string) => number, kernels: string[][]): void {
  const limits = object(m.requiredLimits, `${at}requiredLimits`);
  for (const name of REQUIRED_LIMITS) count(limits[name], `${at}requiredLimits.${name}`);
  // other limits are compared with the device's: each must be a count too
  for (const [name, value] of Object.entries(limits)) count(value, `${at}requiredLimits.${name}`);
  const maxBinding = limits.maxStorageBufferBindingSize as number;
  const maxBuffer = limits.maxBufferSize as number | undefined;
  const arenas = m.arenas === undefined ? undefined : checkArenas(object(m.arenas, `${at}arenas`), at);
  // The plan's own limits bound every buffer it creates, so the device's limits alone (which
  // may be large) never let a small file declare gigabytes.
  if (arenas) {
    if (maxBuffer === undefined) fail(`${at}requiredLimits.maxBufferSize`, 'must be given when the plan has arenas');
    arenas.byteLengths.forEach((length, i) => {
      if (length > maxBuffer) fail(`${at}arenas.byteLengths[${i}]`, `(${length}) exceeds requiredLimits.maxBufferSize (${maxBuffer})`);
    });
  }
  const bufferBytes = new Map<number, number>();
  /** buffer id → the arena holding it; other buffers are GPUBuffers of their own */
  const arenaOf = new Map<number, number>();
  const gpuBuffer = (id: number) => (arenaOf.has(id) ? `arena ${arenaOf.get(id)}` : `buffer ${id}`);
  array(m.buffers, `${at}buffers`).forEach((raw, i) => {
    const path = `${at}buffers[${i}]`;
    const b = object(raw, path);
    const id = count(b.id, `${path}.id`);
    if (bufferBytes.has(id)) fail(`${path}.id`, `${id} is used by two buffers`);
    string(b.name, `${path}.name`);
    oneOf(b.role, BUFFER_ROLES, `${path}.role`);
    const byteLength = count(b.byteLength, `${path}.byteLength`);
    if (byteLength > maxBinding) fail(`${path}.byteLength`, `(${byteLength}) exceeds requiredLimits.maxStorageBufferBindingSize (${maxBinding})`);
    if (b.arena === undefined && maxBuffer !== undefined && paddedSize(byteLength) > maxBuffer) {
      fail(`${path}.byteLength`, `(${byteLength}, ${paddedSize(byteLength)} as a GPUBuffer) exceeds requiredLimits.maxBufferSize (${maxBuffer})`);
    }
    const dtype = oneOf(b.dtype, [...DTYPES], `${path}.dtype`) as DType;
    const elements = shape(b.shape, `${path}.shape`);
    if (isPackedDType(dtype)) {
      // a kernel reads a packed buffer's blocks by the shape: they must all be there
      const { elements: perBlock } = PACKED_DTYPES[dtype];
      const dims = b.shape as number[];
      if (dims.length === 0 || dims[dims.length - 1] % perBlock !== 0) fail(`${path}.shape`, `must end in a multiple of ${perBlock}, the ${dtype} block`);
      if (byteLength < dtypeByteLength(dtype, elements)) fail(`${path}.byteLength`, `(${byteLength}) is less than the ${dtypeByteLength(dtype, elements)} bytes of ${elements} ${dtype} values`);
    }
    if (b.init !== undefined) {
      const init = object(b.init, `${path}.init`);
      const length = section(init.section, `${path}.init.section`);
      const start = count(init.offset, `${path}.init.offset`);
      const size = count(init.length, `${path}.init.length`);
      if (start + size > length) fail(`${path}.init`, `(bytes ${start}..${start + size}) lies outside section "${String(init.section)}" (${length} bytes)`);
      if (size > byteLength) fail(`${path}.init.length`, `(${size}) exceeds the buffer's byteLength (${byteLength})`);
    }
    if (b.arena !== undefined) {
      const place = object(b.arena, `${path}.arena`);
      if (!arenas) fail(`${path}.arena`, 'places the buffer in an arena but the manifest has no arenas');
      if (b.role !== 'intermediate') fail(`${path}.arena`, `places a buffer of role "${String(b.role)}" in an arena; only intermediates may live there`);
      if (b.init !== undefined) fail(`${path}.arena`, 'places a buffer with initial contents in an arena');
      const index = count(place.index, `${path}.arena.index`);
      const offset = count(place.offset, `${path}.arena.offset`);
      if (index >= arenas.byteLengths.length) fail(`${path}.arena.index`, `(${index}) is out of range: there are ${arenas.byteLengths.length} arenas`);
      if (offset % arenas.alignment !== 0) fail(`${path}.arena.offset`, `(${offset}) is not a multiple of the arena alignment ${arenas.alignment}`);
      const end = offset + Math.max(4, Math.ceil(byteLength / 4) * 4);
      if (end > arenas.byteLengths[index]) fail(`${path}.arena`, `(bytes ${offset}..${end}) lies outside arena ${index} (${arenas.byteLengths[index]} bytes)`);
      arenaOf.set(id, index);
    }
    bufferBytes.set(id, byteLength);
  });
  const buffer = (id: unknown, path: string): number => {
    const bytes = bufferBytes.get(count(id, path));
    if (bytes === undefined) fail(path, `names buffer ${String(id)}, which the manifest does not list`);
    return bytes;
  };

  for (const [entryName, rawEntry] of Object.entries(object(m.entryPoints, `${at}entryPoints`))) {
    const path = `${at}entryPoints.${entryName}`;
    const entry = object(rawEntry, path);
    for (const side of ['inputs', 'outputs'] as const) {
      const names = new Set<string>();
      array(entry[side], `${path}.${side}`).forEach((raw, i) => {
        const tpath = `${path}.${side}[${i}]`;
        const t = object(raw, tpath);
        const name = string(t.name, `${tpath}.name`);
        if (names.has(name)) fail(`${tpath}.name`, `"${name}" appears twice`);
        names.add(name);
        const bytes = buffer(t.buffer, `${tpath}.buffer`);
        // written before the first dispatch or read after the last: no arena slot lasts that long
        if (arenaOf.has(t.buffer as number)) fail(`${tpath}.buffer`, `(${String(t.buffer)}) lives in an arena; entry ${side} need buffers of their own`);
        const dtype = oneOf(t.dtype, Object.keys(DTYPE_BYTES), `${tpath}.dtype`) as ElementDType;
        const needed = shape(t.shape, `${tpath}.shape`) * DTYPE_BYTES[dtype];
        if (needed > bytes) fail(tpath, `("${name}") needs ${needed} bytes but buffer ${String(t.buffer)} has ${bytes}`);
        if (t.range !== undefined) checkRange(t.range, dtype, `${tpath}.range`);
        if (t.hostDtype !== undefined) {
          oneOf(t.hostDtype, HOST_DTYPES, `${tpath}.hostDtype`);
          if (dtype !== 'f32') fail(`${tpath}.hostDtype`, `is given for a ${dtype} binding; only f32 bindings exchange another float type`);
        }
      });
    }
    array(entry.dispatches, `${path}.dispatches`).forEach((raw, i) => {
      const dpath = `${path}.dispatches[${i}]`;
      const d = object(raw, dpath);
      const kernel = count(d.kernel, `${dpath}.kernel`);
      if (kernel >= kernels.length) fail(`${dpath}.kernel`, `(${kernel}) is out of range: there are ${kernels.length} kernels`);
      const access = kernels[kernel];
      const ids = array(d.buffers, `${dpath}.buffers`);
      if (ids.length !== access.length) fail(`${dpath}.buffers`, `has ${ids.length} entries but kernel ${kernel} has ${access.length} bindings`);
      // WebGPU refuses a GPUBuffer bound twice in one dispatch when either binding writes it
      // (writable and read-only usage may not mix in one dispatch, even at disjoint offsets),
      // so a written arena holds nothing else the dispatch binds.
      const written = new Set<string>();
      const bound = new Set<string>();
      ids.forEach((id, j) => {
        buffer(id, `${dpath}.buffers[${j}]`);
        const target = gpuBuffer(id as number);
        if (written.has(target) || (access[j] === 'read_write' && bound.has(target))) {
          fail(`${dpath}.buffers`, `binds ${target} twice with write access, which WebGPU forbids`);
        }
        bound.add(target);
        if (access[j] === 'read_write') written.add(target);
      });
      triple(d.workgroups, `${dpath}.workgroups`, 0);
      string(d.node, `${dpath}.node`);
    });
  }
  if (m.training !== undefined) checkTraining(object(m.training, `${at}training`), object(m.entryPoints, `${at}entryPoints`), buffer, at);
}

function checkArenas(a: Obj, at: string): { alignment: number; byteLengths: number[] } {
  const alignment = count(a.alignment, `${at}arenas.alignment`);
  // a power of two of at least 4: WebGPU's offset alignments are powers of two, bindings multiples of 4
  if (alignment < 4 || (alignment & (alignment - 1)) !== 0) fail(`${at}arenas.alignment`, `(${alignment}) must be a power of two of at least 4`);
  const byteLengths = array(a.byteLengths, `${at}arenas.byteLengths`).map((n, i) => {
    const length = count(n, `${at}arenas.byteLengths[${i}]`);
    if (length % 4 !== 0) fail(`${at}arenas.byteLengths[${i}]`, `(${length}) must be a multiple of 4`);
    return length;
  });
  return { alignment, byteLengths };
}

const INTEGER_LIMITS: Partial<Record<DType, [number, number]>> = { i8: [-128, 127], i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1] };

/** An input's index range: integers within its dtype, min <= max. */
function checkRange(raw: unknown, dtype: DType, path: string): void {
  const r = object(raw, path);
  const limits = INTEGER_LIMITS[dtype];
  if (!limits) fail(path, `is given for a ${dtype} tensor; only integer tensors have a range`);
  for (const key of ['min', 'max'] as const) {
    const v = r[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < limits[0] || v > limits[1]) fail(`${path}.${key}`, `must be an integer ${dtype} holds; got ${JSON.stringify(v)}`);
  }
  if ((r.min as number) > (r.max as number)) fail(path, `has min ${String(r.min)} above max ${String(r.max)}`);
}

function checkTraining(t: Obj, entryPoints: Obj, buffer: (id: unknown, path: string) => number, at: string): void {
  const entryName = string(t.entry, `${at}training.entry`);
  if (!Object.hasOwn(entryPoints, entryName)) fail(`${at}training.entry`, `names entry point "${entryName}", which the manifest does not list`);
  const entry = entryPoints[entryName] as { inputs: { name: string; shape: number[] }[]; outputs: { name: string }[] };
  const loss = string(t.loss, `${at}training.loss`);
  if (!entry.outputs.some((o) => o.name === loss)) fail(`${at}training.loss`, `"${loss}" is not an output of entry "${entryName}"`);
  if (t.check !== undefined) {
    const check = string(t.check, `${at}training.check`);
    if (!entry.outputs.some((o) => o.name === check)) fail(`${at}training.check`, `"${check}" is not an output of entry "${entryName}"`);
  }
  oneOf(t.optimizer, OPTIMIZERS, `${at}training.optimizer`);
  const hyper = object(t.hyper, `${at}training.hyper`);
  const input = string(hyper.input, `${at}training.hyper.input`);
  const fields = array(hyper.fields, `${at}training.hyper.fields`).map((f, i) => string(f, `${at}training.hyper.fields[${i}]`));
  const binding = entry.inputs.find((i) => i.name === input);
  if (!binding) fail(`${at}training.hyper.input`, `"${input}" is not an input of entry "${entryName}"`);
  if (binding.shape.reduce((n, d) => n * d, 1) !== fields.length) fail(`${at}training.hyper.fields`, `lists ${fields.length} fields but input "${input}" has shape [${binding.shape.join(', ')}]`);
  array(hyper.settable, `${at}training.hyper.settable`).forEach((f, i) => oneOf(f, fields, `${at}training.hyper.settable[${i}]`));
  for (const [key, value] of Object.entries(object(hyper.defaults, `${at}training.hyper.defaults`))) {
    oneOf(key, fields, `${at}training.hyper.defaults key`);
    if (typeof value !== 'number' || !Number.isFinite(value)) fail(`${at}training.hyper.defaults.${key}`, 'must be a finite number');
  }
  array(t.parameters, `${at}training.parameters`).forEach((raw, i) => {
    const path = `${at}training.parameters[${i}]`;
    const p = object(raw, path);
    string(p.name, `${path}.name`);
    const bytes = buffer(p.buffer, `${path}.buffer`);
    if (typeof p.trainable !== 'boolean') fail(`${path}.trainable`, 'must be true or false');
    array(p.state, `${path}.state`).forEach((rawState, j) => {
      const s = object(rawState, `${path}.state[${j}]`);
      string(s.name, `${path}.state[${j}].name`);
      string(s.slot, `${path}.state[${j}].slot`);
      if (buffer(s.buffer, `${path}.state[${j}].buffer`) !== bytes) fail(`${path}.state[${j}].buffer`, 'differs in size from its parameter');
    });
  });
}

/** The optimizer's report (informational, but `mnc inspect` prints it, so its types are checked too). */
function checkOptimization(value: unknown): void {
  array(value, 'optimization').forEach((raw, i) => {
    const path = `optimization[${i}]`;
    const p = object(raw, path);
    string(p.phase, `${path}.phase`);
    string(p.stopReason, `${path}.stopReason`);
    for (const field of ['nodesBefore', 'nodesAfter', 'eNodes', 'eClasses', 'iterations', 'fusedKernels']) count(p[field], `${path}.${field}`);
    for (const field of ['costBefore', 'costAfter']) finite(p[field], `${path}.${field}`);
    for (const [rule, n] of Object.entries(object(p.rulesFired, `${path}.rulesFired`))) count(n, `${path}.rulesFired.${rule}`);
  });
}
