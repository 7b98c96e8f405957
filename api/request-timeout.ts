import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemErrorHandler, requestTimedOut } from './errors.ts';

const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();

/**
 * Every request is answered within `timeoutMs`: a handler still waiting then (a stalled database, a
 * lock held elsewhere) is answered with a 503 problem, and its late result is dropped. Statement
 * timeouts bound the database side; this bounds everything else a handler may wait on.
 */
export const registerRequestTimeout = (app: FastifyInstance, timeoutMs: number): void => {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
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
