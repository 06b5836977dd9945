import { defineConfig } from 'vitest/config';

// GPU suites share one Dawn device per file; forks keep Dawn out of worker threads, and
// --expose-gc lets the host test force collections between submits. Model files import
// 'mnc', which tsconfig's paths map to compiler/api.ts; tsconfigPaths makes Vite follow them.
export default defineConfig({
  resolve: { tsconfigPaths: true },
  test: {
    include: ['test/**/*.test.ts', 'compiler/**/*.test.ts', 'runtime/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    pool: 'forks',
    execArgv: ['--expose-gc'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
