import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordedEvent } from '../../eventstore/contract.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { applyBatch, decodeBatch, type ApplyOptions, type BatchItem, type EventCodec } from '../../projections/apply-batch.ts';
import { CHECKPOINT_TABLE, clearFailure, ensureCheckpoint, markFailed, migrateCheckpoints, readCheckpoints } from '../../projections/checkpoints.ts';
import { CheckpointMoved, PoisonEvent } from '../../projections/errors.ts';
import { LeaseLost } from '../../projections/leases.ts';
import type { ProjectedEvent, Projection } from '../../projections/projection.ts';
import { ensureSchema } from '../../shared/sql.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { countTurns } from '../support/turns.ts';
import { projectedOf } from './scripted-runner.ts';

/**
 * The batch transaction (projections/apply-batch.ts) and its checkpoint (projections/checkpoints.ts)
 * driven directly, on events made up here: no event store, a codec that records what it is asked,
 * and a projection that writes each event it applies to a table with the event's position as primary
 * key, so that a rolled-back attempt leaves nothing and an event applied twice fails loudly.
 */

let schemas: TestSchemas;
let database: SqlDatabase;
let db: Kysely<any>;
let next = 0;

beforeAll(() => {
  schemas = testSchemas('apply_batch');
  database = connectPostgres(schemas.url, { max: 4 });
  db = database.db;
});

afterAll(async () => {
  await database?.close();
  await schemas?.dropSchemas();
});

const noLag = { eventsBehind: 0, newestRecordedAt: null };
const freshSchema = () => `${schemas.read}_${(next += 1)}`;

/** `n` recorded events at positions 1..n; `shape(i)` picks the stream and type of the i-th (1-based). */
const recorded = (n: number, shape: (i: number) => { stream?: string; type?: string; data?: unknown } = () => ({})): RecordedEvent[] =>
  Array.from({ length: n }, (_, k) => {
    const i = k + 1;
    const { stream = `customer-c${i}`, type = 'CustomerTagged', data = { customerId: `c${i}` } } = shape(i);
    return { id: `e${i}`, type, data, metadata: {}, stream, revision: 0, position: BigInt(i), recordedAt: new Date(0) };
  });

/** Decoded items, as `decodeBatch` hands them to `applyBatch`. */
const itemsOf = (events: RecordedEvent[]): BatchItem[] => events.map((r) => ({ recorded: r, projected: projectedOf(r) }));

/** A codec that decodes by copying, logs each start, end and eviction, and can be told to fail on an event. */
const loggingCodec = (fail: (r: RecordedEvent) => Error | undefined = () => undefined) => {
  const log: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const codec: EventCodec = {
    decode: async (r) => {
      log.push(`start ${r.id}`);
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight -= 1;
      log.push(`end ${r.id}`);
      const error = fail(r);
      if (error) throw error;
      return projectedOf(r);
    },
    evict: (customerId) => void log.push(`evict ${customerId}`),
    preload: async (events) => void log.push(`preload ${events.map((e) => e.id).join(',')}`),
  };
  return { codec, log, maxInFlight: () => maxInFlight };
};

interface Recorder {
  projection: Projection;
  schema: string;
  /** Event ids applied and committed, in position order. */
  committed(): Promise<string[]>;
  checkpoint(): ReturnType<typeof readCheckpoint>;
  /** How many events each call of `apply` received (rolled-back attempts included). */
  calls: number[];
  /** `synchronous_commit` as the batch transaction saw it when `apply` ran. */
  syncCommit: string[];
}

const readCheckpoint = async (schema: string, name: string) => (await readCheckpoints(db, schema)).get(name);

/**
 * A projection on a schema of its own with a fresh checkpoint (unless `register` is false). `fail`
 * may throw, or run a statement that fails, for a batch (its events are given) before anything is written.
 */
const recorder = async (
  options: { filter?: Projection['filter']; fail?: (events: ProjectedEvent[], trx: Kysely<any>) => void | Promise<void>; register?: boolean } = {},
): Promise<Recorder> => {
  const schema = freshSchema();
  const calls: number[] = [];
  const syncCommit: string[] = [];
  const projection: Projection = {
    name: 'recorder',
    version: 1,
    tables: ['applied'],
    ...(options.filter ? { filter: options.filter } : {}),
    migrate: async (m, s) => {
      await ensureSchema(m, s);
      await sql`CREATE TABLE IF NOT EXISTS ${sql.id(s, 'applied')} (position bigint PRIMARY KEY, id text NOT NULL)`.execute(m);
    },
    apply: async ({ trx, schema: s }, events) => {
      calls.push(events.length);
      const { rows } = await sql<{ synchronous_commit: string }>`SHOW synchronous_commit`.execute(trx);
      syncCommit.push(rows[0]!.synchronous_commit);
      await options.fail?.(events, trx);
      for (const e of events) await sql`INSERT INTO ${sql.id(s, 'applied')} (position, id) VALUES (${e.position.toString()}, ${e.id})`.execute(trx);
    },
  };
  await migrateCheckpoints(db, schema);
  await projection.migrate(db, schema);
  if (options.register !== false) await ensureCheckpoint(db, schema, projection);
  return {
    projection,
    schema,
    calls,
    syncCommit,
    committed: async () => {
      const { rows } = await sql<{ id: string }>`SELECT id FROM ${sql.id(schema, 'applied')} ORDER BY position`.execute(db);
      return rows.map((r) => r.id);
    },
    checkpoint: () => readCheckpoint(schema, projection.name),
  };
};

const ids = (events: RecordedEvent[]) => events.map((e) => e.id);

/** A failure that says nothing about the events (a serialization failure): retried, never poison. */
const transient = () => Object.assign(new Error('could not serialize access'), { code: '40001' });

describe('decodeBatch', () => {
  it('decodes each wanted event once, at most 32 at a time, and leaves the unwanted ones undecoded', async () => {
    const events = recorded(70);
    const wanted = (e: RecordedEvent) => e.position % 5n !== 0n;
    const { codec, log, maxInFlight } = loggingCodec();
    const items = await decodeBatch(codec, events, wanted);
    const started = log.filter((l) => l.startsWith('start ')).map((l) => l.slice('start '.length));
    expect(started).toEqual(ids(events.filter(wanted)));
    // The keys of the wanted events are fetched once, before any of them is decoded.
    expect(log[0]).toBe(`preload ${ids(events.filter(wanted)).join(',')}`);
    expect(log.filter((l) => l.startsWith('preload'))).toHaveLength(1);
    expect(maxInFlight()).toBe(32);
    expect(items.map((i) => i.recorded)).toEqual(events);
    for (const item of items) {
      if (wanted(item.recorded)) expect(item.projected?.id).toBe(item.recorded.id);
      else expect(item).toEqual({ recorded: item.recorded });
    }
  });

  it("a CustomerForgotten is decoded after everything before it and evicts the customer's key before anything after it is preloaded or decoded", async () => {
    const events = recorded(6, (i) => (i === 3 ? { type: 'CustomerForgotten', data: { customerId: 'c1' } } : { data: { customerId: 'c1' } }));
    const { codec, log } = loggingCodec();
    const items = await decodeBatch(codec, events, () => true);
    // Events between two forgets are decoded together (both start before either ends).
    expect(log).toEqual([
      'preload e1,e2',
      'start e1',
      'start e2',
      'end e1',
      'end e2',
      'start e3',
      'end e3',
      'evict c1',
      'preload e4,e5,e6',
      'start e4',
      'start e5',
      'start e6',
      'end e4',
      'end e5',
      'end e6',
    ]);
    expect(items.every((i) => i.projected !== undefined)).toBe(true);
  });

  it('a forget that cannot be decoded evicts nothing and is kept for the poison path; the events after it are still decoded', async () => {
    const events = recorded(4, (i) => (i === 2 ? { type: 'CustomerForgotten', data: { customerId: 'c1' } } : {}));
    const unreadable = new Error('the data key is unreadable');
    const { codec, log } = loggingCodec((r) => (r.id === 'e2' ? unreadable : undefined));
    const items = await decodeBatch(codec, events, () => true);
    expect(log.filter((l) => l.startsWith('evict'))).toEqual([]);
    expect(items[1]).toEqual({ recorded: events[1], decodeError: unreadable });
    expect(items.filter((i) => i.projected).map((i) => i.recorded.id)).toEqual(['e1', 'e3', 'e4']);
  });

  it('gives the event loop turns while it decodes a long batch, so requests are answered during a catch-up', async () => {
    // Decoding that needs no I/O (keys cached) resolves at once: only a turn lets anything else run.
    const busyCodec: EventCodec = {
      decode: async (r) => {
        const until = performance.now() + 0.05;
        while (performance.now() < until);
        return projectedOf(r);
      },
      evict: () => undefined,
    };
    const turns = countTurns();
    const items = await decodeBatch(busyCodec, recorded(2_000), () => true);
    expect(turns.stop()).toBeGreaterThan(0);
    expect(items.every((i) => i.projected)).toBe(true);
  });

  it('a transient failure (the database went away) ends the decode with that error instead of marking the event', async () => {
    const lost = Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' });
    const { codec } = loggingCodec((r) => (r.id === 'e2' ? lost : undefined));
    await expect(decodeBatch(codec, recorded(3), () => true)).rejects.toBe(lost);
  });
});

describe('applyBatch', () => {
  it('applies a batch and moves the checkpoint in one transaction that does not wait for fsync; a projection without a filter gets every event', async () => {
    const r = await recorder();
    const events = recorded(5, (i) => ({ stream: i % 2 ? `deal-d${i}` : `customer-c${i}` }));
    expect(await applyBatch(db, r.schema, r.projection, itemsOf(events), 7n, { eventsBehind: 3, newestRecordedAt: new Date(Date.now() - 1_500) })).toEqual({
      kind: 'applied',
      position: 7n,
    });
    expect(await r.committed()).toEqual(ids(events));
    expect(r.syncCommit).toEqual(['off']);
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 7n, eventsBehind: 3, lastError: null, failedStream: null });
    // The newest event's age, taken as the checkpoint moved.
    expect((await r.checkpoint())?.secondsBehind).toBeGreaterThanOrEqual(1.5);
    expect((await r.checkpoint())?.secondsBehind).toBeLessThan(10);
    // Seen again: nothing is fresh, so the projection is not even called.
    expect(await applyBatch(db, r.schema, r.projection, itemsOf(events), 5n, noLag)).toEqual({ kind: 'applied', position: 7n });
    expect(r.calls).toEqual([5]);
  });

  it('a projection without a checkpoint row is reported as failed with that cause and applies nothing', async () => {
    const r = await recorder({ register: false });
    const events = recorded(3);
    const outcome = await applyBatch(db, r.schema, r.projection, itemsOf(events), 3n, noLag);
    expect(outcome).toMatchObject({ kind: 'poison', position: 0n });
    const failure = (outcome as { failure: PoisonEvent }).failure;
    expect(failure).toBeInstanceOf(PoisonEvent);
    expect(failure).toMatchObject({ projection: 'recorder', eventId: 'e1', position: 1n });
    expect((failure.cause as Error).message).toBe(`Projection recorder has no checkpoint in ${r.schema}`);
    // A range with none of its events fails at the range's last event; an empty range at no event.
    const unwanted = await applyBatch(db, r.schema, { ...r.projection, filter: { eventTypes: ['DealOpened'] } }, itemsOf(events), 3n, noLag);
    expect(unwanted).toMatchObject({ kind: 'poison', position: 0n, failure: { eventId: 'e3', position: 3n } });
    const empty = await applyBatch(db, r.schema, r.projection, [], 9n, noLag);
    expect(empty).toMatchObject({ kind: 'poison', position: 0n, failure: { eventId: 'unknown', position: 9n } });
    expect(await r.committed()).toEqual([]);
    expect(r.calls).toEqual([]);
  });

  it('a poison event in a filtered batch: the wanted events before it are committed, the checkpoint stops before it, and the row names the event, its position, stream and error', async () => {
    // Wanted: customer streams. e4 is the poison; e3 and e5 are deal events the projection does not want.
    const events = recorded(6, (i) => ({ stream: i === 3 || i === 5 ? `deal-d${i}` : `customer-c${i}` }));
    const r = await recorder({
      filter: { streamPrefixes: ['customer-'] },
      fail: (batch) => {
        if (batch.some((e) => e.id === 'e4')) throw new Error('cannot apply e4');
      },
    });
    const outcome = await applyBatch(db, r.schema, r.projection, itemsOf(events), 6n, noLag);
    expect(outcome).toMatchObject({ kind: 'poison', position: 2n });
    const failure = (outcome as { failure: PoisonEvent }).failure;
    expect(failure).toMatchObject({ projection: 'recorder', eventId: 'e4', position: 4n });
    expect(failure.message).toBe('Projection recorder failed on event e4 at position 4: Error: cannot apply e4');
    expect(await r.committed()).toEqual(['e1', 'e2']);
    expect(await r.checkpoint()).toMatchObject({
      state: 'failed',
      position: 2n,
      lastError: 'Error: cannot apply e4',
      failedEventId: 'e4',
      failedPosition: 4n,
      failedStream: 'customer-c4',
    });
    // The whole batch, then one wanted event at a time up to the poison (the deal events are never given).
    expect(r.calls).toEqual([4, 1, 1, 1]);
  });

  it('a poison event alone in its batch is marked at once: nothing else is committed, even the unwanted events beside it', async () => {
    const events = recorded(3, (i) => ({ stream: i === 2 ? 'customer-c2' : `deal-d${i}` }));
    const r = await recorder({
      filter: { streamPrefixes: ['customer-'] },
      fail: () => {
        throw new Error('cannot apply anything');
      },
    });
    const outcome = await applyBatch(db, r.schema, r.projection, itemsOf(events), 3n, noLag);
    expect(outcome).toMatchObject({ kind: 'poison', position: 0n, failure: { eventId: 'e2', position: 2n } });
    expect(await r.checkpoint()).toMatchObject({ state: 'failed', position: 0n, failedEventId: 'e2', failedStream: 'customer-c2' });
    expect(r.calls).toEqual([1]);
  });

  it('a batch that fails only as a whole is finished one event at a time and its checkpoint reaches the end of the range', async () => {
    const r = await recorder({
      fail: (batch) => {
        if (batch.length > 1) throw new Error('too large');
      },
    });
    const events = recorded(3);
    expect(await applyBatch(db, r.schema, r.projection, itemsOf(events), 8n, noLag)).toEqual({ kind: 'applied', position: 8n });
    expect(await r.committed()).toEqual(ids(events));
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 8n, lastError: null });
    expect(r.calls).toEqual([3, 1, 1, 1]);
  });

  it('a worker that lost its lease commits nothing, is not retried and marks nothing: LeaseLost reaches the caller', async () => {
    const r = await recorder();
    let fenced = 0;
    const fence: ApplyOptions['fence'] = async () => {
      fenced += 1;
      throw new LeaseLost(r.projection.name, 'w1');
    };
    await expect(applyBatch(db, r.schema, r.projection, itemsOf(recorded(2)), 2n, noLag, { fence })).rejects.toBeInstanceOf(LeaseLost);
    expect(fenced).toBe(1);
    expect(await r.committed()).toEqual([]);
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 0n, lastError: null });
  });

  it('a poison event is marked failed under the fence: only while the lease is held', async () => {
    const poison = () => {
      throw new Error('cannot apply');
    };
    const held = await recorder({ fail: poison });
    let fenced = 0;
    const fence: ApplyOptions['fence'] = async () => void (fenced += 1);
    const outcome = await applyBatch(db, held.schema, held.projection, itemsOf(recorded(1)), 1n, noLag, { fence });
    expect(outcome).toMatchObject({ kind: 'poison', failure: { eventId: 'e1' } });
    expect(fenced).toBe(1);
    expect(await held.checkpoint()).toMatchObject({ state: 'failed', failedEventId: 'e1' });

    const lost = await recorder({ fail: poison });
    const losing: ApplyOptions['fence'] = async () => {
      throw new LeaseLost(lost.projection.name, 'w1');
    };
    await expect(applyBatch(db, lost.schema, lost.projection, itemsOf(recorded(1)), 1n, noLag, { fence: losing })).rejects.toBeInstanceOf(LeaseLost);
    expect(await lost.checkpoint()).toMatchObject({ state: 'running', lastError: null, failedEventId: null });
  });

  it('when another transaction moves the checkpoint during the batch, the batch is rolled back and applied again from the new checkpoint', async () => {
    const r = await recorder();
    let fenced = 0;
    // Another worker (or a rebuild's swap) commits the checkpoint at 3 while this batch is open.
    const fence: ApplyOptions['fence'] = async () => {
      fenced += 1;
      if (fenced === 1) await sql`UPDATE ${sql.id(r.schema, CHECKPOINT_TABLE)} SET position = 3`.execute(db);
    };
    const events = recorded(5);
    expect(await applyBatch(db, r.schema, r.projection, itemsOf(events), 5n, noLag, { fence })).toEqual({ kind: 'applied', position: 5n });
    expect(fenced).toBe(2);
    expect(await r.committed()).toEqual(['e4', 'e5']);
    expect(r.calls).toEqual([5, 2]);
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 5n });
  });

  it('a checkpoint that keeps moving is retried 100 times, then handled as a transient failure', async () => {
    const r = await recorder();
    let fenced = 0;
    const fence: ApplyOptions['fence'] = async () => {
      fenced += 1;
      await sql`UPDATE ${sql.id(r.schema, CHECKPOINT_TABLE)} SET position = position + 1`.execute(db);
    };
    const transientErrors: unknown[] = [];
    const outcome = applyBatch(db, r.schema, r.projection, [], 1_000n, noLag, {
      fence,
      shouldRetry: () => false,
      onTransientError: (error) => void transientErrors.push(error),
    });
    await expect(outcome).rejects.toBeInstanceOf(CheckpointMoved);
    expect(fenced).toBe(101);
    expect(transientErrors).toHaveLength(1);
    expect(transientErrors[0]).toBeInstanceOf(CheckpointMoved);
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 101n });
  });

  it('a transient failure is reported and retried until the batch commits, with or without a retry policy; never marked as poison', async () => {
    const events = recorded(3);
    for (const options of [{}, { shouldRetry: () => true }] as const) {
      let failures = 0;
      const r = await recorder({
        fail: () => {
          if (failures < 2) {
            failures += 1;
            throw transient();
          }
        },
      });
      const reported: unknown[] = [];
      const outcome = await applyBatch(db, r.schema, r.projection, itemsOf(events), 3n, noLag, {
        ...options,
        ...('shouldRetry' in options ? { onTransientError: (error: unknown) => void reported.push(error) } : {}),
      });
      expect(outcome).toEqual({ kind: 'applied', position: 3n });
      expect(await r.committed()).toEqual(ids(events));
      expect(r.calls).toEqual([3, 3, 3]);
      if ('shouldRetry' in options) expect(reported.map((e) => (e as { code: string }).code)).toEqual(['40001', '40001']);
    }
  });

  it('the database out of disk, memory or a configured limit (SQLSTATE class 53) is retried until space is freed, never marked as poison', async () => {
    // PostgreSQL's own error, raised in the batch transaction as a write on a full disk raises it.
    const shortages = [
      ['disk_full', 'could not extend file "base/5/16510": No space left on device'],
      ['out_of_memory', 'out of memory'],
      ['configuration_limit_exceeded', 'too many range table entries'],
    ];
    const events = recorded(2);
    const reported: unknown[] = [];
    const r = await recorder({
      fail: async (_events, trx) => {
        const next = shortages[reported.length];
        if (next) await sql`SELECT ${sql.id(r.schema, 'raise')}(${next[0]}, ${next[1]})`.execute(trx);
      },
    });
    await sql`CREATE FUNCTION ${sql.id(r.schema, 'raise')}(state text, message text) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message; END $$`.execute(db);
    const outcome = await applyBatch(db, r.schema, r.projection, itemsOf(events), 2n, noLag, {
      shouldRetry: () => true,
      onTransientError: (error) => void reported.push(error),
    });
    expect(outcome).toEqual({ kind: 'applied', position: 2n });
    expect(reported.map((e) => (e as { code: string }).code)).toEqual(['53100', '53200', '53400']);
    expect(await r.committed()).toEqual(ids(events));
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 2n, lastError: null });
  });

  it('a transient failure ends the batch when the retry policy says stop: nothing committed, nothing marked', async () => {
    const error = transient();
    const r = await recorder({
      fail: () => {
        throw error;
      },
    });
    let asked = 0;
    const shouldRetry = () => {
      asked += 1;
      return false;
    };
    await expect(applyBatch(db, r.schema, r.projection, itemsOf(recorded(2)), 2n, noLag, { shouldRetry })).rejects.toBe(error);
    expect(asked).toBe(1);
    expect(r.calls).toEqual([2]);
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 0n, lastError: null });
  });
});

describe('checkpoints', () => {
  it('a checkpoint table made before failed_stream existed gets the column; its rows keep their positions', async () => {
    const schema = freshSchema();
    await ensureSchema(db, schema);
    await sql`CREATE TABLE ${sql.id(schema, CHECKPOINT_TABLE)} (
      name text PRIMARY KEY, version integer NOT NULL, position bigint NOT NULL DEFAULT 0,
      state text NOT NULL DEFAULT 'running', events_behind bigint NOT NULL DEFAULT 0,
      seconds_behind double precision NOT NULL DEFAULT 0, last_error text, failed_event_id text,
      failed_position bigint, updated_at timestamptz NOT NULL DEFAULT now())`.execute(db);
    await sql`INSERT INTO ${sql.id(schema, CHECKPOINT_TABLE)} (name, version, position) VALUES ('old', 1, 42)`.execute(db);
    await migrateCheckpoints(db, schema);
    await markFailed(db, schema, 'old', { error: 'Error: broken', eventId: 'e43', position: 43n, stream: 'customer-c1' });
    expect(await readCheckpoint(schema, 'old')).toMatchObject({ position: 42n, state: 'failed', failedStream: 'customer-c1', failedPosition: 43n });
  });

  it('migrating a current checkpoint table does not wait for a batch holding its rows', async () => {
    const r = await recorder();
    await db.transaction().execute(async (trx) => {
      await sql`SELECT * FROM ${sql.id(r.schema, CHECKPOINT_TABLE)} FOR UPDATE`.execute(trx);
      // ALTER TABLE would wait for this transaction until lock_timeout (2 s) and fail.
      await migrateCheckpoints(db, r.schema);
    });
    expect(await r.checkpoint()).toMatchObject({ state: 'running', position: 0n });
  });

  it("an operator's retry clears the failure and keeps the position", async () => {
    const r = await recorder();
    await applyBatch(db, r.schema, r.projection, itemsOf(recorded(2)), 2n, noLag);
    await markFailed(db, r.schema, r.projection.name, { error: 'Error: broken', eventId: 'e3', position: 3n, stream: 'customer-c3' });
    await clearFailure(db, r.schema, r.projection.name);
    expect(await r.checkpoint()).toMatchObject({
      state: 'running',
      position: 2n,
      lastError: null,
      failedEventId: null,
      failedPosition: null,
      failedStream: null,
    });
  });
});
