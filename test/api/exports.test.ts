import { sql } from 'kysely';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_COLUMNS } from '../../projections/queries/export.ts';
import { expectProblem, importCsv as importCsvAs, projectionsSettled, startApi, type ApiHarness } from './support.ts';
import { storedEvents } from '../support/events.ts';

/** `GET /customers/export`, `/deals/export`, `/feedback/export`, `/activities/export`, `/purchases/export`, `/refunds/export`, `/campaigns/export`, `/responses/export`, `/costs/export` on the real API over PostgreSQL. */
let api: ApiHarness;

/** `POST /imports?kind=` of a CSV body as an admin, once it has ended. */
const importCsv = (kind: string, csv: string) => importCsvAs(api, kind, csv);

/** A request as an admin. */
const send = (method: 'GET' | 'POST', url: string, payload?: object, headers: Record<string, string> = {}) =>
  api.app.inject({ method, url, headers: { ...api.auth('admin'), ...headers }, ...(payload ? { payload } : {}) });

/** A customer registered through the API, by id. */
const register = async (name: string) =>
  (await send('POST', '/customers', { name, email: `${name.toLowerCase()}-${Date.now()}@example.com` })).json().id as string;

/** The records of an NDJSON export about these customers (those of the other tests left out). */
const recordsAbout = (body: string, ...customers: string[]) =>
  body
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((record) => customers.includes(String(record.customerId)));

/** How many events of this type the store holds. */
const storedCount = async (type: string) => (await storedEvents(api.store)).filter((e) => e.type === type).length;

beforeAll(async () => {
  api = await startApi('api_exports');
  const csv = [
    'name,email,phone,registered_at',
    ...Array.from({ length: 620 }, (_, i) => `Person ${i},person${i}@example.com,+1 555 ${1000 + i},1997-01-02`),
  ].join('\n');
  await importCsv('customers', csv);
  // Until the read models hold every imported customer.
  await projectionsSettled(api);
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(api.schemas.read, 'customers')}`.execute(api.database.db);
  expect(rows[0]!.n).toBe(620);
}, 120_000);

afterAll(async () => {
  await api?.close();
});

describe('exports', () => {
  it('streams every customer (more than one page) as CSV, with personal data for a role that may see it', async () => {
    const response = await api.app.inject({ method: 'GET', url: '/customers/export', headers: { ...api.auth('sales'), accept: 'text/csv' } });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/csv');
    const lines = response.body.trim().split('\n');
    expect(lines.length).toBe(621);
    expect(lines[0]).toContain('email');
    expect(response.body).toContain('person619@example.com');
  });

  it('answers the format the Accept header prefers by its q values, CSV unless NDJSON is preferred, and says it varies by Accept', async () => {
    // Found with "Accept: application/x-ndjson;q=0, text/csv": a client that refuses NDJSON got NDJSON,
    // as any Accept that mentioned ndjson did, whatever its q.
    const formatFor = async (accept: string | undefined) => {
      const headers = { ...api.auth('admin'), ...(accept === undefined ? {} : { accept }) };
      const response = await api.app.inject({ method: 'GET', url: '/deals/export', headers });
      expect(String(response.headers.vary).toLowerCase()).toContain('accept');
      if (response.statusCode === 406) return 406;
      expect(response.statusCode).toBe(200);
      return String(response.headers['content-type']).startsWith('application/x-ndjson') ? 'ndjson' : 'csv';
    };
    const cases: [string | undefined, 'csv' | 'ndjson' | 406][] = [
      [undefined, 'csv'],
      ['', 'csv'],
      ['application/x-ndjson', 'ndjson'],
      ['application/jsonl', 'ndjson'],
      ['application/x-ndjson;q=0, text/csv', 'csv'],
      ['text/csv;q=0.9, application/x-ndjson;q=0.5', 'csv'],
      ['text/csv;q=0.5, application/x-ndjson;q=0.9', 'ndjson'],
      ['text/csv;q=0, application/x-ndjson', 'ndjson'],
      ['text/csv, application/x-ndjson', 'ndjson'],
      ['*/*', 'csv'],
      ['text/*', 'csv'],
      ['application/*', 'ndjson'],
      // A browser's navigation: HTML and XML first, anything at a lower q.
      ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'csv'],
      ['application/json, text/plain, */*', 'csv'],
      // The most specific range says what it names: CSV refused, anything else welcome.
      ['text/csv;q=0, */*', 'ndjson'],
      ['application/x-ndjson;q=0, */*', 'csv'],
      ['text/csv;q=0, application/x-ndjson;q=0, */*', 406],
      // Nothing this route answers: a 406 where it used to send CSV anyway.
      ['application/xml', 406],
      ['text/html', 406],
      ['application/json', 406],
      ['application/x-ndjsonx', 406],
      ['text/csv;q=0', 406],
      ['application/x-ndjson; q=0', 406],
    ];
    for (const [accept, format] of cases) expect(await formatFor(accept), String(accept)).toBe(format);
  });

  it('answers an Accept it cannot meet with a 406 naming the media types it can, on each export; ?format= wins over it as before', async () => {
    for (const kind of ['customers', 'deals', 'feedback']) {
      const refused = await api.app.inject({ method: 'GET', url: `/${kind}/export`, headers: { ...api.auth('admin'), accept: 'application/xml' } });
      const problem = expectProblem(refused, 406, 'not-acceptable');
      expect(problem.mediaTypes).toEqual(['text/csv', 'application/x-ndjson']);
      expect(problem.errors).toEqual([{ field: 'accept', in: 'headers', message: 'takes none of text/csv, application/x-ndjson' }]);
      expect(problem.detail).toContain('?format=csv');
      expect(String(refused.headers.vary).toLowerCase()).toContain('accept');
      for (const format of ['csv', 'ndjson']) {
        const chosen = await api.app.inject({
          method: 'GET',
          url: `/${kind}/export?format=${format}`,
          headers: { ...api.auth('admin'), accept: 'application/xml' },
        });
        expect(chosen.statusCode, `${kind} ${format}`).toBe(200);
        expect(chosen.headers['content-type']).toBe(format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson');
      }
    }
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json<{
      paths: Record<string, { get: { responses: Record<string, unknown> } }>;
    }>();
    expect(doc.paths['/customers/export']!.get.responses).toHaveProperty('406');
  });

  it('shows a masked analyst no personal data, in CSV or NDJSON, and refuses a search on it', async () => {
    for (const [url, headers] of [
      ['/customers/export?format=csv', {}],
      ['/customers/export', { accept: 'application/x-ndjson' }],
    ] as const) {
      const response = await api.app.inject({ method: 'GET', url, headers: { ...api.auth('analyst'), ...headers } });
      expect(response.statusCode).toBe(200);
      expect(response.body).not.toMatch(/@example\.com|Person \d|\+1 555/);
      expect(response.body).toContain('[masked]');
      if (url.includes('csv')) expect(response.body.trim().split('\n').length).toBe(621);
      else {
        const records = response.body
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as Record<string, unknown>);
        expect(records.length).toBe(620);
        expect(records.every((r) => r.email === '[masked]' && r.name === '[masked]')).toBe(true);
      }
    }
    expect((await api.app.inject({ method: 'GET', url: '/customers/export?search=person1', headers: api.auth('analyst') })).statusCode).toBe(403);
    expect((await api.app.inject({ method: 'GET', url: '/customers/export?sort=-name', headers: api.auth('analyst') })).statusCode).toBe(403);
  });

  it("exports purchases as a file a purchases import reads back: business-time order, a merged duplicate's naming its primary, filtered", async () => {
    const [primary, duplicate] = [await register('Primary'), await register('Duplicate')];
    for (const [customer, orderId, amount, at] of [
      [primary, 'P-2', 20.5, '2021-03-01T10:00:00Z'],
      [duplicate, 'D-1', 7, '2020-01-01T09:00:00Z'],
      [primary, 'P-1', 10, '2020-06-01T12:00:00Z'],
    ] as const)
      expect((await send('POST', `/customers/${customer}/purchases`, { orderId, amount, currency: 'EUR', occurredAt: at })).statusCode).toBe(200);
    const merged = await send('POST', `/customers/${primary}/merge`, { duplicateId: duplicate }, { 'if-match': '"2"' });
    expect(merged.statusCode).toBe(200);
    await projectionsSettled(api);

    const ours = (body: string) => recordsAbout(body, primary, duplicate);
    const all = ours((await send('GET', '/purchases/export?format=ndjson')).body);
    expect(all).toEqual([
      { orderId: 'D-1', customerId: duplicate, amount: 7, currency: 'EUR', occurredAt: '2020-01-01T09:00:00.000Z', mergedInto: primary },
      { orderId: 'P-1', customerId: primary, amount: 10, currency: 'EUR', occurredAt: '2020-06-01T12:00:00.000Z', mergedInto: null },
      { orderId: 'P-2', customerId: primary, amount: 20.5, currency: 'EUR', occurredAt: '2021-03-01T10:00:00.000Z', mergedInto: null },
    ]);
    const filtered = await send('GET', `/purchases/export?format=ndjson&customerId=${primary}&from=2020-02-01T00:00:00Z&to=2020-12-31T23:59:59Z`);
    expect(ours(filtered.body).map((p) => p.orderId)).toEqual(['P-1']);
    expect((await send('GET', '/purchases/export?customerId=not-an-id')).statusCode).toBe(400);

    // The CSV is a purchases file: imported back, every row is present already and no purchase is
    // recorded twice (the merged duplicate's row too: its order is the one the duplicate holds).
    const csv = (await send('GET', `/purchases/export?format=csv&customerId=${primary}`)).body;
    expect(csv.split('\n')[0]).toBe(EXPORT_COLUMNS.purchases.join(','));
    const before = await storedCount('PurchaseRecorded');
    const ended = await importCsv('purchases', csv);
    expect(ended).toMatchObject({ status: 'done', counts: { rows: 3, imported: 3, alreadyPresent: 3, rejected: 0 }, rejectedRows: [], unreadColumns: [] });
    expect(await storedCount('PurchaseRecorded')).toBe(before);
  });

  it('exports refunds as a file a refunds import reads back: their ids and reasons, the amount refunded, filtered, nothing recorded twice', async () => {
    const [primary, duplicate] = [await register('Refunded'), await register('RefundedTwin')];
    for (const [customer, orderId, amount] of [
      [primary, 'RP-1', 50],
      [duplicate, 'RD-1', 30],
    ] as const)
      expect(
        (await send('POST', `/customers/${customer}/purchases`, { orderId, amount, currency: 'EUR', occurredAt: '2020-01-01T00:00:00Z' })).statusCode,
      ).toBe(200);
    for (const [customer, refund] of [
      [primary, { orderId: 'RP-1', refundId: 'R-late', amount: 5, currency: 'EUR', reason: 'Late, "again"', occurredAt: '2021-01-01T00:00:00Z' }],
      [primary, { orderId: 'RP-1', refundId: 'R-early', amount: 12.25, currency: 'EUR', occurredAt: '2020-02-01T00:00:00Z' }],
      [duplicate, { orderId: 'RD-1', refundId: 'R-twin', amount: 30, currency: 'EUR', reason: 'Returned', occurredAt: '2020-03-01T00:00:00Z' }],
    ] as const)
      expect((await send('POST', `/customers/${customer}/refunds`, refund)).statusCode).toBe(200);
    expect((await send('POST', `/customers/${primary}/merge`, { duplicateId: duplicate }, { 'if-match': '"3"' })).statusCode).toBe(200);
    await projectionsSettled(api);

    const ours = (body: string) => recordsAbout(body, primary, duplicate);
    expect(ours((await send('GET', '/refunds/export?format=ndjson')).body)).toEqual([
      {
        refundId: 'R-early',
        orderId: 'RP-1',
        customerId: primary,
        amount: 12.25,
        currency: 'EUR',
        reason: null,
        occurredAt: '2020-02-01T00:00:00.000Z',
        mergedInto: null,
      },
      {
        refundId: 'R-twin',
        orderId: 'RD-1',
        customerId: duplicate,
        amount: 30,
        currency: 'EUR',
        reason: 'Returned',
        occurredAt: '2020-03-01T00:00:00.000Z',
        mergedInto: primary,
      },
      {
        refundId: 'R-late',
        orderId: 'RP-1',
        customerId: primary,
        amount: 5,
        currency: 'EUR',
        reason: 'Late, "again"',
        occurredAt: '2021-01-01T00:00:00.000Z',
        mergedInto: null,
      },
    ]);
    // Purchases are not refunds, nor the other way round.
    const purchases = ours((await send('GET', `/purchases/export?format=ndjson&customerId=${primary}`)).body);
    expect(purchases.map((p) => p.orderId).sort()).toEqual(['RD-1', 'RP-1']);
    const filtered = await send('GET', `/refunds/export?format=ndjson&customerId=${primary}&from=2020-02-15T00:00:00Z&to=2020-12-31T00:00:00Z`);
    expect(ours(filtered.body).map((r) => r.refundId)).toEqual(['R-twin']);
    expect((await send('GET', '/refunds/export?to=yesterday')).statusCode).toBe(400);

    // The CSV is a refunds file: imported back, the refunds are repeats (nothing recorded twice), the
    // merged duplicate's too (its refunds are recorded on it, where its order is).
    const csv = (await send('GET', `/refunds/export?format=csv&customerId=${primary}`)).body;
    expect(csv.split('\n')[0]).toBe(EXPORT_COLUMNS.refunds.join(','));
    expect(csv).toContain(',"Late, ""again""",');
    const before = await storedCount('PurchaseRefunded');
    const ended = await importCsv('refunds', csv);
    expect(ended).toMatchObject({ status: 'done', counts: { rows: 3, imported: 3, alreadyPresent: 3, rejected: 0 }, rejectedRows: [] });
    expect(await storedCount('PurchaseRefunded')).toBe(before);
  });

  it('exports campaign responses from the events, one by one, as a file a responses import reads back: filtered, nothing recorded twice', async () => {
    const [ann, bob] = [await register('Responder'), await register('Converter')];
    // A campaign that ran in the past is created in the past: it is not launched before it was created.
    const created = await send('POST', '/campaigns', { name: 'Responses', channel: 'email', budget: 100, currency: 'EUR', occurredAt: '2019-12-01T00:00:00Z' });
    const campaign = created.json().id as string;
    expect((await send('POST', `/campaigns/${campaign}/launch`, { occurredAt: '2020-01-01T00:00:00Z' }, { 'if-match': '"0"' })).statusCode).toBe(200);
    for (const response of [
      { customerId: ann, kind: 'sent', occurredAt: '2020-01-02T00:00:00Z' },
      { customerId: bob, kind: 'sent', occurredAt: '2020-01-02T00:00:00Z' },
      { customerId: bob, kind: 'converted', revenue: 25.5, currency: 'USD', occurredAt: '2020-02-01T12:00:00Z' },
    ])
      expect((await send('POST', `/campaigns/${campaign}/responses`, response)).statusCode).toBe(200);

    const exported = async (query: string) =>
      (await send('GET', `/responses/export?format=ndjson&campaignId=${campaign}${query}`)).body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    // Read from the log: no projection to wait for.
    expect(await exported('')).toEqual([
      { campaignId: campaign, customerId: ann, response: 'sent', revenue: null, currency: null, occurredAt: '2020-01-02T00:00:00.000Z' },
      { campaignId: campaign, customerId: bob, response: 'sent', revenue: null, currency: null, occurredAt: '2020-01-02T00:00:00.000Z' },
      { campaignId: campaign, customerId: bob, response: 'converted', revenue: 25.5, currency: 'USD', occurredAt: '2020-02-01T12:00:00.000Z' },
    ]);
    expect((await exported('&from=2020-01-15T00:00:00Z')).map((r) => r.response)).toEqual(['converted']);
    expect((await exported('&to=2020-01-15T00:00:00Z')).map((r) => r.customerId)).toEqual([ann, bob]);
    expect((await send('GET', '/responses/export?campaignId=not-a-campaign')).statusCode).toBe(400);
    // Page by page through the log: each page's cursor is its last response's position.
    const pages: string[][] = [];
    let cursor: string | undefined;
    do {
      const page = await api.crm.apiDeps.audit.campaignResponses({ campaignId: campaign, limit: 1, ...(cursor ? { cursor } : {}) });
      pages.push(page.items.map((r) => r.response));
      cursor = page.nextCursor ?? undefined;
    } while (cursor && pages.length < 10);
    // Three full pages, then an empty one that says it is the last.
    expect(pages).toEqual([['sent'], ['sent'], ['converted'], []]);
    // Another campaign's responses are not this one's.
    expect((await send('GET', `/responses/export?format=ndjson&campaignId=${randomUUID()}`)).body).toBe('');

    // The CSV is a responses file: imported back, each response is present (the campaign records it), nothing recorded twice.
    const csv = (await send('GET', `/responses/export?format=csv&campaignId=${campaign}`)).body;
    expect(csv.split('\n')[0]).toBe(EXPORT_COLUMNS.responses.join(','));
    const before = await storedCount('CampaignResponseRecorded');
    const ended = await importCsv('responses', csv);
    expect(ended).toMatchObject({ status: 'done', counts: { rows: 3, imported: 3, alreadyPresent: 3, rejected: 0 } });
    expect(await storedCount('CampaignResponseRecorded')).toBe(before);
  });

  it('exports campaign costs from the events, one by one, as a file a costs import reads back: filtered, open to every role, nothing recorded twice', async () => {
    const campaign = (await send('POST', '/campaigns', { name: 'Costs', channel: 'email', budget: 100, currency: 'EUR' })).json().id as string;
    for (const cost of [
      { costId: 'INV-1', amount: 60, currency: 'EUR', description: 'Print run', occurredAt: '2020-03-01T00:00:00Z' },
      { amount: 30, currency: 'EUR', occurredAt: '2020-03-15T08:30:00Z' },
      { costId: 'INV-3', amount: 20.5, currency: 'EUR', description: 'Postage', allowOverBudget: true, occurredAt: '2020-04-01T00:00:00Z' },
    ]) {
      const recorded = await send('POST', `/campaigns/${campaign}/costs`, cost);
      expect(recorded.statusCode, recorded.body).toBe(200);
    }
    const exported = async (query: string, role: 'admin' | 'analyst' = 'admin') => {
      const response = await api.app.inject({ method: 'GET', url: `/costs/export?format=ndjson&campaignId=${campaign}${query}`, headers: api.auth(role) });
      expect(response.statusCode).toBe(200);
      return response.body
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    };
    const all = await exported('');
    expect(all).toEqual([
      { campaignId: campaign, costId: 'INV-1', amount: 60, currency: 'EUR', description: 'Print run', occurredAt: '2020-03-01T00:00:00.000Z' },
      { campaignId: campaign, costId: expect.any(String), amount: 30, currency: 'EUR', description: null, occurredAt: '2020-03-15T08:30:00.000Z' },
      { campaignId: campaign, costId: 'INV-3', amount: 20.5, currency: 'EUR', description: 'Postage', occurredAt: '2020-04-01T00:00:00.000Z' },
    ]);
    // Costs name no customer: an analyst's export holds them as the admin's does.
    expect(await exported('', 'analyst')).toEqual(all);
    expect((await exported('&from=2020-03-10T00:00:00Z&to=2020-03-31T23:59:59Z')).map((c) => c.amount)).toEqual([30]);
    expect((await send('GET', '/costs/export?campaignId=not-a-campaign')).statusCode).toBe(400);
    expect((await send('GET', `/costs/export?format=ndjson&campaignId=${randomUUID()}`)).body).toBe('');

    // The CSV is a costs file: imported back, nothing is recorded twice (each cost id is already there).
    const csv = (await send('GET', `/costs/export?format=csv&campaignId=${campaign}`)).body;
    expect(csv.split('\n')[0]).toBe(EXPORT_COLUMNS.costs.join(','));
    const before = await storedCount('CampaignCostRecorded');
    expect(await importCsv('costs', csv)).toMatchObject({ status: 'done', counts: { rows: 3, imported: 3, alreadyPresent: 3, rejected: 0 } });
    expect(await storedCount('CampaignCostRecorded')).toBe(before);
    await projectionsSettled(api);
    expect((await send('GET', `/campaigns/${campaign}`)).json()).toMatchObject({ costs: 110.5, overBudget: true });
    // A file of costs entered now may ask for the budget to hold them back.
    const held = await importCsv('costs', `campaign_id,cost_id,amount,currency,allow_over_budget\n${campaign},INV-9,1000,EUR,false\n`);
    expect(held).toMatchObject({ counts: { rows: 1, imported: 0, rejected: 1 } });
    expect(held.rejectedRows[0].reason).toMatch(/beyond its budget of 100/);
    // Imported as the commands are sent: by the roles that may record a cost.
    const refused = await api.app.inject({
      method: 'POST',
      url: '/imports?kind=costs',
      headers: { ...api.auth('analyst'), 'content-type': 'text/csv' },
      payload: csv,
    });
    expect(refused.statusCode).toBe(403);
  });

  it('exports a corrected cost at its current amount and leaves a voided one out: imported back, each cost is already there', async () => {
    const campaign = (await send('POST', '/campaigns', { name: 'Corrected', channel: 'email', budget: 1000, currency: 'EUR' })).json().id as string;
    const record = async (costId: string, amount: number) =>
      expect((await send('POST', `/campaigns/${campaign}/costs`, { costId, amount, currency: 'EUR', occurredAt: '2020-05-01T00:00:00Z' })).statusCode).toBe(
        200,
      );
    const correct = async (costId: string, amount: number) =>
      expect((await send('POST', `/campaigns/${campaign}/cost-corrections`, { costId, amount, currency: 'EUR', reason: 'typo' })).statusCode).toBe(200);
    await record('K-1', 900);
    await record('K-2', 50);
    await record('K-3', 40);
    await correct('K-1', 90);
    await correct('K-1', 95);
    await correct('K-2', 0);
    const exported = (await send('GET', `/costs/export?format=ndjson&campaignId=${campaign}`)).body
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(exported.map((c) => [c.costId, c.amount, c.occurredAt])).toEqual([
      ['K-1', 95, '2020-05-01T00:00:00.000Z'],
      ['K-3', 40, '2020-05-01T00:00:00.000Z'],
    ]);
    const csv = (await send('GET', `/costs/export?format=csv&campaignId=${campaign}`)).body;
    const before = await storedCount('CampaignCostRecorded');
    expect(await importCsv('costs', csv)).toMatchObject({ status: 'done', counts: { rows: 2, imported: 2, alreadyPresent: 2, rejected: 0 } });
    expect(await storedCount('CampaignCostRecorded')).toBe(before);
  });

  it('refuses the refunds export with 503 and Retry-After while the old read model (no refund ids) still serves an upgrade', async () => {
    const lines = sql.id(api.schemas.read, 'revenue_lines');
    // The table as version 5 of the customers projection left it, which serves until the rebuild ends.
    await sql`ALTER TABLE ${lines} RENAME COLUMN refund_id TO refund_id_rebuilding`.execute(api.database.db);
    try {
      const response = await api.app.inject({ method: 'GET', url: '/refunds/export', headers: api.auth('admin') });
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('10');
      expect(response.json().detail).toContain('The customers read model is from an earlier version and is being rebuilt');
      // Purchases need nothing new and keep being exported.
      expect((await api.app.inject({ method: 'GET', url: '/purchases/export', headers: api.auth('admin') })).statusCode).toBe(200);
    } finally {
      await sql`ALTER TABLE ${lines} RENAME COLUMN refund_id_rebuilding TO refund_id`.execute(api.database.db);
    }
    expect((await api.app.inject({ method: 'GET', url: '/refunds/export', headers: api.auth('admin') })).statusCode).toBe(200);
  });

  it('exports an empty list as its header row in CSV (an empty body in NDJSON), and refuses an unknown format', async () => {
    for (const [url, body] of [
      ['/deals/export?format=ndjson', ''],
      ['/feedback/export', `${EXPORT_COLUMNS.feedback.join(',')}\n`],
      ['/deals/export', `${EXPORT_COLUMNS.deals.join(',')}\n`],
      ['/customers/export?search=nobody-is-called-this', `${EXPORT_COLUMNS.customers.join(',')}\n`],
    ] as const) {
      const response = await api.app.inject({ method: 'GET', url, headers: api.auth('admin') });
      expect(response.statusCode, url).toBe(200);
      expect(response.body, url).toBe(body);
    }
    expect((await api.app.inject({ method: 'GET', url: '/deals/export?format=xlsx', headers: api.auth('admin') })).statusCode).toBe(400);
  });

  it("names a merged duplicate's primary beside its deals and feedback (mergedInto, the end of the chain), which an import elsewhere names in its refusal", async () => {
    const [first, second, last] = [await register('ChainFirst'), await register('ChainSecond'), await register('ChainLast')];
    const deal = await send('POST', '/deals', {
      customerId: first,
      title: 'Duplicate deal',
      amount: 10,
      currency: 'EUR',
      ownerId: 'sam',
      expectedCloseDate: '2027-01-31',
    });
    const feedback = await send('POST', '/feedback', { customerId: first, kind: 'question', channel: 'email', subject: 'Where', body: 'Is it' });
    expect([deal.statusCode, feedback.statusCode]).toEqual([201, 201]);
    const mergeInto = async (primary: string, duplicate: string) => {
      await projectionsSettled(api);
      const { revision } = (await send('GET', `/customers/${primary}`)).json();
      expect((await send('POST', `/customers/${primary}/merge`, { duplicateId: duplicate }, { 'if-match': `"${revision}"` })).statusCode).toBe(200);
    };
    await mergeInto(second, first);
    await mergeInto(last, second);
    await projectionsSettled(api);
    for (const kind of ['deals', 'feedback']) {
      const records = recordsAbout((await send('GET', `/${kind}/export?format=ndjson`)).body, first);
      expect(
        records.map((r) => r.mergedInto),
        kind,
      ).toEqual([last]);
      const csv = (await send('GET', `/${kind}/export?format=csv`)).body.split('\n');
      expect(csv[0]!.split(',').at(-1), kind).toBe('mergedInto');
    }
    // What another CRM's import says of such a row (its customer is not there, the primary is named).
    const [header, ...lines] = (await send('GET', `/deals/export?format=csv&customerId=${first}`)).body.trim().split('\n');
    // A new deal id, and a customer this CRM does not know: as the row reads in another CRM.
    const row = lines[0]!.replace(/^[^,]+/, randomUUID()).replace(first, randomUUID());
    const ended = await importCsv('deals', [header!.replace('id,', 'deal_id,'), row].join('\n'));
    expect(ended.rejectedRows[0].reason).toContain(`merged into ${last}`);
  });

  it("holds each feedback item's body, read from its events: masked for an analyst, erased once its customer is forgotten", async () => {
    const [kept, forgotten] = (await api.app.inject({ method: 'GET', url: '/customers?limit=2&status=active', headers: api.auth('admin') })).json().items as {
      id: string;
    }[];
    const submit = async (customerId: string, body: string) => {
      const response = await api.app.inject({
        method: 'POST',
        url: '/feedback',
        headers: api.auth('support'),
        payload: { customerId, kind: 'complaint', channel: 'email', subject: 'About the order', body },
      });
      expect(response.statusCode).toBe(201);
      return response.json().id as string;
    };
    const keptId = await submit(kept!.id, 'The lid, again, "broken"');
    const step = async (action: string, payload: Record<string, unknown>) => {
      // The current revision: resolving requires If-Match.
      const revision = (await api.store.readStream(`feedback-${keptId}`)).length - 1;
      const headers = { ...api.auth('support'), 'if-match': `"${revision}"` };
      const response = await api.app.inject({ method: 'POST', url: `/feedback/${keptId}/${action}`, headers, payload });
      expect(response.statusCode, response.body).toBeLessThan(300);
    };
    await step('respond', { message: 'Sorry, a new one is on its way' });
    await step('respond', { message: 'Any news?' });
    await step('resolve', { resolution: 'Replaced the lid' });
    await step('rating', { csat: 2, comment: 'Took a week' });
    const forgottenId = await submit(forgotten!.id, 'Please call me on +1 555 0199');
    const forget = await api.app.inject({ method: 'POST', url: `/customers/${forgotten!.id}/forget`, headers: api.auth('support') });
    expect(forget.statusCode).toBe(200);
    await projectionsSettled(api);
    const exported = async (role: 'support' | 'analyst') => {
      const response = await api.app.inject({ method: 'GET', url: '/feedback/export?format=ndjson', headers: api.auth(role) });
      expect(response.statusCode).toBe(200);
      const records = response.body
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      return new Map(records.map((r) => [r.id, r]));
    };
    const texts = {
      body: 'The lid, again, "broken"',
      firstResponse: 'Sorry, a new one is on its way',
      resolution: 'Replaced the lid',
      ratingComment: 'Took a week',
    };
    const bySupport = await exported('support');
    expect(bySupport.get(keptId)).toMatchObject(texts);
    expect(bySupport.get(forgottenId)).toMatchObject({ body: '[erased]', firstResponse: null, resolution: null, ratingComment: null });
    // An analyst reads no feedback text (the resolution is stored in clear, but quotes the customer as a reply does).
    const byAnalyst = await exported('analyst');
    expect(byAnalyst.get(keptId)).toMatchObject({ body: '[masked]', firstResponse: '[masked]', resolution: '[masked]', ratingComment: '[masked]' });
    // In CSV, quoted where it holds a comma or a quote.
    const csv = await api.app.inject({ method: 'GET', url: '/feedback/export?format=csv', headers: api.auth('support') });
    expect(csv.body).toContain(',"The lid, again, ""broken""",');
  });

  it("writes the CSV columns each kind's records hold, in order: every field of every record", async () => {
    const customer = (await api.app.inject({ method: 'GET', url: '/customers?limit=1&status=active', headers: api.auth('admin') })).json().items[0]
      .id as string;
    const deal = await api.app.inject({
      method: 'POST',
      url: '/deals',
      headers: api.auth('admin'),
      payload: { customerId: customer, title: 'Columns', amount: 5, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-06-01' },
    });
    const feedback = await api.app.inject({
      method: 'POST',
      url: '/feedback',
      headers: api.auth('admin'),
      payload: { customerId: customer, kind: 'question', channel: 'web', subject: 'Columns', body: 'b' },
    });
    const campaign = await api.app.inject({
      method: 'POST',
      url: '/campaigns',
      headers: api.auth('admin'),
      payload: { name: 'Columns', channel: 'email', budget: 50, currency: 'EUR', targetSegment: { minRevenue: 5 } },
    });
    const activity = await api.app.inject({
      method: 'POST',
      url: `/customers/${customer}/activities`,
      headers: api.auth('admin'),
      payload: { kind: 'task', subject: 'Columns', body: 'b', dueAt: '2026-07-01T09:00:00Z' },
    });
    expect([deal.statusCode, feedback.statusCode, campaign.statusCode, activity.statusCode]).toEqual([201, 201, 201, 201]);
    await projectionsSettled(api);
    for (const kind of ['customers', 'deals', 'feedback', 'activities', 'purchases', 'refunds', 'campaigns', 'responses', 'costs'] as const) {
      const ndjson = await api.app.inject({ method: 'GET', url: `/${kind}/export?format=ndjson`, headers: api.auth('admin') });
      const records = ndjson.body
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(records.length, kind).toBeGreaterThan(0);
      for (const record of records) expect(Object.keys(record), kind).toEqual(EXPORT_COLUMNS[kind]);
      const csv = await api.app.inject({ method: 'GET', url: `/${kind}/export?format=csv`, headers: api.auth('admin') });
      expect(csv.body.split('\n')[0], kind).toBe(EXPORT_COLUMNS[kind].join(','));
      // Saved by a browser under the kind's name and the format's extension.
      expect(csv.headers['content-disposition'], kind).toBe(`attachment; filename="${kind}.csv"`);
      expect(ndjson.headers['content-disposition'], kind).toBe(`attachment; filename="${kind}.ndjson"`);
    }
  });

  it('streams activities with their body for a role that may read it, and masked for an analyst', async () => {
    const customer = await register('Noted');
    const logged = await send('POST', `/customers/${customer}/activities`, {
      kind: 'call',
      subject: 'Renewal call',
      body: 'Wants the blue one',
      occurredAt: '2026-02-03T10:00:00Z',
    });
    expect(logged.statusCode).toBe(201);
    await projectionsSettled(api);
    const exported = async (role: 'support' | 'analyst') =>
      recordsAbout((await api.app.inject({ method: 'GET', url: '/activities/export?format=ndjson&kind=call', headers: api.auth(role) })).body, customer);
    expect(await exported('support')).toEqual([
      expect.objectContaining({
        id: logged.json().id,
        kind: 'call',
        subject: 'Renewal call',
        body: 'Wants the blue one',
        occurredAt: '2026-02-03T10:00:00.000Z',
        mergedInto: null,
      }),
    ]);
    expect(await exported('analyst')).toEqual([expect.objectContaining({ subject: 'Renewal call', body: '[masked]' })]);
  });

  it('writes a list of texts as the import reads it (tags joined by ;) and an object as its JSON, in CSV', async () => {
    const tagged = await send('POST', '/customers', { name: 'Tagged', email: `tagged-${Date.now()}@example.com`, tags: ['vip', 'b2b'] });
    expect(tagged.statusCode).toBe(201);
    await projectionsSettled(api);
    const customers = (await send('GET', '/customers/export?format=csv&search=tagged')).body;
    expect(customers).toContain(',"vip;b2b",');
    const campaigns = (await send('GET', '/campaigns/export?format=csv')).body;
    expect(campaigns).toContain(',"{""minRevenue"":5}",');
  });

  // Last: it registers a customer, which the counts above leave out.
  it('takes ?waitFor=: an export right after a write holds it; a position never recorded is a 400 naming waitFor', async () => {
    const created = await send('POST', '/customers', { name: 'Just Written', email: `just-written-${Date.now()}@example.com` });
    expect(created.statusCode, created.body).toBe(201);
    const { id, position } = created.json<{ id: string; position: string }>();
    const exported = await send('GET', `/customers/export?format=ndjson&waitFor=${position}`);
    expect(exported.statusCode, exported.body).toBe(200);
    expect(exported.body.split('\n').filter((line) => line.includes(`"id":"${id}"`))).toHaveLength(1);
    const never = await send('GET', `/deals/export?waitFor=${BigInt(position) + 10n ** 15n}`);
    expect(never.statusCode).toBe(400);
    expect(never.json().errors[0]).toMatchObject({ field: 'waitFor' });
  });
});

describe('the customers export and forgotten customers', () => {
  it('leaves forgotten customers out, as CSV and as NDJSON, so that the customers import takes every row', async () => {
    const kept = await register('Kept');
    const gone = await register('Gone');
    const forgotten = await send('POST', `/customers/${gone}/forget`);
    expect(forgotten.statusCode, forgotten.body).toBe(200);
    await projectionsSettled(api);
    const ndjson = await send('GET', '/customers/export', undefined, { accept: 'application/x-ndjson' });
    const ids = ndjson.body
      .trim()
      .split('\n')
      .map((line) => String((JSON.parse(line) as { id: string }).id));
    expect(ids).toContain(kept);
    expect(ids).not.toContain(gone);
    expect(ndjson.body).not.toContain('[erased]');
    const csv = await send('GET', '/customers/export', undefined, { accept: 'text/csv' });
    expect(csv.body).toContain(kept);
    expect(csv.body).not.toContain(gone);
    expect(csv.body).not.toContain('[erased]');
    // Asked for by status, there are none to export.
    const asked = await send('GET', '/customers/export?status=forgotten', undefined, { accept: 'application/x-ndjson' });
    expect(asked.statusCode).toBe(200);
    expect(asked.body.trim()).toBe('');
  });
});
