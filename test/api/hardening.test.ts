import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type CrmApp } from '../../api/app.ts';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
const logLines: string[] = [];
let logged: CrmApp;
let limited: CrmApp;
beforeAll(async () => {
  h = await startApi('api_hardening');
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logLines.push(String(chunk));
      done();
    },
  });
  logged = await buildApp({ ...h.deps, logger: { level: 'debug', stream } });
  limited = await buildApp({ ...h.deps, rateLimit: { max: 3, timeWindowMs: 60_000 } });
});
afterAll(async () => {
  await logged?.close();
  await limited?.close();
  await h?.close();
});

describe('logs', () => {
  it('never contain API keys, the Authorization header or personal data from bodies and queries', async () => {
    const email = 'secret.person@example.com';
    const created = await logged.inject({
      method: 'POST',
      url: '/customers',
      headers: { ...h.auth('sales'), 'x-request-id': 'log-test-1' },
      payload: { name: 'Secret Person', email, phone: '+1 555 0100' },
    });
    expect(created.statusCode).toBe(201);
    await logged.inject({ method: 'GET', url: `/customers?search=${encodeURIComponent(email)}`, headers: h.auth('sales') });
    const key = json(await logged.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('admin'), payload: { name: 'bot', role: 'sales' } })).key;
    await logged.inject({ method: 'GET', url: '/deals', headers: { authorization: 'Bearer crm_wrong-key-but-still-a-secret' } });
    // An address sent where an id goes, to a route and to none.
    await logged.inject({ method: 'GET', url: `/customers/${encodeURIComponent(email)}`, headers: h.auth('sales') });
    await logged.inject({ method: 'GET', url: `/no-such/${email}/timeline`, headers: h.auth('sales') });
    // A key pasted where an id goes, to a route and to none; a name with a dot.
    await logged.inject({ method: 'GET', url: `/customers/${key}`, headers: h.auth('sales') });
    await logged.inject({ method: 'GET', url: `/${key}/customers`, headers: h.auth('sales') });
    await logged.inject({ method: 'GET', url: '/customers/secret.person.of.note', headers: h.auth('sales') });
    const all = logLines.join('');
    expect(all).toContain('"url":"/[redacted]/customers"');
    expect(all).toContain('"url":"/customers/[redacted]"');
    expect(all).toContain('"url":"/no-such/[redacted]/timeline"');
    expect(all).toContain('log-test-1'); // the request id is logged: logging did happen
    for (const secret of [
      h.keys.sales,
      h.keys.admin,
      key,
      'crm_wrong-key-but-still-a-secret',
      email,
      'secret.person',
      'Secret Person',
      '+1 555 0100',
      key.slice(4),
    ]) {
      expect(all).not.toContain(secret);
    }
  });
});

describe('rate limits', () => {
  it('limits each key separately and answers 429 as a problem with Retry-After', async () => {
    for (let i = 0; i < 3; i++) expect((await limited.inject({ method: 'GET', url: '/deals', headers: h.auth('sales') })).statusCode).toBe(200);
    const refused = await limited.inject({ method: 'GET', url: '/deals', headers: h.auth('sales') });
    expectProblem(refused, 429, 'rate-limited');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await limited.inject({ method: 'GET', url: '/deals', headers: h.auth('marketing') })).statusCode).toBe(200);
    for (let i = 0; i < 5; i++) expect((await limited.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
  });
});

describe('security headers and metrics', () => {
  it('sends a strict CSP on the API and a Swagger-compatible one on /docs', async () => {
    const api = await h.app.inject({ method: 'GET', url: '/health' });
    expect(api.headers['content-security-policy']).toContain("default-src 'none'");
    // No page may frame the API's answers (clickjacking).
    expect(api.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    // HTTPS only, for a year (helmet's default, which api/app.ts keeps), subdomains included.
    const hsts = String(api.headers['strict-transport-security']);
    expect(Number(/max-age=(\d+)/.exec(hsts)?.[1])).toBeGreaterThanOrEqual(365 * 24 * 60 * 60);
    expect(hsts).toContain('includeSubDomains');
    // A refusal carries them too.
    const refused = await h.app.inject({ method: 'GET', url: '/deals' });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(refused.headers['strict-transport-security']).toBe(hsts);
    const docs = await h.app.inject({ method: 'GET', url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-security-policy']).not.toContain("default-src 'none'");
  });

  it('counts appended events and labels requests by route pattern, not by id', async () => {
    const created = json(await h.app.inject({ method: 'POST', url: '/customers', headers: h.auth('sales'), payload: { name: 'M', email: 'm@example.com' } }));
    await h.app.inject({ method: 'GET', url: `/customers/${created.id}`, headers: h.auth('sales') });
    const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/crm_events_appended_total\{command="RegisterCustomer"\} [1-9]/);
    expect(metrics).toContain('route="/customers/:id"');
    expect(metrics).not.toContain(created.id);
    expect(metrics).toMatch(/crm_projection_lag_events\{projection="customers"\} \d+/);
  });
});
