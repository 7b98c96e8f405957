import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { PERSONAL_COLUMNS } from '../projections/read-model-copies.ts';
import { MATCH_KEY_COLUMN } from '../projections/read-models/match-keys.ts';
import { workLiveness, type WorkLivenessOptions } from '../projections/work-liveness.ts';
import { createTableOnce } from './create-table.ts';
import type { ChainsVerification } from './sql/chain.ts';
import type { CheckpointAhead } from '../projections/checkpoints.ts';
import { chainsNextSteps, readModelsNextSteps } from './summary.ts';
import type { FarMerge, UnmatchedMerge } from './sql/merges.ts';
import type { ReplayFailure } from './verify.ts';

/**
 * Background verification jobs, kept in `<read schema>.audit_verifications` so that any API process
 * can answer `GET /audit/verify/:id`, whichever process runs the job. The running process refreshes
 * `heartbeat_at` with each progress report; a job whose heartbeat stopped (its process died) reads as
 * `abandoned` rather than running forever.
 *
 * A heartbeat alone takes a minute to tell: a server killed mid-verification and restarted answered
 * `POST /audit/verify` by joining the dead job, which read `running` until its heartbeat aged and then
 * `abandoned`, never with a result. So the process running a job also holds it as alive where it can
 * be told at once (projections/work-liveness.ts). A job found dead is recorded as abandoned and not joined.
 */
export type VerificationKind = 'read_models' | 'chains';
export type VerificationStatus = 'queued' | 'running' | 'passed' | 'failed' | 'error' | 'abandoned';

export interface VerificationProgress {
  phase: string;
  done: number;
  total: number | null;
}

export interface VerificationJob {
  id: string;
  kind: VerificationKind;
  status: VerificationStatus;
  /** True once the job will not change any more (passed, failed, error or abandoned). */
  done: boolean;
  /** The verdict once finished: true = passed, false = a difference or broken link; null otherwise. */
  ok: boolean | null;
  requestedBy: string | null;
  /** The chain anchors the job checks (`<position>:<hash>`), as asked; empty when none. */
  anchors: string[];
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  progress: VerificationProgress | null;
  /** The summary (verify.ts / chain.ts) once finished. */
  result: unknown;
  /** What to do about a failed check (summary.ts); empty otherwise. */
  nextSteps: string[];
  error: string | null;
}

/** A heartbeat older than this means the process running the job is gone. */
export const ABANDONED_AFTER_MS = 60_000;
/** Progress is written at most this often, so a fast replay does not become a write storm. */
const PROGRESS_INTERVAL_MS = 500;

export async function migrateVerificationJobs(db: Kysely<unknown>, schema: string): Promise<void> {
  // Created on the first verification request, which several API replicas may receive at once.
  await createTableOnce(
    db,
    schema,
    'audit_verifications',
    sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`,
    sql`
    CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'audit_verifications')} (
      id uuid PRIMARY KEY,
      kind text NOT NULL,
      status text NOT NULL,
      requested_by text,
      created_at timestamptz NOT NULL DEFAULT now(),
      started_at timestamptz,
      finished_at timestamptz,
      heartbeat_at timestamptz NOT NULL DEFAULT now(),
      progress jsonb,
      result jsonb,
      error text
    )`,
    // Added after the first release: tables created before lack it.
    sql`ALTER TABLE ${sql.id(schema, 'audit_verifications')} ADD COLUMN IF NOT EXISTS anchors jsonb`,
  );
}

interface JobRow {
  id: string;
  kind: VerificationKind;
  status: VerificationStatus;
  requested_by: string | null;
  anchors: string[] | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  heartbeat_at: Date;
  progress: VerificationProgress | null;
  result: unknown;
  error: string | null;
  now: Date;
}

const toJob = (row: JobRow): VerificationJob => {
  const stale = row.now.getTime() - row.heartbeat_at.getTime() > ABANDONED_AFTER_MS;
  const live = row.status === 'running' || row.status === 'queued';
  const status: VerificationStatus = live && stale ? 'abandoned' : row.status;
  return {
    id: row.id,
    kind: row.kind,
    status,
    done: status !== 'running' && status !== 'queued',
    ok: status === 'passed' ? true : status === 'failed' ? false : null,
    requestedBy: row.requested_by,
    anchors: row.anchors ?? [],
    createdAt: row.created_at.toISOString(),
    startedAt: row.started_at?.toISOString() ?? null,
    finishedAt: row.finished_at?.toISOString() ?? null,
    progress: row.progress,
    result: row.result,
    nextSteps: status === 'failed' ? nextStepsOf(row.kind, row.result) : [],
    error: row.error,
  };
};

/** The advice for a failed job, from its stored result. */
const nextStepsOf = (kind: VerificationKind, result: unknown): string[] => {
  const stored = (result ?? {}) as {
    ok?: boolean;
    firstBroken?: ChainsVerification['firstBroken'];
    failedProjections?: string[];
    checkpointsAhead?: CheckpointAhead[];
    replayFailures?: ReplayFailure[];
    differences?: number;
    unmatchedMerges?: UnmatchedMerge[] | null;
    farMerges?: FarMerge[] | null;
  };
  return kind === 'chains'
    ? chainsNextSteps({ ok: false, ...(stored.firstBroken ? { firstBroken: stored.firstBroken } : {}) })
    : readModelsNextSteps({
        ok: false,
        failedProjections: stored.failedProjections ?? [],
        checkpointsAhead: stored.checkpointsAhead ?? [],
        replayFailures: stored.replayFailures ?? [],
        ...(stored.differences !== undefined ? { differences: stored.differences } : {}),
        unmatchedMerges: stored.unmatchedMerges ?? null,
        farMerges: stored.farMerges ?? null,
      });
};

/** A finished verification: `ok` decides passed or failed. */
export interface VerificationOutcome {
  ok: boolean;
}

export type VerificationRun = (onProgress: (progress: VerificationProgress) => void) => Promise<VerificationOutcome>;

export interface StartOptions {
  /** The chain anchors the run checks, as `<position>:<hash>`: recorded with the job, and part of what a request joins. */
  anchors?: readonly string[];
}

export interface VerificationJobs {
  /**
   * Records the job and starts it in this process, or joins the job of that kind already running
   * with the same anchors; resolves with its id at once. Throws `VerificationRunning` while one of
   * that kind runs with other anchors.
   */
  start(
    kind: VerificationKind,
    requestedBy: string | null,
    run: VerificationRun,
    options?: StartOptions,
  ): Promise<{ id: string; done: Promise<void>; joined: boolean }>;
  get(id: string): Promise<VerificationJob | undefined>;
  /**
   * The process stops (a clean shutdown): the jobs it runs are recorded as ended by that, not left
   * `running` to read later as killed or crashed.
   */
  stop(): Promise<void>;
}

/**
 * A job of the same kind is running with other anchors. Joining it would answer a question that was
 * not asked (its anchors, not these), and starting another beside it would let callers run any
 * number of full passes over the events at once: the caller asks again once it has finished.
 */
export class VerificationRunning extends Error {
  constructor(
    readonly id: string,
    readonly kind: VerificationKind,
  ) {
    super(`A ${kind} verification with other anchors is running (${id}); start this one when it has finished.`);
    this.name = 'VerificationRunning';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** How a running job is told alive (projections/work-liveness.ts). */
export type VerificationJobsOptions = WorkLivenessOptions;

/** The lock a job's process holds while it runs (`SessionLock`); free means the process is gone. */
const jobLockKey = (id: string) => `crm-verification:${id}`;

const ORPHANED = 'the process running it stopped (killed or crashed) before it finished; start the verification again';
const SHUT_DOWN = 'the server running it was shut down before it finished; start the verification again';

/**
 * Masks the results stored before a column was known to be personal (the customers' match keys, a
 * duplicate group's key): the table is never erased by a forget, so they are rewritten in place, once
 * per process. Results are few (one per verification asked for).
 */
async function maskStoredResults(db: Kysely<unknown>, table: ReturnType<typeof sql.id>): Promise<void> {
  const { rows } = await sql<{
    id: string;
    result: string;
  }>`SELECT id, result::text AS result FROM ${table} WHERE status = 'failed' AND result IS NOT NULL`.execute(db);
  for (const row of rows) {
    const stored = JSON.parse(row.result) as unknown;
    const masked = JSON.stringify(stored, storedResult);
    if (masked !== JSON.stringify(stored)) await sql`UPDATE ${table} SET result = ${masked}::jsonb WHERE id = ${row.id}`.execute(db);
  }
}

export async function createVerificationJobs(db: Kysely<unknown>, schema: string, options: VerificationJobsOptions = {}): Promise<VerificationJobs> {
  await migrateVerificationJobs(db, schema);
  const table = sql.id(schema, 'audit_verifications');
  await maskStoredResults(db, table);
  const liveness = workLiveness(db, options);
  /** Whether a job that reads running (fresh heartbeat) was left by a dead process. */
  const orphaned = (handle: Kysely<unknown>, id: string): Promise<boolean> => liveness.abandoned(handle, jobLockKey(id));

  const update = (id: string, set: ReturnType<typeof sql>) => sql`UPDATE ${table} SET ${set}, heartbeat_at = now() WHERE id = ${id}`.execute(db);
  /** A job's end, unless a shutdown recorded it first (the store closing under it is not its outcome). */
  const finishIfRunning = (id: string, set: ReturnType<typeof sql>) =>
    sql`UPDATE ${table} SET ${set}, heartbeat_at = now() WHERE id = ${id} AND status = 'running'`.execute(db);
  /** Records a job as abandoned, only if still running: one that ended meanwhile keeps its result. */
  const abandon = (handle: Kysely<unknown>, id: string, why: string) =>
    sql`UPDATE ${table} SET status = 'abandoned', finished_at = now(), error = ${why} WHERE id = ${id} AND status = 'running'`.execute(handle);
  /** Jobs this process runs: what a shutdown records as ended by it. */
  const own = new Set<string>();

  return {
    async start(kind, requestedBy, run, startOptions = {}) {
      const fresh = randomUUID();
      const anchors = startOptions.anchors && startOptions.anchors.length > 0 ? [...startOptions.anchors] : null;
      // Held from before the row exists, so no other process ever sees it running and unlocked.
      const release = await liveness.hold(jobLockKey(fresh));
      const finish = () => release().catch(() => undefined);
      // One running job per kind in the deployment: a second request joins it instead of starting
      // another full replay (each costs a shadow schema and a pass over every event).
      let running: string | undefined;
      try {
        running = await db.transaction().execute(async (trx) => {
          await sql`SELECT pg_advisory_xact_lock(hashtext(${`audit_verifications:${schema}:${kind}`}))`.execute(trx);
          const { rows } = await sql<{ id: string; anchors: string[] | null }>`
            SELECT id, anchors FROM ${table}
             WHERE kind = ${kind} AND status = 'running' AND heartbeat_at > now() - make_interval(secs => ${ABANDONED_AFTER_MS / 1000})
             ORDER BY created_at DESC`.execute(trx);
          for (const row of rows) {
            if (await orphaned(trx, row.id)) {
              // Only if still running: told dead after a look that takes seconds, it may have ended meanwhile.
              await abandon(trx, row.id, ORPHANED);
              continue;
            }
            if (JSON.stringify(row.anchors ?? null) !== JSON.stringify(anchors)) throw new VerificationRunning(row.id, kind);
            return row.id;
          }
          await sql`INSERT INTO ${table} (id, kind, status, requested_by, started_at, anchors)
            VALUES (${fresh}, ${kind}, 'running', ${requestedBy}, now(), ${anchors === null ? null : JSON.stringify(anchors)}::jsonb)`.execute(trx);
          return undefined;
        });
      } catch (error) {
        await finish();
        throw error;
      }
      if (running) {
        await finish();
        return { id: running, done: Promise.resolve(), joined: true };
      }
      const id = fresh;
      let lastWrite = Number.NEGATIVE_INFINITY;
      let pending: Promise<unknown> = Promise.resolve();
      /** The last report, written or not: a finished job shows it. */
      let latest: VerificationProgress | null = null;
      const onProgress = (progress: VerificationProgress) => {
        latest = progress;
        const now = performance.now();
        if (now - lastWrite < PROGRESS_INTERVAL_MS) return;
        lastWrite = now;
        // Chained so progress writes never overtake one another or the final status.
        pending = pending.then(() => update(id, sql`progress = ${JSON.stringify(progress)}::jsonb`)).catch(() => undefined);
      };
      // Phases without progress reports (the table comparison) still prove the process is alive.
      const heartbeat = setInterval(() => {
        pending = pending.then(() => sql`UPDATE ${table} SET heartbeat_at = now() WHERE id = ${id}`.execute(db)).catch(() => undefined);
      }, ABANDONED_AFTER_MS / 4);
      heartbeat.unref();
      own.add(id);
      const done = (async () => {
        try {
          const outcome = await run(onProgress);
          await pending;
          // The throttle may have skipped the last reports: a finished job shows where it ended, its count as the total.
          const final = finalProgress(latest);
          await finishIfRunning(
            id,
            sql`status = ${outcome.ok ? 'passed' : 'failed'}, finished_at = now(), result = ${JSON.stringify(outcome, storedResult)}::jsonb,
                progress = ${final === null ? null : JSON.stringify(final)}::jsonb`,
          );
        } catch (error) {
          await pending;
          // Where it stopped, as reported last.
          await finishIfRunning(
            id,
            sql`status = 'error', finished_at = now(), error = ${error instanceof Error ? error.message : String(error)},
                progress = ${latest === null ? null : JSON.stringify(latest)}::jsonb`,
          ).catch(() => undefined);
        } finally {
          own.delete(id);
          clearInterval(heartbeat);
          await finish();
        }
      })();
      return { id, done, joined: false };
    },

    async get(id) {
      if (!UUID.test(id)) return undefined;
      const read = async () => (await sql<JobRow>`SELECT *, now() AS now FROM ${table} WHERE id = ${id}`.execute(db)).rows[0];
      const row = await read();
      if (!row) return undefined;
      const job = toJob(row);
      // Running by its heartbeat: its process may still be gone (read as such, recorded by the next start).
      if (job.status === 'running' && (await orphaned(db, id))) {
        // Told after a look that takes seconds: a job that ended meanwhile stored its result, then let its lock go.
        const again = await read();
        if (again && again.status !== 'running') return toJob(again);
        return { ...job, status: 'abandoned', done: true, error: ORPHANED };
      }
      return job;
    },

    async stop() {
      const ids = [...own];
      own.clear();
      for (const id of ids) await abandon(db, id, SHUT_DOWN).catch(() => undefined);
    },
  };
}

/**
 * A finished job's progress: its last report, with the count as the total where none was known (a
 * chain check counts as it goes), so that `done` equals `total`.
 */
export const finalProgress = (last: VerificationProgress | null): VerificationProgress | null =>
  last === null ? null : { ...last, total: last.total ?? last.done };

/** Summaries carry bigints (positions); they go out as decimal strings, like every position in the API. */
export const jsonSafe = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

/** What a stored result shows instead of a personal value: the column is named, its content is not. */
export const PERSONAL_VALUE = '[personal data]';

/**
 * Read-model columns holding personal data, by table: those a forget erases in a copy
 * (`PERSONAL_COLUMNS`), the customers' match keys (a name's words, an address, a phone's digits) and
 * the duplicate groups' shared key, which is also part of their row key.
 */
const PERSONAL_IN_RESULTS: Readonly<Record<string, readonly string[]>> = {
  ...PERSONAL_COLUMNS,
  customers: [...(PERSONAL_COLUMNS.customers ?? []), ...Object.values(MATCH_KEY_COLUMN)],
  customer_duplicate_groups: ['match_key'],
};

const masked = (value: unknown): unknown => (value === null || value === undefined ? value : PERSONAL_VALUE);

/**
 * JSON replacer of stored results: results outlive a forget (they sit in a table nobody erases), so
 * a differing personal column keeps its name but not its values, and a row key made of personal data
 * (a duplicate group's) keeps its other parts. `crm verify` prints the values on the operator's terminal only.
 */
function storedResult(this: unknown, key: string, value: unknown): unknown {
  const table = (this as { table?: unknown } | null)?.table;
  const personal = typeof table === 'string' ? (PERSONAL_IN_RESULTS[table] ?? []) : [];
  if (key === 'columns' && Array.isArray(value) && personal.length > 0) {
    return value.map((c: { column: string; live: unknown; replayed: unknown }) =>
      personal.includes(c.column) ? { ...c, live: masked(c.live), replayed: masked(c.replayed) } : c,
    );
  }
  if (key === 'key' && value !== null && typeof value === 'object' && !Array.isArray(value) && personal.length > 0) {
    return Object.fromEntries(Object.entries(value).map(([column, part]) => [column, personal.includes(column) ? masked(part) : part]));
  }
  return jsonSafe(key, value);
}
