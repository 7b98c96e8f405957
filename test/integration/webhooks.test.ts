import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext, CrmCommands } from '../../commands/index.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { migrateEventStore } from '../../eventstore/postgres/migrations.ts';
import { matchesPatterns } from '../../integration/envelope.ts';
import { createDestinationGuard, parseNetwork } from '../../integration/destinations.ts';
import { retryAfterMs, WebhookClient } from '../../integration/http-post.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { integrationTables } from '../../integration/tables.ts';
import type { DeliveryPolicy } from '../../integration/webhook-loop.ts';
import { expectProblem, json, startApi, type ApiHarness } from '../api/support.ts';
import { eventually, Receiver, verifySignature, type Received } from './support.ts';
import { newestPosition, storedEvents } from '../support/events.ts';

let h: ApiHarness;
let commands: CrmCommands;
const receivers: Receiver[] = [];

beforeAll(async () => {
  // The receivers listen on 127.0.0.1: loopback is allowed here as an operator allows an internal network.
  h = await startApi('webhooks', {}, { CRM_WEBHOOK_ALLOW_NETWORKS: '127.0.0.0/8' });
  commands = h.deps.commands as CrmCommands;
});
afterAll(async () => {
  for (const r of receivers) await r.down();
  await h?.close();
});

const ctx = (): CommandContext => ({ actor: { userId: 'alice', roles: ['admin'] }, correlationId: randomUUID() });

const receiver = async (behaviour?: ConstructorParameters<typeof Receiver>[0]) => {
  const r = new Receiver(behaviour);
  await r.up();
  receivers.push(r);
  return r;
};

type Log = NonNullable<ConstructorParameters<typeof IntegrationPublishers>[0]['log']>;

const startPublishers = async (policy: Partial<DeliveryPolicy>, destinations = createDestinationGuard([parseNetwork('127.0.0.0/8')!]), log?: Log) => {
  const publishers = new IntegrationPublishers({
    ...(log ? { log } : {}),
    destinations,
    db: h.database.db,
    schema: h.schemas.events,
    store: h.store,
    // A key cache of its own, filled before the forget that another instance (the command side) performs.
    personalData: await createPersonalData(h.database.db, { schema: h.schemas.events }),
    policy,
    reconcileEveryMs: 100,
  });
  await publishers.start();
  return publishers;
};

const subscribe = async (body: Record<string, unknown>) => {
  const res = await h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload: body });
  expect(res.statusCode, res.body).toBe(201);
  const created = json<{ id: string; secret: string }>(res);
  expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
  return created;
};

const webhook = async (id: string) => json(await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') }));
/** The subscription's view once it is paused as failing. */
const untilFailing = (id: string, timeoutMs: number) =>
  eventually(
    async () => {
      const v = await webhook(id);
      return v.state === 'failing' && v;
    },
    timeoutMs,
    () => 'state failing',
  );

/** The stored events a subscription with these patterns must receive, in position order, after `after`. */
const expectedEvents = async (patterns: string[], after: bigint) =>
  (await storedEvents(h.store, { fromPosition: after })).filter((e) => matchesPatterns(patterns, e.type));

const registerWithPurchase = async (i: number) => {
  const { id } = await commands.execute({ type: 'RegisterCustomer', name: `Customer ${i}`, email: `c${i}-${randomUUID()}@example.com` }, ctx());
  await commands.execute({ type: 'RecordPurchase', customerId: id, orderId: `o-${i}`, amount: 10 + i, currency: 'EUR' }, ctx());
  await commands.execute({ type: 'TagCustomer', customerId: id, tag: 'webhook-test' }, ctx());
  return id;
};

const positionOf = (r: Received) => BigInt(JSON.parse(r.body).position as string);

describe('webhook subscriptions over HTTP', () => {
  it('refuses URLs that are not http(s) and patterns that match no event type, naming the field', async () => {
    for (const url of ['ftp://example.com/hook', 'file:///etc/passwd', 'javascript:alert(1)', 'not a url']) {
      const problem = expectProblem(
        await h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload: { url, events: ['*'] } }),
        400,
        'validation',
      );
      expect(problem.errors?.map((e) => e.field)).toContain('url');
    }
    const problem = expectProblem(
      await h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload: { url: 'https://example.com/hook', events: ['Purchse*'] } }),
      400,
      'validation',
    );
    expect(problem.errors?.[0]?.field).toMatch(/^events/);
    expectProblem(
      await h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('sales'), payload: { url: 'https://example.com/hook', events: ['*'] } }),
      403,
      'forbidden',
    );
    const list = json(await h.app.inject({ method: 'GET', url: '/webhooks', headers: h.auth('admin') }));
    expect(list.items).toEqual([]);
  });

  it('refuses text PostgreSQL cannot store, control characters in URLs and positions past bigint with a 400 naming the field, storing nothing', async () => {
    const post = (payload: Record<string, unknown>) => h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload });
    const refused: [Record<string, unknown>, string][] = [
      [{ url: 'https://example.com/hook', events: ['*'], description: 'a\u0000b' }, 'description'],
      // Would be stored as U+FFFD: silently altered.
      [{ url: 'https://example.com/hook', events: ['*'], description: 'a\ud800b' }, 'description'],
      [{ url: 'https://example.com/h\u0000ook', events: ['*'] }, 'url'],
      [{ url: 'https://example.com/h\udc00ook', events: ['*'] }, 'url'],
      // URL parsing drops the tab: the stored URL would read differently from where deliveries go.
      [{ url: 'http://127.0.0.1:41\t50/hook', events: ['*'] }, 'url'],
    ];
    for (const [payload, field] of refused) {
      const problem = expectProblem(await post(payload), 400, 'validation');
      expect(problem.errors?.map((e) => e.field)).toContain(field);
    }
    expect(json(await h.app.inject({ method: 'GET', url: '/webhooks', headers: h.auth('admin') })).items).toEqual([]);

    const { id } = await subscribe({ url: 'https://example.com/hook', events: ['*'] });
    try {
      const patched = expectProblem(
        await h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload: { description: 'x\u0000' } }),
        400,
        'validation',
      );
      expect(patched.errors?.map((e) => e.field)).toContain('description');
      const replay = (fromPosition: string) =>
        h.app.inject({ method: 'POST', url: `/webhooks/${id}/replay`, headers: h.auth('admin'), payload: { fromPosition } });
      const tooFar = expectProblem(await replay('9999999999999999999'), 400, 'validation');
      expect(tooFar.errors?.map((e) => e.field)).toContain('fromPosition');
      expectProblem(await replay('9223372036854775808'), 400, 'validation');
      // Text that is no number at all is a field error too (a BigInt of it threw: a 500).
      for (const text of ['abc', '1e3', '1.5', '\uff11\uff12', '-1', '']) {
        const refused = expectProblem(await replay(text), 400, 'validation');
        expect(refused.errors?.map((e) => e.field)).toEqual(['fromPosition']);
      }
      // Past the head (the next event's position at most), the checkpoint would wait there while every
      // event recorded meanwhile went undelivered, the subscription shown running and nothing behind.
      const head = await h.store.headPosition();
      const past = expectProblem(await replay('9223372036854775807'), 400, 'validation');
      expect(past.errors).toEqual([{ field: 'fromPosition', message: expect.stringContaining(`the last event is at ${head}`) }]);
      expect((await webhook(id)).position).not.toBe('9223372036854775806');
      expect((await replay((head + 1n).toString())).statusCode).toBe(202);
      expect((await webhook(id)).position).toBe(head.toString());
    } finally {
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  });

  it('refuses, naming url, a URL whose host is an address outside the public internet that the operator has not allowed, on create and on change', async () => {
    const post = (url: string) => h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload: { url, events: ['*'] } });
    const refusedUrls = [
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.5/hook',
      // The same addresses written the ways URL parsing accepts: hexadecimal, IPv4-mapped IPv6, a trailing dot.
      'http://0xa9fea9fe/latest/meta-data/',
      'http://[::ffff:169.254.169.254]/',
      'http://[fd00::1]/hook',
      'http://192.168.1.1.:8080/',
      'http://[::]/hook',
    ];
    for (const url of refusedUrls) {
      const problem = expectProblem(await post(url), 400, 'validation');
      expect(problem.errors, url).toEqual([{ field: 'url', in: 'body', message: expect.stringContaining('CRM_WEBHOOK_ALLOW_NETWORKS') }]);
    }
    expect(expectProblem(await post('http://169.254.169.254/'), 400, 'validation').errors?.[0]?.message).toMatch(
      /^169\.254\.169\.254 is a link-local \(cloud metadata\) address/,
    );
    // Loopback is allowed in this API's configuration, and so is a name (checked when each delivery connects).
    const { id } = await subscribe({ url: 'http://localhost:9/hook', events: ['*'] });
    const other = await subscribe({ url: 'https://example.com/hook', events: ['*'] });
    try {
      const patched = expectProblem(
        await h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload: { url: 'http://172.16.0.1/hook' } }),
        400,
        'validation',
      );
      expect(patched.errors?.map((e) => e.field)).toEqual(['url']);
      expect((await webhook(id)).url).toBe('http://localhost:9/hook');
      const listed = json(await h.app.inject({ method: 'GET', url: '/webhooks', headers: h.auth('admin') })).items.map((s: { url: string }) => s.url);
      expect(listed.sort()).toEqual(['http://localhost:9/hook', 'https://example.com/hook']);
    } finally {
      for (const created of [id, other.id]) await h.app.inject({ method: 'DELETE', url: `/webhooks/${created}`, headers: h.auth('admin') });
    }
  });

  it('documents the routes, the envelope and every event type in the OpenAPI document', async () => {
    const doc = json(await h.app.inject({ method: 'GET', url: '/openapi.json' }));
    for (const path of ['/webhooks', '/webhooks/{id}', '/webhooks/{id}/deliveries', '/webhooks/{id}/replay', '/webhooks/event-types'])
      expect(Object.keys(doc.paths)).toContain(path);
    const envelope = doc.components.schemas.IntegrationEvent;
    expect(Object.keys(envelope.properties).sort()).toEqual(['aggregate', 'data', 'id', 'occurredAt', 'position', 'recordedAt', 'revision', 'type', 'version']);
    expect(envelope.properties.type.enum).toContain('PurchaseRecorded');
    const types = json(await h.app.inject({ method: 'GET', url: '/webhooks/event-types', headers: h.auth('admin') }));
    // Every aggregate an event type belongs to is a documented kind (clients generated from the document validate it).
    const kinds = new Set(types.items.map((t: any) => t.aggregate));
    expect([...kinds]).toEqual(expect.arrayContaining(['customer', 'user', 'team', 'activity', 'exchangeRate']));
    expect([...envelope.properties.aggregate.properties.kind.enum].sort()).toEqual([...kinds].sort());
    expect(types.items.find((t: any) => t.type === 'CustomerRegistered')).toMatchObject({
      aggregate: 'customer',
      natsSubject: 'crm.customer.CustomerRegistered',
      personalFields: ['name', 'email', 'phone', 'company'],
    });
  });

  it('shows publishers in /ready (without affecting readiness) and in /metrics', async () => {
    const { id } = await subscribe({ url: 'http://127.0.0.1:9/never', events: ['*'] });
    try {
      const ready = json(await h.app.inject({ method: 'GET', url: '/ready' }));
      const entry = ready.publishers.find((p: any) => p.name === `webhook:${id}`);
      expect(entry).toMatchObject({ state: 'running', delivered: 0, failures: 0 });
      expect(ready.reasons.some((r: string) => r.includes('webhook'))).toBe(false);
      const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toMatch(new RegExp(`crm_publisher_deliveries_total\\{publisher="webhook:${id}",kind="webhook"\\} 0`));
      expect(metrics).toContain('crm_publisher_lag_seconds');
    } finally {
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  });

  it('refuses a secret rotation of an unknown subscription (404) or for a time it cannot keep (400 naming keepPreviousSeconds), changing nothing', async () => {
    const { id, secret } = await subscribe({ url: 'https://example.com/hook', events: ['Deal*'] });
    try {
      for (const keepPreviousSeconds of [-1, 604_801, 1.5, '60', null]) {
        const res = await h.app.inject({ method: 'POST', url: `/webhooks/${id}/rotate-secret`, headers: h.auth('admin'), payload: { keepPreviousSeconds } });
        const problem = expectProblem(res, 400, 'validation');
        expect(JSON.stringify(problem.errors), String(keepPreviousSeconds)).toContain('keepPreviousSeconds');
      }
      expectProblem(
        await h.app.inject({ method: 'POST', url: `/webhooks/${id}/rotate-secret`, headers: h.auth('admin'), payload: { keep: 5 } }),
        400,
        'validation',
      );
      const unknown = randomUUID();
      const missing = expectProblem(
        await h.app.inject({ method: 'POST', url: `/webhooks/${unknown}/rotate-secret`, headers: h.auth('admin'), payload: {} }),
        404,
        'not-found',
      );
      expect(missing.detail).toBe(`No webhook ${unknown}.`);
      const { rows } = await sql<{ secret: string; previous_secret: string | null }>`
        SELECT secret, previous_secret FROM ${sql.table(`${h.schemas.events}.webhook_subscriptions`)} WHERE id = ${id}`.execute(h.database.db);
      expect(rows[0]).toEqual({ secret, previous_secret: null });
      expect((await webhook(id)).previousSecretExpiresAt).toBeNull();
    } finally {
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  });

  it('adds the rotation columns to a subscriptions table made before them, keeping its rows', async () => {
    const schema = `${h.schemas.events}_before_rotation`;
    const db = h.database.db;
    try {
      await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(db);
      // The table as it was made before secret rotation.
      await sql`CREATE TABLE ${sql.id(schema, 'webhook_subscriptions')} (id uuid PRIMARY KEY, url text NOT NULL, events text[] NOT NULL,
        description text, role text NOT NULL, secret text NOT NULL, enabled boolean NOT NULL DEFAULT true, generation integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())`.execute(db);
      const id = randomUUID();
      await sql`INSERT INTO ${sql.id(schema, 'webhook_subscriptions')} (id, url, events, role, secret) VALUES (${id}, 'https://example.com/old', ${['*']}::text[], 'admin', 'whsec_b2xk')`.execute(
        db,
      );
      // Two starts: the store's migrations give the table the columns once.
      await migrateEventStore(db, schema, { engineTables: false });
      await migrateEventStore(db, schema, { engineTables: false });
      const tables = integrationTables(db, schema);
      expect(await tables.secretsOf(id)).toEqual(['whsec_b2xk']);
      expect((await tables.rotateSecret(id, 'whsec_bmV3', 60))?.previousSecretExpiresAt).toBeInstanceOf(Date);
      expect(await tables.secretsOf(id)).toEqual(['whsec_bmV3', 'whsec_b2xk']);
    } finally {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(db);
    }
  });

  it('shows the secret once: never in GET, list or PATCH answers', async () => {
    const { id, secret } = await subscribe({ url: 'https://example.com/hook', events: ['Deal*'], description: 'crm to warehouse' });
    expect(await webhook(id)).toMatchObject({ description: 'crm to warehouse', events: ['Deal*'], previousSecretExpiresAt: null });
    for (const res of [
      await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') }),
      await h.app.inject({ method: 'GET', url: '/webhooks', headers: h.auth('admin') }),
      await h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload: { enabled: false } }),
    ]) {
      expect(res.statusCode, res.body).toBe(200);
      expect(res.body).not.toContain(secret.slice(6));
    }
    expect((await webhook(id)).state).toBe('disabled');
    expect((await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') })).statusCode).toBe(204);
    expectProblem(await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') }), 404, 'not-found');
  });
});

describe('delivery', () => {
  it('delivers every event in order with valid signatures through failures, slow answers and an outage; duplicates only with the same webhook-id; a dead receiver holds back nobody else', async () => {
    // Fails the first three attempts, answers slowly, then twice too slowly (the attempt times out after the receiver took it: a duplicate).
    const flaky = await receiver((n) =>
      n < 3 ? { status: 500 } : n < 8 ? { status: 200, delayMs: 300 } : n < 10 ? { status: 200, delayMs: 1_500 } : { status: 204 },
    );
    const dead = await receiver(() => 'hang');
    const patterns = ['CustomerRegistered', 'Purchase*'];
    const start = await newestPosition(h.store);
    const good = await subscribe({ url: flaky.url, events: patterns, role: 'admin' });
    const stuck = await subscribe({ url: dead.url, events: ['*'], role: 'admin' });
    const publishers = await startPublishers({ timeoutMs: 800, firstRetryMs: 50, maxRetryMs: 400, retryForMs: 60_000 });
    try {
      for (let i = 0; i < 6; i++) await registerWithPurchase(i);
      // Down for a while once it has accepted a few.
      await eventually(
        () => flaky.accepted().length >= 6,
        60_000,
        () => `accepted ${flaky.accepted().length}`,
      );
      await flaky.down();
      for (let i = 6; i < 12; i++) await registerWithPurchase(i);
      await new Promise((r) => setTimeout(r, 1_500));
      await flaky.up();

      const expected = await expectedEvents(patterns, start);
      expect(expected.length).toBe(24);
      const ids = expected.map((e) => e.id);
      await eventually(
        () => new Set(flaky.accepted().map((r) => r.id)).size === ids.length && flaky.accepted(),
        120_000,
        () => `accepted ${new Set(flaky.accepted().map((r) => r.id)).size} of ${ids.length}`,
      );

      // Every request (accepted or not) is signed with the subscription's secret.
      for (const r of flaky.requests) expect(verifySignature(good.secret, r), `signature of ${r.id}`).toBe(true);
      expect(verifySignature(good.secret, { ...flaky.requests[0]!, body: flaky.requests[0]!.body.replace('"Customer', '"Kustomer') })).toBe(false);
      // In order: first acceptance of each event follows the log, and no request ever goes back in position.
      const firstAccepted: string[] = [];
      for (const r of flaky.accepted()) if (!firstAccepted.includes(r.id)) firstAccepted.push(r.id);
      expect(firstAccepted).toEqual(ids);
      const positions = flaky.requests.map(positionOf);
      for (let i = 1; i < positions.length; i++) expect(positions[i]! >= positions[i - 1]!).toBe(true);
      // Duplicates carry the same webhook-id and the same body; there were some (failures and timeouts).
      const byId = new Map<string, Set<string>>();
      for (const r of flaky.requests) byId.set(r.id, (byId.get(r.id) ?? new Set()).add(r.body));
      for (const [id, bodies] of byId) expect(bodies.size, `bodies of ${id}`).toBe(1);
      expect(flaky.requests.length).toBeGreaterThan(ids.length);
      expect([...byId.keys()].sort()).toEqual([...ids].sort());
      // The envelope.
      const first = JSON.parse(flaky.accepted()[0]!.body);
      expect(first).toMatchObject({ id: ids[0], type: 'CustomerRegistered', version: 1, aggregate: { kind: 'customer' }, data: { name: 'Customer 0' } });
      expect(Object.keys(first).sort()).toEqual(['aggregate', 'data', 'id', 'occurredAt', 'position', 'recordedAt', 'revision', 'type', 'version']);

      // The dead receiver's subscription is still on its first event, retrying; the status says why.
      const stuckView = await webhook(stuck.id);
      expect(stuckView.delivered).toBe(0);
      expect(stuckView.lastError).toMatch(/no answer within 800 ms/);
      const goodView = await eventually(
        async () => {
          const v = await webhook(good.id);
          return v.delivered >= ids.length && v;
        },
        10_000,
        () => 'delivered count',
      );
      expect(goodView.state).toBe('running');
      // It failed on the way, but delivered since: no error shown as if it were the state now.
      expect(goodView.failures).toBeGreaterThan(0);
      expect(goodView.lastError).toBeNull();
      expect(BigInt(goodView.position)).toBeGreaterThanOrEqual(expected.at(-1)!.position);
      const deliveries = json(await h.app.inject({ method: 'GET', url: `/webhooks/${good.id}/deliveries?limit=1000`, headers: h.auth('admin') }));
      expect(deliveries.items.some((d: any) => d.statusCode === 500 && d.nextRetryAt !== null)).toBe(true);
      expect(deliveries.items.some((d: any) => d.statusCode === null && /ECONNREFUSED|no answer/.test(d.error))).toBe(true);
    } finally {
      await publishers.stop();
      for (const id of [good.id, stuck.id]) await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  }, 240_000);

  it('shows a password in the URL masked, keeps it out of the url column, keeps it for the URL given back as shown, and delivers with the real one', async () => {
    const r = await receiver();
    const password = `pw-${randomUUID()}`;
    const url = `http://hooks:${password}@127.0.0.1:${r.port}/hook`;
    const { id } = await subscribe({ url, events: ['CustomerRegistered'] });
    const publishers = await startPublishers({ firstRetryMs: 50 });
    try {
      for (const res of [
        await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') }),
        await h.app.inject({ method: 'GET', url: '/webhooks', headers: h.auth('admin') }),
        await h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload: { description: 'with basic auth' } }),
      ]) {
        expect(res.statusCode, res.body).toBe(200);
        expect(res.body).not.toContain(password);
      }
      const shown = (await webhook(id)).url;
      expect(shown).toBe(`http://hooks:***@127.0.0.1:${r.port}/hook`);
      // Without a master key it is stored bare, as the signing secret is, but apart: the url column never holds it.
      const stored = async () =>
        (
          await sql<{ url: string; url_password: string | null }>`
            SELECT url, url_password FROM ${sql.table(`${h.schemas.events}.webhook_subscriptions`)} WHERE id = ${id}`.execute(h.database.db)
        ).rows[0];
      expect(await stored()).toEqual({ url: shown, url_password: password });
      // Sent back as shown (to change something else): the stored password is kept, not replaced by ***.
      const patched = await h.app.inject({
        method: 'PATCH',
        url: `/webhooks/${id}`,
        headers: h.auth('admin'),
        payload: { url: shown, events: ['CustomerRegistered'] },
      });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(await stored()).toEqual({ url: shown, url_password: password });
      // To another host, the mask is refused: the password is not sent where it was not given for.
      const problem = expectProblem(
        await h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload: { url: shown.replace('127.0.0.1', '127.0.0.9') } }),
        400,
        'validation',
      );
      expect(problem.errors?.map((e) => e.field)).toContain('url');
      expect(await stored()).toEqual({ url: shown, url_password: password });

      await commands.execute({ type: 'RegisterCustomer', name: 'Basic auth', email: `ba-${randomUUID()}@example.com` }, ctx());
      const [first] = await eventually(
        () => r.accepted().length > 0 && r.accepted(),
        30_000,
        () => 'a delivery',
      );
      expect(first!.authorization).toBe(`Basic ${Buffer.from(`hooks:${password}`).toString('base64')}`);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  }, 60_000);

  it('refuses a URL whose password has a malformed percent escape (400 naming url); one stored before is a failed attempt, not a thrown error', async () => {
    const problem = expectProblem(
      await h.app.inject({
        method: 'POST',
        url: '/webhooks',
        headers: h.auth('admin'),
        payload: { url: 'https://hooks:50%zz@example.com/hook', events: ['*'] },
      }),
      400,
      'validation',
    );
    expect(problem.errors?.map((e) => e.field)).toEqual(['url']);
    expect(problem.errors?.[0]?.message).toContain('%25');
    const r = await receiver();
    const client = new WebhookClient(createDestinationGuard([parseNetwork('127.0.0.0/8')!]));
    try {
      const answer = await client.post(`http://hooks:50%zz@127.0.0.1:${r.port}/hook`, '{}', {}, 5_000, new AbortController().signal);
      expect(answer).toMatchObject({ ok: false, status: null, error: expect.stringContaining('URI malformed') });
      expect(r.requests).toHaveLength(0);
    } finally {
      client.close();
    }
  });

  it('counts a 2xx as delivered even when its body is huge, never ends or breaks off, and does not send it again', async () => {
    // Raw receivers: each answers 200 at once, then misbehaves in its body. Every request comes on a connection of its own (the body cuts it).
    const answers: Record<string, (socket: Socket) => void> = {
      huge: (socket) => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n');
        const chunk = Buffer.alloc(64 * 1024, 120);
        const pump = () => {
          while (!socket.destroyed && socket.write(chunk));
          if (!socket.destroyed) socket.once('drain', pump);
        };
        pump();
      },
      endless: (socket) => {
        socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
        const timer = setInterval(() => socket.write('1\r\nx\r\n'), 100);
        socket.on('close', () => clearInterval(timer));
      },
      broken: (socket) => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc');
        setTimeout(() => socket.destroy(), 50);
      },
    };
    const requests: Record<string, number> = {};
    const servers = await Promise.all(
      Object.entries(answers).map(async ([name, answer]) => {
        requests[name] = 0;
        const server = createServer((socket) => {
          socket.on('error', () => undefined);
          socket.once('data', () => {
            requests[name]!++;
            answer(socket);
          });
        });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        return { name, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` };
      }),
    );
    const ids = await Promise.all(servers.map(async (s) => ({ name: s.name, id: (await subscribe({ url: s.url, events: ['CustomerRegistered'] })).id })));
    const publishers = await startPublishers({ timeoutMs: 1_000, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 60_000 });
    try {
      for (let i = 0; i < 2; i++) await commands.execute({ type: 'RegisterCustomer', name: `Body ${i}`, email: `body-${randomUUID()}@example.com` }, ctx());
      for (const { name, id } of ids) {
        const view = await eventually(
          async () => {
            const v = await webhook(id);
            return v.delivered >= 2 && v;
          },
          20_000,
          () => `${name}: ${requests[name]} requests, no 2 deliveries`,
        );
        expect(view.failures, name).toBe(0);
        expect(requests[name], name).toBe(2);
      }
    } finally {
      await publishers.stop();
      for (const { id } of ids) await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
      for (const { server } of servers) server.close();
    }
  }, 60_000);

  it('takes the status of an attempt without waiting out a stalled body, says where a redirect pointed and what a network error means', async () => {
    // A 200 whose body stalls held each delivery for the whole attempt bound (6-10 s), the subscription
    // falling behind with nothing logged; a 302 or an ECONNREFUSED was recorded as a bare code.
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', (request) => {
        if (request.toString().startsWith('POST /moved')) socket.end('HTTP/1.1 302 Found\r\nlocation: https://hooks.example/new\r\ncontent-length: 0\r\n\r\n');
        else socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc'); // and nothing more
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const client = new WebhookClient(createDestinationGuard([parseNetwork('127.0.0.0/8')!]));
    try {
      const started = Date.now();
      expect(await client.post(`http://127.0.0.1:${port}/hook`, '{}', {}, 10_000, new AbortController().signal)).toMatchObject({ ok: true, status: 200 });
      expect(Date.now() - started).toBeLessThan(3_000);
      const moved = await client.post(`http://127.0.0.1:${port}/moved`, '{}', {}, 10_000, new AbortController().signal);
      expect(moved).toMatchObject({ ok: false, status: 302 });
      expect(moved.error).toContain('a redirect to https://hooks.example/new, which deliveries do not follow');
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const closedPort = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const refused = await client.post(`http://127.0.0.1:${closedPort}/hook`, '{}', {}, 10_000, new AbortController().signal);
      expect(refused.error).toBe('ECONNREFUSED: nothing listens at that address and port');
    } finally {
      client.close();
      server.close();
    }
    // A Retry-After too long for a 32-bit count was read as none (so the 1 s back-off); the loop caps it.
    expect(retryAfterMs('99999999999')).toBe(99_999_999_999_000);
    expect(retryAfterMs('120')).toBe(120_000);
  });

  it('waits as long as a receiver asks with Retry-After (seconds or an HTTP date), never longer than the back-off cap', async () => {
    const r = await receiver((n) =>
      n === 0
        ? { status: 429, headers: { 'retry-after': '2' } }
        : n === 1
          ? { status: 503, headers: { 'retry-after': new Date(Date.now() + 2_500).toUTCString() } }
          : n === 2
            ? { status: 429, headers: { 'retry-after': '3600' } }
            : { status: 200 },
    );
    const { id } = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    const publishers = await startPublishers({ timeoutMs: 2_000, firstRetryMs: 50, maxRetryMs: 3_000, retryForMs: 60_000 });
    try {
      await commands.execute({ type: 'RegisterCustomer', name: 'Rate limited', email: `rl-${randomUUID()}@example.com` }, ctx());
      await eventually(
        () => r.accepted().length === 1,
        30_000,
        () => `requests ${r.requests.map((q) => q.answered).join(',')}`,
      );
      const gaps = r.requests.slice(1).map((q, i) => q.at - r.requests[i]!.at);
      // Without Retry-After these would be the 50-200 ms back-off.
      expect(gaps[0]).toBeGreaterThanOrEqual(1_900);
      expect(gaps[1]).toBeGreaterThanOrEqual(1_400);
      // An hour asked for, the cap (3 s) given.
      expect(gaps[2]).toBeGreaterThanOrEqual(2_900);
      expect(gaps[2]).toBeLessThan(10_000);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  }, 60_000);

  /** The attempt numbers of a subscription's delivery log, once it holds `count` of them. */
  const attemptsLogged = (id: string, count: number) =>
    eventually(
      async () => {
        const items = json(await h.app.inject({ method: 'GET', url: `/webhooks/${id}/deliveries?limit=10`, headers: h.auth('admin') })).items as {
          attempt: number;
        }[];
        return items.length >= count && items.map((d) => d.attempt).sort();
      },
      10_000,
      () => `${count} attempts logged`,
    );

  it("keeps a retry's count, first failure and back-off through a change of the subscription that leaves its address (a description, a rotated secret)", async () => {
    // Found with a description edited while a 503 asked for 20 s: the event went out again at once,
    // counted as attempt 1, and a subscription edited now and then never ran out of retries.
    const r = await receiver((n) => (n < 2 ? { status: 503, headers: { 'retry-after': '2' } } : { status: 200 }));
    const sub = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    const publishers = await startPublishers({ timeoutMs: 2_000, firstRetryMs: 50, maxRetryMs: 3_000, retryForMs: 60_000 });
    try {
      await commands.execute({ type: 'RegisterCustomer', name: 'Edited while retrying', email: `edit-${randomUUID()}@example.com` }, ctx());
      await eventually(
        () => r.requests.length === 1,
        30_000,
        () => 'a first attempt',
      );
      const change = (payload: object, url = `/webhooks/${sub.id}`, method: 'PATCH' | 'POST' = 'PATCH') =>
        h.app.inject({ method, url, headers: h.auth('admin'), payload });
      expect((await change({ description: 'edited while retrying' })).statusCode).toBe(200);
      await eventually(
        () => r.requests.length === 2,
        30_000,
        () => 'a second attempt',
      );
      expect((await change({ keepPreviousSeconds: 0 }, `/webhooks/${sub.id}/rotate-secret`, 'POST')).statusCode).toBe(200);
      await eventually(
        () => r.accepted().length === 1,
        30_000,
        () => `requests ${r.requests.map((q) => q.answered).join(',')}`,
      );
      const gaps = r.requests.slice(1).map((q, i) => q.at - r.requests[i]!.at);
      // Restarted by the changes, each would have come within milliseconds.
      expect(gaps[0]).toBeGreaterThanOrEqual(1_900);
      expect(gaps[1]).toBeGreaterThanOrEqual(1_900);
      expect(r.requests).toHaveLength(3);
      // The success is logged with the checkpoint, a moment after the receiver answered.
      expect(await attemptsLogged(sub.id, 3)).toEqual([1, 2, 3]);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 60_000);

  it('carries a retry through a restart of the publishers: its back-off waited out, its attempts counted on', async () => {
    // A restart started the series over: attempt 1, at once, the hour's clock reset.
    const r = await receiver((n) => (n < 1 ? { status: 503, headers: { 'retry-after': '3' } } : { status: 200 }));
    const sub = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    const policy = { timeoutMs: 2_000, firstRetryMs: 50, maxRetryMs: 5_000, retryForMs: 60_000 };
    let publishers = await startPublishers(policy);
    try {
      await commands.execute({ type: 'RegisterCustomer', name: 'Restarted while retrying', email: `restart-${randomUUID()}@example.com` }, ctx());
      await eventually(
        () => r.requests.length === 1,
        30_000,
        () => 'a first attempt',
      );
      await publishers.stop();
      publishers = await startPublishers(policy);
      await eventually(
        () => r.accepted().length === 1,
        30_000,
        () => `requests ${r.requests.map((q) => q.answered).join(',')}`,
      );
      expect(r.requests).toHaveLength(2);
      expect(r.requests[1]!.at - r.requests[0]!.at).toBeGreaterThanOrEqual(2_900);
      expect(await attemptsLogged(sub.id, 2)).toEqual([1, 2]);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 60_000);

  it('never connects where the operator has not allowed: a subscription to a loopback name reaches nobody, and its state says why', async () => {
    const r = await receiver();
    // Created where loopback is allowed (this API's configuration), delivered by publishers that allow nothing private.
    const { id } = await subscribe({ url: `http://localhost:${r.port}/hook`, events: ['*'] });
    const publishers = await startPublishers({ timeoutMs: 800, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 60_000 }, createDestinationGuard());
    try {
      await registerWithPurchase(9_100);
      const failed = await eventually(
        async () => {
          const v = await webhook(id);
          return v.failures >= 2 && v;
        },
        10_000,
        () => 'two failed attempts',
      );
      expect(failed.lastError).toMatch(/^127\.0\.0\.1 is a loopback address: .*CRM_WEBHOOK_ALLOW_NETWORKS/);
      expect(failed.delivered).toBe(0);
      expect(r.requests).toEqual([]);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  });

  it('signs with the new and the replaced secret after a rotation until the replaced one expires; a rotation that keeps none signs with the new one alone', async () => {
    const r = await receiver();
    const sub = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    const publishers = await startPublishers({ timeoutMs: 2_000, firstRetryMs: 50, maxRetryMs: 200 });
    const rotate = async (body?: Record<string, unknown>) => {
      const res = await h.app.inject({
        method: 'POST',
        url: `/webhooks/${sub.id}/rotate-secret`,
        headers: h.auth('admin'),
        ...(body ? { payload: body } : {}),
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      return json<{ id: string; secret: string; previousSecretExpiresAt: string | null }>(res);
    };
    /** The delivery of a new customer's registration. */
    const delivered = async () => {
      const { id } = await commands.execute({ type: 'RegisterCustomer', name: 'Rotation', email: `rotation-${randomUUID()}@example.com` }, ctx());
      return eventually(
        () => r.accepted().find((a) => (JSON.parse(a.body) as { aggregate: { id: string } }).aggregate.id === id),
        30_000,
        () => `the registration of ${id} delivered`,
      );
    };
    try {
      const before = await delivered();
      expect(before.signature.split(' ')).toHaveLength(1);
      expect(verifySignature(sub.secret, before)).toBe(true);

      const started = Date.now();
      const rotated = await rotate({ keepPreviousSeconds: 3_600 });
      expect(rotated.secret).toMatch(/^whsec_/);
      expect(rotated.secret).not.toBe(sub.secret);
      const until = Date.parse(rotated.previousSecretExpiresAt!);
      expect(until).toBeGreaterThanOrEqual(started + 3_590_000);
      expect(until).toBeLessThanOrEqual(Date.now() + 3_610_000);
      const view = await webhook(sub.id);
      expect(view.previousSecretExpiresAt).toBe(rotated.previousSecretExpiresAt);
      expect(JSON.stringify(view)).not.toContain(rotated.secret.slice(6));
      // Both signatures, the new one first: a receiver holding either secret accepts the delivery.
      const during = await delivered();
      expect(during.signature.split(' ')).toHaveLength(2);
      expect(verifySignature(rotated.secret, { ...during, signature: during.signature.split(' ')[0]! })).toBe(true);
      expect(verifySignature(sub.secret, { ...during, signature: during.signature.split(' ')[1]! })).toBe(true);
      // Rotated again in that hour (a retried request): refused, since one replaced secret is kept and the
      // first one would stop before the time its receiver was promised.
      const again = await h.app.inject({ method: 'POST', url: `/webhooks/${sub.id}/rotate-secret`, headers: h.auth('admin'), payload: {} });
      const refused = expectProblem(again, 409, 'invalid-state');
      expect(refused).toMatchObject({ code: 'webhook.rotation_in_grace', details: { previousSecretExpiresAt: new Date(until).toISOString() } });
      const still = await delivered();
      expect(verifySignature(sub.secret, { ...still, signature: still.signature.split(' ')[1]! })).toBe(true);

      // The hour has passed: the replaced secret signs nothing more.
      await sql`UPDATE ${sql.table(`${h.schemas.events}.webhook_subscriptions`)} SET previous_secret_expires_at = now() - interval '1 second' WHERE id = ${sub.id}`.execute(
        h.database.db,
      );
      const after = await delivered();
      expect(after.signature.split(' ')).toHaveLength(1);
      expect(verifySignature(rotated.secret, after)).toBe(true);
      expect(verifySignature(sub.secret, after)).toBe(false);
      expect((await webhook(sub.id)).previousSecretExpiresAt).toBeNull();
      // Erased from the table once past its time.
      const { rows } = await sql<{ previous_secret: string | null }>`
        SELECT previous_secret FROM ${sql.table(`${h.schemas.events}.webhook_subscriptions`)} WHERE id = ${sub.id}`.execute(h.database.db);
      expect(rows[0]?.previous_secret).toBeNull();

      // A leaked secret: replaced, and never used again.
      const leaked = await rotate({ keepPreviousSeconds: 0 });
      expect(leaked.previousSecretExpiresAt).toBeNull();
      const next = await delivered();
      expect(next.signature.split(' ')).toHaveLength(1);
      expect(verifySignature(leaked.secret, next)).toBe(true);
      expect(verifySignature(rotated.secret, next)).toBe(false);
      // Without a body, the replaced secret signs for one more day.
      const daily = await rotate();
      expect(Date.parse(daily.previousSecretExpiresAt!) - Date.now()).toBeGreaterThan(86_390_000);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 90_000);

  it('while its receiver answers 500, shows the subscription as retrying and logs it once, URL without credentials; running again and logged once when a delivery succeeds', async () => {
    let failing = true;
    const r = await receiver(() => (failing ? { status: 500 } : { status: 200 }));
    const password = `pw-${randomUUID()}`;
    const sub = await subscribe({ url: `http://hookuser:${password}@127.0.0.1:${r.port}/hook`, events: ['CustomerRegistered'] });
    const lines: { message: string; details: Record<string, unknown> | undefined }[] = [];
    const logged = (message: string) => lines.filter((l) => l.message === message);
    // An hour of retries: the subscription is retrying, never paused, within the test.
    const publishers = await startPublishers({ firstRetryMs: 50, maxRetryMs: 200, retryForMs: 3_600_000 }, undefined, (message, details) =>
      lines.push({ message, details }),
    );
    try {
      await commands.execute({ type: 'RegisterCustomer', name: 'Failing receiver', email: `fr-${randomUUID()}@example.com` }, ctx());
      // Several failed attempts, and the state an operator reads says so (not `running`).
      const retrying = await eventually(
        async () => {
          const v = await webhook(sub.id);
          return r.requests.length >= 4 && v.state === 'retrying' && v;
        },
        60_000,
        () => `${r.requests.length} attempts; log: ${JSON.stringify(lines)}`,
      );
      expect(retrying).toMatchObject({ lastError: 'HTTP 500', lastStatus: 500, delivered: 0 });
      const ready = json(await h.app.inject({ method: 'GET', url: '/ready' }));
      expect(ready.publishers.find((p: any) => p.name === `webhook:${sub.id}`)).toMatchObject({ state: 'retrying' });
      const metrics = (await h.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toMatch(new RegExp(`crm_publisher_failing\\{publisher="webhook:${sub.id}",kind="webhook"\\} 1`));
      expect(metrics).toContain(`crm_publisher_state{publisher="webhook:${sub.id}",kind="webhook",state="retrying"} 1`);
      // One line for the whole outage, not one per retry.
      expect(logged('webhook deliveries failing')).toEqual([
        {
          message: 'webhook deliveries failing',
          details: { subscription: sub.id, url: `http://127.0.0.1:${r.port}/hook`, status: 500, error: 'HTTP 500' },
        },
      ]);

      failing = false;
      await eventually(
        () => logged('webhook deliveries succeeding again').length > 0,
        60_000,
        () => `the recovery logged: ${JSON.stringify(lines)}`,
      );
      await eventually(
        async () => (await webhook(sub.id)).state === 'running',
        30_000,
        () => 'state running again',
      );
      expect(r.accepted()).toHaveLength(1);
      const failed = r.requests.filter((q) => q.answered === 500).length;
      expect(failed).toBeGreaterThanOrEqual(4);
      expect(logged('webhook deliveries failing')).toHaveLength(1);
      const recovered = logged('webhook deliveries succeeding again');
      expect(recovered).toHaveLength(1);
      expect(recovered[0]!.details).toMatchObject({ subscription: sub.id, failedAttempts: failed, lastError: 'HTTP 500' });
      expect(recovered[0]!.details?.failedForSeconds).toEqual(expect.any(Number));
      // Neither the password nor the user (nor the mask standing for them) reaches the log.
      const text = JSON.stringify(lines);
      expect(text).not.toContain(password);
      expect(text).not.toContain('hookuser');
      expect(text).not.toContain('***');
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 120_000);

  it('logs a failing receiver by scheme, host, port and path, without the token in its path or query', async () => {
    const r = await receiver(() => ({ status: 500 }));
    // A Slack-style URL: the last path segment is the credential, and another one rides in the query.
    const pathToken = `Ab3${randomUUID().replaceAll('-', '')}`;
    const queryToken = `qt-${randomUUID()}`;
    const target = `/services/T000/B000/${pathToken}?token=${queryToken}&channel=crm`;
    const sub = await subscribe({ url: `http://127.0.0.1:${r.port}${target}`, events: ['CustomerRegistered'] });
    const lines: { message: string; details: Record<string, unknown> | undefined }[] = [];
    const publishers = await startPublishers({ firstRetryMs: 50, maxRetryMs: 200, retryForMs: 3_600_000 }, undefined, (message, details) =>
      lines.push({ message, details }),
    );
    try {
      await commands.execute({ type: 'RegisterCustomer', name: 'Token receiver', email: `tr-${randomUUID()}@example.com` }, ctx());
      const failing = await eventually(
        () => lines.find((l) => l.message === 'webhook deliveries failing'),
        60_000,
        () => `${r.requests.length} attempts; log: ${JSON.stringify(lines)}`,
      );
      expect(failing.details).toEqual({
        subscription: sub.id,
        url: `http://127.0.0.1:${r.port}/services/T000/B000/***?token=***&channel=***`,
        status: 500,
        error: 'HTTP 500',
      });
      // Deliveries still go to the URL as given, and the API still shows it whole to the admin.
      expect(r.requests[0]?.path).toBe(target);
      expect((await webhook(sub.id)).url).toBe(`http://127.0.0.1:${r.port}${target}`);
      const text = JSON.stringify(lines);
      expect(text).not.toContain(pathToken);
      expect(text).not.toContain(queryToken);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 120_000);

  it('pauses a subscription at once when its receiver answers 410 Gone, and resumes when enabled again', async () => {
    let gone = true;
    const r = await receiver(() => (gone ? { status: 410 } : { status: 200 }));
    const start = await newestPosition(h.store);
    const sub = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    // An hour of retries: only the 410 can pause it within the test.
    const publishers = await startPublishers({ timeoutMs: 800, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 3_600_000 });
    try {
      await registerWithPurchase(110);
      const failing = await untilFailing(sub.id, 30_000);
      expect(failing.lastError).toBe('HTTP 410: the receiver says this endpoint is gone');
      expect(BigInt(failing.position)).toBe(start);
      await new Promise((res) => setTimeout(res, 500));
      expect(r.requests.length).toBe(1);

      gone = false;
      await h.app.inject({ method: 'PATCH', url: `/webhooks/${sub.id}`, headers: h.auth('admin'), payload: { enabled: true } });
      const expected = (await expectedEvents(['CustomerRegistered'], start)).map((e) => e.id);
      await eventually(
        () => expected.every((id) => r.accepted().some((a) => a.id === id)),
        30_000,
        () => `accepted ${r.accepted().length}`,
      );
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 90_000);

  it('pauses a subscription as failing when retries run out, keeps its place, and resumes when enabled again', async () => {
    let healthy = false;
    const r = await receiver(() => (healthy ? { status: 200 } : { status: 503 }));
    const start = await newestPosition(h.store);
    const sub = await subscribe({ url: r.url, events: ['CustomerRegistered'] });
    const publishers = await startPublishers({ timeoutMs: 800, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 1_000 });
    try {
      await registerWithPurchase(100);
      await registerWithPurchase(101);
      const failing = await untilFailing(sub.id, 60_000);
      expect(failing.lastError).toBe('HTTP 503');
      expect(failing.delivered).toBe(0);
      expect(BigInt(failing.position)).toBe(start);
      const attempts = r.requests.length;
      expect(attempts).toBeGreaterThan(2);
      // Paused: no more attempts.
      await new Promise((res) => setTimeout(res, 500));
      expect(r.requests.length).toBe(attempts);

      healthy = true;
      const resumed = await h.app.inject({ method: 'PATCH', url: `/webhooks/${sub.id}`, headers: h.auth('admin'), payload: { enabled: true } });
      expect(json(resumed).state).toBe('running');
      const expected = (await expectedEvents(['CustomerRegistered'], start)).map((e) => e.id);
      expect(expected.length).toBe(2);
      await eventually(
        () => expected.every((id) => r.accepted().some((a) => a.id === id)),
        60_000,
        () => `accepted ${r.accepted().length}`,
      );
      expect(r.accepted().map((a) => a.id)).toEqual(expected);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${sub.id}`, headers: h.auth('admin') });
    }
  }, 180_000);

  it('after a forget, deliveries (replays included) carry no plaintext of the customer; analyst-level subscriptions see personal data masked', async () => {
    const r = await receiver();
    const analystReceiver = await receiver();
    const start = await newestPosition(h.store);
    const admin = await subscribe({ url: r.url, events: ['Customer*', 'Feedback*'], role: 'admin' });
    const analyst = await subscribe({ url: analystReceiver.url, events: ['Customer*'] });
    const publishers = await startPublishers({ timeoutMs: 2_000, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 60_000 });
    try {
      const email = `zelda-${randomUUID()}@example.com`;
      const { id } = await commands.execute({ type: 'RegisterCustomer', name: 'Zelda Plaintext', email, phone: '+44 20 7946 0999' }, ctx());
      await eventually(
        () => r.accepted().length >= 1 && analystReceiver.accepted().length >= 1,
        60_000,
        () => 'first deliveries',
      );
      // Before the forget the admin-level receiver sees the person; the analyst-level one never does.
      expect(r.accepted()[0]!.body).toContain('Zelda Plaintext');
      expect(JSON.parse(analystReceiver.accepted()[0]!.body).data).toMatchObject({ name: '[masked]', email: '[masked]', phone: '[masked]' });

      // The admin-level subscription falls behind (the publishers' key cache still holds the customer's
      // key, and no other loop decodes the forget meanwhile), the customer changes their name and is
      // forgotten, then the subscription catches up.
      expect((await h.app.inject({ method: 'DELETE', url: `/webhooks/${analyst.id}`, headers: h.auth('admin') })).statusCode).toBe(204);
      // Its loop stops at the next reconcile (every 100 ms here); were it still running, it would only make this check weaker.
      await new Promise((res) => setTimeout(res, 500));
      await h.app.inject({ method: 'PATCH', url: `/webhooks/${admin.id}`, headers: h.auth('admin'), payload: { enabled: false } });
      await eventually(
        async () => (await webhook(admin.id)).state === 'disabled',
        10_000,
        () => 'disabled',
      );
      await commands.execute({ type: 'ChangeCustomerDetails', customerId: id, name: 'Zelda Newname' }, ctx());
      await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
      await h.app.inject({ method: 'PATCH', url: `/webhooks/${admin.id}`, headers: h.auth('admin'), payload: { enabled: true } });
      await eventually(
        () => r.accepted().some((a) => JSON.parse(a.body).type === 'CustomerForgotten'),
        60_000,
        () => 'forget delivered',
      );
      const changed = r
        .accepted()
        .map((a) => JSON.parse(a.body))
        .find((e) => e.type === 'CustomerContactDetailsChanged');
      expect(changed.data.name).toBe('[erased]');
      expect(r.requests.some((a) => a.body.includes('Newname'))).toBe(false);
      for (const a of analystReceiver.requests) {
        expect(a.body).not.toContain('Zelda');
        expect(a.body).not.toContain(email);
      }
      const before = r.requests.length;
      // A replay after the forget delivers the same events again: erased now.
      const replay = await h.app.inject({
        method: 'POST',
        url: `/webhooks/${admin.id}/replay`,
        headers: h.auth('admin'),
        payload: { fromPosition: (start + 1n).toString() },
      });
      expect(replay.statusCode, replay.body).toBe(202);
      await eventually(
        () => r.requests.length >= before + 3,
        60_000,
        () => `replayed ${r.requests.length - before}`,
      );
      const later = r.requests.slice(before);
      for (const a of later) {
        expect(a.body).not.toContain('Zelda');
        expect(a.body).not.toContain(email);
        expect(a.body).not.toContain('7946 0999');
      }
      const registered = later.map((a) => JSON.parse(a.body)).find((e) => e.type === 'CustomerRegistered');
      expect(registered.data).toMatchObject({ name: '[erased]', email: '[erased]', phone: '[erased]' });
    } finally {
      await publishers.stop();
      for (const s of [admin, analyst]) await h.app.inject({ method: 'DELETE', url: `/webhooks/${s.id}`, headers: h.auth('admin') });
    }
  }, 180_000);

  it('a forget made while a page is being delivered (a slow receiver) erases the events of that page still to go', async () => {
    // The first delivery takes 1.5 s to answer; the customer is forgotten meanwhile.
    const r = await receiver((n) => (n === 0 ? { status: 200, delayMs: 1_500 } : { status: 200 }));
    const admin = await subscribe({ url: r.url, events: ['Customer*', 'Feedback*'], role: 'admin' });
    const email = `yara-${randomUUID()}@example.com`;
    const { id } = await commands.execute({ type: 'RegisterCustomer', name: 'Yara Slow', email }, ctx());
    for (let i = 1; i <= 3; i++)
      await commands.execute(
        { type: 'SubmitFeedback', customerId: id, kind: 'complaint', channel: 'email', subject: `Yara private ${i}`, body: `Yara body ${i}` },
        ctx(),
      );
    // Every event above is in the first page the subscription reads.
    const publishers = await startPublishers({ timeoutMs: 5_000, firstRetryMs: 50, maxRetryMs: 200, retryForMs: 60_000 });
    try {
      await eventually(
        () => r.requests.length >= 1,
        60_000,
        () => 'first delivery under way',
      );
      expect(r.requests[0]!.body).toContain('Yara Slow');
      await commands.execute({ type: 'ForgetCustomer', customerId: id }, ctx());
      await eventually(
        () => r.accepted().some((a) => JSON.parse(a.body).type === 'CustomerForgotten'),
        60_000,
        () => 'forget delivered',
      );
      const feedback = r
        .accepted()
        .map((a) => JSON.parse(a.body))
        .filter((e) => e.type === 'FeedbackSubmitted');
      expect(feedback.map((e) => [e.data.subject, e.data.body])).toEqual([
        ['[erased]', '[erased]'],
        ['[erased]', '[erased]'],
        ['[erased]', '[erased]'],
      ]);
      expect(r.requests.slice(1).some((a) => a.body.includes('Yara'))).toBe(false);
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${admin.id}`, headers: h.auth('admin') });
    }
  }, 120_000);
});
