import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * A rollback past a store migration (or an older process started beside newer ones): every command
 * that opens the store refuses it as configuration, naming what the newer version applied, instead of
 * starting ready and failing every command that meets the changed tables or event formats.
 */
const NEWER = '0099_from_a_newer_release';
const schemas = testSchemas('cli_store_newer');
const writing = testSchemas('cli_store_newer_writes');
let folder: string;

/** What a newer version leaves: a store migration this version does not have (after `before`, e.g. a customer registered). */
const migrateAsNewerVersion = async (env: Record<string, string>, before?: (crm: CrmRuntime) => Promise<void>): Promise<void> => {
  const crm = await openCrm(loadConfig({ ...env, LOG_LEVEL: 'silent' }, folder));
  try {
    await before?.(crm);
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

/** Every table of the events schema with its rows and its file (a table written anew gets a new one): what a refused command must leave. */
const eventsSchemaContents = async (schema: string) => {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ name: string; file: string }>(
      `SELECT c.relname AS name, c.relfilenode::text AS file FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname`,
      [schema],
    );
    const contents = [];
    for (const { name, file } of tables) {
      const { rows } = await client.query<{ row: string }>(
        `SELECT to_jsonb(t)::text AS row FROM ${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)} t ORDER BY 1`,
      );
      contents.push({ name, file, rows: rows.map((r) => r.row) });
    }
    return contents;
  } finally {
    await client.end();
  }
};

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-store-newer-'));
});

afterAll(async () => {
  await schemas.dropSchemas();
  await writing.dropSchemas();
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

  it('on PostgreSQL: commands that write without opening the event store (master-key rewrap, api-key create and revoke, reporting-role, purge-erased) refuse it (exit 78) and write nothing', async () => {
    const env = schemaEnv(writing);
    await writeFile(join(folder, 'new.key'), randomBytes(32).toString('base64'));
    await migrateAsNewerVersion(env, async (crm) => {
      // A data key for the rewrap to rewrite.
      await crm.commands.execute(
        { type: 'RegisterCustomer', customerId: randomUUID(), name: 'Ada Lovelace', email: 'ada@example.com' },
        { actor: { userId: 'test', roles: ['admin'] }, correlationId: randomUUID() },
      );
    });
    const before = await eventsSchemaContents(writing.events);
    expect(before.find((table) => table.name === 'customer_keys')?.rows).toHaveLength(1);
    expectRefused(await runCrm(['master-key', 'rewrap', '--new-key-file', 'new.key'], { cwd: folder, env }), writing.events);
    expectRefused(await runCrm(['api-key', 'create', '--name', 'reporting bot', '--role', 'analyst'], { cwd: folder, env }), writing.events);
    expectRefused(await runCrm(['api-key', 'revoke', randomUUID()], { cwd: folder, env }), writing.events);
    expectRefused(await runCrm(['reporting-role', '--team', randomUUID(), '--name', 'newer_store_team'], { cwd: folder, env }), writing.events);
    expectRefused(await runCrm(['purge-erased'], { cwd: folder, env }), writing.events);
    expect(await eventsSchemaContents(writing.events)).toEqual(before);
  }, 120_000);

  it('in the embedded database: crm serve refuses to start (exit 78), naming the migration', async () => {
    const env = { CRM_DATA_DIR: join(folder, 'data') };
    await migrateAsNewerVersion(env);
    expectRefused(await runCrm(['serve'], { cwd: folder, env: { ...env, PORT: '42301' }, timeoutMs: 120_000 }), 'crm_events');
  }, 180_000);
});
