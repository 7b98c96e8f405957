import { randomUUID } from 'node:crypto';
import type { Projection } from '../../projections/projection.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, type Harness } from './support.ts';

/** Ids of the records the scenario creates. */
export interface ScenarioIds {
  alice: string;
  bob: string;
  carol: string;
  dealWon: string;
  dealReopened: string;
  dealOpen: string;
  campaign: string;
  cancelledCampaign: string;
  feedbackLifecycle: string;
  feedbackLate: string;
  feedbackOfCarol: string;
  callWithAlice: string;
  taskOnDeal: string;
  noteOfCarol: string;
}

/**
 * Drives every event type through the command layer: registration, contact changes, tags, consent,
 * purchases and refunds, merge, deactivate/reactivate, forget; the whole deal lifecycle; a campaign
 * with costs and every response kind; feedback through assign, respond, escalate, resolve, reopen,
 * close and rate, one of them answered late.
 */
export async function runScenario(h: Harness, prefix = ''): Promise<ScenarioIds> {
  const at = (iso: string) => ({ occurredAt: iso });
  const ids: ScenarioIds = {
    alice: randomUUID(),
    bob: randomUUID(),
    carol: randomUUID(),
    dealWon: randomUUID(),
    dealReopened: randomUUID(),
    dealOpen: randomUUID(),
    campaign: randomUUID(),
    cancelledCampaign: randomUUID(),
    feedbackLifecycle: randomUUID(),
    feedbackLate: randomUUID(),
    feedbackOfCarol: randomUUID(),
    callWithAlice: randomUUID(),
    taskOnDeal: randomUUID(),
    noteOfCarol: randomUUID(),
  };
  const { run } = h;
  await run({
    type: 'RegisterCustomer',
    customerId: ids.alice,
    name: `${prefix}Alice Archer`,
    email: `${prefix}Alice@Example.com`,
    phone: '+44 20 1234',
    company: 'Archer Ltd',
    tags: ['vip'],
    source: 'web',
    marketingConsent: false,
  });
  await run({ type: 'ChangeCustomerDetails', customerId: ids.alice, email: `${prefix}alice.archer@example.com`, phone: '+44 20 9999' });
  await run({ type: 'TagCustomer', customerId: ids.alice, tag: 'newsletter' });
  await run({ type: 'TagCustomer', customerId: ids.alice, tag: 'trial' });
  await run({ type: 'UntagCustomer', customerId: ids.alice, tag: 'trial' });
  await run({ type: 'ChangeCustomerDetails', customerId: ids.alice, marketingConsent: true });
  await run({ type: 'RecordPurchase', customerId: ids.alice, orderId: 'o-1', amount: 120.5, currency: 'EUR', occurredAt: '2026-01-10T10:00:00Z' });
  await run({ type: 'RecordPurchase', customerId: ids.alice, orderId: 'o-2', amount: 0.1, currency: 'EUR', occurredAt: '2026-01-03T10:00:00Z' });
  await run({ type: 'RecordPurchase', customerId: ids.alice, orderId: 'o-3', amount: 0.2, currency: 'EUR', occurredAt: '2026-01-20T10:00:00Z' });
  await run({ type: 'RefundPurchase', customerId: ids.alice, orderId: 'o-1', refundId: 'r-1', amount: 20.25, currency: 'EUR', reason: 'damaged' });
  await run({ type: 'DeactivateCustomer', customerId: ids.alice, reason: 'asked to pause' });
  await run({ type: 'ReactivateCustomer', customerId: ids.alice });

  await run({ type: 'RegisterCustomer', customerId: ids.bob, name: `${prefix}Bob Brown`, email: `${prefix}bob@example.com`, tags: [], marketingConsent: true });
  await run({ type: 'MergeCustomer', customerId: ids.alice, duplicateId: ids.bob });

  await run({
    type: 'RegisterCustomer',
    customerId: ids.carol,
    name: `${prefix}Carol Clark`,
    email: `${prefix}carol@example.com`,
    phone: '+1 555 0100',
    tags: ['b2b'],
  });
  await run({ type: 'RecordPurchase', customerId: ids.carol, orderId: 'c-1', amount: 99.99, currency: 'USD' });

  // Deals: one through every change to won, one lost then reopened, one left open.
  await run({
    type: 'OpenDeal',
    dealId: ids.dealWon,
    customerId: ids.alice,
    title: 'Annual licence',
    amount: 1000,
    currency: 'EUR',
    ownerId: 'ann',
    expectedCloseDate: '2026-03-31',
  });
  await run({ type: 'ChangeDeal', dealId: ids.dealWon, amount: 1200, currency: 'EUR' });
  await run({ type: 'ChangeDeal', dealId: ids.dealWon, ownerId: 'ben' });
  await run({ type: 'ChangeDeal', dealId: ids.dealWon, expectedCloseDate: '2026-04-15' });
  await run({ type: 'ChangeDeal', dealId: ids.dealWon, probabilityOverride: 0.6 });
  await run({ type: 'MoveDealStage', dealId: ids.dealWon, stage: 'proposal' });
  await run({ type: 'WinDeal', dealId: ids.dealWon, amount: 1150 }, { reason: 'best price' });
  await run({
    type: 'OpenDeal',
    dealId: ids.dealReopened,
    customerId: ids.alice,
    title: 'Support add-on',
    amount: 300,
    currency: 'EUR',
    ownerId: 'ann',
    expectedCloseDate: '2026-02-28',
    stage: 'qualified',
  });
  await run({ type: 'LoseDeal', dealId: ids.dealReopened, reason: 'budget cut' });
  await run({ type: 'ReopenDeal', dealId: ids.dealReopened, stage: 'negotiation' });
  await run({
    type: 'OpenDeal',
    dealId: ids.dealOpen,
    customerId: ids.carol,
    title: 'Pilot',
    amount: 500.25,
    currency: 'USD',
    ownerId: 'ann',
    expectedCloseDate: '2026-02-10',
  });

  // Campaigns.
  await run({
    type: 'CreateCampaign',
    campaignId: ids.campaign,
    name: 'Spring sale',
    channel: 'email',
    budget: 5000,
    currency: 'EUR',
    targetSegment: { tags: ['vip'] },
  });
  await run({ type: 'ScheduleCampaign', campaignId: ids.campaign, startsAt: '2026-03-01T00:00:00Z', endsAt: '2026-03-31T00:00:00Z' });
  await run({ type: 'LaunchCampaign', campaignId: ids.campaign });
  await run({ type: 'PauseCampaign', campaignId: ids.campaign, reason: 'fix typo' });
  await run({ type: 'ResumeCampaign', campaignId: ids.campaign });
  await run({ type: 'RecordCampaignCost', campaignId: ids.campaign, costId: 'inv-1', amount: 400, currency: 'EUR' });
  for (const kind of ['sent', 'opened', 'clicked'] as const)
    await run({ type: 'RecordCampaignResponse', campaignId: ids.campaign, customerId: ids.alice, kind });
  await run({ type: 'RecordCampaignResponse', campaignId: ids.campaign, customerId: ids.alice, kind: 'converted', revenue: 1000, currency: 'EUR' });
  await run({ type: 'RecordCampaignResponse', campaignId: ids.campaign, customerId: ids.carol, kind: 'sent' });
  await run({ type: 'RecordCampaignResponse', campaignId: ids.campaign, customerId: ids.carol, kind: 'unsubscribed' });
  await run({ type: 'CompleteCampaign', campaignId: ids.campaign });
  await run({ type: 'CreateCampaign', campaignId: ids.cancelledCampaign, name: 'Winter teaser', channel: 'sms', budget: 100, currency: 'EUR' });
  await run({ type: 'CancelCampaign', campaignId: ids.cancelledCampaign, reason: 'merged into spring' });

  // Feedback: a full lifecycle within SLA, one answered late, one of Carol's before she is forgotten.
  await run(
    {
      type: 'SubmitFeedback',
      feedbackId: ids.feedbackLifecycle,
      customerId: ids.alice,
      kind: 'complaint',
      channel: 'email',
      subject: 'Broken invoice',
      body: 'My invoice shows the wrong address',
      priority: 'normal',
      csat: null,
      nps: 3,
    },
    at('2026-02-01T09:00:00Z'),
  );
  await run({ type: 'AssignFeedback', feedbackId: ids.feedbackLifecycle, assigneeId: 'sue' }, at('2026-02-01T09:05:00Z'));
  await run({ type: 'RespondToFeedback', feedbackId: ids.feedbackLifecycle, message: 'Looking into it' }, at('2026-02-01T10:00:00Z'));
  await run({ type: 'EscalateFeedback', feedbackId: ids.feedbackLifecycle, reason: 'customer is a VIP' }, at('2026-02-01T10:30:00Z'));
  await run({ type: 'ResolveFeedback', feedbackId: ids.feedbackLifecycle, resolution: 'Invoice reissued' }, at('2026-02-01T12:00:00Z'));
  await run({ type: 'ReopenFeedback', feedbackId: ids.feedbackLifecycle, reason: 'still wrong' }, at('2026-02-02T09:00:00Z'));
  await run({ type: 'ResolveFeedback', feedbackId: ids.feedbackLifecycle, resolution: 'Fixed for good' }, at('2026-02-02T11:00:00Z'));
  await run({ type: 'CloseFeedback', feedbackId: ids.feedbackLifecycle }, at('2026-02-03T09:00:00Z'));
  await run({ type: 'RateFeedback', feedbackId: ids.feedbackLifecycle, csat: 4, comment: null }, at('2026-02-03T10:00:00Z'));
  await run(
    {
      type: 'SubmitFeedback',
      feedbackId: ids.feedbackLate,
      customerId: ids.alice,
      kind: 'question',
      channel: 'chat',
      subject: 'Opening hours',
      body: '?',
      priority: 'urgent',
    },
    at('2026-02-05T09:00:00Z'),
  );
  await run({ type: 'RespondToFeedback', feedbackId: ids.feedbackLate, message: 'Sorry for the wait' }, at('2026-02-05T12:00:00Z'));
  await run(
    {
      type: 'SubmitFeedback',
      feedbackId: ids.feedbackOfCarol,
      customerId: ids.carol,
      kind: 'request',
      channel: 'web',
      subject: 'Carol wants a callback',
      body: 'call me',
    },
    at('2026-02-06T09:00:00Z'),
  );

  // Activities: a call with Alice, a task on her won deal changed and completed, a note on Carol's deal before she is forgotten.
  await run(
    {
      type: 'LogActivity',
      activityId: ids.callWithAlice,
      customerId: ids.alice,
      kind: 'call',
      subject: 'Renewal call',
      body: 'Alice asked for an invoice per site',
    },
    at('2026-02-07T09:00:00Z'),
  );
  await run(
    {
      type: 'LogActivity',
      activityId: ids.taskOnDeal,
      dealId: ids.dealWon,
      kind: 'task',
      subject: 'Send licence keys',
      body: 'Two sites',
      dueAt: '2026-02-10T17:00:00Z',
      assigneeId: '0b8f7a52-5a43-4d8c-9a57-3e3b6f0f2c11',
    },
    at('2026-02-07T10:00:00Z'),
  );
  await run({ type: 'ChangeActivity', activityId: ids.taskOnDeal, body: 'Three sites', dueAt: '2026-02-12T17:00:00Z' }, at('2026-02-08T10:00:00Z'));
  await run({ type: 'CompleteActivity', activityId: ids.taskOnDeal }, at('2026-02-11T10:00:00Z'));
  await run(
    { type: 'LogActivity', activityId: ids.noteOfCarol, dealId: ids.dealOpen, kind: 'note', subject: 'Pilot scope', body: 'Carol needs it by March' },
    at('2026-02-07T11:00:00Z'),
  );
  await run({ type: 'ForgetCustomer', customerId: ids.carol });
  return ids;
}

/** A harness whose live runner has projected the scenario, with the reporting views over it: what a rebuild replaces. */
export async function projectedScenario(label: string, projections: Projection[]): Promise<{ h: Harness; runner: ProjectionRunner; ids: ScenarioIds }> {
  const h = await createHarness(label);
  const runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
  await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
  const ids = await runScenario(h);
  await runner.waitForPosition(h.lastPosition(), 10_000);
  return { h, runner, ids };
}
