import type pg from 'pg';
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
