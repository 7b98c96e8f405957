import { defineConfig } from 'vitest/config';

/**
 * Tests that keep a writing transaction open for seconds (stalled connections, a writer held open on
 * purpose) hold back the feed horizon of the whole cluster (the oldest open transaction id is
 * cluster-wide), so every other file's projections would wait for them. They run on their own, after
 * the rest.
 */
const stallsTheDatabase = [
  'test/audit/log-paging-beside-writers.test.ts',
  'test/cli/publish-held-back.test.ts',
  'test/faults/database-faults.test.ts',
  'test/faults/demo-load-faults.test.ts',
  'test/faults/half-open.test.ts',
  'test/faults/rebuild-swap-stall.test.ts',
  'test/faults/reset-mid-statement.test.ts',
  'test/faults/shutdown.test.ts',
  'test/projections/catch-up-horizon.test.ts',
];

const shared = {
  // Each test file gets its own PostgreSQL schemas.
  pool: 'forks',
  testTimeout: 60_000,
  hookTimeout: 120_000,
} as const;

export default defineConfig({
  test: {
    // Files run in parallel on the 2-core machines.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      { test: { ...shared, name: 'crm', include: ['test/**/*.test.ts'], exclude: stallsTheDatabase, sequence: { groupOrder: 0 } } },
      { test: { ...shared, name: 'faults', include: stallsTheDatabase, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
