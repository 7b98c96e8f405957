import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_TABLE, migrateCheckpoints } from '../../projections/checkpoints.ts';
import { LEASE_TABLE } from '../../projections/leases.ts';
import { eventually, ScriptedStore, scriptedRunnerKit } from './scripted-runner.ts';

/**
 * The runner with `sharedBatches` (projections/runner.ts, `applyTogether` in projections/apply-batch.ts):
 * one transaction per batch for every projection, each checkpoint still moved with its own rows.
 */

const kit = scriptedRunnerKit('shared_batches');
const { freshSchema, gate, recording, heldOnFirstBatch, failingFirst, appliedIds, idsOf, checkpoint, startRunner } = kit;

/** The transaction ids that wrote a table's rows (xmin), distinct. */
const writers = async (schema: string, table: string, where = sql`true`): Promise<string[]> => {
  const { rows } = await sql<{ x: string }>`SELECT DISTINCT xmin::text AS x FROM ${sql.id(schema, table)} WHERE ${where}`.execute(kit.db());
  return rows.map((r) => r.x).sort();
};

describe.each([{ concurrent: false }, { concurrent: true }])('one transaction per batch (concurrent: $concurrent)', ({ concurrent }) => {
  it('commits every projection’s rows and checkpoint, an idle one’s too, in the same transaction', async () => {
    const all = recording('everything');
    const deals = recording('deals', { filter: { streamPrefixes: ['deal-'] } });
    const none = recording('campaigns', { filter: { streamPrefixes: ['campaign-'] } });
    const { runner, store, schema } = await startRunner([all.projection, deals.projection, none.projection], { concurrent, sharedBatches: true });
    store.append(6, (i) => (i % 2 === 0 ? { stream: `deal-d${i}` } : {}));
    await runner.waitForPosition(6n);
    expect(await appliedIds(schema, 'everything')).toEqual(idsOf(1, 6));
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 6, (i) => i % 2 === 0));
    expect(none.calls).toEqual([]);
    for (const name of ['everything', 'deals', 'campaigns']) expect((await checkpoint(schema, name)).position).toBe(6n);
    // The last batch's writer wrote both projections' rows and all three checkpoints.
    const last = await writers(schema, 'everything_applied', sql`position = 6`);
    expect(last).toHaveLength(1);
    expect(await writers(schema, 'deals_applied', sql`position = 6`)).toEqual(last);
    expect(await writers(schema, CHECKPOINT_TABLE)).toEqual(last);

    store.append(2, () => ({ stream: 'deal-d9' }));
    await runner.waitForPosition(8n);
    expect(await appliedIds(schema, 'deals')).toEqual([...idsOf(1, 6, (i) => i % 2 === 0), 'e7', 'e8']);
    // Applied once each: a batch is never applied twice.
    expect(all.calls.reduce((a, b) => a + b, 0)).toBe(8);
  });

  it('a poison event stops only its projection: the batch is applied again one projection at a time', async () => {
    const fragile = recording('fragile', {
      before: (events) => {
        if (events.some((e) => e.id === 'e7')) throw new Error('cannot apply e7');
      },
    });
    const steady = recording('steady');
    const { runner, store, schema, logged } = await startRunner([fragile.projection, steady.projection], { concurrent, sharedBatches: true });
    store.append(10);
    await runner.waitForPosition(10n);
    expect(await appliedIds(schema, 'steady')).toEqual(idsOf(1, 10));
    expect(await appliedIds(schema, 'fragile')).toEqual(idsOf(1, 6));
    expect(await checkpoint(schema, 'fragile')).toMatchObject({ state: 'failed', position: 6n, failedEventId: 'e7', failedPosition: 7n });
    expect(logged('projection stopped on a poison event').map((l) => l.details?.projection)).toEqual(['fragile']);
    // Later batches go on together without it.
    store.append(2);
    await runner.waitForPosition(12n);
    expect(await appliedIds(schema, 'steady')).toEqual(idsOf(1, 12));
    expect((await checkpoint(schema, 'fragile')).position).toBe(6n);
  });

  it('retries a transient failure together, applying the batch once', async () => {
    const flaky = failingFirst('flaky', 1, { message: 'could not serialize access', code: '40001' });
    const steady = recording('steady');
    const { runner, store, schema, logged } = await startRunner([steady.projection, flaky.projection], { concurrent, sharedBatches: true });
    store.append(4);
    await runner.waitForPosition(4n);
    expect(await appliedIds(schema, 'flaky')).toEqual(idsOf(1, 4));
    expect(await appliedIds(schema, 'steady')).toEqual(idsOf(1, 4));
    expect(logged('transient error applying a batch; retrying')).toEqual([
      { message: 'transient error applying a batch; retrying', details: { projection: 'flaky', error: 'Error: could not serialize access' } },
    ]);
    expect(logged('projection feed failed; resubscribing')).toEqual([]);
  });
});

describe('one transaction per batch, live only', () => {
  it('a catch-up batch coalesced past maxEvents keeps a transaction per projection', async () => {
    const store = new ScriptedStore();
    store.append(33);
    // The first window (10 events, live-sized) is held until the rest has been delivered behind it,
    // so the next batch coalesces two windows (20 events > maxEvents).
    const held = gate();
    const first = heldOnFirstBatch('first', held);
    const second = recording('second');
    const { runner, schema } = await startRunner([first.projection, second.projection], {
      store,
      concurrent: true,
      sharedBatches: true,
      batch: { maxEvents: 10, maxWaitMs: 250, maxCoalescedEvents: 20 },
    });
    await held.arrived;
    await eventually(() => runner.backlog() >= 33, 'the catch-up delivered behind the first batch');
    held.open();
    await runner.waitForPosition(33n);
    expect(first.calls).toEqual([10, 20, 3]);
    // Live-sized batches (events 1-10, 31-33): one writer for both projections.
    for (const position of [10, 33]) {
      const where = sql`position = ${position}`;
      expect(await writers(schema, 'second_applied', where)).toEqual(await writers(schema, 'first_applied', where));
    }
    // The coalesced one (events 11-30): one transaction each.
    const coalesced = sql`position = 20`;
    expect(await writers(schema, 'second_applied', coalesced)).not.toEqual(await writers(schema, 'first_applied', coalesced));
  });
});

describe('one transaction per batch, with leases', () => {
  it('a projection whose lease was taken during the batch is rolled back and not applied again; the others commit', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const held = gate();
    const taken = heldOnFirstBatch('customers', held);
    const kept = recording('deals');
    const leases = await kit.startLeases(schema, ['customers', 'deals']);
    const { runner, store, logged } = await startRunner([taken.projection, kept.projection], { schema, leases, sharedBatches: true });
    store.append(3);
    await held.arrived;
    await sql`UPDATE ${sql.id(schema, LEASE_TABLE)} SET owner_id = 'thief', fencing_token = fencing_token + 1 WHERE projection = 'customers'`.execute(kit.db());
    held.open();
    await runner.waitForPosition(3n, 5_000, ['deals']);
    await eventually(() => logged('projection lease lost; batch rolled back').length === 1, 'the fence');
    expect(logged('projection lease lost; batch rolled back')[0]!.details).toEqual({ projection: 'customers' });
    expect(await appliedIds(schema, 'customers')).toEqual([]);
    expect((await checkpoint(schema, 'customers')).position).toBe(0n);
    expect(taken.calls).toEqual([3]);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 3));
    expect((await checkpoint(schema, 'deals')).position).toBe(3n);
    expect(leases.owns('customers')).toBe(false);
    expect(runner.currentPositions().get('customers')).toBe(0n);
  });
});
