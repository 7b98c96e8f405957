/**
 * Event store throughput on one PostgreSQL database, each case beside
 * (a) a raw INSERT/SELECT of the same rows at the same concurrency (the physical limit) and
 * (b) the peer @event-driven-io/emmett-postgresql.
 * One writer: the variants alternate append by append. Several writers: each variant runs alone,
 * `rounds` times interleaved, and the best round counts. Both keep a burst of load from elsewhere
 * on the machine from deciding a ratio.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import type { EventStore, ExpectedRevision, NewEvent } from '../../eventstore/contract.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { percentile, rate, ratio, round, type BenchContext } from '../report.ts';

type Variant = 'ours' | 'raw' | 'peer';

/** One append of `count` events to `stream`, whose current length is `revision` events. */
type Appender = (stream: string, events: NewEvent[], streamLength: number) => Promise<void>;

interface PeerStore {
  appendToStream(
    stream: string,
    events: { type: string; data: unknown; metadata?: unknown }[],
    options?: { expectedStreamVersion?: unknown },
  ): Promise<unknown>;
  close(): Promise<void>;
}

const crmEvent = (n: number): NewEvent => ({
  id: randomUUID(),
  type: 'CustomerRegistered',
  data: { customerId: randomUUID(), name: `Customer ${n}`, email: `customer${n}@example.com`, segment: 'smb', tags: ['trial', 'newsletter'] },
  metadata: {
    actor: 'user-42',
    roles: ['sales'],
    correlationId: randomUUID(),
    causationId: null,
    occurredAt: new Date().toISOString(),
  },
});

/** Runs `writers` loops of `perWriter` appends of `batch` events; returns events per second. */
const measureAppends = async (append: Appender, label: string, writers: number, perWriter: number, batch: number): Promise<number> => {
  const started = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      // Streams of 10 appends each, every append with the expected revision a command handler would send.
      for (let i = 0; i < perWriter; i += 1) {
        const stream = `customer-${label}${writer}x${Math.floor(i / 10)}`;
        await append(
          stream,
          Array.from({ length: batch }, (_e, k) => crmEvent(i * batch + k)),
          (i % 10) * batch,
        );
      }
    }),
  );
  return rate(writers * perWriter * batch, performance.now() - started);
};

const rawTableSql = (schema: string): string => `
  CREATE TABLE ${pg.escapeIdentifier(schema)}.events (
    position bigserial PRIMARY KEY,
    stream text NOT NULL,
    revision bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE,
    type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, revision)
  )`;

/** The same rows as one multi-row INSERT: no stream table, no checks, no hash. */
const rawAppender = (pool: pg.Pool, schema: string): Appender => {
  const table = `${pg.escapeIdentifier(schema)}.events`;
  return async (stream, events, streamLength) => {
    const values: unknown[] = [];
    const rows = events.map((event, k) => {
      values.push(stream, streamLength + k, event.id, event.type, JSON.stringify(event.data), JSON.stringify(event.metadata));
      const p = k * 6;
      return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6})`;
    });
    await pool.query(`INSERT INTO ${table} (stream, revision, event_id, type, data, metadata) VALUES ${rows.join(', ')}`, values);
  };
};

const ourAppender =
  (store: EventStore): Appender =>
  async (stream, events, streamLength) => {
    const expectedRevision: ExpectedRevision = streamLength === 0 ? 'no_stream' : streamLength - 1;
    await store.appendToStream(stream, events, { expectedRevision });
  };

/**
 * The design this store avoids: the same append function plus a NOTIFY in the append's own
 * transaction (NOTIFY takes a global lock at commit). Measured to show what it would cost.
 */
const notifyEachAppender =
  (database: SqlDatabase, schema: string): Appender =>
  async (stream, events, streamLength) => {
    const expected = streamLength === 0 ? -1 : streamLength - 1;
    await sql`
    SELECT a.outcome, pg_notify('bench_notify_each', '') FROM ${sql.id(schema)}.append_events(
      ${stream}, ${expected}::bigint, ${events.map((e) => e.id)}::uuid[], ${events.map((e) => e.type)}::text[],
      ${events.map((e) => JSON.stringify(e.data))}::text[]::jsonb[], ${events.map((e) => JSON.stringify(e.metadata))}::text[]::jsonb[]) a`.execute(database.db);
  };

const peerAppender =
  (peer: PeerStore, constants: { STREAM_DOES_NOT_EXIST: unknown }): Appender =>
  async (stream, events, streamLength) => {
    await peer.appendToStream(
      stream,
      events.map((event) => ({ type: event.type, data: event.data, metadata: event.metadata })),
      // Emmett's stream version counts events (1 after the first).
      { expectedStreamVersion: streamLength === 0 ? constants.STREAM_DOES_NOT_EXIST : BigInt(streamLength) },
    );
  };

const withSearchPath = (url: string, schema: string): string =>
  `${url}${url.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const scale = ctx.scale;
  const rounds = 3;
  const sizes = {
    singleSerialAppends: Math.round(1_000 * scale),
    singleConcurrentAppends: Math.round(3_200 * scale),
    batches: Math.round(40 * scale),
    catchUpEvents: Math.round(100_000 * Math.max(scale, 1)),
    lagSamples: Math.round(200 * scale),
  };

  const ourSchema = await ctx.freshSchema('es_ours');
  const rawSchema = await ctx.freshSchema('es_raw');
  const peerSchema = await ctx.freshSchema('es_peer');

  const database: SqlDatabase = connectPostgres(ctx.databaseUrl, { max: 17 });
  const store = await createPostgresEventStore(database, { schema: ourSchema });
  const rawPool = new pg.Pool({ connectionString: ctx.databaseUrl, max: 17 });
  await rawPool.query(rawTableSql(rawSchema));

  // The peer installs global pg type parsers (int8 as BigInt, jsonb through a reviver) when its
  // pool starts. They are switched in only while the peer runs, and the defaults are restored at the end,
  // so that neither ours, raw, nor the suites after this one pay for them.
  const PARSED = [20, 114, 3802] as const;
  const defaultParsers = PARSED.map((oid) => pg.types.getTypeParser(oid));
  const emmett = await import('@event-driven-io/emmett-postgresql');
  const emmettCore = await import('@event-driven-io/emmett');
  const peerUrl = withSearchPath(ctx.databaseUrl, peerSchema);
  const peerPool = new pg.Pool({ connectionString: peerUrl, max: 17 });
  const peer = emmett.getPostgreSQLEventStore(peerUrl, {
    connectionOptions: { pool: peerPool },
  }) as unknown as PeerStore;
  await peer.appendToStream('warmup-1', [{ type: 'Warmup', data: {} }]);
  const peerParsers = PARSED.map((oid) => pg.types.getTypeParser(oid));
  const useParsers = (parsers: ((value: string) => unknown)[]) => PARSED.forEach((oid, i) => pg.types.setTypeParser(oid, parsers[i]!));
  useParsers(defaultParsers);
  const asPeer = <T>(work: () => Promise<T>): Promise<T> => {
    useParsers(peerParsers);
    return work().finally(() => useParsers(defaultParsers));
  };

  const appenders: Record<Variant, Appender> = {
    ours: ourAppender(store),
    raw: rawAppender(rawPool, rawSchema),
    peer: (
      (append: Appender): Appender =>
      (stream, events, length) => {
        // Concurrent peer writers only run beside each other, never beside ours or raw.
        useParsers(peerParsers);
        return append(stream, events, length);
      }
    )(peerAppender(peer, emmettCore)),
  };
  let runNumber = 0;
  /** Concurrent writers: each variant runs alone, `rounds` times interleaved; the best round counts. */
  const best = async (writers: number, total: number, batch: number): Promise<Record<Variant, number>> => {
    const result: Record<Variant, number> = { ours: 0, raw: 0, peer: 0 };
    const perWriter = Math.max(1, Math.floor(total / writers));
    for (let r = 0; r < rounds; r += 1) {
      for (const variant of ['raw', 'ours', 'peer'] as Variant[]) {
        runNumber += 1;
        const eventsPerSecond = await measureAppends(appenders[variant], `r${runNumber}w`, writers, perWriter, batch);
        useParsers(defaultParsers);
        result[variant] = Math.max(result[variant], eventsPerSecond);
      }
    }
    return result;
  };
  /**
   * Several writers, the variants taking turns inside every writer (each writer starts its turn
   * at a different variant): all three see the same load, and each variant's rate is estimated as
   * writers / its mean append latency (Little's law).
   */
  const interleaved = async (writers: number, total: number): Promise<Record<Variant, number>> => {
    const order: Variant[] = ['raw', 'ours', 'peer'];
    const spent: Record<Variant, number> = { ours: 0, raw: 0, peer: 0 };
    const perWriter = Math.max(1, Math.floor(total / writers));
    runNumber += 1;
    // Ours and raw parse nothing the peer's global parsers would change while appending.
    useParsers(peerParsers);
    try {
      await Promise.all(
        Array.from({ length: writers }, async (_, writer) => {
          for (let i = 0; i < perWriter; i += 1) {
            for (let turn = 0; turn < 3; turn += 1) {
              const variant = order[(writer + i + turn) % 3]!;
              const stream = `customer-i${runNumber}${variant}${writer}x${Math.floor(i / 10)}`;
              const started = performance.now();
              await appenders[variant](stream, [crmEvent(i)], i % 10);
              spent[variant] += performance.now() - started;
            }
          }
        }),
      );
    } finally {
      useParsers(defaultParsers);
    }
    const estimate = (variant: Variant) => rate(writers * perWriter, spent[variant] / writers);
    return { ours: estimate('ours'), raw: estimate('raw'), peer: estimate('peer') };
  };
  /**
   * One writer: the variants take turns append by append, so that all three see the same moments
   * of machine load (commit latency on a shared disk varies by a factor of two from second to second).
   */
  const alternating = async (total: number, batch: number): Promise<Record<Variant, number>> => {
    const spent: Record<Variant, number> = { ours: 0, raw: 0, peer: 0 };
    runNumber += 1;
    for (let i = 0; i < total; i += 1) {
      for (const variant of ['raw', 'ours', 'peer'] as Variant[]) {
        const stream = `customer-a${runNumber}${variant}x${Math.floor(i / 10)}`;
        const events = Array.from({ length: batch }, (_e, k) => crmEvent(i * batch + k));
        const started = performance.now();
        await appenders[variant](stream, events, (i % 10) * batch);
        spent[variant] += performance.now() - started;
        useParsers(defaultParsers);
      }
    }
    return { ours: rate(total * batch, spent.ours), raw: rate(total * batch, spent.raw), peer: rate(total * batch, spent.peer) };
  };

  try {
    ctx.log(`single-event appends, 1 writer (${sizes.singleSerialAppends} each, variants alternating)`);
    const serial = await alternating(sizes.singleSerialAppends, 1);
    ctx.log(`single-event appends, 16 writers (${sizes.singleConcurrentAppends} each)`);
    const concurrent = await best(16, sizes.singleConcurrentAppends, 1);
    ctx.log(`single-event appends, 16 writers, variants taking turns in every writer`);
    const concurrentInterleaved = await interleaved(16, sizes.singleConcurrentAppends);
    ctx.log('single-event appends, 16 writers, with a NOTIFY inside every append (the rejected design)');
    const notifyEach = { ours: 0, withNotify: 0 };
    for (let r = 0; r < rounds; r += 1) {
      const perWriter = Math.floor(sizes.singleConcurrentAppends / 16);
      runNumber += 1;
      notifyEach.withNotify = Math.max(
        notifyEach.withNotify,
        await measureAppends(notifyEachAppender(database, ourSchema), `n${runNumber}w`, 16, perWriter, 1),
      );
      runNumber += 1;
      notifyEach.ours = Math.max(notifyEach.ours, await measureAppends(appenders.ours, `n${runNumber}w`, 16, perWriter, 1));
    }
    ctx.log(`100-event batches, 1 writer (${sizes.batches} batches each, variants alternating)`);
    const batches = await alternating(sizes.batches, 100);

    ctx.log(`catch-up read of ${sizes.catchUpEvents} events`);
    const catchUp = await measureCatchUp(ctx, store, rawPool, peer, peerUrl, sizes.catchUpEvents, ourSchema, asPeer);

    ctx.log(`live subscription lag (${sizes.lagSamples} appends)`);
    const lag = await measureLag(ctx, store, ourSchema, rawPool, rawSchema, sizes.lagSamples);

    const appendCase = (figures: Record<Variant, number>) => ({
      eventsPerSecond: figures,
      oursToRaw: ratio(figures.ours, figures.raw),
      oursToPeer: ratio(figures.ours, figures.peer),
      peerToRaw: ratio(figures.peer, figures.raw),
    });
    const results = {
      sizes,
      rounds,
      singleAppends1Writer: appendCase(serial),
      singleAppends16Writers: appendCase(concurrent),
      singleAppends16WritersInterleaved: appendCase(concurrentInterleaved),
      notifyInsideEveryAppend16Writers: {
        eventsPerSecond: notifyEach,
        notifyEachToOurs: ratio(notifyEach.withNotify, notifyEach.ours),
      },
      batches100: appendCase(batches),
      catchUp,
      liveLag: lag,
    };
    const targets = {
      'single appends >= 0.8x raw (1 writer)': results.singleAppends1Writer.oursToRaw >= 0.8,
      'single appends >= 0.8x raw (16 writers, phases)': results.singleAppends16Writers.oursToRaw >= 0.8,
      'single appends >= 0.8x raw (16 writers, interleaved)': results.singleAppends16WritersInterleaved.oursToRaw >= 0.8,
      'batches >= 0.8x raw': results.batches100.oursToRaw >= 0.8,
      'single appends >= 1.5x peer (1 writer)': results.singleAppends1Writer.oursToPeer >= 1.5,
      'single appends >= 1.5x peer (16 writers, phases)': results.singleAppends16Writers.oursToPeer >= 1.5,
      'single appends >= 1.5x peer (16 writers, interleaved)': results.singleAppends16WritersInterleaved.oursToPeer >= 1.5,
      'batches >= 1.2x peer': results.batches100.oursToPeer >= 1.2,
      'catch-up read >= 100k events/s': (catchUp.subscribeEventsPerSecond.ours ?? 0) >= 100_000,
    };
    return { ...results, targets };
  } finally {
    useParsers(defaultParsers);
    await store.close();
    await database.close();
    await peer.close().catch(() => undefined);
    await peerPool.end().catch(() => undefined);
    await rawPool.end();
  }
}

/** Fills each store with `count` events, then reads them back from the start. */
async function measureCatchUp(
  ctx: BenchContext,
  store: EventStore,
  rawPool: pg.Pool,
  peer: PeerStore,
  peerUrl: string,
  count: number,
  ourSchema: string,
  asPeer: <T>(work: () => Promise<T>) => Promise<T>,
): Promise<{ subscribeEventsPerSecond: Record<Variant, number | null> } & Record<string, unknown>> {
  const start = await store.headPosition();
  const perAppend = 500;
  const fill = async (append: (stream: string, events: NewEvent[]) => Promise<unknown>) => {
    const appends = Math.ceil(count / perAppend);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < appends) {
          const i = (next += 1);
          await append(
            `customer-fill${i}`,
            Array.from({ length: perAppend }, (_e, k) => crmEvent(i * perAppend + k)),
          );
        }
      }),
    );
  };
  await fill((stream, events) => store.appendToStream(stream, events, { expectedRevision: 'no_stream' }));
  await asPeer(() =>
    fill((stream, events) =>
      peer.appendToStream(
        stream,
        events.map((e) => ({ type: e.type, data: e.data, metadata: e.metadata })),
      ),
    ),
  );

  // Ours through the public subscription (catch-up until the first caughtUp) and through readAll pages.
  let t = performance.now();
  const subscribed = await new Promise<number>((resolve, reject) => {
    let seen = 0;
    const subscription = store.subscribeToAll({ fromPosition: start }).subscribe({
      next: (message) => {
        if (message.kind === 'event') seen += 1;
        else {
          subscription.unsubscribe();
          resolve(seen);
        }
      },
      error: reject,
    });
  });
  const subscribeMs = performance.now() - t;

  t = performance.now();
  let paged = 0;
  let from = start;
  for (;;) {
    const page = await store.readAll({ fromPosition: from, maxCount: 1_000 });
    if (page.length === 0) break;
    paged += page.length;
    from = page[page.length - 1]!.position;
  }
  const readAllMs = performance.now() - t;

  // Raw: the same keyset pages over the same table, straight through pg (no visibility bound, no mapping).
  t = performance.now();
  let rawRead = 0;
  let after = start.toString();
  for (;;) {
    const { rows } = await rawPool.query<{ position_text: string }>(
      // Not aliased `position`: ORDER BY would then sort the text.
      `SELECT position::text AS position_text, stream, revision, event_id, type, data, metadata,
              (extract(epoch from recorded_at) * 1000)::float8 AS recorded_ms
       FROM ${pg.escapeIdentifier(ourSchema)}.events WHERE position > $1 ORDER BY position LIMIT 1000`,
      [after],
    );
    if (rows.length === 0) break;
    rawRead += rows.length;
    after = rows[rows.length - 1]!.position_text;
  }
  const rawMs = performance.now() - t;

  // Peer: its own batch reader over its messages table.
  let peerRead = 0;
  let peerMs = Number.NaN;
  try {
    const { readMessagesBatch } = await import('@event-driven-io/emmett-postgresql');
    const { dumbo } = await import('@event-driven-io/dumbo');
    const pool = dumbo({ connectionString: peerUrl });
    peerMs = await asPeer(async () => {
      const started = performance.now();
      let position = 0n;
      for (;;) {
        const batch = await readMessagesBatch(pool.execute, { after: position, batchSize: 1_000 });
        peerRead += batch.messages.length;
        if (batch.messages.length === 0 || !batch.areMessagesLeft) break;
        position = batch.currentGlobalPosition;
      }
      return performance.now() - started;
    });
    await pool.close();
  } catch (error) {
    ctx.log(`peer catch-up read not measured: ${(error as Error).message}`);
  }
  return {
    events: { subscribed, paged, raw: rawRead, peer: peerRead },
    subscribeEventsPerSecond: { ours: rate(subscribed, subscribeMs), raw: rate(rawRead, rawMs), peer: Number.isNaN(peerMs) ? null : rate(peerRead, peerMs) },
    readAllEventsPerSecond: rate(paged, readAllMs),
    oursToRaw: ratio(rate(subscribed, subscribeMs), rate(rawRead, rawMs)),
    oursToPeer: Number.isNaN(peerMs) ? null : ratio(rate(subscribed, subscribeMs), rate(peerRead, peerMs)),
  };
}

/**
 * Time from an append's return to its delivery: to a subscriber in the same process (direct
 * wake-up) and on another connection pool (LISTEN/NOTIFY), beside the raw limit: an INSERT that
 * notifies in its own transaction, heard by a LISTENing client.
 */
async function measureLag(
  ctx: BenchContext,
  store: EventStore,
  ourSchema: string,
  rawPool: pg.Pool,
  rawSchema: string,
  samples: number,
): Promise<Record<string, unknown>> {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 5));
  const lagOf = async (subscriberStore: EventStore): Promise<number[]> => {
    const head = await store.headPosition();
    const waiting = new Map<string, (at: number) => void>();
    const subscription = subscriberStore.subscribeToAll({ fromPosition: head }).subscribe((message) => {
      if (message.kind === 'event') waiting.get(message.event.id)?.(performance.now());
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const lags: number[] = [];
    for (let i = 0; i < samples; i += 1) {
      const event = crmEvent(i);
      const delivered = new Promise<number>((resolve) => waiting.set(event.id, resolve));
      await store.appendToStream(`customer-lag${i}`, [event]);
      const appendedAt = performance.now();
      lags.push(Math.max(0, (await delivered) - appendedAt));
      waiting.delete(event.id);
      await pause();
    }
    subscription.unsubscribe();
    return lags;
  };

  const sameProcess = await lagOf(store);
  const otherDatabase = connectPostgres(ctx.databaseUrl, { max: 2 });
  const otherStore = await createPostgresEventStore(otherDatabase, { schema: ourSchema });
  const otherConnection = await lagOf(otherStore);
  await otherStore.close();
  await otherDatabase.close();

  const listener = new pg.Client({ connectionString: ctx.databaseUrl });
  await listener.connect();
  await listener.query('LISTEN bench_raw_lag');
  const rawLags: number[] = [];
  let heard: (() => void) | undefined;
  listener.on('notification', () => heard?.());
  for (let i = 0; i < samples; i += 1) {
    const notified = new Promise<number>((resolve) => (heard = () => resolve(performance.now())));
    const t = performance.now();
    await rawPool.query(
      `WITH ins AS (INSERT INTO ${pg.escapeIdentifier(rawSchema)}.events (stream, revision, event_id, type, data, metadata)
         VALUES ($1, 0, $2, 'CustomerRegistered', '{}', '{}') RETURNING 1)
       SELECT pg_notify('bench_raw_lag', '') FROM ins`,
      [`customer-rawlag${i}`, randomUUID()],
    );
    const returned = performance.now();
    rawLags.push(Math.max(0, (await notified) - returned));
    void t;
    await pause();
  }
  await listener.end();

  const summary = (lags: number[]) => ({ p50: percentile(lags, 50), p95: percentile(lags, 95), max: round(Math.max(...lags)) });
  return {
    unit: 'ms from append returned to event delivered',
    oursSameProcess: summary(sameProcess),
    oursOtherConnection: summary(otherConnection),
    rawInsertNotify: summary(rawLags),
    peer: 'not measured: the peer delivers through polling consumers (default pulling frequency) rather than a live feed',
  };
}

export function summarize(result: Record<string, unknown>): string[] {
  const r = result as {
    singleAppends1Writer: { eventsPerSecond: Record<Variant, number>; oursToRaw: number; oursToPeer: number };
    singleAppends16Writers: { eventsPerSecond: Record<Variant, number>; oursToRaw: number; oursToPeer: number };
    singleAppends16WritersInterleaved: { eventsPerSecond: Record<Variant, number>; oursToRaw: number; oursToPeer: number };
    batches100: { eventsPerSecond: Record<Variant, number>; oursToRaw: number; oursToPeer: number };
    notifyInsideEveryAppend16Writers: { eventsPerSecond: { ours: number; withNotify: number }; notifyEachToOurs: number };
    catchUp: { subscribeEventsPerSecond: Record<Variant, number | null>; readAllEventsPerSecond: number };
    liveLag: {
      oursSameProcess: { p50: number; p95: number };
      oursOtherConnection: { p50: number; p95: number };
      rawInsertNotify: { p50: number; p95: number };
    };
    targets: Record<string, boolean>;
  };
  const line = (name: string, c: typeof r.batches100) =>
    `${name}: ours ${c.eventsPerSecond.ours}/s, raw ${c.eventsPerSecond.raw}/s, peer ${c.eventsPerSecond.peer}/s -> ${c.oursToRaw}x raw, ${c.oursToPeer}x peer`;
  return [
    line('single appends, 1 writer', r.singleAppends1Writer),
    line('single appends, 16 writers (phases, best of 3)', r.singleAppends16Writers),
    line('single appends, 16 writers (interleaved)', r.singleAppends16WritersInterleaved),
    `NOTIFY inside every append, 16 writers: ${r.notifyInsideEveryAppend16Writers.eventsPerSecond.withNotify}/s vs ${r.notifyInsideEveryAppend16Writers.eventsPerSecond.ours}/s without (${r.notifyInsideEveryAppend16Writers.notifyEachToOurs}x)`,
    line('100-event batches', r.batches100),
    `catch-up: subscription ${r.catchUp.subscribeEventsPerSecond.ours}/s, readAll pages ${r.catchUp.readAllEventsPerSecond}/s, raw ${r.catchUp.subscribeEventsPerSecond.raw}/s, peer ${r.catchUp.subscribeEventsPerSecond.peer ?? 'n/a'}/s`,
    `live lag p50/p95 ms: same process ${r.liveLag.oursSameProcess.p50}/${r.liveLag.oursSameProcess.p95}, other pool ${r.liveLag.oursOtherConnection.p50}/${r.liveLag.oursOtherConnection.p95}, raw insert+notify ${r.liveLag.rawInsertNotify.p50}/${r.liveLag.rawInsertNotify.p95}`,
    ...Object.entries(r.targets).map(([target, holds]) => `${holds ? 'HOLDS ' : 'MISSED'} ${target}`),
  ];
}
