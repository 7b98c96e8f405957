import type { EventStore } from './contract.ts';

/**
 * The same store, counting the events `readStream` returns: what a command reads, measured in
 * benchmarks and asserted in tests (e.g. that a purchase reads nothing however long the history).
 */
export const countingStreamReads = (store: EventStore): { store: EventStore; rowsRead: { n: number } } => {
  const rowsRead = { n: 0 };
  return {
    rowsRead,
    store: {
      ...store,
      engine: store.engine,
      readStream: async (stream, options) => {
        const rows = await store.readStream(stream, options);
        rowsRead.n += rows.length;
        return rows;
      },
    },
  };
};
