import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import type { EventStore, ExpectedRevision, NewEvent } from '../../eventstore/contract.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { verifyStreamChains } from '../../eventstore/postgres/chain.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { testSchemas } from '../support/postgres.ts';
import { eventStoreContract, newEvent } from './contract.ts';

const schemas = testSchemas('es_pg');
// 16 slow writers hold a connection each while they pause; the subscriber needs one more.
const database = connectPostgres(schemas.url, { max: 24 });
const storeSchemas = new WeakMap<EventStore, string>();
let created = 0;

const createStore = async (options: { pollInterval?: number } = {}): Promise<EventStore> => {
  const schema = `${schemas.events}_${(created += 1)}`;
  const store = await createPostgresEventStore(database, { schema, ...options });
  storeSchemas.set(store, schema);
  return store;
};

const expectedCode = (expected: ExpectedRevision): number => (typeof expected === 'number' ? expected : { no_stream: -1, any: -2, exists: -3 }[expected]);

/** Calls the append function inside an explicit transaction that pauses a few ms before committing. */
const slowAppend = async (store: EventStore, stream: string, event: NewEvent, expected: ExpectedRevision): Promise<void> => {
  const schema = sql.id(storeSchemas.get(store)!);
  await database.db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ outcome: string }>`
      SELECT outcome FROM ${schema}.append_events(${stream}, ${expectedCode(expected)}::bigint,
        ARRAY[${event.id}]::uuid[], ARRAY[${event.type}]::text[],
        ARRAY[${JSON.stringify(event.data)}]::jsonb[], ARRAY[${JSON.stringify(event.metadata)}]::jsonb[])`.execute(trx);
    if (rows[0]?.outcome !== 'appended') throw new Error(`append refused: ${rows[0]?.outcome}`);
    await sql`SELECT pg_sleep(${Math.random() * 0.004})`.execute(trx);
  });
};

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

eventStoreContract({
  name: 'postgres',
  createStore: () => createStore(),
  slowAppend,
  // A mutation run (mutation/run.ts sets MUTATION_TESTS) re-runs this for every mutant of the
  // subscription: a smaller stress keeps a pass in seconds; the full one runs with the suite.
  concurrency: process.env.MUTATION_TESTS ? { writers: 4, appendsPerWriter: 100, streams: 8 } : { writers: 16, appendsPerWriter: 1_000, streams: 32 },
});

describe('postgres engine specifics', () => {
  it('never lets a subscriber skip a transaction that commits late with a lower position', async () => {
    const store = await createStore();
    const schema = sql.id(storeSchemas.get(store)!);
    const early = newEvent('Early');
    let releaseEarly!: () => void;
    const earlyMayCommit = new Promise<void>((resolve) => (releaseEarly = resolve));
    let earlyAppended!: () => void;
    const earlyIsInside = new Promise<void>((resolve) => (earlyAppended = resolve));
    // The early transaction takes its position first and commits last.
    const earlyTransaction = database.db.transaction().execute(async (trx) => {
      await sql`SELECT outcome FROM ${schema}.append_events('slow-1', -2, ARRAY[${early.id}]::uuid[], ARRAY['Early']::text[],
        ARRAY['{}']::jsonb[], ARRAY['{}']::jsonb[])`.execute(trx);
      earlyAppended();
      await earlyMayCommit;
    });
    await earlyIsInside;
    const late = await store.appendToStream('fast-1', [newEvent('Late')]);

    // While the early transaction runs, the late event is committed but not yet final: nobody reads it.
    expect(await store.readAll()).toEqual([]);
    expect(await store.headPosition()).toBe(0n);
    expect((await store.readStream('fast-1')).map((e) => e.type)).toEqual(['Late']);

    const seen: string[] = [];
    const subscription = store.subscribeToAll().subscribe((m) => {
      if (m.kind === 'event') seen.push(m.event.type);
    });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(seen).toEqual([]);
    releaseEarly();
    await earlyTransaction;
    const deadline = Date.now() + 10_000;
    while (seen.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    subscription.unsubscribe();
    expect(seen).toEqual(['Early', 'Late']);
    const feed = await store.readAll();
    expect(feed[0]!.position).toBeLessThan(late.position);
    await store.close();
  });

  it('lets reads after an append wait for an unrelated older transaction instead of missing the event', async () => {
    const store = await createStore();
    let finishUnrelated!: () => void;
    const unrelatedMayEnd = new Promise<void>((resolve) => (finishUnrelated = resolve));
    let unrelatedStarted!: () => void;
    const started = new Promise<void>((resolve) => (unrelatedStarted = resolve));
    // Another application's transaction on the same server holds the snapshot's xmin back.
    const unrelated = database.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_current_xact_id()`.execute(trx);
      unrelatedStarted();
      await unrelatedMayEnd;
    });
    await started;
    const appended = await store.appendToStream('customer-1', [newEvent('Registered')]);
    const messages: string[] = [];
    const subscription = store.subscribeToAll().subscribe((m) => messages.push(m.kind === 'event' ? m.event.type : 'caughtUp'));
    const read = store.readAll();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Neither the read nor the caught-up signal may claim the feed ends before the committed event.
    expect(messages).toEqual([]);
    finishUnrelated();
    await unrelated;
    expect((await read).map((e) => e.position)).toEqual([appended.position]);
    const deadline = Date.now() + 10_000;
    while (messages.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    subscription.unsubscribe();
    expect(messages).toEqual(['Registered', 'caughtUp']);
    await store.close();
  });

  it('wakes a subscriber on another connection pool through LISTEN/NOTIFY', async () => {
    const writer = await createStore();
    const schema = storeSchemas.get(writer)!;
    const otherDatabase = connectPostgres(schemas.url, { max: 2 });
    // Polling once a minute: only a notification can deliver the event within the test's time.
    const reader = await createPostgresEventStore(otherDatabase, { schema, pollInterval: 60_000 });
    let listening!: () => void;
    const caughtUp = new Promise<void>((resolve) => (listening = resolve));
    const received = new Promise<string>((resolve) => {
      const subscription = reader.subscribeToAll().subscribe((m) => {
        // The subscription registers its LISTEN before its first read, so caughtUp means it listens.
        if (m.kind === 'caughtUp') listening();
        if (m.kind === 'event') {
          subscription.unsubscribe();
          resolve(m.event.type);
        }
      });
    });
    await caughtUp;
    await writer.appendToStream('customer-1', [newEvent('Notified')]);
    expect(await received).toBe('Notified');
    await reader.close();
    await otherDatabase.close();
    await writer.close();
  }, 20_000);

  it('verifies hash chains and catches an edited, a deleted and a forged event', async () => {
    const store = await createStore();
    const schema = storeSchemas.get(store)!;
    const s = sql.id(schema);
    await store.appendToStream('customer-1', [newEvent(), newEvent(), newEvent()]);
    await store.appendToStream('customer-2', [newEvent()]);
    await store.appendToStream('customer-1', [newEvent()]);
    const progress: number[] = [];
    expect(await verifyStreamChains(database, { schema, onProgress: (n) => progress.push(n) })).toEqual({ ok: true, checked: 5 });
    expect(progress.at(-1)).toBe(5);

    await sql`UPDATE ${s}.events SET data = '{"name":"Eve"}' WHERE stream = 'customer-1' AND revision = 1`.execute(database.db);
    const edited = await verifyStreamChains(database, { schema });
    expect(edited.ok).toBe(false);
    expect(edited.firstBroken).toMatchObject({ stream: 'customer-1', revision: 1, reason: expect.stringContaining('hash') });

    const otherStore = await createStore();
    const other = storeSchemas.get(otherStore)!;
    await otherStore.appendToStream('deal-1', [newEvent(), newEvent()]);
    await sql`DELETE FROM ${sql.id(other)}.events WHERE stream = 'deal-1' AND revision = 1`.execute(database.db);
    expect((await verifyStreamChains(database, { schema: other })).firstBroken).toMatchObject({ stream: 'deal-1', reason: expect.stringContaining('head') });

    const third = await createStore();
    const thirdSchema = storeSchemas.get(third)!;
    await third.appendToStream('deal-1', [newEvent()]);
    await sql`INSERT INTO ${sql.id(thirdSchema)}.events (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
      VALUES (1, 'deal-1', 1, gen_random_uuid(), 'Forged', '{}', '{}', now(), '\\x00')`.execute(database.db);
    expect((await verifyStreamChains(database, { schema: thirdSchema })).firstBroken).toMatchObject({ stream: 'deal-1' });
    await Promise.all([store.close(), otherStore.close(), third.close()]);
  });

  it('chains the hashes of multi-stream appends like single appends, and two overlapping batches neither deadlock nor interleave a stream', async () => {
    const store = await createStore();
    const schema = storeSchemas.get(store)!;
    await store.appendToStream('customer-1', [newEvent()]);
    // Streams with one and with several events, listed out of key order; one already has a chain.
    await store.appendToStreams([
      { stream: 'customer-3', events: [newEvent(), newEvent(), newEvent()], expectedRevision: 'no_stream' },
      { stream: 'customer-1', events: [newEvent(), newEvent()], expectedRevision: 0 },
      { stream: 'customer-2', events: [newEvent()], expectedRevision: 'no_stream' },
    ]);
    // The same streams from two batches at once, in opposite orders: the locks serialise them.
    const streams = Array.from({ length: 40 }, (_, i) => `deal-${i}`);
    await Promise.all(
      [streams, [...streams].reverse()].map((order) => store.appendToStreams(order.map((stream) => ({ stream, events: [newEvent(), newEvent()] })))),
    );
    expect(await verifyStreamChains(database, { schema })).toEqual({ ok: true, checked: 7 + 40 * 4 });
    const { rows } = await sql<{ stream: string; revisions: string[] }>`
      SELECT stream, array_agg(revision::text ORDER BY position) AS revisions FROM ${sql.id(schema)}.events GROUP BY stream`.execute(database.db);
    // Revision order is position order in every stream.
    for (const row of rows) expect(row.revisions).toEqual(row.revisions.map((_, i) => String(i)));
    await store.close();
  });

  it('reports an unreachable server as EventStoreUnavailable naming what to check', async () => {
    const unreachable = connectPostgres('postgres://postgres@127.0.0.1:1/test');
    const error = await createPostgresEventStore(unreachable, { schema: 'unused' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EventStoreUnavailable);
    expect((error as Error).message).toMatch(/DATABASE_URL/);
    expect((error as Error).message).toMatch(/PostgreSQL is running/);
    await unreachable.close();
  });
});
