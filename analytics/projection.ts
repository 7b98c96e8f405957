import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projections/projection.ts';
import { ms } from '../projections/read-models/common.ts';
import { DEFAULT_BASE_CURRENCY } from '../domain/exchange-rate/events.ts';
import { RowSet, type Row, type TableSpec } from '../projections/read-models/rows.ts';
import { dayOf, dayToIsoDate, monthOfDay } from './models/time.ts';
import { scoreCustomer, type CustomerAggregate, type StoredModel } from './scoring.ts';
import {
  ACTIVITY,
  AGGREGATE_TABLES,
  AMOUNT,
  CUSTOMER,
  DEAL,
  FEEDBACK,
  migrateAggregates,
  migrateModels,
  ORDER,
  PURCHASE_DAY,
  REVENUE_DAY,
  SATISFACTION,
  STATE,
  upsertScores,
} from './tables.ts';
import { convertAmount, minusMoney, plusMoney, RateBook, setRate, type Reconverted } from './rates.ts';
import { analyticsReportingViews } from './reporting.ts';
import { loadLatestModel } from './model-store.ts';
import { mergeCustomers } from './merge.ts';
import { valuePerMonth } from './retention-clv.ts';
import { purchaseMonthsOf, RetentionDeltas, withPurchaseDay } from './retention-counts.ts';
import type { PurchaseSummary } from './models/rfm.ts';
import { ioTurns } from '../shared/io-turns.ts';

export const ANALYTICS_EVENT_TYPES = [
  'CustomerRegistered',
  'CustomerMerged',
  'PurchaseRecorded',
  'PurchaseRefunded',
  'FeedbackSubmitted',
  'FeedbackResolved',
  'FeedbackClosed',
  'FeedbackReopened',
  'FeedbackRated',
  'CampaignResponseRecorded',
  'DealOpened',
  'DealWon',
  'DealLost',
  'DealReopened',
  'ActivityLogged',
  'ExchangeRateSet',
] as const;

const STATE_ID = 'observation';

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
/** A SQL `date` as a calendar day number; both engines read it as 'YYYY-MM-DD' (eventstore/postgres/database.ts). */
export const dayOfDate = (value: unknown): number => dayOf(`${String(value)}T00:00:00Z`);

/** analytics_customer row -> the aggregate scoring and features read. */
export function aggregateFromRow(row: Row): CustomerAggregate {
  const hasPurchases = row.first_day !== null && row.first_day !== undefined && num(row.purchase_days) > 0;
  return {
    customerId: String(row.customer_id),
    purchases: hasPurchases
      ? {
          firstDay: dayOfDate(row.first_day),
          lastDay: dayOfDate(row.last_day),
          purchaseDays: num(row.purchase_days),
          totalValue: num(row.total_value),
          firstDayValue: num(row.first_day_value),
        }
      : null,
    refunds: num(row.refunds),
    complaints: num(row.complaints),
    complaintsOpen: num(row.complaints_open),
    complaintsResolved: num(row.complaints_resolved),
    resolutionSeconds: num(row.resolution_seconds),
    responsesOpened: num(row.responses_opened),
    responsesClicked: num(row.responses_clicked),
    responsesConverted: num(row.responses_converted),
    responsesUnsubscribed: num(row.responses_unsubscribed),
    dealsOpen: num(row.deals_open),
    dealsWon: num(row.deals_won),
    dealsLost: num(row.deals_lost),
    activities: num(row.activities),
    lastActivityDay: row.last_activity_day === null || row.last_activity_day === undefined ? null : dayOfDate(row.last_activity_day),
  };
}

/** The stored score of a customer (analytics_scores), from the score and the aggregate it was computed on. */
export const scoreRow = (s: NonNullable<ReturnType<typeof scoreCustomer>>, purchases: PurchaseSummary): Row => ({
  customer_id: s.customerId,
  model_version: s.modelVersion,
  observation_end: dayToIsoDate(s.observationEndDay),
  frequency: s.rfm.frequency,
  recency: s.rfm.recency,
  t: s.rfm.T,
  monetary: s.rfm.monetary,
  clv: s.clv,
  expected_purchases: s.expectedPurchases,
  p_alive: s.pAlive,
  expected_spend: s.expectedSpend,
  churn_score: s.churnScore,
  r_score: s.rfmScore.r,
  f_score: s.rfmScore.f,
  m_score: s.rfmScore.m,
  segment: s.segment,
  cluster: s.cluster,
  value_per_month: valuePerMonth(purchases, s.observationEndDay),
});

const newCustomer = (customerId: string): Row => ({
  customer_id: customerId,
  registered_at: null,
  currency: null,
  first_purchase_at: null,
  cohort: null,
  first_day: null,
  last_day: null,
  purchase_days: 0,
  orders: 0,
  total_value: '0.0000',
  first_day_value: '0.0000',
  refunds: 0,
  refund_value: '0.0000',
  complaints: 0,
  complaints_open: 0,
  complaints_resolved: 0,
  resolution_seconds: 0,
  feedback_count: 0,
  csat_count: 0,
  csat_sum: 0,
  nps_count: 0,
  nps_sum: 0,
  responses_sent: 0,
  responses_opened: 0,
  responses_clicked: 0,
  responses_converted: 0,
  responses_unsubscribed: 0,
  deals_open: 0,
  deals_won: 0,
  deals_lost: 0,
  last_event_at: null,
  activities: 0,
  last_activity_day: null,
  pending_amounts: 0,
  purchase_months: [],
});

class Tables {
  readonly sets = new Map<string, RowSet>();
  /** Customers whose `purchase_months` changed in this batch, with the list they had before it (analytics/retention-counts.ts). */
  readonly monthsBefore = new Map<string, number[]>();
  /** Keys already looked up in this batch (found or not): a miss is not queried twice. */
  private readonly looked = new Map<string, Set<string>>();
  constructor(
    private readonly trx: QueryExecutorProvider,
    private readonly schema: string,
    /** The base currency and the rates in force over the batch's business times. */
    readonly baseCurrency: string,
    readonly rates: RateBook,
  ) {
    for (const spec of [CUSTOMER, PURCHASE_DAY, ORDER, ACTIVITY, FEEDBACK, DEAL, REVENUE_DAY, SATISFACTION, STATE, AMOUNT]) {
      this.sets.set(spec.table, new RowSet(trx, schema, spec));
    }
  }
  set(spec: TableSpec): RowSet {
    return this.sets.get(spec.table)!;
  }
  private lookedUp(spec: TableSpec): Set<string> {
    let keys = this.looked.get(spec.table);
    if (!keys) this.looked.set(spec.table, (keys = new Set()));
    return keys;
  }
  /** Loads many keys in one query (the batch's pre-scan). */
  async preload(spec: TableSpec, keys: Iterable<string>): Promise<void> {
    const looked = this.lookedUp(spec);
    const wanted = [...keys].filter((k) => !looked.has(k));
    if (wanted.length === 0) return;
    await this.set(spec).load(wanted);
    for (const k of wanted) looked.add(k);
  }
  /** The row with this key: loaded on first use, created from `init` if absent. One indexed lookup at most. */
  async row(spec: TableSpec, key: string, init?: () => Row): Promise<Row | undefined> {
    const set = this.set(spec);
    let row = set.get(key);
    if (!row && !this.lookedUp(spec).has(key)) {
      await this.preload(spec, [key]);
      row = set.get(key);
    }
    if (!row && init) {
      row = init();
      set.put(row);
    }
    if (row) set.touch(key);
    return row;
  }
  /** Writes the changed rows, and the retention counts' change from the customers' changed lists. */
  async flush(): Promise<void> {
    const deltas = new RetentionDeltas();
    for (const [id, before] of this.monthsBefore) deltas.change(before, purchaseMonthsOf(this.set(CUSTOMER).get(id)?.purchase_months));
    this.monthsBefore.clear();
    await deltas.apply(this.trx, this.schema);
    for (const set of this.sets.values()) await set.flush();
  }
  /** `amount` in the base currency at `at`: itself in the base currency, null while no rate is set. */
  async inBase(amount: number, currency: string, at: string): Promise<string | null> {
    if (currency === this.baseCurrency) return convertAmount(amount, '1');
    const rate = await this.rates.rateAt(currency, at);
    return rate === null ? null : convertAmount(amount, rate);
  }
}

/**
 * Whether a purchase at `at` in `currency` comes before the customer's first so far: earlier in
 * business time, or at the same time in a currency whose code sorts first (so that the headline
 * currency does not depend on the order purchases are recorded in).
 */
const isFirstPurchase = (c: Row, at: string, currency: string): boolean => {
  if (c.first_purchase_at === null || c.first_purchase_at === undefined) return true;
  const first = ms(c.first_purchase_at);
  return ms(at) < first || (ms(at) === first && currency < String(c.currency));
};

const latestOf = (stored: unknown, at: string): unknown => (stored === null || stored === undefined || ms(at) > ms(stored) ? at : stored);

/**
 * Applies one event to the aggregates. Every branch touches a fixed number of rows by primary key,
 * so the cost per event does not depend on how much history there is.
 */
async function applyEvent(t: Tables, e: ProjectedEvent, touched: Set<string>): Promise<void> {
  const at = e.metadata.occurredAt;
  const day = dayOf(at);
  const isoDay = dayToIsoDate(day);
  const month = monthOfDay(day);
  const customer = async (id: string): Promise<Row> => {
    touched.add(id);
    const row = (await t.row(CUSTOMER, id, () => newCustomer(id)))!;
    row.last_event_at = latestOf(row.last_event_at, at);
    return row;
  };
  const activity = async (customerId: string, kind: string, activityDay = isoDay) => {
    const row = (await t.row(ACTIVITY, `${customerId}|${activityDay}|${kind}`, () => ({
      activity_id: `${customerId}|${activityDay}|${kind}`,
      customer_id: customerId,
      day: activityDay,
      kind,
      count: 0,
    })))!;
    row.count = num(row.count) + 1;
  };
  const revenueDay = async (isoDate: string) =>
    (await t.row(REVENUE_DAY, isoDate, () => ({ day: isoDate, purchases: 0, revenue: '0.0000', refunds: '0.0000' })))!;
  const satisfaction = async (period: string, channel: string) =>
    (await t.row(SATISFACTION, `${period}|${channel}`, () => ({
      satisfaction_id: `${period}|${channel}`,
      period,
      channel,
      csat_responses: 0,
      csat_satisfied: 0,
      nps_responses: 0,
      promoters: 0,
      detractors: 0,
    })))!;
  const countCsat = async (period: string, channel: string, csat: number, sign: 1 | -1) => {
    const s = await satisfaction(period, channel);
    s.csat_responses = num(s.csat_responses) + sign;
    if (csat >= 4) s.csat_satisfied = num(s.csat_satisfied) + sign;
  };
  const countNps = async (period: string, channel: string, nps: number, sign: 1 | -1) => {
    const s = await satisfaction(period, channel);
    s.nps_responses = num(s.nps_responses) + sign;
    if (nps >= 9) s.promoters = num(s.promoters) + sign;
    if (nps <= 6) s.detractors = num(s.detractors) + sign;
  };

  const { event } = e;
  switch (event.type) {
    case 'CustomerRegistered': {
      const c = await customer(event.data.customerId);
      c.registered_at = at;
      break;
    }
    case 'PurchaseRecorded': {
      const d = event.data;
      const c = await customer(d.customerId);
      // Every purchase counts, whatever its currency; its value is in the base currency (0 while its rate is missing).
      if (isFirstPurchase(c, at, d.currency)) {
        c.first_purchase_at = at;
        c.currency = d.currency;
      }
      const amount = await recordAmount(t, c, e, 'purchase', `${d.customerId}|${d.orderId}`, isoDay, d.currency, d.amount);
      await t
        .row(ORDER, `${d.customerId}|${d.orderId}`, () => ({
          order_key: `${d.customerId}|${d.orderId}`,
          customer_id: d.customerId,
          day: isoDay,
          value: '0.0000',
          refunded: '0.0000',
        }))
        .then((o) => (o!.value = plusMoney(o!.value, amount)));
      const pd = (await t.row(PURCHASE_DAY, `${d.customerId}|${isoDay}`, () => ({
        purchase_day_id: `${d.customerId}|${isoDay}`,
        customer_id: d.customerId,
        day: isoDay,
        orders: 0,
        value: '0.0000',
      })))!;
      const newDay = num(pd.orders) === 0;
      pd.orders = num(pd.orders) + 1;
      pd.value = plusMoney(pd.value, amount);
      c.orders = num(c.orders) + 1;
      c.total_value = plusMoney(c.total_value, amount);
      if (newDay) c.purchase_days = num(c.purchase_days) + 1;
      const firstDay = c.first_day ? dayOfDate(c.first_day) : null;
      if (firstDay === null || day < firstDay) {
        // A back-dated purchase can become the new first day: the old first day turns into a repeat day.
        c.first_day = isoDay;
        c.first_day_value = pd.value;
        c.cohort = month;
      } else if (day === firstDay) {
        c.first_day_value = plusMoney(c.first_day_value, amount);
      }
      if (!c.last_day || day > dayOfDate(c.last_day)) c.last_day = isoDay;
      const months = purchaseMonthsOf(c.purchase_months);
      const nextMonths = withPurchaseDay(months, day);
      if (nextMonths.length !== months.length || nextMonths.some((last, i) => last !== months[i])) {
        if (!t.monthsBefore.has(d.customerId)) t.monthsBefore.set(d.customerId, months);
        c.purchase_months = nextMonths;
      }
      const r = await revenueDay(isoDay);
      r.purchases = num(r.purchases) + 1;
      r.revenue = plusMoney(r.revenue, amount);
      break;
    }
    case 'PurchaseRefunded': {
      const d = event.data;
      const order = await t.row(ORDER, `${d.customerId}|${d.orderId}`);
      if (!order) {
        await customer(d.customerId);
        break;
      }
      // Whose figures the order counts for: its customer's, or the primary's it was merged into (merge.ts).
      const owner = String(order.customer_id);
      const c = await customer(owner);
      // Converted at the refund's own business time, like every amount.
      const amount = await recordAmount(t, c, e, 'refund', String(order.order_key), String(order.day), d.currency, d.amount);
      order.refunded = plusMoney(order.refunded, amount);
      // The refund lowers the value of the day the order was placed on (RFM), and counts as dated activity.
      const pd = await t.row(PURCHASE_DAY, `${owner}|${String(order.day)}`);
      if (pd) pd.value = minusMoney(pd.value, amount);
      if (String(order.day) === String(c.first_day)) c.first_day_value = minusMoney(c.first_day_value, amount);
      c.total_value = minusMoney(c.total_value, amount);
      c.refunds = num(c.refunds) + 1;
      c.refund_value = plusMoney(c.refund_value, amount);
      await activity(owner, 'refund');
      const r = await revenueDay(isoDay);
      r.refunds = plusMoney(r.refunds, amount);
      break;
    }
    case 'FeedbackSubmitted': {
      const d = event.data;
      if (await t.row(FEEDBACK, d.feedbackId)) break;
      t.set(FEEDBACK).put({
        feedback_id: d.feedbackId,
        customer_id: d.customerId,
        kind: d.kind,
        channel: d.channel,
        submitted_at: at,
        resolved_at: null,
        resolution_seconds: null,
        csat: d.csat,
        csat_period: d.csat === null ? null : month,
        nps: d.nps,
        nps_period: d.nps === null ? null : month,
      });
      const c = await customer(d.customerId);
      c.feedback_count = num(c.feedback_count) + 1;
      if (d.kind === 'complaint') {
        c.complaints = num(c.complaints) + 1;
        c.complaints_open = num(c.complaints_open) + 1;
        await activity(d.customerId, 'complaint');
      }
      if (d.csat !== null) {
        c.csat_count = num(c.csat_count) + 1;
        c.csat_sum = num(c.csat_sum) + d.csat;
        await countCsat(month, d.channel, d.csat, 1);
      }
      if (d.nps !== null) {
        c.nps_count = num(c.nps_count) + 1;
        c.nps_sum = num(c.nps_sum) + d.nps;
        await countNps(month, d.channel, d.nps, 1);
      }
      break;
    }
    case 'FeedbackResolved':
    case 'FeedbackClosed': {
      const f = await t.row(FEEDBACK, event.data.feedbackId);
      if (!f || f.resolved_at !== null) break;
      // Closing without a resolution also ends the wait: the resolution time runs to whichever came first.
      const seconds = Math.max(0, (ms(at) - ms(f.submitted_at)) / 1000);
      f.resolved_at = at;
      f.resolution_seconds = seconds;
      if (f.kind === 'complaint') {
        const c = await customer(String(f.customer_id));
        c.complaints_open = num(c.complaints_open) - 1;
        c.complaints_resolved = num(c.complaints_resolved) + 1;
        c.resolution_seconds = num(c.resolution_seconds) + seconds;
      }
      break;
    }
    case 'FeedbackReopened': {
      const f = await t.row(FEEDBACK, event.data.feedbackId);
      if (!f || f.resolved_at === null) break;
      if (f.kind === 'complaint') {
        const c = await customer(String(f.customer_id));
        c.complaints_open = num(c.complaints_open) + 1;
        c.complaints_resolved = num(c.complaints_resolved) - 1;
        c.resolution_seconds = num(c.resolution_seconds) - num(f.resolution_seconds);
      }
      f.resolved_at = null;
      f.resolution_seconds = null;
      break;
    }
    case 'FeedbackRated': {
      const f = await t.row(FEEDBACK, event.data.feedbackId);
      if (!f) break;
      const c = await customer(String(f.customer_id));
      // A new rating replaces the previous one: withdraw it from its month, count the new one in this month.
      if (f.csat !== null && f.csat !== undefined) {
        await countCsat(String(f.csat_period), String(f.channel), num(f.csat), -1);
        c.csat_count = num(c.csat_count) - 1;
        c.csat_sum = num(c.csat_sum) - num(f.csat);
      }
      f.csat = event.data.csat;
      f.csat_period = month;
      await countCsat(month, String(f.channel), event.data.csat, 1);
      c.csat_count = num(c.csat_count) + 1;
      c.csat_sum = num(c.csat_sum) + event.data.csat;
      break;
    }
    case 'CampaignResponseRecorded': {
      const d = event.data;
      const c = await customer(d.customerId);
      const column = `responses_${d.kind}`;
      c[column] = num(c[column]) + 1;
      await activity(d.customerId, d.kind);
      break;
    }
    case 'ActivityLogged': {
      // Staff engagement: every note, call, meeting or task logged on the customer (or their deal).
      const d = event.data;
      const c = await customer(d.customerId);
      c.activities = num(c.activities) + 1;
      if (!c.last_activity_day || day > dayOfDate(c.last_activity_day)) c.last_activity_day = isoDay;
      await activity(d.customerId, 'engagement');
      break;
    }
    case 'DealOpened': {
      const d = event.data;
      if (await t.row(DEAL, d.dealId)) break;
      t.set(DEAL).put({ deal_id: d.dealId, customer_id: d.customerId, status: 'open', opened_at: at, closed_at: null });
      const c = await customer(d.customerId);
      c.deals_open = num(c.deals_open) + 1;
      break;
    }
    case 'DealWon':
    case 'DealLost': {
      const deal = await t.row(DEAL, event.data.dealId);
      if (!deal || deal.status !== 'open') break;
      const won = event.type === 'DealWon';
      deal.status = won ? 'won' : 'lost';
      deal.closed_at = at;
      const c = await customer(String(deal.customer_id));
      c.deals_open = num(c.deals_open) - 1;
      if (won) c.deals_won = num(c.deals_won) + 1;
      else c.deals_lost = num(c.deals_lost) + 1;
      break;
    }
    case 'DealReopened': {
      const deal = await t.row(DEAL, event.data.dealId);
      if (!deal || deal.status === 'open') break;
      const c = await customer(String(deal.customer_id));
      if (deal.status === 'won') c.deals_won = num(c.deals_won) - 1;
      else c.deals_lost = num(c.deals_lost) - 1;
      c.deals_open = num(c.deals_open) + 1;
      deal.status = 'open';
      deal.closed_at = null;
      break;
    }
    default:
      return;
  }
  await recordObservation(t, at);
}

/**
 * Every applied event counts; customer behaviour (`at` given) also moves the observation end (the
 * latest business time seen). A merge or a rate is housekeeping, recorded when it was done: it leaves
 * the end alone, else merging two records today would age every customer's history to today.
 */
async function recordObservation(t: Tables, at: string | undefined): Promise<void> {
  const state = (await t.row(STATE, STATE_ID, () => ({ id: STATE_ID, observation_end: null, events: 0, base_currency: t.baseCurrency })))!;
  if (at !== undefined) state.observation_end = latestOf(state.observation_end, at);
  state.events = num(state.events) + 1;
  state.base_currency = t.baseCurrency;
}

/**
 * Keeps a purchase or refund amount with its base value and answers that value ('0.0000' while its
 * rate is missing: the amount is then pending, counted on the customer until a rate converts it).
 */
async function recordAmount(
  t: Tables,
  c: Row,
  e: ProjectedEvent,
  kind: 'purchase' | 'refund',
  orderKey: string,
  valueDay: string,
  currency: string,
  amount: number,
): Promise<string> {
  const at = e.metadata.occurredAt;
  const base = await t.inBase(amount, currency, at);
  t.set(AMOUNT).put({
    amount_id: e.id,
    customer_id: c.customer_id,
    kind,
    order_key: orderKey,
    value_day: valueDay,
    occurred_at: new Date(at).toISOString(),
    currency,
    amount: convertAmount(amount, '1'),
    base_value: base,
  });
  if (base === null) c.pending_amounts = num(c.pending_amounts) + 1;
  return base ?? '0.0000';
}

/**
 * A rate set or corrected: each amount it converted again moves the aggregates it counts in by the
 * difference (purchase day, first day, net and refund value, order, revenue of its own day), and an
 * amount that was pending no longer is. Rows are loaded per key set, a few queries per rate.
 */
async function applyReconverted(t: Tables, changes: readonly Reconverted[], touched: Set<string>): Promise<void> {
  await t.preload(
    CUSTOMER,
    changes.map((a) => a.customerId),
  );
  await t.preload(
    PURCHASE_DAY,
    changes.map((a) => `${a.customerId}|${a.valueDay}`),
  );
  await t.preload(
    ORDER,
    changes.map((a) => a.orderKey),
  );
  await t.preload(
    REVENUE_DAY,
    changes.map((a) => dayToIsoDate(dayOf(a.occurredAt))),
  );
  for (const a of changes) {
    const c = await t.row(CUSTOMER, a.customerId);
    if (!c) continue;
    touched.add(a.customerId);
    if (a.wasPending) c.pending_amounts = num(c.pending_amounts) - 1;
    const sign = a.kind === 'purchase' ? plusMoney : minusMoney;
    c.total_value = sign(c.total_value, a.delta);
    if (String(c.first_day) === a.valueDay) c.first_day_value = sign(c.first_day_value, a.delta);
    const pd = await t.row(PURCHASE_DAY, `${a.customerId}|${a.valueDay}`);
    if (pd) pd.value = sign(pd.value, a.delta);
    const order = await t.row(ORDER, a.orderKey);
    const revenue = await t.row(REVENUE_DAY, dayToIsoDate(dayOf(a.occurredAt)));
    if (a.kind === 'purchase') {
      if (order) order.value = plusMoney(order.value, a.delta);
      if (revenue) revenue.revenue = plusMoney(revenue.revenue, a.delta);
    } else {
      c.refund_value = plusMoney(c.refund_value, a.delta);
      if (order) order.refunded = plusMoney(order.refunded, a.delta);
      if (revenue) revenue.refunds = plusMoney(revenue.refunds, a.delta);
    }
  }
}

/**
 * Loads, in one query per table, every row the batch's events name directly (customers, orders,
 * purchase days, revenue days, activity, satisfaction cells, feedback and deals), then the
 * customers that feedback and deal events reach through their rows. Per batch this is a fixed number
 * of queries; rows it does not foresee load on first use.
 */
async function preload(t: Tables, events: ProjectedEvent[]): Promise<void> {
  const keys = new Map<TableSpec, Set<string>>();
  const want = (spec: TableSpec, key: string) => {
    let set = keys.get(spec);
    if (!set) keys.set(spec, (set = new Set()));
    set.add(key);
  };
  for (const { event, metadata } of events) {
    const d = event.data as Record<string, unknown>;
    const day = dayToIsoDate(dayOf(metadata.occurredAt));
    if (typeof d.customerId === 'string') want(CUSTOMER, d.customerId);
    if (typeof d.feedbackId === 'string') want(FEEDBACK, d.feedbackId);
    if (typeof d.dealId === 'string') want(DEAL, d.dealId);
    if (typeof d.orderId === 'string') want(ORDER, `${d.customerId}|${d.orderId}`);
    switch (event.type) {
      case 'PurchaseRecorded':
        want(PURCHASE_DAY, `${d.customerId}|${day}`);
        want(REVENUE_DAY, day);
        break;
      case 'PurchaseRefunded':
        want(REVENUE_DAY, day);
        want(ACTIVITY, `${d.customerId}|${day}|refund`);
        break;
      case 'FeedbackSubmitted':
        want(SATISFACTION, `${monthOfDay(dayOf(metadata.occurredAt))}|${String(d.channel)}`);
        if (d.kind === 'complaint') want(ACTIVITY, `${d.customerId}|${day}|complaint`);
        break;
      case 'CampaignResponseRecorded':
        want(ACTIVITY, `${d.customerId}|${day}|${String(d.kind)}`);
        break;
      case 'ActivityLogged':
        want(ACTIVITY, `${d.customerId}|${day}|engagement`);
        break;
    }
  }
  await t.preload(FEEDBACK, keys.get(FEEDBACK) ?? []);
  await t.preload(DEAL, keys.get(DEAL) ?? []);
  for (const id of [...(keys.get(FEEDBACK) ?? []), ...(keys.get(DEAL) ?? [])]) {
    const row = t.set(FEEDBACK).get(id) ?? t.set(DEAL).get(id);
    if (row) want(CUSTOMER, String(row.customer_id));
  }
  for (const spec of [CUSTOMER, ORDER, PURCHASE_DAY, REVENUE_DAY, ACTIVITY, SATISFACTION]) await t.preload(spec, keys.get(spec) ?? []);
  await t.preload(STATE, [STATE_ID]);
}

export interface AnalyticsProjectionOptions {
  /**
   * Schema holding `analytics_models` and `analytics_scores` (normally the live read schema). Scores
   * depend on when a model was fitted, so they are kept out of the rebuild/verify set; during a
   * rebuild into a shadow schema the projection still reads the live model and keeps scores current.
   * Defaults to the schema the projection writes to.
   */
  modelSchema?: string;
  /** ISO 4217 base currency (CRM_BASE_CURRENCY) of every analytics money figure. Default EUR. */
  baseCurrency?: string;
}

export function createAnalyticsProjection(options: AnalyticsProjectionOptions = {}): Projection {
  return {
    name: 'analytics',
    // 2: merges fold the duplicate into the primary. 3: activities count as engagement. 4: money in the
    // base currency, purchases in every currency counted. 5: retention counts (analytics/retention-counts.ts).
    // 6: the gaps between listed days, for retention in any activity window. 7: `currency` is the first
    // purchase's in business time, not the first recorded. 8: a merged duplicate's orders count for its
    // primary (`analytics_order.customer_id`), so that a refund of one recorded later lowers the primary's figures.
    // 9: a merge leaves the observation end alone (it moved it to the day of the merge).
    // 10: every `date` kept as the day it is (embedded database west of UTC: first, last and activity
    // days, purchase and revenue days a day early, moving back as rows were written again); rebuilt once.
    version: 10,
    // Amounts are stored converted: another base currency (CRM_BASE_CURRENCY) rebuilds them, as a new version would.
    variant: `base currency ${options.baseCurrency ?? DEFAULT_BASE_CURRENCY}`,
    tables: AGGREGATE_TABLES,
    filter: { eventTypes: [...ANALYTICS_EVENT_TYPES] },
    async migrate(db: Kysely<unknown>, schema: string) {
      await migrateAggregates(db, schema);
      // Empty model tables beside the aggregates too, so the reporting views also work over a
      // replay or shadow schema; the live ones are in `modelSchema`.
      await migrateModels(db, schema);
      if (options.modelSchema && options.modelSchema !== schema) await migrateModels(db, options.modelSchema);
    },
    async apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]) {
      const modelSchema = options.modelSchema ?? schema;
      const baseCurrency = options.baseCurrency ?? DEFAULT_BASE_CURRENCY;
      const times = events.map((e) => new Date(e.metadata.occurredAt).getTime());
      const span = [new Date(times.reduce((x, y) => Math.min(x, y))).toISOString(), new Date(times.reduce((x, y) => Math.max(x, y))).toISOString()] as const;
      const tables = () => new Tables(trx, schema, baseCurrency, new RateBook(trx, schema, ...span));
      let t = tables();
      await preload(t, events);
      const touched = new Set<string>();
      // A catch-up batch holds thousands of events: requests are answered between them (shared/io-turns.ts).
      const turns = ioTurns();
      for (const [i, e] of events.entries()) {
        if (turns.due()) await turns.give();
        if (e.event.type === 'CustomerMerged' || e.event.type === 'ExchangeRateSet') {
          // Set-based SQL over the flushed tables, then a fresh row cache (and rates) for the rest of the batch.
          await t.flush();
          let changes: Reconverted[] = [];
          if (e.event.type === 'CustomerMerged') {
            const ids = [e.event.data.customerId, e.event.data.duplicateId];
            const before = await purchaseMonthsIn(trx, schema, ids);
            await mergeCustomers(trx, schema, e.event.data.customerId, e.event.data.duplicateId, modelSchema);
            // The duplicate's months count for the primary now: the retention counts follow.
            const after = await purchaseMonthsIn(trx, schema, ids);
            const deltas = new RetentionDeltas();
            for (const id of ids) deltas.change(before.get(id) ?? [], after.get(id) ?? []);
            await deltas.apply(trx, schema);
            touched.delete(e.event.data.duplicateId);
            touched.add(e.event.data.customerId);
          } else if (e.event.data.baseCurrency === baseCurrency && e.event.data.currency !== baseCurrency) {
            // Rates against another base are not ours; the base currency itself always converts at 1.
            const d = e.event.data;
            changes = await setRate(trx, schema, d.currency, d.validFrom, d.rate);
          }
          t = tables();
          await applyReconverted(t, changes, touched);
          // A run of rates (an import) preloads the rest of the batch once, after its last rate.
          if (events[i + 1]?.event.type !== 'ExchangeRateSet') await preload(t, events.slice(i + 1));
          if (e.event.type === 'CustomerMerged') await recordObservation(t, undefined);
          continue;
        }
        await applyEvent(t, e, touched);
      }
      await t.flush();
      await t.preload(CUSTOMER, touched);
      await rescoreCustomers(trx, schema, modelSchema, t, touched);
    },
    reportingViews: ({ readSchema, reportingSchema }) => analyticsReportingViews(readSchema, reportingSchema),
  };
}

/** `purchase_months` of these customers as stored (absent: no row). */
async function purchaseMonthsIn(trx: QueryExecutorProvider, schema: string, ids: readonly string[]): Promise<Map<string, number[]>> {
  const { rows } = await sql<{ id: string; months: number[] }>`SELECT customer_id::text AS id, purchase_months AS months
    FROM ${sql.id(schema, 'analytics_customer')} WHERE customer_id = ANY(CAST(${[...ids]} AS uuid[]))`.execute(trx);
  return new Map(rows.map((r) => [r.id, purchaseMonthsOf(r.months)]));
}

/** Live scoring after a batch: each touched customer with purchases, with the latest model, at the stored observation end. */
async function rescoreCustomers(trx: QueryExecutorProvider, schema: string, modelSchema: string, t: Tables, touched: Set<string>): Promise<void> {
  if (touched.size === 0) return;
  const model: StoredModel | null = await loadLatestModel(trx, modelSchema);
  if (!model) return;
  const state = t.set(STATE).get(STATE_ID);
  if (!state?.observation_end) return;
  const observationEndDay = dayOf(new Date(ms(state.observation_end)));
  const rows: Row[] = [];
  // Scoring thousands of customers after a catch-up batch: requests are answered between them.
  const turns = ioTurns();
  for (const id of touched) {
    if (turns.due()) await turns.give();
    const c = t.set(CUSTOMER).get(id);
    if (!c) continue;
    const aggregate = aggregateFromRow(c);
    const score = scoreCustomer(model, aggregate, observationEndDay);
    if (score && aggregate.purchases) rows.push(scoreRow(score, aggregate.purchases));
  }
  if (rows.length) await upsertScores(trx, modelSchema, rows);
}
