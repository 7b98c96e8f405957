import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { SqlDatabase } from './database.ts';

/**
 * How subscribers learn about new events without a NOTIFY inside every append: NOTIFY takes a
 * global lock at commit and would serialize concurrent writers. Instead:
 * - subscribers of the same process are woken directly after each append commits;
 * - other processes get at most one NOTIFY per `interval` per process, sent after the commit
 *   (a trailing one always follows the last append of a burst);
 * - subscribers also poll, so a lost notification only delays them.
 */
export interface Wakeup {
  /** Call after an append committed. */
  appended(): void;
  /** Register a subscriber's wake-up; resolves to a function that unregisters it. */
  onAppend(wake: () => void): Promise<() => Promise<void>>;
  close(): void;
}

const localSubscribers = new WeakMap<SqlDatabase, Map<string, Set<() => void>>>();

/** Channel names are identifiers (max 63 bytes): derive a short stable one from the schema. */
export const channelFor = (schema: string): string => `crm_events_${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;

export const createWakeup = (database: SqlDatabase, schema: string, options: { interval?: number } = {}): Wakeup => {
  const channel = channelFor(schema);
  const interval = options.interval ?? 10;
  let perDatabase = localSubscribers.get(database);
  if (!perDatabase) {
    perDatabase = new Map();
    localSubscribers.set(database, perDatabase);
  }
  const wakes = perDatabase.get(channel) ?? new Set<() => void>();
  perDatabase.set(channel, wakes);

  let lastNotify = Number.NEGATIVE_INFINITY;
  let trailing: NodeJS.Timeout | undefined;
  let closed = false;

  const notify = (): void => {
    trailing = undefined;
    if (closed) return;
    lastNotify = performance.now();
    sql`SELECT pg_notify(${channel}, '')`.execute(database.db).catch(() => undefined);
  };

  return {
    appended() {
      for (const wake of wakes) wake();
      // PGlite lives in this process only: the direct wake-up above reaches every subscriber.
      if (database.kind !== 'postgres' || closed || trailing) return;
      const wait = lastNotify + interval - performance.now();
      if (wait <= 0) notify();
      else trailing = setTimeout(notify, wait);
    },
    async onAppend(wake) {
      wakes.add(wake);
      let unlisten: (() => Promise<void>) | undefined;
      if (database.kind === 'postgres') {
        try {
          unlisten = await database.listen(channel, wake);
        } catch {
          // Polling still delivers; LISTEN is only the fast path.
        }
      }
      return async () => {
        wakes.delete(wake);
        await unlisten?.();
      };
    },
    close() {
      closed = true;
      clearTimeout(trailing);
    },
  };
};
