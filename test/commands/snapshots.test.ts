import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createBatchCommands, type BatchItem } from '../../commands/batch.ts';
import { compactState, compactStateForm } from '../../commands/compact-state.ts';
import { SNAPSHOT_AFTER_EVENTS, SNAPSHOT_FORMAT } from '../../commands/snapshots.ts';
import { customerDecider, type CustomerState } from '../../domain/customer/decider.ts';
import type { CustomerEvent } from '../../domain/customer/events.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { commandStoreFor } from '../support/command-store.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';

/**
 * Saved states of customer streams (commands/snapshots.ts): a batch that read a long stream saves its
 * state once it appended, the next handler reads that state and only the events after it and decides
 * exactly as on the whole stream; a snapshot it cannot trust (forgotten customer, altered or moved
 * text, beyond its stream, another format) is passed over and the stream read whole.
 */
const h = commandStoreFor('stream_snapshots');

const actor = { userId: 'crm-import', roles: ['admin'] };
const item = (command: BatchItem['command'], key: string): BatchItem => ({ command, ctx: { actor, correlationId: `import:test:${key}`, idempotencyKey: key } });
const register = (customerId: string): BatchItem =>
  item({ type: 'RegisterCustomer', customerId, name: 'Ada Lovelace', email: `${customerId}@example.com` }, `reg:${customerId}`);
const purchase = (customerId: string, orderId: string, amount = 10, key = `buy:${customerId}:${orderId}`): BatchItem =>
  item({ type: 'RecordPurchase', customerId, orderId, amount, currency: 'EUR', occurredAt: '2024-03-01T10:00:00.000Z' }, key);
const stream = (customerId: string) => `customer-${customerId}`;

/** The store, counting the events each handler reads. */
const counting = () => {
  const read = { events: 0 };
  const wrapped: EventStore = {
    ...h.store,
    engine: h.store.engine,
    readStreams: async (streams, options) => {
      const found = await h.store.readStreams(streams, options);
      for (const events of found.values()) read.events += events.length;
      return found;
    },
  };
  return { store: wrapped, read };
};

/** A customer with a history longer than the snapshot threshold, written by a handler of its own. */
const withHistory = async (orders = SNAPSHOT_AFTER_EVENTS + 4): Promise<string> => {
  const customerId = randomUUID();
  const outcomes = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: h.store, personalData: h.personalData }).executeBatch([
    register(customerId),
    ...Array.from({ length: orders }, (_, i) => purchase(customerId, `h${i}`, 10 + i)),
  ]);
  expect(outcomes.every((o) => o.ok)).toBe(true);
  return customerId;
};

const savedRow = async (customerId: string) =>
  (
    await sql<{ revision: string; format: string; state: string }>`
      SELECT revision::text AS revision, format, state FROM ${sql.table(`${h.schemas.events}.stream_snapshots`)} WHERE stream = ${stream(customerId)}`.execute(
      h.database.db,
    )
  ).rows[0];

/** Imports one purchase of `customerId` through a fresh handler (empty cache); its outcome and the events it read. */
const freshPurchase = async (customerId: string, orderId: string, amount = 10, key?: string) => {
  const c = counting();
  const [outcome] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: c.store, personalData: h.personalData }).executeBatch([
    purchase(customerId, orderId, amount, key),
  ]);
  return { outcome: outcome!, read: c.read.events };
};

describe('stream snapshots', () => {
  it('a long stream read whole is saved as soon as it is read; the next handler reads the state and the events after it and decides alike', async () => {
    const customerId = await withHistory();
    const events = SNAPSHOT_AFTER_EVENTS + 5;
    // Not saved while the writing handler had the stream in memory: nothing was costly to read.
    expect(await savedRow(customerId)).toBeUndefined();

    const first = await freshPurchase(customerId, 'n1');
    expect(first).toMatchObject({ outcome: { ok: true, alreadyDone: false }, read: events });
    // Saved as read (revisions 0 to events - 1), before the purchase's append.
    const saved = await savedRow(customerId);
    expect(saved).toMatchObject({ revision: String(events - 1), format: SNAPSHOT_FORMAT });
    // Sealed with the customer's key: no personal data in clear.
    // The whole name: a three-letter text turns up in random ciphertext now and then (it did, 'AdazQ').
    expect(saved!.state).not.toContain('Ada Lovelace');
    expect(saved!.state).not.toContain('@example.com');

    // The next handler reads the state and the one purchase after it: an order of the history is
    // still known under another key (the same values: nothing to record; other values: refused).
    const again = await freshPurchase(customerId, 'h3', 13, 'another-feed:h3');
    expect(again).toMatchObject({ outcome: { ok: true, eventIds: [] }, read: 1 });
    const conflict = await freshPurchase(customerId, 'h3', 99, 'another-feed:h3:changed');
    expect(conflict.read).toBe(1);
    expect(conflict.outcome).toMatchObject({ ok: false, error: { code: 'purchase.order_conflict' } });
    // A registration looks the saved state up too (a customers file run again over years of purchases
    // read every customer whole): a repeated one is answered as done.
    const c = counting();
    const [registration] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: c.store, personalData: h.personalData }).executeBatch([
      register(customerId),
    ]);
    expect(registration).toMatchObject({ ok: true, alreadyDone: true });
    expect(c.read.events).toBe(1);
    // A row imported after the saved state (same key) is answered as done from the ids read after it.
    expect(await freshPurchase(customerId, 'n1')).toMatchObject({ outcome: { ok: true, alreadyDone: true }, read: 1 });

    // An API client appends meanwhile: read after the snapshot, not before.
    await h.api.execute({ type: 'RecordPurchase', customerId, orderId: 'api-1', amount: 5, currency: 'EUR' }, { actor, correlationId: 'api' });
    const after = await freshPurchase(customerId, 'n2');
    expect(after).toMatchObject({ outcome: { ok: true, alreadyDone: false }, read: 2 });
    const orders = (await h.store.readStream(stream(customerId)))
      .filter((e) => e.type === 'PurchaseRecorded')
      .map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.slice(-3)).toEqual(['n1', 'api-1', 'n2']);
    expect(new Set(orders).size).toBe(orders.length);
  });

  it('a stream that was cheap to read is not saved', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS - 2);
    expect(await freshPurchase(customerId, 'n1')).toMatchObject({ outcome: { ok: true }, read: SNAPSHOT_AFTER_EVENTS - 1 });
    expect(await savedRow(customerId)).toBeUndefined();
  });

  it('the state of a forgotten customer is not read from the snapshot: the stream is read and the purchase refused', async () => {
    const customerId = await withHistory();
    await freshPurchase(customerId, 'n1');
    expect(await savedRow(customerId)).toBeDefined();
    await h.api.execute({ type: 'ForgetCustomer', customerId }, { actor, correlationId: 'gdpr' });
    const refused = await freshPurchase(customerId, 'n2');
    expect(refused.read).toBe(SNAPSHOT_AFTER_EVENTS + 7);
    expect(refused.outcome).toMatchObject({ ok: false, error: { code: 'customer.forgotten' } });
  });

  it('an altered snapshot, or one moved to another customer, is passed over and the stream read whole', async () => {
    const [a, b] = [await withHistory(), await withHistory(SNAPSHOT_AFTER_EVENTS + 6)];
    await freshPurchase(a, 'n1');
    await freshPurchase(b, 'n1');
    const table = sql.table(`${h.schemas.events}.stream_snapshots`);
    // b's state under a's name, at a's revision: it does not authenticate for a.
    await sql`UPDATE ${table} SET state = (SELECT state FROM ${table} WHERE stream = ${stream(b)}) WHERE stream = ${stream(a)}`.execute(h.database.db);
    const moved = await freshPurchase(a, 'h1', 11, 'another-feed:h1');
    expect(moved.read).toBe(SNAPSHOT_AFTER_EVENTS + 6);
    expect(moved.outcome).toMatchObject({ ok: true, eventIds: [] });
    // One character of b's ciphertext changed.
    const { state } = (await savedRow(b))!;
    const altered = state.slice(0, -3) + (state.at(-3) === 'A' ? 'B' : 'A') + state.slice(-2);
    await sql`UPDATE ${table} SET state = ${altered} WHERE stream = ${stream(b)}`.execute(h.database.db);
    const tampered = await freshPurchase(b, 'h2', 99, 'another-feed:h2');
    expect(tampered.read).toBe(SNAPSHOT_AFTER_EVENTS + 8);
    expect(tampered.outcome).toMatchObject({ ok: false, error: { code: 'purchase.order_conflict' } });
  });

  it('a snapshot beyond its stream, or of another format, is not loaded; an older revision never replaces a newer one', async () => {
    const customerId = await withHistory();
    const snapshots = h.store.snapshots!;
    await snapshots.save([{ stream: stream(customerId), revision: 500, format: SNAPSHOT_FORMAT, state: 'beyond' }]);
    expect(await snapshots.load([stream(customerId)], SNAPSHOT_FORMAT)).toEqual(new Map());
    await snapshots.save([{ stream: stream(customerId), revision: 3, format: SNAPSHOT_FORMAT, state: 'older' }]);
    expect((await savedRow(customerId))?.state).toBe('beyond');
    await snapshots.save([{ stream: stream(customerId), revision: 3, format: 'customer.0', state: 'other format' }]);
    expect(await snapshots.load([stream(customerId)], SNAPSHOT_FORMAT)).toEqual(new Map());
    expect((await snapshots.load([stream(customerId), stream(customerId)], 'customer.0')).get(stream(customerId))).toMatchObject({
      revision: 3,
      state: 'other format',
    });
    // Read whole, then saved in this format over the other one.
    expect(await freshPurchase(customerId, 'n1')).toMatchObject({ outcome: { ok: true }, read: SNAPSHOT_AFTER_EVENTS + 5 });
    expect(await savedRow(customerId)).toMatchObject({ format: SNAPSHOT_FORMAT, revision: String(SNAPSHOT_AFTER_EVENTS + 4) });
  });

  it('the saved form of a customer state is fixed for its format: a change of the fold or of the compact form needs a new SNAPSHOT_FORMAT', () => {
    const customerId = '7f0c5a8e-1b2d-4c3e-8f9a-0b1c2d3e4f5a';
    const history: CustomerEvent[] = [
      {
        type: 'CustomerRegistered',
        data: {
          customerId,
          name: 'Ada',
          email: 'ada@example.com',
          phone: null,
          company: 'Analytical',
          tags: ['vip'],
          source: 'import',
          marketingConsent: true,
        },
      },
      { type: 'PurchaseRecorded', data: { customerId, orderId: 'o1', amount: 10.5, currency: 'EUR' } },
      { type: 'PurchaseRecorded', data: { customerId, orderId: '__proto__', amount: 3, currency: 'USD' } },
      { type: 'PurchaseRefunded', data: { customerId, orderId: 'o1', refundId: 'r1', amount: 2.25, currency: 'EUR', reason: null } },
      { type: 'CustomerTagged', data: { customerId, tag: 'gold' } },
    ];
    const state = history.reduce<CustomerState>((s, e, i) => customerDecider.evolve(s, e, `2026-01-0${i + 1}T10:00:00.000Z`), customerDecider.initialState());
    // When this fails: change SNAPSHOT_FORMAT in commands/snapshots.ts, then the expected text here.
    expect({ format: SNAPSHOT_FORMAT, saved: JSON.stringify(compactStateForm('customer', compactState('customer', state))) }).toEqual({
      format: 'customer.3',
      saved: String.raw`{"plain":{"exists":true,"customerId":"7f0c5a8e-1b2d-4c3e-8f9a-0b1c2d3e4f5a","name":"Ada","email":"ada@example.com","phone":null,"company":"Analytical","tags":["vip","gold"],"source":"import","marketingConsent":true,"status":"active","deactivationReason":null,"statusChangedAt":"2026-01-01T10:00:00.000Z","mergedInto":null,"mergedDuplicates":[],"forgotten":false,"ownerId":null},"books":{"orders":[["amount","currency","refunded","purchasedAt"],"\n\"o1\":[10.5,\"EUR\",2.25,1767348000]\n\"__proto__\":[3,\"USD\",0,1767434400]"],"refunds":[["orderId","amount","currency"],"\n\"r1\":[\"o1\",2.25,\"EUR\"]"]}}`,
    });
  });
});
