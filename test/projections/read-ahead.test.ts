import { describe, expect, it } from 'vitest';
import { DEFAULT_BATCH } from '../../projections/runner.ts';
import { readAheadUnder } from '../../runtime/crm.ts';

/**
 * A process that answers commands keeps its projections' read-ahead (about three coalesced batches:
 * one applied, two waiting) under the back-pressure bound on their backlog, so that catching up alone
 * does not refuse commands; a worker without the API keeps the larger default batch.
 */
describe('the catch-up batch of a process that answers commands', () => {
  it('keeps three batches under the backlog bound, within the default and at least one live batch', () => {
    for (const bound of [20_000, 100_000, 6_000, 2_000]) {
      const batch = readAheadUnder(bound);
      expect(3 * batch).toBeLessThan(bound);
      expect(batch).toBeLessThanOrEqual(DEFAULT_BATCH.maxCoalescedEvents);
    }
    expect(readAheadUnder(20_000)).toBe(5_000);
    expect(readAheadUnder(1_000_000)).toBe(DEFAULT_BATCH.maxCoalescedEvents);
    expect(readAheadUnder(100)).toBe(DEFAULT_BATCH.maxEvents);
  });

  it('keeps the default when the bound is off (0)', () => {
    expect(readAheadUnder(0)).toBe(DEFAULT_BATCH.maxCoalescedEvents);
  });
});
