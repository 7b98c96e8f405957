import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * A rollback past a store migration (or an older process started beside newer ones): every command
 * that opens the store refuses it as configuration, naming what the newer version applied, instead of
 * starting ready and failing every command that meets the changed tables or event formats.
 */
const NEWER = '0099_from_a_newer_release';
const schemas = testSchemas('cli_store_newer');
let folder: string;

/** What a newer version leaves: a store migration this version does not have. */
const migrateAsNewerVersion = async (env: Record<string, string>): Promise<void> => {
  const crm = await openCrm(loadConfig({ ...env, LOG_LEVEL: 'silent' }, folder));
  try {
    await sql`INSERT INTO ${sql.id(crm.config.schemas.events, 'eventstore_migration')} (name, timestamp) VALUES (${NEWER}, ${new Date().toISOString()})`.execute(
      crm.database.db,
    );
  } finally {
    await crm.close();
  }
};

const expectRefused = (result: { code: number | null; stderr: string }, schema: string) => {
  expect(result.code, result.stderr).toBe(78);
  expect(result.stderr).toContain(
    `crm: The event store in schema ${schema} was migrated by a newer version of the CRM than this process (store migrations ${NEWER}, which this version does not have). Nothing was written.`,
  );
  expect(result.stderr).toContain('restore a backup taken before the newer version first started');
  expect(result.stderr).not.toMatch(/\n\s+at /);
};

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-store-newer-'));
});

afterAll(async () => {
  await schemas.dropSchemas();
  if (folder) await rm(folder, { recursive: true, force: true });
});

describe('a store migrated by a newer version of the CRM', () => {
  it('on PostgreSQL: an API replica (CRM_PROJECTIONS=off), a projection worker and crm verify refuse to start (exit 78), naming the migration', async () => {
    const env = schemaEnv(schemas);
    await migrateAsNewerVersion(env);
    expectRefused(await runCrm(['serve'], { cwd: folder, env: { ...env, CRM_PROJECTIONS: 'off', PORT: '42300' } }), schemas.events);
    expectRefused(await runCrm(['project'], { cwd: folder, env }), schemas.events);
    expectRefused(await runCrm(['verify'], { cwd: folder, env }), schemas.events);
  }, 120_000);

  it('in the embedded database: crm serve refuses to start (exit 78), naming the migration', async () => {
    const env = { CRM_DATA_DIR: join(folder, 'data') };
    await migrateAsNewerVersion(env);
    expectRefused(await runCrm(['serve'], { cwd: folder, env: { ...env, PORT: '42301' }, timeoutMs: 120_000 }), 'crm_events');
  }, 180_000);
});
