import { describe, expect, it } from 'vitest';
import { auc, calibration, logLoss } from '../../analytics/models/metrics.ts';
import { sigmoid } from '../../analytics/models/logistic.ts';
import { fitLogisticMl, fitLogisticNewton } from '../../analytics/models/logistic-fit.ts';
import { fitGaussianNaiveBayes, naiveBayesPosterior } from '../../analytics/models/naive-bayes.ts';
import { churnScore, type ChurnExample, type ChurnFeatures } from '../../analytics/models/churn.ts';
import { trainChurnModels } from '../../analytics/models/churn-training.ts';
import { seededRandom } from '../../analytics/models/random.ts';

describe('classifier metrics', () => {
  it('AUC is the share of positive-negative pairs ranked right, ties half', () => {
    // pairs: (0.8>0.3) (0.8>0.5) (0.4>0.3) (0.4<0.5) -> 3/4
    expect(auc([1, 0, 1, 0], [0.8, 0.3, 0.4, 0.5])).toBeCloseTo(0.75, 12);
    expect(auc([1, 0], [0.5, 0.5])).toBeCloseTo(0.5, 12);
  });
  it('log loss and calibration bins by hand', () => {
    expect(logLoss([1, 0], [0.8, 0.4])).toBeCloseTo(-(Math.log(0.8) + Math.log(0.6)) / 2, 12);
    const bins = calibration([1, 0, 1, 1], [0.05, 0.1, 0.95, 0.92], 10);
    expect(bins).toHaveLength(3);
    expect(bins[0]).toMatchObject({ count: 1, observedRate: 1 });
    expect(bins[2]).toMatchObject({ count: 2, observedRate: 1 });
    expect(bins[2]!.meanPredicted).toBeCloseTo(0.935, 12);
  });
});

describe('logistic regression', () => {
  // Small overlapping data set (not separable, so the ML solution is finite).
  const random = seededRandom(3);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < 400; i++) {
    const x1 = random.normal();
    const x2 = random.normal();
    rows.push([x1, x2]);
    labels.push(random.next() < sigmoid(-0.5 + 1.5 * x1 - 1 * x2) ? 1 : 0);
  }

  it("Newton/IRLS solves the score equations X'(y - p) = 0", () => {
    const { weights } = fitLogisticNewton(rows, labels);
    const score = [0, 0, 0];
    rows.forEach((r, i) => {
      const residual = labels[i]! - sigmoid(weights[0]! + weights[1]! * r[0]! + weights[2]! * r[1]!);
      score[0]! += residual;
      score[1]! += residual * r[0]!;
      score[2]! += residual * r[1]!;
    });
    for (const s of score) expect(Math.abs(s)).toBeLessThan(1e-8);
  });

  it('ml-logistic-regression with a column of ones reaches the Newton solution', () => {
    const newton = fitLogisticNewton(rows, labels);
    const ml = fitLogisticMl(rows, labels);
    ml.weights.forEach((w, j) => expect(Math.abs(w - newton.weights[j]!)).toBeLessThan(1e-3));
    // And it is the intercept model: with no column of ones the intercept would be stuck at 0.
    expect(Math.abs(ml.weights[0]!)).toBeGreaterThan(0.2);
  });
});

describe('Gaussian naive Bayes (own implementation)', () => {
  it('matches a hand-computed posterior', () => {
    // class 0: x = (1, 10), (3, 14)   -> means (2, 12), ML variances (1, 4)
    // class 1: x = (6, 20), (8, 20), (7, 23) -> means (7, 21), variances (2/3, 2)
    const model = fitGaussianNaiveBayes(
      [
        [1, 10],
        [3, 14],
        [6, 20],
        [8, 20],
        [7, 23],
      ],
      [0, 0, 1, 1, 1],
    );
    expect(model.means).toEqual([
      [2, 12],
      [7, 21],
    ]);
    expect(model.variances[0]).toEqual([1, 4]);
    expect(model.variances[1]![0]).toBeCloseTo(2 / 3, 12);
    expect(model.variances[1]![1]).toBeCloseTo(2, 12);
    const x = [4, 16];
    const logN = (v: number, m: number, s2: number) => -0.5 * Math.log(2 * Math.PI * s2) - (v - m) ** 2 / (2 * s2);
    const l0 = Math.log(2 / 5) + logN(4, 2, 1) + logN(16, 12, 4);
    const l1 = Math.log(3 / 5) + logN(4, 7, 2 / 3) + logN(16, 21, 2);
    const p1 = Math.exp(l1) / (Math.exp(l0) + Math.exp(l1));
    expect(naiveBayesPosterior(model, x)[1]).toBeCloseTo(p1, 12);
  });
});

/** Customers whose churn depends on recency, complaints and unsubscribes, as a known truth. */
export function simulateChurnExamples(n: number, seed: number): ChurnExample[] {
  const random = seededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const features: ChurnFeatures = {
      daysSinceLastPurchase: Math.floor(random.exponential(1 / 60)),
      frequency: Math.floor(random.exponential(1 / 3)),
      ageDays: 100 + Math.floor(random.next() * 600),
      meanPurchaseValue: 20 + random.exponential(1 / 40),
      refunds: random.next() < 0.1 ? 1 : 0,
      complaints: random.next() < 0.2 ? 1 + Math.floor(random.next() * 3) : 0,
      openComplaints: random.next() < 0.1 ? 1 : 0,
      meanResolutionDays: random.exponential(1 / 3),
      campaignOpens: Math.floor(random.exponential(1 / 2)),
      campaignClicks: Math.floor(random.exponential(1)),
      campaignConversions: random.next() < 0.1 ? 1 : 0,
      unsubscribes: random.next() < 0.05 ? 1 : 0,
      dealsOpen: random.next() < 0.2 ? 1 : 0,
      dealsWon: random.next() < 0.1 ? 1 : 0,
      dealsLost: random.next() < 0.1 ? 1 : 0,
      // Noise the truth below ignores, drawn without the generator so the other draws stay as they were.
      activities: i % 4,
      daysSinceLastActivity: (i * 37) % 200,
    };
    const z = -1 + 0.02 * features.daysSinceLastPurchase - 0.3 * features.frequency + 0.5 * features.complaints + 1.5 * features.unsubscribes;
    return { customerId: `c-${seed}-${i}`, features, churned: random.next() < sigmoid(z) ? 1 : 0 };
  });
}

describe('churn training', () => {
  const training = trainChurnModels(simulateChurnExamples(3000, 9));

  it('separates churners from the held-out customers and is calibrated', () => {
    const { metrics } = training;
    expect(metrics.testSize + metrics.trainSize).toBe(3000);
    expect(metrics.testSize).toBeGreaterThan(600);
    expect(metrics.auc).toBeGreaterThan(0.75);
    // Better than predicting the base rate for everyone.
    const p = metrics.churnRate;
    expect(metrics.logLoss).toBeLessThan(-(p * Math.log(p) + (1 - p) * Math.log(1 - p)));
    for (const bin of metrics.calibration.filter((b) => b.count >= 50)) {
      expect(Math.abs(bin.meanPredicted - bin.observedRate)).toBeLessThan(0.12);
    }
    // The package's gradient ascent lands on the maximum-likelihood solution.
    expect(metrics.newtonMaxWeightGap).toBeLessThan(0.01);
  });

  it('a customer gone silent after complaints scores higher than a recent regular', () => {
    const base = simulateChurnExamples(1, 1)[0]!.features;
    const risky = churnScore(training.model, { ...base, daysSinceLastPurchase: 200, frequency: 0, complaints: 3, unsubscribes: 1 });
    const safe = churnScore(training.model, { ...base, daysSinceLastPurchase: 3, frequency: 8, complaints: 0, unsubscribes: 0 });
    expect(risky).toBeGreaterThan(0.8);
    expect(safe).toBeLessThan(0.2);
  });

  it('reports the tree and naive Bayes on the same split, and how far ml-naivebayes strays', () => {
    const { decisionTree, naiveBayes, mlNaiveBayesDisagreement } = training.comparison;
    expect(decisionTree.auc).toBeGreaterThan(0.6);
    expect(naiveBayes.auc).toBeGreaterThan(0.6);
    // Calibrated probabilities, not only a ranking: better than the base rate for everyone, and than its raw posteriors.
    const p = training.metrics.churnRate;
    expect(naiveBayes.logLoss).toBeLessThan(-(p * Math.log(p) + (1 - p) * Math.log(1 - p)));
    expect(naiveBayes.uncalibrated.logLoss).toBeGreaterThan(naiveBayes.logLoss);
    expect(mlNaiveBayesDisagreement).toBeGreaterThanOrEqual(0);
    console.log(
      'churn comparison',
      JSON.stringify({ logistic: { auc: training.metrics.auc, logLoss: training.metrics.logLoss }, decisionTree, naiveBayes, mlNaiveBayesDisagreement }),
    );
  });
});
