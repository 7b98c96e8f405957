import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rolesMarkdown } from '../../api/roles-doc.ts';
import { isAllowed, ROLES, routeRules, ruleFor } from '../../api/roles.ts';
import { expectProblem, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_roles');
});
afterAll(async () => h?.close());

const SAMPLE_ID = '6f1c2a0e-8b5d-4c1e-9a7f-2d3b4c5d6e7f';
const concrete = (url: string) => url.replace(/:[a-zA-Z]+/g, SAMPLE_ID);
/** Routes a client calls (not HEAD/OPTIONS twins, Swagger UI assets or the benchmark route). */
const apiRoutes = () => h.app.routeList.filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !r.url.startsWith('/docs') && r.url !== '/bench/noop');

describe('role matrix', () => {
  it('names every registered route explicitly (nothing falls back to admin-only by accident)', () => {
    const missing = apiRoutes().filter((r) => ruleFor(r.method, r.url).summary.startsWith('(not in the matrix'));
    expect(missing).toEqual([]);
    expect(apiRoutes().length).toBeGreaterThan(40);
  });

  it('registers every exact route the matrix lists (except the audit/analytics ones served by their plugins)', () => {
    const registered = new Set(apiRoutes().map((r) => `${r.method} ${r.url}`));
    const absent = routeRules
      .filter((r) => !r.route.endsWith('/*') && r.route !== 'GET /docs' && !/\/(analytics|audit)\/|\/export$/.test(r.route))
      .filter((r) => !registered.has(r.route))
      .map((r) => r.route);
    expect(absent).toEqual([]);
  });

  it('enforces the matrix for every route and every role, and 401 without a key', async () => {
    const failures: string[] = [];
    for (const route of apiRoutes()) {
      const rule = ruleFor(route.method, route.url);
      const url = concrete(route.url);
      const hasBody = route.method === 'POST' || route.method === 'PATCH';
      // An unknown field makes every strict body a 400 for allowed roles, so nothing is executed.
      const payload = hasBody ? { __unknown_field__: 1 } : undefined;
      const anonymous = await h.app.inject({ method: route.method as 'GET', url, ...(payload ? { payload } : {}) });
      if (rule.access === 'public' ? anonymous.statusCode === 401 : anonymous.statusCode !== 401) {
        failures.push(`${route.method} ${route.url} anonymous -> ${anonymous.statusCode}`);
      }
      for (const role of ROLES) {
        const res = await h.app.inject({ method: route.method as 'GET', url, headers: h.auth(role), ...(payload ? { payload } : {}) });
        const allowed = isAllowed(rule, role);
        const refused = res.statusCode === 403;
        if (allowed === refused || res.statusCode === 401 || (res.statusCode >= 500 && res.statusCode !== 503)) {
          failures.push(`${route.method} ${route.url} as ${role} -> ${res.statusCode} (allowed: ${allowed})`);
        }
        if (refused) expectProblem(res, 403, 'forbidden');
      }
    }
    expect(failures).toEqual([]);
  });

  it('keeps analysts and auditors read-only outside analytics models and audit', () => {
    for (const rule of routeRules) {
      if (rule.access === 'public' || rule.route.startsWith('GET ')) continue;
      if (rule.route.startsWith('POST /analytics/') || rule.route.startsWith('POST /audit/')) continue;
      expect(rule.access, rule.route).not.toContain('analyst');
      expect(rule.access, rule.route).not.toContain('auditor');
    }
  });

  it('answers CORS preflights without a key', async () => {
    const res = await h.app.inject({
      method: 'OPTIONS',
      url: '/customers',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });

  it('gives a refusal the CORS and security headers too, so a page on another origin can read it', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/customers', headers: { origin: 'https://app.example' } });
    expect(res.statusCode).toBe(401);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
  });

  it('api/ROLES.md is generated from the matrix and up to date', () => {
    const file = readFileSync(new URL('../../api/ROLES.md', import.meta.url), 'utf8');
    expect(file).toBe(rolesMarkdown());
    expect(file).toContain('| POST /customers/:id/purchases |');
  });
});
