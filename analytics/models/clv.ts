/**
 * Customer lifetime value by the discounted-retention formula.
 *
 *   CLV = Σ_{t=1..H} m_t · r^(t-1) / (1+d)^t
 *
 * m_t is the margin earned in period t (received at the END of the period, hence discounted by
 * (1+d)^t), r the retention rate per period (the customer is certainly there for period 1, so r^0),
 * d the discount rate per period.
 *
 * Infinite horizon, constant margin m: a geometric series with ratio r/(1+d) < 1,
 *
 *   Σ_{t=1..∞} m · r^(t-1) / (1+d)^t = m/(1+d) · 1/(1 - r/(1+d)) = m / (1 + d - r).
 *
 * The often-quoted m·(1+d)/(1+d-r) is NOT the limit of the sum above: it is the limit of
 * Σ_{t=0..∞} m · r^t / (1+d)^t, i.e. margins received at the START of each period with the first one
 * undiscounted. It equals (1+d) times our value. We implement both and name the timing explicitly;
 * the default is end-of-period, consistent with the finite sum.
 */

export interface ClvParameters {
  /** Retention rate per period, 0 <= r < 1 + d. */
  retention: number;
  /** Discount rate per period, d > -1. */
  discountRate: number;
}

const check = ({ retention, discountRate }: ClvParameters): void => {
  if (!(discountRate > -1)) throw new RangeError('discountRate must be > -1');
  if (!(retention >= 0 && retention <= 1)) throw new RangeError('retention must be in [0, 1]');
};

/** Finite-horizon CLV for margins m_1..m_H (end-of-period timing). */
export function clvFromMargins(margins: readonly number[], params: ClvParameters): number {
  check(params);
  let total = 0;
  for (let t = 1; t <= margins.length; t++) {
    total += (margins[t - 1]! * Math.pow(params.retention, t - 1)) / Math.pow(1 + params.discountRate, t);
  }
  return total;
}

/** Infinite-horizon CLV for a constant margin. `timing: 'end'` = m/(1+d-r); `'start'` = m(1+d)/(1+d-r). */
export function clvInfinite(margin: number, params: ClvParameters, timing: 'end' | 'start' = 'end'): number {
  check(params);
  const denominator = 1 + params.discountRate - params.retention;
  if (!(denominator > 0)) throw new RangeError('needs retention < 1 + discountRate for the series to converge');
  return timing === 'end' ? margin / denominator : (margin * (1 + params.discountRate)) / denominator;
}
