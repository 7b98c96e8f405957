import { createServer } from 'node:http';

/**
 * What `crm serve` answers on its port while it waits for its database at start: `GET /health` 200
 * (the process is alive: a liveness probe must not restart it in a loop through a database outage),
 * `GET /ready` 503 with the reason, anything else 503 problem+json with Retry-After. Before, nothing
 * listened until the database answered (up to 10 minutes). Closed before the API listens on the port.
 * A port it cannot take is refused at once with `refused` (it waited, and the port's other owner
 * answered the probes).
 */
export async function listenWhileWaiting(
  host: string,
  port: number,
  reason: () => string,
  refused: (error: NodeJS.ErrnoException) => Error,
): Promise<() => Promise<void>> {
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: unknown) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...(status === 503 ? { 'retry-after': '5' } : {}) });
      response.end(JSON.stringify(body));
    };
    if (request.method === 'GET' && path === '/health') return send(200, 'application/json', { status: 'ok', starting: true });
    const why = `waiting for the database: ${reason()}`;
    if (request.method === 'GET' && path === '/ready') return send(503, 'application/json', { status: 'not_ready', projections: [], reasons: [why] });
    request.resume();
    return send(503, 'application/problem+json', {
      type: 'https://crm.example/problems/unavailable',
      title: 'Service unavailable',
      status: 503,
      detail: `The service is starting and ${why}; retry shortly. Nothing was done.`,
      instance: path,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(refused(error)));
    server.listen({ host, port }, () => resolve());
  });
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}
