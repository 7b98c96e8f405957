import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventCount, expectProblem, json, startApi, type ApiHarness } from './support.ts';

/** Requests at the edges of HTTP: empty and mislabelled bodies, methods and headers as an attacker sends them. */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_request_edges');
});
afterAll(async () => h?.close());

const JSON_TYPE = { 'content-type': 'application/json' };

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
