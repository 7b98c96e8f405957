import { randomUUID } from 'node:crypto';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../api/app.ts';
import { eventCount, expectProblem, json, startApi, type ApiHarness } from './support.ts';

/** Requests at the edges of HTTP: empty and mislabelled bodies, methods and headers as an attacker sends them. */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_request_edges');
});
afterAll(async () => h?.close());

const JSON_TYPE = { 'content-type': 'application/json' };
const SAMPLE_ID = '6f1c2a0e-8b5d-4c1e-9a7f-2d3b4c5d6e7f';

describe('an empty body with a JSON content type', () => {
  it('is no body: a DELETE is accepted', async () => {
    const created = json<{ id: string }>(
      await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('admin'), payload: { name: 'to revoke', role: 'analyst' } }),
    );
    const res = await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${created.id}`, headers: { ...h.auth('admin'), ...JSON_TYPE } });
    expect(res.statusCode, res.body).toBeLessThan(300);
    expect(json<{ revokedAt: string | null }>(res).revokedAt).not.toBeNull();
  });

  it('is no body on a command too: validated as {} (missing fields named), the same answer as without the header', async () => {
    const stored = await eventCount(h);
    for (const headers of [JSON_TYPE, { ...JSON_TYPE, 'content-length': '0' }, {}]) {
      const problem = expectProblem(await h.app.inject({ method: 'POST', url: '/customers', headers: { ...h.auth('sales'), ...headers } }), 400, 'validation');
      expect(problem.errors?.map((e) => e.field).sort()).toEqual(['email', 'name']);
    }
    expect(await eventCount(h)).toBe(stored);
  });
});

describe('a JSON body declared in a charset', () => {
  const register = (contentType: string) =>
    h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { ...h.auth('sales'), 'content-type': contentType },
      payload: JSON.stringify({ name: 'Zoë Charset', email: `${randomUUID()}@example.com` }),
    });

  it('other than UTF-8 is refused with 415 naming the content-type, appending nothing', async () => {
    const stored = await eventCount(h);
    for (const contentType of [
      'application/json; charset=latin1',
      'application/json; charset=ISO-8859-1',
      'application/json; charset=utf-16',
      'application/json;charset="UTF-16LE"',
      'application/json; charset=windows-1252',
      'application/json; charset=',
      'application/json; charset=utf-8; charset=latin1',
    ]) {
      const problem = expectProblem(await register(contentType), 415, 'unsupported-media-type');
      expect(
        problem.errors?.map((e) => e.field),
        contentType,
      ).toEqual(['content-type']);
    }
    expect(await eventCount(h)).toBe(stored);
  });

  it('holding bytes that are not UTF-8 is a 400 naming the body, appending nothing (they were stored as U+FFFD)', async () => {
    const stored = await eventCount(h);
    const email = `${randomUUID()}@example.com`;
    for (const bytes of [
      // Latin-1 "Müller", a CESU-8 lone surrogate, and a byte no UTF-8 sequence starts with.
      Buffer.concat([Buffer.from('{"name":"M'), Buffer.from([0xfc]), Buffer.from(`ller","email":"${email}"}`)]),
      Buffer.concat([Buffer.from('{"name":"Bytes '), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`","email":"${email}"}`)]),
      Buffer.concat([Buffer.from(`{"name":"Ada","email":"${email}","company":"A`), Buffer.from([0xff, 0xfe]), Buffer.from('B"}')]),
    ]) {
      const problem = expectProblem(
        await h.app.inject({ method: 'POST', url: '/customers', headers: { ...h.auth('sales'), ...JSON_TYPE }, payload: bytes }),
        400,
        'validation',
      );
      expect(problem.errors?.map((e) => e.field)).toEqual(['body']);
    }
    expect(await eventCount(h)).toBe(stored);
    // The same name in UTF-8 is taken.
    const taken = await h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { ...h.auth('sales'), ...JSON_TYPE },
      payload: Buffer.from(`{"name":"Müller","email":"${email}"}`),
    });
    expect(taken.statusCode, taken.body).toBe(201);
  });

  it('that is not valid JSON is a 400 naming the body', async () => {
    const problem = expectProblem(
      await h.app.inject({ method: 'POST', url: '/customers', headers: { ...h.auth('sales'), ...JSON_TYPE }, payload: '{"name":"a",' }),
      400,
      'malformed',
    );
    expect(problem.errors?.map((e) => e.field)).toEqual(['body']);
  });

  it('that is not JSON at all is a 415 naming the content-type as well', async () => {
    for (const contentType of [
      'text/plain',
      'application/xml',
      'application/problem+json',
      'application/json, text/plain',
      'multipart/form-data; boundary=x',
    ]) {
      const problem = expectProblem(await register(contentType), 415, 'unsupported-media-type');
      expect(
        problem.errors?.map((e) => e.field),
        contentType,
      ).toEqual(['content-type']);
    }
  });

  it('as UTF-8, in any spelling, or with no charset is read', async () => {
    for (const contentType of [
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=UTF-8',
      'application/json;charset="utf-8"',
      'application/json; charset=utf8',
    ]) {
      const res = await register(contentType);
      expect(res.statusCode, `${contentType}: ${res.body}`).toBe(201);
    }
  });
});

describe('methods', () => {
  it('OPTIONS without the headers of a preflight is answered as a preflight is (204 with the allowed methods), on every path', async () => {
    const paths = [...new Set(h.app.routeList.map((r) => r.url.replace(/:[a-zA-Z]+/g, randomUUID()).replace('*', 'x')))];
    expect(paths.length).toBeGreaterThan(40);
    for (const url of paths) {
      const res = await h.app.inject({ method: 'OPTIONS', url });
      expect(res.statusCode, `OPTIONS ${url}: ${res.body}`).toBe(204);
      expect(res.headers['access-control-allow-methods'], url).toContain('PATCH');
    }
  });
});

describe('HEAD', () => {
  it('answers every GET route with the status and content type of its GET, and no body', async () => {
    const fill = (url: string) =>
      url
        .replace(':stream', `customer-${SAMPLE_ID}`)
        .replace(':kind', 'customer')
        .replace(':version', '1')
        .replace(/:[a-zA-Z]+/g, SAMPLE_ID)
        .replace('*', 'x');
    const gets = h.app.routeList.filter((r) => r.method === 'GET');
    expect(gets.length).toBeGreaterThan(40);
    const failures: string[] = [];
    for (const { url } of gets) {
      for (const role of ['admin', 'analyst'] as const) {
        const get = await h.app.inject({ method: 'GET', url: fill(url), headers: h.auth(role) });
        const head = await h.app.inject({ method: 'HEAD', url: fill(url), headers: h.auth(role) });
        const type = (res: typeof get) => String(res.headers['content-type']).split(';')[0];
        if (head.statusCode !== get.statusCode || type(head) !== type(get) || head.body !== '' || get.statusCode >= 500)
          failures.push(`${fill(url)} as ${role}: GET ${get.statusCode} ${type(get)}, HEAD ${head.statusCode} ${type(head)} ${head.body.length} bytes`);
      }
    }
    expect(failures).toEqual([]);
  });
});

describe('a method a path is not served with', () => {
  it('is a 405 whose Allow lists the methods the path is served with, on every path; a path served with none is a 404', async () => {
    const concrete = (url: string) => url.replace(/:[a-zA-Z]+/g, SAMPLE_ID).replace('*', 'x');
    const routes = h.app.routeList.filter((r) => r.url !== '*');
    const paths = [...new Set(routes.map((r) => concrete(r.url)))];
    const failures: string[] = [];
    for (const path of paths) {
      const served = new Set(routes.filter((r) => concrete(r.url) === path).map((r) => r.method));
      for (const method of ['GET', 'POST', 'PATCH', 'DELETE', 'PUT', 'TRACE', 'SEARCH', 'PROPFIND', 'QUERY'].filter((m) => !served.has(m))) {
        const res = await h.app.inject({ method: method as 'GET', url: path, headers: h.auth('admin') });
        const allow = String(res.headers.allow).split(', ');
        // Another pattern may take it (PATCH /customers/export is PATCH /customers/:id with a bad id): any answer but 404 or 5xx.
        const refused =
          res.statusCode === 405
            ? ![...served].every((m) => allow.includes(m)) || !String(res.headers['content-type']).startsWith('application/problem+json')
            : res.statusCode === 404 || res.statusCode >= 500;
        if (refused) failures.push(`${method} ${path} -> ${res.statusCode} allow=${String(res.headers.allow)} ${res.body.slice(0, 120)}`);
      }
    }
    expect(failures).toEqual([]);
    const put = expectProblem(await h.app.inject({ method: 'PUT', url: '/customers', headers: h.auth('admin') }), 405, 'method-not-allowed');
    expect(put.errors?.map((e) => e.field)).toEqual(['method']);
    for (const url of ['/nothing-here', `/customers/${SAMPLE_ID}/nothing`]) {
      expectProblem(await h.app.inject({ method: 'PUT', url, headers: h.auth('admin') }), 404, 'not-found');
      expectProblem(await h.app.inject({ method: 'GET', url, headers: h.auth('admin') }), 404, 'not-found');
    }
  });
});

describe('paths and query strings', () => {
  it('a static file the server will not open (a folder, a NUL) is a 404 problem, not a 400 "Forbidden"', async () => {
    for (const url of ['/docs/static/%00', '/console/assets/', '/console/%00']) {
      const problem = expectProblem(await h.app.inject({ method: 'GET', url }), 404, 'not-found');
      expect(problem.detail, url).not.toBe('Forbidden');
    }
  });

  it('a query parameter without a name is a 400 naming the query, on lists and records alike', async () => {
    for (const url of ['/customers?=1', '/customers?limit=2&=', `/customers/${randomUUID()}?=x`, '/pipeline?=']) {
      const problem = expectProblem(await h.app.inject({ method: 'GET', url, headers: h.auth('sales') }), 400, 'validation');
      expect(problem.errors, url).toEqual([{ field: 'query', in: 'query', message: 'a parameter without a name' }]);
    }
  });
});

/** Writes the bytes over a real socket and reads until the server closes the connection (bounded). */
const raw = (port: number, request: string, boundMs = 10_000): Promise<{ status: number; head: string; body: string; ms: number }> =>
  new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${boundMs} ms`));
    }, boundMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const [head = '', ...rest] = Buffer.concat(chunks).toString('latin1').split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n'), ms: Date.now() - started });
    });
    socket.write(request);
  });

describe('a body that stops arriving', () => {
  it('is a 408 problem once the request bound has passed, the connection then ending, and nothing is recorded', async () => {
    // Bounds of a few hundred milliseconds (the request bound is at least waitFor's + 2 s).
    const app = await buildApp({ ...h.deps, waitForTimeoutMs: 100, requestTimeoutMs: 100 });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      const stored = await eventCount(h);
      const body = JSON.stringify({ name: 'Never Arrives', email: `${randomUUID()}@example.com` });
      const answer = await raw(
        port,
        `POST /customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.keys.sales}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length + 50}\r\n\r\n${body}`,
      );
      expect(answer.status, answer.head).toBe(408);
      expect(answer.head).toMatch(/content-type: application\/problem\+json/i);
      expect(JSON.parse(answer.body)).toMatchObject({ type: 'https://crm.example/problems/request-timeout', status: 408 });
      expect(await eventCount(h)).toBe(stored);
    } finally {
      await app.close();
    }
  });
});

describe('headers that arrive slowly', () => {
  it('are a 408 problem at the request bound, as a slow body is, while an idle keep-alive connection stays open past it', async () => {
    // The request bound is waitFor's + 2 s: 2.1 s here (Node's own bound for headers was 60 s, checked every 30 s).
    const app = await buildApp({ ...h.deps, waitForTimeoutMs: 100, requestTimeoutMs: 100 });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      const socket = connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('error', () => undefined);
      const started = Date.now();
      socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
      // A header byte every 200 ms: the connection is never idle, the headers never end.
      const trickle = setInterval(() => socket.write('X'), 200);
      const closedAfter = await new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)));
      clearInterval(trickle);
      const text = Buffer.concat(chunks).toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 408 /);
      expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ type: 'https://crm.example/problems/request-timeout', status: 408 });
      // The bound, plus up to a second until the server looks again.
      expect(closedAfter).toBeGreaterThanOrEqual(2_000);
      expect(closedAfter).toBeLessThan(4_500);

      // A keep-alive connection idle between requests is not a request arriving slowly.
      const idle = connect(port, '127.0.0.1');
      const answers: Buffer[] = [];
      idle.on('data', (chunk) => answers.push(chunk));
      idle.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      idle.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await new Promise((resolve) => idle.on('close', resolve));
      expect(
        Buffer.concat(answers)
          .toString('latin1')
          .match(/HTTP\/1\.1 \d{3}/g),
      ).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    } finally {
      await app.close();
    }
  });
});
