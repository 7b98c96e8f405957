import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventStore } from '../../eventstore/contract.ts';
import { verifyStreamChains } from '../../eventstore/postgres/chain.ts';
import { openPglite, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { eventStoreContract, newEvent } from './contract.ts';

// One in-memory PGlite for the whole file (each instance costs seconds and ~1 GB); stores are isolated by schema.
let database: SqlDatabase;
let created = 0;

beforeAll(async () => {
  database = await openPglite();
});

afterAll(async () => {
  await database?.close();
});

const createStore = (): Promise<EventStore> => createPostgresEventStore(database, { schema: `events_${(created += 1)}` });

eventStoreContract({
  name: 'pglite',
  createStore,
  // PGlite has a single connection: transactions never overlap, so the writers interleave whole appends.
  concurrency: { writers: 4, appendsPerWriter: 150, streams: 8 },
});

describe('pglite engine specifics', () => {
  it('runs the same engine code, reports its engine name and keeps verifiable chains', async () => {
    const store = await createStore();
    expect(store.engine).toBe('pglite');
    await store.appendToStream('customer-1', [newEvent(), newEvent()]);
    await store.appendToStream('customer-1', [newEvent()], { expectedRevision: 1 });
    // Multi-stream appends extend the same chains (including the stream written singly before).
    await store.appendToStreams([
      { stream: 'customer-1', events: [newEvent(), newEvent()], expectedRevision: 2 },
      { stream: 'customer-2', events: [newEvent()], expectedRevision: 'no_stream' },
    ]);
    await store.appendToStream('customer-2', [newEvent()], { expectedRevision: 0 });
    expect(await verifyStreamChains(database, { schema: `events_${created}` })).toEqual({ ok: true, checked: 7 });
    await store.close();
  });

  it('keeps saved states of streams: up to the stream head, in one format, the newest revision', async () => {
    const store = await createStore();
    await store.appendToStream('customer-1', [newEvent(), newEvent(), newEvent()]);
    const snapshots = store.snapshots!;
    await snapshots.save([
      { stream: 'customer-1', revision: 2, format: 'f1', state: 'at 2' },
      { stream: 'customer-2', revision: 0, format: 'f1', state: 'no events' },
    ]);
    await snapshots.save([{ stream: 'customer-1', revision: 1, format: 'f1', state: 'older' }]);
    const loaded = await snapshots.load(['customer-1', 'customer-2', 'customer-3'], 'f1');
    expect([...loaded.values()]).toEqual([{ stream: 'customer-1', revision: 2, format: 'f1', state: 'at 2' }]);
    expect(await snapshots.load(['customer-1'], 'f2')).toEqual(new Map());
    await store.close();
  });
});
