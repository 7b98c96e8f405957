import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReadModelsHeld } from '../../projections/errors.ts';
import { erasableTables, rewriteTable } from '../../runtime/purge-erased.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * `crm purge-erased` against the real PostgreSQL: a forget's erasure leaves the names it replaced in
 * the table and index files (dead row versions, freed space and B-tree keys), and a plain VACUUM
 * leaves them there too; writing the table anew removes them. The files are read as the server
 * writes them (after a CHECKPOINT), with pg_read_binary_file (the tests run as a superuser).
 */
const schemas = testSchemas('purge_erased');
let db: Kysely<unknown>;

beforeAll(async () => {
  db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: schemas.url, max: 2 }) }) });
  await sql`CREATE SCHEMA ${sql.id(schemas.read)}`.execute(db);
  await sql`CREATE SCHEMA ${sql.id(schemas.events)}`.execute(db);
  // The shapes do not matter here, only that the tables exist under their names.
  await sql`CREATE TABLE ${sql.id(schemas.read, 'customers')} (customer_id int PRIMARY KEY, name text NOT NULL)`.execute(db);
  await sql`CREATE INDEX ON ${sql.id(schemas.read, 'customers')} (lower(name) text_pattern_ops)`.execute(db);
  await sql`CREATE TABLE ${sql.id(schemas.events, 'customer_keys')} (customer_id text PRIMARY KEY, data_key bytea)`.execute(db);
  await sql`CREATE TABLE ${sql.id(schemas.read, 'read_model_copies')} (schema_name text PRIMARY KEY)`.execute(db);
  await sql`INSERT INTO ${sql.id(schemas.read, 'read_model_copies')} VALUES (${schemas.reporting})`.execute(db);
  await sql`CREATE SCHEMA ${sql.id(schemas.reporting)}`.execute(db);
  await sql`CREATE TABLE ${sql.id(schemas.reporting, 'feedback')} (feedback_id int PRIMARY KEY, subject text)`.execute(db);
  await sql`CREATE TABLE ${sql.id(schemas.read, 'import_jobs')} (id text PRIMARY KEY, unread_columns text[])`.execute(db);
});
afterAll(async () => {
  await db?.destroy();
  await schemas.dropSchemas();
});

/** How many times `text` occurs in the files of the table and of its indexes, as the server wrote them. */
const occurrencesOnDisk = async (table: string, text: string): Promise<number> => {
  await sql`CHECKPOINT`.execute(db);
  const { rows } = await sql<{ n: number }>`
    SELECT coalesce(sum((length(f) - length(replace(f, ${text}, ''))) / length(${text})), 0)::int AS n
      FROM (SELECT encode(pg_read_binary_file(pg_relation_filepath(c.oid)), 'escape') AS f
              FROM pg_class c WHERE c.oid = ${table}::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ${table}::regclass)) files`.execute(
    db,
  );
  return rows[0]!.n;
};

describe('crm purge-erased', () => {
  it('finds the tables that hold personal data, in the live schemas and in registered copies, and only those that exist', async () => {
    expect(await erasableTables(db, schemas)).toEqual([
      { schema: schemas.events, table: 'customer_keys' },
      { schema: schemas.read, table: 'customers' },
      { schema: schemas.reporting, table: 'feedback' },
      // A job's record of what it did not read: before 2026-12-07, a file without a header row's first cells.
      { schema: schemas.read, table: 'import_jobs' },
    ]);
  });

  it('leaves no erased name in the files, where a plain VACUUM left them', async () => {
    const customers = `"${schemas.read}".customers`;
    await sql`INSERT INTO ${sql.id(schemas.read, 'customers')} SELECT i, 'Purgetest Person ' || i FROM generate_series(1, 300) i`.execute(db);
    await sql`UPDATE ${sql.id(schemas.read, 'customers')} SET name = '[erased]'`.execute(db);
    await sql`VACUUM ${sql.id(schemas.read, 'customers')}`.execute(db);
    expect(await occurrencesOnDisk(customers, 'Purgetest')).toBeGreaterThan(0);

    const sizes = await rewriteTable(db, { schema: schemas.read, table: 'customers' });
    expect(await occurrencesOnDisk(customers, 'Purgetest')).toBe(0);
    expect(sizes.bytesAfter).toBeLessThan(sizes.bytesBefore);
    // The live rows are all there.
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schemas.read, 'customers')} WHERE name = '[erased]'`.execute(db);
    expect(rows[0]!.n).toBe(300);
  });

  describe('while another session holds the table (a BI tool with a transaction open)', () => {
    // As the CRM's own connections are: each statement waits for a lock at most lock_timeout.
    let timed: Kysely<unknown>;
    let holder: pg.Client;
    beforeAll(async () => {
      timed = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: schemas.url, max: 1, options: '-c lock_timeout=200' }) }) });
    });
    afterAll(async () => {
      await holder?.end().catch(() => undefined);
      await timed?.destroy();
    });
    const hold = async (): Promise<number> => {
      holder = new pg.Client({ connectionString: schemas.url, application_name: 'bi-tool' });
      await holder.connect();
      await holder.query('BEGIN');
      await holder.query(`SELECT count(*) FROM "${schemas.read}".customers`);
      return (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    };

    it('tries again while the hold lasts and names the session holding it once its bound is spent', async () => {
      const pid = await hold();
      const failure = await rewriteTable(timed, { schema: schemas.read, table: 'customers' }, 1_200).catch((e: unknown) => e);
      await holder.end();
      expect(failure).toBeInstanceOf(ReadModelsHeld);
      const held = failure as ReadModelsHeld;
      expect(held.waitedMs).toBeGreaterThanOrEqual(400);
      expect(held.sessions).toEqual([expect.objectContaining({ pid, application: 'bi-tool', relations: [`${schemas.read}.customers`] })]);
      expect(held.message).toContain(`could not write ${schemas.read}.customers anew`);
    });

    it('writes the table once the session lets go within the bound', async () => {
      await hold();
      setTimeout(() => void holder.query('COMMIT'), 600);
      const sizes = await rewriteTable(timed, { schema: schemas.read, table: 'customers' }, 10_000);
      expect(sizes.bytesAfter).toBeGreaterThan(0);
      await holder.end();
    });
  });
});
