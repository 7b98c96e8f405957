import { randomUUID } from 'node:crypto';
import { firstValueFrom, filter as rxFilter, take, toArray, type Observable } from 'rxjs';
import { describe, expect, it } from 'vitest';
import {
  MAX_APPEND_BYTES,
  MAX_EVENT_BYTES,
  type EventStore,
  type EventFilter,
  type ExpectedRevision,
  type NewEvent,
  type ReadAllOptions,
  type RecordedEvent,
  type SubscriptionMessage,
} from '../../eventstore/contract.ts';
import {
  EventStoreError,
  IdempotencyConflict,
  InvalidAppend,
  InvalidReadOptions,
  WrongExpectedRevision,
  WrongExpectedRevisions,
} from '../../eventstore/errors.ts';
import { storedEventSize } from '../../eventstore/validation.ts';

/**
 * What the contract suite needs from an engine. Each `createStore` call returns a store whose
 * global feed holds no other test's events (a fresh schema, or a fresh server).
 */
export interface EngineHarness {
  name: string;
  createStore(): Promise<EventStore>;
  /**
   * Appends one event the way a slow writer would: inside a transaction that pauses after the
   * append and commits late. Engines without client-side transactions use a plain append.
   */
  slowAppend?(store: EventStore, stream: string, event: NewEvent, expected: ExpectedRevision): Promise<void>;
  /** Size of the concurrent-writers test (the 16 x 1,000 where the engine allows). */
  concurrency: { writers: number; appendsPerWriter: number; streams: number };
  /**
   * False when stores share one global feed (one EventStoreDB server for every test): feed reads
   * are then narrowed to the test's own streams and the empty-store checks are left out.
   */
  isolatedFeed?: boolean;
  /** False when the engine can only detect a reused event id within one stream (EventStoreDB). */
  globalEventIds?: boolean;
  /** False when `appendToStreams` appends stream by stream (EventStoreDB): the batch is then not all or nothing. */
  atomicMultiStream?: boolean;
}

export const newEvent = (type = 'CustomerRegistered', data: unknown = { name: 'Ada' }, metadata: Record<string, unknown> = {}): NewEvent => ({
  id: randomUUID(),
  type,
  data,
  metadata: { actor: 'user-1', correlationId: randomUUID(), ...metadata },
});

/** Unique aggregate names keep each test's streams apart even on a shared feed. */
const aggregate = (): string => `c${randomUUID().replace(/-/g, '').slice(0, 10)}`;

const caught = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
};

/** Waits until the feed shows `position` (readers only see final positions; other transactions may hold them back briefly). */
const waitForHead = async (store: EventStore, position: bigint, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while ((await store.headPosition()) < position) {
    if (Date.now() > deadline) throw new Error(`head did not reach ${position}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

const eventsOf = (messages: SubscriptionMessage[]): RecordedEvent[] => messages.flatMap((message) => (message.kind === 'event' ? [message.event] : []));

const nextMessages = (source: Observable<SubscriptionMessage>, count: number, timeoutMs = 10_000): Promise<SubscriptionMessage[]> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${count} messages`)), timeoutMs);
    firstValueFrom(source.pipe(take(count), toArray())).then(
      (messages) => {
        clearTimeout(timer);
        resolve(messages);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error('the subscription failed', { cause: error }));
      },
    );
  });

export function eventStoreContract(harness: EngineHarness): void {
  const isolated = harness.isolatedFeed ?? true;
  /** The filter a feed read needs so that it sees only this test's streams. */
  const scoped = (prefixes: string[], filter?: EventFilter): EventFilter | undefined =>
    isolated || filter?.streamPrefixes?.length ? filter : { ...filter, streamPrefixes: prefixes };
  describe(`event store contract: ${harness.name}`, () => {
    describe('appendToStream', () => {
      it('appends to a new stream and records every field', async () => {
        const store = await harness.createStore();
        expect(store.engine).toBe(harness.name);
        const stream = `${aggregate()}-1`;
        const events = [newEvent('CustomerRegistered', { name: 'Ada', tags: ['vip'], nested: { n: 1.5 } }), newEvent('CustomerRenamed', { name: 'Ada L.' })];
        const before = Date.now();
        const result = await store.appendToStream(stream, events, { expectedRevision: 'no_stream' });
        expect(result.nextExpectedRevision).toBe(1);
        expect(typeof result.position).toBe('bigint');
        expect(result.position).toBeGreaterThan(0n);

        const recorded = await store.readStream(stream);
        expect(recorded.map((e) => e.id)).toEqual(events.map((e) => e.id));
        expect(recorded.map((e) => e.revision)).toEqual([0, 1]);
        expect(recorded[0]).toMatchObject({ type: 'CustomerRegistered', stream, data: events[0]!.data, metadata: events[0]!.metadata });
        expect(recorded[1]!.position).toBe(result.position);
        expect(recorded[0]!.position).toBeLessThan(recorded[1]!.position);
        expect(recorded[0]!.recordedAt).toBeInstanceOf(Date);
        expect(recorded[0]!.recordedAt.getTime()).toBeGreaterThanOrEqual(before - 5_000);
        expect(recorded[0]!.recordedAt.getTime()).toBeLessThanOrEqual(Date.now() + 5_000);
        await store.close();
      });

      it('checks a numeric expected revision and reports the actual one', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        await store.appendToStream(stream, [newEvent(), newEvent()], { expectedRevision: 'no_stream' });
        const ok = await store.appendToStream(stream, [newEvent()], { expectedRevision: 1 });
        expect(ok.nextExpectedRevision).toBe(2);

        const error = await caught(store.appendToStream(stream, [newEvent()], { expectedRevision: 1 }));
        expect(error).toBeInstanceOf(WrongExpectedRevision);
        expect(error).toMatchObject({ stream, expected: 1, actual: 2 });
        const missing = await caught(store.appendToStream(`${aggregate()}-1`, [newEvent()], { expectedRevision: 0 }));
        expect(missing).toMatchObject({ actual: -1 });
        expect((await store.readStream(stream)).length).toBe(3);
        await store.close();
      });

      it("honours 'no_stream', 'exists' and 'any'", async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        expect(await caught(store.appendToStream(stream, [newEvent()], { expectedRevision: 'exists' }))).toMatchObject({
          name: 'WrongExpectedRevision',
          actual: -1,
        });
        await store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' });
        expect(await caught(store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' }))).toMatchObject({
          name: 'WrongExpectedRevision',
          actual: 0,
        });
        expect((await store.appendToStream(stream, [newEvent()], { expectedRevision: 'exists' })).nextExpectedRevision).toBe(1);
        expect((await store.appendToStream(stream, [newEvent()], { expectedRevision: 'any' })).nextExpectedRevision).toBe(2);
        expect((await store.appendToStream(stream, [newEvent()])).nextExpectedRevision).toBe(3);
        // 'exists' on a missing stream left no trace: 'no_stream' still works on another fresh stream.
        const other = `${aggregate()}-2`;
        await caught(store.appendToStream(other, [newEvent()], { expectedRevision: 'exists' }));
        expect((await store.appendToStream(other, [newEvent()], { expectedRevision: 'no_stream' })).nextExpectedRevision).toBe(0);
        await store.close();
      });

      it('lets exactly one of 20 concurrent appends with the same expected revision win', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        await store.appendToStream(stream, [newEvent()], { expectedRevision: 'no_stream' });
        const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => store.appendToStream(stream, [newEvent()], { expectedRevision: 0 })));
        const winners = outcomes.filter((o) => o.status === 'fulfilled');
        const losers = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
        expect(winners).toHaveLength(1);
        expect(losers).toHaveLength(19);
        for (const loser of losers) expect(loser).toMatchObject({ name: 'WrongExpectedRevision', actual: 1 });
        expect((await store.readStream(stream)).map((e) => e.revision)).toEqual([0, 1]);
        await store.close();
      });
    });

    describe('appendToStream with the streams a decision read (dependsOn)', () => {
      it('appends while each stream read stands at its revision, and refuses, storing nothing, once one moved', async () => {
        const store = await harness.createStore();
        const customer = `${aggregate()}-1`;
        const deal = `${aggregate()}-1`;
        await store.appendToStream(customer, [newEvent()], { expectedRevision: 'no_stream' });
        const missing = `${aggregate()}-1`;
        const ok = await store.appendToStream(deal, [newEvent('DealOpened', { n: 1 })], {
          expectedRevision: 'no_stream',
          dependsOn: [
            { stream: customer, revision: 0 },
            { stream: missing, revision: 'no_stream' },
          ],
        });
        expect(ok.nextExpectedRevision).toBe(0);
        // The customer moves (forgotten, say) between the read and the next deal's append.
        await store.appendToStream(customer, [newEvent('CustomerForgotten', {})], { expectedRevision: 0 });
        const refused = await caught(
          store.appendToStream(deal, [newEvent('DealOpened', { n: 2 })], { expectedRevision: 0, dependsOn: [{ stream: customer, revision: 0 }] }),
        );
        expect(refused).toBeInstanceOf(WrongExpectedRevision);
        expect(refused).toMatchObject({ stream: customer, expected: 0, actual: 1 });
        const created = await caught(
          store.appendToStream(missing, [newEvent()], { expectedRevision: 'no_stream', dependsOn: [{ stream: customer, revision: 'no_stream' }] }),
        );
        expect(created).toMatchObject({ stream: customer, actual: 1 });
        expect((await store.readStream(deal)).map((e) => e.data)).toEqual([{ n: 1 }]);
        expect(await store.readStream(missing)).toEqual([]);
        // Read again at its revision now, the append goes through.
        const again = await store.appendToStream(deal, [newEvent('DealOpened', { n: 3 })], {
          expectedRevision: 0,
          dependsOn: [{ stream: customer, revision: 1 }],
        });
        expect(again.nextExpectedRevision).toBe(1);
        await store.close();
      });

      it('refuses dependsOn naming the stream appended to, a stream twice, or a revision that is not one', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        const other = `${aggregate()}-1`;
        for (const dependsOn of [
          [{ stream, revision: 0 }],
          [
            { stream: other, revision: 0 },
            { stream: other, revision: 0 },
          ],
          [{ stream: other, revision: 'any' }],
          [{ stream: 'no dash', revision: 0 }],
        ])
          expect(await caught(store.appendToStream(stream, [newEvent()], { dependsOn: dependsOn as never }))).toBeInstanceOf(InvalidAppend);
        expect(await store.readStream(stream)).toEqual([]);
        await store.close();
      });
    });

    describe('idempotency', () => {
      it('returns the original result and appends nothing when the same events come again', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        const events = [newEvent(), newEvent()];
        const first = await store.appendToStream(stream, events, { expectedRevision: 'no_stream' });
        await store.appendToStream(stream, [newEvent()]);
        // A retry with the same expected revision must not fail on the revision check either.
        const retry = await store.appendToStream(stream, events, { expectedRevision: 'no_stream' });
        // The same answer; a store that can tell says that nothing was appended now (AppendResult.duplicate).
        expect(first.duplicate).toBeUndefined();
        expect({ ...retry, duplicate: undefined }).toEqual({ ...first, duplicate: undefined });
        expect(retry.duplicate ?? true).toBe(true);
        const again = await store.appendToStream(stream, events);
        expect({ ...again, duplicate: undefined }).toEqual({ ...first, duplicate: undefined });
        expect((await store.readStream(stream)).length).toBe(3);
        await store.close();
      });

      it('refuses a known id with different content, a partial overlap and an id from another stream', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        const event = newEvent('CustomerRegistered', { name: 'Ada' });
        await store.appendToStream(stream, [event]);

        const changed = await caught(store.appendToStream(stream, [{ ...event, data: { name: 'Eve' } }]));
        expect(changed).toBeInstanceOf(IdempotencyConflict);
        expect(changed).toMatchObject({ eventId: event.id, stream });
        const retyped = await caught(store.appendToStream(stream, [{ ...event, type: 'CustomerRenamed' }]));
        expect(retyped).toBeInstanceOf(IdempotencyConflict);
        expect(await caught(store.appendToStream(stream, [event, newEvent()]))).toBeInstanceOf(IdempotencyConflict);
        if (harness.globalEventIds ?? true) {
          const elsewhere = await caught(store.appendToStream(`${aggregate()}-2`, [event]));
          expect(elsewhere).toBeInstanceOf(IdempotencyConflict);
        }
        expect((await store.readStream(stream)).length).toBe(1);
        await store.close();
      });

      it('refuses a retry with the same ids but other content at a numeric revision or no_stream', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        const first = newEvent('CustomerRegistered', { name: 'Ada' });
        await store.appendToStream(stream, [first], { expectedRevision: 'no_stream' });
        const second = newEvent('CustomerRenamed', { name: 'Ada L.' });
        await store.appendToStream(stream, [second], { expectedRevision: 0 });
        // The loser of a race that reused the winner's ids with another body must not get the winner's result.
        expect(await caught(store.appendToStream(stream, [{ ...first, data: { name: 'Eve' } }], { expectedRevision: 'no_stream' }))).toBeInstanceOf(
          IdempotencyConflict,
        );
        expect(await caught(store.appendToStream(stream, [{ ...second, data: { name: 'Eve' } }], { expectedRevision: 0 }))).toBeInstanceOf(IdempotencyConflict);
        // The true retries still answer with the original result.
        expect((await store.appendToStream(stream, [second], { expectedRevision: 0 })).nextExpectedRevision).toBe(1);
        expect((await store.readStream(stream)).map((e) => e.data)).toEqual([{ name: 'Ada' }, { name: 'Ada L.' }]);
        await store.close();
      });
    });

    describe('appendToStreams', () => {
      const atomic = harness.atomicMultiStream ?? true;
      if (!atomic) {
        console.warn(`${harness.name}: the all-or-nothing appendToStreams test skipped: this engine appends stream by stream (a batch is not all or nothing)`);
      }

      it('appends several streams with their own expected revisions, in input order, and reads them back in one call', async () => {
        const store = await harness.createStore();
        const [a, b, c] = [`${aggregate()}-1`, `${aggregate()}-2`, `${aggregate()}-3`];
        await store.appendToStream(b, [newEvent(), newEvent()], { expectedRevision: 'no_stream' });
        const batch = [
          { stream: a, events: [newEvent(), newEvent()], expectedRevision: 'no_stream' as const },
          { stream: b, events: [newEvent()], expectedRevision: 1 },
          { stream: c, events: [newEvent()] },
        ];
        const results = await store.appendToStreams(batch);
        expect(results.map((r) => r.nextExpectedRevision)).toEqual([1, 2, 0]);
        const read = await store.readStreams([a, b, c, `${aggregate()}-missing`]);
        expect(read.get(a)!.map((e) => e.id)).toEqual(batch[0]!.events.map((e) => e.id));
        expect(read.get(b)!.map((e) => e.revision)).toEqual([0, 1, 2]);
        expect(read.get(b)![2]!.id).toBe(batch[1]!.events[0]!.id);
        expect(read.get(c)!.map((e) => e.position)).toEqual([results[2]!.position]);
        expect([...read.values()].at(-1)).toEqual([]);
        // Within each stream, revision order is position order.
        for (const events of read.values()) {
          for (let i = 1; i < events.length; i++) expect(events[i]!.position).toBeGreaterThan(events[i - 1]!.position);
        }
        // From a known revision on (a saved state's): only the events after it; the other streams whole.
        const after = await store.readStreams([a, b, c], {
          after: new Map([
            [b, 0],
            [c, 0],
          ]),
        });
        expect(after.get(a)!.map((e) => e.revision)).toEqual([0, 1]);
        expect(after.get(b)!.map((e) => e.revision)).toEqual([1, 2]);
        expect(after.get(c)).toEqual([]);
        // The first events of each stream only (a creation's), after `after` where given.
        const first = await store.readStreams([a, b, c], { maxCount: 2, after: new Map([[c, 0]]) });
        expect(first.get(a)!.map((e) => e.revision)).toEqual([0, 1]);
        expect(first.get(b)!.map((e) => e.revision)).toEqual([0, 1]);
        expect(first.get(c)).toEqual([]);
        expect((await store.readStreams([b], { maxCount: 1, after: new Map([[b, 0]]) })).get(b)!.map((e) => e.revision)).toEqual([1]);
        await store.close();
      });

      it.skipIf(!atomic)('a conflict on one stream fails the whole batch and appends nothing, naming every conflicting stream', async () => {
        const store = await harness.createStore();
        const [a, b, c] = [`${aggregate()}-1`, `${aggregate()}-2`, `${aggregate()}-3`];
        await store.appendToStream(b, [newEvent()], { expectedRevision: 'no_stream' });
        await store.appendToStream(c, [newEvent()], { expectedRevision: 'no_stream' });
        const error = await caught(
          store.appendToStreams([
            { stream: a, events: [newEvent()], expectedRevision: 'no_stream' },
            { stream: b, events: [newEvent()], expectedRevision: 'no_stream' },
            { stream: c, events: [newEvent()], expectedRevision: 3 },
          ]),
        );
        expect(error).toBeInstanceOf(WrongExpectedRevisions);
        expect(error).toBeInstanceOf(WrongExpectedRevision);
        expect((error as WrongExpectedRevisions).conflicts).toEqual([
          { stream: b, expected: 'no_stream', actual: 0 },
          { stream: c, expected: 3, actual: 0 },
        ]);
        const read = await store.readStreams([a, b, c]);
        expect([read.get(a)!.length, read.get(b)!.length, read.get(c)!.length]).toEqual([0, 1, 1]);
        // A reused id with other content refuses the batch too.
        const known = (await store.readStream(b))[0]!;
        const reused = await caught(
          store.appendToStreams([
            { stream: a, events: [newEvent()] },
            { stream: b, events: [{ id: known.id, type: known.type, data: { name: 'Eve' }, metadata: known.metadata }] },
          ]),
        );
        expect(reused).toBeInstanceOf(IdempotencyConflict);
        expect((await store.readStream(a)).length).toBe(0);
        await store.close();
      });

      it('is idempotent: the same batch again appends nothing and answers as the first time', async () => {
        const store = await harness.createStore();
        const [a, b] = [`${aggregate()}-1`, `${aggregate()}-2`];
        const batch = [
          { stream: a, events: [newEvent(), newEvent()], expectedRevision: 'no_stream' as const },
          { stream: b, events: [newEvent()], expectedRevision: 'no_stream' as const },
        ];
        const first = await store.appendToStreams(batch);
        const retry = await store.appendToStreams(batch);
        expect(retry.map((r) => ({ ...r, duplicate: undefined }))).toEqual(first.map((r) => ({ ...r, duplicate: undefined })));
        expect(first.map((r) => r.duplicate)).toEqual([undefined, undefined]);
        expect(retry.map((r) => r.duplicate ?? true)).toEqual([true, true]);
        // A batch mixing a stored stream and a new one appends only the new one.
        const c = `${aggregate()}-3`;
        const mixed = await store.appendToStreams([batch[1]!, { stream: c, events: [newEvent()], expectedRevision: 'no_stream' }]);
        expect({ ...mixed[0], duplicate: undefined }).toEqual({ ...first[1], duplicate: undefined });
        expect(mixed[1]!.duplicate).toBeUndefined();
        expect(mixed[1]!.nextExpectedRevision).toBe(0);
        const read = await store.readStreams([a, b, c]);
        expect([read.get(a)!.length, read.get(b)!.length, read.get(c)!.length]).toEqual([2, 1, 1]);
        await store.close();
      });

      it('refuses an empty batch, a stream named twice and an id used twice before storing anything', async () => {
        const store = await harness.createStore();
        const a = `${aggregate()}-1`;
        expect(await caught(store.appendToStreams([]))).toBeInstanceOf(InvalidAppend);
        expect(
          await caught(
            store.appendToStreams([
              { stream: a, events: [newEvent()] },
              { stream: a, events: [newEvent()] },
            ]),
          ),
        ).toBeInstanceOf(InvalidAppend);
        const event = newEvent();
        expect(
          await caught(
            store.appendToStreams([
              { stream: a, events: [event] },
              { stream: `${aggregate()}-2`, events: [event] },
            ]),
          ),
        ).toBeInstanceOf(InvalidAppend);
        expect(await caught(store.appendToStreams([{ stream: 'Not A Stream', events: [newEvent()] }]))).toBeInstanceOf(InvalidAppend);
        expect((await store.readStream(a)).length).toBe(0);
        await store.close();
      });

      it('stays correct beside concurrent single appends and overlapping batches on the same streams', async () => {
        const store = await harness.createStore();
        const streams = Array.from({ length: 6 }, (_, i) => `${aggregate()}-${i}`);
        const appended = new Set<string>();
        // Each writer re-reads and retries on a conflict, as the importer does; every event must land exactly once.
        const withRetry = async (attempt: () => Promise<unknown>): Promise<void> => {
          for (let tries = 0; ; tries++) {
            try {
              await attempt();
              return;
            } catch (error) {
              if (!(error instanceof WrongExpectedRevision) || tries > 200) throw error;
            }
          }
        };
        const revisionOf = async (stream: string) => (await store.readStream(stream, { direction: 'backwards', maxCount: 1 }))[0]?.revision ?? -1;
        const batchWriter = async (offset: number) => {
          for (let round = 0; round < 15; round++) {
            const picked = [streams[(round + offset) % 6]!, streams[(round + offset + 2) % 6]!, streams[(round + offset + 4) % 6]!];
            const events = picked.map(() => newEvent());
            events.forEach((e) => appended.add(e.id));
            await withRetry(async () => {
              const revisions = await Promise.all(picked.map(revisionOf));
              await store.appendToStreams(
                picked.map((stream, i) => ({ stream, events: [events[i]!], expectedRevision: revisions[i]! < 0 ? ('no_stream' as const) : revisions[i]! })),
              );
            });
          }
        };
        const singleWriter = async (stream: string) => {
          for (let round = 0; round < 15; round++) {
            const event = newEvent();
            appended.add(event.id);
            await withRetry(async () => {
              const revision = await revisionOf(stream);
              await store.appendToStream(stream, [event], { expectedRevision: revision < 0 ? 'no_stream' : revision });
            });
          }
        };
        await Promise.all([batchWriter(0), batchWriter(1), batchWriter(3), singleWriter(streams[0]!), singleWriter(streams[3]!)]);
        const read = await store.readStreams(streams);
        const ids = [...read.values()].flat().map((e) => e.id);
        expect(ids.length).toBe(appended.size);
        expect(new Set(ids)).toEqual(appended);
        for (const events of read.values()) {
          expect(events.map((e) => e.revision)).toEqual(events.map((_, i) => i));
          for (let i = 1; i < events.length; i++) expect(events[i]!.position).toBeGreaterThan(events[i - 1]!.position);
        }
        await store.close();
      });
    });

    describe('bad input', () => {
      it('refuses empty lists, invalid names, oversized payloads and malformed events before storing anything', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        const refusal = async (call: Promise<unknown>, reason: string): Promise<void> => {
          const error = await caught(call);
          expect(error).toBeInstanceOf(InvalidAppend);
          expect(error).toMatchObject({ reason });
        };
        await refusal(store.appendToStream(stream, []), 'empty_event_list');
        for (const name of ['', 'customer', 'Customer-1', '-1', 'customer-', 'customer 1', 'customer-a b', `customer-${'x'.repeat(300)}`]) {
          await refusal(store.appendToStream(name, [newEvent()]), 'invalid_stream_name');
        }
        await refusal(store.appendToStream(stream, [newEvent('Big', { blob: 'x'.repeat(MAX_EVENT_BYTES) })]), 'payload_too_large');
        const nearLimit = 'x'.repeat(Math.floor(MAX_EVENT_BYTES * 0.9));
        const count = Math.ceil(MAX_APPEND_BYTES / (MAX_EVENT_BYTES * 0.9)) + 1;
        await refusal(
          store.appendToStream(
            stream,
            Array.from({ length: count }, () => newEvent('Big', { blob: nearLimit })),
          ),
          'payload_too_large',
        );
        // The append limit counts twice each type's length, as EventStoreDB does: an append exactly at the
        // limit is accepted, one byte of type more is refused, on every engine alike.
        const atLimit = (typeName: string): NewEvent[] => {
          const events = Array.from({ length: 3 }, () => newEvent(typeName, { blob: '' }));
          const fixed = events.reduce((sum, e) => sum + storedEventSize(e.type, JSON.stringify(e.data), JSON.stringify(e.metadata)), 0);
          const pad = MAX_APPEND_BYTES - fixed;
          const shares = [Math.floor(pad / 3), Math.floor(pad / 3), pad - 2 * Math.floor(pad / 3)];
          return events.map((e, i) => ({ ...e, data: { blob: 'y'.repeat(shares[i]!) } }));
        };
        await refusal(
          store.appendToStream(
            stream,
            atLimit('Big').map((e) => ({ ...e, type: 'Bigger' })),
          ),
          'payload_too_large',
        );
        const limitStream = `${aggregate()}-limit`;
        await store.appendToStream(limitStream, atLimit('Big'));
        expect(await store.readStream(limitStream)).toHaveLength(3);
        await refusal(store.appendToStream(stream, [{ ...newEvent(), id: 'not-a-uuid' }]), 'invalid_event');
        const twice = newEvent();
        await refusal(store.appendToStream(stream, [twice, twice]), 'invalid_event');
        await refusal(store.appendToStream(stream, [{ ...newEvent(), type: '' }]), 'invalid_event');
        await refusal(store.appendToStream(stream, [{ ...newEvent(), data: undefined }]), 'invalid_event');
        await refusal(store.appendToStream(stream, [newEvent('T', { text: 'nul \u0000 char' })]), 'invalid_event');
        await refusal(store.appendToStream(stream, [newEvent()], { expectedRevision: -5 }), 'invalid_expected_revision');
        await refusal(store.appendToStream(stream, [newEvent()], { expectedRevision: 1.5 }), 'invalid_expected_revision');
        expect(await store.readStream(stream)).toEqual([]);
        // An event just under the limit is accepted.
        await store.appendToStream(stream, [newEvent('Big', { blob: nearLimit })]);
        expect((await store.readStream(stream))[0]!.data).toEqual({ blob: nearLimit });
        await store.close();
      });
    });

    describe('read options and a closed store', () => {
      it('refuses invalid read options and any call after close', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        for (const options of [{ maxCount: -1 }, { fromRevision: 1.5 }, { untilTime: new Date('nope') }]) {
          expect(await caught(store.readStream(stream, options))).toBeInstanceOf(InvalidReadOptions);
        }
        for (const options of [{ maxCount: -1 }, { fromPosition: -1n }, { fromPosition: 5 as unknown as bigint }]) {
          expect(await caught(store.readAll(options))).toBeInstanceOf(InvalidReadOptions);
        }
        expect(await store.readAll({ maxCount: 0 })).toEqual([]);
        // A position that is no event's position (a forged cursor, another engine's checkpoint): the engine
        // either reads strictly after it or refuses it as InvalidReadOptions, never a raw error.
        const appended = await store.appendToStream(stream, [newEvent(), newEvent()]);
        const foreign = await store.readAll({ fromPosition: appended.position - 1n }).catch((error: unknown) => error);
        if (foreign instanceof Error) expect(foreign).toBeInstanceOf(InvalidReadOptions);
        else expect((foreign as RecordedEvent[]).every((e) => e.position > appended.position - 1n)).toBe(true);
        await store.close();
        await store.close();
        expect(await caught(store.appendToStream(stream, [newEvent()]))).toBeInstanceOf(EventStoreError);
        expect(await caught(store.readStream(stream))).toBeInstanceOf(EventStoreError);
      });
    });

    describe('readStream', () => {
      it('reads forwards and backwards with revision bounds, counts and a time bound', async () => {
        const store = await harness.createStore();
        const stream = `${aggregate()}-1`;
        await store.appendToStream(stream, [newEvent(), newEvent(), newEvent()]);
        const firstBatch = await store.readStream(stream);
        await new Promise((resolve) => setTimeout(resolve, 30));
        await store.appendToStream(stream, [newEvent(), newEvent()]);
        const revisions = async (options: Parameters<EventStore['readStream']>[1]): Promise<number[]> =>
          (await store.readStream(stream, options)).map((e) => e.revision);

        expect(await revisions({})).toEqual([0, 1, 2, 3, 4]);
        expect(await revisions({ fromRevision: 2 })).toEqual([2, 3, 4]);
        expect(await revisions({ fromRevision: 1, maxCount: 2 })).toEqual([1, 2]);
        expect(await revisions({ untilRevision: 2 })).toEqual([0, 1, 2]);
        expect(await revisions({ fromRevision: 1, untilRevision: 3 })).toEqual([1, 2, 3]);
        expect(await revisions({ direction: 'backwards' })).toEqual([4, 3, 2, 1, 0]);
        expect(await revisions({ direction: 'backwards', fromRevision: 3, maxCount: 2 })).toEqual([3, 2]);
        expect(await revisions({ direction: 'backwards', maxCount: 1 })).toEqual([4]);
        expect(await revisions({ untilTime: firstBatch[2]!.recordedAt })).toEqual([0, 1, 2]);
        expect(await revisions({ fromRevision: 9 })).toEqual([]);
        expect(await store.readStream(`${aggregate()}-missing`)).toEqual([]);
        await store.close();
      });
    });

    describe('readAll and headPosition', () => {
      it('reads the global feed in position order with an exclusive start, counts, filters and both directions', async () => {
        const store = await harness.createStore();
        const [customer, deal] = [aggregate(), aggregate()];
        const readAll = (options: ReadAllOptions = {}) => store.readAll({ ...options, filter: scoped([`${customer}-`, `${deal}-`], options.filter) });
        if (isolated) {
          expect(await store.headPosition()).toBe(0n);
          expect(await readAll()).toEqual([]);
        }
        const a = await store.appendToStream(`${customer}-1`, [newEvent('CustomerRegistered'), newEvent('CustomerRenamed')]);
        await store.appendToStream(`${deal}-1`, [newEvent('DealOpened')]);
        const last = await store.appendToStream(`${customer}-2`, [newEvent('CustomerRegistered')]);
        await waitForHead(store, last.position);
        if (isolated) expect(await store.headPosition()).toBe(last.position);

        const all = await readAll();
        expect(all.map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerRenamed', 'DealOpened', 'CustomerRegistered']);
        const positions = all.map((e) => e.position);
        expect([...positions].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))).toEqual(positions);
        expect(new Set(positions).size).toBe(4);

        expect((await readAll({ fromPosition: a.position })).map((e) => e.position)).toEqual(positions.slice(2));
        expect((await readAll({ maxCount: 2 })).map((e) => e.position)).toEqual(positions.slice(0, 2));
        expect((await readAll({ fromPosition: positions[0], maxCount: 1 })).map((e) => e.position)).toEqual([positions[1]]);
        expect((await readAll({ filter: { streamPrefixes: [`${deal}-`] } })).map((e) => e.type)).toEqual(['DealOpened']);
        expect((await readAll({ filter: { eventTypes: ['CustomerRegistered'] } })).map((e) => e.stream)).toEqual([`${customer}-1`, `${customer}-2`]);
        expect((await readAll({ filter: { streamPrefixes: [`${customer}-`], eventTypes: ['CustomerRenamed', 'DealOpened'] } })).map((e) => e.type)).toEqual([
          'CustomerRenamed',
        ]);
        expect((await readAll({ filter: { streamPrefixes: [`${customer}-2`, `${deal}-`] } })).map((e) => e.stream)).toEqual([`${deal}-1`, `${customer}-2`]);
        expect((await readAll({ direction: 'backwards' })).map((e) => e.position)).toEqual([...positions].reverse());
        expect((await readAll({ direction: 'backwards', fromPosition: positions[2], maxCount: 1 })).map((e) => e.position)).toEqual([positions[1]]);
        await store.close();
      });

      it('counts the events of a position range as readAll reads them (a replay progress total), where the engine counts', async (ctx) => {
        const store = await harness.createStore();
        try {
          if (!store.countEvents) return ctx.skip('this engine does not count events (replays show no total)');
          if (!isolated) return ctx.skip("this engine's feed is shared by every test: a count of the whole range would include theirs");
          expect(await store.countEvents({ untilPosition: await store.headPosition() })).toBe(0);
          const customer = aggregate();
          await store.appendToStream(`${customer}-1`, [newEvent(), newEvent('CustomerRenamed')]);
          const last = await store.appendToStream(`${customer}-2`, [newEvent()]);
          await waitForHead(store, last.position);
          const positions = (await store.readAll()).map((e) => e.position);
          expect(await store.countEvents({ untilPosition: last.position })).toBe(3);
          expect(await store.countEvents({ fromPosition: positions[0], untilPosition: positions[1]! })).toBe(1);
          expect(await store.countEvents({ fromPosition: positions[0], untilPosition: last.position + 1_000n })).toBe(2);
        } finally {
          await store.close();
        }
      });

      it('treats prefix filters literally (no wildcard characters)', async () => {
        const store = await harness.createStore();
        const base = aggregate();
        await store.appendToStream(`${base}_x-1`, [newEvent()]);
        const last = await store.appendToStream(`${base}ax-1`, [newEvent()]);
        await waitForHead(store, last.position);
        expect((await store.readAll({ filter: { streamPrefixes: [`${base}_`] } })).map((e) => e.stream)).toEqual([`${base}_x-1`]);
        await store.close();
      });
    });

    describe('subscribeToAll', () => {
      it('catches up, signals it, then follows live appends in order', async () => {
        const store = await harness.createStore();
        const [name, other] = [aggregate(), aggregate()];
        const stream = `${name}-1`;
        await store.appendToStream(stream, [newEvent('A'), newEvent('B')]);
        const received: SubscriptionMessage[] = [];
        const fourEvents = new Promise<void>((resolve, reject) => {
          const subscription = store.subscribeToAll({ filter: scoped([`${name}-`, `${other}-`]) }).subscribe({
            next: (message) => {
              received.push(message);
              if (eventsOf(received).length === 4) {
                subscription.unsubscribe();
                resolve();
              }
            },
            error: reject,
          });
        });
        // Let the subscriber reach the head before the live appends.
        const deadline = Date.now() + 10_000;
        while (!received.some((m) => m.kind === 'caughtUp') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        await store.appendToStream(stream, [newEvent('C')]);
        await store.appendToStream(`${other}-2`, [newEvent('D')]);
        await fourEvents;
        expect(received[2]).toMatchObject({ kind: 'caughtUp' });
        expect((received[2] as { position: bigint }).position).toBe(eventsOf(received)[1]!.position);
        const events = eventsOf(received);
        expect(events.map((e) => e.type)).toEqual(['A', 'B', 'C', 'D']);
        expect(events.map((e) => e.revision)).toEqual([0, 1, 2, 0]);
        expect(events.every((e, i) => i === 0 || e.position > events[i - 1]!.position)).toBe(true);
        await store.close();
      });

      it('starts after an exclusive position and applies filters', async () => {
        const store = await harness.createStore();
        const [customer, deal] = [aggregate(), aggregate()];
        const first = await store.appendToStream(`${customer}-1`, [newEvent('CustomerRegistered')]);
        await store.appendToStream(`${deal}-1`, [newEvent('DealOpened')]);
        await store.appendToStream(`${customer}-1`, [newEvent('CustomerRenamed')]);
        const fromPosition = eventsOf(
          await nextMessages(store.subscribeToAll({ fromPosition: first.position, filter: scoped([`${customer}-`, `${deal}-`]) }), 2),
        ).map((e) => e.type);
        expect(fromPosition).toEqual(['DealOpened', 'CustomerRenamed']);

        const filtered = store.subscribeToAll({ filter: { streamPrefixes: [`${customer}-`] } }).pipe(
          rxFilter((m) => m.kind === 'event'),
          take(3),
          toArray(),
        );
        const received = firstValueFrom(filtered);
        await store.appendToStream(`${deal}-1`, [newEvent('DealWon')]);
        await store.appendToStream(`${customer}-1`, [newEvent('CustomerTagged')]);
        expect(eventsOf(await received).map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerRenamed', 'CustomerTagged']);

        const byType = eventsOf(
          await nextMessages(
            store.subscribeToAll({ filter: scoped([`${deal}-`], { eventTypes: ['DealOpened', 'DealWon'] }) }).pipe(rxFilter((m) => m.kind === 'event')),
            2,
          ),
        );
        expect(byType.map((e) => e.type)).toEqual(['DealOpened', 'DealWon']);
        await store.close();
      });

      it('holds a large backlog back while a slow consumer asks it to pause (bounded buffering)', async () => {
        const store = await harness.createStore();
        const name = aggregate();
        const total = 3_000;
        for (let i = 0; i < total / 500; i++) {
          await store.appendToStream(
            `${name}-${i}`,
            Array.from({ length: 500 }, () => newEvent('Backlog', { i })),
          );
        }
        const bound = 200;
        const queue: RecordedEvent[] = [];
        let processed = 0;
        let mostQueued = 0;
        const done = new Promise<void>((resolve, reject) => {
          const subscription = store.subscribeToAll({ filter: scoped([`${name}-`]), shouldPause: () => queue.length >= bound }).subscribe({
            next: (message) => {
              if (message.kind !== 'event') return;
              queue.push(message.event);
              mostQueued = Math.max(mostQueued, queue.length);
            },
            error: reject,
          });
          // The consumer: 50 events every few milliseconds, far slower than the engine can read.
          const consume = setInterval(() => {
            processed += queue.splice(0, 50).length;
            if (processed >= total) {
              clearInterval(consume);
              subscription.unsubscribe();
              resolve();
            }
          }, 5);
        });
        await done;
        expect(processed).toBe(total);
        // The engine may finish the page it was reading when the consumer asked it to pause (PostgreSQL reads 1,000 a page).
        expect(mostQueued).toBeLessThanOrEqual(bound + 1_000);
        expect(mostQueued).toBeLessThan(total);
        await store.close();
      });

      it('delivers nothing after unsubscribing, and completes subscriptions when the store closes', async () => {
        const store = await harness.createStore();
        const name = aggregate();
        const stream = `${name}-1`;
        await store.appendToStream(stream, [newEvent('A')]);
        const seen: SubscriptionMessage[] = [];
        const subscription = store.subscribeToAll({ filter: scoped([`${name}-`]) }).subscribe((m) => seen.push(m));
        const deadline = Date.now() + 10_000;
        while (!seen.some((m) => m.kind === 'caughtUp') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        subscription.unsubscribe();
        const countAtUnsubscribe = seen.length;
        await store.appendToStream(stream, [newEvent('B')]);
        await new Promise((resolve) => setTimeout(resolve, 700));
        expect(seen.length).toBe(countAtUnsubscribe);
        expect(eventsOf(seen).map((e) => e.type)).toEqual(['A']);

        let completed = false;
        const live = store.subscribeToAll().subscribe({ complete: () => (completed = true) });
        await new Promise((resolve) => setTimeout(resolve, 100));
        await store.close();
        expect(completed).toBe(true);
        expect(live.closed).toBe(true);
      });
    });

    describe('concurrent writers', () => {
      const { writers, appendsPerWriter, streams } = harness.concurrency;
      it(`${writers} writers x ${appendsPerWriter} single-event appends with pauses inside transactions: a live subscriber sees each event once, in order`, async () => {
        const store = await harness.createStore();
        const name = aggregate();
        const total = writers * appendsPerWriter;
        const seen: RecordedEvent[] = [];
        let caughtUpOnce = false;
        const done = new Promise<void>((resolve, reject) => {
          // Fires before the test's own timeout, so a failure says which events never arrived.
          const timer = setTimeout(() => {
            const delivered = new Set(seen.map((e) => e.id));
            const missing = sent.filter((id) => !delivered.has(id));
            reject(
              new Error(`subscriber saw ${seen.length} of ${total} events; ${missing.length} sent ones never arrived, e.g. ${missing.slice(0, 5).join(', ')}`),
            );
          }, 100_000);
          const subscription = store.subscribeToAll({ filter: { streamPrefixes: [`${name}-`] } }).subscribe({
            next: (message) => {
              if (message.kind === 'caughtUp') caughtUpOnce = true;
              else seen.push(message.event);
              if (seen.length >= total) {
                clearTimeout(timer);
                // A little longer to catch duplicates delivered after the last expected event.
                setTimeout(() => {
                  subscription.unsubscribe();
                  resolve();
                }, 500);
              }
            },
            error: reject,
          });
        });
        const append =
          harness.slowAppend ??
          ((s: EventStore, stream: string, event: NewEvent, expected: ExpectedRevision) =>
            s.appendToStream(stream, [event], { expectedRevision: expected }).then(() => undefined));
        const sent: string[] = [];
        await Promise.all(
          Array.from({ length: writers }, async (_, writer) => {
            for (let i = 0; i < appendsPerWriter; i += 1) {
              const event = newEvent('Tick', { writer, i });
              sent.push(event.id);
              await append(store, `${name}-${(writer * 7 + i) % streams}`, event, 'any');
            }
          }),
        );
        await done;
        expect(caughtUpOnce).toBe(true);
        expect(seen.length).toBe(total);
        expect(new Set(seen.map((e) => e.id)).size).toBe(total);
        expect(new Set(seen.map((e) => e.id))).toEqual(new Set(sent));
        const outOfOrder = seen.findIndex((e, i) => i > 0 && e.position <= seen[i - 1]!.position);
        expect(outOfOrder === -1 ? 'in order' : `${seen[outOfOrder - 1]!.position} then ${seen[outOfOrder]!.position} at ${outOfOrder}`).toBe('in order');
        const nextRevision = new Map<string, number>();
        for (const event of seen) {
          expect(event.revision).toBe(nextRevision.get(event.stream) ?? 0);
          nextRevision.set(event.stream, event.revision + 1);
        }
        // The feed read afterwards agrees with what the subscriber saw.
        const feed = await store.readAll({ filter: { streamPrefixes: [`${name}-`] } });
        expect(feed.map((e) => e.id)).toEqual(seen.map((e) => e.id));
        await store.close();
      }, 150_000);
    });
  });
}
