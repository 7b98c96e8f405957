import { describe, expect, it } from 'vitest';
import { hyp2f1, logGamma, logSumExp } from '../../analytics/models/special.ts';
import { bgnbdLogLikelihood, expectedPurchases, fitBgNbd, type BgNbdParams } from '../../analytics/models/bgnbd.ts';
import { nelderMead } from '../../analytics/models/optimize.ts';
import { expectedSpend, fitGammaGamma, gammaGammaLogLikelihood, simulateSpend, usableForSpend } from '../../analytics/models/gamma-gamma.ts';
import { clvFromMargins, clvInfinite } from '../../analytics/models/clv.ts';
import { customerValue } from '../../analytics/models/customer-value.ts';
import { numerically } from './bgnbd-reference.ts';

/**
 * The customer-value chain (special functions, BG/NBD, Gamma-Gamma, CLV) at the edges the model
 * tests did not reach, each value computed independently: factorials by multiplication, integrals
 * numerically, series in closed form.
 */
const CDNOW: BgNbdParams = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
const GG = { p: 6.25, q: 3.74, v: 15.44 };

const factorial = (n: number): number => {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
};
const relative = (value: number, reference: number) => Math.abs(value / reference - 1);

/** Simpson's rule over u = ln(nu) in [lo, hi]: integrates f(nu) dnu for functions on (0, inf). */
function overLogScale(f: (nu: number) => number, lo = -20, hi = 12, n = 20_000): number {
  const h = (hi - lo) / n;
  const g = (u: number) => f(Math.exp(u)) * Math.exp(u);
  let sum = g(lo) + g(hi);
  for (let i = 1; i < n; i++) sum += (i % 2 === 1 ? 4 : 2) * g(lo + i * h);
  return (sum * h) / 3;
}

/**
 * Posterior of the Gamma-Gamma rate nu after x transactions with mean m: prior Gamma(q, v), mean of x
 * Gamma(p, nu) values is Gamma(px, x nu). E[Z | x, m] = E[p / nu | x, m], integrated numerically.
 */
function spendByIntegration({ p, q, v }: typeof GG, x: number, m: number): number {
  const shape = q + p * x;
  const rate = v + x * m;
  // Unnormalised posterior, scaled by its mode so the integrand stays in range.
  const mode = (shape - 1) / rate;
  const posterior = (nu: number) => Math.exp((shape - 1) * Math.log(nu / mode) - rate * (nu - mode));
  return overLogScale((nu) => (p / nu) * posterior(nu)) / overLogScale(posterior);
}

describe('special functions at their edges', () => {
  it('log-gamma equals ln((n-1)!) for integers and ln((2n)! sqrt(pi) / (4^n n!)) for halves, reflection included', () => {
    for (let n = 1; n <= 25; n++) expect(Math.abs(logGamma(n) - Math.log(factorial(n - 1)))).toBeLessThan(1e-12 * Math.max(1, Math.log(factorial(n - 1))));
    for (let n = 0; n <= 12; n++) {
      const reference = Math.log((factorial(2 * n) * Math.sqrt(Math.PI)) / (4 ** n * factorial(n)));
      expect(Math.abs(logGamma(n + 0.5) - reference)).toBeLessThan(1e-12);
    }
    // Below 1/2 the reflection Γ(x)Γ(1-x) = π / sin(πx): Γ(1/4) Γ(3/4) = π √2.
    expect(Math.abs(logGamma(0.25) + logGamma(0.75) - Math.log(Math.PI * Math.SQRT2))).toBeLessThan(1e-12);
    // Γ(1/3) = 2.678938534707747633... (a published constant, to double precision).
    expect(Math.abs(logGamma(1 / 3) - Math.log(2.6789385347077475))).toBeLessThan(1e-12);
    expect(Math.abs(logGamma(0.01) - Math.log(99.4325851191506))).toBeLessThan(1e-11);
  });

  it('logSumExp handles -Infinity on either side, large values without overflow, and mixed signs', () => {
    expect(logSumExp(-Infinity, 3)).toBe(3);
    expect(logSumExp(3, -Infinity)).toBe(3);
    expect(logSumExp(-Infinity, -Infinity)).toBe(-Infinity);
    expect(Math.abs(logSumExp(1000, 1000) - (1000 + Math.LN2))).toBeLessThan(1e-12);
    // Far apart: shifting by the larger value keeps e^(b-a) from overflowing.
    expect(logSumExp(800, -800)).toBe(800);
    expect(logSumExp(-800, 800)).toBe(800);
    expect(Math.abs(logSumExp(-1000, -1001) - (-1000 + Math.log(1 + Math.exp(-1))))).toBeLessThan(1e-12);
    expect(Math.abs(logSumExp(2, -1) - Math.log(Math.exp(2) + Math.exp(-1)))).toBeLessThan(1e-14);
    expect(Math.abs(logSumExp(-1, 2) - Math.log(Math.exp(2) + Math.exp(-1)))).toBeLessThan(1e-14);
  });

  it('2F1 refuses |z| >= 1 and converges to closed forms near the edge and for negative z', () => {
    for (const z of [1, -1, 1.5, -2, NaN]) expect(() => hyp2f1(1, 1, 2, z)).toThrow(`hyp2f1 needs |z| < 1, got ${z}`);
    // 2F1(1,1;2;z) = -ln(1-z)/z, at z = 0.99 the series needs thousands of terms.
    expect(relative(hyp2f1(1, 1, 2, 0.99), -Math.log(0.01) / 0.99)).toBeLessThan(1e-12);
    expect(relative(hyp2f1(1, 1, 2, -0.9), Math.log(1.9) / 0.9)).toBeLessThan(1e-12);
    // 2F1(a,b;b;z) = (1-z)^-a.
    expect(relative(hyp2f1(0.7, 2, 2, -0.6), 1.6 ** -0.7)).toBeLessThan(1e-12);
    expect(hyp2f1(3, 4, 5, 0)).toBe(1);
  });

  it('2F1 stops its series relative to the sum, also where the sum is far below 1', () => {
    // 2F1(a,b;b;z) = (1-z)^-a with a < 0: the terms after the first are negative and bring the sum from 1
    // down to 0.001 and 0.00316; a tolerance of 1e-15 absolute stops them too early (relative errors of 1e-7 and 1e-9).
    expect(relative(hyp2f1(-1.5, 2, 2, 0.99), 0.01 ** 1.5)).toBeLessThan(1e-12);
    expect(relative(hyp2f1(-2.5, 2, 2, 0.9), 0.1 ** 2.5)).toBeLessThan(1e-12);
  });
});

describe('BG/NBD at its edges', () => {
  it('the likelihood of a customer without repeat purchases is (alpha/(alpha+T))^r', () => {
    for (const T of [1, 10, 39]) {
      const value = bgnbdLogLikelihood(CDNOW, { frequency: 0, recency: 0, T });
      expect(Math.abs(value - CDNOW.r * Math.log(CDNOW.alpha / (CDNOW.alpha + T)))).toBeLessThan(1e-12);
    }
  });

  it('expects no purchases over an empty or negative horizon', () => {
    const customer = { frequency: 3, recency: 20, T: 39 };
    expect(expectedPurchases(CDNOW, customer, 0)).toBe(0);
    expect(expectedPurchases(CDNOW, customer, -5)).toBe(0);
  });

  it('a = 1 (the removable singularity) gives the limit of the neighbouring values, which numerical integration confirms', () => {
    const customer = { frequency: 2, recency: 30, T: 39 };
    const atOne = expectedPurchases({ ...CDNOW, a: 1 }, customer, 26);
    expect(Number.isFinite(atOne)).toBe(true);
    const reference = numerically({ ...CDNOW, a: 1 }, customer, 26).expected;
    expect(relative(atOne, reference)).toBeLessThan(1e-5);
  });

  it('expected purchases of repeat customers equal numerical integration for other parameters (a > 1, large b)', () => {
    const params = { r: 1.8, alpha: 6, a: 2.5, b: 9 };
    for (const customer of [
      { frequency: 1, recency: 5, T: 20 },
      { frequency: 4, recency: 18, T: 20 },
      { frequency: 7, recency: 10, T: 30 },
      // Young customers and a long horizon: t/(alpha+T) > 1, where only the direct series converges.
      { frequency: 1, recency: 1, T: 2 },
      { frequency: 2, recency: 1, T: 2 },
    ]) {
      for (const t of [2, 20, 40]) expect(relative(expectedPurchases(params, customer, t), numerically(params, customer, t).expected)).toBeLessThan(1e-5);
    }
  });

  it('refuses to fit fewer than 4 customers', () => {
    const c = { frequency: 1, recency: 2, T: 5 };
    expect(() => fitBgNbd([c, c, c])).toThrow('BG/NBD needs at least 4 customers');
    expect(fitBgNbd([c, c, c, { frequency: 0, recency: 0, T: 5 }]).customers).toBe(4);
  });
});

describe('BG/NBD on a sample that says nothing of dropout', () => {
  it('still answers a fit when nobody bought again, with standard errors NaN (not a failure, not undefined)', () => {
    // With no repeat purchase the likelihood does not depend on a and b: the information matrix is singular.
    const customers = Array.from({ length: 50 }, (_, i) => ({ frequency: 0, recency: 0, T: 10 + (i % 5) * 4 }));
    const fit = fitBgNbd(customers);
    expect(fit.customers).toBe(50);
    expect(Object.keys(fit.standardErrors).sort()).toEqual(['a', 'alpha', 'b', 'r']);
    for (const se of Object.values(fit.standardErrors)) expect(se).toBeNaN();
  });
});

describe('Gamma-Gamma at its edges', () => {
  it('still answers a fit when the information matrix cannot be inverted, with standard errors NaN', () => {
    // Spends 200 orders of magnitude either side of 1: the fit runs q towards infinity, where the
    // likelihood sees q and v only as their ratio, so the Hessian is singular and its inverse is refused.
    const customers = [1e-200, 1, 1e200].map((monetary) => ({ frequency: 1, monetary }));
    const fit = fitGammaGamma(customers);
    expect(fit.customers).toBe(3);
    for (const value of Object.values(fit.params)) expect(Number.isFinite(value)).toBe(true);
    expect(Object.keys(fit.standardErrors).sort()).toEqual(['p', 'q', 'v']);
    for (const se of Object.values(fit.standardErrors)) expect(se).toBeNaN();
  });

  it('the likelihood of a mean spend equals the mixture integral over nu (integer shapes: factorials)', () => {
    const params = { p: 2, q: 3, v: 10 };
    for (const [x, m] of [
      [3, 4],
      [1, 25],
      [5, 0.5],
    ] as const) {
      // Gamma(m; px, x nu) mixed over Gamma(nu; q, v).
      const px = params.p * x;
      const density = overLogScale(
        (nu) =>
          (((x * nu) ** px * m ** (px - 1) * Math.exp(-x * nu * m)) / factorial(px - 1)) *
          ((params.v ** params.q * nu ** (params.q - 1) * Math.exp(-params.v * nu)) / factorial(params.q - 1)),
      );
      expect(Math.abs(gammaGammaLogLikelihood(params, { frequency: x, monetary: m }) - Math.log(density))).toBeLessThan(1e-8);
    }
  });

  it('expected spend is the posterior mean of p/nu, the population mean without repeats, the own mean when q <= 1', () => {
    for (const [x, m] of [
      [1, 40],
      [4, 12],
      [10, 100],
    ] as const) {
      expect(relative(expectedSpend(GG, { frequency: x, monetary: m }), spendByIntegration(GG, x, m))).toBeLessThan(1e-8);
    }
    expect(relative(expectedSpend(GG, { frequency: 0, monetary: 55 }), (GG.p * GG.v) / (GG.q - 1))).toBeLessThan(1e-12);
    expect(expectedSpend({ ...GG, q: 1 }, { frequency: 3, monetary: 42 })).toBe(42);
    expect(expectedSpend({ ...GG, q: 0.5 }, { frequency: 3, monetary: 42 })).toBe(42);
    expect(relative(expectedSpend({ ...GG, q: 1.5 }, { frequency: 3, monetary: 42 }), spendByIntegration({ ...GG, q: 1.5 }, 3, 42))).toBeLessThan(1e-8);
  });

  it('does not call a search converged that never found a finite value', () => {
    const nowhere = nelderMead(() => Infinity, [0, 0]);
    expect(nowhere.converged).toBe(false);
    expect(nelderMead(([x, y]) => (x! - 1) ** 2 + (y! + 2) ** 2, [0, 0]).converged).toBe(true);
  });

  it('uses only customers with a repeat purchase and a positive, finite mean spend', () => {
    expect(usableForSpend({ frequency: 1, monetary: 5 })).toBe(true);
    expect(usableForSpend({ frequency: 0, monetary: 5 })).toBe(false);
    expect(usableForSpend({ frequency: 2, monetary: 0 })).toBe(false);
    expect(usableForSpend({ frequency: 2, monetary: -3 })).toBe(false);
    expect(usableForSpend({ frequency: 2, monetary: Infinity })).toBe(false);
    expect(usableForSpend({ frequency: 2, monetary: NaN })).toBe(false);
    const good = [
      { frequency: 1, monetary: 10 },
      { frequency: 2, monetary: 14 },
    ];
    const unusable = [
      { frequency: 0, monetary: 30 },
      { frequency: 3, monetary: 0 },
      { frequency: 2, monetary: NaN },
    ];
    expect(() => fitGammaGamma([...good, ...unusable])).toThrow('Gamma-Gamma needs at least 3 customers with repeat purchases');
    const fit = fitGammaGamma([...good, { frequency: 4, monetary: 9 }, ...unusable]);
    expect(fit.customers).toBe(3);
  });

  it('a simulated customer without transactions spends nothing', () => {
    const random = { gamma: () => 1 };
    expect(simulateSpend(GG, 0, random)).toBe(0);
    expect(simulateSpend(GG, 3, random)).toBe(1);
  });
});

describe('discounted-retention CLV at its edges', () => {
  it('accepts retention 0 and 1 and discount rates above -1, refuses the rest', () => {
    expect(clvFromMargins([100, 100], { retention: 0, discountRate: 0 })).toBe(100);
    expect(clvFromMargins([100, 100], { retention: 1, discountRate: 0 })).toBe(200);
    expect(clvFromMargins([], { retention: 0.5, discountRate: 0.1 })).toBe(0);
    expect(relative(clvFromMargins([100], { retention: 0.5, discountRate: -0.5 }), 200)).toBeLessThan(1e-12);
    expect(() => clvFromMargins([100], { retention: 0.5, discountRate: -1 })).toThrow('discountRate must be > -1');
    expect(() => clvFromMargins([100], { retention: -0.01, discountRate: 0 })).toThrow('retention must be in [0, 1]');
    expect(() => clvFromMargins([100], { retention: 1.01, discountRate: 0.1 })).toThrow(RangeError);
    expect(() => clvFromMargins([100], { retention: NaN, discountRate: 0.1 })).toThrow(RangeError);
    expect(() => clvInfinite(100, { retention: 0.5, discountRate: NaN })).toThrow(RangeError);
    expect(() => clvInfinite(100, { retention: 1, discountRate: 0 }, 'start')).toThrow('needs retention < 1 + discountRate for the series to converge');
    // Retention 1 with a positive discount rate converges: m / d.
    expect(relative(clvInfinite(50, { retention: 1, discountRate: 0.25 }), 200)).toBeLessThan(1e-12);
  });
});

describe('CLV from BG/NBD + Gamma-Gamma for repeat customers', () => {
  it('equals the discounted per-period increments of integrated expected purchases times the integrated expected spend', () => {
    for (const history of [
      { frequency: 4, recency: 30, T: 38, monetary: 40 },
      { frequency: 1, recency: 3, T: 39, monetary: 120 },
      { frequency: 12, recency: 37, T: 39, monetary: 15 },
    ]) {
      const horizon = 8;
      const discountRate = 0.02;
      const spend = spendByIntegration(GG, history.frequency, history.monetary);
      let clv = 0;
      let previous = 0;
      for (let k = 1; k <= horizon; k++) {
        const cumulative = numerically(CDNOW, history, k).expected;
        clv += ((cumulative - previous) * spend) / (1 + discountRate) ** k;
        previous = cumulative;
      }
      const value = customerValue(CDNOW, GG, history, horizon, discountRate);
      expect(relative(value.clv, clv)).toBeLessThan(1e-4);
      expect(relative(value.expectedPurchases, previous)).toBeLessThan(1e-5);
      expect(relative(value.expectedSpend, spend)).toBeLessThan(1e-8);
      expect(relative(value.pAlive, numerically(CDNOW, history, 1).pAlive)).toBeLessThan(1e-5);
    }
  });

  it('rounds the horizon to whole periods and values a horizon of none at zero', () => {
    const history = { frequency: 3, recency: 20, T: 39, monetary: 30 };
    const rounded = customerValue(CDNOW, GG, history, 2.6, 0);
    expect(relative(rounded.expectedPurchases, numerically(CDNOW, history, 3).expected)).toBeLessThan(1e-5);
    const none = customerValue(CDNOW, GG, history, -4, 0.1);
    expect(none.clv).toBe(0);
    expect(none.expectedPurchases).toBe(0);
    expect(customerValue(CDNOW, GG, history, 0.4, 0.1).clv).toBe(0);
  });
});
