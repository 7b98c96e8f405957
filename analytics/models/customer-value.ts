import { expectedPurchases, probabilityAlive, type BgNbdCustomer, type BgNbdParams } from './bgnbd.ts';
import { expectedSpend, type GammaGammaParams } from './gamma-gamma.ts';

export interface CustomerValue {
  expectedPurchases: number;
  pAlive: number;
  expectedSpend: number;
  clv: number;
}

/**
 * CLV over `horizon` periods from BG/NBD + Gamma-Gamma: the expected purchases falling in each
 * period k (E[Y(k)] - E[Y(k-1)]) times the expected spend per purchase, discounted by (1+d)^k
 * (end-of-period timing, as in clv.ts). Spend is revenue; multiply by a margin outside if needed.
 */
export function customerValue(
  bgnbd: BgNbdParams,
  gammaGamma: GammaGammaParams,
  history: BgNbdCustomer & { monetary: number },
  horizon: number,
  discountRate: number,
): CustomerValue {
  const spend = expectedSpend(gammaGamma, history);
  let clv = 0;
  let previous = 0;
  const periods = Math.max(0, Math.round(horizon));
  for (let k = 1; k <= periods; k++) {
    const cumulative = expectedPurchases(bgnbd, history, k);
    clv += ((cumulative - previous) * spend) / Math.pow(1 + discountRate, k);
    previous = cumulative;
  }
  return { expectedPurchases: previous, pAlive: probabilityAlive(bgnbd, history), expectedSpend: spend, clv };
}
