import { randomUUID } from 'node:crypto';
import { ZodError } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands, streamsOf, type BatchCommandDeps, type BatchItem, type BatchOutcome } from '../../commands/batch.ts';
import { eventIdFor } from '../../commands/ids.ts';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import { schemaVersionOf, type CrmEventType } from '../../domain/catalogue.ts';
import { DomainError } from '../../domain/errors.ts';
import { MAX_STREAMS_PER_APPEND, type EventStore, type StreamAppend } from '../../eventstore/contract.ts';
import { IdempotencyConflict, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { createPersonalData, isEncrypted, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';
import { countTurns } from '../support/turns.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';

/**
 * The batch handler of bulk import against the real PostgreSQL: several rows for one stream in one
 * batch, refusals as outcomes, re-imports that append nothing, one expected revision per stream,
 * concurrent writers whose conflicts are decided again, pipelined batches and their failures, the
 * stream cache's bound, and customers forgotten while an import runs.
 */
const schemas = testSchemas('batch_commands');
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;
/** The one-at-a-time handler: API clients writing the same streams during an import. */
let api: CrmCommands;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  api = createCrmCommands({ store, personalData });
});
afterAll(async () => {
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const actor = { userId: 'crm-import', roles: ['admin'] };
const item = (command: BatchItem['command'], key: string | undefined): BatchItem => ({
  command,
  ctx: { actor, correlationId: `import:test:${key ?? 'none'}`, ...(key !== undefined ? { idempotencyKey: key } : {}) },
});
const register = (customerId: string): BatchItem =>
  item({ type: 'RegisterCustomer', customerId, name: 'Ada Lovelace', email: `${customerId}@example.com` }, `reg:${customerId}`);
const purchase = (customerId: string, orderId: string, amount = 10, key = `buy:${customerId}:${orderId}`): BatchItem =>
  item({ type: 'RecordPurchase', customerId, orderId, amount, currency: 'EUR', occurredAt: '2024-03-01T10:00:00.000Z' }, key);
const customerStream = (customerId: string) => `customer-${customerId}`;

/** Customers registered by a handler of their own (so the handler under test finds them only in the store). */
const registered = async (n: number): Promise<string[]> => {
  const ids = Array.from({ length: n }, () => randomUUID());
  const outcomes = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).executeBatch(ids.map(register));
  expect(outcomes.every((o) => o.ok)).toBe(true);
  return ids;
};

/** A purchase by an API client (another writer of the customer's stream). */
const apiPurchase = (customerId: string, orderId = `api-${randomUUID()}`) =>
  api.execute(
    { type: 'RecordPurchase', customerId, orderId, amount: 5, currency: 'EUR' },
    { actor, correlationId: 'api', idempotencyKey: `api-${randomUUID()}` },
  );

interface Watched {
  store: EventStore;
  /** Each `appendToStreams` call, as (stream, expected revision, event count). */
  appends: { stream: string; expected: StreamAppend['expectedRevision']; events: number }[][];
  /** Each `readStreams` call's streams. */
  reads: string[][];
}

/** The real store, recording its multi-stream appends and reads; `beforeAppend` runs before call n is sent (a race, or a fault). */
const watched = (hooks: { beforeAppend?: (call: number) => Promise<void>; afterRead?: (call: number) => Promise<void> } = {}): Watched => {
  const appends: Watched['appends'] = [];
  const reads: string[][] = [];
  return {
    appends,
    reads,
    store: {
      ...store,
      engine: store.engine,
      appendToStreams: async (list, options) => {
        appends.push(list.map((a) => ({ stream: a.stream, expected: a.expectedRevision, events: a.events.length })));
        await hooks.beforeAppend?.(appends.length);
        return store.appendToStreams(list, options);
      },
      readStreams: async (streams, options) => {
        reads.push([...streams]);
        const read = await store.readStreams(streams, options);
        await hooks.afterRead?.(reads.length);
        return read;
      },
    },
  };
};

const handler = (w: Watched, deps: Partial<BatchCommandDeps> = {}) =>
  createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: w.store, personalData, ...deps });

const ordersOf = async (customerId: string) =>
  (await store.readStream(customerStream(customerId))).map((e) => (e.type === 'PurchaseRecorded' ? (e.data as { orderId: string }).orderId : e.type));

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
};

describe('batch commands: preparing', () => {
  it('validates, stamps and ids each command as the API would, and refuses what a batch cannot run', () => {
    const at = new Date('2024-05-06T07:08:09.000Z');
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, clock: () => at });
    const customerId = randomUUID();
    const ready = batch.prepare(purchase(customerId, 'o1'));
    if (!('prepared' in ready)) throw new Error('refused');
    expect(ready.firstEventId).toBe(eventIdFor(customerStream(customerId), `buy:${customerId}:o1`, 0));
    expect(ready.prepared.stream).toBe(customerStream(customerId));

    // Without its own business time a command takes the clock's.
    const tagged = batch.prepare(item({ type: 'TagCustomer', customerId, tag: 'vip' }, 'tag-1'));
    expect('prepared' in tagged && tagged.prepared.metadata.occurredAt).toBe(at.toISOString());

    // Ids the handler fills derive from the key: the same on a rerun by another process.
    const refund = item({ type: 'RefundPurchase', customerId, orderId: 'o1', amount: 1, currency: 'EUR' }, 'refund-1');
    const first = batch.prepare(refund);
    const again = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).prepare(refund);
    const refundId = 'prepared' in first ? first.prepared.command.refundId : undefined;
    expect(refundId).toMatch(/^[0-9a-f-]{36}$/);
    expect('prepared' in again ? again.prepared.command.refundId : undefined).toBe(refundId);

    const noKey = batch.prepare(item({ type: 'TagCustomer', customerId, tag: 'vip' }, undefined));
    expect('refused' in noKey && noKey.refused).toBeInstanceOf(TypeError);
    expect(String('refused' in noKey && (noKey.refused as Error).message)).toContain('idempotency key');

    const merge = batch.prepare(item({ type: 'MergeCustomer', customerId, duplicateId: randomUUID() }, 'merge-1'));
    expect('refused' in merge && merge.refused).toBeInstanceOf(DomainError);
    expect('refused' in merge && merge.refused).toMatchObject({
      code: 'command.not_in_batch',
      field: 'type',
      message: 'MergeCustomer cannot be run in a batch; send it on its own',
    });

    // A user holds an address in the users' email index, which only the one-at-a-time handler claims.
    for (const command of [
      { type: 'RegisterUser', name: 'Staff', email: 'staff@crm.example', role: 'sales' },
      { type: 'ChangeUser', userId: randomUUID(), email: 'staff@crm.example' },
    ]) {
      const user = batch.prepare(item(command, `user-${command.type}`));
      expect('refused' in user && user.refused).toMatchObject({ code: 'command.not_in_batch', field: 'type' });
    }

    const bad = batch.prepare(item({ type: 'RecordPurchase', customerId, orderId: 'o2', amount: 'ten', currency: 'EUR' }, 'bad-1'));
    expect('refused' in bad && bad.refused).toBeInstanceOf(ZodError);
  });

  it('names the streams a command reads or writes: its own, and the customer it needs a snapshot of', () => {
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const customerId = randomUUID();
    const feedbackId = randomUUID();
    const feedback = batch.prepare(
      item({ type: 'SubmitFeedback', feedbackId, customerId, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where is it?' }, 'fb-1'),
    );
    expect(streamsOf(feedback)).toEqual([`feedback-${feedbackId}`, customerStream(customerId)]);
    expect(streamsOf(batch.prepare(purchase(customerId, 'o1')))).toEqual([customerStream(customerId)]);
    expect(streamsOf(batch.prepare(item({ type: 'Nonsense' }, 'x')))).toEqual([]);
  });
});

describe('batch commands: deciding and storing', () => {
  it('decides several rows for one stream in one batch, refuses bad ones as outcomes, and appends each stream once with its expected revision', async () => {
    const [existing] = await registered(1);
    // A stored event without personal data: no key to load for it.
    await apiPurchase(existing!);
    const fresh = randomUUID();
    const unknown = randomUUID();
    const keys: { create: boolean; ids: string[] }[] = [];
    const spied: PersonalData = {
      ...personalData,
      loadKeys: (ids, options) => {
        keys.push({ create: options?.create ?? false, ids: [...ids] });
        return personalData.loadKeys(ids, options);
      },
    };
    const w = watched();
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: w.store, personalData: spied });
    const outcomes = await batch.executeBatch([
      register(fresh),
      purchase(fresh, 'o1'),
      purchase(unknown, 'o1'),
      purchase(fresh, 'o2'),
      purchase(existing!, 'o1'),
      item({ type: 'TagCustomer', customerId: fresh, tag: 'vip' }, undefined),
    ]);

    expect(outcomes[0]).toEqual({
      ok: true,
      stream: customerStream(fresh),
      eventIds: [eventIdFor(customerStream(fresh), `reg:${fresh}`, 0)],
      alreadyDone: false,
    });
    expect(outcomes[1]).toMatchObject({ ok: true, stream: customerStream(fresh), alreadyDone: false });
    expect(outcomes[3]).toMatchObject({ ok: true, eventIds: [eventIdFor(customerStream(fresh), `buy:${fresh}:o2`, 0)] });
    expect(outcomes[4]).toMatchObject({ ok: true, stream: customerStream(existing!), alreadyDone: false });
    const refused = outcomes[2] as Extract<BatchOutcome, { ok: false }>;
    expect(refused.ok).toBe(false);
    expect(refused.error).toBeInstanceOf(DomainError);
    expect(refused.error).toMatchObject({ code: 'customer.not_found', field: 'customerId' });
    expect(outcomes[5]).toMatchObject({ ok: false, error: expect.any(TypeError) });

    // One read for every stream, one append: the new stream expected absent, the other at its revision.
    expect(w.reads).toEqual([[customerStream(fresh), customerStream(unknown), customerStream(existing!)]]);
    expect(w.appends).toEqual([
      [
        { stream: customerStream(fresh), expected: 'no_stream', events: 3 },
        { stream: customerStream(existing!), expected: 1, events: 1 },
      ],
    ]);
    expect(await ordersOf(fresh)).toEqual(['CustomerRegistered', 'o1', 'o2']);
    const stored = await store.readStream(customerStream(fresh));
    expect(stored.map((e) => e.revision)).toEqual([0, 1, 2]);
    for (const e of stored) {
      expect(e.metadata).toMatchObject({ schemaVersion: schemaVersionOf(e.type as CrmEventType), actor, idempotencyKey: expect.any(String) });
      expect(e.metadata).toHaveProperty('commandHash');
    }
    expect(stored[1]!.metadata).toMatchObject({ correlationId: `import:test:buy:${fresh}:o1`, command: 'RecordPurchase' });

    // Personal data is encrypted with keys loaded in bulk: those of the customers read, then those written.
    const email = (stored[0]!.data as { email: string }).email;
    expect(isEncrypted(email)).toBe(true);
    expect(await personalData.reveal('CustomerRegistered', stored[0]!.data)).toMatchObject({ email: `${fresh}@example.com` });
    expect(keys).toEqual([
      { create: false, ids: [existing] },
      { create: true, ids: [fresh] },
    ]);
    // A batch with no personal data to write and its streams held loads no keys.
    expect(await batch.executeBatch([purchase(fresh, 'o3')])).toMatchObject([{ ok: true }]);
    expect(keys.length).toBe(2);
  });

  it('answers a re-import as done with the first event ids, appends nothing, and refuses a key reused for other values', async () => {
    const [customerId] = await registered(1);
    const dealId = randomUUID();
    const items = [
      item(
        { type: 'OpenDeal', dealId, customerId, title: 'Fleet', amount: 100, currency: 'EUR', ownerId: 'sam', expectedCloseDate: '2027-01-31' },
        `deal:${dealId}`,
      ),
      // Two events (title and amount): both ids are the command's result.
      item({ type: 'ChangeDeal', dealId, title: 'Fleet renewal', amount: 200 }, `deal:${dealId}:change`),
      purchase(customerId!, 'o1'),
      purchase(customerId!, 'o1'),
    ];
    const held = watched();
    const batch = handler(held);
    const first = await batch.executeBatch(items);
    const dealStream = `deal-${dealId}`;
    expect(first[1]).toEqual({
      ok: true,
      stream: dealStream,
      eventIds: [eventIdFor(dealStream, `deal:${dealId}:change`, 0), eventIdFor(dealStream, `deal:${dealId}:change`, 1)],
      alreadyDone: false,
    });
    // The same row twice in one batch: stored once, the second answered as done.
    expect(first[3]).toEqual({ ...first[2], alreadyDone: true });
    expect(await ordersOf(customerId!)).toEqual(['CustomerRegistered', 'o1']);
    expect(held.appends.length).toBe(1);

    // Again with the states held, then by a new process that reads them.
    const fresh = watched();
    for (const [w, again] of [
      [held, batch],
      [fresh, handler(fresh)],
    ] as const) {
      const answered = await again.executeBatch(items);
      expect(answered).toEqual(first.map((o) => ({ ...o, alreadyDone: true })));
      expect(w.appends.length).toBe(w === held ? 1 : 0);
      // Read: the deal and the customer its opening needs (a change of the deal needs no customer).
      if (w === fresh) expect(fresh.reads).toEqual([[dealStream, customerStream(customerId!)]]);
      // A key reused for other values, in the same batch or in a later one.
      const reused = await again.executeBatch([purchase(customerId!, 'o1', 11), purchase(customerId!, 'o5', 1, 'k5'), purchase(customerId!, 'o6', 1, 'k5')]);
      expect(reused[0]).toMatchObject({ ok: false, error: expect.any(IdempotencyConflict) });
      expect(reused[1]).toMatchObject({ ok: true, alreadyDone: w === fresh });
      expect(reused[2]).toMatchObject({ ok: false, error: expect.any(IdempotencyConflict) });
    }
    expect(await ordersOf(customerId!)).toEqual(['CustomerRegistered', 'o1', 'o5']);
  });

  it('decides a command needing a customer snapshot on the customer as stored or as decided earlier in the batch', async () => {
    const [stored] = await registered(1);
    const fresh = randomUUID();
    const unknown = randomUUID();
    const feedback = (customerId: string) =>
      item(
        { type: 'SubmitFeedback', feedbackId: randomUUID(), customerId, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where is it?' },
        randomUUID(),
      );
    const w = watched();
    const outcomes = await handler(w).executeBatch([feedback(stored!), register(fresh), feedback(fresh), feedback(unknown)]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, true, false]);
    expect(outcomes[3]).toMatchObject({ ok: false, error: { code: 'customer.not_found' } });
    // The stored customer's stream is read with the feedback streams, and not written.
    expect(w.reads[0]).toContain(customerStream(stored!));
    expect(w.appends[0]!.map((a) => a.stream)).not.toContain(customerStream(stored!));
  });

  it('decides with the response-time policy of the deployment when given one', async () => {
    const [customerId] = await registered(1);
    const sla = {
      urgent: { firstResponseHours: 1, resolutionHours: 2 },
      high: { firstResponseHours: 1, resolutionHours: 2 },
      normal: { firstResponseHours: 3, resolutionHours: 5 },
      low: { firstResponseHours: 1, resolutionHours: 2 },
    };
    const feedbackId = randomUUID();
    const submitted = '2024-02-01T09:00:00.000Z';
    const outcomes = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, sla }).executeBatch([
      item(
        { type: 'SubmitFeedback', feedbackId, customerId, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where?', occurredAt: submitted },
        randomUUID(),
      ),
    ]);
    expect(outcomes).toMatchObject([{ ok: true }]);
    const [event] = await store.readStream(`feedback-${feedbackId}`);
    expect(event!.data).toMatchObject({ firstResponseDueAt: '2024-02-01T12:00:00.000Z', resolutionDueAt: '2024-02-01T14:00:00.000Z' });
  });

  it('refuses a batch that addresses more streams than one append takes', async () => {
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const purchases = (n: number) => Array.from({ length: n }, () => purchase(randomUUID(), 'o1'));
    await expect(batch.executeBatch(purchases(MAX_STREAMS_PER_APPEND + 1))).rejects.toEqual(
      new RangeError(`A batch addresses ${MAX_STREAMS_PER_APPEND + 1} streams; the limit is ${MAX_STREAMS_PER_APPEND}`),
    );
    // At the limit: decided (unknown customers, each refused as a row).
    const outcomes = await batch.executeBatch(purchases(MAX_STREAMS_PER_APPEND));
    expect(outcomes.length).toBe(MAX_STREAMS_PER_APPEND);
    expect(outcomes.every((o) => !o.ok)).toBe(true);
  });

  it('keeps stream states between batches, least recently used first, within its bound', async () => {
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const w = watched();
    const batch = handler(w, { cachedStreams: 2 });
    await batch.executeBatch([register(a), register(b)]);
    // A repeated row reads A from the cache (and makes it the most recent) without writing it.
    expect(await batch.executeBatch([register(a)])).toMatchObject([{ ok: true, alreadyDone: true }]);
    await batch.executeBatch([register(c)]);
    // B, the least recently used, made room for C: A is still held, B is read again.
    await batch.executeBatch([purchase(a, 'o1')]);
    await batch.executeBatch([purchase(b, 'o1')]);
    expect(w.reads).toEqual([[customerStream(a), customerStream(b)], [customerStream(c)], [customerStream(b)]]);
    expect(w.appends.flat().map((x) => [x.stream, x.expected])).toEqual([
      [customerStream(a), 'no_stream'],
      [customerStream(b), 'no_stream'],
      [customerStream(c), 'no_stream'],
      [customerStream(a), 0],
      [customerStream(b), 0],
    ]);
  });
});

describe('batch commands: orders of merged customers', () => {
  it('an order a merged duplicate holds, sent to its primary or to itself again, is the purchase already recorded, in a batch as through the API; merge chains followed', async () => {
    // A merged into B, B merged into C: A's and B's orders count for C.
    const [a, b, c] = await registered(3);
    const orders = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).executeBatch([
      purchase(a!, 'a-1', 40),
      purchase(b!, 'b-1', 60),
    ]);
    expect(orders.every((o) => o.ok)).toBe(true);
    const merge = (customerId: string, duplicateId: string) =>
      api.execute({ type: 'MergeCustomer', customerId, duplicateId }, { actor, correlationId: 'api', idempotencyKey: `merge-${duplicateId}` });
    await merge(b!, a!);
    await merge(c!, b!);
    const before = await Promise.all([a!, b!, c!].map(ordersOf));

    // A purchases file naming the primary for them (as a merged customer's refusal advises), or the duplicates themselves (an export imported again).
    const outcomes = await handler(watched()).executeBatch([
      purchase(c!, 'a-1', 40, 'file2:a-1'),
      purchase(c!, 'b-1', 60, 'file2:b-1'),
      purchase(a!, 'a-1', 40, 'file3:a-1'),
      purchase(c!, 'b-1', 61, 'file2:b-1-changed'),
      purchase(c!, 'c-1', 5, 'file2:c-1'),
    ]);
    expect(outcomes.slice(0, 3).map((o) => o.ok && o.alreadyDone)).toEqual([true, true, true]);
    expect(outcomes[3]).toMatchObject({
      ok: false,
      error: expect.objectContaining({ code: 'purchase.order_conflict', details: expect.objectContaining({ recordedOn: b }) }),
    });
    expect(outcomes[4]).toMatchObject({ ok: true, alreadyDone: false });
    expect(await Promise.all([a!, b!, c!].map(ordersOf))).toEqual([before[0], before[1], [...before[2]!, 'c-1']]);

    // The API's handler alike: nothing appended, the primary's revision answered.
    const viaApi = await api.execute(
      { type: 'RecordPurchase', customerId: c!, orderId: 'a-1', amount: 40, currency: 'EUR' },
      { actor, correlationId: 'api', idempotencyKey: `api-${randomUUID()}` },
    );
    expect(viaApi.eventIds).toEqual([]);
    await expect(
      api.execute(
        { type: 'RecordPurchase', customerId: c!, orderId: 'a-1', amount: 41, currency: 'EUR' },
        { actor, correlationId: 'api', idempotencyKey: `api-${randomUUID()}` },
      ),
    ).rejects.toMatchObject({ code: 'purchase.order_conflict', details: { recordedOn: a } });
    expect(await ordersOf(c!)).toEqual([...before[2]!, 'c-1']);

    // A new order for A: refused naming the end of the chain (C), not the next link (B, itself merged).
    const [refused] = await handler(watched()).executeBatch([purchase(a!, 'a-2', 1, 'file4:a-2')]);
    expect(refused).toMatchObject({
      ok: false,
      error: expect.objectContaining({ code: 'customer.merged', details: expect.objectContaining({ primaryId: c }) }),
    });
    await expect(
      api.execute({ type: 'RecordPurchase', customerId: a!, orderId: 'a-3', amount: 1, currency: 'EUR' }, { actor, correlationId: 'api' }),
    ).rejects.toMatchObject({ code: 'customer.merged', details: { primaryId: c }, message: expect.stringContaining(`use the primary customer ${c}`) });

    // A refund of A's order sent to C: refused naming A, which holds the order, as the API's handler does.
    const [refund] = await handler(watched()).executeBatch([
      item({ type: 'RefundPurchase', customerId: c!, orderId: 'a-1', refundId: 'ra-1', amount: 1, currency: 'EUR' }, 'file5:ra-1'),
    ]);
    expect(refund).toMatchObject({
      ok: false,
      error: expect.objectContaining({ code: 'purchase.not_found', details: expect.objectContaining({ recordedOn: a }) }),
    });
  });
});

describe('batch commands: concurrent writers and faults', () => {
  it('appends the streams not in conflict, and decides the conflicting ones again on what the other writer stored', async () => {
    const [a, b] = await registered(2);
    // An API client writes A before the first two appends.
    const w = watched({ beforeAppend: async (call) => void (call <= 2 && (await apiPurchase(a!))) });
    const outcomes = await handler(w).executeBatch([purchase(a!, 'o1'), purchase(b!, 'o1')]);
    expect(outcomes).toMatchObject([
      { ok: true, alreadyDone: false },
      { ok: true, alreadyDone: false },
    ]);
    expect(w.appends.map((call) => call.map((x) => [x.stream, x.expected]))).toEqual([
      [
        [customerStream(a!), 0],
        [customerStream(b!), 0],
      ],
      [
        [customerStream(a!), 1],
        [customerStream(b!), 0],
      ],
      [[customerStream(b!), 0]],
      [[customerStream(a!), 2]],
    ]);
    // Once B is stored, the retry reads and decides A alone: the window another writer can hit stays short.
    expect(w.reads).toEqual([[customerStream(a!), customerStream(b!)], [customerStream(a!), customerStream(b!)], [customerStream(a!)]]);
    const orders = await ordersOf(a!);
    expect(orders.length).toBe(4);
    expect(orders[3]).toBe('o1');
    expect(await ordersOf(b!)).toEqual(['CustomerRegistered', 'o1']);
  });

  it('gives up after its attempts when a stream keeps being written, and throws the conflict', async () => {
    const [a] = await registered(1);
    const w = watched({ beforeAppend: () => apiPurchase(a!).then(() => undefined) });
    const submitted = await handler(w, { maxAttempts: 3 }).submitBatch([purchase(a!, 'o1')]);
    await expect(submitted.outcomes).rejects.toBeInstanceOf(WrongExpectedRevision);
    // The first decision, then three attempts.
    expect(w.appends.length).toBe(4);
    expect(await ordersOf(a!)).not.toContain('o1');
  });

  it('a key stored meanwhile with other values by another process is a refused row, not a fault', async () => {
    const [a, b] = await registered(2);
    const other = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    // Before the first append (decided on held states) and before the second (decided again after a conflict on B).
    for (const racing of [1, 2]) {
      const key = `k-${randomUUID()}`;
      let armed = false;
      const w = watched({
        beforeAppend: async (call) => {
          if (!armed) return;
          if (racing === 2 && call === 2) await apiPurchase(b!);
          if (call === racing + 1) expect(await other.executeBatch([purchase(a!, `x-${racing}`, 10, key)])).toMatchObject([{ ok: true }]);
        },
      });
      const raced = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: w.store, personalData });
      await raced.executeBatch([purchase(a!, `warm-up-${racing}`), purchase(b!, `warm-up-${racing}`)]);
      armed = true;
      const outcomes = await raced.executeBatch([purchase(a!, `x-${racing}`, 11, key), purchase(b!, `y-${racing}`)]);
      expect(outcomes[0]).toMatchObject({ ok: false, error: expect.any(IdempotencyConflict) });
      expect(outcomes[1]).toMatchObject({ ok: true });
      expect(await ordersOf(b!)).toContain(`y-${racing}`);
      expect(w.appends.length).toBe(racing + 2);
    }
  });

  it('a store fault is not retried: the batch and those decided after it fail, and the handler then reads what is stored', async () => {
    const [a] = await registered(1);
    const submittedBoth = gate();
    const w = watched({
      beforeAppend: async (call) => {
        if (call === 1) {
          await submittedBoth.opened;
          throw new Error('disk full');
        }
      },
    });
    const batch = handler(w);
    const first = await batch.submitBatch([purchase(a!, 'o1')]);
    const second = await batch.submitBatch([purchase(a!, 'o2')]);
    submittedBoth.open();
    await expect(first.outcomes).rejects.toHaveProperty('message', 'disk full');
    await expect(second.outcomes).rejects.toHaveProperty('message', 'disk full');
    expect(w.appends.length).toBe(1);
    // Decided again on the stored stream, not on the states of the lost batches.
    expect(await batch.executeBatch([purchase(a!, 'o3')])).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(w.appends.at(-1)).toEqual([{ stream: customerStream(a!), expected: 0, events: 1 }]);
    expect(await ordersOf(a!)).toEqual(['CustomerRegistered', 'o3']);

    // A fault while deciding again after a conflict is not retried either.
    const [c] = await registered(1);
    const faulty = watched({
      beforeAppend: async (call) => {
        if (call === 1) await apiPurchase(c!);
        if (call === 2) throw new Error('connection reset');
      },
    });
    await expect(handler(faulty).executeBatch([purchase(c!, 'o1')])).rejects.toHaveProperty('message', 'connection reset');
    expect(faulty.appends.length).toBe(2);
  });

  it('pipelines: a batch is decided on the states the one before it leaves, and appended after it', async () => {
    const [a] = await registered(1);
    const submittedBoth = gate();
    const w = watched({ beforeAppend: async (call) => void (call === 1 && (await submittedBoth.opened)) });
    const batch = handler(w);
    const first = await batch.submitBatch([purchase(a!, 'o1')]);
    const second = await batch.submitBatch([purchase(a!, 'o2')]);
    submittedBoth.open();
    expect(await first.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(await second.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(w.reads).toEqual([[customerStream(a!)]]);
    expect(w.appends).toEqual([[{ stream: customerStream(a!), expected: 0, events: 1 }], [{ stream: customerStream(a!), expected: 1, events: 1 }]]);
    expect(await ordersOf(a!)).toEqual(['CustomerRegistered', 'o1', 'o2']);
  });

  it('gives the event loop turns while it decides a long batch, so the reply of the batch being stored is read meanwhile', async () => {
    const customers = await registered(200);
    const batch = handler(watched());
    // Every stream cached: deciding the next batch reads nothing, so no I/O gives the loop a turn by chance.
    expect((await batch.executeBatch(customers.map((c) => purchase(c, 'warm-up')))).every((o) => o.ok)).toBe(true);
    const items = Array.from({ length: 2_000 }, (_, i) => purchase(customers[i % customers.length]!, `turn-${i}`));
    const turns = countTurns();
    const submitted = await batch.submitBatch(items);
    expect(turns.stop()).toBeGreaterThan(0);
    const outcomes = await submitted.outcomes;
    expect(outcomes.filter((o) => o.ok && !o.alreadyDone)).toHaveLength(2_000);
  });

  it('a conflict on a pipelined batch decides it and the batches decided on it again, in order, losing nothing', async () => {
    const [a] = await registered(1);
    const submitted = gate();
    const w = watched({
      beforeAppend: async (call) => {
        if (call !== 1) return;
        await submitted.opened;
        await apiPurchase(a!);
      },
    });
    const batch = handler(w);
    const first = await batch.submitBatch([purchase(a!, 'o1')]);
    const second = await batch.submitBatch([purchase(a!, 'o2')]);
    submitted.open();
    expect(await first.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(await second.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    // The second was decided on the first's unstored state: it is not sent until decided again.
    expect(w.appends.map((call) => call.map((x) => x.expected))).toEqual([[0], [1], [2]]);
    const orders = await ordersOf(a!);
    expect(orders.slice(2)).toEqual(['o1', 'o2']);
    expect(orders.length).toBe(4);
    // A batch submitted after the conflict is decided on the stored stream.
    expect(await batch.executeBatch([purchase(a!, 'o3')])).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(w.appends.at(-1)).toEqual([{ stream: customerStream(a!), expected: 3, events: 1 }]);
    // Read for the first decision and for deciding the first again; what that stored is held for the rest.
    expect(w.reads.length).toBe(2);
  });

  it('a batch found stored by another process at another revision has the batches decided on it decided again before they are sent', async () => {
    const [a] = await registered(1);
    const submitted = gate();
    const w = watched({ beforeAppend: async (call) => void (call === 2 && (await submitted.opened)) });
    const pipelined = handler(w);
    // The handler holds A at revision 1; another process then stores an API purchase and this batch's row.
    await pipelined.executeBatch([purchase(a!, 'warm-up')]);
    await apiPurchase(a!);
    expect(await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).executeBatch([purchase(a!, 'o1')])).toMatchObject([
      { ok: true },
    ]);
    const first = await pipelined.submitBatch([purchase(a!, 'o1')]);
    const second = await pipelined.submitBatch([purchase(a!, 'o2')]);
    submitted.open();
    await first.outcomes;
    expect(await second.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    // The first is a duplicate of what is stored (revision 3): the second is decided again there, not sent at revision 2.
    expect(w.appends.map((call) => call.map((x) => x.expected))).toEqual([[0], [1], [3]]);
    expect((await ordersOf(a!)).slice(1)).toEqual(['warm-up', expect.stringMatching(/^api-/), 'o1', 'o2']);
  });

  it('answers each row as the pass that stored it decided: a partial append that fails settles nothing', async () => {
    for (const partialFails of [false, true]) {
      const [a, b] = await registered(2);
      // API clients: a purchase on A before the first append, the same order as the batch's (another amount) before
      // the second; with partialFails, the same on B before the append of B alone.
      const w = watched({
        beforeAppend: async (call) => {
          if (call === 1) await apiPurchase(a!);
          if (call === 2) await apiPurchase(a!, 'o1');
          if (call === 3 && partialFails) await apiPurchase(b!, 'o1');
        },
      });
      const outcomes = await handler(w).executeBatch([purchase(a!, 'o1'), purchase(b!, 'o1')]);
      expect(outcomes[0]).toMatchObject({ ok: false, error: { code: 'purchase.order_conflict' } });
      if (partialFails) expect(outcomes[1]).toMatchObject({ ok: false, error: { code: 'purchase.order_conflict' } });
      else expect(outcomes[1]).toMatchObject({ ok: true, alreadyDone: false });
      expect(w.appends.map((call) => call.map((x) => x.stream))).toEqual([
        [customerStream(a!), customerStream(b!)],
        [customerStream(a!), customerStream(b!)],
        [customerStream(b!)],
      ]);
    }
  });

  it('a batch submitted while the ones before it are decided again is decided after them, not on their unstored states', async () => {
    const [a] = await registered(1);
    const submitted = gate();
    const redoing = gate();
    const third = gate();
    const w = watched({
      beforeAppend: async (call) => {
        if (call === 1) {
          await submitted.opened;
          await apiPurchase(a!);
        }
        if (call === 2) {
          redoing.open();
          await third.opened;
        }
      },
    });
    const batch = handler(w);
    const first = await batch.submitBatch([purchase(a!, 'o1')]);
    const second = await batch.submitBatch([purchase(a!, 'o2')]);
    submitted.open();
    await redoing.opened;
    const last = await batch.submitBatch([purchase(a!, 'o3')]);
    third.open();
    for (const s of [first, second, last]) expect(await s.outcomes).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(w.appends.map((call) => call.map((x) => x.expected))).toEqual([[0], [1], [2], [3]]);
    expect((await ordersOf(a!)).slice(2)).toEqual(['o1', 'o2', 'o3']);
  }, 20_000);

  it('a store fault while deciding fails that batch only: the next one is decided and stored', async () => {
    const [a] = await registered(1);
    const w = watched({
      afterRead: async (call) => {
        if (call === 1) throw new Error('read failed');
      },
    });
    const batch = handler(w);
    await expect(batch.submitBatch([purchase(a!, 'o1')])).rejects.toHaveProperty('message', 'read failed');
    expect(await batch.executeBatch([purchase(a!, 'o2')])).toMatchObject([{ ok: true, alreadyDone: false }]);
    expect(await ordersOf(a!)).toEqual(['CustomerRegistered', 'o2']);
  }, 20_000);

  it('sends no partial append when every stream of the batch is in conflict', async () => {
    const [a, b] = await registered(2);
    const w = watched({
      beforeAppend: async (call) => {
        if (call <= 2) await Promise.all([apiPurchase(a!), apiPurchase(b!)]);
      },
    });
    expect(await handler(w).executeBatch([purchase(a!, 'o1'), purchase(b!, 'o1')])).toMatchObject([{ ok: true }, { ok: true }]);
    expect(w.appends.map((call) => call.map((x) => x.expected))).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
  });

  it('a store fault while loading keys is a fault of the batch, not retried', async () => {
    let failing = true;
    const flaky: PersonalData = {
      ...personalData,
      loadKeys: async (ids, options) => {
        if (options?.create && failing) {
          failing = false;
          throw new Error('keys unavailable');
        }
        return personalData.loadKeys(ids, options);
      },
    };
    const customerId = randomUUID();
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData: flaky });
    await expect(batch.submitBatch([register(customerId)])).rejects.toHaveProperty('message', 'keys unavailable');
    expect(await store.readStream(customerStream(customerId))).toEqual([]);
  });

  it('a fault while deciding fails the batches submitted after it with the same fault', async () => {
    const [a] = await registered(1);
    const w = watched({
      afterRead: async (call) => {
        if (call === 1) throw new Error('read failed');
      },
    });
    const batch = handler(w);
    const first = batch.submitBatch([purchase(a!, 'o1')]);
    const second = batch.submitBatch([purchase(a!, 'o2')]);
    await expect(first).rejects.toHaveProperty('message', 'read failed');
    await expect((await second).outcomes).rejects.toHaveProperty('message', 'read failed');
    expect(await ordersOf(a!)).toEqual(['CustomerRegistered']);
  });

  it('one stream of a batch found stored at another revision is enough to decide the batches after it again', async () => {
    const [a, b] = await registered(2);
    const submitted = gate();
    const w = watched({ beforeAppend: async (call) => void (call === 2 && (await submitted.opened)) });
    const pipelined = handler(w);
    await pipelined.executeBatch([purchase(a!, 'warm-up'), purchase(b!, 'warm-up')]);
    // Another process stores an API purchase and this batch's row of A; B is as held.
    await apiPurchase(a!);
    expect(await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }).executeBatch([purchase(a!, 'o1')])).toMatchObject([
      { ok: true },
    ]);
    const first = await pipelined.submitBatch([purchase(a!, 'o1'), purchase(b!, 'o1')]);
    const second = await pipelined.submitBatch([purchase(a!, 'o2'), purchase(b!, 'o2')]);
    submitted.open();
    await first.outcomes;
    expect(await second.outcomes).toMatchObject([{ ok: true }, { ok: true }]);
    expect(w.appends.map((call) => call.map((x) => x.expected))).toEqual([
      [0, 0],
      [1, 1],
      [3, 2],
    ]);
  });

  it('a customer forgotten while an import holds its state: the row is refused as the API refuses it, not a fault', async () => {
    const [held, readBeforeForget] = await registered(2);
    const evicted: string[] = [];
    const spied: PersonalData = { ...personalData, evict: (id) => (evicted.push(id), personalData.evict(id)) };
    const forget = (customerId: string) =>
      api.execute({ type: 'ForgetCustomer', customerId }, { actor, correlationId: 'gdpr', idempotencyKey: `forget-${customerId}` });
    const change = (customerId: string) => item({ type: 'ChangeCustomerDetails', customerId, email: `new-${customerId}@example.com` }, `change-${customerId}`);

    // Held in the handler's cache, forgotten through the API afterwards.
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData: spied });
    await batch.executeBatch([purchase(held!, 'o1')]);
    await forget(held!);
    const outcomes = await batch.executeBatch([change(held!)]);
    expect(outcomes).toMatchObject([{ ok: false, error: { code: 'customer.forgotten' } }]);
    // Only the forgotten customer's key is dropped (the others stay loaded).
    expect(evicted).toEqual([held]);

    // Read, then forgotten before the append of a pass deciding again after a conflict.
    const [other] = await registered(1);
    const w = watched({
      beforeAppend: async (call) => void (call === 1 && (await apiPurchase(other!))),
      afterRead: async (call) => void (call === 2 && (await forget(readBeforeForget!))),
    });
    const raced = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: w.store, personalData: spied });
    const racedOutcomes = await raced.executeBatch([change(readBeforeForget!), purchase(other!, 'o1')]);
    expect(racedOutcomes).toMatchObject([{ ok: false, error: { code: 'customer.forgotten' } }, { ok: true }]);
    expect(await ordersOf(other!)).toContain('o1');
  });
  it('a deal decided on its customer, which is merged into another before the append: the row is decided again and refused, the other rows stored', async () => {
    const [duplicate, primary, other] = await registered(3);
    const w = watched({
      beforeAppend: async (call) => {
        if (call === 1) await api.execute({ type: 'MergeCustomer', customerId: primary!, duplicateId: duplicate! }, { actor, correlationId: 'api-merge' });
      },
    });
    const deal = (customerId: string, dealId = randomUUID()) =>
      item(
        { type: 'OpenDeal', dealId, customerId, title: 'Fleet', amount: 100, currency: 'EUR', ownerId: 'sam', expectedCloseDate: '2027-01-31' },
        `deal-${dealId}`,
      );
    const [refused, stored] = [deal(duplicate!), deal(other!)];
    expect(await handler(w).executeBatch([refused, stored])).toMatchObject([{ ok: false, error: { code: 'customer.merged' } }, { ok: true }]);
    expect(await store.readStream(`deal-${refused.command.dealId as string}`)).toEqual([]);
    expect(await store.readStream(`deal-${stored.command.dealId as string}`)).toHaveLength(1);
  });

  it('a customer forgotten after a pipelined batch was decided and encrypted, before its append: the rows are refused, nothing follows the forget', async () => {
    const [earlier, forgotten] = await registered(2);
    const forgetDone = gate();
    // The first batch's append waits until the customer of the second one is forgotten.
    const w = watched({ beforeAppend: async (call) => void (call === 1 && (await forgetDone.opened)) });
    const batch = handler(w);
    const activityId = randomUUID();
    const first = await batch.submitBatch([purchase(earlier!, 'o1')]);
    // Decided and its body encrypted now, while the first batch waits to be stored.
    const second = await batch.submitBatch([
      item({ type: 'LogActivity', activityId, customerId: forgotten!, kind: 'note', subject: 'Call back', body: `Ring ${forgotten}` }, `note-${activityId}`),
    ]);
    await api.execute({ type: 'ForgetCustomer', customerId: forgotten! }, { actor, correlationId: 'gdpr', idempotencyKey: `forget-${forgotten}` });
    forgetDone.open();
    expect(await first.outcomes).toMatchObject([{ ok: true }]);
    expect(await second.outcomes).toMatchObject([{ ok: false, error: { code: 'customer.forgotten' } }]);
    expect(await store.readStream(`activity-${activityId}`)).toEqual([]);
  });
});
