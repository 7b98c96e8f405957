import type { QueryExecutorProvider } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import { checkpointsOffTheStore, offTheStoreBecause, readCheckpoints, type Checkpoint, type ProjectionState } from './checkpoints.ts';
import { databaseNow, isMissingTable } from '../shared/sql.ts';
import { ReadModelStopped, ReadModelTimeout } from './errors.ts';
import { readLeaseHolders } from './leases.ts';

/** The one-row read of the oldest unapplied event (for its age) gives up after this long. */
const LAG_READ_TIMEOUT_MS = 300;
/** A checkpoint unmoved this long while behind has its stored count of events behind checked by a count. */
const STALE_COUNT_MS = 5_000;
/** Publishers (integration/publishers.ts) count their backlog up to this many events. */
const LAG_COUNT_CAP = 10_000;

/** What /ready and /metrics show per projection. */
export interface ProjectionStatus {
  name: string;
  version: number;
  /** The variant the read model was built for (null: built before variants were recorded). */
  variant: string | null;
  /** `superseded`: another version of the CRM built the read model this process would write (`supersedes`). */
  state: ProjectionState | 'superseded';
  position: bigint;
  headPosition: bigint;
  /**
   * 0 when the checkpoint is at the head; otherwise at least 1: the events the feed still held
   * behind the projection's last batch (positions are not dense, so the head alone cannot count them,
   * and counting rows on every probe would cost O(lag)).
   */
  eventsBehind: number;
  /** Age of the oldest event not yet applied (0 when caught up), on the database's clock. */
  secondsBehind: number;
  lastError: string | null;
  failedEventId: string | null;
  failedPosition: bigint | null;
  failedStream: string | null;
  updatedAt: Date;
  /** Seconds since then, on the database's clock. */
  secondsSinceUpdate: number;
  /** Worker holding the projection's lease (projections/leases.ts); null when none holds a live one. */
  owner: string | null;
  /** When that lease runs out unless renewed. */
  leaseExpiresAt: Date | null;
  /**
   * Why its checkpoint names an event the store does not hold (`checkpointsOffTheStore`: restored from
   * an older backup beside newer read models), whatever its state; null when it does, or when that could
   * not be read in time.
   */
  offTheStore: string | null;
}

/**
 * A read for lag figures, given up past LAG_READ_TIMEOUT_MS or on failure (undefined): it can wait behind
 * a long transaction elsewhere on the cluster, and /ready and /metrics must answer anyway.
 */
const boundedRead = <T>(read: Promise<T>, withinMs = LAG_READ_TIMEOUT_MS): Promise<T | undefined> =>
  Promise.race([read, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), withinMs).unref?.())]).catch(() => undefined);

/** Seconds from `then` to `now`, none when `then` is later (an event recorded after the clock was read). */
const secondsBetween = (then: Date, now: Date): number => Math.max(0, (now.getTime() - then.getTime()) / 1000);

/** `read` once per distinct position: checkpoints at one position share their reads. */
const oncePerPosition = <T>(read: (position: bigint) => Promise<T>): ((position: bigint) => Promise<T>) => {
  const done = new Map<bigint, Promise<T>>();
  return (position) => {
    let found = done.get(position);
    if (!found) done.set(position, (found = read(position)));
    return found;
  };
};

/**
 * Final events after `position` up to `head`, counted up to LAG_COUNT_CAP: over the position index
 * where the store counts (PostgreSQL, PGlite), else read. Before 2026-12-07 every engine read the events
 * themselves, twice per follower: with a dozen webhook subscriptions thousands of events behind, each
 * scrape of /metrics or /ready read tens of thousands of rows, held the pool, and commands got 503.
 */
const countAfter = (store: EventStore, position: bigint, head: bigint): Promise<number> =>
  store.countEvents
    ? store.countEvents({ fromPosition: position, untilPosition: head, atMost: LAG_COUNT_CAP })
    : store.readAll({ fromPosition: position, maxCount: LAG_COUNT_CAP, settleMs: 0 }).then((events) => events.length);

/**
 * How far followers of the feed (publishers: integration/publishers.ts) are behind `head`: events
 * counted (countAfter), and the age of the oldest one not yet taken. The reads are shared by followers
 * at one position and run one at a time within one time budget (LAG_READ_TIMEOUT_MS) for all of them:
 * a read can wait behind a long transaction elsewhere on the cluster, /ready and /metrics must answer
 * anyway, and twenty subscriptions at twenty positions, read side by side, took the pool from commands
 * (503 at a scrape a second). A figure not read within the budget is unknown: the count null, and the age
 * taken from `lastMoved`, when the follower last moved forward: it grows while the follower stands still,
 * whatever its failed attempts do (the oldest event waiting may be older still, as when a backlog is
 * worked through page by page). Ages are taken at `now`, the database's clock (databaseNow), like the
 * times they are taken from.
 * Both read what is final now (`settleMs: 0`): a short page would otherwise wait for events committed
 * behind an open transaction, which on a busy database is almost always, past the bound.
 */
export function lagReader(store: EventStore, head: bigint, now: Date) {
  const deadline = performance.now() + LAG_READ_TIMEOUT_MS;
  let queue: Promise<unknown> = Promise.resolve();
  /** One read at a time, none begun past the deadline, each given up at it (undefined). */
  const inTurn = <T>(read: () => Promise<T>): Promise<T | undefined> => {
    const turn = queue.then(() => {
      const left = deadline - performance.now();
      return left > 0 ? boundedRead(read(), left) : undefined;
    });
    queue = turn.catch(() => undefined);
    return turn;
  };
  // null: nothing final after the position; undefined: not read in time.
  const oldestAfter = oncePerPosition((position) =>
    inTurn(() => store.readAll({ fromPosition: position, maxCount: 1, settleMs: 0 }).then((events) => events[0]?.recordedAt ?? null)),
  );
  const countedAfter = oncePerPosition((position) => inTurn(() => countAfter(store, position, head)));
  return async (position: bigint, lastMoved: Date): Promise<{ eventsBehind: number | null; secondsBehind: number }> => {
    if (head <= position) return { eventsBehind: 0, secondsBehind: 0 };
    const [oldest, count] = await Promise.all([oldestAfter(position), countedAfter(position)]);
    if (oldest === null) return { eventsBehind: 0, secondsBehind: 0 };
    return {
      eventsBehind: count ?? null,
      secondsBehind: secondsBetween(oldest ?? lastMoved, now),
    };
  };
}

/**
 * Reads status from the checkpoint table, so it works whether the projections run in this process
 * or in a separate `crm project` worker. O(1) in the lag: the head position against each checkpoint,
 * and one indexed row (the oldest unapplied event) per distinct checkpoint for the age, taken on the
 * database's clock (databaseNow).
 */
export async function readProjectionStatus(
  db: QueryExecutorProvider,
  schema: string,
  store: EventStore,
  names?: readonly string[],
): Promise<ProjectionStatus[]> {
  const [checkpoints, head, holders, now] = await Promise.all([
    checkpointsIfAny(db, schema),
    store.headPosition(),
    readLeaseHolders(db, schema),
    databaseNow(db),
  ]);
  const selected = [...checkpoints.values()].filter((cp) => !names || names.includes(cp.name));
  // Looked up after the checkpoints were read (a checkpoint's event is final by then), bounded like the lag reads.
  const off = new Map(
    (
      (await boundedRead(
        checkpointsOffTheStore(
          db,
          schema,
          store,
          selected.map((cp) => cp.name),
          checkpoints,
        ),
      )) ?? []
    ).map((o) => [o.projection, offTheStoreBecause(o)]),
  );
  // Past the bound the age is taken from the checkpoint's last move instead.
  const oldestAfter = oncePerPosition((position) =>
    boundedRead(store.readAll({ fromPosition: position, maxCount: 1 }).then((events) => events[0]?.recordedAt)),
  );
  /**
   * A checkpoint's count of events behind is stored with each batch: with no worker taking batches it
   * stood still (1 while a thousand waited). Past STALE_COUNT_MS the events are counted (bounded by
   * time, once per distinct checkpoint; only then, so that /ready stays O(1) while projections run).
   */
  const countedAfter = oncePerPosition((position) =>
    store.countEvents ? boundedRead(store.countEvents({ fromPosition: position, untilPosition: head })) : Promise.resolve(undefined),
  );
  return Promise.all(
    selected.map(async (cp): Promise<ProjectionStatus> => {
      const behind = head > cp.position;
      const since = behind ? ((await oldestAfter(cp.position)) ?? cp.updatedAt) : undefined;
      const secondsSinceUpdate = secondsBetween(cp.updatedAt, now);
      const stale = behind && secondsSinceUpdate * 1000 > STALE_COUNT_MS;
      const eventsBehind = behind ? Math.max(1, cp.eventsBehind, (stale ? await countedAfter(cp.position) : undefined) ?? 0) : 0;
      return {
        name: cp.name,
        version: cp.version,
        variant: cp.variant,
        state: cp.state,
        position: cp.position,
        headPosition: head,
        eventsBehind,
        secondsBehind: since ? secondsBetween(since, now) : 0,
        lastError: cp.lastError,
        failedEventId: cp.failedEventId,
        failedPosition: cp.failedPosition,
        failedStream: cp.failedStream,
        updatedAt: cp.updatedAt,
        secondsSinceUpdate,
        owner: holders.get(cp.name)?.owner ?? null,
        leaseExpiresAt: holders.get(cp.name)?.expiresAt ?? null,
        offTheStore: off.get(cp.name) ?? null,
      };
    }),
  );
}

/** The checkpoints; none before any projection worker created their table (an API replica started first). */
const checkpointsIfAny = (db: QueryExecutorProvider, schema: string): Promise<Map<string, Checkpoint>> =>
  readCheckpoints(db, schema).catch((error: unknown) => {
    if (isMissingTable(error)) return new Map<string, Checkpoint>();
    throw error;
  });

/**
 * Read-your-writes when the projections run in another process: polls the checkpoint table until
 * every running projection (or those named) has passed `position`. A named projection without a
 * checkpoint has applied nothing yet (no worker has run it): it is behind, never "caught up" (an API
 * replica started before any worker answered `?waitFor=` at once, from empty read models).
 */
export async function waitForCheckpoints(
  db: QueryExecutorProvider,
  schema: string,
  position: bigint,
  options: {
    timeoutMs?: number;
    names?: readonly string[];
    pollMs?: number;
    /** End at once with ReadModelStopped when a failed or stopped projection is short of the position (read-your-writes); else such a projection is not waited for. */
    refuseStopped?: boolean;
  } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const checkpoints = await checkpointsIfAny(db, schema);
    const short = [...checkpoints.values()].filter((cp) => (!options.names || options.names.includes(cp.name)) && cp.position < position);
    // Failed or stopped: it will not move until an operator acts, so it is not waited for; for
    // read-your-writes the wait ends now, naming it.
    const isStopped = (cp: { state: string }) => cp.state === 'failed' || cp.state === 'stopped';
    const stopped = short.filter(isStopped);
    if (options.refuseStopped && stopped.length > 0)
      throw new ReadModelStopped(
        position,
        stopped.map((cp) => ({ name: cp.name, state: cp.state, position: cp.position })),
      );
    const behind = short.filter((cp) => !isStopped(cp)).map((cp) => ({ name: cp.name, position: cp.position }));
    for (const name of options.names ?? []) if (!checkpoints.has(name)) behind.push({ name, position: 0n });
    if (behind.length === 0) return;
    if (performance.now() >= deadline) throw new ReadModelTimeout(position, timeoutMs, behind);
    await new Promise((r) => setTimeout(r, Math.min(options.pollMs ?? 10, Math.max(1, deadline - performance.now()))));
  }
}
