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
    const rewrap = await runCrm(['master-key', 'rewrap', '--new-key-file', 'new.key'], { cwd: folder, env: { ...env, CRM_MASTER_KEY_FILE: 'old.key' } });
    expect(rewrap.code, rewrap.stderr).toBe(0);
    expect(rewrap.stdout).toMatch(/Re-wrapped [1-9]\d* customer data key/);
    await expect(open({ CRM_MASTER_KEY: oldKey })).rejects.toBeInstanceOf(MasterKeyMismatch);
    const crm = await open({ CRM_MASTER_KEY_FILE: 'new.key' });
    try {
      expect(await readName(crm)).toBe('Ada Lovelace');
    } finally {
      await crm.close();
    }
    const refused = await runCrm(['serve'], { cwd: folder, env: { ...env, CRM_MASTER_KEY: oldKey, PORT: '0' } });
    expect(refused.code).toBe(78);
    expect(refused.stderr).toContain('does not unwrap');
  }, 120_000);
});
