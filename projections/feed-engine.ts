import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import type { EngineName } from '../eventstore/contract.ts';
import { CHECKPOINT_TABLE } from './checkpoints.ts';

/**
 * Checkpoints are positions in one event store's feed. PostgreSQL and PGlite share one position
 * scheme; EventStoreDB's positions are offsets in its log. Resuming from another engine's
 * positions would make the server refuse them ("invalid position", a loop of errors) or, past its
 * head, skip every event silently. So the read-model schema records which kind of feed wrote its
 * checkpoints, and a runner on another kind refuses to start until the read models are rebuilt.
 */
export const FEED_ENGINE_TABLE = 'projection_feed_engine';

type PositionScheme = 'postgres' | 'eventstoredb';
const schemeOf = (engine: EngineName): PositionScheme => (engine === 'eventstoredb' ? 'eventstoredb' : 'postgres');

export class FeedEngineMismatch extends Error {
  constructor(
    readonly schema: string,
    readonly recorded: string,
    readonly current: EngineName,
  ) {
    super(
      `The read models in schema "${schema}" were built from a ${recorded} event store, but this process reads ${current}: ` +
        'their checkpoints are positions of the other store. Point EVENTSTORE_URL/DATABASE_URL at the original store, ' +
        'or rebuild the read models from this one (crm rebuild).',
    );
    this.name = 'FeedEngineMismatch';
  }
}

/**
 * Records this store's position scheme for the schema's checkpoints, or refuses when they belong
 * to another one. Checkpoints that are all at the start belong to nobody yet and are claimed.
 */
export async function claimFeedEngine(db: Kysely<unknown>, schema: string, engine: EngineName): Promise<void> {
  const scheme = schemeOf(engine);
  await db.transaction().execute(async (trx) => {
    await createFeedEngineTable(trx, schema);
    const { rows } = await sql<{ scheme: string }>`SELECT scheme FROM ${sql.id(schema, FEED_ENGINE_TABLE)}`.execute(trx);
    const recorded = rows[0]?.scheme;
    if (recorded === scheme) return;
    const { rows: started } = await sql<{ started: boolean }>`SELECT EXISTS (
      SELECT 1 FROM ${sql.id(schema, CHECKPOINT_TABLE)} WHERE position > 0) AS started`.execute(trx);
    // Before this table existed checkpoints were written by the engine configured then: claim them.
    if (recorded !== undefined && started[0]?.started) throw new FeedEngineMismatch(schema, recorded, engine);
    await recordFeedEngine(trx, schema, engine);
  });
}

/** After a rebuild of every projection from `engine` (the swap's transaction): the checkpoints are now its positions. */
export async function recordFeedEngine(db: QueryExecutorProvider, schema: string, engine: EngineName): Promise<void> {
  await createFeedEngineTable(db, schema);
  await sql`INSERT INTO ${sql.id(schema, FEED_ENGINE_TABLE)} (only_row, scheme) VALUES (true, ${schemeOf(engine)})
    ON CONFLICT (only_row) DO UPDATE SET scheme = EXCLUDED.scheme, recorded_at = now()`.execute(db);
}

async function createFeedEngineTable(db: QueryExecutorProvider, schema: string): Promise<void> {
  // Processes starting at once would race on the catalogue (pg_type duplicate key) without the lock.
  await sql`SELECT pg_advisory_xact_lock(hashtext(${`${schema}.${FEED_ENGINE_TABLE}`}))`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, FEED_ENGINE_TABLE)} (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    scheme text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db);
}
