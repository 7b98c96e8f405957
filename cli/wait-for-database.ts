import { EventStoreUnavailable, refusedConnectionSettings } from '../eventstore/errors.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { Interrupted, type CommandRun } from './command.ts';

/** How long a starting server waits for its database before it gives up (exit 69, with advice). */
export const DATABASE_START_WAIT_MS = 10 * 60_000;
/** How often a wait says it still waits. */
const STILL_WAITING_EVERY_MS = 60_000;

/**
 * Opens what a long-running process (`crm serve`, `crm project`) runs on, waiting while the database
 * server cannot be reached: started beside PostgreSQL (a reboot, a deployment that brings both up, a
 * database restarting), it starts once the database answers instead of exiting on the first refusal.
 * One line when the wait begins, one a minute while it lasts, one when it ends; Ctrl-C stops it.
 * The embedded database is not waited for: it runs in this process, and a folder held by another crm
 * process is not freed by waiting. Bounded: after `maxWaitMs` the last failure is thrown.
 */
export async function openWhenDatabaseAnswers<T>(
  run: Pick<CommandRun, 'config' | 'signal' | 'err'>,
  open: () => Promise<T>,
  options: {
    maxWaitMs?: number;
    clock?: () => number;
    /** Called once the wait begins, with the latest failure; what it returns is awaited when the wait ends (serve's /health meanwhile). */
    whileWaiting?: (latest: () => string) => Promise<(() => Promise<void>) | undefined>;
  } = {},
): Promise<T> {
  if (run.config.database.kind === 'pglite') return open();
  const clock = options.clock ?? Date.now;
  const maxWaitMs = options.maxWaitMs ?? DATABASE_START_WAIT_MS;
  const backoff = createBackoff({ initialMs: 250, maxMs: 5_000 });
  let waitingSince: number | undefined;
  let saidAt = 0;
  let latest = '';
  let endWaiting: (() => Promise<void>) | undefined;
  try {
    for (;;) {
      try {
        const opened = await open();
        if (waitingSince !== undefined) run.err(`The database answers after ${Math.round((clock() - waitingSince) / 1_000)} s; starting.`);
        return opened;
      } catch (error) {
        // A server that refuses the name or the credentials refuses them again after any wait.
        if (!(error instanceof EventStoreUnavailable) || refusedConnectionSettings(error)) throw error;
        latest = error.message;
        const now = clock();
        if (waitingSince === undefined) {
          waitingSince = saidAt = now;
          endWaiting = await options.whileWaiting?.(() => latest);
          run.err(
            `The database is not available: ${error.message}\n  Waiting for it (up to ${maxWaitMs / 60_000} min; Ctrl-C stops). Check that it runs and that DATABASE_URL points at it.`,
          );
        } else if (now - waitingSince >= maxWaitMs) {
          throw error;
        } else if (now - saidAt >= STILL_WAITING_EVERY_MS) {
          saidAt = now;
          run.err(`Still waiting for the database (${Math.round((now - waitingSince) / 1_000)} s): ${error.message}`);
        }
        await pause(backoff.next(), run.signal);
        if (run.signal.aborted) throw new Interrupted('stopped while waiting for the database; nothing was started');
      }
    }
  } finally {
    await endWaiting?.();
  }
}
