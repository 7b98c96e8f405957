import LogisticRegression from 'ml-logistic-regression';
import { Matrix, solve } from 'ml-matrix';
import { sigmoid, type LogisticModel } from './logistic.ts';

// Fitting, apart from predicting (logistic.ts): the live scores need only the weights, not the libraries.

const withOnes = (rows: readonly number[][]): number[][] => rows.map((r) => [1, ...r]);

/** Largest eigenvalue of X'X/n by power iteration (X already has its column of ones). */
function largestEigenvalue(X: readonly number[][]): number {
  const p = X[0]!.length;
  const gram = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  for (const x of X) for (let j = 0; j < p; j++) for (let k = 0; k < p; k++) gram[j]![k]! += (x[j]! * x[k]!) / X.length;
  let v = new Array<number>(p).fill(1 / Math.sqrt(p));
  let lambda = 1;
  for (let it = 0; it < 100; it++) {
    const w = gram.map((row) => row.reduce((s, g, k) => s + g * v[k]!, 0));
    lambda = Math.sqrt(w.reduce((s, x) => s + x * x, 0));
    if (lambda === 0) return 1;
    v = w.map((x) => x / lambda);
  }
  return lambda;
}

/**
 * Fits with `ml-logistic-regression`. The package (2.0) fits no intercept, so a column of ones is
 * prepended. It runs fixed-step gradient ascent on the SUMMED log-likelihood: the Hessian of the
 * mean log-likelihood is at most λmax(X'X/n)/4, so a step of 4/(n·λmax) is stable and about as fast
 * as a fixed step gets (features must be standardised for that to converge in a few thousand steps).
 * Its one-vs-all relabels class 0 as 0 and every other class as 1 for classifier 0, so
 * `classifiers[0]` scores P(label = 1) for 0/1 labels.
 */
export function fitLogisticMl(rows: readonly number[][], labels: readonly number[], options: { steps?: number } = {}): LogisticModel {
  const ones = withOnes(rows);
  const X = new Matrix(ones);
  const learningRate = 4 / (Math.max(1, rows.length) * largestEigenvalue(ones));
  const model = new LogisticRegression({ numSteps: options.steps ?? 3000, learningRate });
  model.train(X, Matrix.columnVector(labels.slice()));
  const classifier = model.classifiers[0];
  if (!classifier) throw new Error('ml-logistic-regression trained no classifier (only one class in the labels?)');
  return { weights: classifier.weights.to1DArray() };
}

/**
 * Newton-Raphson / IRLS maximum likelihood: the reference solution the package's fit is checked
 * against (a small optional ridge keeps separable data finite).
 */
export function fitLogisticNewton(rows: readonly number[][], labels: readonly number[], options: { ridge?: number; iterations?: number } = {}): LogisticModel {
  const X = withOnes(rows);
  const p = X[0]!.length;
  let w = new Array<number>(p).fill(0);
  for (let it = 0; it < (options.iterations ?? 50); it++) {
    const gradient = new Array<number>(p).fill(0);
    const hessian = Array.from({ length: p }, () => new Array<number>(p).fill(0));
    X.forEach((x, i) => {
      const mu = sigmoid(x.reduce((s, v, j) => s + v * w[j]!, 0));
      const weight = mu * (1 - mu);
      for (let j = 0; j < p; j++) {
        gradient[j]! += (labels[i]! - mu) * x[j]!;
        for (let k = 0; k < p; k++) hessian[j]![k]! += weight * x[j]! * x[k]!;
      }
    });
    const ridge = options.ridge ?? 0;
    for (let j = 1; j < p; j++) {
      gradient[j]! -= ridge * w[j]!;
      hessian[j]![j]! += ridge;
    }
    const step = solve(new Matrix(hessian), Matrix.columnVector(gradient)).to1DArray();
    w = w.map((v, j) => v + step[j]!);
    if (Math.max(...step.map(Math.abs)) < 1e-10) break;
  }
  return { weights: w };
}
