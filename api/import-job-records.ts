import { sql, type Kysely } from 'kysely';
import { createTableOnce } from '../audit/create-table.ts';
import type { ImportJob, ImportJobRecords } from '../commands/import/jobs.ts';
import { workLiveness, type WorkLivenessOptions } from '../projections/work-liveness.ts';

/**
 * HTTP import jobs kept in `<read schema>.import_jobs` (and their bad rows in
 * `import_job_rejected_rows`), so that every API replica answers `GET /imports/:id` and refuses a
 * second import of a key that runs one anywhere, whichever process took the upload. The process
 * running a job holds it (projections/work-liveness.ts) and refreshes `heartbeat_at` as it saves
 * progress; a job whose process is gone reads `failed`, saying to send the file again.
 */

/** A heartbeat older than this means the process running the import is gone (it saves at least every 15 s). */
export const IMPORT_ABANDONED_AFTER_MS = 60_000;

/**
 * A finished job is kept this long at most: its bad rows quote the refused cells (an email address
 * may be one), and a forget does not reach them.
 */
export const IMPORT_REPORT_KEPT_DAYS = 7;

const ORPHANED = 'the server importing it stopped (killed or crashed) before it finished: send the same file again (nothing is appended twice)';

export interface ImportJobRecordsOptions extends WorkLivenessOptions {
  /** Jobs kept in all (default 100). */
  keepJobs?: number;
  /** Jobs kept per key (default 20): a key that runs import after import drops its own oldest. */
  keepJobsPerKey?: number;
}

interface JobRow {
  id: string;
  owner: string;
  kind: ImportJob['kind'];
  format: ImportJob['format'];
  default_owner: string | null;
  status: ImportJob['status'];
  bytes: string;
  counts: ImportJob['counts'];
  rejected_rows_truncated: boolean;
  unread_columns: string[] | null;
  error: string | null;
  started_at: Date;
  finished_at: Date | null;
  heartbeat_at: Date;
  now: Date;
}

const lockKey = (id: string) => `crm-import:${id}`;

export function createImportJobRecords(db: Kysely<unknown>, schema: string, options: ImportJobRecordsOptions = {}): ImportJobRecords {
  const jobs = sql.id(schema, 'import_jobs');
  const rejected = sql.id(schema, 'import_job_rejected_rows');
  // Created on the first import, which several replicas may receive at once; tried again after a failure.
  let created: Promise<void> | undefined;
  const tables = (): Promise<void> => {
    created ??= createTables().catch((error: unknown) => {
      created = undefined;
      throw error;
    });
    return created;
  };
  const createTables = () =>
    createTableOnce(
      db,
      schema,
      'import_jobs',
      sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`,
      sql`CREATE TABLE IF NOT EXISTS ${jobs} (
        seq bigserial UNIQUE,
        id uuid PRIMARY KEY,
        owner text NOT NULL,
        kind text NOT NULL,
        format text NOT NULL,
        default_owner text,
        status text NOT NULL,
        bytes bigint NOT NULL DEFAULT 0,
        counts jsonb NOT NULL,
        rejected_rows_truncated boolean NOT NULL DEFAULT false,
        error text,
        started_at timestamptz NOT NULL,
        finished_at timestamptz,
        heartbeat_at timestamptz NOT NULL DEFAULT now()
      )`,
      sql`CREATE INDEX IF NOT EXISTS import_jobs_owner ON ${jobs} (owner, seq)`,
      sql`CREATE TABLE IF NOT EXISTS ${rejected} (
        job_id uuid NOT NULL REFERENCES ${jobs} (id) ON DELETE CASCADE,
        n integer NOT NULL,
        line integer NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (job_id, n)
      )`,
      // Added after the first release: tables created before lack it.
      sql`ALTER TABLE ${jobs} ADD COLUMN IF NOT EXISTS unread_columns jsonb`,
    );
  const keepJobs = options.keepJobs ?? 100;
  const keepJobsPerKey = options.keepJobsPerKey ?? 20;
  const liveness = workLiveness(db, options);
  const releases = new Map<string, () => Promise<void>>();
  /** Bad rows stored so far, per job saved from this process. */
  const rejectedSaved = new Map<string, number>();

  /**
   * Jobs that ended more than the kept days ago, with their bad rows. A job still recorded as running
   * whose heartbeat is that old ended then, killed with its process: kept for good before (with the
   * addresses its bad rows quote) when its key never imported again.
   */
  const expire = (handle: Kysely<unknown>) =>
    sql`DELETE FROM ${jobs} WHERE CASE WHEN status = 'running' THEN heartbeat_at ELSE finished_at END < now() - make_interval(days => ${IMPORT_REPORT_KEPT_DAYS})`.execute(
      handle,
    );

  /** Records a job told dead as failed (only if still running: it may have ended meanwhile), so the table says what the API says. */
  const recordOrphaned = (handle: Kysely<unknown>, id: string) =>
    sql`UPDATE ${jobs} SET status = 'failed', error = ${ORPHANED}, finished_at = heartbeat_at WHERE id = ${id} AND status = 'running'`.execute(handle);

  const isDead = async (handle: Kysely<unknown>, row: Pick<JobRow, 'id' | 'heartbeat_at' | 'now'>): Promise<boolean> =>
    row.now.getTime() - row.heartbeat_at.getTime() > IMPORT_ABANDONED_AFTER_MS || (await liveness.abandoned(handle, lockKey(row.id)));

  /**
   * Saves the job while it is recorded as running: a job another process told dead (its heartbeat
   * stale through a long outage) is not brought back to life, and false says so.
   */
  const write = async (job: ImportJob): Promise<boolean> => {
    const from = rejectedSaved.get(job.id) ?? 0;
    const added = job.rejectedRows.slice(from);
    const saved = await db.transaction().execute(async (trx) => {
      const updated = await sql`UPDATE ${jobs} SET status = ${job.status}, bytes = ${job.bytes}, counts = ${JSON.stringify(job.counts)}::jsonb,
          rejected_rows_truncated = ${job.rejectedRowsTruncated}, unread_columns = ${JSON.stringify(job.unreadColumns)}::jsonb,
          error = ${job.error}, finished_at = ${job.finishedAt}::timestamptz,
          heartbeat_at = now()
        WHERE id = ${job.id} AND status = 'running'`.execute(trx);
      if (Number(updated.numAffectedRows ?? 0) === 0) return false;
      if (added.length > 0) {
        await sql`INSERT INTO ${rejected} (job_id, n, line, reason)
          SELECT ${job.id}::uuid, n, line, reason
            FROM unnest(${added.map((_, i) => from + i)}::int[], ${added.map((r) => r.line)}::int[], ${added.map((r) => r.reason)}::text[]) AS r(n, line, reason)
          ON CONFLICT DO NOTHING`.execute(trx);
      }
      return true;
    });
    if (saved) rejectedSaved.set(job.id, from + added.length);
    return saved;
  };

  /** Lets go of a job this process holds: its end saved, or given up on. */
  const letGo = async (job: ImportJob): Promise<void> => {
    rejectedSaved.delete(job.id);
    const release = releases.get(job.id);
    releases.delete(job.id);
    await release?.().catch(() => undefined);
  };

  return {
    async claim(job) {
      await tables();
      // Held from before the row exists, so no other process ever sees it running and unheld.
      const release = await liveness.hold(lockKey(job.id));
      try {
        const busy = await db.transaction().execute(async (trx) => {
          // One import per key in the deployment: two replicas given uploads of one key take turns here.
          await sql`SELECT pg_advisory_xact_lock(hashtext(${`import_jobs:${schema}:${job.owner}`}))`.execute(trx);
          const { rows } = await sql<Pick<JobRow, 'id' | 'heartbeat_at' | 'now'>>`
            SELECT id, heartbeat_at, now() AS now FROM ${jobs} WHERE owner = ${job.owner} AND status = 'running' ORDER BY seq`.execute(trx);
          for (const row of rows) {
            if (!(await isDead(trx, row))) return row.id;
            await recordOrphaned(trx, row.id);
          }
          await sql`INSERT INTO ${jobs} (id, owner, kind, format, default_owner, status, bytes, counts, started_at)
            VALUES (${job.id}, ${job.owner}, ${job.kind}, ${job.format}, ${job.defaultOwner}, 'running', ${job.bytes},
                    ${JSON.stringify(job.counts)}::jsonb, ${job.startedAt}::timestamptz)`.execute(trx);
          // The latest of this key, then the latest of all, none older than a week; running jobs stay (a finished job's bad rows go with it).
          await expire(trx);
          await sql`DELETE FROM ${jobs} WHERE status <> 'running' AND owner = ${job.owner}
            AND seq < (SELECT min(seq) FROM (SELECT seq FROM ${jobs} WHERE owner = ${job.owner} ORDER BY seq DESC LIMIT ${keepJobsPerKey}) AS kept)`.execute(
            trx,
          );
          await sql`DELETE FROM ${jobs} WHERE status <> 'running'
            AND seq < (SELECT min(seq) FROM (SELECT seq FROM ${jobs} ORDER BY seq DESC LIMIT ${keepJobs}) AS kept)`.execute(trx);
          return undefined;
        });
        if (busy !== undefined) {
          await release();
          return { busy };
        }
      } catch (error) {
        await release().catch(() => undefined);
        throw error;
      }
      releases.set(job.id, release);
      return undefined;
    },

    save: write,

    async finish(job) {
      // Held until its end is saved: let go with the row still `running`, it read as killed or crashed.
      // A job recorded as failed meanwhile by another process keeps that end.
      await write(job);
      await letGo(job);
    },

    letGo,

    async get(id) {
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) return undefined;
      await tables();
      await expire(db);
      const read = async () => (await sql<JobRow>`SELECT *, now() AS now FROM ${jobs} WHERE id = ${id}`.execute(db)).rows[0];
      let row = await read();
      if (!row) return undefined;
      let dead = row.status === 'running' && (await isDead(db, row));
      if (dead) {
        // Told after a look that takes seconds (a free lock is looked at again): a job that ended
        // meanwhile saved its end, then let its lock go, and is not dead.
        const again = await read();
        if (again && again.status !== 'running') [row, dead] = [again, false];
        else await recordOrphaned(db, id);
      }
      const { rows: bad } = await sql<{ line: number; reason: string }>`SELECT line, reason FROM ${rejected} WHERE job_id = ${id} ORDER BY n`.execute(db);
      return {
        id: row.id,
        kind: row.kind,
        format: row.format,
        owner: row.owner,
        defaultOwner: row.default_owner,
        status: dead ? 'failed' : row.status,
        bytes: Number(row.bytes),
        counts: row.counts,
        rejectedRows: bad,
        rejectedRowsTruncated: row.rejected_rows_truncated,
        unreadColumns: row.unread_columns ?? [],
        error: dead ? ORPHANED : row.error,
        startedAt: row.started_at.toISOString(),
        finishedAt: dead ? row.heartbeat_at.toISOString() : (row.finished_at?.toISOString() ?? null),
      };
    },
  };
}
