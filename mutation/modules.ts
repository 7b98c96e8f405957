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
    concurrency: 1,
  },
  commands: {
    // The command path itself; batch.ts and import/ (bulk import) are the module below.
    mutate: ['commands/*.ts', '!commands/batch.ts'],
    tests: ['test/commands/*.test.ts'],
    concurrency: 1,
  },
  'commands-import': {
    // Bulk import against the tests that run it in this process (about 6 s in all): the CLI tests that
    // spawn `crm import` cannot see a mutant, which lives in the test process only.
    mutate: ['commands/batch.ts', 'commands/import/*.ts'],
    tests: [
      'test/commands/import-batches.test.ts',
      'test/cli/import-batch.test.ts',
      'test/api/imports.test.ts',
      // Rows, file reading and the HTTP import jobs directly (about 10 s in all).
      'test/commands/import-rows.test.ts',
      'test/commands/import-parse.test.ts',
      'test/commands/import-header.test.ts',
      'test/api/import-jobs.test.ts',
      // The batch handler and the import loop directly (about 8 s).
      'test/commands/batch-commands.test.ts',
      'test/commands/importer.test.ts',
    ],
    concurrency: 1,
  },
  'eventstore-postgres': {
    mutate: ['eventstore/postgres/**/*.ts', 'eventstore/validation.ts'],
    // Under MUTATION_TESTS the contract's stress test runs 4 writers x 100 appends (a pass of about 10 s).
    tests: [
      'test/eventstore/postgres.test.ts',
      'test/eventstore/postgres-store.test.ts',
      'test/eventstore/group-commit.test.ts',
      'test/eventstore/postgres-database.test.ts',
      'test/eventstore/postgres-migrations.test.ts',
      'test/eventstore/validation.test.ts',
    ],
    concurrency: 1,
  },
  'eventstore-postgres-connections': {
    // The database handle and the wake-ups of eventstore-postgres against their direct tests (about 8 s a
    // pass): every test of the module opens connections, so with the whole list each survivor re-ran it.
    // PGlite's opening has its own file with one instance (about 10 s, most of it creating the instance).
    // The session lock, the NOTIFY throttle and the named statements have theirs (about 10 s, 1 s and 3 s).
    mutate: ['eventstore/postgres/database.ts', 'eventstore/postgres/wakeup.ts'],
    tests: [
      'test/eventstore/postgres-database.test.ts',
      'test/eventstore/postgres-store.test.ts',
      'test/eventstore/pglite-database.test.ts',
      'test/eventstore/postgres-session-lock.test.ts',
      'test/eventstore/postgres-wakeup.test.ts',
      'test/eventstore/statement-names.test.ts',
    ],
    concurrency: 1,
  },
  'eventstore-postgres-migrations': {
    // The event store's migrations against their direct tests (about 1 s a pass): every other test of the
    // module migrates a schema in its set-up, so with the whole list each mutant re-ran all of them.
    mutate: ['eventstore/postgres/migrations.ts'],
    tests: ['test/eventstore/postgres-migrations.test.ts'],
    concurrency: 1,
  },
  projections: {
    mutate: ['projections/runner.ts', 'projections/apply-batch.ts', 'projections/checkpoints.ts', 'projections/leases.ts'],
    tests: [
      'test/projections/crash-safety.test.ts',
      'test/projections/apply-batch.test.ts',
      'test/projections/leases.test.ts',
      'test/projections/read-models.test.ts',
    ],
    concurrency: 1,
  },
  'projections-batch': {
    // The batch transaction and its checkpoint (invariant 5) against the crash-safety tests and the direct
    // tests of one batch (about 3 s): the whole `projections` module runs three slow database test files
    // for every mutant.
    mutate: ['projections/checkpoints.ts', 'projections/apply-batch.ts'],
    tests: ['test/projections/crash-safety.test.ts', 'test/projections/apply-batch.test.ts'],
    concurrency: 1,
  },
  'projections-runner': {
    // The runner and the leases against direct tests on a scripted feed and lease rounds driven by the
    // test (a few seconds each): the tests through the whole read-model set take 30-50 s per pass.
    mutate: ['projections/runner.ts', 'projections/leases.ts'],
    tests: ['test/projections/runner-batches.test.ts', 'test/projections/lease-rounds.test.ts', 'test/projections/runner-edges.test.ts'],
    concurrency: 1,
  },
  'analytics-models': {
    // The customer-value chain (BG/NBD, Gamma-Gamma, CLV and their special functions): the whole folder
    // (1,596 mutants) projected to 45 minutes at one runner on the shared machine.
    mutate: [
      'analytics/models/bgnbd.ts',
      'analytics/models/gamma-gamma.ts',
      'analytics/models/clv.ts',
      'analytics/models/customer-value.ts',
      'analytics/models/special.ts',
    ],
    tests: ['test/analytics/customer-base-models.test.ts', 'test/analytics/bgnbd-validation.test.ts', 'test/analytics/analytics-models-mutants.test.ts'],
    concurrency: 1,
  },
  'analytics-models-rest': {
    // The rest of the folder (RFM, metrics, satisfaction, retention, segments, forecast, the churn models and
    // their optimiser, the random source, time units) against the tests without a database that reach it.
    mutate: [
      'analytics/models/*.ts',
      '!analytics/models/bgnbd.ts',
      '!analytics/models/gamma-gamma.ts',
      '!analytics/models/clv.ts',
      '!analytics/models/customer-value.ts',
      '!analytics/models/special.ts',
    ],
    tests: [
      'test/analytics/churn-models.test.ts',
      'test/analytics/naive-bayes-calibration.test.ts',
      'test/analytics/reporting-models.test.ts',
      'test/analytics/customer-base-models.test.ts',
      'test/analytics/forecast-months.test.ts',
      'test/analytics/analytics-models-rest-mutants.test.ts',
    ],
    concurrency: 1,
  },
  'audit-chain': {
    mutate: ['audit/sql/chain.ts', 'eventstore/postgres/chain.ts'],
    tests: ['test/audit/chain.test.ts', 'test/audit/audit-chain-mutants.test.ts'],
    concurrency: 1,
  },
  // Where webhook deliveries may connect: the ranges, the operator's networks, URLs and the lookup.
  'webhook-destinations': {
    mutate: ['integration/destinations.ts'],
    tests: ['test/integration/destinations.test.ts', 'test/cli/config.test.ts'],
    concurrency: 1,
  },
  // Signing deliveries and rotating the signing secret: the scheme, the route, the service and the table statements.
  'webhook-secrets': {
    mutate: ['integration/signing.ts', 'api/routes/webhooks.ts', 'integration/index.ts', 'integration/tables.ts'],
    tests: ['test/integration/envelope.test.ts', 'test/integration/webhooks.test.ts'],
    concurrency: 1,
  },
  // The exports over HTTP, their lists of order history and campaign responses, and the database away.
  exports: {
    mutate: ['api/routes/exports.ts', 'projections/queries/export.ts', 'projections/queries/purchases.ts', 'audit/campaign-records.ts'],
    tests: ['test/api/exports.test.ts', 'test/faults/export-faults.test.ts', 'test/api/visibility.test.ts'],
    concurrency: 1,
  },
  // Rate limits per key and address, and their counters in Redis or, while Redis does not answer, in the process.
  'rate-limits': {
    mutate: ['api/rate-limit.ts', 'api/shared-counters.ts'],
    tests: ['test/api/rate-limit.test.ts'],
    concurrency: 1,
  },
  // Who a key is and what it may see: authentication, the viewer's scope and the refusals outside it.
  access: {
    mutate: ['api/auth/guard.ts', 'api/auth/viewer.ts', 'api/auth/scope-guard.ts'],
    tests: ['test/api/visibility.test.ts', 'test/api/scope-refusals.test.ts', 'test/api/key-cache.test.ts'],
    concurrency: 1,
  },
  // The CSV quoting and formula guard of every export and its reading back on import, and the escaping of
  // text printed on a terminal, against their direct tests (a second or two a pass; no database).
  'shared-text': {
    mutate: ['shared/csv.ts', 'shared/terminal-text.ts'],
    tests: ['test/shared/csv.test.ts', 'test/shared/terminal-text.test.ts'],
    concurrency: 1,
  },
  // The dictionary sort key of names (`?sort=name`) against its direct test. The lists ordered by it
  // (name-order.test.ts) project every name in their set-up, which Stryker counts as module-level code:
  // against them alone all 32 mutants were left out, none measured.
  'name-sort': {
    mutate: ['projections/read-models/name-sort.ts'],
    tests: ['test/projections/name-sort.test.ts', 'test/projections/name-order.test.ts'],
    concurrency: 1,
  },
  // Reading an import file (CSV and NDJSON, delimiters, padded rows, line numbers, encodings) against its
  // direct tests (about 8 s a pass, no database): the other tests of `commands-import` reach it through
  // the importer and a database. Even so the whole file (524 mutants) projected to 50 minutes under a
  // load of 16; runs take line ranges of it with --mutate=commands/import/parse.ts:from-to.
  'import-parse': {
    mutate: ['commands/import/parse.ts'],
    tests: ['test/commands/import-parse.test.ts', 'test/commands/import-header.test.ts'],
    concurrency: 1,
  },
};
