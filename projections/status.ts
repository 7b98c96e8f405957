import type { Kysely } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import { readCheckpoints, type ProjectionState } from './checkpoints.ts';
import { ReadModelTimeout } from './errors.ts';
import { readLeaseHolders } from './leases.ts';

/** Lag beyond this many events is reported as this many (counting further would cost more than it tells). */
export const LAG_COUNT_CAP = 10_000;
const LAG_READ_TIMEOUT_MS = 500;

/** What /ready and /metrics show per projection. */
export interface ProjectionStatus {
  name: string;
  version: number;
  state: ProjectionState;
  position: bigint;
  headPosition: bigint;
  /** Events recorded after the checkpoint, counted up to `LAG_COUNT_CAP` (positions are not dense, so they are counted). */
  eventsBehind: number;
  /** Age of the oldest event not yet applied (0 when caught up). */
  secondsBehind: number;
  lastError: string | null;
  failedEventId: string | null;
  failedPosition: bigint | null;
  updatedAt: Date;
  /** Worker holding the projection's lease (projections/leases.ts); null when none holds a live one. */
  owner: string | null;
  /** When that lease runs out unless renewed. */
  leaseExpiresAt: Date | null;
}

/**
 * How far a follower of the feed at `position` is behind `head`: events counted up to LAG_COUNT_CAP,
 * and the age of the oldest one not yet taken. A read can wait behind a long transaction elsewhere on
 * the cluster: /ready and /metrics must answer anyway, so past a short bound the lag is estimated from
 * `since` (when the follower last moved).
 */
export async function lagBehind(store: EventStore, position: bigint, head: bigint, since: Date): Promise<{ eventsBehind: number; secondsBehind: number }> {
  if (head <= position) return { eventsBehind: 0, secondsBehind: 0 };
  const pending = await Promise.race([
    store.readAll({ fromPosition: position, maxCount: LAG_COUNT_CAP }),
    new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), LAG_READ_TIMEOUT_MS).unref?.()),
  ]).catch(() => undefined);
  const oldest = pending?.[0];
  return {
    eventsBehind: pending ? pending.length : 1,
    secondsBehind: Math.max(0, (Date.now() - (oldest ? oldest.recordedAt : since).getTime()) / 1000),
  };
}

/**
 * Reads status from the checkpoint table, so it works whether the projections run in this process
 * or in a separate `crm project` worker.
 */
export async function readProjectionStatus(
  db: Kysely<any>,
  schema: string,
  store: EventStore,
  names?: readonly string[],
): Promise<ProjectionStatus[]> {
  const [checkpoints, head, holders] = await Promise.all([readCheckpoints(db, schema), store.headPosition(), readLeaseHolders(db, schema)]);
  const result: ProjectionStatus[] = [];
  for (const cp of checkpoints.values()) {
    if (names && !names.includes(cp.name)) continue;
    const { eventsBehind, secondsBehind } = await lagBehind(store, cp.position, head, cp.updatedAt);
    result.push({
      name: cp.name,
      version: cp.version,
      state: cp.state,
      position: cp.position,
      headPosition: head,
      eventsBehind,
      secondsBehind,
      lastError: cp.lastError,
      failedEventId: cp.failedEventId,
      failedPosition: cp.failedPosition,
      updatedAt: cp.updatedAt,
      owner: holders.get(cp.name)?.owner ?? null,
      leaseExpiresAt: holders.get(cp.name)?.expiresAt ?? null,
    });
  }
  return result;
}

/**
 * Read-your-writes when the projections run in another process: polls the checkpoint table until
 * every running projection (or those named) has passed `position`.
 */
export async function waitForCheckpoints(
  db: Kysely<any>,
  schema: string,
  position: bigint,
  options: { timeoutMs?: number; names?: readonly string[]; pollMs?: number } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const checkpoints = await readCheckpoints(db, schema);
    const behind = [...checkpoints.values()]
      .filter((cp) => (!options.names || options.names.includes(cp.name)) && cp.state !== 'failed' && cp.state !== 'stopped')
      .filter((cp) => cp.position < position)
      .map((cp) => ({ name: cp.name, position: cp.position }));
    if (behind.length === 0) return;
    if (Date.now() >= deadline) throw new ReadModelTimeout(position, timeoutMs, behind);
    await new Promise((r) => setTimeout(r, Math.min(options.pollMs ?? 10, Math.max(1, deadline - Date.now()))));
  }
}
