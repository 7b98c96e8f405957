import { randomUUID } from 'node:crypto';
import { firstValueFrom, filter, take, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { NewEvent, RecordedEvent, SubscriptionMessage } from '../../eventstore/contract.ts';
import {
  EventStoreError,
  EventStoreUnavailable,
  IdempotencyConflict,
  InvalidAppend,
  InvalidReadOptions,
  WrongExpectedRevision,
} from '../../eventstore/errors.ts';
import { parseConnectionString, versionAtLeast } from '../../eventstore/eventstoredb/connection.ts';
import { mapEventStoreDbError } from '../../eventstore/eventstoredb/errors.ts';
import { createEventStoreDbStore } from '../../eventstore/eventstoredb/store.ts';
import { RecordedClientDouble } from './eventstoredb-client-double.ts';

/**
 * The EventStoreDB adapter's own logic, against a recorded double of the client (see
 * eventstoredb-client-double.ts). The real-server contract suite is eventstoredb.test.ts.
 */

const URL = 'esdb://127.0.0.1:2113?tls=false';
const event = (type = 'CustomerRegistered', data: unknown = { name: 'Ada' }): NewEvent => ({ id: randomUUID(), type, data, metadata: { actor: 'user-1' } });

const open = (double = new RecordedClientDouble(), url = URL) => ({
  double,
  store: createEventStoreDbStore(url, { client: double, resubscribeDelay: 5, maxResubscribeDelay: 20 }),
});

const caught = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

const until = async (condition: () => boolean, what: string, ms = 5_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('eventstoredb adapter: appends', () => {
  it('refuses a retry that reuses the ids after a numeric revision with other content (the server answers success)', async () => {
    const { store } = open();
    const first = event('CustomerRegistered', { name: 'Ada' });
    await store.appendToStream('customer-1', [first], { expectedRevision: 'no_stream' });
    const winner = event('CustomerRenamed', { name: 'Ada L.' });
    const won = await store.appendToStream('customer-1', [winner], { expectedRevision: 0 });
    const loser = { ...winner, data: { name: 'Eve' } };
    expect(await caught(store.appendToStream('customer-1', [loser], { expectedRevision: 0 }))).toBeInstanceOf(IdempotencyConflict);
    expect(await caught(store.appendToStream('customer-1', [{ ...first, type: 'Other' }], { expectedRevision: 'no_stream' }))).toBeInstanceOf(
      IdempotencyConflict,
    );
    // A true retry still gets the original result.
    expect(await store.appendToStream('customer-1', [winner], { expectedRevision: 0 })).toEqual(won);
    await store.close();
  });

  it('sends credentials with every append, so the client never takes its BatchAppend path', async () => {
    const { double, store } = open(new RecordedClientDouble(), 'esdb://ops:s3cret@127.0.0.1:2113?tls=true');
    await store.appendToStream('customer-1', [event()]);
    await store.appendToStream('customer-1', [event()], { expectedRevision: 0 });
    const appends = double.calls.filter((c) => c.method === 'appendToStream');
    expect(appends).toHaveLength(2);
    for (const call of appends)
      expect((call.args as { options: { credentials: unknown } }).options.credentials).toEqual({ username: 'ops', password: 's3cret' });
    expect(parseConnectionString(URL).appendCredentials.username).toBeTruthy();
    await store.close();
  });

  it('refuses throwOnAppendFailure=false and treats an unsuccessful result as a conflict', async () => {
    expect(() => createEventStoreDbStore(`${URL}&throwOnAppendFailure=false`, { client: new RecordedClientDouble() })).toThrow(/throwOnAppendFailure/);
    const { double, store } = open();
    double.appendToStream = async () => ({ success: false, nextExpectedRevision: 4n, position: undefined });
    const error = await caught(store.appendToStream('customer-2', [event()], { expectedRevision: 1 }));
    expect(error).toBeInstanceOf(WrongExpectedRevision);
    expect(error).toMatchObject({ actual: 4 });
    await store.close();
  });

  it('reports a wrong expected revision with the actual one', async () => {
    const { store } = open();
    await store.appendToStream('customer-3', [event(), event()]);
    const error = await caught(store.appendToStream('customer-3', [event()], { expectedRevision: 0 }));
    expect(error).toBeInstanceOf(WrongExpectedRevision);
    expect(error).toMatchObject({ expected: 0, actual: 1 });
    await store.close();
  });
});

describe('eventstoredb adapter: the connection string', () => {
  it('hands the client the credentials percent-encoded and only the options it takes, so that it prints nothing', () => {
    const parsed = parseConnectionString(
      'esdb://ad%3Amin:hun/ter@2:x@db.internal:2113,db2.internal:2113?tls=false&nodePreference=leader&crmOwn=1&tlsVerifyCert=false',
    );
    expect(parsed.appendCredentials).toEqual({ username: 'ad:min', password: 'hun/ter@2:x' });
    expect(parsed.clientUrl).toBe('esdb://ad%3Amin:hun%2Fter%402%3Ax@db.internal:2113,db2.internal:2113?tls=false&nodePreference=leader');
    expect(parsed.ignoredOptions).toEqual(['crmOwn', 'tlsVerifyCert=false']);
    expect(parseConnectionString('esdb+discover://cluster.internal?tlsVerifyCert=true')).toMatchObject({
      appendCredentials: { username: 'admin', password: 'changeit' },
      clientUrl: 'esdb+discover://cluster.internal?tlsVerifyCert=true',
      ignoredOptions: [],
    });
  });

  it('tells whoever opens the store which options it left out, from the one reading of the string', async () => {
    const told: string[][] = [];
    const store = createEventStoreDbStore('esdb://admin:changeit@db.internal:2113?tls=false&crmOwn=1&tlsVerifyCert=false', {
      client: new RecordedClientDouble(),
      onIgnoredOptions: (ignored) => told.push(ignored),
    });
    expect(told).toEqual([['crmOwn', 'tlsVerifyCert=false']]);
    await store.close();
    const plain = createEventStoreDbStore('esdb://admin:changeit@db.internal:2113?tls=false', {
      client: new RecordedClientDouble(),
      onIgnoredOptions: (ignored) => told.push(ignored),
    });
    expect(told).toHaveLength(1);
    await plain.close();
  });

  it('refuses what it cannot read, naming the server and never the password', () => {
    for (const url of [
      'esdb://admin@db.internal:2113',
      'esdb://admin:hunter%zz@db.internal:2113',
      'esdb://admin:hunter@db internal:2113',
      'http://admin:hunter@db.internal:2113',
    ]) {
      let refused: unknown;
      try {
        parseConnectionString(url);
      } catch (error) {
        refused = error;
      }
      expect(refused, url).toBeInstanceOf(EventStoreUnavailable);
      expect((refused as Error).message, url).toMatch(/^EVENTSTORE_URL is not a valid connection string/);
      expect((refused as Error).message, url).not.toMatch(/hunter/);
    }
  });

  it('names the server in its errors without the password, whatever the password holds', () => {
    for (const url of ['esdb://admin:hunter/2@127.0.0.1:2113?tls=false', 'esdb://admin:12/hunter@127.0.0.1:2113', 'esdb://admin:hun@ter@127.0.0.1:2113']) {
      const message = (mapEventStoreDbError(Object.assign(new Error('no connection'), { type: 'unavailable', code: 14 }), url) as Error).message;
      expect(message, url).toContain('EventStoreDB at esdb://127.0.0.1:2113');
      expect(message, url).not.toMatch(/hun|ter/);
    }
  });
});

describe('eventstoredb adapter: server version', () => {
  it('refuses servers older than 23.10 (and servers that cannot say) with a message naming the version', async () => {
    for (const version of ['22.10.2.0', '23.6.0.0', 'unknown']) {
      const double = new RecordedClientDouble();
      double.version = version;
      const { store } = open(double);
      const error = await caught(store.headPosition());
      expect(error).toBeInstanceOf(EventStoreUnavailable);
      expect((error as Error).message).toContain(version);
      expect((error as Error).message).toMatch(/23\.10/);
      await store.close();
    }
    for (const version of ['23.10.0.0', '24.10.1.0', '25.0.0']) expect(versionAtLeast(version, '23.10')).toBe(true);
  });

  it('checks the version once, and again after a failed check', async () => {
    const { double, store } = open();
    double.failNext.set('serverVersion', Object.assign(new Error('14 UNAVAILABLE: connect ECONNREFUSED'), { type: 'unavailable', code: 14 }));
    expect(await caught(store.headPosition())).toBeInstanceOf(EventStoreUnavailable);
    await store.headPosition();
    await store.headPosition();
    expect(double.calls.filter((c) => c.method === 'serverVersion')).toHaveLength(2);
    await store.close();
  });
});

describe('eventstoredb adapter: error mapping', () => {
  const table: Array<[string, object, new (...args: never[]) => Error]> = [
    ['unavailable', { type: 'unavailable', code: 14 }, EventStoreUnavailable],
    ['deadline exceeded', { type: 'deadline-exceeded', code: 4 }, EventStoreUnavailable],
    ['timeout', { type: 'timeout' }, EventStoreUnavailable],
    ['not leader', { type: 'not-leader', leader: { address: '10.0.0.2', port: 2113 } }, EventStoreUnavailable],
    ['access denied', { type: 'access-denied', code: 7 }, EventStoreUnavailable],
    ['invalid position', { type: 'invalid-argument', code: 3, message: 'invalid position' }, InvalidReadOptions],
    ['maximum append size', { type: 'maximum-append-size-exceeded' }, InvalidAppend],
    ["24.10's event size limit", { code: 2, message: 'MaximumAppendEventSizeExceeded: event is 2000000 bytes' }, InvalidAppend],
    ['anything else', { type: 'unknown', code: 2, message: 'boom' }, EventStoreError],
  ];
  it.each(table)('%s becomes a typed store error', (_name, shape, expected) => {
    const mapped = mapEventStoreDbError(Object.assign(new Error((shape as { message?: string }).message ?? 'server error'), shape), URL);
    expect(mapped).toBeInstanceOf(expected);
    expect(mapped).toBeInstanceOf(EventStoreError);
  });

  it('maps errors from every call, never passing a raw one through', async () => {
    const { double, store } = open();
    await store.appendToStream('customer-1', [event()]);
    const raw = () => Object.assign(new Error('14 UNAVAILABLE: No connection established'), { type: 'unavailable', code: 14 });
    for (const [method, call] of [
      ['appendToStream', () => store.appendToStream('customer-1', [event()])],
      ['readStream', () => store.readStream('customer-1')],
      ['readAll', () => store.readAll()],
    ] as const) {
      double.failNext.set(method, raw());
      expect(await caught(call())).toBeInstanceOf(EventStoreUnavailable);
    }
    await store.close();
  });
});

describe('eventstoredb adapter: positions and reads', () => {
  it('answers a position that is not an event position as InvalidReadOptions (a forged cursor is a 400, not a 500)', async () => {
    const { store } = open();
    const { position } = await store.appendToStream('customer-1', [event(), event()]);
    expect(await caught(store.readAll({ fromPosition: position - 1n }))).toBeInstanceOf(InvalidReadOptions);
    expect(await store.readAll({ fromPosition: position })).toEqual([]);
    await store.close();
  });

  it('sends maxCount: the head needs one short read, a selective page stops once full', async () => {
    const double = new RecordedClientDouble();
    const store = createEventStoreDbStore(URL, { client: double, readPageSize: 50 });
    for (let i = 0; i < 20; i++)
      await store.appendToStream(
        `deal-${i}`,
        Array.from({ length: 50 }, () => event('DealOpened', {})),
      );
    await store.appendToStream('customer-9', [event()]);
    double.eventsRead = 0;
    const head = await store.headPosition();
    expect(head).toBe(double.log.at(-1)!.position.commit);
    expect(double.eventsRead).toBeLessThanOrEqual(50);
    const heads = double.calls.filter((c) => c.method === 'readAll').at(-1)!.args as { maxCount?: number };
    expect(heads.maxCount).toBe(50);

    double.eventsRead = 0;
    const firstDeals = await store.readAll({ maxCount: 10, filter: { streamPrefixes: ['deal-'] } });
    expect(firstDeals).toHaveLength(10);
    expect(double.eventsRead).toBeLessThanOrEqual(50);
    // Paging across page boundaries keeps every event exactly once, in order.
    const all = await store.readAll();
    expect(all).toHaveLength(1_001);
    expect(new Set(all.map((e) => e.id)).size).toBe(1_001);
    expect(all.every((e, i) => i === 0 || e.position > all[i - 1]!.position)).toBe(true);
    const page = await store.readAll({ fromPosition: all[120]!.position, maxCount: 3 });
    expect(page.map((e) => e.id)).toEqual(all.slice(121, 124).map((e) => e.id));
    await store.close();
  });

  it('delivers every event of an explicit transaction (siblings share a commit position)', async () => {
    const { double, store } = open();
    await store.appendToStream('customer-1', [event('A')]);
    double.appendAsTransaction('customer-2', ['B', 'C', 'D']);
    await store.appendToStream('customer-3', [event('E')]);
    const events = await firstValueFrom(
      store.subscribeToAll().pipe(
        filter((m): m is Extract<SubscriptionMessage, { kind: 'event' }> => m.kind === 'event'),
        take(5),
        toArray(),
      ),
    );
    expect(events.map((m) => m.event.type)).toEqual(['A', 'B', 'C', 'D', 'E']);
    await store.close();
  });
});

describe('eventstoredb adapter: subscriptions', () => {
  it('resubscribes from the last delivered event when the subscription ends without an error', async () => {
    const { double, store } = open();
    await store.appendToStream('customer-1', [event('A'), event('B')]);
    const received: RecordedEvent[] = [];
    let caughtUp = 0;
    const subscription = store.subscribeToAll().subscribe((message) => {
      if (message.kind === 'event') received.push(message.event);
      else caughtUp += 1;
    });
    await until(() => received.length === 2 && caughtUp === 1, 'the backlog');
    double.subscriptions[0]!.endWithoutError();
    await store.appendToStream('customer-1', [event('C')]);
    await until(() => received.length === 3, 'the event after the silent end');
    expect(received.map((e) => e.type)).toEqual(['A', 'B', 'C']);
    const resubscriptions = double.calls.filter((c) => c.method === 'subscribeToAll');
    expect(resubscriptions).toHaveLength(2);
    expect((resubscriptions[1]!.args as { fromPosition: { commit: bigint } }).fromPosition.commit).toBe(received[1]!.position);
    subscription.unsubscribe();
    await store.close();
  });

  it('resubscribes after a transient error, and fails the feed on a permanent one', async () => {
    const { double, store } = open();
    await store.appendToStream('customer-1', [event('A')]);
    const received: string[] = [];
    let failure: unknown;
    store.subscribeToAll().subscribe({ next: (m) => m.kind === 'event' && received.push(m.event.type), error: (e: unknown) => (failure = e) });
    await until(() => received.length === 1, 'the first event');
    double.subscriptions[0]!.emit('error', Object.assign(new Error('consumer too slow'), { type: 'unknown' }));
    await store.appendToStream('customer-1', [event('B')]);
    await until(() => received.length === 2, 'the event after the drop');
    expect(failure).toBeUndefined();
    double.subscriptions.at(-1)!.emit('error', Object.assign(new Error('access denied'), { type: 'access-denied', code: 7 }));
    await until(() => failure !== undefined, 'the feed to fail');
    expect(failure).toBeInstanceOf(EventStoreUnavailable);
    expect(received).toEqual(['A', 'B']);
    await store.close();
  });

  it('reads no further while the consumer asks it to pause, and signals caughtUp only after the buffered events', async () => {
    const { double, store } = open();
    for (let i = 0; i < 10; i++)
      await store.appendToStream(
        `customer-${i}`,
        Array.from({ length: 100 }, () => event('Backlog', {})),
      );
    const queue: SubscriptionMessage[] = [];
    const bound = 50;
    const subscription = store.subscribeToAll({ shouldPause: () => queue.filter((m) => m.kind === 'event').length >= bound }).subscribe((m) => queue.push(m));
    await until(() => queue.length >= bound, 'the first events');
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Paused: the engine holds at the bound; the client buffered at most its high-water mark more.
    expect(queue.length).toBe(bound);
    expect(double.eventsRead).toBeLessThanOrEqual(bound + 16 + 1);
    let delivered = 0;
    let caughtUpAfter = -1;
    while (delivered < 1_000) {
      const next = queue.splice(0, queue.length);
      for (const message of next) {
        if (message.kind === 'event') delivered += 1;
        else caughtUpAfter = delivered;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await until(() => caughtUpAfter >= 0 || queue.some((m) => m.kind === 'caughtUp'), 'caughtUp');
    if (caughtUpAfter < 0) caughtUpAfter = delivered;
    expect(delivered).toBe(1_000);
    expect(caughtUpAfter).toBe(1_000);
    subscription.unsubscribe();
    await store.close();
  });
});

describe('eventstoredb adapter: what the API makes of it', () => {
  it('answers a position the server refuses as a 400 naming the cursor, never a 500', async () => {
    const { toProblem } = await import('../../api/errors.ts');
    const { store } = open();
    const { position } = await store.appendToStream('customer-1', [event(), event()]);
    const problem = toProblem(await caught(store.readAll({ fromPosition: position - 1n })));
    expect(problem.status).toBe(400);
    expect(problem.body()).toMatchObject({ errors: [{ field: 'cursor' }] });
    await store.close();
  });
});
