import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from '../cli/support.ts';
import { EXPORT_COLUMNS } from '../../projections/queries/export.ts';

/**
 * The auditor's and operator's commands on a store whose read models were never projected (events
 * written by `crm import` or `crm demo` with no `crm serve` running yet): they say so instead of
 * crashing with a stack trace or answering from empty tables as if they were complete.
 */
const schemas = testSchemas('audit_cli');
const folder = mkdtempSync(join(tmpdir(), 'crm-audit-cli-'));
// Several `crm` processes per test, each starting the CLI: generous on a busy 2-core machine.
vi.setConfig({ testTimeout: 120_000 });
const crm = (args: string[]) => runCrm(args, { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

describe('audit commands before the read models are built', () => {
  it('crm verify of a database without the events schema says so and creates nothing (--chain made it and found it intact)', async () => {
    for (const args of [['verify'], ['verify', '--chain']]) {
      const result = await crm(args);
      expect(result.code, args.join(' ')).toBe(66);
      expect(result.stderr).toContain(
        `crm verify: no CRM data in schema ${schemas.events} of this database: check CRM_EVENTS_SCHEMA (and DATABASE_URL); nothing was created`,
      );
      expect(result.stdout).not.toContain('intact');
    }
  });

  it('crm export warns that the read model is behind the events, and stops warning once it caught up', async () => {
    const customers = join(folder, 'customers.csv');
    writeFileSync(customers, ['name,email', 'Ada,ada@audit-cli.example', 'Grace,grace@audit-cli.example'].join('\n'));
    const imported = await crm(['import', customers, '--report', join(folder, 'report.csv')]);
    expect(imported.code, imported.stderr).toBe(0);

    // Events, and no read models yet: verify names them and how to build them, without a stack trace.
    const early = await crm(['verify']);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain(`crm verify: No read models to verify in schema ${schemas.read} yet`);
    expect(early.stderr).toContain('crm serve');
    expect(early.stderr).not.toMatch(/unexpected error|does not exist|\n\s+at /);

    const stale = await crm(['export', 'customers']);
    expect(stale.code, stale.stderr).toBe(0);
    // The header only: no customer is in the read model yet.
    expect(stale.stdout.trim().split('\n')).toEqual([EXPORT_COLUMNS.customers.join(',')]);
    expect(stale.stderr).toMatch(/crm export: the customers read model is behind the event store \(projected up to position 0, head \d+\)/);

    // The export created the read-model tables: verify now runs, and says how far it could check.
    const verified = await crm(['verify']);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/Note: not verified: the events after position 0 \(the store's head is \d+\): customers/);

    expect((await crm(['rebuild'])).code).toBe(0);
    const current = await crm(['export', 'customers']);
    expect(current.code, current.stderr).toBe(0);
    expect(current.stderr).not.toContain('behind');
    expect(current.stdout.trim().split('\n')).toHaveLength(3);
    const caughtUp = await crm(['verify']);
    expect(caughtUp.code, caughtUp.stdout + caughtUp.stderr).toBe(0);
    expect(caughtUp.stdout).not.toContain('not verified');

    // Stopped on a failed event: a running projection does not move past it, so the advice is retry or skip.
    const client = new pg.Client({ connectionString: schemas.url });
    await client.connect();
    try {
      await client.query(`UPDATE ${schemas.read}.projection_checkpoints SET state = 'failed', failed_position = 7 WHERE name = 'customers'`);
    } finally {
      await client.end();
    }
    const stopped = await crm(['export', 'customers']);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stderr).toContain('the customers projection is stopped on a failed event at position 7');
    expect(stopped.stderr).toContain('`crm projections retry customers`');
    expect(stopped.stderr).toContain('`crm projections skip customers --position 7 --reason "..."`');
    expect(stopped.stderr).not.toContain('brings it up to date');
  }, 300_000);

  it('crm verify --chain does not claim the global chain for events no seal covers yet', async () => {
    // No `crm serve` or `crm project` ran, so nothing sealed the imported events.
    const result = await crm(['verify', '--chain']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Hash chains intact: [1-9]\d* events on their stream chains, 0 on the global chain \(sealed through nothing yet\)/);
    expect(result.stdout).toMatch(/Note: [1-9]\d* events after the last seal are covered by their stream chains only/);
    expect(result.stdout).not.toContain('the global chain verify');
  });
});

describe('crm replay --schema and --reporting-schema', () => {
  it('refuses the live reporting schema, whose views every dashboard reads', async () => {
    const result = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', `${schemas.read}_past`, '--reporting-schema', schemas.reporting]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--reporting-schema ${schemas.reporting} is one of the live or system schemas`);
  });

  it("refuses the name of a rebuild's or verification's working copy, which the next process would drop unannounced", async () => {
    for (const shadow of [`${schemas.read}_verify_12345678`, `${schemas.read}_rb_0badcafe`]) {
      const result = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', shadow]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`--schema ${shadow} is named as a rebuild's or verification's working copy`);
    }
  });

  it('refuses an instant in the future, whose copy would miss what is recorded until then', async () => {
    const result = await crm(['replay', '--as-of', '2199-01-01T00:00:00Z', '--schema', `${schemas.read}_future`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--as-of 2199-01-01T00:00:00Z is in the future');
  });

  it('says --schema is required when it is missing, and what a name looks like when it is malformed', async () => {
    const missing = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--schema is required');
    const malformed = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', 'Past Schema']);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('--schema must be a lower-case PostgreSQL identifier, e.g. crm_2026_h1 (got "Past Schema")');
  });

  it('leaves a schema it did not make alone instead of dropping it with its tables', async () => {
    // Named with the file's prefix, so dropSchemas removes it afterwards.
    const billing = schemas.read.replace(/_read$/, '_billing');
    const client = new pg.Client({ connectionString: schemas.url });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA "${billing}"; CREATE TABLE "${billing}".invoices (id int PRIMARY KEY); INSERT INTO "${billing}".invoices VALUES (1)`);
      const result = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', billing]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`--schema ${billing} already holds objects that no crm replay made (invoices)`);
      expect((await client.query(`SELECT count(*)::int AS n FROM "${billing}".invoices`)).rows[0]).toEqual({ n: 1 });
      // A copy a replay made is replaced as before.
      const copy = `${schemas.read}_copy`;
      expect((await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', copy])).code).toBe(0);
      const again = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', copy]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(`are in schema ${copy}`);
      // Everything here was recorded after 2026-01-01: read, counted and left out.
      expect(again.stdout).toMatch(/: 0 events recorded by then applied, ([1-9]\d*) recorded later left out \(\1 read up to position \d+\)\./);
      // An earlier replay's read models named as another's reporting schema: said as what they are (it read "no crm replay made").
      const crossed = await crm(['replay', '--as-of', '2026-01-01T00:00:00Z', '--schema', `${schemas.read}_copy2`, '--reporting-schema', copy]);
      expect(crossed.code).toBe(2);
      expect(crossed.stderr).toContain(
        `--reporting-schema ${copy} holds the read models of \`crm replay --as-of 2026-01-01T00:00:00.000Z --schema ${copy}\`; the replay would replace them. Choose a new name.`,
      );
    } finally {
      await client.end();
    }
  });
});

describe('crm replay --as-of', () => {
  it.each(['2024-02-30', '2024-01-01junk', '0000-01-01', '2024-01-01T12:00:00'])('refuses %s instead of replaying another instant', async (asOf) => {
    const result = await crm(['replay', '--as-of', asOf, '--schema', `${schemas.read}_past`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--as-of must be an ISO time with an offset`);
    expect(result.stderr).toContain(`(got "${asOf}")`);
    expect(result.stdout).not.toContain('Read models as of');
  });
});

describe('commands that read what is stored, pointed at an embedded data folder with none', () => {
  // Found with CRM_DATA_DIR mistyped: verify --chain created an empty database there and reported its
  // 0 events intact with exit 0, a green audit of nothing.
  it('refuse with exit 66 naming the folder, and create nothing there', async () => {
    const empty = join(folder, 'no-such-data');
    for (const args of [['verify', '--chain'], ['verify'], ['projections', 'list'], ['export', 'customers']]) {
      const result = await runCrm(args, { cwd: folder, env: { CRM_DATA_DIR: empty, LOG_LEVEL: 'warn' }, timeoutMs: 120_000 });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(66);
      expect(result.stderr).toContain(`no CRM data in ${empty}`);
      expect(result.stderr).toContain('CRM_DATA_DIR');
      expect(result.stdout).not.toContain('intact');
      expect(existsSync(empty)).toBe(false);
    }
  });
});
