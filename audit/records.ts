import type { CrmEvent } from '../domain/catalogue.ts';
import { dealProbability } from '../domain/deal/decider.ts';
import { fromMinor, toMinor } from '../domain/money.ts';
import { ERASED } from '../domain/shared.ts';
import type { ProjectedEvent } from '../projections/projection.ts';
import type { CampaignView } from '../projections/queries/campaigns.ts';
import type { DealView } from '../projections/queries/deals.ts';
import type { ActivityView } from '../projections/queries/activities.ts';
import { changesOf } from '../domain/activity/events.ts';
import { evolveFeedback, type FeedbackState, type Instant } from '../projections/read-models/feedback-fold.ts';

/**
 * Records as they stood, folded in memory from decoded events. The fields follow the read-model
 * views (projections/queries: camelCase, money in major units) so a record `asOf` an instant reads
 * like today's record; they are derived here rather than from the decider state because the
 * deciders keep only what rules need (no personal data, no counters). Figures the read models
 * gather from other streams (a customer's open feedback and deal counts) are not part of a
 * stream's own history and are absent here.
 */

export const RECORD_KINDS = ['customer', 'deal', 'campaign', 'feedback', 'activity'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

export interface CustomerRecord {
  id: string;
  name: unknown;
  email: unknown;
  phone: unknown;
  company: string | null;
  tags: string[];
  source: string | null;
  marketingConsent: boolean;
  status: 'active' | 'inactive' | 'merged' | 'forgotten';
  mergedInto: string | null;
  mergedDuplicates: string[];
  firstPurchaseAt: string | null;
  lastPurchaseAt: string | null;
  orderCount: number;
  /** Purchases net of refunds in `currency` (the first purchase's), major units, as in the read model. */
  revenue: number;
  refunded: number;
  currency: string | null;
  /** Net revenue in every currency the customer paid in. */
  revenueByCurrency: Record<string, number>;
  registeredAt: string | null;
  forgottenAt: string | null;
  /** The account owner (a user id), as in the read model. */
  ownerId: string | null;
  updatedAt: string;
}

/**
 * The deal view's fields (projections/queries/deals.ts), so an as-of deal reads like today's. Not
 * folded here: `daysInStage` (counted at query time), `wonReason` (the read model takes it from
 * the DealWon event's metadata) and `revision` (reported beside the record).
 */
export type DealRecord = Omit<DealView, 'daysInStage' | 'wonReason' | 'revision'>;

/** The campaign view's fields (projections/queries/campaigns.ts) but `revision` (reported beside the record). */
export type CampaignRecord = Omit<CampaignView, 'revision'>;

export interface FeedbackRecord {
  id: string;
  customerId: string;
  kind: string;
  channel: string;
  subject: unknown;
  body: unknown;
  priority: string;
  status: 'open' | 'in_progress' | 'resolved' | 'closed';
  assigneeId: string | null;
  csat: number | null;
  nps: number | null;
  firstResponseDueAt: string;
  resolutionDueAt: string;
  firstRespondedAt: string | null;
  resolvedAt: string | null;
  closedAt: string | null;
  resolution: string | null;
  escalationCount: number;
  reopenCount: number;
  ratedAt: string | null;
  submittedAt: string;
  updatedAt: string;
}

/**
 * The activity view's fields (projections/queries/activities.ts) but `overdue` (the clock at query
 * time), `loggedBy` (metadata, shown in the stream's history) and `revision` (reported beside the record).
 */
export type ActivityRecord = Omit<ActivityView, 'overdue' | 'loggedBy' | 'revision' | 'body'> & { body: unknown };

export type AnyRecord = CustomerRecord | DealRecord | CampaignRecord | FeedbackRecord | ActivityRecord;

type Folder<R> = (record: R | null, event: CrmEvent, at: string) => R | null;

const customerFold: Folder<CustomerRecord> = (record, event, at) => {
  // Minor units keep the running sums exact; the record shows major units.
  const addRevenue = (r: CustomerRecord, currency: string, delta: number) => {
    r.revenueByCurrency[currency] = fromMinor(toMinor(r.revenueByCurrency[currency] ?? 0) + delta);
    r.currency ??= currency;
    if (currency === r.currency) r.revenue = fromMinor(toMinor(r.revenue) + delta);
  };
  if (event.type === 'CustomerRegistered') {
    const d = event.data;
    return {
      id: d.customerId,
      name: d.name,
      email: d.email,
      phone: d.phone,
      company: d.company,
      tags: [...d.tags],
      source: d.source,
      marketingConsent: d.marketingConsent,
      status: 'active',
      mergedInto: null,
      mergedDuplicates: [],
      firstPurchaseAt: null,
      lastPurchaseAt: null,
      orderCount: 0,
      revenue: 0,
      refunded: 0,
      currency: null,
      revenueByCurrency: {},
      registeredAt: at,
      forgottenAt: null,
      ownerId: null,
      updatedAt: at,
    };
  }
  if (!record) return record;
  const r: CustomerRecord = {
    ...record,
    tags: [...record.tags],
    revenueByCurrency: { ...record.revenueByCurrency },
    mergedDuplicates: [...record.mergedDuplicates],
    updatedAt: at,
  };
  switch (event.type) {
    case 'CustomerContactDetailsChanged': {
      const d = event.data;
      if (d.name !== undefined) r.name = d.name;
      if (d.email !== undefined) r.email = d.email;
      if (d.phone !== undefined) r.phone = d.phone;
      if (d.company !== undefined) r.company = d.company;
      return r;
    }
    case 'CustomerTagged':
      if (!r.tags.includes(event.data.tag)) r.tags.push(event.data.tag);
      return r;
    case 'CustomerUntagged':
      r.tags = r.tags.filter((t) => t !== event.data.tag);
      return r;
    case 'CustomerMarketingConsentChanged':
      r.marketingConsent = event.data.marketingConsent;
      return r;
    case 'PurchaseRecorded':
      r.orderCount += 1;
      addRevenue(r, event.data.currency, toMinor(event.data.amount));
      r.firstPurchaseAt ??= at;
      r.lastPurchaseAt = at;
      return r;
    case 'PurchaseRefunded':
      addRevenue(r, event.data.currency, -toMinor(event.data.amount));
      if (event.data.currency === r.currency) r.refunded = fromMinor(toMinor(r.refunded) + toMinor(event.data.amount));
      return r;
    case 'CustomerMerged':
      r.mergedDuplicates.push(event.data.duplicateId);
      return r;
    case 'CustomerMergedInto':
      r.mergedInto = event.data.primaryId;
      r.status = 'merged';
      return r;
    case 'CustomerDeactivated':
      r.status = 'inactive';
      return r;
    case 'CustomerReactivated':
      r.status = 'active';
      return r;
    case 'CustomerOwnerAssigned':
      r.ownerId = event.data.ownerId;
      return r;
    case 'CustomerForgotten':
      // As the customers read model: a company stored before it was encrypted is erased here.
      if (r.company !== null) r.company = ERASED;
      r.status = 'forgotten';
      r.forgottenAt = at;
      return r;
    default:
      return r;
  }
};

/** PostgreSQL's `round(numeric, places)`: half away from zero, so folded figures equal the read model's generated columns. */
const roundAsNumeric = (value: number, places: number): number => {
  const scale = 10 ** places;
  return (Math.sign(value) * Math.round(Math.abs(value) * scale)) / scale;
};

const withDealFigures = (r: DealRecord): DealRecord => {
  const probability = dealProbability(r.stage, r.probabilityOverride);
  return {
    ...r,
    status: r.stage === 'won' || r.stage === 'lost' ? r.stage : 'open',
    probability,
    weightedAmount: roundAsNumeric(r.amount * probability, 4),
  };
};

const dealFold: Folder<DealRecord> = (record, event, at) => {
  if (event.type === 'DealOpened') {
    const d = event.data;
    return withDealFigures({
      id: d.dealId,
      customerId: d.customerId,
      title: d.title,
      amount: d.amount,
      currency: d.currency,
      ownerId: d.ownerId,
      stage: d.stage,
      status: 'open',
      probability: 0,
      probabilityOverride: d.probabilityOverride,
      weightedAmount: 0,
      expectedCloseDate: d.expectedCloseDate,
      lostReason: null,
      stageEnteredAt: at,
      openedAt: at,
      closedAt: null,
      updatedAt: at,
    });
  }
  if (!record) return record;
  const r: DealRecord = { ...record, updatedAt: at };
  switch (event.type) {
    case 'DealTitleChanged':
      r.title = event.data.title;
      break;
    case 'DealAmountChanged':
      r.amount = event.data.amount;
      r.currency = event.data.currency;
      break;
    case 'DealOwnerChanged':
      r.ownerId = event.data.ownerId;
      break;
    case 'DealExpectedCloseChanged':
      r.expectedCloseDate = event.data.expectedCloseDate;
      break;
    case 'DealProbabilityOverridden':
      r.probabilityOverride = event.data.probabilityOverride;
      break;
    case 'DealStageChanged':
      r.stage = event.data.to;
      r.stageEnteredAt = at;
      break;
    case 'DealWon':
      r.stage = 'won';
      r.amount = event.data.amount;
      r.currency = event.data.currency;
      r.stageEnteredAt = at;
      r.closedAt = at;
      break;
    case 'DealLost':
      r.stage = 'lost';
      r.lostReason = event.data.reason;
      r.stageEnteredAt = at;
      r.closedAt = at;
      break;
    case 'DealReopened':
      r.stage = event.data.to;
      r.lostReason = null;
      r.stageEnteredAt = at;
      r.closedAt = null;
      break;
    default:
      break;
  }
  return withDealFigures(r);
};

const withCampaignFigures = (r: CampaignRecord): CampaignRecord => ({
  ...r,
  roi: r.costs > 0 ? roundAsNumeric((r.revenue - r.costs) / r.costs, 6) : null,
  conversionRate: r.responses.sent > 0 ? roundAsNumeric(r.responses.converted / r.responses.sent, 6) : null,
  overBudget: r.costs > r.budget,
});

const campaignFold: Folder<CampaignRecord> = (record, event, at) => {
  if (event.type === 'CampaignCreated') {
    const d = event.data;
    return withCampaignFigures({
      id: d.campaignId,
      name: d.name,
      channel: d.channel,
      budget: d.budget,
      currency: d.currency,
      startsAt: d.schedule?.startsAt ?? null,
      endsAt: d.schedule?.endsAt ?? null,
      targetSegment: d.targetSegment,
      status: 'draft',
      costs: 0,
      responses: { sent: 0, opened: 0, clicked: 0, converted: 0, unsubscribed: 0 },
      conversions: 0,
      revenue: 0,
      roi: null,
      conversionRate: null,
      overBudget: false,
      createdAt: at,
      launchedAt: null,
      completedAt: null,
      cancelledAt: null,
      updatedAt: at,
    });
  }
  if (!record) return record;
  const r: CampaignRecord = { ...record, responses: { ...record.responses }, updatedAt: at };
  switch (event.type) {
    case 'CampaignScheduled':
      r.startsAt = event.data.startsAt;
      r.endsAt = event.data.endsAt;
      r.status = 'scheduled';
      break;
    case 'CampaignLaunched':
      r.status = 'active';
      r.launchedAt ??= at;
      break;
    case 'CampaignResumed':
      r.status = 'active';
      break;
    case 'CampaignPaused':
      r.status = 'paused';
      break;
    case 'CampaignCompleted':
      r.status = 'completed';
      r.completedAt = at;
      break;
    case 'CampaignCancelled':
      r.status = 'cancelled';
      r.cancelledAt = at;
      break;
    case 'CampaignCostRecorded':
      r.costs = fromMinor(toMinor(r.costs) + toMinor(event.data.amount));
      break;
    case 'CampaignResponseRecorded':
      r.responses[event.data.kind] += 1;
      if (event.data.kind === 'converted') {
        r.conversions += 1;
        // As the read model: `revenue` counts conversions in the campaign's currency (others are in the base-currency figures).
        if (event.data.currency === null || event.data.currency === r.currency) r.revenue = fromMinor(toMinor(r.revenue) + toMinor(event.data.revenue ?? 0));
      }
      break;
    default:
      break;
  }
  return withCampaignFigures(r);
};

const isoOf = (value: Instant): string => (value instanceof Date ? value.toISOString() : value);

const activityFold: Folder<ActivityRecord> = (record, event, at) => {
  if (event.type === 'ActivityLogged') {
    const { activityId, ...logged } = event.data;
    return { id: activityId, ...logged, occurredAt: at, completedAt: null, open: logged.kind === 'task', updatedAt: at };
  }
  if (!record) return record;
  const r: ActivityRecord = { ...record, updatedAt: at };
  switch (event.type) {
    case 'ActivityChanged':
      return { ...r, ...changesOf(event.data) };
    case 'ActivityCompleted':
      r.completedAt = at;
      r.open = false;
      return r;
    default:
      return r;
  }
};

/** The auditor's view of a feedback item: the read model's own fold (feedback-fold.ts), named as the API names it. */
const feedbackRecordOf = (state: FeedbackState | undefined): FeedbackRecord | null =>
  state
    ? {
        id: state.feedback_id,
        customerId: state.customer_id,
        kind: state.kind,
        channel: state.channel,
        subject: state.subject,
        body: state.body,
        priority: state.priority,
        status: state.status,
        assigneeId: state.assignee_id,
        csat: state.csat,
        nps: state.nps,
        firstResponseDueAt: isoOf(state.first_response_due_at),
        resolutionDueAt: isoOf(state.resolution_due_at),
        firstRespondedAt: state.first_responded_at === null ? null : isoOf(state.first_responded_at),
        resolvedAt: state.resolved_at === null ? null : isoOf(state.resolved_at),
        closedAt: state.closed_at === null ? null : isoOf(state.closed_at),
        resolution: state.resolution ?? null,
        escalationCount: state.escalation_count,
        reopenCount: state.reopen_count,
        ratedAt: state.rated_at === null ? null : isoOf(state.rated_at),
        submittedAt: isoOf(state.submitted_at),
        updatedAt: isoOf(state.last_event_at),
      }
    : null;

const folders: { [K in Exclude<RecordKind, 'feedback'>]: Folder<AnyRecord> } = {
  customer: customerFold as Folder<AnyRecord>,
  deal: dealFold as Folder<AnyRecord>,
  campaign: campaignFold as Folder<AnyRecord>,
  activity: activityFold as Folder<AnyRecord>,
};

/**
 * Folds one stream's decoded events into its record. Times are business times (`occurredAt`), as
 * in the read models; which events count is decided by the caller (record time, see as-of.ts).
 */
export const foldRecord = (kind: RecordKind, events: readonly ProjectedEvent[]): AnyRecord | null => {
  if (kind === 'feedback') return feedbackRecordOf(events.reduce<FeedbackState | undefined>(evolveFeedback, undefined));
  const fold = folders[kind];
  return events.reduce<AnyRecord | null>((record, e) => fold(record, e.event, e.metadata.occurredAt), null);
};
