import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { eventCount, expectProblem, json, startApi, type ApiHarness } from './support.ts';

/**
 * Activities through the HTTP API on real PostgreSQL: logging on customers and deals, changes and
 * completion, the three lists with their paging, my open tasks overdue first, masking for analysts,
 * the timeline, the reporting view, the audit history and forgetting.
 */
let h: ApiHarness;
/** A sales key that belongs to user ANN (a real user with whole-company visibility, registered through /admin). */
let annKey = '';
let ANN = '';
const BOB = randomUUID();
let customerId = '';
let otherCustomerId = '';
let dealId = '';

type Caller = Role | 'ann';
const headersOf = (caller: Caller) => (caller === 'ann' ? { authorization: `Bearer ${annKey}` } : h.auth(caller));
/** Position of the latest accepted command: reads wait for it (read-your-writes). */
let lastPosition = 0n;
const send = async (caller: Caller, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object, headers: Record<string, string> = {}) => {
  const res = await h.app.inject({ method, url, headers: { ...headersOf(caller), ...headers }, ...(payload === undefined ? {} : { payload }) });
  if (method !== 'GET' && res.statusCode < 300) {
    const position = BigInt(json<{ position: string }>(res).position);
    if (position > lastPosition) lastPosition = position;
  }
  return res;
};
const ok = <T = any>(res: LightMyRequestResponse, status = 200): T => {
  if (res.statusCode !== status) throw new Error(`expected ${status}, got ${res.statusCode}: ${res.body}`);
  return json<T>(res);
};
/** Logs an activity and waits until the read models show it. */
const log = async (parent: 'customers' | 'deals', id: string, body: Record<string, unknown>, caller: Caller = 'sales') => {
  const res = ok<{ id: string; revision: number; position: string }>(await send(caller, 'POST', `/${parent}/${id}/activities`, body), 201);
  return res;
};
const read = async (url: string, caller: Caller = 'sales') => ok(await send(caller, 'GET', `${url}${url.includes('?') ? '&' : '?'}waitFor=${lastPosition}`));
const hoursFromNow = (hours: number) => new Date(Date.now() + hours * 3_600_000).toISOString();

beforeAll(async () => {
  h = await startApi('api_activities');
  const register = async (name: string) =>
    ok<{ id: string }>(await send('sales', 'POST', '/customers', { name, email: `${randomUUID()}@example.com` }), 201).id;
  customerId = await register('Olga Activity');
  otherCustomerId = await register('Piet Other');
  dealId = ok<{ id: string }>(
    await send('sales', 'POST', '/deals', {
      customerId,
      title: 'Fleet renewal',
      amount: 100,
      currency: 'EUR',
      ownerId: 'ann',
      expectedCloseDate: '2026-12-31',
    }),
    201,
  ).id;
  const admin = (url: string, payload: object) => h.app.inject({ method: 'POST', url, headers: h.auth('admin'), payload });
  ANN = ok<{ id: string }>(await admin('/admin/users', { name: 'Ann', email: `ann-${randomUUID()}@crm.example`, role: 'sales', visibility: 'all' }), 201).id;
  annKey = ok<{ key: string }>(await admin('/admin/api-keys', { userId: ANN, name: 'key of ann' }), 201).key;
}, 120_000);
afterAll(async () => h?.close());

describe('logging', () => {
  it('a note, call, meeting or task on a customer: 201 with Location and ETag, read back as logged', async () => {
    const occurredAt = '2026-03-02T10:00:00.000Z';
    const res = await send('support', 'POST', `/customers/${customerId}/activities`, {
      kind: 'call',
      subject: 'Intro call',
      body: 'Wants a demo in May',
      occurredAt,
    });
    const created = ok<{ id: string; revision: number; position: string }>(res, 201);
    expect(res.headers.location).toBe(`/activities/${created.id}`);
    expect(res.headers.etag).toBe('"0"');
    const activity = await read(`/activities/${created.id}`);
    expect(activity).toMatchObject({
      id: created.id,
      customerId,
      dealId: null,
      kind: 'call',
      subject: 'Intro call',
      body: 'Wants a demo in May',
      occurredAt,
      dueAt: null,
      open: false,
      overdue: false,
      completedAt: null,
      revision: 0,
    });
    // A client-chosen id, under either name; the same id twice is refused.
    const chosen = randomUUID();
    ok(await send('sales', 'POST', `/customers/${customerId}/activities`, { id: chosen, kind: 'note', subject: 'Met at the fair' }), 201);
    expect(
      expectProblem(await send('sales', 'POST', `/customers/${customerId}/activities`, { activityId: chosen, kind: 'note', subject: 'Again' }), 409).code,
    ).toBe('activity.already_logged');
  });

  it("on a deal: belongs to the deal's customer, listed under the deal and the customer", async () => {
    const created = await log('deals', dealId, { kind: 'meeting', subject: 'Renewal workshop', body: 'Procurement wants 3 options' });
    const byDeal = await read(`/deals/${dealId}/activities`);
    expect(byDeal.items.map((a: { id: string }) => a.id)).toContain(created.id);
    expect(byDeal.items.find((a: { id: string }) => a.id === created.id)).toMatchObject({ customerId, dealId, kind: 'meeting' });
    const byCustomer = await read(`/customers/${customerId}/activities`);
    expect(byCustomer.items.map((a: { id: string }) => a.id)).toContain(created.id);
    // Marketing may log on customers, not on deals (the deal routes are sales').
    expectProblem(await send('marketing', 'POST', `/deals/${dealId}/activities`, { kind: 'note', subject: 'x' }), 403);
    ok(await send('marketing', 'POST', `/customers/${customerId}/activities`, { kind: 'note', subject: 'Newsletter feedback' }), 201);
  });

  it('refuses bad input with a 400 naming the field, and appends nothing', async () => {
    const before = await eventCount(h);
    const url = `/customers/${customerId}/activities`;
    const cases: [Record<string, unknown>, string][] = [
      [{ kind: 'call', subject: 'x', dueAt: hoursFromNow(2) }, 'dueAt'],
      [{ kind: 'task', subject: 'x', customerId: otherCustomerId }, 'customerId'],
      [{ kind: 'task', subject: 'x', dealId }, 'dealId'],
      [{ kind: 'email', subject: 'x' }, 'kind'],
      [{ kind: 'note', subject: '   ' }, 'subject'],
      [{ kind: 'note' }, 'subject'],
      [{ kind: 'note', subject: 'x', body: 'a\u0000b' }, 'body'],
      [{ kind: 'task', subject: 'x', assigneeId: 'bob' }, 'assigneeId'],
      [{ kind: 'task', subject: 'x', dueAt: '0000-01-01T00:00:00Z' }, 'dueAt'],
      [{ kind: 'call', subject: 'x', occurredAt: hoursFromNow(2) }, 'occurredAt'],
      [{ kind: 'note', subject: 'x', id: randomUUID(), activityId: randomUUID() }, 'id'],
    ];
    for (const [body, field] of cases) {
      const problem = expectProblem(await send('sales', 'POST', url, body), 400);
      expect(
        problem.errors?.map((e) => e.field),
        JSON.stringify(body),
      ).toContain(field);
    }
    expect(await eventCount(h)).toBe(before);
  });

  it('answers 404 for an unknown customer, deal or activity', async () => {
    const unknown = randomUUID();
    expect(expectProblem(await send('sales', 'POST', `/customers/${unknown}/activities`, { kind: 'note', subject: 'x' }), 404).code).toBe('customer.not_found');
    expect(expectProblem(await send('sales', 'POST', `/deals/${unknown}/activities`, { kind: 'note', subject: 'x' }), 404).code).toBe('deal.not_found');
    expectProblem(await send('sales', 'GET', `/customers/${unknown}/activities`), 404);
    expectProblem(await send('sales', 'GET', `/deals/${unknown}/activities`), 404);
    expectProblem(await send('sales', 'GET', `/activities/${unknown}`), 404);
    expect(expectProblem(await send('sales', 'POST', `/activities/${unknown}/complete`, {}), 404).code).toBe('activity.not_found');
  });
});

describe('changing and completing', () => {
  it('PATCH changes subject, body, due time and assignee with If-Match; null clears; stale revisions are refused', async () => {
    const task = await log('customers', customerId, { kind: 'task', subject: 'Send quote', body: '40 seats', dueAt: hoursFromNow(24) });
    const url = `/activities/${task.id}`;
    expectProblem(await send('sales', 'PATCH', url, { body: '45 seats' }), 428);
    const changed = ok(await send('sales', 'PATCH', url, { subject: 'Send the quote', body: '45 seats', assigneeId: BOB }, { 'if-match': '"0"' }));
    expect(changed.revision).toBe(1);
    expectProblem(await send('sales', 'PATCH', url, { body: 'stale' }, { 'if-match': '"0"' }), 409, 'revision-conflict');
    // Nothing changed: nothing recorded, same revision.
    expect(ok(await send('sales', 'PATCH', url, { body: '45 seats' }, { 'if-match': '"1"' })).revision).toBe(1);
    ok(await send('sales', 'PATCH', url, { body: null, dueAt: null }, { 'if-match': '"1"' }));
    expect(await read(url)).toMatchObject({ subject: 'Send the quote', body: null, dueAt: null, assigneeId: BOB, revision: 2 });
    expectProblem(await send('sales', 'PATCH', url, {}, { 'if-match': '"2"' }), 400);
  });

  it('only tasks are completed, once; a completed task keeps its due time and assignee', async () => {
    const note = await log('customers', customerId, { kind: 'note', subject: 'Prefers email' });
    const refused = expectProblem(await send('sales', 'POST', `/activities/${note.id}/complete`, {}), 409);
    expect(refused.code).toBe('activity.not_a_task');
    expect(expectProblem(await send('sales', 'PATCH', `/activities/${note.id}`, { dueAt: hoursFromNow(1) }, { 'if-match': '"0"' }), 422).code).toBe(
      'activity.not_a_task',
    );

    const task = await log('customers', customerId, { kind: 'task', subject: 'Call back', dueAt: hoursFromNow(-5), assigneeId: BOB });
    const completedAt = new Date(Date.now() - 60_000).toISOString();
    const done = ok(await send('support', 'POST', `/activities/${task.id}/complete`, { occurredAt: completedAt }));
    expect(done.revision).toBe(1);
    const before = await eventCount(h);
    const again = ok(await send('support', 'POST', `/activities/${task.id}/complete`, {}));
    expect(again.revision).toBe(1);
    expect(await eventCount(h)).toBe(before);
    expect(await read(`/activities/${task.id}`)).toMatchObject({ open: false, overdue: false, completedAt });
    expect(expectProblem(await send('sales', 'PATCH', `/activities/${task.id}`, { assigneeId: ANN }, { 'if-match': '"1"' }), 409).code).toBe(
      'activity.completed',
    );
    ok(await send('sales', 'PATCH', `/activities/${task.id}`, { body: 'Reached her on the second try' }, { 'if-match': '"1"' }));
  });
});

describe('lists', () => {
  it('page through a customer’s activities newest first with sealed cursors, neither skipping nor repeating', async () => {
    const customer = ok<{ id: string }>(await send('sales', 'POST', '/customers', { name: 'Paged', email: `${randomUUID()}@example.com` }), 201).id;
    const logged: string[] = [];
    for (let day = 1; day <= 5; day++) {
      logged.push((await log('customers', customer, { kind: 'note', subject: `Note ${day}`, occurredAt: `2026-01-0${day}T09:00:00Z` })).id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { items: { id: string }[]; nextCursor: string | null } = await read(
        `/customers/${customer}/activities?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      seen.push(...page.items.map((a) => a.id));
      if (pages === 0) {
        // A cursor is valid for its own customer and order only.
        expectProblem(await send('sales', 'GET', `/customers/${otherCustomerId}/activities?limit=2&cursor=${encodeURIComponent(page.nextCursor!)}`), 400);
        expectProblem(
          await send('sales', 'GET', `/customers/${customer}/activities?limit=2&sort=occurredAt&cursor=${encodeURIComponent(page.nextCursor!)}`),
          400,
        );
      }
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...logged].reverse());
    const oldestFirst = await read(`/customers/${customer}/activities?sort=occurredAt&kind=note`);
    expect(oldestFirst.items.map((a: { id: string }) => a.id)).toEqual(logged);
    expect((await read(`/customers/${customer}/activities?kind=task`)).items).toEqual([]);
  });

  it('my open tasks: ?assigneeId=me&open=true, overdue first, then by due time, tasks without one last', async () => {
    const overdue = await log('customers', customerId, { kind: 'task', subject: 'Overdue', dueAt: hoursFromNow(-48), assigneeId: ANN });
    const later = await log('customers', otherCustomerId, { kind: 'task', subject: 'Next week', dueAt: hoursFromNow(24 * 7), assigneeId: ANN });
    const soon = await log('deals', dealId, { kind: 'task', subject: 'Tomorrow', dueAt: hoursFromNow(24), assigneeId: ANN });
    const undated = await log('customers', customerId, { kind: 'task', subject: 'Some day', assigneeId: ANN });
    const lessOverdue = await log('customers', customerId, { kind: 'task', subject: 'Overdue too', dueAt: hoursFromNow(-1), assigneeId: ANN });
    const done = await log('customers', customerId, { kind: 'task', subject: 'Done', dueAt: hoursFromNow(-72), assigneeId: ANN });
    ok(await send('sales', 'POST', `/activities/${done.id}/complete`, {}));
    await log('customers', customerId, { kind: 'task', subject: "Bob's", dueAt: hoursFromNow(-100), assigneeId: BOB });
    await log('customers', customerId, { kind: 'call', subject: 'A call Ann made', assigneeId: ANN });

    const expected = [overdue.id, lessOverdue.id, soon.id, later.id, undated.id];
    const mine = await read('/activities?assigneeId=me&open=true', 'ann');
    expect(mine.items.map((a: { id: string }) => a.id)).toEqual(expected);
    expect(mine.items.map((a: { overdue: boolean }) => a.overdue)).toEqual([true, true, false, false, false]);
    expect(mine.items.every((a: { open: boolean; assigneeId: string }) => a.open && a.assigneeId === ANN)).toBe(true);
    // The same list by id, and paged.
    expect((await read(`/activities?assigneeId=${ANN}&open=true`)).items.map((a: { id: string }) => a.id)).toEqual(expected);
    const first = await read('/activities?assigneeId=me&open=true&limit=3', 'ann');
    const second = await read(`/activities?assigneeId=me&open=true&limit=3&cursor=${encodeURIComponent(first.nextCursor)}`, 'ann');
    expect([...first.items, ...second.items].map((a: { id: string }) => a.id)).toEqual(expected);
    expect(second.nextCursor).toBeNull();
    // The cursor of Ann's list is not valid for Bob's.
    expectProblem(await send('sales', 'GET', `/activities?assigneeId=${BOB}&open=true&limit=3&cursor=${encodeURIComponent(first.nextCursor)}`), 400);
    // Everything else assigned to Ann: her completed task and her call.
    const closed = await read(`/activities?assigneeId=${ANN}&open=false`);
    expect(closed.items.map((a: { subject: string }) => a.subject).sort()).toEqual(['A call Ann made', 'Done']);
  });

  it('the export takes assigneeId=me as the list does, and an upper-case id as its own', async () => {
    const task = await log('customers', customerId, { kind: 'task', subject: 'Exported as mine', assigneeId: ANN });
    await read(`/activities?assigneeId=${ANN}`);
    const exported = async (url: string, caller: Caller) => {
      const res = await send(caller, 'GET', url);
      expect(res.statusCode).toBe(200);
      return res.body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { id: string; assigneeId: string });
    };
    const mine = await exported('/activities/export?format=ndjson&assigneeId=me', 'ann');
    expect(mine.map((a) => a.id)).toContain(task.id);
    expect(mine.every((a) => a.assigneeId === ANN)).toBe(true);
    const byId = await exported(`/activities/export?format=ndjson&assigneeId=${ANN.toUpperCase()}`, 'sales');
    expect(byId.map((a) => a.id).sort()).toEqual(mine.map((a) => a.id).sort());
    expect((await read(`/activities?assigneeId=${ANN.toUpperCase()}&limit=500`)).items.length).toBe(mine.length);
    const problem = expectProblem(await send('sales', 'GET', '/activities/export?format=ndjson&assigneeId=me'), 400);
    expect(problem.errors?.map((e) => e.field)).toEqual(['assigneeId']);
  });

  it("'me' needs a key that belongs to a user: 400 naming assigneeId", async () => {
    const problem = expectProblem(await send('sales', 'GET', '/activities?assigneeId=me&open=true'), 400);
    expect(problem.errors?.map((e) => e.field)).toEqual(['assigneeId']);
    expect(expectProblem(await send('sales', 'GET', '/activities?assigneeId=ann'), 400).errors?.map((e) => e.field)).toEqual(['assigneeId']);
  });

  it('analysts read bodies masked in every list and record, subjects as they are', async () => {
    const created = await log('deals', dealId, { kind: 'note', subject: 'Budget', body: 'CFO is Mrs Jansen, 0171 555' });
    for (const url of [
      `/activities/${created.id}`,
      `/customers/${customerId}/activities?limit=500`,
      `/deals/${dealId}/activities?limit=500`,
      '/activities?limit=500',
    ]) {
      const answer = await read(url, 'analyst');
      const items = 'items' in answer ? answer.items : [answer];
      const mine = items.find((a: { id: string }) => a.id === created.id);
      expect(mine, url).toMatchObject({ subject: 'Budget', body: '[masked]' });
      expect(JSON.stringify(answer)).not.toContain('Jansen');
    }
    expect(await read(`/activities/${created.id}`, 'auditor')).toMatchObject({ body: 'CFO is Mrs Jansen, 0171 555' });
  });
});

describe('timeline, reporting view and audit', () => {
  it("appear on the customer's timeline, without subject or body", async () => {
    const customer = ok<{ id: string }>(await send('sales', 'POST', '/customers', { name: 'Timeline', email: `${randomUUID()}@example.com` }), 201).id;
    const task = await log('customers', customer, {
      kind: 'task',
      subject: 'Secret subject',
      body: 'Secret body',
      dueAt: '2026-05-01T12:00:00Z',
      assigneeId: BOB,
    });
    ok(await send('sales', 'PATCH', `/activities/${task.id}`, { body: 'Another secret' }, { 'if-match': '"0"' }));
    ok(await send('sales', 'POST', `/activities/${task.id}/complete`, {}));
    const timeline = await read(`/customers/${customer}/timeline`);
    const entries = timeline.items.filter((e: { stream: string }) => e.stream === `activity-${task.id}`);
    expect(entries.map((e: { type: string }) => e.type)).toEqual(['ActivityLogged', 'ActivityChanged', 'ActivityCompleted']);
    expect(entries.map((e: { summary: string }) => e.summary)).toEqual([
      `Task ${task.id} logged, due 2026-05-01T12:00:00Z, assigned to ${BOB}`,
      `Activity ${task.id} changed: body`,
      `Task ${task.id} completed`,
    ]);
    expect(JSON.stringify(timeline)).not.toMatch(/Secret|secret/);
  });

  it('the reporting view has one row per activity with open and overdue flags, and no body', async () => {
    const reporting = `${h.schemas.read}_rv`;
    await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: reporting, projections: readModelProjections() });
    try {
      await read('/activities?limit=1');
      const { rows } = await sql<
        Record<string, unknown>
      >`SELECT * FROM ${sql.id(reporting, 'activities')} WHERE assignee_id = ${ANN}::uuid ORDER BY due_at`.execute(h.database.db);
      expect(rows.length).toBeGreaterThanOrEqual(6);
      expect(Object.keys(rows[0]!)).not.toContain('body');
      const bySubject = new Map(rows.map((r) => [r.subject, r]));
      expect(bySubject.get('Overdue')).toMatchObject({ kind: 'task', is_open: true, is_overdue: true });
      expect(bySubject.get('Done')).toMatchObject({ is_open: false, is_overdue: false });
      expect(bySubject.get('Some day')).toMatchObject({ is_open: true, is_overdue: false, due_at: null });
      expect(bySubject.get('A call Ann made')).toMatchObject({ kind: 'call', is_open: false });
    } finally {
      await sql`DROP SCHEMA IF EXISTS ${sql.id(reporting)} CASCADE`.execute(h.database.db);
    }
  });
});

describe('forgetting the customer', () => {
  it('erases bodies everywhere they are shown, and refuses new activities and changes', async () => {
    const customer = ok<{ id: string }>(await send('sales', 'POST', '/customers', { name: 'Forget Me', email: `${randomUUID()}@example.com` }), 201).id;
    const deal = ok<{ id: string }>(
      await send('sales', 'POST', '/deals', {
        customerId: customer,
        title: 'Short-lived',
        amount: 1,
        currency: 'EUR',
        ownerId: 'o',
        expectedCloseDate: '2026-12-31',
      }),
      201,
    ).id;
    const call = await log('customers', customer, { kind: 'call', subject: 'Complaint call', body: 'Her husband Jan answered, 0170 999' });
    const task = await log('deals', deal, { kind: 'task', subject: 'Follow up', body: 'Ask Jan about the invoice', dueAt: hoursFromNow(24), assigneeId: ANN });
    // Precondition: the plaintext is shown, and the subject access export carries it (the person's own data).
    expect(await read(`/activities/${call.id}`)).toMatchObject({ body: 'Her husband Jan answered, 0170 999' });
    const access = await send('support', 'GET', `/customers/${customer}/export`);
    expect(access.statusCode, access.body.slice(0, 300)).toBe(200);
    expect(access.body).toContain('Her husband Jan answered, 0170 999');
    expect(access.body).toContain('Ask Jan about the invoice');
    const before = new Date().toISOString();

    ok(await send('support', 'POST', `/customers/${customer}/forget`, {}));
    const shown = [
      await read(`/activities/${call.id}`),
      await read(`/activities/${task.id}`),
      await read(`/customers/${customer}/activities`),
      await read(`/deals/${deal}/activities`),
      await read('/activities?assigneeId=me&open=true&limit=500', 'ann'),
      await read(`/customers/${customer}/timeline`),
      await read(`/activities/${call.id}?asOf=${before}`),
      ok(await send('auditor', 'GET', `/audit/streams/activity-${call.id}`)),
      ok(await send('auditor', 'GET', `/audit/streams/activity-${task.id}`)),
      ok(await send('auditor', 'GET', `/audit/state/activity/${task.id}`)),
      ok(await send('support', 'GET', `/customers/${customer}/export`)),
    ];
    for (const answer of shown) expect(JSON.stringify(answer)).not.toMatch(/Jan|0170/);
    expect(shown[0]).toMatchObject({ subject: 'Complaint call', body: '[erased]' });
    expect(shown[1]).toMatchObject({ subject: 'Follow up', body: '[erased]', open: true });
    expect(shown[6]).toMatchObject({ body: '[erased]', asOf: before });
    expect(JSON.stringify(shown[7])).toContain('[erased]');

    const eventsBefore = await eventCount(h);
    expect(expectProblem(await send('sales', 'POST', `/customers/${customer}/activities`, { kind: 'note', subject: 'x', body: 'y' }), 409).code).toBe(
      'customer.forgotten',
    );
    expect(expectProblem(await send('sales', 'POST', `/deals/${deal}/activities`, { kind: 'note', subject: 'x' }), 409).code).toBe('customer.forgotten');
    expect(expectProblem(await send('sales', 'PATCH', `/activities/${call.id}`, { body: 'new' }, { 'if-match': '"0"' }), 409).code).toBe('customer.forgotten');
    expect(expectProblem(await send('sales', 'POST', `/activities/${task.id}/complete`, {}), 409).code).toBe('customer.forgotten');
    expect(await eventCount(h)).toBe(eventsBefore);
  });
});
