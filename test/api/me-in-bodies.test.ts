import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedEvents } from '../support/events.ts';
import { expectProblem, importEnded, json, startApi, type ApiHarness } from './support.ts';

/**
 * `me` in a command's body is the user the API key belongs to, as in the lists' filters: a field-sales
 * app sending `"ownerId": "me"` had the text `me` stored as the deal's owner, which `?ownerId=me`
 * never found and the pipeline counted as one owner for every caller.
 */
let api: ApiHarness;

beforeAll(async () => {
  api = await startApi('me_in_bodies');
}, 120_000);
afterAll(async () => api?.close());

const send = async (
  headers: Record<string, string>,
  method: 'POST' | 'PATCH',
  url: string,
  payload: Record<string, unknown>,
  extra: Record<string, string> = {},
) => api.app.inject({ method, url, headers: { ...headers, ...extra }, payload });
const created = async (headers: Record<string, string>, method: 'POST' | 'PATCH', url: string, payload: Record<string, unknown>, extra = {}) => {
  const response = await send(headers, method, url, payload, extra);
  expect(response.statusCode, response.body).toBeLessThan(300);
  return { ...json<{ id: string; position: string }>(response), etag: String(response.headers.etag) };
};
/** A user of `role` who sees only their own records, and a key of theirs (a rep's phone). */
const userWithKey = async (role: string): Promise<{ userId: string; headers: Record<string, string> }> => {
  const admin = api.auth('admin');
  const { id: userId } = await created(admin, 'POST', '/admin/users', { name: 'Rep', email: `rep-${randomUUID()}@crm.example`, role, visibility: 'own' });
  const key = await send(admin, 'POST', '/admin/api-keys', { userId, name: 'phone' });
  expect(key.statusCode, key.body).toBe(201);
  return { userId, headers: { authorization: `Bearer ${json<{ key: string }>(key).key}` } };
};
const read = async (headers: Record<string, string>, url: string) => {
  const response = await api.app.inject({ method: 'GET', url, headers });
  expect(response.statusCode, response.body).toBe(200);
  return json(response);
};

describe('me in a command body', () => {
  it("is the caller's user for a deal's owner, a customer's owner and an activity's assignee", async () => {
    const rep = await userWithKey('sales');
    const customer = await created(rep.headers, 'POST', '/customers', { name: 'Field Customer', email: `field-${randomUUID()}@example.com`, ownerId: 'me' });
    const deal = await created(rep.headers, 'POST', '/deals', {
      customerId: customer.id,
      title: 'D',
      amount: 10,
      currency: 'EUR',
      ownerId: 'me',
      expectedCloseDate: '2027-01-31',
    });
    const task = await created(rep.headers, 'POST', `/customers/${customer.id}/activities`, { kind: 'task', subject: 'Call back', assigneeId: 'me' });
    const changed = await created(rep.headers, 'PATCH', `/deals/${deal.id}`, { ownerId: 'me', title: 'D2' }, { 'if-match': deal.etag });
    const wait = `waitFor=${changed.position}`;

    expect(await read(rep.headers, `/customers/${customer.id}?${wait}`)).toMatchObject({ ownerId: rep.userId });
    expect(await read(rep.headers, `/deals/${deal.id}?${wait}`)).toMatchObject({ ownerId: rep.userId });
    expect(await read(rep.headers, `/activities/${task.id}?${wait}`)).toMatchObject({ assigneeId: rep.userId });
    expect((await read(rep.headers, `/deals?ownerId=me&${wait}`)).items.map((d: { id: string }) => d.id)).toEqual([deal.id]);
    const pipeline = await read(api.auth('admin'), `/pipeline?${wait}`);
    expect(JSON.stringify(pipeline)).not.toContain('"me"');
    const owners = (await storedEvents(api.store))
      .filter((e) => e.type === 'DealOpened' || e.type === 'DealOwnerChanged')
      .map((e) => (e.data as { ownerId: string }).ownerId);
    expect(owners).not.toContain('me');
  });

  it("is the caller's user for a feedback item's assignee and responder", async () => {
    const agent = await userWithKey('support');
    const customer = await created(api.auth('admin'), 'POST', '/customers', {
      name: 'Caller',
      email: `caller-${randomUUID()}@example.com`,
      ownerId: agent.userId,
    });
    const item = await created(agent.headers, 'POST', '/feedback', {
      customerId: customer.id,
      kind: 'complaint',
      channel: 'web',
      subject: 'Late',
      body: 'Where?',
    });
    const assigned = await created(agent.headers, 'POST', `/feedback/${item.id}/assign`, { assigneeId: 'me' }, { 'if-match': item.etag });
    const responded = await created(
      agent.headers,
      'POST',
      `/feedback/${item.id}/respond`,
      { message: 'On its way', responderId: 'me' },
      { 'if-match': assigned.etag },
    );
    expect(await read(agent.headers, `/feedback/${item.id}?waitFor=${responded.position}`)).toMatchObject({ assigneeId: agent.userId });
    expect((await read(agent.headers, `/feedback?assigneeId=me&waitFor=${responded.position}`)).items.map((f: { id: string }) => f.id)).toEqual([item.id]);
    const responders = (await storedEvents(api.store))
      .filter((e) => e.type === 'FeedbackResponded')
      .map((e) => (e.data as { responderId: string }).responderId);
    expect(responders).toContain(agent.userId);
    expect(responders).not.toContain('me');
  });

  it('is a 400 naming the field for a key that belongs to no user, and nothing is stored', async () => {
    const customer = await created(api.auth('sales'), 'POST', '/customers', { name: 'Service', email: `service-${randomUUID()}@example.com` });
    const before = (await storedEvents(api.store)).length;
    const deal = { customerId: customer.id, title: 'D', amount: 10, currency: 'EUR', ownerId: 'me', expectedCloseDate: '2027-01-31' };
    const refused = expectProblem(await send(api.auth('sales'), 'POST', '/deals', deal), 400);
    expect(refused.errors).toEqual([{ field: 'ownerId', in: 'body', message: "'me' needs an API key that belongs to a user" }]);
    const activity = expectProblem(
      await send(api.auth('sales'), 'POST', `/customers/${customer.id}/activities`, { kind: 'task', subject: 'S', assigneeId: 'me' }),
      400,
    );
    expect(activity.errors?.map((e) => e.field)).toEqual(['assigneeId']);
    expect((await storedEvents(api.store)).length).toBe(before);
  });

  it("is refused in an import's file, which names users by id (who 'me' is would depend on who imports it)", async () => {
    const rep = await userWithKey('admin');
    const email = `imported-${randomUUID()}@example.com`;
    await created(api.auth('admin'), 'POST', '/customers', { name: 'Imported', email });
    const started = await api.app.inject({
      method: 'POST',
      url: '/imports?kind=deals',
      headers: { ...api.auth('admin'), 'content-type': 'text/csv' },
      payload: `customer_email,title,amount,expected_close_date,owner_id\n${email},Deal,100,2027-06-30,me\n${email},Other,100,2027-06-30,${rep.userId}`,
    });
    expect(started.statusCode, started.body).toBe(202);
    const job = await importEnded(api, json<{ id: string }>(started).id, 'admin');
    expect(job).toMatchObject({ status: 'done', counts: { imported: 1, rejected: 1 }, rejectedRows: [{ line: 2 }] });
    expect(job.rejectedRows[0].reason).toContain("'me' names no one here");
  });
});
