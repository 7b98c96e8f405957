import { Readable } from 'node:stream';
import type { AllStreamResolvedEvent, AppendResult, EventData, Position, ResolvedEvent } from '@eventstore/db-client';
import type {
  ClientAppendOptions,
  ClientRead,
  ClientReadAllOptions,
  ClientReadStreamOptions,
  ClientSubscribeOptions,
  ClientSubscription,
  EventStoreDbClientPort,
} from '../../eventstore/eventstoredb/client.ts';

/**
 * A RECORDED DOUBLE of `@eventstore/db-client` 6.2.1 talking to an EventStoreDB 24.10 server: an
 * in-memory `$all` that reproduces the behaviours the engine has to cope with, as read in the
 * client's `dist` sources and the server's code. It is not an event store and never stands in for
 * the real-server contract suite (test/eventstore/eventstoredb.test.ts); it lets the engine's own
 * logic be tested where no server can run.
 *
 * Reproduced behaviours:
 * - an append whose event ids equal the events right after the expected revision succeeds with the
 *   original result, without comparing content (the server's idempotency check looks at ids only);
 * - a wrong expected revision throws `{ type: 'wrong-expected-version', actualVersion }`;
 * - reads include their start position, honour `maxCount`, and a position that is not an event's
 *   position throws `{ type: 'invalid-argument', code: 3 }` ("invalid position");
 * - a subscription is an object-mode readable that emits `caughtUp` once its backlog is buffered,
 *   and may end without an error (a server restart or a proxy closing the call).
 */

interface StoredEvent {
  streamId: string;
  id: string;
  type: string;
  revision: bigint;
  data: unknown;
  metadata: unknown;
  position: Position;
  created: Date;
}

export interface ClientCall {
  method: string;
  args: unknown;
}

export class RecordedClientDouble implements EventStoreDbClientPort {
  readonly log: StoredEvent[] = [];
  readonly calls: ClientCall[] = [];
  /** Events handed out by reads and subscriptions (to measure how far a read scanned). */
  eventsRead = 0;
  version = '24.10.0.0';
  /** The next call of that method throws this error once. */
  readonly failNext = new Map<string, unknown>();
  readonly subscriptions: DoubleSubscription[] = [];
  private nextPosition = 1_000n;

  /** Writes events as one explicit (TCP) transaction would: they share one commit position. */
  appendAsTransaction(streamId: string, types: string[]): void {
    const commit = this.nextPosition + BigInt(types.length) * 100n;
    types.forEach((type, index) => {
      this.record(streamId, { id: crypto.randomUUID(), type, data: {}, metadata: {} }, { commit, prepare: this.nextPosition + BigInt(index) * 100n });
    });
    this.nextPosition = commit + 100n;
  }

  private record(streamId: string, event: { id: string; type: string; data: unknown; metadata: unknown }, position: Position): StoredEvent {
    const revision = BigInt(this.log.filter((e) => e.streamId === streamId).length);
    const stored: StoredEvent = { streamId, ...event, revision, position, created: new Date() };
    this.log.push(stored);
    for (const subscription of this.subscriptions) subscription.offer(stored);
    return stored;
  }

  private maybeFail(method: string): void {
    const error = this.failNext.get(method);
    if (error !== undefined) {
      this.failNext.delete(method);
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the double throws exactly what the test scripted, as the gRPC client would
      throw error;
    }
  }

  async serverVersion(): Promise<string> {
    this.calls.push({ method: 'serverVersion', args: undefined });
    this.maybeFail('serverVersion');
    return this.version;
  }

  async appendToStream(streamId: string, events: EventData[], options: ClientAppendOptions): Promise<AppendResult> {
    this.calls.push({ method: 'appendToStream', args: { streamId, options } });
    this.maybeFail('appendToStream');
    const stream = this.log.filter((e) => e.streamId === streamId);
    const current = stream.length - 1;
    const expected = options.expectedRevision;
    if (typeof expected === 'bigint' || expected === 'no_stream') {
      const first = expected === 'no_stream' ? 0 : Number(expected) + 1;
      const following = stream.slice(first, first + events.length);
      // The server's idempotency: ids only.
      if (following.length === events.length && following.every((e, i) => e.id === events[i]!.id)) {
        const last = following[following.length - 1]!;
        return { success: true, nextExpectedRevision: last.revision, position: last.position };
      }
    }
    const ok =
      expected === 'any' ||
      (expected === 'no_stream' && current === -1) ||
      (expected === 'stream_exists' && current >= 0) ||
      (typeof expected === 'bigint' && Number(expected) === current);
    if (!ok) {
      throw Object.assign(new Error('Wrong expected version'), {
        type: 'wrong-expected-version',
        streamName: streamId,
        expectedVersion: expected,
        actualVersion: current === -1 ? 'no_stream' : BigInt(current),
      });
    }
    let last: StoredEvent | undefined;
    for (const event of events) {
      last = this.record(
        streamId,
        { id: event.id, type: event.type, data: event.data, metadata: event.metadata },
        { commit: this.nextPosition, prepare: this.nextPosition },
      );
      this.nextPosition += 100n;
    }
    return { success: true, nextExpectedRevision: last!.revision, position: last!.position };
  }

  private finite<E>(items: E[]): ClientRead<E> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the async generator below has a `this` of its own
    const double = this;
    return {
      async *[Symbol.asyncIterator]() {
        for (const item of items) {
          double.eventsRead += 1;
          yield item;
        }
      },
      cancel: async () => undefined,
    };
  }

  private assertPosition(position: Position): void {
    if (!this.log.some((e) => e.position.commit === position.commit && e.position.prepare === position.prepare)) {
      throw Object.assign(new Error('3 INVALID_ARGUMENT: invalid position'), { type: 'invalid-argument', code: 3 });
    }
  }

  readStream(streamId: string, options: ClientReadStreamOptions): ClientRead<ResolvedEvent> {
    this.calls.push({ method: 'readStream', args: { streamId, options } });
    this.maybeFail('readStream');
    let events = this.log.filter((e) => e.streamId === streamId);
    if (events.length === 0) throw Object.assign(new Error(`${streamId} not found`), { type: 'stream-not-found' });
    if (options.direction === 'backwards') {
      events = [...events].reverse();
      if (typeof options.fromRevision === 'bigint') events = events.filter((e) => e.revision <= (options.fromRevision as bigint));
    } else if (typeof options.fromRevision === 'bigint') {
      events = events.filter((e) => e.revision >= (options.fromRevision as bigint));
    }
    return this.finite(events.slice(0, options.maxCount ?? events.length).map((event) => ({ event: toClientEvent(event) }) as ResolvedEvent));
  }

  readAll(options: ClientReadAllOptions): ClientRead<AllStreamResolvedEvent> {
    this.calls.push({ method: 'readAll', args: options });
    this.maybeFail('readAll');
    const backwards = options.direction === 'backwards';
    let events = backwards ? [...this.log].reverse() : [...this.log];
    const from = options.fromPosition;
    if (typeof from === 'object') {
      this.assertPosition(from);
      const index = events.findIndex((e) => e.position.commit === from.commit && e.position.prepare === from.prepare);
      events = events.slice(index); // inclusive, as the server
    }
    return this.finite(
      events
        .slice(0, options.maxCount ?? events.length)
        .map((event) => ({ event: toClientEvent(event), commitPosition: event.position.commit }) as AllStreamResolvedEvent),
    );
  }

  subscribeToAll(options: ClientSubscribeOptions): ClientSubscription {
    this.calls.push({ method: 'subscribeToAll', args: options });
    const from = options.fromPosition;
    if (typeof from === 'object') this.assertPosition(from);
    const subscription = new DoubleSubscription(this);
    this.subscriptions.push(subscription);
    const index = typeof from === 'object' ? this.log.findIndex((e) => e.position.commit === from.commit && e.position.prepare === from.prepare) + 1 : 0;
    // Like the server: the backlog, then the caught-up signal, then live events.
    setImmediate(() => {
      for (const event of this.log.slice(index)) subscription.offer(event);
      subscription.live = true;
      subscription.emit('caughtUp');
    });
    return subscription;
  }

  async dispose(): Promise<void> {
    this.calls.push({ method: 'dispose', args: undefined });
    for (const subscription of this.subscriptions) subscription.destroy();
  }
}

export class DoubleSubscription extends Readable implements ClientSubscription {
  live = false;
  private readonly buffered: StoredEvent[] = [];

  constructor(private readonly double: RecordedClientDouble) {
    // A small buffer, as gRPC flow control gives the real one.
    super({ objectMode: true, highWaterMark: 16 });
  }

  private ended = false;

  offer(event: StoredEvent): void {
    if (this.destroyed || this.ended) return;
    this.buffered.push(event);
    if (this.wanted) this.flush();
  }

  /** True while the reader wants more (Node calls `_read`); cleared when `push` says the buffer is full. */
  private wanted = false;

  override _read(): void {
    this.wanted = true;
    this.flush();
  }

  private flush(): void {
    while (this.wanted && this.buffered.length > 0) {
      const event = this.buffered.shift()!;
      this.double.eventsRead += 1;
      this.wanted = this.push({ event: toClientEvent(event), commitPosition: event.position.commit });
    }
  }

  /** What a server restart looks like to the client when no error reaches it: the call just ends. */
  endWithoutError(): void {
    this.ended = true;
    this.buffered.length = 0;
    this.push(null);
  }

  async unsubscribe(): Promise<void> {
    this.destroy();
    const all = this.double.subscriptions;
    all.splice(all.indexOf(this), 1);
  }
}

const toClientEvent = (event: StoredEvent) => ({
  streamId: event.streamId,
  id: event.id,
  type: event.type,
  revision: event.revision,
  data: event.data,
  metadata: event.metadata,
  isJson: true,
  created: event.created,
  position: event.position,
});
