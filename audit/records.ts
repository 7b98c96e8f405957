import type { ProjectedEvent } from '../projections/projection.ts';
import { activityFieldsOf, type ActivityFields } from '../projections/queries/activities.ts';
import { campaignFieldsOf, type CampaignFields } from '../projections/queries/campaigns.ts';
import { customerFieldsOf, type CustomerFields } from '../projections/queries/customers.ts';
import { dealFieldsOf, type DealFields } from '../projections/queries/deals.ts';
import { feedbackFieldsOf, type FeedbackFields } from '../projections/queries/feedback.ts';
import { evolveActivity, type ActivityRow } from '../projections/read-models/activity-fold.ts';
import { evolveCampaign, type CampaignRow } from '../projections/read-models/campaign-fold.ts';
import { evolveCustomer, revenueLineOf, type CustomerRow } from '../projections/read-models/customer-fold.ts';
import { evolveDeal, type DealRow } from '../projections/read-models/deal-fold.ts';
import { evolveFeedback, type FeedbackState } from '../projections/read-models/feedback-fold.ts';
import { minorOfNumeric, numericOf } from '../shared/money.ts';

/**
 * Records as they stood, folded in memory from decoded events. The fields follow the read-model
 * views (projections/queries: camelCase, money in major units) so a record `asOf` an instant reads
 * like today's record: each row is folded by its read model's own fold
 * (projections/read-models/*-fold.ts) and named by its view's own naming (`dealFieldsOf` and the
 * like in projections/queries), so neither is written twice. Not the decider state: the deciders keep only
 * what rules need (no personal data, no counters). Figures the read models gather from other
 * streams (a customer's open feedback and deal counts, a merged duplicate's purchases) are not part
 * of a stream's own history and are absent here.
 */

export const RECORD_KINDS = ['customer', 'deal', 'campaign', 'feedback', 'activity'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/**
 * A customer's own fields as the API names them (the view's naming, `customerFieldsOf`), with what
 * the stream tells beyond the row: the duplicates it absorbed and its net revenue in every currency.
 */
export type CustomerRecord = CustomerFields & {
  mergedDuplicates: string[];
  /** Net revenue in every currency the customer paid in. */
  revenueByCurrency: Record<string, number>;
};

/**
 * The deal view's fields (projections/queries/deals.ts), so an as-of deal reads like today's, but
 * `daysInStage` (counted at query time), `wonReason` (the command's reason, metadata, shown in the
 * stream's history) and `revision` (reported beside the record).
 */
export type DealRecord = DealFields;

/** The campaign view's fields (projections/queries/campaigns.ts) but `revision` (reported beside the record). */
export type CampaignRecord = CampaignFields;

/** The feedback view's own fields, with the body and the resolution the stream recorded (the read model keeps neither). */
export type FeedbackRecord = FeedbackFields & { body: unknown; resolution: string | null };

/**
 * The activity view's fields (projections/queries/activities.ts) but `overdue` (the clock at query
 * time), `loggedBy` (metadata, shown in the stream's history) and `revision` (reported beside the record).
 */
export type ActivityRecord = ActivityFields;

export type AnyRecord = CustomerRecord | DealRecord | CampaignRecord | FeedbackRecord | ActivityRecord;

/**
 * The auditor's view of a customer: the read model's own fold (customer-fold.ts), named by the view's
 * own naming, with what the stream tells beyond the row: the duplicates it absorbed and its net
 * revenue in every currency (the revenue lines the read model keeps, summed).
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
    ...customerFieldsOf(row),
    mergedDuplicates,
    revenueByCurrency: Object.fromEntries([...byCurrency].map(([currency, minor]) => [currency, Number(numericOf(minor))])),
  };
};

/** The auditor's view of a feedback item: the read model's own fold (feedback-fold.ts), with the body and resolution it carries along. */
const feedbackRecordOf = (state: FeedbackState | undefined): FeedbackRecord | null =>
  state ? { ...feedbackFieldsOf(state), body: state.body, resolution: state.resolution ?? null } : null;

const orNull = <R, T>(row: R | undefined, fieldsOf: (row: R) => T): T | null => (row ? fieldsOf(row) : null);

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
      return orNull(events.reduce<DealRow | undefined>(evolveDeal, undefined), dealFieldsOf);
    case 'campaign':
      return orNull(events.reduce<CampaignRow | undefined>(evolveCampaign, undefined), campaignFieldsOf);
    case 'feedback':
      return feedbackRecordOf(events.reduce<FeedbackState | undefined>(evolveFeedback, undefined));
    case 'activity':
      return orNull(events.reduce<ActivityRow | undefined>(evolveActivity, undefined), activityFieldsOf);
  }
};
