import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { RETENTION_CLV_SQL } from '../../analytics/retention-clv.ts';
import { createAnalyticsService, type AnalyticsService } from '../../analytics/service.ts';
import { migrateModels, SCORE_TOTALS, SCORE_TOTALS_COMPACT_AT, upsertScores } from '../../analytics/tables.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { testSchemas } from '../support/postgres.ts';
import { simulatedHistory } from './simulate.ts';
import { projected, purchase } from './support.ts';

/**
 * The totals per segment and cluster (analytics/tables.ts) against the full aggregates over
 * `analytics_scores` that GET /analytics/segments, /clv and /churn computed before them, after every
 * kind of write: live scoring, a fit rescoring everyone, a merge, direct statements, many small
 * batches (compaction), writers at once, and a table made before the totals existed.
 */
const schemas = testSchemas('score_totals');
let database: SqlDatabase;
let service: AnalyticsService;
const projection = createAnalyticsProjection();
const events = simulatedHistory(300, 33);
const read = schemas.read;
const s = (table: string) => sql.id(read, table);

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  await projection.migrate(database.db, read);
  service = createAnalyticsService({ db: database.db, schema: read, clock: () => new Date('2024-07-01T00:00:00Z') });
});
afterAll(async () => {
  await database?.close();
  await schemas.dropSchemas();
});

const apply = (batch: typeof events) => database.db.transaction().execute((trx) => projection.apply({ trx, schema: read }, batch));

/** What the API answered before the totals: aggregates over every score, joined as the reporting view joins them. */
async function fullAggregates() {
  const latest = sql.raw(RETENTION_CLV_SQL.params(`"${read}".analytics_models`, `(SELECT max(version) FROM "${read}".analytics_models)`));
  const { rows: segments } = await sql<Record<string, number | string | null>>`SELECT s.segment, count(*)::int AS customers, avg(s.clv)::float AS mean_clv,
      sum(s.clv)::float AS total_clv, avg(s.churn_score)::float AS mean_churn_score, avg(${sql.raw(RETENTION_CLV_SQL.clv)})::float AS mean_clv_retention
    FROM ${s('analytics_scores')} s JOIN ${s('analytics_customer')} c USING (customer_id) LEFT JOIN ${latest} ON true
    GROUP BY s.segment ORDER BY customers DESC, s.segment`.execute(database.db);
  const { rows: clusters } = await sql<Record<string, number>>`SELECT cluster, count(*)::int AS customers, avg(clv)::float AS mean_clv
    FROM ${s('analytics_scores')} GROUP BY cluster ORDER BY cluster`.execute(database.db);
  const { rows: everyone } = await sql<Record<string, number | null>>`SELECT count(*)::int AS customers, coalesce(sum(clv), 0)::float AS total_clv,
      avg(clv)::float AS mean_clv, avg(churn_score)::float AS mean_churn_score, avg(p_alive)::float AS mean_p_alive FROM ${s('analytics_scores')}`.execute(
    database.db,
  );
  return { segments, clusters, everyone: everyone[0]! };
}

async function expectTotalsEqualFullAggregates(): Promise<void> {
  const full = await fullAggregates();
  const answered = await service.segments();
  expect(answered.segments.map((x) => [x.segment, x.customers])).toEqual(full.segments.map((x) => [x.segment, x.customers]));
  for (const [i, x] of answered.segments.entries()) {
    const f = full.segments[i]!;
    expect(x.meanClv).toBeCloseTo(Number(f.mean_clv), 8);
    expect(x.totalClv).toBeCloseTo(Number(f.total_clv), 6);
    expect(x.meanChurnScore).toBeCloseTo(Number(f.mean_churn_score), 10);
    if (f.mean_clv_retention === null) expect(x.meanClvRetention).toBeNull();
    else expect(x.meanClvRetention!).toBeCloseTo(Number(f.mean_clv_retention), 8);
  }
  expect(answered.clusters.map((x) => [x.cluster, x.customers])).toEqual(full.clusters.map((x) => [Number(x.cluster), x.customers]));
  for (const [i, x] of answered.clusters.entries()) expect(x.meanClv).toBeCloseTo(full.clusters[i]!.mean_clv!, 8);
  const clv = await service.clv({ limit: 1 });
  expect(clv.total).toBe(full.everyone.customers);
  expect(clv.summary.totalClv).toBeCloseTo(Number(full.everyone.total_clv), 6);
  expect(clv.summary.meanPAlive ?? 0).toBeCloseTo(Number(full.everyone.mean_p_alive ?? 0), 10);
  const churn = await service.churn({ limit: 1, segment: full.segments[0]!.segment as never });
  expect(churn.total).toBe(full.segments[0]!.customers);
  expect(churn.summary.meanChurnScore!).toBeCloseTo(Number(full.segments[0]!.mean_churn_score), 10);
  const cluster = await service.clv({ limit: 1, cluster: full.clusters[0]!.cluster });
  expect(cluster.total).toBe(full.clusters[0]!.customers);
}

const totalsRows = async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${s(SCORE_TOTALS)}`.execute(database.db)).rows[0]!.n;

describe('score totals per segment and cluster', () => {
  it('equal the full aggregates after the projection, a fit that rescores everyone, and live rescoring', async () => {
    for (let i = 0; i < events.length; i += 400) await apply(events.slice(i, i + 400));
    expect((await service.segments()).segments).toEqual([]);
    await service.fitModels({ timeUnit: 'week' });
    await expectTotalsEqualFullAggregates();
    // Purchases move customers between segments; each batch rescored in its own transaction.
    const { rows } = await sql<{ id: string }>`SELECT customer_id::text AS id FROM ${s('analytics_scores')} ORDER BY clv LIMIT 40`.execute(database.db);
    for (const [i, { id }] of rows.entries()) await apply([purchase(id, `late-${i}`, 400, '2024-06-29T10:00:00Z')]);
    await expectTotalsEqualFullAggregates();
    // A second fit rewrites every score (an UPDATE of each row).
    await service.fitModels({ timeUnit: 'week', clusters: 3 });
    await expectTotalsEqualFullAggregates();
  });

  it('follow a merge, direct updates and deletes, and stay a few rows however many statements wrote', async () => {
    const { rows } = await sql<{ id: string }>`SELECT customer_id::text AS id FROM ${s('analytics_scores')} ORDER BY customer_id LIMIT 4`.execute(database.db);
    const [a, b, c, d] = rows.map((r) => r.id) as [string, string, string, string];
    await apply([projected({ type: 'CustomerMerged', data: { customerId: a, duplicateId: b } }, '2024-06-30T10:00:00Z')]);
    expect((await sql`SELECT 1 FROM ${s('analytics_scores')} WHERE customer_id = ${b}`.execute(database.db)).rows).toEqual([]);
    await expectTotalsEqualFullAggregates();
    await sql`UPDATE ${s('analytics_scores')} SET segment = 'Lost', clv = clv + 10 WHERE customer_id IN (${c}, ${d})`.execute(database.db);
    await sql`DELETE FROM ${s('analytics_scores')} WHERE customer_id = ${c}`.execute(database.db);
    await expectTotalsEqualFullAggregates();
    // Many one-customer batches: the delta rows are folded once past the bound.
    const { rows: some } = await sql<{ id: string }>`SELECT customer_id::text AS id FROM ${s('analytics_scores')} ORDER BY clv DESC LIMIT 150`.execute(
      database.db,
    );
    for (const [i, { id }] of some.entries()) await apply([purchase(id, `more-${i}`, 5 + (i % 7), '2024-06-30T11:00:00Z')]);
    expect(await totalsRows()).toBeLessThanOrEqual(SCORE_TOTALS_COMPACT_AT + 40);
    await expectTotalsEqualFullAggregates();
  });

  it('let writers of different customers proceed at once: a writer never waits for another here', async () => {
    const { rows } = await sql<Record<string, unknown>>`SELECT * FROM ${s('analytics_scores')} ORDER BY customer_id LIMIT 2`.execute(database.db);
    const [first, second] = rows as [Record<string, unknown>, Record<string, unknown>];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let written!: () => void;
    const wrote = new Promise<void>((resolve) => (written = resolve));
    // Enough delta rows (zero ones, which folding drops) for the next writer to fold them all...
    await sql`INSERT INTO ${s(SCORE_TOTALS)} (kind, key, customers, clv, churn_score, p_alive, value_per_month)
      SELECT 'segment', 'Champions', 0, 0, 0, 0, 0 FROM generate_series(1, ${SCORE_TOTALS_COMPACT_AT + 1})`.execute(database.db);
    // ...which is a transaction that changes a score, folds (holding the rows it deleted) and stays open...
    const open = database.db.transaction().execute(async (trx) => {
      await upsertScores(trx, read, [{ ...first, clv: Number(first.clv) + 1 }]);
      written();
      await held;
    });
    await wrote;
    try {
      // ...while another scores someone else, to completion, many times: it still sees those rows, and
      // folds what it can lock, passing over the held ones instead of waiting (statements time out at 5 s).
      const started = Date.now();
      for (let i = 0; i < SCORE_TOTALS_COMPACT_AT + 20; i++) await upsertScores(database.db, read, [{ ...second, clv: Number(second.clv) + i + 1 }]);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      release();
      await open;
    }
    await expectTotalsEqualFullAggregates();
  });

  it('are filled from the scores of a table made before them, value per month included', async () => {
    await sql`DROP TABLE ${s(SCORE_TOTALS)}`.execute(database.db);
    for (const trigger of ['insert', 'update', 'delete', 'truncate'])
      await sql`DROP TRIGGER ${sql.id(`analytics_score_totals_${trigger}`)} ON ${s('analytics_scores')}`.execute(database.db);
    await sql`ALTER TABLE ${s('analytics_scores')} DROP COLUMN value_per_month`.execute(database.db);
    await migrateModels(database.db, read);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${s('analytics_scores')} WHERE value_per_month IS NULL`.execute(database.db);
    expect(rows[0]!.n).toBe(0);
    await expectTotalsEqualFullAggregates();
    await sql`TRUNCATE ${s('analytics_scores')}`.execute(database.db);
    expect(await totalsRows()).toBe(0);
    expect((await service.segments()).segments).toEqual([]);
  });
});
