import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import type { CommandPort } from '../../api/deps.ts';
import type { Role } from '../../api/roles.ts';
import { seededRandom } from '../../analytics/models/random.ts';
import { simulateBgNbdCustomer } from '../../analytics/models/bgnbd.ts';
import { startApi, type ApiHarness } from '../api/support.ts';
import { sql } from 'kysely';
import { loadLatestModel } from '../../analytics/model-store.ts';
import { createAnalyticsReportingViews } from '../../analytics/reporting.ts';
import { scoreCustomer } from '../../analytics/scoring.ts';
import { dayOf, dayToIsoDate } from '../../analytics/models/time.ts';

let h: ApiHarness;
let app: CrmApp;
let commands: CommandPort;
const auth = (role: Role) => h.auth(role);
const customerIds: string[] = [];

beforeAll(async () => {
  // The API harness (read models and analytics projected in-process), with a 5 s bound on `?waitFor=`.
  h = await startApi('analytics_routes', { waitForTimeoutMs: 5_000 });
  app = h.app;
  commands = h.deps.commands;
});

afterAll(async () => {
  await h?.close();
});

/** Customers and purchases through the real command path, with business times spread over 2023-2024. */
async function recordHistory(customers: number) {
  const random = seededRandom(4);
  const ctx = (occurredAt: string) => ({ actor: { userId: 'loader', roles: ['admin'] }, correlationId: 'load', occurredAt });
  const week = 7 * 86_400_000;
  const start = Date.parse('2023-01-02T10:00:00Z');
  // Plans first (the random draws stay in a fixed order), then customers in parallel (independent streams).
  const plans = Array.from({ length: customers }, (_, i) => {
    const joined = start + Math.floor(random.next() * 20) * week;
    const history = simulateBgNbdCustomer({ r: 0.8, alpha: 3, a: 0.8, b: 2.5 }, (Date.parse('2024-06-28T00:00:00Z') - joined) / week, random);
    const nu = random.gamma(3, 60); // Gamma-Gamma: each customer has their own spend level
    return {
      i,
      joined,
      purchases: history.purchaseTimes.map((t) => ({
        at: new Date(joined + Math.round(t * week)).toISOString(),
        amount: Math.round(random.gamma(4, nu) * 100) / 100 + 1,
      })),
    };
  });
  const ids = new Array<string>(customers);
  const record = async ({ i, joined, purchases }: (typeof plans)[number]) => {
    // Fixed ids: the churn model's held-out split is a hash of the customer id, so the test stays deterministic.
    const customerId = `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`;
    const registered = await commands.execute(
      { type: 'RegisterCustomer', customerId, name: `Customer ${i}`, email: `c${i}@example.com` },
      ctx(new Date(joined - 3_600_000).toISOString()),
    );
    ids[i] = registered.id;
    for (const [k, p] of purchases.entries()) {
      await commands.execute(
        { type: 'RecordPurchase', customerId: registered.id, orderId: `o-${k}`, amount: p.amount, currency: 'EUR', occurredAt: p.at },
        ctx(p.at),
      );
    }
  };
  for (let i = 0; i < plans.length; i += 8) await Promise.all(plans.slice(i, i + 8).map(record));
  customerIds.push(...ids);
}

describe('analytics routes', () => {
  it('answer 404 before any model, 409 with nothing to fit, and check roles and input', async () => {
    const latest = await app.inject({ method: 'GET', url: '/analytics/models/latest', headers: auth('analyst') });
    expect(latest.statusCode).toBe(404);
    expect(latest.headers['content-type']).toMatch(/application\/problem\+json/);
    const empty = await app.inject({ method: 'POST', url: '/analytics/models', headers: auth('analyst'), payload: {} });
    expect(empty.statusCode).toBe(409);
    expect(empty.json().code).toBe('analytics.insufficient_data');
    const forbidden = await app.inject({ method: 'POST', url: '/analytics/models', headers: auth('sales'), payload: {} });
    expect(forbidden.statusCode).toBe(403);
    const bad = await app.inject({ method: 'POST', url: '/analytics/models', headers: auth('admin'), payload: { horizon: -3, timeUnit: 'year' } });
    expect(bad.statusCode).toBe(400);
    const fields = (bad.json().errors as { field: string }[]).map((e) => e.field).join(' ');
    expect(fields).toMatch(/horizon/);
    expect(fields).toMatch(/timeUnit/);
    // A discount rate of 1 (all of the value gone each period) is refused, as `crm fit --discount-rate` refuses it.
    for (const payload of [{ asOf: '1997-13-45' }, { discountRate: 'x' }, { discountRate: 1 }, { horizon: 1.5 }, { surprise: true }, { churnWindowDays: 1 }]) {
      const refused = await app.inject({ method: 'POST', url: '/analytics/models', headers: auth('admin'), payload });
      expect(refused.statusCode, JSON.stringify(payload)).toBe(400);
      expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    }
    for (const url of [
      '/analytics/clv?minClv=abc',
      '/analytics/clv?limit=0',
      '/analytics/clv?minClv=1e400',
      '/analytics/churn?minChurnScore=2',
      '/analytics/forecast?horizon=0',
      '/analytics/satisfaction?channel=fax',
      '/analytics/retention?from=2024-13',
      '/analytics/segments?x=1',
      '/analytics/clv?cohort=May',
      '/analytics/clv?minClv=10&maxClv=1',
      '/analytics/models/0',
      '/analytics/models/abc',
    ]) {
      const refused = await app.inject({ method: 'GET', url, headers: auth('analyst') });
      expect(refused.statusCode, url).toBe(400);
      expect(refused.headers['content-type'], url).toMatch(/application\/problem\+json/);
    }
    const badRange = await app.inject({ method: 'GET', url: '/analytics/retention?from=2024-05&to=2024-01', headers: auth('analyst') });
    expect(badRange.statusCode).toBe(400);
    // Named as every other query error names its field (it read `query.from`).
    expect(badRange.json().errors).toEqual([{ field: 'from', in: 'query', message: 'from must not be after to' }]);
  });

  it('POST /analytics/models fits on everything recorded before the request and GET /analytics/models/latest returns it', async () => {
    await recordHistory(80);
    const response = await app.inject({
      method: 'POST',
      url: '/analytics/models',
      headers: auth('analyst'),
      payload: { asOf: '2024-06-28', timeUnit: 'week', horizon: 52, discountRate: 0.01 },
    });
    expect(response.statusCode, response.body).toBe(201);
    const model = response.json();
    expect(model).toMatchObject({ version: 1, asOf: '2024-06-28', timeUnit: 'week', horizon: 52, discountRate: 0.01, customers: 80 });
    for (const key of ['r', 'alpha', 'a', 'b']) expect(model.bgnbd[key]).toBeGreaterThan(0);
    for (const key of ['p', 'q', 'v']) expect(model.gammaGamma[key]).toBeGreaterThan(0);
    expect(model.churn.auc).toBeGreaterThan(0);
    expect(model.churn.logLoss).toBeGreaterThan(0);
    console.log('fit timings (ms)', JSON.stringify(model.timings));
    const latest = await app.inject({ method: 'GET', url: '/analytics/models/latest', headers: auth('auditor') });
    expect(latest.statusCode).toBe(200);
    expect(latest.json()).toEqual(model);
    const byVersion = await app.inject({ method: 'GET', url: response.headers.location as string, headers: auth('analyst') });
    expect(byVersion.json()).toEqual(model);
    expect((await app.inject({ method: 'GET', url: '/analytics/models/99', headers: auth('analyst') })).statusCode).toBe(404);
  });

  it('serves per-customer figures and the reporting lists', async () => {
    const customer = await app.inject({ method: 'GET', url: `/analytics/customers/${customerIds[0]}`, headers: auth('analyst') });
    expect(customer.statusCode).toBe(200);
    const figures = customer.json();
    for (const key of ['clv', 'expectedPurchases', 'pAlive', 'churnScore']) expect(typeof figures[key]).toBe('number');
    expect(typeof figures.segment).toBe('string');
    expect(figures.rfm).toMatchObject({ timeUnit: 'week' });
    expect((await app.inject({ method: 'GET', url: '/analytics/customers/not-a-uuid', headers: auth('analyst') })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/analytics/customers/00000000-0000-4000-9000-000000000000', headers: auth('analyst') })).statusCode).toBe(
      404,
    );

    const clv = (await app.inject({ method: 'GET', url: '/analytics/clv?limit=10', headers: auth('analyst') })).json();
    expect(clv.total).toBe(80);
    expect(clv.items).toHaveLength(10);
    const churn = (await app.inject({ method: 'GET', url: '/analytics/churn?minChurnScore=0.5', headers: auth('analyst') })).json();
    for (const item of churn.items) expect(item.churnScore).toBeGreaterThanOrEqual(0.5);
    const segments = (await app.inject({ method: 'GET', url: '/analytics/segments', headers: auth('analyst') })).json();
    expect(segments.segments.reduce((s: number, x: { customers: number }) => s + x.customers, 0)).toBe(80);
    const retention = (await app.inject({ method: 'GET', url: '/analytics/retention?from=2023-01', headers: auth('analyst') })).json();
    expect(retention.cohorts.reduce((s: number, c: { size: number }) => s + c.size, 0)).toBe(80);
    const satisfaction = await app.inject({ method: 'GET', url: '/analytics/satisfaction?groupBy=channel', headers: auth('analyst') });
    expect(satisfaction.statusCode).toBe(200);
    const forecast = (await app.inject({ method: 'GET', url: '/analytics/forecast?horizon=3', headers: auth('analyst') })).json();
    expect(forecast.methods).toHaveLength(2);
    expect(forecast.methods[0].forecast).toHaveLength(3);
    const unknownFilter = await app.inject({ method: 'GET', url: '/analytics/clv?segment=Nobody', headers: auth('analyst') });
    expect(unknownFilter.statusCode).toBe(400);
    // Documented in the OpenAPI description, with the model's schema.
    const openapi = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    for (const path of [
      '/analytics/models',
      '/analytics/models/latest',
      '/analytics/customers/{id}',
      '/analytics/clv',
      '/analytics/churn',
      '/analytics/retention',
      '/analytics/satisfaction',
      '/analytics/segments',
      '/analytics/forecast',
    ]) {
      expect(Object.keys(openapi.paths)).toContain(path);
    }
  });

  it('walks a ranking by cursor: a customer whose score stays is on exactly one page while others move ahead of it', async () => {
    const scores = sql.id(h.schemas.read, 'analytics_scores');
    for (const [url, column] of [
      ['/analytics/clv', 'clv'],
      ['/analytics/churn', 'churn_score'],
    ] as const) {
      const whole = (await app.inject({ method: 'GET', url: `${url}?limit=500`, headers: auth('analyst') })).json();
      const ranked = whole.items.map((i: { customerId: string }) => i.customerId) as string[];
      expect(ranked).toHaveLength(80);
      const seen: string[] = [];
      let cursor: string | null = null;
      // Once the first page is read, the last customer of the ranking moves to its top (an offset then showed
      // the first page's last customer again on the second page).
      const moved = ranked.at(-1)!;
      const original = await sql<{ score: number }>`SELECT ${sql.ref(column)} AS score FROM ${scores} WHERE customer_id = ${moved}::uuid`.execute(
        h.database.db,
      );
      try {
        do {
          const page: { statusCode: number; body: string; json: () => any } = await app.inject({
            method: 'GET',
            url: `${url}?limit=7${cursor ? `&cursor=${cursor}` : ''}`,
            headers: auth('analyst'),
          });
          expect(page.statusCode, page.body).toBe(200);
          const body: { total: number; items: { customerId: string }[]; nextCursor: string | null } = page.json();
          expect(body.total).toBe(80);
          seen.push(...body.items.map((i: { customerId: string }) => i.customerId));
          if (seen.length === 7)
            await sql`UPDATE ${scores} SET ${sql.ref(column)} = ${column === 'clv' ? 1e9 : 1} WHERE customer_id = ${moved}::uuid`.execute(h.database.db);
          cursor = body.nextCursor;
        } while (cursor);
      } finally {
        await sql`UPDATE ${scores} SET ${sql.ref(column)} = ${original.rows[0]!.score} WHERE customer_id = ${moved}::uuid`.execute(h.database.db);
      }
      // Every customer once, in the ranking's order, but the one that moved behind the cursor.
      expect(seen).toEqual(ranked.slice(0, -1));
      // A cursor is for its ranking only, and says where a page starts: not with an offset.
      const first = (await app.inject({ method: 'GET', url: `${url}?limit=7`, headers: auth('analyst') })).json();
      const other = url === '/analytics/clv' ? '/analytics/churn' : '/analytics/clv';
      const foreign = await app.inject({ method: 'GET', url: `${other}?cursor=${first.nextCursor}`, headers: auth('analyst') });
      expect(foreign.statusCode).toBe(400);
      expect(foreign.json().errors[0]).toMatchObject({ field: 'cursor' });
      const both = await app.inject({ method: 'GET', url: `${url}?cursor=${first.nextCursor}&offset=7`, headers: auth('analyst') });
      expect(both.statusCode).toBe(400);
      expect(both.json().errors[0]).toMatchObject({ field: 'offset' });
    }
  });

  it('GET /analytics/customers/:id?asOf= scores from the purchases up to the end of that day, with the latest model or ?model=', async () => {
    const model = (await loadLatestModel(h.database.db, h.schemas.read))!;
    // A customer with purchases both before and after the day.
    let chosen: { id: string; asOf: string; purchases: { day: number; amount: number }[] } | undefined;
    for (const id of customerIds) {
      const purchases = (await h.store.readStream(`customer-${id}`))
        .filter((e) => e.type === 'PurchaseRecorded')
        .map((e) => ({ day: dayOf(String(e.metadata.occurredAt)), amount: (e.data as { amount: number }).amount }));
      const days = [...new Set(purchases.map((p) => p.day))].sort((a, b) => a - b);
      if (days.length >= 4) {
        chosen = { id, asOf: dayToIsoDate(days[2]!), purchases };
        break;
      }
    }
    expect(chosen, 'a simulated customer with 4+ purchase days').toBeDefined();
    const { id, asOf, purchases } = chosen!;
    const day = dayOf(`${asOf}T00:00:00Z`);
    // The expected figures, computed here from the customer's own events up to the end of the day.
    const upTo = purchases.filter((p) => p.day <= day);
    const byDay = new Map<number, number>();
    for (const p of upTo) byDay.set(p.day, (byDay.get(p.day) ?? 0) + p.amount);
    const days = [...byDay.keys()].sort((a, b) => a - b);
    const summary = {
      firstDay: days[0]!,
      lastDay: days.at(-1)!,
      purchaseDays: days.length,
      totalValue: upTo.reduce((s, p) => s + p.amount, 0),
      firstDayValue: byDay.get(days[0]!)!,
    };
    const none = {
      refunds: 0,
      complaints: 0,
      complaintsOpen: 0,
      complaintsResolved: 0,
      resolutionSeconds: 0,
      responsesOpened: 0,
      responsesClicked: 0,
      responsesConverted: 0,
      responsesUnsubscribed: 0,
      dealsOpen: 0,
      dealsWon: 0,
      dealsLost: 0,
      activities: 0,
      lastActivityDay: null,
    };
    const expected = scoreCustomer(model, { customerId: id, purchases: summary, ...none }, day)!;

    const response = await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${asOf}`, headers: auth('analyst') });
    expect(response.statusCode, response.body).toBe(200);
    const past = response.json();
    expect(past).toMatchObject({ customerId: id, asOf, modelVersion: model.version, segment: expected.segment });
    expect(past.rfm).toMatchObject({ frequency: 2, recency: expected.rfm.recency, T: expected.rfm.T });
    for (const key of ['clv', 'expectedPurchases', 'pAlive', 'churnScore'] as const) expect(past[key]).toBeCloseTo(expected[key], 9);
    // Today's figures differ: later purchases count there.
    const now = (await app.inject({ method: 'GET', url: `/analytics/customers/${id}`, headers: auth('analyst') })).json();
    expect(now.rfm.frequency).toBeGreaterThan(2);
    // The same with the model named; an unknown version is 404, `model` without `asOf` is 400.
    expect(
      (await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${asOf}&model=${model.version}`, headers: auth('analyst') })).json(),
    ).toEqual(past);
    expect((await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${asOf}&model=99`, headers: auth('analyst') })).statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: `/analytics/customers/${id}?model=1`, headers: auth('analyst') })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=2024-02-30`, headers: auth('analyst') })).statusCode).toBe(400);
    // A day that has not begun: its figures are not known yet (today's are).
    const tomorrow = new Date(Date.now() + 86_400_000 + 6 * 60_000).toISOString().slice(0, 10);
    const future = await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${tomorrow}`, headers: auth('analyst') });
    expect(future.statusCode, future.body).toBe(400);
    expect(future.json().errors.map((e: { field: string }) => e.field)).toEqual(['asOf']);
    const today = new Date().toISOString().slice(0, 10);
    expect((await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${today}`, headers: auth('analyst') })).statusCode).toBe(200);
    const futureFit = await app.inject({ method: 'POST', url: '/analytics/models', headers: auth('admin'), payload: { asOf: tomorrow } });
    expect(futureFit.statusCode, futureFit.body).toBe(400);
    expect(futureFit.json().errors.map((e: { field: string }) => e.field)).toEqual(['asOf']);
    // Before the first purchase: no figures yet.
    const before = (await app.inject({ method: 'GET', url: `/analytics/customers/${id}?asOf=${dayToIsoDate(days[0]! - 1)}`, headers: auth('analyst') })).json();
    expect(before).toMatchObject({ clv: null, expectedPurchases: null, rfm: null });
  });

  it('GET /analytics/forecast fits on complete months and names the running one', async () => {
    const forecast = (await app.inject({ method: 'GET', url: '/analytics/forecast?horizon=3', headers: auth('analyst') })).json();
    // The simulated purchases end on 2024-06-28, before June is over: June is partial and left out.
    expect(forecast).toMatchObject({ lastCompleteMonth: '2024-05', partialMonth: '2024-06' });
    expect(forecast.history.at(-1).month).toBe('2024-05');
    expect(forecast.methods[0].forecast[0].month).toBe('2024-06');
  });

  it('serves the discounted-retention CLV beside the BG/NBD clv, per customer and per segment, with its parameters, and in a reporting view', async () => {
    const id = customerIds[0]!;
    const figures = (await app.inject({ method: 'GET', url: `/analytics/customers/${id}`, headers: auth('analyst') })).json();
    const params = figures.clvRetentionParameters;
    expect(params).toMatchObject({ period: 'month', marginRate: 1 });
    expect(params.retentionRate).toBeGreaterThan(0);
    expect(params.retentionRate).toBeLessThan(1);
    // The mean CRR of the last 12 complete months (the month the data end in, still running, left out).
    const end = figures.observationEnd as string;
    const endsMonth = dayToIsoDate(dayOf(`${end}T00:00:00Z`) + 1).slice(0, 7) !== end.slice(0, 7);
    const lastComplete = endsMonth ? end.slice(0, 7) : dayToIsoDate(dayOf(`${end.slice(0, 7)}-01T00:00:00Z`) - 1).slice(0, 7);
    const { periods, partialMonth } = (await app.inject({ method: 'GET', url: '/analytics/retention', headers: auth('analyst') })).json();
    // The month the data end in, still running, is named: its figures are provisional.
    expect(partialMonth).toBe(periods.at(-1).period);
    const earlier = (await app.inject({ method: 'GET', url: `/analytics/retention?to=${lastComplete}`, headers: auth('analyst') })).json();
    expect(earlier.periods.at(-1).period).toBe(lastComplete);
    expect(earlier.partialMonth).toBeNull();
    const crr = (periods as { period: string; crr: number | null }[])
      .filter((p) => p.period <= lastComplete)
      .slice(-12)
      .flatMap((p) => (p.crr === null ? [] : [p.crr]));
    expect(periods.at(-1).period > lastComplete, 'the data end inside a month').toBe(true);
    expect(params.retentionRate).toBeCloseTo(Math.min(0.99, crr.reduce((a, b) => a + b, 0) / crr.length), 12);
    // The model's 0.01 per week as a monthly rate.
    expect(params.discountRate).toBeCloseTo(1.01 ** (365.25 / 12 / 7) - 1, 12);
    const scoredDay = Math.max(dayOf(`${figures.observationEnd}T00:00:00Z`), dayOf(`${figures.lastPurchaseDay}T00:00:00Z`));
    const months = Math.max(1, (scoredDay - dayOf(`${figures.firstPurchaseDay}T00:00:00Z`)) / (365.25 / 12));
    const margin = figures.netValue / months;
    expect(figures.marginPerMonth).toBeCloseTo(margin, 9);
    expect(figures.clvRetention).toBeCloseTo(margin / (1 + params.discountRate - params.retentionRate), 9);
    expect(typeof figures.clv).toBe('number');

    const segments = (await app.inject({ method: 'GET', url: '/analytics/segments', headers: auth('analyst') })).json();
    expect(segments.clvRetentionParameters).toEqual(params);
    for (const segment of segments.segments) expect(segment.meanClvRetention).toBeGreaterThan(0);

    const reporting = `${h.schemas.reporting}_analytics`;
    await createAnalyticsReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: reporting });
    const { rows } = await sql<{
      clv_retention: number;
      retention_rate: number;
      margin_rate: number;
      discount_rate: number;
    }>`SELECT clv_retention, retention_rate, margin_rate, discount_rate
      FROM ${sql.id(reporting, 'analytics_clv_retention')} WHERE customer_id = ${id}::uuid`.execute(h.database.db);
    expect(rows[0]!.clv_retention).toBeCloseTo(figures.clvRetention, 6);
    expect(rows[0]).toMatchObject({ retention_rate: params.retentionRate, margin_rate: 1 });
    const bySegment = await sql<{
      segment: string;
      mean_clv_retention: number;
    }>`SELECT segment, mean_clv_retention FROM ${sql.id(reporting, 'analytics_segments')}`.execute(h.database.db);
    for (const s of segments.segments) expect(bySegment.rows.find((r) => r.segment === s.segment)!.mean_clv_retention).toBeCloseTo(s.meanClvRetention, 6);
  });
});

describe("a merged duplicate's figures", () => {
  it('answer 404 naming the primary they count under, live and as of a day', async () => {
    // Found by an analyst: "unknown, or no analytics event yet" for a customer with two purchases, merged.
    const ctx = { actor: { userId: 'loader', roles: ['admin'] }, correlationId: 'merge' };
    const [primary, duplicate] = ['10000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000002'];
    for (const [customerId, name] of [
      [primary, 'Alice Alpha'],
      [duplicate, 'Alice A.'],
    ] as const) {
      await commands.execute(
        { type: 'RegisterCustomer', customerId, name, email: `${name.replace(/\W/g, '')}@example.com` },
        { ...ctx, occurredAt: '2024-01-02T00:00:00Z' },
      );
      await commands.execute(
        { type: 'RecordPurchase', customerId, orderId: `o-${name}`, amount: 50, currency: 'EUR' },
        { ...ctx, occurredAt: '2024-02-02T00:00:00Z' },
      );
    }
    const merged = await commands.execute({ type: 'MergeCustomer', customerId: primary, duplicateId: duplicate }, ctx);
    for (const url of [`/analytics/customers/${duplicate}?waitFor=${merged.position}`, `/analytics/customers/${duplicate}?asOf=2024-03-01`]) {
      const res = await app.inject({ method: 'GET', url, headers: auth('analyst') });
      expect(res.statusCode, url).toBe(404);
      expect(res.json()).toMatchObject({ code: 'customer.merged', details: { customerId: duplicate, primaryId: primary } });
      expect(res.json().detail).toContain(`merged into ${primary}`);
    }
    const figures = (await app.inject({ method: 'GET', url: `/analytics/customers/${primary}`, headers: auth('analyst') })).json();
    expect(figures.netValue).toBe(100);
  });
});
