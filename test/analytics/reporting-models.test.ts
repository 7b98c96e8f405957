import { describe, expect, it } from 'vitest';
import { cohortTable, retentionRates } from '../../analytics/models/retention.ts';
import { countCsat, countNps, csat, emptyCounts, nps } from '../../analytics/models/satisfaction.ts';
import { fitClusters } from '../../analytics/models/segment-clusters.ts';
import { fitRfmCutoffs, nearestCluster, rfmScore, rfmSegment, RFM_SEGMENTS } from '../../analytics/models/segments.ts';
import { backtestError, forecastRevenue } from '../../analytics/models/forecast.ts';
import { dayOf } from '../../analytics/models/time.ts';
import { seededRandom } from '../../analytics/models/random.ts';

const d = (iso: string) => dayOf(`${iso}T12:00:00Z`);

describe('retention', () => {
  const customers = [{ days: [d('2024-01-05'), d('2024-02-10'), d('2024-03-01')] }, { days: [d('2024-01-20')] }, { days: [d('2024-02-02'), d('2024-03-15')] }];
  it('cohort table by first-purchase month', () => {
    expect(cohortTable(customers, '2024-03')).toEqual([
      { cohort: '2024-01', size: 2, active: [2, 1, 1], retention: [1, 0.5, 0.5] },
      { cohort: '2024-02', size: 1, active: [1, 1], retention: [1, 1] },
    ]);
  });
  it('CRR = (E - N) / S with a 30-day activity window', () => {
    const [feb, mar] = retentionRates(customers, '2024-02', '2024-03', 30);
    // Start of Feb: active in [Jan 2, Feb 1): customers 1 and 2 -> S = 2. End (Mar 1): active in
    // [Jan 31, Mar 1): customers 1 (Feb 10) and 3 (Feb 2) -> E = 2. New in Feb: customer 3 -> N = 1.
    expect(feb).toEqual({ period: '2024-02', S: 2, E: 2, N: 1, crr: 0.5 });
    // Start of Mar: S = 2 (1, 3). End (Apr 1): window [Mar 2, Apr 1): customer 3 only (1's Mar 1 purchase is out).
    expect(mar).toEqual({ period: '2024-03', S: 2, E: 1, N: 0, crr: 0.5 });
  });
});

describe('satisfaction', () => {
  it('CSAT is the share of 4-5; NPS is promoters minus detractors in points, and ratings can be withdrawn', () => {
    let c = emptyCounts();
    for (const r of [5, 4, 3, 1]) c = countCsat(c, r);
    for (const s of [10, 9, 8, 6, 0]) c = countNps(c, s);
    expect(csat(c)).toBe(0.5);
    expect(nps(c)).toBe(0); // 2 promoters, 2 detractors of 5
    c = countNps(c, 0, -1);
    expect(nps(c)).toBe(25); // 2 promoters, 1 detractor of 4
    expect(csat(emptyCounts())).toBeNull();
  });
});

describe('segments', () => {
  it('every one of the 125 R/F/M scores gets a named segment, and the rules read as intended', () => {
    const seen = new Set<string>();
    for (let r = 1; r <= 5; r++) for (let f = 1; f <= 5; f++) for (let m = 1; m <= 5; m++) seen.add(rfmSegment({ r, f, m }));
    expect([...seen].sort()).toEqual([...RFM_SEGMENTS].sort());
    expect(rfmSegment({ r: 5, f: 5, m: 5 })).toBe('Champions');
    expect(rfmSegment({ r: 1, f: 1, m: 1 })).toBe('Hibernating');
    expect(rfmSegment({ r: 2, f: 4, m: 2 })).toBe('At risk');
  });
  it('quintile scores: recent, frequent, valuable customers score 5', () => {
    const values = Array.from({ length: 100 }, (_, i) => ({ daysSinceLastPurchase: i, purchaseDays: i + 1, meanValue: 10 * i }));
    const cutoffs = fitRfmCutoffs(values);
    expect(rfmScore(cutoffs, { daysSinceLastPurchase: 0, purchaseDays: 100, meanValue: 990 })).toEqual({ r: 5, f: 5, m: 5 });
    expect(rfmScore(cutoffs, { daysSinceLastPurchase: 99, purchaseDays: 1, meanValue: 0 })).toEqual({ r: 1, f: 1, m: 1 });
  });
  it('k-means finds well-separated groups and stored centroids reproduce the assignment', () => {
    const random = seededRandom(5);
    const groups = [
      { daysSinceLastPurchase: 5, purchaseDays: 20, meanValue: 200 },
      { daysSinceLastPurchase: 300, purchaseDays: 1, meanValue: 15 },
      { daysSinceLastPurchase: 60, purchaseDays: 5, meanValue: 50 },
    ];
    const values = Array.from({ length: 300 }, (_, i) => {
      const g = groups[i % 3]!;
      const jitter = () => Math.exp(0.1 * random.normal());
      return { daysSinceLastPurchase: g.daysSinceLastPurchase * jitter(), purchaseDays: g.purchaseDays * jitter(), meanValue: g.meanValue * jitter() };
    });
    const model = fitClusters(values, 3);
    expect(model.sizes.sort()).toEqual([100, 100, 100]);
    const stored = JSON.parse(JSON.stringify(model));
    const a = nearestCluster(stored, values[0]!);
    expect(nearestCluster(stored, values[3]!)).toBe(a);
    expect(nearestCluster(stored, values[1]!)).not.toBe(a);
    const profile = model.profiles[a]!;
    expect(profile.purchaseDays).toBeGreaterThan(15);
  });
});

describe('revenue forecast', () => {
  const months = Array.from({ length: 36 }, (_, i) => `${2021 + Math.floor(i / 12)}-${String((i % 12) + 1).padStart(2, '0')}`);
  it('both methods learn trend + seasonality and backtest with small error on a clean series', () => {
    const random = seededRandom(8);
    const history = months.map((month, t) => ({ month, value: 1000 + 20 * t + 200 * Math.sin((2 * Math.PI * t) / 12) + 10 * random.normal() }));
    const result = forecastRevenue(history, 6);
    expect(result.methods).toHaveLength(2);
    for (const m of result.methods) {
      expect(m.forecast.map((f) => f.month)).toEqual(['2024-01', '2024-02', '2024-03', '2024-04', '2024-05', '2024-06']);
      expect(m.backtest!.holdout).toBe(6);
      expect(m.backtest!.mape!).toBeLessThan(5);
      // Forecast for 2024-03 (t = 38): 1000 + 760 + 200 sin(2π·38/12) ≈ 1933
      expect(Math.abs(m.forecast[2]!.value - (1760 + 200 * Math.sin((2 * Math.PI * 38) / 12)))).toBeLessThan(100);
    }
  });
  it('never forecasts negative revenue, even after a history that falls to nothing', () => {
    // Two years of steady sales, then eleven empty months (an imported history that ends before today).
    const history = months.map((month, t) => ({ month, value: t < months.length - 11 ? 5000 + 100 * Math.sin((2 * Math.PI * t) / 12) : 0 }));
    const result = forecastRevenue(history, 6);
    for (const m of result.methods) {
      expect(m.forecast).toHaveLength(6);
      for (const f of m.forecast) expect(f.value).toBeGreaterThanOrEqual(0);
    }
    // Unfloored, the fall extrapolates below zero: the floor is what keeps it there.
    expect(result.methods.some((m) => m.forecast.some((f) => f.value === 0))).toBe(true);
  });
  it('backtest error by hand', () => {
    expect(backtestError([100, 200], [110, 180])).toEqual({ mape: 10, rmse: Math.sqrt((100 + 400) / 2) });
  });
});
