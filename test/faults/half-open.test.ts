import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL } from '../support/postgres.ts';
import { startApi, type ApiHarness } from '../api/support.ts';
import { FaultProxy } from './proxy.ts';
import { projected, proxiedUrl, registerThroughFaults, strandedSessions, until } from './sessions.ts';

/**
 * A half-open link between the CRM and PostgreSQL: the CRM's side of a connection is gone (it gave up
 * on a statement that never got an answer) while the server still holds the session, in the middle of
 * a transaction. The session holds its locks and its transaction id until the server ends it; the
 * transaction id alone holds back the feed of every schema in the cluster. The CRM's connections carry
 * `idle_in_transaction_session_timeout`, so the server ends such a session by itself, and the CRM
 * carries on without a restart.
 *
 * Runs on its own (vitest.config.ts): the stranded transaction holds back every other file's feed.
 */
const IDLE_IN_TRANSACTION_MS = 5_000;
/** Generous: the server checks the bound itself, but a loaded 2-core machine delays everything. */
const DROPPED_WITHIN_MS = IDLE_IN_TRANSACTION_MS + 25_000;
const APPLICATION = `crm-half-open-${randomBytes(3).toString('hex')}`;

const proxy = FaultProxy.before(TEST_DATABASE_URL);
const observer = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
let h: ApiHarness;

beforeAll(async () => {
  await proxy.start();
  h = await startApi(
    'half_open',
    {},
    {
      DATABASE_URL: proxiedUrl(TEST_DATABASE_URL, proxy, APPLICATION),
      CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: String(IDLE_IN_TRANSACTION_MS),
      // A dead pooled connection costs a command this bound plus the 1 s silence margin: short, so the
      // test does not wait long for the pool to shed the connections the fault left behind.
      CRM_DB_STATEMENT_TIMEOUT_MS: '2000',
      CRM_RATE_LIMIT: '0',
    },
  );
});
afterAll(async () => {
  // Ends whatever the server still holds through the proxy first: a stranded session's locks would
  // hold up dropping the test's schemas.
  proxy.resetAll();
  await h?.close();
  await proxy.close();
  await observer.end();
});

describe('a half-open link to PostgreSQL', () => {
  it('carries the idle-in-transaction bound on the API pool and the longer long-statement bound on the long-work pool', async () => {
    const shown = async (db: typeof h.database.db) =>
      (await sql<{ t: string }>`SELECT current_setting('idle_in_transaction_session_timeout') AS t`.execute(db)).rows[0]!.t;
    expect(await shown(h.database.db)).toBe(`${IDLE_IN_TRANSACTION_MS / 1_000}s`);
    // A rebuild's transaction may wait between statements as long as one of its statements may run.
    expect(await shown(h.crm.readSide.db)).toBe('10min');
  });

  it('a session stranded in a transaction is ended by the server within the bound; commands and projections carry on by themselves', async () => {
    await projected(h, await registerThroughFaults(h, 'before'));

    // A batch-like transaction on the CRM's pool: the projections' checkpoint rows locked (which
    // gives it a transaction id), then the link goes half-open before its next statement.
    let halfOpenAt = 0;
    // Counted when the link goes half-open: on a loaded machine the server may end the session (the
    // bound this test checks) before the check below runs, and its upstream socket is gone by then.
    let halfOpened = 0;
    const strandedWork = h.database.db
      .transaction()
      .execute(async (trx) => {
        await sql`SELECT name FROM ${sql.table(`${h.schemas.read}.projection_checkpoints`)} FOR UPDATE`.execute(trx);
        proxy.halfOpen();
        halfOpenAt = Date.now();
        halfOpened = proxy.halfOpenConnections;
        await sql`SELECT 1`.execute(trx);
      })
      .then(
        () => 'answered',
        () => 'failed',
      );

    // The server holds the session, with its transaction id. Waited for by that: a projection batch's
    // session stranded by the same fault, before its first write, may show first without one.
    const stranded = await until('the stranded session showing, with its transaction id', 2_000, async () => {
      const found = await strandedSessions(observer, APPLICATION);
      return found.some((session) => session.holdsXid) ? found : undefined;
    });
    // (A projection batch caught mid-transaction by the fault is stranded the same way.)
    expect(stranded.some((session) => session.holdsXid)).toBe(true);
    expect(halfOpened).toBeGreaterThan(0);

    // Meanwhile a customer is registered on a new connection: its event waits behind the stranded transaction.
    const during = await registerThroughFaults(h, 'during');

    await until('the server ending the stranded session', DROPPED_WITHIN_MS, async () =>
      (await strandedSessions(observer, APPLICATION)).length === 0 ? true : undefined,
    );
    const droppedAfterMs = Date.now() - halfOpenAt;
    // The CRM's side gave up on the unanswered statement by itself (statement bound plus margin).
    expect(await strandedWork).toBe('failed');

    const recoveryStarted = Date.now();
    await projected(h, during);
    await projected(h, await registerThroughFaults(h, 'after'));
    console.log(
      `half-open link: the server ended the stranded session ${droppedAfterMs} ms after the link went half-open ` +
        `(idle_in_transaction_session_timeout ${IDLE_IN_TRANSACTION_MS} ms); the read models caught up ${Date.now() - recoveryStarted} ms later`,
    );
  });
});
