import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres } from '../../eventstore/postgres/index.ts';
import { addCounts, insertRows, RowSet, type TableSpec } from '../../projections/read-models/rows.ts';
import type { SqlDatabase } from '../../shared/sql.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

type Account = { account_id: string; name: string; balance: string; opened_on: string | null };
const ACCOUNTS: TableSpec<Account> = {
  table: 'accounts',
  key: 'account_id',
  columns: ['account_id', 'name', 'balance', 'opened_on'],
};

let schemas: TestSchemas;
let database: SqlDatabase;
const live = () => `${schemas.read}`;
const shadow = () => `${schemas.read}_shadow`;

beforeAll(async () => {
  schemas = testSchemas('rows');
  database = connectPostgres(schemas.url);
  for (const schema of [live(), shadow()]) {
    await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(database.db);
    await sql`CREATE TABLE ${sql.id(schema, 'accounts')} (account_id text PRIMARY KEY, name text NOT NULL, balance numeric NOT NULL, opened_on date)`.execute(
      database.db,
    );
  }
});

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

const rowsOf = async (schema: string) =>
  (
    await sql<Account>`SELECT account_id, name, balance::text AS balance, opened_on::text AS opened_on FROM ${sql.id(schema, 'accounts')} ORDER BY account_id`.execute(
      database.db,
    )
  ).rows;

describe('read-model rows (statements made once per table and schema)', () => {
  it('writes, reads back and updates each schema through its own statements', async () => {
    // The same spec in two schemas, used alternately: each write lands in its own schema.
    for (const [schema, name] of [
      [live(), 'Live'],
      [shadow(), 'Shadow'],
    ] as const) {
      const set = new RowSet(database.db, schema, ACCOUNTS);
      await set.load(['a-1']);
      expect(set.get('a-1')).toBeUndefined();
      set.put({ account_id: 'a-1', name, balance: '10.50', opened_on: '2026-02-28' });
      set.put({ account_id: "a-'2", name: `${name} "quoted"`, balance: '0', opened_on: null });
      await set.flush();
    }
    expect(await rowsOf(live())).toEqual([
      { account_id: "a-'2", name: 'Live "quoted"', balance: '0', opened_on: null },
      { account_id: 'a-1', name: 'Live', balance: '10.50', opened_on: '2026-02-28' },
    ]);
    expect((await rowsOf(shadow())).map((r) => r.name)).toEqual(['Shadow "quoted"', 'Shadow']);

    const again = new RowSet(database.db, live(), ACCOUNTS);
    await again.load(['a-1', 'missing']);
    const row = again.get('a-1')!;
    expect(row).toEqual({ account_id: 'a-1', name: 'Live', balance: '10.50', opened_on: '2026-02-28' });
    row.balance = '12.00';
    again.touch('a-1');
    await again.flush();
    expect((await rowsOf(live())).find((r) => r.account_id === 'a-1')?.balance).toBe('12.00');
    expect((await rowsOf(shadow())).find((r) => r.account_id === 'a-1')?.balance).toBe('10.50');
  });

  it('inserts append-only rows, and a duplicate key fails loudly', async () => {
    await insertRows(database.db, shadow(), ACCOUNTS, [{ account_id: 'b-1', name: 'B', balance: '1', opened_on: null }]);
    expect((await rowsOf(shadow())).map((r) => r.account_id)).toContain('b-1');
    await expect(insertRows(database.db, shadow(), ACCOUNTS, [{ account_id: 'b-1', name: 'B', balance: '1', opened_on: null }])).rejects.toMatchObject({
      code: '23505',
    });
  });

  it('adds counts to the stored ones, inserts new keys and deletes a row whose count comes to 0', async () => {
    const schema = live();
    await sql`CREATE TABLE ${sql.id(schema, 'tallies')} (tally_id text PRIMARY KEY, label text, n integer NOT NULL)`.execute(database.db);
    const TALLIES: TableSpec<{ tally_id: string; label: string; n: number }> = { table: 'tallies', key: 'tally_id', columns: ['tally_id', 'label', 'n'] };
    const tallies = async () =>
      (await sql<{ tally_id: string; n: number }>`SELECT tally_id, n FROM ${sql.id(schema, 'tallies')} ORDER BY tally_id`.execute(database.db)).rows;
    await addCounts(database.db, schema, TALLIES, 'n', [
      { tally_id: 'x', label: 'X', n: 2 },
      { tally_id: 'y', label: 'Y', n: 1 },
    ]);
    await addCounts(database.db, schema, TALLIES, 'n', [
      { tally_id: 'x', label: 'X', n: 3 },
      { tally_id: 'y', label: 'Y', n: -1 },
      { tally_id: 'z', label: 'Z', n: 4 },
    ]);
    expect(await tallies()).toEqual([
      { tally_id: 'x', n: 5 },
      { tally_id: 'z', n: 4 },
    ]);
  });
});
