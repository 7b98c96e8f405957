// The ml-* packages ship no TypeScript types (ml-kmeans ships its own but, being ESM-only, is
// declared here too so every ml-* import type-checks the same way); these are the parts of their
// APIs the CRM uses, as the packages behave at the pinned versions (see analytics/models/).

declare module 'ml-logistic-regression' {
  import type { Matrix } from 'ml-matrix';
  interface TwoClassModel {
    weights: Matrix;
    /** P(class != 0) for each row (the one-vs-all trick of the package: see analytics/models/logistic-fit.ts). */
    testScores(features: Matrix): number[];
  }
  export default class LogisticRegression {
    constructor(options?: { numSteps?: number; learningRate?: number });
    classifiers: TwoClassModel[];
    numberClasses: number;
    train(X: Matrix, Y: Matrix): void;
    predict(X: Matrix): number[];
    toJSON(): unknown;
    static load(model: unknown): LogisticRegression;
  }
}

declare module 'ml-regression' {
  export class MultivariateLinearRegression {
    constructor(x: number[][], y: number[][], options?: { intercept?: boolean; statistics?: boolean });
    weights: number[][];
    predict(x: number[]): number[];
    predict(x: number[][]): number[][];
    toJSON(): unknown;
  }
  export class SimpleLinearRegression {
    constructor(x: number[], y: number[]);
    slope: number;
    intercept: number;
    predict(x: number): number;
  }
  export class PolynomialRegression {
    constructor(x: number[], y: number[], degree: number);
    coefficients: number[];
    predict(x: number): number;
  }
}

declare module 'ml-kmeans' {
  export interface KMeansResult {
    clusters: number[];
    centroids: number[][];
    converged: boolean;
    iterations: number;
    nearest(data: number[][]): number[];
  }
  export function kmeans(
    data: number[][],
    K: number,
    options: { seed?: number; maxIterations?: number; tolerance?: number; initialization?: 'kmeans++' | 'random' | 'mostDistant' | number[][] },
  ): KMeansResult;
}

declare module 'ml-cart' {
  interface TreeNode {
    /** Class distribution of the leaf a row falls in (a 1 x classes matrix). */
    classify(row: number[]): { get(row: number, column: number): number; columns: number };
  }
  export class DecisionTreeClassifier {
    constructor(options?: { gainFunction?: 'gini'; minNumSamples?: number; maxDepth?: number; gainThreshold?: number });
    root: TreeNode;
    train(trainingSet: number[][], trainingLabels: number[]): void;
    predict(toPredict: number[][]): number[];
    toJSON(): unknown;
  }
}

declare module 'ml-naivebayes' {
  export class GaussianNB {
    train(trainingSet: number[][], trainingLabels: number[]): void;
    predict(dataset: number[][]): number[];
    toJSON(): unknown;
  }
}
