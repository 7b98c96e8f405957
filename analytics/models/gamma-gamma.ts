import { logGamma } from './special.ts';
import { minimise, standardErrorsFromLogFit } from './optimize.ts';

/**
 * Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie 2013 note):
 * each transaction value z ~ Gamma(p, ν), and across customers ν ~ Gamma(q, v). Assumes spend is
 * independent of the transaction process; fitted on customers with at least one repeat purchase and
 * a positive mean repeat value.
 */
export interface GammaGammaParams {
  p: number;
  q: number;
  v: number;
}

export interface SpendHistory {
  /** Number of repeat purchases x. */
  frequency: number;
  /** Mean repeat purchase value m̄. */
  monetary: number;
}

/** Log-likelihood of the mean spend m̄ of x transactions (x > 0, m̄ > 0). */
export function gammaGammaLogLikelihood({ p, q, v }: GammaGammaParams, { frequency: x, monetary: m }: SpendHistory): number {
  return (
    logGamma(p * x + q) - logGamma(p * x) - logGamma(q) + q * Math.log(v) + (p * x - 1) * Math.log(m) + p * x * Math.log(x) - (p * x + q) * Math.log(x * m + v)
  );
}

export const usableForSpend = (c: SpendHistory): boolean => c.frequency > 0 && c.monetary > 0 && Number.isFinite(c.monetary);

export interface GammaGammaFit {
  params: GammaGammaParams;
  standardErrors: GammaGammaParams;
  logLikelihood: number;
  customers: number;
  converged: boolean;
}

export function fitGammaGamma(history: readonly SpendHistory[]): GammaGammaFit {
  const usable = history.filter(usableForSpend);
  if (usable.length < 3) throw new RangeError('Gamma-Gamma needs at least 3 customers with repeat purchases');
  // Fitted on spend in units of the mean spend, so the search starts at v = 1 whatever the currency's
  // size: started at log(mean) it began beyond the search's bounds for a mean above e^30 (one large
  // customer in a currency of large numbers) and stayed there. v scales with the spend (M = s M'
  // gives v = s v'), and the log-likelihood of M is that of M' less n log s.
  const scale = usable.reduce((s, c) => s + c.monetary, 0) / usable.length;
  const xs = Int32Array.from(usable, (c) => c.frequency);
  // As a difference of logarithms: the quotient of a tiny spend and a huge mean would round to 0.
  const logScale = Math.log(scale);
  const logM = Float64Array.from(usable, (c) => Math.log(c.monetary) - logScale);
  const xm = Float64Array.from(usable, (c) => (c.frequency * c.monetary) / scale);
  const maxX = xs.reduce((m, x) => Math.max(m, x), 0);
  const present = new Uint8Array(maxX + 1);
  for (const x of xs) present[x] = 1;
  const termOfX = new Float64Array(maxX + 1);
  const negLogLik = (lv: number[]): number => {
    if (lv.some((x) => Math.abs(x) > 30)) return Infinity;
    const p = Math.exp(lv[0]!);
    const q = Math.exp(lv[1]!);
    const v = Math.exp(lv[2]!);
    // Terms that depend on x only, once per distinct x (same function as gammaGammaLogLikelihood).
    for (let x = 1; x <= maxX; x++) if (present[x]) termOfX[x] = logGamma(p * x + q) - logGamma(p * x) + p * x * Math.log(x);
    const constant = -logGamma(q) + q * Math.log(v);
    let sum = 0;
    for (let i = 0; i < xs.length; i++) {
      const px = p * xs[i]!;
      sum += constant + termOfX[xs[i]!]! + (px - 1) * logM[i]! - (px + q) * Math.log(xm[i]! + v);
    }
    return -sum;
  };
  // Start at p = 1, q = 2 and v matching the mean spend (E[M] = p v / (q - 1); the mean is 1 here).
  const best = minimise(negLogLik, [0, Math.log(2), 0]);
  let se: number[];
  try {
    se = standardErrorsFromLogFit(negLogLik, best.x);
  } catch {
    se = [NaN, NaN, NaN];
  }
  return {
    params: { p: Math.exp(best.x[0]!), q: Math.exp(best.x[1]!), v: Math.exp(best.x[2]!) * scale },
    standardErrors: { p: se[0]!, q: se[1]!, v: se[2]! * scale },
    logLikelihood: -best.value - usable.length * logScale,
    customers: usable.length,
    converged: best.converged,
  };
}

/**
 * E[Z | x, m̄] = (p (v + x m̄)) / (p x + q - 1): a weighted average of the population mean p v/(q-1)
 * and the customer's own mean. Needs q > 1 (else the population mean is infinite); falls back to m̄.
 */
export function expectedSpend({ p, q, v }: GammaGammaParams, { frequency: x, monetary: m }: SpendHistory): number {
  if (!(q > 1)) return m;
  const mbar = x > 0 ? m : 0;
  return (p * (v + x * mbar)) / (p * x + q - 1);
}

export function simulateSpend(params: GammaGammaParams, frequency: number, random: { gamma(shape: number, rate: number): number }): number {
  const nu = random.gamma(params.q, params.v);
  let total = 0;
  for (let i = 0; i < frequency; i++) total += random.gamma(params.p, nu);
  return frequency > 0 ? total / frequency : 0;
}
