import { mkdtemp, rm, truncate } from 'node:fs/promises';
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

it('names a data folder whose events file was truncated as damaged, with what to restore, not as an unexpected error', async () => {
  // Found truncating crm_events.events of a copy: every command printed "unexpected error" and a WebAssembly stack, exit 1.
  folder = await mkdtemp(join(tmpdir(), 'crm-damaged-'));
  const crm = await openCrm(loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent' }, folder));
  let file: string;
  try {
    await crm.commands.execute(
      { type: 'RegisterCustomer', name: 'Ada Lovelace', email: 'ada@example.com' },
      { actor: { userId: 'clerk', roles: ['admin'] }, correlationId: 'damaged-data' },
    );
    const { rows } = await sql<{ path: string }>`SELECT pg_relation_filepath(${`${crm.config.schemas.events}.events`}) AS path`.execute(crm.database.db);
    file = rows[0]!.path;
  } finally {
    await crm.close();
  }
  // The store's PostgreSQL data lives in pgdata/ under the folder; the table's first page is cut away.
  await truncate(join(folder, 'pgdata', file), 0);
  const verified = await runCrm(['verify', '--chain'], { cwd: folder, env: { CRM_DATA_DIR: folder }, timeoutMs: 120_000 });
  expect(verified.stderr).not.toContain('unexpected error');
  expect(verified.stderr).toMatch(
    /crm verify: the database's files are damaged \(.+\)\. Stop every process using it, then restore the data folder \(CRM_DATA_DIR\)/,
  );
  expect(verified.code).toBe(74);
}, 180_000);
