import type { FastifyRequest, FastifyServerOptions } from 'fastify';
import { pino, type Logger } from 'pino';
import { looksSecret } from '../shared/loggable-url.ts';
import type { ApiDeps } from './deps.ts';

/**
 * The process's log: one pino logger per `crm serve` or `crm project`, JSON lines on stdout with
 * keys and personal data redacted. The HTTP API logs requests through it and each runtime part
 * (projections, publishers, chain sealer) through a child naming it (`part`).
 */

/** Paths pino must never print: keys, and personal data should a body ever be logged. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["idempotency-key"]',
  'headers.authorization',
  'key',
  '*.key',
  'email',
  '*.email',
  'phone',
  '*.phone',
  'body',
  '*.body',
  'subject',
  '*.subject',
];

/** An id a path segment may be: a UUID or a number. */
const ID_SEGMENT = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9]{1,20})$/i;
/** A word a route may hold: lower case. One that reads like a token (an API key sent as a segment) is not kept. */
const WORD_SEGMENT = /^[a-z][a-z0-9._-]{0,63}$/;
/** A path segment kept in the log: an id, or a word of a route; any other (an address or a key sent as an id) is not. */
const loggableSegment = (segment: string): boolean => segment === '' || ID_SEGMENT.test(segment) || (WORD_SEGMENT.test(segment) && !looksSecret(segment));

/**
 * Logged request: method and path only; query strings carry searches by name and email, and a path
 * segment that is neither a word nor an id is logged as `[redacted]` (`GET /customers/<an email>`
 * logged the address).
 */
const requestSerializer = (request: FastifyRequest) => ({
  method: request.method,
  url: request.url
    .split('?')[0]!
    .split('/')
    .map((segment) => (loggableSegment(segment) ? segment : '[redacted]'))
    .join('/'),
  route: request.routeOptions?.url,
  apiKeyId: request.apiKey?.id,
});

const pinoOptions = (base: Record<string, unknown>) => ({
  ...base,
  redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  serializers: { req: requestSerializer, ...((base.serializers as object | undefined) ?? {}) },
});

/** The process's one logger, at LOG_LEVEL (`silent`: nothing), writing to `destination` (stdout by default). */
export const createProcessLogger = (level: string, destination?: NodeJS.WritableStream): Logger => pino(pinoOptions({ level }), destination ?? process.stdout);

const isLogger = (logger: ApiDeps['logger']): logger is Logger => typeof (logger as Partial<Logger> | undefined)?.child === 'function';

/** Fastify's options for the API's logger: the process's logger as it is, or pino options (tests), or none. */
export const loggerOptions = (logger: ApiDeps['logger']): Pick<FastifyServerOptions, 'logger' | 'loggerInstance'> => {
  if (logger === undefined || logger === false) return { logger: false };
  if (isLogger(logger)) return { loggerInstance: logger };
  return { logger: pinoOptions(logger === true ? {} : (logger as Record<string, unknown>)) };
};
