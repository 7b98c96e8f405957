import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catchUp } from '../../projections/catch-up.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';
import { customersProjection } from '../../projections/read-models/index.ts';
import { createHarness, type Harness } from './support.ts';

/**
 * The PostgreSQL feed shows an event only once every transaction that began writing before it has
 * ended (gap-free order). A catch-up to a position (rebuild, replay, verification) that met that
 * horizon used to stop short of its target without a word; it now waits for it, within a bound.
 */
let h: Harness;
const projections = [customersProjection];

beforeAll(async () => {
  h = await createHarness('catch_up_horizon');
  await migrateProjections(h.database.db, h.schemas.read, projections);
});
afterAll(async () => h?.close());

/** A transaction that has written (holds a transaction id) and stays open until released. */
const openWriter = async () => {
  const client = new pg.Client({ connectionString: h.schemas.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT pg_current_xact_id()');
  return {
    release: async () => {
      await client.query('COMMIT');
      await client.end();
    },
  };
};

/** Up to the last event appended (a replay is always asked for a position it must reach). */
const project = (horizonWaitMs?: number) =>
  catchUp({
    db: h.database.db,
    store: h.store,
    schema: h.schemas.read,
    projections,
    codec: h.codec,
    untilPosition: h.lastPosition(),
    ...(horizonWaitMs ? { horizonWaitMs } : {}),
  });

const register = async () => {
  const customerId = randomUUID();
  await h.run({ type: 'RegisterCustomer', customerId, name: 'Held Back', email: `${customerId}@example.com` });
  return customerId;
};

describe('catch-up behind the feed horizon', () => {
  it('waits for events an open writer elsewhere holds back, and applies them once it ends', async () => {
    const writer = await openWriter();
    const customerId = await register();
    let finished = false;
    const running = project().then((result) => {
      finished = true;
      return result;
    });
    // While the writer is open the event is committed but not shown: the catch-up must not end.
    for (let i = 0; i < 30; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(finished).toBe(false);
    await writer.release();
    const result = await running;
    expect(result.events).toBeGreaterThanOrEqual(1);
    const rows = await h.database.db.withSchema(h.schemas.read).selectFrom('customers').select('customer_id').where('customer_id', '=', customerId).execute();
    expect(rows).toHaveLength(1);
  });

  it('gives up after its bound with an error that says what holds it and what to do', async () => {
    const writer = await openWriter();
    try {
      await register();
      await expect(project(300)).rejects.toThrow(/a transaction that wrote events is still open\. Run the command again/);
    } finally {
      await writer.release();
    }
    // Once the writer ended, the same catch-up completes.
    await expect(project()).resolves.toMatchObject({ failed: [] });
  });
});
