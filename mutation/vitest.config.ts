import { defineConfig } from 'vitest/config';

/**
 * The test files one mutation run uses (see mutation/run.ts): each module is mutated against the
 * tests that cover it, so a run fits this machine. MUTATION_TESTS is a comma-separated glob list.
 */
const include = (process.env.MUTATION_TESTS ?? '').split(',').filter(Boolean);

export default defineConfig({
  test: {
    include: include.length > 0 ? include : ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    // Instrumented code runs several times slower than the plain suite.
    testTimeout: 240_000,
    hookTimeout: 120_000,
  },
});
