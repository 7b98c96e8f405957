import { NO_STREAM, type CurrentRevision } from '@eventstore/db-client';
import type { ExpectedRevision } from '../contract.ts';
import { EventStoreError, EventStoreUnavailable, InvalidAppend, InvalidReadOptions, WrongExpectedRevision } from '../errors.ts';
import { loggableUrl } from '../../shared/loggable-url.ts';

/**
 * Every error the server or the client can raise, mapped once to the contract's typed errors, so
 * nothing leaves the engine raw (a raw error reaches the API as a 500).
 *
 * | client error (`type`) / gRPC code            | contract error                          |
 * |----------------------------------------------|-----------------------------------------|
 * | unavailable (14), deadline-exceeded (4), timeout, cancelled | EventStoreUnavailable (retry later) |
 * | not-leader                                   | EventStoreUnavailable (connect to the leader) |
 * | access-denied                                | EventStoreUnavailable (fix the credentials) |
 * | invalid-argument (e.g. "invalid position")   | InvalidReadOptions                      |
 * | maximum-append-size-exceeded (and 24.10's MaximumAppendEventSizeExceeded) | InvalidAppend payload_too_large |
 * | wrong-expected-version                       | WrongExpectedRevision                   |
 * | stream-deleted                               | EventStoreError (streams are never deleted by the CRM) |
 */

const GRPC = { CANCELLED: 1, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, PERMISSION_DENIED: 7, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

interface ClientErrorShape {
  type?: unknown;
  code?: unknown;
  message?: unknown;
  details?: unknown;
  actualVersion?: CurrentRevision;
  leader?: { address?: string; port?: number };
}

const shape = (error: unknown): ClientErrorShape => (error && typeof error === 'object' ? error : {});
const messageOf = (error: unknown): string => String(shape(error).message ?? error);

/** Connection losses and server restarts: a subscription resubscribes, a command answers 503. */
export const isTransientEventStoreDbError = (error: unknown): boolean => {
  const { type, code } = shape(error);
  return (
    type === 'unavailable' ||
    type === 'deadline-exceeded' ||
    type === 'timeout' ||
    type === 'not-leader' ||
    code === GRPC.UNAVAILABLE ||
    code === GRPC.DEADLINE_EXCEEDED ||
    /consumer too slow|unavailable|ECONNRESET|ECONNREFUSED/i.test(messageOf(error))
  );
};

export const isStreamNotFound = (error: unknown): boolean =>
  shape(error).type === 'stream-not-found' || (error as Error | null)?.name === 'StreamNotFoundError';

export const actualRevision = (actual: CurrentRevision | undefined): number => (actual === undefined || actual === NO_STREAM ? -1 : Number(actual));

export function mapEventStoreDbError(error: unknown, url: string, context: { stream?: string; expected?: ExpectedRevision } = {}): unknown {
  if (error instanceof EventStoreError) return error;
  const { type, code, leader } = shape(error);
  const where = `EventStoreDB at ${loggableUrl(url)}`;
  const detail = messageOf(error);
  if (type === 'wrong-expected-version' && context.stream !== undefined) {
    return new WrongExpectedRevision(context.stream, context.expected ?? 'any', actualRevision(shape(error).actualVersion));
  }
  if (type === 'maximum-append-size-exceeded' || /MaximumAppend(Event)?SizeExceeded|maximum append size/i.test(detail)) {
    return new InvalidAppend('payload_too_large', `${where} refused the append as too large: ${detail}`);
  }
  if (type === 'not-leader') {
    const to = leader?.address ? ` (the leader is ${leader.address}:${leader.port ?? ''})` : '';
    return new EventStoreUnavailable(
      `${where} is not the cluster leader${to}; add nodePreference=leader to EVENTSTORE_URL or list every node (gossip seeds).`,
      { cause: error },
    );
  }
  if (type === 'access-denied' || code === GRPC.PERMISSION_DENIED || code === GRPC.UNAUTHENTICATED) {
    return new EventStoreUnavailable(
      `${where} denied access (${detail}); check the user and password in EVENTSTORE_URL (esdb://user:password@host:2113) and the user's stream ACLs.`,
      { cause: error },
    );
  }
  if (type === 'invalid-argument' || code === GRPC.INVALID_ARGUMENT) {
    return new InvalidReadOptions(
      /position/i.test(detail)
        ? `${where} refused a position that is not an event's position in $all (${detail}); positions from another engine or a hand-edited cursor are not valid here.`
        : `${where} refused the request: ${detail}`,
    );
  }
  if (isTransientEventStoreDbError(error) || type === 'cancelled' || code === GRPC.CANCELLED) {
    return new EventStoreUnavailable(`Cannot reach ${where} (${detail}). Check EVENTSTORE_URL (esdb://host:2113?tls=false) and that the server is running.`, {
      cause: error,
    });
  }
  if (type === 'stream-deleted') {
    return new EventStoreError(`${where}: stream ${context.stream ?? ''} was deleted outside the CRM (${detail})`, { cause: error });
  }
  return new EventStoreError(`${where} failed: ${detail}`, { cause: error });
}
