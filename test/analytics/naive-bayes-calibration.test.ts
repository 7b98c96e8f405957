import { describe, expect, it } from 'vitest';
import { accuracy, logLoss } from '../../analytics/models/metrics.ts';
import { calibrateNaiveBayes, fitGaussianNaiveBayes, naiveBayesScore } from '../../analytics/models/naive-bayes.ts';
import { seededRandom } from '../../analytics/models/random.ts';
import { sigmoid } from '../../analytics/models/logistic.ts';

/** Base-rate log loss: what predicting the churn rate for everyone scores. */
const entropy = (labels: readonly number[]) => {
  const p = labels.reduce((s, y) => s + y, 0) / labels.length;
  return -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
};

/** One informative signal seen through several correlated features (as RFM features are): naive Bayes counts it many times. */
function correlated(n: number, seed: number) {
  const random = seededRandom(seed);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const signal = random.normal();
    labels.push(random.next() < sigmoid(1.2 * signal - 0.5) ? 1 : 0);
    rows.push(Array.from({ length: 8 }, () => signal + 0.3 * random.normal()));
  }
  return { rows, labels };
}

describe('naive Bayes probabilities', () => {
  it('are overconfident raw on correlated features and sane once calibrated (log loss below the base rate, accuracy at least the majority)', () => {
    const train = correlated(3000, 1);
    const test = correlated(2000, 2);
    const raw = fitGaussianNaiveBayes(train.rows, train.labels);
    const calibrated = calibrateNaiveBayes(raw, train.rows, train.labels);
    const rawScores = test.rows.map((r) => naiveBayesScore(raw, r));
    const scores = test.rows.map((r) => naiveBayesScore(calibrated, r));
    const base = entropy(test.labels);
    expect(logLoss(test.labels, rawScores)).toBeGreaterThan(base);
    expect(logLoss(test.labels, scores)).toBeLessThan(base);
    const majority = Math.max(...[0, 1].map((c) => test.labels.filter((y) => y === c).length / test.labels.length));
    expect(
      accuracy(
        test.labels,
        scores.map((s) => (s >= 0.5 ? 1 : 0)),
      ),
    ).toBeGreaterThanOrEqual(majority);
    // Calibration changes probabilities, not the ranking.
    const order = (s: number[]) =>
      s
        .map((v, i) => [v, i] as const)
        .sort((a, b) => a[0] - b[0])
        .map(([, i]) => i);
    expect(order(scores)).toEqual(order(rawScores));
  });
});
