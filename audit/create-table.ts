import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * Creates a table that may be created by several processes at the same moment, outside the start-up
 * lock (the chain sealer of each projection worker, the first verification of each API replica).
 * `CREATE TABLE IF NOT EXISTS` is not atomic in PostgreSQL: two sessions can both find the table
 * missing, and the later fails with a duplicate key on pg_type. A transaction-scoped advisory lock
 * named after the table makes them take turns; the later one then finds the table and does nothing.
 */
export async function createTableOnce(db: Kysely<unknown>, schema: string, table: string, ...ddl: RawBuilder<unknown>[]): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`crm.create-table:${schema}.${table}`}))`.execute(trx);
    for (const statement of ddl) await statement.execute(trx);
  });
}
