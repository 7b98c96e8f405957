import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../api/roles.ts';
import { expectProblem, json, startApi, type ApiHarness } from '../api/support.ts';
import { sleep, verificationEnded } from './support.ts';

let h: ApiHarness;
const customerId = randomUUID();
let firstPosition: string;
let betweenChanges: string;
let lastPosition: string;

const send = (role: Role | null, method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  h.app.inject({
    method,
    url,
    headers: { ...(role ? h.auth(role) : {}), ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(payload !== undefined ? { payload: JSON.stringify(payload) } : {}),
  });

const waitForJob = (id: string, role: Role = 'auditor') => verificationEnded(async (url) => json(await send(role, 'GET', url)), id);

beforeAll(async () => {
  // The audit services and point-in-time reads as the composition root wires them.
  h = await startApi('audit_routes');
  const registered = await send(
    'sales',
    'POST',
    '/customers',
    { customerId, name: 'Ada Lovelace', email: 'ada@example.com', tags: ['vip'] },
    { 'x-request-id': 'req-ada-1' },
  );
  expect(registered.statusCode).toBe(201);
  firstPosition = json(registered).position;
  await sleep(20);
  betweenChanges = new Date().toISOString();
  await sleep(20);
  const changed = await send('support', 'PATCH', `/customers/${customerId}`, { email: 'ada@engines.example' }, { 'if-match': '"0"' });
  expect(changed.statusCode).toBe(200);
  const purchase = await send('sales', 'POST', `/customers/${customerId}/purchases`, { orderId: 'o-1', amount: 120.5, currency: 'EUR' });
  expect([200, 201]).toContain(purchase.statusCode);
  lastPosition = json(purchase).position;
  await h.runner.waitForPosition(BigInt(lastPosition), 10_000);
});

afterAll(async () => {
  await h?.close();
});

describe('GET /audit/streams/:stream', () => {
  it('answers every event with its metadata to an auditor', async () => {
    const response = await send('auditor', 'GET', `/audit/streams/customer-${customerId}`);
    expect(response.statusCode).toBe(200);
    const body = json(response);
    expect(body.stream).toBe(`customer-${customerId}`);
    expect(body.items.map((e: any) => e.type)).toEqual(['CustomerRegistered', 'CustomerContactDetailsChanged', 'PurchaseRecorded']);
    expect(body.items[0]).toMatchObject({
      revision: 0,
      position: firstPosition,
      actor: expect.any(String),
      roles: ['sales'],
      correlationId: 'req-ada-1',
      data: { name: 'Ada Lovelace', email: 'ada@example.com' },
    });
    expect(body.items[1].roles).toEqual(['support']);
    expect(typeof body.items[2].occurredAt).toBe('string');
    expect(typeof body.items[2].recordedAt).toBe('string');
  });

  it('pages with limit and cursor', async () => {
    const first = json(await send('admin', 'GET', `/audit/streams/customer-${customerId}?limit=2`));
    expect(first.items).toHaveLength(2);
    const second = json(await send('admin', 'GET', `/audit/streams/customer-${customerId}?limit=2&cursor=${first.nextCursor}`));
    expect(second.items.map((e: any) => e.revision)).toEqual([2]);
    expect(second.nextCursor).toBeNull();
  });

  it('refuses analysts and other roles, and anonymous callers', async () => {
    for (const role of ['analyst', 'sales', 'marketing', 'support'] as const) {
      expectProblem(await send(role, 'GET', `/audit/streams/customer-${customerId}`), 403, 'forbidden');
    }
    expectProblem(await send(null, 'GET', `/audit/streams/customer-${customerId}`), 401);
  });

  it('answers 400 naming the field for a bad stream name or cursor, 404 for an unknown stream', async () => {
    const badStream = expectProblem(await send('auditor', 'GET', '/audit/streams/not%20a%20stream'), 400, 'validation');
    expect(badStream.errors?.[0]?.field).toBe('stream');
    const badCursor = expectProblem(await send('auditor', 'GET', `/audit/streams/customer-${customerId}?cursor=x`), 400, 'validation');
    expect(badCursor.errors?.[0]?.field).toBe('cursor');
    const badExportCursor = expectProblem(await send('auditor', 'GET', `/audit/streams/customer-${customerId}?format=csv&cursor=x`), 400, 'validation');
    expect(badExportCursor.errors?.[0]?.field).toBe('cursor');
    expectProblem(await send('auditor', 'GET', `/audit/streams/customer-${randomUUID()}`), 404);
  });

  it('exports a stream as NDJSON and CSV', async () => {
    const ndjson = await send('auditor', 'GET', `/audit/streams/customer-${customerId}/export`);
    expect(ndjson.statusCode).toBe(200);
    expect(ndjson.headers['content-type']).toContain('application/x-ndjson');
    const lines = ndjson.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.revision)).toEqual([0, 1, 2]);
    const csv = await send('auditor', 'GET', `/audit/streams/customer-${customerId}?format=csv`);
    expect(csv.headers['content-type']).toContain('text/csv');
    const rows = csv.body.trimEnd().split('\r\n');
    expect(rows[0]!.startsWith('position,stream,revision,id,type')).toBe(true);
    expect(rows).toHaveLength(4);
  });

  it('reads an id in upper case as the same stream, as every route reads ids (history, export, and the log filter)', async () => {
    const upper = `customer-${customerId.toUpperCase()}`;
    const page = await send('auditor', 'GET', `/audit/streams/${upper}?limit=2`);
    expect(page.statusCode, page.body).toBe(200);
    expect(json(page)).toMatchObject({ stream: `customer-${customerId}`, items: [{ revision: 0 }, { revision: 1 }], nextCursor: '2' });
    const rest = json(await send('auditor', 'GET', `/audit/streams/${upper}?limit=2&cursor=2`));
    expect(rest.items.map((e: any) => e.revision)).toEqual([2]);
    const csv = await send('auditor', 'GET', `/audit/streams/${upper}?format=csv`);
    expect(csv.statusCode).toBe(200);
    expect(csv.body.trimEnd().split('\r\n')).toHaveLength(4);
    const ndjson = await send('auditor', 'GET', `/audit/streams/${upper}/export`);
    expect(ndjson.statusCode).toBe(200);
    expect(ndjson.headers['content-disposition']).toContain(`customer-${customerId}.ndjson`);
    expect(ndjson.body.trimEnd().split('\n')).toHaveLength(3);
    const log = json(await send('auditor', 'GET', `/audit/events?stream=${upper}`));
    expect(log.items.map((e: any) => e.stream)).toEqual(Array(3).fill(`customer-${customerId}`));
    const logExport = await send('auditor', 'GET', `/audit/events/export?stream=${upper}`);
    expect(logExport.body.trimEnd().split('\n')).toHaveLength(3);
    // The aggregate is a lower-case name, as stream names are written: another case is refused naming the field.
    expect(expectProblem(await send('auditor', 'GET', `/audit/streams/CUSTOMER-${customerId}`), 400, 'validation').errors?.[0]?.field).toBe('stream');
    expectProblem(await send('auditor', 'GET', `/audit/streams/customer-${randomUUID().toUpperCase()}`), 404);
  });

  it('answers 404 for a stream with no events on the exports too, as on the paged history', async () => {
    const missing = `customer-${randomUUID()}`;
    expect(expectProblem(await send('auditor', 'GET', `/audit/streams/${missing}/export`), 404).detail).toBe(`No stream ${missing}.`);
    expectProblem(await send('auditor', 'GET', `/audit/streams/${missing}/export?format=csv`), 404);
    expectProblem(await send('auditor', 'GET', `/audit/streams/${missing}?format=ndjson`), 404);
    expectProblem(await send('auditor', 'GET', `/audit/streams/${missing}`, undefined, { accept: 'text/csv' }), 404);
  });
});

describe('GET /audit/events', () => {
  it('filters by type, stream and actor, and pages by position in both directions', async () => {
    const byType = json(await send('auditor', 'GET', `/audit/events?type=CustomerContactDetailsChanged,PurchaseRecorded&stream=customer-${customerId}`));
    expect(byType.items.map((e: any) => e.type)).toEqual(['CustomerContactDetailsChanged', 'PurchaseRecorded']);
    const actor = byType.items[1].actor as string;
    const byActor = json(await send('auditor', 'GET', `/audit/events?actor=${encodeURIComponent(actor)}`));
    expect(byActor.items.every((e: any) => e.actor === actor)).toBe(true);

    const first = json(await send('auditor', 'GET', `/audit/events?stream=customer-&limit=2`));
    expect(first.items).toHaveLength(2);
    const rest = json(await send('auditor', 'GET', `/audit/events?stream=customer-&limit=2&cursor=${first.nextCursor}`));
    expect(rest.items).toHaveLength(1);
    expect(rest.items[0].position).toBe(lastPosition);
    const bare = json(await send('auditor', 'GET', `/audit/events?stream=customer`));
    expect(bare.items).toHaveLength(3);
    const newest = json(await send('auditor', 'GET', `/audit/events?direction=backwards&limit=1`));
    expect(newest.items[0].position).toBe(lastPosition);
  });

  it('matches ?actor= in any case, on the paged log and its export', async () => {
    const exact = json(await send('auditor', 'GET', `/audit/events?stream=customer-${customerId}`));
    const actor = exact.items[0].actor as string;
    const mine = exact.items.filter((e: any) => e.actor === actor).map((e: any) => e.position);
    expect(mine.length).toBeGreaterThan(0);
    const upper = json(await send('auditor', 'GET', `/audit/events?stream=customer-${customerId}&actor=${encodeURIComponent(actor.toUpperCase())}`));
    expect(upper.items.map((e: any) => e.position)).toEqual(mine);
    // Shown as recorded, whatever the case asked for.
    expect(upper.items.every((e: any) => e.actor === actor)).toBe(true);
    const exported = await send(
      'auditor',
      'GET',
      `/audit/events/export?format=ndjson&stream=customer-${customerId}&actor=${encodeURIComponent(actor.toUpperCase())}`,
    );
    expect(exported.statusCode).toBe(200);
    const lines = exported.body.split('\n').filter((l) => l !== '');
    expect(lines.map((l) => JSON.parse(l).position)).toEqual(mine);
  });

  it('filters by record time', async () => {
    const before = json(await send('auditor', 'GET', `/audit/events?to=${encodeURIComponent(betweenChanges)}`));
    expect(before.items.map((e: any) => e.type)).toEqual(['CustomerRegistered']);
    const after = json(await send('auditor', 'GET', `/audit/events?from=${encodeURIComponent(betweenChanges)}`));
    expect(after.items).toHaveLength(2);
  });

  it('refuses bad filters with the field named', async () => {
    const badTime = expectProblem(await send('auditor', 'GET', '/audit/events?from=yesterday'), 400, 'validation');
    expect(badTime.errors?.[0]?.field).toBe('from');
    const badDirection = expectProblem(await send('auditor', 'GET', '/audit/events?direction=sideways'), 400, 'validation');
    expect(badDirection.errors?.[0]?.field).toBe('direction');
    const unknown = expectProblem(await send('auditor', 'GET', '/audit/events?colour=red'), 400, 'validation');
    expect(unknown.errors?.[0]?.field).toBe('colour');
    expectProblem(await send('analyst', 'GET', '/audit/events'), 403);
  });

  it('exports the filtered log as CSV and NDJSON', async () => {
    const csv = await send('auditor', 'GET', `/audit/events/export?format=csv&stream=customer-${customerId}`);
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-disposition']).toContain('attachment');
    expect(csv.body.trimEnd().split('\r\n')).toHaveLength(4);
    const ndjson = await send('auditor', 'GET', `/audit/events?format=ndjson&type=PurchaseRecorded`);
    const lines = ndjson.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ type: 'PurchaseRecorded', data: { amount: 120.5, currency: 'EUR' } });
  });

  it('answers the format the Accept header prefers by its q values, as the exports do, and says it varies by Accept', async () => {
    // Found with "Accept: application/x-ndjson;q=0, text/csv": a client refusing NDJSON got NDJSON here,
    // as any Accept that mentioned ndjson did, while the exports read the q values.
    const formatFor = async (url: string, accept: string) => {
      const response = await send('auditor', 'GET', url, undefined, { accept });
      expect(response.statusCode, `${url} ${accept}`).toBe(200);
      expect(String(response.headers.vary).toLowerCase(), `${url} ${accept}`).toContain('accept');
      const type = String(response.headers['content-type']);
      return type.startsWith('application/x-ndjson') ? 'ndjson' : type.startsWith('text/csv') ? 'csv' : 'json';
    };
    const paged = `/audit/events?stream=customer-${customerId}`;
    const cases: [string, string, 'json' | 'ndjson' | 'csv'][] = [
      [paged, 'application/x-ndjson;q=0, text/csv', 'csv'],
      [paged, 'application/x-ndjson; q=0', 'json'],
      [paged, 'text/csv;q=0.5, application/x-ndjson;q=0.9', 'ndjson'],
      [paged, 'application/json, text/csv;q=0.5', 'json'],
      [paged, 'text/csv', 'csv'],
      [paged, '*/*', 'json'],
      [`/audit/streams/customer-${customerId}`, 'application/x-ndjson;q=0, text/csv', 'csv'],
      [`/audit/events/export?stream=customer-${customerId}`, 'application/x-ndjson;q=0, text/csv', 'csv'],
      [`/audit/events/export?stream=customer-${customerId}`, '*/*', 'ndjson'],
      [`/audit/streams/customer-${customerId}/export`, 'application/x-ndjson;q=0.1, text/csv;q=0.2', 'csv'],
    ];
    for (const [url, accept, format] of cases) expect(await formatFor(url, accept), `${url} ${accept}`).toBe(format);
  });
});

describe('point in time', () => {
  it('GET /customers/:id?asOf= between two changes returns the earlier values and revision', async () => {
    const response = await send('auditor', 'GET', `/customers/${customerId}?asOf=${encodeURIComponent(betweenChanges)}`);
    expect(response.statusCode).toBe(200);
    expect(json(response)).toMatchObject({ email: 'ada@example.com', revision: 0, orderCount: 0 });
    const now = json(await send('auditor', 'GET', `/audit/state/customer/${customerId}`));
    expect(now).toMatchObject({ revision: 2, record: { email: 'ada@engines.example', orderCount: 1 } });
    // The id in upper case names the same record.
    const upper = json(await send('auditor', 'GET', `/audit/state/customer/${customerId.toUpperCase()}`));
    expect(upper).toMatchObject({ id: customerId, stream: now.stream, revision: 2, record: now.record });
  });

  it('a date alone is the start of that day (UTC), as crm replay --as-of takes it, on both paths', async () => {
    const day = betweenChanges.slice(0, 10);
    const nextDay = new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10);
    for (const path of [`/customers/${customerId}?asOf=`, `/audit/state/customer/${customerId}?asOf=`]) {
      // Before the customer existed: the answer for the date is the answer for its first instant.
      const asDate = await send('auditor', 'GET', `${path}2001-02-03`);
      const asTime = await send('auditor', 'GET', `${path}${encodeURIComponent('2001-02-03T00:00:00Z')}`);
      expect(asDate.statusCode, path).toBe(asTime.statusCode);
      expect(asDate.statusCode, path).toBe(404);
      expect(json(asDate).detail).toContain(`No customer ${customerId} as of 2001-02-03`);
      // A date still to come is refused as a time still to come is (unless this runs in the day's last minutes).
      if (Date.parse(nextDay) - Date.now() > 10 * 60_000) expectProblem(await send('auditor', 'GET', `${path}${nextDay}`), 400, 'validation');
    }
  });

  it('an instant in the future is a 400 naming asOf on both paths, not the current state passed off as that instant', async () => {
    const later = encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString());
    for (const path of [`/customers/${customerId}?asOf=${later}`, `/audit/state/customer/${customerId}?asOf=${later}`]) {
      const response = await send('auditor', 'GET', path);
      expect(response.statusCode, path).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(json(response).errors).toEqual([expect.objectContaining({ field: 'asOf', message: expect.stringContaining('not known yet') })]);
    }
  });
});

describe('verification jobs', () => {
  it('POST /audit/verify runs in the background and passes on a clean system', async () => {
    const started = await send('auditor', 'POST', '/audit/verify');
    expect(started.statusCode).toBe(202);
    const { id, href } = json(started);
    expect(started.headers.location).toBe(href);
    const job = await waitForJob(id);
    expect(job).toMatchObject({ id, kind: 'read_models', status: 'passed', result: { ok: true, differences: 0 } });
  });

  it('fails with the exact differing row after a read-model row is altered', async () => {
    // Not a personal column: stored results keep the values of those (personal ones read '[personal data]').
    await sql`UPDATE ${sql.id(h.schemas.read, 'customers')} SET source = 'forged' WHERE customer_id = ${customerId}`.execute(h.database.db);
    try {
      const { id } = json(await send('admin', 'POST', '/audit/verify', { kind: 'read_models' }));
      const job = await waitForJob(id, 'admin');
      expect(job.status).toBe('failed');
      expect(job.result.firstDifference).toMatchObject({
        table: 'customers',
        key: { customer_id: customerId },
        kind: 'changed',
        columns: [{ column: 'source', live: 'forged', replayed: null }],
      });
    } finally {
      await sql`UPDATE ${sql.id(h.schemas.read, 'customers')} SET source = NULL WHERE customer_id = ${customerId}`.execute(h.database.db);
    }
  });

  it('verifies the hash chains on request, and seals on demand', async () => {
    const sealed = json(await send('auditor', 'POST', '/audit/chain/seal'));
    expect(sealed.sealed).toBeGreaterThanOrEqual(0);
    const { id } = json(await send('auditor', 'POST', '/audit/verify', { chain: true }));
    const job = await waitForJob(id);
    expect(job).toMatchObject({ kind: 'chains', status: 'passed', result: { ok: true, streams: { ok: true }, global: { ok: true } } });
  });

  it('a chain verification fails naming the event edited behind the store', async () => {
    const events = sql.id(h.schemas.events, 'events');
    const stream = `customer-${customerId}`;
    await sql`UPDATE ${events} SET metadata = jsonb_set(metadata, '{reason}', '"backdated by hand"') WHERE stream = ${stream} AND revision = 1`.execute(
      h.database.db,
    );
    try {
      const { id } = json(await send('auditor', 'POST', '/audit/verify', { kind: 'chains' }));
      const job = await waitForJob(id);
      expect(job.status).toBe('failed');
      expect(job.result.firstBroken).toMatchObject({ chain: 'stream', stream, revision: 1, reason: expect.stringContaining('hash mismatch') });
      expect(job.result.firstBroken.position).toMatch(/^\d+$/);
    } finally {
      await sql`UPDATE ${events} SET metadata = metadata - 'reason' WHERE stream = ${stream} AND revision = 1`.execute(h.database.db);
    }
  });

  it('answers 404 for an unknown job and 400 for a bad body; analysts may not start one', async () => {
    expectProblem(await send('auditor', 'GET', `/audit/verify/${randomUUID()}`), 404);
    expectProblem(await send('auditor', 'POST', '/audit/verify', { kind: 'everything' }), 400, 'validation');
    expectProblem(await send('analyst', 'POST', '/audit/verify'), 403);
  });
});

describe('GET /customers/:id/export', () => {
  it('answers a subject access request with profile, events and read-model rows', async () => {
    const response = await send('support', 'GET', `/customers/${customerId}/export`);
    expect(response.statusCode).toBe(200);
    const body = json(response);
    expect(body.profile).toMatchObject({ id: customerId, name: 'Ada Lovelace', email: 'ada@engines.example' });
    expect(body.events.map((e: any) => e.type)).toEqual(['CustomerRegistered', 'CustomerContactDetailsChanged', 'PurchaseRecorded']);
    expect(body.readModels.customers).toHaveLength(1);
    expect(body.readModels.customers[0].email).toBe('ada@engines.example');
    expect(body.forgotten).toBe(false);
    expect(json(await send('auditor', 'GET', `/customers/${customerId}/export`)).customerId).toBe(customerId);
  });

  it('is refused to analysts and answers 404 for nobody', async () => {
    expectProblem(await send('analyst', 'GET', `/customers/${customerId}/export`), 403);
    expectProblem(await send('auditor', 'GET', `/customers/${randomUUID()}/export`), 404);
  });
});

describe('OpenAPI', () => {
  it('documents every audit route', async () => {
    const doc = json(await send(null, 'GET', '/openapi.json'));
    for (const path of [
      '/audit/streams/{stream}',
      '/audit/streams/{stream}/export',
      '/audit/events',
      '/audit/events/export',
      '/audit/state/{kind}/{id}',
      '/audit/verify',
      '/audit/verify/{id}',
      '/audit/chain/seal',
      '/customers/{id}/export',
    ]) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
    const params = doc.paths['/audit/events'].get.parameters.map((p: { name: string }) => p.name);
    expect(params).toEqual(expect.arrayContaining(['actor', 'type', 'stream', 'from', 'to', 'limit', 'direction', 'cursor']));
  });
});

describe('who and why', () => {
  it("records the API key's name beside its id, and a command's own reason in the metadata", async () => {
    const id = randomUUID();
    expect((await send('sales', 'POST', '/customers', { customerId: id, name: 'Grace Hopper', email: 'grace@navy.example' })).statusCode).toBe(201);
    expect((await send('sales', 'POST', `/customers/${id}/purchases`, { orderId: 'o-9', amount: 80, currency: 'EUR' })).statusCode).toBeLessThan(300);
    const refund = await send('sales', 'POST', `/customers/${id}/refunds`, { orderId: 'o-9', amount: 80, currency: 'EUR', reason: 'arrived broken' });
    expect(refund.statusCode, refund.body).toBeLessThan(300);
    const items = json(await send('auditor', 'GET', `/audit/streams/customer-${id}`)).items;
    expect(items.map((e: any) => e.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded', 'PurchaseRefunded']);
    for (const item of items) {
      expect(item.actor).toMatch(/^api-key:[0-9a-f-]{36}$/);
      expect(item.actorName).toBe('test sales');
    }
    expect(items[2].reason).toBe('arrived broken');
    expect(items[1].reason).toBeNull();
    // The id stays what the log filters on.
    const byActor = json(await send('auditor', 'GET', `/audit/events?actor=${encodeURIComponent(items[0].actor)}&stream=customer-${id}`));
    expect(byActor.items).toHaveLength(3);
    const csv = (await send('auditor', 'GET', `/audit/streams/customer-${id}?format=csv`)).body.split('\r\n');
    expect(csv[0]!.endsWith(',data,actor_name,occurred_at_as_written')).toBe(true);
    expect(csv[1]!.endsWith(',test sales,')).toBe(true);
  });

  it('gives business times in UTC, as every answer does, and the spelling of a client that named another offset beside it', async () => {
    const id = randomUUID();
    expect((await send('sales', 'POST', '/customers', { customerId: id, name: 'Kiri Te Kanawa', email: `${id}@example.nz` })).statusCode).toBe(201);
    const bought = await send('sales', 'POST', `/customers/${id}/purchases`, {
      orderId: 'nz-1',
      amount: 5,
      currency: 'NZD',
      occurredAt: '2026-01-01T10:00:00+13:00',
    });
    expect(bought.statusCode, bought.body).toBeLessThan(300);
    const [, purchase] = json(await send('auditor', 'GET', `/audit/streams/customer-${id}`)).items;
    // New Year's Day in Auckland is 31 December in UTC, the day the reports count it in.
    expect(purchase).toMatchObject({ occurredAt: '2025-12-31T21:00:00.000Z', occurredAtAsWritten: '2026-01-01T10:00:00+13:00' });
    const csv = (await send('auditor', 'GET', `/audit/streams/customer-${id}?format=csv`)).body.split('\r\n');
    expect(csv[2]).toContain(',2025-12-31T21:00:00.000Z,');
    expect(csv[2]!.endsWith(',test sales,2026-01-01T10:00:00+13:00')).toBe(true);
  });
});
