import {
  ANY,
  END,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  jsonEvent,
  type AppendExpectedRevision,
  type Credentials,
  type JSONType,
  type Position,
} from '@eventstore/db-client';
import { Observable } from 'rxjs';
import type {
  AppendOptions,
  AppendResult,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  ReadStreamsOptions,
  RecordedEvent,
  SubscribeOptions,
  StreamAppend,
  StreamRead,
  StreamsAppendOptions,
  SubscriptionMessage,
} from '../contract.ts';
import { EventStoreError, IdempotencyConflict, WrongExpectedRevision, WrongExpectedRevisions } from '../errors.ts';
import {
  checkDependsOn,
  checkReadAllOptions,
  checkReadStreamOptions,
  normalizeExpectedRevision,
  prepareAppend,
  prepareStreamAppends,
  type PreparedEvent,
} from '../validation.ts';
import { connectEventStoreDbClient, type ClientRead, type EventStoreDbClientPort } from './client.ts';
import { assertSupportedServer, parseConnectionString } from './connection.ts';
import { actualRevision, isStreamNotFound, mapEventStoreDbError } from './errors.ts';
import { canonicalJson, matchesFilter, toRecorded } from './events.ts';
import { followAll } from './subscription.ts';

/**
 * The EventStoreDB engine (servers 23.10 and later). Positions are the commit positions of `$all`
 * (every event appended through gRPC has its own, and prepare == commit); revisions are the
 * stream's event numbers. Idempotency is the project's own: the server compares event ids only,
 * never content, so every append with a revision is read back and compared (see `appendToStream`).
 */
export interface EventStoreDbOptions {
  /** First resubscription delay after a dropped subscription (ms); it doubles up to `maxResubscribeDelay`. */
  resubscribeDelay?: number;
  maxResubscribeDelay?: number;
  /** A client other than the real one (tests use a recorded double of the client's behaviour). */
  client?: EventStoreDbClientPort;
  /** Events fetched per round trip by `readAll` (which filters on the client side). */
  readPageSize?: number;
  /** Told the connection-string options left out of what the client is given (the client would print the whole string, password included, to say so). */
  onIgnoredOptions?: (options: string[]) => void;
}

const toPosition = (position: bigint): Position => ({ commit: position, prepare: position });

const esdbExpected = (expected: ExpectedRevision): AppendExpectedRevision => {
  if (typeof expected === 'number') return BigInt(expected);
  return expected === 'no_stream' ? NO_STREAM : expected === 'exists' ? STREAM_EXISTS : ANY;
};

const sameContent = (recorded: RecordedEvent, candidate: PreparedEvent): boolean =>
  recorded.id === candidate.id && recorded.type === candidate.type && canonicalJson(recorded.data) === canonicalJson(candidate.data);

async function collect<E, T>(read: ClientRead<E>, take: (item: E) => 'skip' | 'stop' | T): Promise<T[]> {
  const out: T[] = [];
  try {
    for await (const item of read) {
      const result = take(item);
      if (result === 'stop') break;
      if (result !== 'skip') out.push(result);
    }
  } finally {
    await read.cancel().catch(() => undefined);
  }
  return out;
}

export function createEventStoreDbStore(url: string, options: EventStoreDbOptions = {}): EventStore {
  const connection = parseConnectionString(url);
  if (connection.ignoredOptions.length > 0) options.onIgnoredOptions?.(connection.ignoredOptions);
  const appendCredentials: Credentials = connection.appendCredentials;
  const client = options.client ?? connectEventStoreDbClient(connection.clientUrl);
  const pageSize = options.readPageSize ?? 512;
  const activeSubscriptions = new Set<() => void>();
  let closed = false;

  // The version check runs once per store, before the first call; a failed attempt (server down) is retried by the next call.
  let checked: Promise<void> | undefined;
  const ready = (): Promise<void> => {
    checked ??= client
      .serverVersion()
      .then((version) => assertSupportedServer(version, url))
      .catch((error: unknown) => {
        checked = undefined;
        throw mapEventStoreDbError(error, url);
      });
    return checked;
  };

  const assertOpen = (): void => {
    if (closed) throw new EventStoreError('The event store is closed');
  };

  /** Forwards from `fromRevision`, at most `maxCount` events; [] for a stream that does not exist. */
  const readRange = async (stream: string, fromRevision: number, maxCount?: number): Promise<RecordedEvent[]> => {
    try {
      return await collect(
        client.readStream(stream, { direction: 'forwards', fromRevision: BigInt(fromRevision), maxCount }),
        (resolved) => toRecorded(resolved) ?? 'skip',
      );
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw error;
    }
  };

  /**
   * The result of an earlier identical append, when every id is already in the stream with the
   * same content; throws IdempotencyConflict when only some match or the content differs.
   */
  const findEarlierAppend = (stream: string, prepared: PreparedEvent[], existing: RecordedEvent[]): AppendResult | undefined => {
    const byId = new Map(existing.map((event) => [event.id, event]));
    const found = prepared.map((event) => byId.get(event.id));
    if (found.every((event) => event === undefined)) return undefined;
    found.forEach((event, index) => {
      const candidate = prepared[index]!;
      if (!event || !sameContent(event, candidate)) throw new IdempotencyConflict(event?.id ?? candidate.id, stream);
    });
    const last = found.reduce((a, b) => (b!.revision > a!.revision ? b : a))!;
    return { nextExpectedRevision: last.revision, position: last.position };
  };

  /**
   * With a numeric revision or `no_stream`, the server answers a write whose ids equal the events
   * right after that revision as already done, without comparing their content. Reading those
   * revisions back tells a true retry from another request that reused the ids.
   */
  const verifyAppended = async (stream: string, prepared: PreparedEvent[], firstRevision: number): Promise<void> => {
    const stored = await readRange(stream, firstRevision, prepared.length);
    prepared.forEach((candidate, index) => {
      const event = stored[index];
      if (!event || !sameContent(event, candidate)) throw new IdempotencyConflict(candidate.id, stream);
    });
  };

  /** The streams read that moved since (dependsOn): no transaction spans two streams here, so they are read just before the append. */
  const movedSince = async (reads: readonly StreamRead[]): Promise<{ stream: string; expected: ExpectedRevision; actual: number }[]> => {
    const moved = [];
    for (const read of reads) {
      const actual = (await readStream(read.stream, { direction: 'backwards', maxCount: 1 }))[0]?.revision ?? -1;
      if (actual !== (read.revision === 'no_stream' ? -1 : read.revision)) moved.push({ stream: read.stream, expected: read.revision, actual });
    }
    return moved;
  };

  const appendToStream = async (stream: string, events: NewEvent[], appendOptions: AppendOptions = {}): Promise<AppendResult> => {
    const prepared = prepareAppend(stream, events);
    const expected = normalizeExpectedRevision(appendOptions.expectedRevision);
    const dependsOn = checkDependsOn(stream, appendOptions.dependsOn);
    assertOpen();
    try {
      await ready();
      const [moved] = await movedSince(dependsOn);
      if (moved) throw new WrongExpectedRevision(moved.stream, moved.expected, moved.actual);
      // Without a revision to lean on, look for the ids first.
      if (expected === 'any' || expected === 'exists') {
        const earlier = findEarlierAppend(stream, prepared, await readRange(stream, 0));
        if (earlier) return earlier;
      }
      let result;
      try {
        result = await client.appendToStream(
          stream,
          prepared.map((event) => jsonEvent({ id: event.id, type: event.type, data: event.data as JSONType, metadata: event.metadata })),
          { expectedRevision: esdbExpected(expected), credentials: appendCredentials },
        );
      } catch (error) {
        if ((error as { type?: string } | null)?.type !== 'wrong-expected-version') throw error;
        const actual = actualRevision((error as { actualVersion?: bigint | typeof NO_STREAM }).actualVersion);
        // A retry of an append that already happened: the events sit right after the expected revision.
        if (actual >= 0 && expected !== 'exists') {
          const from = typeof expected === 'number' ? expected + 1 : 0;
          const earlier = findEarlierAppend(stream, prepared, await readRange(stream, from, prepared.length));
          if (earlier) return earlier;
        }
        throw new WrongExpectedRevision(stream, expected, actual);
      }
      // `throwOnAppendFailure=false` is refused at start; this guards the contract anyway.
      if (!result.success) throw new WrongExpectedRevision(stream, expected, actualRevision(result.nextExpectedRevision));
      if (typeof expected === 'number' || expected === 'no_stream') {
        await verifyAppended(stream, prepared, expected === 'no_stream' ? 0 : expected + 1);
      }
      return { nextExpectedRevision: Number(result.nextExpectedRevision), position: result.position?.commit ?? 0n };
    } catch (error) {
      throw mapEventStoreDbError(error, url, { stream, expected });
    }
  };

  const readStream = async (stream: string, readOptions: ReadStreamOptions = {}): Promise<RecordedEvent[]> => {
    checkReadStreamOptions(readOptions);
    assertOpen();
    const backwards = readOptions.direction === 'backwards';
    const limit = readOptions.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (limit === 0) return [];
    // The server can stop at maxCount only when no bound makes the engine skip events.
    const serverCount =
      readOptions.untilTime !== undefined || (backwards && readOptions.untilRevision !== undefined)
        ? undefined
        : !backwards && readOptions.untilRevision !== undefined
          ? Math.min(limit, readOptions.untilRevision - (readOptions.fromRevision ?? 0) + 1)
          : readOptions.maxCount;
    if (serverCount !== undefined && serverCount <= 0) return [];
    try {
      await ready();
      const read = client.readStream(stream, {
        direction: backwards ? 'backwards' : 'forwards',
        fromRevision: readOptions.fromRevision !== undefined ? BigInt(readOptions.fromRevision) : backwards ? END : START,
        maxCount: serverCount,
      });
      let taken = 0;
      return await collect(read, (resolved) => {
        const event = toRecorded(resolved);
        if (!event) return 'skip';
        const beyondRevision = readOptions.untilRevision !== undefined && event.revision > readOptions.untilRevision;
        const beyondTime = readOptions.untilTime !== undefined && event.recordedAt > readOptions.untilTime;
        // Forwards, the bounds end the read; backwards, they only skip the newest events.
        if (beyondRevision || beyondTime) return backwards ? 'skip' : 'stop';
        if (taken >= limit) return 'stop';
        taken += 1;
        return event;
      });
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw mapEventStoreDbError(error, url, { stream });
    }
  };

  /**
   * Pages through `$all` (the client cannot filter a read on the server), so a selective page stops
   * as soon as it is full instead of scanning to the end. Server reads include their start
   * position; each page after the first starts at the previous page's last event and skips it.
   */
  const readAll = async (readOptions: ReadAllOptions = {}): Promise<RecordedEvent[]> => {
    checkReadAllOptions(readOptions);
    assertOpen();
    const backwards = readOptions.direction === 'backwards';
    const limit = readOptions.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (limit === 0) return [];
    const from = readOptions.fromPosition;
    const events: RecordedEvent[] = [];
    try {
      await ready();
      let cursor: Position | 'start' | 'end' = from !== undefined && from > 0n ? toPosition(from) : backwards ? END : START;
      let boundary: Position | undefined;
      for (;;) {
        let seen = 0;
        let last: Position | undefined;
        const read = client.readAll({ direction: backwards ? 'backwards' : 'forwards', fromPosition: cursor, maxCount: pageSize });
        await collect(read, (resolved) => {
          seen += 1;
          const position = resolved.event?.position;
          if (position) last = position;
          if (boundary && position && position.commit === boundary.commit && position.prepare === boundary.prepare) return 'skip';
          const event = toRecorded(resolved);
          if (!event || !matchesFilter(readOptions.filter, event.stream, event.type)) return 'skip';
          // The contract's fromPosition is exclusive.
          if (from !== undefined && (backwards ? event.position >= from : event.position <= from)) return 'skip';
          if (events.length >= limit) return 'stop';
          events.push(event);
          return 'skip';
        });
        if (events.length >= limit || seen < pageSize || !last) return events;
        cursor = last;
        boundary = last;
      }
    } catch (error) {
      throw mapEventStoreDbError(error, url);
    }
  };

  /** The last non-system event: one short backwards page almost always finds it. */
  const headPosition = async (): Promise<bigint> => {
    const [last] = await readAll({ direction: 'backwards', maxCount: 1 });
    return last?.position ?? 0n;
  };

  const subscribeToAll = (subscribeOptions: SubscribeOptions = {}): Observable<SubscriptionMessage> => {
    const feed = followAll(
      { client, url, ready, resubscribeDelay: options.resubscribeDelay ?? 500, maxResubscribeDelay: options.maxResubscribeDelay ?? 10_000 },
      subscribeOptions,
    );
    return new Observable<SubscriptionMessage>((subscriber) => {
      const inner = feed.subscribe(subscriber);
      const closeWithStore = (): void => {
        inner.unsubscribe();
        subscriber.complete();
      };
      activeSubscriptions.add(closeWithStore);
      return () => {
        activeSubscriptions.delete(closeWithStore);
        inner.unsubscribe();
      };
    });
  };

  /**
   * Stream by stream, in order: each stream's append is atomic, the batch is not. A conflict on a
   * later stream leaves the earlier ones appended; appending the same batch again skips them (same
   * event ids), so a caller that retries after re-deciding the conflicting streams ends complete.
   */
  const appendToStreams = async (appends: StreamAppend[], options: StreamsAppendOptions = {}): Promise<AppendResult[]> => {
    const parts = prepareStreamAppends(appends);
    const reads = checkDependsOn(
      parts.map((p) => p.stream),
      options.dependsOn,
    );
    const moved = await movedSince(reads);
    if (moved.length > 0) throw new WrongExpectedRevisions(moved);
    const results: AppendResult[] = [];
    for (const part of parts) {
      try {
        results.push(await appendToStream(part.stream, appends[results.length]!.events, { expectedRevision: part.expected }));
      } catch (error) {
        if (error instanceof WrongExpectedRevision)
          throw new WrongExpectedRevisions([{ stream: error.stream, expected: error.expected, actual: error.actual }]);
        throw error;
      }
    }
    return results;
  };

  const readStreams = async (streams: string[], options: ReadStreamsOptions = {}): Promise<Map<string, RecordedEvent[]>> => {
    const found = new Map<string, RecordedEvent[]>();
    for (const stream of streams) {
      const after = options.after?.get(stream);
      found.set(
        stream,
        await readStream(stream, {
          ...(after === undefined ? {} : { fromRevision: after + 1 }),
          ...(options.maxCount === undefined ? {} : { maxCount: options.maxCount }),
        }),
      );
    }
    return found;
  };

  return {
    engine: 'eventstoredb',
    appendToStream,
    appendToStreams,
    readStream,
    readStreams,
    readAll,
    subscribeToAll,
    headPosition,
    async close() {
      if (closed) return;
      closed = true;
      for (const closeSubscription of [...activeSubscriptions]) closeSubscription();
      activeSubscriptions.clear();
      await client.dispose();
    },
  };
}
