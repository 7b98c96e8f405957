import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeUserRoleIn, loadUserViewer } from '../../api/auth/viewer.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { readLeaseHolders } from '../../projections/leases.ts';
import { userWithAddress } from '../../projections/queries/users.ts';
import { createTeamReportingRole, ReportingRoleError } from '../../projections/reporting-roles.ts';
import { ensureSchema, isMissingColumn, isMissingTable } from '../../shared/sql.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * "The read models are not created yet", said one way: what PostgreSQL answers a statement on a table
 * that a fresh schema does not hold, and the reads that run before the projections have made them.
 */

const schemas = testSchemas('sql');
const database = connectPostgres(schemas.url, { max: 2 });
/** Created and empty, as on a fresh start before the projections ran. */
const fresh = schemas.read;

const failureOf = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => {
      throw new Error('expected the statement to fail');
    },
    (error: unknown) => error,
  );

beforeAll(async () => {
  await ensureSchema(database.db, fresh);
  await sql`CREATE TABLE ${sql.id(fresh, 'teams')} (team_id uuid PRIMARY KEY)`.execute(database.db);
});

afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

describe('a statement on a table that does not exist', () => {
  it('is recognised as a missing table, and as nothing else', async () => {
    const error = await failureOf(sql`SELECT user_id FROM ${sql.id(fresh, 'users')}`.execute(database.db));
    expect(isMissingTable(error)).toBe(true);
    expect(isMissingColumn(error)).toBe(false);
  });

  it('a missing column, a syntax error or a failure without a SQLSTATE is not a missing table', async () => {
    const column = await failureOf(sql`SELECT name FROM ${sql.id(fresh, 'teams')}`.execute(database.db));
    expect(isMissingColumn(column)).toBe(true);
    expect(isMissingTable(column)).toBe(false);
    const syntax = await failureOf(sql`SELEC 1`.execute(database.db));
    expect(isMissingTable(syntax)).toBe(false);
    for (const other of [new Error('relation "users" does not exist'), { code: 42 }, '42P01', null, undefined]) expect(isMissingTable(other)).toBe(false);
  });
});

describe('reads before the read models exist', () => {
  it('know no user, no address and no lease holder, and refuse a reporting role with a reason', async () => {
    const userId = randomUUID();
    expect(await loadUserViewer(database.db, fresh, userId)).toBeUndefined();
    expect(await activeUserRoleIn(database.db, fresh, userId)).toBeUndefined();
    expect(await userWithAddress(database.db, fresh, 'nobody@crm.example')).toBeUndefined();
    expect(await readLeaseHolders(database.db, fresh)).toEqual(new Map());
    // `teams` exists here: the schema without it is another fresh one.
    const bare = `${schemas.read}_bare`;
    await ensureSchema(database.db, bare);
    const refusal = await failureOf(
      createTeamReportingRole(database.db, { readSchema: bare, reportingSchema: schemas.reporting, teamId: randomUUID(), role: 't_sql_role' }),
    );
    expect(refusal).toBeInstanceOf(ReportingRoleError);
    expect((refusal as Error).message).toMatch(/not created yet/);
  });

  it('still fail on any other error (a column missing from a table that exists)', async () => {
    // `teams` has no `name` here: not "not created yet", so the refusal is not the friendly one.
    const refusal = await failureOf(
      createTeamReportingRole(database.db, { readSchema: fresh, reportingSchema: schemas.reporting, teamId: randomUUID(), role: 't_sql_role' }),
    );
    expect(refusal).not.toBeInstanceOf(ReportingRoleError);
    expect(isMissingColumn(refusal)).toBe(true);
  });
});
