import type { IncomingMessage, Server } from 'node:http';
import { Server as TcpServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { settlesWithin } from '../shared/deadline.ts';
import { shuttingDown } from './errors.ts';
import { owedAnswers } from './owed-answers.ts';

/**
 * How long connections stay open once closing begins, while any is open. Closing ends idle keep-alive
 * connections at once (Node's `server.close()` does), and a client sending its next request on one
 * just then met a reset: a POST lost so is not retried, its outcome unknown (measured: 3 to 7 resets
 * among 8 keep-alive writers at 70 purchases/s on each SIGTERM, and no 503). Kept open a moment, such
 * a request gets the 503 and `Connection: close`, and each connection ends after its answer.
 */
const IDLE_LINGER_MS = 1_000;

/** Resolves once the server holds no connection, or after `ms`. */
const lingerWhileConnected = async (server: Server, ms: number): Promise<void> => {
  const until = performance.now() + ms;
  const connections = () => new Promise<number>((resolve) => server.getConnections((error, count) => resolve(error ? 0 : count)));
  while (performance.now() < until && (await connections()) > 0) await new Promise((resolve) => setTimeout(resolve, 25));
};

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
  const owed = owedAnswers(app.server);
  app.server.on('request', (request: IncomingMessage) => {
    const socket = request.socket;
    owed.whenAnswered(socket, () => {
      if (closing) socket.end();
    });
  });
  // The last answer on a connection says it closes: a keep-alive client would otherwise send its next
  // request on a connection about to end (and a POST lost that way is not retried by the client).
  app.addHook('onSend', async (request, reply) => {
    if (closing && owed.count(request.raw.socket) <= 1) void reply.header('connection', 'close');
  });
  return async (drainMs) => {
    // Set before Fastify's close begins (it runs its hooks a tick later): nothing new is started from here.
    closing = true;
    const started = performance.now();
    // No new connection from here (net's close; http's would also end the idle ones at once, above).
    // Taken during the linger, one was cut by the close after it: a reset where a refused connection
    // tells a client its request was never sent (a soak's client reconnecting after its 503 met 8 to 15).
    if (app.server.listening) TcpServer.prototype.close.call(app.server);
    await lingerWhileConnected(app.server, Math.min(IDLE_LINGER_MS, drainMs));
    const closed = app.close();
    if (await settlesWithin(closed, Math.max(0, drainMs - (performance.now() - started)))) {
      await closed;
      return true;
    }
    app.server.closeAllConnections();
    await closed;
    return false;
  };
}
