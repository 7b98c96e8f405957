import type { Kysely } from 'kysely';
import type { EventStore, RecordedEvent } from '../eventstore/contract.ts';
import { applyBatch, decodeBatch, matchesFilter, type ApplyOptions, type BatchItem, type EventCodec } from './apply-batch.ts';
import { NO_LAG, readCheckpoints, type Checkpoint } from './checkpoints.ts';
import type { Projection } from './projection.ts';
import { readSkips } from './skips.ts';

/** Pages read and decoded ahead of the one being applied. */
const READ_AHEAD = 3;

/** Stands in for a page every projection has applied (its events can be collected). */
const RELEASED = Promise.resolve({ page: [] as RecordedEvent[], decoded: Promise.resolve([] as BatchItem[]) });

export interface CatchUpProgress {
  position: bigint;
  headPosition: bigint;
  events: number;
}

export interface CatchUpOptions {
  db: Kysely<unknown>;
  store: EventStore;
  schema: string;
  projections: readonly Projection[];
  codec: EventCodec;
  /** Only events recorded at or before this instant are applied (state as of a moment). */
  untilTime?: Date;
  /** Stop once this position is reached (defaults to the head when called). */
  untilPosition?: bigint;
  pageSize?: number;
  concurrent?: boolean;
  onProgress?: (progress: CatchUpProgress) => void;
  /** Passed to `applyBatch` (e.g. `shouldRetry: () => false` to stop on a lost connection). */
  applyOptions?: ApplyOptions;
  /** Longest wait for events before the target that the feed does not show yet (open writers elsewhere). Default 30 s. */
  horizonWaitMs?: number;
  /**
   * A batch that keeps failing on the database (a lost connection, a stalled link) is tried again for
   * this long, then the catch-up fails with that error (a command then ends with exit code 69).
   * Default 30 s. Rebuild, replay and verify have an end: they do not wait out an outage as the
   * projection runner does.
   */
  faultRetryMs?: number;
  /** Aborted: a batch failing on the database is not tried again (Ctrl-C while the database is away). */
  signal?: AbortSignal;
}

/** How long a one-shot catch-up tries a batch again while the database fails it. */
export const CATCH_UP_FAULT_RETRY_MS = 30_000;

/** Where a catch-up starts reading: the lowest checkpoint of its projections (the target if lower). */
const startOf = (projections: readonly Projection[], checkpoints: Map<string, Checkpoint>, untilPosition: bigint): bigint =>
  projections.map((p) => checkpoints.get(p.name)?.position ?? 0n).reduce((a, b) => (b < a ? b : a), untilPosition);

/**
 * Events a catch-up of `projections` in `schema` up to `untilPosition` reads: every event after its
 * start, those no projection wants included. Counted by the store once, as the total of a replay's
 * progress; null where the store cannot count them (EventStoreDB).
 */
export async function eventsToCatchUp(
  options: Pick<CatchUpOptions, 'db' | 'store' | 'schema' | 'projections'> & { untilPosition: bigint },
): Promise<number | null> {
  const { store, untilPosition } = options;
  if (!store.countEvents) return null;
  const fromPosition = startOf(options.projections, await readCheckpoints(options.db, options.schema), untilPosition);
  return store.countEvents({ fromPosition, untilPosition });
}

/**
 * Reads the feed in pages from the lowest checkpoint and applies it, the next page being read while
 * the current one is applied. Used by rebuild and replay, where the end is known: no subscription,
 * no timers.
 */
export async function catchUp(options: CatchUpOptions): Promise<{ position: bigint; events: number; failed: string[]; recordedLater: number }> {
  const { db, store, schema, projections, codec } = options;
  const pageSize = options.pageSize ?? 2_000;
  const checkpoints = await readCheckpoints(db, schema);
  const positions = new Map(projections.map((p) => [p.name, checkpoints.get(p.name)?.position ?? 0n]));
  const failed = new Set(projections.filter((p) => checkpoints.get(p.name)?.state === 'failed').map((p) => p.name));
  const headPosition = options.untilPosition ?? (await store.headPosition());
  // Events an operator skipped (projections/skips.ts) are skipped by every replay too.
  const skipped = new Map(
    [
      ...(await readSkips(
        store,
        projections.map((p) => p.name),
      )),
    ].map(([name, list]) => [name, new Set(list.map((s) => s.position))]),
  );
  let from = startOf(projections, checkpoints, headPosition);
  let events = 0;
  const wanted = (e: RecordedEvent) => projections.some((p) => !failed.has(p.name) && e.position > positions.get(p.name)! && matchesFilter(p.filter, e));
  // A reader runs ahead by up to READ_AHEAD pages, each page decoded as soon as it is read (decoding
  // waits for the previous page's only when that page holds a CustomerForgotten, whose key eviction
  // must precede every later decryption). Each projection applies the pages in order at its own
  // pace, so the slowest one sets the total time, not the slowest of each page.
  // An empty read before the target is the feed's horizon, not its end (the target is an event's
  // position): the PostgreSQL feed shows an event only once every transaction that began writing
  // before it has ended (gap-free order), so a writer still open anywhere in the database holds it
  // back for a moment. Ending there would leave a replay short of the position it was asked for.
  const horizonWaitMs = options.horizonWaitMs ?? 30_000;
  const readPage = async (fromPosition: bigint): Promise<RecordedEvent[]> => {
    if (fromPosition >= headPosition) return [];
    const deadline = performance.now() + horizonWaitMs;
    for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
      const page = await store.readAll({ fromPosition, maxCount: pageSize });
      if (page.length > 0) return page.filter((e) => e.position <= headPosition);
      if (stopped) return [];
      if (performance.now() >= deadline) {
        throw new Error(
          `The event feed stayed behind position ${fromPosition} for ${horizonWaitMs / 1000} s while later events exist: a transaction that wrote events is still open. Run the command again once it ended.`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  };
  /** Events read but recorded after `untilTime`, left out. */
  let recordedLater = 0;
  /**
   * Streams with an event recorded after `untilTime`: their later events are left out too, so that
   * each stream is applied up to its first event recorded after the instant, as the store's
   * `readStream({ untilTime })` reads it for a point-in-time record. A record time is its append's
   * start, so a revision can be recorded before the one ahead of it; filtered event by event, a
   * replay applied it without that one. Pages are kept in feed order (as they are read), so the set
   * is complete for each page. One entry per stream changed since the instant.
   */
  const recordedAfter = new Set<string>();
  const asOfInstant = (event: RecordedEvent): boolean => {
    if (recordedAfter.has(event.stream)) return false;
    if (event.recordedAt.getTime() <= options.untilTime!.getTime()) return true;
    recordedAfter.add(event.stream);
    return false;
  };
  /** The events of a page to apply; called for each page in feed order, as it is read. */
  const keptOf = (page: RecordedEvent[]) => {
    const kept = options.untilTime ? page.filter(asOfInstant) : page;
    recordedLater += page.length - kept.length;
    return kept;
  };
  interface Prepared {
    page: RecordedEvent[];
    decoded: Promise<BatchItem[]>;
  }
  const pages: Promise<Prepared>[] = [];
  const done = new Map(projections.map((p) => [p.name, 0]));
  /** Since when the batches of this catch-up have kept failing on the database (undefined: the last one was applied). */
  let failingSince: number | undefined;
  const faultRetryMs = options.faultRetryMs ?? CATCH_UP_FAULT_RETRY_MS;
  const given = options.applyOptions;
  const applyOptions: ApplyOptions = {
    ...given,
    onTransientError: (error) => {
      failingSince ??= performance.now();
      given?.onTransientError?.(error);
    },
    shouldRetry: () => (given?.shouldRetry?.() ?? true) && !options.signal?.aborted && performance.now() - (failingSince ?? performance.now()) < faultRetryMs,
  };
  const waiting: (() => void)[] = [];
  const changed = () => {
    for (const wake of waiting.splice(0)) wake();
  };
  const nextChange = () => new Promise<void>((resolve) => waiting.push(resolve));
  let stopped = false;
  const slowest = () => Math.min(...done.values());

  const reader = async () => {
    let readFrom = from;
    let previous: Prepared | undefined;
    for (;;) {
      while (!stopped && pages.length - slowest() >= READ_AHEAD) await nextChange();
      if (stopped) return;
      const pagePromise = readPage(readFrom);
      const prepared = pagePromise.then((page): Prepared => {
        const barrier = previous && previous.page.some((e) => e.type === 'CustomerForgotten') ? previous.decoded : Promise.resolve();
        const kept = keptOf(page);
        const decoded = barrier.then(() => decodeBatch(codec, kept, wanted));
        decoded.catch(() => undefined); // observed by the appliers
        previous = { page, decoded };
        return previous;
      });
      prepared.catch(() => undefined); // observed by the appliers
      pages.push(prepared);
      changed();
      const page = await pagePromise.catch(() => [] as RecordedEvent[]);
      if (page.length === 0) return;
      readFrom = page[page.length - 1]!.position;
    }
  };

  let reported = 0;
  let reporting: Promise<void> = Promise.resolve();
  // Serialized: appliers finishing at once must not count a page twice.
  const report = () => (reporting = reporting.then(reportPassedPages));
  const reportPassedPages = async () => {
    // Progress is where the slowest projection stands; pages every projection has passed are released.
    while (reported < slowest()) {
      const { page } = await pages[reported]!;
      pages[reported] = RELEASED;
      reported++;
      events += page.length;
      if (page.length > 0) {
        from = page[page.length - 1]!.position;
        options.onProgress?.({ position: from, headPosition, events });
      }
    }
  };

  const applier = async (p: Projection) => {
    for (let i = 0; ; i++) {
      while (!stopped && i >= pages.length) await nextChange();
      if (stopped) return;
      const { page } = await pages[i]!;
      if (page.length === 0) return;
      await applyPage(p, i);
    }
  };

  const readerDone = reader();
  try {
    if (options.concurrent) {
      // On a failure, let the other appliers finish their batch before returning (no work left behind).
      const appliers = projections.map((p) =>
        applier(p).catch((error) => {
          stopped = true;
          changed();
          throw error;
        }),
      );
      const results = await Promise.allSettled(appliers);
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
    } else {
      // One connection (PGlite): projections take turns page by page.
      for (let i = 0; ; i++) {
        while (i >= pages.length) await nextChange();
        const { page } = await pages[i]!;
        if (page.length === 0) break;
        for (const p of projections) await applyPage(p, i);
      }
    }
  } finally {
    stopped = true;
    changed();
    await readerDone.catch(() => undefined);
  }
  async function applyPage(p: Projection, i: number) {
    const { page, decoded } = await pages[i]!;
    const endPosition = page[page.length - 1]!.position;
    if (!failed.has(p.name) && positions.get(p.name)! < endPosition) {
      const skips = skipped.get(p.name);
      const items = skips ? (await decoded).filter((i) => !skips.has(i.recorded.position)) : await decoded;
      const outcome = await applyBatch(db, schema, p, items, endPosition, NO_LAG, applyOptions);
      failingSince = undefined;
      positions.set(p.name, outcome.position);
      if (outcome.kind !== 'applied') failed.add(p.name);
    }
    done.set(p.name, i + 1);
    changed();
    await report();
  }
  // Every projection passed every page: the position is the last page's end.
  return { position: from, events, failed: [...failed], recordedLater };
}
