import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditDeps } from '../../audit/deps.ts';
import { MASKED } from '../../audit/event-view.ts';
import { exportStream } from '../../audit/export.ts';
import { eventLog, InvalidAuditQuery, iterateEventLog, iterateStreamHistory, streamHistory, streamNamed } from '../../audit/history.ts';
import { eventLogWhere, ensureAuditIndexes } from '../../audit/sql/history.ts';
import { ERASED } from '../../domain/shared.ts';
import { campaignCreated, customerRegistered, dealOpened, openAuditHarness, sleep, type AuditHarness } from './support.ts';

let h: AuditHarness;
const ada = randomUUID();
const bob = randomUUID();
const deal = randomUUID();
const correlationId = randomUUID();
let beforeDeal: Date;

beforeAll(async () => {
  h = await openAuditHarness('audit_history');
  const registered = await h.record(`customer-${ada}`, 'CustomerRegistered', customerRegistered(ada), {
    actor: 'sam@sales',
    roles: ['sales'],
    correlationId,
    occurredAt: '2026-01-02T09:00:00.000Z',
    reason: 'met at the fair, "VIP", call back',
  });
  await h.record(
    `customer-${ada}`,
    'CustomerContactDetailsChanged',
    { customerId: ada, email: 'ada@engines.example' },
    {
      actor: 'sue@support',
      roles: ['support'],
      correlationId,
      causationId: registered.id,
    },
  );
  await h.record(
    `customer-${ada}`,
    'PurchaseRecorded',
    { customerId: ada, orderId: 'o-1', amount: 120.5, currency: 'EUR' },
    {
      actor: 'sam@sales',
      occurredAt: '2025-12-24T10:00:00.000Z',
    },
  );
  await h.record(`customer-${bob}`, 'CustomerRegistered', customerRegistered(bob, { name: 'Bob, "the builder"\nJr', email: 'bob@example.com' }), {
    actor: 'mia@marketing',
    roles: ['marketing'],
  });
  await sleep(20);
  beforeDeal = new Date();
  await sleep(20);
  await h.record(`deal-${deal}`, 'DealOpened', dealOpened(deal, ada), { actor: 'sam@sales' });
});

afterAll(async () => {
  await h?.close();
});

/** The same deps seen as an engine without SQL access, to exercise the generic readAll path. */
const genericDeps = (): AuditDeps => ({
  ...h.deps,
  store: new Proxy(h.store, { get: (target, prop) => (prop === 'engine' ? 'eventstoredb' : Reflect.get(target, prop)) }),
});

const collect = async <T>(iterable: AsyncIterable<T>): Promise<T[]> => {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
};

describe('stream history', () => {
  it('lists every event of a stream in order with its metadata and personal data revealed', async () => {
    const page = await streamHistory(h.deps, `customer-${ada}`, { personalData: 'reveal' });
    expect(page.items.map((e) => e.type)).toEqual(['CustomerRegistered', 'CustomerContactDetailsChanged', 'PurchaseRecorded']);
    expect(page.items.map((e) => e.revision)).toEqual([0, 1, 2]);
    expect(page.nextCursor).toBeNull();
    const [first, second, third] = page.items;
    expect(first!.data).toMatchObject({ name: 'Ada Lovelace', email: 'ada@example.com' });
    expect(first).toMatchObject({
      actor: 'sam@sales',
      roles: ['sales'],
      correlationId,
      causationId: null,
      occurredAt: '2026-01-02T09:00:00.000Z',
      reason: 'met at the fair, "VIP", call back',
      schemaVersion: 2,
    });
    expect(second).toMatchObject({ actor: 'sue@support', roles: ['support'], correlationId, causationId: first!.id });
    expect(second!.data).toMatchObject({ email: 'ada@engines.example' });
    // Business time (back-dated purchase) and record time are both there and differ.
    expect(third!.occurredAt).toBe('2025-12-24T10:00:00.000Z');
    expect(third!.recordedAt.getTime()).toBeGreaterThan(Date.parse('2026-01-01'));
    expect(third!.position).toBeGreaterThan(second!.position);
  });

  it('masks personal data for callers who may not see it', async () => {
    const page = await streamHistory(h.deps, `customer-${ada}`, { personalData: 'mask' });
    expect(page.items[0]!.data).toMatchObject({ name: MASKED, email: MASKED, phone: MASKED, company: MASKED });
    expect(JSON.stringify(page.items.map((e) => e.data))).not.toContain('enc:v');
  });

  it('pages by revision, forwards and backwards', async () => {
    const first = await streamHistory(h.deps, `customer-${ada}`, { personalData: 'reveal', limit: 2 });
    expect(first.items.map((e) => e.revision)).toEqual([0, 1]);
    expect(first.nextCursor).toBe('2');
    const second = await streamHistory(h.deps, `customer-${ada}`, { personalData: 'reveal', limit: 2, cursor: first.nextCursor });
    expect(second.items.map((e) => e.revision)).toEqual([2]);
    expect(second.nextCursor).toBeNull();
    const backwards = await streamHistory(h.deps, `customer-${ada}`, { personalData: 'reveal', limit: 2, direction: 'backwards' });
    expect(backwards.items.map((e) => e.revision)).toEqual([2, 1]);
    expect(backwards.nextCursor).toBe('0');
  });

  it('answers an empty page for a stream that does not exist and refuses a bad cursor', async () => {
    expect((await streamHistory(h.deps, `customer-${randomUUID()}`, { personalData: 'reveal' })).items).toEqual([]);
    await expect(streamHistory(h.deps, `customer-${ada}`, { personalData: 'reveal', cursor: 'abc' })).rejects.toBeInstanceOf(InvalidAuditQuery);
  });
});

describe('global log', () => {
  for (const engine of ['sql', 'generic'] as const) {
    const deps = () => (engine === 'sql' ? h.deps : genericDeps());

    it(`filters by actor, type, stream and record time (${engine})`, async () => {
      const byActor = await eventLog(deps(), { actor: 'sam@sales', personalData: 'reveal' });
      expect(byActor.items.map((e) => e.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded', 'DealOpened']);
      const byType = await eventLog(deps(), { types: ['CustomerRegistered'], personalData: 'reveal' });
      expect(byType.items.map((e) => e.stream)).toEqual([`customer-${ada}`, `customer-${bob}`]);
      const byStream = await eventLog(deps(), { stream: `customer-${bob}`, personalData: 'reveal' });
      expect(byStream.items).toHaveLength(1);
      const byPrefix = await eventLog(deps(), { stream: 'deal-', personalData: 'reveal' });
      expect(byPrefix.items.map((e) => e.stream)).toEqual([`deal-${deal}`]);
      const after = await eventLog(deps(), { from: beforeDeal, personalData: 'reveal' });
      expect(after.items.map((e) => e.type)).toEqual(['DealOpened']);
      const before = await eventLog(deps(), { to: beforeDeal, personalData: 'reveal' });
      expect(before.items).toHaveLength(4);
    });

    it(`filters by actor in any case: an id typed as an auditor types it (${engine})`, async () => {
      for (const actor of ['SAM@Sales', 'sam@SALES']) {
        const found = await eventLog(deps(), { actor, personalData: 'reveal' });
        expect(found.items.map((e) => e.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded', 'DealOpened']);
        // The recorded id is shown as it was written.
        expect(new Set(found.items.map((e) => e.actor))).toEqual(new Set(['sam@sales']));
      }
      expect((await eventLog(deps(), { actor: 'SAM@sale', personalData: 'reveal' })).items).toEqual([]);
    });

    it(`pages by position in both directions (${engine})`, async () => {
      const all = await eventLog(deps(), { personalData: 'reveal' });
      expect(all.items).toHaveLength(5);
      const positions = all.items.map((e) => e.position);
      expect([...positions].sort((a, b) => (a < b ? -1 : 1))).toEqual(positions);

      const seen: bigint[] = [];
      let cursor: string | null = null;
      do {
        const page = await eventLog(deps(), { personalData: 'reveal', limit: 2, cursor });
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map((e) => e.position));
        cursor = page.nextCursor;
      } while (cursor !== null);
      expect(seen).toEqual(positions);

      const newest = await eventLog(deps(), { personalData: 'reveal', limit: 2, direction: 'backwards' });
      expect(newest.items.map((e) => e.position)).toEqual([positions[4], positions[3]]);
      const older = await eventLog(deps(), { personalData: 'reveal', limit: 2, direction: 'backwards', cursor: newest.nextCursor });
      expect(older.items.map((e) => e.position)).toEqual([positions[2], positions[1]]);
    });
  }

  it('refuses a cursor that is not a position', async () => {
    await expect(eventLog(h.deps, { personalData: 'reveal', cursor: '12; DROP TABLE' })).rejects.toMatchObject({ field: 'cursor' });
  });
});

describe('exports', () => {
  const read = async (stream: NodeJS.ReadableStream): Promise<string> => {
    let text = '';
    for await (const chunk of stream) text += chunk.toString();
    return text;
  };

  it('streams the filtered log as NDJSON, one event per line', async () => {
    const text = await read(exportStream(iterateEventLog(h.deps, { stream: 'customer-', personalData: 'reveal' }), 'ndjson'));
    const lines = text
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatchObject({ type: 'CustomerRegistered', actor: 'sam@sales', correlationId, revision: 0 });
    expect(lines[0].position).toMatch(/^\d+$/);
    expect(lines[3].data.name).toBe('Bob, "the builder"\nJr');
  });

  it('streams a stream history as CSV with quoting that survives commas, quotes and newlines', async () => {
    const text = await read(exportStream(iterateStreamHistory(h.deps, `customer-${bob}`, { personalData: 'reveal' }), 'csv'));
    const [header, ...rest] = text.split('\r\n');
    expect(header).toBe(
      'position,stream,revision,id,type,schema_version,actor,roles,correlation_id,causation_id,command,reason,occurred_at,recorded_at,data,actor_name,occurred_at_as_written',
    );
    expect(rest.filter((l) => l !== '')).toHaveLength(1);
    // `data` is followed by `actor_name` and `occurred_at_as_written` (both empty here).
    expect(rest[0]!.endsWith('}",,')).toBe(true);
    const dataField = rest[0]!.slice(rest[0]!.indexOf(',"{'), -2);
    // The data JSON is one quoted field with its quotes doubled.
    const json = JSON.parse(dataField.slice(2, -1).replaceAll('""', '"'));
    expect(json.name).toBe('Bob, "the builder"\nJr');
    expect(rest[0]).toContain(`customer-${bob},0,`);
  });

  it('streams CSV that no spreadsheet runs as a formula: a reason starting with = is prefixed with a quote', async () => {
    const stream = `customer-${randomUUID()}`;
    await h.record(stream, 'CustomerTagged', { customerId: stream.slice('customer-'.length), tag: 'vip' }, { reason: '=HYPERLINK("http://evil.example","x")' });
    const text = await read(exportStream(iterateStreamHistory(h.deps, stream, { personalData: 'reveal' }), 'csv'));
    expect(text).toContain(`,"'=HYPERLINK(""http://evil.example"",""x"")",`);
    const ndjson = await read(exportStream(iterateStreamHistory(h.deps, stream, { personalData: 'reveal' }), 'ndjson'));
    expect(JSON.parse(ndjson.trim()).reason).toBe('=HYPERLINK("http://evil.example","x")');
  });

  it('pages through a log larger than one page without losing or repeating events', async () => {
    const stream = `campaign-${randomUUID()}`;
    const campaignId = stream.slice('campaign-'.length);
    await h.record(stream, 'CampaignCreated', campaignCreated(campaignId));
    const events = Array.from({ length: 1_100 }, (_, i) => ({
      id: randomUUID(),
      type: 'CampaignCostRecorded',
      data: { campaignId, costId: `c-${i}`, amount: 1, currency: 'EUR', description: null },
      metadata: {
        actor: { userId: 'bulk', roles: ['marketing'] },
        correlationId: 'bulk',
        causationId: null,
        occurredAt: new Date().toISOString(),
        schemaVersion: 1,
        command: 'Test',
      },
    }));
    await h.store.appendToStream(stream, events);
    const exported = await collect(iterateStreamHistory(h.deps, stream, { personalData: 'reveal' }));
    expect(exported.map((e) => e.revision)).toEqual(Array.from({ length: 1_101 }, (_, i) => i));
    const fromLog = await collect(iterateEventLog(h.deps, { actor: 'bulk', personalData: 'reveal' }));
    expect(fromLog).toHaveLength(1_100);
    expect(new Set(fromLog.map((e) => e.id)).size).toBe(1_100);
  });
});

describe('the opt-in audit indexes', () => {
  it('serve the actor filter, which compares in any case', async () => {
    await ensureAuditIndexes(h.deps);
    const plan = await h.database.db.transaction().execute(async (trx) => {
      // Only whether an index can serve the filter is asked: a table this small is otherwise read whole.
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      const { rows } = await sql<{ 'QUERY PLAN': string }>`EXPLAIN SELECT count(*) FROM ${sql.id(h.schemas.events, 'events')}
        WHERE ${eventLogWhere({ actor: 'SAM@Sales' }, undefined, 'forwards')}`.execute(trx);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toContain('events_audit_actor_ci');
    // Run twice (an operator may): the same indexes, and the one on the id as written is gone.
    await ensureAuditIndexes(h.deps);
    const { rows } = await sql<{
      indexname: string;
    }>`SELECT indexname FROM pg_indexes WHERE schemaname = ${h.schemas.events} AND indexname LIKE 'events_audit_%'
      ORDER BY indexname`.execute(h.database.db);
    expect(rows.map((r) => r.indexname)).toEqual(['events_audit_actor_ci', 'events_audit_recorded_at', 'events_audit_type']);
  });
});

describe('after forget', () => {
  it('shows the erased marker in place of personal data, everything else intact', async () => {
    await h.personalData.forget(bob);
    const page = await streamHistory(h.deps, `customer-${bob}`, { personalData: 'reveal' });
    expect(page.items[0]!.data).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED, company: ERASED });
    expect(page.items[0]!.actor).toBe('mia@marketing');
  });
});

describe('stream names given in another case', () => {
  it('read an id in upper case as the lower-case stream, unless a stream is stored under that exact spelling', async () => {
    expect(await streamNamed(h.deps, `customer-${ada.toUpperCase()}`)).toBe(`customer-${ada}`);
    expect(await streamNamed(h.deps, `customer-${ada}`)).toBe(`customer-${ada}`);
    // Not a UUID, or no id at all: the name as given (an exchange rate's currency is upper case).
    expect(await streamNamed(h.deps, 'exchangerate-EUR')).toBe('exchangerate-EUR');
    expect(await streamNamed(h.deps, 'deal-')).toBe('deal-');
    // A stream written under an upper-case id before ids were normalised stays readable as it was written.
    const legacy = randomUUID().toUpperCase();
    await h.record(`customer-${legacy}`, 'CustomerRegistered', customerRegistered(legacy));
    expect(await streamNamed(h.deps, `customer-${legacy}`)).toBe(`customer-${legacy}`);
    expect(await streamNamed(h.deps, `customer-${legacy.toLowerCase()}`)).toBe(`customer-${legacy.toLowerCase()}`);
  });
});
