import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import { createSnapshotCodec, SNAPSHOT_AFTER_EVENTS, SNAPSHOT_FORMAT } from '../../commands/snapshots.ts';
import { countingStreamReads } from '../../eventstore/read-counter.ts';
import { IdempotencyConflict } from '../../eventstore/errors.ts';
import { commandStoreFor } from '../support/command-store.ts';

/**
 * The API's stream cache and saved states (commands/stream-cache.ts): a process that does not hold a
 * customer's stream reads its saved state and the events after it, not the whole history; a stream
 * that was costly to read is saved; what the handler answers is what it answers on the whole stream.
 * Each `restart()` is a new handler over the same store, as a new API process is.
 */
const h = commandStoreFor('api_saved_states');

const ctx = (key?: string) => ({ actor: { userId: 'u-1', roles: ['admin'] }, correlationId: randomUUID(), ...(key ? { idempotencyKey: key } : {}) });
const stream = (customerId: string) => `customer-${customerId}`;

/** A new handler over the store, counting the events it reads. */
const restart = (): { api: CrmCommands; read: { n: number } } => {
  const { store, rowsRead } = countingStreamReads(h.store);
  return { api: createCrmCommands({ store, personalData: h.personalData }), read: rowsRead };
};

const purchase = (customerId: string, orderId: string, amount = 10) => ({ type: 'RecordPurchase', customerId, orderId, amount, currency: 'EUR' });

/** A customer with `orders` purchases, each under its own idempotency key `k<i>`, recorded by one handler. */
const withHistory = async (orders: number): Promise<string> => {
  const customerId = randomUUID();
  const { api } = restart();
  await api.execute({ type: 'RegisterCustomer', customerId, name: 'Grace Hopper', email: `${customerId}@example.com` }, ctx());
  for (let i = 0; i < orders; i++) await api.execute(purchase(customerId, `o${i}`, 10 + i), ctx(`k${i}`));
  return customerId;
};

const savedRevision = async (customerId: string, tries = 50): Promise<number | undefined> => {
  for (let i = 0; i < tries; i++) {
    const { rows } = await sql<{ revision: string }>`
      SELECT revision::text AS revision FROM ${sql.table(`${h.schemas.events}.stream_snapshots`)} WHERE stream = ${stream(customerId)}`.execute(h.database.db);
    // Saved in the background after the command that read the stream: wait for it a little.
    if (rows[0]) return Number(rows[0].revision);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return undefined;
};

describe("the API's saved states of customer streams", () => {
  it('reads a long stream whole once, saves its state, and from then on reads only the events after it', async () => {
    const orders = SNAPSHOT_AFTER_EVENTS + 12;
    const customerId = await withHistory(orders);
    const events = orders + 1;

    const first = restart();
    await first.api.execute(purchase(customerId, 'n1'), ctx('n1'));
    expect(first.read.n).toBe(events);
    // The state the purchase was decided on (revisions count from 0).
    expect(await savedRevision(customerId)).toBe(events - 1);

    // A process started later reads the saved state, the event at its revision (for its position) and
    // the ones after it, nothing before, whatever the history's length.
    const second = restart();
    await second.api.execute(purchase(customerId, 'n2'), ctx('n2'));
    expect(second.read.n).toBe(2);
    const third = restart();
    await third.api.execute(purchase(customerId, 'n3'), ctx('n3'));
    expect(third.read.n).toBe(3);
    const orderIds = (await h.store.readStream(stream(customerId)))
      .filter((e) => e.type === 'PurchaseRecorded')
      .map((e) => (e.data as { orderId: string }).orderId);
    expect(orderIds.slice(-3)).toEqual(['n1', 'n2', 'n3']);
    expect(new Set(orderIds).size).toBe(orderIds.length);
  });

  it('decides on the saved state as on the whole stream: the state is equal, a known order is known', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS + 3);
    const n1 = await restart().api.execute(purchase(customerId, 'n1'), ctx());
    expect(await savedRevision(customerId)).toBe(n1.revision - 1);

    const { api, read } = restart();
    const fromSaved = await api.loadAggregate('customer', customerId);
    // The event at the saved revision and the purchase after it.
    expect(read.n).toBe(2);
    const whole = await restart().api.loadAggregate('customer', customerId, { asOf: n1.revision });
    expect(fromSaved).toStrictEqual(whole);

    // An order of the history, sent again by another feed: nothing to record with the same values,
    // a refusal with others.
    const same = await api.execute(purchase(customerId, 'o2', 12), ctx('another-feed:o2'));
    expect(same.eventIds).toEqual([]);
    await expect(api.execute(purchase(customerId, 'o2', 99), ctx('another-feed:o2:changed'))).rejects.toMatchObject({ code: 'purchase.order_conflict' });
    // Nothing recorded: the answer's position is that of the stream's last event.
    const last = (await h.store.readStream(stream(customerId))).at(-1)!;
    expect(same).toMatchObject({ revision: last.revision, position: last.position });
  });

  it('answers a retry of a command older than the saved state with its first result, and refuses its key for another request', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS + 3);
    await restart().api.execute(purchase(customerId, 'n1'), ctx());
    expect(await savedRevision(customerId)).toBeDefined();
    const recorded = (await h.store.readStream(stream(customerId))).find((e) => (e.data as { orderId?: string }).orderId === 'o4')!;

    const { api } = restart();
    const retried = await api.execute(purchase(customerId, 'o4', 14), ctx('k4'));
    expect(retried).toMatchObject({ revision: recorded.revision, position: recorded.position, eventIds: [recorded.id] });
    await expect(restart().api.execute(purchase(customerId, 'o4', 15), ctx('k4'))).rejects.toBeInstanceOf(IdempotencyConflict);
    // A key used after the saved state is answered from what the process read.
    const newer = await api.execute(purchase(customerId, 'n2'), ctx('n2'));
    expect(await restart().api.execute(purchase(customerId, 'n2'), ctx('n2'))).toMatchObject({ revision: newer.revision, eventIds: newer.eventIds });
    // The command whose event is the saved state's last is answered from the event read again for its
    // position: nothing more is read than the events from that revision on.
    const lastOfHistory = (await h.store.readStream(stream(customerId))).find(
      (e) => (e.data as { orderId?: string }).orderId === `o${SNAPSHOT_AFTER_EVENTS + 2}`,
    )!;
    const counted = restart();
    expect(
      await counted.api.execute(purchase(customerId, `o${SNAPSHOT_AFTER_EVENTS + 2}`, 10 + SNAPSHOT_AFTER_EVENTS + 2), ctx(`k${SNAPSHOT_AFTER_EVENTS + 2}`)),
    ).toMatchObject({
      revision: lastOfHistory.revision,
      eventIds: [lastOfHistory.id],
    });
    expect(counted.read.n).toBe(3);
  });

  it('saves the ids of every event once: from a stream read whole, and again from a saved state and the events read after it', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS + 3);
    const codec = createSnapshotCodec(h.store.snapshots!, h.personalData);
    const savedIds = async () => (await codec.load([stream(customerId)])).get(stream(customerId));
    await restart().api.execute(purchase(customerId, 'n1'), ctx());
    // Saved in the background: wait for it.
    expect(await savedRevision(customerId)).toBe(SNAPSHOT_AFTER_EVENTS + 3);
    const first = await savedIds();
    expect(first?.revision).toBe(SNAPSHOT_AFTER_EVENTS + 3);
    expect(first?.ids.size).toBe(SNAPSHOT_AFTER_EVENTS + 4);
    // The registration (revision 0) is among them: a retry of it is a repeat, not a new customer.
    expect(first?.ids.hashOf((await h.store.readStream(stream(customerId)))[0]!.id)).toBeDefined();

    // Events enough to be costly after the saved state: read from it, and saved again.
    const writer = restart().api;
    for (let i = 0; i < SNAPSHOT_AFTER_EVENTS; i++) await writer.execute(purchase(customerId, `m${i}`), ctx());
    const again = restart();
    await again.api.execute(purchase(customerId, 'n2'), ctx());
    expect(again.read.n).toBe(SNAPSHOT_AFTER_EVENTS + 2);
    await expect.poll(async () => (await savedIds())?.revision).toBe(first!.revision + SNAPSHOT_AFTER_EVENTS + 1);
    const second = await savedIds();
    expect(second?.ids.size).toBe(second!.revision + 1);
    for (const e of await h.store.readStream(stream(customerId), { untilRevision: second!.revision })) expect(second!.ids.hashOf(e.id), e.type).toBeDefined();
  });

  it('saves a stream read whole from exactly as many events as the threshold, and not one fewer', async () => {
    const [at, below] = [await withHistory(SNAPSHOT_AFTER_EVENTS - 1), await withHistory(SNAPSHOT_AFTER_EVENTS - 2)];
    await restart().api.execute(purchase(at, 'n1'), ctx());
    await restart().api.execute(purchase(below, 'n1'), ctx());
    expect(await savedRevision(at)).toBe(SNAPSHOT_AFTER_EVENTS - 1);
    expect(await savedRevision(below, 10)).toBeUndefined();
  });

  it('saves nothing when a process holding the stream catches up with many events another process wrote', async () => {
    const customerId = await withHistory(2);
    const holder = restart();
    await holder.api.execute(purchase(customerId, 'n1'), ctx());
    const other = restart().api;
    for (let i = 0; i < SNAPSHOT_AFTER_EVENTS + 2; i++) await other.execute(purchase(customerId, `m${i}`), ctx());
    holder.read.n = 0;
    // The conflict makes it catch up: only the newer events are read, and they were not costly to read from its state.
    await holder.api.execute(purchase(customerId, 'n2'), ctx());
    expect(holder.read.n).toBe(SNAPSHOT_AFTER_EVENTS + 2);
    expect(await savedRevision(customerId, 10)).toBeUndefined();
  });

  it('reads the stream whole when the store hands out a saved state as a revision it was not sealed at (beyond the stream), and decides on what the stream holds', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS + 3);
    await restart().api.execute(purchase(customerId, 'n1'), ctx());
    expect(await savedRevision(customerId)).toBeDefined();
    const saved = (await h.store.snapshots!.load([stream(customerId)], SNAPSHOT_FORMAT)).get(stream(customerId))!;
    // A store that does not check the revision against its stream (a restored backup beside newer states).
    const counted = countingStreamReads(h.store);
    const beyond = { ...h.store.snapshots!, load: async () => new Map([[stream(customerId), { ...saved, revision: saved.revision + 50 }]]) };
    const api = createCrmCommands({ store: { ...counted.store, snapshots: beyond }, personalData: h.personalData });
    const events = (await h.store.readStream(stream(customerId))).length;
    const n2 = await api.execute(purchase(customerId, 'n2'), ctx());
    expect(n2.revision).toBe(events);
    // The seal binds the state to its revision: handed out as another, it cannot be opened and the stream is read whole.
    expect(counted.rowsRead.n).toBe(events);
  });

  it('looks no saved state up for a registration (its stream is new), and answers a registration sent again from the whole stream', async () => {
    const lookups: string[][] = [];
    const counted = countingStreamReads(h.store);
    const store = {
      ...counted.store,
      snapshots: { ...h.store.snapshots!, load: (streams: string[], format: string) => (lookups.push(streams), h.store.snapshots!.load(streams, format)) },
    };
    const api = createCrmCommands({ store, personalData: h.personalData });
    const customerId = randomUUID();
    const registration = { type: 'RegisterCustomer', customerId, name: 'Ada Lovelace', email: `${customerId}@example.com` };
    const first = await api.execute(registration, ctx('register'));
    expect(lookups).toEqual([]);
    for (let i = 0; i < SNAPSHOT_AFTER_EVENTS + 2; i++) await api.execute(purchase(customerId, `o${i}`), ctx());
    await restart().api.execute(purchase(customerId, 'n1'), ctx());
    expect(await savedRevision(customerId)).toBeDefined();

    const again = createCrmCommands({ store, personalData: h.personalData });
    counted.rowsRead.n = 0;
    expect(await again.execute(registration, ctx('register'))).toMatchObject({ revision: first.revision, position: first.position, eventIds: first.eventIds });
    expect(lookups).toEqual([]);
    expect(counted.rowsRead.n).toBe(SNAPSHOT_AFTER_EVENTS + 4);
    // Any other command on a stream it does not hold looks one up.
    await again.execute(purchase(randomUUID(), 'x'), ctx()).catch(() => undefined);
    expect(lookups).toHaveLength(1);
  });

  it('passes over the saved state of a forgotten customer: the stream is read and the purchase refused', async () => {
    const customerId = await withHistory(SNAPSHOT_AFTER_EVENTS + 3);
    await restart().api.execute(purchase(customerId, 'n1'), ctx());
    expect(await savedRevision(customerId)).toBeDefined();
    await restart().api.execute({ type: 'ForgetCustomer', customerId }, ctx());
    const { api, read } = restart();
    await expect(api.execute(purchase(customerId, 'n2'), ctx())).rejects.toMatchObject({ code: 'customer.forgotten' });
    expect(read.n).toBeGreaterThan(SNAPSHOT_AFTER_EVENTS + 3);
  });
});
