import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as the receiver saw it. */
export interface Received {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  /** What the receiver answered (null: it never answered). */
  answered: number | null;
  /** When it arrived (Date.now()). */
  at: number;
  /** The Authorization header (credentials in the subscription URL). */
  authorization: string | undefined;
  /** The request's path and query, as sent. */
  path: string | undefined;
}

/** What the receiver does with the n-th request (0-based): answer a status after a delay, or never answer. */
export type Behaviour = (n: number) => { status: number; delayMs?: number; headers?: Record<string, string> } | 'hang';

/**
 * A real HTTP receiver on 127.0.0.1 whose behaviour the test scripts. `down()` closes the port
 * (connections refused) and `up()` opens it again on the same port.
 */
export class Receiver {
  readonly requests: Received[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<import('node:net').Socket>();
  port = 0;

  constructor(public behaviour: Behaviour = () => ({ status: 200 })) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async up(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const n = this.requests.length;
    const entry: Received = {
      at: Date.now(),
      authorization: req.headers.authorization,
      path: req.url,
      id: String(req.headers['webhook-id']),
      timestamp: String(req.headers['webhook-timestamp']),
      signature: String(req.headers['webhook-signature']),
      body: Buffer.concat(chunks).toString('utf8'),
      answered: null,
    };
    this.requests.push(entry);
    const plan = this.behaviour(n);
    if (plan === 'hang') return; // never answers; the socket is destroyed by down()
    if (plan.delayMs) await new Promise((r) => setTimeout(r, plan.delayMs));
    if (res.destroyed) return;
    entry.answered = plan.status;
    res.writeHead(plan.status, { 'content-type': 'text/plain', ...plan.headers }).end('ok');
  }

  /** Requests the receiver answered with 2xx: what it accepted. */
  accepted(): Received[] {
    return this.requests.filter((r) => r.answered !== null && r.answered >= 200 && r.answered < 300);
  }
}

/**
 * The Standard Webhooks verification, written here from the specification rather than imported
 * from the code under test: HMAC-SHA256 over `id.timestamp.body`, key = base64 after `whsec_`.
 */
export const verifySignature = (secret: string, r: Pick<Received, 'id' | 'timestamp' | 'signature' | 'body'>): boolean => {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${r.id}.${r.timestamp}.${r.body}`).digest();
  return r.signature.split(' ').some((part) => {
    const [version, value] = part.split(',');
    if (version !== 'v1' || !value) return false;
    const given = Buffer.from(value, 'base64');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
};

/** Polls `check` until it returns a value other than undefined/false, failing with `describe()` after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  describe: () => string,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
