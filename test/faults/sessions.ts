import type pg from 'pg';
import { expect } from 'vitest';
import type { ApiHarness } from '../api/support.ts';
import type { FaultProxy } from './proxy.ts';

/**
 * What the server holds for a service behind a `FaultProxy`: its sessions are told apart by an
 * `application_name` of their own, carried in the URL the service connects with.
 */
export const proxiedUrl = (databaseUrl: string, proxy: FaultProxy, applicationName: string): string => {
  const url = new URL(proxy.urlThrough(databaseUrl));
  url.searchParams.set('application_name', applicationName);
  return url.toString();
};

export interface StrandedSession {
  pid: number;
  /** Seconds since the session last finished a statement. */
  idleSeconds: number;
  /** Whether the open transaction holds a transaction id (then it holds back the feed of every schema in the cluster). */
  holdsXid: boolean;
}

/** Server sessions of `applicationName` sitting in an open transaction with no statement running. */
export const strandedSessions = async (sql: pg.Pool | pg.Client, applicationName: string): Promise<StrandedSession[]> => {
  const { rows } = await sql.query<{ pid: number; idle_seconds: number; holds_xid: boolean }>(
    `SELECT pid, extract(epoch FROM now() - state_change)::float8 AS idle_seconds, backend_xid IS NOT NULL AS holds_xid
       FROM pg_stat_activity
      WHERE application_name = $1 AND state IN ('idle in transaction', 'idle in transaction (aborted)')`,
    [applicationName],
  );
  return rows.map((r) => ({ pid: r.pid, idleSeconds: r.idle_seconds, holdsXid: r.holds_xid }));
};

/** Server sessions of `applicationName` running a statement that starts with `statementStart`. */
export const runningStatements = async (sql: pg.Pool | pg.Client, applicationName: string, statementStart: string): Promise<number[]> => {
  const { rows } = await sql.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND starts_with(query, $2)`,
    [applicationName, statementStart],
  );
  return rows.map((r) => r.pid);
};

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a value, or fails naming `what` after `timeoutMs`. */
export const until = async <T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await pause(50);
  }
};

/**
 * Registers a customer named by `label`, retrying with the same Idempotency-Key through the 503s a
 * fault causes (a connection it left dead in the pool is cut at the statement bound), as a client would.
 */
export const registerThroughFaults = (h: ApiHarness, label: string) =>
  until(`registering ${label}`, 60_000, async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { ...h.auth('sales'), 'content-type': 'application/json', 'idempotency-key': `faults-${label}` },
      payload: JSON.stringify({ name: `Faults ${label}`, email: `${label}@faults.example.com` }),
    });
    if (res.statusCode === 201 || res.statusCode === 200) return res.json<{ id: string; position: string }>();
    expect(res.statusCode, res.body).toBe(503);
    return undefined;
  });

/** The read models hold the customer (read-your-writes: `waitFor` its position). */
export const projected = (h: ApiHarness, customer: { id: string; position: string }) =>
  until(`projecting customer ${customer.id}`, 60_000, async () => {
    const res = await h.app.inject({ method: 'GET', url: `/customers/${customer.id}?waitFor=${customer.position}`, headers: h.auth('sales') });
    return res.statusCode === 200 ? true : undefined;
  });
