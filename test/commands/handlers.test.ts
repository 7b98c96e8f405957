import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createBatchCommands } from '../../commands/batch.ts';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';
import { DomainError } from '../../domain/errors.ts';
import { ERASED } from '../../domain/shared.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { IdempotencyConflict, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { createPersonalData, decodeRecordedEvent, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';
import { testSchemas } from '../support/postgres.ts';

const schemas = testSchemas('commands');
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;
let commands: CrmCommands;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  commands = createCrmCommands({ store, personalData, clock: () => new Date('2026-03-01T09:00:00.000Z') });
});
afterAll(async () => {
  await store.close();
  await database.close();
  await schemas.dropSchemas();
});

const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({
  actor: { userId: 'alice', roles: ['sales'] },
  correlationId: randomUUID(),
  ...extra,
});

const register = async (email = `${randomUUID()}@example.com`) => {
  const result = await commands.execute({ type: 'RegisterCustomer', name: 'Ada Lovelace', email, phone: '+44 20 7946 0000', tags: ['vip'] }, ctx());
  return { ...result, email };
};

/**
 * Events stored, counted in SQL: exact right after an append, unlike `headPosition()`, which moves
 * on whenever an earlier append becomes final (once no older transaction is open on the server).
 */
const storedEvents = async (): Promise<number> => {
  const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql.id(schemas.events, 'events')}`.execute(database.db);
  return Number(rows[0]!.n);
};

const refusal = async (promise: Promise<unknown>): Promise<DomainError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
};

describe('command handling on PostgreSQL', () => {
  it('registers a customer: revision 0, metadata recorded, state loadable', async () => {
    const context = ctx({ causationId: 'cmd-1', reason: 'trade fair lead' });
    const result = await commands.execute({ type: 'RegisterCustomer', name: 'Ada', email: 'ADA@Example.com' }, context);
    expect(result.revision).toBe(0);
    expect(result.stream).toBe(`customer-${result.id}`);
    const [event] = await store.readStream(result.stream);
    expect(event!.id).toBe(result.eventIds[0]);
    expect(event!.position).toBe(result.position);
    expect(event!.metadata).toMatchObject({
      actor: { userId: 'alice', roles: ['sales'] },
      correlationId: context.correlationId,
      causationId: 'cmd-1',
      occurredAt: '2026-03-01T09:00:00.000Z',
      schemaVersion: 2,
      command: 'RegisterCustomer',
      reason: 'trade fair lead',
    });
    const { state, revision } = await commands.loadAggregate('customer', result.id);
    expect(revision).toBe(0);
    expect(state).toMatchObject({ exists: true, name: 'Ada', email: 'ada@example.com' });
  });

  it('refuses a stale expected revision with the current one, appending nothing', async () => {
    const { id } = await register();
    await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'gold' }, ctx({ expectedRevision: 0 }));
    const error = await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'silver' }, ctx({ expectedRevision: 0 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WrongExpectedRevision);
    expect((error as WrongExpectedRevision).actual).toBe(1);
    expect(await store.readStream(`customer-${id}`)).toHaveLength(2);
  });

  it('surfaces a concurrent change as WrongExpectedRevision, never a silent overwrite', async () => {
    const { id } = await register();
    await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: 'o-1', amount: 100, currency: 'EUR' }, ctx());
    // Twenty refunds of 10 race for the 100 paid: at most ten can win, the others conflict or are refused.
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        commands.execute({ type: 'RefundPurchase', customerId: id, orderId: 'o-1', refundId: `r-${i}`, amount: 10, currency: 'EUR' }, ctx()),
      ),
    );
    const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    for (const r of rejected) expect(r.reason instanceof WrongExpectedRevision || r.reason instanceof DomainError).toBe(true);
    const { state } = await commands.loadAggregate('customer', id);
    const fulfilled = outcomes.filter((o) => o.status === 'fulfilled').length;
    expect(state.orders['o-1']!.refunded).toBe(fulfilled * 10);
    expect(state.orders['o-1']!.refunded).toBeLessThanOrEqual(100);
  });

  it('a retried command with the same idempotency key appends nothing and returns the first result', async () => {
    const key = randomUUID();
    const first = await commands.execute({ type: 'RegisterCustomer', name: 'Bob', email: 'bob@example.com' }, ctx({ idempotencyKey: key }));
    const again = await commands.execute({ type: 'RegisterCustomer', name: 'Bob', email: 'bob@example.com' }, ctx({ idempotencyKey: key }));
    // Said to be a replay: nothing was appended now (an API that counts writes must not count it).
    expect(again).toEqual({ ...first, replayed: true });
    expect(await store.readStream(first.stream)).toHaveLength(1);

    const purchaseKey = randomUUID();
    const purchase = { type: 'RecordPurchase', customerId: first.id, orderId: 'o-9', amount: 12.5, currency: 'EUR' } as const;
    const p1 = await commands.execute(purchase, ctx({ idempotencyKey: purchaseKey, expectedRevision: 0 }));
    await commands.execute({ type: 'TagCustomer', customerId: first.id, tag: 'later' }, ctx());
    // The retry carries the old If-Match; it still gets the first answer rather than a conflict.
    const p2 = await commands.execute(purchase, ctx({ idempotencyKey: purchaseKey, expectedRevision: 0 }));
    expect(p2).toEqual({ ...p1, replayed: true });
    expect(await store.readStream(first.stream)).toHaveLength(3);
  });

  it('a keyed retry is answered from the stored events too (another process, no cache), with the stream position of a command that changed nothing', async () => {
    const uncached = createCrmCommands({ store, personalData, cachedStreams: 0 });
    const { id, stream } = await register();
    const key = randomUUID();
    const tag = { type: 'TagCustomer', customerId: id, tag: 'stored' } as const;
    const first = await commands.execute(tag, ctx({ idempotencyKey: key }));
    expect(await uncached.execute(tag, ctx({ idempotencyKey: key }))).toEqual({ ...first, replayed: true });
    await expect(uncached.execute({ ...tag, tag: 'other' }, ctx({ idempotencyKey: key }))).rejects.toBeInstanceOf(IdempotencyConflict);
    // Tagged already: nothing appended, and the answer names the stream's last event.
    const unchanged = await uncached.execute(tag, ctx());
    expect(unchanged).toEqual({ id, stream, revision: first.revision, position: first.position, eventIds: [] });
  });

  it('a command without a key is never taken for a retry of one whose key reads "undefined"', async () => {
    const { id } = await register();
    const keyed = await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'a' }, ctx({ idempotencyKey: 'undefined' }));
    const unkeyed = await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'b' }, ctx());
    expect(unkeyed.eventIds).toHaveLength(1);
    expect(unkeyed.revision).toBe(keyed.revision + 1);
    expect((await commands.loadAggregate('customer', id)).state.tags).toEqual(['vip', 'a', 'b']);
  });

  it('concurrent retries of one key append once', async () => {
    const { id } = await register();
    const key = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        commands
          .execute({ type: 'RefundPurchase', customerId: id, orderId: 'x', amount: 1, currency: 'EUR' }, ctx({ idempotencyKey: key }))
          .catch((e: unknown) => e),
      ),
    );
    // No purchase 'x': every attempt is refused the same way and nothing is appended.
    for (const r of results) expect((r as DomainError).code).toBe('purchase.not_found');
    await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: 'x', amount: 5, currency: 'EUR' }, ctx());
    const tagKey = randomUUID();
    const tagged = await Promise.all(
      Array.from({ length: 5 }, () =>
        commands.execute({ type: 'RefundPurchase', customerId: id, orderId: 'x', amount: 1, currency: 'EUR' }, ctx({ idempotencyKey: tagKey })),
      ),
    );
    expect(new Set(tagged.map((t) => t.eventIds.join()))).toHaveProperty('size', 1);
    const { state } = await commands.loadAggregate('customer', id);
    expect(state.orders.x!.refunded).toBe(1);
  });

  it('recording the same order twice is idempotent; a different amount is refused', async () => {
    const { id } = await register();
    const purchase = { type: 'RecordPurchase', customerId: id, orderId: 'A-1', amount: 99.99, currency: 'EUR', occurredAt: '2025-12-24T10:00:00Z' } as const;
    const first = await commands.execute(purchase, ctx());
    const second = await commands.execute(purchase, ctx());
    expect(second.eventIds).toEqual([]);
    expect(second.revision).toBe(first.revision);
    const error = await refusal(commands.execute({ ...purchase, amount: 100 }, ctx()));
    expect(error.code).toBe('purchase.order_conflict');
    const events = await store.readStream(`customer-${id}`);
    expect(events).toHaveLength(2);
    expect(events[1]!.metadata.occurredAt).toBe('2025-12-24T10:00:00Z');
  });

  it('rejects bad input before the store with a ZodError naming the field', async () => {
    const stored = await storedEvents();
    const error = await commands
      .execute({ type: 'RecordPurchase', customerId: randomUUID(), orderId: 'o', amount: -1, currency: 'EUR' }, ctx())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(z.ZodError);
    expect((error as z.ZodError).issues[0]!.path).toEqual(['amount']);
    await expect(commands.execute({ type: 'Nope' }, ctx())).rejects.toBeInstanceOf(z.ZodError);
    await expect(commands.execute({ type: 'RegisterCustomer', name: 'X', email: 'x@example.com', extra: 1 }, ctx())).rejects.toBeInstanceOf(z.ZodError);
    await expect(
      commands.execute({ type: 'RegisterCustomer', name: 'X', email: 'x@example.com' }, { ...ctx(), actor: { userId: '', roles: [] } }),
    ).rejects.toBeInstanceOf(z.ZodError);
    expect(await storedEvents()).toBe(stored);
  });

  it('stores personal fields encrypted at rest: raw SQL shows no plaintext email', async () => {
    const { id, email } = await register();
    const { rows } = await sql<{ data: unknown }>`SELECT data FROM ${sql.table(`${schemas.events}.events`)} WHERE stream = ${`customer-${id}`}`.execute(
      database.db,
    );
    expect(rows).toHaveLength(1);
    const raw = JSON.stringify(rows[0]!.data);
    expect(raw).not.toContain(email);
    expect(raw).not.toContain('Ada Lovelace');
    expect(raw).toContain('vip');
  });

  it('forget: CustomerForgotten appended, reads give the erased marker, replay still works, later commands refused', async () => {
    const { id } = await register();
    await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: 'f-1', amount: 20, currency: 'EUR' }, ctx());
    const feedback = await commands.execute(
      { type: 'SubmitFeedback', customerId: id, kind: 'complaint', channel: 'email', subject: 'Broken', body: 'It broke on day one' },
      ctx(),
    );
    await commands.execute({ type: 'RespondToFeedback', feedbackId: feedback.id, message: 'Dear Ada Lovelace, a new one is on its way' }, ctx());
    // The staff reply quotes the customer: encrypted at rest with the customer's key, like the complaint.
    const { rows: replyRows } = await sql<{ data: unknown }>`
      SELECT data FROM ${sql.table(`${schemas.events}.events`)} WHERE stream = ${feedback.stream} AND type = 'FeedbackResponded'`.execute(database.db);
    expect(replyRows).toHaveLength(1);
    expect(JSON.stringify(replyRows[0]!.data)).not.toContain('Ada Lovelace');
    expect(replyRows[0]!.data).toMatchObject({ customerId: id });
    // So is the customer's comment on a rating: their own words, as the complaint is.
    // And the resolution, which says what was done for the customer (an address, a name).
    await commands.execute({ type: 'ResolveFeedback', feedbackId: feedback.id, resolution: 'Replaced, sent to Ada Lovelace at 12 Pine St' }, ctx());
    const { rows: resolutionRows } = await sql<{ data: unknown }>`
      SELECT data FROM ${sql.table(`${schemas.events}.events`)} WHERE stream = ${feedback.stream} AND type = 'FeedbackResolved'`.execute(database.db);
    expect(JSON.stringify(resolutionRows[0]!.data)).not.toContain('Pine St');
    expect(resolutionRows[0]!.data).toMatchObject({ customerId: id });
    await commands.execute({ type: 'RateFeedback', feedbackId: feedback.id, csat: 2, comment: 'Ada Lovelace, still waiting' }, ctx());
    const { rows: ratingRows } = await sql<{ data: unknown }>`
      SELECT data FROM ${sql.table(`${schemas.events}.events`)} WHERE stream = ${feedback.stream} AND type = 'FeedbackRated'`.execute(database.db);
    expect(JSON.stringify(ratingRows[0]!.data)).not.toContain('Ada Lovelace');
    expect(ratingRows[0]!.data).toMatchObject({ customerId: id, csat: 2 });
    const forgotten = await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    expect(forgotten.eventIds).toHaveLength(1);

    const fresh = await createPersonalData(database.db, { schema: schemas.events });
    const decoded = await Promise.all((await store.readStream(`customer-${id}`)).map((r) => decodeRecordedEvent(r, fresh)));
    expect(decoded.map((d) => d.event.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded', 'CustomerForgotten']);
    expect(decoded[0]!.event.data).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED, tags: ['vip'] });
    const feedbackEvents = await Promise.all((await store.readStream(feedback.stream)).map((r) => decodeRecordedEvent(r, fresh)));
    expect(feedbackEvents[0]!.event.data).toMatchObject({ subject: ERASED, body: ERASED });
    expect(feedbackEvents.map((d) => d.event.type)).toEqual(['FeedbackSubmitted', 'FeedbackResponded', 'FeedbackResolved', 'FeedbackRated']);
    expect(feedbackEvents[1]!.event.data).toMatchObject({ message: ERASED, firstResponse: true });
    expect(feedbackEvents[2]!.event.data).toMatchObject({ resolution: ERASED });
    expect(feedbackEvents[3]!.event.data).toMatchObject({ csat: 2, comment: ERASED });

    const { state } = await commands.loadAggregate('customer', id);
    expect(state).toMatchObject({ forgotten: true, name: ERASED, email: ERASED });
    expect(state.orders['f-1']!.amount).toBe(20);

    expect((await refusal(commands.execute({ type: 'TagCustomer', customerId: id, tag: 'x' }, ctx()))).code).toBe('customer.forgotten');
    expect(
      (
        await refusal(
          commands.execute({ type: 'OpenDeal', customerId: id, title: 'T', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-06-01' }, ctx()),
        )
      ).code,
    ).toBe('customer.forgotten');
    // Forgetting again is a safe retry: nothing appended.
    expect((await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx())).eventIds).toEqual([]);
  });

  it("a forgotten customer's tickets are assigned and closed, and take no reply, resolution, reopening or rating, one at a time or in a batch", async () => {
    const { id } = await register();
    const submit = () =>
      commands.execute({ type: 'SubmitFeedback', customerId: id, kind: 'complaint', channel: 'email', subject: 'Broken', body: 'It broke' }, ctx());
    const open = await submit();
    const resolved = await submit();
    await commands.execute({ type: 'ResolveFeedback', feedbackId: resolved.id, resolution: 'Replaced' }, ctx());
    await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    const before = await storedEvents();
    const refused = async (command: { type: string; [field: string]: unknown }) => {
      const error = await refusal(commands.execute(command, ctx()));
      return [error.code, error.field];
    };
    expect(await refused({ type: 'RespondToFeedback', feedbackId: open.id, message: 'Sorry' })).toEqual(['customer.forgotten', 'message']);
    expect(await refused({ type: 'ResolveFeedback', feedbackId: open.id, resolution: 'Refunded' })).toEqual(['customer.forgotten', 'resolution']);
    expect(await refused({ type: 'ReopenFeedback', feedbackId: resolved.id })).toEqual(['customer.forgotten', 'feedbackId']);
    // Without a comment too (nothing to encrypt, so it was taken, and moved CSAT after the forget).
    expect(await refused({ type: 'RateFeedback', feedbackId: resolved.id, csat: 5 })).toEqual(['customer.forgotten', 'csat']);
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    expect(
      await batch.executeBatch([{ command: { type: 'RateFeedback', feedbackId: resolved.id, csat: 1 }, ctx: ctx({ idempotencyKey: randomUUID() }) }]),
    ).toMatchObject([{ ok: false, error: { code: 'customer.forgotten', field: 'csat' } }]);
    expect(await storedEvents()).toBe(before);
    // Handed on and ended, which records nothing about the person.
    await commands.execute({ type: 'AssignFeedback', feedbackId: open.id, assigneeId: 'sam' }, ctx());
    await commands.execute({ type: 'CloseFeedback', feedbackId: open.id }, ctx());
    await commands.execute({ type: 'CloseFeedback', feedbackId: resolved.id }, ctx());
    expect((await commands.loadAggregate('feedback', open.id)).state).toMatchObject({ status: 'closed', assigneeId: 'sam' });
  });

  it('merge records on both streams; the duplicate then refuses and names the primary; retry is safe', async () => {
    const primary = await register();
    const duplicate = await register();
    const key = randomUUID();
    const merged = await commands.execute({ type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id }, ctx({ idempotencyKey: key }));
    expect(merged.eventIds).toHaveLength(2);
    expect((await store.readStream(primary.stream)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerMerged']);
    expect((await store.readStream(duplicate.stream)).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerMergedInto']);
    expect(await commands.execute({ type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id }, ctx({ idempotencyKey: key }))).toEqual({
      ...merged,
      replayed: true,
    });
    // Without a key, a repeated merge is recognised as done.
    expect((await commands.execute({ type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id }, ctx())).eventIds).toEqual([]);
    const error = await refusal(commands.execute({ type: 'RecordPurchase', customerId: duplicate.id, orderId: 'o', amount: 1, currency: 'EUR' }, ctx()));
    expect(error.code).toBe('customer.merged');
    expect(error.details).toMatchObject({ primaryId: primary.id });
    expect(error.message).toContain(primary.id);
  });

  it('merges along a chain up to MAX_MERGE_CHAIN merges, and refuses the merge that would go past it, appending nothing', async () => {
    const chain = [];
    for (let i = 0; i <= MAX_MERGE_CHAIN + 1; i++) chain.push(await register());
    // Each customer into the next: the first ends MAX_MERGE_CHAIN merges from the one at index MAX_MERGE_CHAIN.
    for (let i = 0; i < MAX_MERGE_CHAIN; i++) await commands.execute({ type: 'MergeCustomer', customerId: chain[i + 1]!.id, duplicateId: chain[i]!.id }, ctx());
    const end = chain[MAX_MERGE_CHAIN]!;
    const next = chain[MAX_MERGE_CHAIN + 1]!;
    const before = await storedEvents();
    const error = await refusal(commands.execute({ type: 'MergeCustomer', customerId: next.id, duplicateId: end.id }, ctx()));
    expect(error.code).toBe('customer.merge_chain_too_long');
    expect(error.field).toBe('duplicateId');
    expect(error.details).toMatchObject({ chainDepth: MAX_MERGE_CHAIN });
    expect(await storedEvents()).toBe(before);
    // The other way round keeps the chain as it is: the newcomer becomes one more duplicate of its end.
    expect((await commands.execute({ type: 'MergeCustomer', customerId: end.id, duplicateId: next.id }, ctx())).eventIds).toHaveLength(2);
  });

  it('merges racing in opposite directions or along a chain store each merge whole or not at all: no cycle, no half-merge', async () => {
    const typesOf = async (id: string) => (await store.readStream(`customer-${id}`)).map((e) => e.type);
    const settle = (promise: Promise<unknown>) =>
      promise.then(
        () => 'merged',
        (error: unknown) => (error instanceof DomainError ? error.code : error),
      );
    for (let round = 0; round < 8; round++) {
      // X into Y and Y into X at once: one wins, the other is refused, and each stream holds its side of that one merge.
      const [x, y] = [await register(), await register()];
      const outcomes = await Promise.all([
        settle(commands.execute({ type: 'MergeCustomer', customerId: y.id, duplicateId: x.id }, ctx())),
        settle(commands.execute({ type: 'MergeCustomer', customerId: x.id, duplicateId: y.id }, ctx())),
      ]);
      expect(
        outcomes.filter((o) => o === 'merged'),
        JSON.stringify(outcomes),
      ).toHaveLength(1);
      const sides = [await typesOf(x.id), await typesOf(y.id)].map((types) => types.filter((t) => t !== 'CustomerRegistered'));
      expect(sides.flat().sort()).toEqual(['CustomerMerged', 'CustomerMergedInto']);
      // A into B while B into C: both may stand (the chain A, B, C), but every merge stored has both sides.
      const [a, b, c] = [await register(), await register(), await register()];
      await Promise.all([
        settle(commands.execute({ type: 'MergeCustomer', customerId: b.id, duplicateId: a.id }, ctx())),
        settle(commands.execute({ type: 'MergeCustomer', customerId: c.id, duplicateId: b.id }, ctx())),
      ]);
      const [ta, tb, tc] = [await typesOf(a.id), await typesOf(b.id), await typesOf(c.id)];
      const count = (types: string[], type: string) => types.filter((t) => t === type).length;
      // Each CustomerMergedInto has its CustomerMerged on the primary it names.
      expect(count(ta, 'CustomerMergedInto')).toBe(count(tb, 'CustomerMerged'));
      expect(count(tb, 'CustomerMergedInto')).toBe(count(tc, 'CustomerMerged'));
    }
  });

  /** A merge that crashed half way: only the duplicate's `CustomerMergedInto` is stored. */
  const recordOnlyTheDuplicateSide = (primary: { id: string }, duplicate: { id: string; stream: string }) =>
    store.appendToStream(duplicate.stream, [
      {
        id: randomUUID(),
        type: 'CustomerMergedInto',
        data: { customerId: duplicate.id, primaryId: primary.id },
        metadata: {
          actor: { userId: 'alice', roles: [] },
          correlationId: 'c',
          causationId: null,
          occurredAt: '2026-03-01T09:00:00Z',
          schemaVersion: 1,
          command: 'MergeCustomer',
        },
      },
    ]);

  it('completes a merge interrupted after the duplicate side was recorded', async () => {
    const primary = await register();
    const duplicate = await register();
    await recordOnlyTheDuplicateSide(primary, duplicate);
    const retry = await commands.execute({ type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id }, ctx());
    expect(retry.eventIds).toHaveLength(1);
    const { state } = await commands.loadAggregate('customer', primary.id);
    expect(state.mergedDuplicates).toEqual([duplicate.id]);
  });

  it('a keyed merge that only had the primary side left to record answers its retry the same way', async () => {
    const primary = await register();
    const duplicate = await register();
    await recordOnlyTheDuplicateSide(primary, duplicate);
    const key = randomUUID();
    const merge = { type: 'MergeCustomer', customerId: primary.id, duplicateId: duplicate.id } as const;
    const completed = await commands.execute(merge, ctx({ idempotencyKey: key }));
    expect(completed.eventIds).toHaveLength(1);
    expect(await commands.execute(merge, ctx({ idempotencyKey: key }))).toEqual({ ...completed, replayed: true });
  });

  it('opens a deal only for an existing, active, unmerged customer', async () => {
    const deal = { type: 'OpenDeal', title: 'Renewal', amount: 5000, currency: 'EUR', ownerId: 'bob', expectedCloseDate: '2026-06-30' } as const;
    expect((await refusal(commands.execute({ ...deal, customerId: randomUUID() }, ctx()))).code).toBe('customer.not_found');
    const { id } = await register();
    await commands.execute({ type: 'DeactivateCustomer', customerId: id }, ctx());
    expect((await refusal(commands.execute({ ...deal, customerId: id }, ctx()))).code).toBe('customer.inactive');
    await commands.execute({ type: 'ReactivateCustomer', customerId: id }, ctx());
    const opened = await commands.execute({ ...deal, customerId: id }, ctx());
    await commands.execute({ type: 'MoveDealStage', dealId: opened.id, stage: 'proposal' }, ctx({ expectedRevision: 0 }));
    const { state } = await commands.loadAggregate('deal', opened.id);
    expect(state).toMatchObject({ stage: 'proposal', probability: 0.5, customerId: id });
  });

  it('feedback gets SLA deadlines from the configured policy and business time', async () => {
    const { id } = await register();
    const custom = createCrmCommands({
      store,
      personalData,
      sla: {
        urgent: { firstResponseHours: 0.5, resolutionHours: 4 },
        high: { firstResponseHours: 2, resolutionHours: 12 },
        normal: { firstResponseHours: 6, resolutionHours: 48 },
        low: { firstResponseHours: 24, resolutionHours: 96 },
      },
    });
    const submitted = await custom.execute(
      { type: 'SubmitFeedback', customerId: id, kind: 'question', channel: 'chat', subject: 'Invoice', body: 'Where is it?', priority: 'high' },
      ctx({ occurredAt: '2026-03-02T10:00:00.000Z' }),
    );
    const { state } = await custom.loadAggregate('feedback', submitted.id);
    expect(state).toMatchObject({ firstResponseDueAt: '2026-03-02T12:00:00.000Z', resolutionDueAt: '2026-03-02T22:00:00.000Z' });
    const responded = await custom.execute({ type: 'RespondToFeedback', feedbackId: submitted.id, message: 'On its way' }, ctx());
    const [, event] = await store.readStream(responded.stream);
    expect(event!.data).toMatchObject({ responderId: 'alice', firstResponse: true });
  });

  it('loads an aggregate as of a revision and as of an instant', async () => {
    const { id, stream } = await register();
    await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'gold' }, ctx());
    const [, tagged] = await store.readStream(stream);
    await new Promise((r) => setTimeout(r, 20));
    await commands.execute({ type: 'UntagCustomer', customerId: id, tag: 'gold' }, ctx());
    expect((await commands.loadAggregate('customer', id, { asOf: 0 })).state.tags).toEqual(['vip']);
    const atTag = await commands.loadAggregate('customer', id, { asOf: tagged!.recordedAt });
    expect(atTag).toMatchObject({ revision: 1, state: { tags: ['vip', 'gold'] } });
    expect((await commands.loadAggregate('customer', id)).state.tags).toEqual(['vip']);
    expect((await commands.loadAggregate('customer', id, { asOf: new Date('2000-01-01') })).revision).toBe(-1);
  });

  it('an idempotency key reused for a different request is a conflict, not a silent replay', async () => {
    const { id } = await register();
    const key = randomUUID();
    await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'a' }, ctx({ idempotencyKey: key }));
    await expect(commands.execute({ type: 'TagCustomer', customerId: id, tag: 'b' }, ctx({ idempotencyKey: key }))).rejects.toBeInstanceOf(IdempotencyConflict);
    await expect(commands.execute({ type: 'UntagCustomer', customerId: id, tag: 'a' }, ctx({ idempotencyKey: key }))).rejects.toBeInstanceOf(
      IdempotencyConflict,
    );
    expect((await commands.loadAggregate('customer', id)).state.tags).toEqual(['vip', 'a']);
  });

  it('reads a stored v1 CustomerRegistered as v2 (upcast on read) and keeps deciding on it', async () => {
    const id = randomUUID();
    const stream = `customer-${id}`;
    const v1 = await personalData.protect('CustomerRegistered', { customerId: id, fullName: 'Grace Hopper', email: 'grace@example.com' });
    await store.appendToStream(stream, [
      {
        id: randomUUID(),
        type: 'CustomerRegistered',
        data: v1,
        metadata: {
          actor: { userId: 'import', roles: ['system'] },
          correlationId: 'legacy',
          causationId: null,
          occurredAt: '2019-05-01T00:00:00Z',
          schemaVersion: 1,
          command: 'RegisterCustomer',
        },
      },
    ]);
    await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'legacy' }, ctx({ expectedRevision: 0 }));
    const { state, revision } = await commands.loadAggregate('customer', id);
    expect(revision).toBe(1);
    expect(state).toMatchObject({ name: 'Grace Hopper', email: 'grace@example.com', phone: null, tags: ['legacy'], marketingConsent: false });
    // The stored event is never rewritten.
    const [stored] = await store.readStream(stream);
    expect(stored!.metadata.schemaVersion).toBe(1);
    expect(stored!.data).toHaveProperty('fullName');
  });

  it('a key deleted between read and write (forget racing a command) refuses instead of storing plaintext or failing', async () => {
    const { id } = await register();
    await personalData.forget(id); // the key is gone, CustomerForgotten not yet visible
    const stored = await storedEvents();
    const error = await refusal(
      commands.execute({ type: 'SubmitFeedback', customerId: id, kind: 'praise', channel: 'web', subject: 'Thanks', body: 'Great' }, ctx()),
    );
    expect(error.code).toBe('customer.forgotten');
    expect(await storedEvents()).toBe(stored);
  });

  it('a customer whose key row was deleted (not forgotten) is refused naming it; no new key hides the loss, one at a time or in a batch', async () => {
    const { id } = await register();
    // As after a restore of an older customer_keys, or a deleted row: a fresh handler, with no key cached.
    await sql`DELETE FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${id}`.execute(database.db);
    const fresh = await createPersonalData(database.db, { schema: schemas.events });
    const handler = createCrmCommands({ store, personalData: fresh, clock: () => new Date('2026-03-01T09:00:00.000Z') });
    const stored = await storedEvents();
    const error = await refusal(handler.execute({ type: 'ChangeCustomerDetails', customerId: id, email: `${randomUUID()}@example.com` }, ctx()));
    expect(error.code).toBe('customer.data_key_missing');
    expect(error.message).toMatch(/Restore the row from a backup \(crm verify --chain names/);
    const batch = createBatchCommands({ store, personalData: fresh, customerIdKey: TEST_CUSTOMER_ID_KEY });
    const [outcome] = await batch.executeBatch([
      {
        command: { type: 'SubmitFeedback', customerId: id, kind: 'praise', channel: 'web', subject: 'Thanks', body: 'Great' },
        ctx: ctx({ idempotencyKey: randomUUID() }),
      },
    ]);
    expect(outcome).toMatchObject({ ok: false, error: { code: 'customer.data_key_missing' } });
    expect(await storedEvents()).toBe(stored);
    const { rows } = await sql`SELECT 1 FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${id}`.execute(database.db);
    expect(rows).toEqual([]);
  });

  it("two processes with their own caches see each other's events before deciding", async () => {
    const other = createCrmCommands({ store, personalData });
    const { id } = await register();
    await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: 'p-1', amount: 100, currency: 'EUR' }, ctx());
    await other.execute({ type: 'RefundPurchase', customerId: id, orderId: 'p-1', refundId: 'a', amount: 70, currency: 'EUR' }, ctx());
    // `commands` cached the stream before the other refund; it must still refuse going over the paid amount.
    const error = await refusal(
      commands.execute({ type: 'RefundPurchase', customerId: id, orderId: 'p-1', refundId: 'b', amount: 40, currency: 'EUR' }, ctx()),
    );
    expect(error.details).toMatchObject({ remaining: 30 });
    await commands.execute(
      { type: 'RefundPurchase', customerId: id, orderId: 'p-1', refundId: 'b', amount: 30, currency: 'EUR' },
      ctx({ expectedRevision: 2 }),
    );
    await expect(other.execute({ type: 'TagCustomer', customerId: id, tag: 'x' }, ctx({ expectedRevision: 2 }))).rejects.toBeInstanceOf(WrongExpectedRevision);
    const uncached = createCrmCommands({ store, personalData, cachedStreams: 0 });
    expect(await other.loadAggregate('customer', id)).toEqual(await uncached.loadAggregate('customer', id));
  });

  it('loadAggregate hands out a copy that later commands do not change', async () => {
    const { id } = await register();
    const before = await commands.loadAggregate('customer', id);
    await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: 'c-1', amount: 1, currency: 'EUR' }, ctx());
    await commands.loadAggregate('customer', id);
    expect(before.state.orders).toEqual({});
  });

  it('campaign responses refer to existing customers; a retried cost with the same key is recorded once', async () => {
    const campaign = await commands.execute({ type: 'CreateCampaign', name: 'Spring', channel: 'email', budget: 500, currency: 'EUR' }, ctx());
    await commands.execute({ type: 'LaunchCampaign', campaignId: campaign.id }, ctx());
    const error = await refusal(commands.execute({ type: 'RecordCampaignResponse', campaignId: campaign.id, customerId: randomUUID(), kind: 'opened' }, ctx()));
    expect(error).toMatchObject({ code: 'customer.not_found', kind: 'rule_violated', field: 'customerId' });
    const { id } = await register();
    await commands.execute({ type: 'RecordCampaignResponse', campaignId: campaign.id, customerId: id, kind: 'converted', revenue: 80 }, ctx());
    const key = randomUUID();
    const cost = { type: 'RecordCampaignCost', campaignId: campaign.id, amount: 120, currency: 'EUR' } as const;
    const first = await commands.execute(cost, ctx({ idempotencyKey: key }));
    expect(await commands.execute(cost, ctx({ idempotencyKey: key }))).toEqual({ ...first, replayed: true });
    const { state } = await commands.loadAggregate('campaign', campaign.id);
    expect(Object.values(state.costs)).toEqual([{ amount: 120, currency: 'EUR', corrected: false }]);
    expect(state.responses[id]).toEqual(['converted']);
  });

  it('a forget done by another process reaches this one: its cached key is dropped on catch-up', async () => {
    const { id, stream } = await register();
    const [registration] = await store.readStream(stream);
    await commands.loadAggregate('customer', id); // caches the stream and the key here
    const otherProcess = createCrmCommands({ store, personalData: await createPersonalData(database.db, { schema: schemas.events }) });
    await otherProcess.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
    const error = await refusal(commands.execute({ type: 'SubmitFeedback', customerId: id, kind: 'question', channel: 'web', subject: 'S', body: 'B' }, ctx()));
    expect(error.code).toBe('customer.forgotten');
    expect(await personalData.reveal('CustomerRegistered', registration!.data)).toMatchObject({ email: ERASED });
  });
});
