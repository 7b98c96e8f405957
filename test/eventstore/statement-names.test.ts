import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { isStalePlanError, STATEMENT_NAME_PREFIX, statementName, StatementNames } from '../../eventstore/postgres/statement-names.ts';
import { openDatabase } from '../../runtime/crm.ts';
import { PLANNED_PER_RUN_MARK, plannedPerRun } from '../../shared/sql.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';

/**
 * Named statements on the pg pool: which statements get a name and when, the bounds, and a table
 * whose column set changes under a connection that holds a prepared statement reading it. Real
 * server; a pool of one connection so that every statement meets the same prepared statements.
 */

const schemas = testSchemas('stmt_names');
const opened: SqlDatabase[] = [];
const open = (options: Parameters<typeof connectPostgres>[1] = {}): SqlDatabase => {
  const handle = connectPostgres(TEST_DATABASE_URL, { max: 1, ...options });
  opened.push(handle);
  return handle;
};
const admin = connectPostgres(TEST_DATABASE_URL, { max: 1, namedStatements: false });
const table = (name: string) => sql.id(schemas.read, name);

afterAll(async () => {
  for (const handle of opened) await handle.close();
  await admin.close();
  await schemas.dropSchemas();
});

const preparedNames = async (database: SqlDatabase): Promise<string[]> => {
  const { rows } = await sql<{ name: string }>`SELECT name FROM pg_prepared_statements ORDER BY name`.execute(database.db);
  return rows.map((r) => r.name);
};
const backendPid = async (database: SqlDatabase): Promise<number> =>
  (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(database.db)).rows[0]!.pid;

describe('StatementNames', () => {
  it('names a text from its second execution, by a digest of the text, the same on every connection', () => {
    const names = new StatementNames();
    const [a, b] = [{}, {}];
    expect(names.nameFor(a, 'SELECT $1')).toBeUndefined();
    const name = names.nameFor(a, 'SELECT $1');
    expect(name).toBe(statementName('SELECT $1'));
    expect(name).toMatch(new RegExp(`^${STATEMENT_NAME_PREFIX}[0-9a-f]{40}$`));
    expect(names.nameFor(b, 'SELECT $1')).toBe(name);
    expect(statementName('SELECT $2')).not.toBe(name);
  });

  it('gives a connection at most its quota of names; the texts past it run unnamed there, named elsewhere', () => {
    const names = new StatementNames({ perConnection: 2 });
    const [a, b] = [{}, {}];
    const texts = ['SELECT $1', 'SELECT $1 + 1', 'SELECT $1 + 2'];
    for (const text of texts) names.nameFor(a, text);
    expect(texts.map((text) => names.nameFor(a, text))).toEqual([statementName(texts[0]!), statementName(texts[1]!), undefined]);
    expect(names.heldBy(a)).toBe(2);
    // Already held names stay usable once the quota is reached.
    expect(names.nameFor(a, texts[0]!)).toBe(statementName(texts[0]!));
    expect(names.nameFor(b, texts[2]!)).toBe(statementName(texts[2]!));
  });

  it('forgets the texts counted once it remembers its bound of them', () => {
    const names = new StatementNames({ remembered: 2 });
    const a = {};
    names.nameFor(a, 'SELECT $1');
    names.nameFor(a, 'SELECT $1 + 1');
    // The third new text clears the count: the first is a first execution again.
    names.nameFor(a, 'SELECT $1 + 2');
    expect(names.nameFor(a, 'SELECT $1')).toBeUndefined();
    expect(names.nameFor(a, 'SELECT $1')).toBe(statementName('SELECT $1'));
  });

  it('never names a text that starts with the planned-per-run mark', () => {
    const names = new StatementNames();
    const text = `${PLANNED_PER_RUN_MARK} SELECT $1`;
    for (let i = 0; i < 3; i++) expect(names.nameFor({}, text)).toBeUndefined();
  });

  it('tells the stale-plan error from other 0A000 errors', () => {
    expect(isStalePlanError(Object.assign(new Error('cached plan must not change result type'), { code: '0A000' }))).toBe(true);
    expect(isStalePlanError(Object.assign(new Error('FOR UPDATE is not allowed with aggregate functions'), { code: '0A000' }))).toBe(false);
    expect(isStalePlanError(undefined)).toBe(false);
  });
});

describe('the pg pool', () => {
  it('prepares a parameterised statement from its second execution, and none without parameters or when turned off', async () => {
    const named = open();
    const query = (db: SqlDatabase) => sql<{ n: number }>`SELECT ${41}::int + 1 AS n`.execute(db.db);
    expect((await query(named)).rows[0]!.n).toBe(42);
    expect(await preparedNames(named)).toEqual([]);
    expect((await query(named)).rows[0]!.n).toBe(42);
    const text = sql`SELECT ${41}::int + 1 AS n`.compile(named.db).sql;
    expect(await preparedNames(named)).toEqual([statementName(text)]);
    // Runs on: the prepared statement is reused with other values.
    expect((await sql<{ n: number }>`SELECT ${1}::int + 1 AS n`.execute(named.db)).rows[0]!.n).toBe(2);
    expect(await preparedNames(named)).toEqual([statementName(text)]);

    // A list marked as planned per run (projections/queries/page.ts) stays unnamed however often it runs.
    for (let i = 0; i < 3; i++) await sql`${plannedPerRun}SELECT ${i}::int AS n`.execute(named.db);
    expect(await preparedNames(named)).toEqual([statementName(text)]);

    const unnamed = open({ namedStatements: false });
    for (let i = 0; i < 3; i++) await query(unnamed);
    expect(await preparedNames(unnamed)).toEqual([]);
    // The hand-named fast path goes too (the append of a command), so nothing is prepared at all.
    expect(unnamed.prepared).toBeUndefined();
    expect(named.prepared).toBeTypeOf('function');
  });

  it('follows the deployment setting: CRM_PREPARED_STATEMENTS=off leaves every connection without prepared statements', async () => {
    const run = async (env: Record<string, string>): Promise<string[]> => {
      const database = await openDatabase(loadConfig({ DATABASE_URL: TEST_DATABASE_URL, ...env }, '/tmp'), { poolMax: 1 });
      try {
        for (let i = 0; i < 3; i++) await sql`SELECT ${i}::int AS n`.execute(database.db);
        return await preparedNames(database);
      } finally {
        await database.close();
      }
    };
    expect(await run({})).toHaveLength(1);
    expect(await run({ CRM_PREPARED_STATEMENTS: 'off' })).toEqual([]);
  });

  it('keeps at most the quota of prepared statements on a connection', async () => {
    const database = open({ statementNames: { perConnection: 3 } });
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 5; i++) expect((await sql.raw<{ n: number }>(`SELECT 1 + ${i} AS n WHERE 1 = 1`).execute(database.db)).rows).toHaveLength(1);
      for (let i = 0; i < 5; i++) {
        // Five texts (the constant differs), each with a parameter.
        const { rows } = await sql<{ n: number }>`SELECT ${i}::int + ${sql.raw(String(i * 10))} AS n`.execute(database.db);
        expect(rows[0]!.n).toBe(i * 11);
      }
    }
    // Five parameterised texts run twice each, a quota of three; the raw texts have no parameters.
    expect(await preparedNames(database)).toHaveLength(3);
  });

  it('closes a connection past its lifetime, its prepared statements (and their generic plans) with it', async () => {
    const database = open({ connectionLifetimeSeconds: 1 });
    const query = () => sql<{ n: number }>`SELECT ${2}::int * 2 AS n`.execute(database.db);
    await query();
    await query();
    expect(await preparedNames(database)).toHaveLength(1);
    const pid = await backendPid(database);
    // Bounded wait for the pool to retire the connection (1 s lifetime): a new backend, nothing prepared.
    const deadline = Date.now() + 10_000;
    while ((await backendPid(database)) === pid) {
      if (Date.now() > deadline) throw new Error('the connection outlived its lifetime by 9 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await preparedNames(database)).toEqual([]);
    expect((await query()).rows[0]!.n).toBe(4);
  });

  describe('a table swapped for one with another column set under a prepared `SELECT t.*`', () => {
    const swap = async (name: string, columns: string) => {
      await sql`DROP TABLE IF EXISTS ${table(name)}`.execute(admin.db);
      await sql`CREATE TABLE ${table(name)} (id int PRIMARY KEY, ${sql.raw(columns)})`.execute(admin.db);
    };
    const setUp = async (name: string) => {
      await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schemas.read)}`.execute(admin.db);
      await swap(name, 'a text');
      await sql`INSERT INTO ${table(name)} VALUES (1, 'one')`.execute(admin.db);
    };
    const read = (database: SqlDatabase, name: string) =>
      sql<Record<string, unknown>>`SELECT t.* FROM ${table(name)} t WHERE t.id = ${1}`.execute(database.db).then((r) => r.rows);

    it('outside a transaction: the next read answers from the new table, and the connection is replaced', async () => {
      await setUp('outside');
      const database = open();
      expect(await read(database, 'outside')).toEqual([{ id: 1, a: 'one' }]);
      expect(await read(database, 'outside')).toEqual([{ id: 1, a: 'one' }]);
      expect(await preparedNames(database)).toHaveLength(1);
      const pid = await backendPid(database);

      await swap('outside', 'a text, b int');
      await sql`INSERT INTO ${table('outside')} VALUES (1, 'uno', 7)`.execute(admin.db);
      expect(await read(database, 'outside')).toEqual([{ id: 1, a: 'uno', b: 7 }]);
      // The connection that held the stale statement was discarded; a fresh one took its place.
      expect(await backendPid(database)).not.toBe(pid);
      expect(await read(database, 'outside')).toEqual([{ id: 1, a: 'uno', b: 7 }]);
      expect(await read(database, 'outside')).toEqual([{ id: 1, a: 'uno', b: 7 }]);
    });

    it('inside a transaction: a retryable EventStoreUnavailable, and the retry reads the new table', async () => {
      await setUp('inside');
      const database = open();
      await read(database, 'inside');
      await read(database, 'inside');
      const pid = await backendPid(database);

      await swap('inside', 'b int');
      await sql`INSERT INTO ${table('inside')} VALUES (1, 8)`.execute(admin.db);
      const failure = await database.db
        .transaction()
        .execute((trx) => sql`SELECT t.* FROM ${table('inside')} t WHERE t.id = ${1}`.execute(trx))
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(failure).toBeInstanceOf(EventStoreUnavailable);
      expect(isStalePlanError((failure as Error).cause)).toBe(true);
      expect(await backendPid(database)).not.toBe(pid);
      const retried = await database.db.transaction().execute((trx) => sql`SELECT t.* FROM ${table('inside')} t WHERE t.id = ${1}`.execute(trx));
      expect(retried.rows).toEqual([{ id: 1, b: 8 }]);
    });

    it('unnamed (the option off), the same swap never fails', async () => {
      await setUp('off');
      const database = open({ namedStatements: false });
      await read(database, 'off');
      await read(database, 'off');
      await swap('off', 'c int');
      expect(await read(database, 'off')).toEqual([]);
    });
  });
});
