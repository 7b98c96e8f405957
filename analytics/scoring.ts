import type { BgNbdParams } from './models/bgnbd.ts';
import type { RetentionClvParams } from './retention-clv.ts';
import type { GammaGammaParams } from './models/gamma-gamma.ts';
import { customerValue, type CustomerValue } from './models/customer-value.ts';
import { churnScore, type ChurnFeatures, type ChurnModel } from './models/churn.ts';
import { rfmOf, type PurchaseSummary, type Rfm } from './models/rfm.ts';
import { nearestCluster, rfmScore, rfmSegment, type ClusterModel, type RfmCutoffs, type RfmValues } from './models/segments.ts';
import type { TimeUnit } from './models/time.ts';

/** Everything a stored model version holds that live scoring needs (the `params` JSON of analytics_models). */
export interface ModelParams {
  timeUnit: TimeUnit;
  horizon: number;
  discountRate: number;
  churnWindowDays: number;
  bgnbd: BgNbdParams;
  gammaGamma: GammaGammaParams;
  churn: ChurnModel;
  rfmCutoffs: RfmCutoffs;
  clusters: ClusterModel;
  /** Discounted-retention CLV parameters (absent in models fitted before it was served, or without a retention period). */
  clvRetention?: RetentionClvParams | null;
}

/**
 * A customer's expected purchases, P(alive), spend and CLV under the customer-base models (spend from
 * a net value of at least 0: a history refunded away values nothing). Scoring and the fit's check of
 * its own model both read it from here.
 */
export const valueUnder = (params: Pick<ModelParams, 'bgnbd' | 'gammaGamma' | 'horizon' | 'discountRate'>, rfm: Rfm): CustomerValue =>
  customerValue(params.bgnbd, params.gammaGamma, { ...rfm, monetary: Math.max(0, rfm.monetary) }, params.horizon, params.discountRate);

/** Whether every figure of a value is a number: a model at the edge of its parameters gives NaN or Infinity (0 x Infinity in its series). */
export const isFiniteValue = (value: CustomerValue): boolean => [value.clv, value.expectedPurchases, value.pAlive, value.expectedSpend].every(Number.isFinite);

export interface StoredModel {
  version: number;
  params: ModelParams;
}

/** A customer's aggregates as of a day: what both live scoring and fitting derive features from. */
export interface CustomerAggregate {
  customerId: string;
  purchases: PurchaseSummary | null;
  refunds: number;
  complaints: number;
  complaintsOpen: number;
  complaintsResolved: number;
  resolutionSeconds: number;
  responsesOpened: number;
  responsesClicked: number;
  responsesConverted: number;
  responsesUnsubscribed: number;
  dealsOpen: number;
  dealsWon: number;
  dealsLost: number;
  /** Activities (notes, calls, meetings, tasks) logged on the customer or their deals. */
  activities: number;
  /** Calendar day of the latest one; null when there was none. */
  lastActivityDay: number | null;
}

export const rfmValuesOf = (p: PurchaseSummary, day: number): RfmValues => ({
  daysSinceLastPurchase: Math.max(0, day - p.lastDay),
  purchaseDays: p.purchaseDays,
  meanValue: p.totalValue / p.purchaseDays,
});

export function churnFeaturesOf(a: CustomerAggregate & { purchases: PurchaseSummary }, day: number): ChurnFeatures {
  const p = a.purchases;
  return {
    daysSinceLastPurchase: Math.max(0, day - p.lastDay),
    frequency: p.purchaseDays - 1,
    ageDays: Math.max(0, day - p.firstDay),
    meanPurchaseValue: p.totalValue / p.purchaseDays,
    refunds: a.refunds,
    complaints: a.complaints,
    openComplaints: a.complaintsOpen,
    meanResolutionDays: a.complaintsResolved > 0 ? a.resolutionSeconds / a.complaintsResolved / 86_400 : 0,
    campaignOpens: a.responsesOpened,
    campaignClicks: a.responsesClicked,
    campaignConversions: a.responsesConverted,
    unsubscribes: a.responsesUnsubscribed,
    dealsOpen: a.dealsOpen,
    dealsWon: a.dealsWon,
    dealsLost: a.dealsLost,
    activities: a.activities,
    // Without any activity, the customer has gone without staff contact since they first bought.
    daysSinceLastActivity: Math.max(0, day - (a.lastActivityDay ?? p.firstDay)),
  };
}

export interface CustomerScore {
  customerId: string;
  modelVersion: number;
  /** The observation end (calendar day) the score was computed at. */
  observationEndDay: number;
  rfm: Rfm;
  clv: number;
  expectedPurchases: number;
  pAlive: number;
  expectedSpend: number;
  churnScore: number;
  rfmScore: { r: number; f: number; m: number };
  segment: string;
  cluster: number;
}

/** Scores one customer with a stored model: O(1) in the customer's history (BG/NBD terms per horizon period only). */
export function scoreCustomer(model: StoredModel, aggregate: CustomerAggregate, observationEndDay: number): CustomerScore | null {
  const p = aggregate.purchases;
  if (!p) return null;
  const m = model.params;
  const day = Math.max(observationEndDay, p.lastDay);
  const rfm = rfmOf(p, day, m.timeUnit);
  const value = valueUnder(m, rfm);
  const churn = churnScore(m.churn, churnFeaturesOf({ ...aggregate, purchases: p }, day));
  // A model at the edge of its parameters can give a customer no finite figure (a fit refuses such a
  // model for the customers it was fitted on; a later history may still reach it): unscored, as
  // before a fit, rather than a NaN that no sum of the totals would ever cancel.
  if (!isFiniteValue(value) || !Number.isFinite(churn)) return null;
  const values = rfmValuesOf(p, day);
  const score = rfmScore(m.rfmCutoffs, values);
  return {
    customerId: aggregate.customerId,
    modelVersion: model.version,
    observationEndDay: day,
    rfm,
    clv: value.clv,
    expectedPurchases: value.expectedPurchases,
    pAlive: value.pAlive,
    expectedSpend: value.expectedSpend,
    churnScore: churn,
    rfmScore: score,
    segment: rfmSegment(score),
    cluster: nearestCluster(m.clusters, values),
  };
}
