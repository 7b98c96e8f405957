import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importFile } from '../../cli/import.ts';
import { unkeyedCustomerId } from '../../commands/ids.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';

/**
 * A customer imported by address alone gets an id derived from the address under the installation's
 * key: an analyst who sees ids cannot test a guessed address against them, while every import into
 * the installation finds the same customer. Customers imported before ids were keyed keep theirs.
 */
const installation = testSchemas('import_customer_ids');
const other = testSchemas('import_customer_ids_other');
const folder = mkdtempSync(join(tmpdir(), 'crm-import-ids-'));

afterAll(async () => {
  await installation.dropSchemas();
  await other.dropSchemas();
  rmSync(folder, { recursive: true, force: true });
});

const withRuntime = async <T>(schemas: typeof installation, use: (runtime: CrmRuntime) => Promise<T>): Promise<T> => {
  const runtime = await openCrm(testConfig(schemas));
  try {
    return await use(runtime);
  } finally {
    await runtime.close();
  }
};

let files = 0;
const imported = async (runtime: CrmRuntime, lines: string[]) => {
  const file = join(folder, `file-${++files}.csv`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  const outcome = await importFile(runtime.batch, { file, reportPath: `${file}.report` });
  return { ...outcome, report: readFileSync(`${file}.report`, 'utf8') };
};
const eventsOf = async (runtime: CrmRuntime, customerId: string) => (await runtime.store.readStream(`customer-${customerId}`)).map((e) => e.type);

describe('imported customer ids', () => {
  it('are derived under the installation key: the same in every process of one installation, another in another, none the digest of the address alone', async () => {
    const email = `${randomUUID()}@ids.example`;
    const id = await withRuntime(installation, async (runtime) => {
      const outcome = await imported(runtime, ['name,email', `Ada,${email}`]);
      expect(outcome).toMatchObject({ imported: 1, rejected: 0 });
      const derived = runtime.batch.importedCustomerId(email);
      expect(await eventsOf(runtime, derived)).toEqual(['CustomerRegistered']);
      expect(await eventsOf(runtime, unkeyedCustomerId(email))).toEqual([]);
      expect(await runtime.emailIndex.holder(email)).toBe(derived);
      return derived;
    });
    expect(id).not.toBe(unkeyedCustomerId(email));
    // Another process of the installation (a later `crm import`, an API replica) derives the same id:
    // the file imported again is present, and a purchases file names the customer by address.
    await withRuntime(installation, async (runtime) => {
      expect(runtime.batch.importedCustomerId(email.toUpperCase())).toBe(id);
      expect(await imported(runtime, ['name,email', `Ada,${email}`])).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
      expect(await imported(runtime, ['order_id,amount,currency,customer_email', `A-1,10,EUR,${email}`])).toMatchObject({ imported: 1, rejected: 0 });
      expect(await eventsOf(runtime, id)).toEqual(['CustomerRegistered', 'PurchaseRecorded']);
    });
    expect(await withRuntime(other, async (runtime) => runtime.batch.importedCustomerId(email))).not.toBe(id);
  });

  it('keeps the id of a customer imported before ids were keyed: its customers file again is present, a purchases file by address finds it', async () => {
    const email = `${randomUUID()}@ids.example`;
    const legacy = unkeyedCustomerId(email);
    await withRuntime(installation, async (runtime) => {
      // What an importer before keyed ids stored: the same row's command, under the unkeyed id.
      expect(await imported(runtime, ['id,name,email', `${legacy},Grace,${email}`])).toMatchObject({ imported: 1, rejected: 0 });
      const again = await imported(runtime, ['name,email', `Grace,${email}`]);
      expect(again).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
      expect(await imported(runtime, ['order_id,amount,currency,customer_email', `G-1,12.5,EUR,${email}`])).toMatchObject({ imported: 1, rejected: 0 });
      expect(await eventsOf(runtime, legacy)).toEqual(['CustomerRegistered', 'PurchaseRecorded']);
      expect(await eventsOf(runtime, runtime.batch.importedCustomerId(email))).toEqual([]);
    });
  });

  it('does not register again a customer imported before ids were keyed whose address nobody holds now (forgotten, or imported before addresses were held)', async () => {
    const [gone, unheld] = [`${randomUUID()}@ids.example`, `${randomUUID()}@ids.example`];
    await withRuntime(installation, async (runtime) => {
      for (const email of [gone, unheld])
        expect(await imported(runtime, ['id,name,email', `${unkeyedCustomerId(email)},Old,${email}`])).toMatchObject({ imported: 1, rejected: 0 });
      // Forgotten: its address is free again. The other as imports stored customers before they held addresses.
      await runtime.commands.execute(
        { type: 'ForgetCustomer', customerId: unkeyedCustomerId(gone) },
        { actor: { userId: 'u-1', roles: ['admin'] }, correlationId: randomUUID() },
      );
      await runtime.emailIndex.release(unheld, unkeyedCustomerId(unheld));
      expect(await runtime.emailIndex.holder(gone)).toBeUndefined();
      expect(await runtime.emailIndex.holder(unheld)).toBeUndefined();

      const again = await imported(runtime, ['name,email', `Old,${gone}`, `Old,${unheld}`]);
      // Both are the rows stored before (the forgotten one stays forgotten, not brought back under a new id).
      expect(again).toMatchObject({ rows: 2, imported: 2, alreadyPresent: 2, rejected: 0 });
      expect(await runtime.personalData.isForgotten(unkeyedCustomerId(gone))).toBe(true);
      for (const email of [gone, unheld]) expect(await eventsOf(runtime, runtime.batch.importedCustomerId(email))).toEqual([]);
    });
  });

  it("refuses a purchases row naming a forgotten customer's address as it refuses an address nobody held, naming no id", async () => {
    // Found by an auditor: the reason read "Customer <id> has been forgotten", the id that reads what history is left.
    const [gone, never] = [`${randomUUID()}@ids.example`, `${randomUUID()}@ids.example`];
    await withRuntime(installation, async (runtime) => {
      expect(await imported(runtime, ['name,email', `Gone,${gone}`])).toMatchObject({ imported: 1, rejected: 0 });
      const id = runtime.batch.importedCustomerId(gone);
      await runtime.commands.execute({ type: 'ForgetCustomer', customerId: id }, { actor: { userId: 'u-1', roles: ['admin'] }, correlationId: randomUUID() });
      const outcome = await imported(runtime, ['order_id,amount,currency,customer_email', `F-1,10,EUR,${gone}`, `F-2,10,EUR,${never}`]);
      expect(outcome).toMatchObject({ rows: 2, imported: 0, rejected: 2 });
      expect(outcome.report).not.toContain(id);
      // The report is CSV: its quotes doubled.
      expect(outcome.report).toContain(`2,"customer_email: no customer has the address ""${gone}"""`);
      expect(outcome.report).toContain(`3,"customer_email: no customer has the address ""${never}"""`);
      expect(await eventsOf(runtime, id)).toEqual(['CustomerRegistered', 'CustomerForgotten']);
    });
  });

  it('still refuses a customers row whose address another customer holds (one registered through the API keeps it)', async () => {
    const email = `${randomUUID()}@ids.example`;
    await withRuntime(installation, async (runtime) => {
      const holder = randomUUID();
      await runtime.commands.execute(
        { type: 'RegisterCustomer', customerId: holder, name: 'Api', email },
        { actor: { userId: 'u-1', roles: ['admin'] }, correlationId: randomUUID() },
      );
      const outcome = await imported(runtime, ['name,email', `Other,${email}`]);
      expect(outcome).toMatchObject({ imported: 0, rejected: 1 });
      expect(outcome.report).toMatch(new RegExp(`^2,.*${holder}`, 'm'));
      expect(await eventsOf(runtime, holder)).toEqual(['CustomerRegistered']);
    });
  });
});
