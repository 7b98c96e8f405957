import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, createPostgresEventStore } from '../../eventstore/postgres/index.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/** `crm projections` and `crm rebuild` before any `crm serve` or `crm project` has run on the store (in this order). */
const schemas = testSchemas('cli_projections');
const env = schemaEnv(schemas);

afterAll(async () => {
  await schemas.dropSchemas();
});

describe('read-only and management commands on a database without a CRM', () => {
  const none = testSchemas('cli_projections_none');
  const noneEnv = schemaEnv(none);
  afterAll(() => none.dropSchemas());

  it('are refused naming the events schema (exit 66), and set up nothing there', async () => {
    for (const args of [['projections', 'list'], ['projections', 'retry', 'customers'], ['publish', '--status'], ['webhooks'], ['api-key', 'list']]) {
      const result = await runCrm(args, { cwd: tmpdir(), env: noneEnv });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(66);
      expect(result.stderr).toContain(`no CRM data in schema ${none.events} of this database`);
    }
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)', [[none.events, none.read, none.reporting]]);
      expect(rows).toEqual([]);
    } finally {
      await client.end();
    }
  });
});

describe('crm projections and crm rebuild on a new store', () => {
  beforeAll(async () => {
    // The store as `crm import` leaves it before any projection ran: its events schema, no read models.
    const database = connectPostgres(schemas.url, { max: 1 });
    const store = await createPostgresEventStore(database, { schema: schemas.events });
    await store.close();
    await database.close();
  });

  it('lists every projection as not run yet, instead of failing on the missing checkpoint table', async () => {
    const result = await runCrm(['projections', 'list'], { cwd: tmpdir(), env });
    expect(result.stderr).not.toMatch(/unexpected error|\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(9);
    for (const name of ['customers', 'deals', 'analytics']) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${name} +not run +position 0 of 0 \\(crm serve or crm project runs it\\)$`)));
    }
  });

  it('refuses a skip of a projection that has not run, saying so', async () => {
    const result = await runCrm(['projections', 'skip', 'customers', '--position', '5', '--reason', 'test'], { cwd: tmpdir(), env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Projection "customers" has no checkpoint: it has not run yet');
  });

  it("refuses a skip's reason holding a control character as a command's reason is refused, before the store is touched", async () => {
    // Recorded in an event for auditors: an ESC sequence there reached their terminals.
    const result = await runCrm(['projections', 'skip', 'customers', '--position', '5', '--reason', 'bad row\u001b[2J'], { cwd: tmpdir(), env });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('--reason contains the control character U+001B at position 8');
  });

  it('crm rebuild rebuilds every read model from an empty log instead of failing on the tables no run has made', async () => {
    const result = await runCrm(['rebuild'], { cwd: tmpdir(), env, timeoutMs: 120_000 });
    expect(result.stderr).not.toMatch(/unexpected error|\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Rebuilt customers, .*analytics.* from 0 events and swapped them in\.$/m);
  });

  it('says no process runs a projection whose checkpoint reads running when no worker holds its lease', async () => {
    // Found with every process stopped: each projection was listed as running, nothing more.
    const result = await runCrm(['projections', 'list'], { cwd: tmpdir(), env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^customers +running +position 0 of 0, no process runs it now \(crm serve or crm project does\)$/m);
  });

  it('lists and exports beside a projection writing its tables: no DDL waiting behind its locks', async () => {
    // A projection's transaction holds its table for writing; `CREATE INDEX IF NOT EXISTS` waited for
    // it past the lock timeout, and the read-only command failed as "the database is not available".
    const writer = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await writer.connect();
    try {
      await writer.query('BEGIN');
      await writer.query(`LOCK TABLE "${schemas.read}".customers IN ROW EXCLUSIVE MODE`);
      const lockEnv = { ...env, CRM_DB_LOCK_TIMEOUT_MS: '300' };
      const listed = await runCrm(['projections', 'list'], { cwd: tmpdir(), env: lockEnv });
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(/^customers +running/m);
      const exported = await runCrm(['export', 'customers'], { cwd: tmpdir(), env: lockEnv });
      expect(exported.code, exported.stderr).toBe(0);
    } finally {
      await writer.query('ROLLBACK');
      await writer.end();
    }
  });
});
