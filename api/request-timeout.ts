import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemErrorHandler, requestTimedOut } from './errors.ts';
import { ProblemError } from './problems.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A route that does long work on purpose (fitting the analytics models): no request timeout; its
     * statements run on the long-work connections, bounded by CRM_DB_LONG_STATEMENT_TIMEOUT_MS.
     */
    longWork?: boolean;
  }
}

/**
 * Every request is answered within `timeoutMs`: a handler still waiting then (a stalled database, a
 * lock held elsewhere) is answered with a 503 problem, and its late result is dropped. Statement
 * timeouts bound the database side; this bounds everything else a handler may wait on. A request
 * whose body has not been read in full by then (a Content-Length the bytes never reach, a stalled
 * upload) never reached its handler, so nothing was recorded: it is a 408 and the connection ends
 * (the rest of the body cannot be told from a next request), not a command whose outcome is unknown.
 */
const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();
/** Requests this bound answered: their handlers' late failures are dropped too. */
const answered = new WeakSet<FastifyRequest>();

export const registerRequestTimeout = (app: FastifyInstance, timeoutMs: number): void => {
  // A handler that fails after the bound answered (a `?waitFor=` ending in its own 503 a moment later)
  // was logged at error level as "Promise errored, but reply.sent = true": the failure is dropped as
  // its result is. Registered before the routes, so every route's handler goes through it.
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, request, reply) {
      const result: unknown = handler.call(this, request, reply);
      if (!(result instanceof Promise)) return result;
      return result.catch((error: unknown) => {
        if (answered.has(request)) return undefined;
        throw error;
      });
    };
  });
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.routeOptions.config?.longWork) return;
    const timer = setTimeout(() => {
      if (reply.sent || reply.raw.headersSent) return;
      request.log.warn({ timeoutMs }, 'request timed out');
      // `complete` is false while the parser has not reached the end of the body (undefined for injected requests).
      const problem =
        request.raw.complete === false
          ? new ProblemError(
              'request_timeout',
              `The request body was not read in full within ${timeoutMs} ms; nothing was recorded.`,
              {},
              { connection: 'close' },
            )
          : requestTimedOut(request, timeoutMs);
      answered.add(request);
      problemErrorHandler(problem, request, reply);
      // The handler's late result is dropped without a word: sent to the reply answered already, it was
      // logged as a 'reply already sent' error with status 500, which reads as a bug and trips 5xx alerts.
      reply.raw.once('finish', () => void reply.hijack());
    }, timeoutMs);
    timer.unref();
    timers.set(request, timer);
    // Cleared when the response closes, sent or not, too: a client that leaves after sending its whole
    // request gets neither onResponse nor onRequestAbort (api/back-pressure.ts), and its timer would
    // otherwise log a timeout for a request nobody waits for. A pipelined request queued behind one
    // whose connection died gets no close, but onRequestAbort.
    reply.raw.once('close', () => clearTimeout(timer));
  });
  const clear = async (request: FastifyRequest) => clearTimeout(timers.get(request));
  app.addHook('onResponse', clear);
  app.addHook('onRequestAbort', clear);
};
