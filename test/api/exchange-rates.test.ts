import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { sql } from 'kysely';
import type { AuditDeps } from '../../audit/deps.ts';
import { verifyReadModels } from '../../audit/verify.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { recordBaseCurrency } from '../../projections/read-models/exchange-rates.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { expectProblem, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * Base currency EUR (the default). Every expected base figure below is computed by hand in the
 * comments: each amount times the rate valid at its business time, rounded to 4 decimals, summed.
 */
let h: ApiHarness;
/** What the reporting test reads back: ids made by the tests above it. */
const made = { customerId: '', bob: '', campaignId: '' };
beforeAll(async () => {
  h = await startApi('api_fx');
});
afterAll(async () => {
  await h?.close();
});

const send = async (role: Role, url: string, payload: unknown) => {
  const res = await h.app.inject({ method: 'POST', url, headers: h.auth(role), payload: payload as object });
  if (res.statusCode >= 300) throw new Error(`POST ${url} -> ${res.statusCode}: ${res.body}`);
  return json<{ id: string; revision: number; position: string }>(res);
};
const get = async (url: string, position: string, role: Role = 'analyst') => {
  const res = await h.app.inject({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}waitFor=${position}`, headers: h.auth(role) });
  expect(res.statusCode, res.body).toBe(200);
  return json(res);
};
const setRate = (currency: string, rate: number | string, validFrom: string, reason?: string) =>
  send('admin', '/exchange-rates', { currency, rate, validFrom, ...(reason ? { reason } : {}) });

describe('exchange rates: set, read at a time, correct', () => {
  it('answers the rate valid at a business time, and keeps a correction beside the rate it supersedes', async () => {
    await setRate('CHF', 1.05, '2026-01-01T00:00:00Z');
    await setRate('CHF', '0.95', '2026-02-15T00:00:00Z');
    const before = await get('/exchange-rates?currency=CHF&at=2025-12-31T23:59:59Z', '0');
    expect(before.rates).toEqual([]);
    const jan = await setRate('CHF', 1.05, '2026-01-01T00:00:00Z');
    expect(jan.revision).toBe(1); // the same rate again records nothing
    expect((await get('/exchange-rates?currency=CHF&at=2026-02-14T23:59:59Z', jan.position)).rates[0]).toMatchObject({ rate: 1.05, baseCurrency: 'EUR' });
    expect((await get('/exchange-rates?currency=CHF&at=2026-02-15T00:00:00Z', jan.position)).rates[0]).toMatchObject({ rate: 0.95, rateDecimal: '0.95' });

    // A correction of the rate from 15 February (the same instant, spelt with an offset).
    const fixed = await setRate('CHF', 0.9512, '2026-02-15T01:00:00+01:00', 'typo in the bank feed');
    const all = await get('/exchange-rates?currency=CHF', fixed.position);
    expect(all.rates.map((r: { rate: number }) => r.rate)).toEqual([1.05, 0.9512]);
    expect(all.rates[1]).toMatchObject({ previousRate: 0.95, corrections: 1, validFrom: '2026-02-15T00:00:00.000Z' });
    expect(all.history.map((r: { rate: number }) => r.rate)).toEqual([1.05, 0.95, 0.9512]);
    expect(all.history[2]).toMatchObject({ reason: 'typo in the bank feed', previousRate: 0.95 });
    expect(all.historyComplete).toBe(true);
  });

  it('refuses bad rates with a problem naming the field, and only admins set rates', async () => {
    const bad = async (payload: Record<string, unknown>, status: number, field: string) => {
      const res = await h.app.inject({ method: 'POST', url: '/exchange-rates', headers: h.auth('admin'), payload });
      const problem = expectProblem(res, status);
      expect(problem.errors?.map((e) => e.field) ?? [problem.field], res.body).toContain(field);
    };
    const ok = { currency: 'SEK', rate: 0.088, validFrom: '2026-01-01T00:00:00Z' };
    await bad({ ...ok, currency: 'EUR' }, 422, 'currency');
    await bad({ ...ok, currency: 'sek' }, 400, 'currency');
    await bad({ ...ok, rate: 0 }, 400, 'rate');
    // Sent as written: within a few units in the last place of a 10-decimal value, but 11 decimals.
    const close = await h.app.inject({
      method: 'POST',
      url: '/exchange-rates',
      headers: { ...h.auth('admin'), 'content-type': 'application/json' },
      payload: '{"currency":"SEK","rate":98360.32418256872,"validFrom":"2026-01-01T00:00:00Z"}',
    });
    const problem = expectProblem(close, 400);
    expect(problem.errors?.map((e) => e.field) ?? [problem.field], close.body).toContain('rate');
    await bad({ ...ok, rate: -1 }, 400, 'rate');
    await bad({ ...ok, rate: '0.00000000001' }, 400, 'rate');
    await bad({ ...ok, rate: 1e12 }, 400, 'rate');
    await bad({ ...ok, rate: 'NaN' }, 400, 'rate');
    await bad({ ...ok, validFrom: '2026-13-01T00:00:00Z' }, 400, 'validFrom');
    await bad({ currency: 'SEK', rate: 0.088 }, 400, 'validFrom');
    await bad({ ...ok, extra: 1 }, 400, 'extra');
    const sales = await h.app.inject({ method: 'POST', url: '/exchange-rates', headers: h.auth('sales'), payload: ok });
    expectProblem(sales, 403);
    expectProblem(await h.app.inject({ method: 'GET', url: '/exchange-rates?at=yesterday', headers: h.auth('analyst') }), 400);
  });
});

describe('customer revenue in the base currency', () => {
  it('converts each purchase and refund at the rate valid at its business time, flags a missing rate, and heals when it arrives', async () => {
    await setRate('USD', 0.9, '2026-01-01T00:00:00Z');
    await setRate('USD', 0.8, '2026-02-15T00:00:00Z');
    const email = `fx-${randomUUID()}@example.com`;
    const c = await send('sales', '/customers', { name: 'Fx Buyer', email, occurredAt: '2026-01-02T00:00:00Z' });
    made.customerId = c.id;
    const buy = (orderId: string, amount: number, currency: string, occurredAt: string) =>
      send('sales', `/customers/${c.id}/purchases`, { orderId, amount, currency, occurredAt });
    await buy('E-1', 100, 'EUR', '2026-01-10T10:00:00Z'); // 100
    await buy('U-1', 50, 'USD', '2026-02-01T10:00:00Z'); // 50 x 0.9 = 45
    await buy('U-2', 30.5, 'USD', '2026-02-20T10:00:00Z'); // 30.5 x 0.8 = 24.4
    let last = await send('sales', `/customers/${c.id}/refunds`, { orderId: 'U-2', amount: 10, currency: 'USD', occurredAt: '2026-02-25T10:00:00Z' }); // -10 x 0.8 = -8
    let customer = await get(`/customers/${c.id}`, last.position);
    expect(customer).toMatchObject({ baseCurrency: 'EUR', revenueBase: 161.4, missingRates: [], revenueByCurrency: { EUR: 100, USD: 70.5 } });
    // The amount in its own currency is unchanged: the first purchase's currency.
    expect(customer).toMatchObject({ revenue: 100, currency: 'EUR' });
    // `refunded` is in that currency only (no EUR refund); the USD refund is in `refundedBase`: 10 x 0.8.
    expect(customer).toMatchObject({ refunded: 0, refundedBase: 8 });

    last = await buy('J-1', 1000, 'JPY', '2026-03-05T10:00:00Z');
    customer = await get(`/customers/${c.id}`, last.position);
    expect(customer).toMatchObject({ revenueBase: null, missingRates: ['JPY 2026-03'], revenueByCurrency: { EUR: 100, USD: 70.5, JPY: 1000 } });
    // A purchase's missing rate leaves the refunds' figure known.
    expect(customer).toMatchObject({ refundedBase: 8 });
    const listed = async (position: string) => (await get(`/customers?search=${encodeURIComponent(email)}`, position, 'sales')).items[0];
    expect(await listed(last.position)).toMatchObject({ id: c.id, baseCurrency: 'EUR', revenueBase: null, missingRates: ['JPY 2026-03'] });

    last = await setRate('JPY', 0.0061, '2026-03-01T00:00:00Z'); // 1000 x 0.0061 = 6.1
    customer = await get(`/customers/${c.id}`, last.position);
    expect(customer).toMatchObject({ revenueBase: 167.5, missingRates: [] });

    last = await setRate('JPY', 0.0062, '2026-03-01T00:00:00Z'); // corrected: 6.2
    expect((await get(`/customers/${c.id}`, last.position)).revenueBase).toBe(167.6);
    expect(await listed(last.position)).toMatchObject({ revenueBase: 167.6, missingRates: [] });
  });
});

describe('pipeline in the base currency', () => {
  it('totals by stage, owner and month equal the hand computation, and name the missing rate until it is set', async () => {
    // USD 0.9 from 1 January, 0.8 from 15 February (set above; set again, nothing is recorded).
    await setRate('USD', 0.9, '2026-01-01T00:00:00Z');
    await setRate('USD', 0.8, '2026-02-15T00:00:00Z');
    const c = await send('sales', '/customers', { name: 'Pipeline Fx', email: `pfx-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    const owner = (name: string) => `${name}-${c.id.slice(0, 8)}`;
    made.bob = owner('bob');
    const open = (amount: number, currency: string, ownerId: string, stage: string, expectedCloseDate: string, occurredAt: string) =>
      send('sales', '/deals', { customerId: c.id, title: `${currency} deal`, amount, currency, ownerId, stage, expectedCloseDate, occurredAt });
    await open(1000, 'EUR', owner('alice'), 'lead', '2026-04-30', '2026-01-20T09:00:00Z'); // 1000, weighted 0.1 -> 100
    await open(2000, 'USD', owner('bob'), 'proposal', '2026-04-15', '2026-02-01T09:00:00Z'); // 1800, 0.5 -> 900
    await open(500, 'USD', owner('alice'), 'proposal', '2026-05-10', '2026-02-20T09:00:00Z'); // 400, 0.5 -> 200
    let last = await open(300, 'GBP', owner('bob'), 'lead', '2026-05-01', '2026-03-02T09:00:00Z'); // no GBP rate yet

    // Scoped to this test's owners: the schema is shared with the other tests of the file.
    const pipelineOf = async (position: string) => {
      const byOwner = await Promise.all(['alice', 'bob'].map(async (o) => (await get(`/pipeline?ownerId=${owner(o)}`, position)).base));
      return byOwner;
    };
    let [alice, bob] = await pipelineOf(last.position);
    expect(alice.totals).toEqual({ dealCount: 2, amount: 1400, weightedAmount: 300, missingRates: [] });
    expect(bob.totals).toEqual({ dealCount: 2, amount: null, weightedAmount: null, missingRates: ['GBP 2026-03'] });
    const gbp = (await get(`/deals?ownerId=${owner('bob')}&stage=lead`, last.position)).items[0];
    expect(gbp).toMatchObject({
      amountAt: '2026-03-02T09:00:00.000Z',
      baseCurrency: 'EUR',
      amountBase: null,
      weightedAmountBase: null,
      missingRates: ['GBP 2026-03'],
    });
    expect(bob.byStage).toEqual([
      { key: 'lead', stage: 'lead', dealCount: 1, amount: null, weightedAmount: null, missingRates: ['GBP 2026-03'] },
      { key: 'proposal', stage: 'proposal', dealCount: 1, amount: 1800, weightedAmount: 900, missingRates: [] },
    ]);

    last = await setRate('GBP', 1.15, '2026-01-01T00:00:00Z'); // 300 x 1.15 = 345, weighted 34.5
    [alice, bob] = await pipelineOf(last.position);
    expect(bob.totals).toEqual({ dealCount: 2, amount: 2145, weightedAmount: 934.5, missingRates: [] });
    expect(bob.byMonth.map((m: { month: string; amount: number }) => [m.month, m.amount])).toEqual([
      ['2026-04', 1800],
      ['2026-05', 345],
    ]);
    expect(alice.byMonth.map((m: { month: string; amount: number }) => [m.month, m.amount])).toEqual([
      ['2026-04', 1000],
      ['2026-05', 400],
    ]);

    // Both owners together: by stage and in total.
    const lead = [alice, bob].flatMap((p) => p.byStage).filter((g: { stage: string }) => g.stage === 'lead');
    expect(lead.reduce((s: number, g: { amount: number }) => s + g.amount, 0)).toBe(1345);
    expect(alice.totals.amount + bob.totals.amount).toBe(3545);
    expect(alice.totals.weightedAmount + bob.totals.weightedAmount).toBe(1234.5);
    // Each deal too: GBP 300 at 1.15, weighted at 0.1 (lead).
    const deals = (await get(`/deals?ownerId=${owner('bob')}&sort=amount`, last.position)).items;
    expect(deals.map((d: Record<string, unknown>) => [d.currency, d.amount, d.amountBase, d.weightedAmountBase, d.missingRates])).toEqual([
      ['GBP', 300, 345, 34.5, []],
      ['USD', 2000, 1800, 900, []],
    ]);
    // The sort compares amounts as written; `currency=` ranks the deals of one currency.
    const inUsd = (await get(`/deals?ownerId=${owner('bob')}&currency=USD&sort=-amount`, last.position)).items;
    expect(inUsd.map((d: Record<string, unknown>) => [d.currency, d.amount])).toEqual([['USD', 2000]]);
    // The figures per currency are still there, unchanged.
    const own = await get(`/pipeline?ownerId=${owner('bob')}`, last.position);
    expect(own.totals).toEqual([
      { currency: 'GBP', dealCount: 1, amount: 300, weightedAmount: 30 },
      { currency: 'USD', dealCount: 1, amount: 2000, weightedAmount: 1000 },
    ]);
  });
});

describe('campaign revenue and ROI in the base currency', () => {
  it('accepts a conversion paid in another currency and converts it, flagging a missing rate until it is set', async () => {
    await setRate('USD', 0.9, '2026-01-01T00:00:00Z');
    const c = await send('marketing', '/customers', { name: 'Campaign Fx', email: `cfx-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    const campaign = await send('marketing', '/campaigns', {
      name: 'Fx launch',
      channel: 'email',
      budget: 1000,
      currency: 'EUR',
      occurredAt: '2026-01-05T00:00:00Z',
    });
    made.campaignId = campaign.id;
    const act = async (path: string, body: Record<string, unknown>) => {
      const res = await h.app.inject({ method: 'POST', url: `/campaigns/${campaign.id}/${path}`, headers: { ...h.auth('marketing') }, payload: body });
      if (res.statusCode >= 300) throw new Error(`${path} -> ${res.statusCode}: ${res.body}`);
      return json<{ position: string; revision: number }>(res);
    };
    const launched = await h.app.inject({
      method: 'POST',
      url: `/campaigns/${campaign.id}/launch`,
      headers: { ...h.auth('marketing'), 'if-match': `"${campaign.revision}"` },
      payload: { occurredAt: '2026-01-06T00:00:00Z' },
    });
    expect(launched.statusCode, launched.body).toBe(200);
    await act('costs', { amount: 100, currency: 'EUR', occurredAt: '2026-01-07T00:00:00Z' }); // 100
    await act('responses', { customerId: c.id, kind: 'converted', revenue: 50, currency: 'USD', occurredAt: '2026-02-01T00:00:00Z' }); // 45
    let last = await act('responses', { customerId: c.id, kind: 'sent', occurredAt: '2026-01-08T00:00:00Z' });
    let view = await get(`/campaigns/${campaign.id}`, last.position);
    // Revenue in the campaign's own currency counts conversions in that currency only, as before.
    expect(view).toMatchObject({ revenue: 0, costs: 100, currency: 'EUR' });
    expect(view).toMatchObject({ baseCurrency: 'EUR', revenueBase: 45, costsBase: 100, roiBase: -0.55, missingRates: [], revenueByCurrency: { USD: 50 } });

    const other = await send('marketing', '/customers', {
      name: 'Campaign Fx 2',
      email: `cfx2-${randomUUID()}@example.com`,
      occurredAt: '2026-01-02T00:00:00Z',
    });
    last = await act('responses', { customerId: other.id, kind: 'converted', revenue: 2000, currency: 'NOK', occurredAt: '2026-03-10T00:00:00Z' });
    view = await get(`/campaigns/${campaign.id}`, last.position);
    expect(view).toMatchObject({ revenueBase: null, roiBase: null, costsBase: 100, missingRates: ['NOK 2026-03'] });

    last = await setRate('NOK', '0.0855', '2026-03-01T00:00:00Z'); // 2000 x 0.0855 = 171
    view = await get(`/campaigns/${campaign.id}`, last.position);
    expect(view).toMatchObject({ revenueBase: 216, costsBase: 100, roiBase: 1.16, missingRates: [] });
    // The list and the export give the same base figures (they showed the campaign currency's alone: ROI -100%).
    const { revenueByCurrency: _split, ...inBase } = view as Record<string, unknown>;
    const listed = (await get('/campaigns?limit=200', last.position)) as { items: { id: string }[] };
    expect(listed.items.find((c) => c.id === campaign.id)).toEqual(inBase);
    const exported = await h.app.inject({ method: 'GET', url: '/campaigns/export?format=ndjson', headers: h.auth('marketing') });
    const line = exported.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((c) => c.id === campaign.id);
    expect(line).toMatchObject({ baseCurrency: 'EUR', costsBase: 100, revenueBase: 216, roiBase: 1.16, missingRates: [] });
  });

  it("rounds the base ROI as the campaign's ROI and the reporting view round it: exact decimals, a tie away from zero", async () => {
    const customer = await send('marketing', '/customers', { name: 'Roi Tie', email: `roi-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    const campaign = await send('marketing', '/campaigns', {
      name: 'ROI tie',
      channel: 'email',
      budget: 20_000,
      currency: 'EUR',
      occurredAt: '2026-01-02T00:00:00Z',
    });
    const post = async (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
      const res = await h.app.inject({
        method: 'POST',
        url: `/campaigns/${campaign.id}/${path}`,
        headers: { ...h.auth('marketing'), ...headers },
        payload: body,
      });
      expect(res.statusCode, res.body).toBeLessThan(300);
      return json<{ position: string }>(res);
    };
    await post('launch', { occurredAt: '2026-01-03T00:00:00Z' }, { 'if-match': '"0"' });
    await post('costs', { costId: 'all', amount: 20_000, currency: 'EUR', occurredAt: '2026-01-04T00:00:00Z' });
    // (19,999.99 - 20,000) / 20,000 = -0.0000005: -0.000001 rounded half away from zero; floats made it 0.
    const last = await post('responses', {
      customerId: customer.id,
      kind: 'converted',
      revenue: 19_999.99,
      currency: 'EUR',
      occurredAt: '2026-01-05T00:00:00Z',
    });
    const view = await get(`/campaigns/${campaign.id}`, last.position);
    expect(view).toMatchObject({ roi: -0.000001, costsBase: 20_000, revenueBase: 19_999.99, roiBase: -0.000001 });
    const { rows } = await sql<{
      roi_base: string;
    }>`SELECT roi_base::text FROM ${sql.id(h.schemas.reporting, 'campaigns')} WHERE campaign_id = ${campaign.id}`.execute(h.database.db);
    expect(rows).toEqual([{ roi_base: '-0.000001' }]);
  });
});

describe('reporting views carry the original and the base-currency columns', () => {
  it('gives the same base figures as the API, in the recorded base currency', async () => {
    const idle = await send('sales', '/customers', { name: 'No Purchases', email: `idle-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    await projectionsSettled(h);
    const reporting = h.schemas.reporting;
    await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: reporting, projections: readModelProjections() });
    const rows = async (query: string) => (await sql.raw<Record<string, any>>(query).execute(h.database.db)).rows;
    const [customer] = await rows(
      `SELECT revenue, currency, base_currency, revenue_base, missing_rates FROM "${reporting}".customers WHERE customer_id = '${made.customerId}'`,
    );
    // 100 + 45 + 24.4 - 8 + 1000 x 0.0062 (corrected JPY rate)
    expect(customer).toEqual({ revenue: '100.0000', currency: 'EUR', base_currency: 'EUR', revenue_base: '167.6000', missing_rates: [] });
    // Nothing bought is 0 in the base currency, as the API says, not unknown.
    expect(await rows(`SELECT revenue_base::text, missing_rates FROM "${reporting}".customers WHERE customer_id = '${idle.id}'`)).toEqual([
      { revenue_base: '0', missing_rates: [] },
    ]);
    const bob = await rows(
      `SELECT stage, currency, amount, amount_base, weighted_amount_base FROM "${reporting}".pipeline_summary WHERE owner_id = '${made.bob}' ORDER BY stage`,
    );
    expect(bob).toEqual([
      { stage: 'lead', currency: 'GBP', amount: '300.0000', amount_base: '345.0000', weighted_amount_base: '34.5000' },
      { stage: 'proposal', currency: 'USD', amount: '2000.0000', amount_base: '1800.0000', weighted_amount_base: '900.0000' },
    ]);
    const campaignRow = `SELECT revenue, costs_base, revenue_base, roi_base, missing_rates FROM "${reporting}".campaigns WHERE campaign_id = '${made.campaignId}'`;
    const [campaign] = await rows(campaignRow);
    expect(campaign).toEqual({ revenue: '0.0000', costs_base: '100.0000', revenue_base: '216.0000', roi_base: '1.160000', missing_rates: [] });
    const months = await rows(
      `SELECT month, currency, revenue, revenue_base, missing_rate FROM "${reporting}".revenue_monthly WHERE month = '2026-03' AND currency = 'JPY'`,
    );
    expect(months).toEqual([{ month: '2026-03', currency: 'JPY', revenue: '1000.0000', revenue_base: '6.2000', missing_rate: null }]);
    const chf = await rows(`SELECT rate, valid_until, corrections FROM "${reporting}".exchange_rates WHERE currency = 'CHF' ORDER BY valid_from`);
    expect(chf.map((r) => [r.rate, r.valid_until?.toISOString() ?? null, r.corrections])).toEqual([
      ['1.0500000000', '2026-02-15T00:00:00.000Z', 0],
      ['0.9512000000', null, 1],
    ]);

    // Found by an analyst: after a merge the row's revenue held the duplicate's purchases, its revenue_base did not.
    const register = (name: string) => send('sales', '/customers', { name, email: `${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    const [primary, duplicate] = [await register('Alice Alpha'), await register('Alice A.')];
    await send('sales', `/customers/${primary.id}/purchases`, { orderId: 'P-1', amount: 100, currency: 'EUR', occurredAt: '2026-04-01T00:00:00Z' });
    await send('sales', `/customers/${duplicate.id}/purchases`, { orderId: 'D-1', amount: 40, currency: 'CHF', occurredAt: '2026-04-01T12:00:00Z' });
    const merge = await h.app.inject({
      method: 'POST',
      url: `/customers/${primary.id}/merge`,
      headers: { ...h.auth('sales'), 'if-match': '"1"' },
      payload: { duplicateId: duplicate.id },
    });
    expect(merge.statusCode, merge.body).toBe(200);
    const api = await get(`/customers/${primary.id}`, json<{ position: string }>(merge).position);
    await projectionsSettled(h);
    const [merged] = await rows(
      `SELECT currency, revenue, revenue_base::text, missing_rates FROM "${reporting}".customers WHERE customer_id = '${primary.id}'`,
    );
    // The headline in the first purchase's currency; in the base 100 + 40 x 0.9512 (the CHF rate from 15 February,
    // as corrected above). April: the forecast below leaves its running month out.
    expect(merged).toEqual({ currency: 'EUR', revenue: '100.0000', revenue_base: '138.0480', missing_rates: [] });
    expect(api).toMatchObject({ revenueBase: 138.048 });

    // Another base currency recorded: the base columns follow it (no USD rate against USD, so the EUR lines lack one).
    await recordBaseCurrency(h.database.db, h.schemas.read, 'USD');
    const [inUsd] = await rows(`SELECT base_currency, revenue_base, missing_rates FROM "${reporting}".customers WHERE customer_id = '${made.customerId}'`);
    expect(inUsd).toMatchObject({
      base_currency: 'USD',
      revenue_base: null,
      missing_rates: expect.arrayContaining([expect.stringMatching(/^EUR \d{4}-\d{2}$/)]),
    });
    // A campaign whose money lacks a rate is unknown in the base currency: not revenue 0 and ROI -1.
    const [campaignInUsd] = await rows(campaignRow);
    expect(campaignInUsd).toMatchObject({ costs_base: null, revenue_base: null, roi_base: null });
    expect(campaignInUsd!.missing_rates.length).toBeGreaterThan(0);
    await recordBaseCurrency(h.database.db, h.schemas.read, 'EUR');
  });
});

describe('the revenue forecast in the base currency', () => {
  it('counts purchases in every currency at their rates, names a missing rate, and follows once it is set', async () => {
    const c = await send('sales', '/customers', { name: 'Forecast Fx', email: `ffx-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    await send('sales', `/customers/${c.id}/purchases`, { orderId: 'D-1', amount: 500, currency: 'DKK', occurredAt: '2026-03-20T00:00:00Z' });
    // A purchase in April closes March (the running month is left out of forecasts); no rate is needed for it.
    let last = await send('sales', `/customers/${c.id}/purchases`, { orderId: 'A-1', amount: 10, currency: 'EUR', occurredAt: '2026-04-02T00:00:00Z' });
    await projectionsSettled(h);
    let forecast = await get('/analytics/forecast', last.position);
    expect(forecast.base).toMatchObject({ currency: 'EUR', missingRates: ['DKK 2026-03'], history: null, methods: null });

    last = await setRate('DKK', '0.134', '2026-03-01T00:00:00Z'); // 500 x 0.134 = 67
    await projectionsSettled(h);
    forecast = await get('/analytics/forecast', last.position);
    expect(forecast.base.missingRates).toEqual([]);
    // By hand, from the purchases and refunds of this file: January 100 (EUR); February 50 x 0.9 + 30.5 x 0.8 - 10 x 0.8 = 61.4;
    // March 1000 JPY x 0.0062 + 500 DKK x 0.134 = 6.2 + 67 = 73.2; April is the running month, left out.
    const history = new Map(forecast.base.history.map((m: { month: string; value: number }) => [m.month, m.value]));
    expect([history.get('2026-01'), history.get('2026-02'), history.get('2026-03'), history.get('2026-04')]).toEqual([100, 61.4, 73.2, undefined]);
    expect(forecast.base.methods.length).toBeGreaterThan(0);
  });
});

describe('customer analytics in the base currency', () => {
  it('count a purchase without a rate, name the rate, and value it once the rate is set', async () => {
    const c = await send('sales', '/customers', { name: 'Analytics Fx', email: `afx-${randomUUID()}@example.com`, occurredAt: '2026-01-02T00:00:00Z' });
    await send('sales', `/customers/${c.id}/purchases`, { orderId: 'E-1', amount: 20, currency: 'EUR', occurredAt: '2026-05-02T00:00:00Z' });
    let last = await send('sales', `/customers/${c.id}/purchases`, { orderId: 'S-1', amount: 1000, currency: 'SEK', occurredAt: '2026-05-10T00:00:00Z' });
    let figures = await get(`/analytics/customers/${c.id}`, last.position);
    // Two purchase days: one repeat purchase, whatever its currency; the SEK one is valued 0 until its rate is set.
    expect(figures).toMatchObject({
      baseCurrency: 'EUR',
      missingRates: ['SEK 2026-05'],
      netValue: 20,
      firstPurchaseDay: '2026-05-02',
      lastPurchaseDay: '2026-05-10',
    });
    expect(figures.rfm.frequency).toBe(1);

    last = await setRate('SEK', '0.0875', '2026-05-01T00:00:00Z'); // 1000 x 0.0875 = 87.5
    figures = await get(`/analytics/customers/${c.id}`, last.position);
    expect(figures).toMatchObject({ baseCurrency: 'EUR', missingRates: [], netValue: 107.5 });
    const asOf = await get(`/analytics/customers/${c.id}?asOf=2026-05-05`, last.position);
    expect(asOf).toMatchObject({ baseCurrency: 'EUR', missingRates: [], netValue: 20 });
  });
});

describe('rebuild invariance', () => {
  it('replaying every event gives the same analytics rows: amounts converted, healed and corrected as the rates arrived', async () => {
    await projectionsSettled(h);
    const deps: AuditDeps = { store: h.store, database: h.database, personalData: h.crm.personalData, schemas: h.schemas };
    const result = await verifyReadModels(deps, { projections: [createAnalyticsProjection()] });
    const tables = new Map(result.tables.map((t) => [t.table, t]));
    for (const table of ['analytics_amount', 'analytics_rate', 'analytics_customer', 'analytics_purchase_day', 'analytics_revenue_day']) {
      expect(tables.get(table), table).toMatchObject({ equal: true });
      expect(tables.get(table)!.liveRows, table).toBeGreaterThan(0);
    }
    expect(result.differences).toBe(0);
  });

  it('replaying every event gives the same rows: rates, corrections, revenue and campaign lines, deals', async () => {
    await projectionsSettled(h);
    const deps: AuditDeps = { store: h.store, database: h.database, personalData: h.crm.personalData, schemas: h.schemas };
    const result = await verifyReadModels(deps, { projections: readModelProjections() });
    const tables = new Map(result.tables.map((t) => [t.table, t]));
    for (const table of ['exchange_rates', 'exchange_rate_history', 'revenue_lines', 'campaign_money_lines', 'deals', 'customers', 'campaigns']) {
      expect(tables.get(table), table).toMatchObject({ equal: true });
      expect(tables.get(table)!.liveRows, table).toBeGreaterThan(0);
    }
    expect(result.differences).toBe(0);
  });
});

describe('during the rebuild after an upgrade', () => {
  it('keeps answering from the tables of the previous version, base figures null (last: it drops the new tables)', async () => {
    await projectionsSettled(h);
    const read = h.schemas.read;
    await sql
      .raw(
        `ALTER TABLE "${read}".deals DROP COLUMN amount_at CASCADE; DROP TABLE "${read}".revenue_lines CASCADE; DROP TABLE "${read}".campaign_money_lines CASCADE`,
      )
      .execute(h.database.db);
    const customer = await get(`/customers/${made.customerId}`, '0');
    expect(customer).toMatchObject({ id: made.customerId, revenue: 100, revenueBase: null, missingRates: [] });
    expect((await get(`/customers?search=Fx`, '0', 'sales')).items.length).toBeGreaterThan(0);
    const pipeline = await get(`/pipeline?ownerId=${made.bob}`, '0');
    expect(pipeline.base).toBeNull();
    expect(pipeline.totals.length).toBe(2);
    const deals = (await get(`/deals?ownerId=${made.bob}`, '0')).items;
    expect(deals.map((d: { amountBase: unknown }) => d.amountBase)).toEqual([null, null]);
    expect(await get(`/deals/${deals[0].id}`, '0')).toMatchObject({ amountBase: null });
    expect(await get(`/campaigns/${made.campaignId}`, '0')).toMatchObject({ costs: 100, revenueBase: null });
  });
});
