import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiHarness } from './support.ts';

/** The HTTP side closing (api/closing.ts) as a keep-alive client sees it on its connection. */
let h: ApiHarness;

beforeAll(async () => {
  h = await startApi('api_closing');
}, 120_000);
afterAll(async () => h?.close());

describe('answers while the API closes', () => {
  it('a request in flight when closing begins is answered, and its answer says the connection closes', async () => {
    const address = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = new URL(address);
    const socket = net.connect(Number(port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const body = JSON.stringify({ name: 'In flight', email: `${randomUUID()}@example.com` });
    socket.write(
      `POST /customers HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${h.auth('admin').authorization}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`,
    );
    const deadline = Date.now() + 30_000;
    while (!received.includes('100 Continue') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(received).toContain('100 Continue');

    const closed = h.app.closeWithin(30_000);
    socket.write(body);
    await ended;
    expect(await closed).toBe(true);
    const answer = received.split(/(?=HTTP\/1\.1 \d{3} )/).find((part) => !part.startsWith('HTTP/1.1 100')) ?? '';
    expect(answer, received).toMatch(/^HTTP\/1\.1 201 /);
    expect(answer.split('\r\n\r\n')[0]).toMatch(/\r\nconnection: close/i);
  }, 60_000);

  it('a request sent on an idle keep-alive connection just after closing begins gets a 503 saying the connection closes, not a reset', async () => {
    const idle = await startApi('api_closing_idle');
    try {
      const address = await idle.app.listen({ host: '127.0.0.1', port: 0 });
      const socket = net.connect(Number(new URL(address).port), '127.0.0.1');
      let received = '';
      let reset: Error | undefined;
      socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
      socket.on('error', (error) => (reset = error));
      const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      // One answer, and the connection stays open for the next request (keep-alive).
      socket.write('GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n');
      const deadline = Date.now() + 10_000;
      while (!received.includes('"ok"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
      received = '';

      const closed = idle.app.closeWithin(30_000);
      await new Promise((r) => setTimeout(r, 100));
      const body = JSON.stringify({ name: 'Next on the connection', email: `${randomUUID()}@example.com` });
      socket.write(
        `POST /customers HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${idle.auth('admin').authorization}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      await ended;
      expect(await closed).toBe(true);
      expect(reset).toBeUndefined();
      expect(received, 'the connection was ended without an answer').toMatch(/^HTTP\/1\.1 503 /);
      const head = received.split('\r\n\r\n')[0]!;
      expect(head).toMatch(/\r\nconnection: close/i);
      expect(head).toMatch(/\r\nretry-after: \d+/i);
    } finally {
      await idle.close();
    }
  }, 60_000);
});
