import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { EventStoreUnavailable } from '../errors.ts';

/**
 * The one handle every module uses to reach PostgreSQL, whether a server (pg pool) or the
 * embedded PGlite. Read models, projections and the event store all share it.
 */
export interface SqlDatabase {
  readonly kind: 'postgres' | 'pglite';
  /** Pooled (pg) or the single PGlite connection. */
  readonly db: Kysely<any>;
  /** LISTEN on a channel; resolves to a function that stops listening. */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  /**
   * Optional fast path for hot statements: runs `text` as a named prepared statement (parsed and
   * planned once per connection). Only the pg pool offers it; callers fall back to `db`.
   */
  readonly prepared?: <R>(name: string, text: string, params: unknown[]) => Promise<R[]>;
  /** Queries waiting for a pooled connection now (pg pool only): back-pressure reads it. */
  readonly waiting?: () => number;
  close(): Promise<void>;
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  // PostgreSQL SQLSTATEs: invalid authorization, invalid password, unknown database, too many connections, shutting down.
  '28000',
  '28P01',
  '3D000',
  '53300',
  '57P01',
  '57P03',
]);

const describeTarget = (url: string): string => {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return 'the configured server';
  }
};

/** Turns a connection-level failure into `EventStoreUnavailable`; other errors pass through unchanged. */
export const toUnavailable = (error: unknown, url: string): unknown => {
  if (error instanceof EventStoreUnavailable) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const isConnectionError =
    (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) ||
    /connect|Connection terminated|timeout exceeded when trying to connect/i.test(message);
  if (!isConnectionError) return error;
  return new EventStoreUnavailable(
    `Cannot reach PostgreSQL at ${describeTarget(url)} (${typeof code === 'string' ? `${code}: ` : ''}${message}). ` +
      'Check DATABASE_URL (host, port, user, password, database name) and that PostgreSQL is running (pg_isready).',
    { cause: error },
  );
};

/**
 * A kysely pool that maps connection failures to `EventStoreUnavailable`, so every module sees one
 * typed error with advice instead of a bare ECONNREFUSED.
 */
const mappedPool = (pool: pg.Pool, url: string): PostgresPool => ({
  connect: async () => {
    try {
      return (await pool.connect()) as unknown as PostgresPoolClient;
    } catch (error) {
      throw toUnavailable(error, url);
    }
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

  constructor(private readonly url: string) {}

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
    await client?.end().catch(() => undefined);
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client({ connectionString: this.url });
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
        })
        .catch(() => this.scheduleReconnect());
    }, 1_000);
    this.reconnectTimer.unref();
  }
}

/** A PostgreSQL server through a pg pool. Nothing connects until the first query. */
export function connectPostgres(url: string, options: { max?: number } = {}): SqlDatabase {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10 });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: mappedPool(pool, url) }) });
  const listener = new PgListener(url);
  let closed = false;
  return {
    kind: 'postgres',
    db,
    listen: (channel, onNotify) => listener.listen(channel, onNotify),
    waiting: () => pool.waitingCount,
    prepared: async <R>(name: string, text: string, params: unknown[]) => {
      try {
        const result = await pool.query({ name, text, values: params });
        return result.rows as R[];
      } catch (error) {
        throw toUnavailable(error, url);
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await listener.close();
      await db.destroy();
    },
  };
}

/** The embedded PostgreSQL: in memory when `dataDir` is undefined, else persisted in that folder. */
export async function openPglite(dataDir?: string): Promise<SqlDatabase> {
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(dataDir);
  } catch (error) {
    throw new EventStoreUnavailable(
      `Cannot open the embedded PostgreSQL (PGlite)${dataDir ? ` in ${dataDir}` : ''}: ${(error as Error).message}. ` +
        'Check that the folder is writable and not used by another process.',
      { cause: error },
    );
  }
  const db = new Kysely<any>({ dialect: new PGliteDialect(pglite) });
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
