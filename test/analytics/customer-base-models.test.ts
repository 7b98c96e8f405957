import { describe, expect, it } from 'vitest';
import { hyp2f1, logGamma } from '../../analytics/models/special.ts';
import { seededRandom } from '../../analytics/models/random.ts';
import {
  bgnbdLogLikelihood,
  discountedHyp,
  expectedPurchases,
  expectedPurchasesNewCustomer,
  fitBgNbd,
  probabilityAlive,
  simulateBgNbdCustomer,
  type BgNbdParams,
} from '../../analytics/models/bgnbd.ts';
import { expectedSpend, fitGammaGamma, gammaGammaLogLikelihood, simulateSpend } from '../../analytics/models/gamma-gamma.ts';
import { clvFromMargins, clvInfinite } from '../../analytics/models/clv.ts';
import { rfmOf, summarisePurchases } from '../../analytics/models/rfm.ts';
import { retentionClvParams } from '../../analytics/retention-clv.ts';
import { customerValue } from '../../analytics/models/customer-value.ts';

// The CDNOW estimates of Fader, Hardie & Lee (2005), used as the "true" parameters of the simulations.
const CDNOW: BgNbdParams = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

describe('special functions', () => {
  it('log-gamma matches factorials and Γ(1/2) = √π', () => {
    expect(logGamma(1)).toBeCloseTo(0, 12);
    expect(logGamma(6)).toBeCloseTo(Math.log(120), 12);
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 12);
    expect(logGamma(0.1)).toBeCloseTo(2.252712651734206, 10);
  });
  it('2F1 matches closed forms', () => {
    // 2F1(1,1;2;z) = -ln(1-z)/z ; 2F1(a,b;b;z) = (1-z)^-a
    expect(hyp2f1(1, 1, 2, 0.5)).toBeCloseTo(-Math.log(0.5) / 0.5, 12);
    expect(hyp2f1(2.5, 3, 3, 0.3)).toBeCloseTo(Math.pow(0.7, -2.5), 12);
  });
});

describe('RFM per the BG/NBD literature', () => {
  it('aggregates per calendar day, counts repeat days, averages repeat values', () => {
    const s = summarisePurchases([
      { day: 100, value: 10 },
      { day: 100, value: 5 }, // same day as the first: not a repeat purchase
      { day: 107, value: 30 },
      { day: 114, value: 20 },
      { day: 114, value: -4 }, // refund lowers the value of its day
    ])!;
    expect(s).toEqual({ firstDay: 100, lastDay: 114, purchaseDays: 3, totalValue: 61, firstDayValue: 15 });
    expect(rfmOf(s, 128, 'week')).toEqual({ frequency: 2, recency: 2, T: 4, monetary: 23 });
    expect(rfmOf(s, 128, 'day')).toEqual({ frequency: 2, recency: 14, T: 28, monetary: 23 });
    // Values of four decimals give a monetary without float noise (116.6667 - 100 is 16.666700000000006 in floats).
    const fine = { firstDay: 100, lastDay: 107, purchaseDays: 2, totalValue: 116.6667, firstDayValue: 100 };
    expect(rfmOf(fine, 128, 'day').monetary).toBe(16.6667);
  });
});

describe('discounted-retention CLV', () => {
  it('the finite sum follows the formula term by term', () => {
    // 100/1.1 + 80·0.8/1.21 + 60·0.64/1.331
    const expected = 100 / 1.1 + (80 * 0.8) / 1.21 + (60 * 0.64) / 1.331;
    expect(clvFromMargins([100, 80, 60], { retention: 0.8, discountRate: 0.1 })).toBeCloseTo(expected, 10);
  });
  it('the closed form is the limit of the sum (m/(1+d-r)), and the start-of-period variant is (1+d) times it', () => {
    const params = { retention: 0.8, discountRate: 0.1 };
    const long = clvFromMargins(new Array(2000).fill(100), params);
    expect(clvInfinite(100, params)).toBeCloseTo(long, 8);
    expect(clvInfinite(100, params)).toBeCloseTo(100 / 0.3, 10);
    expect(clvInfinite(100, params, 'start')).toBeCloseTo((100 * 1.1) / 0.3, 10);
  });
  it('rejects a series that does not converge', () => {
    expect(() => clvInfinite(100, { retention: 1, discountRate: 0 })).toThrow(RangeError);
  });
});

describe('BG/NBD', () => {
  it('the closed-form likelihood of a one-customer case matches numerical integration over λ and p', () => {
    // L(λ,p|x,tx,T) = (1-p)^x λ^x e^{-λT} + δ(x>0) p (1-p)^{x-1} λ^x e^{-λ tx}, integrated on a grid.
    const params = { r: 2, alpha: 3, a: 2, b: 3 };
    const c = { frequency: 2, recency: 4, T: 6 };
    const gammaPdf = (l: number) => Math.exp(params.r * Math.log(params.alpha) + (params.r - 1) * Math.log(l) - params.alpha * l - logGamma(params.r));
    const betaPdf = (p: number) =>
      Math.exp((params.a - 1) * Math.log(p) + (params.b - 1) * Math.log(1 - p) - (logGamma(params.a) + logGamma(params.b) - logGamma(params.a + params.b)));
    let sum = 0;
    const nl = 2000,
      np = 400,
      lmax = 8;
    for (let i = 0; i < nl; i++) {
      const l = ((i + 0.5) / nl) * lmax;
      for (let j = 0; j < np; j++) {
        const p = (j + 0.5) / np;
        const lik = (1 - p) ** 2 * l ** 2 * Math.exp(-l * 6) + p * (1 - p) * l ** 2 * Math.exp(-l * 4);
        sum += lik * gammaPdf(l) * betaPdf(p) * (lmax / nl) * (1 / np);
      }
    }
    expect(bgnbdLogLikelihood(params, c)).toBeCloseTo(Math.log(sum), 4);
  });

  it("Pfaff's transformation used for frequent customers gives the direct series' value", () => {
    for (const [x, T, t] of [
      [3, 40, 10],
      [12, 60, 52],
      [40, 100, 52],
      [8, 20, 15],
    ] as const) {
      const direct =
        Math.pow((CDNOW.alpha + T) / (CDNOW.alpha + T + t), CDNOW.r + x) *
        hyp2f1(CDNOW.r + x, CDNOW.b + x, CDNOW.a + CDNOW.b + x - 1, t / (CDNOW.alpha + T + t));
      expect(discountedHyp(CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b, x, T, t)).toBeCloseTo(direct, 12);
    }
  });

  it('P(alive) is 1 without repeats and falls as the customer stays silent', () => {
    expect(probabilityAlive(CDNOW, { frequency: 0, recency: 0, T: 30 })).toBe(1);
    const recent = probabilityAlive(CDNOW, { frequency: 3, recency: 29, T: 30 });
    const silent = probabilityAlive(CDNOW, { frequency: 3, recency: 5, T: 30 });
    expect(recent).toBeGreaterThan(silent);
    expect(silent).toBeGreaterThan(0);
  });

  it('conditional expectation for a new customer equals the unconditional one, and both match simulation', () => {
    const t = 20;
    expect(expectedPurchases(CDNOW, { frequency: 0, recency: 0, T: 0 }, t)).toBeCloseTo(expectedPurchasesNewCustomer(CDNOW, t), 10);
    const random = seededRandom(11);
    let total = 0;
    const n = 40_000;
    for (let i = 0; i < n; i++) total += simulateBgNbdCustomer(CDNOW, t, random).frequency;
    // Standard error of the mean is about 0.01 here; 0.05 leaves ~5 SE.
    expect(Math.abs(total / n - expectedPurchasesNewCustomer(CDNOW, t))).toBeLessThan(0.05);
  });

  it('the maximum-likelihood fit recovers the parameters it was simulated from', () => {
    const random = seededRandom(2005);
    // 4000 customers observed 39 weeks each (a CDNOW-like window), with the CDNOW parameters.
    const customers = Array.from({ length: 4000 }, () => simulateBgNbdCustomer(CDNOW, 39, random));
    const fit = fitBgNbd(customers);
    expect(fit.converged).toBe(true);
    // Tolerance: 3 asymptotic standard errors (inverse observed information), a ~99.7% band per
    // parameter for a correct estimator; a wrong likelihood or optimiser misses it by far.
    for (const key of ['r', 'alpha', 'a', 'b'] as const) {
      expect(Number.isFinite(fit.standardErrors[key])).toBe(true);
      expect(Math.abs(fit.params[key] - CDNOW[key])).toBeLessThan(3 * fit.standardErrors[key]);
    }
    // And the fitted likelihood is at least that of the true parameters (it is the maximum).
    const atTruth = customers.reduce((s, c) => s + bgnbdLogLikelihood(CDNOW, c), 0);
    expect(fit.logLikelihood).toBeGreaterThanOrEqual(atTruth);
    // The fit's grouped, cached likelihood is the same function as the per-customer one.
    const atFit = customers.reduce((s, c) => s + bgnbdLogLikelihood(fit.params, c), 0);
    expect(fit.logLikelihood).toBeCloseTo(atFit, 6);
  });
});

describe('Gamma-Gamma', () => {
  it('recovers the parameters it was simulated from and shrinks customer means towards the population mean', () => {
    // Fader-Hardie's CDNOW spend estimates.
    const truth = { p: 6.25, q: 3.74, v: 15.44 };
    const random = seededRandom(77);
    const history = Array.from({ length: 3000 }, () => {
      const frequency = 1 + Math.floor(random.next() * 8);
      return { frequency, monetary: simulateSpend(truth, frequency, random) };
    });
    const fit = fitGammaGamma(history);
    expect(fit.logLikelihood).toBeCloseTo(
      history.reduce((s, c) => s + gammaGammaLogLikelihood(fit.params, c), 0),
      6,
    );
    for (const key of ['p', 'q', 'v'] as const) {
      expect(Math.abs(fit.params[key] - truth[key])).toBeLessThan(3 * fit.standardErrors[key]);
    }
    const populationMean = (truth.p * truth.v) / (truth.q - 1);
    const e = expectedSpend(truth, { frequency: 2, monetary: 100 });
    expect(e).toBeLessThan(100);
    expect(e).toBeGreaterThan(populationMean);
  });

  it('fits spend of any size alike: amounts a million million million times larger give the same p and q, v as many times larger', () => {
    // Found with one customer of 115 purchases of 9e11 in a currency at 1e10 to the base: the search
    // started at v = mean spend, beyond its bounds, never moved, and published v = 2e20 as converged.
    const truth = { p: 6.25, q: 3.74, v: 15.44 };
    const random = seededRandom(5);
    const history = Array.from({ length: 500 }, () => {
      const frequency = 1 + Math.floor(random.next() * 8);
      return { frequency, monetary: simulateSpend(truth, frequency, random) };
    });
    const scale = 1e18;
    const small = fitGammaGamma(history);
    const large = fitGammaGamma(history.map((c) => ({ ...c, monetary: c.monetary * scale })));
    expect(large.converged).toBe(true);
    expect(Number.isFinite(large.logLikelihood)).toBe(true);
    // The same optimum, to the search's own precision.
    const near = (a: number, b: number) => expect(Math.abs(a - b) / Math.abs(b)).toBeLessThan(1e-5);
    near(large.params.p, small.params.p);
    near(large.params.q, small.params.q);
    near(large.params.v / scale, small.params.v);
    expect(large.logLikelihood).toBeCloseTo(small.logLikelihood - history.length * Math.log(scale), 4);
    expect(large.logLikelihood).toBeCloseTo(
      history.reduce((s, c) => s + gammaGammaLogLikelihood(large.params, { ...c, monetary: c.monetary * scale }), 0),
      4,
    );
  });
});

describe('CLV from BG/NBD + Gamma-Gamma', () => {
  it('undiscounted equals expected purchases times expected spend; discounting lowers it', () => {
    const gg = { p: 6.25, q: 3.74, v: 15.44 };
    const history = { frequency: 4, recency: 30, T: 38, monetary: 40 };
    const flat = customerValue(CDNOW, gg, history, 52, 0);
    expect(flat.clv).toBeCloseTo(expectedPurchases(CDNOW, history, 52) * expectedSpend(gg, history), 8);
    const discounted = customerValue(CDNOW, gg, history, 52, 0.01);
    expect(discounted.clv).toBeLessThan(flat.clv);
    expect(discounted.clv).toBeGreaterThan(flat.clv / 1.01 ** 52);
  });
});

describe('retention CLV parameters', () => {
  it('average the CRR of the last 12 calendar months that have one, never older months, bounded below 1', () => {
    // Two years: an older year at 0.5, then 12 months of which only four have a rate.
    const older = Array.from({ length: 12 }, () => ({ crr: 0.5 }));
    const latest = [0.8, null, null, 0.6, null, null, null, 0.7, null, null, 0.9, null].map((crr) => ({ crr }));
    expect(retentionClvParams([...older, ...latest], 1, 0, 'month')!.retentionRate).toBeCloseTo(0.75, 12);
    expect(retentionClvParams([...older, ...latest.map(() => ({ crr: null }))], 1, 0, 'month')).toBeNull();
    expect(retentionClvParams([{ crr: 1.2 }, { crr: 1 }], 1, 0, 'month')!.retentionRate).toBe(0.99);
  });
});
