/** A fitted logistic regression on standardised features; weights[0] is the intercept (fitted in logistic-fit.ts). */
export interface LogisticModel {
  weights: number[];
}

export const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

export const predictLogistic = (model: LogisticModel, row: readonly number[]): number =>
  sigmoid(row.reduce((s, v, j) => s + v * model.weights[j + 1]!, model.weights[0]!));
