import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import { ProblemError } from './problems.ts';
import { RedisHealth, sharedCounters } from './shared-counters.ts';

/**
 * Requests per key and window, as an operator sets them (cli/config.ts: CRM_RATE_LIMIT and
 * CRM_RATE_LIMIT_<ROLE>). Answers carry the standard RateLimit-Limit / RateLimit-Remaining /
 * RateLimit-Reset headers, and a refusal is a 429 problem with Retry-After.
 *
 * With a Redis client the counters live in Redis and every replica shares them; without one, each
 * process counts for itself. A Redis that cannot be reached or does not answer does not stop the
 * API: the counters fall back to this process until it answers again (api/shared-counters.ts).
 */
export interface RateLimitOptions {
  /** Requests per key (per client address for unauthenticated calls) in `timeWindowMs`; 0: no limit. */
  max: number;
  timeWindowMs: number;
  /** Limits for keys of a role, replacing `max` (0: no limit for that role). */
  perRole?: Readonly<Record<string, number>>;
  /** An ioredis client built by the composition root (shared counters); the API never closes it. */
  redis?: Redis;
  /** Between probes of a Redis that stopped answering (tests shorten it). */
  redisProbeEveryMs?: number;
}

/** Per key: 100 requests a second on average, within a minute's window. */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { max: 6_000, timeWindowMs: 60_000 };

/** A window as a refusal names it: "a minute", "30 s". */
const windowText = (ms: number): string => (ms === 60_000 ? 'a minute' : `${Math.round(ms / 1000)} s`);

/** What a limit of 0 means for the plugin: nothing to count. */
const unlimited = (limit: number): boolean => limit <= 0;

export const limitFor = (options: RateLimitOptions, request: FastifyRequest): number => {
  const role = request.apiKey?.role;
  return (role !== undefined ? options.perRole?.[role] : undefined) ?? options.max;
};

/**
 * The budget of a client address for requests refused for their key (none, malformed, unknown or
 * revoked). Such requests never reach the route's own limiter (the auth guard answers first), so the
 * guard counts them here, in the same `ip:` bucket as public routes, and asks before each lookup of
 * a key in the database whether the address still has budget: a flood of made-up keys from one
 * address costs at most `max + 1` lookups a window, then 429s without touching the database.
 */
export interface ClientAddressLimit {
  /** Before a key is looked up in the database (not for one the key cache holds): 429 once the address is past its budget. */
  refuseIfExhausted(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** A request refused for its key: counts it against the address, with the RateLimit headers; 429 past the budget. */
  countRefusal(request: FastifyRequest, reply: FastifyReply): Promise<void>;
}

const tooMany = (max: number, windowMs: number, ttlSeconds: number): ProblemError => {
  const seconds = Math.max(1, ttlSeconds);
  return new ProblemError(
    'rate_limited',
    `More than ${max} requests in ${windowText(windowMs)}; retry after ${seconds} s.`,
    {},
    { 'retry-after': String(seconds) },
  );
};

/** Where the health of the shared counters is shown (api/metrics.ts `ApiMetrics`): told how to read it. */
export interface SharedCountersWatcher {
  watchSharedCounters(usable: () => boolean): void;
}

/** The health of the Redis counters, probed until the app closes. */
const redisHealth = (app: FastifyInstance, redis: Redis, probeEveryMs: number | undefined, metrics: SharedCountersWatcher | undefined): RedisHealth => {
  const health = new RedisHealth(redis, { log: (message) => app.log.warn(message), ...(probeEveryMs ? { probeEveryMs } : {}) });
  app.addHook('onClose', async () => health.stop());
  // Visible to monitoring, not only in the log: each replica counting for itself lets a key through N times its limit.
  metrics?.watchSharedCounters(() => health.usable);
  return health;
};

export async function registerRateLimit(
  app: FastifyInstance,
  options: RateLimitOptions,
  metrics?: SharedCountersWatcher,
): Promise<ClientAddressLimit | undefined> {
  if (unlimited(options.max) && Object.values(options.perRole ?? {}).every(unlimited)) return undefined;
  await app.register(fastifyRateLimit, {
    global: true,
    max: (request) => limitFor(options, request),
    allowList: (request) => unlimited(limitFor(options, request)),
    timeWindow: options.timeWindowMs,
    // Same counters on every replica when Redis is given and answers; this process's own otherwise.
    ...(options.redis ? { store: sharedCounters(options.redis, redisHealth(app, options.redis, options.redisProbeEveryMs, metrics), 'crm-rate-limit:') } : {}),
    enableDraftSpec: true,
    // After the auth guard (an app-level onRequest hook), so the key is known: one bucket per key.
    keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : `ip:${request.ip}`),
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        'rate_limited',
        // `context.after` is the time left, not the window: "in 10 seconds" was read of a minute's window.
        `More than ${context.max} requests in ${windowText(options.timeWindowMs)}; retry after ${Math.ceil(context.ttl / 1000)} s.`,
        {},
        { 'retry-after': String(Math.ceil(context.ttl / 1000)) },
      ),
  });
  // Before the guard knows a key, limitFor gives `max` and the key generator the `ip:` bucket.
  if (unlimited(options.max)) return undefined;
  const limiter = app.createRateLimit();
  const headers = (reply: FastifyReply, max: number, remaining: number, ttlSeconds: number): void => {
    reply.header('ratelimit-limit', max).header('ratelimit-remaining', remaining).header('ratelimit-reset', ttlSeconds);
  };
  return {
    async refuseIfExhausted(request, reply) {
      const state = await limiter(request, { increment: false });
      if (state.isAllowed || !state.isExceeded) return;
      headers(reply, state.max, 0, state.ttlInSeconds);
      throw tooMany(state.max, options.timeWindowMs, state.ttlInSeconds);
    },
    async countRefusal(request, reply) {
      const state = await limiter(request);
      if (state.isAllowed) return;
      headers(reply, state.max, state.remaining, state.ttlInSeconds);
      if (state.isExceeded) throw tooMany(state.max, options.timeWindowMs, state.ttlInSeconds);
    },
  };
}
