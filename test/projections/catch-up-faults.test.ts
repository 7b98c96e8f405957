import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { catchUp } from '../../projections/catch-up.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';
import { customersProjection } from '../../projections/read-models/index.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { createHarness, type Harness } from './support.ts';

/**
 * Rebuild, replay and verify catch up to a known end. Their batches used to be tried again for as
 * long as the database refused them (a `crm verify` sat 14 minutes on one progress line, deaf to
 * Ctrl-C): a batch failing on the database is now tried again for a bound, or not at all once the
 * command is told to stop, and the catch-up fails with the database's error (exit 69 for a command).
 */
let h: Harness;
let proxy: FaultProxy;
let throughProxy: SqlDatabase;
const projections = [customersProjection];

beforeAll(async () => {
  h = await createHarness('catch_up_faults');
  await migrateProjections(h.database.db, h.schemas.read, projections);
  proxy = FaultProxy.before(h.schemas.url);
  await proxy.start();
  throughProxy = connectPostgres(proxy.urlThrough(h.schemas.url), { max: 2 });
  for (let i = 0; i < 3; i++) {
    const customerId = randomUUID();
    await h.run({ type: 'RegisterCustomer', customerId, name: 'Away', email: `${customerId}@example.com` });
  }
});
afterAll(async () => {
  await throughProxy?.close();
  await proxy?.close();
  await h?.close();
});

/**
 * The events read from the store directly, one a page; the batches applied through the proxy, which
 * refuses every connection from the first page applied on (`then` runs there too).
 */
const catchUpRefusedMidway = (options: { faultRetryMs?: number; signal?: AbortSignal }, then: () => void = () => undefined) => {
  let refused = false;
  return catchUp({
    db: throughProxy.db,
    store: h.store,
    schema: h.schemas.read,
    projections,
    codec: h.codec,
    untilPosition: h.lastPosition(),
    pageSize: 1,
    onProgress: () => {
      if (refused) return;
      refused = true;
      proxy.refuse();
      then();
    },
    ...options,
  });
};

/**
 * The database's error as the store reports it, unreachable or lost mid-statement, naming the server
 * that refused (the proxy) and the reset; not an error of the catch-up's own.
 */
const expectDatabaseRefused = async (catchingUp: Promise<unknown>) => {
  const error = await catchingUp.then(
    () => 'finished',
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EventStoreUnavailable);
  expect((error as Error).message).toMatch(new RegExp(`PostgreSQL at postgres://127\\.0\\.0\\.1:${proxy.port}/.*(ECONNRESET|Connection terminated)`));
};

describe('a catch-up to an end while the database refuses its batches', () => {
  it('tries them again for its bound, then fails with the database error', async () => {
    const started = Date.now();
    await expectDatabaseRefused(catchUpRefusedMidway({ faultRetryMs: 1_500 }));
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(1_500);
    expect(took).toBeLessThan(15_000);
  }, 30_000);

  it('tries none again once told to stop', async () => {
    proxy.pass();
    const stop = new AbortController();
    const started = Date.now();
    await expectDatabaseRefused(catchUpRefusedMidway({ faultRetryMs: 60_000, signal: stop.signal }, () => stop.abort()));
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 30_000);
});
