import fastifyCors from '@fastify/cors';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ruleFor } from './roles.ts';
import { createApiKeyStore, type ApiKeyStore } from './auth/api-keys.ts';
import { createAuthGuard, createKeyRecheck } from './auth/guard.ts';
import { createScopeGuard } from './auth/scope-guard.ts';
import { loadServerSecret } from './auth/server-secret.ts';
import { createBackPressure, DEFAULT_BACK_PRESSURE } from './back-pressure.ts';
import { clientErrorHandler, refuseMalformedTarget, registerServerRefusals } from './client-errors.ts';
import { registerClosing, type CloseWithin } from './closing.ts';
import { createCursorSeal } from './cursor-seal.ts';
import type { ApiDeps, TrustedProxies } from './deps.ts';
import { problemErrorHandler } from './errors.ts';
import { requestIdOf } from './http.ts';
import { loggerOptions } from './logger.ts';
import { createIdempotencyGuard } from './idempotency.ts';
import { registerJsonBody } from './json-body.ts';
import { describeApi } from './openapi.ts';
import { createApiMetrics, type ApiMetrics } from './metrics.ts';
import { refuseUnreadableQuery } from './safe-input.ts';
import { registerRequestTimeout } from './request-timeout.ts';
import { registerSecurityHeaders } from './security-headers.ts';
import { DEFAULT_RATE_LIMIT, registerRateLimit } from './rate-limit.ts';
import { adminRoutes } from './routes/admin.ts';
import { meRoutes } from './routes/me.ts';
import { activeUserRole, userRoutes } from './routes/users.ts';
import analyticsRoutes from './routes/analytics.ts';
import auditRoutes from './routes/audit.ts';
import { campaignRoutes } from './routes/campaigns.ts';
import { customerRoutes } from './routes/customers.ts';
import { dealRoutes } from './routes/deals.ts';
import { exchangeRateRoutes } from './routes/exchange-rates.ts';
import { feedbackRoutes } from './routes/feedback.ts';
import { activityRoutes } from './routes/activities.ts';
import { exportRoutes } from './routes/exports.ts';
import { importRoutes } from './routes/imports.ts';
import { opsRoutes } from './routes/ops.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { consoleRoutes } from './console.ts';
import { createUnmatched } from './unmatched.ts';
import { createWriteRefusals } from './write-refusals.ts';
import type { RouteContext } from './route-context.ts';

export interface RegisteredRoute {
  method: string;
  url: string;
}
export type CrmApp = FastifyInstance & {
  keys: ApiKeyStore;
  metrics: ApiMetrics;
  routeList: RegisteredRoute[];
  /** Closes the HTTP side, giving requests in flight `drainMs` to finish (api/closing.ts). */
  closeWithin: CloseWithin;
};

export type { RouteContext } from './route-context.ts';

/** Fastify's form of trusted proxies: the addresses as they are; a hop count as the test of each hop (as proxy-addr reads a number). */
const trustedProxies = (trusted: TrustedProxies): string[] | ((address: string, hop: number) => boolean) =>
  typeof trusted === 'number' ? (_address, hop) => hop < trusted : trusted;

/**
 * Builds the HTTP API. The caller owns the dependencies (and closes them); `app.close()` closes
 * only the HTTP side. Call `ensureAdminKey` (api/auth/api-keys.ts) before serving.
 */

export async function buildApp(deps: ApiDeps): Promise<CrmApp> {
  const writes = createWriteRefusals();
  const metrics = createApiMetrics({
    writes,
    projections: deps.projections,
    publishers: deps.integration,
    ...(deps.store.heldBack ? { heldBack: deps.store.heldBack.bind(deps.store) } : {}),
  });
  const waitForTimeoutMs = deps.waitForTimeoutMs ?? 5_000;
  // Every request is answered within it (api/request-timeout.ts); a `?waitFor=` wait fits within it.
  const requestTimeoutMs = Math.max(deps.requestTimeoutMs ?? 10_000, waitForTimeoutMs + 2_000);
  // Before the key is looked up, and for a command that would be refused anyway, before Fastify routes it.
  const backPressure = createBackPressure(
    { ...DEFAULT_BACK_PRESSURE, ...deps.backPressure },
    {
      poolWaiting: deps.database.waiting,
      projectionBacklog: deps.projections.backlog?.bind(deps.projections),
    },
    { requestId: requestIdOf, shed: (method, seconds) => metrics.observeRequest(method, 'refused before routing', 503, seconds), requestTimeoutMs },
  );
  const app = Fastify({
    serverFactory: backPressure.serverFactory,
    // The process's one logger when given (crm serve, whose runtime parts log through it too), else options.
    ...loggerOptions(deps.logger),
    genReqId: requestIdOf,
    // The client address the limits of requests without a valid key count (api/rate-limit.ts): behind a
    // load balancer every client was the balancer's one address, and one keyless client locked all out.
    ...(deps.trustProxy !== undefined ? { trustProxy: trustedProxies(deps.trustProxy) } : {}),
    // An event is at most 512 KiB in the store (eventstore/contract.ts); a command body larger than 1 MiB is a 413.
    bodyLimit: 1024 * 1024,
    // While shutting down, new requests get a 503 so a load balancer retries them elsewhere: a
    // problem with Retry-After, answered by api/closing.ts (Fastify's own is not a problem document).
    return503OnClosing: false,
    // Bad URL encoding and over-long path parameters are answered before routing: as problems too.
    frameworkErrors: (error, request, reply) => {
      problemErrorHandler(error, request, reply);
    },
    // And so are requests Node's HTTP parser refuses before Fastify sees them.
    clientErrorHandler,
  }).withTypeProvider<ZodTypeProvider>();
  registerServerRefusals(app.server);

  const keys = createApiKeyStore(deps.database.db, { schema: deps.schemas.events, readSchema: deps.schemas.read });
  const idempotency = createIdempotencyGuard(deps.database.db, { schema: deps.schemas.events, fingerprintKey: deps.fingerprintKey });
  const cursors = createCursorSeal(await loadServerSecret(deps.database.db, deps.schemas.events, 'list-cursors'));
  const context: RouteContext = { deps, metrics, keys, idempotency, cursors, waitForTimeoutMs, writes };

  // JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  registerJsonBody(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(problemErrorHandler);
  const routeList: RegisteredRoute[] = [];
  // No route: 405 with Allow where the path is served with other methods, else 404.
  const unmatched = createUnmatched(routeList);
  app.setNotFoundHandler((request, reply) => problemErrorHandler(unmatched(request), request, reply));
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routeList.push({ method, url: route.url });
    // A route of the API that takes no query parameters refuses any (api/README.md): `?limit=1` on a
    // route that pages nothing returned everything, and the client could not tell. Public routes
    // (probes, the docs, the console's files) are left as they are.
    const methods = [route.method].flat();
    if (route.schema?.querystring === undefined && methods.every((method) => ruleFor(method, route.url).access !== 'public'))
      route.schema = { ...route.schema, querystring: z.strictObject({}) };
  });
  app.decorate('routeList', routeList);
  app.decorate('keys', keys);
  app.decorate('metrics', metrics);
  app.decorateRequest('apiKey', null);
  app.decorateRequest('routeRule', null);
  app.decorateRequest('viewer', null);
  app.decorateRequest('keyStamp', null);

  // First of the hooks: every answer, refusals (401, 429, 503) included, carries the security and
  // CORS headers, so a browser's page can read a refusal and its Retry-After.
  registerSecurityHeaders(app, {
    // The API answers JSON only; Swagger UI sets its own CSP for /docs (staticCSP below).
    contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'cross-origin' },
  });
  await app.register(fastifyCors, {
    origin: deps.corsOrigins === undefined || deps.corsOrigins === '*' ? '*' : deps.corsOrigins,
    methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'if-match', 'idempotency-key', 'x-request-id', 'x-causation-id'],
    exposedHeaders: ['etag', 'location', 'x-request-id', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'],
    maxAge: 600,
    // An OPTIONS without Origin and Access-Control-Request-Method (a client asking what the API
    // allows, not a browser's preflight) gets the same 204 and headers, not a 400 in plain text.
    strictPreflight: false,
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  // Before routing refusals and the key check: a server that is closing does nothing new.
  app.decorate('closeWithin', registerClosing(app));
  // Answered before a body is read: a method no route takes (QUERY included, which Fastify would
  // otherwise refuse for its missing Content-Type first) is a 405 or 404 whatever it sends.
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.url === undefined) throw unmatched(request);
  });
  // A backstop beyond the bounded waits a route does on purpose (`?waitFor=`), never shorter than them.
  registerRequestTimeout(app, requestTimeoutMs);
  // Before the key is looked up: a saturated service refuses new commands at once.
  backPressure.register(app);
  // Registered before the guard so that the guard can count requests refused for their key per address.
  const addressLimit = await registerRateLimit(app, deps.rateLimit ?? DEFAULT_RATE_LIMIT, metrics);
  app.addHook('onRequest', refuseMalformedTarget);
  app.addHook('onRequest', createAuthGuard(keys, addressLimit));
  app.addHook('onRequest', refuseUnreadableQuery);
  // Restricted callers: audit of their scope's records only; no webhooks or bulk imports (after validation: params are parsed).
  app.addHook(
    'preHandler',
    createScopeGuard(() => deps.queries),
  );
  // The body is read: a key revoked (or its user changed) while it came is refused before anything is decided.
  app.addHook('preValidation', createKeyRecheck(keys));
  // Action commands (launch, close, ...) may come without a body: validate them as `{}`.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined && (request.method === 'POST' || request.method === 'PATCH')) request.body = {};
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });

  await app.register(fastifySwagger, describeApi(deps.version ?? '0.1.0'));
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });

  app.get('/openapi.json', { config: { rateLimit: false }, schema: { hide: true } }, async () => app.swagger());

  await app.register(opsRoutes, {
    store: deps.store,
    projections: deps.projections,
    metrics,
    readyMaxLagSeconds: deps.readyMaxLagSeconds ?? 10,
    benchNoopRoute: deps.benchNoopRoute ?? false,
    publishers: deps.integration,
    demoLoad: deps.demoLoad,
    writes,
  });
  await app.register(adminRoutes, { keys, idempotency, userRole: (userId) => activeUserRole(context, userId) });
  await app.register(meRoutes);
  await app.register(userRoutes, context);
  // Before the :id routes' plugins only for readability: fastify prefers static segments (/customers/export) anyway.
  await app.register(exportRoutes, context);
  await app.register(customerRoutes, context);
  await app.register(dealRoutes, context);
  await app.register(campaignRoutes, context);
  await app.register(feedbackRoutes, context);
  await app.register(activityRoutes, context);
  await app.register(exchangeRateRoutes, context);
  // Written by the analytics and audit engineers; they get the same context as ours.
  await app.register(importRoutes, { ...context, imports: deps.imports, maxBytes: deps.importMaxBytes ?? 1024 ** 3 });
  await app.register(analyticsRoutes, context);
  await app.register(auditRoutes, context);
  await app.register(webhookRoutes, { integration: deps.integration, idempotency });
  // The web console (static assets at / and /console/*), over the same public API.
  await app.register(consoleRoutes);

  await app.ready();
  return app as unknown as CrmApp;
}
