import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { fingerprintOf } from '../../api/idempotency.ts';
import { migrateEventStore } from '../../eventstore/postgres/migrations.ts';
import { eventCount, expectProblem, json, startApi, type ApiHarness } from './support.ts';

/**
 * Idempotency keys belong to the API key that sent them: two clients choosing the same key never
 * meet, and keys recorded by an earlier version (one table for every API key) keep working.
 */
let h: ApiHarness;
/** Two sales keys: two clients of the same role. */
let first = '';
let second = '';
let customerId = '';

beforeAll(async () => {
  h = await startApi('api_idempotency');
  first = (await h.app.keys.create({ name: 'first client', role: 'sales' })).key;
  second = (await h.app.keys.create({ name: 'second client', role: 'sales' })).key;
  customerId = json<{ id: string }>(await post(h.app, first, '/customers', { name: 'Kim Keys', email: `${randomUUID()}@example.com` })).id;
});
afterAll(async () => h?.close());

const post = (app: CrmApp, key: string, url: string, payload: object, idempotencyKey?: string) =>
  app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${key}`, ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }) },
    payload,
  });

const created = (res: LightMyRequestResponse) => {
  if (res.statusCode !== 201) throw new Error(`expected 201, got ${res.statusCode}: ${res.body}`);
  return json<{ id: string; revision: number; position: string }>(res);
};

describe('an Idempotency-Key', () => {
  it('used by another API key for another request is that client’s own: accepted, and nothing about the first client is told', async () => {
    const key = `order-${randomUUID()}`;
    created(await post(h.app, first, `/customers/${customerId}/activities`, { kind: 'note', subject: 'first client' }, key));
    const other = await post(h.app, second, '/customers', { name: 'Other Client Customer', email: `${randomUUID()}@example.com` }, key);
    expect(other.body).not.toContain('/activities');
    created(other);
  });

  it('used by another API key for the same request runs that client’s command: its own record, its own events', async () => {
    const key = `note-${randomUUID()}`;
    const body = { kind: 'note', subject: 'same request, two clients' };
    const mine = created(await post(h.app, first, `/customers/${customerId}/activities`, body, key));
    const stored = await eventCount(h);
    const theirs = created(await post(h.app, second, `/customers/${customerId}/activities`, body, key));
    expect(theirs.id).not.toBe(mine.id);
    expect(await eventCount(h)).toBe(stored + 1);
    // Each client's retry still answers its own first result and appends nothing.
    expect(created(await post(h.app, first, `/customers/${customerId}/activities`, body, key))).toEqual(mine);
    expect(created(await post(h.app, second, `/customers/${customerId}/activities`, body, key))).toEqual(theirs);
    expect(await eventCount(h)).toBe(stored + 1);
  });

  it('reused by the same API key for a different request is still refused with 422 naming its own first route', async () => {
    const key = `mine-${randomUUID()}`;
    created(await post(h.app, first, `/customers/${customerId}/activities`, { kind: 'note', subject: 'one' }, key));
    const stored = await eventCount(h);
    const again = expectProblem(
      await post(h.app, first, `/customers/${customerId}/activities`, { kind: 'note', subject: 'two' }, key),
      422,
      'idempotency-conflict',
    );
    expect(again.detail).toContain('POST /customers/:id/activities');
    expect(await eventCount(h)).toBe(stored);
  });

  it('sent again with the same body in another field order is the same request: the first answer, nothing appended', async () => {
    const key = `fields-${randomUUID()}`;
    const send = (body: string) =>
      h.app.inject({
        method: 'POST',
        url: `/customers/${customerId}/activities`,
        headers: { authorization: `Bearer ${first}`, 'content-type': 'application/json', 'idempotency-key': key },
        payload: body,
      });
    const fields = { kind: 'task', subject: 'field order', body: 'call back', dueAt: '2030-01-02T03:04:05.000Z' };
    const reversed = Object.fromEntries(Object.entries(fields).reverse());
    const mine = created(await send(JSON.stringify(fields)));
    const stored = await eventCount(h);
    expect(created(await send(JSON.stringify(reversed)))).toEqual(mine);
    // The body reaches the fingerprint as validated, in the order of its schema: a version whose schema
    // lists the fields otherwise recorded the first request's fingerprint with them in that order.
    const recordedOtherwise = fingerprintOf({ method: 'POST', route: '/customers/:id/activities', resourceId: customerId, body: reversed });
    const { numAffectedRows } = await sql`UPDATE ${sql.id(h.schemas.events, 'idempotency_keys')} SET fingerprint = ${recordedOtherwise}
      WHERE key = ${key}`.execute(h.database.db);
    expect(numAffectedRows).toBe(1n);
    expect(created(await send(JSON.stringify(fields)))).toEqual(mine);
    expect(await eventCount(h)).toBe(stored);
  });

  it('longer than fits beside the API key id in the event metadata is still a working key', async () => {
    const key = `long-${'k'.repeat(190)}`;
    const body = { kind: 'note', subject: 'a long key' };
    const mine = created(await post(h.app, first, `/customers/${customerId}/activities`, body, key));
    const stored = await eventCount(h);
    expect(created(await post(h.app, first, `/customers/${customerId}/activities`, body, key))).toEqual(mine);
    expect(await eventCount(h)).toBe(stored);
  });
});

describe('the idempotency_keys table of an earlier version', () => {
  /** The table as versions before per-key scoping created it, at the API's start outside the store's migrations. */
  const backToEarlierTable = async (schema: string) => {
    await sql`DROP TABLE ${sql.id(schema, 'idempotency_keys')}`.execute(h.database.db);
    await sql`
      CREATE TABLE ${sql.id(schema, 'idempotency_keys')} (
        key text PRIMARY KEY,
        fingerprint text NOT NULL,
        route text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`.execute(h.database.db);
    await sql`DELETE FROM ${sql.id(schema, 'eventstore_migration')} WHERE name = '0012_idempotency_keys'`.execute(h.database.db);
  };

  it('records the fingerprint of a request under the installation key: a copy of the table cannot test guessed bodies', async () => {
    const key = `keyed-${randomUUID()}`;
    const body = { name: 'Paula Phonetest', email: `${randomUUID()}@example.com`, phone: '+44 7700 983164' };
    created(await post(h.app, first, '/customers', body, key));
    const { rows } = await sql<{ fingerprint: string }>`SELECT fingerprint FROM ${sql.id(h.schemas.events, 'idempotency_keys')} WHERE key = ${key}`.execute(
      h.database.db,
    );
    const request = { method: 'POST', route: '/customers', resourceId: null, body };
    expect(rows).toHaveLength(1);
    expect(rows[0]!.fingerprint).not.toBe(fingerprintOf(request));
    expect(rows[0]!.fingerprint).toBe(fingerprintOf(request, h.crm.emailIndex.fingerprintKey));
    // The retry is still the same request, another body under the key still a conflict.
    expect((await post(h.app, first, '/customers', body, key)).statusCode).toBe(201);
    expectProblem(await post(h.app, first, '/customers', { ...body, phone: '+44 7700 983165' }, key), 422, 'idempotency-conflict');
  });

  it('keeps answering the retry of a command it recorded with its first result, appending nothing', async () => {
    const key = `before-upgrade-${randomUUID()}`;
    const body = { name: 'Earlier Version', email: `${randomUUID()}@example.com` };
    const apiKey = (await h.app.keys.create({ name: 'client of the earlier version', role: 'sales' })).key;
    const apiKeyId = (await h.app.keys.list()).find((k) => k.name === 'client of the earlier version')!.id;
    // What the earlier version did for this request: its fingerprint under the bare key, and the command with the bare key.
    await backToEarlierTable(h.schemas.events);
    await sql`INSERT INTO ${sql.id(h.schemas.events, 'idempotency_keys')} (key, fingerprint, route) VALUES (${key}, ${fingerprintOf({
      method: 'POST',
      route: '/customers',
      resourceId: null,
      body,
    })}, 'POST /customers')`.execute(h.database.db);
    const earlier = await h.crm.commands.execute(
      { type: 'RegisterCustomer', ...body },
      { actor: { userId: `api-key:${apiKeyId}`, roles: ['sales'] }, correlationId: randomUUID(), causationId: null, idempotencyKey: key },
    );
    const stored = await eventCount(h);
    // The next start's store migrations upgrade the table.
    await migrateEventStore(h.database.db, h.schemas.events);
    const app = await h.crm.buildApi(h.deps);
    try {
      const retry = created(await post(app, apiKey, '/customers', body, key));
      expect(retry).toEqual({ id: earlier.id, revision: earlier.revision, position: earlier.position.toString() });
      expect(await eventCount(h)).toBe(stored);
      // Another client's different request under that key is its own.
      created(await post(app, second, '/customers', { name: 'Someone Else', email: `${randomUUID()}@example.com` }, key));
    } finally {
      await app.close();
    }
  });
});
