import { hash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands } from '../../commands/batch.ts';
import { createCrmCommands } from '../../commands/index.ts';
import { DefaultOwnerRefused } from '../../commands/import/default-owner.ts';
import { runImport, type ImportOptions, type RejectedRow } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { rowCommands } from '../../commands/import/rows.ts';
import { meaningOf, registersAsStored } from '../../commands/fingerprint.ts';
import { commandHash } from '../../commands/ids.ts';
import { prepareCommand } from '../../commands/prepare.ts';
import { SNAPSHOT_FORMAT } from '../../commands/snapshots.ts';
import { commandSchemas } from '../../commands/schemas.ts';
import { decideCustomer, initialCustomerState } from '../../domain/customer/decider.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createEmailIndex, type EmailIndex } from '../../eventstore/email-index.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';
import { TEST_CUSTOMER_ID_KEY, importedCustomerId } from '../support/fixtures.ts';

/**
 * What makes a row "imported before": what it means, not how the file spells it. The same data
 * written another way (the CRM's own export of it) is already present; a real change is refused; a
 * row stored by an earlier version of the importer (its fingerprint taken of the text) is still the
 * same row. And what the files say comes in as they say it (owner, source, the reason a deal was won).
 */
const schemas = testSchemas('import_fingerprint');
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;
let emailIndex: EmailIndex;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  // As in a running CRM: imports claim addresses, and find who holds one.
  emailIndex = await createEmailIndex(database.db, { schema: schemas.events });
});
afterAll(async () => {
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const actor = { userId: 'crm-import', roles: ['admin'] };

/** `via`: the store the import writes and reads through (one that counts its reads), the test's by default. */
const importing = async (lines: string[], options: Partial<ImportOptions> = {}, via: EventStore = store) => {
  const rejected: RejectedRow[] = [];
  const outcome = await runImport(
    createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: via, personalData, emailIndex }),
    parseRecords(Readable.from([lines.join('\n')]), 'csv'),
    {
      actor,
      onRejected: (row) => void rejected.push(row),
      ...options,
    },
  );
  return { outcome, rejected };
};

/** A registered user (deactivated when `active` is false), through the one-at-a-time handler (batches refuse user commands); answers the id. */
const registerUser = async (active = true): Promise<string> => {
  const userId = randomUUID();
  const commands = createCrmCommands({ store, personalData });
  await commands.execute({ type: 'RegisterUser', userId, name: 'Sam', email: `${randomUUID()}@example.com`, role: 'sales' }, { actor, correlationId: 'test' });
  if (!active) await commands.execute({ type: 'ChangeUser', userId, active: false }, { actor, correlationId: 'test' });
  return userId;
};

describe('import: a row imported before is known by what it means', () => {
  it('takes a customer written with an offset, then in UTC, as the same row; a changed time or name is still refused', async () => {
    const email = `${randomUUID()}@example.com`;
    const first = await importing(['name,email,registered_at', `Ada,${email},1997-05-06T10:00:00+02:00`]);
    expect(first.outcome).toMatchObject({ imported: 1, alreadyPresent: 0, rejected: 0 });
    // As an export writes it: the same instant in UTC, with milliseconds, and the columns an export adds.
    const exported = await importing([
      'id,name,email,phone,source,tags,registered_at',
      `${importedCustomerId(email)},Ada,${email},,,,1997-05-06T08:00:00.000Z`,
    ]);
    expect(exported.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    const changedTime = await importing(['name,email,registered_at', `Ada,${email},1997-05-06T10:00:00Z`]);
    expect(changedTime.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
    const changedName = await importing(['name,email,registered_at', `Ada L.,${email},1997-05-06T08:00:00Z`]);
    expect(changedName.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
    expect(await store.readStream(`customer-${importedCustomerId(email)}`)).toHaveLength(1);
  });

  it('names the columns a row imported before changes, quoting the file as other refusals do and never the stored value', async () => {
    const email = `${randomUUID()}@example.com`;
    const orderId = `o-${randomUUID()}`;
    await importing(['name,email,phone,company,registered_at', `Ada,${email},0049170,Acme,1997-05-06T08:00:00Z`]);
    await importing(['order_id,customer_email,amount,currency,occurred_at', `${orderId},${email},12.50,EUR,1997-06-01T00:00:00Z`]);
    // A spreadsheet dropped the phone's leading zeros, and the name was corrected by hand.
    const changed = await importing(['name,email,phone,company,registered_at', `Ada L.,${email},49170,Acme,1997-05-06T08:00:00Z`]);
    expect(changed.rejected).toEqual([
      {
        line: 2,
        reason: expect.stringMatching(/^row: imported before with different values in name \("Ada L." in this file\), phone \("49170" in this file\) \(a row/),
      },
    ]);
    expect(changed.rejected[0]!.reason).not.toContain('0049170');
    const emptied = await importing(['name,email,phone,company,registered_at', `Ada,${email},0049170,,1997-05-06T08:00:00Z`]);
    expect(emptied.rejected[0]!.reason).toMatch(/^row: imported before with different values in company \(empty in this file\) \(/);
    const amount = await importing(['order_id,customer_email,amount,currency,occurred_at', `${orderId},${email},13,EUR,1997-06-01T00:00:00Z`]);
    expect(amount.rejected[0]!.reason).toMatch(/^row: imported before with different values in amount \("13" in this file\) \(/);
    // A time the stored state does not keep: the row is refused as before, naming nothing it cannot tell.
    const time = await importing(['name,email,phone,company,registered_at', `Ada,${email},0049170,Acme,1997-05-06T09:00:00Z`]);
    expect(time.rejected[0]!.reason).toMatch(/^row: imported before with different values \(a row/);
    // A won deal's state is at stage won, which its opening was not: only the changed title is named.
    const dealId = randomUUID();
    const deals = (title: string) => [
      'deal_id,customer_email,title,amount,owner_id,expected_close_date,stage,status,opened_at,closed_at',
      `${dealId},${email},${title},100,sam,1998-06-30,proposal,won,1998-01-01,1998-02-01`,
    ];
    expect((await importing(deals('Fleet'))).outcome).toMatchObject({ imported: 1, rejected: 0 });
    const retitled = await importing(deals('Fleet 2'));
    expect(retitled.rejected[0]!.reason).toMatch(/^row: imported before with different values in title \("Fleet 2" in this file\) \(/);
  });

  it('refuses an NDJSON line that leaves out the time its file dates its lines with, as a CSV row with the cell empty', async () => {
    const email = `${randomUUID()}@example.com`;
    await importing(['name,email,registered_at', `Ada,${email},1997-01-01`]);
    const lines = [
      { order_id: 'n-1', customer_email: email, amount: 5, currency: 'EUR', occurred_at: '1997-02-01T00:00:00Z' },
      { order_id: 'n-2', customer_email: email, amount: 6, currency: 'EUR' },
    ];
    const rejected: RejectedRow[] = [];
    const outcome = await runImport(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }),
      parseRecords(Readable.from([lines.map((line) => JSON.stringify(line)).join('\n')]), 'ndjson'),
      { actor, onRejected: (row) => void rejected.push(row) },
    );
    expect(outcome).toMatchObject({ imported: 1, rejected: 1 });
    expect(rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^occurred_at: empty in a file that dates its rows/) }]);
  });

  it("records a purchase without a currency in the run's currency, and takes one an earlier importer stored as EUR as the same row", async () => {
    const email = `${randomUUID()}@example.com`;
    const stream = `customer-${importedCustomerId(email)}`;
    await importing(['name,email,registered_at', `Ada,${email},1997-01-01`]);
    const file = ['order_id,customer_email,amount,occurred_at', `o-1,${email},12.50,1997-02-01`, `o-2,${email},3,1997-02-02`];
    // As an importer before the base currency was read: every row without a currency is EUR.
    expect((await importing(file.slice(0, 2))).outcome).toMatchObject({ imported: 1, rejected: 0 });
    const again = await importing(file, { currency: 'USD' });
    expect(again.outcome).toMatchObject({ imported: 2, alreadyPresent: 1, rejected: 0 });
    expect((await store.readStream(stream)).slice(1).map((e) => (e.data as { currency: string }).currency)).toEqual(['EUR', 'USD']);
  });
  it('takes rows first imported without their time column, then with the time they were recorded at (as an export writes it), as the same rows; another time is refused', async () => {
    const email = `${randomUUID()}@example.com`;
    const orderId = `o-${randomUUID()}`;
    expect((await importing(['name,email', `Ada,${email}`])).outcome).toMatchObject({ imported: 1, rejected: 0 });
    expect((await importing(['order_id,customer_email,amount,currency', `${orderId},${email},12.50,EUR`])).outcome).toMatchObject({ imported: 1, rejected: 0 });
    const [registered, purchased] = await store.readStream(`customer-${importedCustomerId(email)}`);
    const registeredAt = registered!.metadata.occurredAt as string;
    const purchasedAt = purchased!.metadata.occurredAt as string;

    const customerAgain = await importing(['name,email,registered_at', `Ada,${email},${registeredAt}`]);
    expect(customerAgain.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    const purchaseAgain = await importing(['order_id,customer_email,amount,currency,occurred_at', `${orderId},${email},12.5,EUR,${purchasedAt}`]);
    expect(purchaseAgain.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });

    const secondEarlier = new Date(Date.parse(registeredAt) - 1_000).toISOString();
    const otherTime = await importing(['name,email,registered_at', `Ada,${email},${secondEarlier}`]);
    expect(otherTime.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
    const otherAmount = await importing(['order_id,customer_email,amount,currency,occurred_at', `${orderId},${email},13,EUR,${purchasedAt}`]);
    expect(otherAmount.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
    expect(await store.readStream(`customer-${importedCustomerId(email)}`)).toHaveLength(2);
  });
  it('takes a response without revenue as the same row whether or not the file gave a currency; a conversion with another revenue is refused', async () => {
    const email = `${randomUUID()}@example.com`;
    const campaignId = randomUUID();
    expect((await importing(['name,email,marketing_consent', `Ada,${email},yes`])).outcome).toMatchObject({ imported: 1 });
    expect((await importing(['campaign_id,name,channel,budget,currency,status', `${campaignId},Spring,email,500,EUR,active`])).outcome).toMatchObject({
      imported: 1,
    });
    const header = 'campaign_id,customer_email,response,revenue,currency,occurred_at';
    const first = await importing([header, `${campaignId},${email},sent,,EUR,1998-03-03`, `${campaignId},${email},converted,80,USD,1998-03-10 12:00`]);
    expect(first.outcome).toMatchObject({ imported: 2, rejected: 0 });
    // As the responses export writes them: no currency without revenue, times in UTC, amounts as numbers.
    const again = await importing([
      header,
      `${campaignId},${email},sent,,,1998-03-03T00:00:00.000Z`,
      `${campaignId},${email},converted,80.00,USD,1998-03-10T12:00:00.000Z`,
    ]);
    expect(again.outcome).toMatchObject({ imported: 2, alreadyPresent: 2, rejected: 0 });
    const changed = await importing([header, `${campaignId},${email},converted,90,USD,1998-03-10T12:00:00.000Z`]);
    expect(changed.rejected).toEqual([
      { line: 2, reason: expect.stringMatching(/^row: this customer's response of this kind to this campaign is recorded already/) },
    ]);
    // A second conversion of the customer in one file: the first is kept, and the second says why it is not.
    const second = await importing([header, `${campaignId},${email},converted,20,USD,1998-04-10T12:00:00.000Z`]);
    expect(second.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/a campaign keeps one response of each kind per customer, the first/) }]);
  });

  it('takes a customers row whose address changed only in case as the same customer, present: nothing appended, nothing refused', async () => {
    const local = randomUUID();
    const first = await importing(['name,email,registered_at', `Ana,Ana.${local}@Example.com,1997-05-06`]);
    expect(first.outcome).toMatchObject({ imported: 1, alreadyPresent: 0, rejected: 0 });
    const stream = `customer-${importedCustomerId(`ana.${local}@example.com`)}`;
    for (const spelt of [`ana.${local}@example.com`, `ANA.${local.toUpperCase()}@EXAMPLE.COM`, `Ana.${local}@Example.com`]) {
      const again = await importing(['name,email,registered_at', `Ana,${spelt},1997-05-06`]);
      expect(again.rejected).toEqual([]);
      expect(again.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    }
    expect(await store.readStream(stream)).toHaveLength(1);
    // Another name under the address in another case is still a change, refused.
    const changed = await importing(['name,email,registered_at', `Ana L.,ana.${local}@example.com,1997-05-06`]);
    expect(changed.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
    // Two rows of one file with one address in two spellings are one row, as with one spelling.
    const other = randomUUID();
    const twice = await importing(['name,email', `Bo,Bo.${other}@example.com`, `Bo,bo.${other}@EXAMPLE.com`, `Bo B.,bo.${other}@example.com`]);
    expect(twice.outcome).toMatchObject({ imported: 2, alreadyPresent: 1, rejected: 1 });
    expect(twice.rejected).toEqual([{ line: 4, reason: expect.stringMatching(/^row: imported before with different values/) }]);
  });

  it('still takes a row stored by an earlier importer (its fingerprint of the text, and its invented source) as present', async () => {
    const email = `${randomUUID()}@example.com`;
    const row = { name: 'Ada', email, registered_at: '1997-05-06T10:00:00+02:00' };
    const [register] = rowCommands.customers(row, { customerIdFor: importedCustomerId });
    // The command as the importer built it before: the fingerprint of the payload as written, source `import`.
    const before = {
      type: 'RegisterCustomer',
      customerId: importedCustomerId(email),
      name: 'Ada',
      email,
      phone: null,
      company: null,
      tags: [],
      source: 'import',
      marketingConsent: false,
      occurredAt: '1997-05-06T10:00:00+02:00',
    };
    const [stored] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }).executeBatch([
      { command: before, ctx: { actor, correlationId: 'import:customers:line-2', idempotencyKey: register!.key } },
    ]);
    expect(stored).toMatchObject({ ok: true, alreadyDone: false });
    const again = await importing(['name,email,registered_at', `Ada,${email},1997-05-06T10:00:00+02:00`]);
    expect(again.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    expect(await store.readStream(`customer-${importedCustomerId(email)}`)).toHaveLength(1);
  });
});

describe('import: a person id read in lower case', () => {
  it('still names a row fingerprinted with the spelling of its file (a deal owner in capitals) as that row', () => {
    const upper = randomUUID().toUpperCase();
    const fields = { customerId: randomUUID(), title: 'Capitals', amount: 5, currency: 'EUR', ownerId: upper, expectedCloseDate: '2026-12-31' };
    const ctx = { actor, correlationId: 'import:deals:line-2', idempotencyKey: 'import:deals:k', fingerprint: { byMeaning: true as const } };
    const prepared = prepareCommand({ type: 'OpenDeal', ...fields }, ctx, new Date());
    expect(prepared.command.ownerId).toBe(upper.toLowerCase());
    // What an import stored for this row before ids were read in lower case: the meaning of the file's spelling.
    const before = commandHash(meaningOf({ type: 'OpenDeal', ...(commandSchemas.OpenDeal.parse(fields) as object), ownerId: upper }));
    expect(prepared.metadata.commandHash).not.toBe(before);
    expect(prepared.earlierHashes!()).toContain(before);
  });
});

describe('import: an address in any case', () => {
  /** The key a customers row had before addresses were keyed in any case: the digest of the address as spelt. */
  const speltKey = (email: string) => `import:customers:${hash('sha256', email, 'hex').slice(0, 40)}`;

  it('keys and fingerprints a customers row by its address in lower case; the key and fingerprint of its spelling are still that row', () => {
    const local = randomUUID();
    const rowOf = (email: string) => rowCommands.customers({ name: 'Ana', email, registered_at: '1997-05-06' }, { customerIdFor: importedCustomerId });
    const [spelt] = rowOf(`Ana.${local}@Example.com`);
    const [lower] = rowOf(`ana.${local}@example.com`);
    expect(spelt!.key).toBe(lower!.key);
    expect(lower!.key).toBe(speltKey(`ana.${local}@example.com`));
    // Keyed as its registration is stored (registeredUnder): the digest of the address as an importer before found it spelt.
    const [speltAsBefore] = rowCommands.customers(
      { name: 'Ana', email: `ANA.${local}@example.com`, registered_at: '1997-05-06', status: 'inactive', deactivated_at: '1998-01-01' },
      { customerIdFor: importedCustomerId, registeredUnder: speltKey(`Ana.${local}@Example.com`) },
    );
    expect(speltAsBefore!.key).toBe(speltKey(`Ana.${local}@Example.com`));
    const ctx = { actor, correlationId: 'import:customers:line-2', idempotencyKey: spelt!.key, fingerprint: { byMeaning: true as const } };
    const prepared = prepareCommand(spelt!.command, ctx, new Date());
    expect(prepared.metadata.commandHash).toBe(prepareCommand(lower!.command, ctx, new Date()).metadata.commandHash);
    // What an import stored for this row before addresses were read in any case: the meaning with the file's spelling.
    const { type, ...fields } = spelt!.command;
    const before = commandHash({ ...meaningOf({ type, ...(commandSchemas.RegisterCustomer.parse(fields) as object) }), email: `Ana.${local}@Example.com` });
    expect(prepared.metadata.commandHash).not.toBe(before);
    expect(prepared.earlierHashes!()).toContain(before);
  });

  it('takes a customers row stored under the key of its spelling (before 2026-12-07) as present when its file comes again', async () => {
    const email = `Ana.${randomUUID()}@Example.com`;
    const row = { name: 'Ana', email, registered_at: '1997-05-06' };
    const [register] = rowCommands.customers(row, { customerIdFor: importedCustomerId });
    const [stored] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }).executeBatch([
      { command: register!.command, ctx: { actor, correlationId: 'import:customers:line-2', idempotencyKey: speltKey(email) } },
    ]);
    expect(stored).toMatchObject({ ok: true, alreadyDone: false });
    const again = await importing(['name,email,registered_at', `Ana,${email},1997-05-06`]);
    expect(again.rejected).toEqual([]);
    expect(again.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    expect(await store.readStream(`customer-${importedCustomerId(email)}`)).toHaveLength(1);
  });
  it('takes a customers row stored under the key of its spelling as present when its file comes again with the address in another case', async () => {
    const local = randomUUID();
    const email = `Ana.${local}@Example.com`;
    const owner = await registerUser();
    const row = { name: 'Ana', email, phone: '+49 170 1234', tags: 'vip;b2b', owner_id: owner, registered_at: '1997-05-06T10:00:00+02:00' };
    const rows = (address: string, name = 'Ana') => [
      'name,email,phone,tags,owner_id,registered_at,status,deactivated_at',
      `${name},${address},+49 170 1234,b2b;vip,${owner},1997-05-06T08:00:00Z,inactive,1998-01-01`,
    ];
    // As an import before 2026-12-07 stored it: keyed, and fingerprinted, with the address as its file spelt it.
    const [register, deactivate] = rowCommands.customers({ ...row, status: 'inactive', deactivated_at: '1998-01-01' }, { customerIdFor: importedCustomerId });
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex });
    const { type, ...fields } = register!.command;
    const storedHash = commandHash({ ...meaningOf({ type, ...(commandSchemas.RegisterCustomer.parse(fields) as object) }), email });
    const ctx = (key: string) => ({ actor, correlationId: 'import:customers:line-2', idempotencyKey: key, fingerprint: { byMeaning: true as const } });
    const prepared = batch.prepare({ command: register!.command, ctx: ctx(speltKey(email)) });
    if (!('prepared' in prepared)) throw new Error('refused');
    prepared.prepared.metadata.commandHash = storedHash;
    const stored = await batch.executeBatch([prepared, { command: deactivate!.command, ctx: ctx(`${speltKey(email)}:deactivated`) }]);
    expect(stored.filter((o) => !o.ok)).toEqual([]);
    const events = await store.readStream(`customer-${importedCustomerId(email)}`);
    expect(events.map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerOwnerAssigned', 'CustomerDeactivated']);
    expect(events[0]!.metadata.commandHash).toBe(storedHash);
    for (const other of [email, `ANA.${local.toUpperCase()}@example.com`, `ana.${local}@example.com`]) {
      const again = await importing(rows(other));
      expect(again.rejected).toEqual([]);
      expect(again.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    }
    // Another name is another row: refused, naming it.
    const renamed = await importing(rows(`ana.${local}@example.com`, 'Ana L.'));
    expect(renamed.rejected).toEqual([
      { line: 2, reason: expect.stringMatching(/^row: Customer .* is in the store already, with other values in name \("Ana L\." in this file\)/) },
    ]);
    expect(await store.readStream(`customer-${importedCustomerId(email)}`)).toHaveLength(3);
  });

  it('reads stored registrations only for rows whose address a customer holds: a file of new customers reads none, the file again in another case does', async () => {
    // The real store, noting the streams of each read of their first events (BatchCommands.registeredAs reads a registration so).
    const registrationReads: string[][] = [];
    const counting: EventStore = {
      ...store,
      engine: store.engine,
      readStreams: (streams, options) => {
        if (options?.maxCount !== undefined) registrationReads.push([...streams]);
        return store.readStreams(streams, options);
      },
    };
    const locals = [randomUUID(), randomUUID(), randomUUID()];
    const file = (spelt: (local: string) => string) => ['name,email,registered_at', ...locals.map((local, i) => `Ana ${i},${spelt(local)},1997-05-06`)];
    const first = await importing(
      file((local) => `ana.${local}@example.com`),
      {},
      counting,
    );
    expect(first.outcome).toMatchObject({ imported: 3, alreadyPresent: 0, rejected: 0 });
    expect(registrationReads).toEqual([]);
    const again = await importing(
      file((local) => `ANA.${local.toUpperCase()}@Example.com`),
      {},
      counting,
    );
    expect(again.outcome).toMatchObject({ imported: 3, alreadyPresent: 3, rejected: 0 });
    expect(registrationReads.flat().sort()).toEqual(locals.map((local) => `customer-${importedCustomerId(`ana.${local}@example.com`)}`).sort());
  });

  it('takes a registration as stored by what the decider records of it: the defaults a row leaves out are those its event holds', () => {
    const registration = {
      type: 'RegisterCustomer' as const,
      customerId: randomUUID(),
      name: 'Ana',
      email: 'Ana@Example.com',
      occurredAt: '1997-05-06T08:00:00.000Z',
    };
    const stored = (command: typeof registration & Record<string, unknown>) => {
      const [registered] = decideCustomer(command, initialCustomerState());
      return { data: registered!.data as Record<string, unknown>, ownerId: undefined, occurredAt: command.occurredAt };
    };
    const full = { ...registration, phone: '+49 170 1234', company: 'Analytical Engines', tags: ['vip', 'VIP', 'b2b'], source: 'fair', marketingConsent: true };
    for (const command of [registration, full, { ...registration, phone: null, company: null, tags: [], source: null, marketingConsent: false }])
      expect(registersAsStored(command, stored(command))).toBe(true);
    // What the decider's defaults stand for is a value like any other: another one is another registration.
    expect(registersAsStored({ ...registration, marketingConsent: !stored(registration).data.marketingConsent }, stored(registration))).toBe(false);
    expect(registersAsStored(registration, stored({ ...registration, tags: ['vip'] }))).toBe(false);
  });

  it('finds it from the saved state of a long stream, whose events after that state are all that is read', async () => {
    const email = `Ana.${randomUUID()}@Example.com`;
    const customerId = importedCustomerId(email);
    const [register] = rowCommands.customers({ name: 'Ana', email, registered_at: '1997-05-06' }, { customerIdFor: importedCustomerId });
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex });
    await batch.executeBatch([{ command: register!.command, ctx: { actor, correlationId: 'import:customers:line-2', idempotencyKey: speltKey(email) } }]);
    const purchases = Array.from({ length: 12 }, (_, i) => ({
      command: { type: 'RecordPurchase' as const, customerId, orderId: `order-${i}`, amount: 10, currency: 'EUR' },
      ctx: { actor, correlationId: `purchase-${i}`, idempotencyKey: `purchase-${customerId}-${i}` },
    }));
    const bought = await batch.executeBatch(purchases);
    expect(bought.filter((o) => !o.ok)).toEqual([]);
    // A handler that reads the stream whole saves its state (more than SNAPSHOT_AFTER_EVENTS events read).
    await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }).executeBatch([purchases[0]!]);
    const [savedState] = (await store.snapshots!.load([`customer-${customerId}`], SNAPSHOT_FORMAT)).values();
    // The registration lies before the saved state: only the state's ids can tell it is stored.
    expect(savedState?.revision).toBeGreaterThanOrEqual(12);
    const again = await importing(['name,email,registered_at', `Ana,${email},1997-05-06`]);
    expect(again.rejected).toEqual([]);
    expect(again.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    expect(await store.readStream(`customer-${customerId}`)).toHaveLength(13);
  });
});

describe('import: a name read in NFC', () => {
  it('is stored precomposed, and a row fingerprinted with the decomposed spelling of its file is still that row', () => {
    const decomposed = 'Jose\u0301 Mu\u0308ller';
    const fields = { customerId: randomUUID(), title: decomposed, amount: 5, currency: 'EUR', ownerId: 'sam', expectedCloseDate: '2026-12-31' };
    const ctx = { actor, correlationId: 'import:deals:line-2', idempotencyKey: 'import:deals:nfc', fingerprint: { byMeaning: true as const } };
    const prepared = prepareCommand({ type: 'OpenDeal', ...fields }, ctx, new Date());
    expect(prepared.command.title).toBe('Jos\u00e9 M\u00fcller');
    // What an import stored for this row before names were read in NFC: the meaning of the file's spelling.
    const before = commandHash(meaningOf({ type: 'OpenDeal', ...(commandSchemas.OpenDeal.parse(fields) as object), title: decomposed }));
    expect(prepared.metadata.commandHash).not.toBe(before);
    expect(prepared.earlierHashes!()).toContain(before);
  });
});

describe('import: what the file says, and nothing it does not', () => {
  it("reads a customer's owner and leaves a missing source missing", async () => {
    const ownerId = await registerUser();
    const email = `${randomUUID()}@example.com`;
    const unknownOwner = `${randomUUID()}@example.com`;
    const { outcome, rejected } = await importing(['name,email,source,owner_id', `Ada,${email},,${ownerId}`, `Bo,${unknownOwner},,${randomUUID()}`]);
    expect(outcome).toMatchObject({ imported: 1, rejected: 1 });
    expect(rejected).toEqual([{ line: 3, reason: expect.stringMatching(/^owner_id: No user /) }]);
    const events = await store.readStream(`customer-${importedCustomerId(email)}`);
    expect(events.map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerOwnerAssigned']);
    expect(events[1]!.data).toMatchObject({ ownerId });
  });

  it('records why a deal was won from won_reason, and no reason when the file gives none', async () => {
    const email = `${randomUUID()}@example.com`;
    expect((await importing(['name,email', `Ada,${email}`])).outcome).toMatchObject({ imported: 1 });
    const [withReason, without] = [randomUUID(), randomUUID()];
    const { outcome } = await importing([
      'deal_id,customer_email,title,amount,owner_id,expected_close_date,status,closed_at,won_reason',
      `${withReason},${email},Fleet,100,sam,1998-06-30,won,1998-02-01,Best offer`,
      `${without},${email},Pilot,100,sam,1998-06-30,won,1998-02-01,`,
    ]);
    expect(outcome).toMatchObject({ imported: 2, rejected: 0 });
    const [opened, won] = await store.readStream(`deal-${withReason}`);
    expect(won!.metadata.reason).toBe('Best offer');
    // The file gives no opening: the deal opened when it closed (at the import's own time it was won before it opened).
    expect(opened!.metadata.occurredAt).toBe(won!.metadata.occurredAt);
    // It read `import of deals (line 3)`, which the deal showed as why it was won.
    expect((await store.readStream(`deal-${without}`))[1]!.metadata.reason).toBeUndefined();
  });

  it("names the file's column and value in a refusal, and the primary of a merged duplicate", async () => {
    const email = `${randomUUID()}@example.com`;
    expect((await importing(['name,email', `Ada,${email}`])).outcome).toMatchObject({ imported: 1 });
    const duplicate = randomUUID();
    const primary = randomUUID();
    const { rejected } = await importing([
      'order_id,customer_email,customer_id,amount,occurred_at,merged_into',
      `P-1,${email},,5,1899-12-31,`,
      `P-2,,${duplicate},5,1999-01-01,${primary}`,
      `P-3,,${duplicate},5,1999-01-01,`,
    ]);
    expect(rejected).toEqual([
      { line: 2, reason: 'occurred_at: "1899-12-31" is refused: a time in the years 1900-2200' },
      {
        line: 3,
        reason: expect.stringMatching(new RegExp(`^customer_id: "${duplicate}" was merged into ${primary} \\(merged_into\\).*write ${primary} in customer_id`)),
      },
      { line: 4, reason: `customer_id: no customer "${duplicate}"` },
    ]);
  });
});

describe("import: a deal's owner, from the file or the run's default owner", () => {
  const header = 'deal_id,customer_email,title,amount,owner_id,expected_close_date';
  const customer = async (): Promise<string> => {
    const email = `${randomUUID()}@example.com`;
    expect((await importing(['name,email', `Ada,${email}`])).outcome).toMatchObject({ imported: 1 });
    return email;
  };
  const ownerOf = async (dealId: string) => ((await store.readStream(`deal-${dealId}`))[0]?.data as { ownerId?: string } | undefined)?.ownerId;

  it('refuses a deal row without an owner when the run has no default, naming owner_id and how to give one; makes no owner up', async () => {
    const email = await customer();
    const [unowned, owned] = [randomUUID(), randomUUID()];
    const { outcome, rejected } = await importing([header, `${unowned},${email},Fleet,100,,1998-06-30`, `${owned},${email},Pilot,100,sam,1998-06-30`], {
      defaultOwnerHint: '--default-owner <userId>',
    });
    expect(outcome).toMatchObject({ rows: 2, imported: 1, rejected: 1 });
    expect(rejected).toEqual([
      {
        line: 2,
        reason:
          'owner_id: required: a deal has an owner (a user id); fill the column, or give the import a default owner for the rows without one (--default-owner <userId>)',
      },
    ]);
    // It came in owned by `import`, a user nobody is.
    expect(await store.readStream(`deal-${unowned}`)).toEqual([]);
    expect(await ownerOf(owned)).toBe('sam');
  });

  it('gives the default owner to the deals and customers whose rows have none; the same file and default again is already present', async () => {
    const owner = await registerUser();
    const email = await customer();
    const [unowned, owned] = [randomUUID(), randomUUID()];
    const file = [header, `${unowned},${email},Fleet,100,,1998-06-30`, `${owned},${email},Pilot,100,sam,1998-06-30`];
    // In upper case, as a spreadsheet may hold it: user ids are stored in lower case.
    const first = await importing(file, { defaultOwner: owner.toUpperCase() });
    expect(first).toMatchObject({ outcome: { imported: 2, alreadyPresent: 0, rejected: 0 }, rejected: [] });
    expect(await ownerOf(unowned)).toBe(owner);
    expect(await ownerOf(owned)).toBe('sam');
    const again = await importing(file, { defaultOwner: owner });
    expect(again).toMatchObject({ outcome: { imported: 2, alreadyPresent: 2, rejected: 0 }, rejected: [] });

    const registered = `${randomUUID()}@example.com`;
    expect((await importing(['name,email,owner_id', `Bo,${registered},`], { defaultOwner: owner })).outcome).toMatchObject({ imported: 1 });
    const events = await store.readStream(`customer-${importedCustomerId(registered)}`);
    expect(events.map((e) => [e.type, (e.data as { ownerId?: string }).ownerId])).toEqual([
      ['CustomerRegistered', undefined],
      ['CustomerOwnerAssigned', owner],
    ]);
  });

  it("takes a run with another default owner as a change of the rows that took it, and says so; the file's owners are untouched by it", async () => {
    const [first, second] = [await registerUser(), await registerUser()];
    const email = await customer();
    const [unowned, owned] = [randomUUID(), randomUUID()];
    const file = [header, `${unowned},${email},Fleet,100,,1998-06-30`, `${owned},${email},Pilot,100,sam,1998-06-30`];
    expect((await importing(file, { defaultOwner: first })).outcome).toMatchObject({ imported: 2, rejected: 0 });
    const other = await importing(file, { defaultOwner: second });
    expect(other.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 1 });
    expect(other.rejected).toEqual([
      {
        line: 2,
        reason: expect.stringMatching(
          new RegExp(
            `^row: imported before with different values .*; its owner_id is empty and took the default owner ${second}: if it came in with another default owner, or none`,
          ),
        ),
      },
    ]);
    expect(await store.readStream(`deal-${unowned}`)).toHaveLength(1);
    expect(await ownerOf(unowned)).toBe(first);

    // A customer stored without an owner is not present as one the default owner owns.
    const bare = `${randomUUID()}@example.com`;
    expect((await importing(['name,email', `Bo,${bare}`])).outcome).toMatchObject({ imported: 1 });
    const owned2 = await importing(['name,email', `Bo,${bare}`], { defaultOwner: first });
    expect(owned2.rejected).toEqual([{ line: 2, reason: expect.stringContaining(`its owner_id is empty and took the default owner ${first}`) }]);
    expect(await store.readStream(`customer-${importedCustomerId(bare)}`)).toHaveLength(1);
  });

  it('does not take a deal an earlier version stored with the owner "import" as present under a default owner', async () => {
    const owner = await registerUser();
    const email = await customer();
    const dealId = randomUUID();
    const row = { deal_id: dealId, customer_email: email, title: 'Fleet', amount: '100', expected_close_date: '1998-06-30' };
    const [open] = rowCommands.deals({ ...row, customer_id: importedCustomerId(email) }, { defaultOwner: owner });
    // As the importer built it before: the owner `import`, which no file said.
    const [stored] = await createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }).executeBatch([
      {
        command: { ...open!.command, ownerId: 'import' },
        ctx: { actor, correlationId: 'import:deals:line-2', idempotencyKey: open!.key, fingerprint: { byMeaning: true } },
      },
    ]);
    expect(stored).toMatchObject({ ok: true, alreadyDone: false });
    const again = await importing([header, `${dealId},${email},Fleet,100,,1998-06-30`], { defaultOwner: owner });
    expect(again.outcome).toMatchObject({ imported: 0, alreadyPresent: 0, rejected: 1 });
    expect(again.rejected[0]!.reason).toMatch(/an earlier version gave such deals the owner "import"/);
    expect(await ownerOf(dealId)).toBe('import');
  });

  it('refuses the run before its first row when the default owner is no user, or a deactivated one, or not a user id', async () => {
    const email = await customer();
    const dealId = randomUUID();
    const file = [header, `${dealId},${email},Fleet,100,,1998-06-30`];
    const unknown = randomUUID();
    const deactivated = await registerUser(false);
    for (const [given, message] of [
      [unknown, `no user ${unknown}: register the user first (POST /admin/users), or name one GET /admin/users lists`],
      [deactivated, `user ${deactivated} is deactivated: reactivate the user (PATCH /admin/users/${deactivated} with "active": true), or name an active one`],
      ['sam', '"sam" is not a user id: name a user by the id GET /admin/users lists (a UUID)'],
    ]) {
      const rejected: RejectedRow[] = [];
      const run = runImport(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, emailIndex }),
        parseRecords(Readable.from([file.join('\n')]), 'csv'),
        {
          actor,
          defaultOwner: given!,
          onRejected: (row) => void rejected.push(row),
        },
      );
      await expect(run).rejects.toThrow(new DefaultOwnerRefused(given!, message!));
      expect(rejected).toEqual([]);
    }
    expect(await store.readStream(`deal-${dealId}`)).toEqual([]);
  });
});
