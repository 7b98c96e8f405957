import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { loadConfig } from '../../cli/config.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';

/**
 * HTTP imports on the embedded database (the default a new user starts with): the job is recorded in
 * the data folder, so it outlives the process, and an import a stopped process left running reads as
 * failed after the next start instead of running for ever.
 */
let folder: string;
let crm: CrmRuntime | undefined;
let app: CrmApp | undefined;
let adminKey = '';

const open = async () => {
  const config = loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent', CRM_MAX_EVENT_LOOP_DELAY_MS: '0', CRM_PROJECTIONS: 'off' }, folder);
  crm = await openCrm(config);
  app = await crm.buildApi({ logger: false });
  adminKey ||= (await app.keys.create({ name: 'importer', role: 'admin' })).key;
};
const close = async () => {
  await app?.close();
  await crm?.close();
  app = undefined;
  crm = undefined;
};
const auth = () => ({ authorization: `Bearer ${adminKey}` });
const job = async (id: string) => {
  const response = await app!.inject({ method: 'GET', url: `/imports/${id}`, headers: auth() });
  return { status: response.statusCode, body: response.json<Record<string, unknown>>() };
};

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-pglite-imports-'));
  await open();
}, 120_000);

afterAll(async () => {
  await close();
  await rm(folder, { recursive: true, force: true });
});

describe('HTTP imports on the embedded database', () => {
  it('keeps the report across a restart, and reads an import left running by a stopped process as failed', async () => {
    const posted = await app!.inject({
      method: 'POST',
      url: '/imports?kind=customers',
      headers: { ...auth(), 'content-type': 'text/csv' },
      payload: 'name,email\nAda,ada@pglite-imports.example\nBad,not-an-email\n',
    });
    expect(posted.statusCode, posted.body).toBe(202);
    const { id } = posted.json<{ id: string }>();
    let seen = await job(id);
    for (const deadline = Date.now() + 30_000; seen.body.status === 'running' && Date.now() < deadline; seen = await job(id)) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(seen.body).toMatchObject({ status: 'done', counts: { rows: 2, imported: 1, rejected: 1 }, rejectedRows: [{ line: 3 }] });

    await close();
    await open();
    expect(await job(id)).toEqual(seen);

    // As a process killed mid-import leaves it.
    await sql`UPDATE crm.import_jobs SET status = 'running', finished_at = NULL WHERE id = ${id}`.execute(crm!.database.db);
    expect((await job(id)).body).toMatchObject({ status: 'failed', error: expect.stringMatching(/stopped .*send the same file again/) });
    const again = await app!.inject({
      method: 'POST',
      url: '/imports?kind=customers',
      headers: { ...auth(), 'content-type': 'text/csv' },
      payload: 'name,email\nAda,ada@pglite-imports.example\n',
    });
    expect(again.statusCode, again.body).toBe(202);
  }, 120_000);
});
