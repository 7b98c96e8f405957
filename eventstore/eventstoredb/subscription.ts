import { START, excludeSystemEvents, eventTypeFilter, streamNameFilter, type AllStreamResolvedEvent, type Filter, type Position } from '@eventstore/db-client';
import { Observable } from 'rxjs';
import type { EventFilter, RecordedEvent, SubscribeOptions, SubscriptionMessage } from '../contract.ts';
import { checkReadAllOptions } from '../validation.ts';
import type { ClientSubscription, EventStoreDbClientPort } from './client.ts';
import { isTransientEventStoreDbError, mapEventStoreDbError } from './errors.ts';
import { matchesFilter, toRecorded } from './events.ts';

export interface FollowAllDeps {
  client: EventStoreDbClientPort;
  url: string;
  /** Before every (re)subscription: the server version check. */
  ready: () => Promise<void>;
  /** First resubscription delay after a drop (ms); doubles up to `maxResubscribeDelay`, with jitter. */
  resubscribeDelay: number;
  maxResubscribeDelay: number;
}

const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The server-side filter narrows the stream; `matchesFilter` re-checks exactly on the client. */
const serverFilter = (filter: EventFilter | undefined): Filter => {
  if (filter?.streamPrefixes?.length) return streamNameFilter({ prefixes: filter.streamPrefixes });
  if (filter?.eventTypes?.length) return eventTypeFilter({ regex: `^(${filter.eventTypes.map(escapeRegex).join('|')})$` });
  return excludeSystemEvents();
};

/** $all order: commit position, then prepare position (events of one explicit transaction share a commit position). */
const after = (a: Position, b: Position): boolean => a.commit > b.commit || (a.commit === b.commit && a.prepare > b.prepare);

/**
 * A catch-up subscription to `$all` that never goes quiet and never outruns its consumer:
 *
 * - it pulls (`read()` on `'readable'`) rather than listening to `'data'`; while the consumer's
 *   `shouldPause()` says so it stops reading, so the client's buffer fills and gRPC flow control
 *   holds the server back instead of memory growing with the backlog;
 * - a stream that ends or closes without an error is treated like a dropped one (server restart,
 *   "consumer too slow"): it resubscribes from the last delivered event with backoff and jitter;
 * - `caughtUp` is passed on only after every event the client buffered before it.
 */
export function followAll(deps: FollowAllDeps, options: SubscribeOptions): Observable<SubscriptionMessage> {
  return new Observable<SubscriptionMessage>((subscriber) => {
    if (options.fromPosition !== undefined) checkReadAllOptions({ fromPosition: options.fromPosition });
    const start = options.fromPosition ?? 0n;
    let delivered: Position = { commit: start, prepare: start };
    let current: ClientSubscription | undefined;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    let pauseTimer: NodeJS.Timeout | undefined;
    let failures = 0;
    let caughtUpPending = false;

    const emit = (resolved: AllStreamResolvedEvent): void => {
      const event: RecordedEvent | undefined = toRecorded(resolved);
      const position = resolved.event?.position;
      if (!event || !position) return;
      // The guard compares whole $all positions, so siblings sharing a commit position are kept.
      if (!after(position, delivered)) return;
      delivered = { commit: position.commit, prepare: position.prepare };
      failures = 0;
      if (matchesFilter(options.filter, event.stream, event.type)) subscriber.next({ kind: 'event', event });
    };

    const drain = (subscription: ClientSubscription): void => {
      clearTimeout(pauseTimer);
      while (!stopped && current === subscription) {
        if (options.shouldPause?.()) {
          pauseTimer = setTimeout(() => drain(subscription), 10);
          return;
        }
        const resolved = subscription.read();
        if (resolved === null) break;
        emit(resolved);
      }
      if (!stopped && current === subscription && caughtUpPending) {
        caughtUpPending = false;
        subscriber.next({ kind: 'caughtUp', position: delivered.commit });
      }
    };

    const dropped = (subscription: ClientSubscription, error: unknown): void => {
      if (stopped || current !== subscription) return;
      current = undefined;
      clearTimeout(pauseTimer);
      void subscription.unsubscribe().catch(() => undefined);
      if (error !== undefined && !isTransientEventStoreDbError(error)) {
        subscriber.error(mapEventStoreDbError(error, deps.url));
        return;
      }
      failures += 1;
      const delay = Math.min(deps.maxResubscribeDelay, deps.resubscribeDelay * 2 ** (failures - 1));
      retry = setTimeout(() => void open(), delay * (0.5 + Math.random() / 2));
    };

    const open = async (): Promise<void> => {
      if (stopped) return;
      try {
        await deps.ready();
      } catch (error) {
        if (isTransientEventStoreDbError((error as { cause?: unknown }).cause ?? error) || (error as Error).name === 'EventStoreUnavailable') {
          failures += 1;
          retry = setTimeout(() => void open(), Math.min(deps.maxResubscribeDelay, deps.resubscribeDelay * 2 ** failures));
          return;
        }
        subscriber.error(error);
        return;
      }
      if (stopped) return;
      // The client's fromPosition is exclusive, like the contract's.
      const subscription = deps.client.subscribeToAll({
        fromPosition: delivered.commit > 0n ? delivered : START,
        filter: serverFilter(options.filter),
      });
      current = subscription;
      caughtUpPending = false;
      subscription.on('readable', () => drain(subscription));
      subscription.on('caughtUp', () => {
        caughtUpPending = true;
        drain(subscription);
      });
      subscription.on('error', (error: Error) => dropped(subscription, error));
      // Without an error the server (or a proxy) closed the call: nothing more would ever arrive.
      subscription.on('end', () => dropped(subscription, undefined));
      subscription.on('close', () => dropped(subscription, undefined));
    };

    const stop = (): void => {
      stopped = true;
      clearTimeout(retry);
      clearTimeout(pauseTimer);
      const subscription = current;
      current = undefined;
      void subscription?.unsubscribe().catch(() => undefined);
    };
    void open();
    return stop;
  });
}
