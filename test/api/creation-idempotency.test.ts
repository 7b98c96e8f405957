import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

/**
 * `POST /admin/api-keys` and `POST /webhooks` under an Idempotency-Key: a retry (a phone on a flaky
 * network that never saw the first answer) creates nothing more. It created another key or
 * subscription each time. The secret was shown to the first request alone, so the retry is a 409
 * naming what was created.
 */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_creation_idempotency', {}, { CRM_WEBHOOK_ALLOW_NETWORKS: '127.0.0.0/8' });
}, 120_000);
afterAll(async () => h?.close());

const post = (url: string, payload: Record<string, unknown>, key?: string) =>
  h.app.inject({ method: 'POST', url, headers: { ...h.auth('admin'), ...(key ? { 'idempotency-key': key } : {}) }, payload });
const count = async (url: string) => json<unknown[] | { items: unknown[] }>(await h.app.inject({ method: 'GET', url, headers: h.auth('admin') }));
const sizeOf = (listed: unknown[] | { items: unknown[] }) => (Array.isArray(listed) ? listed.length : listed.items.length);

describe('a creation retried under its Idempotency-Key', () => {
  for (const [url, body] of [
    ['/admin/api-keys', { name: 'phone', role: 'sales' }],
    ['/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['*'] }],
  ] as const) {
    it(`${url}: creates once; the retry is a 409 naming what was created, and another body under the key is a 422`, async () => {
      const before = sizeOf(await count(url));
      const key = `retry-${randomUUID()}`;
      const first = await post(url, body, key);
      expect(first.statusCode, first.body).toBe(201);
      const created = json<{ id: string }>(first);
      const retried = expectProblem(await post(url, body, key), 409);
      expect(retried.details).toEqual({ id: created.id });
      expect(retried.errors?.[0]?.field).toBe('idempotency-key');
      expect(sizeOf(await count(url))).toBe(before + 1);
      expectProblem(await post(url, { ...body, ...(url === '/webhooks' ? { events: ['Purchase*'] } : { name: 'tablet' }) }, key), 422);
      // Without the header, each request creates one.
      expect((await post(url, body)).statusCode).toBe(201);
      expect((await post(url, body)).statusCode).toBe(201);
      expect(sizeOf(await count(url))).toBe(before + 3);
    });
  }
});
