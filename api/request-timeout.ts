import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemErrorHandler, requestTimedOut } from './errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route that does long work on purpose (fitting the analytics models): no request timeout; its
     * statements run on the long-work connections, bounded by CRM_DB_LONG_STATEMENT_TIMEOUT_MS.
     */
    longWork?: boolean;
  }
}

const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();

/**
 * Every request is answered within `timeoutMs`: a handler still waiting then (a stalled database, a
 * lock held elsewhere) is answered with a 503 problem, and its late result is dropped. Statement
 * timeouts bound the database side; this bounds everything else a handler may wait on.
 */
export const registerRequestTimeout = (app: FastifyInstance, timeoutMs: number): void => {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.routeOptions.config?.longWork) return;
    const timer = setTimeout(() => {
      if (reply.sent || reply.raw.headersSent) return;
      request.log.warn({ timeoutMs }, 'request timed out');
      problemErrorHandler(requestTimedOut(request, timeoutMs), request, reply);
    }, timeoutMs);
    timer.unref();
    timers.set(request, timer);
  });
  const clear = async (request: FastifyRequest) => clearTimeout(timers.get(request));
  app.addHook('onResponse', clear);
  app.addHook('onRequestAbort', clear);
};
