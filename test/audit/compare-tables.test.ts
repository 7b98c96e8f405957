import { sql, type KyselyPlugin } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareTable } from '../../audit/compare-tables.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * The row-by-row comparison of a table that differs reads both sides in pages: it held every row's key
 * and hash of both sides in memory at once (a 500,000-row table differing in one row took the process
 * from 113 to 327 MB), so a long history's timeline could not be verified in bounded memory.
 */
const schemas = testSchemas('audit_compare');
const live = schemas.read;
const replayed = `${schemas.read}_replayed`;
let database: SqlDatabase;

/** The largest result any statement returned through the handle. */
const largestResult = () => {
  let largest = 0;
  const plugin: KyselyPlugin = {
    transformQuery: (args) => args.node,
    transformResult: async (args) => {
      largest = Math.max(largest, args.result.rows.length);
      return args.result;
    },
  };
  return { plugin, largest: () => largest };
};

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  for (const schema of [live, replayed]) {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(database.db);
    await sql`CREATE TABLE ${sql.id(schema, 'lines')} (customer_id uuid, position bigint, summary text, PRIMARY KEY (customer_id, position))`.execute(
      database.db,
    );
    await sql`INSERT INTO ${sql.id(schema, 'lines')}
      SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g % 7), 12, '0'))::uuid, g, 'line ' || g FROM generate_series(1, 50) g`.execute(database.db);
  }
  // One changed row, one missing from live, one extra in live, spread over several pages.
  await sql`UPDATE ${sql.id(live, 'lines')} SET summary = 'forged' WHERE position = 9`.execute(database.db);
  await sql`DELETE FROM ${sql.id(live, 'lines')} WHERE position = 30`.execute(database.db);
  await sql`INSERT INTO ${sql.id(live, 'lines')} VALUES ('00000000-0000-4000-8000-00000000000f', 51, 'ghost')`.execute(database.db);
}, 60_000);

afterAll(async () => {
  await sql`DROP SCHEMA IF EXISTS ${sql.id(replayed)} CASCADE`.execute(database.db);
  await sql`DROP SCHEMA IF EXISTS ${sql.id(live)} CASCADE`.execute(database.db);
  await database?.close();
  await schemas.dropSchemas();
});

describe('table comparison', () => {
  it('reads the rows of a differing table in pages, and still names every difference', async () => {
    const liveSide = largestResult();
    const replayedSide = largestResult();
    // Each side in one session, as verify runs it (the cursors live in their session).
    const result = await database.db.connection().execute((a) =>
      database.db.connection().execute((b) =>
        compareTable({ db: a.withPlugin(liveSide.plugin), schema: live }, { db: b.withPlugin(replayedSide.plugin), schema: replayed }, 'lines', {
          pageSize: 8,
        }),
      ),
    );
    expect(result).toMatchObject({ equal: false, liveRows: 50, replayedRows: 50, differences: 3 });
    expect(result.sample.map((d) => [d.kind, d.key.position]).sort()).toEqual([
      ['changed', 9],
      ['extra_in_live', 51],
      ['missing_in_live', 30],
    ]);
    expect(result.sample.find((d) => d.kind === 'changed')!.columns).toEqual([{ column: 'summary', live: 'forged', replayed: 'line 9' }]);
    expect(liveSide.largest()).toBeLessThanOrEqual(8);
    expect(replayedSide.largest()).toBeLessThanOrEqual(8);
  });

  it('compares inside a snapshot on one side, as verify does, and leaves no cursor open', async () => {
    const { result, open } = await database.db.connection().execute(async (connection) => {
      await sql`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`.execute(connection);
      try {
        return await database.db.connection().execute(async (other) => {
          const compared = await compareTable({ db: connection, schema: live }, { db: other, schema: replayed }, 'lines', { pageSize: 5 });
          const cursors = async (db: typeof other) => (await sql<{ n: string }>`SELECT count(*)::text AS n FROM pg_cursors`.execute(db)).rows[0]!.n;
          return { result: compared, open: [await cursors(connection), await cursors(other)] };
        });
      } finally {
        await sql`COMMIT`.execute(connection);
      }
    });
    expect(result.differences).toBe(3);
    expect(open).toEqual(['0', '0']);
  });
});
