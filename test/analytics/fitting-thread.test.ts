import { afterAll, describe, expect, it } from 'vitest';
import { fitBgNbd, simulateBgNbdCustomer } from '../../analytics/models/bgnbd.ts';
import { CHURN_FEATURES, type ChurnExample, type ChurnFeatures } from '../../analytics/models/churn.ts';
import { trainChurnModels } from '../../analytics/models/churn-training.ts';
import { seededRandom } from '../../analytics/models/random.ts';
import { openFittingThread } from '../../analytics/fitting/thread.ts';

/**
 * A fit's CPU-bound steps run on a thread of their own (analytics/fitting/thread.ts): on the event
 * loop, a fit of a thousand customers held every request of `crm serve` for seconds. The thread
 * gives what the same functions give in process, errors of their kind, and leaves the event loop free.
 */
const thread = openFittingThread();
afterAll(() => thread.close());

const random = seededRandom(7);
const customers = Array.from({ length: 600 }, () => simulateBgNbdCustomer({ r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 }, 39, random));

const churnExamples = (n: number): ChurnExample[] =>
  Array.from({ length: n }, (_, i) => {
    const features = Object.fromEntries(CHURN_FEATURES.map((k) => [k, Math.floor(random.next() * 5)])) as unknown as ChurnFeatures;
    features.daysSinceLastPurchase = Math.floor(random.exponential(1 / 60));
    return { customerId: `customer-${i}`, features, churned: random.next() < 0.4 + features.daysSinceLastPurchase / 400 ? 1 : 0 };
  });

describe('the fitting thread', () => {
  it('gives what the fitters give in process', async () => {
    expect(await thread.run('fitBgNbd', customers)).toEqual(fitBgNbd(customers));
    const examples = churnExamples(300);
    const options = { maxLogisticRows: 200, maxTreeRows: 100, logisticSteps: 200 };
    expect(await thread.run('trainChurnModels', examples, options)).toEqual(trainChurnModels(examples, options));
  });

  it("passes a fitter's error on with its kind and message", async () => {
    const failure = await thread.run('fitBgNbd', customers.slice(0, 2)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(RangeError);
    expect((failure as Error).message).toBe('BG/NBD needs at least 4 customers');
    // The thread goes on serving after an error.
    expect((await thread.run('fitBgNbd', customers)).converged).toBe(true);
  });

  it('leaves the event loop free while it trains', async () => {
    // In process, a training is one synchronous call: no timer of this thread could fire during it.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    try {
      await thread.run('trainChurnModels', churnExamples(800), { logisticSteps: 300 });
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
  });
});
