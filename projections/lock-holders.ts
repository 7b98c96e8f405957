import { sql, type QueryExecutorProvider } from 'kysely';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { ReadModelsHeld, type HoldingSession } from './errors.ts';

/**
 * A lock not granted within lock_timeout (55P03): another session (a BI tool's query or open
 * transaction, most often) holds what a statement had to take. The pool reports it as
 * EventStoreUnavailable with PostgreSQL's error as its cause.
 */
export const isLockNotGranted = (error: unknown): boolean => {
  const failure = error as { code?: unknown; cause?: { code?: unknown } } | null;
  return (failure?.code ?? failure?.cause?.code) === '55P03';
};

/**
 * The other sessions holding a lock on a relation of these schemas or on one of these relations
 * (schema-qualified, quoted), oldest transaction first: who an operator has to ask (or end).
 */
export async function sessionsHolding(
  db: QueryExecutorProvider,
  on: { schemas?: readonly string[]; relations?: readonly string[] },
): Promise<HoldingSession[]> {
  const { rows } = await sql<HoldingSession>`SELECT a.pid, a.usename AS user, a.application_name AS application, a.state,
            COALESCE(a.xact_start, a.query_start, a.backend_start) AS since,
            array_agg(DISTINCT format('%I.%I', n.nspname, c.relname)) AS relations
       FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.granted AND l.pid <> pg_backend_pid()
        AND (n.nspname = ANY(${[...(on.schemas ?? [])]}::text[])
             OR c.oid = ANY(ARRAY(SELECT to_regclass(r) FROM unnest(${[...(on.relations ?? [])]}::text[]) AS r)))
      GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query_start, a.backend_start
      ORDER BY 5, 1`.execute(db);
  return rows.map((r) => ({ ...r, relations: [...r.relations].sort() }));
}

/** How long a start keeps trying to make its reporting views while sessions hold them. */
export const VIEWS_LOCK_BOUND_MS = 30_000;

/**
 * Runs `work` again, with a growing pause, while it fails on a lock not granted, for at most
 * `boundMs`; then fails with `ReadModelsHeld`, naming the sessions holding `on`. Each attempt waits
 * for its locks only as long as the connection's lock_timeout, so readers arriving meanwhile queue
 * behind it that long at most.
 */
export async function retryWhileHeld<T>(
  db: QueryExecutorProvider,
  work: () => Promise<T>,
  options: { what: string; left: string; on: { schemas?: readonly string[]; relations?: readonly string[] }; boundMs?: number },
): Promise<T> {
  const started = performance.now();
  const deadline = started + (options.boundMs ?? VIEWS_LOCK_BOUND_MS);
  const backoff = createBackoff({ initialMs: 250, maxMs: 4_000 });
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!isLockNotGranted(error)) throw error;
      const wait = backoff.next();
      if (performance.now() + wait > deadline) {
        throw new ReadModelsHeld(options.what, options.left, performance.now() - started, await sessionsHolding(db, options.on), { cause: error });
      }
      await pause(wait);
    }
  }
}
