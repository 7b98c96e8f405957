import {
  sql,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catchUp } from '../../projections/catch-up.ts';
import { applyBatch, decodeBatch } from '../../projections/apply-batch.ts';
import { ensureCheckpoint, migrateCheckpoints, migrateProjections, readCheckpoints, setState } from '../../projections/checkpoints.ts';
import type { ProjectedEvent, Projection } from '../../projections/projection.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { compareSchemas, replayInto, tablesOf } from '../../projections/rebuild.ts';
import { waitForCheckpoints } from '../../projections/status.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { runScenario, type ScenarioIds } from './scenario.ts';
import { createHarness, tableRows, type Harness } from './support.ts';
import { storedEvents } from '../support/events.ts';

let h: Harness;
let ids: ScenarioIds;
const projections = readModelProjections();

beforeAll(async () => {
  h = await createHarness('crash');
  ids = await runScenario(h);
});

afterAll(async () => {
  await h?.close();
});

/** The process dying mid-batch: the connection is gone (a transient error the runner would retry), here it gives up. */
class SimulatedCrash extends Error {
  readonly code = '08006';
}

/** A small deterministic PRNG so a failing seed can be replayed. */
const prng = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};

/**
 * Wraps a projection so that some batches crash part-way: the real apply runs on a prefix of the
 * batch (its writes reach the transaction), then the "process dies" before the checkpoint commits.
 */
const crashing = (p: Projection, random: () => number, crashes: { count: number }): Projection => ({
  ...p,
  apply: async (ctx, events) => {
    if (random() < 0.3) {
      const cut = Math.floor(random() * (events.length + 1));
      await p.apply(ctx, events.slice(0, cut));
      crashes.count++;
      throw new SimulatedCrash(`crash after ${cut} of ${events.length} events`);
    }
    await p.apply(ctx, events);
  },
});

describe('crash safety', () => {
  it('rows equal a full replay after crashes at random points in batches, restart after restart', async () => {
    const until = h.lastPosition();
    const reference = await replayInto({
      db: h.database.db,
      store: h.store,
      codec: h.codec,
      projections,
      schema: `${h.schemas.read}_ref`,
      untilPosition: until,
    });
    for (const seed of [1, 2, 3]) {
      const schema = `${h.schemas.read}_s${seed}`;
      await migrateProjections(h.database.db, schema, projections);
      const random = prng(seed);
      const crashes = { count: 0 };
      let restarts = 0;
      for (;;) {
        // A fresh "process" each time: state comes only from the database.
        try {
          await catchUp({
            db: h.database.db,
            store: h.store,
            schema,
            projections: projections.map((p) => crashing(p, random, crashes)),
            codec: h.codec,
            untilPosition: until,
            pageSize: 1 + Math.floor(random() * 5),
            concurrent: true,
            applyOptions: { shouldRetry: () => false },
          });
          break;
        } catch (error) {
          expect(error).toBeInstanceOf(SimulatedCrash);
          restarts++;
          expect(restarts).toBeLessThan(2_000);
        }
      }
      expect(crashes.count, `seed ${seed}`).toBeGreaterThan(5);
      const checkpoints = await readCheckpoints(h.database.db, schema);
      for (const p of projections) expect(checkpoints.get(p.name)).toMatchObject({ state: 'running', position: until });
      const comparison = await compareSchemas(h.database.db, reference.schema, schema, tablesOf(projections));
      expect(
        comparison.filter((t) => !t.equal),
        `seed ${seed}`,
      ).toEqual([]);
    }
  });
});

/**
 * The process dying before a given statement of its life: every statement the projections send
 * (rows, checkpoint reads and moves) counts, so a sweep over k reaches every point of every batch,
 * including the one between a batch's commit and anything written after it.
 */
class CrashBeforeStatement implements KyselyPlugin {
  private sent = 0;
  constructor(private readonly at: number) {}
  transformQuery({ node }: PluginTransformQueryArgs): RootOperationNode {
    this.sent += 1;
    if (this.sent === this.at) throw new SimulatedCrash(`crash before statement ${this.at}`);
    return node;
  }
  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
  get statements(): number {
    return this.sent;
  }
}

describe('crash at every statement of a catch-up', () => {
  it('rows and checkpoints equal a replay whichever statement the process dies before (deterministic sweep)', async () => {
    // One projection with counters (a double-applied purchase shows in orderCount and revenue) and a prefix
    // of the scenario keep the sweep short: a few batches of three events.
    const projections = readModelProjections().filter((p) => p.name === 'customers');
    const prefix = await storedEvents(h.store, { maxCount: 24 });
    const until = prefix.at(-1)!.position;
    const reference = await replayInto({
      db: h.database.db,
      store: h.store,
      codec: h.codec,
      projections,
      schema: `${h.schemas.read}_sweepref`,
      untilPosition: until,
    });
    const life = (schema: string, db: typeof h.database.db) =>
      catchUp({ db, store: h.store, schema, projections, codec: h.codec, untilPosition: until, pageSize: 3, applyOptions: { shouldRetry: () => false } });
    const prepare = (schema: string) => migrateProjections(h.database.db, schema, projections);
    // How many statements a whole catch-up sends: the sweep covers each of them.
    const counting = new CrashBeforeStatement(Number.MAX_SAFE_INTEGER);
    await prepare(`${h.schemas.read}_sweep0`);
    await life(`${h.schemas.read}_sweep0`, h.database.db.withPlugin(counting));
    const total = counting.statements;
    expect(total).toBeGreaterThan(10);
    const mismatches: string[] = [];
    for (let at = 1; at <= total; at++) {
      const schema = `${h.schemas.read}_sweep${at}`;
      await prepare(schema);
      const crashed = await life(schema, h.database.db.withPlugin(new CrashBeforeStatement(at))).then(
        () => false,
        (error: unknown) => {
          expect(error).toBeInstanceOf(SimulatedCrash);
          return true;
        },
      );
      expect(crashed, `statement ${at} of ${total}`).toBe(true);
      // The restarted process finishes the catch-up from what the database holds.
      await life(schema, h.database.db);
      const checkpoints = await readCheckpoints(h.database.db, schema);
      for (const p of projections) expect(checkpoints.get(p.name)?.position, `${p.name} after a crash before statement ${at}`).toBe(until);
      const comparison = await compareSchemas(h.database.db, reference.schema, schema, tablesOf(projections));
      for (const table of comparison.filter((t) => !t.equal)) mismatches.push(`crash before statement ${at}: ${table.table} differs`);
      await sql`DROP SCHEMA ${sql.id(schema)} CASCADE`.execute(h.database.db);
    }
    expect(mismatches).toEqual([]);
  }, 240_000);
});

describe('poison events', () => {
  it('stop only their projection, which records the event and the error; the others go on', async () => {
    const { deals } = Object.fromEntries(projections.map((p) => [p.name, p])) as Record<string, Projection>;
    const poisoned: Projection = {
      ...deals!,
      apply: async (ctx, events) => {
        if (events.some((e) => e.event.type === 'DealLost')) throw new Error('cannot handle DealLost');
        await deals!.apply(ctx, events);
      },
    };
    const schema = `${h.schemas.read}_poison`;
    const runner = new ProjectionRunner({
      db: h.database.db,
      store: h.store,
      schema,
      projections: projections.map((p) => (p.name === 'deals' ? poisoned : p)),
      codec: h.codec,
      batch: { maxEvents: 50, maxWaitMs: 5 },
    });
    await runner.start();
    try {
      // A failed projection is not waited for; read-your-writes asks which are short of the position, and names it.
      await runner.waitForPosition(h.lastPosition(), 10_000);
      expect(runner.stoppedBefore(h.lastPosition(), undefined)).toMatchObject({ name: 'ReadModelStopped', stopped: [{ name: 'deals', state: 'failed' }] });
      expect(runner.stoppedBefore(h.lastPosition(), undefined)?.message).toMatch(/deals \(failed at \d+\).*crm projections retry/);
      expect(
        runner.stoppedBefore(
          h.lastPosition(),
          projections.map((p) => p.name).filter((name) => name !== 'deals'),
        ),
      ).toBeUndefined();
      const [lost] = (await storedEvents(h.store)).filter((e) => e.type === 'DealLost');
      const status = Object.fromEntries((await runner.status()).map((s) => [s.name, s]));
      expect(status.deals).toMatchObject({ state: 'failed', failedEventId: lost!.id, failedPosition: lost!.position });
      expect(status.deals!.lastError).toContain('cannot handle DealLost');
      expect(status.deals!.position).toBeLessThan(lost!.position);
      for (const name of ['customers', 'customer_timeline', 'campaigns', 'feedback']) {
        expect(status[name]).toMatchObject({ state: 'running', position: h.lastPosition() });
      }
      // Events before the poison were applied; the deal stands as it was just before it.
      const q = createReadModelQueries({ db: h.database.db, schema });
      expect(await q.getDeal(ids.dealReopened)).toMatchObject({ stage: 'qualified' });
      expect(await q.getDeal(ids.dealOpen)).toBeUndefined();
      expect((await q.getCustomer(ids.carol))!.status).toBe('forgotten');
      const { rows } = await sql<{ state: string }>`SELECT state FROM ${sql.id(schema, 'projection_checkpoints')} WHERE name = 'deals'`.execute(h.database.db);
      expect(rows[0]!.state).toBe('failed');
      // An API replica waits through the checkpoints (CRM_PROJECTIONS=off): the same answer, at once.
      const asked = Date.now();
      await expect(waitForCheckpoints(h.database.db, schema, h.lastPosition(), { timeoutMs: 10_000, refuseStopped: true })).rejects.toMatchObject({
        name: 'ReadModelStopped',
        stopped: [{ name: 'deals', state: 'failed' }],
      });
      expect(Date.now() - asked).toBeLessThan(5_000);
      // Without refusing, as the workers wait: the others are there, the failed one is not waited for.
      await waitForCheckpoints(h.database.db, schema, h.lastPosition(), { timeoutMs: 10_000 });
    } finally {
      await runner.stop();
    }
  });
});

describe('one batch against its checkpoint', () => {
  const noLag = { eventsBehind: 0, newestRecordedAt: null };
  /** A projection that only records what it is given, on a schema of its own with a fresh checkpoint. */
  const watching = async (name: string, filter?: Projection['filter']) => {
    const seen: ProjectedEvent[] = [];
    const watcher: Projection = {
      name,
      version: 1,
      tables: [],
      ...(filter ? { filter } : {}),
      migrate: async () => {},
      apply: async (_ctx, batch) => void seen.push(...batch),
    };
    const schema = `${h.schemas.read}_${name}`;
    await migrateCheckpoints(h.database.db, schema);
    await ensureCheckpoint(h.database.db, schema, watcher);
    const checkpoint = async () => (await readCheckpoints(h.database.db, schema)).get(name)!;
    return { seen, watcher, schema, checkpoint };
  };

  it('a stopped or failed projection takes no batch: nothing applied, the checkpoint stays where it was', async () => {
    const customers = projections.find((p) => p.name === 'customers')!;
    const events = await storedEvents(h.store, { maxCount: 12 });
    const items = await decodeBatch(h.codec, events, () => true);
    for (const state of ['stopped', 'failed'] as const) {
      const schema = `${h.schemas.read}_held_${state}`;
      await migrateProjections(h.database.db, schema, [customers]);
      await setState(h.database.db, schema, customers.name, state);
      const outcome = await applyBatch(h.database.db, schema, customers, items, events.at(-1)!.position, noLag);
      expect(outcome).toEqual({ kind: 'skipped', position: 0n, state });
      expect(await tableRows(h.database, schema, 'customers')).toEqual([]);
      expect((await readCheckpoints(h.database.db, schema)).get(customers.name)).toMatchObject({ state, position: 0n });
    }
  });
  it('a filtered projection is given only the events it wants, and its checkpoint still reaches the end of the batch', async () => {
    const events = await storedEvents(h.store);
    const items = await decodeBatch(h.codec, events, () => true);
    const end = events.at(-1)!.position;
    const filters = [
      { name: 'by_type', filter: { eventTypes: ['PurchaseRecorded'] }, wanted: (e: { type: string; stream: string }) => e.type === 'PurchaseRecorded' },
      { name: 'by_stream', filter: { streamPrefixes: ['deal-'] }, wanted: (e: { type: string; stream: string }) => e.stream.startsWith('deal-') },
    ];
    for (const { name, filter, wanted } of filters) {
      const { seen, watcher, schema, checkpoint } = await watching(`filter_${name}`, filter);
      expect(await applyBatch(h.database.db, schema, watcher, items, end, noLag)).toEqual({ kind: 'applied', position: end });
      const expected = events.filter(wanted).map((e) => e.id);
      expect(expected.length, name).toBeGreaterThan(0);
      expect(
        seen.map((e) => e.id),
        name,
      ).toEqual(expected);
      expect(await checkpoint()).toMatchObject({ state: 'running', position: end });
    }
  });

  it('a batch seen again after its checkpoint moved on (a restart, another worker) applies nothing and never moves the checkpoint back', async () => {
    const events = await storedEvents(h.store);
    const items = await decodeBatch(h.codec, events, () => true);
    const end = events.at(-1)!.position;
    const middle = Math.floor(events.length / 2);
    const { seen, watcher, schema, checkpoint } = await watching('seen_again');
    expect(await applyBatch(h.database.db, schema, watcher, items, end, noLag)).toEqual({ kind: 'applied', position: end });
    expect(seen).toHaveLength(events.length);
    // The first half again, ending below the checkpoint: nothing is applied twice, the checkpoint stays at the end.
    expect(await applyBatch(h.database.db, schema, watcher, items.slice(0, middle), events[middle - 1]!.position, noLag)).toEqual({
      kind: 'applied',
      position: end,
    });
    expect(seen).toHaveLength(events.length);
    expect(await checkpoint()).toMatchObject({ state: 'running', position: end });
    // An overlapping batch applies only what lies beyond the checkpoint.
    const { seen: second, watcher: w2, schema: s2, checkpoint: c2 } = await watching('overlap');
    await applyBatch(h.database.db, s2, w2, items.slice(0, middle), events[middle - 1]!.position, noLag);
    await applyBatch(h.database.db, s2, w2, items, end, noLag);
    expect(second.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(await c2()).toMatchObject({ position: end });
  });

  it('an event that cannot be decoded fails the projection at that event: what came before it is applied, the checkpoint stops just before it', async () => {
    const events = await storedEvents(h.store, { maxCount: 10 });
    const items = await decodeBatch(h.codec, events, () => true);
    const broken = 6;
    items[broken] = { recorded: items[broken]!.recorded, decodeError: new Error('the data key is unreadable') };
    const { seen, watcher, schema, checkpoint } = await watching('undecodable');
    const outcome = await applyBatch(h.database.db, schema, watcher, items, events.at(-1)!.position, noLag);
    expect(outcome).toMatchObject({ kind: 'poison', position: events[broken - 1]!.position });
    expect(outcome.kind === 'poison' && outcome.failure.message).toContain('the data key is unreadable');
    expect(seen.map((e) => e.id)).toEqual(events.slice(0, broken).map((e) => e.id));
    expect(await checkpoint()).toMatchObject({ state: 'failed', position: events[broken - 1]!.position });
  });
});
