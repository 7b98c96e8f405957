import type { UserRole } from '../domain/user/events.ts';
import type { BackPressureOptions } from '../api/back-pressure.ts';
import type { TrustedProxies } from '../api/deps.ts';
import type { Network } from '../integration/destinations.ts';
import { loggableUrl } from '../shared/loggable-url.ts';
/**
 * The typed configuration the composition root (runtime/crm.ts) builds the CRM from. Only
 * cli/config.ts reads it from the environment; tests and benchmarks load it the same way.
 */

/**
 * Every wait on the database is bounded (DESIGN invariant 12): PostgreSQL cancels a statement or a
 * lock wait past these bounds, the client gives up on a connection that does not answer, and the
 * HTTP layer answers 503 for a request that has not finished in time. API work gets a few seconds;
 * rebuilds, replays, verification and model fits run on their own connections with a longer bound.
 */
export interface DatabaseTimeouts {
  /** statement_timeout of API and projection connections (ms). */
  statementMs: number;
  /** statement_timeout of rebuild, replay, verification and fit connections (ms). */
  longStatementMs: number;
  /** lock_timeout of every connection (ms). */
  lockMs: number;
  /**
   * idle_in_transaction_session_timeout of API and projection connections (ms): the server ends a
   * session left in an open transaction with no statement running this long (a client gone without a
   * word holds its locks and its transaction id until then). Long-work connections use the longer of
   * this and `longStatementMs`.
   */
  idleInTransactionMs: number;
  /** Longest wait for a connection: opening one, or a free one from the pool (ms). */
  connectMs: number;
  /** Longest an HTTP request may take before it is answered 503 (ms). */
  requestMs: number;
}

export interface CrmConfig {
  /** Where read models live (and events, unless EventStoreDB is configured). */
  database:
    /** minFreeDiskMb: free space the embedded database keeps on its disk (eventstore/postgres/free-space.ts). */
    | { kind: 'pglite'; dataDir: string; minFreeDiskMb: number }
    /** preparedStatements: the pool runs repeated statements named (off behind a pooler that cannot keep them). */
    | { kind: 'postgres'; url: string; preparedStatements?: boolean };
  eventStore: { kind: 'sql' } | { kind: 'eventstoredb'; url: string };
  http: {
    host: string;
    port: number;
    /** Proxies whose X-Forwarded-For names the client: addresses or CIDR ranges, or a hop count (api/deps.ts). */
    trustProxy?: TrustedProxies;
  };
  adminKey: string | undefined;
  /** Whether demo data may be loaded on start: embedded defaults to yes, a configured server to no. */
  demo: { enabled: boolean; seed: number; customers: number; until: Date };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  schemas: { events: string; read: string; reporting: string };
  projections: 'inline' | 'off';
  /** Lease length of projection workers (projections/leases.ts), seconds. */
  projectionLeaseSeconds: number;
  /**
   * A projection this many seconds behind makes /ready answer 503. Longer than a worker's lease by
   * default: a crashed `crm project` worker's projections wait out its lease for a taker, and every API
   * replica reads the same checkpoints, so a bound under the lease took them all out together.
   */
  readyMaxLagSeconds: number;
  /** 32 bytes wrapping the per-customer data keys at rest (CRM_MASTER_KEY or CRM_MASTER_KEY_FILE); undefined: stored bare. */
  masterKey?: Uint8Array | undefined;
  /** JetStream publishing of integration events (integration/nats-publisher.ts); unset: off. */
  nats: { url: string; stream: string; role: UserRole } | undefined;
  /** RabbitMQ publishing of integration events (integration/amqp-publisher.ts); unset: off. */
  amqp: { url: string; exchange: string; role: UserRole } | undefined;
  /** Networks outside the public internet that webhook deliveries may reach (integration/destinations.ts); empty: none. */
  webhookAllowNetworks: Network[];
  /** Bounds on every database wait and on each HTTP request (cli/timeouts.ts). */
  timeouts: DatabaseTimeouts;
  /** Requests per minute per API key (0: off), per role where set; counted in Redis when `redisUrl` is set. */
  rateLimit: { perMinute: number; perRole: Record<string, number>; redisUrl: string | undefined };
  /** Bounds past which commands are refused with 503 (api/back-pressure.ts; 0 turns one off). */
  backPressure: Omit<BackPressureOptions, 'retryAfterSeconds'>;
  /** ISO 4217 code of the base currency: exchange rates are set against it, base-currency figures are given in it. */
  baseCurrency: string;
  /**
   * Bounds of a stop (SIGTERM, Ctrl-C) of `crm serve` and `crm project` (cli/shutdown.ts): the whole
   * closing, and the part of it in which requests in flight may finish (below the whole), in ms.
   */
  shutdown: { timeoutMs: number; drainMs: number };
}

/** Where the engine's data lives, for messages: the server's URL as shared/loggable-url.ts prints it. */
export const describeDatabase = (config: CrmConfig): string =>
  config.database.kind === 'pglite' ? `embedded PostgreSQL (PGlite) in ${config.database.dataDir}` : `PostgreSQL at ${loggableUrl(config.database.url)}`;
