import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandContext, CrmCommands } from '../../commands/index.ts';
import { rewrapEmailLookupKey } from '../../eventstore/email-index.ts';
import { MasterKeyMismatch } from '../../eventstore/errors.ts';
import { recordMasterKey, rewrapMasterKey } from '../../eventstore/master-key.ts';
import { createPersonalData, rewrapDataKeys } from '../../eventstore/personal-data.ts';
import { migrateEventStore } from '../../eventstore/postgres/migrations.ts';
import { createDestinationGuard, parseNetwork } from '../../integration/destinations.ts';
import { rewrapWebhookSecrets } from '../../integration/index.ts';
import { IntegrationPublishers } from '../../integration/publishers.ts';
import { integrationTables } from '../../integration/tables.ts';
import { expectProblem, json, startApi, type ApiHarness } from '../api/support.ts';
import { eventually, Receiver } from './support.ts';

/**
 * A password in a webhook URL is kept apart from the URL, sealed with the master key like the signing
 * secret, on the real PostgreSQL, and deliveries to a real local receiver carry it.
 */
const firstKey = randomBytes(32);
const secondKey = randomBytes(32);
let h: ApiHarness;
let commands: CrmCommands;
const receivers: Receiver[] = [];

beforeAll(async () => {
  // The receivers listen on 127.0.0.1: loopback is allowed here as an operator allows an internal network.
  h = await startApi('webhookpw', {}, { CRM_MASTER_KEY: firstKey.toString('base64'), CRM_WEBHOOK_ALLOW_NETWORKS: '127.0.0.0/8' });
  commands = h.deps.commands as CrmCommands;
});
afterAll(async () => {
  for (const r of receivers) await r.down();
  await h?.close();
});

const ctx = (): CommandContext => ({ actor: { userId: 'alice', roles: ['admin'] }, correlationId: randomUUID() });
const loopback = () => createDestinationGuard([parseNetwork('127.0.0.0/8')!]);

const receiver = async () => {
  const r = new Receiver();
  await r.up();
  receivers.push(r);
  return r;
};

/** Publishers as a worker runs them with `masterKey` configured. */
const startPublishers = async (masterKey: Uint8Array) => {
  const publishers = new IntegrationPublishers({
    destinations: loopback(),
    db: h.database.db,
    schema: h.schemas.events,
    store: h.store,
    personalData: await createPersonalData(h.database.db, { schema: h.schemas.events, masterKey }),
    masterKey,
    policy: { firstRetryMs: 50 },
    reconcileEveryMs: 100,
  });
  await publishers.start();
  return publishers;
};

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** The subscription's row as a reader of the database (or of a backup) sees it. */
const storedRow = async (id: string, schema = h.schemas.events) => {
  const { rows } = await sql<Record<string, unknown> & { url: string; url_password: string | null }>`
    SELECT * FROM ${sql.table(`${schema}.webhook_subscriptions`)} WHERE id = ${id}`.execute(h.database.db);
  return rows[0]!;
};

const post = (payload: Record<string, unknown>) => h.app.inject({ method: 'POST', url: '/webhooks', headers: h.auth('admin'), payload });
const patch = (id: string, payload: Record<string, unknown>) => h.app.inject({ method: 'PATCH', url: `/webhooks/${id}`, headers: h.auth('admin'), payload });
const subscribe = async (url: string) => {
  const res = await post({ url, events: ['CustomerRegistered'] });
  expect(res.statusCode, res.body).toBe(201);
  return json<{ id: string; secret: string }>(res).id;
};

/** Registers a customer and waits for the receiver to accept one more delivery; returns that delivery. */
const nextDelivery = async (r: Receiver) => {
  const before = r.accepted().length;
  await commands.execute({ type: 'RegisterCustomer', name: 'Basic auth', email: `ba-${randomUUID()}@example.com` }, ctx());
  return eventually(
    () => r.accepted()[before],
    30_000,
    () => `delivery ${before + 1} (${r.requests.length} requests so far)`,
  );
};

describe('a password in a webhook URL', () => {
  it('is sealed apart from the URL: the row holds no plain password, the API shows it masked, and a delivery to a real receiver carries it as Basic authentication', async () => {
    const r = await receiver();
    // Characters the URL must percent-encode: the receiver gets them decoded.
    const password = `pw-${randomUUID()}-é/@:`;
    const id = await subscribe(`http://hooks:${encodeURIComponent(password)}@127.0.0.1:${r.port}/hook`);
    const publishers = await startPublishers(firstKey);
    try {
      const row = await storedRow(id);
      expect(JSON.stringify(row)).not.toContain(encodeURIComponent(password));
      expect(JSON.stringify(row)).not.toContain('pw-');
      expect(row.url).toBe(`http://hooks:***@127.0.0.1:${r.port}/hook`);
      expect(row.url_password).toMatch(/^mk1:/);
      expect(json(await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') })).url).toBe(row.url);

      const delivered = await nextDelivery(r);
      expect(delivered.authorization).toBe(basic('hooks', password));
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  }, 60_000);

  it('is sealed again when the URL changes, kept for the URL sent back as shown to the same address and user, refused for another, and erased with a URL without one', async () => {
    const r = await receiver();
    const id = await subscribe(`http://hooks:first-pw@127.0.0.1:${r.port}/hook`);
    const tables = h.crm.integration.services.tables;
    const publishers = await startPublishers(firstKey);
    try {
      const sealedFirst = (await storedRow(id)).url_password;
      expect((await patch(id, { url: `http://hooks:second-pw@127.0.0.1:${r.port}/hook` })).statusCode).toBe(200);
      const changed = await storedRow(id);
      expect(changed.url).toBe(`http://hooks:***@127.0.0.1:${r.port}/hook`);
      expect(changed.url_password).toMatch(/^mk1:/);
      expect(changed.url_password).not.toBe(sealedFirst);
      expect(JSON.stringify(changed)).not.toContain('second-pw');
      expect((await nextDelivery(r)).authorization).toBe(basic('hooks', 'second-pw'));

      // A client that read the subscription sends its URL back as shown, another path on the same receiver.
      const shown = json<{ url: string }>(await h.app.inject({ method: 'GET', url: `/webhooks/${id}`, headers: h.auth('admin') })).url;
      expect(shown).toBe(`http://hooks:***@127.0.0.1:${r.port}/hook`);
      const kept = await patch(id, { url: shown.replace(/\/hook$/, '/other'), events: ['CustomerRegistered'] });
      expect(kept.statusCode, kept.body).toBe(200);
      expect(json(kept).url).toBe(`http://hooks:***@127.0.0.1:${r.port}/other`);
      expect(await tables.deliveryUrl(id)).toBe(`http://hooks:second-pw@127.0.0.1:${r.port}/other`);
      expect((await nextDelivery(r)).authorization).toBe(basic('hooks', 'second-pw'));

      // The stored password must not follow the subscription to another address or user (nor to plain http from https).
      const keptRow = await storedRow(id);
      for (const url of [
        `http://other:***@127.0.0.1:${r.port}/other`,
        `http://hooks:***@127.0.0.2:${r.port}/other`,
        `http://hooks:***@127.0.0.1:${r.port + 1}/other`,
        `https://hooks:***@127.0.0.1:${r.port}/other`,
      ]) {
        const problem = expectProblem(await patch(id, { url, description: 'changed' }), 400, 'validation');
        expect(problem.errors?.map((e) => e.field)).toEqual(['url']);
        expect(problem.errors?.[0]?.message).toContain('same scheme, host, port and user');
      }
      expect(await storedRow(id)).toEqual(keptRow);
      // A new subscription has no password to keep.
      expect(expectProblem(await post({ url: `http://hooks:***@127.0.0.1:${r.port}/hook`, events: ['*'] }), 400, 'validation').errors?.[0]?.field).toBe('url');

      expect((await patch(id, { url: `http://hooks@127.0.0.1:${r.port}/hook` })).statusCode).toBe(200);
      expect(await storedRow(id)).toMatchObject({ url: `http://hooks@127.0.0.1:${r.port}/hook`, url_password: null });
      // node:http sends a user without a password as "hooks:".
      expect((await nextDelivery(r)).authorization).toBe(basic('hooks', ''));
      const nothingToKeep = expectProblem(await patch(id, { url: `http://hooks:***@127.0.0.1:${r.port}/hook` }), 400, 'validation');
      expect(nothingToKeep.errors?.[0]?.message).toContain('no password is stored to keep');

      expect((await patch(id, { url: `http://127.0.0.1:${r.port}/hook` })).statusCode).toBe(200);
      expect((await nextDelivery(r)).authorization).toBeUndefined();
    } finally {
      await publishers.stop();
      await h.app.inject({ method: 'DELETE', url: `/webhooks/${id}`, headers: h.auth('admin') });
    }
  }, 120_000);
});

describe('URL passwords of a table made by an earlier version', () => {
  /** The subscriptions table as the version before kept it: URL passwords in the url column. */
  const oldTable = async (schema: string, rows: { url: string; secret?: string }[]) => {
    const db = h.database.db;
    await sql`CREATE SCHEMA ${sql.id(schema)}`.execute(db);
    await sql`CREATE TABLE ${sql.id(schema, 'webhook_subscriptions')} (id uuid PRIMARY KEY, url text NOT NULL, events text[] NOT NULL,
      description text, role text NOT NULL, secret text NOT NULL, enabled boolean NOT NULL DEFAULT true, generation integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
      previous_secret text, previous_secret_expires_at timestamptz)`.execute(db);
    const ids: string[] = [];
    for (const row of rows) {
      const id = randomUUID();
      ids.push(id);
      await sql`INSERT INTO ${sql.id(schema, 'webhook_subscriptions')} (id, url, events, role, secret)
        VALUES (${id}, ${row.url}, ${['*']}::text[], 'admin', ${row.secret ?? 'whsec_b2xk'})`.execute(db);
    }
    return ids;
  };
  const dropSchema = (schema: string) => sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(h.database.db);

  it('are moved out of the url column at start: sealed with the current master key (bare without one); a URL an earlier process writes later moves at the next start', async () => {
    const schema = `${h.schemas.events}_old_sealed`;
    const bareSchema = `${h.schemas.events}_old_bare`;
    const db = h.database.db;
    try {
      const [withPassword, without] = await oldTable(schema, [{ url: 'https://hooks:plain-pw@example.com/a' }, { url: 'https://example.com/b' }]);
      // The next start: the store's migrations give the table this version's columns.
      await migrateEventStore(db, schema, { engineTables: false });
      await recordMasterKey(schema, firstKey).execute(db);
      const tables = integrationTables(db, schema, firstKey);
      await tables.migrate();
      const moved = await storedRow(withPassword!, schema);
      expect(moved).toMatchObject({ url: 'https://hooks:***@example.com/a', url_password: expect.stringMatching(/^mk1:/) });
      expect(JSON.stringify(moved)).not.toContain('plain-pw');
      expect(await storedRow(without!, schema)).toMatchObject({ url: 'https://example.com/b', url_password: null });
      expect(await tables.deliveryUrl(withPassword!)).toBe('https://hooks:plain-pw@example.com/a');
      expect((await tables.getSubscription(withPassword!))?.url).toBe('https://hooks:***@example.com/a');
      // Started again: nothing to move, the sealed password stays as it is.
      await tables.migrate();
      expect(await storedRow(withPassword!, schema)).toEqual(moved);

      // A process of the earlier version, still running, changes the URL: the url column decides until the next start moves it.
      await sql`UPDATE ${sql.id(schema, 'webhook_subscriptions')} SET url = 'https://hooks:newer-pw@example.com/a' WHERE id = ${withPassword!}`.execute(db);
      expect(await tables.deliveryUrl(withPassword!)).toBe('https://hooks:newer-pw@example.com/a');
      await tables.migrate();
      const again = await storedRow(withPassword!, schema);
      expect(again.url).toBe('https://hooks:***@example.com/a');
      expect(again.url_password).toMatch(/^mk1:/);
      expect(await tables.deliveryUrl(withPassword!)).toBe('https://hooks:newer-pw@example.com/a');
      await sql`UPDATE ${sql.id(schema, 'webhook_subscriptions')} SET url = 'https://example.com/a' WHERE id = ${withPassword!}`.execute(db);
      await tables.migrate();
      expect(await storedRow(withPassword!, schema)).toMatchObject({ url: 'https://example.com/a', url_password: null });

      // Without a master key, as the signing secrets: apart from the URL, but bare until `crm master-key rewrap` seals it.
      const [bare] = await oldTable(bareSchema, [{ url: 'https://hooks:plain-pw@example.com/a' }]);
      await migrateEventStore(db, bareSchema, { engineTables: false });
      const bareTables = integrationTables(db, bareSchema);
      await bareTables.migrate();
      expect(await storedRow(bare!, bareSchema)).toMatchObject({ url: 'https://hooks:***@example.com/a', url_password: 'plain-pw' });
      expect(await bareTables.deliveryUrl(bare!)).toBe('https://hooks:plain-pw@example.com/a');
    } finally {
      await dropSchema(schema);
      await dropSchema(bareSchema);
    }
  });

  it('are sealed by crm master-key rewrap even before any process of this version started on the table', async () => {
    const schema = `${h.schemas.events}_old_rewrap`;
    const db = h.database.db;
    try {
      const [id] = await oldTable(schema, [{ url: 'https://hooks:plain-pw@example.com/a' }]);
      // What `crm master-key rewrap` runs first.
      await migrateEventStore(db, schema, { engineTables: false });
      const counts = await rewrapMasterKey(db, { schema, to: secondKey }, [rewrapWebhookSecrets]);
      expect(counts).toEqual([{ name: 'webhook secrets', count: 1 }]);
      const row = await storedRow(id!, schema);
      expect(row).toMatchObject({
        url: 'https://hooks:***@example.com/a',
        url_password: expect.stringMatching(/^mk1:/),
        secret: expect.stringMatching(/^mk1:/),
      });
      expect(JSON.stringify(row)).not.toContain('plain-pw');
      const tables = integrationTables(db, schema, secondKey);
      expect(await tables.deliveryUrl(id!)).toBe('https://hooks:plain-pw@example.com/a');
      expect(await tables.secretsOf(id!)).toEqual(['whsec_b2xk']);
    } finally {
      await dropSchema(schema);
    }
  });
});

// Last in the file: the rewrap replaces the master key the harness runs with.
describe('crm master-key rewrap', () => {
  it('rewraps the URL passwords with the other secrets: deliveries under the new key carry the password, the old key opens none', async () => {
    const r = await receiver();
    const id = await subscribe(`http://hooks:rewrapped-pw@127.0.0.1:${r.port}/hook`);
    const sealedBefore = (await storedRow(id)).url_password;
    // Recorded under the old key; delivered after the rewrap.
    await commands.execute({ type: 'RegisterCustomer', name: 'Before the rewrap', email: `br-${randomUUID()}@example.com` }, ctx());
    await rewrapMasterKey(h.database.db, { schema: h.schemas.events, from: firstKey, to: secondKey }, [
      rewrapDataKeys,
      rewrapEmailLookupKey,
      rewrapWebhookSecrets,
    ]);
    const after = await storedRow(id);
    expect(after.url).toBe(`http://hooks:***@127.0.0.1:${r.port}/hook`);
    expect(after.url_password).toMatch(/^mk1:/);
    expect(after.url_password).not.toBe(sealedBefore);
    await expect(integrationTables(h.database.db, h.schemas.events, firstKey).deliveryUrl(id)).rejects.toBeInstanceOf(MasterKeyMismatch);
    expect(await integrationTables(h.database.db, h.schemas.events, secondKey).deliveryUrl(id)).toBe(`http://hooks:rewrapped-pw@127.0.0.1:${r.port}/hook`);

    const publishers = await startPublishers(secondKey);
    try {
      const [delivered] = await eventually(
        () => r.accepted().length > 0 && r.accepted(),
        30_000,
        () => 'a delivery after the rewrap',
      );
      expect(delivered!.authorization).toBe(basic('hooks', 'rewrapped-pw'));
      expect(JSON.parse(delivered!.body).type).toBe('CustomerRegistered');
    } finally {
      await publishers.stop();
    }
  }, 60_000);
});
