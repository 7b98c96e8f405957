/**
 * Record-level visibility on the read side: list and pipeline queries at 100k customers and 1,000
 * users, without a scope (a service key or `all` visibility: the query as it was before visibility
 * existed) and with the scope of a `team` user (10 team-mates) and of an `own` user. Reported as
 * p50/p99 per query and as ratios with/without, measured interleaved in one run so that the load of
 * the machine weighs on both sides alike.
 *
 * Seeding: the read-model rows (users, teams, memberships, customers with owners, deals, activities) are
 * inserted directly with SQL into tables created by the projections' own migrations: this measures
 * the queries, not the projections. Queries are the production ones (projections/queries/*.ts).
 */
import { sql } from 'kysely';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { activitiesProjection, customersProjection, dealsProjection, exchangeRatesProjection, usersProjection } from '../../projections/read-models/index.ts';
import { listActivities, listCustomers, listDeals, pipeline } from '../../projections/queries/index.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { BULK_TIMEOUTS, percentile, ratio, type BenchContext } from '../report.ts';

const ITERATIONS = 120;

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const customers = Math.round(100_000 * ctx.scale);
  const users = Math.max(20, Math.round(1_000 * ctx.scale));
  const teamSize = 10;
  const deals = Math.round(customers / 2);
  const schema = await ctx.freshSchema('visibility_read');
  // Seeding 100k rows into indexed tables.
  const database = connectPostgres(ctx.databaseUrl, { max: 4, timeouts: BULK_TIMEOUTS });
  const db = database.db;
  try {
    for (const p of [customersProjection, dealsProjection, usersProjection, exchangeRatesProjection, activitiesProjection]) await p.migrate(db, schema);
    const t = (name: string) => sql.id(schema, name);
    ctx.log(`seeding ${users} users in teams of ${teamSize}, ${customers} customers, ${deals} deals`);
    // Deterministic ids (md5 of a label) so a run is repeatable.
    const uid = (expr: string) => sql.raw(`md5('user-' || (${expr})::text)::uuid`);
    await sql`INSERT INTO ${t('users')} (user_id, name, name_sort, email, role, visibility, active, registered_at, revision, last_event_at)
      SELECT ${uid('g')}, 'User ' || g, 'user ' || g, 'user' || g || '@crm.example', 'sales', 'team', true, now(), 0, now() FROM generate_series(1, ${users}) g`.execute(
      db,
    );
    await sql`INSERT INTO ${t('teams')} (team_id, name, name_sort, created_at, revision, last_event_at)
      SELECT md5('team-' || g)::uuid, 'Team ' || g, 'team ' || g, now(), 0, now() FROM generate_series(0, ${Math.ceil(users / teamSize) - 1}) g`.execute(db);
    await sql`INSERT INTO ${t('team_members')} (team_id, user_id, joined_at)
      SELECT md5('team-' || ((g - 1) / ${teamSize}))::uuid, ${uid('g')}, now() FROM generate_series(1, ${users}) g`.execute(db);
    // Owners spread evenly over the users; one customer in 20 has no owner.
    await sql`INSERT INTO ${t('customers')} (customer_id, name, email, email_search, status, marketing_consent, registered_at, order_count, revenue,
        revision, last_event_at, last_position, owner_id)
      SELECT md5('customer-' || g)::uuid, 'Customer ' || md5(g::text), 'c' || g || '@example.com', 'c' || g || '@example.com', 'active', false,
        timestamptz '2020-01-01' + (g || ' minutes')::interval, g % 7, (g % 1000)::numeric, 0, now(), g,
        CASE WHEN g % 20 = 0 THEN NULL ELSE ${uid(`1 + (g::bigint * 7919) % ${users}`)} END
      FROM generate_series(1, ${customers}) g`.execute(db);
    // Their purchase keys, as the customers projection keeps them beside each row.
    await sql`INSERT INTO ${t('customer_purchase_keys')} (customer_id, owner_id, revenue, order_count, last_purchase_at)
      SELECT customer_id, owner_id, revenue, order_count, last_purchase_at FROM ${t('customers')}`.execute(db);
    // Most deals are owned by their customer's owner; one in five by someone else. The customer's owner
    // is on the deal too, as the deals projection keeps it (`customer_owner_id`).
    await sql`INSERT INTO ${t('deals')} (deal_id, customer_id, title, stage, amount, currency, owner_id, probability, weighted_amount, expected_close_date,
        stage_entered_at, opened_at, amount_at, revision, last_event_at, customer_owner_id)
      SELECT md5('deal-' || g)::uuid, md5('customer-' || (1 + (g * 2) % ${customers}))::uuid, 'Deal ' || g,
        (ARRAY['lead','qualified','proposal','negotiation','won','lost'])[1 + g % 6], (100 + g % 5000)::numeric, 'EUR',
        (CASE WHEN g % 5 = 0 THEN ${uid(`1 + (g::bigint * 104729) % ${users}`)} ELSE coalesce(c.owner_id, ${uid('1')}) END)::text,
        0.25, (100 + g % 5000)::numeric * 0.25, date '2026-01-01' + (g % 365), now(), timestamptz '2021-01-01' + (g || ' minutes')::interval,
        timestamptz '2021-01-01' + (g || ' minutes')::interval, 0, now(), c.owner_id
      FROM generate_series(1, ${deals}) g JOIN ${t('customers')} c ON c.customer_id = md5('customer-' || (1 + (g * 2) % ${customers}))::uuid`.execute(db);
    // Activities, four for every three customers on the customers and one for every three deals on the
    // deals: notes, calls, meetings and tasks in turn, one task in three assigned to someone (anyone),
    // four tasks in five completed; each with its customer's owner and, on a deal, the deal's owner (the
    // columns the activities projection keeps).
    const activity = (g: string, deal: boolean) =>
      sql.raw(`md5('activity-${deal ? 'deal' : 'customer'}-' || ${g})::uuid, (ARRAY['note','call','meeting','task'])[1 + ${g} % 4], 'Activity ' || ${g},
        CASE WHEN ${g} % 4 = 3 THEN timestamptz '2026-01-01' + (${g} % 400 || ' days')::interval END,
        CASE WHEN ${g} % 12 = 3 THEN md5('user-' || (1 + (${g}::bigint * 31) % ${users})::text)::uuid END,
        timestamptz '2021-01-01' + (${g} || ' minutes')::interval,
        CASE WHEN ${g} % 4 = 3 AND ${g} % 10 <> 7 THEN timestamptz '2021-01-02' + (${g} || ' minutes')::interval END`);
    const columns = sql`activity_id, kind, subject, due_at, assignee_id, occurred_at, completed_at, customer_id, deal_id, logged_by, revision, last_event_at, customer_owner_id, deal_owner_id`;
    await sql`INSERT INTO ${t('activities')} (${columns})
      SELECT ${activity('g', false)}, c.customer_id, NULL, 'seed', 0, now(), c.owner_id, NULL
      FROM generate_series(1, ${Math.round((customers * 4) / 3)}) g JOIN ${t('customers')} c ON c.customer_id = md5('customer-' || (1 + (g * 3) % ${customers}))::uuid`.execute(
      db,
    );
    await sql`INSERT INTO ${t('activities')} (${columns})
      SELECT ${activity('g', true)}, d.customer_id, d.deal_id, 'seed', 0, now(), d.customer_owner_id, d.owner_id
      FROM generate_series(1, ${Math.round(deals / 3)}) g JOIN ${t('deals')} d ON d.deal_id = md5('deal-' || (1 + (g * 3) % ${deals}))::uuid`.execute(db);
    // The steady state autovacuum keeps: statistics, and a visibility map that lets the owner index
    // answer a scope's customer ids without reading the table (index-only scans).
    for (const table of ['customers', 'customer_purchase_keys', 'deals', 'team_members', 'activities']) await sql`VACUUM ANALYZE ${t(table)}`.execute(db);

    // The scopes as api/auth/viewer.ts resolves them: user 17's team (users 11-20) and user 17 alone.
    const member = async (n: number) => (await sql<{ id: string }>`SELECT md5(${`user-${n}`})::uuid::text AS id`.execute(db)).rows[0]!.id;
    const teamScope: ReadScope = { owners: await Promise.all(Array.from({ length: teamSize }, (_, i) => member(11 + i))) };
    const ownScope: ReadScope = { owners: [await member(17)] };
    const source = { db, schema };

    const cases: Record<string, (scope: ReadScope | null) => Promise<unknown>> = {
      'customers: first page, newest first': (scope) => listCustomers(source, { limit: 50 }, scope),
      'customers: first page by name': (scope) => listCustomers(source, { limit: 50, sort: 'name' }, scope),
      'customers: search': (scope) => listCustomers(source, { limit: 50, search: 'customer 1' }, scope),
      'deals: first page, newest first': (scope) => listDeals(source, { limit: 50 }, scope),
      'deals: open, by expected close': (scope) => listDeals(source, { limit: 50, status: 'open', sort: 'expectedCloseDate' }, scope),
      'activities: first page, newest first': (scope) => listActivities(source, { limit: 50 }, scope),
      'activities: open tasks, soonest due': (scope) => listActivities(source, { limit: 50, open: true }, scope),
      pipeline: (scope) => pipeline(source, {}, scope),
    };
    const results: Record<string, unknown> = {};
    for (const [name, query] of Object.entries(cases)) {
      const times: Record<'all' | 'team' | 'own', number[]> = { all: [], team: [], own: [] };
      // Warm up, then interleave the three so that load spikes hit each alike.
      for (const scope of [null, teamScope, ownScope]) for (let i = 0; i < 5; i++) await query(scope);
      for (let i = 0; i < ITERATIONS; i++) {
        for (const [label, scope] of [
          ['all', null],
          ['team', teamScope],
          ['own', ownScope],
        ] as const) {
          const started = performance.now();
          await query(scope);
          times[label].push(performance.now() - started);
        }
      }
      const stats = (ms: number[]) => ({ p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) });
      const [all, team, own] = [stats(times.all), stats(times.team), stats(times.own)];
      results[name] = {
        withoutVisibility: all,
        team,
        own,
        ratios: {
          teamP50: ratio(team.p50Ms, all.p50Ms),
          teamP99: ratio(team.p99Ms, all.p99Ms),
          ownP50: ratio(own.p50Ms, all.p50Ms),
          ownP99: ratio(own.p99Ms, all.p99Ms),
        },
      };
      ctx.log(`${name}: all p50 ${all.p50Ms} ms, team ${team.p50Ms} ms, own ${own.p50Ms} ms`);
    }
    const worst = Math.max(...Object.values(results).flatMap((r) => Object.values((r as { ratios: Record<string, number> }).ratios)));
    return {
      customers,
      users,
      teamSize,
      deals,
      iterations: ITERATIONS,
      seeding: "read-model rows inserted directly with SQL into the projections' own tables (a query benchmark)",
      notes:
        'Absolute figures follow the load of the shared 2-core machine (loadAverage in the report); the ratios compare runs interleaved in the same moments.',
      cases: results,
      worstRatio: worst,
      withinBound: worst <= 1.5,
    };
  } finally {
    await database.close();
  }
}

export const summarize = (result: Record<string, unknown>): string[] => {
  const cases = result.cases as Record<string, { ratios: Record<string, number> }>;
  return [
    ...Object.entries(cases).map(
      ([name, c]) => `${name}: team/all p50 ${c.ratios.teamP50}x p99 ${c.ratios.teamP99}x; own/all p50 ${c.ratios.ownP50}x p99 ${c.ratios.ownP99}x`,
    ),
    `worst ratio ${String(result.worstRatio)} (bound 1.5: ${result.withinBound ? 'within' : 'exceeded'})`,
  ];
};
