import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, startApi, type ApiHarness } from './support.ts';

/**
 * An admin script creates a user, then the user's key, at once: the key's creation reads the users
 * read model, which may not show the user yet. It waits (bounded) for the read models to catch up
 * instead of refusing a user who exists.
 */
let h: ApiHarness;

beforeAll(async () => {
  // Administration commands answer once the read models show them or after this bound: short here, so that
  // the user's creation answers while the projections are stopped.
  h = await startApi('api_key_new_user', { waitForTimeoutMs: 200 });
}, 120_000);
afterAll(async () => h?.close());

describe('a key for a user created a moment ago', () => {
  it('is created once the read models show the user, not refused as "no active user"', async () => {
    const admin = h.auth('admin');
    // The projections stop for a moment (as when they are behind): the user's creation answers after
    // its bounded wait without the read model showing the user.
    await h.runner.stop();
    const created = await h.app.inject({
      method: 'POST',
      url: '/admin/users',
      headers: admin,
      payload: { name: 'New Rep', email: `rep-${randomUUID()}@crm.example`, role: 'sales' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const userId = json<{ id: string }>(created).id;
    const key = h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: admin, payload: { name: 'rep key', userId } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await h.runner.start();
    const held = { userId, key: await key };
    expect(held.key.statusCode, held.key.body).toBe(201);
    expect(json<{ role: string; userId: string }>(held.key)).toMatchObject({ role: 'sales', userId: held.userId });
  });

  it('still refuses at once a user who does not exist', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/admin/api-keys', headers: h.auth('admin'), payload: { name: 'ghost', userId: randomUUID() } });
    expect(res.statusCode).toBe(422);
    expect(json<{ errors: { field: string }[] }>(res).errors).toEqual([{ field: 'userId', message: 'no active user' }]);
  });
});
