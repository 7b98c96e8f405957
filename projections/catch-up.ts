import type { Kysely } from 'kysely';
import type { EventStore, RecordedEvent } from '../eventstore/contract.ts';
import { applyBatch, decodeBatch, matchesFilter, type ApplyOptions, type BatchItem, type EventCodec } from './apply-batch.ts';
import { readCheckpoints } from './checkpoints.ts';
import type { Projection } from './projection.ts';

/** Pages read and decoded ahead of the one being applied. */
const READ_AHEAD = 3;

export interface CatchUpProgress {
  position: bigint;
  headPosition: bigint;
  events: number;
}

export interface CatchUpOptions {
  db: Kysely<any>;
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
}

/**
 * Reads the feed in pages from the lowest checkpoint and applies it, the next page being read while
 * the current one is applied. Used by rebuild and replay, where the end is known: no subscription,
 * no timers.
 */
export async function catchUp(options: CatchUpOptions): Promise<{ position: bigint; events: number; failed: string[] }> {
  const { db, store, schema, projections, codec } = options;
  const pageSize = options.pageSize ?? 2_000;
  const checkpoints = await readCheckpoints(db, schema);
  const positions = new Map(projections.map((p) => [p.name, checkpoints.get(p.name)?.position ?? 0n]));
  const failed = new Set(projections.filter((p) => checkpoints.get(p.name)?.state === 'failed').map((p) => p.name));
  const headPosition = options.untilPosition ?? (await store.headPosition());
  let from = [...positions.values()].reduce((a, b) => (b < a ? b : a), headPosition);
  let events = 0;
  const wanted = (e: RecordedEvent) =>
    projections.some((p) => !failed.has(p.name) && e.position > positions.get(p.name)! && matchesFilter(p.filter, e));
  // A reader runs ahead of the appliers by up to READ_AHEAD pages, each page decoded as soon as it is
  // read. Decoding a page waits for the previous page's decoding only when that page holds a
  // CustomerForgotten, whose key eviction must precede every later decryption.
  const readPage = async (fromPosition: bigint): Promise<RecordedEvent[]> =>
    fromPosition >= headPosition ? [] : (await store.readAll({ fromPosition, maxCount: pageSize })).filter((e) => e.position <= headPosition);
  const decodePage = (page: RecordedEvent[]) =>
    decodeBatch(codec, options.untilTime ? page.filter((e) => e.recordedAt.getTime() <= options.untilTime!.getTime()) : page, wanted);
  interface Prepared {
    page: RecordedEvent[];
    decoded: Promise<BatchItem[]>;
  }
  const ready: Promise<Prepared>[] = [];
  let stopped = false;
  let wakeReader: (() => void) | undefined;
  let readFrom = from;
  let lastDecode: { page: RecordedEvent[]; decoded: Promise<BatchItem[]> } | undefined;
  const reader = async () => {
    for (;;) {
      if (stopped) return;
      if (ready.length >= READ_AHEAD) {
        await new Promise<void>((resolve) => (wakeReader = resolve));
        continue;
      }
      const pagePromise = readPage(readFrom);
      const prepared = pagePromise.then((page) => {
        const previous = lastDecode;
        const barrier = previous && previous.page.some((e) => e.type === 'CustomerForgotten') ? previous.decoded : Promise.resolve();
        const decoded = barrier.then(() => decodePage(page));
        decoded.catch(() => undefined); // observed by the applier
        lastDecode = { page, decoded };
        return { page, decoded };
      });
      ready.push(prepared);
      const page = await pagePromise.catch(() => []);
      if (page.length === 0) return;
      readFrom = page[page.length - 1]!.position;
    }
  };
  const readerDone = reader();
  try {
    for (;;) {
      while (ready.length === 0) await new Promise((r) => setImmediate(r));
      const { page, decoded } = await ready.shift()!;
      wakeReader?.();
      if (page.length === 0) break;
      const endPosition = page[page.length - 1]!.position;
      const items = await decoded;
      const active = projections.filter((p) => !failed.has(p.name) && positions.get(p.name)! < endPosition);
      const applyOne = async (p: Projection) => {
        const outcome = await applyBatch(db, schema, p, items, endPosition, { eventsBehind: 0, secondsBehind: 0 }, options.applyOptions);
        positions.set(p.name, outcome.position);
        if (outcome.kind !== 'applied') failed.add(p.name);
      };
      if (options.concurrent) await Promise.all(active.map(applyOne));
      else for (const p of active) await applyOne(p);
      events += page.length;
      from = endPosition;
      options.onProgress?.({ position: endPosition, headPosition, events });
    }
  } finally {
    stopped = true;
    wakeReader?.();
    for (const p of ready) p.catch(() => undefined);
    await readerDone.catch(() => undefined);
  }
  return { position: from, events, failed: [...failed] };
}
