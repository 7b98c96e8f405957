import { UserRole } from '../domain/user/events.ts';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_BACK_PRESSURE } from '../api/back-pressure.ts';
import { ROLES } from '../api/roles.ts';
import { DEFAULT_DEMO_UNTIL } from './demo-data.ts';
import { isIsoCurrency } from '../domain/currencies.ts';
import { DEFAULT_BASE_CURRENCY } from '../domain/exchange-rate/events.ts';
import type { CrmConfig } from '../runtime/config.ts';
import type { TrustedProxies } from '../api/deps.ts';
import { parseNetworks, type Network } from '../integration/destinations.ts';
import { DATABASE_TIMEOUT_VARIABLES, databaseTimeouts, millis } from './timeouts.ts';
import { loggableUrl, userinfoEndsEarly } from '../shared/loggable-url.ts';

/**
 * The program's configuration, read from the environment once at start and validated with zod.
 * Nothing else reads `process.env`; the composition root (runtime/crm.ts) builds the CRM from the result.
 */

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const schemaName = (fallback: string) =>
  z.string().regex(SCHEMA_NAME, 'a lower-case PostgreSQL identifier (letters, digits, _; at most 63 characters)').default(fallback);

/** `1`/`true`/`yes`/`on` and `0`/`false`/`no`/`off`; unset stays undefined (the default then depends on the engine). */
const flag = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.enum(['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off']))
  .transform((value) => ['1', 'true', 'yes', 'on'].includes(value))
  .optional();

const emptyAsUnset = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);

/** At most 2^31 - 1: Node cuts a longer timer to 1 ms (a wait of 3,000,000,000 ms became no wait). */
const MAX_COUNT = 2 ** 31 - 1;
/** A count where 0 turns a limit off; every refusal says so in one message. */
const countOrOff = (what: string, off: string) => {
  const message = `a whole number of ${what} from 0 to ${MAX_COUNT} (0 turns ${off} off)`;
  return z.coerce.number({ error: message }).int(message).min(0, message).max(MAX_COUNT, message);
};
const requestsPerMinute = countOrOff('requests per minute', 'the limit');
const bound = (what: string) => countOrOff(what, 'the bound');
const rateLimitVariable = (role: string) => `CRM_RATE_LIMIT_${role.toUpperCase()}`;
/** One 16 MB WAL segment and a little more: under it a commit may find no room for the next segment. */
const MIN_FREE_DISK_MB_FLOOR = 32;
/**
 * Free space the embedded database keeps by default (eventstore/postgres/free-space.ts says why): four
 * WAL segments, one the flush may need, the rest for what runs while the guard looks again (at most
 * every 100 ms) and for transactions already open when it trips.
 */
const DEFAULT_MIN_FREE_DISK_MB = 64;
const MIN_FREE_DISK_MESSAGE = `a whole number of megabytes from ${MIN_FREE_DISK_MB_FLOOR} to ${MAX_COUNT}`;

/** 25 s: within the 30 s a container platform (Kubernetes' default grace period) waits before SIGKILL. */
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 25_000;
const DEFAULT_SHUTDOWN_DRAIN_MS = 5_000;

/** The drain must leave time for the rest of the closing (projections, pools) within the overall timeout. */
const shutdownBounds = (timeoutMs: number, drainMs: number | undefined): CrmConfig['shutdown'] => {
  if (drainMs === undefined) return { timeoutMs, drainMs: Math.min(DEFAULT_SHUTDOWN_DRAIN_MS, Math.floor(timeoutMs / 2)) };
  if (drainMs >= timeoutMs) {
    throw new ConfigError([
      {
        variable: 'CRM_SHUTDOWN_DRAIN_MS',
        message: `must be below CRM_SHUTDOWN_TIMEOUT_MS (${timeoutMs}), which also bounds the rest of the closing (got "${drainMs}")`,
      },
    ]);
  }
  return { timeoutMs, drainMs };
};

/**
 * The clients of these URLs (pg, ioredis, nats, amqplib) parse them with the WHATWG parser, which ends the
 * host part at a `/`, `?` or `#` even inside a password: pg then connected to a host named after the
 * user, with the rest of the password as the database name. EVENTSTORE_URL is rewritten for its
 * client instead (eventstore/eventstoredb/connection.ts).
 */
const PERCENT_ENCODE =
  'a URL whose user and password have "/", "?" and "#" percent-encoded (%2F, %3F, %23): as written, part of the password would be read as the host, path or options';

const EnvSchema = z.object({
  DATABASE_URL: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^postgres(ql)?:\/\/.+/, 'a PostgreSQL URL such as postgres://user:password@host:5432/database')
      .refine((value) => !userinfoEndsEarly(value), PERCENT_ENCODE)
      .optional(),
  ),
  EVENTSTORE_URL: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^esdb(\+discover)?:\/\/.+/, 'an EventStoreDB URL such as esdb://localhost:2113?tls=false')
      .optional(),
  ),
  PORT: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number({ error: 'a port number from 0 to 65535' })
      .int('a port number from 0 to 65535')
      .min(0, 'a port number from 0 to 65535')
      .max(65535, 'a port number from 0 to 65535')
      .default(3000),
  ),
  HOST: z.preprocess(emptyAsUnset, z.string().min(1).default('127.0.0.1')),
  /**
   * The proxies in front (a load balancer) whose X-Forwarded-For names the client: their addresses or
   * CIDR ranges, or how many hops to trust. Unset: none, and every client behind one proxy is one address.
   */
  CRM_TRUST_PROXY: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .optional()
      .transform((text, ctx): TrustedProxies | undefined => {
        if (text === undefined) return undefined;
        if (/^\d+$/.test(text.trim())) {
          const hops = Number(text.trim());
          if (hops >= 1 && hops <= 10) return hops;
          ctx.addIssue({ code: 'custom', message: "a number of hops from 1 to 10, or the proxies' addresses or CIDR ranges" });
          return z.NEVER;
        }
        const parsed = parseNetworks(text);
        if ('networks' in parsed && parsed.networks.length > 0)
          return text
            .split(',')
            .map((entry) => entry.trim())
            .filter((entry) => entry !== '');
        ctx.addIssue({ code: 'custom', message: 'error' in parsed ? parsed.error : "the proxies' addresses or CIDR ranges, or a number of hops" });
        return z.NEVER;
      }),
  ),
  CRM_ADMIN_KEY: z.preprocess(emptyAsUnset, z.string().min(16, 'at least 16 characters').max(200).regex(/^\S+$/, 'no spaces').optional()),
  CRM_DATA_DIR: z.preprocess(emptyAsUnset, z.string().min(1).optional()),
  /** Free space the embedded database keeps on the disk of CRM_DATA_DIR: below it, opening and writes are refused. */
  CRM_MIN_FREE_DISK_MB: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number({ error: MIN_FREE_DISK_MESSAGE })
      .int(MIN_FREE_DISK_MESSAGE)
      .min(MIN_FREE_DISK_MB_FLOOR, MIN_FREE_DISK_MESSAGE)
      .max(MAX_COUNT, MIN_FREE_DISK_MESSAGE)
      .default(DEFAULT_MIN_FREE_DISK_MB),
  ),
  CRM_MASTER_KEY: z.preprocess(emptyAsUnset, z.string().optional()),
  CRM_MASTER_KEY_FILE: z.preprocess(emptyAsUnset, z.string().min(1).optional()),
  CRM_DEMO: z.preprocess(emptyAsUnset, flag),
  CRM_DEMO_SEED: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1)
      .default(42),
  ),
  CRM_DEMO_CUSTOMERS: z.preprocess(emptyAsUnset, z.coerce.number().int().min(1).max(1_000_000).default(1000)),
  LOG_LEVEL: z.preprocess(emptyAsUnset, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  CRM_EVENTS_SCHEMA: z.preprocess(emptyAsUnset, schemaName('crm_events')),
  CRM_READ_SCHEMA: z.preprocess(emptyAsUnset, schemaName('crm')),
  CRM_REPORTING_SCHEMA: z.preprocess(emptyAsUnset, schemaName('reporting')),
  /** `inline`: the API process also runs the projections; `off`: API only (run `crm project` beside it). */
  CRM_PROJECTIONS: z.preprocess(emptyAsUnset, z.enum(['inline', 'off']).default('inline')),
  CRM_PREPARED_STATEMENTS: z.preprocess(emptyAsUnset, flag),
  /** Lease of a projection worker on each projection: how long a crashed worker's projections wait for a taker. */
  CRM_PROJECTION_LEASE_SECONDS: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number({ error: 'a number of seconds from 1 to 3600' })
      .min(1, 'a number of seconds from 1 to 3600')
      .max(3600, 'a number of seconds from 1 to 3600')
      .default(15),
  ),
  /** A projection this far behind makes /ready not ready (default: twice the lease, at least 10 s). */
  CRM_READY_MAX_LAG_SECONDS: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number({ error: 'a number of seconds from 1 to 86400' })
      .int('a number of seconds from 1 to 86400')
      .min(1, 'a number of seconds from 1 to 86400')
      .max(86400, 'a number of seconds from 1 to 86400')
      .optional(),
  ),
  /** NATS with JetStream: every integration event is published there when set (integration/). */
  CRM_NATS_URL: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^(nats|tls|wss?):\/\/.+/, 'a NATS URL such as nats://127.0.0.1:4222')
      .refine((value) => !userinfoEndsEarly(value), PERCENT_ENCODE)
      .optional(),
  ),
  CRM_NATS_STREAM: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a JetStream stream name (letters, digits, _ and -)')
      .default('CRM_EVENTS'),
  ),
  CRM_NATS_ROLE: z.preprocess(emptyAsUnset, UserRole.default('analyst')),
  /** RabbitMQ (AMQP 0-9-1): every integration event is published to a topic exchange there when set (integration/). */
  CRM_AMQP_URL: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^amqps?:\/\/.+/, 'an AMQP URL such as amqp://guest:guest@127.0.0.1:5672')
      .refine((value) => !userinfoEndsEarly(value), PERCENT_ENCODE)
      .optional(),
  ),
  CRM_AMQP_EXCHANGE: z.preprocess(
    emptyAsUnset,
    z
      .string()
      // RabbitMQ's own rule for names, without the `amq.` prefix it reserves.
      .regex(/^(?!amq\.)[A-Za-z0-9_.:-]{1,255}$/, 'an exchange name (letters, digits, -, _, . and :, not beginning with amq.)')
      .default('crm.events'),
  ),
  CRM_AMQP_ROLE: z.preprocess(emptyAsUnset, UserRole.default('analyst')),
  /** Networks outside the public internet that webhook deliveries may reach (integration/destinations.ts). */
  CRM_WEBHOOK_ALLOW_NETWORKS: z
    .string()
    .default('')
    .transform((text, ctx): Network[] => {
      const parsed = parseNetworks(text);
      if ('networks' in parsed) return parsed.networks;
      ctx.addIssue({ code: 'custom', message: parsed.error });
      return z.NEVER;
    }),
  ...DATABASE_TIMEOUT_VARIABLES,
  /** Longest a stop of `crm serve` or `crm project` may take; past it the process names what it still waited on and exits 124. */
  CRM_SHUTDOWN_TIMEOUT_MS: millis(1_000, 3_600_000, DEFAULT_SHUTDOWN_TIMEOUT_MS),
  /** How long requests in flight may finish when `crm serve` stops (unset: 5 s, or half the shutdown timeout when that is less). */
  CRM_SHUTDOWN_DRAIN_MS: z.preprocess(
    emptyAsUnset,
    z.coerce
      .number({ error: 'milliseconds from 0 to 3600000' })
      .int('milliseconds from 0 to 3600000')
      .min(0, 'milliseconds from 0 to 3600000')
      .max(3_600_000, 'milliseconds from 0 to 3600000')
      .optional(),
  ),
  /** Requests per minute per API key; 0 turns the limit off. */
  CRM_RATE_LIMIT: z.preprocess(emptyAsUnset, requestsPerMinute.default(6_000)),
  ...Object.fromEntries(ROLES.map((role) => [rateLimitVariable(role), z.preprocess(emptyAsUnset, requestsPerMinute.optional())])),
  /** The one currency money figures are also given in (ISO 4217). */
  CRM_BASE_CURRENCY: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^[A-Z]{3}$/, 'an ISO 4217 currency code in capitals, such as EUR or USD')
      .refine(isIsoCurrency, 'not an ISO 4217 currency code: write one such as EUR or USD')
      .default(DEFAULT_BASE_CURRENCY),
  ),
  /** Back-pressure on commands (api/back-pressure.ts): past a bound a command gets 503 with Retry-After; 0 turns that bound off. */
  CRM_MAX_COMMANDS_IN_FLIGHT: z.preprocess(emptyAsUnset, bound('commands handled at once').default(DEFAULT_BACK_PRESSURE.maxCommandsInFlight)),
  CRM_MAX_COMMAND_WAIT_MS: z.preprocess(emptyAsUnset, bound('milliseconds a command may wait for a place').default(DEFAULT_BACK_PRESSURE.maxCommandWaitMs)),
  CRM_OVERLOADED_COMMAND_WAIT_MS: z.preprocess(
    emptyAsUnset,
    bound('milliseconds a command may wait for a place under sustained overload').default(DEFAULT_BACK_PRESSURE.overloadedCommandWaitMs),
  ),
  CRM_MAX_EVENT_LOOP_DELAY_MS: z.preprocess(emptyAsUnset, bound('milliseconds of event-loop delay').default(DEFAULT_BACK_PRESSURE.maxEventLoopDelayMs)),
  CRM_MAX_POOL_WAITING: z.preprocess(emptyAsUnset, bound('queries waiting for a database connection').default(DEFAULT_BACK_PRESSURE.maxPoolWaiting)),
  CRM_MAX_PROJECTION_BACKLOG: z.preprocess(emptyAsUnset, bound('events the projections have yet to apply').default(DEFAULT_BACK_PRESSURE.maxProjectionBacklog)),
  /** Shared rate-limit counters for every replica. */
  REDIS_URL: z.preprocess(
    emptyAsUnset,
    z
      .string()
      .regex(/^rediss?:\/\/.+/, 'a Redis URL such as redis://127.0.0.1:6379')
      .refine((value) => !userinfoEndsEarly(value), PERCENT_ENCODE)
      .optional(),
  ),
});

export type Engine = 'pglite' | 'postgres';

/** The typed configuration (runtime/config.ts); this module is the one place that reads it from the environment. */
export type { CrmConfig } from '../runtime/config.ts';

/**
 * A master key as written in CRM_MASTER_KEY or its file: 32 bytes as base64 (`openssl rand -base64 32`,
 * `crm master-key generate`), base64url or 64 hex digits. Returns an error message instead when it is not.
 */
export const parseMasterKey = (text: string): Uint8Array | string => {
  const value = text.trim();
  const bytes = /^[0-9a-f]{64}$/i.test(value)
    ? Buffer.from(value, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(value)
      ? Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
      : undefined;
  if (!bytes || bytes.length !== 32) return 'a 32-byte key as base64 (openssl rand -base64 32) or 64 hex digits';
  return new Uint8Array(bytes);
};

/** The master key from the variable or the file it names (a secret mounted by the platform); never both. */
const readMasterKey = (value: string | undefined, file: string | undefined, cwd: string): Uint8Array | undefined => {
  if (value !== undefined && file !== undefined) {
    throw new ConfigError([{ variable: 'CRM_MASTER_KEY_FILE', message: 'set either CRM_MASTER_KEY or CRM_MASTER_KEY_FILE, not both' }]);
  }
  if (value === undefined && file === undefined) return undefined;
  let text = value;
  if (file !== undefined) {
    try {
      text = readFileSync(resolve(cwd, file), 'utf8');
    } catch (error) {
      throw new ConfigError([{ variable: 'CRM_MASTER_KEY_FILE', message: `cannot read ${file}: ${(error as Error).message}` }]);
    }
  }
  const key = parseMasterKey(text!);
  if (typeof key === 'string') {
    // Never echo the value: it is the secret that protects every customer's data.
    throw new ConfigError([
      { variable: file !== undefined ? 'CRM_MASTER_KEY_FILE' : 'CRM_MASTER_KEY', message: `${key} (got ${text!.trim().length} characters)` },
    ]);
  }
  return key;
};

/** A configuration problem, worded for the person who set the variable. */
export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(
      `Invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}\n` +
        'Fix the environment variable(s) above (see "Configuration" in README.md) and start again.',
    );
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined>, cwd: string): CrmConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({
        variable: String(issue.path[0] ?? '(environment)'),
        message: `${issue.message}${describeValue(String(issue.path[0]), env[String(issue.path[0])])}`,
      })),
    );
  }
  const e = parsed.data;
  const unknownRole = Object.keys(env).find((name) => name.startsWith('CRM_RATE_LIMIT_') && !ROLES.some((role) => rateLimitVariable(role) === name));
  if (unknownRole) {
    throw new ConfigError([{ variable: unknownRole, message: `no such role; per-role limits are ${ROLES.map(rateLimitVariable).join(', ')}` }]);
  }
  const perRole: Record<string, number> = {};
  for (const role of ROLES) {
    const limit = (e as Record<string, unknown>)[rateLimitVariable(role)];
    if (typeof limit === 'number') perRole[role] = limit;
  }
  const schemas = { events: e.CRM_EVENTS_SCHEMA, read: e.CRM_READ_SCHEMA, reporting: e.CRM_REPORTING_SCHEMA };
  const clash = Object.entries(schemas).find(([, name], i, all) => all.findIndex(([, other]) => other === name) !== i);
  if (clash) {
    throw new ConfigError([{ variable: `CRM_${clash[0].toUpperCase()}_SCHEMA`, message: `"${clash[1]}" is used for two schemas; each needs its own name` }]);
  }
  const database: CrmConfig['database'] = e.DATABASE_URL
    ? { kind: 'postgres', url: e.DATABASE_URL, preparedStatements: e.CRM_PREPARED_STATEMENTS !== false }
    : { kind: 'pglite', dataDir: resolve(cwd, e.CRM_DATA_DIR ?? '.crm-data'), minFreeDiskMb: e.CRM_MIN_FREE_DISK_MB };
  return {
    database,
    eventStore: e.EVENTSTORE_URL ? { kind: 'eventstoredb', url: e.EVENTSTORE_URL } : { kind: 'sql' },
    http: { host: e.HOST, port: e.PORT, ...(e.CRM_TRUST_PROXY !== undefined ? { trustProxy: e.CRM_TRUST_PROXY } : {}) },
    adminKey: e.CRM_ADMIN_KEY,
    // Demo data never goes into a configured server unless asked for explicitly.
    demo: {
      enabled: database.kind === 'pglite' ? e.CRM_DEMO !== false : e.CRM_DEMO === true,
      seed: e.CRM_DEMO_SEED,
      customers: e.CRM_DEMO_CUSTOMERS,
      until: DEFAULT_DEMO_UNTIL,
    },
    logLevel: e.LOG_LEVEL,
    schemas,
    projections: e.CRM_PROJECTIONS,
    projectionLeaseSeconds: e.CRM_PROJECTION_LEASE_SECONDS,
    readyMaxLagSeconds: e.CRM_READY_MAX_LAG_SECONDS ?? Math.max(10, 2 * e.CRM_PROJECTION_LEASE_SECONDS),
    masterKey: readMasterKey(e.CRM_MASTER_KEY, e.CRM_MASTER_KEY_FILE, cwd),
    nats: e.CRM_NATS_URL ? { url: e.CRM_NATS_URL, stream: e.CRM_NATS_STREAM, role: e.CRM_NATS_ROLE } : undefined,
    amqp: e.CRM_AMQP_URL ? { url: e.CRM_AMQP_URL, exchange: e.CRM_AMQP_EXCHANGE, role: e.CRM_AMQP_ROLE } : undefined,
    webhookAllowNetworks: e.CRM_WEBHOOK_ALLOW_NETWORKS,
    timeouts: databaseTimeouts(e),
    rateLimit: { perMinute: e.CRM_RATE_LIMIT, perRole, redisUrl: e.REDIS_URL },
    backPressure: {
      maxCommandsInFlight: e.CRM_MAX_COMMANDS_IN_FLIGHT,
      maxCommandWaitMs: e.CRM_MAX_COMMAND_WAIT_MS,
      overloadedCommandWaitMs: e.CRM_OVERLOADED_COMMAND_WAIT_MS,
      maxEventLoopDelayMs: e.CRM_MAX_EVENT_LOOP_DELAY_MS,
      maxPoolWaiting: e.CRM_MAX_POOL_WAITING,
      maxProjectionBacklog: e.CRM_MAX_PROJECTION_BACKLOG,
    },
    baseCurrency: e.CRM_BASE_CURRENCY,
    shutdown: shutdownBounds(e.CRM_SHUTDOWN_TIMEOUT_MS, e.CRM_SHUTDOWN_DRAIN_MS),
  };
}

const SECRET_VARIABLES = new Set(['CRM_ADMIN_KEY', 'CRM_MASTER_KEY']);
const URL_VARIABLES = new Set(['DATABASE_URL', 'EVENTSTORE_URL', 'CRM_NATS_URL', 'CRM_AMQP_URL', 'REDIS_URL']);
const describeValue = (variable: string, value: string | undefined): string => {
  if (value === undefined) return '';
  // Never echo a secret, nor a URL's password: a URL is shown as every server URL is printed.
  const shown = URL_VARIABLES.has(variable) ? loggableUrl(value) : '(not a URL)';
  if (shown !== '(not a URL)') return ` (got ${shown})`;
  if (SECRET_VARIABLES.has(variable) || URL_VARIABLES.has(variable)) return ` (got a value of ${value.length} characters)`;
  return ` (got "${value.length > 60 ? `${value.slice(0, 60)}...` : value}")`;
};

export { describeDatabase } from '../runtime/config.ts';
