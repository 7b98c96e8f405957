import type { ProjectedEvent } from '../projections/projection.ts';
import type { CampaignView } from '../projections/queries/campaigns.ts';
import type { DealView } from '../projections/queries/deals.ts';
import type { ActivityView } from '../projections/queries/activities.ts';
import { evolveActivity, type ActivityRow } from '../projections/read-models/activity-fold.ts';
import { evolveCampaign, type CampaignRow } from '../projections/read-models/campaign-fold.ts';
import { isoOf, type Instant } from '../projections/read-models/common.ts';
import { evolveCustomer, revenueLineOf, type CustomerRow } from '../projections/read-models/customer-fold.ts';
import { evolveDeal, type DealRow } from '../projections/read-models/deal-fold.ts';
import { evolveFeedback, type FeedbackState } from '../projections/read-models/feedback-fold.ts';
import { minorOfNumeric, numericOf } from '../shared/money.ts';

/**
 * Records as they stood, folded in memory from decoded events. The fields follow the read-model
 * views (projections/queries: camelCase, money in major units) so a record `asOf` an instant reads
 * like today's record; they are read from the read models' own folds
 * (projections/read-models/*-fold.ts), not from the decider state, because the deciders keep only
 * what rules need (no personal data, no counters). Figures the read models gather from other
 * streams (a customer's open feedback and deal counts, a merged duplicate's purchases) are not part
 * of a stream's own history and are absent here.
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
 * The deal view's fields (projections/queries/deals.ts), so an as-of deal reads like today's, but
 * `daysInStage` (counted at query time), `wonReason` (the command's reason, metadata, shown in the
 * stream's history) and `revision` (reported beside the record).
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

const isoOrNull = (value: Instant | null): string | null => (value === null ? null : isoOf(value));

/**
 * The auditor's view of a customer: the read model's own fold (customer-fold.ts), named as the API
 * names it, with what the stream tells beyond the row: the duplicates it absorbed and its net revenue
 * in every currency (the revenue lines the read model keeps, summed).
 */
const customerRecordOf = (events: readonly ProjectedEvent[]): CustomerRecord | null => {
  let row: CustomerRow | undefined;
  const mergedDuplicates: string[] = [];
  const byCurrency = new Map<string, bigint>();
  for (const e of events) {
    row = evolveCustomer(row, e);
    if (!row) continue;
    if (e.event.type === 'CustomerMerged') mergedDuplicates.push(e.event.data.duplicateId);
    const line = revenueLineOf(e);
    if (line) byCurrency.set(line.currency, (byCurrency.get(line.currency) ?? 0n) + minorOfNumeric(line.amount));
  }
  if (!row) return null;
  return {
    id: row.customer_id,
    name: row.name,
    email: row.email,
    phone: row.phone,
    company: row.company,
    tags: row.tags,
    source: row.source,
    marketingConsent: row.marketing_consent,
    status: row.status,
    mergedInto: row.merged_into,
    mergedDuplicates,
    firstPurchaseAt: isoOrNull(row.first_purchase_at),
    lastPurchaseAt: isoOrNull(row.last_purchase_at),
    orderCount: row.order_count,
    revenue: Number(row.revenue),
    refunded: Number(row.refunded),
    currency: row.currency,
    revenueByCurrency: Object.fromEntries([...byCurrency].map(([currency, minor]) => [currency, Number(numericOf(minor))])),
    registeredAt: isoOf(row.registered_at),
    forgottenAt: isoOrNull(row.forgotten_at),
    ownerId: row.owner_id,
    updatedAt: isoOf(row.last_event_at),
  };
};

/**
 * The auditor's view of a deal: the read model's own fold (deal-fold.ts), named as the API names it;
 * its probability and weighted amount are the row's, exact as stored.
 */
const dealRecordOf = (row: DealRow | undefined): DealRecord | null =>
  row
    ? {
        id: row.deal_id,
        customerId: row.customer_id,
        title: row.title,
        amount: Number(row.amount),
        currency: row.currency,
        ownerId: row.owner_id,
        stage: row.stage,
        status: row.stage === 'won' || row.stage === 'lost' ? row.stage : 'open',
        probability: Number(row.probability),
        probabilityOverride: row.probability_override === null ? null : Number(row.probability_override),
        weightedAmount: Number(row.weighted_amount),
        expectedCloseDate: row.expected_close_date,
        lostReason: row.lost_reason,
        stageEnteredAt: isoOf(row.stage_entered_at),
        openedAt: isoOf(row.opened_at),
        closedAt: isoOrNull(row.closed_at),
        updatedAt: isoOf(row.last_event_at),
      }
    : null;

/** The auditor's view of a campaign: the read model's own fold (campaign-fold.ts), named as the API names it. */
const campaignRecordOf = (row: CampaignRow | undefined): CampaignRecord | null =>
  row
    ? {
        id: row.campaign_id,
        name: row.name,
        channel: row.channel,
        budget: Number(row.budget),
        currency: row.currency,
        startsAt: isoOrNull(row.starts_at),
        endsAt: isoOrNull(row.ends_at),
        targetSegment: row.target_segment,
        status: row.status,
        costs: Number(row.costs),
        responses: {
          sent: row.sent_count,
          opened: row.opened_count,
          clicked: row.clicked_count,
          converted: row.converted_count,
          unsubscribed: row.unsubscribed_count,
        },
        conversions: row.converted_count,
        revenue: Number(row.revenue),
        roi: row.roi === null ? null : Number(row.roi),
        conversionRate: row.conversion_rate === null ? null : Number(row.conversion_rate),
        overBudget: row.over_budget,
        createdAt: isoOf(row.created_at),
        launchedAt: isoOrNull(row.launched_at),
        completedAt: isoOrNull(row.completed_at),
        cancelledAt: isoOrNull(row.cancelled_at),
        updatedAt: isoOf(row.last_event_at),
      }
    : null;

/** The auditor's view of an activity: the read model's own fold (activity-fold.ts), named as the API names it. */
const activityRecordOf = (row: ActivityRow | undefined): ActivityRecord | null =>
  row
    ? {
        id: row.activity_id,
        customerId: row.customer_id,
        dealId: row.deal_id,
        kind: row.kind,
        subject: row.subject,
        body: row.body,
        dueAt: isoOrNull(row.due_at),
        assigneeId: row.assignee_id,
        occurredAt: isoOf(row.occurred_at),
        completedAt: isoOrNull(row.completed_at),
        open: row.kind === 'task' && row.completed_at === null,
        updatedAt: isoOf(row.last_event_at),
      }
    : null;

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
        firstRespondedAt: isoOrNull(state.first_responded_at),
        resolvedAt: isoOrNull(state.resolved_at),
        closedAt: isoOrNull(state.closed_at),
        resolution: state.resolution ?? null,
        escalationCount: state.escalation_count,
        reopenCount: state.reopen_count,
        ratedAt: isoOrNull(state.rated_at),
        submittedAt: isoOf(state.submitted_at),
        updatedAt: isoOf(state.last_event_at),
      }
    : null;

/**
 * Folds one stream's decoded events into its record, with the read model's own fold. Times are
 * business times (`occurredAt`), as in the read models; which events count is decided by the caller
 * (record time, see as-of.ts).
 */
export const foldRecord = (kind: RecordKind, events: readonly ProjectedEvent[]): AnyRecord | null => {
  switch (kind) {
    case 'customer':
      return customerRecordOf(events);
    case 'deal':
      return dealRecordOf(events.reduce<DealRow | undefined>(evolveDeal, undefined));
    case 'campaign':
      return campaignRecordOf(events.reduce<CampaignRow | undefined>(evolveCampaign, undefined));
    case 'feedback':
      return feedbackRecordOf(events.reduce<FeedbackState | undefined>(evolveFeedback, undefined));
    case 'activity':
      return activityRecordOf(events.reduce<ActivityRow | undefined>(evolveActivity, undefined));
  }
};
