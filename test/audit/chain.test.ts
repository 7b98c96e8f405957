import { randomUUID } from 'node:crypto';
import { sql, type KyselyPlugin } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { sealChain, verifyChains, verifyGlobalChain } from '../../audit/sql/chain.ts';
import { streamHistory } from '../../audit/history.ts';
import { verifyStreamChains } from '../../eventstore/postgres/chain.ts';
import { chainsNextSteps, describeChainsVerification } from '../../audit/summary.ts';
import { ERASED } from '../../domain/shared.ts';
import { customerRegistered, openAuditHarness, rechainStream, sealAll, type AuditHarness } from './support.ts';

/**
 * Tampering behind the store's back with raw SQL, one fresh event store per case so that each case
 * starts from an intact log.
 */
const open: AuditHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

interface Fixture {
  h: AuditHarness;
  ada: string;
  bob: string;
  /** `schema.events` for raw SQL. */
  events: ReturnType<typeof sql.id>;
}

/** Two customers with three events each, interleaved, all sealed. */
const fixture = async (): Promise<Fixture> => {
  const h = await openAuditHarness('audit_chain');
  open.push(h);
  const ada = randomUUID();
  const bob = randomUUID();
  for (const id of [ada, bob]) await h.record(`customer-${id}`, 'CustomerRegistered', customerRegistered(id));
  for (const id of [ada, bob]) {
    await h.record(`customer-${id}`, 'PurchaseRecorded', { customerId: id, orderId: 'o-1', amount: 10, currency: 'EUR' });
    await h.record(`customer-${id}`, 'PurchaseRecorded', { customerId: id, orderId: 'o-2', amount: 20, currency: 'EUR' });
  }
  expect(await sealAll(h)).toBe(6);
  return { h, ada, bob, events: sql.id(h.schemas.events, 'events') };
};

const positionOf = async (f: Fixture, stream: string, revision: number): Promise<bigint> => {
  const { rows } = await sql<{ p: string }>`SELECT position::text AS p FROM ${f.events} WHERE stream = ${stream} AND revision = ${revision}`.execute(
    f.h.database.db,
  );
  return BigInt(rows[0]!.p);
};

describe('tamper evidence', () => {
  it('a clean log verifies on both chains, and sealing is incremental', async () => {
    const f = await fixture();
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.ok).toBe(true);
    expect(result.streams.checked).toBe(6);
    expect(result.global).toMatchObject({ ok: true, checked: 6, unsealed: 0 });
    expect(result.firstBroken).toBeUndefined();
    await f.h.record(`customer-${f.ada}`, 'CustomerTagged', { customerId: f.ada, tag: 'gold' });
    expect((await verifyGlobalChain(f.h.database, f.h.schemas.events)).unsealed).toBe(1);
    expect(await sealAll(f.h)).toBe(1);
    expect(await sealChain(f.h.database, f.h.schemas.events)).toBe(0);
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true, global: { checked: 7, unsealed: 0 } });
  });

  it("reports no broken link for events appended while it walks (each page read with its streams' heads in one snapshot)", async () => {
    const f = await fixture();
    const [, later] = [`customer-${f.ada}`, `customer-${f.bob}`].sort();
    let appended = false;
    // After the first page of events, a command appends to a stream the walk reaches later.
    const plugin: KyselyPlugin = {
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        const first = args.result.rows[0];
        if (!appended && first && 'micros' in first) {
          appended = true;
          await f.h.record(later!, 'CustomerTagged', { customerId: later!.slice('customer-'.length), tag: 'late' });
        }
        return args.result;
      },
    };
    const database = { ...f.h.database, db: f.h.database.db.withPlugin(plugin) };
    // Heads read once before the walk were older than the events read later: "stream head says revision 2, events end at 3".
    const result = await verifyStreamChains(database, { schema: f.h.schemas.events, pageSize: 2 });
    expect(appended).toBe(true);
    expect(result.firstBroken).toBeUndefined();
    expect(result).toMatchObject({ ok: true, checked: 7 });
  });

  it('detects data edited in place and names the event', async () => {
    const f = await fixture();
    const stream = `customer-${f.ada}`;
    await sql`UPDATE ${f.events} SET data = jsonb_set(data, '{amount}', '1000') WHERE stream = ${stream} AND revision = 1`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({
      chain: 'stream',
      stream,
      revision: 1,
      position: await positionOf(f, stream, 1),
      reason: expect.stringContaining('hash mismatch'),
    });
    expect(describeChainsVerification(result)[1]).toContain(`stream ${stream}, revision 1`);
    // What to do next: not rebuild from the altered events, restore them, starting from the link named.
    const steps = chainsNextSteps(result).join('\n');
    expect(steps).toContain('Do not run `crm rebuild`');
    expect(steps).toContain(`stream ${stream} revision 1 (position ${result.firstBroken!.position})`);
    expect(steps).toMatch(/Restore the events table from a backup taken before the change/);
  });

  it('detects an event deleted in the middle of a stream', async () => {
    const f = await fixture();
    const stream = `customer-${f.bob}`;
    const position = await positionOf(f, stream, 1);
    await sql`DELETE FROM ${f.events} WHERE stream = ${stream} AND revision = 1`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({ chain: 'stream', stream, revision: 1, reason: expect.stringContaining('missing') });
    // The global chain names it too, position included, from the seal.
    expect(result.global.firstBroken).toMatchObject({ position, stream, revision: 1, reason: expect.stringContaining('deleted') });
  });

  it('detects the last event of a stream deleted, even with the stream head rewound to match', async () => {
    const f = await fixture();
    const stream = `customer-${f.ada}`;
    const position = await positionOf(f, stream, 2);
    await sql`DELETE FROM ${f.events} WHERE stream = ${stream} AND revision = 2`.execute(f.h.database.db);
    const plain = await verifyChains(f.h.database, f.h.schemas.events);
    expect(plain.firstBroken).toMatchObject({ chain: 'stream', stream });
    // A careful forger also rewinds the stream head: only the global chain still knows.
    await sql`UPDATE ${sql.id(f.h.schemas.events, 'streams')} SET revision = 1,
                last_hash = (SELECT hash FROM ${f.events} WHERE stream = ${stream} AND revision = 1) WHERE stream = ${stream}`.execute(f.h.database.db);
    const careful = await verifyChains(f.h.database, f.h.schemas.events);
    expect(careful.streams.ok).toBe(true);
    expect(careful.ok).toBe(false);
    expect(careful.firstBroken).toMatchObject({ chain: 'global', stream, revision: 2, position, reason: expect.stringContaining('deleted') });
  });

  it('detects a forged row inserted with SQL', async () => {
    const f = await fixture();
    const stream = `customer-${f.bob}`;
    // A position inside the sealed range, at the end of Bob's stream, with a made-up hash.
    const position = (await positionOf(f, `customer-${f.ada}`, 2)) + 1n;
    await sql`INSERT INTO ${f.events} (position, stream, revision, event_id, type, data, metadata, recorded_at, hash)
      SELECT ${position.toString()}::bigint, stream, 3, ${randomUUID()}::uuid, 'PurchaseRefunded',
             jsonb_build_object('customerId', ${f.bob}::text, 'orderId', 'o-2', 'refundId', 'r-1', 'amount', 20, 'currency', 'EUR', 'reason', null),
             metadata, recorded_at, sha256('forged'::bytea)
        FROM ${f.events} WHERE stream = ${stream} AND revision = 2`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({ chain: 'stream', stream, revision: 3, position });
    expect(result.global.firstBroken).toMatchObject({ position, stream, revision: 3, reason: expect.stringContaining('never sealed') });
  });

  it('detects a stream rewritten with correctly recomputed hashes, through the global chain', async () => {
    const f = await fixture();
    const stream = `customer-${f.ada}`;
    await sql`UPDATE ${f.events} SET data = jsonb_set(data, '{amount}', '1') WHERE stream = ${stream} AND revision = 1`.execute(f.h.database.db);
    // The forger knows the formula and re-chains the whole stream and its head.
    await rechainStream(f.h.database.db, f.h.schemas.events, stream);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.streams.ok).toBe(true);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({
      chain: 'global',
      stream,
      revision: 1,
      position: await positionOf(f, stream, 1),
      reason: expect.stringContaining('rewritten'),
    });
  });

  it('detects an event appended later with an earlier record time (back-dated), its links recomputed and sealed, in its stream and in the log', async () => {
    const f = await fixture();
    // Appended through the store, as the CRM would: every hash holds, and the sealer seals it.
    const backDate = async (stream: string, seconds: number) => {
      const revision = (await f.h.record(stream, 'CustomerTagged', { customerId: stream.slice('customer-'.length), tag: `t${seconds}` })).nextExpectedRevision;
      await sql`UPDATE ${f.events} SET recorded_at = recorded_at - make_interval(secs => ${seconds}) WHERE stream = ${stream} AND revision = ${revision}`.execute(
        f.h.database.db,
      );
      await rechainStream(f.h.database.db, f.h.schemas.events, stream);
      await sealAll(f.h);
      return { revision, position: await positionOf(f, stream, revision) };
    };
    // A few seconds back is what a transaction that began before another and wrote after it looks like.
    await backDate(`customer-${f.ada}`, 5);
    expect((await verifyChains(f.h.database, f.h.schemas.events)).ok).toBe(true);
    const stream = `customer-${f.bob}`;
    const forged = await backDate(stream, 600);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toMatchObject({ chain: 'stream', stream, ...forged, reason: expect.stringContaining('back-dated') });
    expect(result.global.firstBroken).toMatchObject({
      stream,
      ...forged,
      reason: expect.stringMatching(/(59\d|600) s before the event at position \d+.*back-dated/),
    });
  });

  it('names a deleted seal as deleted, not the genuine event it covered as inserted (the next seal follows through that event)', async () => {
    const f = await fixture();
    const stream = `customer-${f.ada}`;
    const position = await positionOf(f, stream, 1);
    const seals = sql.id(f.h.schemas.events, 'event_chain_seals');
    await sql`DELETE FROM ${seals} WHERE position = ${position.toString()}::bigint`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.streams.ok).toBe(true);
    expect(result.firstBroken).toMatchObject({ chain: 'global', stream, revision: 1, position, reason: expect.stringContaining('its seal was deleted') });
    expect(result.firstBroken!.reason).not.toContain('inserted');
    // With the seal after it altered too, neither story holds alone: both are named.
    const next = await positionOf(f, stream, 2);
    await sql`UPDATE ${seals} SET global_hash = sha256('x'::bytea) WHERE position = ${next.toString()}::bigint`.execute(f.h.database.db);
    expect((await verifyChains(f.h.database, f.h.schemas.events)).firstBroken).toMatchObject({
      position,
      reason: expect.stringContaining('seals deleted or altered, or the event inserted'),
    });
  });

  it('detects an altered seal', async () => {
    const f = await fixture();
    const position = await positionOf(f, `customer-${f.bob}`, 0);
    await sql`UPDATE ${sql.id(f.h.schemas.events, 'event_chain_seals')} SET global_hash = sha256('x'::bytea) WHERE position = ${position.toString()}::bigint`.execute(
      f.h.database.db,
    );
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.firstBroken).toMatchObject({ chain: 'global', position, reason: expect.stringContaining('seal altered') });
  });

  it('says events deleted with their seals are a cause, naming the seal before, when a whole stream is gone', async () => {
    // Found by an auditor: the next event's seal, never touched, was reported as "seal altered" alone.
    const f = await fixture();
    const bob = `customer-${f.bob}`;
    const [before, after] = [await positionOf(f, `customer-${f.ada}`, 0), await positionOf(f, `customer-${f.ada}`, 1)];
    for (const table of ['event_chain_seals', 'events', 'streams'])
      await sql`DELETE FROM ${sql.id(f.h.schemas.events, table)} WHERE stream = ${bob}`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.firstBroken).toMatchObject({
      chain: 'global',
      position: after,
      reason: `global hash does not follow from the previous seal at position ${before}: seal altered, or events deleted together with their seals between the two`,
    });
  });

  it('names an edited stream head as a cause when the next append was chained onto it', async () => {
    const f = await fixture();
    const stream = `customer-${f.ada}`;
    await sql`UPDATE ${sql.id(f.h.schemas.events, 'streams')} SET last_hash = '\\x00'::bytea WHERE stream = ${stream}`.execute(f.h.database.db);
    expect((await verifyChains(f.h.database, f.h.schemas.events)).firstBroken).toMatchObject({
      stream,
      reason: 'stream head hash differs from the last event',
    });
    await f.h.record(stream, 'CustomerTagged', { customerId: f.ada, tag: 'gold' });
    expect((await verifyChains(f.h.database, f.h.schemas.events)).firstBroken).toMatchObject({
      stream,
      revision: 3,
      reason: 'hash mismatch: this event was altered or inserted, or appended onto an edited stream head (streams.last_hash)',
    });
  });

  it('forgetting a customer leaves every chain verifiable (hashes cover ciphertext)', async () => {
    const f = await fixture();
    await f.h.personalData.forget(f.ada);
    await f.h.record(`customer-${f.ada}`, 'CustomerForgotten', { customerId: f.ada });
    await sealAll(f.h);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result).toMatchObject({ ok: true, global: { checked: 7, unsealed: 0 } });
    const history = await streamHistory(f.h.deps, `customer-${f.ada}`, { personalData: 'reveal' });
    expect(history.items[0]!.data).toMatchObject({ name: ERASED, email: ERASED });
  });

  it('never seals past a transaction still open, and seals it in position order once it commits', async () => {
    const f = await fixture();
    const client = new pg.Client({ connectionString: f.h.schemas.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      const event = {
        id: randomUUID(),
        data: { customerId: f.bob, tag: 'late' },
        metadata: {
          actor: { userId: 'slow', roles: ['sales'] },
          correlationId: 'c',
          causationId: null,
          occurredAt: new Date().toISOString(),
          schemaVersion: 1,
          command: 'Test',
        },
      };
      await client.query(`SELECT * FROM "${f.h.schemas.events}".append_events($1, -2, $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[])`, [
        `customer-${f.bob}`,
        [event.id],
        ['CustomerTagged'],
        [JSON.stringify(event.data)],
        [JSON.stringify(event.metadata)],
      ]);
      // Committed after the open transaction started: a higher position, not final yet.
      await f.h.record(`customer-${f.ada}`, 'CustomerTagged', { customerId: f.ada, tag: 'early' });
      expect(await sealChain(f.h.database, f.h.schemas.events)).toBe(0);
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    expect(await sealAll(f.h)).toBe(2);
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true, global: { checked: 8 } });
  });
});
