import { Kysely, sql } from 'kysely';
import { StaleStatements } from '../../eventstore/errors.ts';
import type { ReadModelSource } from './page.ts';

/** Handles already inside a snapshot: a read nested in another reads the outer one's. */
const inSnapshot = new WeakSet<object>();

/**
 * Runs the queries of one answer on one snapshot of the read models (a read-only REPEATABLE READ
 * transaction), for answers made of several queries. Run apart on pooled connections, each query saw
 * the projections' commits made between them: `GET /pipeline` put a deal moved from one stage to
 * another in its old stage by stage and in its new one in the base currency, within one response.
 * The queries then take turns on one connection instead of running side by side.
 *
 * The transaction only reads, so it always ends with ROLLBACK: a query that failed and was answered
 * by a fallback (`unlessRebuilding`, while the tables of a previous version serve) leaves nothing to
 * commit. Such a failure ends the snapshot, though: a fallback inside it must not query again.
 */
export const inOneSnapshot = async <T>(source: ReadModelSource, read: (snapshot: ReadModelSource) => Promise<T>): Promise<T> => {
  const { db } = source;
  if (!(db instanceof Kysely) || db.isTransaction || inSnapshot.has(db)) return read(source);
  const once = () =>
    (db as Kysely<unknown>).connection().execute(async (connection) => {
      await sql`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`.execute(connection);
      inSnapshot.add(connection);
      try {
        return await read({ ...source, db: connection });
      } finally {
        inSnapshot.delete(connection);
        // A connection that broke fails this too, and is discarded on release: the answer or the real error stands.
        await sql`ROLLBACK`.execute(connection).catch(() => undefined);
      }
    });
  // A pooled connection may hold statements prepared before a rebuild swapped the tables they read:
  // in a transaction such a statement cannot be run again unprepared, so the answer is read again on
  // another connection (the stale one is discarded on release). Bounded: a pool holds fewer.
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (error) {
      if (!(error instanceof StaleStatements) || attempt >= STALE_CONNECTIONS_SKIPPED) throw error;
    }
  }
};

/** Connections with stale statements an answer skips before it gives up (more than any pool here holds). */
const STALE_CONNECTIONS_SKIPPED = 64;
