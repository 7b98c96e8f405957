import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { migrateVerificationJobs } from '../../audit/verification-jobs.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * Two processes starting at once (e.g. two API replicas receiving their first verification request
 * after the start-up lock is released) must not fail on `CREATE TABLE IF NOT EXISTS`, which
 * PostgreSQL does not make atomic (duplicate key on pg_type). The chain seals table is the event
 * store's migration `0019_event_chain_seals` (test/eventstore/postgres-migrations.test.ts).
 */
const schemas = testSchemas('audit_set_up_race');
const processes: SqlDatabase[] = [connectPostgres(schemas.url, { max: 1 }), connectPostgres(schemas.url, { max: 1 })];
afterAll(async () => {
  for (const database of processes) await database.close();
  await schemas.dropSchemas();
});

describe('the verification jobs table created by several processes at once', () => {
  it('is created once, without an error in either process', async () => {
    for (let round = 0; round < 20; round++) {
      const schema = `${schemas.events}_${round}`;
      await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(processes[0]!.db);
      await Promise.all(processes.map((database) => migrateVerificationJobs(database.db, schema)));
    }
    const { rows } = await sql<{ n: string }>`
      SELECT count(*)::text AS n FROM pg_tables
       WHERE starts_with(schemaname, ${schemas.events}) AND tablename = 'audit_verifications'`.execute(processes[0]!.db);
    expect(rows[0]!.n).toBe('20');
  });
});
