import type { FastifyInstance } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';

/**
 * Helmet's security headers on every answer, from a middleware built once. (`@fastify/helmet` builds
 * a new one, parsing the CSP directives again, on every request: about 4% of the API's CPU on the
 * purchase path.) The policy depends on nothing in the request, so one middleware serves them all; a
 * route group with its own policy (the console, /docs) sets its header over this one.
 */
export function registerSecurityHeaders(app: FastifyInstance, options: HelmetOptions): void {
  const setHeaders = helmet(options);
  app.addHook('onRequest', (request, reply, done) => {
    setHeaders(request.raw, reply.raw, (error) => done(error instanceof Error ? error : undefined));
  });
}
