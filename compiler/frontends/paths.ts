// How diagnostics name files: relative to the working directory when inside it.
import { isAbsolute, relative, resolve } from 'node:path';

export function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** Paths in diagnostics: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const abs = resolve(path);
  return isInside(abs, process.cwd()) ? relative(process.cwd(), abs) : abs;
}
