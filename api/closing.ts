import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { settlesWithin } from '../shared/deadline.ts';
import { shuttingDown } from './errors.ts';

/** Closes the HTTP side; resolves true when every request in flight finished within `drainMs`, false when some were cut. */
export type CloseWithin = (drainMs: number) => Promise<boolean>;

/**
 * Closing the HTTP side within a bound. From the moment it starts, a request arriving on a connection
 * still open is refused with a 503 problem and Retry-After (Fastify's own `return503OnClosing` answer
 * is plain JSON, not a problem), and each connection closes after its last answer. Requests in flight get
 * `drainMs` to finish; then the connections still open are cut: a handler waiting on a stalled
 * database would otherwise hold the close for its whole request bound.
 */
export function registerClosing(app: FastifyInstance): CloseWithin {
  let closing = false;
  // Any close counts (tests close with `app.close()`), not only `closeWithin`.
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async () => {
    if (closing) throw shuttingDown();
  });
  // A keep-alive connection whose last request is answered is closed then: left idle, it would hold
  // the close until the drain's end. Counted on the server, so that a request queued behind another
  // on the connection (pipelined) is answered before the connection ends.
  const unanswered = new WeakMap<object, number>();
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    unanswered.set(socket, (unanswered.get(socket) ?? 0) + 1);
    response.once('close', () => {
      const left = (unanswered.get(socket) ?? 1) - 1;
      unanswered.set(socket, left);
      if (closing && left === 0) socket.end();
    });
  });
  // The last answer on a connection says it closes: a keep-alive client would otherwise send its next
  // request on a connection about to end (and a POST lost that way is not retried by the client).
  app.addHook('onSend', async (request, reply) => {
    if (closing && (unanswered.get(request.raw.socket) ?? 0) <= 1) void reply.header('connection', 'close');
  });
  return async (drainMs) => {
    // Set before Fastify's close begins (it runs its hooks a tick later): nothing new is started from here.
    closing = true;
    const closed = app.close();
    if (await settlesWithin(closed, drainMs)) {
      await closed;
      return true;
    }
    app.server.closeAllConnections();
    await closed;
    return false;
  };
}
