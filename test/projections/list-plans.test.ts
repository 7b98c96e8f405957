import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listActivities } from '../../projections/queries/activities.ts';
import { listCampaigns } from '../../projections/queries/campaigns.ts';
import { listCustomers } from '../../projections/queries/customers.ts';
import { listDeals } from '../../projections/queries/deals.ts';
import { listFeedback } from '../../projections/queries/feedback.ts';
import type { Page, ReadModelSource } from '../../projections/queries/page.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, type Harness } from './support.ts';

/**
 * Every order a list offers comes from an index, so a page costs the same with a hundred records or
 * ten million (issue 15: lists served by an index, keyset paging on each sort key). Checked on the
 * statements the list functions send, planned with sorting disabled: an order no index gives still
 * shows a Sort over the table, whatever its size or statistics. A sort is allowed only over rows that
 * are already bounded by a limit: an owner's scope reads one index range per owner (each cut at the
 * page size) and merges them. Each list is checked for every sort key in both directions, for an
 * administrator and for an owner's scope, and for a page after a cursor.
 */
let h: Harness;
let runner: ProjectionRunner;
let pool: pg.Pool;
let source: ReadModelSource;
const sent: CompiledQuery[] = [];
const ownerId = randomUUID();
const customerId = randomUUID();
const scope: ReadScope = { owners: [ownerId] };

beforeAll(async () => {
  h = await createHarness('list_plans');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections: readModelProjections(), codec: h.codec });
  await runner.start();
  await h.run({ type: 'RegisterUser', userId: ownerId, name: 'Owner', email: 'owner@crm.example', role: 'sales' });
  await h.run({ type: 'RegisterCustomer', customerId, name: 'Ada', email: 'ada@example.com', ownerId });
  for (let i = 0; i < 6; i++) {
    const dueAt = i % 3 === 0 ? null : new Date(Date.UTC(2026, 1, 1 + i)).toISOString();
    await h.run({ type: 'LogActivity', customerId, kind: 'task', subject: `Task ${i}`, dueAt, assigneeId: i % 2 === 0 ? ownerId : null });
    await h.run({ type: 'LogActivity', customerId, kind: 'call', subject: `Call ${i}` });
  }
  // A campaign with money: its list's base-currency figures are read for the page's campaigns.
  const campaignId = randomUUID();
  await h.run({ type: 'CreateCampaign', campaignId, name: 'Plans', channel: 'email', budget: 100, currency: 'EUR' });
  await h.run({ type: 'RecordCampaignCost', campaignId, amount: 10, currency: 'EUR' });
  await runner.waitForPosition(h.lastPosition(), 30_000);
  pool = new pg.Pool({ connectionString: h.schemas.url, max: 1 });
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }), log: (event) => void sent.push(event.query) });
  source = { db, schema: h.schemas.read };
});

afterAll(async () => {
  await (source?.db as Kysely<unknown> | undefined)?.destroy();
  await runner?.stop();
  await h?.close();
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** Whether a subtree yields a bounded number of rows whatever the tables hold: cut by a limit, or no table read. */
const bounded = (node: PlanNode): boolean => node['Node Type'] === 'Limit' || (node['Relation Name'] === undefined && (node.Plans ?? []).every(bounded));

/** Sorts of a plan over rows read from a table without a limit (what grows with the table). */
const unboundedSorts = (node: PlanNode): string[] => [
  ...(node['Node Type'] === 'Sort' && !(node.Plans ?? []).every(bounded) ? [JSON.stringify(node).slice(0, 400)] : []),
  ...(node.Plans ?? []).flatMap(unboundedSorts),
];
const indexesOf = (node: PlanNode): string[] => [...(node['Index Name'] ? [node['Index Name']] : []), ...(node.Plans ?? []).flatMap(indexesOf)];

/** The plans of the statements a call sent, with sorting and sequential scans disabled. */
const plansOf = async (call: () => Promise<unknown>): Promise<PlanNode[]> => {
  sent.length = 0;
  await call();
  // The queries only: a list read in one snapshot (campaigns, with their base-currency figures) sends BEGIN and ROLLBACK around them.
  const statements = sent.filter((statement) => !/^\s*(BEGIN|ROLLBACK|COMMIT|SET)\b/i.test(statement.sql));
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_sort = off');
    await client.query('SET LOCAL enable_seqscan = off');
    const plans: PlanNode[] = [];
    for (const statement of statements) {
      const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${statement.sql}`, [...statement.parameters]);
      plans.push(rows[0]!['QUERY PLAN'][0].Plan);
    }
    return plans;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
};

type Lister = (query: { sort?: string; limit?: number; cursor?: string }, scope?: ReadScope | null) => Promise<Page<unknown>>;

const lists: { name: string; list: Lister; sorts: string[]; scoped: boolean }[] = [
  {
    name: 'customers',
    list: (q, s) => listCustomers(source, q, s),
    sorts: ['name', 'createdAt', 'revenue', 'lastPurchaseAt', 'orderCount'],
    scoped: true,
  },
  { name: 'deals', list: (q, s) => listDeals(source, q, s), sorts: ['expectedCloseDate', 'amount', 'updatedAt', 'createdAt'], scoped: true },
  { name: 'feedback', list: (q, s) => listFeedback(source, q, s), sorts: ['submittedAt', 'resolutionDueAt', 'priority'], scoped: true },
  { name: 'activities', list: (q, s) => listActivities(source, q, s), sorts: ['occurredAt', 'dueAt'], scoped: true },
  { name: 'open tasks', list: (q, s) => listActivities(source, { ...q, open: true }, s), sorts: ['dueAt', 'occurredAt'], scoped: true },
  { name: 'campaigns', list: (q) => listCampaigns(source, q), sorts: ['name', 'createdAt', 'roi', 'revenue'], scoped: false },
];

const cases = [
  ...lists.flatMap(({ name, list, sorts, scoped }) =>
    sorts.flatMap((key) =>
      [key, `-${key}`].flatMap((sort) => [
        { label: `${name} by ${sort}`, run: () => list({ sort, limit: 2 }) },
        ...(scoped ? [{ label: `${name} by ${sort}, an owner's scope`, run: () => list({ sort, limit: 2 }, scope) }] : []),
      ]),
    ),
  ),
  // A headline currency and a revenue range filter the walk of the sort index.
  ...['-revenue', 'name', '-createdAt'].map((sort) => ({
    label: `customers in one currency with a revenue range by ${sort}`,
    run: () => listCustomers(source, { currency: 'JPY', minRevenue: 1000, sort, limit: 2 }),
  })),
];

describe('list orders come from indexes', () => {
  it.each(cases)('$label: read in index order', async ({ run }) => {
    const plans = await plansOf(run);
    expect(plans.flatMap(indexesOf).length).toBeGreaterThan(0);
    expect(plans.flatMap(unboundedSorts)).toEqual([]);
  });

  it('the page after a cursor too', async () => {
    const first = await listActivities(source, { open: true, limit: 2 });
    expect(first.nextCursor).not.toBeNull();
    const plans = await plansOf(() => listActivities(source, { open: true, limit: 2, cursor: first.nextCursor! }));
    expect(plans.flatMap(unboundedSorts)).toEqual([]);
  });

  it('open tasks come soonest due first, undated last (their ids break the tie)', async () => {
    const all = await listActivities(source, { open: true, limit: 50 });
    const subjects = all.items.map((a) => a.subject);
    expect(subjects.slice(0, 4)).toEqual(['Task 1', 'Task 2', 'Task 4', 'Task 5']);
    expect(subjects.slice(4).sort()).toEqual(['Task 0', 'Task 3']);
  });
});
