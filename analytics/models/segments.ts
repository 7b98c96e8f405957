import { standardise, type Standardiser } from './standardise.ts';

/** The three RFM inputs of segmentation, in days and money. */
export interface RfmValues {
  /** Days since the last purchase (lower is better). */
  daysSinceLastPurchase: number;
  /** Purchase days (first included). */
  purchaseDays: number;
  /** Mean net value per purchase day. */
  meanValue: number;
}

/** Quintile boundaries (20/40/60/80th percentiles) fitted on the customer base. */
export interface RfmCutoffs {
  recency: number[];
  frequency: number[];
  monetary: number[];
}

export interface RfmScore {
  r: number;
  f: number;
  m: number;
}

const quantile = (sorted: readonly number[], q: number): number => {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
};

export function fitRfmCutoffs(values: readonly RfmValues[]): RfmCutoffs {
  const cut = (xs: number[]) => {
    const s = xs.sort((a, b) => a - b);
    return [0.2, 0.4, 0.6, 0.8].map((q) => quantile(s, q));
  };
  return {
    recency: cut(values.map((v) => v.daysSinceLastPurchase)),
    frequency: cut(values.map((v) => v.purchaseDays)),
    monetary: cut(values.map((v) => v.meanValue)),
  };
}

/**
 * Quintiles passed by `v`: those below it, and half of those equal to it (rounded down). Where several
 * cutoffs are one value (a base with little variety: every customer buying alike), a value at it gets
 * the middle of the scores it spans, the same way for R, F and M. Counting only the cutoffs below gave
 * ties the best recency score but the worst frequency and value: ten identical customers were all "New
 * customers", monthly buyers "Hibernating". A value equal to one cutoff alone scores as before.
 */
const passed = (cutoffs: readonly number[], v: number): number => cutoffs.filter((c) => v > c).length + Math.floor(cutoffs.filter((c) => v === c).length / 2);

/** Scores 1-5: 5 = most recent, most frequent, highest value. */
export const rfmScore = (cutoffs: RfmCutoffs, v: RfmValues): RfmScore => ({
  r: 5 - passed(cutoffs.recency, v.daysSinceLastPurchase),
  f: 1 + passed(cutoffs.frequency, v.purchaseDays),
  m: 1 + passed(cutoffs.monetary, v.meanValue),
});

export const RFM_SEGMENTS = [
  'Champions',
  'Loyal',
  'Potential loyalists',
  'New customers',
  'Promising',
  'Need attention',
  'At risk',
  "Can't lose them",
  'About to sleep',
  'Hibernating',
] as const;
export type RfmSegment = (typeof RFM_SEGMENTS)[number];

/** Named segment of an R/F/M score; the rules are checked in order and cover all 125 scores. */
export function rfmSegment({ r, f, m }: RfmScore): RfmSegment {
  if (r >= 4 && f >= 4 && m >= 4) return 'Champions';
  if (r === 1 && f >= 4) return "Can't lose them";
  if (r <= 2 && f >= 3) return 'At risk';
  if (r >= 3 && f >= 4) return 'Loyal';
  if (r >= 4 && f === 1) return 'New customers';
  if (r >= 4) return 'Potential loyalists';
  if (r === 3 && f === 3) return 'Need attention';
  if (r === 3) return 'Promising';
  if (r === 2) return 'About to sleep';
  return 'Hibernating';
}

/**
 * k-means model as stored with a version: the transform and the centroids (ml-kmeans cannot save).
 * Fitted in `segment-clusters.ts`; scoring needs only this model and `nearestCluster`.
 */
export interface ClusterModel {
  k: number;
  standardiser: Standardiser;
  /** Centroids in standardised space. */
  centroids: number[][];
  /** Centroids back in the original units (days since last purchase, purchase days, mean value). */
  profiles: RfmValues[];
  sizes: number[];
}

/** Skewed counts and money are log-transformed before standardising, so a few whales do not make their own clusters. */
export const clusterInput = (v: RfmValues): number[] => [
  Math.log1p(Math.max(0, v.daysSinceLastPurchase)),
  Math.log1p(v.purchaseDays),
  Math.log1p(Math.max(0, v.meanValue)),
];

/** Index of the nearest centroid (squared Euclidean distance in standardised space). */
export function nearestCluster(model: ClusterModel, v: RfmValues): number {
  const z = standardise(model.standardiser, clusterInput(v));
  let best = 0;
  let bestDistance = Infinity;
  model.centroids.forEach((c, i) => {
    const d = c.reduce((s, x, j) => s + (x - z[j]!) ** 2, 0);
    if (d < bestDistance) {
      bestDistance = d;
      best = i;
    }
  });
  return best;
}
