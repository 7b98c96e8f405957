import { CustomerStreamPrefix } from '../domain/customer/events.ts';
import type { StreamSnapshot, StreamSnapshots } from '../eventstore/contract.ts';
import { CustomerDataKeyMissing, PersonalDataForgotten, type PersonalData } from '../eventstore/personal-data.ts';
import { CompactIds, compactStateForm, compactStateFromForm, type CompactStateForm } from './compact-state.ts';

/**
 * Saved states of customer streams (stream snapshots), so that a bulk import over a store with years
 * of history reads a customer's state and the few events after it instead of every purchase they
 * ever made. Only customer streams are saved: they are the long ones (one event per order), and
 * their state holds personal data, so each snapshot is sealed with the customer's data key
 * (eventstore/personal-data.ts `seal`) and is shredded with it when the customer is forgotten.
 *
 * A snapshot is a cache of a fold: audits, projections and replays never read it, and a snapshot
 * that cannot be read (another format, a forgotten customer, altered text) is passed over and the
 * stream read whole.
 */

/**
 * The fold and encoding of the saved states. Change it whenever the customer fold
 * (domain/customer/decider.ts `evolveCustomer`, its state's fields) or the compact form
 * (commands/compact-state.ts) changes: snapshots of another format are never read, so the old ones
 * are folded again from the events. test/commands/snapshots.test.ts fails until it is changed.
 */
export const SNAPSHOT_FORMAT = 'customer.3';

/**
 * A stream read with at least this many events after its snapshot (or from its start) is saved as
 * soon as it is read (commands/batch.ts `load`): streams that were cheap to read are not written again
 * for nothing (a first import of a history writes none), and a stream that was expensive is saved
 * once, whether or not the batch appends to it (a file run again appends nothing).
 */
export const SNAPSHOT_AFTER_EVENTS = 8;

/** What the batch handler holds of a stream (commands/batch.ts). */
export interface SavedState {
  state: unknown;
  /** Revision of the last event folded; -1 when the stream has no events. */
  revision: number;
  ids: CompactIds;
}

/** A state taken for saving once its events are stored: texts, because the state goes on changing in place. */
export interface PendingSnapshot {
  stream: string;
  revision: number;
  text: string;
}

const customerOf = (stream: string): string | undefined => (stream.startsWith(CustomerStreamPrefix) ? stream.slice(CustomerStreamPrefix.length) : undefined);

/** Whether saved states of this stream are kept. */
const isSnapshotted = (stream: string): boolean => customerOf(stream) !== undefined;

/** The AAD of a snapshot's seal: it cannot be moved to another stream, revision or format. */
const contextOf = (stream: string, revision: number): string => `snapshot:${SNAPSHOT_FORMAT}:${stream}:${revision}`;

export interface SnapshotCodec {
  /** The state of a customer stream as text to save later (undefined for streams that are not snapshotted). */
  take(stream: string, saved: SavedState): PendingSnapshot | undefined;
  /** Seals and saves; a forgotten customer's state is not saved. */
  save(pending: PendingSnapshot[]): Promise<void>;
  /** The readable saved states of these streams (keys loaded first, in one query). */
  load(streams: string[]): Promise<Map<string, SavedState>>;
}

export function createSnapshotCodec(snapshots: StreamSnapshots, personalData: PersonalData): SnapshotCodec {
  return {
    take(stream, saved) {
      if (!isSnapshotted(stream)) return undefined;
      const text = JSON.stringify({ ...compactStateForm('customer', saved.state), ids: saved.ids.toText() });
      return { stream, revision: saved.revision, text };
    },

    async save(pending) {
      const sealed: StreamSnapshot[] = [];
      for (const p of pending) {
        try {
          const state = await personalData.seal(customerOf(p.stream)!, contextOf(p.stream, p.revision), p.text);
          sealed.push({ stream: p.stream, revision: p.revision, format: SNAPSHOT_FORMAT, state });
        } catch (error) {
          // Forgotten meanwhile: nothing of theirs is written any more; without a key, nothing can be sealed.
          if (!(error instanceof PersonalDataForgotten) && !(error instanceof CustomerDataKeyMissing)) throw error;
        }
      }
      await snapshots.save(sealed);
    },

    async load(streams) {
      const found = new Map<string, SavedState>();
      const wanted = streams.filter(isSnapshotted);
      if (wanted.length === 0) return found;
      const stored = await snapshots.load(wanted, SNAPSHOT_FORMAT);
      if (stored.size === 0) return found;
      await personalData.loadKeys([...stored.keys()].map((stream) => customerOf(stream)!));
      for (const snapshot of stored.values()) {
        const text = await personalData.open(customerOf(snapshot.stream)!, contextOf(snapshot.stream, snapshot.revision), snapshot.state);
        if (text === undefined) continue;
        const { ids, ...form } = JSON.parse(text) as CompactStateForm & { ids: string };
        found.set(snapshot.stream, { state: compactStateFromForm(form), revision: snapshot.revision, ids: CompactIds.fromText(ids) });
      }
      return found;
    },
  };
}
