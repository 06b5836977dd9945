// Edits a compiled plan and writes it back with fresh header, manifest and section SHA-256s,
// so the result passes readBundle's integrity checks and reaches the checks behind them:
// for tests of what a tampered (or hostile) plan can make the runtime do.
import { writeBundle } from '../compiler/plan/bundle';
import { readBundle } from '../runtime/bundle';
import type { Manifest } from '../schemas/manifest';

/** `edit` changes the manifest and the sections (name → bytes) in place. */
export async function editPlan(bytes: Uint8Array, edit: (manifest: Manifest, sections: Map<string, Uint8Array>) => void): Promise<Uint8Array> {
  const bundle = await readBundle(bytes);
  const manifest = structuredClone(bundle.manifest);
  const sections = new Map(manifest.sections.map((s) => [s.name, bundle.section(s.name).slice()]));
  edit(manifest, sections);
  const { sections: _listed, ...rest } = manifest;
  return writeBundle(rest, [...sections].map(([name, data]) => ({ name, bytes: data })));
}
