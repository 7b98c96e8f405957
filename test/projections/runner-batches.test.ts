import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_TABLE, clearFailure, markFailed, migrateCheckpoints } from '../../projections/checkpoints.ts';
import { ReadModelTimeout } from '../../projections/errors.ts';
import { LEASE_TABLE, ProjectionLeases } from '../../projections/leases.ts';
import { eventually, ScriptedStore, scriptedRunnerKit } from './scripted-runner.ts';

/**
 * The runner (projections/runner.ts) on the scripted feed of scripted-runner.ts, over real
 * checkpoint and read-model tables.
 */

const kit = scriptedRunnerKit('runner_batches');
const { freshSchema, gate, recording, heldOnFirstBatch, appliedIds, idsOf, checkpoint, startRunner, stops } = kit;

describe.each([{ concurrent: false }, { concurrent: true }])('following the feed (concurrent: $concurrent)', ({ concurrent }) => {
  it('catches up in batches of at most the coalescing limit, then follows live appends; skipped projections only move their checkpoint', async () => {
    const store = new ScriptedStore();
    const dealEvery = (i: number) => (i % 4 === 0 ? { stream: `deal-d${i}`, type: 'DealOpened' } : {});
    store.append(33, dealEvery, 60_000);
    // The first batch is held until the whole catch-up has been delivered, so that the windows queue
    // behind it however fast or slow the machine is; windows close when full (10) rather than on a
    // 5 ms timer that a busy machine can outlast between two pages.
    const held = gate();
    const all = heldOnFirstBatch('everything', held);
    const deals = recording('deals', { filter: { streamPrefixes: ['deal-'] } });
    const none = recording('campaigns', { filter: { streamPrefixes: ['campaign-'] } });
    const { runner, schema } = await startRunner([all.projection, deals.projection, none.projection], {
      store,
      concurrent,
      batch: { maxEvents: 10, maxWaitMs: 250, maxCoalescedEvents: 15 },
    });
    expect(store.feeds.map((f) => f.from)).toEqual([0n]);
    await held.arrived;
    await eventually(() => runner.backlog() >= 33, 'the catch-up delivered behind the first batch');
    held.open();
    await runner.waitForPosition(33n);
    expect(await appliedIds(schema, 'everything')).toEqual(idsOf(1, 33));
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 33, (i) => i % 4 === 0));
    expect(await appliedIds(schema, 'campaigns')).toEqual([]);
    expect(none.calls).toEqual([]);
    // The windows that queued behind the held batch (10, 10, 3) were coalesced: a batch takes
    // windows while it holds fewer than the limit (15), so 10 + 10, then the last 3.
    expect(all.calls).toEqual([10, 20, 3]);
    for (const name of ['everything', 'deals', 'campaigns']) {
      const cp = await checkpoint(schema, name);
      expect(cp.position).toBe(33n);
      // The events were recorded a minute ago: the lag says so.
      expect(cp.secondsBehind).toBeGreaterThanOrEqual(59);
      expect(cp.secondsBehind).toBeLessThan(600);
    }

    store.append(4, dealEvery);
    await runner.waitForPosition(37n);
    expect(await appliedIds(schema, 'everything')).toEqual(idsOf(1, 37));
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 37, (i) => i % 4 === 0));
    expect(runner.currentPositions()).toEqual(
      new Map([
        ['everything', 37n],
        ['deals', 37n],
        ['campaigns', 37n],
      ]),
    );
    expect((await checkpoint(schema, 'campaigns')).position).toBe(37n);
    expect((await checkpoint(schema, 'everything')).secondsBehind).toBeLessThan(30);
    expect(runner.backlog()).toBe(0);
    // One subscription all along.
    expect(store.feeds).toHaveLength(1);
    expect(runner.projections.map((p) => p.name)).toEqual(['everything', 'deals', 'campaigns']);
  });

  it('stops a projection at its poison event, goes on with the others, and resumes it once fixed', async () => {
    let broken = true;
    const fragile = recording('fragile', {
      before: (events) => {
        if (broken && events.some((e) => e.id === 'e7')) throw new Error('cannot apply e7');
      },
    });
    const steady = recording('steady');
    const { runner, store, schema, logged } = await startRunner([fragile.projection, steady.projection], { concurrent });
    store.append(10);
    // The failed projection is not waited for.
    await runner.waitForPosition(10n);
    await runner.waitForPosition(10n, 1_000, ['fragile']);
    expect(await appliedIds(schema, 'steady')).toEqual(idsOf(1, 10));
    expect(await appliedIds(schema, 'fragile')).toEqual(idsOf(1, 6));
    const failed = await checkpoint(schema, 'fragile');
    expect(failed).toMatchObject({ state: 'failed', position: 6n, failedEventId: 'e7', failedPosition: 7n, failedStream: 'customer-c7' });
    expect(logged('projection stopped on a poison event')).toEqual([
      {
        message: 'projection stopped on a poison event',
        details: {
          projection: 'fragile',
          eventId: 'e7',
          position: '7',
          error: 'Error: cannot apply e7',
          // The next step, with the projection and position to type.
          next: 'after a fix, crm projections retry fragile; or leave the event out: crm projections skip fragile --position 7 --reason "..."',
        },
      },
    ]);
    expect(runner.currentPositions().get('fragile')).toBe(6n);

    const status = await runner.status();
    expect(status.map((s) => [s.name, s.state, s.position, s.headPosition])).toEqual([
      ['fragile', 'failed', 6n, 10n],
      ['steady', 'running', 10n, 10n],
    ]);

    store.append(3);
    await runner.waitForPosition(13n);
    expect(await appliedIds(schema, 'fragile')).toEqual(idsOf(1, 6));
    expect((await checkpoint(schema, 'fragile')).position).toBe(6n);

    broken = false;
    await runner.resume('fragile');
    await runner.waitForPosition(13n, 5_000, ['fragile']);
    expect(await appliedIds(schema, 'fragile')).toEqual(idsOf(1, 13));
    expect(await appliedIds(schema, 'steady')).toEqual(idsOf(1, 13));
    expect((await checkpoint(schema, 'fragile')).state).toBe('running');
    // Resubscribed from the failed projection's checkpoint.
    expect(store.current.from).toBe(6n);
  });
});

describe('waiting for a position', () => {
  it('times out with the projections still behind, and names only those asked about', async () => {
    const held = gate();
    const slow = recording('slow', { before: () => held.wait() });
    const quick = recording('quick');
    const { runner, store } = await startRunner([slow.projection, quick.projection], { concurrent: true });
    store.append(2);
    await held.arrived;
    await eventually(() => runner.currentPositions().get('quick') === 2n, 'the quick projection');
    const timeout = await runner.waitForPosition(2n, 30).catch((error: unknown) => error);
    expect(timeout).toBeInstanceOf(ReadModelTimeout);
    expect(timeout).toMatchObject({ position: 2n, timeoutMs: 30, behind: [{ name: 'slow', position: 0n }] });
    const named = await runner.waitForPosition(2n, 30, ['slow', 'quick']).catch((error: unknown) => error);
    expect(named).toMatchObject({ behind: [{ name: 'slow', position: 0n }] });
    // A position already reached resolves at once.
    await runner.waitForPosition(0n, 1);
    const waiting = runner.waitForPosition(2n, 5_000);
    held.open();
    await waiting;
    await runner.waitForPosition(2n, 1);
  });
});

describe('back-pressure', () => {
  it('live: holds the feed while a batch is applied and a small window waits, then applies what queued in one batch', async () => {
    const held = gate();
    const slow = heldOnFirstBatch('slow', held);
    const { runner, store, schema } = await startRunner([slow.projection], {
      store: new ScriptedStore({ caughtUp: false }),
      batch: { maxEvents: 10, maxWaitMs: 5 },
    });
    store.append(3);
    await held.arrived;
    expect(runner.backlog()).toBe(3);
    const feed = store.current;
    expect(feed.shouldPause!()).toBe(false);
    store.append(2);
    await eventually(() => runner.backlog() === 5, 'the second window to wait');
    expect(feed.shouldPause!()).toBe(true);
    store.append(4);
    await eventually(() => feed.pauses >= 3, 'the feed to be held');
    expect(runner.backlog()).toBe(5);
    held.open();
    await runner.waitForPosition(9n);
    expect(await appliedIds(schema, 'slow')).toEqual(idsOf(1, 9));
    expect(slow.calls[0]).toBe(3);
    expect(feed.shouldPause!()).toBe(false);
  });

  it('catching up: keeps reading ahead while full windows wait, up to two coalesced batches, and never applies more than one at once', async () => {
    const held = gate();
    const slow = heldOnFirstBatch('slow', held);
    const { runner, store, schema } = await startRunner([slow.projection], {
      store: new ScriptedStore({ caughtUp: false }),
      batch: { maxEvents: 5, maxWaitMs: 5, maxCoalescedEvents: 10 },
    });
    store.append(3);
    await held.arrived;
    const feed = store.current;
    store.append(12);
    await eventually(() => runner.backlog() === 15, 'the catch-up windows');
    // Full windows wait: not paused below two coalesced batches.
    expect(feed.shouldPause!()).toBe(false);
    store.append(20);
    await eventually(() => feed.pauses >= 3, 'the feed to be held');
    const waiting = runner.backlog() - 3;
    expect(waiting).toBeGreaterThanOrEqual(20);
    expect(waiting).toBeLessThan(25);
    expect(feed.shouldPause!()).toBe(true);
    held.open();
    await runner.waitForPosition(35n);
    expect(await appliedIds(schema, 'slow')).toEqual(idsOf(1, 35));
    expect(Math.max(...slow.calls.slice(1))).toBeLessThan(10 + 5);
    expect(runner.backlog()).toBe(0);
  });

  it('records how many delivered events wait behind each batch', async () => {
    const held = gate();
    const slow = heldOnFirstBatch('slow', held);
    const { runner, store, schema } = await startRunner([slow.projection], {
      store: new ScriptedStore({ caughtUp: false }),
      batch: { maxEvents: 5, maxWaitMs: 5, maxCoalescedEvents: 5 },
    });
    store.append(1);
    await held.arrived;
    store.append(10);
    await eventually(() => runner.backlog() === 11, 'the windows');
    const seen: number[] = [];
    slow.projection.apply = ((apply) => async (ctx, events) => {
      seen.push((await checkpoint(schema, 'slow')).eventsBehind);
      return apply(ctx, events);
    })(slow.projection.apply);
    held.open();
    await runner.waitForPosition(11n);
    // The second batch (five events, one window of the two) committed while the other window of five waited.
    expect(seen).toEqual([0, 5]);
    expect((await checkpoint(schema, 'slow')).eventsBehind).toBe(0);
  });
});

describe('failures', () => {
  it('retries a batch that failed for a transient reason, applying it once', async () => {
    const flaky = kit.failingFirst('flaky', 1, { message: 'could not serialize access', code: '40001' });
    const { runner, store, schema, logged } = await startRunner([flaky.projection]);
    store.append(4);
    await runner.waitForPosition(4n);
    expect(await appliedIds(schema, 'flaky')).toEqual(idsOf(1, 4));
    expect(logged('transient error applying a batch; retrying')).toEqual([
      { message: 'transient error applying a batch; retrying', details: { projection: 'flaky', error: 'Error: could not serialize access' } },
    ]);
    expect((await checkpoint(schema, 'flaky')).state).toBe('running');
  });

  it('follows the feed again from the checkpoints after it failed, retrying with back-off until the database answers', async () => {
    const p = recording('customers');
    const { runner, store, schema, logged } = await startRunner([p.projection]);
    store.append(3);
    await runner.waitForPosition(3n);
    // The checkpoints cannot be read for a while: each attempt fails and another is scheduled.
    await sql`ALTER TABLE ${sql.id(schema, CHECKPOINT_TABLE)} RENAME TO hidden_checkpoints`.execute(kit.db());
    store.current.fail(new Error('connection lost'));
    expect(logged('projection feed failed; resubscribing')[0]).toEqual({
      message: 'projection feed failed; resubscribing',
      details: { error: 'Error: connection lost' },
    });
    // Attempts go on meanwhile, each failing on the hidden table: one outage, logged once.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(logged('projection feed failed; resubscribing')).toHaveLength(1);
    expect(store.feeds).toHaveLength(1);
    await sql`ALTER TABLE ${sql.id(schema, 'hidden_checkpoints')} RENAME TO ${sql.id(CHECKPOINT_TABLE)}`.execute(kit.db());
    await eventually(() => store.feeds.length === 2, 'a new subscription');
    await eventually(() => logged('projection feed resubscribed').length === 1, 'the end of the outage logged');
    expect(logged('projection feed resubscribed')[0]!.details).toMatchObject({
      failedAttempts: expect.any(Number),
      lastError: expect.stringMatching(/does not exist/),
    });
    expect(logged('projection feed resubscribed')[0]!.details!.failedAttempts).toBeGreaterThanOrEqual(3);
    expect(store.current.from).toBe(3n);
    store.append(2);
    await runner.waitForPosition(5n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 5));

    // Recovered: the next failure starts from the first delay again, and recovers too.
    store.current.fail(new Error('connection lost again'));
    await eventually(() => store.feeds.length === 3, 'another subscription', 2_000);
    expect(logged('projection feed failed; resubscribing')).toHaveLength(2);
    store.append(1);
    await runner.waitForPosition(6n);
  });

  it('a batch that cannot be committed at all fails the feed, which resubscribes from the checkpoint', async () => {
    const p = recording('customers');
    const { runner, store, schema, logged } = await startRunner([p.projection]);
    store.append(2);
    await runner.waitForPosition(2n);
    // Neither apply nor marking the projection failed works while the table is away.
    await sql`ALTER TABLE ${sql.id(schema, CHECKPOINT_TABLE)} RENAME TO hidden_checkpoints`.execute(kit.db());
    store.append(2);
    await eventually(() => logged('projection feed failed; resubscribing').length >= 1, 'the batch to fail');
    await sql`ALTER TABLE ${sql.id(schema, 'hidden_checkpoints')} RENAME TO ${sql.id(CHECKPOINT_TABLE)}`.execute(kit.db());
    await runner.waitForPosition(4n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 4));
    expect(store.current.from).toBe(2n);
  });
});

describe('start and stop', () => {
  it('stop waits for the batch in flight to commit, then applies nothing more; a new runner carries on from the checkpoint', async () => {
    const held = gate();
    const p = heldOnFirstBatch('customers', held);
    const { runner, store, schema } = await startRunner([p.projection], { store: new ScriptedStore({ caughtUp: false }) });
    store.append(3);
    await held.arrived;
    store.append(2);
    let stopped = false;
    const stopping = runner.stop().then(() => (stopped = true));
    expect(store.current.closed).toBe(true);
    expect(runner.backlog()).toBe(3);
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false);
    held.open();
    await stopping;
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 3));
    expect((await checkpoint(schema, 'customers')).position).toBe(3n);
    store.append(1);
    expect(store.feeds).toHaveLength(1);

    const again = await startRunner([p.projection], { store, schema });
    expect(store.current.from).toBe(3n);
    await again.runner.waitForPosition(6n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 6));
  });

  it('restarting the subscription after a stop does not follow the feed again', async () => {
    const p = recording('customers');
    const { runner, store } = await startRunner([p.projection]);
    await runner.stop();
    await runner.restartSubscription();
    expect(store.feeds).toHaveLength(1);
    expect(store.current.closed).toBe(true);
  });

  it('refuses to start a projection whose version changed, unless told how to rebuild it; the others start', async () => {
    const schema = freshSchema();
    const old = recording('customers', { version: 1 });
    const other = recording('deals');
    await startRunner([old.projection, other.projection], { schema });
    const changed = recording('customers', { version: 2 });
    const refused = await startRunner([changed.projection, other.projection], { schema, start: false });
    await expect(refused.runner.start()).rejects.toThrow('Projections customers changed version or variant: rebuild them (crm rebuild)');

    const rebuilt: string[][] = [];
    const { runner, store, logged } = await startRunner([changed.projection, other.projection], {
      schema,
      onVersionChange: async (names) => {
        rebuilt.push(names);
        await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET version = 2 WHERE name = 'customers'`.execute(kit.db());
      },
    });
    expect(rebuilt).toEqual([['customers']]);
    expect(logged('rebuilding projections whose version or variant changed')).toEqual([
      { message: 'rebuilding projections whose version or variant changed', details: { names: ['customers'] } },
    ]);
    store.append(2);
    await runner.waitForPosition(2n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 2));
  });

  it('a projection stopped by an operator before the start is not applied, and not waited for', async () => {
    const schema = freshSchema();
    const a = recording('customers');
    const b = recording('deals');
    await migrateCheckpoints(kit.db(), schema);
    const first = await startRunner([a.projection, b.projection], { schema });
    await first.runner.stop();
    await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET state = 'stopped' WHERE name = 'deals'`.execute(kit.db());
    const { runner, store } = await startRunner([a.projection, b.projection], { schema });
    store.append(3);
    await runner.waitForPosition(3n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 3));
    expect(await appliedIds(schema, 'deals')).toEqual([]);
    expect(b.calls).toEqual([]);
  });
});

describe('the watchdog', () => {
  it('picks up a projection retried from another process', async () => {
    let broken = true;
    const fragile = recording('fragile', {
      before: (events) => {
        if (broken && events.some((e) => e.id === 'e2')) throw new Error('cannot apply e2');
      },
    });
    const { store, schema, logged } = await startRunner([fragile.projection], { watchdogMs: 10 });
    store.append(3);
    await eventually(async () => (await checkpoint(schema, 'fragile')).state === 'failed', 'the poison event');
    broken = false;
    await clearFailure(kit.db(), schema, 'fragile');
    await eventually(async () => (await checkpoint(schema, 'fragile')).position === 3n, 'the retried projection');
    expect(await appliedIds(schema, 'fragile')).toEqual(idsOf(1, 3));
    expect(logged('projection watchdog restarts the feed').map((l) => l.details!.reason)).toContain('projection fragile is running in the checkpoint table');
  });

  it('notices a projection failed from another process', async () => {
    const a = recording('customers');
    const b = recording('deals');
    const { runner, store, schema, logged } = await startRunner([a.projection, b.projection], { watchdogMs: 10 });
    store.append(2);
    await runner.waitForPosition(2n);
    await markFailed(kit.db(), schema, 'deals', { error: 'stopped by hand', eventId: 'e2', position: 2n, stream: null });
    await eventually(() => logged('projection watchdog restarts the feed').length > 0, 'the watchdog');
    expect(logged('projection watchdog restarts the feed')[0]!.details).toEqual({ reason: 'projection deals is failed in the checkpoint table' });
    store.append(2);
    await runner.waitForPosition(4n, 1_000);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 2));
  });

  it('restarts a feed that stalled while events wait, after the stall time and not before', async () => {
    const p = recording('customers');
    const { runner, store, schema, logged } = await startRunner([p.projection], { watchdogMs: 10, stallMs: 300 });
    store.append(2);
    await runner.waitForPosition(2n);
    store.current.stalled = true;
    const stalledAt = Date.now();
    store.append(3);
    await eventually(() => store.feeds.length === 2, 'a new subscription');
    expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(300);
    expect(store.current.from).toBe(2n);
    await runner.waitForPosition(5n);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 5));
    const reason = String(logged('projection watchdog restarts the feed')[0]!.details!.reason);
    expect(reason).toMatch(/^projection customers has not moved from 2 for \d+ ms while the head is 5$/);
    // The time it stood still: at least the stall time, at most the time since the feed stalled.
    const stillFor = Number(/for (\d+) ms/.exec(reason)![1]);
    expect(stillFor).toBeGreaterThanOrEqual(300);
    expect(stillFor).toBeLessThanOrEqual(Date.now() - stalledAt);
  });

  it('leaves the feed alone while a batch takes longer than the stall time, and restarts nothing after it', async () => {
    const held = gate();
    const p = heldOnFirstBatch('customers', held);
    const { runner, store, schema, logged } = await startRunner([p.projection], { store: new ScriptedStore({ caughtUp: false }), watchdogMs: 5, stallMs: 20 });
    store.append(3);
    await held.arrived;
    store.append(2);
    const feed = store.current;
    let rounds = 0;
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    // Many stall times pass while the first batch is held.
    await eventually(() => rounds >= 20, 'watchdog rounds');
    held.open();
    await runner.waitForPosition(5n);
    expect(store.current).toBe(feed);
    expect(logged('projection watchdog restarts the feed')).toEqual([]);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 5));
  });

  it('leaves a projection alone that is at the head (an empty store), however long it stays there', async () => {
    const p = recording('customers');
    const { store, logged } = await startRunner([p.projection], { watchdogMs: 5, stallMs: 1 });
    const feed = store.current;
    let rounds = 0;
    // Each watchdog round reads the head; wait for a good number of them.
    const headPosition = store.headPosition.bind(store);
    store.headPosition = async () => ((rounds += 1), headPosition());
    await eventually(() => rounds >= 10, 'watchdog rounds');
    expect(store.current).toBe(feed);
    expect(logged('projection watchdog restarts the feed')).toEqual([]);
  });
});

describe('statistics', () => {
  it('analyses a projection’s tables once enough events were applied', async () => {
    const p = recording('customers');
    const { runner, store, schema } = await startRunner([p.projection], { statistics: { afterEvents: 5, minChangedRows: 1 } });
    const reltuples = async () =>
      Number(
        (await sql<{ reltuples: number }>`SELECT reltuples FROM pg_class WHERE oid = ${`"${schema}"."customers_applied"`}::regclass`.execute(kit.db())).rows[0]!
          .reltuples,
      );
    store.append(3);
    await runner.waitForPosition(3n);
    expect(await reltuples()).toBe(-1);
    store.append(4);
    await runner.waitForPosition(7n);
    await eventually(async () => (await reltuples()) > 0, 'the statistics');
    await runner.stop();
  });
});

describe('statistics that cannot be refreshed', () => {
  it('a failed ANALYZE is logged and leaves the batches going; the next one due runs', async () => {
    const p = recording('customers');
    const { runner, store, schema, logged } = await startRunner([p.projection], { statistics: { afterEvents: 5, minChangedRows: 1 } });
    const reltuples = async () =>
      Number(
        (await sql<{ reltuples: number }>`SELECT reltuples FROM pg_class WHERE oid = ${`"${schema}"."customers_applied"`}::regclass`.execute(kit.db())).rows[0]!
          .reltuples,
      );
    const lock = await kit.holdAnalyzeLock(schema, 'customers_applied');
    try {
      store.append(7);
      await runner.waitForPosition(7n);
      await eventually(() => logged('statistics of a projection not refreshed').length === 1, 'the failed ANALYZE');
      expect(logged('statistics of a projection not refreshed')[0]!.details).toEqual({ projection: 'customers', error: expect.stringMatching(/lock timeout/) });
      expect(await reltuples()).toBe(-1);
    } finally {
      await lock.release();
    }
    // Due again after four times as many events: this one runs.
    store.append(21);
    await runner.waitForPosition(28n);
    await eventually(async () => (await reltuples()) > 0, 'the statistics');
    await runner.stop();
  });
});

describe('with leases', () => {
  const leaseWorker = async (schema: string, workerId: string, projections: string[], onChange?: () => void) => {
    const leases = new ProjectionLeases({
      db: kit.db(),
      schema,
      workerId,
      projections,
      leaseSeconds: 30,
      renewEveryMs: 3_600_000,
      ...(onChange ? { onChange } : {}),
    });
    stops.push(() => leases.stop());
    await leases.start();
    return leases;
  };

  it('applies only the projections whose lease it holds, and catches a newly leased one up from its checkpoint', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const a = recording('customers');
    const b = recording('deals');
    const other = await leaseWorker(schema, 'other', ['deals']);
    const mine = await leaseWorker(schema, 'mine', ['customers', 'deals']);
    expect(mine.heldNames()).toEqual(['customers']);
    const { runner, store } = await startRunner([a.projection, b.projection], { schema, leases: mine, concurrent: true });
    store.append(4);
    await runner.waitForPosition(4n, 5_000, ['customers']);
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 4));
    expect(await appliedIds(schema, 'deals')).toEqual([]);
    expect((await checkpoint(schema, 'deals')).position).toBe(0n);

    // The other worker leaves; this one takes the lease but has not resubscribed: the next batch starts
    // after 4, so deals (at 0) must not take it.
    await other.stop();
    expect((await mine.tick()).acquired).toEqual(['deals']);
    store.append(2);
    await runner.waitForPosition(6n, 5_000, ['customers']);
    expect(await appliedIds(schema, 'deals')).toEqual([]);
    await runner.restartSubscription();
    expect(store.current.from).toBe(0n);
    await runner.waitForPosition(6n);
    expect(await appliedIds(schema, 'deals')).toEqual(idsOf(1, 6));
    expect(await appliedIds(schema, 'customers')).toEqual(idsOf(1, 6));
  });

  it('a projection with nothing to apply moves its checkpoint only while its lease is held', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const a = recording('customers');
    const idle = recording('campaigns', { filter: { streamPrefixes: ['campaign-'] } });
    const mine = await leaseWorker(schema, 'mine', ['customers', 'campaigns']);
    const { runner, store } = await startRunner([a.projection, idle.projection], { schema, leases: mine });
    store.append(3);
    await runner.waitForPosition(3n);
    expect((await checkpoint(schema, 'campaigns')).position).toBe(3n);
    // Taken over behind this worker's back: its next skip is fenced off.
    await sql`UPDATE ${sql.id(schema, LEASE_TABLE)} SET owner_id = 'thief', fencing_token = fencing_token + 1 WHERE projection = 'campaigns'`.execute(kit.db());
    store.append(2);
    await runner.waitForPosition(5n, 5_000, ['customers']);
    expect((await checkpoint(schema, 'campaigns')).position).toBe(3n);
    expect(runner.currentPositions().get('campaigns')).toBe(3n);
    expect(mine.owns('campaigns')).toBe(false);
  });

  it('a batch whose lease was taken while it was being applied is rolled back and not retried', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const held = gate();
    const a = heldOnFirstBatch('customers', held);
    const mine = await leaseWorker(schema, 'mine', ['customers']);
    const { runner, store, logged } = await startRunner([a.projection], { schema, leases: mine });
    store.append(3);
    await held.arrived;
    await sql`UPDATE ${sql.id(schema, LEASE_TABLE)} SET owner_id = 'thief', fencing_token = fencing_token + 1`.execute(kit.db());
    held.open();
    await eventually(() => logged('projection lease lost; batch rolled back').length === 1, 'the fence');
    expect(logged('projection lease lost; batch rolled back')[0]!.details).toEqual({ projection: 'customers' });
    expect(await appliedIds(schema, 'customers')).toEqual([]);
    expect((await checkpoint(schema, 'customers')).position).toBe(0n);
    expect(a.calls).toEqual([3]);
    expect(runner.currentPositions().get('customers')).toBe(0n);
  });

  it('a worker holding no lease follows the feed from the furthest checkpoint', async () => {
    const schema = freshSchema();
    await migrateCheckpoints(kit.db(), schema);
    const a = recording('customers');
    const b = recording('deals');
    const store = new ScriptedStore();
    store.append(12);
    const first = await startRunner([a.projection, b.projection], { schema, store });
    await first.runner.waitForPosition(12n);
    await first.runner.stop();
    await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET position = 7 WHERE name = 'customers'`.execute(kit.db());
    await leaseWorker(schema, 'other', ['customers', 'deals']);
    const none = await leaseWorker(schema, 'none', ['customers', 'deals']);
    expect(none.heldNames()).toEqual([]);
    await startRunner([a.projection, b.projection], { schema, store, leases: none });
    expect(store.current.from).toBe(12n);
  });
});
