import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { createAnalyticsService, FitInterrupted, InsufficientData, type AnalyticsService } from '../../analytics/service.ts';
import { testSchemas } from '../support/postgres.ts';
import { simulatedHistory } from './simulate.ts';
import { purchase } from './support.ts';

const schemas = testSchemas('analytics_service');
let database: SqlDatabase;
let db: Kysely<unknown>;
let service: AnalyticsService;
const projection = createAnalyticsProjection();
const events = simulatedHistory(600, 21);

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 3 });
  db = database.db;
  await projection.migrate(db, schemas.read);
  service = createAnalyticsService({ db, schema: schemas.read, clock: () => new Date('2024-07-01T00:00:00Z') });
});
afterAll(async () => {
  await database?.close();
  await schemas.dropSchemas();
});

const apply = async (batch: typeof events) => db.transaction().execute((trx) => projection.apply({ trx, schema: schemas.read }, batch));

describe('analytics service', () => {
  it('refuses to fit without data', async () => {
    await expect(service.fitModels()).rejects.toBeInstanceOf(InsufficientData);
  });

  it('fits every model, stores a version and scores every customer', async () => {
    for (let i = 0; i < events.length; i += 500) await apply(events.slice(i, i + 500));
    const model = await service.fitModels({ timeUnit: 'week', horizon: 52, discountRate: 0.01 });
    expect(model.version).toBe(1);
    expect(model.customers).toBe(600);
    // Simulated with r = 0.6, alpha = 4, a = 0.8, b = 2.5 (weekly); day aggregation and 600 customers
    // make this a sanity band, not the recovery test (that is customer-base-models.test.ts).
    expect(model.bgnbd.r).toBeGreaterThan(0.3);
    expect(model.bgnbd.r).toBeLessThan(1.2);
    expect(model.bgnbd.alpha).toBeGreaterThan(1.5);
    expect(model.bgnbd.alpha).toBeLessThan(10);
    expect(model.gammaGamma.q).toBeGreaterThan(1);
    expect(model.churn.auc as number).toBeGreaterThan(0.6);
    expect(model.churn.logLoss as number).toBeGreaterThan(0);
    const { rows } = await sql`SELECT count(*)::int AS n FROM ${sql.id(schemas.read, 'analytics_scores')}`.execute(db);
    expect(rows[0]).toEqual({ n: 600 });
    expect(await service.latestModel()).toEqual(model);
  });

  it('stores nothing when interrupted before its model is stored (Ctrl-C in crm fit)', async () => {
    const versions = async () => (await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schemas.read, 'analytics_models')}`.execute(db)).rows[0]!.n;
    const before = await versions();
    const stopped = new AbortController();
    stopped.abort();
    await expect(service.fitModels({ signal: stopped.signal })).rejects.toBeInstanceOf(FitInterrupted);
    // Interrupted while it caught up: stopped before fitting anything.
    const duringCatchUp = new AbortController();
    const catchingUp = createAnalyticsService({ db, schema: schemas.read, catchUp: async () => duringCatchUp.abort() });
    await expect(catchingUp.fitModels({ signal: duringCatchUp.signal })).rejects.toBeInstanceOf(FitInterrupted);
    expect(await versions()).toBe(before);
    expect((await service.latestModel())?.version).toBe(1);
  });

  it('answers per-customer figures and ranked lists', async () => {
    const clv = await service.clv({ limit: 5 });
    expect(clv.items).toHaveLength(5);
    expect(clv.total).toBe(600);
    expect(clv.items[0]!.clv).toBeGreaterThanOrEqual(clv.items[4]!.clv);
    const top = await service.customer(clv.items[0]!.customerId);
    expect(top!.clv).toBeCloseTo(clv.items[0]!.clv, 6);
    expect(top!.pAlive).toBeGreaterThan(0);
    expect(top!.rfm!.frequency).toBeGreaterThan(0);
    expect(await service.customer('00000000-0000-4000-8000-000000000000')).toBeNull();
    const risky = await service.churn({ minChurnScore: 0.5, limit: 3 });
    for (const item of risky.items) expect(item.churnScore).toBeGreaterThanOrEqual(0.5);
    const segments = await service.segments();
    expect(segments.segments.reduce((s, x) => s + x.customers, 0)).toBe(600);
  });

  it('a new purchase rescores that customer at once', async () => {
    const [first] = (await service.clv({ limit: 1 })).items;
    const before = await service.customer(first!.customerId);
    await apply([purchase(first!.customerId, 'late', 500, '2024-06-30T12:00:00Z')]);
    const after = await service.customer(first!.customerId);
    expect(after!.rfm!.frequency).toBe(before!.rfm!.frequency + 1);
    const { rows } = await sql<{
      frequency: number;
      p_alive: number;
    }>`SELECT frequency, p_alive FROM ${sql.id(schemas.read, 'analytics_scores')} WHERE customer_id = ${first!.customerId}`.execute(db);
    expect(rows[0]!.frequency).toBe(after!.rfm!.frequency);
    expect(rows[0]!.p_alive).toBeCloseTo(after!.pAlive!, 9);
  });

  it('retention, satisfaction and forecast from the aggregates', async () => {
    const retention = await service.retention({ activeWindowDays: 180 });
    expect(retention.cohorts.map((c) => c.cohort)).toEqual(['2023-01', '2023-02', '2023-03', '2023-04', '2023-05', '2023-06']);
    expect(retention.cohorts.reduce((s, c) => s + c.size, 0)).toBe(600);
    // Every customer is acquired in exactly one period, and CRR is (E - N) / S of its own counts.
    expect(retention.periods.reduce((s, p) => s + p.N, 0)).toBe(600);
    const june = retention.periods.find((p) => p.period === '2023-06')!;
    expect(june.crr).toBeCloseTo((june.E - june.N) / june.S, 12);
    const satisfaction = await service.satisfaction({ groupBy: 'channel' });
    expect(satisfaction.items.map((i) => i.channel)).toEqual(['chat', 'email', 'phone']);
    expect(satisfaction.total.csat!).toBeGreaterThan(0);
    expect(satisfaction.total.nps!).toBeGreaterThanOrEqual(-100);
    const byQuarter = await service.satisfaction({ groupBy: 'period', granularity: 'quarter' });
    expect(byQuarter.items[0]!.period).toMatch(/^\d{4}-Q[1-4]$/);
    expect(byQuarter.total).toEqual(satisfaction.total);
    const byMonth = await service.satisfaction({ groupBy: 'period' });
    expect(new Set(byMonth.items.map((i) => i.channel))).toEqual(new Set(['all']));
    // One channel asked for: its rows are that channel's figures, and are labelled with it.
    const chatByMonth = await service.satisfaction({ groupBy: 'period', channel: 'chat' });
    const chatByPeriodAndChannel = (await service.satisfaction({ channel: 'chat' })).items;
    expect(chatByMonth.items.map(({ period, channel, csatResponses }) => ({ period, channel, csatResponses }))).toEqual(
      chatByPeriodAndChannel.map(({ period, channel, csatResponses }) => ({ period, channel, csatResponses })),
    );
    expect(chatByMonth.items[0]!.channel).toBe('chat');
    const q1 = byMonth.items.filter((i) => ['2023-01', '2023-02', '2023-03'].includes(i.period)).reduce((s, i) => s + i.csatResponses, 0);
    expect(byQuarter.items.find((i) => i.period === '2023-Q1')?.csatResponses ?? 0).toBe(q1);
    // Each row says which months it covers: a quarter cut by from/to says so.
    expect(byQuarter.items.find((i) => i.period === '2023-Q1')).toMatchObject({ firstMonth: '2023-01', lastMonth: '2023-03' });
    const cut = await service.satisfaction({ groupBy: 'period', granularity: 'quarter', from: '2023-02', to: '2023-08' });
    expect(cut.items.map((i) => [i.period, i.firstMonth, i.lastMonth])).toEqual([
      ['2023-Q1', '2023-02', '2023-03'],
      ['2023-Q2', '2023-04', '2023-06'],
      ['2023-Q3', '2023-07', '2023-08'],
    ]);
    expect((await service.satisfaction({ groupBy: 'period', granularity: 'year', from: '2023-05' })).items[0]).toMatchObject({
      period: '2023',
      firstMonth: '2023-05',
      lastMonth: '2023-12',
    });
    // A row of every period: from/to where given, else the months of its channel's ratings (null before).
    const months = (items: { period: string }[]) => items.map((i) => i.period).sort();
    const chatMonths = months((await service.satisfaction({ channel: 'chat' })).items.filter((i) => i.csatResponses + i.npsResponses > 0));
    expect((await service.satisfaction({ groupBy: 'channel', to: '2023-09' })).items[0]).toMatchObject({
      period: 'all',
      channel: 'chat',
      firstMonth: chatMonths[0],
      lastMonth: '2023-09',
    });
    expect((await service.satisfaction({ groupBy: 'channel' })).items[0]).toMatchObject({
      period: 'all',
      channel: 'chat',
      firstMonth: chatMonths[0],
      lastMonth: chatMonths.at(-1),
    });
    expect((await service.satisfaction({ groupBy: 'channel', from: '2023-04' })).items[0]).toMatchObject({
      firstMonth: '2023-04',
      lastMonth: chatMonths.at(-1),
    });
    const forecast = await service.forecast({ horizon: 3 });
    // The observation end is 2024-06-30: June is complete (months count in whole days).
    expect(forecast.history.at(-1)!.month).toBe('2024-06');
    expect(forecast.history[0]!.month).toBe('2023-01');
    expect(forecast.methods[0]!.forecast.map((f) => f.month)).toEqual(['2024-07', '2024-08', '2024-09']);
    expect(forecast.methods[1]!.backtest!.rmse).toBeGreaterThan(0);
  });

  it('still fits the other models when the churn window reaches before any purchase, with a base-rate churn model said plainly', async () => {
    const model = await service.fitModels({ asOf: '2023-03-15', churnWindowDays: 120 });
    expect(model.version).toBe(2);
    expect(model.asOf).toBe('2023-03-15');
    expect(model.customers).toBeGreaterThan(10);
    expect(model.customers).toBeLessThan(600);
    expect(model.churn.auc).toBeNull();
    expect(String(model.churn.unavailable)).toMatch(/training cutoff/);
    const [item] = (await service.churn({ limit: 1 })).items;
    expect(item!.modelVersion).toBe(2);
  });
});
