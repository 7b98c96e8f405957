import { describe, expect, it } from 'vitest';
import { expectedPurchases, probabilityAlive, type BgNbdCustomer, type BgNbdParams } from '../../analytics/models/bgnbd.ts';
import { numerically } from './bgnbd-reference.ts';

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
