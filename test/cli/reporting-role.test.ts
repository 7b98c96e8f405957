import { randomBytes, randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReportingViews } from '../../projections/reporting.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { json, projectionsSettled, startApi, type ApiHarness } from '../api/support.ts';
import { runCrm } from './support.ts';

/**
 * `crm reporting-role`: a real PostgreSQL login, connected with `pg`, sees only its team's records in
 * the reporting views and cannot read the read-model tables.
 */

let h: ApiHarness;
const role = `t_rep_${randomBytes(4).toString('hex')}`;
const ids = { teamA: '', teamB: '', alice: '', bob: '', carol: '' };
const customers = { alice: '', bob: '', carol: '', none: '' };
const deals = { ...customers, bobOnCarol: '' };
const feedback = { ...customers };
const activities: Record<string, string> = {};

const post = async (url: string, payload: unknown) => {
  const res = await h.app.inject({ method: 'POST', url, payload: payload as object, headers: h.auth('admin') });
  if (res.statusCode >= 300) throw new Error(`POST ${url} -> ${res.statusCode}: ${res.body}`);
  return json(res);
};
const env = () => ({
  DATABASE_URL: h.schemas.url,
  CRM_EVENTS_SCHEMA: h.schemas.events,
  CRM_READ_SCHEMA: h.schemas.read,
  CRM_REPORTING_SCHEMA: h.schemas.reporting,
});
const crm = (args: string[]) => runCrm(args, { cwd: tmpdir(), env: env() });

/** A connection as the reporting role itself (trust authentication on this machine's server). */
const asRole = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const url = new URL(h.schemas.url);
  url.username = role;
  url.password = '';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};
const column = async (client: pg.Client, sqlText: string): Promise<string[]> =>
  (await client.query(sqlText)).rows.map((r) => String(Object.values(r)[0])).sort();
const rep = (view: string) => `"${h.schemas.reporting}"."${view}"`;

beforeAll(async () => {
  h = await startApi('reporting_role');
  ids.teamA = (await post('/admin/teams', { name: 'EMEA' })).id;
  ids.teamB = (await post('/admin/teams', { name: 'APAC' })).id;
  ids.alice = (await post('/admin/users', { name: 'Alice', email: `alice-${randomUUID()}@crm.example`, role: 'sales', teamIds: [ids.teamA] })).id;
  ids.bob = (await post('/admin/users', { name: 'Bob', email: `bob-${randomUUID()}@crm.example`, role: 'sales', teamIds: [ids.teamA] })).id;
  ids.carol = (await post('/admin/users', { name: 'Carol', email: `carol-${randomUUID()}@crm.example`, role: 'sales', teamIds: [ids.teamB] })).id;
  for (const who of ['alice', 'bob', 'carol', 'none'] as const) {
    const ownerId = who === 'none' ? undefined : ids[who];
    customers[who] = (await post('/customers', { name: `C ${who}`, email: `${who}-${randomUUID()}@example.com`, ...(ownerId ? { ownerId } : {}) })).id;
    deals[who] = (
      await post('/deals', {
        customerId: customers[who],
        title: `D ${who}`,
        amount: 100,
        currency: 'EUR',
        ownerId: ownerId ?? 'nobody',
        expectedCloseDate: '2026-12-31',
      })
    ).id;
    feedback[who] = (await post('/feedback', { customerId: customers[who], kind: 'question', channel: 'web', subject: 's', body: 'b' })).id;
  }
  // Carol's deal on Alice's customer: the team sees it through the account owner.
  deals.carol = (
    await post('/deals', {
      customerId: customers.alice,
      title: 'D carol on alice',
      amount: 5,
      currency: 'EUR',
      ownerId: ids.carol,
      expectedCloseDate: '2026-12-31',
    })
  ).id;
  // Activities: a note on each customer; Bob's deal on Carol's customer with a call on it (the team sees
  // it through the deal's owner); a task on Carol's customer assigned to Alice (through the assignee).
  for (const who of ['alice', 'bob', 'carol', 'none'] as const)
    activities[who] = (await post(`/customers/${customers[who]}/activities`, { kind: 'note', subject: `note ${who}` })).id;
  const bobOnCarol = (
    await post('/deals', {
      customerId: customers.carol,
      title: 'D bob on carol',
      amount: 7,
      currency: 'EUR',
      ownerId: ids.bob,
      expectedCloseDate: '2026-12-31',
    })
  ).id;
  deals.bobOnCarol = bobOnCarol;
  activities.bobsDeal = (await post(`/deals/${bobOnCarol}/activities`, { kind: 'call', subject: "call on bob's deal" })).id;
  activities.assignedToAlice = (await post(`/customers/${customers.carol}/activities`, { kind: 'task', subject: 'for alice', assigneeId: ids.alice })).id;
  await post('/campaigns', { name: 'Spring', channel: 'email', budget: 10, currency: 'EUR' });
  await projectionsSettled(h);
  // What `crm serve` does once the tables exist.
  await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections: readModelProjections() });
}, 180_000);

afterAll(async () => {
  await h?.close();
  // Roles are cluster-wide: dropped after the schemas (and their grants) are gone.
  const client = new pg.Client({ connectionString: h.schemas.url });
  await client.connect();
  await client.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => undefined);
  await client.end();
});

describe('crm reporting-role', () => {
  it('creates a login role for a team', async () => {
    const result = await crm(['reporting-role', '--team', ids.teamA, '--name', role]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`Created role ${role}`);
    expect(result.stdout).toContain('EMEA');
  });

  it('ends its own transactions left idle after a minute, and writes nothing by default', async () => {
    await asRole(async (client) => {
      const { rows } = await client.query(
        `SELECT current_setting('idle_in_transaction_session_timeout') AS idle, current_setting('default_transaction_read_only') AS read_only`,
      );
      expect(rows[0]).toEqual({ idle: '1min', read_only: 'on' });
      const error = await client.query('CREATE TEMPORARY TABLE mine (n int)').catch((e: { code?: string }) => e);
      expect((error as { code?: string }).code).toBe('25006');
    });
  });

  it("sees only its team's records in every scoped view, over a real connection", async () => {
    await asRole(async (client) => {
      expect(await column(client, `SELECT customer_id FROM ${rep('customers')}`)).toEqual([customers.alice, customers.bob].sort());
      expect(await column(client, `SELECT deal_id FROM ${rep('deals')}`)).toEqual([deals.alice, deals.bob, deals.carol, deals.bobOnCarol].sort());
      expect(await column(client, `SELECT feedback_id FROM ${rep('feedback')}`)).toEqual([feedback.alice, feedback.bob].sort());
      expect(await column(client, `SELECT DISTINCT customer_id FROM ${rep('customer_timeline')}`)).toEqual([customers.alice, customers.bob].sort());
      const pipeline = await client.query(`SELECT sum(deal_count)::int AS n, sum(amount)::text AS amount FROM ${rep('pipeline_summary')}`);
      expect(pipeline.rows[0]).toEqual({ n: 4, amount: '212.0000' });
      expect(await column(client, `SELECT activity_id FROM ${rep('activities')}`)).toEqual(
        [activities.alice, activities.bob, activities.bobsDeal, activities.assignedToAlice].sort(),
      );
      // Campaigns have no owner: granted unscoped.
      expect((await client.query(`SELECT count(*)::int AS n FROM ${rep('campaigns')}`)).rows[0].n).toBe(1);
    });
  });

  it('cannot read the read-model tables, the role mapping, or unscoped views', async () => {
    await asRole(async (client) => {
      for (const target of [`"${h.schemas.read}".customers`, `"${h.schemas.read}".team_members`, `"${h.schemas.events}".events`, rep('role_teams')]) {
        const error = await client.query(`SELECT * FROM ${target} LIMIT 1`).catch((e: { code?: string }) => e);
        expect((error as { code?: string }).code, target).toBe('42501');
      }
    });
  });

  it('follows team membership at query time', async () => {
    const patched = await h.app.inject({
      method: 'PATCH',
      url: `/admin/users/${ids.carol}`,
      payload: { teamIds: [ids.teamA, ids.teamB] },
      headers: h.auth('admin'),
    });
    expect(patched.statusCode, patched.body).toBe(200);
    await projectionsSettled(h);
    await asRole(async (client) => {
      expect(await column(client, `SELECT customer_id FROM ${rep('customers')}`)).toEqual([customers.alice, customers.bob, customers.carol].sort());
    });
  });

  it('keeps its grants when the views are recreated (every start and rebuild swap)', async () => {
    await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections: readModelProjections() });
    await asRole(async (client) => {
      expect((await column(client, `SELECT customer_id FROM ${rep('customers')}`)).length).toBe(3);
    });
  });

  it('leaves other logins unscoped', async () => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.raw(rep('customers'))}`.execute(h.database.db);
    expect(rows[0]!.n).toBe(4);
  });

  it("crm api-key create --user makes a key that acts as the user, with the user's visibility", async () => {
    const created = await crm(['api-key', 'create', '--name', 'alice cli', '--user', ids.alice, '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { key, userId, role: keyRole } = JSON.parse(created.stdout);
    expect({ userId, keyRole }).toEqual({ userId: ids.alice, keyRole: 'sales' });
    const res = await h.app.inject({ method: 'GET', url: '/customers?limit=500', headers: { authorization: `Bearer ${key}` } });
    const seen = json(res)
      .items.map((c: { id: string }) => c.id)
      .filter((id: string) => Object.values(customers).includes(id))
      .sort();
    // Alice's team (EMEA) now holds Alice, Bob and Carol (the membership test above).
    expect(seen).toEqual([customers.alice, customers.bob, customers.carol].sort());
    const ghost = await crm(['api-key', 'create', '--name', 'ghost', '--user', randomUUID()]);
    expect(ghost.code).toBe(1);
    expect(ghost.stderr).toContain('No active user');
  });

  it('answers clear errors: unknown team, bad name, a role that is not a team role, missing options', async () => {
    const unknown = await crm(['reporting-role', '--team', randomUUID(), '--name', `${role}_x`]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No team');
    const badName = await crm(['reporting-role', '--team', ids.teamA, '--name', 'Robert"); DROP']);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('--name');
    const taken = await crm(['reporting-role', '--team', ids.teamA, '--name', 'postgres']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain('not a team reporting role');
    const missing = await crm(['reporting-role', '--name', role]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--team');
    const help = await crm(['reporting-role', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: crm reporting-role --team <id> --name <role>');
  });
});
