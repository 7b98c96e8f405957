import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealChain, verifyChains, verifyGlobalChain } from '../../audit/sql/chain.ts';
import { eventLog } from '../../audit/history.ts';
import { subjectAccessExport } from '../../audit/subject-access.ts';
import { connectPostgres } from '../../eventstore/postgres/database.ts';
import { customerRegistered, openAuditHarness, sleep, straddleDigitBoundary, type AuditHarness } from './support.ts';

/**
 * Positions are bigints that gain a digit each time the cluster's transaction counter passes
 * 10^k / 2^20. Everything that orders or compares them must do so as numbers: a text sort puts
 * "10000000000" before "9999999999". Here the log holds a registration and 20 purchases below a
 * digit boundary and 20 purchases above it (on PostgreSQL; the PGlite file crosses a real boundary).
 */
let h: AuditHarness;
let boundary: bigint;
const ada = randomUUID();
const EVENTS = 41;

beforeAll(async () => {
  h = await openAuditHarness('audit_positions');
  await h.record(`customer-${ada}`, 'CustomerRegistered', customerRegistered(ada));
  for (let i = 1; i <= 40; i++) {
    await h.record(`customer-${ada}`, 'PurchaseRecorded', { customerId: ada, orderId: `o-${i}`, amount: i, currency: 'EUR' });
  }
  boundary = await straddleDigitBoundary(h.database, h.schemas.events, 21);
}, 60_000);

afterAll(async () => {
  await h?.close();
});

const increasing = (positions: bigint[]) => positions.every((p, i) => i === 0 || p > positions[i - 1]!);

const pageThrough = async (direction: 'forwards' | 'backwards') => {
  const positions: bigint[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 100; page++) {
    const result = await eventLog(h.deps, { limit: 7, direction, personalData: 'reveal', ...(cursor ? { cursor } : {}) });
    positions.push(...result.items.map((e) => e.position));
    if (!result.nextCursor) break;
    cursor = result.nextCursor;
  }
  return positions;
};

/** Seals until nothing final is left (other test files may hold the cluster's horizon back a moment). */
const sealAll = async (): Promise<number> => {
  let total = 0;
  for (let attempt = 0; attempt < 600; attempt++) {
    total += await sealChain(h.database, h.schemas.events, { wait: true });
    if ((await verifyGlobalChain(h.database, h.schemas.events)).unsealed === 0) return total;
    await sleep(50);
  }
  return total;
};

describe('positions on both sides of a digit boundary (PostgreSQL)', () => {
  it('the fixture straddles the boundary', async () => {
    const all = await pageThrough('forwards');
    expect(all.filter((p) => p < boundary)).toHaveLength(21);
    expect(all.filter((p) => p >= boundary)).toHaveLength(20);
    expect(String(all[0]).length + 1).toBe(String(all[all.length - 1]).length);
  });

  it('the global log pages forwards and backwards through every event in position order', async () => {
    const forwards = await pageThrough('forwards');
    expect(forwards).toHaveLength(EVENTS);
    expect(increasing(forwards)).toBe(true);
    const backwards = await pageThrough('backwards');
    expect(backwards).toEqual([...forwards].reverse());
  });

  it('the subject access export lists the events in position order', async () => {
    const doc = await subjectAccessExport(h.deps, ada);
    const positions = doc!.events.map((e) => BigInt(e.position));
    expect(positions).toHaveLength(EVENTS);
    expect(increasing(positions)).toBe(true);
    expect(doc!.events[0]!.type).toBe('CustomerRegistered');
  });

  it('the sealer seals across the boundary in order, and the chains verify', async () => {
    expect(await sealAll()).toBe(EVENTS);
    expect(await sealChain(h.database, h.schemas.events)).toBe(0);
    expect(await verifyChains(h.database, h.schemas.events)).toMatchObject({ ok: true, global: { ok: true, checked: EVENTS, unsealed: 0 } });
  });

  it('concurrent requested seals from two processes seal each event once, and the chains verify', async () => {
    const other = connectPostgres(h.schemas.url, { max: 2 });
    try {
      for (let i = 41; i <= 60; i++) {
        await h.record(`customer-${ada}`, 'PurchaseRecorded', { customerId: ada, orderId: `o-${i}`, amount: i, currency: 'EUR' });
      }
      let sealed = 0;
      for (let attempt = 0; attempt < 600 && sealed < 20; attempt++) {
        const counts = await Promise.all([
          sealChain(h.database, h.schemas.events, { wait: true }),
          sealChain(other, h.schemas.events, { wait: true }),
          sealChain(h.database, h.schemas.events, { wait: true }),
          sealChain(other, h.schemas.events),
        ]);
        sealed += counts.reduce((a, b) => a + b, 0);
        if (sealed < 20) await sleep(50);
      }
      expect(sealed).toBe(20);
      expect(await verifyChains(h.database, h.schemas.events)).toMatchObject({ ok: true, global: { checked: EVENTS + 20, unsealed: 0 } });
    } finally {
      await other.close();
    }
  });
});
