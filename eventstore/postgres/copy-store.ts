import { sql, type QueryExecutorProvider } from 'kysely';
import { qualifiedName, quoteIdentifier } from '../../shared/sql.ts';
import { EventStoreError } from '../errors.ts';
import type { SqlDatabase } from './database.ts';
import { ORDINAL_BITS } from './migrations.ts';

/**
 * Copies an event store's schema from one database to another, row for row: the embedded store
 * (PGlite, PostgreSQL 17, whose files no pg_dump of an older server reads) to a PostgreSQL server
 * (`crm move-store`). Every table of the schema is copied as it is stored (positions, event ids,
 * record times, hashes and seals, API keys, idempotency keys, customer data keys, sequences); each
 * column travels as its text form and is cast back to its type on the target, which PostgreSQL
 * reads back exactly (a timestamp keeps its microseconds, a jsonb number its digits, bytea its
 * bytes), where values passed through JavaScript would not. Read models are not copied: the target
 * builds them from the events.
 */

/** Stopped on a signal before the copy committed: the target holds none of it. */
export class CopyInterrupted extends EventStoreError {}

/** The target's tables got rows while the copy waited for their lock: another process writes there. */
export class TargetNotEmpty extends EventStoreError {
  constructor(readonly tables: string[]) {
    super(`the target's tables ${tables.join(', ')} hold rows`);
  }
}

/** The migrations' bookkeeping: the target records its own run of the same migrations; the copy brings the source's dates. */
export const MIGRATIONS_TABLE = 'eventstore_migration';

export interface StoreTable {
  name: string;
  /** In the table's column order, each with its type as `format_type` spells it (the cast back from text). */
  columns: { name: string; type: string }[];
  /** The primary key's columns: the order rows are read in. */
  key: string[];
}

/** The tables and sequences of `schema`, as the catalogue of that database has them. */
export async function storeTables(db: QueryExecutorProvider, schema: string): Promise<{ tables: StoreTable[]; sequences: string[] }> {
  const namespace = quoteIdentifier(schema);
  const { rows } = await sql<{ table: string; column: string; type: string; key: boolean }>`
    SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
           coalesce(a.attnum = ANY (i.indkey::int2[]), false) AS key
      FROM pg_class c
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
     WHERE c.relnamespace = to_regnamespace(${namespace}) AND c.relkind IN ('r', 'p')
     ORDER BY c.relname, a.attnum`.execute(db);
  const tables = new Map<string, StoreTable>();
  for (const row of rows) {
    const table = tables.get(row.table) ?? { name: row.table, columns: [], key: [] };
    tables.set(row.table, table);
    table.columns.push({ name: row.column, type: row.type });
    if (row.key) table.key.push(row.column);
  }
  const { rows: sequences } = await sql<{ name: string }>`
    SELECT relname AS name FROM pg_class WHERE relnamespace = to_regnamespace(${namespace}) AND relkind = 'S' ORDER BY relname`.execute(db);
  return { tables: [...tables.values()], sequences: sequences.map((s) => s.name) };
}

/** Rows of each table. */
export async function countRows(db: QueryExecutorProvider, schema: string, tables: readonly StoreTable[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const table of tables) {
    const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql.raw(qualifiedName(schema, table.name))}`.execute(db);
    counts.set(table.name, Number(rows[0]!.n));
  }
  return counts;
}

/** The tables of `schema` that hold rows, but for the migrations' bookkeeping (which a new store has too). */
export async function tablesWithRows(db: QueryExecutorProvider, schema: string, tables: readonly StoreTable[]): Promise<string[]> {
  const held: string[] = [];
  for (const table of tables) {
    if (table.name === MIGRATIONS_TABLE) continue;
    const { rows } = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql.raw(qualifiedName(schema, table.name))}) AS any`.execute(db);
    if (rows[0]?.any) held.push(table.name);
  }
  return held;
}

/** The transaction id the newest stored event's position comes from (position = id << ORDINAL_BITS), or -1 with no events. */
export async function newestEventTransaction(db: QueryExecutorProvider, schema: string): Promise<bigint> {
  const { rows } = await sql<{ head: string | null }>`SELECT max(position)::text AS head FROM ${sql.id(schema, 'events')}`.execute(db);
  const head = rows[0]?.head;
  return head == null ? -1n : BigInt(head) >> BigInt(ORDINAL_BITS);
}

/** The transaction id the server gives next. */
const nextTransactionId = async (db: QueryExecutorProvider): Promise<bigint> => {
  const { rows } = await sql<{ next: string }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next`.execute(db);
  return BigInt(rows[0]!.next);
};

/** Transaction ids one statement uses up: about two seconds on the 2-core machine the tests run on. */
const IDS_A_STATEMENT = 100_000;

/**
 * Moves a PostgreSQL server's transaction counter past `transactionId`, by committing empty
 * transactions that each take an id (55,000 a second measured), and returns how many it used.
 * A position is `transaction id << ORDINAL_BITS`: events copied from a store whose counter ran
 * further than the target server's would lie above the positions the server gives new events, which
 * the store refuses at start (`StoreDoesNotFitServer`). The counter is the whole server's; using up
 * ids harms nothing but brings its next freeze (anti-wraparound vacuum) that much closer, as any
 * writes would. Commits are not waited for on disk (synchronous_commit off): the copy's own commit,
 * which follows, makes them durable with it.
 */
export async function advanceTransactionIds(
  database: SqlDatabase,
  transactionId: bigint,
  options: { onProgress?: (used: number, needed: number) => void; signal?: AbortSignal } = {},
): Promise<number> {
  return database.db.connection().execute(async (connection) => {
    let used = 0;
    await sql`SET synchronous_commit = off`.execute(connection);
    try {
      for (;;) {
        const needed = Number(transactionId + 1n - (await nextTransactionId(connection)));
        if (needed <= 0) return used;
        if (options.signal?.aborted) throw new CopyInterrupted("interrupted while moving the target server's transaction counter on");
        options.onProgress?.(used, used + needed);
        const step = Math.min(needed, IDS_A_STATEMENT);
        // A DO block may commit (PostgreSQL 11 and later) when run on its own, outside a transaction.
        await sql.raw(`DO $$ BEGIN FOR i IN 1..${step} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`).execute(connection);
        used += step;
      }
    } finally {
      await sql`RESET synchronous_commit`.execute(connection);
    }
  });
}

export interface CopyOptions {
  /** Rows read and written at a time (default 2,000): what the copy holds in memory, whatever the store's size. */
  batchRows?: number;
  /** After each batch: the table and the rows it added. */
  onRows?: (table: string, rows: number) => void;
  /** Checked between batches: the copy stops with `CopyInterrupted`, its transaction rolled back. */
  signal?: AbortSignal;
}

/**
 * Copies every table of `tables` from `source` into `target` (where `schema` has the same tables,
 * made by the same migrations) in one transaction of the target, then sets each sequence to where
 * the source's stands. The tables are locked against writers while it runs, and must be empty then
 * (the migrations' bookkeeping is replaced by the source's). The source is read through a cursor in
 * one read-only transaction, a batch at a time.
 */
export async function copyStoreTables(
  source: SqlDatabase,
  target: SqlDatabase,
  schema: string,
  tables: readonly StoreTable[],
  sequences: readonly string[],
  options: CopyOptions = {},
): Promise<void> {
  const batchRows = options.batchRows ?? 2_000;
  await target.db.transaction().execute(async (into) => {
    await sql.raw(`LOCK TABLE ${tables.map((t) => qualifiedName(schema, t.name)).join(', ')} IN EXCLUSIVE MODE`).execute(into);
    // Checked again under the lock: a process started on the target meanwhile may have written.
    const held = await tablesWithRows(into, schema, tables);
    if (held.length > 0) throw new TargetNotEmpty(held);
    await sql`DELETE FROM ${sql.id(schema, MIGRATIONS_TABLE)}`.execute(into);
    for (const table of tables) await copyTable(source, into, schema, table, batchRows, options);
    for (const sequence of sequences) {
      const { rows } = await sql<{ last: string; called: boolean }>`
        SELECT last_value::text AS last, is_called AS called FROM ${sql.id(schema, sequence)}`.execute(source.db);
      await sql`SELECT setval(${qualifiedName(schema, sequence)}, ${rows[0]!.last}::bigint, ${rows[0]!.called})`.execute(into);
    }
  });
}

async function copyTable(
  source: SqlDatabase,
  into: QueryExecutorProvider,
  schema: string,
  table: StoreTable,
  batchRows: number,
  options: CopyOptions,
): Promise<void> {
  const name = qualifiedName(schema, table.name);
  const columns = table.columns.map((c) => quoteIdentifier(c.name));
  const aliases = table.columns.map((_, i) => `c${i}`);
  const asText = table.columns.map((c, i) => `${quoteIdentifier(c.name)}::text AS ${aliases[i]}`).join(', ');
  const order = (table.key.length > 0 ? table.key : table.columns.map((c) => c.name)).map(quoteIdentifier).join(', ');
  const casts = table.columns.map((c, i) => `u.${aliases[i]}::${c.type}`).join(', ');
  await source.db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute(async (from) => {
      await sql.raw(`DECLARE crm_copy_store NO SCROLL CURSOR FOR SELECT ${asText} FROM ${name} ORDER BY ${order}`).execute(from);
      for (;;) {
        if (options.signal?.aborted) throw new CopyInterrupted(`interrupted while copying ${table.name}`);
        const { rows } = await sql.raw<Record<string, string | null>>(`FETCH ${batchRows} FROM crm_copy_store`).execute(from);
        if (rows.length === 0) break;
        const arrays = aliases.map((alias) => sql`${rows.map((row) => row[alias] ?? null)}::text[]`);
        await sql`INSERT INTO ${sql.raw(name)} (${sql.raw(columns.join(', '))})
          SELECT ${sql.raw(casts)} FROM unnest(${sql.join(arrays)}) AS u(${sql.raw(aliases.join(', '))})`.execute(into);
        options.onRows?.(table.name, rows.length);
        if (rows.length < batchRows) break;
      }
    });
}
