import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unavailableAdvice } from '../../cli/advice.ts';
import { commands } from '../../cli/commands/index.ts';
import { EventStoreUnavailable, OutcomeUnknown } from '../../eventstore/errors.ts';
import { runCrm, schemaEnv, Server } from '../cli/support.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { FaultProxy } from './proxy.ts';

/**
 * When the database fails under a `crm` command, the message keeps the cause and says what to do
 * next as fits the command: a read changed nothing (no "may or may not have committed"), an import
 * is simply run again, a write that a rerun would repeat is checked first.
 */
const lost = 'Lost the connection to PostgreSQL at postgres://127.0.0.1:5432/test while a statement was running (ECONNRESET: read ECONNRESET)';
const outcomeUnknown = () => new OutcomeUnknown(`${lost}; it may or may not have committed.`, { lost: `${lost}.` });
const unreachable = () => new EventStoreUnavailable('Cannot reach PostgreSQL at postgres://127.0.0.1:1/crm (ECONNREFUSED). Check DATABASE_URL.');
const advice = (error: EventStoreUnavailable, argv: string[]) => {
  const command = commands.find((c) => c.name === argv[0])!;
  return unavailableAdvice(error, { command, args: { positionals: argv.slice(1), values: {} } });
};

describe('the advice when the database fails under a command', () => {
  it('tells a read-only command that nothing changed, without the outcome clause, and keeps the cause', () => {
    for (const argv of [['export', 'customers'], ['verify'], ['projections', 'list'], ['api-key', 'list'], ['publish']]) {
      const text = advice(outcomeUnknown(), argv);
      expect(text, argv.join(' ')).not.toMatch(/may or may not/);
      expect(text).toContain(lost);
      expect(text).toContain(`crm ${argv.join(' ')} only reads: nothing was changed. Run it again once the database answers.`);
    }
  });

  it('tells an import (and the other commands whose writes a rerun does not repeat) to run the same command again', () => {
    const text = advice(outcomeUnknown(), ['import', 'customers.csv']);
    expect(text).toContain('it may or may not have committed.');
    expect(text).toContain(
      'Run the same command again once the database answers: nothing is recorded twice; rows already stored are counted as already present.',
    );
    for (const argv of [['import-rates', 'rates.csv'], ['demo'], ['claim-emails'], ['rebuild'], ['replay'], ['fit'], ['projections', 'retry', 'x']]) {
      expect(advice(outcomeUnknown(), argv), argv.join(' ')).toContain('Run the same command again once the database answers');
    }
  });

  it('asks for a check before another run of a write a rerun would repeat, only when its outcome is unknown', () => {
    expect(advice(outcomeUnknown(), ['api-key', 'create'])).toContain(
      'Once the database answers, check whether it took effect (crm api-key list) before running crm api-key create again.',
    );
    expect(advice(outcomeUnknown(), ['webhooks', 'create'])).toContain('(crm webhooks)');
    expect(advice(unreachable(), ['api-key', 'create'])).toContain('Run crm api-key create again once the database answers.');
  });
});

describe('crm import when the connection is reset under it', () => {
  const proxy = FaultProxy.before(TEST_DATABASE_URL);
  const schemas = testSchemas('cli_advice');
  const folder = mkdtempSync(join(tmpdir(), 'crm-advice-'));
  beforeAll(() => proxy.start());
  afterAll(async () => {
    await proxy.close();
    await schemas.dropSchemas();
    rmSync(folder, { recursive: true, force: true });
  });

  it('exits 69 saying to run it again; run again, it finishes and counts the rows stored before as already present', async () => {
    const rows = 6_000;
    const file = join(folder, 'customers.csv');
    writeFileSync(file, ['name,email', ...Array.from({ length: rows }, (_, i) => `Customer ${i},customer${i}@example.com`)].join('\n'));
    const env = schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), CRM_PROJECTIONS: 'off' });

    // Every connection reset once rows are going in.
    const first = new Server(folder, env, ['import', file, '--batch-size', '50']);
    await first.waitFor(/import [\d,]+ rows/, 90_000, 'stderr');
    proxy.resetAll();
    const code = await first.exited;
    const failed = { code, stderr: first.stderr };
    expect(failed.code, failed.stderr).toBe(69);
    // The reset lands on a statement in flight (its outcome unknown) or, now and then, on a connection
    // the pool was opening (the database unreachable): either way the advice is to run it again.
    if (failed.stderr.includes('crm: the database is not available.')) expect(failed.stderr).toMatch(/Cannot reach PostgreSQL at .*ECONNRESET/);
    else {
      expect(failed.stderr).toContain('crm: lost the connection to the database.');
      expect(failed.stderr).toMatch(/Lost the connection to PostgreSQL at .*; it may or may not have committed\./);
    }
    expect(failed.stderr).toContain(
      'Run the same command again once the database answers: nothing is recorded twice; rows already stored are counted as already present.',
    );

    const again = await runCrm(['import', file], { cwd: folder, env, timeoutMs: 120_000 });
    expect(again.code, again.stderr).toBe(0);
    const [, imported, present] = again.stdout.match(/(\d+) imported \((\d+) of them already present\)/)!;
    expect(Number(imported)).toBe(rows);
    expect(Number(present)).toBeGreaterThan(0);
  }, 240_000);
});

describe('crm export with the database away', () => {
  it('says it only reads', async () => {
    const schemas = testSchemas('cli_advice_export');
    const result = await runCrm(['export', 'customers'], {
      cwd: tmpdir(),
      env: { ...schemaEnv(schemas), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/crm' },
    });
    expect(result.code).toBe(69);
    expect(result.stderr).toContain('crm: the database is not available.');
    expect(result.stderr).toContain('127.0.0.1:1');
    expect(result.stderr).toContain('crm export customers only reads: nothing was changed. Run it again once the database answers.');
  });
});

describe('a database user without the rights the CRM needs', () => {
  it('is told so with exit 77 and what to do, without a stack trace', async () => {
    // Found by an operator with a read-only user: "unexpected error" and twenty lines of stack, exit 1.
    const schemas = testSchemas('cli_advice_rights');
    const role = `crm_no_rights_${process.pid}`;
    const pg = await import('pg');
    const admin = new pg.default.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`DROP ROLE IF EXISTS ${role}`);
      await admin.query(`CREATE ROLE ${role} LOGIN`);
      const url = new URL(TEST_DATABASE_URL);
      url.username = role;
      url.password = '';
      // A command that sets a CRM up where there is none (a list or status refuses a database without one first).
      const result = await runCrm(['rebuild'], { cwd: tmpdir(), env: { ...schemaEnv(schemas), DATABASE_URL: url.toString() }, timeoutMs: 60_000 });
      expect(result.code, result.stderr).toBe(77);
      expect(result.stderr).toContain('crm rebuild: the database refused this user: permission denied for database');
      expect(result.stderr).toContain('run it as a user that may create schemas in the database');
      expect(result.stderr).not.toMatch(/unexpected error|\n\s+at /);
    } finally {
      await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
      await admin.end();
      await schemas.dropSchemas();
    }
  });
});

describe('a lock another session holds on a table a command needs', () => {
  it('is told as a busy database with exit 75 and what to do, where a first start of a new version said "unexpected error" (exit 1)', async () => {
    // Found upgrading a store while a BI tool held a transaction open on api_keys: migration 0013 alters it.
    const schemas = testSchemas('cli_advice_busy');
    const env = schemaEnv(schemas);
    const pg = await import('pg');
    const holder = new pg.default.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      const first = await runCrm(['api-key', 'create', '--name', 'first', '--role', 'sales'], { cwd: tmpdir(), env, timeoutMs: 60_000 });
      expect(first.code, first.stderr).toBe(0);
      // The store as the version before 0013 left it, and a reader's transaction open on the table.
      await holder.query(`DELETE FROM "${schemas.events}".eventstore_migration WHERE name = '0013_api_keys'`);
      await holder.query('BEGIN');
      await holder.query(`SELECT count(*) FROM "${schemas.events}".api_keys`);
      const busy = await runCrm(['api-key', 'create', '--name', 'second', '--role', 'sales'], { cwd: tmpdir(), env, timeoutMs: 60_000 });
      expect(busy.code, busy.stderr).toBe(75);
      expect(busy.stderr).toContain('crm api-key: the database is busy: Event store migration 0013_api_keys failed');
      expect(busy.stderr).toContain('run the command again in a moment, or end that session');
      expect(busy.stderr).not.toMatch(/unexpected error|\n\s+at /);
      await holder.query('ROLLBACK');
      const again = await runCrm(['api-key', 'create', '--name', 'second', '--role', 'sales'], { cwd: tmpdir(), env, timeoutMs: 60_000 });
      expect(again.code, again.stderr).toBe(0);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
      await schemas.dropSchemas();
    }
  });
});
