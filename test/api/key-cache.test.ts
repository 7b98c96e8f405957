import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

/**
 * The key cache and administration changes racing: a lookup that read a user (or a key) before a
 * change and finishes after the change dropped the cache must not put the old answer back in it.
 * The lookup is held half-way for real: its last query (the user's teams) waits on a table lock,
 * held for less than the connections' lock_timeout (2 s). That lock holds back the projections'
 * gap-free feed too (it takes a transaction id), so a change that needs a projection is made here
 * as its route makes it: the read model, then the cache dropped.
 */

let h: ApiHarness;
/** Holds the lock (in a transaction); `writer` changes the read model beside it. */
let locker: pg.Client;
let writer: pg.Client;
const admin = () => h.auth('admin');

beforeAll(async () => {
  h = await startApi('api_key_cache');
  locker = new pg.Client({ connectionString: h.schemas.url });
  await locker.connect();
  writer = new pg.Client({ connectionString: h.schemas.url });
  await writer.connect();
}, 120_000);
afterAll(async () => {
  await locker?.end();
  await writer?.end();
  await h?.close();
});

const userWithKey = async (): Promise<{ userId: string; key: string }> => {
  const registered = await h.app.inject({
    method: 'POST',
    url: '/admin/users',
    payload: { name: 'Racer', email: `racer-${randomUUID()}@crm.example`, role: 'sales' },
    headers: admin(),
  });
  const userId = json<{ id: string }>(registered).id;
  const { key } = json<{ key: string }>(await h.app.inject({ method: 'POST', url: '/admin/api-keys', payload: { userId, name: 'racer' }, headers: admin() }));
  return { userId, key };
};

/** Runs `change` while a lookup of `key` (cache missed) is held after reading the user and before its teams. */
const raceLookupWith = async (key: string, change: () => Promise<void>): Promise<void> => {
  h.app.keys.invalidate();
  await locker.query('BEGIN');
  await locker.query(`LOCK TABLE "${h.schemas.read}".team_members IN ACCESS EXCLUSIVE MODE`);
  const lookup = h.app.keys.authenticate(key).then(
    (record) => ({ record }),
    (error: unknown) => ({ error }),
  );
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows } = await locker.query(
        `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace s ON s.oid = c.relnamespace
         WHERE NOT l.granted AND c.relname = 'team_members' AND s.nspname = $1`,
        [h.schemas.read],
      );
      if (rows[0].n > 0) break;
      if (Date.now() > deadline) throw new Error('the lookup never reached the teams query');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await change();
  } finally {
    await locker.query('ROLLBACK');
  }
  // The lookup that started before the change may answer the state it read...
  expect(await lookup).toMatchObject({ record: { role: 'sales' } });
};

describe('the key cache', () => {
  it('keeps no lookup that read a user before the user was deactivated', async () => {
    const { userId, key } = await userWithKey();
    await raceLookupWith(key, async () => {
      // What the users projection writes for UserDeactivated, then what PATCH /admin/users does once it has.
      await writer.query(`UPDATE "${h.schemas.read}".users SET active = false WHERE user_id = $1`, [userId]);
      h.app.keys.invalidate();
    });
    // ...but the next request is the first after the change: the key no longer works.
    expect(await h.app.keys.authenticate(key)).toBeUndefined();
    expectProblem(await h.app.inject({ method: 'GET', url: '/customers', headers: { authorization: `Bearer ${key}` } }), 401, 'unauthenticated');
  });

  it('keeps no lookup that read a key before it was revoked (DELETE /admin/api-keys/:id)', async () => {
    const { userId, key } = await userWithKey();
    const id = (await h.app.keys.list()).find((k) => k.userId === userId)!.id;
    await raceLookupWith(key, async () => {
      const res = await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${id}`, headers: admin() });
      expect(res.statusCode, res.body).toBeLessThan(300);
    });
    expect(await h.app.keys.authenticate(key)).toBeUndefined();
  });
});

describe('a request whose key changes while its body is still coming', () => {
  /**
   * Sends `POST /customers` with the body in two parts, running `change` between them (after the key
   * was checked in onRequest, before the body is complete), and answers the response.
   */
  const slowRegistration = async (key: string, email: string, change: () => Promise<void>) => {
    const body = new PassThrough();
    const payload = JSON.stringify({ name: 'Slow Sender', email });
    body.write(payload.slice(0, 10));
    const response = h.app.inject({
      method: 'POST',
      url: '/customers',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) },
      payload: body,
    });
    // The guard ran: the key was looked up and cached before the change.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await change();
    body.end(payload.slice(10));
    return response;
  };
  const registered = async (email: string) =>
    (await h.app.inject({ method: 'GET', url: `/customers?search=${encodeURIComponent(email)}`, headers: admin() })).json().items.length;

  it('is refused (401) when the key was revoked meanwhile, and nothing is appended', async () => {
    const { userId, key } = await userWithKey();
    const id = (await h.app.keys.list()).find((k) => k.userId === userId)!.id;
    const email = `slow-${randomUUID()}@example.com`;
    const res = await slowRegistration(key, email, async () => {
      expect((await h.app.inject({ method: 'DELETE', url: `/admin/api-keys/${id}`, headers: admin() })).statusCode).toBe(200);
    });
    expectProblem(res, 401, 'unauthenticated');
    expect(await registered(email)).toBe(0);
  });

  it("is refused (401) when the key's user was deactivated meanwhile", async () => {
    const { userId, key } = await userWithKey();
    const res = await slowRegistration(key, `slow-${randomUUID()}@example.com`, async () => {
      const patched = await h.app.inject({ method: 'PATCH', url: `/admin/users/${userId}`, payload: { active: false }, headers: admin() });
      expect(patched.statusCode, patched.body).toBe(200);
    });
    expectProblem(res, 401, 'unauthenticated');
  });

  it('goes through when nothing changed meanwhile', async () => {
    const { key } = await userWithKey();
    const res = await slowRegistration(key, `slow-${randomUUID()}@example.com`, async () => undefined);
    expect(res.statusCode, res.body).toBe(201);
  });
});
