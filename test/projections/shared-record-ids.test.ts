import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, expectReplaysEqualLive, type Harness } from './support.ts';

/**
 * A deal and a feedback item are records of their own kinds, each on its own stream: a client may give
 * both one id. The customers read model keeps which customer each belongs to apart by kind, in live
 * batches as in a replay (keyed by the id alone, the deal took the feedback item's link).
 */
let h: Harness;
let runner: ProjectionRunner;
const projections = readModelProjections();
const pat = randomUUID();
const quinn = randomUUID();
const shared = randomUUID();

beforeAll(async () => {
  h = await createHarness('shared_record_ids');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
  // Each step projected in a batch of its own, where the earlier link is read from its row.
  const step = async (command: Parameters<Harness['run']>[0]) => {
    await h.run(command);
    await runner.waitForPosition(h.lastPosition(), 30_000);
  };
  await step({ type: 'RegisterCustomer', customerId: pat, name: 'Pat', email: 'pat@shared.example' });
  await step({ type: 'RegisterCustomer', customerId: quinn, name: 'Quinn', email: 'quinn@shared.example' });
  await step({ type: 'SubmitFeedback', feedbackId: shared, customerId: pat, kind: 'complaint', channel: 'email', subject: 'Late', body: 'Where is it?' });
  await step({
    type: 'OpenDeal',
    dealId: shared,
    customerId: quinn,
    title: 'Renewal',
    amount: 5,
    currency: 'EUR',
    ownerId: 'rep-1',
    expectedCloseDate: '2027-01-01',
  });
  await step({ type: 'ResolveFeedback', feedbackId: shared, resolution: 'Sent again' });
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

describe('a deal and a feedback item with the same id', () => {
  it("count for their own customers: the feedback item's resolution for its customer, the deal for its", async () => {
    const q = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
    expect(await q.getCustomer(pat)).toMatchObject({ openFeedbackCount: 0, dealsOpen: 0 });
    expect(await q.getCustomer(quinn)).toMatchObject({ openFeedbackCount: 0, dealsOpen: 1 });
  });

  it('read the same replayed one event per batch and all in one batch', async () => {
    await expectReplaysEqualLive(h, projections, ['customers', 'customer_links']);
  });
});
