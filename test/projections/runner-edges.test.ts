import { sql } from 'kysely';
import { describe, expect, it, vi } from 'vitest';
import type { EventCodec } from '../../projections/apply-batch.ts';
import { CHECKPOINT_TABLE, migrateCheckpoints, setState } from '../../projections/checkpoints.ts';
import { ProjectionLeases } from '../../projections/leases.ts';
import { eventually, ScriptedStore, scriptedCodec, scriptedRunnerKit } from './scripted-runner.ts';

/**
 * Edges of the runner on the scripted feed (see scripted-runner.ts): where it resubscribes from, the
 * exact bound of its back-pressure, what it decodes, and transient failures while it stops.
 */

const kit = scriptedRunnerKit('runner_edges');
const { recording, appliedIds, idsOf, checkpoint, startRunner, freshSchema } = kit;

/** Runs customers and deals to the head of a 12-event store, then moves their checkpoints as given. */
/**
 * A feed that fails and recovers once, then stalls with two events waiting: the runner must resubscribe
 * after the failure, and its watchdog must restart the stalled feed and apply them.
 */
const failThenStall = async ({ runner, store }: Awaited<ReturnType<typeof startRunner>>) => {
  store.append(2);
  await runner.waitForPosition(2n);
  store.current.fail(new Error('connection lost'));
  await eventually(() => store.feeds.length === 2, 'the recovery');
  store.current.stalled = true;
  store.append(2);
  await eventually(() => store.feeds.length === 3, 'the watchdog');
  await runner.waitForPosition(4n);
};

const stoppedAt = async (checkpoints: Record<string, { position: number; state?: string }>) => {
  const schema = freshSchema();
  const store = new ScriptedStore();
  store.append(12);
  const projections = [recording('customers').projection, recording('deals').projection];
  const first = await startRunner(projections, { schema, store });
  await first.runner.waitForPosition(12n);
  await first.runner.stop();
  for (const [name, { position, state = 'running' }] of Object.entries(checkpoints)) {
    await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET position = ${position}, state = ${state} WHERE name = ${name}`.execute(kit.db());
  }
  return { schema, store, projections };
};

describe('where the runner follows the feed from', () => {
  it.each(['stopped', 'failed'])('the lowest checkpoint of the running projections, passing over a %s one', async (state) => {
    const { schema, store, projections } = await stoppedAt({ deals: { position: 3, state } });
    const { runner } = await startRunner(projections, { schema, store });
    expect(store.current.from).toBe(12n);
    store.append(1);
    await runner.waitForPosition(13n);
    expect((await checkpoint(schema, 'deals')).position).toBe(3n);
  });

  it("fails a projection whose checkpoint is past the store's last event (a store cut or restored from an older backup), and follows with the others", async () => {
    const { schema, store, projections } = await stoppedAt({ customers: { position: 40 } });
    const { runner, logged } = await startRunner(projections, { schema, store });
    const customers = await checkpoint(schema, 'customers');
    expect(customers.state).toBe('failed');
    expect(customers.lastError).toContain("past the event store's last event (12)");
    expect(customers.lastError).toContain('crm rebuild');
    expect(customers.failedPosition).toBe(40n);
    expect(logged("projection checkpoint past the event store's last event; not following the feed")[0]?.details).toMatchObject({
      projection: 'customers',
      position: '40',
      head: '12',
    });
    // Followed from 40 it would have skipped these without a word; the deals go on.
    store.append(1);
    await runner.waitForPosition(13n);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 13));
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 12));
    expect((await checkpoint(schema, 'customers')).state).toBe('failed');
  });

  it('notices while it runs that the store lost its last events (restored from an older backup), and fails the projections past its head', async () => {
    const schema = freshSchema();
    const store = new ScriptedStore();
    store.append(12);
    const { runner, logged } = await startRunner([recording('customers').projection, recording('deals').projection], { schema, store, watchdogMs: 20 });
    await runner.waitForPosition(12n);
    // The store as a backup taken after its 8th event holds it; it hands out positions 9, 10, ... again.
    store.events.splice(8);
    await eventually(async () => (await checkpoint(schema, 'customers')).state === 'failed', 'the watchdog to fail customers');
    await eventually(async () => (await checkpoint(schema, 'deals')).state === 'failed', 'the watchdog to fail deals');
    const customers = await checkpoint(schema, 'customers');
    expect(customers.lastError).toContain("past the event store's last event (8)");
    expect(customers.failedPosition).toBe(12n);
    expect(logged("projection checkpoint past the event store's last event; not following the feed").map((l) => l.details?.projection)).toEqual(
      expect.arrayContaining(['customers', 'deals']),
    );
    // New events at the positions the read models already hold other events at are not applied on top of them.
    store.append(3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 12));
    expect((await checkpoint(schema, 'customers')).position).toBe(12n);
  });

  it('the lowest checkpoint when both run', async () => {
    const { schema, store, projections } = await stoppedAt({ customers: { position: 9 }, deals: { position: 5 } });
    const { runner } = await startRunner(projections, { schema, store });
    expect(store.current.from).toBe(5n);
    await runner.waitForPosition(12n);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 12));
  });

  it('holding no lease: the furthest checkpoint, whichever projection has it', async () => {
    const { schema, store, projections } = await stoppedAt({ customers: { position: 12 }, deals: { position: 7 } });
    const leases = (workerId: string) =>
      new ProjectionLeases({ db: kit.db(), schema, workerId, projections: ['customers', 'deals'], leaseSeconds: 30, renewEveryMs: 3_600_000 });
    const other = leases('other');
    const none = leases('none');
    kit.stops.push(
      () => other.stop(),
      () => none.stop(),
    );
    await other.start();
    await none.start();
    expect(none.heldNames()).toEqual([]);
    await startRunner(projections, { schema, store, leases: none });
    expect(store.current.from).toBe(12n);
  });
});

describe('back-pressure bound', () => {
  it('pauses the feed once exactly two coalesced batches wait', async () => {
    const held = kit.gate();
    const slow = kit.heldOnFirstBatch('slow', held);
    const { runner, store } = await startRunner([slow.projection], {
      store: new ScriptedStore({ caughtUp: false }),
      batch: { maxEvents: 5, maxWaitMs: 5, maxCoalescedEvents: 10 },
    });
    store.append(3);
    await held.arrived;
    store.append(20);
    await eventually(() => runner.backlog() === 23, 'four full windows');
    expect(store.current.shouldPause!()).toBe(true);
    held.open();
    await runner.waitForPosition(23n);
  });
});

describe('decoding', () => {
  it('decodes only the events some projection still wants', async () => {
    const decoded: string[] = [];
    const codec: EventCodec = { ...scriptedCodec, decode: (r) => (decoded.push(r.id), scriptedCodec.decode(r)) };
    const deals = recording('deals', { filter: { streamPrefixes: ['deal-'] } });
    const { runner, store, schema } = await startRunner([deals.projection], { codec });
    store.append(9, (i) => (i % 3 === 0 ? { stream: `deal-d${i}` } : {}));
    await runner.waitForPosition(9n);
    expect(decoded).toEqual(['e3', 'e6', 'e9']);
    expect(await appliedIds(schema, 'deals')).toEqual(['e3', 'e6', 'e9']);
    store.append(3, (i) => (i === 12 ? { stream: 'deal-d12' } : {}));
    await runner.waitForPosition(12n);
    expect(decoded).toEqual(['e3', 'e6', 'e9', 'e12']);
  });
});

describe('transient failures', () => {
  it('are retried inside the batch: the feed goes on without resubscribing', async () => {
    const flaky = kit.failingFirst('flaky', 2, { message: 'deadlock detected', code: '40P01' });
    const { runner, store, schema, logged } = await startRunner([flaky.projection]);
    store.append(3);
    await runner.waitForPosition(3n);
    expect(await appliedIds(schema, 'flaky')).toEqual(idsOf(1, 3));
    // Two failed attempts, one outage: a line when it began, one when it ended.
    expect(logged('transient error applying a batch; retrying')).toHaveLength(1);
    expect(logged('batches applied again')).toEqual([{ message: 'batches applied again', details: expect.objectContaining({ failedAttempts: 2 }) }]);
    expect(logged('projection feed failed; resubscribing')).toEqual([]);
    expect(store.feeds).toHaveLength(1);
  });

  it('are given up when the runner stops: the stop returns, nothing is applied and the projection is not marked failed', async () => {
    const down = recording('down', {
      before: () => {
        throw Object.assign(new Error('the database system is shutting down'), { code: '57P03' });
      },
    });
    const { runner, store, schema, logged } = await startRunner([down.projection]);
    store.append(2);
    await eventually(() => logged('transient error applying a batch; retrying').length > 0, 'a first attempt');
    await runner.stop();
    expect(await appliedIds(schema, 'down')).toEqual([]);
    expect(await checkpoint(schema, 'down')).toMatchObject({ position: 0n, state: 'running' });
  });
});

describe('after stop', () => {
  it('a projection created after the first start starts from the beginning of the feed', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const store = new ScriptedStore();
    store.append(4);
    const a = recording('customers');
    const first = await startRunner([a.projection], { schema, store });
    await first.runner.waitForPosition(4n);
    await first.runner.stop();
    const b = recording('deals');
    const { runner } = await startRunner([a.projection, b.projection], { schema, store });
    expect(store.current.from).toBe(0n);
    await runner.waitForPosition(4n);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 4));
  });
});

describe('the watchdog, further', () => {
  it('notices a projection stopped from another process', async () => {
    const a = recording('customers');
    const b = recording('deals');
    const { runner, store, schema, logged } = await startRunner([a.projection, b.projection], { watchdogMs: 10 });
    store.append(2);
    await runner.waitForPosition(2n);
    await setState(kit.db(), schema, 'deals', 'stopped');
    await eventually(() => logged('projection watchdog restarts the feed').length > 0, 'the watchdog');
    expect(logged('projection watchdog restarts the feed')[0]!.details).toEqual({ reason: 'projection deals is stopped in the checkpoint table' });
  });

  it('leaves a stopped projection behind the head alone', async () => {
    const { schema, store, projections } = await stoppedAt({ deals: { position: 2, state: 'stopped' } });
    const { runner, logged } = await startRunner(projections, { schema, store, watchdogMs: 5, stallMs: 1 });
    store.append(2);
    await runner.waitForPosition(14n);
    let rounds = 0;
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    await eventually(() => rounds >= 10, 'watchdog rounds');
    expect(logged('projection watchdog restarts the feed').filter((l) => String(l.details!.reason).includes('deals'))).toEqual([]);
  });

  it('still restarts a stalled feed after the feed failed and recovered once', async () => {
    const p = recording('customers');
    const started = await startRunner([p.projection], { watchdogMs: 10, stallMs: 100 });
    await failThenStall(started);
    expect(started.logged('projection watchdog restarts the feed')).toHaveLength(1);
  });
});

describe('the watchdog, timings', () => {
  it('runs at the interval and restarts after the stall time it is given, not the defaults (1 s and 5 s)', async () => {
    const p = recording('customers');
    const { runner, store } = await startRunner([p.projection], { watchdogMs: 10, stallMs: 100 });
    let rounds = 0;
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    // Bounds far above the given timings and far below the defaults, so that load does not decide.
    await eventually(() => rounds >= 8, 'eight watchdog rounds', 3_000);
    store.append(2);
    await runner.waitForPosition(2n);
    store.current.stalled = true;
    store.append(1);
    await eventually(() => store.feeds.length === 2, 'the restart of the stalled feed', 4_000);
    await runner.waitForPosition(3n);
  });
});

describe('the watchdog and the wall clock', () => {
  it('restarts a stalled feed after the stall time though the wall clock was set back an hour meanwhile (NTP, a VM resumed)', async () => {
    const p = recording('customers');
    const { runner, store, logged } = await startRunner([p.projection], { watchdogMs: 10, stallMs: 100 });
    store.append(2);
    await runner.waitForPosition(2n);
    let rounds = 0;
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    store.current.stalled = true;
    store.append(1);
    // A round has seen the projection stand still behind the head: the stall is timed from there.
    await eventually(() => rounds >= 2, 'two watchdog rounds');
    // Only Date is faked (set back, and standing still there): timers and performance.now() run on.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 });
    try {
      await eventually(() => store.feeds.length === 2, 'the restart of the stalled feed', 4_000);
      await runner.waitForPosition(3n);
      expect(logged('projection watchdog restarts the feed')).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the watchdog and a slow projection', () => {
  it('leaves a projection alone that keeps moving, though it takes more than two stall times to get anywhere', async () => {
    let release: (() => void) | undefined;
    let done = false;
    const slow = recording('customers', { before: () => (done ? undefined : new Promise<void>((resolve) => (release = resolve))) });
    const { store } = await startRunner([slow.projection], { watchdogMs: 10, stallMs: 1_000 });
    let rounds = 0;
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    store.append(20);
    try {
      // Each small batch is let through after two watchdog rounds, and a few more events follow it, so the
      // projection stays behind the head: its position moves far more often than the stall time, but the whole
      // run lasts two and a half of them.
      const started = Date.now();
      while (Date.now() - started < 2_500) {
        await eventually(() => release !== undefined, 'the next batch');
        const from = rounds;
        await eventually(() => rounds >= from + 2, 'two watchdog rounds');
        const open = release!;
        release = undefined;
        open();
        store.append(5);
      }
      expect(store.feeds).toHaveLength(1);
    } finally {
      done = true;
      release?.();
    }
  });
});

describe('outcomes that stop a projection here', () => {
  it('a projection stopped in the table after the start is not waited for once a batch finds it so', async () => {
    const a = recording('customers');
    const b = recording('deals');
    const { runner, store, schema } = await startRunner([a.projection, b.projection]);
    store.append(2);
    await runner.waitForPosition(2n);
    await setState(kit.db(), schema, 'deals', 'stopped');
    store.append(2);
    await runner.waitForPosition(4n, 5_000);
    expect(runner.currentPositions().get('deals')).toBe(2n);
    expect(b.calls).toEqual([2]);
  });

  it('a lease lost during a batch is not a feed failure', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const held = kit.gate();
    const a = kit.heldOnFirstBatch('customers', held);
    const leases = await kit.startLeases(schema, ['customers']);
    const { runner, store, logged } = await startRunner([a.projection], { schema, leases });
    store.append(3);
    await held.arrived;
    await sql`UPDATE ${sql.id(schema, 'projection_leases')} SET owner_id = 'thief', fencing_token = fencing_token + 1`.execute(kit.db());
    held.open();
    await eventually(() => logged('projection lease lost; batch rolled back').length === 1, 'the fence');
    // The batch has ended once the stop returns.
    await runner.stop();
    expect(logged('projection feed failed; resubscribing')).toEqual([]);
    expect(store.feeds).toHaveLength(1);
  });

  it('names every projection whose version changed', async () => {
    const schema = freshSchema();
    await startRunner([recording('customers').projection, recording('deals').projection], { schema });
    const refused = await startRunner([recording('customers', { version: 2 }).projection, recording('deals', { version: 2 }).projection], {
      schema,
      start: false,
    });
    await expect(refused.runner.start()).rejects.toThrow('Projections customers, deals changed version or variant: rebuild them (crm rebuild)');
  });

  it('rebuilds a projection built for another variant (the analytics in another base currency), and records the variant of one built before variants were', async () => {
    const schema = freshSchema();
    await startRunner([recording('analytics').projection, recording('customers').projection], { schema });
    // Checkpoints made before variants were recorded: the read model is taken as built for the variant it runs with now.
    const first = await startRunner([recording('analytics', { variant: 'base currency EUR' }).projection, recording('customers').projection], { schema });
    await first.runner.stop();
    expect(await checkpoint(schema, 'analytics')).toMatchObject({ version: 1, variant: 'base currency EUR' });
    const rebuilt: string[][] = [];
    const again = await startRunner([recording('analytics', { variant: 'base currency USD' }).projection, recording('customers').projection], {
      schema,
      onVersionChange: async (names) => {
        rebuilt.push(names);
        await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET variant = 'base currency USD' WHERE name = 'analytics'`.execute(kit.db());
      },
    });
    await again.runner.stop();
    expect(rebuilt).toEqual([['analytics']]);
  });
});

/**
 * `log` is optional (a runner built without one logs nothing): each path that logs must go on the
 * same way without it. Progress is read from the feeds and tables, since nothing is logged.
 */
describe('without a log', () => {
  const quiet = { log: undefined };

  it('rebuilds a projection whose version changed and starts', async () => {
    const schema = freshSchema();
    await startRunner([recording('customers').projection], { schema });
    const rebuilt: string[][] = [];
    const { runner, store } = await startRunner([recording('customers', { version: 2 }).projection], {
      ...quiet,
      schema,
      onVersionChange: async (names) => {
        rebuilt.push(names);
        await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET version = 2 WHERE name = 'customers'`.execute(kit.db());
      },
    });
    expect(rebuilt).toEqual([['customers']]);
    store.append(2);
    await runner.waitForPosition(2n);
  });

  it('retries a transient failure inside the batch and stops a projection at its poison event, on the same feed', async () => {
    const flaky = kit.failingFirst('flaky', 1, { message: 'deadlock detected', code: '40P01' });
    const fragile = recording('fragile', {
      before: (events) => {
        if (events.some((e) => e.id === 'e2')) throw new Error('cannot apply e2');
      },
    });
    const { runner, store, schema } = await startRunner([flaky.projection, fragile.projection], quiet);
    store.append(3);
    await runner.waitForPosition(3n);
    expect(await appliedIds(schema, 'flaky')).toEqual(idsOf(1, 3));
    expect(await checkpoint(schema, 'fragile')).toMatchObject({ state: 'failed', failedEventId: 'e2' });
    expect(store.feeds).toHaveLength(1);
  });

  it('rolls back a batch whose lease was lost, on the same feed', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const held = kit.gate();
    const a = kit.heldOnFirstBatch('customers', held);
    const b = recording('deals');
    const leases = await kit.startLeases(schema, ['customers', 'deals']);
    const { runner, store } = await startRunner([a.projection, b.projection], { ...quiet, schema, leases });
    store.append(3);
    await held.arrived;
    await sql`UPDATE ${sql.id(schema, 'projection_leases')} SET owner_id = 'thief', fencing_token = fencing_token + 1 WHERE projection = 'customers'`.execute(
      kit.db(),
    );
    held.open();
    // Deals, still held, goes on past the batch that was rolled back for customers.
    store.append(2);
    await runner.waitForPosition(5n, 5_000, ['deals']);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 5));
    expect(await appliedIds(schema, 'customers')).toEqual([]);
    expect(store.feeds).toHaveLength(1);
  });

  it('a statistics refresh that fails leaves the stop to return', async () => {
    const p = recording('customers');
    const { runner, store, schema } = await startRunner([p.projection], { ...quiet, statistics: { afterEvents: 5, minChangedRows: 1 } });
    const lock = await kit.holdAnalyzeLock(schema, 'customers_applied');
    try {
      store.append(7);
      await runner.waitForPosition(7n);
      // The stop waits for the refresh, which fails at the pool's lock_timeout.
      await eventually(async () => {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE c.relname = 'customers_applied' AND l.mode = 'ShareUpdateExclusiveLock' AND NOT l.granted`.execute(kit.db());
        return rows[0]!.n > 0;
      }, 'the ANALYZE to wait for the lock');
      await runner.stop();
    } finally {
      await lock.release();
    }
  });

  it('resubscribes after the feed failed, and the watchdog restarts a stalled feed', async () => {
    const p = recording('customers');
    const started = await startRunner([p.projection], { ...quiet, watchdogMs: 10, stallMs: 100 });
    await failThenStall(started);
    expect(await appliedIds(started.schema, 'customers')).toEqual(idsOf(1, 4));
  });
});
