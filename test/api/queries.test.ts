import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type CrmApp } from '../../api/app.ts';
import type { Role } from '../../api/roles.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';
import { expectProblem, json, startApi, type ApiHarness } from './support.ts';

let h: ApiHarness;
/** The same dependencies with a 200 ms bound on ?waitFor=. */
let impatient: CrmApp;
beforeAll(async () => {
  h = await startApi('api_queries');
  impatient = await buildApp({ ...h.deps, waitForTimeoutMs: 200 });
});
afterAll(async () => {
  await impatient?.close();
  await h?.close();
});

const post = async (role: Role, url: string, payload: unknown, headers: Record<string, string> = {}, method: 'POST' | 'PATCH' = 'POST') => {
  const res = await h.app.inject({ method, url, headers: { ...h.auth(role), ...headers }, payload: payload as object });
  if (res.statusCode >= 300) throw new Error(`${method} ${url} -> ${res.statusCode}: ${res.body}`);
  return json<{ id: string; revision: number; position: string }>(res);
};
const get = (role: Role, url: string) => h.app.inject({ method: 'GET', url, headers: h.auth(role) });

describe('read your writes through the query routes', () => {
  it('shows a registered customer and their purchases once the read models reach the position', async () => {
    const email = `ada-${randomUUID()}@example.com`;
    const created = await post('sales', '/customers', { name: 'Ada Query', email, company: 'Engines' });
    await post('sales', `/customers/${created.id}/purchases`, { orderId: 'Q-1', amount: 120.5, currency: 'EUR' });
    const last = await post('sales', `/customers/${created.id}/purchases`, { orderId: 'Q-2', amount: 0.25, currency: 'EUR' });

    const res = await get('sales', `/customers/${created.id}?waitFor=${last.position}`);
    expect(res.statusCode).toBe(200);
    const customer = json(res);
    expect(customer).toMatchObject({ id: created.id, name: 'Ada Query', email, orderCount: 2, revenue: 120.75, currency: 'EUR' });
    expect(res.headers.etag).toBe(`"${last.revision}"`);

    // The ETag of a read is what the next change sends as If-Match.
    const patched = await post('sales', `/customers/${created.id}`, { company: 'Difference Engines' }, { 'if-match': String(res.headers.etag) }, 'PATCH');
    const after = json(await get('sales', `/customers/${created.id}?waitFor=${patched.position}`));
    expect(after.company).toBe('Difference Engines');

    const list = json(await get('support', `/customers?search=${encodeURIComponent(email)}&waitFor=${patched.position}`));
    expect(list.items.map((c: { id: string }) => c.id)).toEqual([created.id]);
    expect(list.nextCursor).toBeNull();

    const timeline = json(await get('sales', `/customers/${created.id}/timeline?waitFor=${patched.position}`));
    expect(timeline.items.length).toBe(4);
    expect(timeline.items[0]).toHaveProperty('summary');
  });

  it('finds a name holding invisible characters by its visible letters, and by a search that holds them, in any case', async () => {
    // A name pasted with a zero-width space and a soft hyphen: `?search=` compared the stored text and missed it.
    const mark = randomUUID().slice(0, 8);
    const created = await post('sales', '/customers', { name: `Zo\u200be Inv\u00adisible ${mark}`, email: `zw-${mark}@example.com` });
    const found = async (search: string) =>
      json(await get('sales', `/customers?search=${encodeURIComponent(search)}&waitFor=${created.position}`)).items.map((c: { id: string }) => c.id);
    expect(await found(`zoe invisible ${mark}`)).toEqual([created.id]);
    expect(await found(`ZOE`)).toContain(created.id);
    expect(await found(`zo\u200be`)).toContain(created.id);
    expect(await found(`\u200b${mark}`)).toEqual([created.id]);
    // The record keeps the name as written.
    expect(json(await get('sales', `/customers/${created.id}`)).name).toBe(`Zo\u200be Inv\u00adisible ${mark}`);
  });

  it('lists an audience: the customers who consent to marketing (or not), in the list and its export', async () => {
    const tag = `aud${randomUUID().slice(0, 8)}`;
    const yes = await post('marketing', '/customers', { name: 'Consents', email: `yes-${tag}@example.com`, tags: [tag], marketingConsent: true });
    const no = await post('marketing', '/customers', { name: 'Declines', email: `no-${tag}@example.com`, tags: [tag], marketingConsent: false });
    const ids = async (url: string) => json(await get('marketing', url)).items.map((c: { id: string }) => c.id);
    expect(await ids(`/customers?tag=${tag}&marketingConsent=true&waitFor=${no.position}`)).toEqual([yes.id]);
    expect(await ids(`/customers?tag=${tag}&marketingConsent=false`)).toEqual([no.id]);
    // A tag is looked up in any case: the list a marketer filters by `AUD...` is the same.
    expect(await ids(`/customers?tag=${tag.toUpperCase()}&marketingConsent=true`)).toEqual([yes.id]);
    const exported = await get('marketing', `/customers/export?tag=${tag}&marketingConsent=true&format=ndjson`);
    expect(
      exported.body
        .trim()
        .split('\n')
        .map((line) => (JSON.parse(line) as { id: string }).id),
    ).toEqual([yes.id]);
    expectProblem(await get('marketing', '/customers?marketingConsent=yes'), 400);
    // Nobody merged away or forgotten is in an audience, whatever their row's consent.
    const twin = await post('marketing', '/customers', { name: 'Consents Twin', email: `twin-${tag}@example.com`, tags: [tag], marketingConsent: true });
    const gone = await post('marketing', '/customers', { name: 'Consents Gone', email: `gone-${tag}@example.com`, tags: [tag], marketingConsent: true });
    await post('admin', `/customers/${yes.id}/merge`, { duplicateId: twin.id }, { 'if-match': '"0"' });
    const forgotten = await post('admin', `/customers/${gone.id}/forget`, {});
    expect(await ids(`/customers?tag=${tag}&marketingConsent=true&waitFor=${forgotten.position}`)).toEqual([yes.id]);
  });

  it('pages lists with a cursor, without repeats', async () => {
    const tag = `page${randomUUID().slice(0, 8)}`;
    let position = '0';
    for (let i = 0; i < 3; i++)
      position = (await post('marketing', '/customers', { name: `Pager ${i}`, email: `p${i}-${tag}@example.com`, tags: [tag] })).position;
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/customers?tag=${tag}&limit=2&sort=name&waitFor=${position}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await get('sales', url);
      expect(res.statusCode, res.body).toBe(200);
      const page = json(res);
      seen.push(...page.items.map((c: { id: string }) => c.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toHaveLength(3);
    expect(new Set(seen).size).toBe(3);
    expectProblem(await get('sales', '/customers?cursor=garbage'), 400);
  });

  it('masks personal data for analysts, not for auditors', async () => {
    const created = await post('sales', '/customers', { name: 'Private Person', email: `private-${randomUUID()}@example.com`, phone: '+44 20 7946 0000' });
    const fb = await post('support', '/feedback', { customerId: created.id, kind: 'complaint', channel: 'email', subject: 'My secret', body: 'Details' });
    const asAnalyst = json(await get('analyst', `/customers/${created.id}?waitFor=${fb.position}`));
    expect(asAnalyst).toMatchObject({ id: created.id, name: '[masked]', email: '[masked]', phone: '[masked]' });
    const list = json(await get('analyst', `/customers?limit=500`));
    expect(JSON.stringify(list)).not.toContain('Private Person');
    const feedback = json(await get('analyst', `/feedback/${fb.id}`));
    expect(feedback.subject).toBe('[masked]');
    expect(JSON.stringify(feedback)).not.toContain('Details');
    // The resolution quotes the customer: masked in the record as it stood too (it showed as written).
    const resolved = await post('support', `/feedback/${fb.id}/resolve`, { resolution: 'Sent Private Person a new one' }, { 'if-match': `"${fb.revision}"` });
    const asItStood = json(await get('analyst', `/feedback/${fb.id}?asOf=${new Date(Date.now() + 1_000).toISOString()}&waitFor=${resolved.position}`));
    expect(asItStood).toMatchObject({ id: fb.id, status: 'resolved', resolution: '[masked]' });
    expect(json(await get('auditor', `/feedback/${fb.id}?asOf=${new Date(Date.now() + 1_000).toISOString()}`)).resolution).toBe(
      'Sent Private Person a new one',
    );
    // Searching by name or email would re-identify the people masked for analysts.
    expectProblem(await get('analyst', `/customers?search=Private`), 403, 'forbidden');
    // So would a page sorted by the masked names (their alphabetical order); other sorts are open.
    for (const sort of ['name', '-name']) {
      const sorted = await get('analyst', `/customers?sort=${sort}`);
      expectProblem(sorted, 403, 'forbidden');
      expect(json(sorted).errors).toEqual([{ field: 'sort', message: 'sorts by personal data' }]);
    }
    expect((await get('analyst', `/customers?sort=-createdAt`)).statusCode).toBe(200);
    expect((await get('auditor', `/customers?sort=name`)).statusCode).toBe(200);
    const asAuditor = json(await get('auditor', `/customers/${created.id}`));
    expect(asAuditor.name).toBe('Private Person');
    expect(json(await get('auditor', `/feedback/${fb.id}`)).subject).toBe('My secret');
  });

  it('serves deals, pipeline, campaigns and feedback', async () => {
    const customer = await post('sales', '/customers', { name: 'Deal Maker', email: `deal-${randomUUID()}@example.com` });
    const owner = `owner-${randomUUID()}`;
    const deal = await post('sales', '/deals', {
      customerId: customer.id,
      title: 'Big one',
      amount: 1000.1,
      currency: 'EUR',
      ownerId: owner,
      expectedCloseDate: '2027-03-15',
    });
    const campaign = await post('marketing', '/campaigns', { name: 'Launch', channel: 'social', budget: 500, currency: 'EUR' });
    const fb = await post('support', '/feedback', { customerId: customer.id, kind: 'question', channel: 'chat', subject: 'How?', body: 'How does it work?' });
    const waitFor = [deal, campaign, fb]
      .map((r) => BigInt(r.position))
      .reduce((a, b) => (a > b ? a : b))
      .toString();

    expect(json(await get('analyst', `/deals/${deal.id}?waitFor=${waitFor}`))).toMatchObject({ id: deal.id, stage: 'lead', amount: 1000.1, currency: 'EUR' });
    expect(json(await get('analyst', `/deals?ownerId=${owner}`)).items).toHaveLength(1);
    const pipeline = json(await get('sales', `/pipeline?ownerId=${owner}`));
    expect(pipeline.totals).toEqual([expect.objectContaining({ currency: 'EUR', dealCount: 1, amount: 1000.1 })]);
    expect(pipeline.closed).toMatchObject({ closedFrom: null, closedTo: null, totals: { won: 0, lost: 0, winRate: null } });
    const won = await post('sales', `/deals/${deal.id}/won`, { reason: 'best offer' }, { 'if-match': '"0"' });
    const closed = json(await get('sales', `/pipeline?ownerId=${owner}&closedFrom=2000-01-01&waitFor=${won.position}`));
    // `me` names the caller's user, as on the customers list; a service key has none.
    expectProblem(await get('sales', '/pipeline?ownerId=me'), 400);
    expectProblem(await get('sales', '/deals?ownerId=me'), 400);
    expect(closed.totals).toEqual([]);
    expect(closed.closed).toMatchObject({ closedFrom: '2000-01-01', totals: { won: 1, lost: 0, winRate: 1, wonAmount: 1000.1 } });
    // A period that ends before it starts names the field; so does a date that is none.
    for (const [query, field] of [
      ['closedFrom=2026-02-01&closedTo=2026-01-31', 'closedTo'],
      ['closedFrom=2026-02-30', 'closedFrom'],
    ]) {
      const refused = await get('sales', `/pipeline?${query}`);
      expect(refused.statusCode, query).toBe(400);
      expect(json(refused).errors, query).toEqual([expect.objectContaining({ field, in: 'query' })]);
    }
    expect(json(await get('marketing', `/campaigns/${campaign.id}`))).toMatchObject({ name: 'Launch', status: 'draft', budget: 500 });
    expect(json(await get('marketing', '/campaigns?channel=social')).items.map((c: { id: string }) => c.id)).toContain(campaign.id);
    expect(json(await get('support', `/feedback/${fb.id}`))).toMatchObject({ status: 'open', priority: 'normal' });
    expect(json(await get('support', `/feedback?customerId=${customer.id}`)).items).toHaveLength(1);
  });

  it('answers a record as it stood at an instant (?asOf=)', async () => {
    const created = await post('sales', '/customers', { name: 'Before', email: `asof-${randomUUID()}@example.com` });
    await new Promise((r) => setTimeout(r, 20));
    const between = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await post('sales', `/customers/${created.id}`, { name: 'After' }, { 'if-match': '"0"' }, 'PATCH');
    const then = json(await get('auditor', `/customers/${created.id}?asOf=${encodeURIComponent(between)}`));
    expect(then).toMatchObject({ revision: 0, asOf: between });
    expect(JSON.stringify(then)).toContain('Before');
    expect(JSON.stringify(then)).not.toContain('After');
    const masked = json(await get('analyst', `/customers/${created.id}?asOf=${encodeURIComponent(between)}`));
    expect(JSON.stringify(masked)).not.toContain('Before');
    expect(JSON.stringify(masked)).toContain('[masked]');
    expectProblem(await get('auditor', `/customers/${created.id}?asOf=yesterday`), 400);
    expectProblem(await get('auditor', `/customers/${created.id}?asOf=2000-01-01T00:00:00Z`), 404);
  });

  it('reads asOf on business time with ?time=business: back-dated history as it happened, which record time does not hold', async () => {
    const created = await post('sales', '/customers', { name: 'Since 2019', email: `biz-${randomUUID()}@example.com`, occurredAt: '2019-03-01T09:00:00Z' });
    await post('sales', `/customers/${created.id}/purchases`, { orderId: 'B-1', amount: 40, currency: 'EUR', occurredAt: '2019-06-01T12:00:00Z' });
    const last = await post('sales', `/customers/${created.id}/purchases`, { orderId: 'B-2', amount: 60, currency: 'EUR', occurredAt: '2020-02-01T12:00:00Z' });
    const endOf2019 = '2019-12-31T23:59:59.000Z';

    const then = json(await get('auditor', `/customers/${created.id}?asOf=${endOf2019}&time=business`));
    expect(then).toMatchObject({
      id: created.id,
      orderCount: 1,
      revenue: 40,
      time: 'business',
      asOf: endOf2019,
      revision: 1,
      occurredAt: '2019-06-01T12:00:00.000Z',
    });
    const audited = json(await get('auditor', `/audit/state/customer/${created.id}?asOf=${endOf2019}&time=business`));
    expect(audited).toMatchObject({ time: 'business', revision: 1, occurredAt: '2019-06-01T12:00:00.000Z', record: { orderCount: 1, revenue: 40 } });
    // Before the registration's business time there was no customer; after the last purchase, both count.
    expectProblem(await get('auditor', `/customers/${created.id}?asOf=2019-01-01T00:00:00Z&time=business`), 404);
    expect(json(await get('auditor', `/customers/${created.id}?asOf=2020-06-01T00:00:00Z&time=business`))).toMatchObject({
      orderCount: 2,
      revenue: 100,
      revision: last.revision,
    });
    // On record time (the default, and named) the CRM knew nothing of this customer in 2019.
    expectProblem(await get('auditor', `/customers/${created.id}?asOf=${endOf2019}`), 404);
    expectProblem(await get('auditor', `/customers/${created.id}?asOf=${endOf2019}&time=record`), 404);
    expectProblem(await get('auditor', `/audit/state/customer/${created.id}?asOf=${endOf2019}`), 404);

    const without = expectProblem(await get('auditor', `/customers/${created.id}?time=business`), 400, 'validation');
    expect(JSON.stringify(without)).toContain('time');
    const sideways = expectProblem(await get('auditor', `/customers/${created.id}?asOf=${endOf2019}&time=sideways`), 400, 'validation');
    expect(JSON.stringify(sideways)).toContain('time');
  });
});

describe('query errors', () => {
  it('answers 404 for an unknown id and 400 naming bad parameters', async () => {
    expectProblem(await get('sales', `/customers/${randomUUID()}`), 404, 'not-found');
    expectProblem(await get('sales', `/deals/${randomUUID()}/`), 404);
    const bad = expectProblem(await get('sales', '/customers?limit=0&colour=blue&waitFor=abc'), 400, 'validation');
    expect(bad.errors?.map((e) => e.field).sort()).toEqual(['colour', 'limit', 'waitFor']);
    expectProblem(await get('sales', '/customers/not-a-uuid'), 400);
    expectProblem(await get('sales', '/feedback?breached=maybe'), 400);
  });

  it('refuses a ?waitFor= past the largest position (2^63 - 1) at once with 400 naming it, instead of waiting for it', async () => {
    for (const waitFor of ['9223372036854775808', '18446744073709551615', '99999999999999999999', '123456789012345678901']) {
      for (const url of ['/customers', `/customers/${randomUUID()}`, '/pipeline', '/exchange-rates']) {
        const problem = expectProblem(await impatient.inject({ method: 'GET', url: `${url}?waitFor=${waitFor}`, headers: h.auth('sales') }), 400, 'validation');
        expect(problem.errors, `${url}?waitFor=${waitFor}`).toEqual([
          { field: 'waitFor', in: 'query', message: expect.stringContaining('9223372036854775807') },
        ]);
      }
    }
    // The largest position is a position, but one no command answered here: refused after a short wait.
    const never = expectProblem(
      await impatient.inject({ method: 'GET', url: '/customers?waitFor=9223372036854775807', headers: h.auth('sales') }),
      400,
      'validation',
    );
    expect(never.errors).toEqual([{ field: 'waitFor', in: 'query', message: expect.stringMatching(/^no event was recorded at position 9223372036854775807/) }]);
  });

  it('refuses a ?waitFor= past the newest recorded event (400 naming it, not a 503 saying to retry), and answers one just recorded', async () => {
    const head = await h.store.headPosition();
    const res = await impatient.inject({ method: 'GET', url: `/customers?waitFor=${head + 1_000_000_000n}`, headers: h.auth('sales') });
    const problem = expectProblem(res, 400, 'validation');
    expect(problem.errors).toEqual([{ field: 'waitFor', in: 'query', message: expect.stringContaining('send a position a command answered') }]);
    const created = await post('sales', '/customers', { name: 'Just Recorded', email: `just-${randomUUID()}@example.com` });
    expect((await get('sales', `/customers/${created.id}?waitFor=${created.position}`)).statusCode).toBe(200);
  });

  it('waits for a position just answered while an older transaction keeps it from being final (it was refused as never recorded)', async () => {
    // Another session's transaction, begun before the append and still open: the append commits, but no
    // feed reads it (nor anything after it) until that transaction ends.
    const other = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_current_xact_id()');
      const created = await post('sales', '/customers', { name: 'Held Back', email: `held-${randomUUID()}@example.com` });
      const read = get('sales', `/customers/${created.id}?waitFor=${created.position}`);
      // Past the 250 ms after which a position past the newest is refused, and the 3 s a reader waits for
      // appends committed before it to become final.
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      await other.query('COMMIT');
      const res = await read;
      expect(res.statusCode, res.body).toBe(200);
      expect(json(res).name).toBe('Held Back');
    } finally {
      await other.end();
    }
  });
});
