import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCrm } from '../../runtime/crm.ts';
import { ConfigError, loadConfig } from '../../cli/config.ts';
import { MasterKeyMismatch } from '../../eventstore/errors.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm } from './support.ts';

/**
 * Data keys wrapped with a master key (CRM_MASTER_KEY / CRM_MASTER_KEY_FILE), checked at start, and
 * rotated with `crm master-key rewrap`, on the real PostgreSQL.
 */
const schemas = testSchemas('cli_master_key');
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  LOG_LEVEL: 'silent',
};
let folder: string;
const oldKey = randomBytes(32).toString('base64');
const newKey = randomBytes(32).toString('hex');
const customerId = randomUUID();
let subscription: string;
let signingSecret: string;

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-master-key-'));
  await writeFile(join(folder, 'old.key'), `${oldKey}\n`);
  await writeFile(join(folder, 'new.key'), `${newKey}\n`);
});

afterAll(async () => {
  await schemas.dropSchemas();
  if (folder) await rm(folder, { recursive: true, force: true });
});

const open = (extra: Record<string, string>) => openCrm(loadConfig({ ...env, ...extra }, folder));

const storedKeyLength = async (crm: Awaited<ReturnType<typeof open>>) => {
  const { rows } = await sql<{ n: number }>`
    SELECT length(data_key) AS n FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${customerId}`.execute(crm.database.db);
  return rows[0]?.n;
};

const register = (crm: Awaited<ReturnType<typeof open>>, id: string, email: string) =>
  crm.commands.execute(
    { type: 'RegisterCustomer', customerId: id, name: 'Someone', email },
    { actor: { userId: 'test', roles: ['admin'] }, correlationId: randomUUID() },
  );

/** The stored signing secrets of a subscription, as they sit in the table. */
const storedSecrets = async (crm: Awaited<ReturnType<typeof open>>, events: string, id: string) => {
  const { rows } = await sql<{ secret: string; previous_secret: string | null }>`
    SELECT secret, previous_secret FROM ${sql.table(`${events}.webhook_subscriptions`)} WHERE id = ${id}`.execute(crm.database.db);
  return rows[0]!;
};

const subscribe = async (crm: Awaited<ReturnType<typeof open>>, url = 'https://example.com/hook') => {
  await crm.integration.services.tables.migrate();
  return crm.integration.services.subscribe({ url, events: ['*'], description: null, role: 'admin' });
};

/** The stored URL and its password, as they sit in the table. */
const storedUrl = async (crm: Awaited<ReturnType<typeof open>>, events: string, id: string) => {
  const { rows } = await sql<{ url: string; url_password: string | null }>`
    SELECT url, url_password FROM ${sql.table(`${events}.webhook_subscriptions`)} WHERE id = ${id}`.execute(crm.database.db);
  return rows[0]!;
};

const readName = async (crm: Awaited<ReturnType<typeof open>>) => {
  const [event] = await crm.store.readStream(`customer-${customerId}`);
  return ((await crm.personalData.reveal(event!.type, event!.data)) as { name: string }).name;
};

describe('the master key', () => {
  it('is read from CRM_MASTER_KEY or a file, and refused when malformed, doubled or unreadable, without echoing it', () => {
    expect(loadConfig({ CRM_MASTER_KEY: oldKey }, folder).masterKey).toEqual(new Uint8Array(Buffer.from(oldKey, 'base64')));
    expect(loadConfig({ CRM_MASTER_KEY_FILE: 'new.key' }, folder).masterKey).toEqual(new Uint8Array(Buffer.from(newKey, 'hex')));
    expect(loadConfig({}, folder).masterKey).toBeUndefined();
    const refusal = (vars: Record<string, string>) => {
      try {
        loadConfig(vars, folder);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as ConfigError).problems;
      }
      throw new Error('accepted');
    };
    expect(refusal({ CRM_MASTER_KEY: 'too-short-secret' })).toEqual([{ variable: 'CRM_MASTER_KEY', message: expect.stringContaining('32-byte') }]);
    expect(JSON.stringify(refusal({ CRM_MASTER_KEY: 'too-short-secret' }))).not.toContain('too-short-secret');
    expect(refusal({ CRM_MASTER_KEY: oldKey, CRM_MASTER_KEY_FILE: 'new.key' })[0]!.variable).toBe('CRM_MASTER_KEY_FILE');
    expect(refusal({ CRM_MASTER_KEY_FILE: 'missing.key' })[0]!.message).toContain('cannot read');
  });

  it('wraps the data keys it creates, reads them back, and refuses to start without it or with another key', async () => {
    const crm = await open({ CRM_MASTER_KEY: oldKey });
    try {
      await crm.commands.execute(
        { type: 'RegisterCustomer', customerId, name: 'Ada Lovelace', email: 'ada@example.com' },
        {
          actor: { userId: 'test', roles: ['admin'] },
          correlationId: randomUUID(),
        },
      );
      expect(await storedKeyLength(crm)).toBe(60);
      expect(await readName(crm)).toBe('Ada Lovelace');
      // The webhook signing secret is sealed at rest too, and opens for the deliveries.
      const webhook = await subscribe(crm);
      subscription = webhook.id;
      signingSecret = webhook.secret;
      const stored = await storedSecrets(crm, schemas.events, webhook.id);
      expect(stored.secret).toMatch(/^mk1:/);
      expect(stored.secret).not.toContain(webhook.secret.slice('whsec_'.length));
      expect(await crm.integration.services.tables.secretsOf(webhook.id)).toEqual([webhook.secret]);
    } finally {
      await crm.close();
    }
    await expect(open({})).rejects.toBeInstanceOf(MasterKeyMismatch);
    await expect(open({ CRM_MASTER_KEY: randomBytes(32).toString('base64') })).rejects.toBeInstanceOf(MasterKeyMismatch);
  }, 60_000);

  it('crm master-key rewrap moves every key to a new master key; the old one then no longer opens the CRM', async () => {
    const generated = await runCrm(['master-key', 'generate'], { cwd: folder, env: {} });
    expect(generated.code).toBe(0);
    expect(Buffer.from(generated.stdout.trim(), 'base64')).toHaveLength(32);
    // A process still running with the old key while the rewrap happens.
    const stale = await open({ CRM_MASTER_KEY: oldKey });
    const sealedBefore = await storedSecrets(stale, schemas.events, subscription);
    try {
      const rewrap = await runCrm(['master-key', 'rewrap', '--new-key-file', 'new.key'], { cwd: folder, env: { ...env, CRM_MASTER_KEY_FILE: 'old.key' } });
      expect(rewrap.code, rewrap.stderr).toBe(0);
      expect(rewrap.stdout).toMatch(/Re-wrapped [1-9]\d* customer data key\(s\), the email lookup key and 1 webhook subscription/);
      // It can neither seal a secret the new key would not open, nor open those the rewrap sealed.
      await expect(subscribe(stale)).rejects.toBeInstanceOf(MasterKeyMismatch);
      await expect(stale.integration.services.rotateSecret(subscription, 0)).rejects.toBeInstanceOf(MasterKeyMismatch);
      await expect(stale.integration.services.tables.secretsOf(subscription)).rejects.toThrow(/crm master-key rewrap/);
      expect((await stale.integration.services.tables.listSubscriptions()).map((s) => s.id)).toEqual([subscription]);
    } finally {
      await stale.close();
    }
    await expect(open({ CRM_MASTER_KEY: oldKey })).rejects.toBeInstanceOf(MasterKeyMismatch);
    const crm = await open({ CRM_MASTER_KEY_FILE: 'new.key' });
    try {
      expect(await readName(crm)).toBe('Ada Lovelace');
      const sealedAfter = await storedSecrets(crm, schemas.events, subscription);
      expect(sealedAfter.secret).toMatch(/^mk1:/);
      expect(sealedAfter.secret).not.toBe(sealedBefore.secret);
      expect(await crm.integration.services.tables.secretsOf(subscription)).toEqual([signingSecret]);
      // A rotation keeps the previous secret sealed beside the new one.
      const rotated = await crm.integration.services.rotateSecret(subscription, 60);
      const both = await storedSecrets(crm, schemas.events, subscription);
      expect([both.secret, both.previous_secret]).toEqual([expect.stringMatching(/^mk1:/), sealedAfter.secret]);
      expect(await crm.integration.services.tables.secretsOf(subscription)).toEqual([rotated!.secret, signingSecret]);
      // The address index still knows Ada's address under the new key: nobody else may register it.
      expect(await crm.emailIndex.holder('ada@example.com')).toBe(customerId);
      await expect(register(crm, randomUUID(), 'ADA@example.com')).rejects.toMatchObject({ code: 'customer.email_taken' });
    } finally {
      await crm.close();
    }
    const refused = await runCrm(['serve'], { cwd: folder, env: { ...env, CRM_MASTER_KEY: oldKey, PORT: '0' } });
    expect(refused.code).toBe(78);
    expect(refused.stderr).toContain('does not unwrap');
  }, 120_000);
});

describe('a master key configured after the first start', () => {
  const bare = testSchemas('cli_master_key_bare');
  const bareEnv = { ...env, CRM_EVENTS_SCHEMA: bare.events, CRM_READ_SCHEMA: bare.read, CRM_REPORTING_SCHEMA: bare.reporting };
  const openBare = (extra: Record<string, string>) => openCrm(loadConfig({ ...bareEnv, ...extra }, folder));
  afterAll(() => bare.dropSchemas());

  it('crm master-key rewrap wraps what was stored bare: data keys, the email lookup key, webhook secrets and URL passwords; every claim still holds', async () => {
    const grace = randomUUID();
    let webhook: { id: string; secret: string };
    const before = await openBare({});
    try {
      await register(before, grace, 'grace@example.com');
      webhook = await subscribe(before, 'https://hooks:bare-pw@example.com/hook');
      expect((await storedSecrets(before, bare.events, webhook.id)).secret).toBe(webhook.secret);
      // Bare as the secret, but apart from the URL.
      expect(await storedUrl(before, bare.events, webhook.id)).toEqual({ url: 'https://hooks:***@example.com/hook', url_password: 'bare-pw' });
    } finally {
      await before.close();
    }
    const rewrap = await runCrm(['master-key', 'rewrap', '--new-key-file', 'new.key'], { cwd: folder, env: bareEnv });
    expect(rewrap.code, rewrap.stderr).toBe(0);
    expect(rewrap.stdout).toContain('Re-wrapped 1 customer data key(s), the email lookup key and 1 webhook subscription');
    await expect(openBare({})).rejects.toBeInstanceOf(MasterKeyMismatch);
    const after = await openBare({ CRM_MASTER_KEY_FILE: 'new.key' });
    try {
      expect(await after.emailIndex.holder('grace@example.com')).toBe(grace);
      await expect(register(after, randomUUID(), 'grace@example.com')).rejects.toMatchObject({ code: 'customer.email_taken' });
      const stored = (await storedSecrets(after, bare.events, webhook.id)).secret;
      expect(stored).toMatch(/^mk1:/);
      expect(await after.integration.services.tables.secretsOf(webhook.id)).toEqual([webhook.secret]);
      const url = await storedUrl(after, bare.events, webhook.id);
      expect(url).toEqual({ url: 'https://hooks:***@example.com/hook', url_password: expect.stringMatching(/^mk1:/) });
      expect(url.url_password).not.toContain('bare-pw');
      expect(await after.integration.services.tables.deliveryUrl(webhook.id)).toBe('https://hooks:bare-pw@example.com/hook');
    } finally {
      await after.close();
    }
  }, 120_000);

  it('an installation started with a master key before the email lookup key was stored keeps its claims through a rewrap', async () => {
    const legacy = testSchemas('cli_master_key_legacy');
    const legacyEnv = { ...env, CRM_EVENTS_SCHEMA: legacy.events, CRM_READ_SCHEMA: legacy.read, CRM_REPORTING_SCHEMA: legacy.reporting };
    const openLegacy = (extra: Record<string, string>) => openCrm(loadConfig({ ...legacyEnv, ...extra }, folder));
    const linus = randomUUID();
    try {
      const first = await openLegacy({ CRM_MASTER_KEY: oldKey });
      try {
        await register(first, linus, 'linus@example.com');
        // As such an installation stands: its claims were made under the key derived from the master key, none stored.
        await sql`DELETE FROM ${sql.table(`${legacy.events}.email_lookup_key`)}`.execute(first.database.db);
      } finally {
        await first.close();
      }
      const rewrap = await runCrm(['master-key', 'rewrap', '--new-key-file', 'new.key'], { cwd: folder, env: { ...legacyEnv, CRM_MASTER_KEY: oldKey } });
      expect(rewrap.code, rewrap.stderr).toBe(0);
      const after = await openLegacy({ CRM_MASTER_KEY_FILE: 'new.key' });
      try {
        expect(await after.emailIndex.holder('linus@example.com')).toBe(linus);
      } finally {
        await after.close();
      }
    } finally {
      await legacy.dropSchemas();
    }
  }, 120_000);
});
