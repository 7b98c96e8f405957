import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { formatChainAnchor, parseChainAnchor, sealChain, startChainSealer, verifyChains, verifyGlobalChain } from '../../audit/sql/chain.ts';
import { chainsNextSteps } from '../../audit/summary.ts';
import { verifyStreamChains } from '../../eventstore/postgres/chain.ts';
import { connectPostgres, DEFAULT_POOL_TIMEOUTS } from '../../eventstore/postgres/database.ts';
import { newEvent } from '../eventstore/contract.ts';
import { newestPosition } from '../support/events.ts';
import { customerRegistered, forgeChains, openAuditHarness, rechainStream, sealAll, sleep, type AuditHarness } from './support.ts';

/**
 * The stream and global chains at the places test/audit/chain.test.ts does not reach: every reason a
 * stream's head or order can break, paging, partial and locked seals, and the periodic sealer.
 * Each case tampers with its own fresh event store.
 */
const open: AuditHarness[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

/** Waits until `check` holds, polling; fails after `timeoutMs`. */
const until = async (check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
};

interface Fixture {
  h: AuditHarness;
  ada: string;
  bob: string;
  events: ReturnType<typeof sql.id>;
  streams: ReturnType<typeof sql.id>;
  seals: ReturnType<typeof sql.id>;
}

/** Ada and Bob, three events each, interleaved; sealed unless told otherwise. */
const fixture = async (seal = true): Promise<Fixture> => {
  const h = await openAuditHarness('audit_chain_mut');
  open.push(h);
  const ada = `customer-${randomUUID()}`;
  const bob = `customer-${randomUUID()}`;
  for (const stream of [ada, bob]) await h.record(stream, 'CustomerRegistered', customerRegistered(stream.slice('customer-'.length)));
  for (const stream of [ada, bob]) {
    const customerId = stream.slice('customer-'.length);
    await h.record(stream, 'PurchaseRecorded', { customerId, orderId: 'o-1', amount: 10, currency: 'EUR' });
    await h.record(stream, 'PurchaseRecorded', { customerId, orderId: 'o-2', amount: 20, currency: 'EUR' });
  }
  if (seal) expect(await sealAll(h)).toBe(6);
  return {
    h,
    ada,
    bob,
    events: sql.id(h.schemas.events, 'events'),
    streams: sql.id(h.schemas.events, 'streams'),
    seals: sql.id(h.schemas.events, 'event_chain_seals'),
  };
};

const positionOf = async (f: Fixture, stream: string, revision: number): Promise<bigint> => {
  const { rows } = await sql<{ p: string }>`SELECT position::text AS p FROM ${f.events} WHERE stream = ${stream} AND revision = ${revision}`.execute(
    f.h.database.db,
  );
  return BigInt(rows[0]!.p);
};

/** The global seal at a position, as an anchor taken then would hold it. */
const sealedAt = async (f: Fixture, position: bigint) => {
  const { rows } = await sql<{ g: string }>`SELECT encode(global_hash, 'hex') AS g FROM ${f.seals} WHERE position = ${position.toString()}::bigint`.execute(
    f.h.database.db,
  );
  return { position, globalHash: rows[0]!.g };
};

const allPositions = async (f: Fixture): Promise<bigint[]> => {
  const { rows } = await sql<{ p: string }>`SELECT position::text AS p FROM ${f.events} ORDER BY position`.execute(f.h.database.db);
  return rows.map((r) => BigInt(r.p));
};

/** A head anchor at this position, whatever its hash. */
const headAt = (position: bigint) => ({ position, globalHash: expect.stringMatching(/^[0-9a-f]{64}$/) });

/** The stream that `verifyStreamChains` walks first (ordered by stream name). */
const firstAndSecond = (f: Fixture): [string, string] => (f.ada < f.bob ? [f.ada, f.bob] : [f.bob, f.ada]);

describe('stream chains: heads and order', () => {
  it('a stream missing from the streams table is named with its last revision and position', async () => {
    const f = await fixture(false);
    await sql`DELETE FROM ${f.streams} WHERE stream = ${f.bob}`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result.ok).toBe(false);
    expect(result.firstBroken).toEqual({
      stream: f.bob,
      revision: 2,
      position: await positionOf(f, f.bob, 2),
      reason: 'stream missing from the streams table',
    });
  });

  it('a head claiming more events than there are is named with the revision it claims', async () => {
    const f = await fixture(false);
    await sql`UPDATE ${f.streams} SET revision = 5 WHERE stream = ${f.ada}`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result.firstBroken).toEqual({ stream: f.ada, revision: 5, position: null, reason: 'stream head says revision 5, events end at 2' });
  });

  it('a head hash that is not the last event hash is caught', async () => {
    const f = await fixture(false);
    await sql`UPDATE ${f.streams} SET last_hash = sha256('x'::bytea) WHERE stream = ${f.ada}`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result.firstBroken).toEqual({
      stream: f.ada,
      revision: 2,
      position: await positionOf(f, f.ada, 2),
      reason: 'stream head hash differs from the last event',
    });
    await sql`UPDATE ${f.streams} SET last_hash = NULL WHERE stream = ${f.ada}`.execute(f.h.database.db);
    expect((await verifyStreamChains(f.h.database, { schema: f.h.schemas.events })).firstBroken?.reason).toBe('stream head hash differs from the last event');
  });

  it('a head whose events are all gone, and a head at revision 0 with no event, are caught', async () => {
    const f = await fixture(false);
    await sql`DELETE FROM ${f.events} WHERE stream = ${f.ada}`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result).toEqual({ ok: false, checked: 3, firstBroken: { stream: f.ada, revision: 0, position: null, reason: 'stream has a head but no events' } });
    const g = await fixture(false);
    const ghost = `customer-${randomUUID()}`;
    await sql`INSERT INTO ${g.streams} (stream, revision, last_hash) VALUES (${ghost}, 0, sha256('x'::bytea))`.execute(g.h.database.db);
    expect((await verifyStreamChains(g.h.database, { schema: g.h.schemas.events })).firstBroken).toMatchObject({
      stream: ghost,
      reason: 'stream has a head but no events',
    });
  });

  it('a broken head is found on the stream walked last as on the one walked first', async () => {
    const f = await fixture(false);
    const [, last] = firstAndSecond(f);
    await sql`UPDATE ${f.streams} SET last_hash = sha256('x'::bytea) WHERE stream = ${last}`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result).toEqual({
      ok: false,
      checked: 6,
      firstBroken: { stream: last, revision: 2, position: await positionOf(f, last, 2), reason: 'stream head hash differs from the last event' },
    });
  });

  it('a revision below the expected one is named as unexpected, at its position', async () => {
    const f = await fixture(false);
    const [first] = firstAndSecond(f);
    const position = await positionOf(f, first, 0);
    await sql`UPDATE ${f.events} SET revision = -1 WHERE stream = ${first} AND revision = 0`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result).toEqual({ ok: false, checked: 0, firstBroken: { stream: first, revision: 0, position, reason: 'unexpected revision -1' } });
  });

  it('a gap at the start of a stream is named as a missing event with no position', async () => {
    const f = await fixture(false);
    const [first] = firstAndSecond(f);
    await sql`DELETE FROM ${f.events} WHERE stream = ${first} AND revision = 0`.execute(f.h.database.db);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result).toEqual({ ok: false, checked: 0, firstBroken: { stream: first, revision: 0, position: null, reason: 'event missing (revision gap)' } });
  });

  it('events of a re-chained stream whose positions go backwards are caught', async () => {
    const f = await fixture(false);
    const [first] = firstAndSecond(f);
    const p1 = await positionOf(f, first, 1);
    const p2 = await positionOf(f, first, 2);
    // Swap the positions of revisions 1 and 2 (through a negative one, positions are unique).
    await sql`UPDATE ${f.events} SET position = -1 WHERE position = ${p1.toString()}::bigint`.execute(f.h.database.db);
    await sql`UPDATE ${f.events} SET position = ${p1.toString()}::bigint WHERE position = ${p2.toString()}::bigint`.execute(f.h.database.db);
    await sql`UPDATE ${f.events} SET position = ${p2.toString()}::bigint WHERE position = -1`.execute(f.h.database.db);
    // Re-chained as a forger who knows the formula would: every hash fits, only the order is wrong.
    await rechainStream(f.h.database.db, f.h.schemas.events, first);
    const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events });
    expect(result).toEqual({ ok: false, checked: 2, firstBroken: { stream: first, revision: 2, position: p1, reason: 'position out of order' } });
  });

  it('pages of any size walk the same events, report progress, and find a break on a page boundary', async () => {
    const f = await fixture(false);
    for (const pageSize of [1, 2, 3, 5, 6, 7]) {
      const progress: number[] = [];
      const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events, pageSize, onProgress: (n) => progress.push(n) });
      expect(result, `page size ${pageSize}`).toEqual({ ok: true, checked: 6 });
      expect(progress.at(-1)).toBe(6);
      expect(progress.length).toBeGreaterThanOrEqual(Math.ceil(6 / pageSize));
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
    }
    const [, second] = firstAndSecond(f);
    await sql`UPDATE ${f.events} SET data = jsonb_set(data, '{amount}', '99') WHERE stream = ${second} AND revision = 1`.execute(f.h.database.db);
    for (const pageSize of [1, 3, 4]) {
      const result = await verifyStreamChains(f.h.database, { schema: f.h.schemas.events, pageSize });
      expect(result, `page size ${pageSize}`).toMatchObject({
        ok: false,
        checked: 4,
        firstBroken: { stream: second, revision: 1, reason: expect.stringContaining('hash mismatch') },
      });
    }
  });
});

describe('global chain: seals, paging and the sealer', () => {
  it('before any seal: nothing checked, nothing sealed through, every event unsealed', async () => {
    const f = await fixture(false);
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events)).toEqual({
      ok: true,
      checked: 0,
      head: null,
      anchorsMatched: 0,
      anchors: [],
      sealedThrough: null,
      unsealed: 6,
    });
  });

  it('seals at most maxEvents, in position order, and the next seal continues from there', async () => {
    const f = await fixture(false);
    const positions = await allPositions(f);
    expect(await sealChain(f.h.database, f.h.schemas.events, { maxEvents: 0 })).toBe(0);
    // Sealing stops below the oldest transaction open anywhere in the cluster (other test files share
    // it), so a call may seal fewer than it may: the calls together seal two, none more than it was allowed.
    let sealed = 0;
    await until(async () => {
      const allowed = 2 - sealed;
      const n = await sealChain(f.h.database, f.h.schemas.events, { maxEvents: allowed });
      expect(n).toBeLessThanOrEqual(allowed);
      sealed += n;
      return sealed === 2;
    }, 'two events are final');
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events)).toEqual({
      ok: true,
      checked: 2,
      head: headAt(positions[1]!),
      anchorsMatched: 0,
      anchors: [],
      sealedThrough: positions[1],
      unsealed: 4,
    });
    expect(await sealAll(f.h)).toBe(4);
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events)).toEqual({
      ok: true,
      checked: 6,
      head: headAt(positions[5]!),
      anchorsMatched: 0,
      anchors: [],
      sealedThrough: positions[5],
      unsealed: 0,
    });
  });

  it('walks the seals in pages of any size with progress, and names a break on a later page', async () => {
    const f = await fixture();
    const positions = await allPositions(f);
    for (const pageSize of [1, 2, 4, 6, 10]) {
      const progress: number[] = [];
      const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { pageSize, onProgress: (n) => progress.push(n) });
      expect(result, `page size ${pageSize}`).toEqual({
        ok: true,
        checked: 6,
        head: headAt(positions[5]!),
        anchorsMatched: 0,
        anchors: [],
        sealedThrough: positions[5],
        unsealed: 0,
      });
      // One report per page of seals.
      const pages = Array.from({ length: Math.ceil(6 / pageSize) }, (_, i) => Math.min(6, (i + 1) * pageSize));
      expect(progress, `page size ${pageSize}`).toEqual(pages);
    }
    await sql`UPDATE ${f.seals} SET global_hash = sha256('x'::bytea) WHERE position = ${positions[4]!.toString()}::bigint`.execute(f.h.database.db);
    for (const pageSize of [1, 2, 5]) {
      const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { pageSize });
      expect(result, `page size ${pageSize}`).toMatchObject({
        ok: false,
        checked: 4,
        firstBroken: { position: positions[4], reason: expect.stringContaining('seal altered') },
      });
    }
  });

  it('an event whose seal names another stream or revision is reported as moved, with the event as found', async () => {
    const f = await fixture();
    const position = await positionOf(f, f.bob, 1);
    await sql`UPDATE ${f.seals} SET revision = 7 WHERE position = ${position.toString()}::bigint`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.streams.ok).toBe(true);
    expect(result.firstBroken).toEqual({ chain: 'global', stream: f.bob, revision: 1, position, reason: `sealed as ${f.bob} revision 7: event moved` });
    await sql`UPDATE ${f.seals} SET revision = 1, stream = ${f.ada} WHERE position = ${position.toString()}::bigint`.execute(f.h.database.db);
    expect((await verifyChains(f.h.database, f.h.schemas.events)).firstBroken).toMatchObject({
      chain: 'global',
      stream: f.bob,
      reason: `sealed as ${f.ada} revision 1: event moved`,
    });
  });

  it('reports progress of both phases when verifying both chains', async () => {
    const f = await fixture();
    const progress: { phase: string; checked: number }[] = [];
    expect((await verifyChains(f.h.database, f.h.schemas.events, { onProgress: (p) => progress.push(p) })).ok).toBe(true);
    expect(progress.filter((p) => p.phase === 'streams').at(-1)).toEqual({ phase: 'streams', checked: 6 });
    expect(progress.filter((p) => p.phase === 'global').at(-1)).toEqual({ phase: 'global', checked: 6 });
    expect(progress.map((p) => p.phase)).toEqual(
      [...progress.filter((p) => p.phase === 'streams'), ...progress.filter((p) => p.phase === 'global')].map((p) => p.phase),
    );
  });

  it('an event hash changed in the seal only is reported as rewritten', async () => {
    const f = await fixture();
    const position = await positionOf(f, f.ada, 2);
    await sql`UPDATE ${f.seals} SET event_hash = sha256('x'::bytea) WHERE position = ${position.toString()}::bigint`.execute(f.h.database.db);
    const result = await verifyChains(f.h.database, f.h.schemas.events);
    expect(result.streams.ok).toBe(true);
    expect(result.firstBroken).toEqual({
      chain: 'global',
      stream: f.ada,
      revision: 2,
      position,
      reason: 'event hash differs from the sealed hash: event rewritten',
    });
  });

  it('a seal waiting for the lock of another process seals once it is released; one that does not wait seals nothing', async () => {
    const f = await fixture(false);
    await until(async () => (await verifyGlobalChain(f.h.database, f.h.schemas.events)).unsealed === 6, 'the fixture is visible');
    const client = new pg.Client({ connectionString: f.h.schemas.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`crm.event_chain_seals:${f.h.schemas.events}`]);
      expect(await sealChain(f.h.database, f.h.schemas.events)).toBe(0);
      let settled = false;
      const waiting = sealChain(f.h.database, f.h.schemas.events, { wait: true }).finally(() => {
        settled = true;
      });
      // The waiting seal shows up as an ungranted advisory lock.
      await until(async () => {
        const { rows } = await client.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
        return rows[0].n > 0;
      }, 'the seal waits for the lock');
      expect(settled).toBe(false);
      await client.query('COMMIT');
      // The lock holder's transaction was the oldest open one: once it ends, all six are final.
      let sealed = await waiting;
      for (let attempt = 0; sealed < 6 && attempt < 600; attempt++) {
        sealed += await sealChain(f.h.database, f.h.schemas.events, { wait: true });
        if (sealed < 6) await sleep(50);
      }
      expect(sealed).toBe(6);
    } finally {
      await client.end();
    }
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true, global: { checked: 6, unsealed: 0 } });
  });

  it("a waiting seal waits for the lock past the pool's lock_timeout: it sets its own", async () => {
    const f = await fixture(false);
    // The pool's lock_timeout (2 s by default) made short, so that a seal bound by it would give up at once.
    const impatient = connectPostgres(f.h.schemas.url, { max: 2, timeouts: { ...DEFAULT_POOL_TIMEOUTS, lockMs: 200 } });
    const client = new pg.Client({ connectionString: f.h.schemas.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`crm.event_chain_seals:${f.h.schemas.events}`]);
      let failure: unknown;
      let settled = false;
      const waiting = sealChain(impatient, f.h.schemas.events, { wait: true })
        .catch((error: unknown) => {
          failure = error;
          return -1;
        })
        .finally(() => {
          settled = true;
        });
      // Still waiting (by the server's clock) five times the pool's lock_timeout after it asked for the lock.
      await until(async () => {
        if (settled) return true;
        // Read outside the lock holder's transaction, whose view of pg_stat_activity stays as first read.
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND NOT l.granted AND clock_timestamp() - a.query_start > interval '1 second'`.execute(f.h.database.db);
        return rows[0]!.n > 0;
      }, 'the seal has waited a second');
      expect(failure).toBeUndefined();
      await client.query('COMMIT');
      expect(await waiting).toBeGreaterThanOrEqual(0);
    } finally {
      await client.end();
      await impatient.close();
    }
  });

  it('one seal seals every final event, more than one batch (5,000) of them', async () => {
    const h = await openAuditHarness('audit_chain_mut');
    open.push(h);
    const stream = `customer-${randomUUID()}`;
    const appended = await h.store.appendToStream(
      stream,
      Array.from({ length: 5_001 }, (_, i) => newEvent('CustomerTagged', { customerId: stream.slice('customer-'.length), tag: `t${i}` })),
    );
    // Final (below every transaction open in the cluster) before the seal starts.
    expect(await newestPosition(h.store)).toBe(appended.position);
    expect(await sealChain(h.database, h.schemas.events)).toBe(5_001);
    expect(await verifyGlobalChain(h.database, h.schemas.events)).toMatchObject({ ok: true, checked: 5_001, unsealed: 0 });
  }, 90_000);

  it('two seals at once in one process seal every event once', async () => {
    const f = await fixture(false);
    await until(async () => (await verifyGlobalChain(f.h.database, f.h.schemas.events)).unsealed === 6, 'the fixture is visible');
    let total = 0;
    for (let attempt = 0; total < 6 && attempt < 600; attempt++) {
      const counts = await Promise.all([sealChain(f.h.database, f.h.schemas.events), sealChain(f.h.database, f.h.schemas.events, { wait: true })]);
      total += counts[0] + counts[1];
      if (total < 6) await sleep(50);
    }
    expect(total).toBe(6);
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true, global: { checked: 6 } });
  });

  it('the periodic sealer seals new events by itself, on demand too, reports errors instead of throwing, and stops', async () => {
    const f = await fixture(false);
    const sealer = startChainSealer(f.h.database, f.h.schemas.events, { intervalMs: 20 });
    try {
      await until(async () => (await verifyGlobalChain(f.h.database, f.h.schemas.events)).unsealed === 0, 'the sealer sealed the fixture');
      await f.h.record(f.ada, 'CustomerTagged', { customerId: f.ada.slice('customer-'.length), tag: 'gold' });
      await until(async () => (await verifyGlobalChain(f.h.database, f.h.schemas.events)).checked === 7, 'the sealer sealed the new event');
      expect(await sealer.sealNow()).toBe(0);
    } finally {
      await sealer.stop();
    }
    // Stopped: a new event stays unsealed (ten intervals later, a running sealer would have sealed it).
    await f.h.record(f.ada, 'CustomerTagged', { customerId: f.ada.slice('customer-'.length), tag: 'late' });
    await sleep(200);
    expect((await verifyGlobalChain(f.h.database, f.h.schemas.events)).unsealed).toBe(1);
    // Without onError, a failing seal still resolves (with 0) instead of throwing.
    const silent = startChainSealer(f.h.database, `no_such_schema_${randomUUID().slice(0, 8)}`, { intervalMs: 60_000 });
    expect(await silent.sealNow()).toBe(0);
    await silent.stop();
    const errors: unknown[] = [];
    const broken = startChainSealer(f.h.database, `no_such_schema_${randomUUID().slice(0, 8)}`, { intervalMs: 60_000, onError: (e) => errors.push(e) });
    expect(await broken.sealNow()).toBe(0);
    await broken.stop();
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/schema|exist/i);
  });
});

describe('anchors: global hashes kept outside the database', () => {
  const forge = (f: Fixture, stream: string, revision: number) => forgeChains(f.h.database.db, f.h.schemas.events, stream, revision);

  it('catch both chains re-hashed after an event was altered, which the chains alone no longer can', async () => {
    const f = await fixture();
    const { head } = await verifyGlobalChain(f.h.database, f.h.schemas.events);
    const anchor = formatChainAnchor(head!);
    expect(parseChainAnchor(anchor)).toEqual(head);
    await forge(f, f.ada, 1);
    // The forgery is consistent: without an anchor both chains verify.
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true });
    const result = await verifyChains(f.h.database, f.h.schemas.events, { anchors: [parseChainAnchor(anchor)!] });
    expect(result).toMatchObject({
      ok: false,
      firstBroken: { chain: 'global', position: head!.position, reason: expect.stringContaining('differs from the anchor') },
    });
  });

  it('hold on an untouched chain, older anchors too; a forgery after the newest anchor is beyond them', async () => {
    const f = await fixture();
    const positions = await allPositions(f);
    const older = (await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!;
    await f.h.record(f.ada, 'PurchaseRecorded', { customerId: f.ada.slice('customer-'.length), orderId: 'o-3', amount: 5, currency: 'EUR' });
    expect(await sealAll(f.h)).toBe(1);
    const newer = (await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!;
    expect(newer.position).toBeGreaterThan(older.position);
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [older, newer] })).toMatchObject({ ok: true, anchorsMatched: 2, head: newer });
    // The newest event is after `older`: re-hashed, it is caught by `newer` only.
    await forge(f, f.ada, 3);
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [older] })).toMatchObject({ ok: true, anchorsMatched: 1 });
    expect((await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [older, newer] })).ok).toBe(false);
    // An anchor at a position the chain no longer has (seals truncated), or never had, is a break.
    const missing = { position: positions[5]! + 1n, globalHash: older.globalHash };
    expect(await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [missing] })).toMatchObject({
      ok: false,
      firstBroken: { position: missing.position, reason: expect.stringContaining('no seal at the anchor') },
    });
  });

  it('an anchor past the last seal says the store ends before it (an older backup restored), and advises on that, not on tampering', async () => {
    const f = await fixture();
    const { head } = await verifyGlobalChain(f.h.database, f.h.schemas.events);
    const later = { position: head!.position + (1n << 30n), globalHash: head!.globalHash };
    const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [head!, later] });
    expect(result).toMatchObject({
      ok: false,
      firstBroken: {
        position: later.position,
        endsAt: head!.position,
        reason: expect.stringContaining(`end at position ${head!.position}, before this anchor`),
      },
    });
    const advice = chainsNextSteps({ ok: false, firstBroken: { chain: 'global', ...result.firstBroken! } });
    expect(advice.join('\n')).toMatch(/restored from a backup taken before that anchor/);
    expect(advice.join('\n')).not.toMatch(/changed outside the CRM/);
  });

  it('an anchor whose seal was deleted while the events go on past it says the seals were deleted, not that the events are missing', async () => {
    // Found by deleting the trailing seals of a copy: the events were all there, yet the check said they
    // were missing and advised removing the anchors past the last seal, the ones that catch a re-hash.
    const f = await fixture();
    const older = (await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!;
    await f.h.record(f.ada, 'PurchaseRecorded', { customerId: f.ada.slice('customer-'.length), orderId: 'o-9', amount: 5, currency: 'EUR' });
    expect(await sealAll(f.h)).toBe(1);
    const newer = (await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!;
    await sql`DELETE FROM ${sql.id(f.h.schemas.events, 'event_chain_seals')} WHERE position > ${older.position.toString()}::bigint`.execute(f.h.database.db);
    const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [older, newer] });
    expect(result).toMatchObject({
      ok: false,
      unsealed: 1,
      firstBroken: {
        position: newer.position,
        reason: expect.stringContaining(
          `no seal at the anchor's position, though the events go on to position ${newer.position}: the seals after ${older.position} were deleted`,
        ),
      },
    });
    expect(result.firstBroken).not.toHaveProperty('endsAt');
    expect(chainsNextSteps({ ok: false, firstBroken: { chain: 'global', ...result.firstBroken! } }).join('\n')).not.toMatch(/remove the anchors/);
  });

  it('anchors from history lost to a restore that was written over since are said to be that, not a rewrite; still a failed check', async () => {
    // Found by a DR rehearsal: a store restored from an older backup, then written again, was called
    // "truncated or rewritten" with the advice to restore it from a backup once more.
    const f = await fixture();
    const kept = { ...(await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!, takenAt: new Date() };
    const carol = `customer-${randomUUID()}`;
    await f.h.record(carol, 'CustomerRegistered', customerRegistered(carol.slice('customer-'.length)));
    expect(await sealAll(f.h)).toBe(1);
    const lost = { ...(await verifyGlobalChain(f.h.database, f.h.schemas.events)).head!, takenAt: new Date() };
    // The backup taken before Carol, restored: her event, its seal and her stream are gone.
    const after = lost.position - 1n;
    await sql`DELETE FROM ${f.seals} WHERE position > ${after.toString()}::bigint`.execute(f.h.database.db);
    await sql`DELETE FROM ${f.events} WHERE position > ${after.toString()}::bigint`.execute(f.h.database.db);
    await sql`DELETE FROM ${f.streams} WHERE stream = ${carol}`.execute(f.h.database.db);
    await sleep(5);
    // Written since, and sealed.
    const dave = `customer-${randomUUID()}`;
    await f.h.record(dave, 'CustomerRegistered', customerRegistered(dave.slice('customer-'.length)));
    expect(await sealAll(f.h)).toBe(1);

    const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [kept, lost] });
    expect(result).toMatchObject({
      ok: false,
      anchorsMatched: 1,
      firstBroken: {
        position: lost.position,
        restoredAfter: kept.position,
        reason: expect.stringContaining(
          `the store was restored to an earlier point (or its events after position ${kept.position} were cut) and has been written since`,
        ),
      },
    });
    expect(result.anchors.map((a) => a.status)).toEqual(['matched', 'missing']);
    const advice = chainsNextSteps({ ok: false, firstBroken: { chain: 'global', ...result.firstBroken! } }).join('\n');
    expect(advice).toMatch(/keep the anchors after \d+ as the record of that history/);
    expect(advice).toMatch(/If no one restored it: the events after \d+ were deleted behind the CRM/);
    expect(advice).not.toMatch(/changed outside the CRM/);
    // Without the time it was taken nothing tells a restore from a rewrite.
    const bare = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [{ position: lost.position, globalHash: lost.globalHash }] });
    expect(bare.firstBroken).toMatchObject({ reason: expect.stringContaining('the chain was truncated or rewritten') });
    expect(bare.firstBroken).not.toHaveProperty('restoredAfter');
    // As the anchors file keeps it: the time after the anchor.
    expect(parseChainAnchor(formatChainAnchor(lost))).toEqual(lost);
  });

  it('an anchor whose event was deleted from history that was there when it was taken stays a rewrite, the chain re-sealed after it or not', async () => {
    const f = await fixture();
    const positions = await allPositions(f);
    // Taken now: every event after its position was recorded before it.
    const anchor = { ...(await sealedAt(f, positions[3]!)), takenAt: new Date() };
    await sql`DELETE FROM ${f.seals} WHERE position >= ${positions[3]!.toString()}::bigint`.execute(f.h.database.db);
    await sql`DELETE FROM ${f.events} WHERE position = ${positions[3]!.toString()}::bigint`.execute(f.h.database.db);
    expect(await sealAll(f.h)).toBe(2);
    const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [anchor] });
    expect(result).toMatchObject({ ok: false, firstBroken: { position: anchor.position, reason: expect.stringContaining('truncated or rewritten') } });
    expect(result.firstBroken).not.toHaveProperty('restoredAfter');
  });

  it('two anchors for one position that disagree are said to disagree, and the one that matches counts as matched', async () => {
    // Found over HTTP with a mistyped anchor beside the right one: the right one was listed as matched,
    // the count said 0, and the reason blamed a rewritten chain.
    const f = await fixture();
    const { head } = await verifyGlobalChain(f.h.database, f.h.schemas.events);
    const typo = { position: head!.position, globalHash: 'a'.repeat(64) };
    const result = await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [typo, head!] });
    expect(result).toMatchObject({
      ok: false,
      anchorsMatched: 1,
      firstBroken: { position: head!.position, reason: expect.stringContaining('the anchors given for this position disagree') },
    });
    expect(result.anchors.map((a) => a.status)).toEqual(['differs', 'matched']);
    // The typo alone is still a rewrite as far as anything can tell.
    expect((await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors: [typo] })).firstBroken?.reason).toContain('differs from the anchor');
  });

  it('each say what became of them, in the order given: matched, differs, missing, or not reached past a broken link', async () => {
    const f = await fixture();
    const positions = await allPositions(f);
    const early = await sealedAt(f, positions[1]!);
    const late = await sealedAt(f, positions[4]!);
    const beyond = { position: positions[5]! + 1n, globalHash: early.globalHash };
    const checks = async (anchors: { position: bigint; globalHash: string }[]) =>
      (await verifyGlobalChain(f.h.database, f.h.schemas.events, { anchors })).anchors.map((a) => [a.anchor, a.matched, a.status]);

    expect(await checks([late, early])).toEqual([
      [formatChainAnchor(late), true, 'matched'],
      [formatChainAnchor(early), true, 'matched'],
    ]);
    expect(await checks([early, beyond])).toEqual([
      [formatChainAnchor(early), true, 'matched'],
      [formatChainAnchor(beyond), false, 'missing'],
    ]);
    // Ada's first purchase (after `early`, before `late`) altered, both chains re-hashed from there.
    expect(await positionOf(f, f.ada, 1)).toBe(positions[2]);
    await forge(f, f.ada, 1);
    expect(await checks([late, early])).toEqual([
      [formatChainAnchor(late), false, 'differs'],
      [formatChainAnchor(early), true, 'matched'],
    ]);
    // A seal no longer fitting its event stops the walk there: an anchor after it is not reached, one before it still matched.
    await sql`UPDATE ${f.events} SET hash = ${Buffer.alloc(32, 7)} WHERE position = ${positions[3]!.toString()}::bigint`.execute(f.h.database.db);
    expect(await checks([late, early, beyond])).toEqual([
      [formatChainAnchor(late), false, 'not_reached'],
      [formatChainAnchor(early), true, 'matched'],
      [formatChainAnchor(beyond), false, 'not_reached'],
    ]);
  });

  it('are read as <position>:<64 hex digits>, optionally with the ISO 8601 time they were taken, and nothing else', () => {
    expect(parseChainAnchor(` 42:${'AB'.repeat(32)}\n`)).toEqual({ position: 42n, globalHash: 'ab'.repeat(32) });
    expect(parseChainAnchor(`42:${'a'.repeat(64)} 2026-12-08T00:00:25.558Z`)).toEqual({
      position: 42n,
      globalHash: 'a'.repeat(64),
      takenAt: new Date('2026-12-08T00:00:25.558Z'),
    });
    expect(parseChainAnchor(`${2n ** 63n - 1n}:${'a'.repeat(64)}`)?.position).toBe(2n ** 63n - 1n);
    for (const text of [
      '',
      '42',
      `42:${'a'.repeat(63)}`,
      `-1:${'a'.repeat(64)}`,
      `42:${'g'.repeat(64)}`,
      `${'9'.repeat(20)}:${'a'.repeat(64)}`,
      `${2n ** 63n}:${'a'.repeat(64)}`,
      `42:${'a'.repeat(64)} yesterday`,
      `42:${'a'.repeat(64)} 2026-13-45T99:00:00Z`,
    ]) {
      expect(parseChainAnchor(text), text).toBeUndefined();
    }
  });
});

describe('customer data keys against the forgets the events record', () => {
  it('names a forgotten customer whose key was put back, and a customer never forgotten whose key was deleted; the chains cannot see either', async () => {
    const f = await fixture();
    const [ada, bob] = [f.ada, f.bob].map((stream) => stream.slice('customer-'.length)) as [string, string];
    const keys = sql.id(f.h.schemas.events, 'customer_keys');
    const keyOf = async (id: string) =>
      (await sql<{ data_key: Buffer | null }>`SELECT data_key FROM ${keys} WHERE customer_id = ${id}`.execute(f.h.database.db)).rows[0]?.data_key ?? null;
    const adasKey = await keyOf(ada);
    expect(adasKey).not.toBeNull();
    await f.h.record(f.ada, 'CustomerForgotten', { customerId: ada });
    await f.h.personalData.forget(ada);
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: true, keys: { ok: true, unforgotten: [], missing: [] } });

    // The key put back from a backup: the forgotten customer's name reads in clear again.
    await sql`UPDATE ${keys} SET data_key = ${adasKey}, forgotten_at = NULL WHERE customer_id = ${ada}`.execute(f.h.database.db);
    const unforgotten = await verifyChains(f.h.database, f.h.schemas.events);
    expect(unforgotten).toMatchObject({
      ok: false,
      streams: { ok: true },
      global: { ok: true },
      keys: { ok: false, unforgotten: [ada], missing: [] },
      firstBroken: { chain: 'keys', stream: f.ada, reason: expect.stringContaining('forgotten (CustomerForgotten), yet a data key is stored for it again') },
    });
    expect(chainsNextSteps(unforgotten).join('\n')).toContain(`WHERE customer_id = '${ada}'`);

    // A live customer's key deleted: it read as forgotten, and the next command would have made a new key.
    await sql`UPDATE ${keys} SET data_key = NULL, forgotten_at = now() WHERE customer_id = ${ada}`.execute(f.h.database.db);
    await sql`DELETE FROM ${keys} WHERE customer_id = ${bob}`.execute(f.h.database.db);
    const missing = await verifyChains(f.h.database, f.h.schemas.events);
    expect(missing).toMatchObject({
      ok: false,
      keys: { ok: false, unforgotten: [], missing: [bob] },
      firstBroken: { chain: 'keys', stream: f.bob, reason: expect.stringContaining('never forgotten, yet no data key is stored for it') },
    });
    expect(chainsNextSteps(missing).join('\n')).toMatch(/Restore that customer_keys row from a backup before any command/);
  });

  it("names a live customer's key erased in place, and both kinds of damage at once with the advice for each", async () => {
    const f = await fixture();
    const [ada, bob] = [f.ada, f.bob].map((stream) => stream.slice('customer-'.length)) as [string, string];
    const keys = sql.id(f.h.schemas.events, 'customer_keys');
    const bobsKey = (await sql<{ data_key: Buffer }>`SELECT data_key FROM ${keys} WHERE customer_id = ${bob}`.execute(f.h.database.db)).rows[0]!.data_key;
    // Erased as a forget erases it, with no CustomerForgotten: the same harm as a deleted row.
    await sql`UPDATE ${keys} SET data_key = NULL, forgotten_at = now() WHERE customer_id = ${bob}`.execute(f.h.database.db);
    expect(await verifyChains(f.h.database, f.h.schemas.events)).toMatchObject({ ok: false, keys: { unforgotten: [], missing: [bob] } });
    // Ada forgotten, then given Bob's key back: both kinds at once, each named and advised on.
    await f.h.record(f.ada, 'CustomerForgotten', { customerId: ada });
    await f.h.personalData.forget(ada);
    await sql`UPDATE ${keys} SET data_key = ${bobsKey}, forgotten_at = NULL WHERE customer_id = ${ada}`.execute(f.h.database.db);
    const both = await verifyChains(f.h.database, f.h.schemas.events);
    expect(both).toMatchObject({ ok: false, keys: { unforgotten: [ada], missing: [bob] }, firstBroken: { chain: 'keys', stream: f.ada } });
    expect(both.firstBroken!.reason).toMatch(new RegExp(`put back outside the CRM.*; and customer ${bob} was never forgotten, yet no data key is stored`));
    const advice = chainsNextSteps(both).join('\n');
    expect(advice).toContain('Delete the key again');
    expect(advice).toContain('Restore that customer_keys row');
  });
});
