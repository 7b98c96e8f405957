import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { EventStore } from '../../eventstore/contract.ts';
import { EventStoreUnavailable, IdempotencyConflict, WrongExpectedRevision } from '../../eventstore/errors.ts';
import { createAppendGroups, type GroupOutcome, type PendingAppend } from '../../eventstore/postgres/append-groups.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { ORDINAL_BITS } from '../../eventstore/postgres/migrations.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { prepareAppend } from '../../eventstore/validation.ts';
import { testSchemas } from '../support/postgres.ts';
import { newEvent } from './contract.ts';

const schemas = testSchemas('es_group');
const database = connectPostgres(schemas.url, { max: 8 });
let created = 0;
const createStore = (appendsInFlight?: number): Promise<EventStore> =>
  createPostgresEventStore(database, { schema: `${schemas.events}_${(created += 1)}`, ...(appendsInFlight === undefined ? {} : { appendsInFlight }) });

const streamName = (): string => `customer-${randomUUID()}`;
/** The transaction an event was written in: positions are the transaction id shifted left, plus an ordinal. */
const transactionOf = (position: bigint): bigint => position >> BigInt(ORDINAL_BITS);

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

describe('group commit on PostgreSQL', () => {
  it('writes concurrent appends to different streams together, each with its own position', async () => {
    const store = await createStore();
    const streams = Array.from({ length: 40 }, streamName);
    const results = await Promise.all(streams.map((stream) => store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' })));
    for (const [i, stream] of streams.entries()) {
      const [stored] = await store.readStream(stream);
      expect(stored!.position).toBe(results[i]!.position);
      expect(results[i]!.nextExpectedRevision).toBe(0);
    }
    // Forty appends at once cannot all have gone alone: while the first call ran, the rest waited and shared.
    const transactions = new Set(results.map((result) => transactionOf(result.position)));
    expect(transactions.size).toBeLessThan(streams.length);
    expect(new Set(results.map((result) => result.position)).size).toBe(streams.length);
  });

  it('groups appends that depend on one stream: they read it, none writes it', async () => {
    const store = await createStore();
    const customer = streamName();
    await store.appendToStream(customer, [newEvent()], { expectedRevision: 'no_stream' });
    const results = await Promise.all(
      Array.from({ length: 40 }, () =>
        store.appendToStream(`deal-${randomUUID()}`, [newEvent('DealOpened', {})], {
          expectedRevision: 'no_stream',
          dependsOn: [{ stream: customer, revision: 0 }],
        }),
      ),
    );
    expect(new Set(results.map((result) => transactionOf(result.position))).size).toBeLessThan(results.length);
  });

  it('never stores an append that depends on a stream in the same call that writes that stream: each deal is before the forget or refused', async () => {
    for (let round = 0; round < 5; round++) {
      const store = await createStore();
      const customer = streamName();
      await store.appendToStream(customer, [newEvent()], { expectedRevision: 'no_stream' });
      const deals = Array.from({ length: 30 }, () => `deal-${randomUUID()}`);
      const open = (deal: string) =>
        store.appendToStream(deal, [newEvent('DealOpened', {})], { expectedRevision: 'no_stream', dependsOn: [{ stream: customer, revision: 0 }] });
      // The forget arrives amid the deals: some wait in the group being formed beside it.
      const settled = await Promise.allSettled([
        ...deals.slice(0, 15).map(open),
        store.appendToStream(customer, [newEvent('CustomerForgotten', {})], { expectedRevision: 0 }),
        ...deals.slice(15).map(open),
      ]);
      const forget = settled[15]!;
      expect(forget.status).toBe('fulfilled');
      const forgottenAt = (forget as PromiseFulfilledResult<{ position: bigint }>).value.position;
      const stored = settled.filter((o, i) => i !== 15 && o.status === 'fulfilled') as PromiseFulfilledResult<{ position: bigint }>[];
      for (const deal of stored) expect(deal.value.position).toBeLessThan(forgottenAt);
      for (const o of settled.filter((o) => o.status === 'rejected'))
        expect(o.reason).toMatchObject({ name: 'WrongExpectedRevision', stream: customer, actual: 1 });
      expect(stored.length + settled.filter((o) => o.status === 'rejected').length).toBe(30);
    }
  });

  it('refuses only the append whose expected revision is wrong; the others of its group are stored', async () => {
    const store = await createStore();
    const stale = streamName();
    await store.appendToStream(stale, [newEvent(), newEvent()]);
    const others = Array.from({ length: 20 }, streamName);
    const settled = await Promise.allSettled([
      ...others.slice(0, 10).map((stream) => store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' })),
      store.appendToStream(stale, [newEvent()], { expectedRevision: 0 }),
      ...others.slice(10).map((stream) => store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' })),
    ]);
    const refused = settled[10]!;
    expect(refused.status).toBe('rejected');
    const error = (refused as PromiseRejectedResult).reason as WrongExpectedRevision;
    expect(error).toBeInstanceOf(WrongExpectedRevision);
    expect(error).toMatchObject({ stream: stale, expected: 0, actual: 1 });
    expect(settled.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(20);
    for (const stream of others) expect(await store.readStream(stream)).toHaveLength(1);
    expect(await store.readStream(stale)).toHaveLength(2);
  });

  it('answers a retried append with the first one’s position, and refuses an id reused on another stream, inside a group', async () => {
    const store = await createStore();
    const first = streamName();
    const event = newEvent();
    const original = await store.appendToStream(first, [event]);
    const thief = streamName();
    const others = Array.from({ length: 12 }, streamName);
    const [retry, stolen, ...rest] = await Promise.allSettled([
      store.appendToStream(first, [event]),
      store.appendToStream(thief, [{ ...newEvent(), id: event.id }]),
      ...others.map((stream) => store.appendToStream(stream, [newEvent()])),
    ]);
    expect(retry).toEqual({ status: 'fulfilled', value: { ...original, duplicate: true } });
    expect(stolen.status).toBe('rejected');
    expect((stolen as PromiseRejectedResult).reason).toBeInstanceOf(IdempotencyConflict);
    expect((stolen as PromiseRejectedResult).reason).toMatchObject({ eventId: event.id });
    expect(rest.every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    expect(await store.readStream(thief)).toEqual([]);
    expect(await store.readStream(first)).toHaveLength(1);
  });

  it('keeps the order of one stream’s appends: revisions follow the order of the calls', async () => {
    const store = await createStore();
    const stream = streamName();
    const events = Array.from({ length: 30 }, (_, i) => newEvent('PurchaseRecorded', { n: i }));
    const noise = Array.from({ length: 30 }, streamName);
    const results = await Promise.all(events.flatMap((event, i) => [store.appendToStream(stream, [event]), store.appendToStream(noise[i]!, [newEvent()])]));
    const stored = await store.readStream(stream);
    expect(stored.map((event) => (event.data as { n: number }).n)).toEqual(events.map((_, i) => i));
    expect(results.filter((_, i) => i % 2 === 0).map((result) => result.nextExpectedRevision)).toEqual(events.map((_, i) => i));
  });

  it('sends every append on its own when group commit is off (appendsInFlight 0)', async () => {
    const store = await createStore(0);
    const results = await Promise.all(Array.from({ length: 20 }, () => store.appendToStream(streamName(), [newEvent()])));
    expect(new Set(results.map((result) => transactionOf(result.position))).size).toBe(20);
  });
});

let position = 0n;
const done = (): GroupOutcome => ({ kind: 'done', result: { nextExpectedRevision: 0, position: (position += 1n) } });

/** A scheduler whose database calls wait until the test lets them go, recording what each call carried. */
const gatedGroups = (
  decide: (appends: PendingAppend[]) => GroupOutcome[] | Error = (appends) => appends.map(() => done()),
  limits: { maxInFlight: number; maxEvents: number } = { maxInFlight: 1, maxEvents: 3 },
) => {
  const calls: { kind: 'one' | 'group'; streams: string[]; release: () => void }[] = [];
  const gate = <T>(kind: 'one' | 'group', appends: PendingAppend[], answer: () => T) =>
    new Promise<T>((resolve, reject) => {
      calls.push({
        kind,
        streams: appends.map((append) => append.stream),
        release: () => {
          try {
            resolve(answer());
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        },
      });
    });
  const groups = createAppendGroups({
    ...limits,
    appendOne: (append) =>
      gate('one', [append], () => {
        const outcome = decide([append]);
        if (outcome instanceof Error) throw outcome;
        const only = outcome[0]!;
        if (only.kind === 'refused') throw only.error as Error;
        if (only.kind === 'skipped') throw new Error('an append alone is never skipped');
        return only.result;
      }),
    appendGroup: (appends) =>
      gate('group', appends, () => {
        const outcome = decide(appends);
        if (outcome instanceof Error) throw outcome;
        return outcome;
      }),
  });
  const append = (stream: string, events = 1) =>
    groups.append({
      stream,
      expected: 'any',
      events: prepareAppend(
        'customer-any',
        Array.from({ length: events }, () => newEvent()),
      ),
    });
  /** Lets the oldest running call answer and waits until the scheduler has sent what it does next. */
  const releaseNext = async () => {
    const call = calls.find((candidate) => candidate.release !== noop)!;
    const release = call.release;
    call.release = noop;
    release();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { calls, append, releaseNext };
};
const noop = (): void => undefined;

describe('append groups (the scheduler)', () => {
  it('sends the first append alone, then what arrived meanwhile as one group, each stream once and at most maxEvents', async () => {
    const { calls, append, releaseNext } = gatedGroups();
    const answers = [append('a'), append('b'), append('c'), append('b'), append('d'), append('e')];
    expect(calls.map((call) => [call.kind, call.streams])).toEqual([['one', ['a']]]);
    await releaseNext();
    // b, c, d fill the group (3 events); the second b waits behind the first; e waits for room.
    expect(calls.map((call) => call.streams)).toEqual([['a'], ['b', 'c', 'd']]);
    await releaseNext();
    expect(calls.map((call) => call.streams)).toEqual([['a'], ['b', 'c', 'd'], ['b', 'e']]);
    await releaseNext();
    const results = await Promise.all(answers);
    expect(new Set(results.map((result) => result.position)).size).toBe(6);
  });

  it('sends the appends a refusal skipped again, first in line, and gives the refusal only to its own append', async () => {
    const refusal = new WrongExpectedRevision('b', 0, 3);
    let refused = false;
    const { calls, append, releaseNext } = gatedGroups((appends) =>
      appends.map((item): GroupOutcome => {
        if (item.stream === 'b' && !refused) {
          refused = true;
          return { kind: 'refused', error: refusal };
        }
        return refused && appends.some((other) => other.stream === 'b') ? { kind: 'skipped' } : done();
      }),
    );
    const a = append('a');
    const b = append('b').catch((error: unknown) => error);
    const c = append('c');
    const d = append('d');
    await releaseNext();
    await releaseNext();
    expect(calls.map((call) => call.streams)).toEqual([['a'], ['b', 'c', 'd'], ['c', 'd']]);
    await releaseNext();
    expect(await b).toBe(refusal);
    await expect(Promise.all([a, c, d])).resolves.toHaveLength(3);
  });

  it('gives each append its own answer when a group call fails as a whole, and a lost database to all at once', async () => {
    let failWith: Error | undefined = new Error('duplicate key value violates unique constraint');
    const { calls, append, releaseNext } = gatedGroups((appends) => {
      if (appends.length > 1 && failWith) return failWith;
      return appends.map(() => done());
    });
    const first = [append('a'), append('b'), append('c')];
    await releaseNext();
    await releaseNext();
    // The group [b, c] failed: b and c went again, each alone.
    expect(calls.slice(2).map((call) => [call.kind, call.streams])).toEqual([
      ['one', ['b']],
      ['one', ['c']],
    ]);
    await releaseNext();
    await releaseNext();
    await expect(Promise.all(first)).resolves.toHaveLength(3);

    failWith = new EventStoreUnavailable('Lost the connection to PostgreSQL');
    const second = [append('d'), append('e'), append('f')].map((answer) => answer.catch((error: unknown) => error));
    await releaseNext();
    await releaseNext();
    const [d, e, f] = await Promise.all(second);
    expect(d).toMatchObject({ nextExpectedRevision: 0 });
    expect(e).toBe(failWith);
    expect(f).toBe(failWith);
    // No append was tried again on its own against a lost database.
    expect(calls.slice(4).map((call) => [call.kind, call.streams])).toEqual([
      ['one', ['d']],
      ['group', ['e', 'f']],
    ]);
  });

  it('sends an append larger than a group on its own instead of leaving it waiting', async () => {
    const { calls, append, releaseNext } = gatedGroups();
    const answers = [append('a'), append('b', 5), append('c')];
    await releaseNext();
    // b alone exceeds maxEvents (3): it still goes, alone; c waits for the next call.
    expect(calls.map((call) => [call.kind, call.streams])).toEqual([
      ['one', ['a']],
      ['one', ['b']],
    ]);
    await releaseNext();
    await releaseNext();
    expect(calls.map((call) => call.streams)).toEqual([['a'], ['b'], ['c']]);
    await expect(Promise.all(answers)).resolves.toHaveLength(3);
  });

  it('with room for more calls, an append to a stream in flight waits for it, and no empty call is sent', async () => {
    const { calls, append, releaseNext } = gatedGroups(undefined, { maxInFlight: 2, maxEvents: 3 });
    const answers = [append('a'), append('a')];
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls.map((call) => [call.kind, call.streams])).toEqual([['one', ['a']]]);
    await releaseNext();
    expect(calls.map((call) => [call.kind, call.streams])).toEqual([
      ['one', ['a']],
      ['one', ['a']],
    ]);
    await releaseNext();
    await expect(Promise.all(answers)).resolves.toHaveLength(2);
  });
});
