import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../api/app.ts';
import type { Role } from '../../api/roles.ts';
import { ruleFor } from '../../api/roles.ts';
import { UNSTORABLE } from '../support/fuzz.ts';
import { commandTargets, roleFor, type Target } from './command-targets.ts';
import { eventCount, expectReady, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * A hostile-input corpus over every route: texts PostgreSQL cannot store, business times at and past
 * their bounds, forged cursors of every list and sort, bad query strings, huge and duplicated
 * headers, bad JSON. Never a 5xx; a refused request appends nothing; the projections apply every
 * accepted one and /ready is ready at the end.
 */
let h: ApiHarness;
const ids = { customer: '', customer2: '', deal: '', deal2: '', campaign: '', campaign2: '', feedback: '', feedback2: '', activity: '' };

const send = (role: Role | null, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  h.app.inject({ method, url, headers: { ...(role ? h.auth(role) : {}), ...headers }, ...(payload === undefined ? {} : { payload: payload as object }) });

const accepted = async (res: LightMyRequestResponse): Promise<{ id: string; position: string }> => {
  if (res.statusCode >= 300) throw new Error(`${res.statusCode}: ${res.body}`);
  return json(res);
};

/** The stream revision, so a route that requires If-Match reaches validation with a current one. */
const revisionOf = async (kind: string, id: string): Promise<number> => (await h.store.readStream(`${kind}-${id}`)).length - 1;

const kindOf = (url: string) =>
  ({ customers: 'customer', deals: 'deal', campaigns: 'campaign', feedback: 'feedback', activities: 'activity' })[url.split('/')[1]!]!;

/** Sends a command to a real record of its kind, with If-Match where the route requires it. */
const command = async (t: Target, body: unknown): Promise<LightMyRequestResponse> => {
  const kind = kindOf(t.url);
  const id = ids[kind as keyof typeof ids];
  const url = t.url.replace(':id', id);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (t.url.includes(':id') && ruleFor(t.method, t.url).ifMatch === 'required') headers['if-match'] = `"${await revisionOf(kind, id)}"`;
  return send(roleFor(t), t.method, url, JSON.stringify(body), headers);
};

const namedFields = (res: LightMyRequestResponse): string[] => (json(res).errors ?? []).map((e: { field: string }) => e.field);

const expectRefused = (res: LightMyRequestResponse, field: string, what: string) => {
  if (res.statusCode !== 400) throw new Error(`${what}: expected 400, got ${res.statusCode}: ${res.body.slice(0, 300)}`);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const named = namedFields(res);
  if (!named.some((f) => f === field || f.startsWith(`${field}.`))) throw new Error(`${what}: 400 does not name ${field}: ${res.body.slice(0, 300)}`);
};

beforeAll(async () => {
  h = await startApi('api_hostile');
  for (const key of ['customer', 'customer2'] as const) {
    ids[key] = (await accepted(await send('admin', 'POST', '/customers', { name: `Hostile ${key}`, email: `${key}-${randomUUID()}@example.com` }))).id;
    await accepted(
      await send('admin', 'POST', `/customers/${ids[key]}/purchases`, { orderId: `o-${key}`, amount: key === 'customer' ? 10 : 20, currency: 'EUR' }),
    );
  }
  for (const key of ['deal', 'deal2'] as const) {
    ids[key] = (
      await accepted(
        await send('sales', 'POST', '/deals', {
          customerId: ids.customer,
          title: key,
          amount: 5,
          currency: 'EUR',
          ownerId: 'o',
          expectedCloseDate: '2026-06-01',
        }),
      )
    ).id;
  }
  for (const key of ['campaign', 'campaign2'] as const) {
    ids[key] = (await accepted(await send('marketing', 'POST', '/campaigns', { name: key, channel: 'email', budget: 100, currency: 'EUR' }))).id;
  }
  for (const key of ['feedback', 'feedback2'] as const) {
    ids[key] = (
      await accepted(await send('support', 'POST', '/feedback', { customerId: ids.customer, kind: 'question', channel: 'web', subject: key, body: 'b' }))
    ).id;
  }
  ids.activity = (await accepted(await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'task', subject: 'Call back', body: 'b' }))).id;
  await accepted(await send('sales', 'POST', `/deals/${ids.deal}/activities`, { kind: 'call', subject: 'Intro', body: 'b' }));
  await projectionsSettled(h);
});
afterAll(async () => h?.close());

const targets = commandTargets(() => ids.customer);

describe('texts PostgreSQL cannot store', () => {
  it('are refused in every field of every command, naming the field, and append nothing', async () => {
    const before = await eventCount(h);
    let cases = 0;
    for (const t of targets) {
      for (const field of Object.keys(t.payload.shape).filter((name) => name !== t.idField)) {
        for (const text of UNSTORABLE) {
          expectRefused(await command(t, { ...t.valid(), [field]: text }), field, `${t.method} ${t.url} ${field}=${JSON.stringify(text)}`);
          cases++;
        }
      }
    }
    // Texts nested in lists and objects.
    const nested: [Target, Record<string, unknown>, string][] = [];
    const at = (url: string, method = 'POST') => targets.find((t) => t.url === url && t.method === method)!;
    for (const text of UNSTORABLE) {
      nested.push([at('/customers'), { ...at('/customers').valid(), tags: ['fine', text] }, 'tags.1']);
      for (const list of ['tags', 'rfmSegments', 'sources']) {
        nested.push([at('/campaigns'), { ...at('/campaigns').valid(), targetSegment: { [list]: [text] } }, `targetSegment.${list}.0`]);
      }
      nested.push([at('/campaigns'), { ...at('/campaigns').valid(), schedule: { startsAt: text } }, 'schedule.startsAt']);
      // The client-chosen id of an activity, under both names.
      nested.push([at('/customers/:id/activities'), { ...at('/customers/:id/activities').valid(), id: text }, 'id']);
      nested.push([at('/customers/:id/activities'), { ...at('/customers/:id/activities').valid(), activityId: text }, 'activityId']);
    }
    for (const [t, body, field] of nested) {
      expectRefused(await command(t, body), field, `${t.url} ${JSON.stringify(body)}`);
      cases++;
    }
    // An escaped lone surrogate in the JSON text itself, and the creation id alias.
    const raw = await send('sales', 'POST', '/customers', '{"name":"A\\ud800","email":"raw@example.com"}', { 'content-type': 'application/json' });
    expectRefused(raw, 'name', 'escaped lone surrogate');
    expect(cases).toBeGreaterThan(400);
    expect(await eventCount(h)).toBe(before);
  }, 180_000);

  it('are refused in API key names (admin)', async () => {
    expectRefused(await send('admin', 'POST', '/admin/api-keys', { name: 'bot\u0000', role: 'sales' }), 'name', 'api key name');
  });
});

describe('names and e-mail addresses', () => {
  it('a name, title or subject of only spaces and zero-width characters is refused in every command, naming the field', async () => {
    const before = await eventCount(h);
    let cases = 0;
    for (const t of targets) {
      for (const field of Object.keys(t.payload.shape).filter((name) => ['name', 'title', 'subject'].includes(name))) {
        for (const text of ['\u200b', '\u200b \u2060\ufeff', '\u00a0\u200d', '\u3164\u2800', '\u034f\ufe0f']) {
          expectRefused(await command(t, { ...t.valid(), [field]: text }), field, `${t.method} ${t.url} ${field}=${JSON.stringify(text)}`);
          cases++;
        }
      }
    }
    expect(cases).toBeGreaterThanOrEqual(45);
    expect(await eventCount(h)).toBe(before);
    // A name with a visible character among invisible ones is a name.
    await accepted(await send('sales', 'POST', '/customers', { name: '\u200bZoë', email: `zw-${randomUUID()}@example.com` }));
  });

  it('a tag of fillers alone (a letter to the tag rule that renders as nothing) is refused wherever a tag is given; untagging one still works', async () => {
    const before = await eventCount(h);
    for (const text of ['\u3164', '\u3164 \u3164', '\uffa0']) {
      expectRefused(await send('sales', 'POST', `/customers/${ids.customer}/tags`, { tag: text }), 'tag', `tag ${JSON.stringify(text)}`);
      expectRefused(
        await send('sales', 'POST', '/customers', { name: 'Filler', email: `filler-${randomUUID()}@example.com`, tags: [text] }),
        'tags.0',
        'registration',
      );
      expectRefused(
        await send('marketing', 'POST', '/campaigns', { name: 'Filler', channel: 'email', budget: 1, currency: 'EUR', targetSegment: { tags: [text] } }),
        'targetSegment.tags.0',
        'segment',
      );
    }
    expect(await eventCount(h)).toBe(before);
    expect((await send('sales', 'POST', `/customers/${ids.customer}/untag`, { tag: '\u3164' })).statusCode).toBe(200);
    await accepted(await send('sales', 'POST', `/customers/${ids.customer}/tags`, { tag: '\u3164vip' }));
  });

  it('an address past RFC 5321 (local part 64, domain label 63, address 254) is refused wherever one is given', async () => {
    const before = await eventCount(h);
    const tooLong = [`${'l'.repeat(65)}@example.com`, `a@${'d'.repeat(64)}.example.com`, `a@${'d.'.repeat(126)}com`];
    let cases = 0;
    for (const t of targets.filter((t) => 'email' in t.payload.shape)) {
      for (const email of tooLong) {
        expectRefused(await command(t, { ...t.valid(), email }), 'email', `${t.method} ${t.url} ${email.length} characters`);
        cases++;
      }
    }
    expect(cases).toBeGreaterThanOrEqual(6);
    expect(await eventCount(h)).toBe(before);
    const longest = `${'l'.repeat(64)}@${'d'.repeat(63)}.${'e'.repeat(63)}.${'x'.repeat(61)}`;
    expect(longest).toHaveLength(254);
    await accepted(await send('sales', 'POST', '/customers', { name: 'Longest address', email: longest }));
  });
});

describe('business times', () => {
  const purchase = (occurredAt: string) =>
    send('sales', 'POST', `/customers/${ids.customer}/purchases`, { orderId: `t-${randomUUID()}`, amount: 1, currency: 'EUR', occurredAt });

  it('are refused outside the years 1900-2200 (UTC), in every place a command takes one, appending nothing', async () => {
    const before = await eventCount(h);
    for (const occurredAt of [
      '0000-01-01T00:00:00Z',
      '1899-12-31T23:59:59.999Z',
      '1900-01-01T00:30:00+01:00',
      '2201-01-01T00:00:00Z',
      '2200-12-31T23:30:00-01:00',
      '9999-12-31T23:59:59Z',
    ]) {
      expectRefused(await purchase(occurredAt), 'occurredAt', `purchase at ${occurredAt}`);
      expectRefused(
        await send('sales', 'POST', `/customers/${ids.customer}/refunds`, { orderId: 'o-customer', amount: 1, currency: 'EUR', occurredAt }),
        'occurredAt',
        `refund at ${occurredAt}`,
      );
      expectRefused(
        await send(
          'marketing',
          'POST',
          `/campaigns/${ids.campaign}/schedule`,
          { startsAt: occurredAt },
          { 'if-match': `"${await revisionOf('campaign', ids.campaign)}"` },
        ),
        'startsAt',
        `schedule at ${occurredAt}`,
      );
      expectRefused(
        await send('marketing', 'POST', '/campaigns', {
          name: 'c',
          channel: 'email',
          budget: 1,
          currency: 'EUR',
          schedule: { startsAt: '2026-01-01T00:00:00Z', endsAt: occurredAt },
        }),
        'schedule.endsAt',
        `campaign ending ${occurredAt}`,
      );
    }
    for (const dueAt of ['0000-01-01T00:00:00Z', '1899-12-31T23:59:59.999Z', '2201-01-01T00:00:00Z']) {
      expectRefused(await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'task', subject: 's', dueAt }), 'dueAt', `task due ${dueAt}`);
      expectRefused(
        await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'call', subject: 's', occurredAt: dueAt }),
        'occurredAt',
        `call at ${dueAt}`,
      );
      expectRefused(
        await send('sales', 'PATCH', `/activities/${ids.activity}`, { dueAt }, { 'if-match': `"${await revisionOf('activity', ids.activity)}"` }),
        'dueAt',
        `task moved to ${dueAt}`,
      );
    }
    for (const day of ['0000-01-01', '1899-12-31', '2201-01-01']) {
      const body = { customerId: ids.customer, title: 't', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: day };
      expectRefused(await send('sales', 'POST', '/deals', body), 'expectedCloseDate', `deal closing ${day}`);
    }
    expect(await eventCount(h)).toBe(before);
  });

  it('that are no time at all are refused with the one message saying so (a leap second was also said to be outside the years 1900-2200)', async () => {
    const before = await eventCount(h);
    for (const occurredAt of ['2016-12-31T23:59:60Z', 'yesterday']) {
      const res = await purchase(occurredAt);
      expectRefused(res, 'occurredAt', `purchase at ${occurredAt}`);
      expect(res.json().errors, occurredAt).toEqual([{ field: 'occurredAt', in: 'body', message: 'Invalid ISO datetime' }]);
    }
    const deal = await send('sales', 'POST', '/deals', {
      customerId: ids.customer,
      title: 't',
      amount: 1,
      currency: 'EUR',
      ownerId: 'o',
      expectedCloseDate: 'soon',
    });
    expect(deal.json().errors).toEqual([{ field: 'expectedCloseDate', in: 'body', message: 'Invalid ISO date' }]);
    expect(await eventCount(h)).toBe(before);
  });

  it('with a time zone offset PostgreSQL cannot store (past ±15:59) are refused, appending nothing; every projection applies those at the bound', async () => {
    const before = await eventCount(h);
    for (const occurredAt of ['2024-05-01T12:00:00+16:00', '2024-05-01T12:00:00-20:00', '2024-05-01T12:00:00+23:59']) {
      expectRefused(await purchase(occurredAt), 'occurredAt', `purchase at ${occurredAt}`);
      expectRefused(await send('sales', 'POST', `/customers/${ids.customer}/tags`, { tag: 'tz', occurredAt }), 'occurredAt', `tag at ${occurredAt}`);
      expectRefused(
        await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'task', subject: 's', dueAt: occurredAt }),
        'dueAt',
        `task due ${occurredAt}`,
      );
      expectRefused(
        await send('admin', 'POST', '/exchange-rates', { currency: 'USD', rate: 1.1, validFrom: occurredAt }),
        'validFrom',
        `rate valid from ${occurredAt}`,
      );
    }
    expect(await eventCount(h)).toBe(before);
    for (const occurredAt of ['2024-05-01T12:00:00+15:59', '2024-05-01T12:00:00-15:59', '2024-05-01T12:00:00+14:00']) {
      expect((await purchase(occurredAt)).statusCode).toBe(200);
      expect((await send('sales', 'POST', `/customers/${ids.customer}/tags`, { tag: 'tz', occurredAt })).statusCode).toBe(200);
    }
    await projectionsSettled(h);
  });

  it('at the bounds are accepted and every projection applies them', async () => {
    for (const occurredAt of ['1900-01-01T00:00:00Z', '1900-01-01T00:00:00+00:00', new Date().toISOString()]) {
      expect((await purchase(occurredAt)).statusCode).toBe(200);
    }
    // A fact's business time is bounded by now as well (a few minutes of clock skew): the years' upper
    // bound applies to plans such as a deal's close date, not to a purchase that has not happened yet.
    const before = await eventCount(h);
    for (const occurredAt of ['2200-12-31T23:59:59.999Z', '2200-12-31T23:59:59+00:00']) {
      const res = await purchase(occurredAt);
      expect(res.statusCode).toBe(400);
      expect(res.body).toContain('occurredAt');
    }
    expect(await eventCount(h)).toBe(before);
    for (const day of ['1900-01-01', '2200-12-31']) {
      const body = { customerId: ids.customer, title: day, amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: day };
      expect((await send('sales', 'POST', '/deals', body)).statusCode).toBe(201);
    }
    await projectionsSettled(h);
  });

  it('client-chosen ids named like Object.prototype members are ids like any other', async () => {
    for (const id of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const purchase = { orderId: id, amount: 2, currency: 'EUR' };
      expect((await send('sales', 'POST', `/customers/${ids.customer2}/purchases`, purchase)).statusCode).toBe(200);
      // The same order again is the same purchase: nothing more recorded.
      const before = await eventCount(h);
      expect((await send('sales', 'POST', `/customers/${ids.customer2}/purchases`, purchase)).statusCode).toBe(200);
      expect(await eventCount(h)).toBe(before);
      expect((await send('sales', 'POST', `/customers/${ids.customer2}/refunds`, { orderId: id, refundId: id, amount: 1, currency: 'EUR' })).statusCode).toBe(
        200,
      );
      expect((await send('marketing', 'POST', `/campaigns/${ids.campaign2}/costs`, { costId: id, amount: 1, currency: 'EUR' })).statusCode).toBe(200);
    }
    expect((await send('sales', 'POST', `/customers/${ids.customer2}/refunds`, { orderId: 'nonexistent', amount: 1, currency: 'EUR' })).statusCode).toBe(404);
    await projectionsSettled(h);
  });

  it('in queries are refused the same way', async () => {
    for (const url of [
      `/customers/${ids.customer}?asOf=0000-01-01T00:00:00Z`,
      '/deals?expectedCloseFrom=0000-01-01',
      '/deals?expectedCloseTo=2201-01-01',
      '/audit/events?from=0000-01-01',
      '/exchange-rates?at=2020-01-01T00:00:00%2B16:00',
      '/purchases/export?from=2020-01-01T00:00:00%2B16:00',
      '/refunds/export?to=2020-01-01T00:00:00-16:00',
      '/analytics/retention?from=0000-01',
      '/analytics/retention?to=0000-01',
      '/analytics/clv?cohort=0000-01',
    ]) {
      const res = await send('admin', 'GET', url);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(400);
    }
  });
});

describe('ids spelled in upper case', () => {
  // A UUID is case-insensitive and the read models store it as uuid, but streams are named by the
  // text: an upper-case spelling once opened a second stream whose registration replaced the row.
  it('name the same record: a second registration is refused, commands and reads reach the one stream', async () => {
    const before = await eventCount(h);
    const routes = { customer: '/customers', deal: '/deals', campaign: '/campaigns', feedback: '/feedback' } as const;
    const bodies = {
      customer: { name: 'Taken over', email: 'taken.over@example.com' },
      deal: { customerId: ids.customer, title: 'Taken over', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-06-01' },
      campaign: { name: 'Taken over', channel: 'email', budget: 1, currency: 'EUR' },
      feedback: { customerId: ids.customer, kind: 'question', channel: 'web', subject: 'Taken over', body: 'b' },
    };
    for (const kind of ['customer', 'deal', 'campaign', 'feedback'] as const) {
      const res = await send('admin', 'POST', routes[kind], { ...bodies[kind], id: ids[kind].toUpperCase() });
      expect(res.statusCode, `${kind}: ${res.body}`).toBe(409);
    }
    expect(await eventCount(h)).toBe(before);
    const upper = ids.customer.toUpperCase();
    const res = await send('sales', 'POST', `/customers/${upper}/purchases`, { orderId: 'upper-case-path', amount: 3, currency: 'EUR' });
    expect(res.statusCode, res.body).toBe(200);
    expect(json<{ id: string }>(res).id).toBe(ids.customer);
    expect((await h.store.readStream(`customer-${ids.customer}`)).map((e) => (e.data as { orderId?: string }).orderId)).toContain('upper-case-path');
    expect(await h.store.readStream(`customer-${upper}`)).toEqual([]);
    await projectionsSettled(h);
    const read = await send('admin', 'GET', `/customers/${upper}`);
    expect(read.statusCode).toBe(200);
    expect(json<{ id: string; name: string }>(read)).toMatchObject({ id: ids.customer, name: 'Hostile customer' });
  });
});

describe('query strings', () => {
  it('with NUL, lone surrogates or bytes that are not UTF-8 are a 400 naming the parameter', async () => {
    const cases: [string, string][] = [
      ['/customers?search=a%00b', 'search'],
      ['/customers?tag=%00', 'tag'],
      ['/customers?source=x%00', 'source'],
      ['/customers?search=%ff', 'search'],
      ['/customers?search=%ED%A0%80', 'search'],
      ['/customers?search=a%F0%9F', 'search'],
      ['/deals?ownerId=%00', 'ownerId'],
      ['/deals/pipeline?ownerId=%00', 'ownerId'],
      ['/feedback?assigneeId=%C0%80', 'assigneeId'],
      ['/activities?assigneeId=%00', 'assigneeId'],
      ['/activities?assigneeId=bob', 'assigneeId'],
      [`/customers/${ids.customer}/activities?kind=%ED%A0%80`, 'kind'],
      ['/audit/events?actor=%00', 'actor'],
      ['/audit/events?actor=a%ED%B0%80', 'actor'],
      ['/audit/events?type=Customer%00Registered', 'type'],
      [`/customers/${ids.customer}?waitFor=%00`, 'waitFor'],
      ['/customers?cursor=%00', 'cursor'],
      ['/customers?%00=1', 'query'],
    ];
    for (const [url, field] of cases) expectRefused(await send('admin', 'GET', url), field, url);
  });

  it('a path whose percent-encoding is not UTF-8 is a 400 naming the url', async () => {
    for (const [method, url] of [
      ['POST', '/customers/%ED%A0%80/tags'],
      ['GET', '/customers/%ff'],
      ['GET', '/deals/%C0%AF'],
    ] as const) {
      expectRefused(await send('admin', method, url, method === 'POST' ? { tag: 'x' } : undefined), 'url', url);
    }
  });

  it('never make any read route answer a 5xx', async () => {
    const routes = h.app.routeList.filter((r) => r.method === 'GET' && !r.url.startsWith('/docs'));
    const values = ['a%00b', '%ff', '%ED%A0%80', '%C0%AF', '%zz', '0000-01-01T00:00:00Z', '9999999999999999999999', '1e309'];
    const params = [
      'search',
      'tag',
      'source',
      'status',
      'ownerId',
      'assigneeId',
      'actor',
      'type',
      'stream',
      'from',
      'to',
      'asOf',
      'cursor',
      'sort',
      'limit',
      'waitFor',
      'customerId',
      'currency',
      'month',
    ];
    let sent = 0;
    for (const route of routes) {
      const path = route.url.replace(/:[a-zA-Z]+/g, route.url.startsWith('/audit/streams') ? `customer-${ids.customer}` : ids.customer);
      for (const param of params) {
        for (const value of values) {
          const res = await send('admin', 'GET', `${path}?${param}=${value}`);
          sent++;
          if (res.statusCode >= 500 && !(res.statusCode === 503 && param === 'waitFor'))
            throw new Error(`${res.statusCode} for ${path}?${param}=${value}: ${res.body.slice(0, 300)}`);
        }
      }
    }
    expect(sent).toBeGreaterThan(500);
  }, 180_000);
});

describe('list cursors', () => {
  const lists: Record<string, string[]> = {
    '/customers': ['name', 'createdAt', 'revenue', 'lastPurchaseAt', 'orderCount'],
    '/deals': ['expectedCloseDate', 'amount', 'updatedAt', 'createdAt'],
    '/feedback': ['submittedAt', 'resolutionDueAt', 'priority'],
    '/campaigns': ['name', 'createdAt', 'roi', 'revenue'],
    '/activities': ['occurredAt', 'dueAt'],
  };
  const oldStyle = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const forgeries = (genuine: string, key: string): string[] => {
    const flipped = (i: number) => `${genuine.slice(0, i)}${genuine[i] === 'A' ? 'B' : 'A'}${genuine.slice(i + 1)}`;
    return [
      // The old, unsealed format with a sort value of every type in the wrong place.
      oldStyle(['abc', key]),
      oldStyle(['2026-01-01 00:00:00+00', key]),
      oldStyle(['0000-01-01', key]),
      oldStyle(['1e999', key]),
      oldStyle(['99999999999999999999', key]),
      oldStyle([1, 2]),
      oldStyle({ sort: 'x' }),
      JSON.stringify(['abc', key]),
      // The genuine cursor, edited: every byte position matters (IV, tag, body).
      flipped(0),
      flipped(5),
      flipped(20),
      flipped(genuine.length - 1),
      genuine.slice(0, -4),
      `${genuine}AAAA`,
      'A'.repeat(60),
      'not a cursor',
      'x'.repeat(3000),
    ];
  };

  it('are opaque, and a forged, edited or misplaced one is a 400 for every list, sort key and direction', async () => {
    const genuine = new Map<string, string>();
    for (const [list, sorts] of Object.entries(lists)) {
      for (const sort of sorts.flatMap((s) => [s, `-${s}`])) {
        const first = await send('admin', 'GET', `${list}?limit=1&sort=${sort}`);
        expect(first.statusCode, first.body).toBe(200);
        const cursor = json(first).nextCursor as string;
        expect(cursor, `${list} sort=${sort} has a second page`).toEqual(expect.any(String));
        genuine.set(`${list} ${sort}`, cursor);
        const next = await send('admin', 'GET', `${list}?limit=1&sort=${sort}&cursor=${encodeURIComponent(cursor)}`);
        expect(next.statusCode, next.body).toBe(200);
        expect(json(next).items[0].id).not.toBe(json(first).items[0].id);
        for (const forged of forgeries(cursor, json(first).items[0].id)) {
          expectRefused(
            await send('admin', 'GET', `${list}?limit=1&sort=${sort}&cursor=${encodeURIComponent(forged)}`),
            'cursor',
            `${list} sort=${sort} cursor=${forged.slice(0, 40)}`,
          );
        }
      }
    }
    // Another replica of the same database (the secret is shared through it) takes the same cursors.
    const replica = await buildApp(h.deps);
    try {
      const cursor = genuine.get('/customers name')!;
      const next = await replica.inject({ method: 'GET', url: `/customers?limit=1&sort=name&cursor=${encodeURIComponent(cursor)}`, headers: h.auth('admin') });
      expect(next.statusCode, next.body).toBe(200);
    } finally {
      await replica.close();
    }
    // A genuine cursor on another sort (whose sort value has another SQL type) or another list.
    const all = [...genuine.entries()];
    for (const [where, cursor] of all) {
      for (const [elsewhere] of all.filter(([other]) => other !== where)) {
        const [list, sort] = elsewhere.split(' ');
        expectRefused(
          await send('admin', 'GET', `${list}?limit=1&sort=${sort}&cursor=${encodeURIComponent(cursor)}`),
          'cursor',
          `${where} cursor on ${elsewhere}`,
        );
      }
    }
  }, 180_000);

  it('on the timeline are sealed to the customer and the order', async () => {
    const first = json(await send('sales', 'GET', `/customers/${ids.customer}/timeline?limit=1`));
    expect(first.nextCursor).toEqual(expect.any(String));
    expect((await send('sales', 'GET', `/customers/${ids.customer}/timeline?limit=1&cursor=${first.nextCursor}`)).statusCode).toBe(200);
    expectRefused(
      await send('sales', 'GET', `/customers/${ids.customer}/timeline?limit=1&order=desc&cursor=${first.nextCursor}`),
      'cursor',
      'timeline, other order',
    );
    expectRefused(await send('sales', 'GET', `/customers/${ids.customer2}/timeline?limit=1&cursor=${first.nextCursor}`), 'cursor', 'timeline, other customer');
    for (const forged of [oldStyle(['abc', '1']), oldStyle(['99999999999999999999', '1']), `${first.nextCursor}A`]) {
      expectRefused(
        await send('sales', 'GET', `/customers/${ids.customer}/timeline?limit=1&cursor=${encodeURIComponent(forged)}`),
        'cursor',
        `timeline ${forged}`,
      );
    }
  });

  it("carry no personal data in clear: a name-sorted page's cursor holds no name one could read out of it", async () => {
    // An analyst may not sort by the names masked for them (the order would tell them apart).
    expect((await send('analyst', 'GET', '/customers?limit=1&sort=name')).statusCode).toBe(403);
    const res = json(await send('admin', 'GET', '/customers?limit=1&sort=name'));
    const bytes = Buffer.from(res.nextCursor, 'base64url');
    for (const name of ['hostile customer', 'hostile customer2']) {
      expect(bytes.includes(Buffer.from(name))).toBe(false);
      expect(res.nextCursor.includes(Buffer.from(name).toString('base64url').slice(0, 8))).toBe(false);
    }
    expect(() => JSON.parse(bytes.toString('utf8'))).toThrow();
  });
});

/** A raw HTTP/1.1 exchange on a real socket (inject bypasses the HTTP parser): the status code answered. */
const rawStatus = (port: number, request: string | Buffer): Promise<number> =>
  new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer in 30 s to ${String(request).slice(0, 80)}`));
    }, 30_000);
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (match) {
        clearTimeout(timer);
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(request);
  });

describe('headers and bodies', () => {
  it('huge and duplicated headers and bad JSON are answered below 500 and append nothing', async () => {
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = h.app.server.address() as AddressInfo;
    const before = await eventCount(h);
    const body = JSON.stringify({ name: 'Dup', email: 'dup@example.com' });
    const post = (headers: string[], payload = body) =>
      `POST /customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers.join('\r\n')}\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`;
    const auth = `Authorization: Bearer ${h.keys.sales}`;
    const patch = (headers: string[]) =>
      `PATCH /customers/${ids.customer} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n${auth}\r\n${headers.join('\r\n')}\r\nContent-Length: 17\r\n\r\n{"company":"Dup"}`;
    const statuses: [string, number][] = [
      ['huge header', await rawStatus(port, post([auth, 'Content-Type: application/json', `X-Filler: ${'a'.repeat(70_000)}`]))],
      ['thousands of headers', await rawStatus(port, post([auth, 'Content-Type: application/json', ...Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`)]))],
      ['huge authorization', await rawStatus(port, post([`Authorization: Bearer ${'k'.repeat(10_000)}`, 'Content-Type: application/json']))],
      [
        'two authorizations, the first bad',
        await rawStatus(port, post(['Authorization: Bearer crm_bad', auth, 'Content-Type: application/json'], '{"name":"A\\u0000"}')),
      ],
      [
        'two content types',
        await rawStatus(port, post([auth, 'Content-Type: application/json', 'Content-Type: text/plain'], '{"name":"A\\u0000","email":"a@example.com"}')),
      ],
      ['two If-Match', await rawStatus(port, patch(['If-Match: "0"', 'If-Match: "1"']))],
      ['If-Match with NUL escape', await rawStatus(port, patch(['If-Match: "0\\u0000"']))],
      ['control byte in a header', await rawStatus(port, patch(['If-Match: "0\u0001"']))],
      [
        'latin-1 bytes in a header',
        await rawStatus(port, Buffer.from(patch(['X-Request-Id: caf\u00e9']).replace('{"company":"Dup"}', '{"company":"D\\u0000"}'), 'latin1')),
      ],
    ];
    for (const [what, status] of statuses) expect(status, what).toBeGreaterThanOrEqual(400);
    for (const [what, status] of statuses) expect(status, what).toBeLessThan(500);

    const bad: [string, string | Buffer][] = [
      ['truncated', '{"name":'],
      ['not JSON', 'name=A'],
      ['deep nesting', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
      ['prototype pollution', '{"__proto__":{"admin":true},"name":"A","email":"a@example.com"}'],
      ['constructor pollution', '{"constructor":{"prototype":{"x":1}},"name":"A","email":"a@example.com"}'],
      ['duplicate keys, the last unstorable', '{"name":"A","name":"B\\u0000","email":"a@example.com"}'],
      ['too large', JSON.stringify({ name: 'A', email: 'a@example.com', company: 'x'.repeat(1_100_000) })],
      ['escaped NUL in a key', '{"name\\u0000":"A","email":"a@example.com"}'],
      ['NUL byte raw in JSON', Buffer.from('{"name":"A\u0000","email":"a@example.com"}')],
    ];
    for (const [what, payload] of bad) {
      const res = await send('sales', 'POST', '/customers', payload, { 'content-type': 'application/json' });
      expect(res.statusCode, `${what}: ${res.body.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${what}: ${res.body.slice(0, 200)}`).toBeLessThan(500);
      expect(res.headers['content-type'], what).toMatch(/^application\/problem\+json/);
      // A member named __proto__ is valid JSON: the answer says why it is refused.
      if (what.endsWith('pollution')) expect(res.json<{ detail: string }>().detail, what).toMatch(/__proto__ or constructor\.prototype/);
    }
    // Every write route of the app (admin, analytics and audit included), with unstorable or broken bodies.
    const writes = h.app.routeList.filter((r) => ['POST', 'PATCH', 'DELETE'].includes(r.method));
    for (const route of writes) {
      const url = route.url.replace(/:[a-zA-Z]+/g, (param) => (param === ':id' ? 'a%00b' : ids.customer));
      for (const payload of ['{"x":"\\u0000"}', '{"name":"\\ud800"}', '{', '[]', '"\\udc00"']) {
        const res = await send('admin', route.method as 'POST' | 'PATCH' | 'DELETE', url, payload, { 'content-type': 'application/json' });
        // Routes without a body (e.g. POST /audit/chain/seal) ignore it; none may fail on it.
        expect(res.statusCode, `${route.method} ${url} ${payload}: ${res.body.slice(0, 200)}`).toBeLessThan(500);
      }
    }
    expect(await eventCount(h)).toBe(before);
  }, 180_000);

  it('bytes that are not UTF-8 in a body read as U+FFFD: accepted, and projected', async () => {
    const payload = Buffer.concat([
      Buffer.from('{"name":"Caf'),
      Buffer.from([0xe9, 0xff, 0xed, 0xa0, 0x80]),
      Buffer.from(`","email":"bytes-${randomUUID()}@example.com"}`),
    ]);
    const res = await send('sales', 'POST', '/customers', payload, { 'content-type': 'application/json' });
    expect(res.statusCode, res.body).toBeLessThan(500);
    await projectionsSettled(h);
  });

  it('a key given twice in one object of a body is a 400 naming it (the last one won without a word), and appends nothing', async () => {
    const before = await eventCount(h);
    const json = { 'content-type': 'application/json' };
    const tag = await send('sales', 'POST', `/customers/${ids.customer}/tags`, '{"tag":"x5","tag":"x6"}', json);
    expect(tag.statusCode, tag.body).toBe(400);
    expect(tag.json<{ errors: unknown[] }>().errors).toEqual([{ field: 'tag', in: 'body', message: 'given twice; send it once' }]);
    const nested = await send(
      'marketing',
      'POST',
      '/campaigns',
      '{"name":"Twice","channel":"email","budget":1,"currency":"EUR","targetSegment":{"tags":["a"],"tags":["b"]}}',
      json,
    );
    expect(nested.statusCode, nested.body).toBe(400);
    expect(nested.json<{ errors: unknown[] }>().errors).toEqual([expect.objectContaining({ field: 'targetSegment.tags' })]);
    expect(await eventCount(h)).toBe(before);
    // The same names in two objects are no repeat.
    const once = await send('sales', 'POST', `/customers/${ids.customer}/tags`, '{"tag":"x7"}', json);
    expect(once.statusCode, once.body).toBe(200);
  });

  it('a compressed JSON body is a 415 naming Content-Encoding, as an import is, and appends nothing', async () => {
    const before = await eventCount(h);
    const body = JSON.stringify({ name: 'Zipped', email: `zipped-${randomUUID()}@example.com` });
    for (const coding of ['gzip', 'br', 'deflate, gzip']) {
      const payload = coding === 'gzip' ? gzipSync(body) : Buffer.from(body);
      const res = await send('sales', 'POST', '/customers', payload, { 'content-type': 'application/json', 'content-encoding': coding });
      expect(res.statusCode, `${coding}: ${res.body}`).toBe(415);
      expect(res.json<{ errors: unknown[] }>().errors, coding).toEqual([{ field: 'content-encoding', message: expect.stringContaining('uncompressed') }]);
    }
    expect(await eventCount(h)).toBe(before);
    const identity = await send('sales', 'POST', '/customers', body, { 'content-type': 'application/json', 'content-encoding': 'identity' });
    expect(identity.statusCode, identity.body).toBe(201);
  });

  it('a body in a transfer coding beside chunked is a 415 too, and appends nothing (its gzip was read as the JSON)', async () => {
    if (!h.app.server.listening) await h.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = h.app.server.address() as AddressInfo;
    const before = await eventCount(h);
    const zipped = gzipSync(JSON.stringify({ name: 'Chunked', email: `chunked-${randomUUID()}@example.com` }));
    const head = `POST /customers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${h.keys.sales}\r\nContent-Type: application/json\r\n`;
    const chunked = (coding: string, payload: Buffer) =>
      Buffer.concat([Buffer.from(`${head}Transfer-Encoding: ${coding}\r\n\r\n${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n0\r\n\r\n')]);
    expect(await rawStatus(port, chunked('gzip, chunked', zipped))).toBe(415);
    expect(await eventCount(h)).toBe(before);
    const plain = Buffer.from(JSON.stringify({ name: 'Chunked', email: `chunked-${randomUUID()}@example.com` }));
    expect(await rawStatus(port, chunked('chunked', plain))).toBe(201);
  });

  it('a body of many unknown fields is answered with a bounded list, not an echo of the body', async () => {
    // 130,000 unknown keys in 1 MB were answered with 7.6 MB naming each twice, holding the event loop for a second.
    const before = await eventCount(h);
    const keys = Array.from({ length: 100_000 }, (_, i) => `k${i.toString(36)}`);
    const long = 'x'.repeat(50_000);
    const body = `{"name":"Many","email":"many-${randomUUID()}@example.com",${keys.map((key) => `"${key}":0`).join(',')},"${long}":1}`;
    const res = await send('sales', 'POST', '/customers', body, { 'content-type': 'application/json' });
    expect(res.statusCode).toBe(400);
    const problem = res.json<{ detail: string; errors: { field: string; message: string }[] }>();
    expect(problem.errors).toHaveLength(20);
    expect(problem.errors[0]).toMatchObject({ field: 'k0', message: 'unknown field' });
    expect(problem.detail).toContain('(and 99981 more errors; the first 20 are listed)');
    expect(res.body.length).toBeLessThan(5_000);
    // A long name is cut where it is repeated.
    const one = await send('sales', 'POST', '/customers', { name: 'One', email: 'one@example.com', [long]: 1 });
    expect(one.statusCode).toBe(400);
    expect(one.json<{ errors: { field: string }[] }>().errors).toMatchObject([{ field: `${'x'.repeat(200)}…`, message: 'unknown field' }]);
    expect(one.body.length).toBeLessThan(1_000);
    expect(await eventCount(h)).toBe(before);
  });
});

describe('after the corpus', () => {
  it('every projection is at the head, none failed, and /ready is ready', async () => {
    await projectionsSettled(h);
    await expectReady(h);
  });
});
