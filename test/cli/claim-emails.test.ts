import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBatchCommands, type BatchItem } from '../../commands/batch.ts';
import { createCrmCommands } from '../../commands/index.ts';
import { loadConfig } from '../../cli/config.ts';
import { openCrm } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm, schemaEnv } from './support.ts';
import { TEST_CUSTOMER_ID_KEY } from '../support/fixtures.ts';

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
      const unclaimed = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData });
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
    // The users read model is read too (for users' addresses), so it must be caught up as well.
    const usersBehind = await crm(['claim-emails']);
    expect(usersBehind.code).toBe(1);
    expect(usersBehind.stderr).toMatch(/users read model is behind the event store.*nothing was claimed/);
    expect((await crm(['rebuild', 'users'])).code).toBe(0);
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
    // Several `crm` processes one after the other: each start takes seconds on a loaded machine.
  }, 300_000);
});

describe('crm claim-emails for users', () => {
  const userSchemas = testSchemas('cli_claim_user_emails');
  const crmUsers = (args: string[]) => runCrm(args, { cwd: folder, env: schemaEnv(userSchemas), timeoutMs: 120_000 });
  afterAll(async () => userSchemas.dropSchemas());
  const admin = () => ({ actor: { userId: 'admin', roles: ['admin'] }, correlationId: randomUUID() });

  it('claims the addresses of users registered before users held theirs, lists a shared one, and the API then refuses them', async () => {
    const [first, copy, own] = [randomUUID(), randomUUID(), randomUUID()];
    const runtime = await openCrm(loadConfig(schemaEnv(userSchemas), folder));
    try {
      // Commands without the users' index: what was stored before users claimed addresses, duplicates included.
      const unchecked = createCrmCommands({ store: runtime.store, personalData: runtime.personalData });
      await unchecked.execute({ type: 'RegisterUser', userId: first, name: 'First', email: 'shared@staff.example', role: 'sales' }, admin());
      await unchecked.execute({ type: 'RegisterUser', userId: copy, name: 'Copy', email: 'SHARED@staff.example', role: 'sales' }, admin());
      await unchecked.execute({ type: 'RegisterUser', userId: own, name: 'Own', email: 'own@staff.example', role: 'support' }, admin());
      expect(await runtime.userEmailIndex.holder('own@staff.example')).toBeUndefined();
    } finally {
      await runtime.close();
    }
    expect((await crmUsers(['rebuild', 'customers'])).code).toBe(0);
    expect((await crmUsers(['rebuild', 'users'])).code).toBe(0);
    const result = await crmUsers(['claim-emails']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`user ${copy}: its address is held by user ${first}`);
    expect(result.stdout).toContain('Users: claimed 2 address(es); 0 were already held by their users; 1 user(s) have an address another user holds');

    const check = await openCrm(loadConfig(schemaEnv(userSchemas), folder));
    try {
      expect(await check.userEmailIndex.holder('shared@staff.example')).toBe(first);
      await expect(check.commands.execute({ type: 'RegisterUser', name: 'Third', email: 'Own@staff.example', role: 'sales' }, admin())).rejects.toMatchObject({
        code: 'user.email_taken',
        field: 'email',
        details: { userId: own },
      });
      // The customers' index is another: a member of staff may be a customer with the same address.
      const customer = await check.commands.execute({ type: 'RegisterCustomer', name: 'Own, the customer', email: 'own@staff.example' }, admin());
      expect(customer.eventIds).toHaveLength(1);
    } finally {
      await check.close();
    }
    // Several `crm` processes one after the other: each start takes seconds on a loaded machine.
  }, 300_000);
});
