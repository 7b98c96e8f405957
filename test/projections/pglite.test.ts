import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { sql } from 'kysely';
import { createPostgresEventStore, openPglite, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import type { EventCodec } from '../../projections/apply-batch.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { listTeams, usersWhere } from '../../projections/queries/users.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { compareSchemas, rebuildProjections, replayInto, tablesOf } from '../../projections/rebuild.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { expectedOrder, NAMES } from './names-in-order.ts';

// The embedded default engine: one PGlite instance for the file (they cost seconds and memory).
let database: SqlDatabase;
let store: EventStore;
let codec: EventCodec;
let commands: CrmCommands;
let runner: ProjectionRunner;
let last = 0n;
const projections = readModelProjections();
const actor = { userId: 'ann', roles: ['sales'] };

const run = async (command: Record<string, unknown>) => {
  const result = await commands.execute(command as never, { actor, correlationId: randomUUID() });
  if (result.position > last) last = result.position;
  return result;
};

beforeAll(async () => {
  database = await openPglite();
  store = await createPostgresEventStore(database, { schema: 'events' });
  const personalData = await createPersonalData(database.db, { schema: 'events' });
  codec = personalDataCodec(personalData);
  commands = createCrmCommands({ store, personalData });
  runner = new ProjectionRunner({ db: database.db, store, schema: 'crm', projections, codec });
  await runner.start();
  await createReportingViews(database.db, { readSchema: 'crm', reportingSchema: 'reporting', projections });
});

afterAll(async () => {
  await runner?.stop();
  await store?.close();
  await database?.close();
});

describe('projections on PGlite', () => {
  it('follow the feed, rebuild with a swap and replay to identical tables', async () => {
    const customerId = randomUUID();
    await run({ type: 'RegisterCustomer', customerId, name: 'Pia Lite', email: 'Pia@Example.com', tags: ['embedded'] });
    await run({ type: 'RecordPurchase', customerId, orderId: 'p-1', amount: 19.99, currency: 'EUR' });
    const dealId = randomUUID();
    await run({ type: 'OpenDeal', dealId, customerId, title: 'Lite deal', amount: 100, currency: 'EUR', ownerId: 'ann', expectedCloseDate: '2026-05-01' });
    await runner.waitForPosition(last, 10_000);
    const q = createReadModelQueries({ db: database.db, schema: 'crm' });
    expect(await q.getCustomer(customerId)).toMatchObject({ email: 'pia@example.com', revenue: 19.99, tags: ['embedded'], dealsOpen: 1 });
    expect((await q.listCustomers({ search: 'pia@' })).items).toHaveLength(1);

    const rebuilt = await rebuildProjections({ db: database.db, store, codec, projections, schema: 'crm', reportingSchema: 'reporting', runner });
    expect(rebuilt.names).toHaveLength(projections.length);
    await run({ type: 'RecordPurchase', customerId, orderId: 'p-2', amount: 0.01, currency: 'EUR' });
    await runner.waitForPosition(last, 10_000);
    expect((await q.getCustomer(customerId))!.revenue).toBe(20);

    const replay = await replayInto({ db: database.db, store, codec, projections, schema: 'crm_replay', untilPosition: last });
    const comparison = await compareSchemas(database.db, 'crm', replay.schema, tablesOf(projections));
    expect(comparison.filter((t) => !t.equal)).toEqual([]);
  });

  it('queries answer as on PostgreSQL, though PGlite returns a bigint as a number', async () => {
    await run({
      type: 'SetExchangeRate',
      currency: 'USD',
      rate: '0.9',
      validFrom: '2026-01-01T00:00:00Z',
      baseCurrency: 'EUR',
    });
    const customerId = randomUUID();
    await run({ type: 'RegisterCustomer', customerId, name: 'Lou Lite', email: 'lou@example.com', tags: [] });
    const dealId = randomUUID();
    await run({
      type: 'OpenDeal',
      dealId,
      customerId,
      title: 'Typed',
      amount: 12345.0014,
      currency: 'USD',
      ownerId: 'ann',
      expectedCloseDate: '2026-06-30',
      stage: 'qualified',
    });
    await runner.waitForPosition(last, 10_000);
    const q = createReadModelQueries({ db: database.db, schema: 'crm' });
    const rates = await q.exchangeRates({ currency: 'USD' });
    expect(rates.history).toHaveLength(1);
    expect(typeof rates.history![0]!.position).toBe('string');
    expect(rates.rates[0]).toMatchObject({ rate: 0.9, rateDecimal: '0.9', corrections: 0 });
    expect(await q.getDeal(dealId)).toMatchObject({
      expectedCloseDate: '2026-06-30',
      probability: 0.25,
      weightedAmount: 3086.2504,
      daysInStage: 0,
      revision: 0,
    });
  });

  it('lists names in the order PostgreSQL lists them (a stored key, no collation of the engine)', async () => {
    const idOf = new Map<string, string>();
    for (const [i, name] of NAMES.entries()) {
      const customerId = randomUUID();
      idOf.set(name, customerId);
      await run({ type: 'RegisterCustomer', customerId, name, email: `order${i}@example.com`, tags: ['name-order'] });
    }
    await runner.waitForPosition(last, 10_000);
    const q = createReadModelQueries({ db: database.db, schema: 'crm' });
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await q.listCustomers({ tag: 'name-order', sort: 'name', limit: 4, cursor });
      ids.push(...page.items.map((c) => c.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    expect(ids).toEqual(expectedOrder(idOf));
    // A BI tool reading the reporting view orders them alike.
    const { rows } = await sql<{ customer_id: string }>`SELECT customer_id FROM reporting.customers
      WHERE 'name-order' = ANY(tags) ORDER BY name_sort, customer_id`.execute(database.db);
    expect(rows.map((r) => r.customer_id)).toEqual(expectedOrder(idOf));
  });

  it('lists users and teams in that order too', async () => {
    const userOf = new Map<string, string>();
    const teamOf = new Map<string, string>();
    for (const [i, name] of NAMES.entries()) {
      const userId = randomUUID();
      userOf.set(name, userId);
      await run({ type: 'RegisterUser', userId, name, email: `staff-order${i}@crm.example`, role: 'sales' });
      const teamId = randomUUID();
      teamOf.set(name, teamId);
      await run({ type: 'CreateTeam', teamId, name });
    }
    await runner.waitForPosition(last, 10_000);
    const staff = sql`u.user_id = ANY(${[...userOf.values()]}::uuid[])`;
    expect((await usersWhere(database.db, 'crm', staff)).map((u) => u.user_id)).toEqual(expectedOrder(userOf));
    const teams = new Set(teamOf.values());
    expect((await listTeams(database.db, 'crm')).map((t) => t.team_id).filter((id) => teams.has(id))).toEqual(expectedOrder(teamOf));
  });

  it('lists forgotten customers after every name, both ways, paging through them', async () => {
    const idOf = new Map<string, string>();
    for (const [i, name] of ['1st Avenue', 'Ada', 'Bob', 'Carla', 'Zoe'].entries()) {
      const customerId = randomUUID();
      idOf.set(name, customerId);
      await run({ type: 'RegisterCustomer', customerId, name, email: `erased-order${i}@example.com`, tags: ['name-order-erased'] });
    }
    for (const name of ['Bob', 'Carla']) await run({ type: 'ForgetCustomer', customerId: idOf.get(name)! });
    await runner.waitForPosition(last, 10_000);
    const q = createReadModelQueries({ db: database.db, schema: 'crm' });
    const expected = [...['1st Avenue', 'Ada', 'Zoe'].map((name) => idOf.get(name)!), ...[idOf.get('Bob')!, idOf.get('Carla')!].sort()];
    for (const sort of ['name', '-name']) {
      const ids: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await q.listCustomers({ tag: 'name-order-erased', sort, limit: 1, cursor });
        ids.push(...page.items.map((c) => c.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      expect(ids).toEqual(sort === 'name' ? expected : [...expected].reverse());
    }
  });
});
