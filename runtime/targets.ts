// Which of a plan's targets this device runs, chosen at load from the adapter's identity,
// limits and features, with no compiling: the first target made for the device's class,
// else the first fallback target (one for any device, such as `generic`), else the first
// target whose limits the device meets. Then that target's plan as the session reads it.
import type { KernelDesc, Manifest, TargetMatch, TargetPlan } from '../schemas/manifest';
import { PlanError } from './errors';

/**
 * What the choice reads of the device: GPUAdapterInfo's identity and the device's limits
 * (targets need no feature: their kernels' feature variants have portable twins).
 */
export interface DeviceDescription {
  info: { vendor?: string; architecture?: string; device?: string; description?: string };
  limits: Record<string, number | undefined>;
}

/** The target a session runs, and why it was chosen. */
export interface ChosenTarget {
  name: string;
  summary: string;
  /**
   * 'matched': made for this device's class; 'fallback': the plan's target for any device;
   * 'fits': none of those, the first the device can run; 'asked': named by the caller;
   * 'unfit': no target's limits fit the device (loading it then fails, naming the limit)
   */
  reason: 'matched' | 'fallback' | 'fits' | 'asked' | 'unfit';
}

/** The plan's targets, the top-level one first. */
export function targetsOf(manifest: Manifest): TargetPlan[] {
  const { target, requiredLimits, buffers, arenas, entryPoints, training } = manifest;
  const first: TargetPlan = { ...target, requiredLimits, buffers, entryPoints, ...(arenas ? { arenas } : {}), ...(training ? { training } : {}) };
  return [first, ...(manifest.otherTargets ?? [])];
}

const lower = (s: string | undefined) => (s ?? '').toLowerCase();

/** Whether a target's match names this device: its vendor, and its architecture or a device name fragment where the match gives any. */
export function matchesDevice(match: TargetMatch, info: DeviceDescription['info']): boolean {
  if (!match.vendors?.length) return false;
  if (!match.vendors.includes(lower(info.vendor))) return false;
  const { architectures = [], devices = [] } = match;
  if (architectures.length === 0 && devices.length === 0) return true;
  const name = `${lower(info.device)} ${lower(info.description)}`;
  return architectures.includes(lower(info.architecture)) || devices.some((d) => name.includes(d));
}

/** The limits of a target's plan the device falls short of. */
function shortfalls(plan: TargetPlan, device: DeviceDescription): string[] {
  const short: string[] = [];
  for (const [limit, value] of Object.entries(plan.requiredLimits)) {
    const offered = device.limits[limit];
    if (value !== undefined && offered !== undefined && offered < value) short.push(`${limit} ${value} (the device offers ${offered})`);
  }
  return short;
}

/** The index of the target to run (see the file header); `asked` names one instead. */
export function chooseTarget(manifest: Manifest, device: DeviceDescription, asked?: string): { index: number; chosen: ChosenTarget } {
  const targets = targetsOf(manifest);
  const pick = (index: number, reason: ChosenTarget['reason']) => ({ index, chosen: { name: targets[index].name, summary: targets[index].summary, reason } });
  if (asked !== undefined) {
    const index = targets.findIndex((t) => t.name === asked);
    if (index < 0) throw new PlanError('bad-input', `plan "${manifest.model.name}" has no target "${asked}" (it has: ${targets.map((t) => t.name).join(', ')})`);
    return pick(index, 'asked');
  }
  const runnable = targets.map((t) => shortfalls(t, device).length === 0);
  const matched = targets.findIndex((t, i) => runnable[i] && matchesDevice(t.match, device.info));
  if (matched >= 0) return pick(matched, 'matched');
  const fallback = targets.findIndex((t, i) => runnable[i] && !t.match.vendors?.length);
  if (fallback >= 0) return pick(fallback, 'fallback');
  const fits = runnable.indexOf(true);
  if (fits >= 0) return pick(fits, 'fits');
  // none fits: the one it would be, whose limits the load then reports
  const preferred = targets.findIndex((t) => matchesDevice(t.match, device.info));
  const anyDevice = targets.findIndex((t) => !t.match.vendors?.length);
  return pick(preferred >= 0 ? preferred : Math.max(anyDevice, 0), 'unfit');
}

/**
 * The manifest as a session of target `index` reads it: that target's plan at the top level,
 * no other target, and only the kernels its dispatches use (renumbered), so nothing of the
 * other targets is built.
 */
export function targetManifest(manifest: Manifest, index: number): Manifest {
  const plan = targetsOf(manifest)[index];
  const used = [...new Set(Object.values(plan.entryPoints).flatMap((e) => e.dispatches.map((d) => d.kernel)))].sort((a, b) => a - b);
  const renumber = new Map(used.map((k, i) => [k, i]));
  const kernels: KernelDesc[] = used.map((k) => manifest.kernels[k]);
  const entryPoints = Object.fromEntries(
    Object.entries(plan.entryPoints).map(([name, e]) => [name, { ...e, dispatches: e.dispatches.map((d) => ({ ...d, kernel: renumber.get(d.kernel)! })) }]),
  );
  const { otherTargets: _others, arenas: _arenas, training: _training, ...common } = manifest;
  return {
    ...common,
    target: { name: plan.name, summary: plan.summary, match: plan.match },
    requiredLimits: plan.requiredLimits,
    buffers: plan.buffers,
    ...(plan.arenas ? { arenas: plan.arenas } : {}),
    kernels,
    entryPoints,
    ...(plan.training ? { training: plan.training } : {}),
  };
}
