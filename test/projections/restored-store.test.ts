import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { readCheckpoints } from '../../projections/checkpoints.ts';
import { rebuildProjections } from '../../projections/rebuild.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { openTestCrm, testConfig } from '../support/runtime.ts';
import { json } from '../api/support.ts';

/**
 * The events restored from an older backup beside newer read models (a DBA restoring the event store's
 * schema alone), then written again by an API replica before any projection worker starts: the head
 * moves past the read models' checkpoints, which then name events the store never held. The replica is
 * not ready from the start, and the worker fails every such projection, saying to rebuild; both took
 * the read models as current before (a customer lost with the backup read 200, commands on it 404).
 */
let schemas: TestSchemas;
const adminKey = `restore-admin-${randomUUID()}`;
const backup = () => `${schemas.events}_backup`;
const opened: { close(): Promise<void> }[] = [];
/** The DBA's own connection. */
let dba: Kysely<unknown>;

beforeAll(() => {
  schemas = testSchemas('restored_store');
  const database = connectPostgres(schemas.url, { max: 2 });
  opened.push(database);
  dba = database.db;
});
afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => undefined);
  await schemas?.dropSchemas();
});

/** The base tables of `schema`, in one order. */
const tablesOf = async (db: Kysely<unknown>, schema: string): Promise<string[]> =>
  (await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables WHERE schemaname = ${schema} ORDER BY tablename`.execute(db)).rows.map((r) => r.name);

/** A logical backup of the event store's schema, by SQL: a copy of each table's rows. */
const backUpEvents = async () => {
  await sql`CREATE SCHEMA ${sql.id(backup())}`.execute(dba);
  for (const table of await tablesOf(dba, schemas.events))
    await sql`CREATE TABLE ${sql.id(backup(), table)} AS TABLE ${sql.id(schemas.events, table)}`.execute(dba);
};

/** The backup's rows put back into the event store's tables; the read models left as they are. */
const restoreEvents = async () => {
  await dba.transaction().execute(async (trx) => {
    const tables = await tablesOf(trx, schemas.events);
    await sql`TRUNCATE ${sql.join(tables.map((t) => sql.id(schemas.events, t)))}`.execute(trx);
    for (const table of tables) await sql`INSERT INTO ${sql.id(schemas.events, table)} SELECT * FROM ${sql.id(backup(), table)}`.execute(trx);
  });
};

const as = (app: CrmApp) => (method: 'GET' | 'POST', url: string, payload?: object) =>
  app.inject({ method, url, headers: { authorization: `Bearer ${adminKey}` }, ...(payload ? { payload } : {}) });

const register = async (app: CrmApp, name: string) => {
  const created = await as(app)('POST', '/customers', { name, email: `${randomUUID()}@example.com` });
  expect(created.statusCode, created.body).toBe(201);
  return json<{ id: string; position: string }>(created);
};

/** /ready after the answer it shares for 500 ms has run out. */
const ready = async (app: CrmApp) => {
  await new Promise((resolve) => setTimeout(resolve, 600));
  const answer = await app.inject({ method: 'GET', url: '/ready' });
  return { statusCode: answer.statusCode, reasons: json<{ reasons: string[] }>(answer).reasons.join(' ') };
};

const track = <T extends { close(): Promise<void> }>(o: T): T => {
  opened.push(o);
  return o;
};

describe('events restored from an older backup beside newer read models', () => {
  let api: CrmApp;
  let worker: CrmRuntime;
  const ids: { before?: string; lost?: string } = {};
  const written: { id: string; position: string }[] = [];

  it('keeps an API replica (CRM_PROJECTIONS=off) not ready, before and after it writes past the checkpoints', async () => {
    // The CRM as it ran: one customer before the backup, one after it.
    const first = await openTestCrm(schemas, adminKey);
    ids.before = (await register(first.app, 'Before The Backup')).id;
    await backUpEvents();
    const lost = await register(first.app, 'Lost With The Restore');
    ids.lost = lost.id;
    expect((await as(first.app)('GET', `/customers/${lost.id}?waitFor=${lost.position}`)).statusCode).toBe(200);
    await first.app.close();
    await first.runtime.close();
    await restoreEvents();

    // The checkpoints are past the restored store's last event.
    const replica = track(
      await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off', CRM_ADMIN_KEY: adminKey }), { overrides: { publishers: false, chainSealer: false } }),
    );
    api = track(await replica.buildApi({ logger: false }));
    const restored = await ready(api);
    // Written before any worker starts: new positions are past the checkpoints, which now stand in a gap.
    for (const name of ['After One', 'After Two', 'After Three']) written.push(await register(api, name));
    const gap = await ready(api);
    expect(restored.statusCode, restored.reasons).toBe(503);
    expect(restored.reasons).toMatch(/read models do not match the event store/);
    expect(restored.reasons).toContain('crm rebuild');
    expect(gap.statusCode, gap.reasons).toBe(503);
    expect(gap.reasons).toMatch(/read models do not match the event store: the checkpoints of [a-z_, ]*customers/);
  }, 120_000);

  it('fails at the start of a projection worker every projection whose checkpoint is in the lost history, saying to rebuild', async () => {
    worker = track(await openCrm(testConfig(schemas, { CRM_ADMIN_KEY: adminKey }), { overrides: { publishers: false, chainSealer: false } }));
    await worker.startProjections();
    const customers = (await readCheckpoints(worker.database.db, schemas.read)).get('customers')!;
    expect(customers.state).toBe('failed');
    expect(customers.lastError).toMatch(/names an event the event store does not hold, though it has events after it/);
    expect(customers.lastError).toContain('crm rebuild');
  }, 60_000);

  it('is put right by crm rebuild: the replica is ready, the customer lost with the restore is gone from the reads, the checkpoints name their events', async () => {
    await rebuildProjections({ ...worker.readSide, schema: schemas.read, reportingSchema: schemas.reporting, runner: worker.runner });
    const last = written.at(-1)!;
    expect((await as(api)('GET', `/customers/${last.id}?waitFor=${last.position}`)).statusCode).toBe(200);
    const rebuilt = await ready(api);
    expect(rebuilt.statusCode, rebuilt.reasons).toBe(200);
    expect((await as(api)('GET', `/customers/${ids.before!}`)).statusCode).toBe(200);
    expect((await as(api)('GET', `/customers/${ids.lost!}`)).statusCode).toBe(404);
    expect((await readCheckpoints(worker.database.db, schemas.read)).get('customers')?.eventId).toMatch(/^[0-9a-f-]{36}$/);
  }, 120_000);

  it('fails a projection whose checkpoint names another event than the one at its position; one with no event recorded is checked by position and gets it', async () => {
    // Closed, so that its leases are free for the next worker at once.
    await worker.close();
    // As positions handed out again leave it (a server whose transaction counter was moved back past
    // them, another store put in place), and as checkpoints made before they recorded their event.
    const table = sql.id(schemas.read, 'projection_checkpoints');
    await sql`UPDATE ${table} SET event_id = ${randomUUID()} WHERE name = 'customers'`.execute(dba);
    await sql`UPDATE ${table} SET event_id = NULL WHERE name = 'deals'`.execute(dba);
    const next = track(await openCrm(testConfig(schemas, { CRM_ADMIN_KEY: adminKey }), { overrides: { publishers: false, chainSealer: false } }));
    await next.startProjections();
    const at = async () => readCheckpoints(dba, schemas.read);
    expect((await at()).get('customers')).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/is not the one it applied there/) as string });
    expect((await at()).get('deals')).toMatchObject({ state: 'running', eventId: null });
    const moved = await register(api, 'After The Check');
    await next.runner.waitForPosition(BigInt(moved.position), 10_000, ['deals']);
    const deals = (await at()).get('deals')!;
    expect(deals.position).toBe(BigInt(moved.position));
    expect(deals.eventId).toMatch(/^[0-9a-f-]{36}$/);
    const ready503 = await ready(api);
    expect(ready503.statusCode, ready503.reasons).toBe(503);
  }, 60_000);
});
