import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyBatch, decodeBatch, matchesFilter } from '../../projections/apply-batch.ts';
import { migrateProjections, readCheckpoints } from '../../projections/checkpoints.ts';
import { LeaseLost, ProjectionLeases, readLeaseHolders } from '../../projections/leases.ts';
import type { Projection } from '../../projections/projection.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { compareSchemas, replayInto, tablesOf } from '../../projections/rebuild.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { waitForCheckpoints } from '../../projections/status.ts';
import { runScenario } from './scenario.ts';
import { createHarness, type Harness } from './support.ts';
import { storedEvents } from '../support/events.ts';

let h: Harness;
const projections = readModelProjections();
const names = projections.map((p) => p.name);
// Long enough that a renewal (every 200 ms) late by seconds on a loaded machine does not hand a lease over mid-test.
const LEASE_SECONDS = 6;

beforeAll(async () => {
  h = await createHarness('leases');
});

afterAll(async () => {
  await h?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Records, inside the batch transaction, which worker applied how many events: only committed work counts. */
const counted = (p: Projection, workerId: string, schema: string): Projection => ({
  ...p,
  apply: async (ctx, events) => {
    await p.apply(ctx, events);
    await sql`INSERT INTO ${sql.id(schema, 'applied_log')} (projection, worker, events) VALUES (${p.name}, ${workerId}, ${events.length})`.execute(ctx.trx);
  },
});

interface Worker {
  leases: ProjectionLeases;
  runner: ProjectionRunner;
  /** Clean shutdown: stop after the batch in flight, release the leases. */
  stop(): Promise<void>;
  /** A crash: nothing renews or releases the leases any more. */
  crash(): Promise<void>;
}

async function startWorker(schema: string, workerId: string): Promise<Worker> {
  // eslint-disable-next-line prefer-const -- assigned after the leases start, whose callback may run first
  let runner: ProjectionRunner | undefined;
  const leases = new ProjectionLeases({
    db: h.database.db,
    schema,
    workerId,
    projections: names,
    leaseSeconds: LEASE_SECONDS,
    renewEveryMs: 200,
    onChange: (change) => {
      if (change.acquired.length > 0) void runner?.restartSubscription();
    },
  });
  await leases.start();
  runner = new ProjectionRunner({
    db: h.database.db,
    store: h.store,
    schema,
    projections: projections.map((p) => counted(p, workerId, schema)),
    codec: h.codec,
    concurrent: true,
    batch: { maxEvents: 20, maxWaitMs: 5 },
    leases,
  });
  await runner.start();
  return {
    leases,
    runner,
    stop: async () => {
      await runner.stop();
      await leases.stop();
    },
    crash: async () => {
      await leases.stop({ release: false });
      await runner.stop();
    },
  };
}

async function prepareSchema(schema: string): Promise<void> {
  await migrateProjections(h.database.db, schema, projections);
  await sql`CREATE TABLE ${sql.id(schema, 'applied_log')} (projection text NOT NULL, worker text NOT NULL, events int NOT NULL)`.execute(h.database.db);
}

async function appliedBy(schema: string): Promise<Map<string, { workers: string[]; events: number }>> {
  const { rows } = await sql<{ projection: string; workers: string[]; events: string }>`
    SELECT projection, array_agg(DISTINCT worker ORDER BY worker) AS workers, sum(events) AS events
    FROM ${sql.id(schema, 'applied_log')} GROUP BY projection`.execute(h.database.db);
  return new Map(rows.map((r) => [r.projection, { workers: r.workers, events: Number(r.events) }]));
}

async function expectEqualToReplay(schema: string, label: string): Promise<void> {
  const reference = await replayInto({
    db: h.database.db,
    store: h.store,
    codec: h.codec,
    projections,
    schema: `${h.schemas.read}_${label}`,
    untilPosition: h.lastPosition(),
  });
  const comparison = await compareSchemas(h.database.db, reference.schema, schema, tablesOf(projections));
  expect(comparison.filter((t) => !t.equal)).toEqual([]);
}

describe('projection leases', () => {
  it('two workers split the projections, apply each exactly once, and one takes over when the other crashes', async () => {
    const schema = `${h.schemas.read}_split`;
    await prepareSchema(schema);
    const a = await startWorker(schema, 'worker-a');
    expect(a.leases.heldNames()).toEqual([...names].sort());
    const b = await startWorker(schema, 'worker-b');
    let bStopped = false;
    try {
      // a releases the excess once it sees b alive; b claims it: an even split, the odd one to either.
      const half = Math.floor(names.length / 2);
      await eventually(() => a.leases.heldNames().length + b.leases.heldNames().length === names.length && b.leases.heldNames().length >= half, 'the split');
      const held = [a.leases.heldNames(), b.leases.heldNames()].map((l) => l.length).sort();
      expect(held).toEqual([half, names.length - half]);
      expect(a.leases.heldNames().filter((n) => b.leases.owns(n))).toEqual([]);
      const holders = await readLeaseHolders(h.database.db, schema);
      for (const n of names) expect(holders.get(n)?.owner).toBe(a.leases.owns(n) ? 'worker-a' : 'worker-b');

      await runScenario(h);
      await waitForCheckpoints(h.database.db, schema, h.lastPosition(), { timeoutMs: 15_000 });
      await expectEqualToReplay(schema, 'ref1');
      // Exactly once: every event a projection wants was committed once, by its lease holder alone.
      const events = await storedEvents(h.store);
      const applied = await appliedBy(schema);
      for (const p of projections) {
        const wanted = events.filter((e) => matchesFilter(p.filter, e)).length;
        // A projection the scenario gives nothing to (users) has applied nothing.
        if (wanted === 0) expect(applied.get(p.name), p.name).toBeUndefined();
        else expect(applied.get(p.name), p.name).toEqual({ workers: [a.leases.owns(p.name) ? 'worker-a' : 'worker-b'], events: wanted });
      }

      // b dies holding its leases: they expire and a takes them over and catches up.
      const orphaned = b.leases.heldNames();
      await b.crash();
      bStopped = true;
      await runScenario(h, 'second-');
      await eventually(() => a.leases.ownsAll(), 'the takeover', LEASE_SECONDS * 1_000 + 15_000);
      await waitForCheckpoints(h.database.db, schema, h.lastPosition(), { timeoutMs: 15_000 });
      await expectEqualToReplay(schema, 'ref2');
      const after = await appliedBy(schema);
      const all = await storedEvents(h.store);
      for (const p of projections) {
        const wanted = all.filter((e) => matchesFilter(p.filter, e)).length;
        expect(after.get(p.name)?.events ?? 0, p.name).toBe(wanted);
        if (orphaned.includes(p.name) && wanted > 0) expect(after.get(p.name)!.workers).toEqual(['worker-a', 'worker-b']);
      }
    } finally {
      if (!bStopped) await b.stop();
      await a.stop();
    }
    // A clean stop releases everything.
    const holders = await readLeaseHolders(h.database.db, schema);
    for (const n of names) expect(holders.get(n)?.owner ?? null).toBeNull();
  });

  it('a lease taken over behind the feed is not applied across the gap; it catches up after resubscribing', async () => {
    const schema = `${h.schemas.read}_gap`;
    await prepareSchema(schema);
    // A long lease of its own: a renewal late under load would drop and retake other projections too.
    const leases = new ProjectionLeases({ db: h.database.db, schema, workerId: 'solo', projections: names, leaseSeconds: 30, renewEveryMs: 50 });
    await leases.start();
    // No resubscription on a lease change here: the runner alone must refuse the gap. (Nor by its
    // watchdog, which would resubscribe from the checkpoint once deals stood still for `stallMs`.)
    const runner = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema,
      projections,
      codec: h.codec,
      batch: { maxEvents: 20, maxWaitMs: 5 },
      leases,
      stallMs: 3_600_000,
    });
    await runner.start();
    try {
      await runScenario(h, 'gap1-');
      await runner.waitForPosition(h.lastPosition(), 15_000);
      const before = (await readCheckpoints(h.database.db, schema)).get('deals')!.position;
      // Another worker takes deals, applies nothing and dies. Its lease lasts until the runner has passed
      // over gap2 and is expired only then: a lease that ran out on a timer could be taken back before the
      // runner saw any gap2 event, and applying gap2 would then be right (no gap), proving nothing.
      await sql`UPDATE ${sql.id(schema, 'projection_leases')} SET owner_id = 'ghost', fencing_token = fencing_token + 1,
        expires_at = clock_timestamp() + interval '1 hour' WHERE projection = 'deals'`.execute(h.database.db);
      await eventually(() => !leases.owns('deals'), 'the loss of deals');
      await runScenario(h, 'gap2-'); // deals events the runner now passes over
      await runner.waitForPosition(
        h.lastPosition(),
        15_000,
        names.filter((n) => n !== 'deals'),
      );
      expect(leases.owns('deals')).toBe(false); // a live lease of another worker is not taken
      const { numAffectedRows } = await sql`UPDATE ${sql.id(schema, 'projection_leases')} SET expires_at = clock_timestamp()
        WHERE projection = 'deals' AND owner_id = 'ghost'`.execute(h.database.db);
      expect(numAffectedRows).toBe(1n); // the ghost still held it: nothing took it back early
      await eventually(() => leases.owns('deals'), 'deals taken back');
      await runScenario(h, 'gap3-');
      await runner.waitForPosition(
        h.lastPosition(),
        15_000,
        names.filter((n) => n !== 'deals'),
      );
      expect((await readCheckpoints(h.database.db, schema)).get('deals')!.position).toBe(before);
      await runner.restartSubscription();
      await runner.waitForPosition(h.lastPosition(), 15_000);
      await expectEqualToReplay(schema, 'refgap');
    } finally {
      await runner.stop();
      await leases.stop();
    }
  });

  it('a worker whose lease was taken while it was paused cannot commit its batch (fencing)', async () => {
    const schema = `${h.schemas.read}_fence`;
    await prepareSchema(schema);
    if (h.lastPosition() === 0n) await runScenario(h, 'fence-');
    const customers = projections.find((p) => p.name === 'customers')!;
    const leaseOf = (workerId: string) =>
      new ProjectionLeases({ db: h.database.db, schema, workerId, projections: ['customers'], leaseSeconds: 0.3, renewEveryMs: 60_000 });
    const paused = leaseOf('paused');
    await paused.start();
    expect(paused.owns('customers')).toBe(true);

    const events = await storedEvents(h.store);
    const end = events[events.length - 1]!.position;
    const items = await decodeBatch(h.codec, events, () => true);
    let resume!: () => void;
    const gate = new Promise<void>((r) => (resume = r));
    let applying!: () => void;
    const inBatch = new Promise<void>((r) => (applying = r));
    const stalled: Projection = {
      ...customers,
      apply: async (ctx, batch) => {
        await customers.apply(ctx, batch);
        applying();
        await gate; // the process pauses mid-batch, its rows written but not committed
      },
    };
    const lag = { eventsBehind: 0, newestRecordedAt: null };
    const pausedBatch = applyBatch(h.database.db, schema, stalled, items, end, lag, {
      fence: (trx) => paused.assertHeld(trx, 'customers'),
      shouldRetry: () => false,
    });
    const outcome = pausedBatch.then(
      () => 'committed',
      (error: unknown) => error,
    );
    await inBatch;

    await sleep(400); // its lease expires meanwhile
    const successor = leaseOf('successor');
    await successor.start();
    expect(successor.owns('customers')).toBe(true);
    resume();
    const result = await outcome;
    expect(result).toBeInstanceOf(LeaseLost);
    expect(paused.owns('customers')).toBe(false);
    // Nothing of the paused batch committed; the checkpoint did not move and the table is empty.
    expect((await readCheckpoints(h.database.db, schema)).get('customers')).toMatchObject({ position: 0n, state: 'running' });
    const { rows } = await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.id(schema, 'customers')}`.execute(h.database.db);
    expect(Number(rows[0]!.n)).toBe(0);

    // The successor commits the same batch under its own lease.
    await expect(
      applyBatch(h.database.db, schema, customers, items, end, lag, { fence: (trx) => successor.assertHeld(trx, 'customers') }),
    ).resolves.toMatchObject({ kind: 'applied', position: end });
    // And the paused worker, on its next attempt, is refused before anything commits.
    await expect(
      applyBatch(h.database.db, schema, customers, items, end + 1n, lag, { fence: (trx) => paused.assertHeld(trx, 'customers') }),
    ).rejects.toBeInstanceOf(LeaseLost);
    expect((await readCheckpoints(h.database.db, schema)).get('customers')!.position).toBe(end);
    await paused.stop();
    await successor.stop();
  });

  it('a worker that lost its lease cannot mark a projection failed on a poison event either', async () => {
    const schema = `${h.schemas.read}_poison`;
    await prepareSchema(schema);
    if (h.lastPosition() === 0n) await runScenario(h, 'poison-');
    const customers = projections.find((p) => p.name === 'customers')!;
    const poisoned: Projection = {
      ...customers,
      apply: async () => {
        throw new Error('cannot handle this event');
      },
    };
    // The paused worker's lease runs out at once; the successor's lasts (a loaded machine must not end it mid-test).
    const leaseOf = (workerId: string, leaseSeconds: number) =>
      new ProjectionLeases({ db: h.database.db, schema, workerId, projections: ['customers'], leaseSeconds, renewEveryMs: 60_000 });
    const paused = leaseOf('paused', 0.2);
    await paused.start();
    await sleep(300);
    const successor = leaseOf('successor', 60);
    await successor.start();
    expect(successor.owns('customers')).toBe(true);
    const events = (await storedEvents(h.store)).filter((e) => matchesFilter(customers.filter, e)).slice(0, 3);
    const items = await decodeBatch(h.codec, events, () => true);
    const lag = { eventsBehind: 0, newestRecordedAt: null };
    const end = events[events.length - 1]!.position;
    await expect(
      applyBatch(h.database.db, schema, poisoned, items, end, lag, { fence: (trx) => paused.assertHeld(trx, 'customers'), shouldRetry: () => false }),
    ).rejects.toBeInstanceOf(LeaseLost);
    expect((await readCheckpoints(h.database.db, schema)).get('customers')).toMatchObject({ state: 'running', position: 0n });
    // The holder does record it.
    await expect(
      applyBatch(h.database.db, schema, poisoned, items, end, lag, { fence: (trx) => successor.assertHeld(trx, 'customers') }),
    ).resolves.toMatchObject({ kind: 'poison' });
    expect((await readCheckpoints(h.database.db, schema)).get('customers')).toMatchObject({ state: 'failed', failedEventId: events[0]!.id });
    await paused.stop();
    await successor.stop();
  });

  it('a worker holding no lease follows the feed from the furthest checkpoint, not from the start of history', async () => {
    const schema = `${h.schemas.read}_idle`;
    await prepareSchema(schema);
    if (h.lastPosition() === 0n) await runScenario(h, 'idle-');
    const head = h.lastPosition();
    await sql`UPDATE ${sql.id(schema, 'projection_checkpoints')} SET position = ${head.toString()}::bigint`.execute(h.database.db);
    const holder = new ProjectionLeases({ db: h.database.db, schema, workerId: 'holder', projections: names, leaseSeconds: 5, renewEveryMs: 60_000 });
    await holder.start();
    const idle = new ProjectionLeases({ db: h.database.db, schema, workerId: 'idle', projections: names, leaseSeconds: 5, renewEveryMs: 60_000 });
    await idle.start();
    expect(idle.heldNames()).toEqual([]);
    const from: bigint[] = [];
    const store = new Proxy(h.store, {
      get: (target, key) => {
        if (key === 'subscribeToAll') return (options: { fromPosition?: bigint }) => (from.push(options.fromPosition ?? 0n), target.subscribeToAll(options));
        const value = Reflect.get(target, key);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const runner = new ProjectionRunner({ db: h.database.db, store, schema, projections, codec: h.codec, leases: idle });
    await runner.start();
    try {
      expect(from).toEqual([head]);
    } finally {
      await runner.stop();
      await idle.stop();
      await holder.stop();
    }
  });

  it('forgets heartbeats of workers gone for over an hour, and does not count expired ones as live', async () => {
    const schema = `${h.schemas.read}_beats`;
    await prepareSchema(schema);
    const worker = new ProjectionLeases({ db: h.database.db, schema, workerId: 'alive', projections: names, leaseSeconds: 5, renewEveryMs: 60_000 });
    await worker.start();
    await sql`INSERT INTO ${sql.id(schema, 'projection_workers')} (worker_id, seen_at, expires_at) VALUES
      ('long-gone', now() - interval '3 hours', now() - interval '2 hours'),
      ('just-gone', now() - interval '2 minutes', now() - interval '1 minute')`.execute(h.database.db);
    await worker.tick();
    const { rows } = await sql<{ worker_id: string }>`SELECT worker_id FROM ${sql.id(schema, 'projection_workers')} ORDER BY worker_id`.execute(h.database.db);
    expect(rows.map((r) => r.worker_id)).toEqual(['alive', 'just-gone']);
    // Neither counts: the live worker keeps every projection.
    expect(worker.heldNames()).toEqual([...names].sort());
    await worker.stop();
  });
});
