import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { LEASE_TABLE, LeaseLost, migrateLeases, ProjectionLeases, readLeaseHolders, WORKER_TABLE, type LeaseChange } from '../../projections/leases.ts';
import { isRunning, procStat } from '../../shared/processes.ts';
import { withoutRepeats, type Log, type LogLevel } from '../../shared/outage-log.ts';
import { ensureSchema } from '../../shared/sql.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

/**
 * The leases (projections/leases.ts) driven round by round: `tick()` is called by the test, the
 * renewal timer is set far beyond the test's length, and expiry is made by moving `expires_at` back
 * in the table, so no test waits for a clock.
 */

let schemas: TestSchemas;
let database: SqlDatabase;
let db: Kysely<any>;
let next = 0;

beforeAll(() => {
  schemas = testSchemas('lease_rounds');
  database = connectPostgres(schemas.url, { max: 4 });
  db = database.db;
});

afterAll(async () => {
  await database?.close();
  await schemas?.dropSchemas();
});

const freshSchema = () => `${schemas.read}_${(next += 1)}`;
const NAMES = ['customers', 'deals', 'feedback', 'timeline'];
/** No timer round during a test: the test drives every round. */
const NEVER = 3_600_000;

const workers: ProjectionLeases[] = [];
afterAll(async () => {
  for (const w of workers) await w.stop({ release: false });
});

const worker = (
  schema: string,
  workerId: string,
  options: {
    projections?: string[];
    leaseSeconds?: number;
    renewEveryMs?: number;
    fallbackWorkerId?: string;
    withoutLog?: boolean;
    /** The log as runtime/crm.ts hands it over: through `withoutRepeats`. */
    repeatsLeftOut?: boolean;
  } = {},
) => {
  const changes: LeaseChange[] = [];
  const logs: { message: string; details?: Record<string, unknown> }[] = [];
  const log: Log = (message, details) => void logs.push({ message, ...(details ? { details } : {}) });
  const leases = new ProjectionLeases({
    db,
    schema,
    workerId,
    projections: options.projections ?? NAMES,
    leaseSeconds: options.leaseSeconds ?? 30,
    renewEveryMs: options.renewEveryMs ?? NEVER,
    ...(options.fallbackWorkerId ? { fallbackWorkerId: options.fallbackWorkerId } : {}),
    onChange: (change) => changes.push(change),
    ...(options.withoutLog ? {} : { log: options.repeatsLeftOut ? withoutRepeats(log) : log }),
  });
  workers.push(leases);
  return { leases, changes, logs };
};

const leaseRows = async (schema: string) => {
  const { rows } = await sql<{ projection: string; owner_id: string | null; fencing_token: string; live: boolean | null; renewed_at: Date | null }>`
    SELECT projection, owner_id, fencing_token::text AS fencing_token, expires_at > clock_timestamp() AS live, renewed_at
    FROM ${sql.id(schema, LEASE_TABLE)} ORDER BY projection`.execute(db);
  return rows;
};

const workerRows = async (schema: string) => {
  const { rows } = await sql<{ worker_id: string; host: string | null; pid: number | null }>`
    SELECT worker_id, host, pid FROM ${sql.id(schema, WORKER_TABLE)} ORDER BY worker_id`.execute(db);
  return rows;
};

/** The lease or heartbeat runs out now (as if its holder had been silent for longer than the lease). */
const expireLease = (schema: string, projection: string) =>
  sql`UPDATE ${sql.id(schema, LEASE_TABLE)} SET expires_at = clock_timestamp() - interval '1 second' WHERE projection = ${projection}`.execute(db);
const expireWorker = (schema: string, workerId: string, ago = '1 second') =>
  sql`UPDATE ${sql.id(schema, WORKER_TABLE)} SET expires_at = clock_timestamp() - ${ago}::interval WHERE worker_id = ${workerId}`.execute(db);

const inTransaction = <T>(work: (trx: Kysely<any>) => Promise<T>) => db.transaction().execute(work);

async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('lease tables', () => {
  it('are created with a free row per projection, and an older heartbeat table gains host, pid and the projections given up', async () => {
    const schema = freshSchema();
    await ensureSchema(db, schema);
    await sql`CREATE TABLE ${sql.id(schema, WORKER_TABLE)} (worker_id text PRIMARY KEY, seen_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)`.execute(
      db,
    );
    await migrateLeases(db, schema);
    const { rows } = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
      WHERE table_schema = ${schema} AND table_name = ${WORKER_TABLE} ORDER BY column_name`.execute(db);
    expect(rows.map((r) => r.column_name)).toEqual(['expires_at', 'given_up', 'host', 'pid', 'seen_at', 'worker_id']);
    // Idempotent, and a worker with no projections only heartbeats.
    const { leases } = worker(schema, 'idle', { projections: [] });
    expect(await leases.start()).toEqual({ acquired: [], lost: [] });
    expect(await leaseRows(schema)).toEqual([]);
    expect(await workerRows(schema)).toEqual([{ worker_id: 'idle', host: hostname(), pid: process.pid }]);
    expect(leases.ownsAll()).toBe(true);
  });

  it('answers no holders before the table exists, and rethrows any other failure', async () => {
    expect(await readLeaseHolders(db, freshSchema())).toEqual(new Map());
    const broken = connectPostgres('postgres://postgres@127.0.0.1:5432/no_such_database_for_leases', { max: 1 });
    try {
      await expect(readLeaseHolders(broken.db, freshSchema())).rejects.toThrow(/no_such_database_for_leases/);
    } finally {
      await broken.close();
    }
  });

  it('a lease set stopped before it started releases nothing and returns', async () => {
    const schema = freshSchema();
    await migrateLeases(db, schema);
    const { leases } = worker(schema, 'never-started');
    await expect(leases.stop()).resolves.toBeUndefined();
    expect(await workerRows(schema)).toEqual([]);
  });

  it('refuses a lease of no length', () => {
    expect(() => worker(freshSchema(), 'w', { leaseSeconds: 0 })).toThrow('leaseSeconds must be positive');
    expect(() => worker(freshSchema(), 'w', { leaseSeconds: Number.NaN })).toThrow('leaseSeconds must be positive');
  });
});

describe('one worker', () => {
  it('claims every projection with a first fencing token, renews them each round and releases them on a clean stop', async () => {
    const schema = freshSchema();
    const { leases, changes, logs } = worker(schema, 'alpha');
    expect(leases.ownsAll()).toBe(false);
    const first = await leases.start();
    expect([...first.acquired].sort()).toEqual(NAMES);
    expect(first.lost).toEqual([]);
    expect(changes).toEqual([first]);
    expect(logs).toContainEqual({ message: 'projection leases changed', details: { workerId: 'alpha', ...first, held: NAMES } });
    expect(leases.heldNames()).toEqual(NAMES);
    expect(leases.ownsAll()).toBe(true);
    expect(leases.owns('deals')).toBe(true);
    expect(leases.owns('campaigns')).toBe(false);
    expect(leases.workerId).toBe('alpha');
    const claimed = await leaseRows(schema);
    expect(claimed.map((r) => [r.projection, r.owner_id, r.fencing_token, r.live])).toEqual(NAMES.map((n) => [n, 'alpha', '1', true]));

    const holders = await readLeaseHolders(db, schema);
    expect([...holders.keys()].sort()).toEqual(NAMES);
    expect(holders.get('deals')).toMatchObject({ owner: 'alpha', fencingToken: 1n });
    const expiresAt = holders.get('deals')!.expiresAt!;
    expect(expiresAt).toBeInstanceOf(Date);
    expect(expiresAt.getTime()).toBeGreaterThan(Date.now() + 25_000);

    // A round renews (same token, later expiry) and changes nothing else: no callback, no log.
    const renewedBefore = claimed[0]!.renewed_at!.getTime();
    await eventually(
      async () => (await sql<{ later: boolean }>`SELECT clock_timestamp() > ${claimed[0]!.renewed_at} AS later`.execute(db)).rows[0]!.later,
      'the clock to move',
    );
    expect(await leases.tick()).toEqual({ acquired: [], lost: [] });
    expect(changes).toHaveLength(1);
    expect(logs.filter((l) => l.message === 'projection leases changed')).toHaveLength(1);
    const renewed = await leaseRows(schema);
    expect(renewed.map((r) => [r.owner_id, r.fencing_token, r.live])).toEqual(NAMES.map(() => ['alpha', '1', true]));
    expect(renewed.every((r) => r.renewed_at!.getTime() > renewedBefore)).toBe(true);
    expect(leases.heldNames()).toEqual(NAMES);

    await leases.stop();
    expect(leases.heldNames()).toEqual([]);
    expect((await leaseRows(schema)).map((r) => [r.owner_id, r.live])).toEqual(NAMES.map(() => [null, null]));
    expect(await workerRows(schema)).toEqual([]);
    expect((await readLeaseHolders(db, schema)).get('deals')).toEqual({ owner: null, expiresAt: null, fencingToken: 1n });
    // A round after the stop does nothing.
    expect(await leases.tick()).toEqual({ acquired: [], lost: [] });
    expect(await workerRows(schema)).toEqual([]);
  });

  it('without release, stops renewing but keeps the leases and heartbeat until they run out (as after a crash)', async () => {
    const schema = freshSchema();
    const { leases } = worker(schema, 'alpha', { projections: ['deals'] });
    await leases.start();
    await leases.stop({ release: false });
    expect((await leaseRows(schema)).map((r) => [r.owner_id, r.live])).toEqual([['alpha', true]]);
    expect((await workerRows(schema)).map((r) => r.worker_id)).toEqual(['alpha']);
    expect(leases.owns('deals')).toBe(true);
  });

  it('renews on its timer, a third of the lease by default, so that a short lease never runs out', async () => {
    const schema = freshSchema();
    const leases = new ProjectionLeases({ db, schema, workerId: 'timer', projections: ['deals'], leaseSeconds: 0.6 });
    workers.push(leases);
    await leases.start();
    const seen = new Set<number>();
    let expired = false;
    await eventually(async () => {
      const [row] = await leaseRows(schema);
      if (!row!.live) expired = true;
      seen.add(row!.renewed_at!.getTime());
      return seen.size >= 4;
    }, 'three renewals');
    await leases.stop();
    expect(expired).toBe(false);
  });

  it('retries soon after a round fails, and carries on once the database answers again', async () => {
    const schema = freshSchema();
    const { leases, logs } = worker(schema, 'alpha', { projections: ['deals'], renewEveryMs: 40 });
    await leases.start();
    await sql`ALTER TABLE ${sql.id(schema, WORKER_TABLE)} RENAME TO hidden_workers`.execute(db);
    await eventually(() => logs.some((l) => l.message === 'projection lease renewal failed'), 'a failed round');
    expect(logs.find((l) => l.message === 'projection lease renewal failed')!.details).toMatchObject({
      workerId: 'alpha',
      error: expect.stringContaining('does not exist'),
    });
    await sql`ALTER TABLE ${sql.id(schema, 'hidden_workers')} RENAME TO ${sql.id(WORKER_TABLE)}`.execute(db);
    await sql`DELETE FROM ${sql.id(schema, WORKER_TABLE)}`.execute(db);
    await eventually(async () => (await workerRows(schema)).length === 1, 'the heartbeat again');
    // One line when renewals start failing, one when they work again, not one per retry.
    await eventually(() => logs.some((l) => l.message === 'projection leases renewed again'), 'the recovery line');
    expect(logs.filter((l) => l.message === 'projection lease renewal failed')).toHaveLength(1);
    expect(logs.find((l) => l.message === 'projection leases renewed again')!.details).toMatchObject({
      workerId: 'alpha',
      failedAttempts: expect.any(Number),
      lastError: expect.stringContaining('does not exist'),
    });
    await leases.stop();
    // Stopped: no round runs any more.
    const failures = logs.filter((l) => l.message === 'projection lease renewal failed').length;
    await sql`DELETE FROM ${sql.id(schema, WORKER_TABLE)}`.execute(db);
    await leases.tick();
    expect(await workerRows(schema)).toEqual([]);
    expect(logs.filter((l) => l.message === 'projection lease renewal failed')).toHaveLength(failures);
  });

  it('without a log, a failed round is retried all the same and raises nothing', async () => {
    const schema = freshSchema();
    let statements = 0;
    const counted = db.withPlugin({ transformQuery: ({ node }) => ((statements += 1), node), transformResult: async ({ result }) => result });
    const leases = new ProjectionLeases({ db: counted, schema, workerId: 'alpha', projections: ['deals'], leaseSeconds: 30, renewEveryMs: 40 });
    workers.push(leases);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      await leases.start();
      await sql`ALTER TABLE ${sql.id(schema, WORKER_TABLE)} RENAME TO hidden_workers`.execute(db);
      // Each round's first statement fails while the table is hidden; the third begun means two failed.
      const hiddenAt = statements;
      await eventually(() => statements >= hiddenAt + 3, 'failed rounds');
      await sql`ALTER TABLE ${sql.id(schema, 'hidden_workers')} RENAME TO ${sql.id(WORKER_TABLE)}`.execute(db);
      await sql`DELETE FROM ${sql.id(schema, WORKER_TABLE)}`.execute(db);
      await eventually(async () => (await workerRows(schema)).length === 1, 'the heartbeat again');
      await leases.stop();
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('rounds asked for at once run one after the other: each lease is claimed once', async () => {
    const schema = freshSchema();
    const { leases } = worker(schema, 'alpha');
    await migrateLeases(db, schema);
    await leases.start();
    await leases.stop();
    const again = worker(schema, 'alpha');
    // start claims in its own round; two more rounds asked for together find nothing left to claim.
    const [a, b, c] = await Promise.all([again.leases.start(), again.leases.tick(), again.leases.tick()]);
    expect([...a.acquired, ...b.acquired, ...c.acquired].sort()).toEqual(NAMES);
    expect((await leaseRows(schema)).map((r) => r.fencing_token)).toEqual(NAMES.map(() => '2'));
    expect(await inTransaction((trx) => again.leases.fence(trx, NAMES))).toEqual(NAMES);
  });

  it('a failed round surfaces to its caller and does not block the next one', async () => {
    const schema = freshSchema();
    const { leases } = worker(schema, 'alpha', { projections: ['deals'] });
    await leases.start();
    await sql`ALTER TABLE ${sql.id(schema, WORKER_TABLE)} RENAME TO hidden_workers`.execute(db);
    await expect(leases.tick()).rejects.toThrow(/does not exist/);
    await sql`ALTER TABLE ${sql.id(schema, 'hidden_workers')} RENAME TO ${sql.id(WORKER_TABLE)}`.execute(db);
    expect(await leases.tick()).toEqual({ acquired: [], lost: [] });
    expect(leases.owns('deals')).toBe(true);
  });
});

describe('two workers', () => {
  it('share the projections fairly: the first hands its excess over once the second heartbeats', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha');
    const beta = worker(schema, 'beta');
    await alpha.leases.start();
    // All held and live: nothing for beta yet, but its heartbeat now counts.
    expect(await beta.leases.start()).toEqual({ acquired: [], lost: [] });
    expect(beta.changes).toEqual([]);
    const handed = await alpha.leases.tick();
    expect(handed).toEqual({ acquired: [], lost: ['feedback', 'timeline'] });
    expect(alpha.leases.heldNames()).toEqual(['customers', 'deals']);
    expect(alpha.changes.at(-1)).toEqual(handed);
    const rows = await leaseRows(schema);
    expect(rows.map((r) => [r.projection, r.owner_id])).toEqual([
      ['customers', 'alpha'],
      ['deals', 'alpha'],
      ['feedback', null],
      ['timeline', null],
    ]);
    const taken = await beta.leases.tick();
    expect([...taken.acquired].sort()).toEqual(['feedback', 'timeline']);
    expect(beta.leases.heldNames()).toEqual(['feedback', 'timeline']);
    expect((await leaseRows(schema)).map((r) => [r.owner_id, r.fencing_token])).toEqual([
      ['alpha', '1'],
      ['alpha', '1'],
      ['beta', '2'],
      ['beta', '2'],
    ]);
    // Balanced: further rounds change nothing.
    expect(await alpha.leases.tick()).toEqual({ acquired: [], lost: [] });
    expect(await beta.leases.tick()).toEqual({ acquired: [], lost: [] });

    // Beta stops cleanly: alpha takes everything back in its next round.
    await beta.leases.stop();
    expect((await alpha.leases.tick()).acquired.sort()).toEqual(['feedback', 'timeline']);
    expect(alpha.leases.ownsAll()).toBe(true);
  });

  it('every take-over and hand-over reaches a log that leaves out repeated failures, however soon after the last', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { repeatsLeftOut: true });
    const beta = worker(schema, 'beta', { repeatsLeftOut: true });
    await alpha.leases.start();
    await beta.leases.start();
    await alpha.leases.tick();
    await beta.leases.tick();
    // Beta stops: alpha takes its share back, seconds after its earlier hand-over was logged.
    await beta.leases.stop();
    await alpha.leases.tick();
    const changed = (logs: { message: string; details?: Record<string, unknown> }[]) =>
      logs
        .filter((l) => l.message === 'projection leases changed')
        .map((l) => ({ acquired: [...(l.details?.acquired as string[])].sort(), lost: l.details?.lost }));
    expect(changed(alpha.logs)).toEqual([
      { acquired: NAMES, lost: [] },
      { acquired: [], lost: ['feedback', 'timeline'] },
      { acquired: ['feedback', 'timeline'], lost: [] },
    ]);
    expect(changed(beta.logs)).toEqual([{ acquired: ['feedback', 'timeline'], lost: [] }]);
    // What it is there for stays: a failure said again within five minutes is left out, then counted.
    const lines: { message: string; level?: LogLevel; details?: Record<string, unknown> }[] = [];
    const log = withoutRepeats((message, details, level) => void lines.push({ message, level, ...(details ? { details } : {}) }))!;
    log('projection lease renewal failed', { error: 'connection refused' }, 'warn');
    log('projection lease renewal failed', { error: 'connection reset' }, 'warn');
    expect(lines).toEqual([{ message: 'projection lease renewal failed', level: 'warn', details: { error: 'connection refused' } }]);
  });

  it('a worker below its share takes only what it lacks, though more is free: the rest stays for the other worker', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha');
    const beta = worker(schema, 'beta');
    await alpha.leases.start();
    await beta.leases.start();
    await alpha.leases.tick();
    expect(alpha.leases.heldNames()).toEqual(['customers', 'deals']);
    // Alpha's lease on customers runs out: it holds one of its two, with three free (feedback and timeline not taken yet).
    await expireLease(schema, 'customers');
    const round = await alpha.leases.tick();
    expect(round.lost).toEqual(['customers']);
    expect(round.acquired).toHaveLength(1);
    expect(alpha.leases.heldNames()).toHaveLength(2);
    const rest = NAMES.filter((n) => !alpha.leases.owns(n));
    expect(rest).toHaveLength(2);
    expect([...(await beta.leases.tick()).acquired].sort()).toEqual(rest);
  });

  it('an odd count rounds each share up, so that no projection is left without a worker', async () => {
    const schema = freshSchema();
    const three = ['customers', 'deals', 'feedback'];
    const alpha = worker(schema, 'alpha', { projections: three });
    const beta = worker(schema, 'beta', { projections: three });
    await alpha.leases.start();
    await beta.leases.start();
    expect((await alpha.leases.tick()).lost).toEqual(['feedback']);
    expect((await beta.leases.tick()).acquired).toEqual(['feedback']);
    expect(alpha.leases.heldNames()).toEqual(['customers', 'deals']);
  });

  it('a crashed worker loses nothing until its lease runs out; then another takes it with a new token and fences the first off', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { projections: ['deals'] });
    const beta = worker(schema, 'beta', { projections: ['deals'] });
    await alpha.leases.start();
    expect(await beta.leases.start()).toEqual({ acquired: [], lost: [] });
    expect(await inTransaction((trx) => alpha.leases.fence(trx, ['deals']))).toEqual(['deals']);

    await expireLease(schema, 'deals');
    await expireWorker(schema, 'alpha');
    expect(await beta.leases.tick()).toEqual({ acquired: ['deals'], lost: [] });
    expect((await readLeaseHolders(db, schema)).get('deals')).toMatchObject({ owner: 'beta', fencingToken: 2n });

    // Alpha was paused, not dead: it still believes it holds the lease until the fence or a round says otherwise.
    expect(alpha.leases.owns('deals')).toBe(true);
    await expect(inTransaction((trx) => alpha.leases.assertHeld(trx, 'deals'))).rejects.toThrow(LeaseLost);
    expect(alpha.leases.owns('deals')).toBe(false);
    await expect(inTransaction((trx) => beta.leases.assertHeld(trx, 'deals'))).resolves.toBeUndefined();
    // Its next round heartbeats again, finds nothing free and loses nothing more.
    expect(await alpha.leases.tick()).toEqual({ acquired: [], lost: [] });
    // Its release on stop leaves beta's lease alone.
    await alpha.leases.stop();
    expect((await leaseRows(schema)).map((r) => [r.owner_id, r.fencing_token, r.live])).toEqual([['beta', '2', true]]);
  });

  it('a round of the worker whose lease was taken reports it lost, once', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { projections: ['deals', 'timeline'] });
    const beta = worker(schema, 'beta', { projections: ['deals', 'timeline'] });
    await alpha.leases.start();
    await beta.leases.start();
    await expireLease(schema, 'timeline');
    // Beta's share is one, and the only one it may take is the expired lease.
    expect(await beta.leases.tick()).toEqual({ acquired: ['timeline'], lost: [] });
    expect(await alpha.leases.tick()).toEqual({ acquired: [], lost: ['timeline'] });
    expect(alpha.changes.at(-1)).toEqual({ acquired: [], lost: ['timeline'] });
    expect(alpha.leases.heldNames()).toEqual(['deals']);
    expect(await alpha.leases.tick()).toEqual({ acquired: [], lost: [] });
  });

  it('a lease that ran out is not renewed even if nobody took it yet; the next round claims it afresh', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { projections: ['deals'] });
    await alpha.leases.start();
    await expireLease(schema, 'deals');
    expect(await inTransaction((trx) => alpha.leases.fence(trx, ['deals']))).toEqual([]);
    expect(alpha.leases.owns('deals')).toBe(false);
    expect(await alpha.leases.tick()).toEqual({ acquired: ['deals'], lost: [] });
    expect((await leaseRows(schema)).map((r) => [r.owner_id, r.fencing_token, r.live])).toEqual([['alpha', '2', true]]);
  });

  it('an expired lease still in the row is renewed by nobody: the round loses it, then claims it with a new token', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { projections: ['deals'] });
    await alpha.leases.start();
    await expireLease(schema, 'deals');
    const round = await alpha.leases.tick();
    expect(round).toEqual({ acquired: ['deals'], lost: ['deals'] });
    expect((await leaseRows(schema)).map((r) => r.fencing_token)).toEqual(['2']);
    expect(await inTransaction((trx) => alpha.leases.fence(trx, ['deals']))).toEqual(['deals']);
  });

  it('a restart under the same worker id takes its own live leases back with new tokens, fencing off the old process', async () => {
    const schema = freshSchema();
    const before = worker(schema, 'host-a', { projections: ['deals', 'timeline'] });
    await before.leases.start();
    const after = worker(schema, 'host-a', { projections: ['deals', 'timeline'] });
    expect((await after.leases.start()).acquired.sort()).toEqual(['deals', 'timeline']);
    expect((await leaseRows(schema)).map((r) => r.fencing_token)).toEqual(['2', '2']);
    expect(await inTransaction((trx) => before.leases.fence(trx, ['deals', 'timeline']))).toEqual([]);
    expect(await inTransaction((trx) => after.leases.fence(trx, ['deals', 'timeline']))).toEqual(['deals', 'timeline']);
  });

  it('the fence answers only for the projections asked about that this worker holds', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha', { projections: ['deals', 'timeline'] });
    const beta = worker(schema, 'beta', { projections: ['deals', 'timeline'] });
    await alpha.leases.start();
    await beta.leases.start();
    await alpha.leases.tick();
    await beta.leases.tick();
    expect(alpha.leases.heldNames()).toEqual(['deals']);
    expect(await inTransaction((trx) => alpha.leases.fence(trx, ['timeline']))).toEqual([]);
    expect(await inTransaction((trx) => alpha.leases.fence(trx, ['deals', 'timeline', 'campaigns']))).toEqual(['deals']);
    await expect(inTransaction((trx) => alpha.leases.assertHeld(trx, 'timeline'))).rejects.toMatchObject({
      name: 'LeaseLost',
      projection: 'timeline',
      workerId: 'alpha',
      message: 'Worker alpha no longer holds the lease of projection timeline; the batch was rolled back',
    });
  });
});

describe('worker ids', () => {
  it('takes the fallback id when a live process on this host heartbeats under its id', async () => {
    const schema = freshSchema();
    await migrateLeases(db, schema);
    const heartbeat = (pid: number | null, host: string | null = hostname(), expires = '1 minute') =>
      sql`INSERT INTO ${sql.id(schema, WORKER_TABLE)} (worker_id, seen_at, expires_at, host, pid)
        VALUES ('host-a', clock_timestamp(), clock_timestamp() + ${expires}::interval, ${host}, ${pid})
        ON CONFLICT (worker_id) DO UPDATE SET expires_at = excluded.expires_at, host = excluded.host, pid = excluded.pid`.execute(db);
    const idAfterStart = async (withoutLog = false) => {
      const { leases, logs } = worker(schema, 'host-a', { projections: ['deals'], fallbackWorkerId: 'host-a-2', withoutLog });
      await leases.start();
      await leases.stop({ release: false });
      return { id: leases.workerId, logs };
    };

    await heartbeat(process.ppid);
    const taken = await idAfterStart();
    expect(taken.id).toBe('host-a-2');
    expect(taken.logs).toContainEqual({
      message: 'worker id in use by a live process on this host; using another',
      details: { workerId: 'host-a', instead: 'host-a-2' },
    });
    // A lease set without a log takes the fallback all the same.
    expect((await idAfterStart(true)).id).toBe('host-a-2');

    // Not another live process here: the id is kept.
    await heartbeat(process.pid);
    expect((await idAfterStart()).id).toBe('host-a');
    await heartbeat(deadPid());
    expect((await idAfterStart()).id).toBe('host-a');
    await heartbeat(process.ppid, 'another-host');
    expect((await idAfterStart()).id).toBe('host-a');
    await heartbeat(null);
    expect((await idAfterStart()).id).toBe('host-a');
    await heartbeat(process.ppid, hostname(), '-1 second');
    expect((await idAfterStart()).id).toBe('host-a');
    // No fallback given: the id is kept whoever heartbeats under it.
    await heartbeat(process.ppid);
    const { leases } = worker(schema, 'host-a', { projections: ['deals'] });
    await leases.start();
    expect(leases.workerId).toBe('host-a');
  });

  it('knows which process ids run on this host', () => {
    expect(isRunning(process.pid)).toBe(true);
    expect(isRunning(process.ppid)).toBe(true);
    expect(isRunning(deadPid())).toBe(false);
    // The first process runs for every user: as root the probe succeeds, otherwise it answers EPERM.
    expect(isRunning(1)).toBe(true);
  });

  const noZombieState = process.platform !== 'linux';
  if (noZombieState) console.warn(`zombie process test skipped: it reads a process's state from /proc (Linux only), not here (${process.platform})`);
  it.skipIf(noZombieState)('counts a process that has exited but is not reaped yet (a zombie) as gone', async () => {
    // The shell becomes `sleep 5` (exec), which never reaps its background child: that one turns zombie.
    const shell = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(shell.stdout, 'data')) as [Buffer];
      const child = Number(line.toString().trim());
      await expect.poll(() => procStat(child)?.[0], { timeout: 5_000 }).toBe('Z');
      expect(isRunning(child)).toBe(false);
      expect(isRunning(shell.pid!)).toBe(true);
    } finally {
      shell.kill('SIGKILL');
    }
  });

  it("counts a process the system refuses to signal (EPERM, another user's) as running, one it does not know as gone", () => {
    const refusing = (code: string) => () => {
      throw Object.assign(new Error(`kill: ${code}`), { code });
    };
    expect(isRunning(4242, refusing('EPERM'))).toBe(true);
    expect(isRunning(4242, refusing('ESRCH'))).toBe(false);
  });
});

describe('heartbeats', () => {
  it('counts only live workers in the share, and forgets those gone for over an hour', async () => {
    const schema = freshSchema();
    const alpha = worker(schema, 'alpha');
    await migrateLeases(db, schema);
    const gone = (id: string, ago: string) =>
      sql`INSERT INTO ${sql.id(schema, WORKER_TABLE)} (worker_id, seen_at, expires_at) VALUES (${id}, clock_timestamp(), clock_timestamp() - ${ago}::interval)`.execute(
        db,
      );
    await gone('expired-recently', '5 minutes');
    await gone('gone-long-ago', '2 hours');
    // Neither counts: alpha's share is everything.
    expect((await alpha.leases.start()).acquired.sort()).toEqual(NAMES);
    expect((await workerRows(schema)).map((r) => r.worker_id)).toEqual(['alpha', 'expired-recently']);
  });
});

/** A process id that was just used and is free now. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(child.stdout);
  expect(isRunning(pid)).toBe(false);
  return pid;
}
