import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_records_rules');
  await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections: readModelProjections() });
});
afterAll(async () => h?.close());

const send = (method: 'POST' | 'PATCH' | 'GET', url: string, payload?: object, headers: Record<string, string> = {}, role: Role = 'admin') =>
  h.app.inject({ method, url, headers: { ...h.auth(role), ...headers }, ...(payload ? { payload } : {}) });
const ok = <T = { id: string; position: string; revision: number }>(res: Awaited<ReturnType<typeof send>>, status = 200): T => {
  if (res.statusCode !== status) throw new Error(`expected ${status}, got ${res.statusCode}: ${res.body}`);
  return json<T>(res);
};
const customer = async (marketingConsent: boolean) =>
  ok(await send('POST', '/customers', { name: 'Ada Lovelace', email: `ada-${randomUUID()}@example.com`, marketingConsent }), 201).id;

describe('campaign rules', () => {
  it("refuses a 'sent' response to a customer without consent on a consent-only campaign (422 naming the rule)", async () => {
    const [consenting, refusing] = [await customer(true), await customer(false)];
    const created = ok(
      await send('POST', '/campaigns', { name: 'Newsletter', channel: 'email', budget: 1000, currency: 'EUR', targetSegment: { marketingConsentOnly: true } }),
      201,
    );
    const campaign = created.id;
    ok(await send('POST', `/campaigns/${campaign}/launch`, {}, { 'if-match': `"${created.revision}"` }));
    const problem = expectProblem(await send('POST', `/campaigns/${campaign}/responses`, { customerId: refusing, kind: 'sent' }), 422);
    expect(problem).toMatchObject({ code: 'campaign.marketing_consent_required', details: { rule: 'marketingConsentOnly' } });
    expect(problem.detail).toContain('marketingConsentOnly');
    ok(await send('POST', `/campaigns/${campaign}/responses`, { customerId: consenting, kind: 'sent' }));
  });

  it('an unsubscribe withdraws the marketing consent: the next consent-only campaign refuses to send to that customer', async () => {
    const subscriber = await customer(true);
    const launched = async (name: string) => {
      const created = ok(
        await send('POST', '/campaigns', { name, channel: 'email', budget: 100, currency: 'EUR', targetSegment: { marketingConsentOnly: true } }),
        201,
      );
      ok(await send('POST', `/campaigns/${created.id}/launch`, {}, { 'if-match': `"${created.revision}"` }));
      return created.id;
    };
    const autumn = await launched('Autumn');
    ok(await send('POST', `/campaigns/${autumn}/responses`, { customerId: subscriber, kind: 'sent' }));
    const unsubscribe = () =>
      send(
        'POST',
        `/campaigns/${autumn}/responses`,
        { customerId: subscriber, kind: 'unsubscribed' },
        { 'idempotency-key': `unsub-${subscriber}` },
        'marketing',
      );
    const left = ok(await unsubscribe());
    expect(ok(await send('GET', `/customers/${subscriber}?waitFor=${left.position}`))).toMatchObject({ marketingConsent: false });
    const history = ok<{ items: { type: string; reason: string | null }[] }>(
      await send('GET', `/audit/streams/customer-${subscriber}`, undefined, {}, 'auditor'),
    );
    expect(history.items.at(-1)).toMatchObject({ type: 'CustomerMarketingConsentChanged', reason: `unsubscribed from campaign ${autumn}` });
    // The retry records nothing more.
    const retried = ok(await unsubscribe());
    expect(retried.position).toBe(left.position);
    const winter = await launched('Winter');
    const refused = expectProblem(await send('POST', `/campaigns/${winter}/responses`, { customerId: subscriber, kind: 'sent' }), 422);
    expect(refused).toMatchObject({ code: 'campaign.marketing_consent_required' });
  });

  it('refuses costs beyond the budget without allowOverBudget; the read model and reporting view show overBudget', async () => {
    const campaign = ok(await send('POST', '/campaigns', { name: 'Fair', channel: 'event', budget: 1000, currency: 'EUR' }), 201).id;
    ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-1', amount: 800, currency: 'EUR' }));
    const problem = expectProblem(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-2', amount: 1400, currency: 'EUR' }), 422);
    expect(problem).toMatchObject({ code: 'campaign.over_budget', details: { budget: 1000, costs: 800, remaining: 200 } });
    const within = ok(
      await send(
        'GET',
        `/campaigns/${campaign}?waitFor=${ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-2', amount: 200, currency: 'EUR' })).position}`,
      ),
    );
    expect(within).toMatchObject({ costs: 1000, overBudget: false });
    const over = ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-3', amount: 1200, currency: 'EUR', allowOverBudget: true }));
    expect(ok(await send('GET', `/campaigns/${campaign}?waitFor=${over.position}`))).toMatchObject({ costs: 2200, overBudget: true });
    const { rows } = await sql<{
      over_budget: boolean;
    }>`SELECT over_budget FROM ${sql.id(h.schemas.reporting, 'campaigns')} WHERE campaign_id = ${campaign}::uuid`.execute(h.database.db);
    expect(rows).toEqual([{ over_budget: true }]);
  });
});

describe('campaign cost corrections', () => {
  const fields = (problem: { errors?: { field: string }[] }) => problem.errors?.map((e) => e.field);
  const correct = (campaign: string, body: object, headers: Record<string, string> = {}, role: Role = 'marketing') =>
    send('POST', `/campaigns/${campaign}/cost-corrections`, body, headers, role);

  it('corrects a cost typed with a zero too many: a compensating event, the campaign figures follow, the first amount is then a conflict', async () => {
    const campaign = ok(await send('POST', '/campaigns', { name: 'Trade fair', channel: 'event', budget: 1000, currency: 'EUR' }), 201).id;
    const typo = ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'INV/2026/1', amount: 8000, currency: 'EUR', allowOverBudget: true }));
    // The typo holds the whole budget: the next invoice needs allowOverBudget.
    ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'INV/2026/2', amount: 100, currency: 'EUR', allowOverBudget: true }));
    const body = { costId: 'INV/2026/1', amount: 800, currency: 'EUR', reason: 'Typed 8,000 for 800 (invoice INV/2026/1)' };
    const corrected = ok(await correct(campaign, body, { 'idempotency-key': `fix-${campaign}` }));
    expect(corrected.revision).toBe(typo.revision + 2);
    // Retried with its key: the first result, nothing appended.
    expect(ok(await correct(campaign, body, { 'idempotency-key': `fix-${campaign}` }))).toEqual(corrected);
    // The same amount again without a key: nothing new either.
    expect(ok(await correct(campaign, { ...body, reason: 'again' })).revision).toBe(corrected.revision);
    expect(ok(await send('GET', `/campaigns/${campaign}?waitFor=${corrected.position}`))).toMatchObject({
      costs: 900,
      overBudget: false,
      roi: -1,
      costsBase: 900,
    });
    const history = ok<{ items: { type: string; data: Record<string, unknown> }[] }>(await send('GET', `/audit/streams/campaign-${campaign}`));
    expect(history.items.map((e) => e.type)).toEqual(['CampaignCreated', 'CampaignCostRecorded', 'CampaignCostRecorded', 'CampaignCostCorrected']);
    expect(history.items.at(-1)!.data).toEqual({
      campaignId: campaign,
      costId: 'INV/2026/1',
      previousAmount: 8000,
      amount: 800,
      currency: 'EUR',
      reason: 'Typed 8,000 for 800 (invoice INV/2026/1)',
    });
    // Who corrected it and why, as the auditor reads every command's.
    expect(history.items.at(-1)).toMatchObject({ command: 'CorrectCampaignCost', reason: 'Typed 8,000 for 800 (invoice INV/2026/1)', roles: ['marketing'] });
    // Recorded again: the corrected amount is the same cost, the first amount a conflict naming the amount it stands at.
    expect(ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'INV/2026/1', amount: 800, currency: 'EUR' })).revision).toBe(corrected.revision);
    const conflict = expectProblem(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'INV/2026/1', amount: 8000, currency: 'EUR' }), 422);
    expect(conflict).toMatchObject({ code: 'campaign.cost_conflict', details: { costId: 'INV/2026/1', recordedAmount: 800 } });
    expect(fields(conflict)).toEqual(['amount']);
    expect(conflict.detail).toContain('stands at amount 800 since its correction');
    // Voided: the cost counts 0, and the reporting view agrees.
    const voided = ok(await correct(campaign, { costId: 'INV/2026/2', amount: 0, currency: 'EUR', reason: 'Credited by the supplier' }));
    expect(ok(await send('GET', `/campaigns/${campaign}?waitFor=${voided.position}`))).toMatchObject({ costs: 800, costsBase: 800 });
    const { rows } = await sql<{
      costs: string;
    }>`SELECT costs::text FROM ${sql.id(h.schemas.reporting, 'campaigns')} WHERE campaign_id = ${campaign}::uuid`.execute(h.database.db);
    expect(rows.map((r) => Number(r.costs))).toEqual([800]);
  });

  it('refuses, naming the field: a cost never recorded (404), another currency or an increase beyond the budget (422), bad input (400)', async () => {
    const campaign = ok(await send('POST', '/campaigns', { name: 'Radio', channel: 'ads', budget: 1000, currency: 'EUR' }), 201).id;
    ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-1', amount: 600, currency: 'EUR' }));
    const valid = { costId: 'inv-1', amount: 500, currency: 'EUR', reason: 'Discount agreed' };
    const unknown = expectProblem(await correct(campaign, { ...valid, costId: 'inv-9' }), 404);
    expect(unknown).toMatchObject({ code: 'campaign.cost_not_found', details: { costId: 'inv-9' } });
    expect(fields(unknown)).toEqual(['costId']);
    expect(expectProblem(await correct(randomUUID(), valid), 404)).toMatchObject({ code: 'campaign.not_found' });
    const currency = expectProblem(await correct(campaign, { ...valid, currency: 'USD' }), 422);
    expect(currency).toMatchObject({ code: 'campaign.currency_mismatch', details: { expected: 'EUR' } });
    expect(fields(currency)).toEqual(['currency']);
    const over = expectProblem(await correct(campaign, { ...valid, amount: 1000.01 }), 422);
    expect(over).toMatchObject({ code: 'campaign.over_budget', details: { budget: 1000, costs: 600, remaining: 400 } });
    expect(fields(over)).toEqual(['amount']);
    ok(await correct(campaign, { ...valid, amount: 1000.01, allowOverBudget: true }));
    for (const [input, field] of [
      [{ ...valid, amount: -1 }, 'amount'],
      [{ ...valid, amount: 1.00001 }, 'amount'],
      [{ ...valid, amount: '500' }, 'amount'],
      [{ ...valid, currency: 'EURO' }, 'currency'],
      [{ ...valid, reason: ' ' }, 'reason'],
      [{ costId: 'inv-1', amount: 500, currency: 'EUR' }, 'reason'],
      [{ ...valid, costId: '' }, 'costId'],
      [{ ...valid, previousAmount: 600 }, 'previousAmount'],
    ] as const) {
      expect(fields(expectProblem(await correct(campaign, input), 400)), JSON.stringify(input)).toContain(field);
    }
  });

  it('is open to the roles that record costs, and to no other', async () => {
    const campaign = ok(await send('POST', '/campaigns', { name: 'Flyers', channel: 'event', budget: 1000, currency: 'EUR' }), 201).id;
    ok(await send('POST', `/campaigns/${campaign}/costs`, { costId: 'inv-1', amount: 60, currency: 'EUR' }));
    const body = { costId: 'inv-1', amount: 6, currency: 'EUR', reason: 'Typed 60 for 6' };
    for (const role of ['sales', 'support', 'analyst', 'auditor'] as const) expectProblem(await correct(campaign, body, {}, role), 403);
    ok(await correct(campaign, body, {}, 'admin'));
    ok(await correct(campaign, { ...body, amount: 5 }, {}, 'marketing'));
  });
});

describe('money after a forget and a merge', () => {
  const ifMatch = (revision: number) => ({ 'if-match': `"${revision}"` });
  it('a forgotten customer still takes refunds: its revenue comes down in the read models, the timeline and the reporting view', async () => {
    const id = await customer(false);
    ok(await send('POST', `/customers/${id}/purchases`, { orderId: 'f-1', amount: 70, currency: 'EUR' }));
    const forgotten = ok(await send('POST', `/customers/${id}/forget`));
    const refund = ok(
      await send('POST', `/customers/${id}/refunds`, { orderId: 'f-1', amount: 3, currency: 'EUR', reason: 'damaged box' }, ifMatch(forgotten.revision)),
    );
    expect(refund.revision).toBe(forgotten.revision + 1);
    expect(ok(await send('GET', `/customers/${id}?waitFor=${refund.position}`))).toMatchObject({ status: 'forgotten', name: '[erased]', revenue: 67 });
    const timeline = ok<{ items: { type: string }[] }>(await send('GET', `/customers/${id}/timeline?waitFor=${refund.position}`));
    expect(timeline.items.map((e) => e.type)).toContain('PurchaseRefunded');
    const { rows } = await sql<{
      revenue: string;
    }>`SELECT revenue::text FROM ${sql.id(h.schemas.reporting, 'customers')} WHERE customer_id = ${id}::uuid`.execute(h.database.db);
    expect(rows.map((r) => Number(r.revenue))).toEqual([67]);
    // Still no new purchase, and no more refunded than was paid.
    expectProblem(await send('POST', `/customers/${id}/purchases`, { orderId: 'f-2', amount: 1, currency: 'EUR' }), 409);
    expectProblem(await send('POST', `/customers/${id}/refunds`, { orderId: 'f-1', amount: 68, currency: 'EUR' }, ifMatch(refund.revision)), 422);
  });

  it("a merged duplicate's order sent to the primary is the purchase already recorded; a forgotten duplicate's order is still refunded on it", async () => {
    const [primary, duplicate] = [await customer(false), await customer(false)];
    ok(await send('POST', `/customers/${duplicate}/purchases`, { orderId: 'd-1', amount: 50, currency: 'EUR' }));
    const merged = ok(await send('POST', `/customers/${primary}/merge`, { duplicateId: duplicate }, ifMatch(0)));
    const again = ok(await send('POST', `/customers/${primary}/purchases`, { orderId: 'd-1', amount: 50, currency: 'EUR' }));
    expect(again.revision).toBe(merged.revision);
    const conflict = expectProblem(await send('POST', `/customers/${primary}/purchases`, { orderId: 'd-1', amount: 55, currency: 'EUR' }), 422);
    expect(conflict).toMatchObject({ code: 'purchase.order_conflict', details: { recordedAmount: 50, recordedOn: duplicate } });
    expect(ok(await send('GET', `/customers/${primary}?waitFor=${merged.position}`))).toMatchObject({ revenue: 50, orderCount: 1 });

    const forgotten = ok(await send('POST', `/customers/${duplicate}/forget`));
    const refund = ok(await send('POST', `/customers/${duplicate}/refunds`, { orderId: 'd-1', amount: 20, currency: 'EUR' }, ifMatch(forgotten.revision)));
    expect(ok(await send('GET', `/customers/${primary}?waitFor=${refund.position}`))).toMatchObject({ revenue: 30, orderCount: 1 });
  });
});

describe('deal title', () => {
  it('PATCH /deals/:id {title} renames the deal as an event shown on the timeline and in the history', async () => {
    const customerId = await customer(true);
    const deal = ok(
      await send('POST', '/deals', { customerId, title: 'Licnece', amount: 100, currency: 'EUR', ownerId: 'ann', expectedCloseDate: '2027-01-31' }),
      201,
    );
    const renamed = ok(await send('PATCH', `/deals/${deal.id}`, { title: 'Licence' }, { 'if-match': `"${deal.revision}"` }));
    expect(renamed.revision).toBe(deal.revision + 1);
    expect(ok(await send('GET', `/deals/${deal.id}?waitFor=${renamed.position}`))).toMatchObject({ title: 'Licence' });
    const timeline = ok<{ items: { type: string }[] }>(await send('GET', `/customers/${customerId}/timeline?waitFor=${renamed.position}`));
    expect(timeline.items.map((e) => e.type)).toContain('DealTitleChanged');
    const history = ok<{ items: { type: string }[] }>(await send('GET', `/audit/streams/deal-${deal.id}`));
    expect(history.items.map((e) => e.type)).toEqual(['DealOpened', 'DealTitleChanged']);
  });
});

describe('business time runs forward', () => {
  // Found with a response and a resolution dated 1950 on an item submitted today: accepted, read back
  // as negative durations, and refused by the import when exported.
  const longAgo = '1950-01-01T00:00:00.000Z';
  const submittedAt = '2026-03-02T10:00:00.000Z';
  it("refuses a feedback response, a deal's close and a task's completion dated before the item began: 422 naming occurredAt, nothing appended", async () => {
    const customerId = await customer(true);
    const feedback = ok(
      await send('POST', '/feedback', { customerId, kind: 'complaint', channel: 'email', subject: 'Late', body: 'Parcel late', occurredAt: submittedAt }),
      201,
    );
    const deal = ok(
      await send('POST', '/deals', {
        customerId,
        title: 'Fleet',
        amount: 100,
        currency: 'EUR',
        ownerId: 'sam',
        expectedCloseDate: '2026-12-31',
        occurredAt: submittedAt,
      }),
      201,
    );
    const task = ok(await send('POST', `/customers/${customerId}/activities`, { kind: 'task', subject: 'Call back', occurredAt: submittedAt }), 201);
    const at = (revision: number) => ({ 'if-match': `"${revision}"` });
    const refusals = [
      await send('POST', `/feedback/${feedback.id}/respond`, { message: 'On it', occurredAt: longAgo }, at(feedback.revision)),
      await send('POST', `/feedback/${feedback.id}/resolve`, { resolution: 'Refunded', occurredAt: longAgo }, at(feedback.revision)),
      await send('POST', `/deals/${deal.id}/lost`, { reason: 'price', occurredAt: longAgo }, at(deal.revision)),
      await send('POST', `/deals/${deal.id}/won`, { occurredAt: longAgo }, at(deal.revision)),
      await send('POST', `/activities/${task.id}/complete`, { occurredAt: longAgo }, at(task.revision)),
    ];
    for (const refused of refusals) {
      const problem = expectProblem(refused, 422);
      expect(problem.errors?.map((e) => e.field) ?? [problem.field]).toContain('occurredAt');
      expect(problem.detail).toContain(submittedAt);
    }
    for (const [stream, revision] of [
      [`feedback-${feedback.id}`, feedback.revision],
      [`deal-${deal.id}`, deal.revision],
      [`activity-${task.id}`, task.revision],
    ] as const)
      expect((await h.store.readStream(stream)).length).toBe(revision + 1);
    // Later than the beginning, each is taken.
    ok(await send('POST', `/feedback/${feedback.id}/respond`, { message: 'On it', occurredAt: '2026-03-02T11:00:00Z' }));
    ok(await send('POST', `/deals/${deal.id}/won`, { occurredAt: '2026-03-03T11:00:00Z' }, at(deal.revision)));
    ok(await send('POST', `/activities/${task.id}/complete`, { occurredAt: '2026-03-02T12:00:00Z' }));
  });
});
