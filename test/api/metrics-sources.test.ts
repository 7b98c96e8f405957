import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy } from '../faults/proxy.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';
import { startApi, type ApiHarness } from './support.ts';

/**
 * /metrics while PostgreSQL stalls (a TCP proxy between the CRM and the database holds every byte):
 * it answers within the probes' bound, and says which sources it could not read instead of leaving
 * their series out without a word.
 */
const proxy = FaultProxy.before(TEST_DATABASE_URL);
let h: ApiHarness;

beforeAll(async () => {
  await proxy.start();
  h = await startApi('metrics_sources', {}, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL) });
  // The publishers do not run here; their table is what /metrics reads.
  await h.crm.integration.services.tables.migrate();
});
afterAll(async () => {
  proxy.pass();
  await h?.close();
  await proxy.close();
});

const scrape = async () => {
  const started = Date.now();
  const res = await h.app.inject({ method: 'GET', url: '/metrics' });
  return { status: res.statusCode, body: res.body, ms: Date.now() - started };
};

describe('/metrics when a source cannot be read', () => {
  it('answers within the bound while the database stalls, with crm_metrics_source_up 0 for projections and publishers, and 1 again after', async () => {
    const healthy = await scrape();
    expect(healthy.status).toBe(200);
    expect(healthy.body).toContain('crm_metrics_source_up{source="projections"} 1');
    expect(healthy.body).toContain('crm_metrics_source_up{source="publishers"} 1');
    expect(healthy.body).toMatch(/crm_projection_lag_seconds\{projection="customers"\} \d/);

    proxy.stall();
    try {
      const stalled = await scrape();
      expect(stalled.status).toBe(200);
      // 750 ms per read, both at once.
      expect(stalled.ms).toBeLessThan(1_500);
      console.log(`/metrics answered in ${stalled.ms} ms with PostgreSQL stalled`);
      expect(stalled.body).toContain('crm_metrics_source_up{source="projections"} 0');
      expect(stalled.body).toContain('crm_metrics_source_up{source="publishers"} 0');
      // The series that could not be read are left out; what the process knows by itself is still there.
      expect(stalled.body).not.toMatch(/crm_projection_lag_seconds\{/);
      expect(stalled.body).toMatch(/crm_http_requests_total\{/);
    } finally {
      proxy.pass();
    }

    let after = await scrape();
    for (let i = 0; i < 50 && !after.body.includes('crm_metrics_source_up{source="projections"} 1'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape();
    }
    expect(after.body).toContain('crm_metrics_source_up{source="projections"} 1');
    expect(after.body).toContain('crm_metrics_source_up{source="publishers"} 1');
  });
});
