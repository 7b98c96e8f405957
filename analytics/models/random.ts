/**
 * A seeded random source (sfc32) with the distributions the simulations need. Only tests,
 * simulations and model fitting use it; projections never draw random numbers (invariant 6).
 */
export interface Random {
  /** Uniform on [0, 1). */
  next(): number;
  normal(): number;
  /** Gamma with the given shape and rate (mean shape / rate). */
  gamma(shape: number, rate: number): number;
  beta(a: number, b: number): number;
  exponential(rate: number): number;
}

export function seededRandom(seed: number): Random {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88 ^ (seed * 31);
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  const normal = (): number => {
    let u = 0;
    while (u === 0) u = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  // Marsaglia-Tsang; shapes below 1 use the boost X * U^(1/shape).
  const gamma = (shape: number, rate: number): number => {
    if (shape < 1) {
      let u = 0;
      while (u === 0) u = next();
      return gamma(shape + 1, rate) * Math.pow(u, 1 / shape);
    }
    const dd = shape - 1 / 3;
    const cc = 1 / Math.sqrt(9 * dd);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + cc * x;
      } while (v <= 0);
      v = v * v * v;
      const u = next();
      if (u < 1 - 0.0331 * x * x * x * x || Math.log(u) < 0.5 * x * x + dd * (1 - v + Math.log(v))) return (dd * v) / rate;
    }
  };
  return {
    next,
    normal,
    gamma,
    beta: (x, y) => {
      const g1 = gamma(x, 1);
      return g1 / (g1 + gamma(y, 1));
    },
    exponential: (rate) => {
      let u = 0;
      while (u === 0) u = next();
      return -Math.log(u) / rate;
    },
  };
}
