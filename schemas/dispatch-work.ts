// The bound on the work one dispatch may launch (schemas/mnplan-layout.md, "Work a dispatch
// may launch"): at most one workgroup per element of the largest buffer the dispatch binds.
// A WebGPU queue cannot be interrupted once it runs, so a reader refuses a plan whose grid
// asks for more before it submits anything; the compiler checks every plan it writes too.
import { DTYPE_BYTES, isPackedDType, PACKED_DTYPES, type BufferDesc, type EntryPoint, type KernelDesc, type Manifest } from './manifest';

/**
 * Elements a buffer holds: its bytes over its dtype's size (what it costs in memory, whatever
 * its shape says); a packed dtype's blocks hold `elements` values in `bytes`.
 */
function elements(buffer: BufferDesc): number {
  const dtype = buffer.dtype;
  const perByte = isPackedDType(dtype) ? PACKED_DTYPES[dtype].elements / PACKED_DTYPES[dtype].bytes : 1 / (DTYPE_BYTES[dtype] ?? 1);
  return Math.max(1, Math.ceil(buffer.byteLength * perByte));
}

/**
 * The first dispatch of any target's plan that launches more workgroups than the largest
 * buffer it binds has elements, described for an error message; undefined when all comply.
 * Expects a manifest whose references were checked (buffer ids and kernel indices exist).
 */
export function dispatchOverBound(manifest: Pick<Manifest, 'target' | 'buffers' | 'entryPoints' | 'kernels' | 'otherTargets'>): string | undefined {
  const plans: { name: string; buffers: BufferDesc[]; entryPoints: Record<string, EntryPoint> }[] = [
    { name: manifest.target.name, buffers: manifest.buffers, entryPoints: manifest.entryPoints },
    ...(manifest.otherTargets ?? []),
  ];
  for (const plan of plans) {
    const byId = new Map(plan.buffers.map((b) => [b.id, b]));
    for (const [entry, { dispatches }] of Object.entries(plan.entryPoints)) {
      for (const [i, d] of dispatches.entries()) {
        const kernel: KernelDesc | undefined = manifest.kernels[d.kernel];
        const bound = d.buffers.map((id) => byId.get(id)).filter((b): b is BufferDesc => b !== undefined);
        const largest = bound.reduce<BufferDesc | undefined>((big, b) => (!big || elements(b) > elements(big) ? b : big), undefined);
        const limit = largest ? elements(largest) : 1;
        const workgroups = d.workgroups.reduce((n, w) => n * w, 1);
        if (workgroups <= limit) continue;
        const [x, y, z] = kernel?.workgroupSize ?? [1, 1, 1];
        return (
          `dispatch ${i} ("${d.node}") of entry "${entry}" (target "${plan.name}") launches ${d.workgroups.join('x')} = ${workgroups} workgroups ` +
          `of kernel "${kernel?.name}" (${x * y * z} invocations each), more than the ${limit} elements of the largest buffer it binds` +
          (largest ? ` ("${largest.name}")` : '') +
          `; a dispatch may launch at most one workgroup per element of the largest buffer it binds`
        );
      }
    }
  }
  return undefined;
}
