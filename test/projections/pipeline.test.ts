import { randomUUID } from 'node:crypto';
import { sql, type QueryExecutorProvider } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipeline, pipelineFromDeals } from '../../projections/queries/deals.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { PIPELINE_MONTHS, PIPELINE_STAGES } from '../../projections/read-models/pipeline.ts';
import { inOneSnapshot } from '../../projections/queries/snapshot.ts';
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

  it('count won and lost deals with the win rate, by owner and month closed, within a period, on both paths', async () => {
    const customer = randomUUID();
    // Users are ids: a scope lists them.
    const closerB = randomUUID();
    await h.run({ type: 'RegisterUser', userId: closerB, name: 'Closer B', email: `closer-${closerB}@crm.example`, role: 'sales' });
    await h.run({ type: 'RegisterCustomer', customerId: customer, name: 'Closing Co', email: `closing-${customer}@example.com` });
    await h.run({ type: 'SetExchangeRate', baseCurrency: 'EUR', currency: 'CHF', rate: '1.05', validFrom: '2025-01-01T00:00:00Z' });
    const open = async (amount: number, currency: string, ownerId: string) =>
      (
        await h.run({
          type: 'OpenDeal',
          customerId: customer,
          title: `Closing ${amount}`,
          amount,
          currency,
          ownerId,
          expectedCloseDate: '2025-03-31',
          occurredAt: '2025-01-05T09:00:00Z',
        })
      ).id;
    const win = (dealId: string, occurredAt: string, amount?: number) => h.run({ type: 'WinDeal', dealId, occurredAt, ...(amount ? { amount } : {}) });
    const lose = (dealId: string, occurredAt: string) => h.run({ type: 'LoseDeal', dealId, occurredAt, reason: 'went elsewhere' });
    const [a1, a2, a3, a4, b1, b2] = [
      await open(100, 'EUR', 'closer-a'),
      await open(200, 'CHF', 'closer-a'),
      await open(300, 'EUR', 'closer-a'),
      await open(50, 'EUR', 'closer-a'),
      await open(1000, 'SEK', closerB),
      await open(10, 'EUR', closerB),
    ];
    await open(999, 'EUR', closerB); // stays open
    await win(a1, '2025-01-31T23:30:00Z', 120);
    await win(a2, '2025-02-01T00:10:00Z');
    await lose(a3, '2025-02-14T12:00:00Z');
    await win(a4, '2025-02-20T12:00:00Z');
    // Reopened: open again, counted in neither.
    await h.run({ type: 'ReopenDeal', dealId: a4, stage: 'negotiation', occurredAt: '2025-02-21T12:00:00Z' });
    await win(b1, '2025-02-02T08:00:00Z'); // SEK has no rate
    await lose(b2, '2025-03-01T00:00:00Z');
    await runner.waitForPosition(h.lastPosition(), 10_000);
    const source = { db: h.database.db, schema: h.schemas.read, baseCurrency: 'EUR' };

    const a = await pipeline(source, { ownerId: 'closer-a' });
    expect(a.closed).toEqual({
      closedFrom: null,
      closedTo: null,
      currency: 'EUR',
      // 120 EUR + 200 CHF x 1.05
      totals: {
        won: 2,
        lost: 1,
        winRate: 0.6667,
        wonAmount: 330,
        missingRates: [],
        wonByCurrency: [
          { currency: 'CHF', dealCount: 1, amount: 200 },
          { currency: 'EUR', dealCount: 1, amount: 120 },
        ],
      },
      byOwner: [{ ownerId: 'closer-a', won: 2, lost: 1, winRate: 0.6667, wonAmount: 330, missingRates: [] }],
      byMonth: [
        { month: '2025-01', won: 1, lost: 0, winRate: 1, wonAmount: 120, missingRates: [] },
        { month: '2025-02', won: 1, lost: 1, winRate: 0.5, wonAmount: 210, missingRates: [] },
      ],
    });
    // The open figures leave closed deals out, and keep the reopened one.
    expect(a.totals).toEqual([{ currency: 'EUR', dealCount: 1, amount: 50, weightedAmount: 37.5 }]);

    // A period in UTC dates, both ends included: February alone.
    const february = await pipeline(source, { ownerId: 'closer-a', closedFrom: '2025-02-01', closedTo: '2025-02-28' });
    expect(february.closed!.totals).toMatchObject({ won: 1, lost: 1, winRate: 0.5, wonAmount: 210 });
    const b = await pipeline(source, { ownerId: closerB });
    expect(b.closed!.totals).toMatchObject({ won: 1, lost: 1, winRate: 0.5, wonAmount: null, missingRates: ['SEK 2025-02'] });
    const none = await pipeline(source, { ownerId: closerB, closedFrom: '2025-04-01' });
    expect(none.closed!.totals).toMatchObject({ won: 0, lost: 0, winRate: null, wonAmount: 0, missingRates: [], wonByCurrency: [] });
    expect(none.closed!.byOwner).toEqual([]);

    // The kept counts' path and the deals' path (a restricted caller's) give the same answer.
    for (const query of [{ ownerId: 'closer-a' }, { ownerId: closerB, currency: 'SEK' }, { closedFrom: '2025-02-01', closedTo: '2025-02-01' }]) {
      expect(await pipeline(source, query), JSON.stringify(query)).toEqual(await pipelineFromDeals(source, query, null));
    }
    // A scope sees only its own deals' outcomes.
    const scoped = await pipelineFromDeals(source, {}, { owners: [closerB] });
    expect(scoped.closed!.byOwner.map((g) => g.ownerId)).toEqual([closerB]);
  });

  it('are the same rows whatever the batches: live, a replay in one batch and one in one-event batches', async () => {
    await expectReplaysEqualLive(h, projections, [PIPELINE_STAGES, PIPELINE_MONTHS], { concurrent: true, nonEmpty: true });
  });
});

describe('one answer, one snapshot', () => {
  it('the queries of one answer see no commit made between them', async () => {
    const probe = sql.id(h.schemas.read, 'snapshot_probe');
    await sql`CREATE TABLE ${probe} (n integer NOT NULL)`.execute(h.database.db);
    await sql`INSERT INTO ${probe} VALUES (0)`.execute(h.database.db);
    const read = async (db: QueryExecutorProvider) => (await sql<{ n: number }>`SELECT n FROM ${probe}`.execute(db)).rows[0]!.n;
    // Another connection commits between the two reads of the answer.
    const commitBetween = () => sql`UPDATE ${probe} SET n = n + 1`.execute(h.database.db);
    const source = { db: h.database.db, schema: h.schemas.read };
    const seen = await inOneSnapshot(source, async ({ db }) => {
      const first = await read(db);
      await commitBetween();
      return [first, await read(db)];
    });
    expect(seen).toEqual([0, 0]);
    // Apart, the second read sees the commit: what the snapshot is there to prevent.
    const first = await read(h.database.db);
    await commitBetween();
    expect([first, await read(h.database.db)]).toEqual([1, 2]);
  });

  it('GET /pipeline puts a deal moving between stages in one stage in every part of an answer', async () => {
    const customer = randomUUID();
    await h.run({ type: 'RegisterCustomer', customerId: customer, name: 'Moving Co', email: `moving-${customer}@example.com` });
    const dealId = (
      await h.run({
        type: 'OpenDeal',
        customerId: customer,
        title: 'Moving',
        amount: 10,
        currency: 'EUR',
        ownerId: 'mover',
        expectedCloseDate: '2026-05-10',
        stage: 'lead',
      })
    ).id;
    await runner.waitForPosition(h.lastPosition(), 10_000);
    const source = { db: h.database.db, schema: h.schemas.read, baseCurrency: 'EUR' };
    const stagesOf = (groups: { key: string; dealCount: number }[]) => groups.filter((g) => g.dealCount > 0).map((g) => g.key);
    // The deal moves back and forth (and the runner projects each move) for as long as answers are read.
    let reading = true;
    let moved = 0;
    const moves = (async () => {
      while (reading) await h.run({ type: 'MoveDealStage', dealId, stage: moved++ % 2 === 0 ? 'qualified' : 'lead' });
    })();
    try {
      for (let i = 0; i < 30; i++)
        for (const read of [() => pipeline(source, { ownerId: 'mover' }), () => pipelineFromDeals(source, { ownerId: 'mover' }, null)]) {
          const answer = await read();
          expect(stagesOf(answer.base!.byStage), JSON.stringify(answer)).toEqual(stagesOf(answer.byStage));
        }
    } finally {
      reading = false;
      await moves;
    }
    expect(moved).toBeGreaterThan(10);
  });
});
