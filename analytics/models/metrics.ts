/** Evaluation of probabilistic binary classifiers. Labels are 0/1, scores are P(label = 1). */

/** Area under the ROC curve by the rank-sum (Mann-Whitney) statistic, ties counted half. */
export function auc(labels: readonly number[], scores: readonly number[]): number {
  const order = scores.map((s, i) => i).sort((i, j) => scores[i]! - scores[j]!);
  const ranks = new Array<number>(scores.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k]!] = rank;
    i = j + 1;
  }
  let positives = 0;
  let rankSum = 0;
  labels.forEach((y, i) => {
    if (y === 1) {
      positives++;
      rankSum += ranks[i]!;
    }
  });
  const negatives = labels.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15]. */
export function logLoss(labels: readonly number[], scores: readonly number[]): number {
  let sum = 0;
  labels.forEach((y, i) => {
    const p = Math.min(1 - 1e-15, Math.max(1e-15, scores[i]!));
    sum -= y === 1 ? Math.log(p) : Math.log(1 - p);
  });
  return sum / labels.length;
}

export const accuracy = (labels: readonly number[], predicted: readonly number[]): number =>
  labels.reduce((s, y, i) => s + (y === predicted[i] ? 1 : 0), 0) / labels.length;

export interface CalibrationBin {
  from: number;
  to: number;
  count: number;
  meanPredicted: number;
  observedRate: number;
}

/** Reliability table: scores binned into equal-width bins; empty bins are left out. */
export function calibration(labels: readonly number[], scores: readonly number[], bins = 10): CalibrationBin[] {
  const acc = Array.from({ length: bins }, () => ({ count: 0, predicted: 0, observed: 0 }));
  scores.forEach((s, i) => {
    const b = acc[Math.min(bins - 1, Math.floor(s * bins))]!;
    b.count++;
    b.predicted += s;
    b.observed += labels[i]!;
  });
  return acc.flatMap((b, i) =>
    b.count === 0 ? [] : [{ from: i / bins, to: (i + 1) / bins, count: b.count, meanPredicted: b.predicted / b.count, observedRate: b.observed / b.count }],
  );
}

/** Brier score: mean squared error of the probabilities. */
export const brier = (labels: readonly number[], scores: readonly number[]): number => labels.reduce((s, y, i) => s + (scores[i]! - y) ** 2, 0) / labels.length;
