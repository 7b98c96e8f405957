import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { purchaseDaysUpTo } from '../../analytics/as-of.ts';
import { cohortTable, retentionRates } from '../../analytics/models/retention.ts';
import { dayOf, monthOfDay } from '../../analytics/models/time.ts';
import { KEPT_ACTIVE_WINDOW_DAYS, keptRetention, retentionShare, withPurchaseDay } from '../../analytics/retention-counts.ts';
import { createAnalyticsService } from '../../analytics/service.ts';
import { simulatedHistory } from './simulate.ts';
import { analyticsTestDatabase, projected, purchase } from './support.ts';

const h = analyticsTestDatabase('retention_counts');
const day = (iso: string) => dayOf(`${iso}T00:00:00Z`);

describe('a customer list of last purchase days per month', () => {
  it('gains a month, or a later last day within one, never an earlier one', () => {
    let list: number[] = [];
    list = withPurchaseDay(list, day('2024-03-10'));
    list = withPurchaseDay(list, day('2024-01-20'));
    list = withPurchaseDay(list, day('2024-03-05'));
    list = withPurchaseDay(list, day('2024-03-28'));
    list = withPurchaseDay(list, day('2024-02-01'));
    expect(list).toEqual([day('2024-01-20'), day('2024-02-01'), day('2024-03-28')]);
  });

  it('shares its cohort months and the month starts within the window after each last day', () => {
    const share = retentionShare([day('2024-01-20'), day('2024-03-28')]);
    expect(share.cohortMonths).toEqual(['2024-01|2024-01', '2024-01|2024-03']);
    // Active at t when a day lies in [t - 365, t): from Feb 2024 to Jan 2025 for Jan 20, Apr 2024 to Mar 2025 for Mar 28.
    expect(share.boundaries.sort()).toEqual(
      [
        '2024-02',
        '2024-03',
        '2024-04',
        '2024-05',
        '2024-06',
        '2024-07',
        '2024-08',
        '2024-09',
        '2024-10',
        '2024-11',
        '2024-12',
        '2025-01',
        '2025-02',
        '2025-03',
      ].map((m) => `${m}-01`),
    );
    // Each listed day with the first day of the next one's month; the last with none.
    expect(share.gaps).toEqual([`${day('2024-01-20')}|${day('2024-03-01')}`, `${day('2024-03-28')}|`]);
    expect(retentionShare([])).toEqual({ cohortMonths: [], boundaries: [], gaps: [] });
  });
});

describe('kept retention counts', () => {
  /** The cohort table and CRR as computed from every customer's purchase days (the path the counts replace). */
  const fromPurchaseDays = async (schema: string, lastMonth: string, from?: string, window = KEPT_ACTIVE_WINDOW_DAYS) => {
    const customers = await purchaseDaysUpTo(h.db, schema, day('2100-01-01'));
    const cohorts = cohortTable(customers, lastMonth).filter((c) => !from || c.cohort >= from);
    const first = from ?? cohorts[0]!.cohort;
    return { cohorts, periods: retentionRates(customers, first, lastMonth, window) };
  };

  const rowsOf = async (schema: string, table: string, order: string) =>
    (await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(schema, table)} ORDER BY ${sql.ref(order)}`.execute(h.db)).rows;

  it('equal the cohort table and CRR from the purchase days, after back-dated purchases and merges, whatever the batches', async () => {
    const history = simulatedHistory(250, 5);
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const extra = [
      purchase(a, 'a1', 30, '2024-03-10T10:00:00Z'),
      purchase(a, 'a2', 30, '2024-03-20T10:00:00Z'),
      purchase(b, 'b1', 40, '2024-05-02T10:00:00Z'),
      // Back-dated: a's cohort becomes 2023-11, b's months move to the primary on the merge.
      purchase(a, 'a0', 10, '2023-11-30T10:00:00Z'),
      purchase(c, 'c1', 5, '2023-06-15T10:00:00Z'),
      projected({ type: 'CustomerMerged', data: { customerId: a, duplicateId: b } }, '2024-06-01T00:00:00Z'),
      purchase(a, 'a3', 20, '2024-06-10T10:00:00Z'),
      projected({ type: 'CustomerMerged', data: { customerId: c, duplicateId: a } }, '2024-06-20T00:00:00Z'),
    ];
    const events = [...history, ...extra];
    const one = `${h.schemas.read}_one`;
    const many = `${h.schemas.read}_many`;
    await h.run(one, [events]);
    const batches = [];
    for (let i = 0; i < history.length; i += 97) batches.push(history.slice(i, i + 97));
    await h.run(many, [...batches, ...extra.map((e) => [e])]);

    const lastMonth = monthOfDay(day('2024-06-30'));
    for (const schema of [one, many]) {
      expect(await keptRetention(h.db, schema, lastMonth, undefined)).toEqual(await fromPurchaseDays(schema, lastMonth));
      expect(await keptRetention(h.db, schema, '2024-02', '2023-09')).toEqual(await fromPurchaseDays(schema, '2024-02', '2023-09'));
    }
    // Other windows from the kept lists: short ones (a customer lapses between two months), around the
    // kept one and around a month's length (where merged intervals meet or not), and long ones.
    for (const window of [1, 27, 28, 29, 30, 31, 45, 90, 364, 366, 800]) {
      expect(await keptRetention(h.db, one, lastMonth, undefined, window)).toEqual(await fromPurchaseDays(one, lastMonth, undefined, window));
      expect(await keptRetention(h.db, many, '2024-02', '2023-09', window)).toEqual(await fromPurchaseDays(many, '2024-02', '2023-09', window));
    }
    // Rows are the same whatever the batch boundaries (a count back to 0 is no row), as a replay compares them.
    for (const [table, order] of [
      ['analytics_cohort_activity', 'cohort_month'],
      ['analytics_active_at', 'boundary'],
      ['analytics_listed_gap', 'gap'],
      ['analytics_customer', 'customer_id'],
    ] as const)
      expect(await rowsOf(many, table, order)).toEqual(await rowsOf(one, table, order));
    for (const table of ['analytics_cohort_activity', 'analytics_listed_gap']) {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(one, table)} WHERE customers <= 0`.execute(h.db);
      expect(rows[0]!.n).toBe(0);
    }
  });

  it('serve GET /analytics/retention for the kept window, and for another window from the counted gaps', async () => {
    const schema = `${h.schemas.read}_one`;
    const service = createAnalyticsService({ db: h.db, schema, clock: () => new Date('2024-07-01T00:00:00Z') });
    const kept = await service.retention({});
    expect(kept.activeWindowDays).toBe(365);
    // The clock is past the data's last month: none is still running.
    expect(kept).toEqual({ activeWindowDays: 365, ...(await fromPurchaseDays(schema, kept.periods.at(-1)!.period)), partialMonth: null });
    const other = await service.retention({ activeWindowDays: 90, from: '2023-03' });
    const customers = await purchaseDaysUpTo(h.db, schema, day('2100-01-01'));
    expect(other.periods).toEqual(retentionRates(customers, '2023-03', other.periods.at(-1)!.period, 90));
  });
});
