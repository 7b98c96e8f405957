import { describe, expect, it } from 'vitest';
import { expectedPurchases, probabilityAlive, type BgNbdCustomer, type BgNbdParams } from '../../analytics/models/bgnbd.ts';

/**
 * The BG/NBD conditional expectation checked per customer, not only through fitted parameters:
 * - against the published CDNOW example of Fader, Hardie & Lee (2005), "Counting your customers the
 *   easy way": with r = 0.243, alpha = 4.414, a = 0.793, b = 2.426, a customer with x = 2, t_x = 30.43,
 *   T = 38.86 (weeks) is expected to make 1.226 purchases in the next 39 weeks;
 * - against an independent computation for repeat customers: the posterior expectation integrated
 *   numerically over the dropout probability p (the purchase rate lambda integrated in closed form as
 *   gamma integrals), with no hypergeometric function involved.
 */
const CDNOW: BgNbdParams = { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

/**
 * Simpson's rule over v in [0, 1] with p = v^(4/a): the Beta density's p^(a-1) dp becomes a smooth
 * (4/a) v^3 dv weight, so the rule converges at its usual rate.
 */
function overDropout(params: BgNbdParams, f: (p: number) => number, n = 20_000): number {
  const { a, b } = params;
  const g = (v: number) => {
    const p = v ** (4 / a);
    return p <= 0 || p >= 1 ? 0 : f(p) * (1 - p) ** (b - 1) * v ** 3;
  };
  const h = 1 / n;
  let sum = g(0) + g(1);
  for (let i = 1; i < n; i++) sum += (i % 2 === 1 ? 4 : 2) * g(i * h);
  return (sum * h) / 3;
}

/** E[Y(t) | x, t_x, T] and P(alive) by integration; constants common to numerator and denominator cancel. */
function numerically(params: BgNbdParams, { frequency: x, recency: tx, T }: BgNbdCustomer, t: number) {
  const { r, alpha } = params;
  const k = r + x;
  // Given p, integrating lambda^x e^(-lambda s) against Gamma(r, alpha) gives (alpha + s)^-(r+x) up to a constant.
  const aliveMass = (p: number) => (1 - p) ** x * (alpha + T) ** -k;
  const likelihood = (p: number) => aliveMass(p) + (x > 0 ? p * (1 - p) ** (x - 1) * (alpha + tx) ** -k : 0);
  // Alive at T: purchases in (T, T+t] until dropout have expectation (1 - e^(-lambda p t)) / p.
  const purchases = (p: number) => ((1 - p) ** x * ((alpha + T) ** -k - (alpha + T + p * t) ** -k)) / p;
  const evidence = overDropout(params, likelihood);
  return { expected: overDropout(params, purchases) / evidence, pAlive: overDropout(params, aliveMass) / evidence };
}

describe('BG/NBD per customer', () => {
  it('reproduces the published CDNOW conditional expectation (x=2, t_x=30.43, T=38.86, 39 weeks: 1.226)', () => {
    const value = expectedPurchases(CDNOW, { frequency: 2, recency: 30.43, T: 38.86 }, 39);
    expect(Math.abs(value - 1.226)).toBeLessThan(0.0005);
  });

  const repeatCustomers: BgNbdCustomer[] = [
    { frequency: 1, recency: 2, T: 38.86 },
    { frequency: 2, recency: 30.43, T: 38.86 },
    { frequency: 3, recency: 10, T: 40 },
    { frequency: 5, recency: 35, T: 39 },
    { frequency: 10, recency: 38, T: 39 },
    { frequency: 25, recency: 70, T: 78 },
  ];
  for (const customer of repeatCustomers) {
    for (const t of [4, 39, 104]) {
      it(`expected purchases and P(alive) equal numerical integration for x=${customer.frequency}, t_x=${customer.recency}, T=${customer.T}, t=${t}`, () => {
        const reference = numerically(CDNOW, customer, t);
        expect(Math.abs(expectedPurchases(CDNOW, customer, t) / reference.expected - 1)).toBeLessThan(1e-5);
        expect(Math.abs(probabilityAlive(CDNOW, customer) - reference.pAlive)).toBeLessThan(1e-6);
      });
    }
  }
});
