import type { BgNbdCustomer, BgNbdParams } from '../../analytics/models/bgnbd.ts';

/**
 * BG/NBD per-customer quantities computed without the model's own formulas: the purchase rate lambda
 * integrated in closed form as gamma integrals, the dropout probability p numerically.
 */

/**
 * Simpson's rule over v in [0, 1] with p = v^(4/a): the Beta density's p^(a-1) dp becomes a smooth
 * (4/a) v^3 dv weight, so the rule converges at its usual rate.
 */
export function overDropout(params: BgNbdParams, f: (p: number) => number, n = 20_000): number {
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
export function numerically(params: BgNbdParams, { frequency: x, recency: tx, T }: BgNbdCustomer, t: number) {
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
