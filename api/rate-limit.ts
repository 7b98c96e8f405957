import fastifyRateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProblemError } from './problems.ts';

/**
 * Requests per key and window, as an operator sets them (cli/config.ts: CRM_RATE_LIMIT and
 * CRM_RATE_LIMIT_<ROLE>). Answers carry the standard RateLimit-Limit / RateLimit-Remaining /
 * RateLimit-Reset headers, and a refusal is a 429 problem with Retry-After.
 *
 * With a Redis client the counters live in Redis and every replica shares them; without one, each
 * process counts for itself. A Redis that cannot be reached does not stop the API: requests pass
 * uncounted (the client below neither queues nor waits while disconnected).
 */
export interface RateLimitOptions {
  /** Requests per key (per client address for unauthenticated calls) in `timeWindowMs`; 0: no limit. */
  max: number;
  timeWindowMs: number;
  /** Limits for keys of a role, replacing `max` (0: no limit for that role). */
  perRole?: Readonly<Record<string, number>>;
  /** An ioredis client built by the composition root (shared counters); the API never closes it. */
  redis?: unknown;
}

/** Per key: 100 requests a second on average, within a minute's window. */
export const DEFAULT_RATE_LIMIT: RateLimitOptions = { max: 6_000, timeWindowMs: 60_000 };

/** What a limit of 0 means for the plugin: nothing to count. */
const unlimited = (limit: number): boolean => limit <= 0;

export const limitFor = (options: RateLimitOptions, request: FastifyRequest): number => {
  const role = request.apiKey?.role;
  return (role !== undefined ? options.perRole?.[role] : undefined) ?? options.max;
};

export async function registerRateLimit(app: FastifyInstance, options: RateLimitOptions): Promise<void> {
  if (unlimited(options.max) && Object.values(options.perRole ?? {}).every(unlimited)) return;
  await app.register(fastifyRateLimit, {
    global: true,
    max: (request) => limitFor(options, request),
    allowList: (request) => unlimited(limitFor(options, request)),
    timeWindow: options.timeWindowMs,
    // Same counters on every replica when Redis is given; a Redis error lets the request through.
    ...(options.redis ? { redis: options.redis, nameSpace: 'crm-rate-limit:', skipOnError: true } : {}),
    enableDraftSpec: true,
    // After the auth guard (an app-level onRequest hook), so the key is known: one bucket per key.
    keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.id}` : `ip:${request.ip}`),
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        'rate_limited',
        `More than ${context.max} requests in ${context.after}; retry after ${Math.ceil(context.ttl / 1000)} s.`,
        {},
        { 'retry-after': String(Math.ceil(context.ttl / 1000)) },
      ),
  });
}
