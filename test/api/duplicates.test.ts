import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApi('api_duplicates');
});
afterAll(async () => h?.close());

const post = (payload: object, role: Role = 'sales') => h.app.inject({ method: 'POST', url: '/customers', headers: h.auth(role), payload });
const get = (url: string, role: Role = 'sales') => h.app.inject({ method: 'GET', url, headers: h.auth(role) });

interface Group {
  reason: string;
  customers: { id: string; name: string; email: string }[];
}

describe('POST /customers with an email already taken', () => {
  it('answers 409 with the existing id, whatever the case; allowDuplicate: true registers anyway', async () => {
    const tag = randomUUID().slice(0, 8);
    const first = await post({ name: 'Grace Hopper', email: `grace-${tag}@navy.example` });
    expect(first.statusCode).toBe(201);
    const id = json<{ id: string }>(first).id;
    // Two identical requests without an Idempotency-Key: the second is the duplicate.
    const twice = expectProblem(await post({ name: 'Grace Hopper', email: `grace-${tag}@navy.example` }), 409);
    expect(twice).toMatchObject({ code: 'customer.email_taken', details: { customerId: id } });
    expect(twice.errors).toEqual([expect.objectContaining({ field: 'email' })]);
    expect(expectProblem(await post({ name: 'G. Hopper', email: `GRACE-${tag}@Navy.example` }), 409).details).toEqual({ customerId: id });
    expect((await post({ name: 'Grace Hopper', email: `GRACE-${tag}@navy.example`, allowDuplicate: true })).statusCode).toBe(201);
  });
});

describe('GET /customers/duplicates', () => {
  it('lists customers sharing a normalised email, a phone number or a name, oldest first, for a merge', async () => {
    const tag = randomUUID().slice(0, 8);
    const email = `ada-${tag}@example.com`;
    const a = json<{ id: string }>(await post({ name: `Ada ${tag} Lovelace`, email, phone: '+44 20 7946 0001' }));
    const b = json<{ id: string }>(await post({ name: `lovelace, ada ${tag}`, email: email.toUpperCase(), allowDuplicate: true }));
    const c = json<{ id: string; position: string }>(await post({ name: `Charles ${tag}`, email: `charles-${tag}@example.com`, phone: '+44 (20) 7946-0001' }));
    const res = await get(`/customers/duplicates?limit=500&waitFor=${c.position}`);
    expect(res.statusCode).toBe(200);
    const groups = json<{ items: Group[] }>(res).items;
    const ids = (g: Group) => g.customers.map((x) => x.id);
    const mine = groups.filter((g) => g.customers.some((x) => [a.id, b.id, c.id].includes(x.id)));
    expect(mine.map((g) => [g.reason, ids(g)])).toEqual(
      expect.arrayContaining([
        ['email', [a.id, b.id]],
        ['phone', [a.id, c.id]],
        ['name', [a.id, b.id]],
      ]),
    );
    expect(mine).toHaveLength(3);
    expect(mine[0]!.customers[0]).toMatchObject({ name: `Ada ${tag} Lovelace`, email });
  });

  it('masks personal fields for analysts and refuses a bad limit naming it', async () => {
    const analyst = json<{ items: Group[] }>(await get('/customers/duplicates', 'analyst'));
    for (const g of analyst.items) for (const c of g.customers) expect(c.email).toBe('[masked]');
    expect(expectProblem(await get('/customers/duplicates?limit=0'), 400).errors).toEqual([expect.objectContaining({ field: 'limit' })]);
  });
});
