import { sigmoid } from './logistic.ts';
import { fitLogisticNewton } from './logistic-fit.ts';

/**
 * Gaussian naive Bayes, written here because `ml-naivebayes` 4.0 GaussianNB disagrees with the
 * textbook classifier once there are three or more features (NOTES.md; test/analytics/churn-models
 * measures it again). Per class c: prior π_c (the class share), per feature mean μ_cj and variance
 * σ²_cj (ML estimate, floored at `varSmoothing` times the feature's variance over all rows, so a feature
 * nearly constant within one class, e.g. complaints among loyal customers, cannot make one observation
 * decisive); log P(c | x) ∝ log π_c + Σ_j [ -½ log(2π σ²_cj) - (x_j - μ_cj)² / (2 σ²_cj) ], normalised
 * with log-sum-exp.
 *
 * Naive Bayes multiplies correlated features as if independent, so its raw posteriors are pushed to 0
 * and 1 (held-out log loss 16 on the demo). `calibrateNaiveBayes` maps the raw log-odds through a
 * logistic fitted on the training rows (Platt scaling); scores are then probabilities, not only a ranking.
 */
export interface GaussianNaiveBayes {
  classes: number[];
  logPriors: number[];
  means: number[][];
  variances: number[][];
  /** Platt scaling of the raw log-odds (P(1 | x) = σ(intercept + slope · logOdds)); absent: raw posterior. */
  calibration?: { intercept: number; slope: number };
}

export function fitGaussianNaiveBayes(rows: readonly number[][], labels: readonly number[], varSmoothing = 0.01): GaussianNaiveBayes {
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  const p = rows[0]!.length;
  const overall = new Array<number>(p).fill(0).map((_, j) => {
    const mean = rows.reduce((s, r) => s + r[j]!, 0) / rows.length;
    return rows.reduce((s, r) => s + (r[j]! - mean) ** 2, 0) / rows.length;
  });
  const floors = overall.map((v) => Math.max(varSmoothing * v, 1e-9));
  const means: number[][] = [];
  const variances: number[][] = [];
  const logPriors: number[] = [];
  for (const c of classes) {
    const members = rows.filter((_, i) => labels[i] === c);
    const mean = new Array<number>(p).fill(0);
    for (const r of members) r.forEach((v, j) => (mean[j]! += v / members.length));
    const variance = new Array<number>(p).fill(0);
    for (const r of members) r.forEach((v, j) => (variance[j]! += (v - mean[j]!) ** 2 / members.length));
    means.push(mean);
    variances.push(variance.map((v, j) => Math.max(v, floors[j]!)));
    logPriors.push(Math.log(members.length / rows.length));
  }
  return { classes, logPriors, means, variances };
}

/** Log of the unnormalised posterior of each class (in `model.classes` order). */
const logJoint = (model: GaussianNaiveBayes, row: readonly number[]): number[] =>
  model.classes.map((_, c) =>
    row.reduce((s, x, j) => {
      const v = model.variances[c]![j]!;
      return s - 0.5 * Math.log(2 * Math.PI * v) - (x - model.means[c]![j]!) ** 2 / (2 * v);
    }, model.logPriors[c]!),
  );

/** Raw posterior probability of each class (in `model.classes` order), normalised with log-sum-exp. */
export function naiveBayesPosterior(model: GaussianNaiveBayes, row: readonly number[]): number[] {
  const logs = logJoint(model, row);
  const m = Math.max(...logs);
  const exp = logs.map((l) => Math.exp(l - m));
  const total = exp.reduce((s, e) => s + e, 0);
  return exp.map((e) => e / total);
}

/** log P(1 | x) - log P(0 | x) for 0/1 labels, from the log joints (never from saturated probabilities). */
export function naiveBayesLogOdds(model: GaussianNaiveBayes, row: readonly number[]): number {
  const one = model.classes.indexOf(1);
  const zero = model.classes.indexOf(0);
  if (one < 0) return -Infinity;
  if (zero < 0) return Infinity;
  const logs = logJoint(model, row);
  return logs[one]! - logs[zero]!;
}

/** Fits the Platt scaling on (training) rows: a one-feature logistic regression of the label on the raw log-odds. */
export function calibrateNaiveBayes(model: GaussianNaiveBayes, rows: readonly number[][], labels: readonly number[]): GaussianNaiveBayes {
  // Clipped so one extreme row cannot dominate the Newton steps.
  const z = rows.map((r) => [Math.max(-50, Math.min(50, naiveBayesLogOdds(model, r)))]);
  const fit = fitLogisticNewton(z, labels, { ridge: 1e-6 });
  return { ...model, calibration: { intercept: fit.weights[0]!, slope: fit.weights[1]! } };
}

/** P(label = 1) for 0/1 labels: calibrated when the model carries a calibration, else the raw posterior. */
export const naiveBayesScore = (model: GaussianNaiveBayes, row: readonly number[]): number => {
  if (model.classes.indexOf(1) < 0) return 0;
  if (!model.calibration) return naiveBayesPosterior(model, row)[model.classes.indexOf(1)]!;
  const z = Math.max(-50, Math.min(50, naiveBayesLogOdds(model, row)));
  return sigmoid(model.calibration.intercept + model.calibration.slope * z);
};
