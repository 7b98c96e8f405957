import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCrm, Server } from './support.ts';

/**
 * `crm serve` on the embedded database west of UTC, as a user there starts it: the process's time
 * zone is set before Node starts (TZ in its environment). PGlite made a `date` a Date at UTC midnight
 * while the code read it with the local getters pg's local-midnight Date needs, so every day read back
 * was the day before, and a row written again moved back a day each time; and its session wrote
 * times in the process's zone where the API writes UTC (eventstore/postgres/database.ts).
 */
const folder = mkdtempSync(join(tmpdir(), 'crm-time-zone-'));
const env = { TZ: 'Pacific/Pago_Pago', PORT: '0', LOG_LEVEL: 'warn', CRM_DEMO: '0', CRM_ADMIN_KEY: 'embedded-time-zone-test-admin-key-0123' };
const servers: Server[] = [];

afterAll(() => {
  for (const server of servers) server.kill();
  rmSync(folder, { recursive: true, force: true });
});

describe('the embedded database in a time zone west of UTC', () => {
  it('keeps a deal’s expected close date and the analytics days as given through rewrites, writes the export’s times in UTC, and verifies', async () => {
    const server = new Server(folder, env);
    servers.push(server);
    const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr');
    const headers = { authorization: `Bearer ${env.CRM_ADMIN_KEY}`, 'content-type': 'application/json' };
    const send = async (method: string, path: string, body: unknown, revision?: number) => {
      const ifMatch: Record<string, string> = revision === undefined ? {} : { 'if-match': `"${revision}"` };
      const response = await fetch(`${url}${path}`, { method, headers: { ...headers, ...ifMatch }, body: JSON.stringify(body) });
      const json = (await response.json()) as Record<string, any>;
      expect(response.status, JSON.stringify(json)).toBeLessThan(300);
      return json;
    };
    /** With `position`, once the read models have it (the export reads them as they are: asked after the reads that waited). */
    const get = async (path: string, position?: string) => {
      const waitFor = position === undefined ? '' : `${path.includes('?') ? '&' : '?'}waitFor=${position}`;
      const response = await fetch(`${url}${path}${waitFor}`, { headers });
      const json = (await response.json()) as Record<string, any>;
      expect(response.status, JSON.stringify(json)).toBe(200);
      return json;
    };

    // 09:00 UTC is 22:00 the evening before in Pago Pago: the days counted are UTC days.
    const customer = await send('POST', '/customers', { name: 'Ada Lovelace', email: 'ada@example.com', occurredAt: '2025-03-01T09:00:00Z' });
    const id = String(customer.id);
    await send('POST', `/customers/${id}/purchases`, { orderId: 'A-1', amount: 100, currency: 'EUR', occurredAt: '2025-03-01T09:00:00Z' });
    await send('POST', `/customers/${id}/purchases`, { orderId: 'A-2', amount: 50, currency: 'EUR', occurredAt: '2025-03-15T09:00:00Z' });
    await send('POST', `/customers/${id}/purchases`, { orderId: 'A-3', amount: 20, currency: 'EUR', occurredAt: '2025-03-20T09:00:00Z' });
    const deal = await send('POST', '/deals', {
      customerId: id,
      title: 'Fleet',
      amount: 1000,
      currency: 'EUR',
      ownerId: 'sam',
      expectedCloseDate: '2026-03-01',
    });
    const dealId = String(deal.id);
    expect((await get(`/deals/${dealId}`, String(deal.position))).expectedCloseDate).toBe('2026-03-01');
    // Each change of the title writes the row again from what was read back.
    let last = deal;
    for (const title of ['Fleet renewal', 'Fleet renewal 2026']) last = await send('PATCH', `/deals/${dealId}`, { title }, Number(last.revision));
    const changed = await get(`/deals/${dealId}`, String(last.position));
    expect(changed).toMatchObject({ title: 'Fleet renewal 2026', expectedCloseDate: '2026-03-01' });
    // The pipeline's month is kept from the folded row too.
    expect(((await get('/pipeline', String(last.position))).byMonth as { month: string }[]).map((m) => m.month)).toEqual(['2026-03']);

    // The customer's first and last purchase days, written again by each later purchase, live and as of a day.
    const days = { firstPurchaseDay: '2025-03-01', lastPurchaseDay: '2025-03-20' };
    expect(await get(`/analytics/customers/${id}`, String(last.position))).toMatchObject(days);
    expect(await get(`/analytics/customers/${id}?asOf=2025-03-31`, String(last.position))).toMatchObject(days);

    // The export's read-model rows are written by the database (to_jsonb): their times in UTC, as the API's.
    const exported = await get(`/customers/${id}/export`);
    const customerRow = (exported.readModels.customers as Record<string, unknown>[])[0]!;
    expect(customerRow.registered_at).toBe('2025-03-01T09:00:00+00:00');
    const times = JSON.stringify(exported).match(/"\d{4}-\d{2}-\d{2}T[^"]+"/g) ?? [];
    expect(times.length).toBeGreaterThan(10);
    for (const time of times) expect(time).toMatch(/(Z|\+00:00)"$/);
    expect((exported.readModels.deals as Record<string, unknown>[])[0]!.expected_close_date).toBe('2026-03-01');
    expect((exported.analytics.analytics_customer as Record<string, unknown>[])[0]).toMatchObject({ first_day: '2025-03-01', last_day: '2025-03-20' });

    expect(await server.stop()).toBe(0);
    // The read models equal a replay of the events (one process at a time opens the folder).
    const verified = await runCrm(['verify'], { cwd: folder, env, timeoutMs: 120_000 });
    expect(verified.stderr + verified.stdout).not.toMatch(/DIFF/);
    expect(verified.code, verified.stderr).toBe(0);
  }, 240_000);
});
