import type { CrmEvent } from '../domain/catalogue.ts';
import {
  emptyStream,
  foldInto,
  loadStream,
  refOf,
  streamOf,
  type AggregateStates,
  type Folder,
  type LoadedStream,
  type StreamLoaderDeps,
} from './aggregates.ts';
import { CompactIds, expandState } from './compact-state.ts';
import { SNAPSHOT_AFTER_EVENTS, type SnapshotCodec } from './snapshots.ts';
import type { AggregateKind } from './schemas.ts';
import { LruMap } from '../shared/lru.ts';

/**
 * Folded states of recently used streams, by stream and revision (an LRU bounded by stream count),
 * the way Marten's identity map and Equinox's cache keep them:
 *
 * - `fresh` loads read only the events after the cached revision (a stream of 100k events costs what
 *   is new, not 100k rows);
 * - `cached` loads trust the entry and read nothing: the command's append carries the cached revision
 *   as its expected revision, so a state made stale by another process can never be overwritten
 *   silently; the conflict marks the entry stale and the next load catches up;
 * - what this process appends is folded in from the decided events, so the next command on the
 *   stream reads nothing at all.
 *
 * A stream not held is read from its saved state where the store keeps one (commands/snapshots.ts:
 * customer streams, the long ones), so the first command on a customer with years of orders reads
 * the events after that state, not all of them; a stream read with many events after its saved state
 * (or from its start) has its state saved again, as the importer does.
 *
 * States handed out must be used before the next await (deciding is synchronous): a later catch-up
 * evolves them further, which only happens when the store holds newer events, so an append decided on
 * a state caught up meanwhile still fails on its expected revision. Commands on one stream are queued
 * (stream-queue.ts), so one state is never decided on twice at once; a group of them folds its own
 * events into a copy, never into the state held here, until its append is stored.
 */
export interface StreamCache {
  /**
   * `creates`: for a command that creates the stream (a registration): no saved state is looked up
   * (a new stream has none; a registration sent again reads its short stream whole).
   */
  load<K extends AggregateKind>(kind: K, id: string, mode: 'fresh' | 'cached', creates?: boolean): Promise<LoadedStream<AggregateStates[K]>>;
  /**
   * Folds events this process just appended at `base.revision + 1...`, when the entry is still `base`
   * (else the entry is left to catch up on its next load). `folded`: the state the first `count` events
   * were already folded into, on a copy (a group of commands decided one after the other).
   */
  appended(
    kind: AggregateKind,
    id: string,
    base: LoadedStream<unknown>,
    events: AppendedEvent[],
    after: { revision: number; position: bigint },
    folded?: { state: unknown; count: number },
  ): void;
  /** Someone else wrote (a conflict) or the append's outcome is unknown: catch up on the next load. */
  stale(stream: string): void;
  /** Forgets the stream's state entirely (a forgotten customer's decrypted data leaves memory). */
  evict(stream: string): void;
  /** Streams held now. */
  size(): number;
}

export interface AppendedEvent {
  id: string;
  event: CrmEvent;
  commandHash: string | undefined;
  /** Business time, as the fold from the store would see it. */
  occurredAt: string;
}

interface Entry {
  loaded: LoadedStream<unknown>;
  stale: boolean;
}

export function createStreamCache(deps: StreamLoaderDeps, maxStreams: number, saved?: SnapshotCodec): StreamCache {
  const entries = new LruMap<string, Entry>(maxStreams);
  // One catch-up per stream at a time: two folding into one cached state would apply events twice.
  const inFlight = new Map<string, Promise<unknown>>();

  const remember = (stream: string, loaded: LoadedStream<unknown>) => entries.set(stream, { loaded, stale: false });

  /**
   * The saved state and the events from its revision on: the event at that revision is read again for
   * its position (the answer of a command that records nothing carries it). Undefined when there is
   * none to read, or when the store no longer holds that event (the stream is then read whole).
   */
  const fromSavedState = async <S>(
    kind: AggregateKind,
    stream: string,
    folder: Folder<S>,
  ): Promise<{ loaded: LoadedStream<S>; from: number; read: number } | undefined> => {
    const state = saved ? (await saved.load([stream])).get(stream) : undefined;
    if (!state) return undefined;
    const [last, ...after] = await deps.store.readStream(stream, { fromRevision: state.revision });
    if (last?.revision !== state.revision) return undefined;
    const base: LoadedStream<S> = {
      state: expandState(kind, state.state as S),
      revision: state.revision,
      position: last.position,
      ids: new Map([[last.id, refOf(last)]]),
      savedIds: state.ids,
    };
    return { loaded: await foldInto(deps, folder, base, after), from: state.revision, read: after.length };
  };

  /**
   * A stream that was costly to read (`read` events after the saved state at `from`, -1 for none) has
   * its state saved. A cache: a save that fails costs only a longer read next time.
   */
  const saveIfCostly = (stream: string, loaded: LoadedStream<unknown>, from: number, read: number): void => {
    if (!saved || read < SNAPSHOT_AFTER_EVENTS) return;
    const ids = loaded.savedIds?.copy() ?? new CompactIds();
    for (const [id, ref] of loaded.ids) if (ref.revision > from) ids.add(id, ref.commandHash);
    const pending = saved.take(stream, { state: loaded.state, revision: loaded.revision, ids });
    if (pending) void saved.save([pending]).catch(() => undefined);
  };

  const catchUp = async <S>(kind: AggregateKind, stream: string, folder: Folder<S>, creates: boolean): Promise<LoadedStream<S>> => {
    const cached = entries.get(stream)?.loaded as LoadedStream<S> | undefined;
    try {
      const restored = cached || creates ? undefined : await fromSavedState(kind, stream, folder);
      if (restored) {
        remember(stream, restored.loaded);
        saveIfCostly(stream, restored.loaded, restored.from, restored.read);
        return restored.loaded;
      }
      const recorded = await deps.store.readStream(stream, { fromRevision: (cached?.revision ?? -1) + 1 });
      if (recorded.length === 0 && cached) {
        remember(stream, cached);
        return cached;
      }
      const loaded = await foldInto(deps, folder, cached ?? emptyStream(folder), recorded);
      remember(stream, loaded);
      if (!cached) saveIfCostly(stream, loaded, -1, recorded.length);
      return loaded;
    } catch (error) {
      entries.delete(stream);
      throw error;
    }
  };

  return {
    size: () => entries.size,
    async load<K extends AggregateKind>(kind: K, id: string, mode: 'fresh' | 'cached', creates = false): Promise<LoadedStream<AggregateStates[K]>> {
      if (maxStreams <= 0) return loadStream(deps, kind, id);
      const folder = deps.folders[kind] as Folder<AggregateStates[K]>;
      const stream = streamOf(kind, id);
      for (;;) {
        const pending = inFlight.get(stream);
        if (pending) {
          // Wait for it, then look again: events may have been appended after it started reading.
          await pending.catch(() => undefined);
          continue;
        }
        const entry = entries.get(stream);
        if (mode === 'cached' && entry && !entry.stale) return entry.loaded as LoadedStream<AggregateStates[K]>;
        const loading = catchUp(kind, stream, folder, creates);
        inFlight.set(stream, loading);
        try {
          return await loading;
        } finally {
          if (inFlight.get(stream) === loading) inFlight.delete(stream);
        }
      }
    },
    appended(kind, id, base, events, after, folded) {
      const stream = streamOf(kind, id);
      const entry = entries.peek(stream);
      if (maxStreams <= 0 || !entry || entry.loaded !== base || after.revision !== base.revision + events.length) {
        if (entry) entry.stale = true;
        return;
      }
      const folder = deps.folders[kind] as Folder<unknown>;
      let state = folded?.state ?? base.state;
      for (const [i, e] of events.entries()) {
        if (i >= (folded?.count ?? 0)) state = folder.evolve(state, e.event, e.occurredAt);
        // Positions of the earlier events of one append are not returned: the last one stands for all.
        base.ids.set(e.id, { revision: base.revision + i + 1, position: after.position, commandHash: e.commandHash });
      }
      remember(stream, { ...base, state, revision: after.revision, position: after.position });
    },
    stale(stream) {
      const entry = entries.peek(stream);
      if (entry) entry.stale = true;
    },
    evict(stream) {
      entries.delete(stream);
    },
  };
}
