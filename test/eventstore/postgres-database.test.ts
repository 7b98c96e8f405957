import { createServer, Socket, type Server } from 'node:net';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import type { EventStore, RecordedEvent } from '../../eventstore/contract.ts';
import { toProblem } from '../../api/errors.ts';
import { EventStoreUnavailable, OutcomeUnknown } from '../../eventstore/errors.ts';
import { connectPostgres, DEFAULT_POOL_TIMEOUTS, isConnectionError, toUnavailable, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { channelFor } from '../../eventstore/postgres/wakeup.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { FaultProxy } from '../faults/proxy.ts';
import { proxiedUrl } from '../faults/sessions.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { newEvent } from './contract.ts';

/**
 * The PostgreSQL handle as callers meet its failures: a statement over its bound, a connection lost
 * mid-statement, a link that stalls without a word, an unreachable server, and the LISTEN connection
 * lost under a live subscription. Real server throughout; a small TCP relay plays the stalled link.
 */

const schemas = testSchemas('es_pg_db');
const database = connectPostgres(schemas.url, { max: 4 });
const opened: SqlDatabase[] = [];
const open = (url: string, options: Parameters<typeof connectPostgres>[1] = {}): SqlDatabase => {
  const handle = connectPostgres(url, options);
  opened.push(handle);
  return handle;
};
let created = 0;
const nextSchema = (): string => `${schemas.events}_${(created += 1)}`;

/** Real faults on the way to the server (test/faults/proxy.ts), one proxy per test that needs them. */
const proxies: FaultProxy[] = [];
let applications = 0;
/**
 * A proxy to the test server, a URL through it whose sessions carry an application_name of their own,
 * and a count of those sessions on the server.
 */
const faultyLink = async () => {
  const proxy = FaultProxy.before(TEST_DATABASE_URL);
  await proxy.start();
  proxies.push(proxy);
  applications += 1;
  const application = `crm_es_pg_db_${process.pid}_${applications}`;
  const sessions = async (): Promise<number> => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${application}`.execute(database.db);
    return rows[0]!.n;
  };
  /** The statement each of those sessions runs or ran last. */
  const statements = async (): Promise<string[]> => {
    const { rows } = await sql<{ query: string }>`SELECT query FROM pg_stat_activity WHERE application_name = ${application}`.execute(database.db);
    return rows.map((row) => row.query);
  };
  return { proxy, url: proxiedUrl(TEST_DATABASE_URL, proxy, application), sessions, statements };
};

afterAll(async () => {
  for (const handle of opened) await handle.close();
  await database.close();
  for (const proxy of proxies) await proxy.close();
  await schemas.dropSchemas();
});

const caught = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: unknown) => error,
  );

const until = async (what: string, check: () => boolean | Promise<boolean>, withinMs = 10_000): Promise<void> => {
  const deadline = Date.now() + withinMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

/** A TCP relay to the test server whose traffic can be held (a link that stalls without closing). */
const relay = async (): Promise<{ url: string; hold(): void; pass(): void; accepted(): number; close(): Promise<void> }> => {
  const target = new URL(TEST_DATABASE_URL);
  let held = false;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted += 1;
    const upstream = new Socket();
    upstream.connect(Number(target.port || '5432'), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => held || upstream.write(chunk));
    upstream.on('data', (chunk) => held || client.write(chunk));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const url = new URL(TEST_DATABASE_URL);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    hold: () => (held = true),
    pass: () => (held = false),
    accepted: () => accepted,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
};

describe('failures typed for callers', () => {
  it('tells connection failures from statement errors, by code or by message', () => {
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']) {
      expect(isConnectionError(Object.assign(new Error('failed'), { code }))).toBe(true);
    }
    for (const code of ['08000', '08003', '08006', '08001', '08004', '28000', '28P01', '3D000', '53300', '57P01', '57P02', '57P03']) {
      expect(isConnectionError(Object.assign(new Error('failed'), { code }))).toBe(true);
    }
    for (const message of [
      'Connection terminated unexpectedly',
      'timeout exceeded when trying to connect',
      'Query read timeout',
      'did not answer within 10 ms',
    ]) {
      expect(isConnectionError(new Error(message))).toBe(true);
    }
    expect(isConnectionError('Connection terminated')).toBe(true);
    expect(isConnectionError(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isConnectionError(Object.assign(new Error('failed'), { code: 8000 }))).toBe(false);
    expect(isConnectionError(null)).toBe(false);
  });

  it('names the server, the code and what to check, and says whether a statement may have committed', () => {
    const refused = toUnavailable(
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6543'), { code: 'ECONNREFUSED' }),
      'postgres://u:secret@db.example:6543/crm',
    );
    expect(refused).toBeInstanceOf(EventStoreUnavailable);
    expect(refused).not.toBeInstanceOf(OutcomeUnknown);
    expect((refused as Error).message).toBe(
      'Cannot reach PostgreSQL at postgres://db.example:6543/crm (ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:6543). ' +
        'Check DATABASE_URL (host, port, user, password, database name) and that PostgreSQL is running (pg_isready).',
    );
    expect((refused as Error).cause).toBeInstanceOf(Error);
    // The password never appears; the default port is named; an unparsable URL is not echoed.
    expect((toUnavailable(new Error('Connection terminated'), 'postgres://u:secret@db.example/crm') as Error).message).toMatch(
      /^Cannot reach PostgreSQL at postgres:\/\/db\.example:5432\/crm \(Connection terminated\)\. /,
    );
    expect((toUnavailable(new Error('Connection terminated'), 'not a url: secret') as Error).message).toMatch(/^Cannot reach PostgreSQL at \(not a URL\) \(/);
    // A password holding '/' (or starting with it) ends the URL parser's authority early: still never shown.
    for (const url of [
      'postgres://u:/hunter2@db.example:6543/crm',
      'postgres://u:12/hunter2@db.example:6543/crm',
      'postgres://u:hun/ter2@db.example:6543/crm',
    ]) {
      const message = (toUnavailable(new Error('Connection terminated'), url) as Error).message;
      expect(message).toMatch(/^Cannot reach PostgreSQL at postgres:\/\/db\.example:6543\/crm \(/);
      expect(message).not.toMatch(/hun|ter2/);
    }

    const lost = toUnavailable(Object.assign(new Error('terminating connection'), { code: '57P01' }), 'postgres://db.example:6543/crm', 'statement');
    expect(lost).toBeInstanceOf(OutcomeUnknown);
    expect((lost as Error).message).toBe(
      'Lost the connection to PostgreSQL at postgres://db.example:6543/crm while a statement was running (57P01: terminating connection); it may or may not have committed.',
    );
    expect((toUnavailable(new Error('Connection terminated'), 'postgres://db.example/crm', 'statement') as Error).message).toContain(
      'while a statement was running (Connection terminated); it may',
    );

    const timedOut = toUnavailable(
      Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' }),
      'postgres://db.example/crm',
      'statement',
    );
    expect(timedOut).toBeInstanceOf(EventStoreUnavailable);
    expect(timedOut).not.toBeInstanceOf(OutcomeUnknown);
    expect((timedOut as Error).message).toBe(
      'PostgreSQL at postgres://db.example:5432/crm is busy: a lock is held or a statement ran too long (55P03: canceling statement due to lock timeout); nothing was committed, retry.',
    );
    // The server's own error stays reachable as the cause, for a timeout as for a lost statement.
    expect((timedOut as Error).cause).toMatchObject({ code: '55P03' });
    expect((lost as Error).cause).toMatchObject({ code: '57P01' });

    const already = new EventStoreUnavailable('already typed');
    expect(toUnavailable(already, TEST_DATABASE_URL, 'statement')).toBe(already);
    // Typed once: an error already typed whose text reads like a lost connection is not wrapped again.
    const typedLost = new OutcomeUnknown('Connection terminated unexpectedly');
    expect(toUnavailable(typedLost, TEST_DATABASE_URL, 'statement')).toBe(typedLost);
    const other = Object.assign(new Error('syntax error'), { code: '42601' });
    expect(toUnavailable(other, TEST_DATABASE_URL, 'statement')).toBe(other);
  });
});

describe('a pool on a real server', () => {
  it('answers a statement over statement_timeout, and one waiting past lock_timeout, as unavailable: nothing was committed', async () => {
    const bounded = open(TEST_DATABASE_URL, { max: 2, timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 300, lockMs: 200, connectMs: 3_000 } });
    const slow = await caught(sql`SELECT pg_sleep(3)`.execute(bounded.db));
    expect(slow).toBeInstanceOf(EventStoreUnavailable);
    expect(slow).not.toBeInstanceOf(OutcomeUnknown);
    expect((slow as Error).message).toMatch(/^PostgreSQL at postgres:\/\/127\.0\.0\.1:5432\/\w+ is busy: a lock is held or a statement ran too long \(57014: /);
    // A client is told the cause, not that the database cannot be reached.
    expect(toProblem(slow).message).toBe('The database is busy (a lock is held or a statement ran too long); retry shortly.');

    const table = sql.id(nextSchema());
    await sql`CREATE TABLE ${table} (id int)`.execute(database.db);
    const locked = database.db.transaction().execute(async (trx) => {
      await sql`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`.execute(trx);
      const waiting = await caught(sql`SELECT * FROM ${table}`.execute(bounded.db));
      expect(waiting).toBeInstanceOf(EventStoreUnavailable);
      expect((waiting as Error).message).toContain('(55P03: ');
      expect(toProblem(waiting).message).toBe('The database is busy (a lock is held or a statement ran too long); retry shortly.');
    });
    await locked;
    // The pool still answers.
    expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(bounded.db)).rows).toEqual([{ one: 1 }]);
    await sql`DROP TABLE ${table}`.execute(database.db);
  });

  it('a server with no free connection slots (53300) is named so, not as unreachable with advice about DATABASE_URL', async () => {
    // A role allowed no connection: the server refuses it with 53300, as it refuses anyone once max_connections are taken.
    const role = `crm_no_slots_${process.pid}`;
    await sql`DROP ROLE IF EXISTS ${sql.id(role)}`.execute(database.db);
    await sql`CREATE ROLE ${sql.id(role)} LOGIN CONNECTION LIMIT 0`.execute(database.db);
    try {
      const url = new URL(TEST_DATABASE_URL);
      url.username = role;
      const refused = await caught(sql`SELECT 1`.execute(open(url.toString(), { max: 1 }).db));
      expect(refused).toBeInstanceOf(EventStoreUnavailable);
      expect((refused as Error).message).toContain('has no free connection slots (max_connections) (53300: too many connections for role');
      expect((refused as Error).message).not.toContain('DATABASE_URL');
      expect(toProblem(refused).message).toBe('PostgreSQL has no free connection slots (max_connections); retry shortly.');
    } finally {
      await sql`DROP ROLE ${sql.id(role)}`.execute(database.db);
    }
  });

  it('a connection killed mid-statement: outcome unknown, and the pool replaces the connection', async () => {
    const single = open(TEST_DATABASE_URL, { max: 1 });
    const marker = `killed_${Date.now()}`;
    const running = caught(sql`SELECT pg_sleep(10), ${sql.lit(marker)}::text`.execute(single.db));
    await until('the statement runs', async () => {
      const { rows } = await sql<{
        n: number;
      }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE ${`%${marker}%`} AND pid <> pg_backend_pid()`.execute(database.db);
      return rows[0]!.n > 0;
    });
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE ${`%${marker}%`} AND pid <> pg_backend_pid()`.execute(database.db);
    const error = await running;
    expect(error).toBeInstanceOf(OutcomeUnknown);
    expect((error as Error).message).toMatch(/^Lost the connection to PostgreSQL at postgres:\/\/127\.0\.0\.1:5432\/\w+ while a statement was running \(/);
    expect((error as Error).message).toMatch(/it may or may not have committed\.$/);
    // One connection at most: the next statement gets a new one instead of the dead one.
    expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(single.db)).rows).toEqual([{ one: 1 }]);
  });

  it('a link that stalls without closing is cut past statement_timeout plus a margin: outcome unknown, then a new connection', async () => {
    const link = await relay();
    try {
      const stalled = open(link.url, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 200, lockMs: 200, connectMs: 3_000 } });
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(stalled.db)).rows).toEqual([{ one: 1 }]);
      link.hold();
      const started = Date.now();
      const error = await caught(sql`SELECT 2`.execute(stalled.db));
      expect(error).toBeInstanceOf(OutcomeUnknown);
      expect((error as Error).message).toMatch(
        /^Lost the connection to PostgreSQL at postgres:\/\/127\.0\.0\.1:\d+\/\w+ while a statement was running \(.*\); it may or may not have committed\.$/,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_150);
      expect(Date.now() - started).toBeLessThan(8_000);
      // The cut connection is not handed out again: with the link flowing, the next statement runs on a new one.
      link.pass();
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(stalled.db)).rows).toEqual([{ one: 1 }]);
    } finally {
      await link.close();
    }
  });

  it('appends cut off by a stalled link: the one sent is outcome unknown, the ones queued behind it fail together as unavailable', async () => {
    const schema = nextSchema();
    await (await createPostgresEventStore(database, { schema })).close();
    const link = await relay();
    try {
      const timeouts = { ...DEFAULT_POOL_TIMEOUTS, statementMs: 300, lockMs: 200, connectMs: 1_000 };
      const store = await createPostgresEventStore(open(link.url, { max: 1, timeouts }), { schema, appendsInFlight: 1 });
      // The one connection opened before the stall (a read: an append would also send a NOTIFY that could hold it).
      expect(await store.readStream('customer-1')).toEqual([]);
      link.hold();
      // One append in flight; the next two wait and then go together as one group call.
      const sent = caught(store.appendToStream('customer-1', [newEvent('Sent')]));
      const queued = [caught(store.appendToStream('customer-2', [newEvent('Queued')])), caught(store.appendToStream('customer-3', [newEvent('Queued')]))];
      const error = await sent;
      expect(error).toBeInstanceOf(OutcomeUnknown);
      expect((error as Error).message).toMatch(/^Lost the connection to PostgreSQL at postgres:\/\/127\.0\.0\.1:\d+\/\w+ while a statement was running \(/);
      // The group's call fails as a whole: both get its one error at once, not a retry each against the unreachable server.
      const [second, third] = await Promise.all(queued);
      expect(second).toBeInstanceOf(EventStoreUnavailable);
      expect(third).toBe(second);
      await store.close();
    } finally {
      await link.close();
    }
  }, 30_000);

  it('an unreachable server is unavailable, naming it, before anything is sent', async () => {
    const nowhere = open('postgres://postgres@127.0.0.1:1/crm', { timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 1_000, lockMs: 500, connectMs: 1_000 } });
    const error = await caught(sql`SELECT 1`.execute(nowhere.db));
    expect(error).toBeInstanceOf(EventStoreUnavailable);
    expect(error).not.toBeInstanceOf(OutcomeUnknown);
    expect((error as Error).message).toMatch(/^Cannot reach PostgreSQL at postgres:\/\/127\.0\.0\.1:1\/crm \(ECONNREFUSED: /);
    const listening = await caught(nowhere.listen('crm_nowhere', () => undefined));
    expect(listening).toBeInstanceOf(EventStoreUnavailable);
  });

  it('a connection kept in a transaction past statement_timeout plus the margin is not cut: the stall bound runs only while a statement does', async () => {
    const bounded = open(TEST_DATABASE_URL, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 300, lockMs: 200, connectMs: 3_000 } });
    const pids = await bounded.db.transaction().execute(async (trx) => {
      const seen = new Set<number>();
      // Short statements on one connection for longer than the stall bound (1.3 s).
      const endsAt = Date.now() + 2_000;
      while (Date.now() < endsAt) {
        seen.add((await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)).rows[0]!.pid);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return seen;
    });
    expect(pids.size).toBe(1);
  });

  it('closing cuts a statement that a stalled link holds instead of waiting out its bound, and the statement is outcome unknown', async () => {
    const link = await faultyLink();
    // A bound of a minute, as on the long-work pool: without the cut, closing would wait for it.
    const handle = open(link.url, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 60_000 } });
    let settled = false;
    const running = caught(sql`SELECT pg_sleep(0.2)`.execute(handle.db)).finally(() => (settled = true));
    await until('the statement runs', async () => (await link.statements()).some((statement) => statement.startsWith('SELECT pg_sleep')));
    // Its answer never comes back.
    link.proxy.stallOpen();
    const started = Date.now();
    await handle.close();
    // Closing waits 2 s for the pool to end, then cuts what is left.
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(settled).toBe(true);
    expect(await running).toBeInstanceOf(OutcomeUnknown);
  }, 30_000);

  it('reads a date as its day, the text the embedded database gives too (not a Date at local midnight)', async () => {
    const { rows } = await sql<{ day: unknown }>`SELECT date '2024-02-29' AS day`.execute(database.db);
    expect(rows[0]!.day).toBe('2024-02-29');
  });

  it('runs prepared statements with their parameters, and refuses to listen once closed', async () => {
    const handle = connectPostgres(TEST_DATABASE_URL, { max: 1 });
    expect(handle.kind).toBe('postgres');
    expect(await handle.prepared!<{ sum: number }>('crm_test_sum', 'SELECT $1::int + $2::int AS sum', [2, 3])).toEqual([{ sum: 5 }]);
    expect(await handle.prepared!<{ sum: number }>('crm_test_sum', 'SELECT $1::int + $2::int AS sum', [4, 3])).toEqual([{ sum: 7 }]);
    expect(handle.waiting!()).toBe(0);
    await handle.close();
    await handle.close();
    const refused = await caught(handle.listen('crm_closed', () => undefined));
    expect(refused).toBeInstanceOf(EventStoreUnavailable);
    expect((refused as Error).message).toBe('The database handle is closed.');
  });
});

describe('subscribers on another pool (LISTEN/NOTIFY)', () => {
  /** A store reading through its own pool, polling once a minute: only notifications deliver within the test. */
  const followerOf = async (schema: string) => {
    const other = open(TEST_DATABASE_URL, { max: 2 });
    const reader = await createPostgresEventStore(other, { schema, pollInterval: 60_000 });
    const seen: RecordedEvent[] = [];
    let caughtUp = false;
    const subscription = reader.subscribeToAll().subscribe((message) => {
      if (message.kind === 'caughtUp') caughtUp = true;
      else seen.push(message.event);
    });
    await until('the follower caught up', () => caughtUp);
    return { seen, stop: async () => (subscription.unsubscribe(), await reader.close()) };
  };

  it('two subscribers to one channel on one handle are both notified', async () => {
    const handle = open(TEST_DATABASE_URL, { max: 1 });
    const channel = `crm_two_${Date.now()}`;
    const woken = { first: 0, second: 0 };
    const stopFirst = await handle.listen(channel, () => (woken.first += 1));
    const stopSecond = await handle.listen(channel, () => (woken.second += 1));
    await sql`SELECT pg_notify(${channel}, '')`.execute(database.db);
    await until('both subscribers were notified', () => woken.first > 0 && woken.second > 0);
    await stopFirst();
    await stopSecond();
  });

  it('a subscriber that stopped listening is not called again while the others on its channel are; the last one to leave unlistens', async () => {
    const link = await faultyLink();
    const handle = open(link.url, { max: 1 });
    const channel = `crm_leaving_${Date.now()}`;
    const woken = { leaving: 0, staying: 0, later: 0 };
    const stopLeaving = await handle.listen(channel, () => (woken.leaving += 1));
    const stopStaying = await handle.listen(channel, () => (woken.staying += 1));
    await stopLeaving();
    await sql`SELECT pg_notify(${channel}, '')`.execute(database.db);
    // Both would be called in the same turn, from the one notification.
    await until('the staying subscriber was notified', () => woken.staying === 1);
    expect(woken.leaving).toBe(0);
    await stopStaying();
    // The handle's one session (the LISTEN connection) unlistened the channel with its last subscriber.
    expect(await link.statements()).toEqual([`UNLISTEN "${channel}"`]);
    // A later subscriber to the channel listens again.
    const stopLater = await handle.listen(channel, () => (woken.later += 1));
    await sql`SELECT pg_notify(${channel}, '')`.execute(database.db);
    await until('the later subscriber was notified', () => woken.later === 1);
    expect(woken).toEqual({ leaving: 0, staying: 1, later: 1 });
    await stopLater();
  });

  it('a LISTEN refused while the server was unreachable is sent by the next subscriber to that channel once the server answers', async () => {
    const link = await faultyLink();
    const handle = open(link.url, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, connectMs: 1_000 } });
    const channel = `crm_refused_${Date.now()}`;
    const woken = { refused: 0, later: 0 };
    link.proxy.refuse();
    const refused = await caught(handle.listen(channel, () => (woken.refused += 1)));
    expect(refused).toBeInstanceOf(EventStoreUnavailable);
    expect((refused as Error).message).toMatch(new RegExp(`^Cannot reach PostgreSQL at postgres://127\\.0\\.0\\.1:${link.proxy.port}/`));
    link.proxy.pass();
    const stop = await handle.listen(channel, () => (woken.later += 1));
    await sql`SELECT pg_notify(${channel}, '')`.execute(database.db);
    await until('the later subscriber was notified', () => woken.later === 1);
    expect(woken.refused).toBe(0);
    await stop();
  });

  it('every channel of a handle is listened on one connection, whether its subscribers come at once or one by one; closing ends it', async () => {
    const link = await faultyLink();
    const handle = open(link.url, { max: 1 });
    const channel = (i: number) => `crm_shared_${i}_${Date.now()}`;
    await Promise.all([1, 2, 3].map((i) => handle.listen(channel(i), () => undefined)));
    await handle.listen(channel(4), () => undefined);
    expect(await link.sessions()).toBe(1);
    await handle.close();
    await until('the LISTEN connection ended', async () => (await link.sessions()) === 0);
  });

  it('closing the handle while its LISTEN connection is being opened ends that connection too', async () => {
    const link = await faultyLink();
    const handle = open(link.url, { max: 1 });
    // Whether the LISTEN went through before the close or failed with it, the connection must not stay.
    const listening = handle.listen(`crm_closing_${Date.now()}`, () => undefined).catch(() => undefined);
    await handle.close();
    await listening;
    await until('the LISTEN connection ended', async () => (await link.sessions()) === 0);
  });

  it('a burst of appends reaches a follower in full: a trailing notification follows the last append', async () => {
    const schema = nextSchema();
    const writer: EventStore = await createPostgresEventStore(database, { schema });
    const follower = await followerOf(schema);
    for (let i = 0; i < 6; i += 1) await writer.appendToStream(`customer-${i}`, [newEvent('Burst', { i })]);
    await until('the follower saw the burst', () => follower.seen.length === 6);
    expect(follower.seen.map((event) => (event.data as { i: number }).i)).toEqual([0, 1, 2, 3, 4, 5]);
    // Later, after a quiet spell, a single append is notified again.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await writer.appendToStream('customer-9', [newEvent('Later')]);
    await until('the follower saw the later append', () => follower.seen.length === 7);
    await follower.stop();
    await writer.close();
  }, 30_000);

  it('after the LISTEN connection is lost, it listens again and wakes its subscribers for what was appended meanwhile', async () => {
    const schema = nextSchema();
    const writer = await createPostgresEventStore(database, { schema });
    const follower = await followerOf(schema);
    const channel = channelFor(schema);
    const listenerPid = async (): Promise<number | undefined> => {
      const { rows } = await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE query = ${`LISTEN "${channel}"`}`.execute(database.db);
      return rows[0]?.pid;
    };
    const lostPid = await listenerPid();
    expect(lostPid).toBeDefined();
    await sql`SELECT pg_terminate_backend(${lostPid}::int)`.execute(database.db);
    await writer.appendToStream('customer-1', [newEvent('WhileLost')]);
    // Delivered once the listener is back (a notification sent while it was away is lost: the reconnect wakes everyone).
    await until('the follower saw the append made while its listener was away', () => follower.seen.length === 1);
    await until('listening again on a new connection', async () => {
      const pid = await listenerPid();
      return pid !== undefined && pid !== lostPid;
    });
    await writer.appendToStream('customer-2', [newEvent('AfterReconnect')]);
    await until('the follower saw the append after the reconnect', () => follower.seen.length === 2);
    expect(follower.seen.map((event) => event.type)).toEqual(['WhileLost', 'AfterReconnect']);
    await follower.stop();
    await writer.close();
  }, 30_000);

  it('a LISTEN connection whose first reconnect fails tries again, and its subscriber is woken once the server answers', async () => {
    const schema = nextSchema();
    const writer = await createPostgresEventStore(database, { schema });
    const link = await relay();
    try {
      const timeouts = { ...DEFAULT_POOL_TIMEOUTS, statementMs: 1_000, lockMs: 500, connectMs: 1_000 };
      const reader = await createPostgresEventStore(open(link.url, { max: 2, timeouts }), { schema, pollInterval: 60_000 });
      const seen: string[] = [];
      let caughtUp = false;
      const subscription = reader.subscribeToAll().subscribe((message) => (message.kind === 'caughtUp' ? (caughtUp = true) : seen.push(message.event.type)));
      await until('the follower caught up', () => caughtUp);
      const { rows } = await sql<{ pid: number }>`SELECT pid FROM pg_stat_activity WHERE query = ${`LISTEN "${channelFor(schema)}"`}`.execute(database.db);
      expect(rows).toHaveLength(1);
      // The link stalls, so the reconnect after the cut times out; the next one must still come.
      link.hold();
      const before = link.accepted();
      await sql`SELECT pg_terminate_backend(${rows[0]!.pid}::int)`.execute(database.db);
      await until('a second reconnect after the first one failed', () => link.accepted() >= before + 2);
      link.pass();
      await writer.appendToStream('customer-1', [newEvent('AfterTheOutage')]);
      await until('the follower saw the append', () => seen.length === 1);
      expect(seen).toEqual(['AfterTheOutage']);
      subscription.unsubscribe();
      await reader.close();
    } finally {
      await link.close();
      await writer.close();
    }
  }, 30_000);

  it('a subscriber keeps delivering after the server closed every connection of its pool, the LISTEN one included', async () => {
    const schema = nextSchema();
    const writer = await createPostgresEventStore(database, { schema });
    const application = `crm_follower_${Date.now()}`;
    const url = new URL(TEST_DATABASE_URL);
    url.searchParams.set('application_name', application);
    const reader = await createPostgresEventStore(open(url.toString(), { max: 2 }), { schema, pollInterval: 60_000 });
    const seen: string[] = [];
    const errors: unknown[] = [];
    let caughtUp = 0;
    const subscription = reader.subscribeToAll().subscribe({
      next: (message) => (message.kind === 'caughtUp' ? (caughtUp += 1) : seen.push(message.event.type)),
      error: (error: unknown) => errors.push(error),
    });
    await until('the follower caught up', () => caughtUp === 1);
    const { rows } = await sql<{
      n: number;
    }>`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = ${application}`.execute(database.db);
    expect(rows[0]!.n).toBeGreaterThanOrEqual(2);
    await writer.appendToStream('customer-1', [newEvent('AfterTheCut')]);
    await until('the follower saw the append', () => seen.length === 1);
    expect(seen).toEqual(['AfterTheCut']);
    expect(errors).toEqual([]);
    subscription.unsubscribe();
    await reader.close();
    await writer.close();
  }, 30_000);

  it('a subscription whose server becomes unreachable ends with EventStoreUnavailable, and so do reads', async () => {
    const schema = nextSchema();
    const link = await relay();
    try {
      const reader = await createPostgresEventStore(
        open(link.url, { max: 2, timeouts: { ...DEFAULT_POOL_TIMEOUTS, statementMs: 1_000, lockMs: 500, connectMs: 1_000 } }),
        {
          schema,
          pollInterval: 20,
        },
      );
      let failure: unknown;
      let caughtUp = false;
      reader.subscribeToAll().subscribe({ next: (message) => (caughtUp ||= message.kind === 'caughtUp'), error: (error: unknown) => (failure = error) });
      await until('the subscriber caught up', () => caughtUp);
      await link.close();
      await until('the subscription failed', () => failure !== undefined);
      expect(failure).toBeInstanceOf(EventStoreUnavailable);
      expect((failure as Error).message).toContain(`PostgreSQL at postgres://127.0.0.1:${new URL(link.url).port}${new URL(link.url).pathname}`);
      for (const read of [reader.readAll(), reader.readStream('customer-1'), reader.readStreams(['customer-1']), reader.headPosition()]) {
        expect(await caught(read)).toBeInstanceOf(EventStoreUnavailable);
      }
      await reader.close();
    } finally {
      await link.close();
    }
  }, 30_000);
});
