import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipeline, pipelineFromDeals } from '../../projections/queries/deals.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { PIPELINE_MONTHS, PIPELINE_STAGES } from '../../projections/read-models/pipeline.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, expectReplaysEqualLive, type Harness } from './support.ts';

/**
 * GET /pipeline from the counts the deals projection keeps (read-models/pipeline.ts) against the same
 * figures from every open deal, after every kind of deal change, in several currencies with a rate set,
 * a rate missing and the base currency; and the counts a replay gives, whatever its batches.
 */
let h: Harness;
let runner: ProjectionRunner;
const projections = readModelProjections();

beforeAll(async () => {
  h = await createHarness('pipeline');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

describe('kept pipeline counts', () => {
  it('give the figures of every open deal, in every currency, after every kind of change', async () => {
    const customer = randomUUID();
    await h.run({ type: 'RegisterCustomer', customerId: customer, name: 'Pipeline Co', email: `pipeline-${customer}@example.com` });
    await h.run({ type: 'SetExchangeRate', baseCurrency: 'EUR', currency: 'USD', rate: '0.9', validFrom: '2025-01-01T00:00:00Z' });
    const open = async (amount: number, currency: string, ownerId: string, stage: string, expectedCloseDate: string) =>
      (await h.run({ type: 'OpenDeal', customerId: customer, title: `Deal ${amount}`, amount, currency, ownerId, expectedCloseDate, stage })).id;
    const a = await open(1000, 'EUR', 'ann', 'lead', '2026-05-10');
    const b = await open(2000, 'USD', 'ann', 'proposal', '2026-06-10');
    const c = await open(300.55, 'GBP', 'ben', 'qualified', '2026-05-20');
    const d = await open(40, 'EUR', 'ben', 'negotiation', '2026-07-01');
    const e = await open(75.25, 'EUR', 'cid', 'lead', '2026-05-01');
    await h.run({ type: 'ChangeDeal', dealId: a, amount: 1250.5, currency: 'EUR' });
    await h.run({ type: 'ChangeDeal', dealId: a, ownerId: 'ben' });
    await h.run({ type: 'ChangeDeal', dealId: b, expectedCloseDate: '2026-08-15' });
    await h.run({ type: 'ChangeDeal', dealId: b, probabilityOverride: 0.35 });
    await h.run({ type: 'MoveDealStage', dealId: c, stage: 'negotiation' });
    await h.run({ type: 'WinDeal', dealId: d, amount: 45 });
    await h.run({ type: 'LoseDeal', dealId: e, reason: 'no budget' });
    await h.run({ type: 'ReopenDeal', dealId: e, stage: 'qualified' });
    await h.run({ type: 'ChangeDeal', dealId: e, amount: 80, currency: 'USD' });
    await runner.waitForPosition(h.lastPosition(), 10_000);

    const source = { db: h.database.db, schema: h.schemas.read, baseCurrency: 'EUR' };
    for (const query of [{}, { ownerId: 'ben' }, { currency: 'USD' }, { currency: 'EUR' }, { ownerId: 'nobody' }]) {
      const kept = await pipeline(source, query);
      expect(kept, JSON.stringify(query)).toEqual(await pipelineFromDeals(source, query, null));
    }
    const everything = await pipeline(source, {});
    expect(everything.base!.totals.missingRates).toEqual(['GBP 2026-01']);
    expect(everything.totals.map((t) => [t.currency, t.dealCount])).toEqual([
      ['EUR', 1],
      ['GBP', 1],
      ['USD', 2],
    ]);
    // The counts hold a row per owner, stage and currency, not per deal.
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(h.schemas.read, PIPELINE_STAGES)}`.execute(h.database.db);
    expect(rows[0]!.n).toBe(4);
  });

  it('are the same rows whatever the batches: live, a replay in one batch and one in one-event batches', async () => {
    await expectReplaysEqualLive(h, projections, [PIPELINE_STAGES, PIPELINE_MONTHS], { concurrent: true, nonEmpty: true });
  });
});
