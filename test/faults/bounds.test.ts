import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { requestTimedOut, toProblem } from '../../api/errors.ts';
import { ConfigError, loadConfig } from '../../cli/config.ts';
import { createBackoff } from '../../eventstore/backoff.ts';
import { EventStoreUnavailable, OutcomeUnknown } from '../../eventstore/errors.ts';
import { connectPostgres, DEFAULT_POOL_TIMEOUTS, toUnavailable } from '../../eventstore/postgres/database.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';
import { startApi } from '../api/support.ts';

const type = (suffix: string) => `https://crm.example/problems/${suffix}`;
const request = (method: string) => ({ method }) as FastifyRequest;

describe('database faults and bounds as the API answers them', () => {
  it('a connection lost mid-statement is outcome-unknown for a command and unavailable for a read, both 503 with Retry-After', () => {
    const lost = toUnavailable(Object.assign(new Error('Connection terminated unexpectedly'), {}), TEST_DATABASE_URL, 'statement');
    expect(lost).toBeInstanceOf(OutcomeUnknown);
    const command = toProblem(lost, request('POST'));
    expect(command.body()).toMatchObject({ status: 503, type: type('outcome-unknown'), retrySafeWithIdempotencyKey: true });
    expect(command.message).toContain('same Idempotency-Key is safe');
    expect(command.headers['retry-after']).toBe('1');
    expect(toProblem(lost, request('GET')).body()).toMatchObject({ status: 503, type: type('unavailable') });
    // Refused before anything was sent: the outcome is known (nothing happened).
    const refused = toUnavailable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), TEST_DATABASE_URL);
    expect(refused).toBeInstanceOf(EventStoreUnavailable);
    expect(refused).not.toBeInstanceOf(OutcomeUnknown);
    expect(toProblem(refused, request('POST')).body()).toMatchObject({ status: 503, type: type('unavailable') });
    // statement_timeout and lock_timeout: nothing committed, the database is overloaded or locked.
    for (const code of ['57014', '55P03'])
      expect(toUnavailable(Object.assign(new Error('canceling statement'), { code }), TEST_DATABASE_URL)).toBeInstanceOf(EventStoreUnavailable);
    // Other database errors stay what they are.
    const unique = Object.assign(new Error('duplicate key'), { code: '23505' });
    expect(toUnavailable(unique, TEST_DATABASE_URL, 'statement')).toBe(unique);
  });

  it('a pool whose every connection stays busy says so, not that PostgreSQL cannot be reached', async () => {
    const database = connectPostgres(TEST_DATABASE_URL, { max: 1, timeouts: { ...DEFAULT_POOL_TIMEOUTS, connectMs: 300 } });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    try {
      const holding = database.db.connection().execute(async (connection) => {
        await sql`SELECT 1`.execute(connection);
        await held;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const error = await sql`SELECT 1`.execute(database.db).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(EventStoreUnavailable);
      expect((error as Error).message).toMatch(/^Every one of the 1 connections to PostgreSQL at .* stayed busy for 300 ms/);
      expect((error as Error).message).not.toContain('Check DATABASE_URL');
      release();
      await holding;
    } finally {
      release();
      await database.close();
    }
  });

  it('a request over its bound answers 503: outcome-unknown for a command, unavailable for a read', () => {
    expect(requestTimedOut(request('PATCH'), 10_000).body()).toMatchObject({ status: 503, type: type('outcome-unknown') });
    expect(requestTimedOut(request('GET'), 10_000).body()).toMatchObject({ status: 503, type: type('unavailable') });
  });

  it('sets statement, lock and idle-in-transaction timeouts, TCP keepalives, the closed-client check and UTC on every connection, from the configuration', async () => {
    const database = connectPostgres(TEST_DATABASE_URL, { timeouts: { statementMs: 1_234, lockMs: 567, idleInTransactionMs: 8_900, connectMs: 2_000 } });
    try {
      const { rows } = await sql<Record<string, string>>`
        SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock,
               current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction,
               current_setting('tcp_keepalives_idle') AS keepalives_idle, current_setting('tcp_keepalives_interval') AS keepalives_interval,
               current_setting('tcp_keepalives_count') AS keepalives_count, current_setting('tcp_user_timeout') AS user_timeout,
               current_setting('client_connection_check_interval') AS closed_client_check, current_setting('jit') AS jit,
               current_setting('TimeZone') AS time_zone, to_jsonb(timestamptz '2026-02-28T19:00:00Z')::text AS written_time`.execute(database.db);
      // In seconds, and tcp_user_timeout in ms. Over TCP (the test server is at 127.0.0.1) they are the socket's own: on a Unix socket they read 0.
      expect(rows[0]).toEqual({
        statement: '1234ms',
        lock: '567ms',
        idle_in_transaction: '8900ms',
        keepalives_idle: '10',
        keepalives_interval: '5',
        keepalives_count: '3',
        user_timeout: '20000',
        // The server looks every second for a client gone while a statement runs (test/faults/reset-mid-statement.test.ts).
        closed_client_check: '1s',
        jit: 'off',
        // Times PostgreSQL writes out (to_jsonb of a row) are in UTC whatever the server's zone.
        time_zone: 'UTC',
        written_time: '"2026-02-28T19:00:00+00:00"',
      });
      // A statement past the bound is cancelled by the server and reported as unavailable, not a 500.
      await expect(sql`SELECT pg_sleep(3)`.execute(database.db)).rejects.toBeInstanceOf(EventStoreUnavailable);
      // The pool carries on.
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(database.db)).rows[0]!.one).toBe(1);
    } finally {
      await database.close();
    }
  });

  it('reads the bounds from the environment, with defaults of a few seconds for API work and longer for long work', () => {
    const defaults = loadConfig({}, '/tmp').timeouts;
    expect(defaults).toEqual({ statementMs: 5_000, longStatementMs: 600_000, lockMs: 2_000, idleInTransactionMs: 60_000, connectMs: 3_000, requestMs: 10_000 });
    const set = loadConfig(
      { CRM_DB_STATEMENT_TIMEOUT_MS: '2500', CRM_REQUEST_TIMEOUT_MS: '4000', CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '15000' },
      '/tmp',
    ).timeouts;
    expect(set).toMatchObject({ statementMs: 2_500, requestMs: 4_000, idleInTransactionMs: 15_000 });
    // Under a second would cut a transaction whose process is merely busy between two statements.
    expect(() => loadConfig({ CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '500' }, '/tmp')).toThrow(/CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS/);
    expect(() => loadConfig({ CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: 'never' }, '/tmp')).toThrow(/CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS/);
    expect(() => loadConfig({ CRM_DB_LOCK_TIMEOUT_MS: 'soon' }, '/tmp')).toThrow(ConfigError);
    expect(() => loadConfig({ CRM_DB_LOCK_TIMEOUT_MS: 'soon' }, '/tmp')).toThrow(/CRM_DB_LOCK_TIMEOUT_MS/);
  });

  it('backs off with jitter, capped, and starts over after a success', () => {
    const backoff = createBackoff({ initialMs: 100, maxMs: 1_000 });
    const delays = Array.from({ length: 8 }, () => backoff.next());
    expect(delays[0]).toBeGreaterThanOrEqual(50);
    expect(delays[0]).toBeLessThanOrEqual(100);
    for (const d of delays) expect(d).toBeLessThanOrEqual(1_000);
    expect(delays.at(-1)).toBeGreaterThanOrEqual(500);
    backoff.reset();
    expect(backoff.next()).toBeLessThanOrEqual(100);
  });
});

describe('the request timeout', () => {
  it('answers a command that has not finished in time 503 outcome-unknown, and a read 503 unavailable, within the bound', async () => {
    const never = () => new Promise<never>(() => undefined);
    const h = await startApi('request_timeout', {
      commands: { execute: never },
      queries: { listCustomers: never } as never,
      requestTimeoutMs: 500,
      waitForTimeoutMs: 100,
    });
    try {
      const started = Date.now();
      const command = await h.app.inject({
        method: 'POST',
        url: '/customers',
        headers: { ...h.auth('admin'), 'content-type': 'application/json', 'idempotency-key': 'slow-1' },
        payload: JSON.stringify({ name: 'Ada Lovelace', email: 'ada@example.com' }),
      });
      expect(command.statusCode).toBe(503);
      expect(command.json()).toMatchObject({ type: type('outcome-unknown'), retrySafeWithIdempotencyKey: true });
      expect(command.headers['retry-after']).toBe('1');
      const read = await h.app.inject({ method: 'GET', url: '/customers', headers: h.auth('admin') });
      expect(read.statusCode).toBe(503);
      expect(read.json()).toMatchObject({ type: type('unavailable') });
      // Two requests, each cut at about 2.1 s (the 500 ms asked for, raised to waitFor + 2 s).
      expect(Date.now() - started).toBeLessThan(8_000);
      // The probes are not held up by it.
      expect((await h.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    } finally {
      await h.close();
    }
  });

  it("drops a command's late result without a word: no 'reply already sent' warning with a status 500 in the log", async () => {
    const lines: string[] = [];
    const stream = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) });
    let finished!: () => void;
    const late = new Promise<void>((resolve) => (finished = resolve));
    const h = await startApi('request_timeout_late', {
      commands: {
        execute: async () => {
          await new Promise((resolve) => setTimeout(resolve, 3_000));
          setImmediate(finished);
          return { id: randomUUID(), stream: 'customer-late', revision: 0, position: 1n, eventIds: [] };
        },
      },
      requestTimeoutMs: 500,
      waitForTimeoutMs: 100,
      logger: { level: 'warn', stream },
    });
    try {
      const command = await h.app.inject({
        method: 'POST',
        url: '/customers',
        headers: { ...h.auth('admin'), 'content-type': 'application/json', 'idempotency-key': 'late-1' },
        payload: JSON.stringify({ name: 'Ada Lovelace', email: 'ada@example.com' }),
      });
      expect(command.statusCode).toBe(503);
      await late;
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(lines.join('')).toContain('request timed out');
      expect(lines.join('')).not.toContain('FST_ERR_REP_ALREADY_SENT');
    } finally {
      await h.close();
    }
  });

  it("drops a read's late failure without a word: no 'Promise errored, but reply.sent' error in the log", async () => {
    const lines: string[] = [];
    const stream = new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(chunk.toString()), done()) });
    let failed!: () => void;
    const late = new Promise<void>((resolve) => (failed = resolve));
    const h = await startApi('request_timeout_late_failure', { requestTimeoutMs: 500, waitForTimeoutMs: 100, logger: { level: 'warn', stream } });
    try {
      // A read that fails after the bound answered it, as a `?waitFor=` whose own timeout comes late.
      h.deps.queries.listCustomers = async () => {
        await new Promise((resolve) => setTimeout(resolve, 2_500));
        setImmediate(failed);
        throw new Error('read failed after the bound');
      };
      const read = await h.app.inject({ method: 'GET', url: '/customers', headers: h.auth('admin') });
      expect(read.statusCode).toBe(503);
      await late;
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(lines.join('')).toContain('request timed out');
      expect(lines.join('')).not.toContain('reply.sent = true');
      expect(lines.join('')).not.toContain('read failed after the bound');
    } finally {
      await h.close();
    }
  });
});
