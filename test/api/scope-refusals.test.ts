import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventCount, expectProblem, json, startApi, type ApiHarness } from './support.ts';

/**
 * A refusal never tells a user about a record outside their scope: an email address another team's
 * customer holds, or a client-chosen id another team's record has, is refused without naming it.
 * Alice (sales, team A, visibility team) and Bob (sales, team B).
 */

let h: ApiHarness;
const alice: Record<string, string> = {};
const bob: Record<string, string> = {};
let aliceId: string;
let bobId: string;
let bobCustomer: string;
let bobEmail: string;
let bobDeal: string;
let bobActivity: string;
let aliceCustomer: string;
let aliceEmail: string;

const send = (method: 'POST' | 'PATCH', url: string, payload: object, headers: Record<string, string>) => h.app.inject({ method, url, payload, headers });
const ok = async (method: 'POST' | 'PATCH', url: string, payload: object, headers: Record<string, string>) => {
  const res = await send(method, url, payload, headers);
  if (res.statusCode >= 300) throw new Error(`${method} ${url} -> ${res.statusCode}: ${res.body}`);
  return json(res);
};

beforeAll(async () => {
  h = await startApi('api_scope_refusals');
  const admin = h.auth('admin');
  const teamA = (await ok('POST', '/admin/teams', { name: 'A' }, admin)).id;
  const teamB = (await ok('POST', '/admin/teams', { name: 'B' }, admin)).id;
  aliceId = (await ok('POST', '/admin/users', { name: 'Alice', email: `alice-${randomUUID()}@crm.example`, role: 'sales', teamIds: [teamA] }, admin)).id;
  bobId = (await ok('POST', '/admin/users', { name: 'Bob', email: `bob-${randomUUID()}@crm.example`, role: 'sales', teamIds: [teamB] }, admin)).id;
  alice.authorization = `Bearer ${(await ok('POST', '/admin/api-keys', { userId: aliceId, name: 'alice' }, admin)).key}`;
  bob.authorization = `Bearer ${(await ok('POST', '/admin/api-keys', { userId: bobId, name: 'bob' }, admin)).key}`;
  bobEmail = `bcust-${randomUUID()}@example.com`;
  bobCustomer = (await ok('POST', '/customers', { name: 'B Customer', email: bobEmail }, bob)).id;
  bobDeal = (
    await ok('POST', '/deals', { customerId: bobCustomer, title: 'B deal', amount: 10, currency: 'EUR', ownerId: bobId, expectedCloseDate: '2026-12-31' }, bob)
  ).id;
  bobActivity = (await ok('POST', `/customers/${bobCustomer}/activities`, { kind: 'note', subject: 'B note' }, bob)).id;
  aliceEmail = `acust-${randomUUID()}@example.com`;
  aliceCustomer = (await ok('POST', '/customers', { name: 'A Customer', email: aliceEmail }, alice)).id;
}, 120_000);
afterAll(async () => h?.close());

/** Neither the customer's id nor its kind of conflict appears anywhere in the answer. */
const namesNothing = (body: string, ...ids: string[]) => {
  for (const id of ids) expect(body).not.toContain(id);
  expect(body).not.toContain('already_registered');
  expect(body).not.toContain('already_opened');
  expect(body).not.toContain('already_logged');
};

describe('an email address held by a customer outside the scope', () => {
  it('is refused on registration with a 409 naming the field and nobody, and nothing is recorded', async () => {
    const before = await eventCount(h);
    const res = await send('POST', '/customers', { name: 'x', email: bobEmail }, alice);
    const problem = expectProblem(res, 409, 'invalid-state');
    expect(problem.code).toBe('customer.email_taken');
    expect(problem.errors?.[0]?.field).toBe('email');
    expect(problem.details).toBeUndefined();
    expect(problem.detail).toMatch(/cannot see/);
    expect(problem.detail).toMatch(/administrator/);
    namesNothing(res.body, bobCustomer);
    expect(await eventCount(h)).toBe(before);
  });

  it('is refused on an email change the same way', async () => {
    const res = await send('PATCH', `/customers/${aliceCustomer}`, { email: bobEmail }, { ...alice, 'if-match': '"0"' });
    const problem = expectProblem(res, 409, 'invalid-state');
    expect(problem.code).toBe('customer.email_taken');
    expect(problem.details).toBeUndefined();
    namesNothing(res.body, bobCustomer);
  });

  it('still names a holder the caller may see, and names it to a caller who sees every customer', async () => {
    const own = expectProblem(await send('POST', '/customers', { name: 'x', email: aliceEmail }, alice), 409, 'invalid-state');
    expect(own.details).toEqual({ customerId: aliceCustomer });
    const service = expectProblem(await send('POST', '/customers', { name: 'x', email: bobEmail }, h.auth('admin')), 409, 'invalid-state');
    expect(service.details).toEqual({ customerId: bobCustomer });
  });
});

describe('a client-chosen id a record outside the scope has', () => {
  it('answers 404 for a customer, as every command on that customer does, and records nothing', async () => {
    const before = await eventCount(h);
    const res = await send('POST', '/customers', { id: bobCustomer, name: 'x', email: `new-${randomUUID()}@example.com` }, alice);
    const problem = expectProblem(res, 404, 'not-found');
    expect(problem.code).toBe('customer.not_found');
    namesNothing(res.body);
    expect(await eventCount(h)).toBe(before);
    // Bob, who may see it, is told it is registered.
    const mine = expectProblem(
      await send('POST', '/customers', { id: bobCustomer, name: 'x', email: `new-${randomUUID()}@example.com` }, bob),
      409,
      'invalid-state',
    );
    expect(mine.code).toBe('customer.already_registered');
  });

  it('answers 404 for a deal and an activity', async () => {
    const deal = await send(
      'POST',
      '/deals',
      { id: bobDeal, customerId: aliceCustomer, title: 'x', amount: 1, currency: 'EUR', ownerId: aliceId, expectedCloseDate: '2026-12-31' },
      alice,
    );
    expect(expectProblem(deal, 404, 'not-found').code).toBe('deal.not_found');
    namesNothing(deal.body);
    const activity = await send('POST', `/customers/${aliceCustomer}/activities`, { id: bobActivity, kind: 'note', subject: 'x' }, alice);
    expect(expectProblem(activity, 404, 'not-found').code).toBe('activity.not_found');
    namesNothing(activity.body);
  });

  it('still answers the retry of a create whose record fell outside the scope with its first result', async () => {
    const headers = { ...alice, 'idempotency-key': `for-bob-${randomUUID()}` };
    const body = { name: 'For Bob', email: `forbob-${randomUUID()}@example.com`, ownerId: bobId };
    const first = await ok('POST', '/customers', body, headers);
    const again = await send('POST', '/customers', body, headers);
    expect(again.statusCode).toBe(201);
    expect(json(again).id).toBe(first.id);
  });
});
