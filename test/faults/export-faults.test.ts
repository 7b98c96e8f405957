import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import type { CrmApp } from '../../api/app.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { FaultProxy } from './proxy.ts';

/**
 * Exports with the database away or stalled: a file that cannot be read is a 503 problem the client
 * can retry, within the request bound, never a 200 that carries a header row (or nothing) and reads as
 * an empty export. A real API over HTTP, its database connections through a TCP proxy that refuses or
 * stalls them.
 */
const REQUEST_TIMEOUT_MS = 2_000;
const schemas = testSchemas('export_faults');
const proxy = FaultProxy.before(TEST_DATABASE_URL);
let crm: CrmRuntime;
let app: CrmApp;
let url: string;
let key: string;

const get = (path: string, accept = '*/*') =>
  fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}`, accept }, signal: AbortSignal.timeout(30_000) });

beforeAll(async () => {
  await proxy.start();
  // A short request bound, so that the stalled case below is answered within seconds.
  const env = { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), CRM_RATE_LIMIT: '0', CRM_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) };
  crm = await openCrm(testConfig(schemas, env), {
    overrides: { poolMax: 4, publishers: false, chainSealer: false },
  });
  await crm.startProjections();
  app = await crm.buildApi();
  key = (await app.keys.create({ name: 'export faults', role: 'admin' })).key;
  url = await app.listen({ host: '127.0.0.1', port: 0 });
  for (const i of [1, 2, 3]) {
    const response = await fetch(`${url}/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: `Exported ${i}`, email: `exported${i}@example.com` }),
    });
    expect(response.status).toBe(201);
  }
  // Until the read model holds them.
  for (let tries = 0; (await (await get('/customers/export?format=ndjson')).text()).trim().split('\n').length < 3; tries++) {
    if (tries > 200) throw new Error('the customers never reached the read model');
    await new Promise((r) => setTimeout(r, 50));
  }
}, 120_000);

afterAll(async () => {
  proxy.pass();
  await app?.close();
  await crm?.close();
  await proxy.close();
  await schemas.dropSchemas();
});

/** Once the database answers again, the export is the whole file (503s meanwhile, nothing else). */
const expectWholeFileOnceBack = async () => {
  for (let tries = 0; ; tries++) {
    const response = await get('/customers/export', 'text/csv');
    if (response.status === 200) {
      const lines = (await response.text()).trim().split('\n');
      expect(lines.length).toBe(4);
      expect(
        lines
          .slice(1)
          .map((line) => line.split(',')[1])
          .sort(),
      ).toEqual(['Exported 1', 'Exported 2', 'Exported 3']);
      break;
    }
    expect(response.status).toBe(503);
    if (tries > 100) throw new Error('the export never recovered');
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe('an export while the database is away', () => {
  it('answers 503 with Retry-After before any line is sent, in CSV and NDJSON, then the whole file once the database is back', async () => {
    proxy.refuse();
    try {
      for (const [path, accept] of [
        ['/customers/export', 'text/csv'],
        ['/customers/export', 'application/x-ndjson'],
        ['/purchases/export?format=csv', '*/*'],
        ['/deals/export?format=ndjson', '*/*'],
      ] as const) {
        const response = await get(path, accept);
        expect(response.status, `${path} (${accept})`).toBe(503);
        expect(response.headers.get('content-type'), path).toContain('application/problem+json');
        expect(Number(response.headers.get('retry-after')), path).toBeGreaterThan(0);
        expect(((await response.json()) as { detail: string }).detail, path).toMatch(/database/i);
      }
    } finally {
      proxy.pass();
    }
    await expectWholeFileOnceBack();
  }, 120_000);

  it('answers 503 within the request bound while the database stalls (it does not hang), then the whole file again', async () => {
    proxy.stall();
    try {
      const started = Date.now();
      const response = await get('/customers/export?format=csv');
      const waited = Date.now() - started;
      expect(response.status).toBe(503);
      expect(response.headers.get('content-type')).toContain('application/problem+json');
      expect(waited).toBeLessThan(REQUEST_TIMEOUT_MS + 5_000);
    } finally {
      proxy.pass();
    }
    await expectWholeFileOnceBack();
  }, 120_000);
});
