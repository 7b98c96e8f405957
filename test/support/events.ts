import type { EventStore, ReadAllOptions, RecordedEvent } from '../../eventstore/contract.ts';

/**
 * Reads for tests that share one PostgreSQL cluster. The store shows an event once no older
 * transaction anywhere in the cluster is still open (the gap-free feed), and another file's test may
 * hold one open for seconds; these wait (bounded) instead of reading a shorter prefix.
 */
const SETTLE_MS = 60_000;

/** Every stored event (or a filtered page), once all those committed before the call can be read. */
export const storedEvents = (store: EventStore, options: Omit<ReadAllOptions, 'settleMs' | 'direction'> = {}): Promise<RecordedEvent[]> =>
  store.readAll({ ...options, settleMs: SETTLE_MS });

/** The position of the newest stored event (0 when there is none), once it can be read. */
export const newestPosition = async (store: EventStore): Promise<bigint> => {
  const [newest] = await store.readAll({ direction: 'backwards', maxCount: 1, settleMs: SETTLE_MS });
  return newest?.position ?? 0n;
};
