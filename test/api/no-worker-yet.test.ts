import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { json } from './support.ts';

/**
 * An API replica (`CRM_PROJECTIONS=off`) started before any projection worker has run: no checkpoint
 * exists. It is ready while nothing is recorded; once something is, it is not ready (the read models
 * hold none of it) and `?waitFor=` waits instead of answering from empty read models. A position the
 * store never issued is a 400 at once.
 */
let schemas: TestSchemas;
let crm: CrmRuntime;
let app: CrmApp;
let key: string;

beforeAll(async () => {
  schemas = testSchemas('no_worker_yet');
  crm = await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off' }), { overrides: { publishers: false, chainSealer: false } });
  app = await crm.buildApi({ waitForTimeoutMs: 1_500, backPressure: { ...crm.apiDeps.backPressure, maxEventLoopDelayMs: 0 } });
  key = (await app.keys.create({ name: 'no worker', role: 'admin' })).key;
}, 120_000);
afterAll(async () => {
  await app?.close();
  await crm?.close();
  await schemas?.dropSchemas();
});

const send = (method: 'GET' | 'POST', url: string, payload?: object) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload ? { payload } : {}) });

describe('an API replica before any projection worker ran', () => {
  it('is not ready once something is recorded, and waitFor waits for the read models instead of answering 404 from empty ones', async () => {
    // Nothing recorded yet: nothing the read models could lack.
    expect((await app.inject({ method: 'GET', url: '/ready' })).statusCode).toBe(200);
    const created = await send('POST', '/customers', { name: 'Waiting Reader', email: `waiting-${Date.now()}@example.com` });
    expect(created.statusCode, created.body).toBe(201);
    const { id, position } = json<{ id: string; position: string }>(created);

    // /ready answers from one probe at a time, shared for 500 ms.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const ready = await app.inject({ method: 'GET', url: '/ready' });
    expect(ready.statusCode, ready.body).toBe(503);
    const body = json<{ reasons: string[]; projections: { name: string; state: string }[] }>(ready);
    expect(body.reasons.join(' ')).toMatch(/no worker has run projection \w+ yet: start `crm project`/);
    expect(body.projections.map((p) => p.state)).toContain('starting');

    const started = Date.now();
    const read = await send('GET', `/customers/${id}?waitFor=${position}`);
    expect(read.statusCode, read.body).toBe(503);
    expect(json<{ type: string; detail: string }>(read)).toMatchObject({
      type: expect.stringMatching(/read-model-timeout$/),
      detail: expect.stringMatching(/did not reach position/),
    });
    expect(read.headers['retry-after']).toBe('1');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400);
  });

  it('refuses a waitFor past the newest recorded event at once, naming it', async () => {
    const started = Date.now();
    const far = await send('GET', '/customers?limit=1&waitFor=9223372036854775807');
    expect(far.statusCode, far.body).toBe(400);
    expect(json<{ errors: unknown[] }>(far).errors).toEqual([expect.objectContaining({ field: 'waitFor', in: 'query' })]);
    expect(Date.now() - started).toBeLessThan(1_400);
  });
});
