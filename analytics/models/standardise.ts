/** Column-wise standardisation, stored with a model so that scoring applies the same transform. */
export interface Standardiser {
  means: number[];
  sds: number[];
}

export function fitStandardiser(rows: readonly number[][]): Standardiser {
  const p = rows[0]?.length ?? 0;
  const means = new Array<number>(p).fill(0);
  const sds = new Array<number>(p).fill(0);
  for (const row of rows) row.forEach((v, j) => (means[j]! += v / rows.length));
  for (const row of rows) row.forEach((v, j) => (sds[j]! += (v - means[j]!) ** 2 / Math.max(1, rows.length - 1)));
  // A constant column gets sd 1 so it maps to 0 instead of NaN.
  return { means, sds: sds.map((v) => (v > 1e-12 ? Math.sqrt(v) : 1)) };
}

export const standardise = (s: Standardiser, row: readonly number[]): number[] => row.map((v, j) => (v - s.means[j]!) / s.sds[j]!);
