import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBatchCommands, type BatchItem } from '../../commands/batch.ts';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';

/**
 * `crm claim-emails` against the real PostgreSQL: customers registered without a claim (as imports
 * did before they claimed addresses) get their addresses held, the oldest registration first; a
 * read model that is behind is refused before anything is claimed.
 */
const schemas = testSchemas('cli_claim_emails');
const folder = mkdtempSync(join(tmpdir(), 'crm-claim-emails-'));
const crm = (args: string[]) => runCrm(args, { cwd: folder, env: schemaEnv(schemas), timeoutMs: 120_000 });

afterAll(async () => {
  await schemas.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

const registration = (customerId: string, email: string, at: string): BatchItem => ({
  command: { type: 'RegisterCustomer', customerId, name: 'Unclaimed', email, occurredAt: at },
  ctx: { actor: { userId: 'crm-import', roles: ['admin'] }, correlationId: randomUUID(), idempotencyKey: `old-import:${customerId}` },
});

describe('crm claim-emails', () => {
  it('claims the addresses of customers who hold none, oldest first, lists a shared one, and the API then refuses them', async () => {
    const [first, second, later] = [randomUUID(), randomUUID(), randomUUID()];
    const runtime = await openCrm(loadConfig(schemaEnv(schemas), folder));
    try {
      // A batch without the index: what an import stored before imports claimed addresses.
      const unclaimed = createBatchCommands({ store: runtime.store, personalData: runtime.personalData });
      const outcomes = await unclaimed.executeBatch([
        registration(later, 'shared@claims.example', '2020-03-01T00:00:00.000Z'),
        registration(first, 'shared@claims.example', '2019-01-01T00:00:00.000Z'),
        registration(second, 'own@claims.example', '2019-06-01T00:00:00.000Z'),
      ]);
      expect(outcomes.every((o) => o.ok)).toBe(true);
      expect(await runtime.emailIndex.holder('own@claims.example')).toBeUndefined();
    } finally {
      await runtime.close();
    }

    const behind = await crm(['claim-emails']);
    expect(behind.code).toBe(1);
    expect(behind.stderr).toMatch(/customers read model is behind the event store.*nothing was claimed/);

    expect((await crm(['rebuild', 'customers'])).code).toBe(0);
    const result = await crm(['claim-emails']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`customer ${later}: its address is held by customer ${first}`);
    expect(result.stdout).toContain('Claimed 2 address(es); 0 were already held by their customers; 1 customer(s) have an address another customer holds');

    const again = await crm(['claim-emails']);
    expect(again.stdout).toContain('Claimed 0 address(es); 2 were already held by their customers; 1 customer(s)');

    const check = await openCrm(loadConfig(schemaEnv(schemas), folder));
    try {
      expect(await check.emailIndex.holder('shared@claims.example')).toBe(first);
      expect(await check.emailIndex.holder('own@claims.example')).toBe(second);
      await expect(
        check.commands.execute(
          { type: 'RegisterCustomer', name: 'Copy', email: 'OWN@claims.example' },
          { actor: { userId: 'ann', roles: ['sales'] }, correlationId: randomUUID() },
        ),
      ).rejects.toMatchObject({ code: 'customer.email_taken', details: { customerId: second } });
    } finally {
      await check.close();
    }
  });
});
