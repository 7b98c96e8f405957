import { createServer } from 'node:http';

/**
 * What `crm serve` answers on its port while it waits for its database at start: `GET /health` 200
 * (the process is alive: a liveness probe must not restart it in a loop through a database outage),
 * `GET /ready` 503 with the reason, anything else 503 problem+json with Retry-After. Before, nothing
 * listened until the database answered (up to 10 minutes). Closed before the API listens on the port.
 * Resolves to undefined when the port cannot be taken (the API's own listen then says why).
 */
export async function listenWhileWaiting(host: string, port: number, reason: () => string): Promise<(() => Promise<void>) | undefined> {
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
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ host, port }, () => resolve(true));
  });
  if (!listening) return undefined;
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
}
