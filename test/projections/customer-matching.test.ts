import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { createPostgresEventStore, openPglite, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { listCustomers } from '../../projections/queries/customers.ts';
import { searchFormOf } from '../../projections/read-models/match-keys.ts';
import { groupsByNormalisingEveryCustomer, likelyDuplicates } from '../../projections/queries/duplicates.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { dropSchema, replayInto } from '../../projections/rebuild.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import type { EventCodec } from '../../projections/apply-batch.ts';
import { createHarness, tableRows } from './support.ts';

/**
 * Finding customers by what identifies them. The duplicates report reads match keys the projection keeps. Before them it normalised every
 * customer on each request, and still does while the previous version's tables serve during the
 * rebuild that adds the keys: that is the reference. On a data set made to hit its edges (case,
 * spaces, punctuation, word order, short phones, statuses, contact changes moving a customer between
 * groups, a merge, a forget) both must give the same groups, on PostgreSQL and on the embedded
 * engine, and a replay must rebuild the same groups table.
 */
const byTheFormerDefinition = async (db: SqlDatabase['db'], schema: string, scope?: ReadScope): Promise<[string, string[]][]> =>
  (await groupsByNormalisingEveryCustomer({ db, schema }, 500, scope)).map((g) => [g.reason, g.ids]);

type Run = (command: Record<string, unknown> & { type: string }) => Promise<unknown>;

/** Customers registered one after another (business time advances), then moved between groups. */
async function history(run: Run): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  const register = async (label: string, name: string, email: string, phone?: string) => {
    ids[label] = randomUUID();
    await run({ type: 'RegisterCustomer', customerId: ids[label], name, email, allowDuplicate: true, ...(phone ? { phone } : {}) });
  };
  await register('ada', 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0001');
  await register('ada2', 'lovelace,  ADA', 'ADA@Example.com');
  await register('charles', 'Charles Babbage', 'charles@example.com', '+44 (20) 7946-0001');
  await register('charles2', 'Charles Babbage!', 'cb@example.com', '12345');
  await register('short', 'Short Phone', 'short@example.com', '12-345');
  await register('emile', 'Émile Zola', 'ez@example.com', '0612345678');
  await register('emile2', 'zola émile', 'emile@example.com', '06 12 34 56 78');
  await register('grace', 'Grace Hopper', 'grace@example.com');
  await register('grace2', 'Grace  Hopper', 'grace2@example.com');
  await register('grace3', 'Grace Hopper', 'grace3@example.com');
  // Invisible characters pasted into a name hide nothing: a zero-width space and a word joiner.
  await register('grace4', 'Gr\u200bace Hop\u2060per', 'grace4@example.com');
  await register('grace5', 'Gra\u034fce Hopper\ufe0f', 'grace5@example.com');
  await register('alan', 'Alan Turing', 'alan@example.com');
  await register('alan2', 'Alan Turing', 'turing@example.com', '0123456789');
  await register('kurt', 'Kurt Gödel', 'kurt@example.com', '0123456789');
  await register('ada3', 'Ada Lovelace', 'countess@example.com');
  // Devanagari's vowel signs are marks, part of the words: Ram and Rima Sharma are two people.
  await register('ram', 'राम शर्मा', 'ram@example.in');
  await register('rima', 'रीमा शर्मा', 'rima@example.in');
  await register('ram2', 'शर्मा, राम', 'ram.sharma@example.in');
  // Accents are kept, typed whole or apart; superscript digits are digits.
  await register('jose', 'José Núñez²', 'jose@example.es');
  await register('jose2', 'Nu\u0301n\u0303ez\u00b2 Jose\u0301', 'jnunez@example.es');
  await register('jose3', 'Jose Nunez²', 'jose.nunez@example.es');
  // For the search by email: a local part ending the same, a longer domain, a wildcard character, a name holding '@'.
  await register('xc33', 'Bob @ Home', 'xc33@example.com');
  await register('c33', 'Carla Tee', 'c33@example.com.au');
  await register('underscore', 'Una Score', 'c_3@example.com');
  await register('cx3', 'Cy Three', 'cx3@example.com');
  // Inactive customers are still compared; merged and forgotten ones are not.
  await run({ type: 'DeactivateCustomer', customerId: ids.grace });
  await run({ type: 'ForgetCustomer', customerId: ids.grace3 });
  await run({ type: 'MergeCustomer', customerId: ids.ada, duplicateId: ids.ada3 });
  // Contact changes: Alan leaves the Turing name group (dissolving it) for the Babbage one; Kurt's phone goes.
  await run({ type: 'ChangeCustomerDetails', customerId: ids.alan, name: 'babbage charles' });
  await run({ type: 'ChangeCustomerDetails', customerId: ids.kurt, phone: null });
  await run({ type: 'ChangeCustomerDetails', customerId: ids.short, email: 'CHARLES@example.com' });
  return ids;
}

/** What the report answers, as [reason, ids] (its customers' details come from the same rows either way). */
const reported = async (db: SqlDatabase['db'], schema: string, scope?: ReadScope) =>
  (await likelyDuplicates({ db, schema }, { limit: 500 }, scope)).items.map((g): [string, string[]] => [g.reason, g.customers.map((c) => c.id)]);

/**
 * `search` finds a part of the name or the email; a search holding '@' is looked up through the end of
 * the email's local part. Either way it must find what a plain substring test finds.
 */
async function expectSearchFindsEveryMatch(db: SqlDatabase['db'], schema: string, ids: Record<string, string>): Promise<void> {
  const everyone = (await listCustomers({ db, schema }, { limit: 500 })).items;
  const searches = [
    'lovelace',
    'Grace H',
    'zola',
    'c3',
    'example.com.au',
    'c33@example.com',
    'C33@EXAMPLE.COM',
    'c33@',
    'c_3@',
    '_3@example',
    'b @ h',
    '@example.com.au',
    'xc33@example.com',
    'ada@',
    'nobody@example.com',
  ];
  for (const search of searches) {
    const found = (await listCustomers({ db, schema }, { search, limit: 500 })).items.map((c) => c.id);
    // Names as a search compares them: in any case, without invisible characters (a pasted zero-width space hides nothing).
    const text = searchFormOf(search);
    const expected = everyone.filter((c) => searchFormOf(c.name).includes(text) || c.email.toLowerCase().includes(text)).map((c) => c.id);
    expect(found, search).toEqual(expected);
  }
  // The data set does reach every branch: the local part's end, a longer domain, a name, a literal '_'.
  const found = async (search: string) => (await listCustomers({ db, schema }, { search, limit: 500 })).items.map((c) => c.id).sort();
  expect(await found('c33@example.com')).toEqual([ids.xc33, ids.c33].sort());
  expect(await found('b @ h')).toEqual([ids.xc33]);
  expect(await found('c_3@')).toEqual([ids.underscore]);
  expect(await found('LOVELACE')).toEqual([ids.ada, ids.ada2, ids.ada3].sort());
  // A name holding a zero-width space and a word joiner is found by its letters.
  expect(await found('grace hopper')).toContain(ids.grace4);
}

/** The same answers from the keys as from the former definition, unrestricted, in pages, and for an owner. */
async function expectSameAnswers(db: SqlDatabase['db'], schema: string, ids: Record<string, string>): Promise<void> {
  const expected = await byTheFormerDefinition(db, schema);
  // The data set does make groups of each reason, so the comparison means something.
  expect(expected).toEqual(
    expect.arrayContaining([
      ['email', [ids.ada, ids.ada2]],
      ['email', [ids.charles, ids.short]],
      ['phone', [ids.ada, ids.charles]],
      ['phone', [ids.emile, ids.emile2]],
      ['name', [ids.ada, ids.ada2]],
      ['name', [ids.charles, ids.charles2, ids.alan]],
      ['name', [ids.emile, ids.emile2]],
      ['name', [ids.grace, ids.grace2, ids.grace4, ids.grace5]],
      ['name', [ids.ram, ids.ram2]],
      ['name', [ids.jose, ids.jose2]],
    ]),
  );
  expect(expected).toHaveLength(10);
  expect(await reported(db, schema)).toEqual(expected);
  expect((await likelyDuplicates({ db, schema }, { limit: 3 })).items.map((g) => [g.reason, g.customers.map((c) => c.id)])).toEqual(expected.slice(0, 3));
  // Restricted to an owner's customers, groups are formed among those only.
  const owner = randomUUID();
  const owned = [ids.ada, ids.charles, ids.charles2, ids.emile, ids.emile2, ids.grace];
  await sql`UPDATE ${sql.id(schema, 'customers')} SET owner_id = ${owner}::uuid WHERE customer_id = ANY(CAST(${owned} AS uuid[]))`.execute(db);
  const scope = { owners: [owner] };
  const expectedInScope = await byTheFormerDefinition(db, schema, scope);
  expect(expectedInScope.length).toBeGreaterThan(0);
  expect(await reported(db, schema, scope)).toEqual(expectedInScope);
}

describe('the duplicates report on PostgreSQL', () => {
  const projections = readModelProjections();
  let h: Awaited<ReturnType<typeof createHarness>>;
  let runner: ProjectionRunner;
  beforeAll(async () => {
    h = await createHarness('duplicate_keys');
    runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec });
    await runner.start();
  });
  afterAll(async () => {
    await runner?.stop();
    await h?.close();
  });

  it('finds the groups the former definition found, a replay rebuilds the same groups, and a search finds every match', async () => {
    const ids = await history(h.run);
    await runner.waitForPosition(h.lastPosition(), 10_000);
    const schema = `${h.schemas.read}_replay`;
    try {
      await replayInto({ db: h.database.db, store: h.store, codec: h.codec, projections, schema, untilPosition: h.lastPosition() });
      expect(await tableRows(h.database, schema, 'customer_duplicate_groups')).toEqual(
        await tableRows(h.database, h.schemas.read, 'customer_duplicate_groups'),
      );
    } finally {
      await dropSchema(h.database.db, schema);
    }
    await expectSameAnswers(h.database.db, h.schemas.read, ids);
    await expectSearchFindsEveryMatch(h.database.db, h.schemas.read, ids);
  });

  it("keeps answering while the previous version's tables, without the keys, serve (last: it drops them)", async () => {
    const source = { db: h.database.db, schema: h.schemas.read };
    const before = await likelyDuplicates(source, { limit: 500 });
    expect(before.items.length).toBeGreaterThan(0);
    await sql`DROP TABLE ${sql.id(h.schemas.read, 'customer_duplicate_groups')}`.execute(h.database.db);
    await sql`ALTER TABLE ${sql.id(h.schemas.read, 'customers')} DROP COLUMN email_key, DROP COLUMN phone_key, DROP COLUMN name_key`.execute(h.database.db);
    expect(await likelyDuplicates(source, { limit: 500 })).toEqual(before);
  });
});

describe('the duplicates report on the embedded engine (PGlite)', () => {
  const projections = readModelProjections();
  let database: SqlDatabase;
  let store: EventStore;
  let codec: EventCodec;
  let runner: ProjectionRunner;
  let last = 0n;
  let run: Run;
  beforeAll(async () => {
    database = await openPglite();
    store = await createPostgresEventStore(database, { schema: 'events' });
    const personalData = await createPersonalData(database.db, { schema: 'events' });
    codec = personalDataCodec(personalData);
    const commands = createCrmCommands({ store, personalData });
    run = async (command) => {
      const result = await commands.execute(command, { actor: { userId: 'ann', roles: ['sales'] }, correlationId: randomUUID() });
      if (result.position > last) last = result.position;
    };
    runner = new ProjectionRunner({ db: database.db, store, schema: 'crm', projections, codec });
    await runner.start();
  });
  afterAll(async () => {
    await runner?.stop();
    await store?.close();
    await database?.close();
  });

  it('finds the groups the former definition found, and every customer a search matches', async () => {
    const ids = await history(run);
    await runner.waitForPosition(last, 10_000);
    await expectSameAnswers(database.db, 'crm', ids);
    await expectSearchFindsEveryMatch(database.db, 'crm', ids);
  });
});
