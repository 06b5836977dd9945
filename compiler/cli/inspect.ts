// What `mnc inspect` prints about a plan: the model, its inputs and outputs, how a training
// plan trains, each kernel with the size of every stored shader target, the dispatch list of
// each entry point, the buffers with their roles and arena slots, and what the memory plan
// saves. Pure functions from a read bundle to text.
import type { PlanBundle } from '../../runtime/bundle';
import { targetManifest, targetsOf } from '../../runtime/targets';
import type { Manifest, OptimizationDesc, ShaderTarget, TargetMatch, TensorBinding, TrainingDesc } from '../../schemas/manifest';
import { peakLiveBytes, scheduleOf, slotBytes } from '../plan/memory';

const TARGETS: ShaderTarget[] = ['wgsl', 'spirv', 'msl', 'hlsl'];

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(2)} MiB`;
}

const tensor = (t: { dtype: string; shape: number[] }) => `${t.dtype}[${t.shape.join(', ')}]`;

/** Left-aligned columns; each row is an array of cells. */
function table(rows: string[][], indent = '  '): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ').trimEnd());
}

function bindings(title: string, list: TensorBinding[], manifest: Manifest): string[] {
  if (list.length === 0) return [`${title}: none`];
  return [`${title}:`, ...table(list.map((t) => [t.name, tensor(t), formatBytes(manifest.buffers[t.buffer]?.byteLength ?? 0), `buffer ${t.buffer}`]))];
}

/** Optimizer, loss, hyper-parameters and each parameter's state buffers of a training plan. */
function trainingSection(training: TrainingDesc, manifest: Manifest): string[] {
  const dispatches = manifest.entryPoints[training.entry]?.dispatches.length ?? 0;
  const { hyper } = training;
  const settable = hyper.settable.map((k) => `${k} ${hyper.defaults[k]}`).join(', ');
  const trainable = training.parameters.filter((p) => p.trainable).length;
  const frozen = training.parameters.length - trainable;
  const byId = new Map(manifest.buffers.map((b) => [b.id, b]));
  const rows = training.parameters.map((p) => {
    const buffer = byId.get(p.buffer);
    const state = p.state.map((s) => `${s.slot} (buffer ${s.buffer})`).join(', ') || '-';
    return [p.name, buffer ? tensor(buffer) : '?', `buffer ${p.buffer}`, p.trainable ? 'trainable' : 'frozen', state];
  });
  return [
    `training: ${training.optimizer}, minimising output '${training.loss}' of '${training.entry}' (${dispatches} dispatches per step)`,
    `  hyper-parameters (settable at run time): ${settable}`,
    `  hyper vector: input '${hyper.input}' = [${hyper.fields.join(', ')}], filled by the runtime each step`,
    `  parameters: ${trainable} trainable, ${frozen} frozen`,
    ...table(rows, '    '),
  ];
}

/**
 * One line on GPU memory: the intermediates' sum against the arenas they share and the
 * peak of bytes live at one step (the least any layout needs), then everything else.
 */
export function memoryLine(manifest: Manifest): string {
  const intermediates = manifest.buffers.filter((b) => b.role === 'intermediate');
  const sizes = new Map(intermediates.map((b) => [b.id, b.byteLength]));
  const sum = intermediates.reduce((n, b) => n + slotBytes(b.byteLength), 0);
  const persistent = manifest.buffers.filter((b) => b.role !== 'intermediate').reduce((n, b) => n + slotBytes(b.byteLength), 0);
  let peak: string;
  try {
    peak = `peak live ${formatBytes(peakLiveBytes(scheduleOf(manifest.entryPoints, manifest.kernels), sizes))}`;
  } catch {
    peak = 'peak live unknown: an intermediate is read before it is written'; // a plan mnc did not write
  }
  const arenas = manifest.arenas?.byteLengths ?? [];
  if (arenas.length === 0) {
    return `memory: intermediates ${formatBytes(sum)} in buffers of their own (${peak}), persistent buffers ${formatBytes(persistent)}`;
  }
  const total = arenas.reduce((n, l) => n + l, 0);
  const where = arenas.length === 1 ? `a ${formatBytes(total)} arena` : `${arenas.length} arenas, ${formatBytes(total)} in all`;
  const share = sum > 0 ? `; ${Math.round((100 * total) / sum)}% of the sum` : '';
  return `memory: intermediates ${formatBytes(sum)} in ${where} (${peak}${share}), persistent buffers ${formatBytes(persistent)}`;
}

/** Per optimizer phase: sizes, why the rules stopped, what fired and the estimated saving. */
function optimizationSection(phases: readonly OptimizationDesc[]): string[] {
  const lines = ['optimizer:'];
  for (const p of phases) {
    const fired = Object.entries(p.rulesFired)
      .sort((a, b) => b[1] - a[1])
      .map(([rule, n]) => `${rule} ×${n}`);
    const saving = p.costBefore > 0 ? `, estimated ${p.costBefore.toFixed(1)} → ${p.costAfter.toFixed(1)} µs` : '';
    const fusedKernels = p.fusedKernels > 0 ? `, ${p.fusedKernels} fused pointwise kernels` : '';
    lines.push(
      `  ${p.phase}: ${p.nodesBefore} → ${p.nodesAfter} nodes (e-graph ${p.eNodes} nodes, ${p.eClasses} classes, ${p.stopReason} after ${p.iterations} iterations)${saving}${fusedKernels}`,
      `    rules fired: ${fired.length > 0 ? fired.join(', ') : 'none'}`,
    );
  }
  return lines;
}

const matchText = (m: TargetMatch) =>
  m.vendors?.length
    ? `${m.vendors.join('/')} adapters${m.architectures?.length || m.devices?.length ? ` (architecture ${[...(m.architectures ?? []), ...(m.devices ?? []).map((d) => `or device *${d}*`)].join(', ')})` : ''}`
    : 'any adapter (fallback)';

/**
 * The plan's targets: what each is for, the adapters the runtime gives it, its dispatches,
 * kernels (and how many it shares with the others) and memory.
 */
function targetsSection(manifest: Manifest): string[] {
  const targets = targetsOf(manifest);
  const users = new Map<number, number>();
  const kernelsOf = targets.map((t) => new Set(Object.values(t.entryPoints).flatMap((e) => e.dispatches.map((d) => d.kernel))));
  for (const used of kernelsOf) for (const k of used) users.set(k, (users.get(k) ?? 0) + 1);
  const lines = [`targets (${targets.length}; the runtime takes the first made for the device, else the fallback):`];
  targets.forEach((t, i) => {
    const shared = [...kernelsOf[i]].filter((k) => users.get(k)! > 1).length;
    const dispatches = Object.entries(t.entryPoints).map(([name, e]) => `${e.dispatches.length} ${name}`).join(', ');
    const arenas = (t.arenas?.byteLengths ?? []).reduce((n, l) => n + l, 0);
    lines.push(
      `  ${t.name}: ${t.summary}`,
      `    for ${matchText(t.match)}; ${kernelsOf[i].size} kernels${targets.length > 1 ? ` (${shared} shared)` : ''}, dispatches ${dispatches}, arenas ${formatBytes(arenas)}`,
    );
  });
  return lines;
}

/**
 * The human-readable description of a plan: its targets, then the details (kernels,
 * dispatches, buffers) of target `target` (default: the first).
 */
export function describePlan(file: string, fileBytes: number, full: Manifest, target?: string): string {
  const targets = targetsOf(full);
  const index = target === undefined ? 0 : targets.findIndex((t) => t.name === target);
  if (index < 0) throw new Error(`the plan has no target '${target}' (it has: ${targets.map((t) => t.name).join(', ')})`);
  const manifest = targetManifest(full, index);
  const sectionLength = new Map(manifest.sections.map((s) => [s.name, s.length]));
  const lines: string[] = [];
  const source = manifest.model.source ? ` (from ${manifest.model.source})` : '';
  lines.push(`${file}: model '${manifest.model.name}'${source}, ${formatBytes(fileBytes)}`);
  const g = manifest.generator;
  lines.push(`generator: ${g.name} ${g.version}, naga ${g.naga}; mnplan format ${manifest.formatVersion}`);
  lines.push('', ...targetsSection(full));
  if (targets.length > 1) lines.push('', `details of target '${manifest.target.name}' (inspect --target NAME for another):`);

  const entries = Object.entries(manifest.entryPoints);
  for (const [name, entry] of entries) {
    const suffix = entries.length > 1 ? ` of '${name}'` : '';
    lines.push('', ...bindings(`inputs${suffix}`, entry.inputs, manifest), ...bindings(`outputs${suffix}`, entry.outputs, manifest));
  }

  if (manifest.training) lines.push('', ...trainingSection(manifest.training, manifest));
  if (manifest.optimization) lines.push('', ...optimizationSection(manifest.optimization));

  lines.push('', `kernels (${manifest.kernels.length}):`);
  const kernelRows = [['#', 'name', 'ops', 'workgroup', 'features', ...TARGETS, 'checked']];
  manifest.kernels.forEach((k, i) => {
    k.variants.forEach((v, j) => {
      const size = (section: string | undefined) => (section === undefined ? '-' : formatBytes(sectionLength.get(section) ?? 0));
      kernelRows.push([
        j === 0 ? String(i) : '',
        j === 0 ? k.name : '',
        j === 0 ? k.ops.join('+') : '',
        j === 0 ? k.workgroupSize.join('x') : '',
        v.features.length > 0 ? v.features.join(',') : '-',
        size(v.wgsl),
        size(v.translations.spirv),
        size(v.translations.msl),
        size(v.translations.hlsl),
        v.validatedBy,
      ]);
    });
  });
  lines.push(...table(kernelRows));

  for (const [name, entry] of entries) {
    lines.push('', `dispatches of '${name}' (${entry.dispatches.length}):`);
    lines.push(
      ...table([
        ['#', 'kernel', 'workgroups', 'buffers', 'node'],
        ...entry.dispatches.map((d, i) => [String(i), manifest.kernels[d.kernel]?.name ?? `#${d.kernel}`, d.workgroups.join('x'), d.buffers.join(','), d.node]),
      ]),
    );
  }

  const total = manifest.buffers.reduce((n, b) => n + b.byteLength, 0);
  lines.push('', `buffers (${manifest.buffers.length}, ${formatBytes(total)} in all):`);
  lines.push(
    ...table([
      ['id', 'role', 'name', 'type', 'bytes', 'init', 'arena'],
      ...manifest.buffers.map((b) => [
        String(b.id),
        b.role,
        b.name,
        tensor(b),
        formatBytes(b.byteLength),
        b.init ? `${b.init.section}+${b.init.offset}` : '-',
        b.arena ? `${b.arena.index}+${b.arena.offset}` : '-',
      ]),
    ]),
  );
  const byRole = new Map<string, number>();
  for (const b of manifest.buffers) byRole.set(b.role, (byRole.get(b.role) ?? 0) + b.byteLength);
  lines.push(`  total ${formatBytes(total)}: ${[...byRole].map(([role, n]) => `${role} ${formatBytes(n)}`).join(', ')}`);
  lines.push('', memoryLine(manifest));
  return lines.join('\n');
}

/** Every kernel variant's WGSL, each under a comment naming the kernel. */
export function kernelSources(bundle: PlanBundle): string {
  const parts: string[] = [];
  bundle.manifest.kernels.forEach((k, i) => {
    for (const v of k.variants) {
      const features = v.features.length > 0 ? ` [features: ${v.features.join(', ')}]` : '';
      parts.push(`// ===== kernel ${i}: ${k.name} (${k.ops.join('+')})${features} — section ${v.wgsl}\n${bundle.text(v.wgsl).trimEnd()}\n`);
    }
  });
  return parts.join('\n');
}
