import { DecisionTreeClassifier } from 'ml-cart';
import { GaussianNB } from 'ml-naivebayes';
import { CHURN_FEATURES, featureVector, type ChurnExample, type ChurnModel, type ChurnTraining, type ClassifierMetrics } from './churn.ts';
import { predictLogistic } from './logistic.ts';
import { fitLogisticMl, fitLogisticNewton } from './logistic-fit.ts';
import { accuracy, auc, brier, calibration, logLoss } from './metrics.ts';
import { calibrateNaiveBayes, fitGaussianNaiveBayes, naiveBayesScore } from './naive-bayes.ts';
import { fitStandardiser, standardise } from './standardise.ts';

/*
 * Training the churn models, apart from scoring with one (churn.ts): the classifiers' libraries are
 * loaded by a fit, not by every process that projects or imports.
 */

/** FNV-1a of the customer id: the same customer always falls in the same split, whatever the order. */
const hashShare = (id: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return ((h >>> 0) % 10_000) / 10_000;
};

const metricsOf = (labels: number[], scores: number[]): ClassifierMetrics => ({
  auc: auc(labels, scores),
  logLoss: logLoss(labels, scores),
  brier: brier(labels, scores),
  accuracy: accuracy(
    labels,
    scores.map((s) => (s >= 0.5 ? 1 : 0)),
  ),
});

export interface ChurnTrainingOptions {
  /** Share of customers held out for evaluation (default 0.25). */
  testShare?: number;
  /**
   * Caps on training rows (an evenly spaced subsample): ml-logistic-regression's fixed-step gradient
   * ascent costs about 1.5 ms per 1000 rows per step here, and ml-cart's split search grows
   * quadratically. Newton on the same rows is the check; the test metrics use the whole held-out set.
   */
  maxLogisticRows?: number;
  maxTreeRows?: number;
  /** Gradient steps of ml-logistic-regression (default 1000; with the stable step size it lands within ~1e-3 of Newton). */
  logisticSteps?: number;
}

export function trainChurnModels(examples: readonly ChurnExample[], options: ChurnTrainingOptions = {}): ChurnTraining {
  const testShare = options.testShare ?? 0.25;
  const train = examples.filter((e) => hashShare(e.customerId) >= testShare);
  const test = examples.filter((e) => hashShare(e.customerId) < testShare);
  const labelsTrain = train.map((e) => e.churned as number);
  const labelsTest = test.map((e) => e.churned as number);
  if (new Set(labelsTrain).size < 2 || test.length === 0) {
    throw new RangeError('churn training needs churned and retained customers in the training set, and a non-empty test set');
  }
  const standardiser = fitStandardiser(train.map((e) => featureVector(e.features)));
  const Xtrain = train.map((e) => standardise(standardiser, featureVector(e.features)));
  const Xtest = test.map((e) => standardise(standardiser, featureVector(e.features)));

  // Deterministic subsample for the slow fitters: the rows are already in hash order-independent sets.
  const cap = (n: number | undefined, fallback: number): number => Math.min(Xtrain.length, n ?? fallback);
  const stride = (limit: number): number[] => {
    const step = Xtrain.length / limit;
    return Array.from({ length: limit }, (_, i) => Math.floor(i * step));
  };
  const lrRows = stride(cap(options.maxLogisticRows, 3_000));
  const logistic = fitLogisticMl(
    lrRows.map((i) => Xtrain[i]!),
    lrRows.map((i) => labelsTrain[i]!),
    { steps: options.logisticSteps ?? 1000 },
  );
  const newton = fitLogisticNewton(
    lrRows.map((i) => Xtrain[i]!),
    lrRows.map((i) => labelsTrain[i]!),
    { ridge: 1e-6 },
  );
  const newtonMaxWeightGap = Math.max(...logistic.weights.map((w, j) => Math.abs(w - newton.weights[j]!)));
  const model: ChurnModel = { featureNames: CHURN_FEATURES, standardiser, logistic };
  const lrScores = Xtest.map((x) => predictLogistic(logistic, x));

  const treeRows = stride(cap(options.maxTreeRows, 1_000));
  const tree = new DecisionTreeClassifier({ maxDepth: 6, minNumSamples: 10 });
  tree.train(
    treeRows.map((i) => Xtrain[i]!),
    treeRows.map((i) => labelsTrain[i]!),
  );
  const treeScores = Xtest.map((x) => {
    const distribution = tree.root.classify(x);
    return distribution.columns > 1 ? distribution.get(0, 1) : 0;
  });

  const rawNb = fitGaussianNaiveBayes(Xtrain, labelsTrain);
  const nb = calibrateNaiveBayes(rawNb, Xtrain, labelsTrain);
  const nbScores = Xtest.map((x) => naiveBayesScore(nb, x));
  const rawNbScores = Xtest.map((x) => naiveBayesScore(rawNb, x));
  const packageNb = new GaussianNB();
  packageNb.train(Xtrain, labelsTrain);
  const packagePredictions = packageNb.predict(Xtest);
  const disagreements = packagePredictions.filter((p, i) => p !== (rawNbScores[i]! >= 0.5 ? 1 : 0)).length;

  return {
    model,
    metrics: {
      ...metricsOf(labelsTest, lrScores),
      trainSize: lrRows.length,
      testSize: test.length,
      churnRate: labelsTest.reduce((s, y) => s + y, 0) / labelsTest.length,
      labelledChurnRate: examples.reduce((s, e) => s + e.churned, 0) / examples.length,
      calibration: calibration(labelsTest, lrScores),
      newtonMaxWeightGap,
    },
    comparison: {
      decisionTree: { ...metricsOf(labelsTest, treeScores), trainSize: treeRows.length },
      naiveBayes: {
        ...metricsOf(labelsTest, nbScores),
        implementation: 'own Gaussian naive Bayes (analytics/models/naive-bayes.ts), Platt-calibrated on the training rows',
        uncalibrated: { logLoss: metricsOf(labelsTest, rawNbScores).logLoss, accuracy: metricsOf(labelsTest, rawNbScores).accuracy },
      },
      mlNaiveBayesDisagreement: disagreements / test.length,
    },
  };
}
