import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.ts';
import { NATS_PUBLISHER } from '../../integration/tables.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * `crm publish --nats-from`: a NATS stream created again starts empty; the operator moves the NATS
 * publisher's checkpoint back so that the history is published into it again.
 */
const schemas = testSchemas('cli_publish');
const folder = mkdtempSync(join(tmpdir(), 'crm-publish-'));
const crm = (args: string[]) => runCrm(args, { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

describe('crm publish --nats-from', () => {
  it('moves the NATS checkpoint back to publish the history again; refuses a position past the head, and a database NATS never published from', async () => {
    const runtime = await openCrm(loadConfig(schemaEnv(schemas), folder));
    let head: bigint;
    try {
      await runtime.integration.services.tables.migrate();
      await runtime.commands.execute(
        { type: 'RegisterCustomer', name: 'Published', email: `p-${randomUUID()}@example.com` },
        { actor: { userId: 'publish-test', roles: ['admin'] }, correlationId: randomUUID() },
      );
      // Committed, as the refusal reads it (the final head lags while another test's transaction is open).
      head = await (runtime.store.committedHeadPosition?.() ?? runtime.store.headPosition());
    } finally {
      await runtime.close();
    }

    const never = await crm(['publish', '--nats-from', '0']);
    expect(never.code).toBe(1);
    expect(never.stderr).toContain('set CRM_NATS_URL');

    const again = await openCrm(loadConfig(schemaEnv(schemas), folder));
    try {
      // Where a publisher that published everything stands.
      await again.integration.services.tables.ensurePublisher(NATS_PUBLISHER, 'nats', head);
    } finally {
      await again.close();
    }
    const past = await crm(['publish', '--nats-from', (head + 2n).toString()]);
    expect(past.code).toBe(1);
    expect(past.stderr).toContain(`the last event is at ${head}`);
    expect((await crm(['publish', '--nats-from', 'soon'])).code).not.toBe(0);

    const replayed = await crm(['publish', '--nats-from', '0']);
    expect(replayed.code, replayed.stderr).toBe(0);
    expect(replayed.stdout).toContain('from position 0');
    const status = await crm(['publish', '--status', '--json']);
    expect(JSON.parse(status.stdout).find((p: { name: string }) => p.name === NATS_PUBLISHER).position).toBe('0');
  });
});
