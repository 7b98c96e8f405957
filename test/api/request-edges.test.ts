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
