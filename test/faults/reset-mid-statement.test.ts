import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_DATABASE_URL } from '../support/postgres.ts';
import { startApi, type ApiHarness } from '../api/support.ts';
import { FaultProxy } from './proxy.ts';
import { projected, proxiedUrl, registerThroughFaults, runningStatements, until } from './sessions.ts';

/**
 * A connection reset while its statement runs on the server (a projection batch or an append caught
 * by the fault). The CRM's side fails at once, but the server learns that its client is gone only
 * when it next reads from or writes to the socket: left alone, the statement runs to its end (up to
 * statement_timeout) with its locks and its transaction id, and that transaction id holds back the
 * event feed of every schema on the server. The CRM's sessions set client_connection_check_interval,
 * so the server ends such a statement within about a second and the projections move on.
 *
 * Runs on its own (vitest.config.ts): the orphaned transaction holds back every other file's feed.
 */
const STATEMENT_S = 20;
/** Well under the statement's own end: the feed must not wait for it. Generous for a loaded 2-core machine. */
const RECOVERED_WITHIN_MS = 10_000;
const APPLICATION = `crm-reset-mid-statement-${randomBytes(3).toString('hex')}`;
const SLEEP = 'SELECT pg_sleep(';

const proxy = FaultProxy.before(TEST_DATABASE_URL);
const observer = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
let h: ApiHarness;

beforeAll(async () => {
  await proxy.start();
  h = await startApi(
    'reset_mid',
    {},
    {
      DATABASE_URL: proxiedUrl(TEST_DATABASE_URL, proxy, APPLICATION),
      // Longer than the statement, so that only the server noticing the lost client ends it early.
      CRM_DB_STATEMENT_TIMEOUT_MS: String((STATEMENT_S + 10) * 1_000),
      CRM_RATE_LIMIT: '0',
    },
  );
});
afterAll(async () => {
  // An orphaned statement left running (the test failed) would hold up dropping the test's schemas.
  await observer.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [APPLICATION]);
  await h?.close();
  await proxy.close();
  await observer.end();
});

describe('a connection reset while its statement runs', () => {
  it('the server ends the statement within about a second, and the projections move on without waiting for its end', async () => {
    await projected(h, await registerThroughFaults(h, 'before'));

    // A long statement in a transaction that holds a transaction id, on the CRM's own pool.
    const orphaned = h.database.db
      .transaction()
      .execute(async (trx) => {
        await sql`SELECT pg_current_xact_id()`.execute(trx);
        await sql.raw(`${SLEEP}${STATEMENT_S})`).execute(trx);
      })
      .then(
        () => 'answered',
        () => 'failed',
      );
    await until('the statement running', 5_000, async () => ((await runningStatements(observer, APPLICATION, SLEEP)).length > 0 ? true : undefined));

    proxy.resetAll();
    const resetAt = Date.now();
    expect(await orphaned).toBe('failed');

    const after = await registerThroughFaults(h, 'after');
    await projected(h, after);
    const recoveredMs = Date.now() - resetAt;
    await until('the server ending the orphaned statement', 5_000, async () =>
      (await runningStatements(observer, APPLICATION, SLEEP)).length === 0 ? true : undefined,
    );
    const endedMs = Date.now() - resetAt;
    console.log(
      `reset mid-statement: the server ended the orphaned ${STATEMENT_S} s statement within ${endedMs} ms; ` +
        `a customer registered after the reset was in the read models ${recoveredMs} ms after it`,
    );
    expect(recoveredMs).toBeLessThan(RECOVERED_WITHIN_MS);
  }, 120_000);
});
