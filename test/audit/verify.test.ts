import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeReadModelVerification, readModelsNextSteps } from '../../audit/summary.ts';
import { ReadModelsOfAnotherVersion, verifyReadModels, type VerifyProgress } from '../../audit/verify.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import type { Projection } from '../../projections/projection.ts';
import { customerRegistered, dealOpened, openAuditHarness, projectAll, type AuditHarness } from './support.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';
import { storedEvents } from '../support/events.ts';

let h: AuditHarness;
// Analytics without `modelSchema`: a replay into the shadow schema then writes nowhere else.
const projections = [...readModelProjections(), createAnalyticsProjection()];
const ada = randomUUID();
const bob = randomUUID();
const dealId = randomUUID();

const projectLive = () => projectAll(h, projections);

beforeAll(async () => {
  h = await openAuditHarness('audit_verify');
  await migrateProjections(h.database.db, h.schemas.read, projections);
  for (const id of [ada, bob]) await h.record(`customer-${id}`, 'CustomerRegistered', customerRegistered(id, { email: `${id}@example.com` }));
  await h.record(`customer-${ada}`, 'PurchaseRecorded', { customerId: ada, orderId: 'o-1', amount: 120.5, currency: 'EUR' });
  await h.record(`deal-${dealId}`, 'DealOpened', dealOpened(dealId, ada));
  await h.record(`deal-${dealId}`, 'DealStageChanged', { dealId, from: 'lead', to: 'qualified' });
  await h.personalData.forget(bob);
  await h.record(`customer-${bob}`, 'CustomerForgotten', { customerId: bob });
  await projectLive();
});

afterAll(async () => {
  await h?.close();
});

describe('read-model verification', () => {
  it('passes on a clean system, comparing every table of every projection', async () => {
    const progress: VerifyProgress[] = [];
    const result = await verifyReadModels(h.deps, { projections, onProgress: (p) => progress.push(p) });
    expect(result.differences).toBe(0);
    expect(result.ok).toBe(true);
    expect(result.events).toBeGreaterThanOrEqual(6);
    expect(result.tables.map((t) => t.table).sort()).toEqual([...new Set(projections.flatMap((p) => p.tables))].sort());
    expect(result.tables.find((t) => t.table === 'customers')).toMatchObject({ equal: true, liveRows: 2, replayedRows: 2 });
    expect(progress.some((p) => p.phase === 'replay')).toBe(true);
    expect(progress.filter((p) => p.phase === 'compare').at(-1)).toMatchObject({ done: result.tables.length, total: result.tables.length });
    // The shadow schema is gone afterwards.
    const { rows } = await sql<{ n: string }>`SELECT count(*)::text AS n FROM pg_namespace WHERE nspname LIKE ${`${h.schemas.read}_verify_%`}`.execute(
      h.database.db,
    );
    expect(rows[0]!.n).toBe('0');
  });

  it('fails naming the exact row and column after a read-model row is altered with SQL', async () => {
    await sql`UPDATE ${sql.id(h.schemas.read, 'deals')} SET owner_id = 'mallory' WHERE deal_id = ${dealId}`.execute(h.database.db);
    try {
      const result = await verifyReadModels(h.deps, { projections });
      expect(result.ok).toBe(false);
      expect(result.differences).toBe(1);
      expect(result.firstDifference).toMatchObject({ table: 'deals', key: { deal_id: dealId }, kind: 'changed' });
      expect(result.firstDifference!.columns).toEqual([{ column: 'owner_id', live: 'mallory', replayed: 'sam@sales' }]);
      const summary = describeReadModelVerification(result);
      expect(summary[0]).toMatch(/^DIFFERENT: .*\(1 differing rows/);
      expect(summary).toContain(`      changed deal_id=${dealId} (owner_id: live "mallory", replayed "sam@sales")`);
      expect(result.tables.find((t) => t.table === 'customers')!.equal).toBe(true);
      // What to do next: check the chains, then rebuild from the events if they are intact.
      const steps = readModelsNextSteps(result).join('\n');
      expect(steps).toContain('`crm verify --chain`');
      expect(steps).toContain('`crm rebuild` rebuilds them from the events');
    } finally {
      await sql`UPDATE ${sql.id(h.schemas.read, 'deals')} SET owner_id = 'sam@sales' WHERE deal_id = ${dealId}`.execute(h.database.db);
    }
  });

  it("names a customer's purchase keys that disagree with the events (the sort keys GET /customers pages by)", async () => {
    const keys = sql.id(h.schemas.read, 'customer_purchase_keys');
    expect((await verifyReadModels(h.deps, { projections })).tables.find((t) => t.table === 'customer_purchase_keys')).toMatchObject({
      equal: true,
      liveRows: 2,
      replayedRows: 2,
    });
    await sql`UPDATE ${keys} SET revenue = 1 WHERE customer_id = ${ada}`.execute(h.database.db);
    try {
      const result = await verifyReadModels(h.deps, { projections });
      expect(result.ok).toBe(false);
      expect(result.differences).toBe(1);
      expect(result.firstDifference).toMatchObject({ table: 'customer_purchase_keys', key: { customer_id: ada }, kind: 'changed' });
      expect(result.firstDifference!.columns).toEqual([{ column: 'revenue', live: 1, replayed: 120.5 }]);
    } finally {
      await sql`UPDATE ${keys} SET revenue = 120.5 WHERE customer_id = ${ada}`.execute(h.database.db);
    }
  });

  it('names rows deleted from or added to the live tables', async () => {
    const { rows } = await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(h.schemas.read, 'customers')} WHERE customer_id = ${bob}`.execute(h.database.db);
    await sql`DELETE FROM ${sql.id(h.schemas.read, 'customers')} WHERE customer_id = ${bob}`.execute(h.database.db);
    try {
      const result = await verifyReadModels(h.deps, { projections });
      expect(result.ok).toBe(false);
      expect(result.firstDifference).toMatchObject({ table: 'customers', key: { customer_id: bob }, kind: 'missing_in_live' });
    } finally {
      const row = rows[0]!;
      const columns = Object.keys(row);
      await sql`INSERT INTO ${sql.id(h.schemas.read, 'customers')} (${sql.join(columns.map((c) => sql.id(c)))})
        SELECT * FROM jsonb_populate_record(NULL::${sql.id(h.schemas.read, 'customers')}, ${JSON.stringify(row)}::jsonb)`.execute(h.database.db);
    }
    expect((await verifyReadModels(h.deps, { projections })).ok).toBe(true);
  });

  it("fails at once, naming the projection, when a live checkpoint is past the store's last event (events cut from the tail, or the checkpoint edited)", async () => {
    const head = await h.store.headPosition();
    const table = sql.id(h.schemas.read, 'projection_checkpoints');
    const forged = head + (1n << 40n);
    await sql`UPDATE ${table} SET position = ${forged.toString()}::bigint WHERE name = 'customers'`.execute(h.database.db);
    try {
      const started = Date.now();
      // It used to wait 30 s for events past the head and end with "a transaction that wrote events is still open".
      const result = await verifyReadModels(h.deps, { projections });
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.ok).toBe(false);
      expect(result.checkpointsAhead).toEqual([{ projection: 'customers', position: forged, head }]);
      // The rest is still compared, each table as far as the store goes.
      expect(result.differences).toBe(0);
      expect(describeReadModelVerification(result).join('\n')).toContain(`customers: checkpoint at position ${forged}, past the store's last event (${head})`);
      expect(readModelsNextSteps(result).join('\n')).toContain('--anchors-file');
    } finally {
      await sql`UPDATE ${table} SET position = ${head.toString()}::bigint WHERE name = 'customers'`.execute(h.database.db);
    }
    expect((await verifyReadModels(h.deps, { projections })).ok).toBe(true);
  }, 60_000);

  it('compares nothing, and says why, while read models built by another version of their projection wait for their rebuild (no false alarm of tampering)', async () => {
    const customers = projections.find((p) => p.name === 'customers')!;
    await sql`UPDATE ${sql.id(h.schemas.read, 'projection_checkpoints')} SET version = version - 1 WHERE name = 'customers'`.execute(h.database.db);
    try {
      const refused = await verifyReadModels(h.deps, { projections }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(ReadModelsOfAnotherVersion);
      expect((refused as Error).message).toContain(`customers (version ${customers.version - 1}; this CRM's is ${customers.version})`);
    } finally {
      await sql`UPDATE ${sql.id(h.schemas.read, 'projection_checkpoints')} SET version = version + 1 WHERE name = 'customers'`.execute(h.database.db);
    }
    expect((await verifyReadModels(h.deps, { projections })).ok).toBe(true);
  });

  it('treats a projection that never ran live as empty rather than failing', async () => {
    const ghost: Projection = {
      name: 'ghost',
      version: 1,
      tables: ['ghost_rows'],
      migrate: async (db, schema) => {
        await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'ghost_rows')} (id text PRIMARY KEY)`.execute(db);
      },
      apply: async () => undefined,
    };
    const result = await verifyReadModels(h.deps, { projections: [...projections, ghost] });
    expect(result.ok).toBe(true);
    expect(result.tables.find((t) => t.table === 'ghost_rows')).toMatchObject({ equal: true, liveMissing: true, replayedRows: 0 });
  });

  it('holds no snapshot of the live read models while it replays (a long-open transaction stops PostgreSQL cleaning up every table)', async () => {
    for (let i = 0; i < 150; i++) await h.record(`customer-${bob}`, 'CustomerTagged', { customerId: bob, tag: `t${i}` });
    await projectLive();
    // A connection idle inside a transaction whose last statement read the live checkpoints (not the
    // shadow's, whose schema name starts with the live one's): the check's snapshot. Watched every few milliseconds beside the check.
    const snapshotHeld = async () => {
      const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE state LIKE 'idle in transaction%' AND query LIKE ${`%"${h.schemas.read}"."projection_checkpoints"%`}`.execute(h.database.db);
      return rows[0]!.n > 0;
    };
    let lastReplayed = 0;
    let lastReplayAt = 0;
    const heldAt: number[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        if (await snapshotHeld()) heldAt.push(performance.now());
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    try {
      const result = await verifyReadModels(h.deps, {
        projections,
        onProgress: (p) => {
          if (p.phase === 'replay' && p.done > lastReplayed) {
            lastReplayed = p.done;
            lastReplayAt = performance.now();
          }
        },
      });
      expect(result.ok).toBe(true);
      expect(lastReplayed).toBeGreaterThanOrEqual(150);
    } finally {
      watching = false;
      await watcher;
    }
    // The snapshot was seen (the comparison reads the live side in it), but only after the replay ended.
    expect(heldAt.length).toBeGreaterThan(0);
    expect(heldAt.filter((at) => at < lastReplayAt)).toEqual([]);
  });

  it('gives the replay a total from the start: the events it replays, summed over the positions the projections stand at', async () => {
    // The customers projection ahead of the others: the replay reads the feed from the start to each position.
    await h.record(`customer-${ada}`, 'CustomerTagged', { customerId: ada, tag: 'silver' });
    await projectAll(h, [projections.find((p) => p.name === 'customers')!]);
    try {
      const progress: VerifyProgress[] = [];
      const result = await verifyReadModels(h.deps, { projections, onProgress: (p) => progress.push(p) });
      expect(result.ok).toBe(true);
      const targets = [...new Set(Object.values(result.positions))];
      expect(targets).toHaveLength(2);
      const stored = await storedEvents(h.store);
      expect(result.events).toBe(targets.reduce((sum, target) => sum + stored.filter((e) => e.position <= target).length, 0));
      const replay = progress.filter((p) => p.phase === 'replay');
      expect(replay.length).toBeGreaterThan(0);
      for (const p of replay) expect(p.total).toBe(result.events);
      expect(replay.at(-1)!.done).toBe(result.events);
    } finally {
      await projectLive();
    }
  });

  it('compares live tables at their checkpoint while new events keep arriving', async () => {
    // Recorded but not yet projected: the replay stops at the live checkpoint, so nothing differs.
    await h.record(`customer-${ada}`, 'CustomerTagged', { customerId: ada, tag: 'gold' });
    const result = await verifyReadModels(h.deps, { projections });
    expect(result.ok).toBe(true);
    await projectLive();
    expect((await verifyReadModels(h.deps, { projections })).ok).toBe(true);
  });
});

describe('merges recorded on one side only', () => {
  it('fail the check, each named, with the advice to send the merge again, or for a cycle that nothing repairs it', async () => {
    // As two merges racing before 2026-12-07 could leave them: a duplicate's side alone, and two
    // customers each merged into the other. A replay reproduces both, so no row differs.
    const [duplicate, primary, x, y] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    for (const id of [duplicate, primary, x, y]) await h.record(`customer-${id}`, 'CustomerRegistered', customerRegistered(id, { email: `${id}@example.com` }));
    await h.record(`customer-${duplicate}`, 'CustomerMergedInto', { customerId: duplicate, primaryId: primary });
    await h.record(`customer-${x}`, 'CustomerMergedInto', { customerId: x, primaryId: y });
    await h.record(`customer-${y}`, 'CustomerMergedInto', { customerId: y, primaryId: x });
    await projectLive();
    const result = await verifyReadModels(h.deps, { projections });
    expect(result.differences).toBe(0);
    expect(result.ok).toBe(false);
    expect(result.unmatchedMerges).toEqual([
      expect.objectContaining({ duplicateId: duplicate, primaryId: primary, cycle: false }),
      expect.objectContaining({ duplicateId: x, primaryId: y, cycle: true }),
      expect.objectContaining({ duplicateId: y, primaryId: x, cycle: true }),
    ]);
    expect(describeReadModelVerification(result).join('\n')).toContain(`customer ${duplicate} is merged into ${primary}`);
    const advice = readModelsNextSteps(result).join('\n');
    expect(advice).toContain(`${duplicate} into ${primary}`);
    expect(advice).toContain('Send each merge again');
    expect(advice).toContain(`${x} and ${y}`);
    expect(advice).toContain('no command repairs this');
    // Not the advice for tampered read models: nothing there to rebuild.
    expect(advice).not.toContain('crm rebuild');

    // The half merge sent again (its primary's side recorded) leaves the cycle alone to report.
    await h.record(`customer-${primary}`, 'CustomerMerged', { customerId: primary, duplicateId: duplicate });
    await projectLive();
    const after = await verifyReadModels(h.deps, { projections });
    expect(after.unmatchedMerges?.map((m) => m.duplicateId)).toEqual([x, y]);
    expect(after.farMerges).toEqual([]);
  });

  it('fail the check for a half merge whose primary was merged since, and for a chain longer than MAX_MERGE_CHAIN, neither repairable', async () => {
    // A into B on A's side only, then B into C whole: B takes no command, so A's merge cannot be sent again.
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    // A chain of MAX_MERGE_CHAIN + 1 merges, made whole, as before chains were bounded: its first is one merge too far.
    const chain = Array.from({ length: MAX_MERGE_CHAIN + 2 }, () => randomUUID());
    for (const id of [a, b, c, ...chain]) await h.record(`customer-${id}`, 'CustomerRegistered', customerRegistered(id, { email: `${id}@example.com` }));
    await h.record(`customer-${a}`, 'CustomerMergedInto', { customerId: a, primaryId: b });
    await h.record(`customer-${c}`, 'CustomerMerged', { customerId: c, duplicateId: b });
    await h.record(`customer-${b}`, 'CustomerMergedInto', { customerId: b, primaryId: c });
    for (let i = 0; i + 1 < chain.length; i++) {
      await h.record(`customer-${chain[i + 1]}`, 'CustomerMerged', { customerId: chain[i + 1], duplicateId: chain[i] });
      await h.record(`customer-${chain[i]}`, 'CustomerMergedInto', { customerId: chain[i], primaryId: chain[i + 1] });
    }
    await projectLive();
    const result = await verifyReadModels(h.deps, { projections });
    expect(result.ok).toBe(false);
    expect(result.unmatchedMerges).toContainEqual(expect.objectContaining({ duplicateId: a, primaryId: b, cycle: false, primaryMerged: true }));
    expect(result.farMerges).toEqual([{ customerId: chain[0], mergesAway: MAX_MERGE_CHAIN + 1 }]);
    const advice = readModelsNextSteps(result).join('\n');
    expect(advice).toContain(`${a} into ${b}): the merge cannot be sent again`);
    expect(advice).toContain(`more than ${MAX_MERGE_CHAIN} merges from the end of their chain (${chain[0]})`);
    // The one half merge left cannot be sent again: no advice to do so.
    expect(advice).not.toContain('Send each merge again');
  });
});
