import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas, TEST_DATABASE_URL } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * `crm publish --status` while a transaction is open elsewhere on the server (any database): the events
 * committed after it are held back from every publisher, whose lag reads 0 meanwhile.
 */
const schemas = testSchemas('cli_publish_held');
const folder = mkdtempSync(join(tmpdir(), 'crm-publish-held-'));

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

describe('crm publish --status', () => {
  it('says how many committed events a transaction open on the server holds back, and for how long', async () => {
    const open = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await open.connect();
    try {
      await open.query('BEGIN');
      await open.query('SELECT pg_current_xact_id()');
      const runtime = await openCrm(loadConfig(schemaEnv(schemas), folder));
      try {
        await runtime.integration.services.tables.migrate();
        await runtime.commands.execute(
          { type: 'RegisterCustomer', name: 'Held', email: `h-${randomUUID()}@example.com` },
          { actor: { userId: 'publish-test', roles: ['admin'] }, correlationId: randomUUID() },
        );
      } finally {
        await runtime.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      const status = await runCrm(['publish', '--status'], { cwd: folder, env: schemaEnv(schemas), timeoutMs: 60_000 });
      expect(status.code, status.stderr).toBe(0);
      expect(status.stdout).toMatch(/\d+ committed events held back for [1-9]\d* s by a transaction open on the PostgreSQL server/);
    } finally {
      await open.query('ROLLBACK').catch(() => undefined);
      await open.end();
    }
  }, 120_000);
});
