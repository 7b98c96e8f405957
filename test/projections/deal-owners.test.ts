import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listActivities, type ActivityListQuery } from '../../projections/queries/activities.ts';
import type { ReadModelSource } from '../../projections/queries/page.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { activitiesProjection, readModelProjections } from '../../projections/read-models/index.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, expectReplaysEqualLive, projectAll, rebuildingRunner, type Harness } from './support.ts';

/**
 * `deal_owner_id`: the owner of the deal an activity was logged on, kept on the activity so that an
 * owner's scope pages its activities through indexes (projections/read-models/deal-owners.ts). The
 * lists a scope sees must be the records the scope rule names (assigned to, on a customer owned by, or
 * on a deal owned by one of its users), whatever order the deal's and the activity's events arrive in,
 * live, replayed in any batches, and while the previous version's tables are rebuilt.
 */
let h: Harness;
let runner: ProjectionRunner;
const projections = readModelProjections();
const [ann, bob, cat, dan] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
const customerId = randomUUID();
const dealId = randomUUID();
const laterDealId = randomUUID();
const activity: Record<string, string> = {};
const source = (schema: string): ReadModelSource => ({ db: h.database.db, schema });

beforeAll(async () => {
  h = await createHarness('deal_owners');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
  for (const [i, userId] of [ann, bob, cat, dan].entries())
    await h.run({ type: 'RegisterUser', userId, name: `User ${i}`, email: `u${i}@crm.example`, role: 'sales' });
  // Cat owns the account; Ann owns a deal on it; Dan is assigned one task.
  await h.run({ type: 'RegisterCustomer', customerId, name: 'Ada', email: 'ada@example.com', ownerId: cat });
  const open = (id: string, ownerId: string) =>
    h.run({ type: 'OpenDeal', dealId: id, customerId, title: 'Renewal', amount: 100, currency: 'EUR', ownerId, expectedCloseDate: '2026-06-30' });
  await open(dealId, ann);
  const log = async (name: string, fields: Record<string, unknown>) => {
    activity[name] = (await h.run({ type: 'LogActivity', kind: 'task', subject: name, dueAt: '2026-03-01T00:00:00.000Z', ...fields })).id;
  };
  await log('on the deal', { dealId });
  await log('on the account', { customerId });
  await log("Dan's, on the deal", { dealId, assigneeId: dan });
  // The deal moves to Bob after its activities were logged: they follow it.
  await h.run({ type: 'ChangeDeal', dealId, ownerId: bob });
  // A deal opened, given an activity and moved again in quick succession (one batch in a catch-up).
  await open(laterDealId, ann);
  await log('on the later deal', { dealId: laterDealId });
  await h.run({ type: 'ChangeDeal', dealId: laterDealId, ownerId: dan });
  await runner.waitForPosition(h.lastPosition(), 30_000);
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

/** The subjects a scope sees in a list, in every order the list offers. */
const seen = async (schema: string, owners: string[], query: ActivityListQuery = {}): Promise<string[]> => {
  const orders = ['-occurredAt', 'occurredAt', 'dueAt', '-dueAt'].map(async (sort) => {
    const subjects: string[] = [];
    let cursor: string | undefined;
    do {
      // Pages of one: the merge of per-owner ranges must hold across cursors.
      const page = await listActivities(source(schema), { ...query, sort, limit: 1, ...(cursor ? { cursor } : {}) }, { owners } satisfies ReadScope);
      subjects.push(...page.items.map((a) => a.subject));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return subjects.sort();
  });
  const all = await Promise.all(orders);
  for (const other of all.slice(1)) expect(other).toEqual(all[0]);
  return all[0]!;
};

const EXPECTED: [string, string[], string[]][] = [
  ['Ann (her deals moved away)', [ann], []],
  ['Bob (owns the deal now)', [bob], ["Dan's, on the deal", 'on the deal']],
  ['Cat (owns the account)', [cat], ["Dan's, on the deal", 'on the account', 'on the deal', 'on the later deal']],
  ['Dan (assigned one, owns the later deal)', [dan], ["Dan's, on the deal", 'on the later deal']],
  ['a team of Ann and Bob', [ann, bob], ["Dan's, on the deal", 'on the deal']],
];

describe('activities follow the owner of their deal', () => {
  it.each(EXPECTED)('%s', async (_, owners, expected) => {
    expect(await seen(h.schemas.read, owners)).toEqual(expected);
    expect(await seen(h.schemas.read, owners, { open: true })).toEqual(expected);
  });

  it('the stored column is the deal owner, and a replay in any batches stores the same rows', async () => {
    const { rows } = await sql<{ subject: string; deal_owner_id: string | null }>`SELECT subject, deal_owner_id FROM ${sql.id(h.schemas.read, 'activities')}
      ORDER BY subject`.execute(h.database.db);
    expect(rows).toEqual([
      { subject: "Dan's, on the deal", deal_owner_id: bob },
      { subject: 'on the account', deal_owner_id: null },
      { subject: 'on the deal', deal_owner_id: bob },
      { subject: 'on the later deal', deal_owner_id: dan },
    ]);
    await expectReplaysEqualLive(h, [activitiesProjection], activitiesProjection.tables);
  });
});

describe('upgrade from version 2 (no deal_owner_id)', () => {
  it('lists the same from the old tables before the rebuild and from the rebuilt ones after', async () => {
    const schema = `${h.schemas.read}_v2`;
    await projectAll(h, schema, projections);
    await sql`DROP TABLE ${sql.id(schema, 'activity_deal_owners')}`.execute(h.database.db);
    await sql`ALTER TABLE ${sql.id(schema, 'activities')} DROP COLUMN deal_owner_id`.execute(h.database.db);
    await sql`UPDATE ${sql.id(schema, 'projection_checkpoints')} SET version = 2 WHERE name = 'activities'`.execute(h.database.db);
    for (const [label, owners, expected] of EXPECTED) expect(await seen(schema, owners), label).toEqual(expected);

    const second = rebuildingRunner(h, schema, `${h.schemas.read}_v2rep`, projections);
    await second.start();
    try {
      await second.waitForPosition(h.lastPosition(), 30_000);
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schema, 'activities')} WHERE deal_owner_id IS NOT NULL`.execute(
        h.database.db,
      );
      expect(rows[0]!.n).toBe(3);
      for (const [label, owners, expected] of EXPECTED) expect(await seen(schema, owners), label).toEqual(expected);
    } finally {
      await second.stop();
    }
  });
});
