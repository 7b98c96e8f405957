import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventCount, expectProblem, expectReady, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * Values a careless client sends that the schemas passed but that did not mean one thing everywhere.
 * Each is either accepted and read alike by every read model, the analytics and the audit history,
 * or refused with a 400 naming it and nothing appended.
 */
let h: ApiHarness;

const send = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string | string[]> = {}) =>
  h.app.inject({
    method,
    url,
    headers: { ...h.auth('admin'), ...(payload === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });

const accepted = async (res: LightMyRequestResponse): Promise<{ id: string; revision: number; position: string }> => {
  if (res.statusCode >= 300) throw new Error(`${res.statusCode}: ${res.body}`);
  return json(res);
};

const register = async (label: string) =>
  (await accepted(await send('POST', '/customers', { name: `Edge ${label}`, email: `${label}-${randomUUID()}@example.com` }))).id;

/** The stored events of a stream, as the audit history shows them. */
const history = async (stream: string): Promise<{ type: string; data: Record<string, unknown>; occurredAt: string }[]> =>
  json(await send('GET', `/audit/streams/${stream}?limit=500`)).items;

beforeAll(async () => {
  h = await startApi('api_value_edges');
});
afterAll(async () => h?.close());

describe('business times with more than three decimals of a second', () => {
  it('fall on the same day in the read models, the analytics and the audit state (PostgreSQL rounded the 7th digit into the next month)', async () => {
    const customer = await register('nanos');
    // .NET writes 7 decimals, Java up to 9: the last instant of November, in each.
    for (const [orderId, occurredAt] of [
      ['dotnet', '2025-11-30T23:59:59.9999999Z'],
      ['java', '2025-11-30T23:59:59.999999999Z'],
    ]) {
      await accepted(await send('POST', `/customers/${customer}/purchases`, { orderId, amount: 10, currency: 'EUR', occurredAt }));
    }
    await projectionsSettled(h);

    const stored = (await history(`customer-${customer}`)).filter((e) => e.type === 'PurchaseRecorded');
    expect(stored.map((e) => e.occurredAt)).toEqual(['2025-11-30T23:59:59.999Z', '2025-11-30T23:59:59.999Z']);
    const rows = await sql<{ at: string; day: string }>`
      SELECT to_char(l.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at, to_char(o.day, 'YYYY-MM-DD') AS day
      FROM ${sql.table(`${h.schemas.read}.revenue_lines`)} l
      JOIN ${sql.table(`${h.schemas.read}.analytics_order`)} o ON o.order_key = l.customer_id || '|' || l.order_id
      WHERE l.customer_id = ${customer}`.execute(h.database.db);
    expect(rows.rows).toEqual([
      { at: '2025-11-30T23:59:59.999000', day: '2025-11-30' },
      { at: '2025-11-30T23:59:59.999000', day: '2025-11-30' },
    ]);

    const record = json(await send('GET', `/customers/${customer}`));
    const asOf = json(await send('GET', `/audit/state/customer/${customer}`)).record;
    expect(record.firstPurchaseAt).toBe('2025-11-30T23:59:59.999Z');
    expect(asOf.firstPurchaseAt).toBe(record.firstPurchaseAt);
    expect(asOf.lastPurchaseAt).toBe(record.lastPurchaseAt);
    const monthly = await sql<{ month: string }>`
      SELECT DISTINCT month FROM ${sql.table(`${h.schemas.reporting}.revenue_monthly`)}`.execute(h.database.db);
    expect(monthly.rows.map((r) => r.month)).toContain('2025-11');
    expect(monthly.rows.map((r) => r.month)).not.toContain('2025-12');
  });

  it('with microseconds (Python) read the same in a row a later event rewrote as in a replay of the events', async () => {
    const customer = await register('micros');
    await accepted(
      await send('POST', `/customers/${customer}/purchases`, { orderId: 'py', amount: 1, currency: 'EUR', occurredAt: '2025-10-01T10:00:00.123456+00:00' }),
    );
    await projectionsSettled(h);
    // A later event, in a batch of its own: the customer row is written again from what was loaded.
    await accepted(await send('POST', `/customers/${customer}/tags`, { tag: 'later' }));
    await projectionsSettled(h);
    const rows = await sql<{ first: string; line: string }>`
      SELECT to_char(c.first_purchase_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS first, to_char(l.occurred_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') AS line
      FROM ${sql.table(`${h.schemas.read}.customers`)} c JOIN ${sql.table(`${h.schemas.read}.revenue_lines`)} l ON l.customer_id = c.customer_id
      WHERE c.customer_id = ${customer}`.execute(h.database.db);
    expect(rows.rows).toEqual([{ first: '10:00:00.123000', line: '10:00:00.123000' }]);
  });
});

describe('amounts within float noise of four decimals', () => {
  it('are carried as those four decimals by the event, the history and the read models', async () => {
    const customer = await register('amounts');
    const sent: [string, number, number][] = [
      ['sum', 0.1 + 0.2, 0.3],
      ['noise', 1.00000000001, 1],
      ['subnormal', 1e-320, 0],
      ['minus-zero', -0, 0],
      ['exact', 19.9999, 19.9999],
    ];
    for (const [orderId, amount] of sent) await accepted(await send('POST', `/customers/${customer}/purchases`, { orderId, amount, currency: 'EUR' }));
    // A refund of the noisy sum is the refund of 0.3: the whole order, nothing left over.
    await accepted(await send('POST', `/customers/${customer}/refunds`, { orderId: 'sum', refundId: 'r-sum', amount: 0.1 + 0.2, currency: 'EUR' }));
    await projectionsSettled(h);

    const events = await history(`customer-${customer}`);
    const amounts = Object.fromEntries(events.filter((e) => e.type === 'PurchaseRecorded').map((e) => [e.data.orderId, e.data.amount]));
    expect(amounts).toEqual(Object.fromEntries(sent.map(([orderId, , carried]) => [orderId, carried])));
    expect(events.find((e) => e.type === 'PurchaseRefunded')?.data.amount).toBe(0.3);
    const raw = await sql<{ text: string }>`
      SELECT (data->'amount')::text AS text FROM ${sql.table(`${h.schemas.events}.events`)}
      WHERE stream = ${`customer-${customer}`} AND data ? 'amount'`.execute(h.database.db);
    expect(raw.rows.map((r) => r.text).sort()).toEqual(['0', '0', '0.3', '0.3', '1', '19.9999']);

    const record = json(await send('GET', `/customers/${customer}`));
    const asOf = json(await send('GET', `/audit/state/customer/${customer}`)).record;
    // Net of refunds: 0.3 + 1 + 0 + 0 + 19.9999 - 0.3.
    expect(record.revenue).toBe(20.9999);
    expect(record.refunded).toBe(0.3);
    expect(asOf.revenue).toBe(record.revenue);
    expect(asOf.refunded).toBe(record.refunded);
  });

  it('of millions and more, with two decimals, are accepted as sent (their float noise grows with them)', async () => {
    // Found importing a retailer's history: 1234567.89 was "at most 4 decimal places", one two-decimal amount in 18 between one and two million.
    const customer = await register('millions');
    const sent = [1234567.89, 1048576.11, 10999999.37, 123456789.12, 549755813887.9999, 899999999999.999];
    for (const amount of sent) await accepted(await send('POST', `/customers/${customer}/purchases`, { orderId: `m-${amount}`, amount, currency: 'EUR' }));
    const events = await history(`customer-${customer}`);
    expect(events.filter((e) => e.type === 'PurchaseRecorded').map((e) => e.data.amount)).toEqual(sent);
  });

  it('past float noise (a fifth decimal) are still refused, naming the field and appending nothing', async () => {
    const customer = await register('fifth');
    const before = await eventCount(h);
    // From 2^39 up a fourth decimal is refused too: there it arrived as its neighbour's (.0003 recorded as .0002).
    for (const amount of [0.00001, 1.000001, 12.34567, 1234567.89001, 98765432.10001, Number('899999999999.0003'), 549755813888.0001]) {
      const problem = expectProblem(await send('POST', `/customers/${customer}/purchases`, { orderId: `f-${amount}`, amount, currency: 'EUR' }), 400);
      expect(problem.errors?.map((e) => e.field)).toEqual(['amount']);
    }
    expect(await eventCount(h)).toBe(before);
  });
});

describe('deal probabilities', () => {
  it('are carried at the 4 decimals the read models and the record state hold; a fifth is refused', async () => {
    const customerId = await register('probability');
    const deal = await accepted(
      await send('POST', '/deals', { customerId, title: 'p', amount: 100, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-06-01' }),
    );
    let revision = deal.revision;
    // A fifth decimal is refused naming the field, as for amounts (it was rounded: 0.00004 recorded as 0).
    for (const probabilityOverride of [0.123456789012345, 0.00004]) {
      const refused = await send('PATCH', `/deals/${deal.id}`, { probabilityOverride }, { 'if-match': `"${revision}"` });
      expect(refused.statusCode, refused.body).toBe(400);
      expect(json<{ errors: { field: string }[] }>(refused).errors.map((e) => e.field)).toEqual(['probabilityOverride']);
    }
    // A value within a rounding error of four decimals (1e-320, 0.1 + 0.2) is carried at four.
    for (const probabilityOverride of [1e-320, 0.1 + 0.2]) {
      revision = (await accepted(await send('PATCH', `/deals/${deal.id}`, { probabilityOverride }, { 'if-match': `"${revision}"` }))).revision;
    }
    await projectionsSettled(h);
    const carried = (await history(`deal-${deal.id}`)).filter((e) => e.type === 'DealProbabilityOverridden').map((e) => e.data.probabilityOverride);
    expect(carried).toEqual([0, 0.3]);
    expect(json(await send('GET', `/deals/${deal.id}`)).probabilityOverride).toBe(0.3);
    expect(json(await send('GET', `/audit/state/deal/${deal.id}`)).record.probabilityOverride).toBe(0.3);
  });
});

describe('tags written with combining marks', () => {
  it('are letters: Devanagari and a decomposed é are accepted, and the two spellings of café are one tag', async () => {
    const customer = await register('marks');
    const composed = 'caf\u00e9';
    const decomposed = 'cafe\u0301';
    for (const tag of ['हिन्दी', composed, decomposed, 'Tiếng Việt']) await accepted(await send('POST', `/customers/${customer}/tags`, { tag }));
    await projectionsSettled(h);
    expect(json(await send('GET', `/customers/${customer}`)).tags).toEqual(['हिन्दी', composed, 'Tiếng Việt']);
    // Filtering by either spelling finds the customer.
    for (const tag of [composed, decomposed]) {
      const page = json(await send('GET', `/customers?tag=${encodeURIComponent(tag)}`));
      expect(page.items.map((c: { id: string }) => c.id)).toEqual([customer]);
    }
    // Untagging the decomposed spelling removes the tag.
    await accepted(await send('POST', `/customers/${customer}/untag`, { tag: decomposed }));
    await projectionsSettled(h);
    expect(json(await send('GET', `/customers/${customer}`)).tags).toEqual(['हिन्दी', 'Tiếng Việt']);
  });

  it('still refuse what is not a letter, a digit or the listed signs, and a tag that starts with a mark', async () => {
    const customer = await register('not-letters');
    const before = await eventCount(h);
    for (const tag of ['\u0301x', 'a\u200bb', '👨‍👩‍👧', 'a/b']) {
      const problem = expectProblem(await send('POST', `/customers/${customer}/tags`, { tag }), 400);
      expect(problem.errors?.map((e) => e.field)).toEqual(['tag']);
    }
    expect(await eventCount(h)).toBe(before);
  });
});

describe('names written with combining marks', () => {
  it('are stored in NFC, so that either spelling finds both customers', async () => {
    // Found moving a retailer's history in: José Müller from a macOS export (decomposed) was another person to search.
    const marker = randomUUID().slice(0, 8);
    const decomposed = `Jose\u0301 Mu\u0308ller ${marker}`;
    const composed = decomposed.normalize('NFC');
    const ids = [];
    for (const name of [decomposed, composed])
      ids.push((await accepted(await send('POST', '/customers', { name, email: `${randomUUID()}@example.com`, allowDuplicate: true }))).id);
    await projectionsSettled(h);
    for (const id of ids) expect(json(await send('GET', `/customers/${id}`)).name).toBe(composed);
    for (const search of [composed, decomposed]) {
      const page = json(await send('GET', `/customers?search=${encodeURIComponent(search)}`));
      expect(page.items.map((c: { id: string }) => c.id).sort(), search).toEqual([...ids].sort());
    }
  });
});

describe('headers sent twice', () => {
  it('an Idempotency-Key or X-Causation-Id sent twice is a 400 naming it, appending nothing (they were joined into one key neither named)', async () => {
    const customer = await register('headers');
    const before = await eventCount(h);
    for (const name of ['idempotency-key', 'x-causation-id']) {
      const res = await send('POST', `/customers/${customer}/tags`, { tag: 'twice' }, { [name]: ['first', 'second'] });
      const problem = expectProblem(res, 400, 'validation');
      expect(problem.errors).toEqual([{ field: name, message: 'given more than once: send it once' }]);
    }
    expect(await eventCount(h)).toBe(before);
    // One header whose value holds a comma is one key: a retry with it appends nothing more.
    const first = await accepted(await send('POST', `/customers/${customer}/tags`, { tag: 'once' }, { 'idempotency-key': 'a, b' }));
    const retry = await accepted(await send('POST', `/customers/${customer}/tags`, { tag: 'once' }, { 'idempotency-key': 'a, b' }));
    expect(retry).toEqual(first);
  });

  it('If-Match names a revision as the ETag writes it: "03", "-0" and an unpaired quote are refused', async () => {
    const customer = await register('if-match');
    const before = await eventCount(h);
    for (const ifMatch of ['"00"', '"-0"', '"0', '0"', 'W/"-0"']) {
      const problem = expectProblem(await send('PATCH', `/customers/${customer}`, { company: 'X' }, { 'if-match': ifMatch }), 400, 'validation');
      expect(
        problem.errors?.map((e) => e.field),
        ifMatch,
      ).toEqual(['if-match']);
    }
    expect(await eventCount(h)).toBe(before);
    for (const ifMatch of ['"0"', 'W/"1"', '2']) {
      expect((await send('PATCH', `/customers/${customer}`, { company: `X ${ifMatch}` }, { 'if-match': ifMatch })).statusCode, ifMatch).toBe(200);
    }
  });
});

describe('after the edges', () => {
  it('every projection is at the head, none failed, and /ready is ready', async () => {
    await projectionsSettled(h);
    await expectReady(h);
  });
});
