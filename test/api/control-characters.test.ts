import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { ruleFor } from '../../api/roles.ts';
import { commandTargets, roleFor, type Target } from './command-targets.ts';
import { eventCount, json, projectionsSettled, startApi, type ApiHarness } from './support.ts';

/**
 * Control characters in the texts commands take: a bell, an ESC sequence or a line break in a name
 * reached CSV exports, logs and the CLI, where a terminal obeyed it. One-line fields refuse C0, DEL,
 * C1 and U+2028/U+2029; several-line fields keep tabs and line breaks (`\n`, `\r\n`) and refuse the
 * rest. Each refusal is a 400 naming the field and the code point, and appends nothing; events
 * recorded before with such characters still project and read back.
 */
let h: ApiHarness;
const ids = { customer: '', deal: '', campaign: '', feedback: '', activity: '' };

const send = (role: Role, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object, headers: Record<string, string> = {}) =>
  h.app.inject({ method, url, headers: { ...h.auth(role), ...headers }, ...(payload === undefined ? {} : { payload }) });

const accepted = async (res: LightMyRequestResponse): Promise<{ id: string }> => {
  if (res.statusCode >= 300) throw new Error(`${res.statusCode}: ${res.body}`);
  return json(res);
};

const kindOf = (url: string) =>
  ({ customers: 'customer', deals: 'deal', campaigns: 'campaign', feedback: 'feedback', activities: 'activity' })[url.split('/')[1]!]!;

/** Sends a command to a real record of its kind, with If-Match where the route requires it. */
const command = async (t: Target, body: object): Promise<LightMyRequestResponse> => {
  const kind = kindOf(t.url);
  const id = ids[kind as keyof typeof ids];
  const headers: Record<string, string> = {};
  if (t.url.includes(':id') && ruleFor(t.method, t.url).ifMatch === 'required')
    headers['if-match'] = `"${(await h.store.readStream(`${kind}-${id}`)).length - 1}"`;
  return send(roleFor(t), t.method, t.url.replace(':id', id), body, headers);
};

const targets = commandTargets(() => ids.customer);
const target = (method: 'POST' | 'PATCH', url: string): Target => targets.find((t) => t.method === method && t.url === url)!;

/** A route, the body it is sent with `text` in one field, and that field as the problem names it. */
type Place = { name: string; send: (text: string) => Promise<LightMyRequestResponse>; field: string };
const at = (method: 'POST' | 'PATCH', url: string, field: string, place: (text: string) => object = (text) => ({ [field]: text })): Place => {
  const t = target(method, url);
  return { name: `${method} ${url} ${field}`, send: (text) => command(t, { ...t.valid(), ...place(text) }), field };
};
const admin = (url: string, field: string, body: (text: string) => object): Place => ({
  name: `POST ${url} ${field}`,
  send: (text) => send('admin', 'POST', url, body(text)),
  field,
});

const ONE_LINE: Place[] = [
  at('POST', '/customers', 'name'),
  at('POST', '/customers', 'company'),
  at('POST', '/customers', 'phone'),
  at('POST', '/customers', 'source'),
  at('POST', '/customers', 'email'),
  at('POST', '/customers', 'tags.0', (text) => ({ tags: [text] })),
  at('PATCH', '/customers/:id', 'name'),
  at('PATCH', '/customers/:id', 'company'),
  at('POST', '/customers/:id/tags', 'tag'),
  at('POST', '/customers/:id/purchases', 'orderId'),
  at('POST', '/customers/:id/refunds', 'orderId'),
  at('POST', '/customers/:id/refunds', 'refundId'),
  at('POST', '/deals', 'title'),
  at('POST', '/deals', 'ownerId'),
  at('PATCH', '/deals/:id', 'title'),
  at('PATCH', '/deals/:id', 'ownerId'),
  at('POST', '/campaigns', 'name'),
  at('POST', '/campaigns', 'targetSegment.tags.0', (text) => ({ targetSegment: { tags: [text] } })),
  at('POST', '/campaigns', 'targetSegment.sources.0', (text) => ({ targetSegment: { sources: [text] } })),
  at('POST', '/campaigns', 'targetSegment.rfmSegments.0', (text) => ({ targetSegment: { rfmSegments: [text] } })),
  at('POST', '/campaigns/:id/costs', 'costId'),
  at('POST', '/feedback', 'subject'),
  at('POST', '/feedback/:id/assign', 'assigneeId'),
  at('POST', '/feedback/:id/respond', 'responderId'),
  at('POST', '/customers/:id/activities', 'subject'),
  at('PATCH', '/activities/:id', 'subject'),
  admin('/admin/teams', 'name', (name) => ({ name })),
  admin('/admin/users', 'name', (name) => ({ name, email: `u-${randomUUID()}@crm.example`, role: 'sales' })),
  // A key's name is the actor's name on every event its commands record.
  admin('/admin/api-keys', 'name', (name) => ({ name, role: 'analyst' })),
  admin('/webhooks', 'url', (url) => ({ url, events: ['*'] })),
];

const SEVERAL_LINES: Place[] = [
  at('POST', '/customers/:id/refunds', 'reason'),
  at('POST', '/customers/:id/deactivate', 'reason'),
  at('POST', '/deals/:id/won', 'reason'),
  at('POST', '/deals/:id/lost', 'reason'),
  at('POST', '/campaigns/:id/pause', 'reason'),
  at('POST', '/campaigns/:id/cancel', 'reason'),
  at('POST', '/campaigns/:id/costs', 'description'),
  at('POST', '/feedback', 'body'),
  at('POST', '/feedback/:id/respond', 'message'),
  at('POST', '/feedback/:id/escalate', 'reason'),
  at('POST', '/feedback/:id/resolve', 'resolution'),
  at('POST', '/feedback/:id/reopen', 'reason'),
  at('POST', '/feedback/:id/rating', 'comment'),
  at('POST', '/customers/:id/activities', 'body'),
  at('PATCH', '/activities/:id', 'body'),
  at('POST', '/exchange-rates', 'reason'),
  admin('/webhooks', 'description', (description) => ({ url: 'https://example.com/hook', events: ['*'], description })),
];

/** What the administration keeps outside the events: API keys and webhook subscriptions, as listed. */
const adminRecords = async () => ({
  keys: json<{ items: unknown[] }>(await send('admin', 'GET', '/admin/api-keys')).items.length,
  webhooks: json<{ items: unknown[] }>(await send('admin', 'GET', '/webhooks')).items.length,
});

/** The 400 names the field, with the code point and its position (in characters, from 1). */
const expectRefused = (res: LightMyRequestResponse, place: Place, text: string, said: string) => {
  const what = `${place.name} = ${JSON.stringify(text)}`;
  if (res.statusCode !== 400) throw new Error(`${what}: expected 400, got ${res.statusCode}: ${res.body.slice(0, 300)}`);
  expect(res.headers['content-type'], what).toMatch(/^application\/problem\+json/);
  const errors = json<{ errors?: { field: string; message: string }[] }>(res).errors ?? [];
  expect(errors, what).toEqual([{ field: place.field, in: 'body', message: expect.stringContaining(said) as string }]);
};

beforeAll(async () => {
  h = await startApi('api_control_characters');
  ids.customer = (await accepted(await send('admin', 'POST', '/customers', { name: 'Control Person', email: `control-${randomUUID()}@example.com` }))).id;
  await accepted(await send('sales', 'POST', `/customers/${ids.customer}/purchases`, { orderId: 'o', amount: 10, currency: 'EUR' }));
  ids.deal = (
    await accepted(
      await send('sales', 'POST', '/deals', {
        customerId: ids.customer,
        title: 'Deal',
        amount: 5,
        currency: 'EUR',
        ownerId: 'o',
        expectedCloseDate: '2026-06-01',
      }),
    )
  ).id;
  ids.campaign = (await accepted(await send('marketing', 'POST', '/campaigns', { name: 'Campaign', channel: 'email', budget: 100, currency: 'EUR' }))).id;
  ids.feedback = (
    await accepted(await send('support', 'POST', '/feedback', { customerId: ids.customer, kind: 'question', channel: 'web', subject: 'Q', body: 'b' }))
  ).id;
  ids.activity = (await accepted(await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'task', subject: 'Call back', body: 'b' }))).id;
  await projectionsSettled(h);
}, 120_000);
afterAll(async () => h?.close());

describe('a one-line text (a name, title, subject, company, tag, id or owner)', () => {
  it('refuses C0 and C1 controls, DEL and the line separators, naming the field and the code point, and appends nothing', async () => {
    const before = await eventCount(h);
    const cases: [string, string][] = [
      ['Ana\u0007Lima', 'contains the control character U+0007 at position 4'],
      ['Bob\u001b[31m', 'contains the control character U+001B at position 4'],
      ['x\u0085y', 'contains the control character U+0085 at position 2'],
      ['a\nb', 'contains the control character U+000A at position 2 (a line break: this field takes one line)'],
      ['a\r\nb', 'contains the control character U+000D at position 2'],
      ['a\tb', 'contains the control character U+0009 at position 2'],
      ['ab\u007f', 'contains the control character U+007F at position 3'],
      ['a\u2028b', 'contains the line separator U+2028 at position 2'],
      ['a\u2029b', 'contains the paragraph separator U+2029 at position 2'],
      // Positions count characters of the text sent: an emoji is one, though two UTF-16 units.
      ['😀\u009b2J', 'contains the control character U+009B at position 2'],
      ['  Ana\u0007Lima', 'contains the control character U+0007 at position 6'],
    ];
    const records = await adminRecords();
    for (const place of ONE_LINE) for (const [text, said] of cases) expectRefused(await place.send(text), place, text, said);
    expect(await eventCount(h)).toBe(before);
    expect(await adminRecords()).toEqual(records);
  }, 180_000);

  it('is read trimmed: a tab or a line end around it (pasted with it) is dropped, not refused', async () => {
    const { id } = await accepted(await send('sales', 'POST', '/customers', { name: '\tAna Lima\r\n', email: ` ana-${randomUUID()}@example.com\t` }));
    await projectionsSettled(h);
    expect(json(await send('sales', 'GET', `/customers/${id}`)).name).toBe('Ana Lima');
  });
});

describe('a text of several lines (a note, body, reason, comment, description)', () => {
  it('refuses controls other than tab, line feed and CR LF, naming the field and the code point, and appends nothing', async () => {
    const before = await eventCount(h);
    const cases: [string, string][] = [
      ['Ana\u0007Lima', 'contains the control character U+0007 at position 4'],
      ['ok\n\u001b[2J', 'contains the control character U+001B at position 4'],
      ['x\u0085y', 'contains the control character U+0085 at position 2'],
      // A carriage return alone sends a terminal back to the start of its line.
      ['paid\rrefunded', 'contains the control character U+000D at position 5'],
      ['a\u000bb', 'contains the control character U+000B at position 2'],
      ['\u007f', 'contains the control character U+007F at position 1'],
    ];
    const records = await adminRecords();
    for (const place of SEVERAL_LINES) for (const [text, said] of cases) expectRefused(await place.send(text), place, text, said);
    expect(await eventCount(h)).toBe(before);
    expect(await adminRecords()).toEqual(records);
  }, 180_000);

  it('keeps tabs and line breaks', async () => {
    const body = 'Line one\r\nLine two\n\tindented\u2028four';
    const feedback = await accepted(
      await send('support', 'POST', '/feedback', { customerId: ids.customer, kind: 'question', channel: 'web', subject: 'Lines', body }),
    );
    const activity = await accepted(await send('sales', 'POST', `/customers/${ids.customer}/activities`, { kind: 'note', subject: 'Lines', body }));
    await projectionsSettled(h);
    expect(json(await send('support', 'GET', `/feedback/${feedback.id}`)).body).toBe(body);
    expect(json(await send('sales', 'GET', `/activities/${activity.id}`)).body).toBe(body);
    const webhook = await accepted(await send('admin', 'POST', '/webhooks', { url: 'https://example.com/hook', events: ['*'], description: body }));
    expect(json(await send('admin', 'GET', `/webhooks/${webhook.id}`)).description).toBe(body);
  });
});

describe('events recorded before the rule', () => {
  it('still project and read back with their control characters', async () => {
    const campaignId = randomUUID();
    const name = 'Spring\u0007Sale\u001b[31m\u2028x';
    const metadata = {
      actor: { userId: 'm', roles: ['marketing'] },
      correlationId: 'c',
      causationId: null,
      occurredAt: new Date().toISOString(),
      schemaVersion: 1,
      command: 'Test',
    };
    const created = { campaignId, name, channel: 'email', budget: 100, currency: 'EUR', schedule: null, targetSegment: { sources: ['web\tshop'] } };
    await h.store.appendToStream(`campaign-${campaignId}`, [{ id: randomUUID(), type: 'CampaignCreated', data: created, metadata }]);
    await projectionsSettled(h);
    const res = await send('marketing', 'GET', `/campaigns/${campaignId}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(json(res).name).toBe(name);
    // A later command on it is taken: the rule is the command's text, not the record's. So is one sent
    // with a key named before the rule, whose name the event records as its actor's.
    const keyName = 'bot\u001b[31m';
    const { key } = await h.app.keys.create({ name: keyName, role: 'marketing' });
    const launched = await h.app.inject({
      method: 'POST',
      url: `/campaigns/${campaignId}/launch`,
      headers: { authorization: `Bearer ${key}`, 'if-match': '"0"' },
      payload: {},
    });
    expect(launched.statusCode, launched.body).toBeLessThan(300);
    const history = json<{ items: { actorName: string | null }[] }>(await send('auditor', 'GET', `/audit/streams/campaign-${campaignId}`));
    expect(history.items.map((e) => e.actorName)).toContain(keyName);
  });
});
