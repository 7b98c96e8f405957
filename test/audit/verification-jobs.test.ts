import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerificationJobs, VerificationRunning, type VerificationJobs, type VerificationOutcome } from '../../audit/verification-jobs.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { testSchemas } from '../support/postgres.ts';
import { sleep } from './support.ts';

const schemas = testSchemas('audit_jobs');
let database: SqlDatabase;
let jobs: VerificationJobs;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 3 });
  jobs = await createVerificationJobs(database.db, schemas.read);
});
afterAll(async () => {
  await database?.close();
  await schemas.dropSchemas();
});

/** A run the test finishes by hand. */
const controlledRun = () => {
  let finish!: (outcome: VerificationOutcome & Record<string, unknown>) => void;
  let fail!: (error: Error) => void;
  const outcome = new Promise<VerificationOutcome>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return {
    finish,
    fail,
    run: async (onProgress: (p: { phase: string; done: number; total: number | null }) => void) => {
      onProgress({ phase: 'replay', done: 42, total: null });
      return outcome;
    },
  };
};

const settle = async (id: string) => {
  for (let i = 0; i < 100; i++) {
    const job = await jobs.get(id);
    if (job && job.status !== 'running') return job;
    await sleep(20);
  }
  throw new Error('job did not settle');
};

describe('verification jobs', () => {
  it('records progress, lets a second request join the running job, and stores the result', async () => {
    const control = controlledRun();
    const first = await jobs.start('read_models', 'auditor-1', control.run);
    expect(first.joined).toBe(false);
    const second = await jobs.start('read_models', 'auditor-2', controlledRun().run);
    expect(second).toMatchObject({ id: first.id, joined: true });
    // Another kind is its own job.
    const chains = controlledRun();
    const other = await jobs.start('chains', 'auditor-1', chains.run);
    expect(other.id).not.toBe(first.id);

    for (let i = 0; i < 100 && !(await jobs.get(first.id))?.progress; i++) await sleep(20);
    const running = await jobs.get(first.id);
    expect(running).toMatchObject({
      status: 'running',
      done: false,
      ok: null,
      kind: 'read_models',
      requestedBy: 'auditor-1',
      progress: { phase: 'replay', done: 42 },
    });

    control.finish({ ok: false, differences: 1, position: 12n });
    await first.done;
    const finished = await settle(first.id);
    expect(finished).toMatchObject({ status: 'failed', done: true, ok: false, result: { ok: false, differences: 1, position: '12' } });
    expect(finished.finishedAt).not.toBeNull();

    chains.fail(new Error('database went away'));
    await other.done;
    expect(await jobs.get(other.id)).toMatchObject({ status: 'error', error: 'database went away' });
  });

  it('reads a job whose process stopped heartbeating as abandoned, and starts a new one', async () => {
    const stuck = await jobs.start('read_models', null, controlledRun().run);
    // Let its first progress report (which refreshes the heartbeat) land before stopping the clock.
    for (let i = 0; i < 100 && !(await jobs.get(stuck.id))?.progress; i++) await sleep(20);
    await sql`UPDATE ${sql.id(schemas.read, 'audit_verifications')} SET heartbeat_at = now() - interval '5 minutes' WHERE id = ${stuck.id}`.execute(
      database.db,
    );
    expect((await jobs.get(stuck.id))!.status).toBe('abandoned');
    const next = await jobs.start('read_models', null, async () => ({ ok: true }));
    expect(next.joined).toBe(false);
    await next.done;
    expect((await jobs.get(next.id))!.status).toBe('passed');
  });

  it('does not join a job whose process died (its session lock is gone), however fresh its heartbeat', async () => {
    // Two processes on one server, each marking the jobs it runs with a session lock, as the runtime does.
    const held = new Map<string, SqlDatabase>();
    const sessionLock = async (key: string) => {
      const connection = connectPostgres(schemas.url, { max: 1 });
      await sql`SELECT pg_advisory_lock(hashtext(${key}))`.execute(connection.db);
      held.set(key, connection);
      return async () => {
        held.delete(key);
        await connection.close();
      };
    };
    const first = await createVerificationJobs(database.db, schemas.read, { sessionLock });
    const second = await createVerificationJobs(database.db, schemas.read, { sessionLock });
    const running = await first.start('read_models', null, controlledRun().run);
    expect(running.joined).toBe(false);
    // Alive: the other process joins it.
    expect(await second.start('read_models', null, controlledRun().run)).toMatchObject({ id: running.id, joined: true });
    // kill -9 of the first process: its connections close, the row still says running with a fresh heartbeat.
    await Promise.all([...held.values()].map((connection) => connection.close()));
    held.clear();
    // The backend lets the lock go as it exits, a moment after the connection ends (once in a CI run, after
    // the first look), and a free lock is looked at again 2 s later: seconds, not the heartbeat's minutes.
    let seen = await second.get(running.id);
    for (const deadline = Date.now() + 1_000; seen?.status === 'running' && Date.now() < deadline; seen = await second.get(running.id)) await sleep(20);
    expect(seen!.status).toBe('abandoned');
    const next = await second.start('read_models', null, async () => ({ ok: true }));
    expect(next).toMatchObject({ joined: false });
    expect(next.id).not.toBe(running.id);
    await next.done;
    expect((await second.get(next.id))!.status).toBe('passed');
    expect((await second.get(running.id))!.status).toBe('abandoned');
  });

  it('shows the final progress once finished, however fast the reports came (done equals total)', async () => {
    // Reports faster than progress is written: only the first would be stored while running.
    const compared = await jobs.start('read_models', null, async (onProgress) => {
      for (let done = 1; done <= 37; done++) onProgress({ phase: 'compare', done, total: 37 });
      return { ok: true };
    });
    await compared.done;
    expect(await jobs.get(compared.id)).toMatchObject({ status: 'passed', progress: { phase: 'compare', done: 37, total: 37 } });
    // A chain check counts as it goes, with no total known: the count it ended with is the total.
    const chains = await jobs.start('chains', null, async (onProgress) => {
      onProgress({ phase: 'streams', done: 5000, total: null });
      onProgress({ phase: 'streams', done: 8977, total: null });
      return { ok: false };
    });
    await chains.done;
    expect(await jobs.get(chains.id)).toMatchObject({ status: 'failed', progress: { phase: 'streams', done: 8977, total: 8977 } });
  });

  it('says what to do next about a failed check, from its stored result', async () => {
    const broken = await jobs.start('chains', null, async () => ({
      ok: false,
      firstBroken: { chain: 'stream', stream: 'customer-x', revision: 3, position: 77n, reason: 'hash mismatch' },
    }));
    await broken.done;
    const chains = (await jobs.get(broken.id))!;
    expect(chains.nextSteps.join('\n')).toContain('Do not run `crm rebuild`');
    expect(chains.nextSteps.join('\n')).toContain('stream customer-x revision 3 (position 77)');
    const differing = await jobs.start('read_models', null, async () => ({ ok: false, failedProjections: [] }));
    await differing.done;
    expect((await jobs.get(differing.id))!.nextSteps.join('\n')).toContain('`crm rebuild` rebuilds them from the events');
    const passed = await jobs.start('read_models', null, async () => ({ ok: true }));
    await passed.done;
    expect((await jobs.get(passed.id))!.nextSteps).toEqual([]);
  });

  it('records the anchors a chains job checks, and joins a running job only when they are the same', async () => {
    const anchors = [`7:${'a'.repeat(64)}`, `9:${'b'.repeat(64)}`];
    const control = controlledRun();
    const anchored = await jobs.start('chains', 'auditor-1', control.run, { anchors });
    expect(await jobs.get(anchored.id)).toMatchObject({ status: 'running', anchors });
    // The same anchors: the same question, so the same job.
    expect(await jobs.start('chains', 'auditor-2', controlledRun().run, { anchors: [...anchors] })).toMatchObject({ id: anchored.id, joined: true });
    // Other anchors, or none, or the same in another order: a different answer, refused while it runs rather than a second full pass.
    for (const other of [[anchors[0]!], [], [anchors[1]!, anchors[0]!]]) {
      const refused = await jobs.start('chains', 'auditor-2', controlledRun().run, { anchors: other }).catch((error: unknown) => error);
      expect(refused, JSON.stringify(other)).toBeInstanceOf(VerificationRunning);
      expect((refused as VerificationRunning).id).toBe(anchored.id);
    }
    control.finish({ ok: true });
    await anchored.done;
    const plain = await jobs.start('chains', null, async () => ({ ok: true }));
    expect(plain.joined).toBe(false);
    await plain.done;
    expect(await jobs.get(plain.id)).toMatchObject({ status: 'passed', anchors: [] });
  });

  it('adds the anchors column to a table created before it existed', async () => {
    const old = testSchemas('audit_jobs_old');
    try {
      await sql`CREATE SCHEMA ${sql.id(old.read)}`.execute(database.db);
      await sql`CREATE TABLE ${sql.id(old.read, 'audit_verifications')} (
        id uuid PRIMARY KEY, kind text NOT NULL, status text NOT NULL, requested_by text,
        created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, finished_at timestamptz,
        heartbeat_at timestamptz NOT NULL DEFAULT now(), progress jsonb, result jsonb, error text)`.execute(database.db);
      const upgraded = await createVerificationJobs(database.db, old.read);
      const job = await upgraded.start('chains', null, async () => ({ ok: true }), { anchors: [`1:${'c'.repeat(64)}`] });
      await job.done;
      expect(await upgraded.get(job.id)).toMatchObject({ status: 'passed', anchors: [`1:${'c'.repeat(64)}`] });
    } finally {
      await old.dropSchemas();
    }
  });

  it('knows no job for an unknown or malformed id', async () => {
    expect(await jobs.get(randomUUID())).toBeUndefined();
    expect(await jobs.get('not-a-uuid')).toBeUndefined();
  });
});

describe('verification jobs when their process shuts down', () => {
  it('records a job cut short by a clean stop as such, not as killed or crashed, and leaves a finished one as it ended', async () => {
    // Found with SIGTERM on crm serve 2 s into a verification: the row stayed running and read, after
    // the restart, "stopped (killed or crashed)".
    const own = await createVerificationJobs(database.db, schemas.read);
    const finished = controlledRun();
    const done = await own.start('chains', 'auditor-1', finished.run);
    finished.finish({ ok: true });
    await done.done;
    const cutShort = controlledRun();
    const cut = await own.start('read_models', 'auditor-1', cutShort.run);
    expect((await own.get(cut.id))?.status).toBe('running');
    await own.stop();
    expect(await own.get(cut.id)).toMatchObject({ status: 'abandoned', done: true, error: expect.stringContaining('was shut down before it finished') });
    // The store closing under it afterwards is not its outcome.
    cutShort.fail(new Error('The event store is closed'));
    await cut.done;
    expect(await own.get(cut.id)).toMatchObject({ status: 'abandoned', error: expect.stringContaining('was shut down before it finished') });
    expect(await own.get(done.id)).toMatchObject({ status: 'passed' });
  });
});
