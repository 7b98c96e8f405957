import pg from 'pg';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { migrateCheckpoints } from '../../projections/checkpoints.ts';
import { claimShadow, dropAbandonedShadows, newShadowName } from '../../projections/shadows.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * Shadow schemas of rebuilds and verifications on the real PostgreSQL: one whose process died is
 * dropped by the next process that opens the read models; one in use (its lock held by a live
 * session, or claimed in this process) is left alone.
 */
const schemas = testSchemas('shadows');
let database: SqlDatabase;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 3 });
  await migrateCheckpoints(database.db, schemas.read);
});
afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

const shadowsNow = async (): Promise<string[]> =>
  (
    await sql<{ name: string }>`SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE ${`${schemas.read}\\_%`} ORDER BY nspname`.execute(database.db)
  ).rows.map((r) => r.name);

/** A shadow as a process would leave it: created, with a table, and (when `holder` is given) its lock held there. */
const shadowOf = async (kind: 'rebuild' | 'verify', holder?: pg.Client): Promise<string> => {
  const name = newShadowName(schemas.read, kind);
  await sql`CREATE SCHEMA ${sql.id(name)}`.execute(database.db);
  await sql`CREATE TABLE ${sql.id(name, 'customers')} (id int)`.execute(database.db);
  if (holder) await holder.query('SELECT pg_advisory_lock(hashtext($1))', [`crm-shadow:${name}`]);
  return name;
};

describe('shadow schemas', () => {
  it('drops the rebuild and verification shadows of dead processes, keeping those in use here or elsewhere', async () => {
    const holder = new pg.Client({ connectionString: schemas.url });
    await holder.connect();
    try {
      const deadRebuild = await shadowOf('rebuild');
      const deadVerify = await shadowOf('verify');
      const liveVerify = await shadowOf('verify', holder);
      const ownName = newShadowName(schemas.read, 'verify');
      const dropOwn = await claimShadow(database.db, ownName);
      // Not a shadow: named like one, but not with 8 hex digits at the end.
      const lookalike = `${schemas.read}_verify_notmine`;
      await sql`CREATE SCHEMA ${sql.id(lookalike)}`.execute(database.db);

      const dropped = await dropAbandonedShadows(database.db, schemas.read, { pool: true });
      expect(dropped.sort()).toEqual([deadRebuild, deadVerify].sort());
      expect(await shadowsNow()).toEqual([liveVerify, ownName, lookalike].sort());

      await dropOwn();
      await holder.query('SELECT pg_advisory_unlock_all()');
      expect(await dropAbandonedShadows(database.db, schemas.read, { pool: true })).toEqual([liveVerify]);
      expect(await shadowsNow()).toEqual([lookalike]);
    } finally {
      await holder.end();
    }
  });

  it('gives shadow names that fit PostgreSQL identifiers, however long the read schema', () => {
    const long = 'r'.repeat(63);
    for (const kind of ['rebuild', 'verify'] as const) expect(newShadowName(long, kind).length).toBeLessThanOrEqual(63);
  });
});
