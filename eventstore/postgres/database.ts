import type { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { settlesWithin } from '../../shared/deadline.ts';
import { loggableUrl } from '../../shared/loggable-url.ts';
import { ioTurns } from '../../shared/io-turns.ts';
import { createBackoff, pause, type Backoff } from '../backoff.ts';
import { databaseBusy, databaseShortage, EventStoreUnavailable, OutcomeUnknown, StaleStatements } from '../errors.ts';
import { checkFreeSpaceToOpen, keepingDiskFree } from './free-space.ts';
import { withQuery } from './pglite-query.ts';
import { isStalePlanError, StatementNames, type StatementNamesOptions } from './statement-names.ts';

import type { SqlDatabase } from '../../shared/sql.ts';

/** The handle type is neutral (shared/sql.ts); this module opens one on each engine. */
export type { SqlDatabase } from '../../shared/sql.ts';

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // PostgreSQL SQLSTATEs: connection exceptions (08xxx), invalid authorization, invalid password, unknown
  // database, too many connections, shutting down, cannot connect now.
  '08000',
  '08003',
  '08006',
  '08001',
  '08004',
  '28000',
  '28P01',
  '3D000',
  '53300',
  '57P01',
  '57P02',
  '57P03',
]);

/** A failure of the connection itself (not of the statement): the server is unreachable, gone or stalled. */
export const isConnectionError = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return (
    (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) ||
    /connect|Connection terminated|timeout exceeded when trying to connect|Query read timeout|did not answer within/i.test(message)
  );
};

/**
 * Turns a connection-level failure into `EventStoreUnavailable` (`OutcomeUnknown` when the statement
 * had been sent: it may have committed) and a statement or lock timeout into `EventStoreUnavailable`;
 * other errors pass through unchanged.
 */
export const toUnavailable = (error: unknown, url: string, phase: 'connect' | 'statement' = 'connect'): unknown => {
  if (error instanceof EventStoreUnavailable) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (databaseBusy(error)) {
    return new EventStoreUnavailable(
      `PostgreSQL at ${loggableUrl(url)} is busy: a lock is held or a statement ran too long (${String(code)}: ${message}); nothing was committed, retry.`,
      { cause: error },
    );
  }
  if (!isConnectionError(error)) return error;
  // The server answers, and has no connection to give: DATABASE_URL is right, the advice about it was wrong.
  if (databaseShortage(error) === 'connections') {
    return new EventStoreUnavailable(
      `PostgreSQL at ${loggableUrl(url)} has no free connection slots (max_connections) (${String(code)}: ${message}). ` +
        "Retry shortly; if it lasts, end idle sessions (pg_stat_activity), raise the server's max_connections, or run fewer CRM processes.",
      { cause: error },
    );
  }
  if (phase === 'statement') {
    const lost = `Lost the connection to PostgreSQL at ${loggableUrl(url)} while a statement was running (${typeof code === 'string' ? `${code}: ` : ''}${message})`;
    return new OutcomeUnknown(`${lost}; it may or may not have committed.`, { cause: error, lost: `${lost}.` });
  }
  return new EventStoreUnavailable(
    `Cannot reach PostgreSQL at ${loggableUrl(url)} (${typeof code === 'string' ? `${code}: ` : ''}${message}). ` +
      'Check DATABASE_URL (host, port, user, password, database name) and that PostgreSQL is running (pg_isready).',
    { cause: error },
  );
};

/** Bounds of one pool's connections (cli/timeouts.ts). */
export interface PoolTimeouts {
  /** statement_timeout (ms); the client also gives up on a connection silent this long past it. */
  statementMs: number;
  lockMs: number;
  /** idle_in_transaction_session_timeout (ms): the server ends a session left this long in a transaction with no statement. */
  idleInTransactionMs: number;
  /** Opening a connection or waiting for a free one (ms). */
  connectMs: number;
}

export const DEFAULT_POOL_TIMEOUTS: PoolTimeouts = { statementMs: 5_000, lockMs: 2_000, idleInTransactionMs: 60_000, connectMs: 3_000 };

/**
 * How soon each side notices that the other is gone without a word (a host or a NAT between them lost
 * the connection). The server probes a silent client after 10 s, every 5 s, and drops it after 3
 * unanswered probes; data it sent that stays unacknowledged for 20 s drops it too (tcp_user_timeout,
 * PostgreSQL 12 and later; the event store needs 13). So a dead client's session, and the locks it
 * holds outside a transaction (a session advisory lock), goes after about 25 s instead of
 * the operating system's two hours. idle_in_transaction_session_timeout covers a session in a
 * transaction whatever the network does. The client probes its idle connections after 10 s too.
 */
const SERVER_KEEPALIVES = '-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=20000';
const CLIENT_KEEPALIVE_DELAY_MS = 10_000;

/**
 * What a session of either engine (a PostgreSQL server, the embedded PGlite) gives back, alike and in
 * any time zone of the machine (process.env.TZ):
 * - A `date` is its text, the calendar day 'YYYY-MM-DD'. pg made it a Date at local midnight, PGlite
 *   one at UTC midnight: read back with the local getters pg's needed, every day a PGlite row held was
 *   the day before west of UTC, and a row written again from it moved back a day each time.
 * - The session's TimeZone is UTC: every time the CRM writes out is in UTC, also where PostgreSQL
 *   spells it (`to_jsonb` of a row in the subject access export). A server in Pacific/Auckland wrote
 *   2026-03-01T08:00:00+13:00 for an instant the API gives as 2026-02-28T19:00:00Z, another day in the
 *   same document; PGlite takes the process's zone, as a fixed offset (Etc/GMT-14 in Pacific/Kiritimati).
 */
const DATE_OID = 1082;
const dayText = (text: string): string => text;
const SESSION_TIME_ZONE = 'UTC';
const sessionTypes: pg.CustomTypesConfig = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') => (oid === DATE_OID ? dayText : pg.types.getTypeParser(oid, format)),
};

/** The settings of every session the CRM opens on a PostgreSQL server: pooled connections and the LISTEN connection. */
const sessionConfig = (url: string, timeouts: PoolTimeouts): pg.ClientConfig => ({
  connectionString: url,
  statement_timeout: timeouts.statementMs,
  lock_timeout: timeouts.lockMs,
  idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
  connectionTimeoutMillis: timeouts.connectMs,
  keepAlive: true,
  keepAliveInitialDelayMillis: CLIENT_KEEPALIVE_DELAY_MS,
  // JIT compilation costs 300-500 ms a query, and the planner asks for it on the short queries here
  // whenever a per-row lookup inflates the estimate (the base-currency conversion made the pipeline
  // of 33k open deals take 1.1 s instead of 40 ms). These are OLTP queries: compile nothing.
  options: `-c jit=off -c TimeZone=${SESSION_TIME_ZONE} ${SERVER_KEEPALIVES}`,
  types: sessionTypes,
});

/**
 * A connection reset while its statement runs: the server learns that the client is gone only when it
 * next reads or writes the socket, so the statement would run to its end (up to statement_timeout:
 * minutes on the long-work pool) holding its locks and its transaction id, and that transaction id
 * holds back the event feed of every schema on the server. With client_connection_check_interval
 * (PostgreSQL 14 and later, on servers whose kernel reports a closed peer) the server looks every
 * second and ends it. Set after connecting, not as a startup option: PostgreSQL 13 refuses a
 * connection that names a setting it does not know, and a server that cannot check keeps running
 * without it.
 */
const CHECK_CLOSED_CLIENT = `DO $$ BEGIN PERFORM set_config('client_connection_check_interval', '1000', false); EXCEPTION WHEN OTHERS THEN NULL; END $$`;

/** One statement on a client of its own; a link that stalls meanwhile is cut after `boundMs` (the statement then fails). */
const queryWithin = async <R extends pg.QueryResultRow>(
  client: PgClient | pg.Client,
  boundMs: number,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> => {
  const timer = setTimeout(() => (client as PgClient).connection?.stream?.destroy(), boundMs);
  try {
    return await client.query<R>(text, values);
  } finally {
    clearTimeout(timer);
  }
};

/** Runs `CHECK_CLOSED_CLIENT` on a new connection; a link that stalls meanwhile is cut after `boundMs`. */
const checkClosedClient = async (client: PgClient, boundMs: number): Promise<void> => {
  await queryWithin(client, boundMs, CHECK_CLOSED_CLIENT);
};

/** pg-pool waits for `onConnect` before it hands a new connection out (@types/pg types it as returning nothing). */
type PoolSettings = Omit<pg.PoolConfig, 'onConnect'> & { onConnect: (client: pg.ClientBase) => Promise<void> };

/** Past statement_timeout the server answers with an error; silence this much longer means a stalled link. */
const STALL_MARGIN_MS = 1_000;

type PgClient = pg.PoolClient & { connection?: { stream?: { destroy(): void } } };

/**
 * Runs one statement on a pooled client with every failure typed: a connection that stays silent
 * past the statement bound is cut (a stalled network never answers, and statement_timeout runs on
 * the server), and a client whose connection failed is marked so that it is discarded on release.
 */
const guardedQuery = async <R>(client: PgClient, state: { broken: boolean }, url: string, stallMs: number, run: () => Promise<R>): Promise<R> => {
  const timer = setTimeout(() => {
    state.broken = true;
    client.connection?.stream?.destroy();
  }, stallMs);
  try {
    return await run();
  } catch (error) {
    if (isConnectionError(error)) state.broken = true;
    throw toUnavailable(state.broken && !isConnectionError(error) ? new Error(`PostgreSQL did not answer within ${stallMs} ms`) : error, url, 'statement');
  } finally {
    clearTimeout(timer);
  }
};

/**
 * Runs a parameterised statement under its name (statement-names.ts). A named statement whose
 * result columns changed under it (a rebuild swapped in a table with another column set, read with
 * `SELECT t.*`) fails with 0A000 "cached plan must not change result type": outside a transaction it
 * is run again unnamed on the same connection; inside one the transaction is already aborted, so
 * it is reported as `EventStoreUnavailable` (retryable: the caller's retry reads the new table).
 * Either way the connection is discarded on release, since its other prepared statements may be
 * stale too.
 */
const namedQuery = async (client: PgClient, state: { stale: boolean }, name: string, text: string, params: unknown[]): Promise<pg.QueryResult> => {
  const inTransaction = client.getTransactionStatus() !== 'I';
  try {
    return await client.query({ name, text, values: params });
  } catch (error) {
    if (!isStalePlanError(error)) throw error;
    state.stale = true;
    if (inTransaction) {
      throw new StaleStatements(
        'A prepared statement went stale inside a transaction (a read-model table was swapped by a rebuild); the transaction was rolled back and can be retried.',
        { cause: error },
      );
    }
    return client.query(text, params);
  }
};

/**
 * A kysely pool that maps connection failures to `EventStoreUnavailable`, so every module sees one
 * typed error with advice instead of a bare ECONNREFUSED, and that never hands out a connection
 * known to be broken. With `names`, parameterised statements run named from their second execution.
 */
const mappedPool = (pool: pg.Pool, url: string, timeouts: PoolTimeouts, names: StatementNames | undefined): PostgresPool => ({
  connect: async () => {
    let client: PgClient;
    // Every connection in use: a timeout is then the wait for one of them, not a server out of reach.
    const busy = pool.totalCount >= (pool.options.max ?? 10) && pool.idleCount === 0;
    try {
      client = await pool.connect();
    } catch (error) {
      if (busy && error instanceof Error && /timeout exceeded when trying to connect/i.test(error.message)) {
        throw new EventStoreUnavailable(
          `Every one of the ${pool.totalCount} connections to PostgreSQL at ${loggableUrl(url)} stayed busy for ${timeouts.connectMs} ms ` +
            '(slow statements, or more work than this process can take): the server answers, retry shortly.',
          { cause: error },
        );
      }
      throw toUnavailable(error, url);
    }
    const state = { broken: false, stale: false };
    const stallMs = timeouts.statementMs + STALL_MARGIN_MS;
    const run = (text: unknown, params?: unknown[]) => {
      const name = names && typeof text === 'string' && params && params.length > 0 ? names.nameFor(client, text) : undefined;
      return name === undefined ? client.query(text as never, params) : namedQuery(client, state, name, text as string, params!);
    };
    const wrapped = {
      // A cursor (streamed rows) is read by its owner; every other statement is guarded.
      query: (text: unknown, params?: unknown[]) =>
        typeof (text as { submit?: unknown }).submit === 'function'
          ? client.query(text as never)
          : guardedQuery(client, state, url, stallMs, () => run(text, params)),
      release: () => client.release(state.broken ? new Error('connection lost') : state.stale ? new Error('prepared statements stale') : undefined),
    };
    return wrapped as unknown as PostgresPoolClient;
  },
  end: () => pool.end(),
});

/**
 * One dedicated client carries every LISTEN of the process (a pooled client would be returned to
 * the pool and lose its LISTENs). It reconnects lazily: subscribers poll anyway, so a lost
 * notification only delays them.
 */
class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private readonly handlers = new Map<string, Set<() => void>>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly backoff = createBackoff();

  constructor(
    private readonly url: string,
    private readonly timeouts: PoolTimeouts,
  ) {}

  async listen(channel: string, onNotify: () => void): Promise<() => Promise<void>> {
    if (this.closed) throw new EventStoreUnavailable('The database handle is closed.');
    let set = this.handlers.get(channel);
    const isNewChannel = set === undefined;
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(onNotify);
    if (isNewChannel) {
      try {
        const client = await this.connection();
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (error) {
        set.delete(onNotify);
        if (set.size === 0) this.handlers.delete(channel);
        throw toUnavailable(error, this.url);
      }
    }
    return async () => {
      const current = this.handlers.get(channel);
      if (!current?.delete(onNotify) || current.size > 0) return;
      this.handlers.delete(channel);
      if (this.client && !this.closed) {
        await this.client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
      }
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.handlers.clear();
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    if (client) await endOrCut(client.end(), () => (client as PgClient).connection?.stream?.destroy());
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client(sessionConfig(this.url, this.timeouts));
      client.on('notification', (message) => {
        for (const handler of this.handlers.get(message.channel) ?? []) handler();
      });
      client.on('error', () => this.lost(client));
      client.on('end', () => this.lost(client));
      try {
        await client.connect();
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      } finally {
        this.connecting = undefined;
      }
      this.client = client;
      return client;
    })();
    return this.connecting;
  }

  private lost(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    if (!this.closed && this.handlers.size > 0) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      if (this.closed || this.handlers.size === 0) return;
      this.connection()
        .then(async (client) => {
          for (const channel of this.handlers.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
          this.backoff.reset();
          // Appends made while we were not listening: wake everyone once.
          for (const set of this.handlers.values()) for (const handler of set) handler();
        })
        .catch(() => this.scheduleReconnect());
    }, this.backoff.next());
    this.reconnectTimer.unref();
  }
}

/**
 * A session advisory lock held on a connection of its own until the returned function is called: how a
 * rebuild or a verification tells other processes that its shadow schema or job is alive
 * (projections/shadows.ts, audit/verification-jobs.ts). Taking it polls `pg_try_advisory_lock` (a
 * blocking wait would run into the statement timeout). The server lets the lock go with the session,
 * so a lost connection (a restarted or failed-over server, a reset link) is connected again and the
 * lock taken again, with backoff, for as long as it is held; a link gone silent is found by a check
 * every few seconds. (Before, the lock stayed lost until the work ended, and the next process to open
 * the read models dropped the shadow of a rebuild still running.) Between the loss and the retake
 * another process may still find the lock free.
 */
export async function holdSessionLock(url: string, timeouts: PoolTimeouts, key: string): Promise<() => Promise<void>> {
  const lock = new PgSessionLock(url, timeouts, key);
  try {
    await lock.take(createBackoff({ initialMs: 20, maxMs: 250 }));
  } catch (error) {
    throw toUnavailable(error, url);
  }
  return () => lock.release();
}

/** How often a held session lock's connection is checked: a silent link is otherwise noticed only by TCP, minutes later. */
const SESSION_LOCK_CHECK_MS = 5_000;

class PgSessionLock {
  private client: PgClient | undefined;
  private released = false;
  private retaking: Promise<void> | undefined;
  private retakeTimer: NodeJS.Timeout | undefined;
  private readonly check: NodeJS.Timeout;
  private readonly backoff = createBackoff();
  private readonly boundMs: number;

  constructor(
    private readonly url: string,
    private readonly timeouts: PoolTimeouts,
    private readonly key: string,
  ) {
    this.boundMs = timeouts.statementMs + STALL_MARGIN_MS;
    this.check = setInterval(() => {
      const client = this.client;
      if (client) queryWithin(client, this.boundMs, 'SELECT 1').catch(() => this.lost(client));
    }, SESSION_LOCK_CHECK_MS);
    this.check.unref();
  }

  /** Connects and polls until the lock is held (another process checking it holds it for a moment). */
  async take(backoff: Backoff): Promise<void> {
    const client = new pg.Client(sessionConfig(this.url, this.timeouts)) as unknown as PgClient;
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      for (;;) {
        const { rows } = await queryWithin<{ locked: boolean }>(client, this.boundMs, 'SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [this.key]);
        if (rows[0]?.locked) break;
        if (this.released) throw new Error('released');
        await pause(backoff.next());
      }
    } catch (error) {
      client.connection?.stream?.destroy();
      throw error;
    }
    this.client = client;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.check);
    clearTimeout(this.retakeTimer);
    await this.retaking;
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      await queryWithin(client, this.boundMs, 'SELECT pg_advisory_unlock(hashtext($1))', [this.key]);
    } finally {
      // Ending the session lets the lock go too, should the unlock have failed.
      await endOrCut(client.end(), () => client.connection?.stream?.destroy());
    }
  }

  private lost(client: PgClient): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.connection?.stream?.destroy();
    this.scheduleRetake();
  }

  private scheduleRetake(): void {
    if (this.released) return;
    this.retakeTimer = setTimeout(() => {
      this.retaking = this.take(createBackoff({ initialMs: 20, maxMs: 250 })).then(
        () => this.backoff.reset(),
        () => this.scheduleRetake(),
      );
    }, this.backoff.next());
    this.retakeTimer.unref();
  }
}

const DEFAULT_CONNECTION_LIFETIME_SECONDS = 600;

/**
 * Closing waits this long for connections to end: a statement in flight, the goodbye of an idle one.
 * A stalled link answers neither (a busy connection of the long-work pool would hold the close for
 * its statement bound, minutes), so what is left is then cut, and waited for as long again at most.
 */
const CLOSE_GRACE_MS = 2_000;

const endOrCut = async (ending: Promise<unknown>, cut: () => void): Promise<void> => {
  if (await settlesWithin(ending, CLOSE_GRACE_MS)) return;
  cut();
  await settlesWithin(ending, CLOSE_GRACE_MS);
};

/** A PostgreSQL server through a pg pool. Nothing connects until the first query. */
export function connectPostgres(
  url: string,
  options: {
    max?: number;
    timeouts?: PoolTimeouts;
    /** Run parameterised statements named from their second execution (default true; statement-names.ts). */
    namedStatements?: boolean;
    /** Bounds of the naming (tests). */
    statementNames?: StatementNamesOptions;
    /**
     * With named statements, a connection is closed once this old (on its next release or while idle;
     * default 600 s): its generic plans, fixed at a table's size and statistics when made, go with it.
     */
    connectionLifetimeSeconds?: number;
  } = {},
): SqlDatabase {
  const timeouts = options.timeouts ?? DEFAULT_POOL_TIMEOUTS;
  const named = options.namedStatements !== false;
  const settings: PoolSettings = {
    ...sessionConfig(url, timeouts),
    onConnect: (client) => checkClosedClient(client as PgClient, timeouts.connectMs),
    max: options.max ?? 10,
    // A prepared statement's generic plan is kept until a table it reads changes (DDL, ANALYZE): a
    // table that grew without an ANALYZE would keep the plan made when it was small. Bounding the
    // connection's life bounds the plan's (reconnecting costs a few ms every ten minutes).
    ...(named ? { maxLifetimeSeconds: options.connectionLifetimeSeconds ?? DEFAULT_CONNECTION_LIFETIME_SECONDS } : {}),
  };
  const pool = new pg.Pool(settings);
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  // Nor one in use: its running statement fails (typed by `guardedQuery`), the 'error' event is a duplicate.
  pool.on('connect', (client) => client.on('error', () => undefined));
  // Every connection of the pool, in use or idle, so that closing can cut those a stalled link holds.
  const clients = new Set<PgClient>();
  pool.on('connect', (client) => clients.add(client));
  pool.on('remove', (client) => clients.delete(client));
  const names = named ? new StatementNames(options.statementNames) : undefined;
  const kyselyPool = mappedPool(pool, url, timeouts, names);
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: kyselyPool }) });
  const listener = new PgListener(url, timeouts);
  let closed = false;
  return {
    kind: 'postgres',
    db,
    listen: (channel, onNotify) => listener.listen(channel, onNotify),
    waiting: () => pool.waitingCount,
    // Without named statements (a pooler that cannot keep them) the hot statements run unnamed too.
    ...(named
      ? {
          prepared: async <R>(name: string, text: string, params: unknown[]) => {
            const client = (await kyselyPool.connect()) as unknown as { query(q: unknown): Promise<pg.QueryResult>; release(): void };
            try {
              const result = await client.query({ name, text, values: params });
              return result.rows as R[];
            } finally {
              client.release();
            }
          },
        }
      : {}),
    close: async () => {
      if (closed) return;
      closed = true;
      const cutAll = () => {
        for (const client of clients) client.connection?.stream?.destroy();
      };
      await Promise.all([listener.close(), endOrCut(db.destroy(), cutAll)]);
    },
  };
}

/** How long queries of the embedded engine may run back to back before the event loop gets a turn. */
const PGLITE_TURN_EVERY_MS = 20;

/**
 * The embedded engine runs each query on this thread, and its answer resolves without a turn of the
 * event loop: a job reading page after page (a chain verification, a replay, a rebuild) held every
 * HTTP request for its whole length (5-8 s freezes of /health while the chains of 90,000 events were
 * verified; 980 queries in 500 ms let a 5 ms timer run 0 times). Once queries have run 20 ms since the
 * last turn, the next one waits for one (shared/io-turns.ts). The kysely dialect sends every query
 * through `query`.
 */
const takingTurns = (pglite: PGlite): PGlite => {
  const turns = ioTurns(PGLITE_TURN_EVERY_MS);
  const query = async (...args: Parameters<PGlite['query']>) => {
    if (turns.due()) await turns.give();
    return pglite.query(...args);
  };
  return withQuery(pglite, query as PGlite['query']);
};

/**
 * The embedded PostgreSQL: in memory when `dataDir` is undefined, else persisted in that folder. With
 * `minFreeDiskMb` (the runtime gives CRM_MIN_FREE_DISK_MB) its disk keeps that much free
 * (free-space.ts): opening is refused below it, writes while below it.
 */
export async function openPglite(dataDir?: string, options: { minFreeDiskMb?: number } = {}): Promise<SqlDatabase> {
  const { minFreeDiskMb } = options;
  const guarded = dataDir !== undefined && minFreeDiskMb !== undefined;
  if (guarded) checkFreeSpaceToOpen(dataDir, minFreeDiskMb);
  // Loaded here, not at the top: the embedded engine costs about 55 MB of memory to load, which a
  // process on a PostgreSQL server (API, projection worker, bulk import) never needs.
  const [{ PGlite: Engine }, { PGliteDialect }] = await Promise.all([import('@electric-sql/pglite'), import('kysely-pglite-dialect')]);
  let pglite: PGlite;
  try {
    // Options in the one argument: `create(undefined, options)` (in memory) drops them.
    pglite = await Engine.create({
      dataDir,
      parsers: { [DATE_OID]: dayText },
      startParams: [...Engine.defaultStartParams, '-c', `TimeZone=${SESSION_TIME_ZONE}`],
    });
  } catch (error) {
    throw new EventStoreUnavailable(
      `Cannot open the embedded PostgreSQL (PGlite)${dataDir ? ` in ${dataDir}` : ''}: ${(error as Error).message}. ` +
        'Check that the folder is writable and not used by another process.',
      { cause: error },
    );
  }
  const db = new Kysely<any>({ dialect: new PGliteDialect(takingTurns(guarded ? keepingDiskFree(pglite, dataDir, minFreeDiskMb) : pglite)) });
  let closed = false;
  return {
    kind: 'pglite',
    db,
    listen: async (channel, onNotify) => {
      const unlisten = await pglite.listen(channel, () => onNotify());
      return async () => {
        if (!closed) await unlisten();
      };
    },
    close: async () => {
      if (closed) return;
      closed = true;
      // Destroying kysely closes the PGlite instance through the dialect's driver.
      await db.destroy();
      if (!pglite.closed) await pglite.close();
    },
  };
}
