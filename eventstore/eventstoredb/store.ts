import {
  ANY,
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  WrongExpectedVersionError,
  eventTypeFilter,
  excludeSystemEvents,
  jsonEvent,
  streamNameFilter,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type AppendExpectedRevision,
  type Filter,
  type JSONType,
  type Position,
  type ResolvedEvent,
} from '@eventstore/db-client';
import { Observable } from 'rxjs';
import type {
  AppendOptions,
  AppendResult,
  EventFilter,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  StreamAppend,
  SubscribeOptions,
  SubscriptionMessage,
} from '../contract.ts';
import { EventStoreError, EventStoreUnavailable, IdempotencyConflict, InvalidAppend, WrongExpectedRevision, WrongExpectedRevisions } from '../errors.ts';
import {
  checkReadAllOptions,
  checkReadStreamOptions,
  normalizeExpectedRevision,
  prepareAppend,
  prepareStreamAppends,
  type PreparedEvent,
} from '../validation.ts';

/**
 * The EventStoreDB engine. Positions are the commit positions of `$all` (with ESDB 20+ every event
 * has its own, and prepare == commit); revisions are the stream's event numbers.
 * Idempotency is the project's own, per stream: ESDB's event-id cache is bounded, and it cannot
 * tell that an id was used in another stream.
 */
export interface EventStoreDbOptions {
  /** Resubscription delay after a dropped subscription (ms). */
  resubscribeDelay?: number;
}

const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

const toPosition = (position: bigint): Position => ({ commit: position, prepare: position });

const isSystem = (stream: string, type: string): boolean => stream.startsWith('$') || type.startsWith('$');

const matches = (filter: EventFilter | undefined, stream: string, type: string): boolean =>
  (!filter?.streamPrefixes?.length || filter.streamPrefixes.some((prefix) => stream.startsWith(prefix))) &&
  (!filter?.eventTypes?.length || filter.eventTypes.includes(type));

const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The server-side filter narrows the stream; `matches` re-checks exactly on the client. */
const serverFilter = (filter: EventFilter | undefined): Filter => {
  if (filter?.streamPrefixes?.length) return streamNameFilter({ prefixes: filter.streamPrefixes });
  if (filter?.eventTypes?.length) return eventTypeFilter({ regex: `^(${filter.eventTypes.map(escapeRegex).join('|')})$` });
  return excludeSystemEvents();
};

const decode = (value: unknown): unknown => {
  if (value instanceof Uint8Array) {
    const text = Buffer.from(value).toString('utf8');
    if (text.length === 0) return {};
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return value;
};

const toRecorded = (resolved: ResolvedEvent | AllStreamResolvedEvent): RecordedEvent | undefined => {
  const event = resolved.event;
  if (!event || isSystem(event.streamId, event.type)) return undefined;
  const metadata = decode(event.metadata);
  return {
    id: event.id,
    type: event.type,
    data: decode(event.data),
    metadata: metadata && typeof metadata === 'object' && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : {},
    stream: event.streamId,
    revision: Number(event.revision),
    position: event.position?.commit ?? resolved.commitPosition ?? 0n,
    recordedAt: event.created,
  };
};

const grpcCode = (error: unknown): number | undefined => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
};

const isStreamNotFound = (error: unknown): boolean =>
  (error as { type?: string } | null)?.type === 'stream-not-found' || (error as Error | null)?.name === 'StreamNotFoundError';

const isTransient = (error: unknown): boolean => {
  const code = grpcCode(error);
  return code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED || /consumer too slow|unavailable/i.test(String((error as Error)?.message));
};

const mapError = (error: unknown, url: string): unknown => {
  if (error instanceof EventStoreError) return error;
  if (grpcCode(error) === GRPC_UNAVAILABLE || (error as { type?: string } | null)?.type === 'unavailable') {
    return new EventStoreUnavailable(
      `Cannot reach EventStoreDB at ${url.replace(/\/\/[^@/]*@/, '//')} (${(error as Error).message}). ` +
        'Check EVENTSTORE_URL (esdb://host:2113?tls=false) and that the server is running.',
      { cause: error },
    );
  }
  if ((error as { type?: string } | null)?.type === 'maximum-append-size-exceeded') {
    return new InvalidAppend('payload_too_large', `EventStoreDB refused the append as too large: ${(error as Error).message}`);
  }
  return error;
};

const esdbExpected = (expected: ExpectedRevision): AppendExpectedRevision => {
  if (typeof expected === 'number') return BigInt(expected);
  return expected === 'no_stream' ? NO_STREAM : expected === 'exists' ? STREAM_EXISTS : ANY;
};

/** Stable JSON (sorted keys) so that content comparison ignores key order. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );

export function createEventStoreDbStore(url: string, options: EventStoreDbOptions = {}): EventStore {
  const client = EventStoreDBClient.connectionString(url);
  const resubscribeDelay = options.resubscribeDelay ?? 500;
  const activeSubscriptions = new Set<() => void>();
  let closed = false;

  const assertOpen = (): void => {
    if (closed) throw new EventStoreError('The event store is closed');
  };

  const readWholeStream = async (stream: string, fromRevision?: number): Promise<RecordedEvent[]> => {
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of client.readStream(stream, { fromRevision: fromRevision === undefined ? START : BigInt(fromRevision) })) {
        const event = toRecorded(resolved);
        if (event) events.push(event);
      }
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw error;
    }
    return events;
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
      if (!event || event.type !== candidate.type || canonical(event.data) !== canonical(candidate.data)) {
        throw new IdempotencyConflict(event?.id ?? candidate.id, stream);
      }
    });
    const last = found.reduce((a, b) => (b!.revision > a!.revision ? b : a))!;
    return { nextExpectedRevision: last.revision, position: last.position };
  };

  const appendToStream = async (stream: string, events: NewEvent[], appendOptions: AppendOptions = {}): Promise<AppendResult> => {
    const prepared = prepareAppend(stream, events);
    const expected = normalizeExpectedRevision(appendOptions.expectedRevision);
    assertOpen();
    try {
      // Without a revision to lean on, look for the ids first.
      if (expected === 'any' || expected === 'exists') {
        const earlier = findEarlierAppend(stream, prepared, await readWholeStream(stream));
        if (earlier) return earlier;
      }
      try {
        const result = await client.appendToStream(
          stream,
          prepared.map((event) =>
            jsonEvent({ id: event.id, type: event.type, data: event.data as JSONType, metadata: event.metadata }),
          ),
          { expectedRevision: esdbExpected(expected) },
        );
        return { nextExpectedRevision: Number(result.nextExpectedRevision), position: result.position?.commit ?? 0n };
      } catch (error) {
        if (!(error instanceof WrongExpectedVersionError)) throw error;
        const actual = error.actualVersion === NO_STREAM ? -1 : Number(error.actualVersion);
        // A retry of an append that already happened: the events sit right after the expected revision.
        if (actual >= 0 && expected !== 'exists') {
          const from = typeof expected === 'number' ? expected + 1 : 0;
          const earlier = findEarlierAppend(stream, prepared, await readWholeStream(stream, from));
          if (earlier) return earlier;
        }
        throw new WrongExpectedRevision(stream, expected, actual);
      }
    } catch (error) {
      throw mapError(error, url);
    }
  };

  const readStream = async (stream: string, readOptions: ReadStreamOptions = {}): Promise<RecordedEvent[]> => {
    checkReadStreamOptions(readOptions);
    assertOpen();
    const backwards = readOptions.direction === 'backwards';
    const limit = readOptions.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (limit === 0) return [];
    const events: RecordedEvent[] = [];
    const read = client.readStream(stream, {
      direction: backwards ? BACKWARDS : FORWARDS,
      fromRevision: readOptions.fromRevision !== undefined ? BigInt(readOptions.fromRevision) : backwards ? END : START,
    });
    try {
      for await (const resolved of read) {
        const event = toRecorded(resolved);
        if (!event) continue;
        const beyondRevision = readOptions.untilRevision !== undefined && event.revision > readOptions.untilRevision;
        const beyondTime = readOptions.untilTime !== undefined && event.recordedAt > readOptions.untilTime;
        // Forwards, the bounds end the read; backwards, they only skip the newest events.
        if (beyondRevision || beyondTime) {
          if (backwards) continue;
          break;
        }
        events.push(event);
        if (events.length >= limit) break;
      }
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw mapError(error, url);
    } finally {
      await read.cancel().catch(() => undefined);
    }
    return events;
  };

  const readAll = async (readOptions: ReadAllOptions = {}): Promise<RecordedEvent[]> => {
    checkReadAllOptions(readOptions);
    assertOpen();
    const backwards = readOptions.direction === 'backwards';
    const limit = readOptions.maxCount ?? Number.MAX_SAFE_INTEGER;
    if (limit === 0) return [];
    const from = readOptions.fromPosition;
    const read = client.readAll({
      direction: backwards ? BACKWARDS : FORWARDS,
      fromPosition: from !== undefined && from > 0n ? toPosition(from) : backwards ? END : START,
    });
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of read) {
        const event = toRecorded(resolved);
        if (!event || !matches(readOptions.filter, event.stream, event.type)) continue;
        // ESDB reads include the start position; the contract's is exclusive.
        if (from !== undefined && (backwards ? event.position >= from : event.position <= from)) continue;
        events.push(event);
        if (events.length >= limit) break;
      }
    } catch (error) {
      throw mapError(error, url);
    } finally {
      await read.cancel().catch(() => undefined);
    }
    return events;
  };

  const headPosition = async (): Promise<bigint> => {
    const [last] = await readAll({ direction: 'backwards', maxCount: 1 });
    return last?.position ?? 0n;
  };

  const subscribeToAll = (subscribeOptions: SubscribeOptions = {}): Observable<SubscriptionMessage> =>
    new Observable<SubscriptionMessage>((subscriber) => {
      if (subscribeOptions.fromPosition !== undefined) checkReadAllOptions({ fromPosition: subscribeOptions.fromPosition });
      let delivered = subscribeOptions.fromPosition ?? 0n;
      let current: AllStreamSubscription | undefined;
      let stopped = false;
      let retry: NodeJS.Timeout | undefined;

      const open = (): void => {
        if (stopped) return;
        // subscribeToAll's fromPosition is exclusive, like the contract's.
        const subscription = client.subscribeToAll({
          fromPosition: delivered > 0n ? toPosition(delivered) : START,
          filter: serverFilter(subscribeOptions.filter),
        });
        current = subscription;
        subscription.on('data', (resolved: AllStreamResolvedEvent) => {
          const event = toRecorded(resolved);
          if (!event || event.position <= delivered || !matches(subscribeOptions.filter, event.stream, event.type)) return;
          delivered = event.position;
          subscriber.next({ kind: 'event', event });
        });
        // Deferred: events the stream already buffered are emitted first, so caughtUp follows them.
        subscription.on('caughtUp', () => setImmediate(() => !stopped && subscriber.next({ kind: 'caughtUp', position: delivered })));
        subscription.on('error', (error: Error) => {
          if (stopped || current !== subscription) return;
          current = undefined;
          void subscription.unsubscribe().catch(() => undefined);
          // A dropped subscription (server restart, "consumer too slow") resumes from the last delivered event.
          if (isTransient(error)) {
            retry = setTimeout(open, resubscribeDelay);
            return;
          }
          subscriber.error(mapError(error, url));
        });
      };

      const stop = (): void => {
        stopped = true;
        clearTimeout(retry);
        const subscription = current;
        current = undefined;
        void subscription?.unsubscribe().catch(() => undefined);
      };
      const closeWithStore = (): void => {
        stop();
        subscriber.complete();
      };
      activeSubscriptions.add(closeWithStore);
      open();
      return () => {
        activeSubscriptions.delete(closeWithStore);
        stop();
      };
    });

  /**
   * Stream by stream, in order: each stream's append is atomic, the batch is not. A conflict on a
   * later stream leaves the earlier ones appended; appending the same batch again skips them (same
   * event ids), so a caller that retries after re-deciding the conflicting streams ends complete.
   */
  const appendToStreams = async (appends: StreamAppend[]): Promise<AppendResult[]> => {
    const parts = prepareStreamAppends(appends);
    const results: AppendResult[] = [];
    for (const part of parts) {
      try {
        results.push(await appendToStream(part.stream, appends[results.length]!.events, { expectedRevision: part.expected }));
      } catch (error) {
        if (error instanceof WrongExpectedRevision) throw new WrongExpectedRevisions([{ stream: error.stream, expected: error.expected, actual: error.actual }]);
        throw error;
      }
    }
    return results;
  };

  const readStreams = async (streams: string[]): Promise<Map<string, RecordedEvent[]>> => {
    const found = new Map<string, RecordedEvent[]>();
    for (const stream of streams) found.set(stream, await readStream(stream));
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
