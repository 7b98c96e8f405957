import { sql, type Kysely } from 'kysely';
import { pause } from '../eventstore/backoff.ts';

/**
 * How long a live process's session lock may be free: the server lets it go the moment the holder's
 * connection ends (a restarted server, a reset link), and the holder takes it again within about a
 * second of being able to connect (eventstore/postgres/database.ts, holdSessionLock: backoff of at
 * most 1 s; 0.2-0.7 s measured after a restart). A lock free at one look is not yet proof of death.
 */
export const LOCK_RETAKE_BOUND_MS = 2_000;

/** Whether the lock is free now, without keeping it (taken and let go in one statement). */
const lockFreeNow = async (db: Kysely<unknown>, key: string): Promise<boolean> => {
  const { rows } = await sql<{ free: boolean }>`
    SELECT CASE WHEN pg_try_advisory_lock(hashtext(${key})) THEN pg_advisory_unlock(hashtext(${key})) ELSE false END AS free`.execute(db);
  return rows[0]?.free ?? false;
};

/**
 * The keys whose session locks are free now, returned once the re-take bound has passed: only those
 * can be a dead process's. The caller then takes each in its own transaction (pg_try_advisory_xact_lock)
 * before it acts on the work, which tells it of a holder that took its lock back meanwhile. Without
 * the wait, a process that looked in the second after a database restart took live work for dead.
 */
export async function freeLocksPastRetake(db: Kysely<unknown>, keys: readonly string[]): Promise<string[]> {
  const free: string[] = [];
  for (const key of keys) if (await lockFreeNow(db, key)) free.push(key);
  if (free.length > 0) await pause(LOCK_RETAKE_BOUND_MS);
  return free;
}
