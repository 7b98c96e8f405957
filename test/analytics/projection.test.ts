import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { beforeAll, describe, expect, it } from 'vitest';
import { aggregateFromRow } from '../../analytics/projection.ts';
import { saveModel } from '../../analytics/model-store.ts';
import { churnFeaturesOf, scoreCustomer, type ModelParams } from '../../analytics/scoring.ts';
import { aggregatesAsOf } from '../../analytics/as-of.ts';
import { rfmOf, summarisePurchases } from '../../analytics/models/rfm.ts';
import { dayOf } from '../../analytics/models/time.ts';
import { CHURN_FEATURES } from '../../analytics/models/churn.ts';
import { createAnalyticsReportingViews } from '../../analytics/reporting.ts';
import { analyticsTestDatabase, projected, purchase, refund, registered } from './support.ts';

const harness = analyticsTestDatabase('analytics_projection');
const { schemas, run } = harness;
let db: Kysely<unknown>;
beforeAll(() => {
  db = harness.db;
});

const rowsOf = async (schema: string, table: string, order: string) =>
  (await sql.raw<Record<string, any>>(`SELECT * FROM "${schema}"."${table}" ORDER BY ${order}`).execute(db)).rows;

describe('analytics projection', () => {
  const alice = randomUUID();
  const feedbackId = randomUUID();
  const dealA = randomUUID();
  const dealB = randomUUID();
  const campaignId = randomUUID();
  const events = [
    registered(alice, '2024-01-01T09:00:00Z'),
    purchase(alice, 'o1', 100, '2024-01-10T10:00:00Z'),
    purchase(alice, 'o2', 50, '2024-01-10T18:00:00Z'), // same day as the first
    purchase(alice, 'o3', 40, '2024-02-01T10:00:00Z'),
    purchase(alice, 'o4', 60, '2024-02-01T11:00:00Z'),
    purchase(alice, 'o0', 30, '2024-01-05T10:00:00Z'), // back-dated: becomes the first purchase day
    refund(alice, 'o3', 15, '2024-02-05T10:00:00Z'),
    purchase(alice, 'o5', 70, '2024-03-01T10:00:00Z'),
    projected(
      {
        type: 'FeedbackSubmitted',
        data: {
          feedbackId,
          customerId: alice,
          kind: 'complaint',
          channel: 'email',
          subject: 's',
          body: 'b',
          priority: 'normal',
          csat: 2,
          nps: 3,
          firstResponseDueAt: '2024-03-02T10:00:00Z',
          resolutionDueAt: '2024-03-05T10:00:00Z',
        },
      },
      '2024-03-02T00:00:00Z',
    ),
    projected({ type: 'FeedbackResolved', data: { feedbackId, resolution: 'fixed' } }, '2024-03-04T00:00:00Z'),
    projected({ type: 'FeedbackReopened', data: { feedbackId, reason: null, resolutionDueAt: '2024-03-10T00:00:00Z' } }, '2024-03-05T00:00:00Z'),
    projected({ type: 'FeedbackResolved', data: { feedbackId, resolution: 'fixed again' } }, '2024-03-08T00:00:00Z'),
    projected({ type: 'FeedbackRated', data: { feedbackId, csat: 5, comment: null } }, '2024-04-01T00:00:00Z'),
    projected(
      { type: 'CampaignResponseRecorded', data: { campaignId, customerId: alice, kind: 'opened', revenue: null, currency: null } },
      '2024-03-03T00:00:00Z',
    ),
    projected(
      { type: 'CampaignResponseRecorded', data: { campaignId, customerId: alice, kind: 'clicked', revenue: null, currency: null } },
      '2024-03-03T01:00:00Z',
    ),
    projected(
      {
        type: 'DealOpened',
        data: {
          dealId: dealA,
          customerId: alice,
          title: 'A',
          amount: 10,
          currency: 'EUR',
          ownerId: 'o',
          expectedCloseDate: '2024-05-01',
          stage: 'lead',
          probabilityOverride: null,
        },
      },
      '2024-03-01T00:00:00Z',
    ),
    projected(
      {
        type: 'DealOpened',
        data: {
          dealId: dealB,
          customerId: alice,
          title: 'B',
          amount: 10,
          currency: 'EUR',
          ownerId: 'o',
          expectedCloseDate: '2024-05-01',
          stage: 'lead',
          probabilityOverride: null,
        },
      },
      '2024-03-01T00:00:00Z',
    ),
    projected({ type: 'DealWon', data: { dealId: dealA, from: 'lead', amount: 10, currency: 'EUR' } }, '2024-03-10T00:00:00Z'),
    projected({ type: 'DealLost', data: { dealId: dealB, from: 'lead', reason: 'price' } }, '2024-03-11T00:00:00Z'),
    projected({ type: 'DealReopened', data: { dealId: dealB, from: 'lost', to: 'lead' } }, '2024-03-12T00:00:00Z'),
  ];

  it('keeps per-customer aggregates that give the same RFM as folding the purchases directly', async () => {
    await run(schemas.read, [events]);
    const [row] = await rowsOf(schemas.read, 'analytics_customer', 'customer_id');
    const aggregate = aggregateFromRow(row!);
    const d = (iso: string) => dayOf(iso);
    const expected = summarisePurchases([
      { day: d('2024-01-05T00:00:00Z'), value: 30 },
      { day: d('2024-01-10T00:00:00Z'), value: 150 },
      { day: d('2024-02-01T00:00:00Z'), value: 100 - 15 },
      { day: d('2024-03-01T00:00:00Z'), value: 70 },
    ])!;
    expect(aggregate.purchases).toEqual(expected);
    expect(rfmOf(aggregate.purchases!, d('2024-04-01T00:00:00Z'), 'day')).toEqual({ frequency: 3, recency: 56, T: 87, monetary: (150 + 85 + 70) / 3 });
    expect(row).toMatchObject({
      cohort: '2024-01',
      orders: 6,
      refunds: 1,
      complaints: 1,
      complaints_open: 0,
      complaints_resolved: 1,
      responses_opened: 1,
      responses_clicked: 1,
      deals_open: 1,
      deals_won: 1,
      deals_lost: 0,
      csat_count: 1,
      csat_sum: 5,
    });
    // Resolution time counts the last resolution only (6 days after submission).
    expect(Number(row!.resolution_seconds)).toBe(6 * 86_400);
    const satisfaction = await rowsOf(schemas.read, 'analytics_satisfaction', 'satisfaction_id');
    // The re-rating moved the CSAT from March (2, unsatisfied) to April (5); the NPS stays in March.
    expect(satisfaction.map((s) => [s.period, s.csat_responses, s.csat_satisfied, s.nps_responses, s.detractors])).toEqual([
      ['2024-03', 0, 0, 1, 1],
      ['2024-04', 1, 1, 0, 0],
    ]);
    const [state] = await rowsOf(schemas.read, 'analytics_state', 'id');
    expect(new Date(state!.observation_end as string).toISOString()).toBe('2024-04-01T00:00:00.000Z');
  });

  it('gives identical rows whatever the batch boundaries (deterministic, order-only)', async () => {
    const other = `${schemas.read}_b`;
    await run(
      other,
      events.map((e) => [e]),
    );
    for (const [table, order] of [
      ['analytics_customer', 'customer_id'],
      ['analytics_purchase_day', 'purchase_day_id'],
      ['analytics_activity', 'activity_id'],
      ['analytics_feedback', 'feedback_id'],
      ['analytics_deal', 'deal_id'],
      ['analytics_revenue_day', 'day'],
      ['analytics_satisfaction', 'satisfaction_id'],
      ['analytics_state', 'id'],
    ] as const) {
      expect(await rowsOf(other, table, order)).toEqual(await rowsOf(schemas.read, table, order));
    }
  });

  it('scores a customer as their events arrive once a model exists, equal to scoring the aggregate directly', async () => {
    const params: ModelParams = {
      timeUnit: 'week',
      horizon: 52,
      discountRate: 0.01,
      churnWindowDays: 90,
      bgnbd: { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 },
      gammaGamma: { p: 6.25, q: 3.74, v: 15.44 },
      churn: {
        featureNames: CHURN_FEATURES,
        standardiser: { means: CHURN_FEATURES.map(() => 0), sds: CHURN_FEATURES.map(() => 100) },
        logistic: { weights: [-1, 2, ...CHURN_FEATURES.slice(1).map(() => 0)] },
      },
      rfmCutoffs: { recency: [10, 20, 30, 40], frequency: [1, 2, 3, 4], monetary: [10, 20, 30, 40] },
      clusters: {
        k: 2,
        standardiser: { means: [0, 0, 0], sds: [1, 1, 1] },
        centroids: [
          [0, 0, 0],
          [5, 5, 5],
        ],
        profiles: [],
        sizes: [1, 1],
      },
    };
    const version = await db
      .transaction()
      .execute((trx) => saveModel(trx, schemas.read, { fittedAt: '2024-04-01T00:00:00Z', asOf: '2024-04-01', params, metrics: {} }));
    const bob = randomUUID();
    await run(schemas.read, [[purchase(bob, 'b1', 20, '2024-04-02T00:00:00Z'), purchase(bob, 'b2', 30, '2024-04-20T00:00:00Z')]]);
    const [scoreRow] = (await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(schemas.read, 'analytics_scores')} WHERE customer_id = ${bob}`.execute(db))
      .rows;
    const [aggRow] = (await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(schemas.read, 'analytics_customer')} WHERE customer_id = ${bob}`.execute(db))
      .rows;
    const expected = scoreCustomer({ version, params }, aggregateFromRow(aggRow!), dayOf('2024-04-20T00:00:00Z'))!;
    expect(scoreRow).toMatchObject({ model_version: version, frequency: 1, segment: expected.segment, cluster: expected.cluster });
    expect(Number(scoreRow!.clv)).toBeCloseTo(expected.clv, 9);
    expect(Number(scoreRow!.p_alive)).toBeCloseTo(expected.pAlive, 12);
    expect(Number(scoreRow!.churn_score)).toBeCloseTo(expected.churnScore, 12);
    expect(expected.clv).toBeGreaterThan(0);
    // A score of a newer model version (a fit that committed meanwhile) is never overwritten by an older one.
    await sql`UPDATE ${sql.id(schemas.read, 'analytics_scores')} SET model_version = ${version + 1}, clv = -1 WHERE customer_id = ${bob}`.execute(db);
    await run(schemas.read, [[purchase(bob, 'b3', 10, '2024-04-21T00:00:00Z')]]);
    const [kept] = (
      await sql<Record<string, unknown>>`SELECT model_version, clv FROM ${sql.id(schemas.read, 'analytics_scores')} WHERE customer_id = ${bob}`.execute(db)
    ).rows;
    expect(kept).toEqual({ model_version: version + 1, clv: -1 });
    // Alice had no event since the model: not scored until her next event or a fit rescoring everyone.
    const count = await sql`SELECT count(*)::int AS n FROM ${sql.id(schemas.read, 'analytics_scores')}`.execute(db);
    expect(count.rows[0]).toEqual({ n: 1 });
  });

  it('publishes reporting views that read the tables', async () => {
    await createAnalyticsReportingViews(db, { readSchema: schemas.read, reportingSchema: schemas.reporting });
    const monthly = (
      await sql.raw(`SELECT month, purchases, net_revenue::float AS net FROM "${schemas.reporting}".analytics_revenue_monthly ORDER BY month`).execute(db)
    ).rows;
    expect(monthly[0]).toEqual({ month: '2024-01', purchases: 3, net: 180 });
    const comment = (await sql.raw(`SELECT obj_description('"${schemas.reporting}".analytics_satisfaction'::regclass) AS c`).execute(db)).rows[0] as {
      c: string;
    };
    expect(comment.c).toMatch(/CSAT/);
    const sat = (await sql.raw(`SELECT period, csat, nps FROM "${schemas.reporting}".analytics_satisfaction ORDER BY period`).execute(db)).rows;
    expect(sat).toEqual([
      { period: '2024-03', csat: null, nps: -100 },
      { period: '2024-04', csat: 1, nps: null },
    ]);
  });

  it("a merge adds the duplicate's history to the primary (a refund of its order recorded later too), the same whatever the batch boundaries", async () => {
    const primary = randomUUID();
    const duplicate = randomUUID();
    const complaint = randomUUID();
    const history = [
      purchase(primary, 'p1', 10, '2024-05-01T10:00:00Z'),
      purchase(primary, 'p2', 20, '2024-05-08T10:00:00Z'),
      purchase(duplicate, 'd1', 5, '2024-04-20T10:00:00Z'), // earlier: becomes the first day
      purchase(duplicate, 'd2', 7, '2024-05-08T15:00:00Z'), // same day as p2: one purchase day
      projected(
        {
          type: 'FeedbackSubmitted',
          data: {
            feedbackId: complaint,
            customerId: duplicate,
            kind: 'complaint',
            channel: 'chat',
            subject: 's',
            body: 'b',
            priority: 'low',
            csat: null,
            nps: null,
            firstResponseDueAt: '2024-05-10T00:00:00Z',
            resolutionDueAt: '2024-05-12T00:00:00Z',
          },
        },
        '2024-05-09T00:00:00Z',
      ),
      projected({ type: 'CustomerMerged', data: { customerId: primary, duplicateId: duplicate } }, '2024-05-10T00:00:00Z'),
      projected({ type: 'FeedbackResolved', data: { feedbackId: complaint, resolution: 'ok' } }, '2024-05-11T00:00:00Z'),
      purchase(primary, 'p3', 30, '2024-05-20T10:00:00Z'),
      // Recorded on the duplicate, whose stream holds the order: it lowers the primary's figures.
      projected(
        { type: 'PurchaseRefunded', data: { customerId: duplicate, orderId: 'd2', refundId: 'r-d2', amount: 2, currency: 'EUR', reason: null } },
        '2024-05-21T10:00:00Z',
      ),
    ];
    const one = `${schemas.read}_m1`;
    const split = `${schemas.read}_m2`;
    await run(one, [history]);
    await run(split, [history.slice(0, 3), history.slice(3, 6), history.slice(6)]);
    const rows = await rowsOf(one, 'analytics_customer', 'customer_id');
    expect(rows.map((r) => r.customer_id)).toEqual([primary]);
    const merged = aggregateFromRow(rows[0]!);
    expect(merged.purchases).toEqual(
      summarisePurchases([
        { day: dayOf('2024-04-20T00:00:00Z'), value: 5 },
        { day: dayOf('2024-05-01T00:00:00Z'), value: 10 },
        { day: dayOf('2024-05-08T00:00:00Z'), value: 25 }, // 20 + 7, less the refund of 2 on d2
        { day: dayOf('2024-05-20T00:00:00Z'), value: 30 },
      ]),
    );
    expect(rows[0]).toMatchObject({ orders: 5, refunds: 1, complaints: 1, complaints_open: 0, complaints_resolved: 1, cohort: '2024-04' });
    expect(Number(rows[0]!.refund_value)).toBe(2);
    for (const [table, order] of [
      ['analytics_customer', 'customer_id'],
      ['analytics_purchase_day', 'purchase_day_id'],
      ['analytics_activity', 'activity_id'],
      ['analytics_feedback', 'feedback_id'],
      ['analytics_state', 'id'],
    ] as const) {
      expect(await rowsOf(split, table, order)).toEqual(await rowsOf(one, table, order));
    }
  });

  it('a merge, done long after the history it tidies, counts as an event but leaves the observation end at the last behaviour', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const schema = `${schemas.read}_m3`;
    await run(schema, [
      [
        purchase(a, 'a1', 10, '2024-05-01T10:00:00Z'),
        purchase(b, 'b1', 10, '2024-05-03T10:00:00Z'),
        projected({ type: 'CustomerMerged', data: { customerId: a, duplicateId: b } }, '2024-12-01T00:00:00Z'),
      ],
    ]);
    const [state] = await rowsOf(schema, 'analytics_state', 'id');
    expect(new Date(state!.observation_end as string).toISOString()).toBe('2024-05-03T10:00:00.000Z');
    expect(Number(state!.events)).toBe(3);
  });
});

describe('activities as engagement', () => {
  it("count for the customer they were logged on (or their deal's), and change the engaged customer's churn features only", async () => {
    const schema = `${schemas.read}_engaged`;
    const engaged = randomUUID();
    const quiet = randomUUID();
    // Registered, never bought: no repeat purchase day either.
    const silent = randomUUID();
    const dealId = randomUUID();
    const logged = (customerId: string, at: string, extra: Record<string, unknown> = {}) =>
      projected(
        {
          type: 'ActivityLogged',
          data: { activityId: randomUUID(), customerId, dealId: null, kind: 'call', subject: 's', body: 'b', dueAt: null, assigneeId: null, ...extra },
        },
        at,
      );
    const history = [
      registered(engaged, '2024-01-01T09:00:00Z'),
      registered(quiet, '2024-01-01T09:00:00Z'),
      purchase(engaged, 'e1', 100, '2024-01-10T10:00:00Z'),
      purchase(quiet, 'q1', 100, '2024-01-10T10:00:00Z'),
      logged(engaged, '2024-02-01T10:00:00Z'),
      logged(engaged, '2024-02-01T15:00:00Z', { kind: 'note' }),
      logged(engaged, '2024-03-01T10:00:00Z', { kind: 'task', dealId, dueAt: '2024-03-08T10:00:00Z' }),
      registered(silent, '2024-01-02T09:00:00Z'),
    ];
    try {
      await run(schema, [history.slice(0, 5), history.slice(5)]);
      const rows = await rowsOf(schema, 'analytics_customer', 'customer_id');
      const row = (id: string) => aggregateFromRow(rows.find((r) => r.customer_id === id)!);
      expect(row(engaged)).toMatchObject({ activities: 3, lastActivityDay: dayOf('2024-03-01T00:00:00Z') });
      expect(row(quiet)).toMatchObject({ activities: 0, lastActivityDay: null });

      // Live features on 2024-04-01: the engaged customer was last contacted a month ago; the quiet one never (since the first purchase).
      const day = dayOf('2024-04-01T00:00:00Z');
      const features = (id: string) => {
        const a = row(id);
        return churnFeaturesOf({ ...a, purchases: a.purchases! }, day);
      };
      expect(features(engaged)).toMatchObject({ activities: 3, daysSinceLastActivity: 31 });
      expect(features(quiet)).toMatchObject({ activities: 0, daysSinceLastActivity: 82 });
      // Everything else is the same for the two customers.
      const { activities: _a, daysSinceLastActivity: _d, ...engagedRest } = features(engaged);
      const { activities: _b, daysSinceLastActivity: _e, ...quietRest } = features(quiet);
      expect(engagedRest).toEqual(quietRest);

      // As of a day (what fitting sees): only activities up to and including it.
      const asOf = await aggregatesAsOf(db, schema, dayOf('2024-02-15T00:00:00Z'));
      expect(asOf.get(engaged)).toMatchObject({ activities: 2, lastActivityDay: dayOf('2024-02-01T00:00:00Z') });
      expect(asOf.get(quiet)).toMatchObject({ activities: 0, lastActivityDay: null });
      const now = await aggregatesAsOf(db, schema, day, engaged);
      expect(now.get(engaged)).toMatchObject({ activities: 3, lastActivityDay: dayOf('2024-03-01T00:00:00Z') });

      // BI tools see the same counts.
      await createAnalyticsReportingViews(db, { readSchema: schema, reportingSchema: `${schema}_rv` });
      const view = await sql
        .raw(
          `SELECT customer_id::text AS id, activities, to_char(last_activity_day, 'YYYY-MM-DD') AS last
        FROM "${schema}_rv".analytics_customers WHERE customer_id <> '${silent}' ORDER BY activities`,
        )
        .execute(db);
      expect(view.rows).toEqual([
        { id: quiet, activities: 0, last: null },
        { id: engaged, activities: 3, last: '2024-03-01' },
      ]);
      const days = await sql
        .raw(
          `SELECT purchase_days, repeat_purchase_days FROM "${schema}_rv".analytics_customers WHERE customer_id IN ('${quiet}', '${silent}') ORDER BY purchase_days`,
        )
        .execute(db);
      expect(days.rows).toEqual([
        { purchase_days: 0, repeat_purchase_days: 0 },
        { purchase_days: 1, repeat_purchase_days: 0 },
      ]);
    } finally {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(`${schema}_rv`)} CASCADE`.execute(db);
      await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(db);
    }
  });
});
