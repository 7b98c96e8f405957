import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { createAnalyticsService, InsufficientData } from '../../analytics/service.ts';
import { SCORE_TOTALS } from '../../analytics/tables.ts';
import { analyticsTestDatabase, purchase, registered } from './support.ts';

/**
 * Histories real small businesses have, where a model reaches the edge of its parameters: no fit may
 * store a figure that is not a number, and one stored by an earlier version is repaired.
 */
const h = analyticsTestDatabase('analytics_degenerate');

/** Ten customers buying alike: 100 EUR on the same three days. */
const identicalCustomers = () =>
  Array.from({ length: 10 }, () => randomUUID()).flatMap((id) => [
    registered(id, '2026-02-01T00:00:00.000Z'),
    ...['2026-03-01', '2026-06-01', '2026-09-01'].map((day, i) => purchase(id, `${id}-${i}`, 100, `${day}T10:00:00.000Z`)),
  ]);

describe('a fit at the edge of its parameters', () => {
  it('is refused, saying why, and leaves the model in use and its totals as they were, where it stored NaN scores', async () => {
    const schema = h.schemas.read;
    await h.run(schema, [identicalCustomers()]);
    const service = createAnalyticsService({ db: h.db, schema, clock: () => new Date('2026-11-30T00:00:00Z') });
    const usable = await service.fitModels({ timeUnit: 'day', horizon: 365, discountRate: 0 });
    expect(usable.warnings).toEqual(expect.any(Array));
    const before = await service.clv({ limit: 10 });
    expect(before.summary.totalClv).toEqual(expect.any(Number));

    const refused = await service.fitModels({ timeUnit: 'month', horizon: 3650, discountRate: 0 }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(InsufficientData);
    expect((refused as Error).message).toMatch(/no finite value for 10 of 10 customers over 3650 months/);
    expect((refused as Error).message).toMatch(/the model in use is unchanged/);
    expect((await service.latestModel())?.version).toBe(usable.version);
    const after = await service.clv({ limit: 10 });
    expect(after.summary).toEqual(before.summary);
    const { rows } = await sql<{
      n: number;
    }>`SELECT count(*)::int AS n FROM ${sql.id(schema, 'analytics_scores')} WHERE NOT (clv BETWEEN -1e300 AND 1e300)`.execute(h.db);
    expect(rows[0]!.n).toBe(0);
  });
});

describe('scores an earlier version stored as NaN', () => {
  it('are taken out at the next start, and the totals counted again from the scores', async () => {
    const schema = h.schemas.events; // a second schema of this file's own
    await h.run(schema, [identicalCustomers()]);
    const service = createAnalyticsService({ db: h.db, schema, clock: () => new Date('2026-11-30T00:00:00Z') });
    await service.fitModels({ timeUnit: 'day', horizon: 365, discountRate: 0 });
    const scores = sql.id(schema, 'analytics_scores');
    // What a fit stored before 2026-12-07: three customers' figures NaN, which the totals' trigger summed.
    await sql`UPDATE ${scores} SET clv = 'NaN', expected_purchases = 'NaN', p_alive = 'Infinity'
      WHERE customer_id IN (SELECT customer_id FROM ${scores} ORDER BY customer_id LIMIT 3)`.execute(h.db);
    const spoilt = await service.clv({ limit: 10 });
    // NaN here, null in the JSON answer.
    expect(Number.isFinite(spoilt.summary.totalClv)).toBe(false);

    await createAnalyticsProjection().migrate(h.db, schema);
    // Unscored until the next fit or purchase, as before a fit; the others keep theirs.
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${scores}`.execute(h.db);
    expect(rows[0]!.n).toBe(7);
    const repaired = await service.clv({ limit: 10 });
    const { rows: sums } = await sql<{ total: number }>`SELECT sum(clv)::float8 AS total FROM ${scores}`.execute(h.db);
    expect(repaired.summary.totalClv).toBeCloseTo(sums[0]!.total, 6);
    const { rows: totals } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schema, SCORE_TOTALS)} WHERE clv = 'NaN'`.execute(h.db);
    expect(totals[0]!.n).toBe(0);
  });
});
