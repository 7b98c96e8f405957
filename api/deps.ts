import type { Logger } from 'pino';
import type { FastifyServerOptions } from 'fastify';
import type { EventStore } from '../eventstore/contract.ts';
import type { SqlDatabase } from '../shared/sql.ts';
import type { CommandContext, CommandResult } from '../commands/index.ts';
import type { IntegrationServices } from '../integration/index.ts';
import type { AnalyticsService } from '../analytics/service.ts';
import type { AuditServices } from '../audit/index.ts';
import type { BackPressureOptions } from './back-pressure.ts';
import type { RateLimitOptions } from './rate-limit.ts';

export type { RateLimitOptions } from './rate-limit.ts';
import type { ImportJobs } from '../commands/import/jobs.ts';
import type { RecordKind } from '../audit/records.ts';
import type { TimeAxis } from '../audit/as-of.ts';

/**
 * What the HTTP API needs, passed in by the composition root (runtime/crm.ts). The API reads no environment;
 * every port below is narrow on purpose so the composition root can adapt the real services.
 */

/** A command as the API hands it over: the command type plus its fields (commands/schemas.ts). */
export interface ApiCommand {
  type: string;
  [field: string]: unknown;
}

/**
 * The command layer's context and result, the same types (type-only: the API loads nothing of
 * commands/ at run time; the composition root passes `CrmCommands` in as the `CommandPort`).
 */
export type { CommandContext, CommandResult } from '../commands/index.ts';

/** `CrmCommands` from commands/index.ts satisfies this. */
export interface CommandPort {
  execute(command: ApiCommand, ctx: CommandContext): Promise<CommandResult>;
}

/** A projection's progress as `ProjectionRunner.status()` (projections/status.ts) reports it. */
export interface ProjectionStatus {
  name: string;
  /** Last applied global position. */
  position: bigint;
  /** Events recorded after the checkpoint (capped), when known. */
  eventsBehind?: number | null;
  /** Age of the oldest event not yet applied, when known, on the database's clock. */
  secondsBehind?: number | null;
  /** `running`, `failed`, `stopped`, `rebuilding`, or `starting` (inline projections this process starts later). */
  state: string;
  lastError?: string | null;
  /** A failed projection's poison event: position, stream and id. */
  failedPosition?: bigint | null;
  failedStream?: string | null;
  failedEventId?: string | null;
  /** Worker holding the projection's lease (scale-out), null when none does. */
  owner?: string | null;
  /** When that lease runs out unless renewed. */
  leaseExpiresAt?: Date | null;
  /** Seconds since the checkpoint last moved (or changed state), on the database's clock. */
  secondsSinceUpdate?: number; /** Why its checkpoint names an event the store does not hold (restored beside newer read models): the read side is wrong as a whole. */
  offTheStore?: string | null;
}

/** The projection runner (projections/), as the API uses it. */
export interface ReadModelProgress {
  /** Resolves true once every projection has applied `position`, false when `timeoutMs` passes first. */
  waitForPosition(position: bigint, timeoutMs: number): Promise<boolean>;
  status(): Promise<ProjectionStatus[]>;
  /** Events delivered to the projections of this process and not applied yet (back-pressure); absent when they run elsewhere. */
  backlog?(): number;
  /** The position of the newest event the store has committed, readable yet or not (0 when empty). */
  newestPosition?(): Promise<bigint>;
}

/** A load of data this process runs in the background (`crm serve`'s demo data), as GET /ready shows it. */
export interface BackgroundLoadStatus {
  /** `waiting_for_database`: a transient database error; the load tries again by itself. */
  state: 'loading' | 'waiting_for_database' | 'loaded' | 'interrupted' | 'failed';
  /** Commands handled so far (recorded, found already recorded, or refused by the rules). */
  done: number;
  planned: number;
  lastError: string | null;
}

export type { Page } from '../projections/queries/page.ts';

/** A record as the routes pass it on (masking, ETags): any view's fields by name. */
export type ReadRecord = Record<string, unknown>;

/**
 * Read-model queries (projections/queries/*.ts), typed by their views: filters arrive already
 * validated by the route's schema; each function returns plain JSON-able records (money in major
 * units as numbers).
 */
import type { ReadModelQueries } from '../projections/queries/index.ts';
export type { ReadModelQueries };

/**
 * What the caller may see (api/auth/viewer.ts): the user ids whose customers, deals and feedback are
 * visible. Null or absent: everything (service keys, users with `all` visibility). The queries turn
 * it into an SQL condition, so lists, counts, totals and keyset pages stay index-backed.
 */
export interface ReadScope {
  owners: readonly string[];
}

/** Point-in-time state (audit issue): a record folded from its events up to `asOf` (record time unless `time` says business). */
export interface PointInTime {
  stateAt(kind: RecordKind, id: string, asOf: Date, time?: TimeAxis): Promise<{ state: ReadRecord; revision: number } | undefined>;
}

/** Trusted proxies: their addresses or CIDR ranges, or how many hops of X-Forwarded-For to trust. */
export type TrustedProxies = number | string[];

export interface ApiDeps {
  store: EventStore;
  commands: CommandPort;
  /** Read models and the api_keys table always live here, whatever the event engine. */
  database: SqlDatabase;
  schemas: { events: string; read: string; reporting?: string };
  /** The installation's key for idempotency fingerprints (EmailIndex.fingerprintKey); without it, unkeyed. */
  fingerprintKey?: Uint8Array;
  projections: ReadModelProgress;
  /** projections/queries bound to `database` and `schemas.read`. */
  queries: ReadModelQueries;
  /** `audit.pointInTime` (`GET /customers/:id?asOf=` and friends). */
  pointInTime: PointInTime;
  /** The analytics services (api/routes/analytics.ts). */
  analytics: AnalyticsService;
  /** The auditor's services (api/routes/audit.ts). */
  audit: AuditServices;
  /** Webhook subscriptions and publisher status (integration/). */
  integration: IntegrationServices;
  /** The process's logger (api/logger.ts), or Fastify/pino logger options; false (the default) keeps tests quiet. */
  logger?: FastifyServerOptions['logger'] | Logger;
  /** The demo data `crm serve` loads in the background: /ready is not ready until it is loaded. */
  demoLoad?: { status(): BackgroundLoadStatus };
  /** Bounds past which new commands get 503 (api/back-pressure.ts); defaults there. */
  backPressure?: Partial<BackPressureOptions>;
  /** Default: 6,000 requests a minute per key, counted per process (api/rate-limit.ts). */
  rateLimit?: RateLimitOptions;
  /**
   * Proxies whose X-Forwarded-For names the client, whose address then counts for the limits of
   * requests without a valid key (CRM_TRUST_PROXY). Default: none, the peer is the client.
   */
  trustProxy?: TrustedProxies;
  /** Allowed CORS origins; default: any origin, no credentials (keys travel in a header, not cookies). */
  corsOrigins?: string[] | '*';
  /** Longest a `?waitFor=` query waits before answering 503. Default 5 s. */
  waitForTimeoutMs?: number;
  /** /ready answers 503 when any projection lags more than this many seconds. Default 10 s. */
  readyMaxLagSeconds?: number;
  /**
   * A request not answered by then gets a 503 problem (a command's: outcome unknown). Default 10 s;
   * never less than `waitForTimeoutMs` + 2 s.
   */
  requestTimeoutMs?: number;
  /** Registers `GET /bench/noop`, a route that does nothing (the benchmark's ceiling). */
  benchNoopRoute?: boolean;
  /** Published in the OpenAPI document. */
  version?: string;
  /** ISO 4217 base currency (CRM_BASE_CURRENCY): rates are set against it. Default EUR. */
  baseCurrency?: string;
  /** Bulk imports (`POST /imports`). */
  imports: ImportJobs;
  /** Largest import body accepted (413 above). Default 1 GiB. */
  importMaxBytes?: number;
}
