import { Matrix, inverse } from 'ml-matrix';

export interface Minimum {
  x: number[];
  value: number;
  iterations: number;
  converged: boolean;
}

/**
 * Nelder-Mead simplex minimisation (standard coefficients 1, 2, 0.5, 0.5). The models call it on
 * log-parameters so every positive parameter stays positive without constraints.
 */
export function nelderMead(f: (x: number[]) => number, start: number[], options: { step?: number; tolerance?: number; maxIterations?: number } = {}): Minimum {
  const n = start.length;
  const step = options.step ?? 0.5;
  const tolerance = options.tolerance ?? 1e-10;
  const maxIterations = options.maxIterations ?? 1000 * n;
  const safe = (x: number[]): number => {
    const v = f(x);
    return Number.isFinite(v) ? v : Number.MAX_VALUE;
  };
  let simplex = [start.slice()];
  for (let i = 0; i < n; i++) {
    const p = start.slice();
    p[i] = p[i]! + step;
    simplex.push(p);
  }
  let values = simplex.map(safe);
  let iterations = 0;
  let converged = false;
  while (iterations++ < maxIterations) {
    const order = values.map((v, i) => i).sort((i, j) => values[i]! - values[j]!);
    simplex = order.map((i) => simplex[i]!);
    values = order.map((i) => values[i]!);
    const best = values[0]!;
    const worst = values[n]!;
    if (Math.abs(worst - best) <= tolerance * (Math.abs(best) + 1e-12)) {
      const spread = Math.max(...simplex.map((p) => Math.max(...p.map((v, k) => Math.abs(v - simplex[0]![k]!)))));
      if (spread < 1e-7) {
        // A simplex that shrank where f is infinite everywhere found no minimum.
        converged = best < Number.MAX_VALUE;
        break;
      }
    }
    const centroid = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) centroid[k] = centroid[k]! + simplex[i]![k]! / n;
    const towards = (coef: number): number[] => centroid.map((c, k) => c + coef * (simplex[n]![k]! - c));
    const reflected = towards(-1);
    const fr = safe(reflected);
    if (fr < best) {
      const expanded = towards(-2);
      const fe = safe(expanded);
      if (fe < fr) {
        simplex[n] = expanded;
        values[n] = fe;
      } else {
        simplex[n] = reflected;
        values[n] = fr;
      }
      continue;
    }
    if (fr < values[n - 1]!) {
      simplex[n] = reflected;
      values[n] = fr;
      continue;
    }
    const contracted = fr < worst ? towards(-0.5) : towards(0.5);
    const fc = safe(contracted);
    if (fc < Math.min(fr, worst)) {
      simplex[n] = contracted;
      values[n] = fc;
      continue;
    }
    for (let i = 1; i <= n; i++) {
      simplex[i] = simplex[i]!.map((v, k) => simplex[0]![k]! + 0.5 * (v - simplex[0]![k]!));
      values[i] = safe(simplex[i]!);
    }
  }
  return { x: simplex[0]!, value: values[0]!, iterations, converged };
}

/** A local minimiser as `minimise` runs it: Nelder-Mead, or a scripted one in the tests of the restarts. */
export type LocalMinimiser = (f: (x: number[]) => number, start: number[], options?: { step?: number }) => Minimum;

/**
 * Minimises from the start, then restarts at the optimum until it stops moving (Nelder-Mead can
 * stall), at most three times. Iterations are bounded: a likelihood that keeps improving towards a boundary (e.g.
 * Gamma-Gamma with no spend heterogeneity, q and v -> infinity) ends with converged = false.
 */
export function minimise(f: (x: number[]) => number, start: number[], local: LocalMinimiser = nelderMead): Minimum {
  let result = local(f, start);
  for (let round = 0; round < 3; round++) {
    const again = local(f, result.x, { step: 0.1 });
    const improved = result.value - again.value;
    result = again.value <= result.value ? again : result;
    if (improved < 1e-9) break;
  }
  return result;
}

/** Central-difference Hessian of f at x. */
export function numericalHessian(f: (x: number[]) => number, x: number[], h = 1e-4): number[][] {
  const n = x.length;
  const at = (di: number, dj: number, i: number, j: number): number => {
    const p = x.slice();
    p[i] = p[i]! + di;
    p[j] = p[j]! + dj;
    return f(p);
  };
  const hess: number[][] = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = (at(h, h, i, j) - at(h, -h, i, j) - at(-h, h, i, j) + at(-h, -h, i, j)) / (4 * h * h);
      hess[i]![j] = v;
      hess[j]![i] = v;
    }
  }
  return hess;
}

/**
 * Asymptotic standard errors of maximum-likelihood estimates fitted on log-parameters:
 * the inverse Hessian of the negative log-likelihood gives Var(log θ); the delta method gives
 * se(θ) = θ · se(log θ).
 */
export function standardErrorsFromLogFit(negLogLik: (logTheta: number[]) => number, logTheta: number[]): number[] {
  const cov = inverse(new Matrix(numericalHessian(negLogLik, logTheta)));
  return logTheta.map((lt, i) => Math.exp(lt) * Math.sqrt(Math.max(0, cov.get(i, i))));
}
