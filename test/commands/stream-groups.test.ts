import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands, type CommandContext, type CommandResult, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { OutcomeUnknown, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { countingAppends, countingReadCalls, processesOnOneDatabase, racingAppends, type CommandProcess } from '../support/processes.ts';

/**
 * Commands waiting on one stream in one process are decided one after the other in memory and
 * appended together (commands/index.ts `decideGroup`, stream-queue.ts `join`): each keeps its own
 * answer, and a hot stream costs fewer appends than commands. Two "processes" (two pools and stores
 * on one database) make the lost race.
 */
const processes = processesOnOneDatabase('commands_stream_groups');

let a: CommandProcess;
let b: CommandProcess;
beforeAll(async () => {
  a = await processes.start();
  b = await processes.start();
});

const commandsOf = (p: CommandProcess, store: EventStore = p.store): CrmCommands =>
  createCrmCommands({ store, personalData: p.personalData, queue: { windowMs: 60_000 } });

const ctx = (extra: Partial<CommandContext> = {}): CommandContext => ({
  actor: { userId: 'shop-feed', roles: ['sales'] },
  correlationId: randomUUID(),
  ...extra,
});

const purchase = (customerId: string, orderId: string = randomUUID(), amount = 10) => ({
  type: 'RecordPurchase',
  customerId,
  orderId,
  amount,
  currency: 'EUR',
});

const register = async (commands: CrmCommands) =>
  (await commands.execute({ type: 'RegisterCustomer', name: 'Hot Customer', email: `${randomUUID()}@example.com` }, ctx())).id;

const valueOf = (r: PromiseSettledResult<CommandResult>): CommandResult => {
  if (r.status === 'rejected') throw new Error(`expected an answer, got ${String(r.reason)}`);
  return r.value;
};

describe('commands waiting on one stream', () => {
  it('are all accepted, in fewer appends than commands, each answered with the revision of its own event', async () => {
    const { store, appends } = countingAppends(a.store);
    const commands = commandsOf(a, store);
    const id = await register(commands);
    appends.n = 0;
    // Given 32 purchases sent at once on one customer, without a claimed revision
    const results = (await Promise.allSettled(Array.from({ length: 32 }, () => commands.execute(purchase(id), ctx())))).map(valueOf);
    // Then every one is stored once, at consecutive revisions, in fewer appends than purchases
    expect(results.map((r) => r.revision).sort((x, y) => x - y)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1));
    expect(appends.n).toBeLessThan(32);
    const stream = await a.store.readStream(`customer-${id}`);
    expect(stream).toHaveLength(33);
    const revisionOf = new Map(stream.map((e) => [e.id, e.revision]));
    for (const result of results) {
      expect(result.eventIds).toHaveLength(1);
      expect(revisionOf.get(result.eventIds[0]!)).toBe(result.revision);
      // The answer's position covers the command's own event: a read that waits for it sees the purchase.
      expect(result.position).toBeGreaterThanOrEqual(stream.find((e) => e.id === result.eventIds[0])!.position);
    }
    expect(commands.pending()).toBe(0);
    // And the state kept in memory is the stored one: the next purchase is decided on it
    expect((await commands.execute(purchase(id), ctx())).revision).toBe(33);
    expect((await commands.loadAggregate('customer', id)).state.orders).toEqual((await commandsOf(b).loadAggregate('customer', id)).state.orders);
  });

  it('answer each on its own: a refused command adds nothing and its neighbours see each other', async () => {
    const { store, appends } = countingAppends(a.store);
    const commands = commandsOf(a, store);
    const id = await register(commands);
    appends.n = 0;
    // Given, at once: a purchase, the same order with another amount (refused), a refund of the first
    // purchase (accepted only on the state the purchase leaves), the first purchase again (nothing to
    // record) and a second purchase
    const results = await Promise.allSettled([
      commands.execute(purchase(id, 'O-1', 100), ctx()),
      commands.execute(purchase(id, 'O-1', 999), ctx()),
      commands.execute({ type: 'RefundPurchase', customerId: id, orderId: 'O-1', amount: 30, currency: 'EUR' }, ctx()),
      commands.execute(purchase(id, 'O-1', 100), ctx()),
      commands.execute(purchase(id, 'O-2', 50), ctx()),
    ]);
    // Then the refused one gets its own refusal and the others their own revisions
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { name: 'DomainError', code: 'purchase.order_conflict' } });
    expect(valueOf(results[0]).revision).toBe(1);
    expect(valueOf(results[2]).revision).toBe(2);
    expect(valueOf(results[3])).toMatchObject({ revision: 2, eventIds: [] });
    expect(valueOf(results[4]).revision).toBe(3);
    expect(appends.n).toBe(1);
    expect((await a.store.readStream(`customer-${id}`)).map((e) => e.type)).toEqual([
      'CustomerRegistered',
      'PurchaseRecorded',
      'PurchaseRefunded',
      'PurchaseRecorded',
    ]);
  });

  it('check a claimed revision (If-Match) against the revision at the command’s own turn', async () => {
    const commands = commandsOf(a);
    const id = await register(commands);
    // Given, at once on revision 0: a purchase without a claim, then claims of 1 (its turn: 1), 1 again (its turn: 2) and 2 (its turn: 2)
    const results = await Promise.allSettled([
      commands.execute(purchase(id), ctx()),
      commands.execute(purchase(id), ctx({ expectedRevision: 1 })),
      commands.execute(purchase(id), ctx({ expectedRevision: 1 })),
      commands.execute(purchase(id), ctx({ expectedRevision: 2 })),
    ]);
    // Then the stale claim is a conflict naming both revisions; the others are accepted in turn
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value.revision : 'conflict'))).toEqual([1, 2, 'conflict', 3]);
    const conflict = (results[2] as PromiseRejectedResult).reason as unknown;
    expect(conflict).toBeInstanceOf(WrongExpectedRevision);
    expect(conflict).toMatchObject({ expected: 1, actual: 2, stream: `customer-${id}` });
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(4);
  });

  it('check the caller’s scope on the record as the commands before it in the group leave it', async () => {
    const commands = commandsOf(a);
    const admin = ctx({ actor: { userId: 'root', roles: ['admin'] } });
    const userOf = async (name: string) =>
      (await commands.execute({ type: 'RegisterUser', name, email: `${name}-${randomUUID()}@example.com`, role: 'sales' }, admin)).id;
    const [ann, bob] = [await userOf('ann'), await userOf('bob')];
    const id = await register(commands);
    await commands.execute({ type: 'AssignCustomerOwner', customerId: id, ownerId: ann }, admin);
    const asAnn = () => ctx({ actor: { userId: ann, roles: ['sales'] }, scope: { owners: [ann] } });
    // Given, at once: Ann's purchase, the customer handed to Bob, Ann's second purchase
    const results = await Promise.allSettled([
      commands.execute(purchase(id), asAnn()),
      commands.execute({ type: 'AssignCustomerOwner', customerId: id, ownerId: bob }, admin),
      commands.execute(purchase(id), asAnn()),
    ]);
    // Then the second purchase finds the customer outside Ann's scope, as if it did not exist
    expect(valueOf(results[0]).revision).toBe(2);
    expect(valueOf(results[1]).revision).toBe(3);
    expect(results[2]).toMatchObject({ status: 'rejected', reason: { name: 'DomainError', code: 'customer.not_found' } });
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(4);
  });

  it('answer a retry sent beside its first attempt (same idempotency key) with the first answer, and a reused key with a conflict', async () => {
    const commands = commandsOf(a);
    const id = await register(commands);
    const key = randomUUID();
    const order = purchase(id, 'K-1');
    const results = await Promise.allSettled([
      commands.execute(order, ctx({ idempotencyKey: key })),
      commands.execute(order, ctx({ idempotencyKey: key })),
      commands.execute(purchase(id, 'K-2'), ctx({ idempotencyKey: key })),
    ]);
    expect(valueOf(results[1])).toEqual(valueOf(results[0]));
    expect(results[2]).toMatchObject({ status: 'rejected', reason: { name: 'IdempotencyConflict' } });
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(2);
  });

  it('refuse as busy a command whose turn does not come within its window, while the group before it completes', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let holding = false;
    let started!: () => void;
    const appendStarted = new Promise<void>((resolve) => (started = resolve));
    const { store } = countingAppends(a.store, async () => {
      if (!holding) return;
      started();
      await held;
    });
    const commands = createCrmCommands({ store, personalData: a.personalData, queue: { windowMs: 100 } });
    const id = await register(commands);
    // Given a purchase whose append is held up
    holding = true;
    const first = commands.execute(purchase(id), ctx());
    await appendStarted;
    // When another arrives and waits longer than its window for the stream
    const error = await commands.execute(purchase(id), ctx()).catch((e: unknown) => e);
    // Then it is refused as busy, not stored, and the held purchase completes
    expect(error).toMatchObject({
      name: 'CommandsBusy',
      reason: 'queue_wait',
      retryAfterSeconds: 1,
      message: `Commands on customer-${id} did not get a turn within 100 ms; retry shortly.`,
    });
    holding = false;
    release();
    expect((await first).revision).toBe(1);
    expect((await commands.execute(purchase(id), ctx())).revision).toBe(2);
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(3);
    expect(commands.pending()).toBe(0);
  });

  it('are decided again on fresh state when another process wrote first, a claim then stale at its new turn refused', async () => {
    const inB = commandsOf(b);
    // Process A's appends: the first one lets process B write the stream just before it.
    const { store, appends, raceNextAppend } = racingAppends(a.store);
    const inA = commandsOf(a, store);
    const id = await register(inA);
    await inA.execute(purchase(id), ctx());
    appends.n = 0;
    raceNextAppend(() => inB.execute(purchase(id, 'from-b'), ctx()));
    // Given four purchases at once in A, one claiming revision 2 (its turn before the race), while B records one
    const results = await Promise.allSettled([
      inA.execute(purchase(id), ctx()),
      inA.execute(purchase(id), ctx({ expectedRevision: 2 })),
      inA.execute(purchase(id), ctx()),
      inA.execute(purchase(id), ctx()),
    ]);
    // Then A's first append lost, the group was decided again after B's purchase (revision 2) and stored in a second append
    expect(appends.n).toBe(2);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value.revision : 'conflict'))).toEqual([3, 'conflict', 4, 5]);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'WrongExpectedRevision', expected: 2, actual: 3 });
    const stream = await a.store.readStream(`customer-${id}`);
    expect(stream.map((e) => e.revision)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stream[2]!.data).toMatchObject({ orderId: 'from-b' });
  });
  it('fill an append up to the store’s limit and append the rest of the group in the next one', async () => {
    const { store, appends } = countingAppends(a.store);
    const commands = commandsOf(a, store);
    const customerId = await register(commands);
    const feedbackId = randomUUID();
    await commands.execute({ type: 'SubmitFeedback', feedbackId, customerId, kind: 'complaint', channel: 'web', subject: 'Late', body: 'Where is it?' }, ctx());
    appends.n = 0;
    // Given 120 responses of 10 000 characters at once: more than one append may carry (1 MiB)
    const message = 'x'.repeat(10_000);
    const results = (
      await Promise.allSettled(Array.from({ length: 120 }, () => commands.execute({ type: 'RespondToFeedback', feedbackId, message }, ctx())))
    ).map(valueOf);
    // Then every one is stored, in arrival order, in two appends
    expect(results.map((r) => r.revision)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    expect(appends.n).toBe(2);
    expect(await a.store.readStream(`feedback-${feedbackId}`)).toHaveLength(121);
  });

  it('answer a command that records nothing with the revision and position at its own turn, a keyed retry of it too', async () => {
    const commands = commandsOf(a);
    const id = await register(commands);
    const stored = await commands.execute(purchase(id, 'O-1', 100), ctx());
    const key = randomUUID();
    // Given, at once: the stored purchase again (nothing to record), a second purchase, and the first again with the same key
    const results = (
      await Promise.allSettled([
        commands.execute(purchase(id, 'O-1', 100), ctx({ idempotencyKey: key })),
        commands.execute(purchase(id, 'O-2', 50), ctx()),
        commands.execute(purchase(id, 'O-1', 100), ctx({ idempotencyKey: key })),
      ])
    ).map(valueOf);
    // Then the first is answered before the group's event, the retry after it: each at its own turn
    expect(results[0]).toMatchObject({ revision: 1, position: stored.position, eventIds: [] });
    expect(results[1]!.revision).toBe(2);
    expect(results[1]!.position).toBeGreaterThan(stored.position);
    expect(results[2]).toMatchObject({ revision: 2, position: results[1]!.position, eventIds: [] });
  });

  it('check a claimed revision against the store when another process wrote since the state was kept', async () => {
    const inA = commandsOf(a);
    const id = await register(inA);
    await inA.execute(purchase(id, 'O-1', 100), ctx());
    // Given process B records a purchase after A kept the customer at revision 1
    await commandsOf(b).execute(purchase(id, 'from-b'), ctx());
    // When A gets, at once, the first purchase again (nothing to record) and a purchase claiming revision 2
    const results = (
      await Promise.allSettled([inA.execute(purchase(id, 'O-1', 100), ctx()), inA.execute(purchase(id, 'O-2'), ctx({ expectedRevision: 2 }))])
    ).map(valueOf);
    // Then the claim is checked against revision 2, B's, and accepted
    expect(results[0]).toMatchObject({ revision: 2, eventIds: [] });
    expect(results[1]!.revision).toBe(3);
  });

  it('decide a refusal and a command that records nothing again on the store’s state when another process wrote since the state was kept', async () => {
    const inA = commandsOf(a);
    const id = (await inA.execute({ type: 'RegisterCustomer', name: 'Ann', email: `${randomUUID()}@example.com` }, ctx())).id;
    // Given process B records a purchase and renames the customer after A kept the customer at revision 0
    const inB = commandsOf(b);
    await inB.execute(purchase(id, 'O-1', 100), ctx());
    await inB.execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Bob' }, ctx());
    // When A gets, at once, a refund of B's order (refused on A's kept state) and the old name again (nothing to record on it)
    const results = (
      await Promise.allSettled([
        inA.execute({ type: 'RefundPurchase', customerId: id, orderId: 'O-1', amount: 40, currency: 'EUR' }, ctx()),
        inA.execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Ann' }, ctx()),
      ])
    ).map(valueOf);
    // Then both are decided on the stored state: the refund is recorded and the name changed back, after B's events
    expect(results.map((r) => r.revision)).toEqual([3, 4]);
    const stream = await a.store.readStream(`customer-${id}`);
    expect(stream.map((e) => e.type)).toEqual([
      'CustomerRegistered',
      'PurchaseRecorded',
      'CustomerContactDetailsChanged',
      'PurchaseRefunded',
      'CustomerContactDetailsChanged',
    ]);
    expect((await inA.loadAggregate('customer', id)).state).toMatchObject({ name: 'Ann', orders: { 'O-1': { refunded: 40 } } });
  });

  it('check a refusal decided on the kept state with one read of what is newer, and keep it when nobody else wrote', async () => {
    const { store, reads } = countingReadCalls(a.store);
    const commands = commandsOf(a, store);
    const id = await register(commands);
    reads.n = 0;
    // A purchase on the kept state reads nothing: its append checks the revision
    await commands.execute(purchase(id), ctx());
    expect(reads.n).toBe(0);
    // Given the customer kept at revision 1 and nobody else writing, a refund of an order that does not exist
    await expect(commands.execute({ type: 'RefundPurchase', customerId: id, orderId: 'none', amount: 1, currency: 'EUR' }, ctx())).rejects.toMatchObject({
      code: 'purchase.not_found',
    });
    // Then the stored state was checked once (nothing newer) and the refusal stands
    expect(reads.n).toBe(1);
    // And a keyed retry of a stored purchase is answered from the kept state, with nothing read
    const key = randomUUID();
    const first = await commands.execute(purchase(id, 'O-k'), ctx({ idempotencyKey: key }));
    reads.n = 0;
    expect(await commands.execute(purchase(id, 'O-k'), ctx({ idempotencyKey: key }))).toEqual({ ...first, replayed: true });
    expect(reads.n).toBe(0);
  });

  it('check a refusal against the store also when a keyed retry in its group was answered from the kept state', async () => {
    const inA = commandsOf(a);
    const id = await register(inA);
    const key = randomUUID();
    await inA.execute(purchase(id, 'O-a'), ctx({ idempotencyKey: key }));
    // Given process B records an order after A kept the customer
    await commandsOf(b).execute(purchase(id, 'O-b', 100), ctx());
    // When A gets, at once, the keyed purchase again (answered from what A kept) and a refund of B's order
    const results = await Promise.allSettled([
      inA.execute(purchase(id, 'O-a'), ctx({ idempotencyKey: key })),
      inA.execute({ type: 'RefundPurchase', customerId: id, orderId: 'O-b', amount: 10, currency: 'EUR' }, ctx()),
    ]);
    // Then the refund is decided on the stored state and recorded
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect((await a.store.readStream(`customer-${id}`)).at(-1)!.type).toBe('PurchaseRefunded');
  });

  it('decide a command that records nothing again on the store’s state when another process wrote since the state was kept', async () => {
    const inA = commandsOf(a);
    const id = (await inA.execute({ type: 'RegisterCustomer', name: 'Ann', email: `${randomUUID()}@example.com` }, ctx())).id;
    // Given process B renames the customer after A kept it as Ann
    await commandsOf(b).execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Bob' }, ctx());
    // When A renames it to Ann, nothing to record on A's kept state
    const result = await inA.execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Ann' }, ctx());
    // Then the rename is decided on the stored state and recorded after B's
    expect(result.revision).toBe(2);
    expect((await inA.loadAggregate('customer', id)).state.name).toBe('Ann');
  });

  it('give every member an append whose outcome is unknown as is, without deciding the group again', async () => {
    let fail = true;
    const { store, appends } = countingAppends(a.store, async () => {
      if (!fail) return;
      fail = false;
      throw new OutcomeUnknown('the connection closed before the commit was acknowledged');
    });
    const commands = commandsOf(a, store);
    fail = false;
    const id = await register(commands);
    appends.n = 0;
    fail = true;
    const results = await Promise.allSettled([commands.execute(purchase(id), ctx()), commands.execute(purchase(id), ctx())]);
    expect(results).toMatchObject([
      { status: 'rejected', reason: { name: 'OutcomeUnknown' } },
      { status: 'rejected', reason: { name: 'OutcomeUnknown' } },
    ]);
    expect(appends.n).toBe(0);
    expect(await a.store.readStream(`customer-${id}`)).toHaveLength(1);
  });
});
