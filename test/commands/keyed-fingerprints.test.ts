import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands } from '../../commands/batch.ts';
import { meaningOf } from '../../commands/fingerprint.ts';
import { commandHash } from '../../commands/ids.ts';
import { prepareCommand } from '../../commands/prepare.ts';
import { runImport, type RejectedRow } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { createCrmCommands, type CommandContext } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { IdempotencyConflict } from '../../eventstore/errors.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { TEST_CUSTOMER_ID_KEY, importedCustomerId } from '../support/fixtures.ts';
import { testSchemas } from '../support/postgres.ts';

/**
 * The idempotency fingerprint kept in an event's metadata for ever is keyed by the installation: an
 * unkeyed one of a command that carried a phone number gave the number away to anyone holding the
 * events, by trying every number, also after the customer was forgotten.
 */
const schemas = testSchemas('keyed_fingerprints');
const KEY = Buffer.alloc(32, 0x3c);
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
});
afterAll(async () => {
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const ctx = (idempotencyKey: string): CommandContext => ({ actor: { userId: 'alice', roles: ['sales'] }, correlationId: randomUUID(), idempotencyKey });

describe('idempotency fingerprints under the installation key', () => {
  it('stores a fingerprint that the command alone does not give, and still tells a retry from another command', async () => {
    const commands = createCrmCommands({ store, personalData, fingerprintKey: KEY });
    const customerId = randomUUID();
    const change = { type: 'RegisterCustomer', customerId, name: 'Paula Phonetest', email: `${randomUUID()}@example.com`, phone: '+44 7700 983164' };
    const first = await commands.execute(change, ctx('paula-1'));
    const [stored] = await store.readStream(`customer-${customerId}`);
    const fingerprint = stored!.metadata.commandHash as string;
    // An unkeyed fingerprint is the hash of the validated command alone: guesses can be tested against it.
    const fingerprintOf = (key?: Uint8Array) => prepareCommand(change, ctx('paula-1'), new Date(), key).metadata.commandHash;
    expect(fingerprint).toBe(fingerprintOf(KEY));
    expect(fingerprint).not.toBe(fingerprintOf());
    expect(await commands.execute(change, ctx('paula-1'))).toEqual({ ...first, replayed: true });
    await expect(commands.execute({ ...change, phone: '+44 7700 983165' }, ctx('paula-1'))).rejects.toBeInstanceOf(IdempotencyConflict);
    expect(await store.readStream(`customer-${customerId}`)).toHaveLength(1);
  });

  it('takes the retry of a command stored with an unkeyed fingerprint (before they were keyed) as the same command', async () => {
    const before = createCrmCommands({ store, personalData });
    const after = createCrmCommands({ store, personalData, fingerprintKey: KEY });
    const customerId = randomUUID();
    const register = { type: 'RegisterCustomer', customerId, name: 'Ada', email: `${randomUUID()}@example.com` };
    const first = await before.execute(register, ctx('ada-1'));
    expect(await after.execute(register, ctx('ada-1'))).toEqual({ ...first, replayed: true });
    await expect(after.execute({ ...register, name: 'Ada L.' }, ctx('ada-1'))).rejects.toBeInstanceOf(IdempotencyConflict);
    // And a command of the other path (decided in a group with the stream's others).
    const tag = { type: 'TagCustomer', customerId, tag: 'vip' };
    const tagged = await before.execute(tag, ctx('ada-tag'));
    expect(await after.execute(tag, ctx('ada-tag'))).toEqual(tagged);
    await expect(after.execute({ ...tag, tag: 'other' }, ctx('ada-tag'))).rejects.toBeInstanceOf(IdempotencyConflict);
  });

  it('imports under the key, and knows the rows an import stored before the key as already present', async () => {
    const importing = async (lines: string[], fingerprintKey?: Uint8Array) => {
      const rejected: RejectedRow[] = [];
      const outcome = await runImport(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData, ...(fingerprintKey ? { fingerprintKey } : {}) }),
        parseRecords(Readable.from([lines.join('\n')]), 'csv'),
        { actor: { userId: 'crm-import', roles: ['admin'] }, onRejected: (row) => void rejected.push(row) },
      );
      return { outcome, rejected };
    };
    const [before, after] = [`${randomUUID()}@example.com`, `${randomUUID()}@example.com`];
    const file = (email: string) => ['name,email,phone,registered_at', `Ada,${email},+44 20 7946 0000,1997-05-06`];
    expect((await importing(file(before))).outcome).toMatchObject({ imported: 1, rejected: 0 });
    expect((await importing(file(before), KEY)).outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    expect((await importing(file(after), KEY)).outcome).toMatchObject({ imported: 1, alreadyPresent: 0, rejected: 0 });
    const [stored] = await store.readStream(`customer-${importedCustomerId(after)}`);
    const meaning = meaningOf({ type: 'RegisterCustomer', ...(stored!.data as object) });
    expect(stored!.metadata.commandHash).not.toBe(commandHash(meaning));
    expect((await importing(file(after), KEY)).outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    const changed = await importing(['name,email,phone,registered_at', `Ada,${after},+44 20 7946 0001,1997-05-06`], KEY);
    expect(changed.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^row: imported before with different values/) }]);
  });
});
