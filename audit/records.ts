import type { CrmEvent } from '../domain/catalogue.ts';
import { fromMinor, toMinor } from '../domain/money.ts';
import type { ProjectedEvent } from '../projections/projection.ts';

/**
 * Records as they stood, folded in memory from decoded events. The fields follow the read models
 * (camelCase, money in major units) so a record `asOf` an instant reads like today's record; they
 * are derived here rather than from the decider state because the deciders keep only what rules
 * need (no personal data, no counters).
 */

export const RECORD_KINDS = ['customer', 'deal', 'campaign', 'feedback'] as const;
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
  /** Purchases minus refunds, in major units, per currency. */
  revenue: Record<string, number>;
  registeredAt: string | null;
}

export interface DealRecord {
  id: string;
  customerId: string;
  title: string;
  amount: number;
  currency: string;
  ownerId: string;
  stage: string;
  probabilityOverride: number | null;
  expectedCloseDate: string;
  lostReason: string | null;
  stageChangedAt: string | null;
  openedAt: string | null;
  closedAt: string | null;
}

export interface CampaignRecord {
  id: string;
  name: string;
  channel: string;
  budget: number;
  currency: string;
  schedule: { startsAt: string; endsAt: string | null } | null;
  targetSegment: unknown;
  status: string;
  costs: number;
  responses: Record<string, number>;
  conversions: number;
  revenue: number;
  createdAt: string | null;
}

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
  escalations: number;
  submittedAt: string | null;
}

export type AnyRecord = CustomerRecord | DealRecord | CampaignRecord | FeedbackRecord;

type Folder<R> = (record: R | null, event: CrmEvent, at: string) => R | null;

const customerFold: Folder<CustomerRecord> = (record, event, at) => {
  // Minor units keep the running revenue exact; the record shows major units.
  const addRevenue = (r: CustomerRecord, currency: string, delta: number) => {
    r.revenue[currency] = fromMinor(toMinor(r.revenue[currency] ?? 0) + delta);
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
      revenue: {},
      registeredAt: at,
    };
  }
  if (!record) return record;
  const r: CustomerRecord = { ...record, tags: [...record.tags], revenue: { ...record.revenue }, mergedDuplicates: [...record.mergedDuplicates] };
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
    case 'CustomerForgotten':
      r.status = 'forgotten';
      return r;
    default:
      return r;
  }
};

const dealFold: Folder<DealRecord> = (record, event, at) => {
  if (event.type === 'DealOpened') {
    const d = event.data;
    return {
      id: d.dealId,
      customerId: d.customerId,
      title: d.title,
      amount: d.amount,
      currency: d.currency,
      ownerId: d.ownerId,
      stage: d.stage,
      probabilityOverride: d.probabilityOverride,
      expectedCloseDate: d.expectedCloseDate,
      lostReason: null,
      stageChangedAt: at,
      openedAt: at,
      closedAt: null,
    };
  }
  if (!record) return record;
  const r: DealRecord = { ...record };
  switch (event.type) {
    case 'DealAmountChanged':
      r.amount = event.data.amount;
      r.currency = event.data.currency;
      return r;
    case 'DealOwnerChanged':
      r.ownerId = event.data.ownerId;
      return r;
    case 'DealExpectedCloseChanged':
      r.expectedCloseDate = event.data.expectedCloseDate;
      return r;
    case 'DealProbabilityOverridden':
      r.probabilityOverride = event.data.probabilityOverride;
      return r;
    case 'DealStageChanged':
      r.stage = event.data.to;
      r.stageChangedAt = at;
      return r;
    case 'DealWon':
      r.stage = 'won';
      r.amount = event.data.amount;
      r.currency = event.data.currency;
      r.stageChangedAt = at;
      r.closedAt = at;
      return r;
    case 'DealLost':
      r.stage = 'lost';
      r.lostReason = event.data.reason;
      r.stageChangedAt = at;
      r.closedAt = at;
      return r;
    case 'DealReopened':
      r.stage = event.data.to;
      r.lostReason = null;
      r.stageChangedAt = at;
      r.closedAt = null;
      return r;
    default:
      return r;
  }
};

const campaignFold: Folder<CampaignRecord> = (record, event, at) => {
  if (event.type === 'CampaignCreated') {
    const d = event.data;
    return {
      id: d.campaignId,
      name: d.name,
      channel: d.channel,
      budget: d.budget,
      currency: d.currency,
      schedule: d.schedule,
      targetSegment: d.targetSegment,
      status: 'draft',
      costs: 0,
      responses: {},
      conversions: 0,
      revenue: 0,
      createdAt: at,
    };
  }
  if (!record) return record;
  const r: CampaignRecord = { ...record, responses: { ...record.responses } };
  switch (event.type) {
    case 'CampaignScheduled':
      r.schedule = { startsAt: event.data.startsAt, endsAt: event.data.endsAt };
      r.status = 'scheduled';
      return r;
    case 'CampaignLaunched':
    case 'CampaignResumed':
      r.status = 'active';
      return r;
    case 'CampaignPaused':
      r.status = 'paused';
      return r;
    case 'CampaignCompleted':
      r.status = 'completed';
      return r;
    case 'CampaignCancelled':
      r.status = 'cancelled';
      return r;
    case 'CampaignCostRecorded':
      r.costs = fromMinor(toMinor(r.costs) + toMinor(event.data.amount));
      return r;
    case 'CampaignResponseRecorded':
      r.responses[event.data.kind] = (r.responses[event.data.kind] ?? 0) + 1;
      if (event.data.kind === 'converted') {
        r.conversions += 1;
        r.revenue = fromMinor(toMinor(r.revenue) + toMinor(event.data.revenue ?? 0));
      }
      return r;
    default:
      return r;
  }
};

const feedbackFold: Folder<FeedbackRecord> = (record, event, at) => {
  if (event.type === 'FeedbackSubmitted') {
    const d = event.data;
    return {
      id: d.feedbackId,
      customerId: d.customerId,
      kind: d.kind,
      channel: d.channel,
      subject: d.subject,
      body: d.body,
      priority: d.priority,
      status: 'open',
      assigneeId: null,
      csat: d.csat,
      nps: d.nps,
      firstResponseDueAt: d.firstResponseDueAt,
      resolutionDueAt: d.resolutionDueAt,
      firstRespondedAt: null,
      resolvedAt: null,
      closedAt: null,
      resolution: null,
      escalations: 0,
      submittedAt: at,
    };
  }
  if (!record) return record;
  const r: FeedbackRecord = { ...record };
  switch (event.type) {
    case 'FeedbackAssigned':
      r.assigneeId = event.data.assigneeId;
      if (r.status === 'open') r.status = 'in_progress';
      return r;
    case 'FeedbackResponded':
      if (event.data.firstResponse || r.firstRespondedAt === null) r.firstRespondedAt ??= at;
      if (r.status === 'open') r.status = 'in_progress';
      return r;
    case 'FeedbackEscalated':
      r.escalations += 1;
      r.priority = event.data.priority;
      r.firstResponseDueAt = event.data.firstResponseDueAt;
      r.resolutionDueAt = event.data.resolutionDueAt;
      return r;
    case 'FeedbackResolved':
      r.status = 'resolved';
      r.resolution = event.data.resolution;
      r.resolvedAt = at;
      return r;
    case 'FeedbackReopened':
      r.status = 'in_progress';
      r.resolvedAt = null;
      r.resolution = null;
      r.resolutionDueAt = event.data.resolutionDueAt;
      return r;
    case 'FeedbackClosed':
      r.status = 'closed';
      r.closedAt = at;
      return r;
    case 'FeedbackRated':
      r.csat = event.data.csat;
      return r;
    default:
      return r;
  }
};

const folders: { [K in RecordKind]: Folder<AnyRecord> } = {
  customer: customerFold as Folder<AnyRecord>,
  deal: dealFold as Folder<AnyRecord>,
  campaign: campaignFold as Folder<AnyRecord>,
  feedback: feedbackFold as Folder<AnyRecord>,
};

/**
 * Folds one stream's decoded events into its record. Times are business times (`occurredAt`), as
 * in the read models; which events count is decided by the caller (record time, see as-of.ts).
 */
export const foldRecord = (kind: RecordKind, events: readonly ProjectedEvent[]): AnyRecord | null =>
  events.reduce<AnyRecord | null>((record, e) => folders[kind](record, e.event, e.metadata.occurredAt), null);
