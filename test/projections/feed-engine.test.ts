import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { CHECKPOINT_TABLE, migrateCheckpoints } from '../../projections/checkpoints.ts';
import { claimFeedEngine, FeedEngineMismatch, recordFeedEngine } from '../../projections/feed-engine.ts';
import { testSchemas } from '../support/postgres.ts';

const schemas = testSchemas('feed_engine');
let database: SqlDatabase;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  await migrateCheckpoints(database.db, schemas.read);
  await sql`INSERT INTO ${sql.id(schemas.read, CHECKPOINT_TABLE)} (name, version) VALUES ('customers', 1), ('deals', 1)`.execute(database.db);
});

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

const setPosition = (position: bigint) =>
  sql`UPDATE ${sql.id(schemas.read, CHECKPOINT_TABLE)} SET position = ${position.toString()}::bigint WHERE name = 'deals'`.execute(database.db);

describe('the feed engine behind the checkpoints', () => {
  it('refuses to resume from another engine’s positions until the read models are rebuilt from it', async () => {
    // Fresh checkpoints belong to nobody: the first runner claims them, twice at once without a catalogue race.
    await Promise.all([claimFeedEngine(database.db, schemas.read, 'postgres'), claimFeedEngine(database.db, schemas.read, 'postgres')]);
    await setPosition(123_456n);
    // PGlite shares PostgreSQL's positions.
    await claimFeedEngine(database.db, schemas.read, 'pglite');
    const refused = await claimFeedEngine(database.db, schemas.read, 'eventstoredb').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(FeedEngineMismatch);
    expect((refused as Error).message).toMatch(/crm rebuild/);
    // A rebuild of every projection from EventStoreDB records it in the swap's transaction.
    await database.db.transaction().execute((trx) => recordFeedEngine(trx, schemas.read, 'eventstoredb'));
    await claimFeedEngine(database.db, schemas.read, 'eventstoredb');
    expect(await claimFeedEngine(database.db, schemas.read, 'postgres').catch((error: unknown) => error)).toBeInstanceOf(FeedEngineMismatch);
  });

  it('lets checkpoints that are all at the start be claimed by any engine', async () => {
    await setPosition(0n);
    await claimFeedEngine(database.db, schemas.read, 'postgres');
    await setPosition(5n);
    expect(await claimFeedEngine(database.db, schemas.read, 'eventstoredb').catch((error: unknown) => error)).toBeInstanceOf(FeedEngineMismatch);
  });
});
