import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import type { CrmRuntime } from '../../runtime/crm.ts';
import { poll } from '../cli/support.ts';
import { testSchemas } from '../support/postgres.ts';
import { openTestCrm } from '../support/runtime.ts';
import { writesShown } from './writes-shown.ts';

/**
 * The database's disk fills up: PostgreSQL refuses writes with SQLSTATE 53100 ("could not extend
 * file ...: No space left on device"), raised here by a trigger as the server raises it. Commands
 * answer 503 naming the full disk, projections wait (never a poison event), and everything resumes
 * once space is freed (the trigger dropped), with no operator action.
 */
const schemas = testSchemas('disk_full');
const ADMIN_KEY = 'disk-full-test-admin-key-0123456789';
const sql = new pg.Pool({ connectionString: schemas.url, max: 2 });
let runtime: CrmRuntime;
let app: CrmApp;

beforeAll(async () => {
  ({ runtime, app } = await openTestCrm(schemas, ADMIN_KEY));
  await sql.query(`CREATE FUNCTION "${schemas.read}".disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full', MESSAGE = 'could not extend file "base/5/16510": No space left on device'; END $$`);
});

afterAll(async () => {
  await app?.close();
  await runtime?.close();
  await sql.end();
  await schemas.dropSchemas();
});

const auth = { authorization: `Bearer ${ADMIN_KEY}` };
const createRequest = (id: string) => ({
  method: 'POST' as const,
  url: '/customers',
  headers: { ...auth, 'content-type': 'application/json' },
  payload: JSON.stringify({ id, name: 'Ada Lovelace', email: `${id}@example.com` }),
});
const createCustomer = (id: string) => app.inject(createRequest(id));
const fillDisk = (table: string) => sql.query(`CREATE TRIGGER disk_full BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION "${schemas.read}".disk_full()`);
const freeSpace = (table: string) => sql.query(`DROP TRIGGER disk_full ON ${table}`);
const checkpoints = async () =>
  (await sql.query<{ name: string; state: string }>(`SELECT name, state FROM "${schemas.read}".projection_checkpoints ORDER BY name`)).rows;

describe('a full disk', () => {
  it('refuses a command with a 503 naming the full disk, with Retry-After; the command is recorded once space is freed', async () => {
    const id = randomUUID();
    // Recorded before the disk fills, and retried with its Idempotency-Key while it is full.
    const earlier = randomUUID();
    const retried = () => app.inject({ ...createRequest(earlier), headers: { ...createRequest(earlier).headers, 'idempotency-key': `disk-${earlier}` } });
    expect((await retried()).statusCode).toBe(201);
    await fillDisk(`"${schemas.events}".events`);
    const refused = await createCustomer(id);
    // The retry is answered with what was stored, and says nothing of the disk (it cleared the refusal until 2026-12-07).
    expect((await retried()).statusCode).toBe(201);
    // Queries answer meanwhile: /ready stays 200 and says that writes are refused, and why; the gauge is 1.
    const shown = await writesShown(app);
    await freeSpace(`"${schemas.events}".events`);
    expect(shown).toMatchObject({
      status: 200,
      writes: {
        state: 'refused',
        reason: 'disk-full',
        detail: "the database's disk is full: commands get 503 database.disk-full until its operator frees some",
      },
      gauge: '1',
    });
    expect(shown.warnings).toContain(`writes are refused since ${shown.writes.since}: ${shown.writes.detail}`);
    expect(refused.statusCode, refused.body).toBe(503);
    expect(refused.headers['retry-after']).toBe('30');
    expect(refused.json()).toMatchObject({ type: 'https://crm.example/problems/unavailable', code: 'database.disk-full', retrySafeWithIdempotencyKey: true });
    expect(refused.json<{ detail: string }>().detail).toContain("The database's disk is full, so the command was not recorded");
    const accepted = await createCustomer(id);
    expect(accepted.statusCode, accepted.body).toBe(201);
    // Cleared by the command recorded.
    expect(await writesShown(app)).toMatchObject({ status: 200, writes: { state: 'accepted', reason: null, since: null, detail: null }, gauge: '0' });
  });

  it('holds the projections back instead of failing them, and they catch up by themselves once space is freed', async () => {
    const id = randomUUID();
    await fillDisk(`"${schemas.read}".customers`);
    try {
      const created = await createCustomer(id);
      expect(created.statusCode, created.body).toBe(201);
      // Long enough for several attempts of the batch (backoff from 100 ms).
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      expect((await checkpoints()).filter((c) => c.state !== 'running')).toEqual([]);
      expect((await app.inject({ method: 'GET', url: `/customers/${id}`, headers: auth })).statusCode).toBe(404);
    } finally {
      await freeSpace(`"${schemas.read}".customers`);
    }
    const read = await poll(
      'the customer in the read model',
      async () => {
        const response = await app.inject({ method: 'GET', url: `/customers/${id}`, headers: auth });
        return response.statusCode === 200 ? response : undefined;
      },
      15_000,
    );
    expect(read.json()).toMatchObject({ id, name: 'Ada Lovelace' });
    expect((await checkpoints()).filter((c) => c.state !== 'running')).toEqual([]);
  });
});
