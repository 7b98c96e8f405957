import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealChain, verifyGlobalChain } from '../../audit/sql/chain.ts';
import type { Role } from '../../api/roles.ts';
import { expectProblem, json, startApi, type ApiHarness } from '../api/support.ts';
import { forgeChains, sleep, verificationEnded } from './support.ts';

/**
 * `POST /audit/verify` with `anchors`: the global chain's head kept outside the database and handed
 * back to a chains job, which catches an insider who altered an event and re-hashed both chains.
 */
let h: ApiHarness;
const customerId = randomUUID();
const stream = `customer-${customerId}`;

const send = (role: Role, method: 'GET' | 'POST', url: string, payload?: unknown) =>
  h.app.inject({
    method,
    url,
    headers: { ...h.auth(role), ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });

const waitForJob = (id: string) => verificationEnded(async (url) => json(await send('auditor', 'GET', url)), id);

/** Starts a chains job and waits for its outcome. */
const chainsJob = async (body: Record<string, unknown>) => {
  const started = await send('auditor', 'POST', '/audit/verify', { kind: 'chains', ...body });
  expect(started.statusCode, started.body).toBe(202);
  return waitForJob(json(started).id);
};

/** Seals until nothing is left (sealing stops below the oldest transaction open anywhere in the shared cluster). */
const sealEverything = async () => {
  for (let attempt = 0; attempt < 600; attempt++) {
    await sealChain(h.database, h.schemas.events);
    if ((await verifyGlobalChain(h.database, h.schemas.events)).unsealed === 0) return;
    await sleep(50);
  }
  throw new Error('the events were not sealed');
};

const jobCount = async () => {
  const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ${sql.id(h.schemas.read, 'audit_verifications')}`.execute(h.database.db);
  return Number(rows[0]!.n);
};

beforeAll(async () => {
  h = await startApi('audit_anchors_api');
  const registered = await send('sales', 'POST', '/customers', { customerId, name: 'Ada Lovelace', email: 'ada@example.com' });
  expect(registered.statusCode, registered.body).toBe(201);
  for (const [orderId, amount] of [
    ['o-1', 10],
    ['o-2', 20],
  ] as const) {
    const purchase = await send('sales', 'POST', `/customers/${customerId}/purchases`, { orderId, amount, currency: 'EUR' });
    expect(purchase.statusCode, purchase.body).toBeLessThan(300);
  }
  await sealEverything();
}, 120_000);

afterAll(async () => {
  await h?.close();
});

describe('POST /audit/verify with anchors', () => {
  let head: string;

  it('reports the head as an anchor, and passes with it given back, saying the anchor matched', async () => {
    const first = await chainsJob({});
    expect(first).toMatchObject({ status: 'passed', anchors: [], result: { ok: true, global: { anchors: [], anchorsMatched: 0 } } });
    head = first.result.headAnchor;
    expect(head).toMatch(/^\d+:[0-9a-f]{64}$/);
    expect(head).toBe(`${first.result.global.head.position}:${first.result.global.head.globalHash}`);

    // Given in upper case, as a ticket may hold it: the same anchor.
    const [position, hash] = head.split(':');
    const again = await chainsJob({ anchors: [`${position}:${hash!.toUpperCase()}`] });
    expect(again).toMatchObject({ status: 'passed', ok: true, anchors: [head], result: { ok: true, headAnchor: head } });
    expect(again.result.global.anchors).toEqual([{ anchor: head, matched: true, status: 'matched' }]);
    expect(again.result.global.anchorsMatched).toBe(1);
  });

  it('catches both chains re-hashed after an event was altered, which a job without anchors does not notice', async () => {
    await forgeChains(h.database.db, h.schemas.events, stream, 1);

    const unanchored = await chainsJob({});
    expect(unanchored).toMatchObject({ status: 'passed', ok: true });
    expect(unanchored.result.headAnchor).not.toBe(head);

    const anchored = await chainsJob({ anchors: [head] });
    expect(anchored).toMatchObject({ status: 'failed', done: true, ok: false, anchors: [head] });
    expect(anchored.result.global.anchors).toEqual([{ anchor: head, matched: false, status: 'differs' }]);
    expect(anchored.result.firstBroken).toMatchObject({
      chain: 'global',
      position: head.split(':')[0],
      reason: expect.stringContaining('differs from the anchor kept outside the database'),
    });
    // No new head from a broken chain, and the advice of a broken chain.
    expect(anchored.result.headAnchor).toBeNull();
    expect(anchored.nextSteps.join('\n')).toContain('Do not run `crm rebuild`');
  });

  it('refuses malformed anchors naming each one, and starts nothing', async () => {
    const before = await jobCount();
    const valid = `1:${'a'.repeat(64)}`;
    const malformed = expectProblem(
      await send('auditor', 'POST', '/audit/verify', {
        kind: 'chains',
        anchors: [valid, '12:abc', valid, `-1:${'a'.repeat(64)}`, `${2n ** 63n}:${'a'.repeat(64)}`],
      }),
      400,
      'validation',
    );
    expect(malformed.errors?.map((e) => e.field)).toEqual(['anchors.1', 'anchors.3', 'anchors.4']);
    for (const anchors of [['x'.repeat(10_000)], [42], 'not a list', Array.from({ length: 1001 }, () => valid)]) {
      const refused = expectProblem(await send('auditor', 'POST', '/audit/verify', { chain: true, anchors }), 400, 'validation');
      expect(refused.errors?.[0]?.field, JSON.stringify(anchors).slice(0, 40)).toMatch(/^anchors(\.0)?$/);
    }
    // Anchors belong to the chains: a replay of the read models has none to check.
    const readModels = expectProblem(await send('auditor', 'POST', '/audit/verify', { anchors: [valid] }), 400, 'validation');
    expect(readModels.errors?.[0]?.field).toBe('anchors');
    const contradiction = expectProblem(await send('auditor', 'POST', '/audit/verify', { kind: 'read_models', chain: true }), 400, 'validation');
    expect(contradiction.errors?.[0]?.field).toBe('chain');
    expect(await jobCount()).toBe(before);
  });

  it('documents anchors in the OpenAPI document', async () => {
    const doc = json(await h.app.inject({ method: 'GET', url: '/openapi.json' }));
    const operation = doc.paths['/audit/verify'].post;
    expect(operation.description).toContain('anchors');
    const schema = operation.requestBody.content['application/json'].schema;
    expect(schema.properties.anchors).toMatchObject({ type: 'array', maxItems: 1000, items: { type: 'string' } });
    expect(schema.properties.anchors.description).toContain('<position>:<hash>');
  });
});
