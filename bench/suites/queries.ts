/**
 * Queries as the data grows (issue 15): every list and figure a user can ask for, and a purchase,
 * measured at two sizes of one CRM: S (2,000 customers, about 8,000 events) and L (100,000
 * customers, about 400,000 events). Target: p50 at L no more than twice p50 at S (L/S <= 2) for
 * every query, which an index range scan or a maintained aggregate meets and a scan of the table
 * does not.
 *
 * Each size is a CRM as `crm serve` opens it (runtime/crm.ts, projections inline, publishers and
 * the chain sealer off), seeded through the batch command path (`commands/batch.ts`, the handler
 * of `crm import`: the same schemas, deciders and encryption as the API, many streams per append),
 * activities through the command handler (the batch path does not take them); then the projections
 * catch up from the start of the log, and the analytics models are fitted so that every customer
 * with a purchase has a score and a segment. Requests go through the HTTP stack in process
 * (`app.inject`: routing, auth, validation, serialisation), with an admin key.
 *
 * Both sizes are open at once and measured interleaved (each query: S, then L, repeated), so that
 * the load of the shared machine weighs on both alike; the L/S ratios are the figures to read.
 *
 * Options (`--option name=value`):
 * - `s-customers` (default 2000), `l-customers` (default 100000): the two sizes; a smaller L
 *   (say 20000) for a quick run.
 * - `iterations` (default 100): measured requests per query and size, after 5 warm-ups (10 for a
 *   query whose warm-ups took over 1 s: a statement timeout reads as 503, counted as failed).
 * - `only` (a comma-separated list of words): measure only the queries whose name holds one of them.
 * - `analyze=1`: ANALYZE every read-model table after the catch-up (default: as the CRM leaves them).
 * `--scale` multiplies both sizes.
 */
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import { loadConfig } from '../../cli/config.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import type { CrmApp } from '../../api/app.ts';
import type { BatchItem } from '../../commands/batch.ts';
import { percentile, rate, ratio, round, type BenchContext } from '../report.ts';

const DAY = 86_400_000;
/** Business times of the seeded history: registrations over 18 months, purchases up to the end. */
const START = Date.parse('2024-01-01T00:00:00Z');
const END = Date.parse('2026-06-30T00:00:00Z');
const TARGET_RATIO = 2;
const OWNERS = 20;
const CAMPAIGNS = 5;

/** A small deterministic generator, so every run seeds the same data. */
const random = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};

/** A stable uuid (v4 layout) for a label. */
const uuidOf = (label: string): string => {
  const h = createHash('sha256').update(`bench-queries:${label}`).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

const customerId = (i: number) => uuidOf(`customer-${i}`);
const iso = (ms: number) => new Date(ms).toISOString();
const money = (value: number) => Math.round(value * 100) / 100;

interface Seeded {
  customers: number;
  events: number;
  seedMs: number;
  catchUpMs: number;
  analyzeMs: number;
  fitMs: number;
  /** Ids the queries address. */
  sample: { customerId: string; dealId: string; busyCustomerId: string };
}

/**
 * The history of one size: per customer a registration (one in ten tagged `vip`, one in 40
 * `regular`, one in 500 `partner`), a lifetime and purchases within it (2.2 on average), a refund of one purchase in 50,
 * a deal for one customer in four (half of them won or lost), feedback from one in eight (rated),
 * a campaign response from one in ten, and an activity logged on one in 33; one customer in 100 is
 * registered a second time (a likely duplicate).
 */
function* history(customers: number): Generator<BatchItem> {
  const next = random(42);
  const ctx = (key: string, at: number) => ({
    actor: { userId: 'bench-seed', roles: ['admin'] },
    correlationId: `bench-seed:${key}`,
    idempotencyKey: key,
    occurredAt: iso(at),
  });
  const campaignIds = Array.from({ length: CAMPAIGNS }, (_, c) => uuidOf(`campaign-${c}`));
  for (const [c, campaignId] of campaignIds.entries()) {
    yield {
      command: { type: 'CreateCampaign', campaignId, name: `Campaign ${c}`, channel: 'email', budget: 10_000, currency: 'EUR' },
      ctx: ctx(`campaign-${c}`, START),
    };
    yield { command: { type: 'LaunchCampaign', campaignId }, ctx: ctx(`campaign-${c}:launch`, START + DAY) };
  }
  for (let i = 0; i < customers; i++) {
    const id = customerId(i);
    const registered = START + Math.floor(next() * 540) * DAY + Math.floor(next() * DAY);
    const tags = [...(i % 10 === 0 ? ['vip'] : []), ...(i % 40 === 11 ? ['regular'] : []), ...(i % 500 === 3 ? ['partner'] : [])];
    yield {
      command: { type: 'RegisterCustomer', customerId: id, name: `Customer ${i} ${(i * 7919) % 10_007}`, email: `c${i}@example.com`, tags, source: 'bench' },
      ctx: ctx(`customer-${i}`, registered),
    };
    // One in 100 registered again a day later, a likely duplicate (the same email in capitals, the
    // name's words in another order), so that the duplicates report has groups to list at both sizes.
    if (i % 100 === 7) {
      const again = `customer-${i}-again`;
      yield {
        command: {
          type: 'RegisterCustomer',
          customerId: uuidOf(again),
          name: `${(i * 7919) % 10_007} ${i} customer`,
          email: `C${i}@EXAMPLE.COM`,
          allowDuplicate: true,
          tags: [],
          source: 'bench',
        },
        ctx: ctx(again, registered + DAY),
      };
    }
    // A lifetime of about 300 days (some churn early, some stay to the end), purchases spread over it.
    const lifetime = Math.min(END - registered, Math.floor(-Math.log(1 - next()) * 300 * DAY));
    const purchases = Math.floor(-Math.log(1 - next()) * 2.2 + 0.5);
    for (let p = 0; p < purchases; p++) {
      const at = registered + Math.floor(next() * Math.max(lifetime, DAY));
      const amount = money(5 + next() * 295);
      yield { command: { type: 'RecordPurchase', customerId: id, orderId: `o${i}-${p}`, amount, currency: 'EUR' }, ctx: ctx(`purchase-${i}-${p}`, at) };
      if (next() < 0.02) {
        yield {
          command: { type: 'RefundPurchase', customerId: id, orderId: `o${i}-${p}`, refundId: `r${i}-${p}`, amount: money(amount / 2), currency: 'EUR' },
          ctx: ctx(`refund-${i}-${p}`, at + DAY),
        };
      }
    }
    if (i % 4 === 1) {
      const dealId = uuidOf(`deal-${i}`);
      const opened = registered + Math.floor(next() * 200) * DAY;
      yield {
        command: {
          type: 'OpenDeal',
          dealId,
          customerId: id,
          title: `Deal ${i}`,
          amount: money(100 + next() * 9_900),
          currency: 'EUR',
          ownerId: `owner-${i % OWNERS}`,
          expectedCloseDate: iso(opened + Math.floor(30 + next() * 300) * DAY).slice(0, 10),
          stage: (['lead', 'qualified', 'proposal', 'negotiation'] as const)[i % 4],
        },
        ctx: ctx(`deal-${i}`, opened),
      };
      const outcome = next();
      if (outcome < 0.3) yield { command: { type: 'WinDeal', dealId }, ctx: ctx(`deal-${i}:won`, opened + 40 * DAY) };
      else if (outcome < 0.5) yield { command: { type: 'LoseDeal', dealId, reason: 'price' }, ctx: ctx(`deal-${i}:lost`, opened + 40 * DAY) };
    }
    if (i % 8 === 2) {
      const kind = (['complaint', 'request', 'question', 'praise', 'survey'] as const)[Math.floor(next() * 5)]!;
      yield {
        command: {
          type: 'SubmitFeedback',
          feedbackId: uuidOf(`feedback-${i}`),
          customerId: id,
          kind,
          channel: (['email', 'phone', 'chat', 'web'] as const)[i % 4],
          subject: `Feedback ${i}`,
          body: 'About the last order.',
          priority: (['low', 'normal', 'high', 'urgent'] as const)[Math.floor(next() * 4)],
          csat: 1 + Math.floor(next() * 5),
          nps: Math.floor(next() * 11),
        },
        ctx: ctx(`feedback-${i}`, registered + Math.floor(next() * 300) * DAY),
      };
    }
    if (i % 10 === 5) {
      const kind = (['sent', 'opened', 'clicked', 'unsubscribed'] as const)[Math.floor(next() * 4)];
      yield {
        command: { type: 'RecordCampaignResponse', campaignId: campaignIds[i % CAMPAIGNS], customerId: id, kind },
        ctx: ctx(`response-${i}`, registered + Math.floor(next() * 100) * DAY),
      };
    }
  }
}

/** Customers that get an activity (the batch path does not take them: the command handler logs them). */
const activityCustomers = (customers: number) => Array.from({ length: Math.floor(customers / 33) }, (_, k) => k * 33 + 7);

interface Size {
  label: 'S' | 'L';
  customers: number;
  crm: CrmRuntime;
  app: CrmApp;
  key: string;
  seeded: Seeded;
}

export const openSize = async (ctx: BenchContext, label: 'S' | 'L', customers: number, analyze: boolean): Promise<Size> => {
  const env = {
    DATABASE_URL: ctx.databaseUrl,
    CRM_EVENTS_SCHEMA: await ctx.freshSchema(`queries_${label}_events`),
    CRM_READ_SCHEMA: await ctx.freshSchema(`queries_${label}_read`),
    CRM_REPORTING_SCHEMA: await ctx.freshSchema(`queries_${label}_reporting`),
    CRM_PROJECTIONS: 'inline',
    LOG_LEVEL: 'silent',
    CRM_RATE_LIMIT: '0',
  };
  const crm = await openCrm(loadConfig(env, tmpdir()), { overrides: { publishers: false, chainSealer: false } });
  try {
    ctx.log(`${label}: seeding ${customers} customers through the batch command path`);
    let started = performance.now();
    const pending: BatchItem[] = [];
    let events = 0;
    const flush = async () => {
      const outcomes = await crm.batch.executeBatch(pending.splice(0));
      const failed = outcomes.find((o) => !o.ok);
      if (failed && !failed.ok) throw new Error(`seeding refused a command: ${String((failed.error as Error).message ?? failed.error)}`);
      for (const o of outcomes) if (o.ok) events += o.eventIds.length;
    };
    for (const item of history(customers)) {
      pending.push(item);
      if (pending.length >= 500) await flush();
    }
    await flush();
    const activities = activityCustomers(customers);
    for (let k = 0; k < activities.length; k += 16) {
      const results = await Promise.all(
        activities.slice(k, k + 16).map((i) =>
          crm.commands.execute(
            {
              type: 'LogActivity',
              activityId: uuidOf(`activity-${i}`),
              customerId: customerId(i),
              kind: i % 2 ? 'call' : 'task',
              subject: `Follow-up ${i}`,
              ...(i % 2 ? {} : { dueAt: iso(END + 30 * DAY) }),
            },
            {
              actor: { userId: 'bench-seed', roles: ['admin'] },
              correlationId: `bench-seed:activity-${i}`,
              idempotencyKey: `activity-${i}`,
              occurredAt: iso(END - 10 * DAY),
            },
          ),
        ),
      );
      events += results.reduce((n, r) => n + r.eventIds.length, 0);
    }
    const seedMs = performance.now() - started;
    ctx.log(`${label}: ${events} events in ${round(seedMs / 1000, 1)} s; catching the projections up`);
    started = performance.now();
    const head = await crm.store.headPosition();
    await crm.startProjections();
    await crm.runner.waitForPosition(head, 1_800_000);
    const catchUpMs = performance.now() - started;
    // `--option analyze=1`: statistics of every read-model table gathered now, as autovacuum would
    // within a minute or so after a bulk load (by default the CRM is measured as it leaves them).
    started = performance.now();
    if (analyze) {
      const { rows } = await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = ${env.CRM_READ_SCHEMA}`.execute(crm.database.db);
      for (const { name } of rows) await sql`ANALYZE ${sql.id(env.CRM_READ_SCHEMA, name)}`.execute(crm.database.db);
    }
    const analyzeMs = performance.now() - started;
    ctx.log(`${label}: caught up in ${round(catchUpMs / 1000, 1)} s; fitting the analytics models`);
    started = performance.now();
    await crm.analytics.fitModels({});
    const fitMs = performance.now() - started;
    const app = await crm.buildApi({});
    const { key } = await app.keys.create({ name: 'bench', role: 'admin' });
    const busy = activities[0] ?? 7;
    return {
      label,
      customers,
      crm,
      app,
      key,
      seeded: {
        customers,
        events,
        seedMs: Math.round(seedMs),
        catchUpMs: Math.round(catchUpMs),
        analyzeMs: Math.round(analyzeMs),
        fitMs: Math.round(fitMs),
        sample: {
          customerId: customerId(Math.floor(customers / 2)),
          dealId: uuidOf(`deal-${4 * Math.floor(customers / 8) + 1}`),
          busyCustomerId: customerId(busy),
        },
      },
    };
  } catch (error) {
    await crm.close();
    throw error;
  }
};

interface Query {
  name: string;
  /** The request: GET of a path, or a command. */
  request: (size: Size, i: number) => { method: 'GET' | 'POST'; url: string; payload?: Record<string, unknown> };
  /** Answers that are not 2xx count as failed, except these (the ready probe may say 503 while a batch applies). */
  okStatuses?: number[];
}

const get = (name: string, url: (size: Size) => string): Query => ({ name, request: (size) => ({ method: 'GET', url: url(size) }) });

/** Every list, sort key and figure a user can ask for, with a few pages deep by cursor. */
const QUERIES: Query[] = [
  get('GET /customers (newest first)', () => '/customers'),
  get('GET /customers?sort=name', () => '/customers?sort=name'),
  get('GET /customers?sort=-revenue', () => '/customers?sort=-revenue'),
  get('GET /customers?sort=revenue', () => '/customers?sort=revenue'),
  get('GET /customers?sort=-lastPurchaseAt', () => '/customers?sort=-lastPurchaseAt'),
  get('GET /customers?sort=-orderCount', () => '/customers?sort=-orderCount'),
  get('GET /customers?tag=vip (one in 10)', () => '/customers?tag=vip'),
  // One in 40 fills a page of 50 at S already: beside the rarer tag (4 customers at S, a page of 50 at
  // L), it shows what the page costs apart from finding the tagged customers.
  get('GET /customers?tag=regular (one in 40)', () => '/customers?tag=regular'),
  get('GET /customers?tag=partner (one in 500)', () => '/customers?tag=partner'),
  get('GET /customers?tag=none (no customer)', () => '/customers?tag=none'),
  get('GET /customers?status=active', () => '/customers?status=active'),
  get('GET /customers?search= (many match)', () => '/customers?search=customer%201'),
  get('GET /customers?search= (one email)', (s) => `/customers?search=c${Math.floor(s.customers / 3)}%40example.com`),
  get('GET /customers?minRevenue=500&sort=-revenue', () => '/customers?minRevenue=500&sort=-revenue'),
  get('GET /customers/:id', (s) => `/customers/${s.seeded.sample.customerId}`),
  get('GET /customers/:id/timeline', (s) => `/customers/${s.seeded.sample.customerId}/timeline`),
  get('GET /customers/:id/activities', (s) => `/customers/${s.seeded.sample.busyCustomerId}/activities`),
  get('GET /customers/duplicates', () => '/customers/duplicates'),
  get('GET /deals (newest first)', () => '/deals'),
  get('GET /deals?status=open&sort=expectedCloseDate', () => '/deals?status=open&sort=expectedCloseDate'),
  get('GET /deals?sort=-amount', () => '/deals?sort=-amount'),
  get('GET /deals?stage=proposal', () => '/deals?stage=proposal'),
  get('GET /deals/:id', (s) => `/deals/${s.seeded.sample.dealId}`),
  get('GET /pipeline', () => '/pipeline'),
  get('GET /feedback (newest first)', () => '/feedback'),
  get('GET /feedback?sort=-priority', () => '/feedback?sort=-priority'),
  get('GET /feedback?status=open&sort=resolutionDueAt', () => '/feedback?status=open&sort=resolutionDueAt'),
  get('GET /activities (newest first)', () => '/activities'),
  get('GET /activities?open=true', () => '/activities?open=true'),
  get('GET /campaigns', () => '/campaigns'),
  get('GET /analytics/segments', () => '/analytics/segments'),
  get('GET /analytics/clv', () => '/analytics/clv'),
  get('GET /analytics/clv?segment=Champions', () => '/analytics/clv?segment=Champions'),
  get('GET /analytics/churn', () => '/analytics/churn'),
  get('GET /analytics/retention', () => '/analytics/retention'),
  get('GET /analytics/retention?activeWindowDays=30', () => '/analytics/retention?activeWindowDays=30'),
  get('GET /analytics/satisfaction', () => '/analytics/satisfaction'),
  get('GET /analytics/forecast', () => '/analytics/forecast'),
  get('GET /analytics/customers/:id', (s) => `/analytics/customers/${s.seeded.sample.customerId}`),
  get('GET /analytics/models/latest', () => '/analytics/models/latest'),
  { ...get('GET /ready', () => '/ready'), okStatuses: [503] },
];

/** Last: a command changes the data the queries read, and sets the projections to work. */
const PURCHASE: Query = {
  name: 'POST /customers/:id/purchases',
  request: (size, i) => ({
    method: 'POST',
    url: `/customers/${customerId((i * 7_919) % size.customers)}/purchases`,
    payload: { orderId: `bench-${i}-${Date.now()}`, amount: 42.5, currency: 'EUR' },
  }),
};

/** One request: its time, and its status when it was not a success (the query failed, timed out, or was refused). */
const timed = async (size: Size, query: Query, i: number): Promise<{ ms: number; failure?: string }> => {
  const request = query.request(size, i);
  const started = performance.now();
  const response = await size.app.inject({
    method: request.method,
    url: request.url,
    headers: { authorization: `Bearer ${size.key}` },
    ...(request.payload ? { payload: request.payload } : {}),
  });
  const ms = performance.now() - started;
  if (response.statusCode >= 300 && !query.okStatuses?.includes(response.statusCode))
    return { ms, failure: `${response.statusCode} ${response.body.slice(0, 200)}` };
  return { ms };
};

interface SizeFigures {
  p50Ms: number;
  p99Ms: number;
  /** Items in the answer's page, for a list (a rare filter gives a shorter page at S than at L). */
  pageItems: number | null;
  requests: number;
  /** Requests answered with an error (a statement timeout reads as 503): the query is then not met. */
  failed: number;
  firstFailure?: string;
}

interface Figures {
  S: SizeFigures;
  L: SizeFigures;
  ratioP50: number;
  ratioP99: number;
  met: boolean;
}

/** How many items a list answers with (null for other answers). */
const itemsOf = async (size: Size, query: Query): Promise<number | null> => {
  const request = query.request(size, 0);
  if (request.method !== 'GET') return null;
  const response = await size.app.inject({ method: 'GET', url: request.url, headers: { authorization: `Bearer ${size.key}` } });
  const body = response.json<{ items?: unknown }>();
  return Array.isArray(body.items) ? body.items.length : null;
};

/** Past this p50 in the warm-ups, a query is measured 10 times, not `iterations` (a run must end). */
const SLOW_MS = 1_000;

/** Warm-ups, then the query on S and on L alternately, so that both see the same moments of load. */
const measure = async (sizes: [Size, Size], query: Query, iterations: number): Promise<Figures> => {
  const times: [number[], number[]] = [[], []];
  const failures: [string[], string[]] = [[], []];
  const warm: number[] = [];
  for (let i = 0; i < 5; i++) for (const size of sizes) warm.push((await timed(size, query, i)).ms);
  const rounds = percentile(warm, 50) > SLOW_MS ? Math.min(iterations, 10) : iterations;
  for (let i = 0; i < rounds; i++) {
    for (const [k, size] of sizes.entries()) {
      const { ms, failure } = await timed(size, query, 1_000 + i);
      times[k]!.push(ms);
      if (failure) failures[k]!.push(failure);
    }
  }
  const pageItems = await Promise.all(sizes.map((size) => itemsOf(size, query)));
  const [s, l] = times.map((ms, k) => ({
    p50Ms: percentile(ms, 50),
    p99Ms: percentile(ms, 99),
    pageItems: pageItems[k]!,
    requests: ms.length,
    failed: failures[k]!.length,
    ...(failures[k]!.length > 0 ? { firstFailure: failures[k]![0] } : {}),
  })) as [SizeFigures, SizeFigures];
  const ratioP50 = ratio(l.p50Ms, s.p50Ms);
  return { S: s, L: l, ratioP50, ratioP99: ratio(l.p99Ms, s.p99Ms), met: ratioP50 <= TARGET_RATIO && s.failed + l.failed === 0 };
};

const wholeNumber = (ctx: BenchContext, name: string, fallback: number): number => {
  const raw = ctx.options[name];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--option ${name} needs a whole number >= 1, got ${raw}`);
  return value;
};

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const sCustomers = Math.round(wholeNumber(ctx, 's-customers', 2_000) * ctx.scale);
  const lCustomers = Math.round(wholeNumber(ctx, 'l-customers', 100_000) * ctx.scale);
  const iterations = wholeNumber(ctx, 'iterations', 100);
  const analyze = ctx.options.analyze === '1';
  const only = ctx.options.only?.split(',').map((w) => w.trim().toLowerCase());
  const wanted = (q: Query) => !only || only.some((w) => q.name.toLowerCase().includes(w));
  const opened: Size[] = [];
  try {
    opened.push(await openSize(ctx, 'S', sCustomers, analyze));
    opened.push(await openSize(ctx, 'L', lCustomers, analyze));
    const sizes = opened as [Size, Size];
    const queries: Record<string, Figures> = {};
    for (const query of [...QUERIES, PURCHASE].filter(wanted)) {
      const figures = await measure(sizes, query, iterations);
      queries[query.name] = figures;
      const failed =
        figures.S.failed + figures.L.failed > 0
          ? `, failed S ${figures.S.failed} L ${figures.L.failed}: ${figures.L.firstFailure ?? figures.S.firstFailure}`
          : '';
      ctx.log(`${query.name}: S p50 ${figures.S.p50Ms} ms, L p50 ${figures.L.p50Ms} ms, L/S ${figures.ratioP50} (${figures.met ? 'met' : 'NOT met'})${failed}`);
    }
    const notMet = Object.entries(queries)
      .filter(([, f]) => !f.met)
      .map(([name]) => name);
    return {
      sizes: Object.fromEntries(
        sizes.map((s) => [
          s.label,
          {
            ...s.seeded,
            eventsPerSecondSeeded: rate(s.seeded.events, s.seeded.seedMs),
            eventsPerSecondCaughtUp: rate(s.seeded.events, s.seeded.catchUpMs),
          },
        ]),
      ),
      iterations,
      target: `p50 at L <= ${TARGET_RATIO}x p50 at S for every query`,
      method:
        'Requests through the HTTP stack in process (app.inject, admin key), S and L alternately, after 5 warm-ups each; ' +
        'the purchase last, as it sets the projections to work.',
      analyzedByTheBench: analyze,
      queries,
      met: Object.keys(queries).length - notMet.length,
      notMet,
    };
  } finally {
    for (const size of opened.reverse()) {
      await size.app.close().catch(() => undefined);
      await size.crm.close().catch(() => undefined);
    }
  }
}

export const summarize = (result: Record<string, unknown>): string[] => {
  const r = result as {
    sizes: Record<string, Seeded>;
    queries: Record<string, Figures>;
    notMet: string[];
  };
  return [
    ...Object.entries(r.sizes).map(
      ([label, s]) =>
        `${label}: ${s.customers} customers, ${s.events} events; seeded in ${round(s.seedMs / 1000, 1)} s, caught up in ${round(s.catchUpMs / 1000, 1)} s, fitted in ${round(s.fitMs / 1000, 1)} s`,
    ),
    ...Object.entries(r.queries).map(
      ([name, f]) =>
        `${name}: p50 ${f.S.p50Ms} -> ${f.L.p50Ms} ms (L/S ${f.ratioP50}), p99 ${f.S.p99Ms} -> ${f.L.p99Ms} ms (${f.ratioP99}) ${f.met ? 'met' : 'NOT met'}${
          f.S.pageItems !== f.L.pageItems ? ` (page of ${f.S.pageItems} at S, ${f.L.pageItems} at L)` : ''
        }${f.S.failed + f.L.failed > 0 ? ` (failed: S ${f.S.failed}/${f.S.requests}, L ${f.L.failed}/${f.L.requests})` : ''}`,
    ),
    `${Object.keys(r.queries).length - r.notMet.length} of ${Object.keys(r.queries).length} within L/S <= ${TARGET_RATIO}`,
  ];
};
