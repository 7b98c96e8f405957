/**
 * Gaussian naive Bayes, written here because `ml-naivebayes` 4.0 GaussianNB disagrees with the
 * textbook classifier once there are three or more features (NOTES.md; test/analytics/churn-models
 * measures it again). Per class c: prior π_c, per feature mean μ_cj and variance σ²_cj (ML estimate
 * plus a small floor so a constant feature does not divide by zero);
 *   log P(c | x) ∝ log π_c + Σ_j [ -½ log(2π σ²_cj) - (x_j - μ_cj)² / (2 σ²_cj) ].
 */
export interface GaussianNaiveBayes {
  classes: number[];
  logPriors: number[];
  means: number[][];
  variances: number[][];
}

export function fitGaussianNaiveBayes(rows: readonly number[][], labels: readonly number[], varianceFloor = 1e-9): GaussianNaiveBayes {
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  const p = rows[0]!.length;
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
    variances.push(variance.map((v) => Math.max(v, varianceFloor)));
    logPriors.push(Math.log(members.length / rows.length));
  }
  return { classes, logPriors, means, variances };
}

/** Posterior probability of each class (in `model.classes` order). */
export function naiveBayesPosterior(model: GaussianNaiveBayes, row: readonly number[]): number[] {
  const logs = model.classes.map((_, c) =>
    row.reduce((s, x, j) => {
      const v = model.variances[c]![j]!;
      return s - 0.5 * Math.log(2 * Math.PI * v) - (x - model.means[c]![j]!) ** 2 / (2 * v);
    }, model.logPriors[c]!),
  );
  const m = Math.max(...logs);
  const exp = logs.map((l) => Math.exp(l - m));
  const total = exp.reduce((s, e) => s + e, 0);
  return exp.map((e) => e / total);
}

/** P(label = 1) for 0/1 labels. */
export const naiveBayesScore = (model: GaussianNaiveBayes, row: readonly number[]): number => {
  const index = model.classes.indexOf(1);
  return index < 0 ? 0 : naiveBayesPosterior(model, row)[index]!;
};
