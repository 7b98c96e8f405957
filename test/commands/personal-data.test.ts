import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { MasterKeyMismatch } from '../../eventstore/errors.ts';
import { rewrapMasterKey } from '../../eventstore/master-key.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERASED } from '../../domain/shared.ts';
import type { RecordedEvent } from '../../eventstore/contract.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { migrateEventStore } from '../../eventstore/postgres/migrations.ts';
import {
  createPersonalData,
  decodeRecordedEvent,
  isEncrypted,
  PersonalDataForgotten,
  rewrapDataKeys,
  type PersonalData,
} from '../../eventstore/personal-data.ts';
import { customerRegistered } from '../support/fixtures.ts';
import { testSchemas } from '../support/postgres.ts';

const schemas = testSchemas('personal_data');
let database: SqlDatabase;
let personalData: PersonalData;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 2 });
  // The data keys' table, as every engine has it beside its events.
  await migrateEventStore(database.db, schemas.events, { engineTables: false });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
});
afterAll(async () => {
  await database.close();
  await schemas.dropSchemas();
});

const recorded = (type: string, data: unknown, schemaVersion: number): RecordedEvent => ({
  id: randomUUID(),
  type,
  data,
  metadata: {
    actor: { userId: 'u1', roles: ['sales'] },
    correlationId: 'c1',
    causationId: null,
    occurredAt: '2026-01-01T00:00:00.000Z',
    schemaVersion,
    command: 'RegisterCustomer',
  },
  stream: 'customer-x',
  revision: 0,
  position: 1n,
  recordedAt: new Date(),
});

describe('personal data', () => {
  it('encrypts only the personal fields and reveals them again', async () => {
    const id = randomUUID();
    const stored = (await personalData.protect('CustomerRegistered', customerRegistered(id))) as Record<string, unknown>;
    expect(isEncrypted(stored.name)).toBe(true);
    expect(isEncrypted(stored.email)).toBe(true);
    expect(isEncrypted(stored.phone)).toBe(true);
    // A company is personal data too (a sole trader's business name is their name).
    expect(isEncrypted(stored.company)).toBe(true);
    expect(JSON.stringify(stored)).not.toContain('ada@example.com');
    expect(await personalData.reveal('CustomerRegistered', stored)).toEqual(customerRegistered(id));
  });

  it('leaves events without personal fields untouched', async () => {
    const data = { customerId: randomUUID(), tag: 'vip' };
    expect(await personalData.protect('CustomerTagged', data)).toBe(data);
  });

  it('refuses ciphertext moved to another customer (authenticated data binds the customer)', async () => {
    const a = randomUUID();
    const b = randomUUID();
    const storedA = (await personalData.protect('CustomerRegistered', customerRegistered(a))) as Record<string, unknown>;
    await personalData.protect('CustomerRegistered', customerRegistered(b));
    await expect(personalData.reveal('CustomerRegistered', { ...storedA, customerId: b })).rejects.toThrow();
  });

  it('forget erases the fields everywhere, even in a fresh instance, and refuses new personal data', async () => {
    const id = randomUUID();
    const stored = await personalData.protect('CustomerRegistered', customerRegistered(id));
    await personalData.forget(id);
    const revealed = (await personalData.reveal('CustomerRegistered', stored)) as Record<string, unknown>;
    expect(revealed).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED, company: ERASED });

    const other = await createPersonalData(database.db, { schema: schemas.events });
    expect(await other.reveal('CustomerRegistered', stored)).toMatchObject({ email: ERASED });
    await expect(other.protect('CustomerRegistered', customerRegistered(id))).rejects.toBeInstanceOf(PersonalDataForgotten);

    const { rows } = await sql<{ data_key: Buffer | null }>`
      SELECT data_key FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${id}`.execute(database.db);
    expect(rows).toEqual([{ data_key: null }]);
  });

  it('a cached key survives until evicted when another process forgets the customer', async () => {
    const id = randomUUID();
    const stored = await personalData.protect('CustomerRegistered', customerRegistered(id));
    const other = await createPersonalData(database.db, { schema: schemas.events });
    await other.forget(id);
    expect(await personalData.reveal('CustomerRegistered', stored)).toMatchObject({ email: 'ada@example.com' });
    personalData.evict(id);
    expect(await personalData.reveal('CustomerRegistered', stored)).toMatchObject({ email: ERASED });
  });

  it('a bounded key cache reads an evicted key again, and a forget made elsewhere is seen once the key left the cache', async () => {
    const small = await createPersonalData(database.db, { schema: schemas.events, cachedKeys: 2 });
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const stored = [];
    for (const id of ids) stored.push(await small.protect('CustomerRegistered', customerRegistered(id)));
    // Three keys through a cache of two: the first was evicted and is read from the table again.
    for (const [i, id] of ids.entries()) expect(await small.reveal('CustomerRegistered', stored[i])).toEqual(customerRegistered(id));
    await small.loadKeys(ids);
    // Another process forgets the first customer; once its key was pushed out, this one sees the erasure.
    await personalData.forget(ids[0]!);
    await small.loadKeys([ids[1]!, ids[2]!]);
    await small.reveal('CustomerRegistered', stored[1]);
    await small.reveal('CustomerRegistered', stored[2]);
    expect((await small.reveal('CustomerRegistered', stored[0])) as Record<string, unknown>).toMatchObject({ name: ERASED, email: ERASED });
  });

  it('loadKeys with create keeps stored keys, creates the missing ones once, and leaves a forgotten customer forgotten', async () => {
    const [existing, forgotten, fresh] = [randomUUID(), randomUUID(), randomUUID()];
    const stored = await personalData.protect('CustomerRegistered', customerRegistered(existing));
    await personalData.forget(forgotten);
    const bulk = await createPersonalData(database.db, { schema: schemas.events });
    await bulk.loadKeys([existing, forgotten, fresh, fresh], { create: true });
    // The stored key was kept (not replaced by a new one): what was encrypted before still reads.
    expect(await bulk.reveal('CustomerRegistered', stored)).toEqual(customerRegistered(existing));
    const created = await bulk.protect('CustomerRegistered', customerRegistered(fresh));
    expect(await (await createPersonalData(database.db, { schema: schemas.events })).reveal('CustomerRegistered', created)).toEqual(customerRegistered(fresh));
    await expect(bulk.protect('CustomerRegistered', customerRegistered(forgotten))).rejects.toBeInstanceOf(PersonalDataForgotten);
    const { rows } = await sql<{ customer_id: string; data_key: Buffer | null }>`
      SELECT customer_id, data_key FROM ${sql.table(`${schemas.events}.customer_keys`)}
       WHERE customer_id IN (${existing}, ${forgotten}, ${fresh}) ORDER BY customer_id`.execute(database.db);
    expect(rows.map((r) => [r.customer_id, r.data_key === null]).sort()).toEqual(
      [
        [existing, false],
        [forgotten, true],
        [fresh, false],
      ].sort(),
    );
  });

  it('decodes a stored v1 CustomerRegistered: decrypts fullName, upcasts to v2 and validates metadata', async () => {
    const id = randomUUID();
    const v1 = { customerId: id, fullName: 'Grace Hopper', email: 'grace@example.com' };
    const stored = await personalData.protect('CustomerRegistered', v1);
    expect(JSON.stringify(stored)).not.toContain('Grace');
    const decoded = await decodeRecordedEvent(recorded('CustomerRegistered', stored, 1), personalData);
    expect(decoded.event).toEqual({
      type: 'CustomerRegistered',
      data: {
        customerId: id,
        name: 'Grace Hopper',
        email: 'grace@example.com',
        phone: null,
        company: null,
        tags: [],
        source: null,
        marketingConsent: false,
      },
    });
    expect(decoded.metadata.command).toBe('RegisterCustomer');
  });

  it('decodes a forgotten customer with the erased marker, still valid against the schema', async () => {
    const id = randomUUID();
    const stored = await personalData.protect('CustomerRegistered', customerRegistered(id));
    await personalData.forget(id);
    const decoded = await decodeRecordedEvent(recorded('CustomerRegistered', stored, 2), personalData);
    expect(decoded.event.data).toMatchObject({ name: ERASED, email: ERASED, tags: ['vip'] });
  });

  it('rejects an event whose metadata is invalid', async () => {
    const bad = { ...recorded('CustomerTagged', { customerId: randomUUID(), tag: 'x' }, 1), metadata: { actor: 'nobody' } };
    await expect(decodeRecordedEvent(bad, personalData)).rejects.toThrow();
  });

  it('encrypts the personal fields of an event together: one IV and tag, and no field can be dropped, swapped or moved alone', async () => {
    const id = randomUUID();
    const stored = (await personalData.protect('CustomerRegistered', customerRegistered(id))) as Record<string, string>;
    // Catalogue order: the first field carries IV and tag, the others only their ciphertext.
    expect(stored.name).toMatch(/^enc:v2:[\w-]{16}:[\w-]{22}:[\w-]+$/);
    for (const field of ['email', 'phone', 'company']) expect(stored[field]).toMatch(/^enc:v2:[\w-]+$/);
    const reveal = (data: Record<string, unknown>) => personalData.reveal('CustomerRegistered', data);
    await expect(reveal({ ...stored, email: stored.phone, phone: stored.email })).rejects.toThrow();
    await expect(reveal({ ...stored, company: null })).rejects.toThrow();
    const other = (await personalData.protect('CustomerRegistered', customerRegistered(id, { email: 'lovelace@example.com' }))) as Record<string, string>;
    await expect(reveal({ ...stored, email: other.email })).rejects.toThrow();
    // A field cannot join fields already encrypted together (reveal decrypts them as one group).
    await expect(personalData.protect('CustomerRegistered', { ...stored, company: 'Difference Engines' })).rejects.toThrow(/encrypted together/);
    // Two events never share an IV.
    expect(other.name!.split(':')[2]).not.toBe(stored.name!.split(':')[2]);
    expect(await reveal(other)).toEqual(customerRegistered(id, { email: 'lovelace@example.com' }));
  });

  describe('events stored in the v1 format (one cipher per field), written by the code before v2', () => {
    // The customer's bare data key and what the v1 code stored with it; stored events are never rewritten.
    const customerId = '3f1c2a9e-7b4d-4e21-9c8a-5d6e7f801234';
    const dataKey = Buffer.from('6a0c1b3f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29181706f5e4d3c2b1a090', 'hex');
    const registered = {
      customerId,
      name: 'enc:v1:aNzI0OXzJ9Dk8vDt:TN8o2v-Qi5f8sd0H27M3Ag:DiFoDX6O26qxjK5YAoo',
      email: 'enc:v1:6eYGvWXQl3xSnECM:3osEV1zgd1HkiifJun2WTw:09nWfpuWX-G0MHmEkncQ6VQ',
      phone: 'enc:v1:iFCIXSQeITfOMIdc:wuD-iR9BCOr_OEhmNyxDjw:O6s4meoT5-2Pg29oqNznwRZW',
      company: null,
      tags: ['vip'],
      source: 'web',
      marketingConsent: true,
    };
    const registeredV1 = {
      customerId,
      fullName: 'enc:v1:FCnSATatQyUArjKa:Qbi1Cucb88iRjJT63jK-XA:MG1vqZLvmzMGCG69EzA',
      email: 'enc:v1:PNxHohwcdboyM9s9:vm2oP84le18ZTkTOCuEMQw:DrNVg_OC2-2-fwnGtwZ2qajUFw',
    };
    const feedback = {
      customerId,
      subject: 'enc:v1:C_uUH0buK3VJ4ELk:Uu8ijt-tISihxjv9JWs-EQ:JE-EeXbcI9ne',
      body: 'enc:v1:e4TYrikEM1C05ccd:Vbin_ybb8zhF1xHA_gtdmg:lF35OirUcK9NALwWvplC_mKOobstu3Nc784',
    };
    let reader: PersonalData;
    beforeAll(async () => {
      await sql`INSERT INTO ${sql.table(`${schemas.events}.customer_keys`)} (customer_id, data_key) VALUES (${customerId}, ${dataKey})`.execute(database.db);
      reader = await createPersonalData(database.db, { schema: schemas.events });
    });

    it('decrypts them as before, through the projections decoder too (v1 schema upcast)', async () => {
      expect(await reader.reveal('CustomerRegistered', registered)).toEqual({
        ...registered,
        name: 'Ada Lovelace',
        email: 'ada@example.com',
        phone: '+44 20 7946 0000',
      });
      expect(await reader.reveal('FeedbackSubmitted', feedback)).toEqual({ customerId, subject: 'Invoice', body: 'Ünïcode ✓ "quoted"' });
      const decoded = await decodeRecordedEvent(recorded('CustomerRegistered', registeredV1, 1), reader);
      expect(decoded.event.data).toMatchObject({ customerId, name: 'Grace Hopper', email: 'grace@example.com' });
      // A v1 field still refuses ciphertext moved to another field.
      await expect(reader.reveal('CustomerRegistered', { ...registered, email: registered.phone })).rejects.toThrow();
    });

    it('reads an event holding v1 fields beside fields encrypted together', async () => {
      const mixed = (await reader.protect('CustomerRegistered', { ...registered, company: 'Analytical Engines' })) as Record<string, string>;
      expect(mixed.name).toBe(registered.name);
      expect(mixed.company).toMatch(/^enc:v2:/);
      expect(await reader.reveal('CustomerRegistered', mixed)).toMatchObject({ name: 'Ada Lovelace', company: 'Analytical Engines' });
    });

    it('are erased once the customer is forgotten, like v2 ones', async () => {
      const v2 = await reader.protect('FeedbackSubmitted', { customerId, subject: 'Later', body: 'after v2' });
      await reader.forget(customerId);
      expect(await reader.reveal('CustomerRegistered', registered)).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED, company: null });
      expect(await reader.reveal('FeedbackSubmitted', feedback)).toEqual({ customerId, subject: ERASED, body: ERASED });
      expect(await reader.reveal('FeedbackSubmitted', v2)).toEqual({ customerId, subject: ERASED, body: ERASED });
      const fresh = await createPersonalData(database.db, { schema: schemas.events });
      expect(await fresh.reveal('FeedbackSubmitted', feedback)).toEqual({ customerId, subject: ERASED, body: ERASED });
    });
  });

  it('with a master key, data keys are stored wrapped and still work; bare keys stored before still read', async () => {
    const masterKey = randomBytes(32);
    // Opened before any key was wrapped (a process started before the master key was configured).
    const bare = await createPersonalData(database.db, { schema: schemas.events });
    const wrapped = await createPersonalData(database.db, { schema: schemas.events, masterKey });
    const id = randomUUID();
    const stored = await wrapped.protect('CustomerRegistered', customerRegistered(id));
    const { rows } = await sql<{ data_key: Buffer }>`
      SELECT data_key FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${id}`.execute(database.db);
    expect(rows[0]!.data_key.length).toBe(60);
    const again = await createPersonalData(database.db, { schema: schemas.events, masterKey });
    expect(await again.reveal('CustomerRegistered', stored)).toEqual(customerRegistered(id));
    // Without the master key the wrapped key is useless, and opening without it (or with another) is refused.
    await expect(bare.reveal('CustomerRegistered', stored)).rejects.toThrow(/master key/);
    await expect(createPersonalData(database.db, { schema: schemas.events })).rejects.toBeInstanceOf(MasterKeyMismatch);
    await expect(createPersonalData(database.db, { schema: schemas.events, masterKey: randomBytes(32) })).rejects.toBeInstanceOf(MasterKeyMismatch);
    // A key created before the master key was configured still reads.
    const oldId = randomUUID();
    const oldStored = await bare.protect('CustomerRegistered', customerRegistered(oldId));
    expect(await again.reveal('CustomerRegistered', oldStored)).toEqual(customerRegistered(oldId));
    await expect(createPersonalData(database.db, { schema: schemas.events, masterKey: randomBytes(16) })).rejects.toThrow(/32 bytes/);
  });

  it('a process still holding the master key a rewrap replaced stores no new data key, one by one or in bulk, and says to restart', async () => {
    // Its own schema: the keys above are wrapped with another master key.
    const own = testSchemas('personal_data_rewrap');
    try {
      const oldKey = randomBytes(32);
      const newKey = randomBytes(32);
      await migrateEventStore(database.db, own.events, { engineTables: false });
      const running = await createPersonalData(database.db, { schema: own.events, masterKey: oldKey });
      const before = randomUUID();
      const stored = await running.protect('CustomerRegistered', customerRegistered(before));
      expect(await rewrapMasterKey(database.db, { schema: own.events, from: oldKey, to: newKey }, [rewrapDataKeys])).toEqual([
        { name: 'customer data keys', count: 1 },
      ]);
      // Wrapped with the old key now, this customer's data could never be read after the restart.
      const after = randomUUID();
      await expect(running.protect('CustomerRegistered', customerRegistered(after))).rejects.toThrow(/restart it with the new key/);
      await expect(running.loadKeys([randomUUID(), randomUUID()], { create: true })).rejects.toBeInstanceOf(MasterKeyMismatch);
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(`${own.events}.customer_keys`)}`.execute(database.db);
      expect(rows[0]!.n).toBe(1);
      // Keys it already holds still serve it; restarted with the new key, everything reads and new keys are stored.
      expect(await running.reveal('CustomerRegistered', stored)).toEqual(customerRegistered(before));
      const restarted = await createPersonalData(database.db, { schema: own.events, masterKey: newKey });
      expect(await restarted.reveal('CustomerRegistered', stored)).toEqual(customerRegistered(before));
      const next = await restarted.protect('CustomerRegistered', customerRegistered(after));
      expect(await restarted.reveal('CustomerRegistered', next)).toEqual(customerRegistered(after));
      await restarted.loadKeys([randomUUID()], { create: true });
      await expect(createPersonalData(database.db, { schema: own.events, masterKey: oldKey })).rejects.toBeInstanceOf(MasterKeyMismatch);
    } finally {
      await own.dropSchemas();
    }
  });
});
