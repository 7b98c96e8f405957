import type { ProjectedEvent } from '../projections/projection.ts';
import { activityFieldsOf, type ActivityFields } from '../projections/queries/activities.ts';
import { campaignFieldsOf, type CampaignFields, type CampaignInBase } from '../projections/queries/campaigns.ts';
import { toCustomerView, type CustomerRevenue, type CustomerView } from '../projections/queries/customers.ts';
import { dealFieldsOf, type DealFields, type DealInBase } from '../projections/queries/deals.ts';
import { campaignMoneyChangeOf, correctCostLine, type CampaignMoneyLine } from '../projections/read-models/campaigns.ts';
import { feedbackFieldsOf, type FeedbackFields } from '../projections/queries/feedback.ts';
import { evolveActivity, type ActivityRow } from '../projections/read-models/activity-fold.ts';
import { evolveCampaign, type CampaignRow } from '../projections/read-models/campaign-fold.ts';
import { revenueLineOf, type CustomerRow } from '../projections/read-models/customer-fold.ts';
import { applyToCustomers, type CustomerLink, type RowsOf } from '../projections/read-models/customers.ts';
import { evolveDeal, type DealRow } from '../projections/read-models/deal-fold.ts';
import { evolveFeedback, type FeedbackState } from '../projections/read-models/feedback-fold.ts';
import { divideRounded, minorOfNumeric } from '../shared/money.ts';
import { iso } from '../projections/queries/page.ts';
import { baseNumber, baseSumOf, moneyLine, roiOf, sumsByCurrency, type Conversion, type MoneyLine } from './base-figures.ts';
import { MAX_MERGE_CHAIN } from '../domain/customer/decider.ts';

/**
 * Records as they stood, folded in memory from decoded events. The fields follow the read-model
 * views (projections/queries: camelCase, money in major units) so a record `asOf` an instant reads
 * like today's record: each row is folded by its read model's own fold
 * (projections/read-models/*-fold.ts) and named by its view's own naming (`dealFieldsOf` and the
 * like in projections/queries), so neither is written twice. Not the decider state: the deciders keep only
 * what rules need (no personal data, no counters). A customer's record is the one row the customers
 * read model would hold: folded from its own stream, its merged duplicates' streams and its deals'
 * and feedback's streams in position order, by the projection's own step (`applyToCustomers`), so a
 * merged duplicate's figures and the open feedback and deal counts are in it (audit/as-of.ts
 * gathers those streams).
 */

export const RECORD_KINDS = ['customer', 'deal', 'campaign', 'feedback', 'activity'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/**
 * A customer as the API names it (the view's naming, `toCustomerView`) but `revision` (reported beside
 * the record), with what the streams tell beyond the row: the duplicates it absorbed and its net
 * revenue in every currency.
 */
export type CustomerRecord = Omit<CustomerView, 'revision'> & {
  /** The customers merged into this one (its own `CustomerMerged` events). */
  mergedDuplicates: string[];
  /** Net revenue in every currency the customer paid in. */
  revenueByCurrency: Record<string, number>;
};

/** A customer as of an instant: with its revenue in the base currency, as `GET /customers/:id` gives it (audit/base-figures.ts). */
export type CustomerRecordInBase = CustomerRecord & CustomerRevenue;

/**
 * The deal view's fields (projections/queries/deals.ts), so an as-of deal reads like today's, but
 * `daysInStage` (counted at query time), `wonReason` (the command's reason, metadata, shown in the
 * stream's history) and `revision` (reported beside the record).
 */
export type DealRecord = DealFields & DealInBase;

/** The campaign view's fields (projections/queries/campaigns.ts) but `revision` (reported beside the record), with its money in the base currency. */
export type CampaignRecord = CampaignFields & CampaignInBase;

/** The feedback view's own fields, with the body and the resolution the stream recorded (the read model keeps neither). */
export type FeedbackRecord = FeedbackFields & { body: unknown; resolution: string | null };

/**
 * The activity view's fields (projections/queries/activities.ts) but `overdue` (the clock at query
 * time), `loggedBy` (metadata, shown in the stream's history) and `revision` (reported beside the record).
 */
export type ActivityRecord = ActivityFields;

export type AnyRecord = CustomerRecord | CustomerRecordInBase | DealRecord | CampaignRecord | FeedbackRecord | ActivityRecord;

/** Rows in memory, for `applyToCustomers`. */
class MemoryRows<R> implements RowsOf<R> {
  readonly rows = new Map<string, R>();
  constructor(private readonly keyOf: (row: R) => string) {}
  get(key: string): R | undefined {
    return this.rows.get(key);
  }
  put(row: R): void {
    this.rows.set(this.keyOf(row), row);
  }
  touch(): void {}
}

/**
 * The auditor's view of customer `customerId` (by default the customer of the first event): the row
 * the customers read model holds after these events, applied in the order given (position order) by
 * the projection's own step, named by the view's own naming; with what the streams tell beyond the
 * row: the duplicates it absorbed and its net revenue in every currency (its revenue lines and those
 * of the customers merged into it, summed). Give it the customer's stream, the streams of the
 * customers merged into it, and the streams of their deals and feedback: events of other streams
 * change nothing, and a primary this customer was merged into stands in for the figures that then
 * count there.
 */
export const customerRecordOf = (events: readonly ProjectedEvent[], customerId?: string): CustomerRecord | null =>
  customerFoldOf(events, customerId)?.record ?? null;

/** `customerRecordOf` with its revenue converted to the base currency (the record as of an instant). */
export const customerRecordInBase = (events: readonly ProjectedEvent[], customerId: string, conversion: Conversion): CustomerRecordInBase | null => {
  const fold = customerFoldOf(events, customerId);
  if (!fold) return null;
  const { sum, missingRates } = baseSumOf(fold.lines, conversion);
  // Refunds are the negative lines (revenueLineOf).
  const refunds = baseSumOf(
    fold.lines.filter((l) => l.minor < 0n),
    conversion,
  ).sum;
  return {
    ...fold.record,
    baseCurrency: conversion.baseCurrency,
    revenueBase: baseNumber(sum),
    refundedBase: baseNumber(refunds === null ? null : -refunds),
    missingRates,
  };
};

/** The customer's record and the revenue lines that count for it (its own and its merged duplicates'). */
const customerFoldOf = (events: readonly ProjectedEvent[], customerId?: string): { record: CustomerRecord; lines: MoneyLine[] } | null => {
  const id = customerId ?? (events[0]?.event.data as { customerId?: string } | undefined)?.customerId;
  if (id === undefined) return null;
  const customers = new MemoryRows<CustomerRow>((row) => row.customer_id);
  const links = new MemoryRows<CustomerLink>((link) => link.link_key);
  const mergedDuplicates: string[] = [];
  const linesOf = new Map<string, MoneyLine[]>();
  for (const e of events) {
    applyToCustomers(customers, links, e, (_before, after) => {
      // The line is its own customer's (a refund of a merged duplicate's order changes the primary's row too).
      const line = revenueLineOf(e);
      if (line && line.customer_id === after.customer_id)
        linesOf.set(after.customer_id, [...(linesOf.get(after.customer_id) ?? []), moneyLine(line.currency, line.amount, line.occurred_at)]);
      if (e.event.type === 'CustomerMerged' && after.customer_id === id) mergedDuplicates.push(e.event.data.duplicateId);
      // Merged into a customer outside the record: a stand-in row takes what then counts there, as the primary's row does.
      const primary = after.merged_into;
      if (primary !== null && !customers.get(primary)) customers.put({ ...after, customer_id: primary, status: 'active', merged_into: null });
    });
  }
  const row = customers.get(id);
  if (!row) return null;
  // Its own lines and those of every customer whose figures count for it (merged into it, through chains).
  const countsFor = (other: string): boolean => {
    let at: string | null = other;
    // The customer itself, then each of up to MAX_MERGE_CHAIN merges up.
    for (let hop = 0; hop <= MAX_MERGE_CHAIN && at !== null; hop++) {
      if (at === id) return true;
      at = customers.get(at)?.merged_into ?? null;
    }
    return false;
  };
  const lines = [...linesOf].filter(([owner]) => countsFor(owner)).flatMap(([, own]) => own);
  const { revision: _revision, ...view } = toCustomerView(row);
  return { record: { ...view, mergedDuplicates, revenueByCurrency: sumsByCurrency(lines) }, lines };
};

/** A deal's amount in the base currency at the rate valid when it was stated, as `GET /deals/:id` gives it. */
const dealInBase = (row: DealRow, conversion: Conversion): DealInBase => {
  const { sum, missingRates } = baseSumOf([moneyLine(row.currency, row.amount, row.amount_at)], conversion);
  return {
    amountAt: iso(row.amount_at)!,
    baseCurrency: conversion.baseCurrency,
    amountBase: baseNumber(sum),
    // round(amount in base x probability, 4), as the live view and the weighted amount round it.
    weightedAmountBase: baseNumber(sum === null ? null : divideRounded(sum * minorOfNumeric(row.probability), 10_000n)),
    missingRates,
  };
};

/** A campaign's money in the base currency, from its money lines, as `GET /campaigns/:id` gives it. */
const campaignInBase = (lines: readonly CampaignMoneyLine[], conversion: Conversion): CampaignInBase => {
  const of = (kind: CampaignMoneyLine['kind']) => lines.filter((l) => l.kind === kind).map((l) => moneyLine(l.currency, l.amount, l.occurred_at));
  const costs = baseSumOf(of('cost'), conversion);
  const revenue = baseSumOf(of('revenue'), conversion);
  return {
    baseCurrency: conversion.baseCurrency,
    revenueByCurrency: sumsByCurrency(of('revenue')),
    costsBase: baseNumber(costs.sum),
    revenueBase: baseNumber(revenue.sum),
    roiBase: roiOf(revenue.sum, costs.sum),
    missingRates: [...new Set([...costs.missingRates, ...revenue.missingRates])].sort(),
  };
};

/** A campaign folded by the read model's own fold, with the money lines the projection would have stored. */
const campaignRecordOf = (events: readonly ProjectedEvent[], conversion: Conversion): CampaignRecord | null => {
  let row: CampaignRow | undefined;
  const lines: CampaignMoneyLine[] = [];
  for (const e of events) {
    row = evolveCampaign(row, e);
    const change = row && campaignMoneyChangeOf(row, e);
    if (change && 'add' in change) lines.push(change.add);
    else if (change) correctCostLine(lines, change.correct);
  }
  return row ? { ...campaignFieldsOf(row), ...campaignInBase(lines, conversion) } : null;
};

/** The auditor's view of a feedback item: the read model's own fold (feedback-fold.ts), with the body and resolution it carries along. */
const feedbackRecordOf = (state: FeedbackState | undefined): FeedbackRecord | null =>
  state ? { ...feedbackFieldsOf(state), body: state.body, resolution: state.resolution ?? null } : null;

const orNull = <R, T>(row: R | undefined, fieldsOf: (row: R) => T): T | null => (row ? fieldsOf(row) : null);

/**
 * Folds one stream's decoded events into its record, with the read model's own fold (a customer's:
 * these events in the order given, see `customerRecordOf`). Times are business times (`occurredAt`),
 * as in the read models; which events count is decided by the caller (record or business time, see
 * as-of.ts).
 */
export const foldRecord = (kind: RecordKind, events: readonly ProjectedEvent[], conversion: Conversion): AnyRecord | null => {
  switch (kind) {
    case 'customer': {
      const id = (events[0]?.event.data as { customerId?: string } | undefined)?.customerId;
      return id === undefined ? null : customerRecordInBase(events, id, conversion);
    }
    case 'deal':
      return orNull(events.reduce<DealRow | undefined>(evolveDeal, undefined), (row) => ({ ...dealFieldsOf(row), ...dealInBase(row, conversion) }));
    case 'campaign':
      return campaignRecordOf(events, conversion);
    case 'feedback':
      return feedbackRecordOf(events.reduce<FeedbackState | undefined>(evolveFeedback, undefined));
    case 'activity':
      return orNull(events.reduce<ActivityRow | undefined>(evolveActivity, undefined), activityFieldsOf);
  }
};
