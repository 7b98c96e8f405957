import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { runCrm } from './support.ts';

let folder: string | undefined;
afterAll(async () => {
  if (folder) await rm(folder, { recursive: true, force: true });
});

it("names the embedded database's full disk and its data folder (exit 74), not an unexpected error", async () => {
  // Found filling the disk under `crm import`: "crm: unexpected error", PostgreSQL's "No space left on device" and a WebAssembly stack, exit 1.
  folder = await mkdtemp(join(tmpdir(), 'crm-disk-full-'));
  const crm = await openCrm(loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent' }, folder));
  try {
    // The server's own error (SQLSTATE 53100, its message), raised where an append writes, as a full disk raises it.
    const events = sql.id(crm.config.schemas.events, 'events');
    await sql`CREATE FUNCTION public.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not write to file "pg_wal/xlogtemp.42": No space left on device'; END $$`.execute(
      crm.database.db,
    );
    await sql`CREATE TRIGGER disk_full BEFORE INSERT ON ${events} FOR EACH ROW EXECUTE FUNCTION public.disk_full()`.execute(crm.database.db);
  } finally {
    await crm.close();
  }
  const customers = join(folder, 'customers.csv');
  await writeFile(customers, 'name,email\nAda Lovelace,ada@example.com\n');
  const imported = await runCrm(['import', customers, '--report', join(folder, 'report.csv')], {
    cwd: folder,
    env: { CRM_DATA_DIR: folder, CRM_DEMO: 'false' },
    timeoutMs: 120_000,
  });
  expect(imported.stderr).not.toMatch(/unexpected error|\n\s+at /);
  expect(imported.stderr).toContain(
    `crm import: the disk is full (could not write to file "pg_wal/xlogtemp.42": No space left on device): free some space on the disk of the data folder ${folder} (CRM_DATA_DIR) and run it again.`,
  );
  expect(imported.code).toBe(74);
}, 180_000);
