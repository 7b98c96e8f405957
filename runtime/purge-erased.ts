import { sql, type Kysely } from 'kysely';
import { retryWhileHeld } from '../projections/lock-holders.ts';
import { PERSONAL_COLUMNS } from '../projections/read-model-copies.ts';
import { qualifiedName } from '../shared/sql.ts';

/**
 * A forget erases a customer's personal data in the rows, but PostgreSQL keeps each row's older
 * versions in the table and index files until the space is written over: a plain VACUUM only marks it
 * free (the names and addresses were still readable in the files after it, B-tree separator keys
 * included), and the embedded database runs no autovacuum at all. `VACUUM FULL` writes each table and
 * its indexes anew, holding only the live rows, and the old files are truncated when it commits.
 */

/** A table that holds, or held before a forget, a customer's personal data (or the keys to it). */
export interface ErasableTable {
  schema: string;
  table: string;
}

/** The read-model tables that hold personal data: PERSONAL_COLUMNS's, and the match keys of likely duplicates. */
const READ_MODEL_TABLES = [...Object.keys(PERSONAL_COLUMNS), 'customer_duplicate_groups'];

/**
 * Those that exist: the data keys and address index (events schema), the read models' personal tables
 * in the live schema and in every registered copy (`crm replay`), and the HTTP import jobs and their
 * bad rows, which quote refused cells.
 */
export async function erasableTables(db: Kysely<unknown>, schemas: { events: string; read: string }): Promise<ErasableTable[]> {
  const { rows: registry } =
    await sql`SELECT 1 FROM information_schema.tables WHERE table_schema = ${schemas.read} AND table_name = 'read_model_copies'`.execute(db);
  const { rows: copies } =
    registry.length > 0
      ? await sql<{ schema_name: string }>`SELECT schema_name FROM ${sql.id(schemas.read, 'read_model_copies')} ORDER BY schema_name`.execute(db)
      : { rows: [] };
  const wanted: ErasableTable[] = [
    { schema: schemas.events, table: 'customer_keys' },
    { schema: schemas.events, table: 'customer_email_index' },
    ...[schemas.read, ...copies.map((c) => c.schema_name)].flatMap((schema) => READ_MODEL_TABLES.map((table) => ({ schema, table }))),
    { schema: schemas.read, table: 'import_job_rejected_rows' },
    // Jobs recorded the cells of a file's first line as columns not read (a file without a header row).
    { schema: schemas.read, table: 'import_jobs' },
  ];
  const { rows } = await sql<ErasableTable>`
    SELECT table_schema AS schema, table_name AS "table" FROM information_schema.tables
     WHERE table_type = 'BASE TABLE' AND (table_schema, table_name) IN (SELECT * FROM unnest(${wanted.map((t) => t.schema)}::text[], ${wanted.map((t) => t.table)}::text[]))`.execute(
    db,
  );
  const found = new Set(rows.map((r) => `${r.schema}.${r.table}`));
  return wanted.filter((t) => found.has(`${t.schema}.${t.table}`));
}

/** The table's size with its indexes and TOAST, in bytes. */
const sizeOf = async (db: Kysely<unknown>, t: ErasableTable): Promise<number> => {
  const { rows } = await sql<{ bytes: string }>`SELECT pg_total_relation_size(c.oid)::text AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${t.schema} AND c.relname = ${t.table}`.execute(db);
  return Number(rows[0]!.bytes);
};

/** How long a table held by other sessions (a BI tool's open transaction, a long report) is tried again. */
export const REWRITE_LOCK_BOUND_MS = 60_000;

/**
 * Writes the table and its indexes anew, live rows only; readers and writers of the table wait
 * meanwhile. Each try waits for the table's lock only as long as the connection's lock_timeout, so
 * the CRM's own reads queue behind it that long at most; a table held past the bound fails naming
 * the sessions that hold it, where it used to say that the database was not available.
 */
export async function rewriteTable(
  db: Kysely<unknown>,
  t: ErasableTable,
  boundMs = REWRITE_LOCK_BOUND_MS,
): Promise<{ bytesBefore: number; bytesAfter: number }> {
  const bytesBefore = await sizeOf(db, t);
  await retryWhileHeld(db, () => sql`VACUUM (FULL) ${sql.id(t.schema, t.table)}`.execute(db), {
    what: `write ${t.schema}.${t.table} anew`,
    left: 'the tables written before it are done, it and the ones after it are as they were',
    on: { relations: [qualifiedName(t.schema, t.table)] },
    boundMs,
  });
  return { bytesBefore, bytesAfter: await sizeOf(db, t) };
}
