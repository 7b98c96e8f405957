/**
 * The modules under mutation testing and the tests that cover each. Mutating a module runs only its
 * tests (Stryker's per-test coverage then picks, per mutant, the tests that reach it).
 */
export interface MutationModule {
  /** Files to mutate (globs). */
  mutate: string[];
  /** Test files that cover them (globs). */
  tests: string[];
  /** Parallel test runners: database tests share one server, so they run fewer at once. */
  concurrency: number;
}

export const MUTATION_MODULES: Record<string, MutationModule> = {
  domain: {
    mutate: ['domain/**/*.ts'],
    tests: ['test/domain/*.test.ts'],
    concurrency: 2,
  },
  commands: {
    mutate: ['commands/**/*.ts'],
    tests: ['test/commands/*.test.ts'],
    concurrency: 1,
  },
  'eventstore-postgres': {
    mutate: ['eventstore/postgres/**/*.ts', 'eventstore/validation.ts'],
    tests: ['test/eventstore/postgres.test.ts'],
    concurrency: 1,
  },
  projections: {
    mutate: ['projections/runner.ts', 'projections/apply-batch.ts', 'projections/checkpoints.ts', 'projections/leases.ts'],
    tests: ['test/projections/crash-safety.test.ts', 'test/projections/leases.test.ts', 'test/projections/read-models.test.ts'],
    concurrency: 1,
  },
  'analytics-models': {
    mutate: ['analytics/models/**/*.ts'],
    tests: ['test/analytics/customer-base-models.test.ts', 'test/analytics/churn-models.test.ts', 'test/analytics/reporting-models.test.ts'],
    concurrency: 2,
  },
  'audit-chain': {
    mutate: ['audit/sql/chain.ts', 'eventstore/postgres/chain.ts'],
    tests: ['test/audit/chain.test.ts'],
    concurrency: 1,
  },
};
