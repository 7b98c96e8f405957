import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createApiMetrics } from '../../api/metrics.ts';
import type { CommandContext, CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import type { SqlDatabase } from '../../eventstore/postgres/index.ts';
import { readPublisherStatus, reportedState } from '../../integration/publishers.ts';
import { integrationTables, NATS_PUBLISHER, type IntegrationTables } from '../../integration/tables.ts';
import { lagReader } from '../../projections/status.ts';
import { storedEvents } from '../support/events.ts';
import { commandStoreFor } from '../support/command-store.ts';

/**
 * The lag a publisher reports while it fails and while the database is slow: counted from the oldest
 * event it has not delivered (or, past the read's bound, from its last delivery), never from its last
 * failed attempt; and an unknown count said to be unknown, not 1.
 */
const opened = commandStoreFor('publisherlag');
const { schemas } = opened;
let database: SqlDatabase;
let store: EventStore;
let commands: CrmCommands;
let tables: IntegrationTables;

beforeAll(async () => {
  ({ database, store, api: commands } = opened);
  tables = integrationTables(database.db, schemas.events);
  await tables.migrate();
});

const ctx = (): CommandContext => ({ actor: { userId: 'publisher-lag', roles: ['admin'] }, correlationId: randomUUID() });
const register = async (count: number) => {
  for (let i = 0; i < count; i++) await commands.execute({ type: 'RegisterCustomer', name: `L ${i}`, email: `l${i}-${randomUUID()}@example.com` }, ctx());
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const failure = { error: 'TimeoutError: timeout', status: null, latencyMs: 0, nextRetryAt: null, pause: false };

/** A session of its own (not the store's pool), for a transaction held open on purpose. */
const openSession = async () => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  return client;
};

describe('publisher lag while it fails', () => {
  it('counts the waiting events and ages them from the oldest, while a transaction elsewhere holds newer events back', async () => {
    await tables.ensurePublisher(NATS_PUBLISHER, 'nats', 0n);
    await register(20);
    const waiting = await storedEvents(store);
    expect(waiting).toHaveLength(20);
    await sleep(2_000);
    // Failed attempts since: each touches the row.
    await tables.recordFailure(NATS_PUBLISHER, failure);
    await tables.recordFailure(NATS_PUBLISHER, failure);

    // A transaction left open elsewhere on the cluster, and an event committed after it began: the event
    // is not final yet, so a read that waits for it to become final would miss the status read's bound.
    const session = await openSession();
    try {
      await session.query('BEGIN');
      await session.query('SELECT txid_current()');
      await register(1);
      const [nats] = await readPublisherStatus(tables, store);
      expect(nats!.name).toBe(NATS_PUBLISHER);
      expect(nats!.eventsBehind).toBe(20);
      const oldestAge = (Date.now() - waiting[0]!.recordedAt.getTime()) / 1000;
      expect(nats!.secondsBehind).toBeGreaterThanOrEqual(2);
      expect(nats!.secondsBehind).toBeLessThanOrEqual(oldestAge + 1);
    } finally {
      await session.query('ROLLBACK').catch(() => undefined);
      await session.end();
    }
  });

  it('keeps the time of the last delivery through failed attempts, and falls back to it (count unknown) when the events cannot be read in time', async () => {
    await tables.ensurePublisher(NATS_PUBLISHER, 'nats', 0n);
    const before = (await tables.publisher(NATS_PUBLISHER))!;
    const all = await storedEvents(store);
    // Delivered up to the second event, then failing.
    const moved = await tables.advance(database.db, NATS_PUBLISHER, before.position, all[1]!.position, 2, 1, null);
    expect(moved).toBe(true);
    const delivered = (await tables.publisher(NATS_PUBLISHER))!;
    await sleep(1_500);
    await tables.recordFailure(NATS_PUBLISHER, failure);
    const failing = (await tables.publisher(NATS_PUBLISHER))!;
    expect(failing.lastError).toBe(failure.error);
    expect(failing.updatedAt.getTime()).toBeGreaterThan(delivered.advancedAt.getTime() + 1_000);
    expect(failing.advancedAt.getTime()).toBe(delivered.advancedAt.getTime());

    // The events table locked by another session: neither the count nor the oldest event can be read.
    const head = all.at(-1)!.position;
    const session = await openSession();
    try {
      await session.query('BEGIN');
      await session.query(`LOCK TABLE "${schemas.events}".events IN ACCESS EXCLUSIVE MODE`);
      const started = Date.now();
      const lag = await lagReader(store, head, await tables.databaseNow())(failing.position, failing.advancedAt);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(lag.eventsBehind).toBeNull();
      const sinceDelivery = (Date.now() - delivered.advancedAt.getTime()) / 1000;
      expect(lag.secondsBehind).toBeGreaterThanOrEqual(1.4);
      expect(lag.secondsBehind).toBeLessThanOrEqual(sinceDelivery + 0.1);
      // /metrics: the count as NaN (prom-client writes `Nan`, which Prometheus reads as NaN), the seconds as they are, failing.
      const metrics = createApiMetrics({ publishers: { status: async () => [{ ...failing, state: reportedState(failing), ...lag }] } });
      const text = await metrics.registry.metrics();
      expect(text).toContain('crm_publisher_lag_events{publisher="nats",kind="nats"} Nan');
      expect(text).toMatch(/crm_publisher_lag_seconds\{publisher="nats",kind="nats"\} (1\.[4-9]|[2-9])/);
      expect(text).toContain('crm_publisher_failing{publisher="nats",kind="nats"} 1');
      expect(text).toContain('crm_publisher_state{publisher="nats",kind="nats",state="retrying"} 1');
    } finally {
      await session.query('ROLLBACK').catch(() => undefined);
      await session.end();
    }
  });
});

describe('publisher lag, many subscriptions behind', () => {
  it('reads one event per distinct position and counts the rest, however many publishers wait and however far behind', async () => {
    await register(30);
    const all = await storedEvents(store);
    // Twelve subscriptions: six from the start, six from the middle, none delivering.
    const middle = all[Math.floor(all.length / 2)]!.position;
    for (let i = 0; i < 12; i++) await tables.ensurePublisher(`webhook:lag-${i}`, 'webhook', i < 6 ? 0n : middle);
    let eventsRead = 0;
    let inFlight = 0;
    let mostInFlight = 0;
    /** A read counted while it runs: side by side, twenty positions' reads took the pool from commands. */
    const tracked = async <T>(read: () => Promise<T>): Promise<T> => {
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      try {
        return await read();
      } finally {
        inFlight -= 1;
      }
    };
    const counted: EventStore = {
      ...store,
      engine: store.engine,
      readAll: (options) =>
        tracked(async () => {
          const events = await store.readAll(options);
          eventsRead += events.length;
          return events;
        }),
      countEvents: (range) => tracked(() => store.countEvents!(range)),
    };
    const statuses = (await readPublisherStatus(tables, counted)).filter((s) => s.name.startsWith('webhook:lag-'));
    expect(statuses).toHaveLength(12);
    const behindFromStart = all.length;
    const behindFromMiddle = all.filter((e) => e.position > middle).length;
    expect(statuses.map((s) => s.eventsBehind).sort((a, b) => a! - b!)).toEqual([...Array(6).fill(behindFromMiddle), ...Array(6).fill(behindFromStart)]);
    // The oldest waiting event of each distinct position; the counts come from the position index.
    // Before, each publisher read every waiting event (up to 10,000) to count them: 6 x 40 + 6 x 20 here.
    const head = all.at(-1)!.position;
    const positionsBehind = new Set((await tables.publishers()).filter((p) => p.position < head).map((p) => p.position));
    expect(positionsBehind.size).toBe(3); // the two above and the NATS publisher of the tests before
    expect(eventsRead).toBe(positionsBehind.size);
    expect(mostInFlight).toBe(1);
    // The count stops where a lag figure needs no more.
    expect(await store.countEvents!({ fromPosition: 0n, untilPosition: head, atMost: 5 })).toBe(5);
    expect(await store.countEvents!({ fromPosition: 0n, untilPosition: head })).toBe(all.length);
  });
});
