import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { openPglite, type SqlDatabase } from '../../eventstore/postgres/database.ts';

/**
 * The embedded PostgreSQL handle itself (`openPglite`), apart from the event store's contract in
 * pglite.test.ts: its kind, its statements, LISTEN and its end, closing twice and a folder it cannot
 * open. One in-memory instance for the file (each costs seconds and about 1 GB).
 *
 * The file runs west of UTC: PGlite takes its session's time zone from the process's when it starts,
 * and Node reads `process.env.TZ` whenever it is set (test/cli/embedded-time-zone.test.ts starts a
 * whole `crm serve` in such a zone).
 */

let database: SqlDatabase;
const zoneBefore = process.env.TZ;

beforeAll(async () => {
  process.env.TZ = 'Pacific/Pago_Pago';
  database = await openPglite();
});

afterAll(async () => {
  await database?.close();
  if (zoneBefore === undefined) delete process.env.TZ;
  else process.env.TZ = zoneBefore;
});

describe('openPglite', () => {
  it('is an in-memory PGlite handle that runs statements', async () => {
    expect(database.kind).toBe('pglite');
    const { rows } = await sql<{ answer: number }>`select 6 * 7 as answer`.execute(database.db);
    expect(rows).toEqual([{ answer: 42 }]);
  });

  it('reads a date as its day and writes times in UTC, as a session on a PostgreSQL server does, whatever the process time zone', async () => {
    expect(new Date('2024-02-29T00:00:00Z').getDate()).toBe(28);
    const { rows } = await sql<{ day: unknown; zone: string; written: string }>`
      SELECT date '2024-02-29' AS day, current_setting('TimeZone') AS zone, to_jsonb(timestamptz '2026-03-01T09:00:00Z')::text AS written`.execute(database.db);
    // PGlite's own parser made the day a Date at UTC midnight, 2024-02-28 to the local getters; its
    // zone was the process's, Etc/GMT+11 here, and the export wrote "2026-02-28T22:00:00-11:00".
    expect(rows[0]).toEqual({ day: '2024-02-29', zone: 'UTC', written: '"2026-03-01T09:00:00+00:00"' });
  });

  it('gives the event loop turns while queries run back to back (a job reading page after page held every request)', async () => {
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 5);
    try {
      const started = performance.now();
      let queries = 0;
      while (performance.now() - started < 300) {
        await sql`select 1`.execute(database.db);
        queries += 1;
      }
      expect(queries).toBeGreaterThan(10);
      // A turn once queries have run 20 ms: about 15 in 300 ms (none before, the timer never ran).
      expect(ticks).toBeGreaterThanOrEqual(5);
    } finally {
      clearInterval(timer);
    }
  });

  it('calls a listener for each NOTIFY on its channel until it stops listening', async () => {
    let heard = 0;
    const unlisten = await database.listen('customer_changes', () => {
      heard += 1;
    });
    await sql`notify customer_changes`.execute(database.db);
    await sql`notify other_channel`.execute(database.db);
    await sql`notify customer_changes`.execute(database.db);
    // PGlite hands notifications over when the statement that raised them returns.
    await sql`select 1`.execute(database.db);
    expect(heard).toBe(2);
    await unlisten();
    await sql`notify customer_changes`.execute(database.db);
    await sql`select 1`.execute(database.db);
    expect(heard).toBe(2);
  });

  it('reports a folder it cannot open as the event store being unavailable, naming the folder', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'crm-pglite-')), 'not-a-folder');
    writeFileSync(file, 'a file where the data folder should be');
    const dataDir = join(file, 'data');
    const error = await openPglite(dataDir).then(
      () => new Error('expected openPglite to fail'),
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(EventStoreUnavailable);
    const message = (error as Error).message;
    expect(message).toContain(`Cannot open the embedded PostgreSQL (PGlite) in ${dataDir}: `);
    expect(message).toContain('Check that the folder is writable and not used by another process.');
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect(message).toContain(((error as Error).cause as Error).message);
  });
  // Last: it closes the file's instance (afterAll's close is then the second one).
  it('closes its engine once: later statements fail, a second close and a late unlisten do not', async () => {
    const unlisten = await database.listen('customer_changes', () => undefined);
    await database.close();
    await expect(sql`select 1`.execute(database.db)).rejects.toThrow();
    await expect(database.close()).resolves.toBeUndefined();
    await expect(unlisten()).resolves.toBeUndefined();
  });
});
