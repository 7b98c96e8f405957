/**
 * CSAT = share of ratings 4 or 5 on the 1-5 scale (a share in [0, 1]).
 * NPS = % promoters (9-10) - % detractors (0-6) on the 0-10 scale, in percentage points [-100, 100].
 */
export interface SatisfactionCounts {
  csatResponses: number;
  csatSatisfied: number;
  npsResponses: number;
  promoters: number;
  detractors: number;
}

export const emptyCounts = (): SatisfactionCounts => ({ csatResponses: 0, csatSatisfied: 0, npsResponses: 0, promoters: 0, detractors: 0 });

/** Adds (sign = 1) or removes (sign = -1) one CSAT rating. */
export function countCsat(counts: SatisfactionCounts, csat: number, sign: 1 | -1 = 1): SatisfactionCounts {
  return { ...counts, csatResponses: counts.csatResponses + sign, csatSatisfied: counts.csatSatisfied + (csat >= 4 ? sign : 0) };
}

export function countNps(counts: SatisfactionCounts, nps: number, sign: 1 | -1 = 1): SatisfactionCounts {
  return {
    ...counts,
    npsResponses: counts.npsResponses + sign,
    promoters: counts.promoters + (nps >= 9 ? sign : 0),
    detractors: counts.detractors + (nps <= 6 ? sign : 0),
  };
}

export const csat = (c: SatisfactionCounts): number | null => (c.csatResponses > 0 ? c.csatSatisfied / c.csatResponses : null);

export const nps = (c: SatisfactionCounts): number | null => (c.npsResponses > 0 ? (100 * (c.promoters - c.detractors)) / c.npsResponses : null);

export const addCounts = (a: SatisfactionCounts, b: SatisfactionCounts): SatisfactionCounts => ({
  csatResponses: a.csatResponses + b.csatResponses,
  csatSatisfied: a.csatSatisfied + b.csatSatisfied,
  npsResponses: a.npsResponses + b.npsResponses,
  promoters: a.promoters + b.promoters,
  detractors: a.detractors + b.detractors,
});
