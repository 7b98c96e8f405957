import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { aggregatesAsOf } from '../../analytics/as-of.ts';
import { aggregateFromRow } from '../../analytics/projection.ts';
import { createAnalyticsService } from '../../analytics/service.ts';
import { createAnalyticsReportingViews } from '../../analytics/reporting.ts';
import { rfmOf } from '../../analytics/models/rfm.ts';
import { dayOf } from '../../analytics/models/time.ts';
import { analyticsTestDatabase, projected } from './support.ts';

const harness = analyticsTestDatabase('analytics_base_currency', { baseCurrency: 'EUR' });
const { schemas, run } = harness;
let db: Kysely<unknown>;
beforeAll(() => {
  db = harness.db;
});

const buy = (customerId: string, orderId: string, amount: number, currency: string, at: string) =>
  projected({ type: 'PurchaseRecorded', data: { customerId, orderId, amount, currency } }, at);
const refund = (customerId: string, orderId: string, amount: number, currency: string, at: string) =>
  projected({ type: 'PurchaseRefunded', data: { customerId, orderId, refundId: `r-${orderId}`, amount, currency, reason: null } }, at);
const rate = (currency: string, value: string, validFrom: string, at: string, previousRate: string | null = null, baseCurrency = 'EUR') =>
  projected({ type: 'ExchangeRateSet', data: { currency, baseCurrency, rate: value, validFrom, previousRate } }, at);

const customerRow = async (schema: string, id: string) =>
  (await sql<Record<string, any>>`SELECT * FROM ${sql.id(schema, 'analytics_customer')} WHERE customer_id = ${id}::uuid`.execute(db)).rows[0]!;
const dayValues = async (schema: string, id: string) =>
  (
    await sql<{ day: string; value: string }>`SELECT to_char(day, 'YYYY-MM-DD') AS day, value::text AS value FROM ${sql.id(schema, 'analytics_purchase_day')}
    WHERE customer_id = ${id}::uuid ORDER BY day`.execute(db)
  ).rows;
const dump = async (schema: string) => {
  const out: Record<string, unknown[]> = {};
  for (const [table, order] of [
    ['analytics_customer', 'customer_id'],
    ['analytics_purchase_day', 'purchase_day_id'],
    ['analytics_order', 'order_key'],
    ['analytics_revenue_day', 'day'],
    ['analytics_amount', 'amount_id'],
    ['analytics_rate', 'rate_id'],
    ['analytics_state', 'id'],
  ] as const) {
    out[table] = (await sql.raw<Record<string, unknown>>(`SELECT * FROM "${schema}"."${table}" ORDER BY ${order}`).execute(db)).rows;
  }
  return out;
};

describe('analytics in the base currency', () => {
  const alice = randomUUID();
  const bob = randomUUID();
  // Rates to EUR: USD 0.9 from January, 0.95 from February; JPY only arrives after the March purchase.
  const first = [
    rate('USD', '0.9', '2024-01-01T00:00:00Z', '2024-01-01T08:00:00Z'),
    rate('USD', '0.95', '2024-02-01T00:00:00Z', '2024-02-01T08:00:00Z'),
    // A rate to another base currency is not ours: it converts nothing.
    rate('JPY', '0.0067', '2024-01-01T00:00:00Z', '2024-01-01T09:00:00Z', null, 'USD'),
    buy(alice, 'o1', 100, 'EUR', '2024-01-10T10:00:00Z'),
    buy(alice, 'o2', 50, 'USD', '2024-01-20T10:00:00Z'),
    buy(alice, 'o3', 40, 'USD', '2024-02-10T10:00:00Z'),
    refund(alice, 'o3', 10, 'USD', '2024-02-15T10:00:00Z'),
    buy(alice, 'o4', 10_000, 'JPY', '2024-03-05T10:00:00Z'),
    buy(bob, 'b1', 20, 'USD', '2024-01-15T10:00:00Z'),
    buy(bob, 'b2', 30, 'USD', '2024-02-20T10:00:00Z'),
  ];
  const healed = [rate('JPY', '0.0061', '2024-03-01T00:00:00Z', '2024-03-06T08:00:00Z')];
  const corrected = [
    rate('JPY', '0.0062', '2024-03-01T00:00:00Z', '2024-03-07T08:00:00Z', '0.0061'),
    // An older JPY rate set late: the March purchase stays under the nearer 1 March rate.
    rate('JPY', '0.006', '2024-01-01T00:00:00Z', '2024-03-08T08:00:00Z'),
  ];
  const service = () => createAnalyticsService({ db, schema: schemas.read, baseCurrency: 'EUR' });

  it('counts every purchase whatever its currency; one without a rate is pending and named', async () => {
    await run(schemas.read, [first]);
    const a = await customerRow(schemas.read, alice);
    // EUR 100 + USD 50 x 0.9 + USD 40 x 0.95 - USD 10 x 0.95 (refund on 15 Feb) + JPY pending (0).
    expect(a.total_value).toBe('173.5000');
    expect(a.refund_value).toBe('9.5000');
    expect(a.purchase_days).toBe(4);
    expect(a.orders).toBe(4);
    expect(a.pending_amounts).toBe(1);
    expect(a.currency).toBe('EUR');
    expect(await dayValues(schemas.read, alice)).toEqual([
      { day: '2024-01-10', value: '100.0000' },
      { day: '2024-01-20', value: '45.0000' },
      { day: '2024-02-10', value: '28.5000' },
      { day: '2024-03-05', value: '0.0000' },
    ]);
    const figures = (await service().customer(alice))!;
    expect(figures.baseCurrency).toBe('EUR');
    expect(figures.missingRates).toEqual(['JPY 2024-03']);
    // Customers buying only in USD have converted values too: 20 x 0.9 + 30 x 0.95.
    const b = await customerRow(schemas.read, bob);
    expect(b.total_value).toBe('46.5000');
    expect(b.currency).toBe('USD');
    expect(b.pending_amounts).toBe(0);
    expect((await service().customer(bob))!.missingRates).toEqual([]);
    // The reporting view carries the same, in its columns added at the end.
    await createAnalyticsReportingViews(db, { readSchema: schemas.read, reportingSchema: schemas.reporting });
    const view = (
      await sql<Record<string, any>>`SELECT customer_id::text AS id, net_value::text AS net_value, currency, base_currency, pending_amounts, missing_rates
      FROM ${sql.id(schemas.reporting, 'analytics_customers')} ORDER BY analytics_customers.net_value`.execute(db)
    ).rows;
    expect(view).toEqual([
      { id: bob, net_value: '46.5000', currency: 'USD', base_currency: 'EUR', pending_amounts: 0, missing_rates: [] },
      { id: alice, net_value: '173.5000', currency: 'EUR', base_currency: 'EUR', pending_amounts: 1, missing_rates: ['JPY 2024-03'] },
    ]);
  });

  it('as of a day, a refund made after it does not lower its order yet (nor fits cut at that day)', async () => {
    // The USD 10 refund of o3 (bought 10 Feb) came on 15 Feb: on 12 Feb the order was worth 40 x 0.95.
    const before = (await service().customerAsOf(alice, '2024-02-12'))!;
    expect(before.netValue).toBeCloseTo(100 + 45 + 38, 9);
    expect(before.rfm).toMatchObject({ frequency: 2, monetary: (45 + 38) / 2 });
    const fitting = (await aggregatesAsOf(db, schemas.read, dayOf('2024-02-12T00:00:00Z'))).get(alice)!;
    expect(fitting.purchases).toMatchObject({ purchaseDays: 3, totalValue: 183, firstDayValue: 100 });
    // From the refund's day on it does, as in the live figures.
    expect((await service().customerAsOf(alice, '2024-02-15'))!.netValue).toBeCloseTo(100 + 45 + 28.5, 9);
    // Bob has no refund: the same either way.
    expect((await aggregatesAsOf(db, schemas.read, dayOf('2024-02-12T00:00:00Z'), bob)).get(bob)!.purchases).toMatchObject({ totalValue: 18 });
  });

  it('converts the pending amount once the rate arrives, and again when it is corrected', async () => {
    await run(schemas.read, [healed]);
    let a = await customerRow(schemas.read, alice);
    // JPY 10 000 x 0.0061 = 61.
    expect(a.total_value).toBe('234.5000');
    expect(a.pending_amounts).toBe(0);
    expect((await service().customer(alice))!.missingRates).toEqual([]);
    await run(schemas.read, [corrected]);
    a = await customerRow(schemas.read, alice);
    // Corrected to 0.0062: 62; the late January rate governs nothing of March.
    expect(a.total_value).toBe('235.5000');
    expect((await dayValues(schemas.read, alice)).at(-1)).toEqual({ day: '2024-03-05', value: '62.0000' });
    const revenue = (
      await sql<{ revenue: string }>`SELECT revenue::text AS revenue FROM ${sql.id(schemas.read, 'analytics_revenue_day')} WHERE day = '2024-03-05'`.execute(db)
    ).rows[0]!;
    expect(revenue.revenue).toBe('62.0000');
    // RFM at 1 April (days): 3 repeat days, monetary = mean of the repeat days' base values.
    const rfm = rfmOf(aggregateFromRow(a).purchases!, dayOf('2024-04-01T00:00:00Z'), 'day');
    expect(rfm.frequency).toBe(3);
    expect(rfm.monetary).toBeCloseTo((45 + 28.5 + 62) / 3, 10);
  });

  it('a later rate for an earlier period converts the amounts it governs, up to the next rate', async () => {
    const schema = `${schemas.read}_late`;
    const carol = randomUUID();
    await run(schema, [
      [
        rate('USD', '0.9', '2024-02-01T00:00:00Z', '2024-01-01T00:00:00Z'),
        buy(carol, 'c1', 10, 'USD', '2024-01-10T00:00:00Z'),
        buy(carol, 'c2', 10, 'USD', '2024-02-10T00:00:00Z'),
      ],
      [rate('USD', '0.8', '2024-01-01T00:00:00Z', '2024-03-01T00:00:00Z')],
    ]);
    // January at 0.8 (set late), February still at 0.9.
    expect(await dayValues(schema, carol)).toEqual([
      { day: '2024-01-10', value: '8.0000' },
      { day: '2024-02-10', value: '9.0000' },
    ]);
    expect((await customerRow(schema, carol)).pending_amounts).toBe(0);
  });

  it('gives identical rows on replay, whatever the batch boundaries', async () => {
    const all = [...first, ...healed, ...corrected];
    await run(`${schemas.read}_one`, [all]);
    await run(
      `${schemas.read}_each`,
      all.map((e) => [e]),
    );
    const live = await dump(schemas.read);
    expect(await dump(`${schemas.read}_one`)).toEqual(live);
    expect(await dump(`${schemas.read}_each`)).toEqual(live);
  });

  it('a merge carries pending amounts to the primary, and a later rate heals them there', async () => {
    const schema = `${schemas.read}_merge`;
    const primary = randomUUID();
    const duplicate = randomUUID();
    await run(schema, [
      [buy(primary, 'p1', 10, 'EUR', '2024-01-10T00:00:00Z'), buy(duplicate, 'd1', 1000, 'JPY', '2024-01-12T00:00:00Z')],
      [projected({ type: 'CustomerMerged', data: { customerId: primary, duplicateId: duplicate } }, '2024-01-20T00:00:00Z')],
    ]);
    expect((await customerRow(schema, primary)).pending_amounts).toBe(1);
    await run(schema, [[rate('JPY', '0.5', '2024-01-01T00:00:00Z', '2024-01-21T00:00:00Z')]]);
    const p = await customerRow(schema, primary);
    expect(p.pending_amounts).toBe(0);
    // EUR 10 + JPY 1000 x 0.5.
    expect(p.total_value).toBe('510.0000');
  });

  it('names the currency of the first purchase in business time, whatever order purchases were recorded in', async () => {
    const schema = `${schemas.read}_headline`;
    const carol = randomUUID();
    const dave = randomUUID();
    // Carol's February USD purchase is recorded before her January EUR one (an order feed catching up);
    // Dave buys in GBP and CHF at the same time: the code that sorts first names him, either way round.
    await run(schema, [
      [buy(carol, 'c2', 40, 'USD', '2024-02-10T10:00:00Z')],
      [buy(carol, 'c1', 100, 'EUR', '2024-01-10T10:00:00Z'), buy(dave, 'd1', 5, 'GBP', '2024-03-01T09:00:00Z')],
      [buy(dave, 'd2', 5, 'CHF', '2024-03-01T09:00:00Z'), buy(carol, 'c3', 10, 'JPY', '2024-03-01T10:00:00Z')],
    ]);
    const c = await customerRow(schema, carol);
    expect(c.currency).toBe('EUR');
    expect(new Date(c.first_purchase_at).toISOString()).toBe('2024-01-10T10:00:00.000Z');
    expect((await customerRow(schema, dave)).currency).toBe('CHF');
    // Recorded in the other order, the rows are the same.
    const reversed = `${schemas.read}_headline_reversed`;
    await run(reversed, [
      [buy(dave, 'd2', 5, 'CHF', '2024-03-01T09:00:00Z'), buy(carol, 'c3', 10, 'JPY', '2024-03-01T10:00:00Z')],
      [buy(carol, 'c1', 100, 'EUR', '2024-01-10T10:00:00Z'), buy(dave, 'd1', 5, 'GBP', '2024-03-01T09:00:00Z')],
      [buy(carol, 'c2', 40, 'USD', '2024-02-10T10:00:00Z')],
    ]);
    expect((await customerRow(reversed, carol)).currency).toBe('EUR');
    expect((await customerRow(reversed, dave)).currency).toBe('CHF');
  });

  it("a merge names the currency of the earlier first purchase of the two, the duplicate's too", async () => {
    const schema = `${schemas.read}_merge_headline`;
    const primary = randomUUID();
    const duplicate = randomUUID();
    await run(schema, [
      [buy(primary, 'p1', 10, 'EUR', '2024-02-10T00:00:00Z'), buy(duplicate, 'd1', 20, 'USD', '2024-01-12T00:00:00Z')],
      [projected({ type: 'CustomerMerged', data: { customerId: primary, duplicateId: duplicate } }, '2024-02-20T00:00:00Z')],
    ]);
    const p = await customerRow(schema, primary);
    expect(p.currency).toBe('USD');
    expect(new Date(p.first_purchase_at).toISOString()).toBe('2024-01-12T00:00:00.000Z');
    // A later purchase of the primary's in another currency changes nothing.
    await run(schema, [[buy(primary, 'p2', 5, 'GBP', '2024-03-01T00:00:00Z')]]);
    expect((await customerRow(schema, primary)).currency).toBe('USD');
  });

  it('fitting leaves customers with a missing rate out of Gamma-Gamma and says how many; the rate brings them in', async () => {
    const schema = `${schemas.read}_fit`;
    const fit = () => createAnalyticsService({ db, schema, baseCurrency: 'EUR', clock: () => new Date('2024-07-01T00:00:00Z') });
    const euro = Array.from({ length: 12 }, () => randomUUID());
    const yen = [randomUUID(), randomUUID()];
    const day = (month: number, d: number) => `2024-${String(month).padStart(2, '0')}-${String(d).padStart(2, '0')}T10:00:00Z`;
    // 12 repeat buyers in EUR, 2 in JPY with no JPY rate yet: each buys three times (values vary by customer).
    const buying = [...euro, ...yen].flatMap((id, i) => {
      const currency = i < euro.length ? 'EUR' : 'JPY';
      const scale = currency === 'JPY' ? 100 : 1;
      return [
        buy(id, `${i}-a`, (20 + i) * scale, currency, day(1, 1 + i)),
        buy(id, `${i}-b`, (30 + 2 * i) * scale, currency, day(2 + (i % 3), 3 + i)),
        buy(id, `${i}-c`, (25 + i) * scale, currency, day(5, 1 + i)),
      ];
    });
    await run(schema, [buying]);
    const before = await fit().fitModels({ timeUnit: 'week' });
    expect(before.customers).toBe(14);
    expect(before.fits.gammaGamma).toMatchObject({ customers: 12, leftOutMissingRates: 2, baseCurrency: 'EUR' });
    const list = await fit().clv({ limit: 50 });
    expect(list.baseCurrency).toBe('EUR');
    expect(
      list.items
        .filter((item) => item.missingRates.length > 0)
        .map((item) => item.customerId)
        .sort(),
    ).toEqual([...yen].sort());
    expect(list.items.find((item) => item.customerId === yen[0])!.missingRates).toEqual(['JPY 2024-01', 'JPY 2024-02', 'JPY 2024-05']);

    await run(schema, [[rate('JPY', '0.01', '2023-12-01T00:00:00Z', '2024-06-01T00:00:00Z')]]);
    const after = await fit().fitModels({ timeUnit: 'week' });
    expect(after.fits.gammaGamma).toMatchObject({ customers: 14, leftOutMissingRates: 0 });
  });

  it('figures scored with a model fitted in another base currency say so and say to refit', async () => {
    const schema = `${schemas.read}_refit`;
    const clock = () => new Date('2024-07-01T00:00:00Z');
    const buyers = Array.from({ length: 12 }, () => randomUUID());
    const day = (month: number, d: number) => `2024-${String(month).padStart(2, '0')}-${String(d).padStart(2, '0')}T10:00:00Z`;
    await run(schema, [
      buyers.flatMap((id, i) => [
        buy(id, `${i}-a`, 20 + i, 'EUR', day(1, 1 + i)),
        buy(id, `${i}-b`, 30 + 2 * i, 'EUR', day(2 + (i % 3), 3 + i)),
        buy(id, `${i}-c`, 25 + i, 'EUR', day(5, 1 + i)),
      ]),
    ]);
    const inEuro = createAnalyticsService({ db, schema, baseCurrency: 'EUR', clock });
    await inEuro.fitModels({ timeUnit: 'week' });
    expect((await inEuro.clv()).warnings).toEqual([]);
    expect((await inEuro.latestModel())!.warnings.filter((w) => w.includes('refit'))).toEqual([]);
    // CRM_BASE_CURRENCY changed since the fit.
    const inDollars = createAnalyticsService({ db, schema, baseCurrency: 'USD', clock });
    const said = expect.stringMatching(/^model 1 was fitted in EUR, not in the base currency USD: .*refit \(crm fit or POST \/analytics\/models\)$/);
    expect((await inDollars.latestModel())!.warnings).toEqual(expect.arrayContaining([said]));
    expect((await inDollars.clv()).warnings).toEqual([said]);
    expect((await inDollars.churn()).warnings).toEqual([said]);
    expect((await inDollars.segments()).warnings).toEqual([said]);
    expect((await inDollars.customer(buyers[0]!))!.warnings).toEqual([said]);
    expect((await inDollars.customerAsOf(buyers[0]!, '2024-06-01'))!.warnings).toEqual([said]);
    // Refitted in the new base: nothing to say.
    await inDollars.fitModels({ timeUnit: 'week' });
    expect((await inDollars.clv()).warnings).toEqual([]);
    expect((await inDollars.segments()).warnings).toEqual([]);
  });

  it('the largest accepted amounts at the largest accepted rate are stored exactly (no overflow jams the projection)', async () => {
    const schema = `${schemas.read}_large`;
    const whale = randomUUID();
    const largest = 900_000_000_000;
    const purchases = Array.from({ length: 150 }, (_, i) => buy(whale, `w${i}`, largest, 'JPY', `2024-01-${String(1 + (i % 28)).padStart(2, '0')}T10:00:00Z`));
    await run(schema, [[rate('JPY', '9999999999.9999999999', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z'), ...purchases]]);
    // 900 000 000 000 x 9 999 999 999.9999999999 = 9e21 - 90 each; 150 of them: 1.35e24 - 13 500.
    const each = 900_000_000_000n * 99_999_999_999_999_999_999n; // in ten-billionths of the base currency
    const total = 150n * each;
    const expected = `${total / 10_000_000_000n}.${String((total % 10_000_000_000n) / 1_000_000n).padStart(4, '0')}`;
    expect(expected).toBe('1349999999999999999986500.0000');
    expect((await customerRow(schema, whale)).total_value).toBe(expected);
  });

  it("while the previous version's tables serve (a rebuild), figures answer without a base currency instead of failing", async () => {
    const schema = `${schemas.read}_previous`;
    const dave = randomUUID();
    await run(schema, [[buy(dave, 'd1', 10, 'EUR', '2024-01-10T00:00:00Z')]]);
    // Version 3 had no table of amounts.
    await sql`DROP TABLE ${sql.id(schema, 'analytics_amount')}`.execute(db);
    const figures = (await createAnalyticsService({ db, schema, baseCurrency: 'EUR' }).customer(dave))!;
    expect(figures).toMatchObject({ baseCurrency: null, missingRates: [], netValue: 10 });
  });
});
