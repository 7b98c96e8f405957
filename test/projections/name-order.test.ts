import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Page } from '../../projections/queries/page.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { listTeams, usersWhere } from '../../projections/queries/users.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { expectedOrder, NAMES } from './names-in-order.ts';
import { createHarness, type Harness } from './support.ts';

let h: Harness;
let runner: ProjectionRunner;
let q: ReturnType<typeof createReadModelQueries>;
const ownerId = randomUUID();
const idOf = new Map<string, string>();
const campaignOf = new Map<string, string>();
const userOf = new Map<string, string>();
const teamOf = new Map<string, string>();
const TAG = 'name-order';
/** Customers of the test of forgotten ones, by name as registered: those after `forgotten` are forgotten. */
const ERASED_TAG = 'name-order-erased';
const erasedOf = new Map<string, string>();
const erasedOwnerId = randomUUID();
const KEPT = ['1st Avenue', 'Ada', '\u{10ffff}Yann', 'Zoe'];
const FORGOTTEN = ['Bob', 'Carla', 'Dora'];

beforeAll(async () => {
  h = await createHarness('name_order');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections: readModelProjections(), codec: h.codec });
  await runner.start();
  await h.run({ type: 'RegisterUser', userId: ownerId, name: 'Owner', email: 'owner@crm.example', role: 'sales' });
  for (const [i, name] of NAMES.entries()) {
    const customerId = randomUUID();
    idOf.set(name, customerId);
    // One is renamed: its place follows the name it has now.
    const registered = name === 'Ørjan' ? 'Aaron' : name;
    await h.run({ type: 'RegisterCustomer', customerId, name: registered, email: `n${i}@example.com`, tags: [TAG], ownerId });
    if (registered !== name) await h.run({ type: 'ChangeCustomerDetails', customerId, name });
    const campaignId = randomUUID();
    campaignOf.set(name, campaignId);
    await h.run({ type: 'CreateCampaign', campaignId, name, channel: 'email', budget: 100, currency: 'EUR' });
    // Staff and teams: one of each renamed, as the customer.
    const userId = randomUUID();
    userOf.set(name, userId);
    await h.run({ type: 'RegisterUser', userId, name: registered, email: `staff${i}@crm.example`, role: 'sales' });
    if (registered !== name) await h.run({ type: 'ChangeUser', userId, name });
    const teamId = randomUUID();
    teamOf.set(name, teamId);
    await h.run({ type: 'CreateTeam', teamId, name: registered });
    if (registered !== name) await h.run({ type: 'RenameTeam', teamId, name });
  }
  await h.run({ type: 'RegisterUser', userId: erasedOwnerId, name: 'Owner of the forgotten', email: 'erased-owner@crm.example', role: 'sales' });
  for (const [i, name] of [...KEPT, ...FORGOTTEN].entries()) {
    const customerId = randomUUID();
    erasedOf.set(name, customerId);
    await h.run({ type: 'RegisterCustomer', customerId, name, email: `e${i}@example.com`, tags: [ERASED_TAG], ownerId: erasedOwnerId });
  }
  for (const name of FORGOTTEN) await h.run({ type: 'ForgetCustomer', customerId: erasedOf.get(name)! });
  await runner.waitForPosition(h.lastPosition(), 30_000);
  q = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

/** Every page of a list, in order, following the cursors. */
async function allPages(list: (cursor: string | undefined) => Promise<Page<{ id: string }>>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await list(cursor);
    ids.push(...page.items.map((c) => c.id));
    if (page.nextCursor === null) return ids;
    cursor = page.nextCursor;
  }
  throw new Error('the list did not end');
}

describe('?sort=name', () => {
  it('lists customers in dictionary order, ties by id, on every page size and both ways', async () => {
    const expected = expectedOrder(idOf);
    for (const limit of [2, 5, 50]) {
      expect(await allPages((cursor) => q.listCustomers({ tag: TAG, sort: 'name', limit, cursor }))).toEqual(expected);
      expect(await allPages((cursor) => q.listCustomers({ tag: TAG, sort: '-name', limit, cursor }))).toEqual([...expected].reverse());
    }
  });

  it("pages an owner's scope in the same order, from the owner's index", async () => {
    const scope: ReadScope = { owners: [ownerId] };
    const expected = expectedOrder(idOf);
    expect(await allPages((cursor) => q.listCustomers({ sort: 'name', limit: 5, cursor }, scope))).toEqual(expected);
    expect(await allPages((cursor) => q.listCustomers({ sort: '-name', limit: 5, cursor }, scope))).toEqual([...expected].reverse());
  });

  it('lists forgotten customers after every name, by id, on every page size and both ways', async () => {
    // '[erased]' as a key sorted after "1st" and before every letter. A name holding U+10FFFF, the code
    // point the erased key starts with, sorts by its other letters ("yann").
    const forgotten = FORGOTTEN.map((name) => erasedOf.get(name)!).sort();
    const expected = [...KEPT.map((name) => erasedOf.get(name)!), ...forgotten];
    for (const limit of [1, 2, 3, 50]) {
      expect(await allPages((cursor) => q.listCustomers({ tag: ERASED_TAG, sort: 'name', limit, cursor }))).toEqual(expected);
      expect(await allPages((cursor) => q.listCustomers({ tag: ERASED_TAG, sort: '-name', limit, cursor }))).toEqual([...expected].reverse());
    }
    // From the owner's index too.
    const scope: ReadScope = { owners: [erasedOwnerId] };
    expect(await allPages((cursor) => q.listCustomers({ sort: 'name', limit: 2, cursor }, scope))).toEqual(expected);
    expect(await allPages((cursor) => q.listCustomers({ sort: '-name', limit: 2, cursor }, scope))).toEqual([...expected].reverse());
    const first = await q.listCustomers({ tag: ERASED_TAG, sort: 'name', limit: KEPT.length + 1 });
    expect(first.items.at(-1)).toMatchObject({ name: '[erased]', status: 'forgotten' });
  });

  it('lists campaigns in the same order', async () => {
    const expected = expectedOrder(campaignOf);
    expect(await allPages((cursor) => q.listCampaigns({ sort: 'name', limit: 5, cursor }))).toEqual(expected);
    expect(await allPages((cursor) => q.listCampaigns({ sort: '-name', limit: 5, cursor }))).toEqual([...expected].reverse());
  });

  it('lists users and teams (GET /admin/users, GET /admin/teams) in the same order', async () => {
    const staff = sql`u.user_id = ANY(${[...userOf.values()]}::uuid[])`;
    expect((await usersWhere(h.database.db, h.schemas.read, staff)).map((u) => u.user_id)).toEqual(expectedOrder(userOf));
    expect((await listTeams(h.database.db, h.schemas.read)).map((t) => t.team_id)).toEqual(expectedOrder(teamOf));
  });

  it('gives the reporting views the key, so that a BI tool orders customers and campaigns as the API does', async () => {
    await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections: readModelProjections() });
    const customers = await sql<{ customer_id: string }>`SELECT customer_id FROM ${sql.id(h.schemas.reporting, 'customers')}
      WHERE ${TAG} = ANY(tags) ORDER BY name_sort, customer_id`.execute(h.database.db);
    expect(customers.rows.map((r) => r.customer_id)).toEqual(expectedOrder(idOf));
    const campaigns = await sql<{ campaign_id: string }>`SELECT campaign_id FROM ${sql.id(h.schemas.reporting, 'campaigns')}
      ORDER BY name_sort DESC, campaign_id DESC`.execute(h.database.db);
    expect(campaigns.rows.map((r) => r.campaign_id)).toEqual([...expectedOrder(campaignOf)].reverse());
  });

  it('refuses a cursor of the former order (the lower-cased name) as bad input saying to start again', async () => {
    const former = JSON.stringify(['zoe', idOf.get('zoe')]);
    const refusal = await q.listCustomers({ sort: 'name', cursor: former }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(z.ZodError);
    expect((refusal as z.ZodError).issues).toMatchObject([{ path: ['cursor'], message: expect.stringMatching(/start again without a cursor/) }]);
    await expect(q.listCampaigns({ sort: '-name', cursor: former })).rejects.toBeInstanceOf(z.ZodError);
  });

  it("orders by the lower-cased name on the previous version's tables, while a rebuild makes the new ones, and their cursors start again after", async () => {
    // The tables of the previous version have no `name_sort`: as they serve during a rebuild.
    const rename = (from: string, to: string) =>
      Promise.all(
        ['customers', 'campaigns', 'users', 'teams'].map((table) =>
          sql`ALTER TABLE ${sql.id(h.schemas.read, table)} RENAME COLUMN ${sql.id(from)} TO ${sql.id(to)}`.execute(h.database.db),
        ),
      );
    await rename('name_sort', 'name_sort_hidden');
    let cursor: string;
    try {
      const first = await q.listCustomers({ tag: TAG, sort: 'name', limit: 2 });
      expect(first.items.map((c) => c.name)).toEqual(['Ada Lovelace', 'adam']);
      cursor = first.nextCursor!;
      const second = await q.listCustomers({ tag: TAG, sort: 'name', limit: 2, cursor });
      expect(second.items.map((c) => c.name)).toEqual(['Bob', 'emile']);
      expect((await q.listCampaigns({ sort: 'name', limit: 1 })).items.map((c) => c.name)).toEqual(['Ada Lovelace']);
      const staff = sql`u.user_id = ANY(${[...userOf.values()]}::uuid[])`;
      expect((await usersWhere(h.database.db, h.schemas.read, staff)).map((u) => u.name).slice(0, 2)).toEqual(['Ada Lovelace', 'Bob']);
      expect((await listTeams(h.database.db, h.schemas.read)).map((t) => t.name).slice(0, 2)).toEqual(['Ada Lovelace', 'Bob']);
    } finally {
      await rename('name_sort_hidden', 'name_sort');
    }
    await expect(q.listCustomers({ tag: TAG, sort: 'name', limit: 2, cursor })).rejects.toMatchObject({
      issues: [{ path: ['cursor'], message: expect.stringMatching(/start again without a cursor/) }],
    });
  });
});
