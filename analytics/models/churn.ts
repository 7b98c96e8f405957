import type { CalibrationBin } from './metrics.ts';
import { predictLogistic, type LogisticModel } from './logistic.ts';
import { standardise, type Standardiser } from './standardise.ts';

/** Behavioural features of a customer at a cutoff (all counts up to and including the cutoff). */
export interface ChurnFeatures {
  /** Days from the last purchase to the cutoff. */
  daysSinceLastPurchase: number;
  /** Repeat purchase days. */
  frequency: number;
  /** Days from the first purchase to the cutoff. */
  ageDays: number;
  /** Mean net value per purchase day (first day included, so one-time buyers have a value). */
  meanPurchaseValue: number;
  refunds: number;
  complaints: number;
  openComplaints: number;
  /** Mean days from a complaint to its resolution (0 when none was resolved). */
  meanResolutionDays: number;
  campaignOpens: number;
  campaignClicks: number;
  campaignConversions: number;
  unsubscribes: number;
  dealsOpen: number;
  dealsWon: number;
  dealsLost: number;
  /** Activities (notes, calls, meetings, tasks) logged on the customer or their deals: staff engagement. */
  activities: number;
  /** Days from the latest activity (or, without any, from the first purchase) to the cutoff. */
  daysSinceLastActivity: number;
}

export const CHURN_FEATURES = [
  'daysSinceLastPurchase',
  'frequency',
  'ageDays',
  'meanPurchaseValue',
  'refunds',
  'complaints',
  'openComplaints',
  'meanResolutionDays',
  'campaignOpens',
  'campaignClicks',
  'campaignConversions',
  'unsubscribes',
  'dealsOpen',
  'dealsWon',
  'dealsLost',
  'activities',
  'daysSinceLastActivity',
] as const satisfies readonly (keyof ChurnFeatures)[];

export const featureVector = (f: ChurnFeatures): number[] => CHURN_FEATURES.map((k) => f[k]);

export interface ChurnExample {
  customerId: string;
  features: ChurnFeatures;
  /** 1 = churned: no purchase within the window after the cutoff. */
  churned: 0 | 1;
}

/** What is stored with a model version and all live scoring needs. */
export interface ChurnModel {
  featureNames: readonly string[];
  standardiser: Standardiser;
  logistic: LogisticModel;
}

/**
 * A churn probability kept within [1e-6, 1 - 1e-6]: a model fitted on data it separates perfectly
 * (a dozen customers) has weights that push scores to 1e-55, which say nothing more than "unlikely".
 */
export const boundedProbability = (p: number): number => Math.min(1 - 1e-6, Math.max(1e-6, p));

/** Scores with the model's own feature list, so a model stored before a feature was added still scores. */
export const churnScore = (model: ChurnModel, features: ChurnFeatures): number =>
  boundedProbability(
    predictLogistic(
      model.logistic,
      standardise(
        model.standardiser,
        model.featureNames.map((k) => features[k as keyof ChurnFeatures] ?? 0),
      ),
    ),
  );

export interface ClassifierMetrics {
  auc: number;
  logLoss: number;
  brier: number;
  accuracy: number;
}

export interface ChurnTraining {
  model: ChurnModel;
  metrics: ClassifierMetrics & {
    trainSize: number;
    testSize: number;
    /** The share churned in the held-out set: the base rate its metrics are compared with. */
    churnRate: number;
    /** The share churned among every customer labelled (training and held-out rows). */
    labelledChurnRate: number;
    calibration: CalibrationBin[];
    /** Largest |w_package - w_newton| over the coefficients: how far the package's gradient ascent is from the ML solution. */
    newtonMaxWeightGap: number;
  };
  comparison: {
    decisionTree: ClassifierMetrics & { trainSize: number };
    naiveBayes: ClassifierMetrics & { implementation: string; uncalibrated: { logLoss: number | null; accuracy: number | null } };
    /** Share of test rows where ml-naivebayes' GaussianNB predicts another class than the textbook one. */
    mlNaiveBayesDisagreement: number;
  };
}
