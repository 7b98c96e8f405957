import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { DEFAULT_POOL_TIMEOUTS, holdSessionLock } from '../../eventstore/postgres/database.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { proxiedUrl, until } from '../faults/sessions.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';

/**
 * The session advisory lock that tells other processes a rebuild's shadow or a verification job is
 * alive (`holdSessionLock`), on a real server: taken by polling while another session holds it, given
 * back on release, taken again by itself when its session is lost (the server ends it, or its link goes
 * silent), and never taken again once released. Each lock's session carries an `application_name` of
 * its own, so the test can count the connections it leaves.
 */

const proxy = FaultProxy.before(TEST_DATABASE_URL);
const observer = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
/** Short bounds: a check left unanswered is given up 1 s past the statement bound. */
const timeouts = { ...DEFAULT_POOL_TIMEOUTS, statementMs: 500, lockMs: 200, connectMs: 1_000 };
let locks = 0;
/** A fresh lock key and the URL of its own sessions (through the proxy). */
const nextLock = () => {
  locks += 1;
  const application = `crm_session_lock_${process.pid}_${locks}`;
  return { key: `crm-test-lock:${application}`, application, url: proxiedUrl(TEST_DATABASE_URL, proxy, application) };
};

beforeAll(async () => {
  await proxy.start();
});

afterAll(async () => {
  await proxy.close();
  await observer.end();
});

/** The server process holding the lock (a session advisory lock on an int8 key: low 32 bits in objid). */
const holder = async (key: string): Promise<number | undefined> => {
  const { rows } = await observer.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
        AND objid = ((hashtext($1)::bigint) & 4294967295)::oid AND classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid`,
    [key],
  );
  return rows[0]?.pid;
};

/** Server sessions opened with `application`. */
const sessions = async (application: string): Promise<number> => {
  const { rows } = await observer.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [application]);
  return rows[0]!.n;
};

/**
 * Another process asking for `key` on a session of its own (`pg_advisory_lock` waits while the lock is
 * held): `held` resolves once it has the lock, `release` ends its session.
 */
const anotherProcess = async (key: string) => {
  const other = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await other.connect();
  const pid = (await other.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const held = other.query('SELECT pg_advisory_lock(hashtext($1))', [key]).then(() => pid);
  return { pid, held, release: () => other.end() };
};

/** Whether the server process `pid` waits for a lock. */
const waitsForLock = async (pid: number): Promise<boolean> => {
  const { rows } = await observer.query<{ waiting: boolean }>(`SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`, [pid]);
  return rows[0]?.waiting === true;
};

/** The statement the session opened with `application` runs or ran last. */
const lastStatement = async (application: string): Promise<string | undefined> => {
  const { rows } = await observer.query<{ query: string }>('SELECT query FROM pg_stat_activity WHERE application_name = $1', [application]);
  return rows[0]?.query;
};

describe('a session lock', () => {
  it('is held on a session of its own until released, then free, and releasing twice is harmless', async () => {
    const { key, application, url } = nextLock();
    const release = await holdSessionLock(url, timeouts, key);
    const pid = await holder(key);
    expect(pid).toBeDefined();
    const { rows } = await observer.query<{ application_name: string }>('SELECT application_name FROM pg_stat_activity WHERE pid = $1', [pid]);
    expect(rows).toEqual([{ application_name: application }]);
    await release();
    expect(await holder(key)).toBeUndefined();
    await until('the lock session ended', 5_000, async () => ((await sessions(application)) === 0 ? true : undefined));
    await release();
  });

  it('waits while another process holds it, polling, and is taken the moment that one lets go', async () => {
    const { key, application, url } = nextLock();
    const other = await anotherProcess(key);
    await other.held;
    let taken = false;
    const taking = holdSessionLock(url, timeouts, key).then((release) => ((taken = true), release));
    // It has asked and been refused (the lock is not taken), and waits without an error.
    await until('the lock asked for', 5_000, async () => ((await lastStatement(application))?.includes('pg_try_advisory_lock') ? true : undefined));
    expect(taken).toBe(false);
    expect(await holder(key)).toBe(other.pid);
    await other.release();
    const release = await taking;
    const pid = await holder(key);
    expect(pid).toBeDefined();
    expect(pid).not.toBe(other.pid);
    await release();
  });

  it('an unreachable server is unavailable, naming it, and leaves no connection behind', async () => {
    const { key, application, url } = nextLock();
    proxy.refuse();
    try {
      const error = await holdSessionLock(url, timeouts, key).then(
        () => new Error('expected the lock to fail'),
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(EventStoreUnavailable);
      expect((error as Error).message).toMatch(new RegExp(`^Cannot reach PostgreSQL at postgres://127\\.0\\.0\\.1:${proxy.port}/`));
    } finally {
      proxy.pass();
    }
    expect(await sessions(application)).toBe(0);
  });

  it('is taken again on a new session when the server ends its session, until it is released', async () => {
    const { key, url } = nextLock();
    const release = await holdSessionLock(url, timeouts, key);
    try {
      const first = await holder(key);
      await observer.query('SELECT pg_terminate_backend($1)', [first]);
      const second = await until('the lock taken again', 10_000, async () => {
        const pid = await holder(key);
        return pid !== undefined && pid !== first ? pid : undefined;
      });
      // Lost again: taken again again (the backoff was reset by the retake).
      await observer.query('SELECT pg_terminate_backend($1)', [second]);
      await until('the lock taken a third time', 10_000, async () => {
        const pid = await holder(key);
        return pid !== undefined && pid !== second ? true : undefined;
      });
    } finally {
      await release();
    }
    expect(await holder(key)).toBeUndefined();
  }, 30_000);

  it('released while it waits to take the lock back from another process: it stops waiting, and never takes it', async () => {
    const { key, application, url } = nextLock();
    const release = await holdSessionLock(url, timeouts, key);
    const first = (await holder(key))!;
    // Another process queues for the key, so it gets it the moment the lock's session ends.
    const other = await anotherProcess(key);
    try {
      await until('the other process waits for the lock', 5_000, async () => ((await waitsForLock(other.pid)) ? true : undefined));
      await observer.query('SELECT pg_terminate_backend($1)', [first]);
      expect(await other.held).toBe(other.pid);
      // The lock's new session polls for the key.
      await until('a new session asks for the lock', 10_000, async () =>
        (await lastStatement(application))?.includes('pg_try_advisory_lock') ? true : undefined,
      );
      await release();
      await until('the polling session ended', 5_000, async () => ((await sessions(application)) === 0 ? true : undefined));
    } finally {
      await other.release();
    }
    // The key is free now and stays so: no later attempt of the released lock takes it (a retake
    // would come within the backoff, 100 ms at this point; absence cannot be polled for).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await holder(key)).toBeUndefined();
    expect(await sessions(application)).toBe(0);
  }, 30_000);

  it('is taken again on a new connection when its link goes silent (found by its check, not minutes later by TCP)', async () => {
    const { key, url } = nextLock();
    // A statement bound of 1 s: a check left unanswered is given up 2 s after it asked.
    const release = await holdSessionLock(url, { ...timeouts, statementMs: 1_000 }, key);
    try {
      const first = await holder(key);
      expect(first).toBeDefined();
      proxy.stallOpen();
      const stalled = Date.now();
      // The check runs every 5 s.
      await until('the lock held by a new session', 15_000, async () => {
        const pid = await holder(key);
        return pid !== undefined && pid !== first ? true : undefined;
      });
      console.log(`session lock held by a new session ${Date.now() - stalled} ms after its link went silent`);
    } finally {
      proxy.pass();
      await release();
    }
    expect(await holder(key)).toBeUndefined();
  }, 30_000);
});
