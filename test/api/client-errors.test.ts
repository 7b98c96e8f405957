import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiHarness } from './support.ts';

/**
 * Requests Node's HTTP parser refuses before Fastify routes them are answered as problems too
 * (application/problem+json naming the part at fault), over a real socket.
 */

let h: ApiHarness;
let port: number;
beforeAll(async () => {
  h = await startApi('api_client_errors');
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  port = (h.app.server.address() as AddressInfo).port;
}, 120_000);
afterAll(async () => h?.close());

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes the bytes, reads until the server closes the connection. */
const raw = (request: string | Buffer): Promise<RawAnswer> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer within 10 s'));
    }, 10_000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body: rest.join('\r\n\r\n') });
    });
    socket.write(request);
  });

const auth = () => `Authorization: Bearer ${h.keys.admin}`;

describe('requests the HTTP parser refuses', () => {
  const cases: [string, () => string | Buffer, number, string | undefined][] = [
    ['a control character in a header', () => `GET /customers HTTP/1.1\r\nHost: x\r\n${auth()}\r\nX-Bad: a\u0001b\r\n\r\n`, 400, 'headers'],
    [
      'both Transfer-Encoding and Content-Length',
      () =>
        `POST /customers HTTP/1.1\r\nHost: x\r\n${auth()}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
      400,
      'headers',
    ],
    ['a NUL byte in the path', () => Buffer.from(`GET /customers/a\u0000b HTTP/1.1\r\nHost: x\r\n${auth()}\r\n\r\n`, 'latin1'), 400, 'url'],
    [
      'raw UTF-8 in the path',
      () => Buffer.concat([Buffer.from('GET /customers/caf'), Buffer.from('é', 'utf8'), Buffer.from(` HTTP/1.1\r\nHost: x\r\n${auth()}\r\n\r\n`)]),
      400,
      'url',
    ],
    [
      'a broken chunked body',
      () => `POST /customers HTTP/1.1\r\nHost: x\r\n${auth()}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      400,
      'body',
    ],
    ['headers over 16 KB', () => `GET /customers HTTP/1.1\r\nHost: x\r\n${auth()}\r\nX-Filler: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers'],
    ['a 70 KB URL', () => `GET /customers?search=${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n${auth()}\r\n\r\n`, 431, 'headers'],
  ];
  for (const [what, request, status, field] of cases) {
    it(`answers ${what} with a ${status} problem naming ${field}`, async () => {
      const answer = await raw(request());
      expect(answer.status, answer.body).toBe(status);
      expect(answer.headers['content-type']).toBe('application/problem+json');
      expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.body, 'latin1'));
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
      const problem = JSON.parse(answer.body) as { type: string; status: number; detail: string; errors?: { field: string }[] };
      expect(problem.status).toBe(status);
      expect(problem.type).toMatch(/^https:\/\/crm\.example\/problems\//);
      expect(problem.detail.length).toBeGreaterThan(0);
      expect(problem.errors?.[0]?.field).toBe(field);
    });
  }

  it('still serves the next connection', async () => {
    const answer = await raw(`GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(answer.status).toBe(200);
  });

  it("answers a command first when unreadable bytes follow it on the connection, so the refusal is not read as the command's answer", async () => {
    const registered = await h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { authorization: `Bearer ${h.keys.admin}` },
      payload: { name: 'Pipelined', email: `pipelined-${Date.now()}@example.com` },
    });
    expect(registered.statusCode, registered.body).toBe(201);
    const customerId = registered.json<{ id: string }>().id;
    const body = JSON.stringify({ kind: 'note', subject: 'pipelined' });
    // One write: the command, then bytes that are no request.
    const command = `POST /customers/${customerId}/activities HTTP/1.1\r\nHost: x\r\n${auth()}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const answer = await raw(`${command}GARBAGE / HTTP/1.1\r\n\r\n`);
    const wire = answer.body;
    expect(answer.status, wire).toBe(201);
    // The refusal follows the command's answer, on the same connection, which then closes.
    expect(wire).toMatch(/HTTP\/1\.1 400 Bad Request\r\n[^]*"status":400/);
    const created = JSON.parse(wire.slice(0, wire.indexOf('HTTP/1.1 400'))) as { position: string };
    const listed = await h.app.inject({
      method: 'GET',
      url: `/customers/${customerId}/activities?waitFor=${created.position}`,
      headers: { authorization: `Bearer ${h.keys.admin}` },
    });
    expect(listed.json<{ items: unknown[] }>().items).toHaveLength(1);
  });
});

describe('requests Node’s HTTP server would answer by itself, with no problem body', () => {
  const cases: [string, string, number, string][] = [
    ['a CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405, 'method'],
    ['an Expect other than 100-continue', `POST /customers HTTP/1.1\r\nHost: x\r\n${'Expect: 200-ok'}\r\nContent-Length: 2\r\n\r\n{}`, 417, 'expect'],
    ['an HTTP/1.1 request without Host', 'GET /health HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'host'],
    // RFC 9112, 3.2: two Host lines are a 400 (Node kept the first, a proxy in front may read the other).
    ['an HTTP/1.1 request with two Hosts', 'GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n', 400, 'host'],
    // Read as part of the query, a fragment was refused as an unknown field, or as a bad value of the parameter before it.
    ['a fragment in the request target', 'GET /health?probe=1#x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 400, 'url'],
  ];
  for (const [what, request, status, field] of cases) {
    it(`answers ${what} with a ${status} problem naming ${field}, and ends the connection`, async () => {
      const answer = await raw(request);
      expect(answer.status, answer.body).toBe(status);
      expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
      const problem = JSON.parse(answer.body) as { status: number; errors?: { field: string }[] };
      expect(problem.status).toBe(status);
      expect(problem.errors?.[0]?.field).toBe(field);
    });
  }

  it('refuses two Authorization headers naming the header, whichever key comes first (the first acted alone)', async () => {
    for (const [first, second] of [
      [h.keys.analyst, h.keys.admin],
      [h.keys.admin, h.keys.analyst],
    ]) {
      const answer = await raw(
        `GET /customers?limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${first}\r\nAuthorization: Bearer ${second}\r\nConnection: close\r\n\r\n`,
      );
      expect(answer.status, answer.body).toBe(400);
      expect((JSON.parse(answer.body) as { errors: { field: string }[] }).errors[0]?.field).toBe('authorization');
    }
    // One of them alone still passes.
    expect((await raw(`GET /customers?limit=1 HTTP/1.1\r\nHost: x\r\n${auth()}\r\nConnection: close\r\n\r\n`)).status).toBe(200);
  });

  it('still serves an HTTP/1.0 request without Host (it needs none), and a command sent with Expect: 100-continue', async () => {
    expect((await raw('GET /health HTTP/1.0\r\n\r\n')).status).toBe(200);
    const body = JSON.stringify({ name: 'Expecting', email: 'expecting@example.com' });
    const answer = await raw(
      `POST /customers HTTP/1.1\r\nHost: x\r\n${auth()}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    expect(answer.body).toContain('"revision":0');
  });
});
