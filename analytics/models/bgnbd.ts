import { hyp2f1, logGamma, logSumExp } from './special.ts';
import { minimise, standardErrorsFromLogFit } from './optimize.ts';

/** BG/NBD parameters: purchase rate λ ~ Gamma(r, alpha); dropout probability p ~ Beta(a, b). */
export interface BgNbdParams {
  r: number;
  alpha: number;
  a: number;
  b: number;
}

/** One customer's sufficient statistics, in the fit's time unit: x repeat purchases, t_x recency, T age. */
export interface BgNbdCustomer {
  frequency: number;
  recency: number;
  T: number;
}

/**
 * Log-likelihood of one customer, Fader, Hardie & Lee (2005), "Counting your customers the easy
 * way", eq. (6), in the form that needs no hypergeometric function:
 *   L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / Γ(r) · [ (α+T)^-(r+x) + δ(x>0) · a/(b+x-1) · (α+t_x)^-(r+x) ]
 */
export function bgnbdLogLikelihood({ r, alpha, a, b }: BgNbdParams, { frequency: x, recency: tx, T }: BgNbdCustomer): number {
  const a1 = logGamma(r + x) - logGamma(r) + r * Math.log(alpha);
  const a2 = logGamma(a + b) + logGamma(b + x) - logGamma(b) - logGamma(a + b + x);
  const a3 = -(r + x) * Math.log(alpha + T);
  const a4 = x > 0 ? Math.log(a) - Math.log(b + x - 1) - (r + x) * Math.log(alpha + tx) : -Infinity;
  return a1 + a2 + logSumExp(a3, a4);
}

export interface BgNbdFit {
  params: BgNbdParams;
  /** Asymptotic standard errors (inverse observed information, delta method). */
  standardErrors: BgNbdParams;
  logLikelihood: number;
  customers: number;
  converged: boolean;
}

const fromLog = (v: number[]): BgNbdParams => ({ r: Math.exp(v[0]!), alpha: Math.exp(v[1]!), a: Math.exp(v[2]!), b: Math.exp(v[3]!) });

/**
 * Maximum-likelihood fit on log-parameters with Nelder-Mead. Customers with identical (x, t_x, T)
 * are grouped so the cost per likelihood evaluation is the number of distinct triples.
 */
export function fitBgNbd(customers: readonly BgNbdCustomer[]): BgNbdFit {
  if (customers.length < 4) throw new RangeError('BG/NBD needs at least 4 customers');
  const groups = new Map<string, { c: BgNbdCustomer; n: number }>();
  for (const c of customers) {
    const key = `${c.frequency}|${c.recency}|${c.T}`;
    const g = groups.get(key);
    if (g) g.n++;
    else groups.set(key, { c, n: 1 });
  }
  const grouped = [...groups.values()];
  const n = Float64Array.from(grouped, (g) => g.n);
  const xs = Int32Array.from(grouped, (g) => g.c.frequency);
  const tx = Float64Array.from(grouped, (g) => g.c.recency);
  const Ts = Float64Array.from(grouped, (g) => g.c.T);
  const maxX = xs.reduce((m, x) => Math.max(m, x), 0);
  const present = new Uint8Array(maxX + 1);
  for (const x of xs) present[x] = 1;
  // The log-gamma terms depend on x only: computed once per distinct x per evaluation, so the loop
  // over customers is a handful of logarithms (this is what keeps a 100k-customer fit in seconds).
  const termOfX = new Float64Array(maxX + 1);
  const negLogLik = (v: number[]): number => {
    if (v.some((x) => Math.abs(x) > 30)) return Infinity;
    const { r, alpha, a, b } = fromLog(v);
    const constant = -logGamma(r) + r * Math.log(alpha) + logGamma(a + b) - logGamma(b);
    for (let x = 0; x <= maxX; x++) {
      if (present[x]) termOfX[x] = logGamma(r + x) + logGamma(b + x) - logGamma(a + b + x);
    }
    const logA = Math.log(a);
    let sum = 0;
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      const a3 = -(r + x) * Math.log(alpha + Ts[i]!);
      const ll = x > 0 ? logSumExp(a3, logA - Math.log(b + x - 1) - (r + x) * Math.log(alpha + tx[i]!)) : a3;
      sum += n[i]! * (constant + termOfX[x]! + ll);
    }
    return -sum;
  };
  // Start from a rate matching the mean frequency per unit of age, and a mild dropout.
  const meanX = customers.reduce((s, c) => s + c.frequency, 0) / customers.length;
  const meanT = customers.reduce((s, c) => s + c.T, 0) / customers.length || 1;
  const start = [0, Math.log(Math.max(1e-3, meanT / Math.max(meanX, 1e-3))), 0, 0];
  const best = minimise(negLogLik, start);
  const params = fromLog(best.x);
  let se: number[];
  try {
    se = standardErrorsFromLogFit(negLogLik, best.x);
  } catch {
    se = [NaN, NaN, NaN, NaN];
  }
  return {
    params,
    standardErrors: { r: se[0]!, alpha: se[1]!, a: se[2]!, b: se[3]! },
    logLikelihood: -best.value,
    customers: customers.length,
    converged: best.converged,
  };
}

/** P(alive | x, t_x, T), FHL (2005) eq. (11). A customer with no repeat purchase is alive with certainty. */
export function probabilityAlive({ r, alpha, a, b }: BgNbdParams, { frequency: x, recency: tx, T }: BgNbdCustomer): number {
  if (x === 0) return 1;
  const logRatio = Math.log(a) - Math.log(b + x - 1) + (r + x) * (Math.log(alpha + T) - Math.log(alpha + tx));
  return 1 / (1 + Math.exp(logRatio));
}

/**
 * Expected number of purchases in (T, T + t] for a customer with history (x, t_x, T), FHL (2005) eq. (10).
 * Uses the identity (a+b+x-1)/(a-1) = 1 + (b+x)/(a-1); a = 1 exactly is nudged (the formula has a
 * removable singularity there).
 */
export function expectedPurchases(params: BgNbdParams, customer: BgNbdCustomer, t: number): number {
  if (t <= 0) return 0;
  const { r, alpha, b } = params;
  const a = Math.abs(params.a - 1) < 1e-9 ? 1 + 1e-9 : params.a;
  const { frequency: x, recency: tx, T } = customer;
  const numerator = ((a + b + x - 1) / (a - 1)) * (1 - discountedHyp(r, alpha, a, b, x, T, t));
  const denominator = x > 0 ? 1 + (a / (b + x - 1)) * Math.pow((alpha + T) / (alpha + tx), r + x) : 1;
  return numerator / denominator;
}

/**
 * ((α+T)/(α+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x-1; t/(α+T+t)). For frequent customers the direct
 * series needs hundreds of terms (its terms first grow like ((x+n)/(n+1))·z); Pfaff's transformation
 * turns the product into 2F1(r+x, a-1; a+b+x-1; -t/(α+T)), whose terms shrink like (t/(α+T))^n
 * whatever x is. Used when that ratio is below 0.8 (the customer is older than the horizon).
 */
export function discountedHyp(r: number, alpha: number, a: number, b: number, x: number, T: number, t: number): number {
  const w = t / (alpha + T);
  if (x >= 3 && w < 0.8) return hyp2f1(r + x, a - 1, a + b + x - 1, -w);
  return Math.pow((alpha + T) / (alpha + T + t), r + x) * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t));
}

/** Expected purchases in (0, t] for a customer just acquired, FHL (2005) eq. (9). */
export function expectedPurchasesNewCustomer({ r, alpha, a, b }: BgNbdParams, t: number): number {
  const z = t / (alpha + t);
  return ((a + b - 1) / (a - 1)) * (1 - Math.pow(alpha / (alpha + t), r) * hyp2f1(r, b, a + b - 1, z));
}

/** Draws one customer's history from the BG/NBD process over an observation window of length T. */
export function simulateBgNbdCustomer(
  params: BgNbdParams,
  T: number,
  random: { gamma(shape: number, rate: number): number; beta(a: number, b: number): number; exponential(rate: number): number; next(): number },
): BgNbdCustomer & { purchaseTimes: number[] } {
  const lambda = random.gamma(params.r, params.alpha);
  const p = random.beta(params.a, params.b);
  const purchaseTimes = [0];
  let t = 0;
  for (;;) {
    t += random.exponential(lambda);
    if (t > T) break;
    purchaseTimes.push(t);
    if (random.next() < p) break; // drops out right after this repeat purchase
  }
  return { frequency: purchaseTimes.length - 1, recency: purchaseTimes[purchaseTimes.length - 1]!, T, purchaseTimes };
}
