import type { Kysely } from 'kysely';
import type { EventStore, RecordedEvent } from '../eventstore/contract.ts';
import { applyBatch, decodeBatch, matchesFilter, type ApplyOptions, type EventCodec } from './apply-batch.ts';
import { readCheckpoints } from './checkpoints.ts';
import type { Projection } from './projection.ts';

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
  const read = (fromPosition: bigint) =>
    fromPosition >= headPosition ? Promise.resolve([] as RecordedEvent[]) : store.readAll({ fromPosition, maxCount: pageSize });
  let next = read(from);
  for (;;) {
    let page = await next;
    page = page.filter((e) => e.position <= headPosition);
    if (page.length === 0) break;
    const endPosition = page[page.length - 1]!.position;
    next = read(endPosition);
    const inTime = options.untilTime ? page.filter((e) => e.recordedAt.getTime() <= options.untilTime!.getTime()) : page;
    const active = projections.filter((p) => !failed.has(p.name) && positions.get(p.name)! < endPosition);
    const items = await decodeBatch(codec, inTime, (e) =>
      active.some((p) => e.position > positions.get(p.name)! && matchesFilter(p.filter, e)),
    );
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
  await next.catch(() => undefined);
  return { position: from, events, failed: [...failed] };
}
