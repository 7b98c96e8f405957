import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, openPglite, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import {
  advanceTransactionIds,
  copyStoreTables,
  CopyInterrupted,
  countRows,
  newestEventTransaction,
  storeTables,
} from '../../eventstore/postgres/copy-store.ts';
import { StoreDoesNotFitServer } from '../../eventstore/errors.ts';
import { assertStoreFitsServer, migrateEventStore, ORDINAL_BITS } from '../../eventstore/postgres/migrations.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';

/**
 * `crm move-store`'s copy (eventstore/postgres/copy-store.ts) from the embedded engine to a server:
 * every row as stored, in the forms values pass through JavaScript badly (a timestamp's microseconds,
 * a jsonb number's digits, bytes, arrays, NULLs), and the sequences where the source's stand.
 */
const schemas = testSchemas('copy_store');
const schema = schemas.events;
let source: SqlDatabase;
let target: SqlDatabase;

/** The transaction id the server gives next. */
const nextTransactionId = async (database: SqlDatabase): Promise<bigint> => {
  const { rows } = await sql<{ next: string }>`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next`.execute(database.db);
  return BigInt(rows[0]!.next);
};

/** Every row of every table of the schema in its text form, by table: what must be alike on both sides. */
const contents = async (database: SqlDatabase): Promise<Record<string, string[]>> => {
  const { tables } = await storeTables(database.db, schema);
  const all: Record<string, string[]> = {};
  for (const table of tables) {
    const { rows } = await sql<{ row: string }>`SELECT t::text AS row FROM ${sql.id(schema, table.name)} t ORDER BY 1`.execute(database.db);
    all[table.name] = rows.map((r) => r.row);
  }
  return all;
};

beforeAll(async () => {
  target = connectPostgres(TEST_DATABASE_URL, { max: 2 });
  await migrateEventStore(target.db, schema);
  // Positions from transaction ids the server has not reached: a store whose counter ran further.
  const ahead = (await nextTransactionId(target)) + 100_000n;
  const position = (ordinal: bigint) => ((ahead + ordinal) << BigInt(ORDINAL_BITS)).toString();
  source = await openPglite();
  await migrateEventStore(source.db, schema);
  const s = (table: string) => sql.id(schema, table);
  await sql`INSERT INTO ${s('events')} (position, transaction_id, stream, revision, event_id, type, data, metadata, recorded_at, hash)
    VALUES (${position(0n)}::bigint, '1', 'customer-1', 0, '2f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11', 'CustomerRegistered',
            '{"amount": 12345678901234567890.123456789, "name": "Ädä \\u00e9 \\"quoted\\"", "tags": [], "none": null}',
            '{"actor": "api-key:1"}', '2026-12-08 10:11:12.345+00', '\\x00ff10'),
           (${position(1n)}::bigint, '2', 'customer-1', 1, '3f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11', 'PurchaseRecorded', '{"amount": 0.1}', '{}',
            '2026-12-08 10:11:13.001+00', '\\xdeadbeef')`.execute(source.db);
  await sql`INSERT INTO ${s('idempotency_keys')} (api_key_id, key, fingerprint, route, created_at)
    VALUES ('k1', 'signup-42', 'f', 'POST /customers', '2026-12-08 10:11:12.123456+00')`.execute(source.db);
  await sql`INSERT INTO ${s('webhook_subscriptions')} (id, url, events, role, secret, description)
    VALUES ('4f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11', 'https://hooks.example.com/crm', '{CustomerRegistered,"with space"}', 'admin', 's', NULL)`.execute(
    source.db,
  );
  await sql`INSERT INTO ${s('webhook_deliveries')} (subscription_id, event_id, position, attempt, latency_ms)
    VALUES ('4f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11', '2f1c0a4e-7b5d-4c1a-9e3f-0d2b6a8c4e11', 1048576, 1, 0.30000000000000004)`.execute(source.db);
  // Deliveries are pruned as they go: the sequence stands past the rows left.
  await sql`SELECT setval(${`"${schema}".webhook_deliveries_id_seq`}, 41)`.execute(source.db);
}, 240_000);

afterAll(async () => {
  await source?.close();
  await target?.close();
  await schemas.dropSchemas();
});

describe('copying an event store from the embedded engine to a PostgreSQL server', () => {
  it('rolls back when interrupted, leaving the target empty', async () => {
    const { tables, sequences } = await storeTables(source.db, schema);
    const stop = new AbortController();
    stop.abort();
    await expect(copyStoreTables(source, target, schema, tables, sequences, { signal: stop.signal })).rejects.toBeInstanceOf(CopyInterrupted);
    const counts = await countRows(target.db, schema, tables);
    expect([...counts].filter(([name, n]) => name !== 'eventstore_migration' && n > 0)).toEqual([]);
  });

  it('copies every row exactly, in batches, and sets the sequences where the source has them', async () => {
    const { tables, sequences } = await storeTables(source.db, schema);
    expect(sequences).toEqual(['webhook_deliveries_id_seq']);
    const batches: string[] = [];
    await copyStoreTables(source, target, schema, tables, sequences, { batchRows: 1, onRows: (table) => batches.push(table) });
    expect(batches.filter((table) => table === 'events')).toHaveLength(2);
    expect(await contents(target)).toEqual(await contents(source));
    const { rows } = await sql<{ id: string }>`SELECT nextval(${`"${schema}".webhook_deliveries_id_seq`})::text AS id`.execute(target.db);
    expect(rows[0]!.id).toBe('42');
  });

  it("moves the server's transaction counter past the copied positions, so that new events come after them", async () => {
    // As copied, new events would get lower positions than the stored ones: refused at start.
    await expect(assertStoreFitsServer(target.db, schema)).rejects.toBeInstanceOf(StoreDoesNotFitServer);
    const newest = await newestEventTransaction(source.db, schema);
    expect(await advanceTransactionIds(target, newest)).toBeGreaterThan(0);
    expect(await nextTransactionId(target)).toBeGreaterThan(newest);
    await assertStoreFitsServer(target.db, schema);
    // Already past: nothing to use.
    expect(await advanceTransactionIds(target, newest)).toBe(0);
  });
});
