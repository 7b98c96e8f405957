import { kmeans } from 'ml-kmeans';
import { clusterInput, type ClusterModel, type RfmValues } from './segments.ts';
import { fitStandardiser, standardise } from './standardise.ts';

/*
 * Fitting the segments' k-means, apart from scoring with them (segments.ts): ml-kmeans and what it
 * loads (245 modules) are the largest of the models' libraries, and a process that projects or
 * imports has no use for them; only a fit loads this module.
 */

export function fitClusters(values: readonly RfmValues[], k = 4, seed = 42): ClusterModel {
  const raw = values.map(clusterInput);
  const kk = Math.max(1, Math.min(k, raw.length));
  const standardiser = fitStandardiser(raw);
  const data = raw.map((r) => standardise(standardiser, r));
  const result = kmeans(data, kk, { seed, initialization: 'kmeans++', maxIterations: 100 });
  const sizes = new Array<number>(kk).fill(0);
  for (const c of result.clusters) sizes[c]!++;
  const profiles = result.centroids.map((c) => {
    const back = c.map((z, j) => Math.expm1(z * standardiser.sds[j]! + standardiser.means[j]!));
    return { daysSinceLastPurchase: back[0]!, purchaseDays: back[1]!, meanValue: back[2]! };
  });
  return { k: kk, standardiser, centroids: result.centroids, profiles, sizes };
}
