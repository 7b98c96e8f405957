import { sql, type Kysely } from 'kysely';
import { freeLocksPastRetake } from './lock-retake.ts';
import type { SqlDatabase } from '../shared/sql.ts';
import type { SessionLock } from './shadows.ts';

/**
 * Whether the process running a piece of background work (a verification, an HTTP import) is still
 * there. The work is recorded in a table any process reads; a heartbeat alone takes a minute to tell
 * a dead process, so the one running the work also marks it where it can be told at once: on a
 * PostgreSQL server, a session advisory lock on a connection of its own (`SessionLock`), which the
 * server releases when the process dies; on PGlite, whose data folder one process holds at a time,
 * by being that process (running work it did not start was left by an earlier one).
 */
export interface WorkLiveness {
  /** Marks the work named `key` as this process's until the returned function is called. */
  hold(key: string): Promise<() => Promise<void>>;
  /**
   * Whether work recorded as running under `key` was left by a process that is gone. Without a way
   * to tell (a server and no session lock) it answers false, and only the heartbeat decides. A lock
   * found free is looked at again once `LOCK_RETAKE_BOUND_MS` has passed (the call waits that long).
   * Inside `handle`'s transaction when it is one (the probe's lock is let go at its end).
   */
  abandoned(handle: Kysely<unknown>, key: string): Promise<boolean>;
}

export interface WorkLivenessOptions {
  sessionLock?: SessionLock | undefined;
  /** The database serves this process alone (PGlite). */
  exclusive?: boolean;
}

/**
 * The liveness options of a process on `database`: its session lock on a server, and on PGlite (one
 * process per data folder) that work this process did not start is dead.
 */
export const livenessOn = (database: Pick<SqlDatabase, 'kind'>, sessionLock: SessionLock | undefined): WorkLivenessOptions => ({
  ...(sessionLock ? { sessionLock } : {}),
  exclusive: database.kind === 'pglite',
});

export function workLiveness(db: Kysely<unknown>, options: WorkLivenessOptions): WorkLiveness {
  /** Work this process holds (the composition root builds one liveness per kind of work). */
  const heldHere = new Set<string>();
  return {
    async hold(key) {
      // Taken before the work is recorded, so no other process ever sees it running and unlocked.
      const release = options.sessionLock ? await options.sessionLock(key) : async () => undefined;
      heldHere.add(key);
      return async () => {
        heldHere.delete(key);
        await release();
      };
    },
    async abandoned(handle, key) {
      if (heldHere.has(key)) return false;
      if (options.exclusive) return true;
      if (!options.sessionLock) return false;
      if ((await freeLocksPastRetake(handle, [key])).length === 0) return false;
      const probe = async (trx: Kysely<unknown>) => {
        const { rows } = await sql<{ free: boolean }>`SELECT pg_try_advisory_xact_lock(hashtext(${key})) AS free`.execute(trx);
        return rows[0]?.free ?? false;
      };
      return handle.isTransaction ? probe(handle) : db.transaction().execute(probe);
    },
  };
}
