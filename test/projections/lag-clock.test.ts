import { randomUUID } from 'node:crypto';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CommandContext } from '../../commands/index.ts';
import { readPublisherStatus } from '../../integration/publishers.ts';
import { integrationTables, NATS_PUBLISHER, type IntegrationTables } from '../../integration/tables.ts';
import { ensureCheckpoint, migrateCheckpoints } from '../../projections/checkpoints.ts';
import type { Projection } from '../../projections/projection.ts';
import { ReadModelTimeout } from '../../projections/errors.ts';
import { readProjectionStatus, waitForCheckpoints } from '../../projections/status.ts';
import { commandStoreFor } from '../support/command-store.ts';

/**
 * Lag is taken on one clock, the database's, that set the times it is taken from (`recorded_at`,
 * `updated_at`, `advanced_at`): this host's clock set two minutes apart from the server's changes nothing.
 * Ahead, it made a projection one event behind look two minutes behind, and /ready answered 503 under
 * steady traffic; behind, it showed a projection standing still as caught up.
 */
const opened = commandStoreFor('lagclock');
const { schemas } = opened;
let tables: IntegrationTables;

const SKEW_MS = 120_000;
const customers = { name: 'customers', version: 1 } as Projection;

beforeAll(async () => {
  tables = integrationTables(opened.database.db, schemas.events);
  await tables.migrate();
  await tables.ensurePublisher(NATS_PUBLISHER, 'nats', 0n);
  await migrateCheckpoints(opened.database.db, schemas.read);
  await ensureCheckpoint(opened.database.db, schemas.read, customers);
});
afterEach(() => {
  vi.useRealTimers();
});

const ctx = (): CommandContext => ({ actor: { userId: 'lag-clock', roles: ['admin'] }, correlationId: randomUUID() });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** This host's clock `ms` off the database's; timers and performance.now() stay real. */
const skewClock = (ms: number) => vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + ms });

const lagsNow = async () => {
  const [[projection], [publisher]] = await Promise.all([
    readProjectionStatus(opened.database.db, schemas.read, opened.store),
    readPublisherStatus(tables, opened.store),
  ]);
  return { projection: projection!, publisher: publisher! };
};

describe('lag with this host clock set apart from the database server clock', () => {
  it('is the age on the database clock, whether this host runs ahead or behind', async () => {
    // One event not applied by the projection nor sent by the publisher, recorded a second and a half ago.
    await opened.api.execute({ type: 'RegisterCustomer', name: 'Clock', email: `clock-${randomUUID()}@example.com` }, ctx());
    await sleep(1_500);

    // Ahead by two minutes: the lag is not two minutes (it was: 122 s, past the 30 s bound of /ready).
    skewClock(SKEW_MS);
    const ahead = await lagsNow();
    expect(ahead.projection.eventsBehind).toBe(1);
    for (const seconds of [ahead.projection.secondsBehind, ahead.projection.secondsSinceUpdate, ahead.publisher.secondsBehind]) {
      expect(seconds).toBeGreaterThanOrEqual(1.4);
      expect(seconds).toBeLessThan(30);
    }
    vi.useRealTimers();

    // Behind by two minutes: the waiting event is not hidden as caught up (it was: 0 s).
    skewClock(-SKEW_MS);
    const behind = await lagsNow();
    for (const seconds of [behind.projection.secondsBehind, behind.projection.secondsSinceUpdate, behind.publisher.secondsBehind]) {
      expect(seconds).toBeGreaterThanOrEqual(1.4);
      expect(seconds).toBeLessThan(30);
    }
  });
});

describe('a wait with the wall clock set back', () => {
  it('ends at its timeout: read-your-writes is timed on the monotonic clock', async () => {
    const waiting = waitForCheckpoints(opened.database.db, schemas.read, 1_000_000n, { timeoutMs: 300, names: [customers.name] });
    // Set back an hour (NTP, a VM resumed) as the wait runs, and standing still there.
    skewClock(-3_600_000);
    const outcome = await Promise.race([waiting.catch((error: unknown) => error), sleep(3_000).then(() => 'still waiting')]);
    expect(outcome).toBeInstanceOf(ReadModelTimeout);
  });
});
