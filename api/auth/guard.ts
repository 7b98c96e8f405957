import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertSentOnce } from '../client-errors.ts';
import { ProblemError } from '../problems.ts';
import type { ClientAddressLimit } from '../rate-limit.ts';
import { isAllowed, ruleFor, type Role, type RouteRule } from '../roles.ts';
import type { ApiKeyRecord, ApiKeyStore, AuthenticatedKey, KeyStamp } from './api-keys.ts';
import type { Viewer } from './viewer.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated key; null on public routes. */
    apiKey: ApiKeyRecord | null;
    /** The matrix rule of the matched route. */
    routeRule: RouteRule | null;
    /** What the caller may see (api/auth/viewer.ts); null on public routes. */
    viewer: Viewer | null;
    /** What the key's authentication was read from (createKeyRecheck). */
    keyStamp: KeyStamp | null;
  }
}

const BEARER = /^Bearer[ ]+([^\s]{1,500})$/i;

const unauthenticated = (detail: string): ProblemError => new ProblemError('unauthenticated', detail, {}, { 'www-authenticate': 'Bearer realm="crm"' });

/** The role of the caller; only meaningful after the guard ran on a non-public route. */
export const callerRole = (request: FastifyRequest): Role | undefined => request.apiKey?.role;

/**
 * onRequest hook: finds the route's rule in the role matrix, authenticates the bearer key and checks
 * the role. Runs before body parsing, so a refused request costs no parsing and appends nothing.
 *
 * With a rate limit, a request refused for its key counts against its client address (429 past the
 * limit), and an address past its limit gets 429 before any key it sends is looked up in the database.
 */
export const createAuthGuard =
  (keys: ApiKeyStore, limit?: ClientAddressLimit) =>
  async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const url = request.routeOptions.url;
    if (url === undefined) return; // No route matched: the not-found handler answers.
    const rule = ruleFor(request.method, url);
    request.routeRule = rule;
    if (rule.access === 'public') return;
    const refuse = async (detail: string): Promise<never> => {
      await limit?.countRefusal(request, reply);
      throw unauthenticated(detail);
    };
    // Two keys in one request: acting as either would be a guess a proxy in front may not share.
    assertSentOnce(request, 'authorization');
    const header = request.headers.authorization;
    if (!header) return refuse('Send an API key as "Authorization: Bearer <key>".');
    const match = BEARER.exec(header);
    if (!match?.[1]) return refuse('The Authorization header must be "Bearer <key>".');
    const stamp = keys.stamp();
    const key = await keys.authenticate(match[1], limit ? { beforeLookup: () => limit.refuseIfExhausted(request, reply) } : undefined);
    if (!key) return refuse('The API key is unknown or revoked, or its user is deactivated.');
    admit(request, rule, key, stamp);
  };

/** Takes the key as the request's caller, if its role may call the route. */
const admit = (request: FastifyRequest, rule: RouteRule, key: AuthenticatedKey, stamp: KeyStamp): void => {
  const { viewer, ...record } = key;
  request.apiKey = record;
  request.viewer = viewer;
  request.keyStamp = stamp;
  if (!isAllowed(rule, key.role)) {
    throw new ProblemError('forbidden', `The ${key.role} role may not call ${rule.route}.`, {
      role: key.role,
      allowedRoles: [...rule.access],
    });
  }
};

/**
 * preValidation hook: the key is checked again once the body is read, when a revocation, a change of
 * its user (deactivated, another role or scope) or the cache's age may have changed the answer since
 * `onRequest`. A client sending its body slowly otherwise acted with a key revoked meanwhile.
 */
export const createKeyRecheck =
  (keys: ApiKeyStore) =>
  async (request: FastifyRequest): Promise<void> => {
    const { routeRule: rule, keyStamp } = request;
    if (!rule || !keyStamp || keys.isCurrent(keyStamp)) return;
    const stamp = keys.stamp();
    const token = BEARER.exec(request.headers.authorization ?? '')?.[1];
    const key = token === undefined ? undefined : await keys.authenticate(token);
    if (!key) throw unauthenticated('The API key was revoked, or its user deactivated, while the request was being sent.');
    admit(request, rule, key, stamp);
  };
