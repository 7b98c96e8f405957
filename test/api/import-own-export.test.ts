import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importCsv as importCsvAs, projectionsSettled, startApi, type ApiHarness } from './support.ts';
import { storedEvents } from '../support/events.ts';

/**
 * The CRM's own export of records made through the API, imported back into the same store with
 * `POST /imports`: every row is present and nothing is appended (each was refused as `... already
 * exists` before, an import knowing only the records it made itself); a row edited in the file is
 * refused naming the column that says otherwise.
 */
let api: ApiHarness;

beforeAll(async () => {
  api = await startApi('api_own_export');
}, 120_000);

afterAll(async () => {
  await api?.close();
});

/** The ETag each record's last command answered: the next command on it sends it as If-Match. */
const etags = new Map<string, string>();

/** A request as an admin; a command must be taken. */
const send = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => {
  const addressed = /^\/\w+\/([0-9a-f-]{36})/.exec(url)?.[1];
  const etag = addressed && method !== 'GET' ? etags.get(addressed) : undefined;
  const ifMatch = etag ? { 'if-match': etag } : {};
  const response = await api.app.inject({ method, url, headers: { ...api.auth('admin'), ...ifMatch }, ...(payload ? { payload } : {}) });
  expect(response.statusCode, `${method} ${url}: ${response.body}`).toBeLessThan(300);
  const id = addressed ?? (method === 'POST' ? response.json<{ id?: string }>().id : undefined);
  if (id && typeof response.headers.etag === 'string') etags.set(id, response.headers.etag);
  return response;
};
const created = async (url: string, payload: object) => (await send('POST', url, payload)).json<{ id: string }>().id;

const importCsv = (kind: string, csv: string) => importCsvAs(api, kind, csv);

const KINDS = ['customers', 'deals', 'feedback', 'activities', 'purchases', 'refunds', 'campaigns', 'responses', 'costs'] as const;

describe('the CRM export of records made through the API, imported into the same store', () => {
  let exported: Record<(typeof KINDS)[number], string>;

  beforeAll(async () => {
    const ada = await created('/customers', { name: 'Ada', email: 'ada@own-export.example', phone: '+44 20 1234', company: 'Engines', tags: ['vip'] });
    const ida = await created('/customers', { name: 'Ida', email: 'ida@own-export.example', marketingConsent: true });
    await send('PATCH', `/customers/${ada}`, { name: 'Ada L.' });
    await send('POST', `/customers/${ada}/tags`, { tag: 'b2b' });
    await send('POST', `/customers/${ida}/deactivate`, { reason: 'Moved away' });
    const back = await created('/customers', { name: 'Bo', email: 'bo@own-export.example' });
    await send('POST', `/customers/${back}/deactivate`, {});
    await send('POST', `/customers/${back}/reactivate`, {});
    await send('POST', `/customers/${ada}/purchases`, { orderId: 'OWN-1', amount: 19.9, currency: 'EUR', occurredAt: '2024-01-10T10:00:00Z' });
    await send('POST', `/customers/${ada}/refunds`, { orderId: 'OWN-1', amount: 4.9, currency: 'EUR', reason: 'Damaged' });

    const deal = { customerId: ada, amount: 100, currency: 'EUR', ownerId: 'sam', expectedCloseDate: '2027-01-31' };
    const open = await created('/deals', { ...deal, title: 'Open' });
    await send('POST', `/deals/${open}/stage`, { stage: 'proposal' });
    await send('PATCH', `/deals/${open}`, { amount: 120, probabilityOverride: 0.4 });
    await send('POST', `/deals/${await created('/deals', { ...deal, title: 'Won', stage: 'negotiation' })}/won`, {});
    await send('POST', `/deals/${await created('/deals', { ...deal, title: 'Lost' })}/lost`, { reason: 'price' });
    const reopened = await created('/deals', { ...deal, title: 'Reopened', stage: 'qualified' });
    await send('POST', `/deals/${reopened}/lost`, { reason: 'timing' });
    await send('POST', `/deals/${reopened}/reopen`, {});

    const item = { customerId: ada, kind: 'complaint', channel: 'email', body: 'It broke' };
    await created('/feedback', { ...item, subject: 'Open' });
    const worked = await created('/feedback', { ...item, subject: 'Worked', priority: 'high' });
    await send('POST', `/feedback/${worked}/assign`, { assigneeId: 'sue' });
    await send('POST', `/feedback/${worked}/respond`, { message: 'On it' });
    await send('POST', `/feedback/${worked}/escalate`, { reason: 'Angry' });
    const resolved = await created('/feedback', { ...item, subject: 'Resolved' });
    await send('POST', `/feedback/${resolved}/resolve`, { resolution: 'Sent a new one' });
    const closed = await created('/feedback', { ...item, subject: 'Closed', customerId: ida });
    await send('POST', `/feedback/${closed}/resolve`, { resolution: 'Refunded' });
    await send('POST', `/feedback/${closed}/close`, {});
    const again = await created('/feedback', { ...item, subject: 'Again' });
    await send('POST', `/feedback/${again}/assign`, { assigneeId: 'sue' });
    await send('POST', `/feedback/${again}/resolve`, { resolution: 'Try this' });
    await send('POST', `/feedback/${again}/reopen`, { reason: 'Did not help' });
    const rated = await created('/feedback', { ...item, subject: 'Rated' });
    await send('POST', `/feedback/${rated}/resolve`, { resolution: 'Fixed' });
    await send('POST', `/feedback/${rated}/rating`, { csat: 4, comment: 'ok' });

    const campaign = { channel: 'email', budget: 500, currency: 'EUR' };
    await created('/campaigns', { ...campaign, name: 'Draft' });
    const scheduled = await created('/campaigns', { ...campaign, name: 'Scheduled' });
    await send('POST', `/campaigns/${scheduled}/schedule`, { startsAt: '2030-01-01T00:00:00Z', endsAt: '2030-02-01T00:00:00Z' });
    const running = await created('/campaigns', { ...campaign, name: 'Running', targetSegment: { marketingConsentOnly: true } });
    await send('POST', `/campaigns/${running}/launch`, {});
    await send('POST', `/campaigns/${running}/responses`, { customerId: ida, kind: 'sent' });
    await send('POST', `/campaigns/${running}/responses`, { customerId: ida, kind: 'converted', revenue: 25, currency: 'EUR' });
    await send('POST', `/campaigns/${running}/costs`, { costId: 'INV-1', amount: 60, currency: 'EUR', description: 'Print' });
    const done = await created('/campaigns', { ...campaign, name: 'Done' });
    await send('POST', `/campaigns/${done}/launch`, {});
    await send('POST', `/campaigns/${done}/complete`, {});
    const paused = await created('/campaigns', { ...campaign, name: 'Paused' });
    await send('POST', `/campaigns/${paused}/launch`, {});
    await send('POST', `/campaigns/${paused}/pause`, {});
    const stopped = await created('/campaigns', { ...campaign, name: 'Stopped' });
    await send('POST', `/campaigns/${stopped}/launch`, {});
    await send('POST', `/campaigns/${stopped}/cancel`, {});
    await send('POST', `/campaigns/${await created('/campaigns', { ...campaign, name: 'Cancelled' })}/cancel`, { reason: 'No budget' });

    await created(`/customers/${ada}/activities`, { kind: 'call', subject: 'Renewal', body: 'Wants the blue one' });
    const task = await created(`/deals/${open}/activities`, {
      kind: 'task',
      subject: 'Send quote',
      dueAt: '2030-01-20T09:00:00Z',
      assigneeId: '6f1d0c0e-0000-4000-8000-0000000000aa',
    });
    await send('POST', `/activities/${task}/complete`, {});
    await created(`/customers/${ida}/activities`, { kind: 'task', subject: 'Check in', dueAt: '2030-07-01T09:00:00Z' });

    await projectionsSettled(api);
    exported = Object.fromEntries(
      await Promise.all(KINDS.map(async (kind) => [kind, (await send('GET', `/${kind}/export?format=csv`)).body] as const)),
    ) as typeof exported;
  }, 120_000);

  it('holds every row present and appends nothing, for every kind', async () => {
    const before = (await storedEvents(api.store)).length;
    for (const kind of KINDS) {
      const rows = exported[kind].trim().split('\n').length - 1;
      expect(rows, kind).toBeGreaterThan(0);
      const ended = await importCsv(kind, exported[kind]);
      expect({ kind, ...ended.counts, rejectedRows: ended.rejectedRows }).toEqual({
        kind,
        rows,
        imported: rows,
        alreadyPresent: rows,
        rejected: 0,
        rejectedRows: [],
      });
    }
    expect((await storedEvents(api.store)).length).toBe(before);
  });

  it('refuses exactly the row edited in the file, naming the column that says otherwise', async () => {
    const edit = (kind: (typeof KINDS)[number], find: string, replace: string) => {
      const lines = exported[kind].trim().split('\n');
      const at = lines.findIndex((line) => line.includes(find));
      expect(at, `${kind}: ${find}`).toBeGreaterThan(0);
      lines[at] = lines[at]!.replace(find, replace);
      return { csv: lines.join('\n'), line: at + 1, rows: lines.length - 1 };
    };
    const before = (await storedEvents(api.store)).length;
    for (const [kind, find, replace, column] of [
      ['customers', 'ida@own-export.example', 'ida@elsewhere.example', 'email ("ida@elsewhere.example" in this file)'],
      ['deals', 'proposal', 'negotiation', 'stage ("negotiation" in this file)'],
      ['feedback', ',Worked,It broke,urgent,', ',Worked,It broke,low,', 'priority ("low" in this file)'],
      ['campaigns', 'Scheduled,email,scheduled,500', 'Scheduled,email,scheduled,700', 'budget ("700" in this file)'],
      ['activities', 'Check in', 'Check in later', 'subject ("Check in later" in this file)'],
    ] as const) {
      const { csv, line, rows } = edit(kind, find, replace);
      const ended = await importCsv(kind, csv);
      expect(ended.counts, kind).toMatchObject({ rows, imported: rows - 1, alreadyPresent: rows - 1, rejected: 1 });
      expect(ended.rejectedRows, kind).toEqual([{ line, reason: expect.stringContaining(column) }]);
      expect(ended.rejectedRows[0].reason, kind).toMatch(/^row: \w+ [0-9a-f-]{36} is in the store already, with other values in /);
    }
    expect((await storedEvents(api.store)).length).toBe(before);
  });
});
