import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditServices, type AuditServices } from '../../audit/index.ts';
import { eventLog } from '../../audit/history.ts';
import type { CrmEventType } from '../../domain/catalogue.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { openPglite, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { catchUp } from '../../projections/catch-up.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { customerRegistered, recordEvent } from './support.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';

/**
 * The embedded default (PGlite, one connection): the SQL paths of the audit services must work
 * there too — the sealer's advisory lock and snapshot horizon, and verify without a second
 * connection for the live snapshot. One in-memory instance for the whole file.
 */
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;
let audit: AuditServices;
const projections = readModelProjections();
const schemas = { events: 'crm_events', read: 'crm' };
const ada = randomUUID();

const record = (stream: string, type: CrmEventType, data: Record<string, unknown>) =>
  recordEvent(store, personalData, stream, type, data, { actor: 'embedded', roles: ['admin'] });

beforeAll(async () => {
  database = await openPglite();
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
  audit = createAuditServices({ store, personalData, database, schemas }, { projections });
  await migrateProjections(database.db, schemas.read, projections);
  await record(`customer-${ada}`, 'CustomerRegistered', customerRegistered(ada));
  await record(`customer-${ada}`, 'PurchaseRecorded', { customerId: ada, orderId: 'o-1', amount: 10, currency: 'EUR' });
  await record(`customer-${ada}`, 'CustomerTagged', { customerId: ada, tag: 'gold' });
  await catchUp({ db: database.db, store, schema: schemas.read, projections, codec: personalDataCodec(personalData) });
}, 60_000);

afterAll(async () => {
  await store?.close();
  await database?.close();
});

describe('audit on PGlite', () => {
  it('reads the global log through SQL', async () => {
    const page = await eventLog(audit.deps, { types: ['PurchaseRecorded'], personalData: 'reveal' });
    expect(page.items).toHaveLength(1);
    expect(page.items[0]!.position).toBeTypeOf('bigint');
  });

  it('seals and verifies the chains, and catches an edited row', async () => {
    expect(await audit.sealChain()).toBe(3);
    expect(await audit.verifyChains()).toMatchObject({ ok: true, global: { checked: 3 } });
    await sql`UPDATE ${sql.id(schemas.events, 'events')} SET data = jsonb_set(data, '{amount}', '99') WHERE type = 'PurchaseRecorded'`.execute(database.db);
    const broken = await audit.verifyChains();
    expect(broken.firstBroken).toMatchObject({ chain: 'stream', stream: `customer-${ada}`, revision: 1 });
    await sql`UPDATE ${sql.id(schemas.events, 'events')} SET data = jsonb_set(data, '{amount}', '10') WHERE type = 'PurchaseRecorded'`.execute(database.db);
    expect((await audit.verifyChains()).ok).toBe(true);
  });

  it('verifies the read models, and names an altered row', async () => {
    expect(await audit.verifyReadModels()).toMatchObject({ ok: true, differences: 0 });
    await sql`UPDATE ${sql.id(schemas.read, 'customers')} SET source = 'forged' WHERE customer_id = ${ada}`.execute(database.db);
    const result = await audit.verifyReadModels();
    expect(result.firstDifference).toMatchObject({
      table: 'customers',
      key: { customer_id: ada },
      columns: [{ column: 'source', live: 'forged', replayed: 'web' }],
    });
  });

  it('reads a job left running by an earlier process on the data folder as abandoned, and starts a new one', async () => {
    // What a kill -9 mid-verification leaves behind: the row says running, its heartbeat recent.
    const jobs = await audit.verificationJobs();
    const orphan = randomUUID();
    await sql`INSERT INTO ${sql.id(schemas.read, 'audit_verifications')} (id, kind, status, started_at)
      VALUES (${orphan}, 'chains', 'running', now())`.execute(database.db);
    // One process per data folder: only this process could be running it, and it is not.
    expect((await jobs.get(orphan))!.status).toBe('abandoned');
    const started = await audit.startVerification('chains', 'auditor');
    expect(started.id).not.toBe(orphan);
    await started.done;
    expect((await jobs.get(started.id))!.status).toBe('passed');
  });
});
