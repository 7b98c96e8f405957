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
 */

let database: SqlDatabase;

beforeAll(async () => {
  database = await openPglite();
});

afterAll(async () => {
  await database?.close();
});

describe('openPglite', () => {
  it('is an in-memory PGlite handle that runs statements', async () => {
    expect(database.kind).toBe('pglite');
    const { rows } = await sql<{ answer: number }>`select 6 * 7 as answer`.execute(database.db);
    expect(rows).toEqual([{ answer: 42 }]);
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
