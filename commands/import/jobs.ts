import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Actor } from '../../domain/metadata.ts';
import { isRunning } from '../../shared/processes.ts';
import { createBackoff, pause } from '../../eventstore/backoff.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import type { BatchCommands } from '../batch.ts';
import { checkDefaultOwner } from './default-owner.ts';
import { runImport, type ImportCounts, type ImportOutcome, type RejectedRow } from './importer.ts';
import type { ImportEncoding } from './encoding.ts';
import { parseRecords, type ImportFormat } from './parse.ts';
import type { ImportKind } from './rows.ts';
import type { CommandType } from '../schemas.ts';

/**
 * Imports sent over HTTP (`POST /imports`): the body is spooled to a temporary file as it arrives
 * (bounded: over `maxBytes` the upload stops), then imported in the background by the same loop as
 * `crm import`. Jobs are recorded where every process reads them (`ImportJobRecords`: any replica
 * answers for a job, and one import per key holds across replicas); a job cut short by a crash or a
 * restart reads `failed`, and is finished by sending the same file again, which appends nothing twice.
 * A job that loses the database waits for it (up to DATABASE_AWAITED_MS) and imports the spooled file
 * again from its start, by itself: what was stored counts once.
 *
 * A spool folder is named after the process that owns it (`crm-import-<pid>-...`): one left behind
 * by a process that crashed mid-upload holds up to `maxBytes` on disk, and is removed when the next
 * server starts, while the folders of processes still running (other replicas) are left alone.
 */

export interface ImportJob {
  id: string;
  kind: ImportKind;
  format: ImportFormat;
  /** Who started it (an API key id): one import at a time per owner. */
  owner: string;
  /** The user who owns the customers and deals whose row leaves `owner_id` empty; null: none (such deals are refused). */
  defaultOwner: string | null;
  status: 'running' | 'done' | 'failed';
  bytes: number;
  counts: ImportCounts;
  /** Bad rows with their line numbers, the first `maxReportedRows` of them. */
  rejectedRows: RejectedRow[];
  rejectedRowsTruncated: boolean;
  /** Columns of the file no row's commands read (ImportOutcome.unreadColumns), once it ended. */
  unreadColumns: string[];
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
}

export class ImportTooLarge extends Error {
  constructor(readonly maxBytes: number) {
    super(`The import body is larger than ${maxBytes} bytes`);
    this.name = 'ImportTooLarge';
  }
}

export class ImportStalled extends Error {
  constructor(readonly idleMs: number) {
    super(`The import body sent nothing for ${idleMs} ms`);
    this.name = 'ImportStalled';
  }
}

/** The body ended before it was whole: the client went away (or its connection broke) mid-upload. */
export class ImportAborted extends Error {
  constructor(cause: unknown) {
    super('The upload ended before the whole file came (the connection closed)', { cause });
    this.name = 'ImportAborted';
  }
}

/**
 * The folder uploads are spooled to (the operating system's temporary folder, TMPDIR) has no room
 * left (ENOSPC, EDQUOT): nothing was imported, and sending the file again helps only once its
 * operator has freed space there or pointed TMPDIR at a folder with room.
 */
export class ImportSpoolFull extends Error {
  constructor(
    readonly folder: string,
    cause: NodeJS.ErrnoException,
  ) {
    // The folder is named in the server's log, not to the client (a path of the server's is not the caller's business).
    super(
      `The server's temporary folder for uploads is full (${cause.code}), so the upload could not be written there: ` +
        "its operator must free space in it, or set TMPDIR to a folder with room (the server's log names the folder)",
      { cause },
    );
    this.name = 'ImportSpoolFull';
  }
}

const SPOOL_FULL = new Set(['ENOSPC', 'EDQUOT']);

/** Another server recorded the job as failed while this one waited for the database (its heartbeat went stale). */
export class ImportTakenOver extends Error {
  constructor() {
    super(
      'the database was away longer than a job stays alive unsaved, and another server recorded this import as failed: send the same file again (nothing is appended twice)',
    );
    this.name = 'ImportTakenOver';
  }
}

export class ImportBusy extends Error {
  constructor(readonly runningId: string) {
    super(`Import ${runningId} of the same key is still running; wait for it to finish`);
    this.name = 'ImportBusy';
  }
}

export interface ImportJobs {
  /**
   * Checks the default owner (throws DefaultOwnerRefused), receives the whole body (throws
   * ImportTooLarge / ImportStalled / ImportAborted / ImportBusy; the job is shown, failed, after any
   * but the last), then starts the import and returns at once.
   * `forbidden`: why the caller may not send a command of a type a row becomes (ImportOptions.forbidden).
   * `defaultOwner`, `defaultOwnerHint`: ImportOptions'.
   */
  start(input: {
    kind: ImportKind;
    format: ImportFormat;
    encoding?: ImportEncoding;
    body: Readable;
    actor: Actor;
    owner: string;
    forbidden?: (type: CommandType) => string | undefined;
    defaultOwner?: string;
    defaultOwnerHint?: string;
  }): Promise<ImportJob>;
  /** The job as this process runs it, else as recorded (by any process); undefined when unknown. */
  get(id: string): Promise<ImportJob | undefined>;
  /** Stops running imports between batches and waits for them. */
  close(): Promise<void>;
}

/**
 * Where jobs are recorded, so that any process can answer for them (api/import-job-records.ts): a
 * job's record is claimed before its upload, saved as it goes, finished once.
 */
export interface ImportJobRecords {
  /**
   * Records `job` as running and holds it as this process's, unless its owner has an import running
   * (in any process still alive): then nothing is recorded and that import's id is returned.
   */
  claim(job: ImportJob): Promise<{ busy: string } | undefined>;
  /**
   * Saves the job's progress: bytes, counts, status, and the bad rows added since the last save; false
   * (nothing saved) when the job is no longer recorded as running (another process told it dead).
   */
  save(job: ImportJob): Promise<boolean>;
  /** Saves the job as it ended and lets it go; throws, still holding it, when the save fails. */
  finish(job: ImportJob): Promise<void>;
  /** Lets the job go unsaved (its end could not be recorded): everyone reads it as failed. */
  letGo(job: ImportJob): Promise<void>;
  get(id: string): Promise<ImportJob | undefined>;
}

export interface ImportJobsOptions {
  batch: BatchCommands;
  records: ImportJobRecords;
  maxBytes: number;
  /**
   * An upload that sends nothing for this long is cut (ImportStalled; default 30 s). Uploads are not
   * bounded in time as a whole (a 1 GiB file takes minutes on a slow link), only by their size and this.
   */
  idleMs?: number;
  /** Bad rows kept per job (default 10,000); more are counted, and the report says it was cut. */
  maxReportedRows?: number;
  /** The currency of a row that names none (ImportOptions.currency): the installation's base currency. */
  currency?: string;
  /** Progress is saved at most this often (default 500 ms), and at least every 15 s (the heartbeat). */
  saveIntervalMs?: number;
  /**
   * Opens the file an upload is spooled to, in a new folder of the operating system's temporary
   * folder (TMPDIR); by default that file itself. A test writes it to /dev/full, as a full disk fails.
   */
  openSpool?: (path: string) => Writable;
}

const HEARTBEAT_MS = 15_000;
/** How long the answer to an upload waits for its size to be recorded. */
const UPLOAD_SIZE_SAVED_WITHIN_MS = 2_000;
/**
 * How long the end of a job is tried again while the database is away. Meanwhile the job stays held
 * by this process, so it reads as running rather than as killed; once recorded it reads as it ended.
 */
const END_RECORDED_WITHIN_MS = 10 * 60_000;
/** Tries to record the end before `finish` returns; the rest go on in the background. */
const END_ATTEMPTS_AWAITED = 5;

/** How a job ended: what changes on it then (besides `finishedAt`). */
type JobEnd = Pick<ImportJob, 'status' | 'error'> & Partial<Pick<ImportJob, 'counts' | 'unreadColumns'>>;

const byteLimit = (maxBytes: number, counted: (n: number) => void) => {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      total += chunk.length;
      counted(total);
      if (total > maxBytes) done(new ImportTooLarge(maxBytes));
      else done(null, chunk);
    },
  });
};

/** Passes the body on, and fails it with ImportStalled when no chunk came for `idleMs`. */
const idleBound = (idleMs: number) => {
  let timer: NodeJS.Timeout | undefined;
  const bound: Transform = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      arm();
      done(null, chunk);
    },
    flush(done) {
      clearTimeout(timer);
      done();
    },
    destroy(error, done) {
      clearTimeout(timer);
      done(error);
    },
  });
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => bound.destroy(new ImportStalled(idleMs)), idleMs);
  };
  arm();
  return bound;
};

const SPOOL_FOLDER = /^crm-import-(\d+)-/;

/** Removes the spool folders in `folder` of processes that no longer run; returns their names. */
export async function removeStaleSpools(folder = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(folder).catch(() => [])) {
    const pid = Number(SPOOL_FOLDER.exec(name)?.[1] ?? 0);
    if (pid <= 0 || pid === process.pid || isRunning(pid)) continue;
    await rm(join(folder, name), { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

/** How long a job waits for the database to answer again before it fails (the file is then sent again). */
export const DATABASE_AWAITED_MS = 10 * 60_000;

export function createImportJobs(options: ImportJobsOptions): ImportJobs {
  const { records } = options;
  const maxReported = options.maxReportedRows ?? 10_000;
  const saveIntervalMs = options.saveIntervalMs ?? 500;
  const running = new Map<string, { job: ImportJob; stop: AbortController; done: Promise<void> }>();
  const staleSpoolsRemoved = removeStaleSpools();
  /** Ends still being saved after `finish` returned (the database away); `close` stops and awaits them. */
  const endsBeingSaved = new Set<Promise<void>>();
  const closing = new AbortController();

  /**
   * Saves a running job's progress at most every `saveIntervalMs`, and at least every 15 s so that
   * other processes see it alive; saves never overtake one another or the last one.
   */
  const saver = (job: ImportJob) => {
    let chain: Promise<void> = Promise.resolve();
    let lastSaved = performance.now();
    const save = () => {
      lastSaved = performance.now();
      // A failed save (the database blipped) is retried by the next one; only the last must succeed.
      chain = chain
        .then(() => records.save(job))
        .then(
          () => undefined,
          () => undefined,
        );
      return chain;
    };
    const heartbeat = setInterval(() => void save(), HEARTBEAT_MS);
    heartbeat.unref();
    return {
      changed: () => {
        if (performance.now() - lastSaved >= saveIntervalMs) void save();
      },
      /** Saves now (the upload is in: other processes show its size at once); never rejects. */
      save,
      /**
       * Records how the job ended, then shows it on the job itself: a caller that sees the job ended can
       * start the key's next import at once, in this process or another. Tried a few times before it
       * returns, then again in the background while the database is away (END_RECORDED_WITHIN_MS),
       * the job held meanwhile: let go after a failed save, it read as killed or crashed to every
       * other process while this one ran, and the real cause (the database lost) was gone.
       */
      finish: async (end: JobEnd) => {
        clearInterval(heartbeat);
        await chain;
        const ended: ImportJob = { ...job, ...end, finishedAt: new Date().toISOString() };
        const giveUpAt = performance.now() + END_RECORDED_WITHIN_MS;
        const attempt = async (n: number): Promise<boolean> => {
          try {
            await records.finish(ended);
            return true;
          } catch (error) {
            // Tried again only while the database is away; any other failure, a closing process or the bound lets it go.
            if (!(error instanceof EventStoreUnavailable) || closing.signal.aborted || performance.now() >= giveUpAt) {
              await records.letGo(ended);
              return true;
            }
            await pause(Math.min(200 * n, 5_000), closing.signal);
            return false;
          }
        };
        let n = 1;
        while (n <= END_ATTEMPTS_AWAITED && !(await attempt(n))) n++;
        Object.assign(job, ended);
        if (n > END_ATTEMPTS_AWAITED) {
          const saving = (async () => {
            while (!(await attempt(n))) n++;
          })();
          endsBeingSaved.add(saving);
          void saving.finally(() => endsBeingSaved.delete(saving));
        }
      },
    };
  };

  return {
    async start({ kind, format, encoding, body, actor, owner, forbidden, defaultOwner: given, defaultOwnerHint }) {
      // Before the upload: an owner that is no active user refuses the import, not each of its rows.
      let defaultOwner: string | undefined;
      try {
        defaultOwner = given === undefined ? undefined : await checkDefaultOwner(options.batch, given);
      } catch (error) {
        body.resume();
        throw error;
      }
      const job: ImportJob = {
        id: randomUUID(),
        kind,
        format,
        owner,
        defaultOwner: defaultOwner ?? null,
        status: 'running',
        bytes: 0,
        counts: { kind, rows: 0, imported: 0, alreadyPresent: 0, rejected: 0 },
        rejectedRows: [],
        rejectedRowsTruncated: false,
        unreadColumns: [],
        error: null,
        startedAt: new Date().toISOString(),
        finishedAt: null,
      };
      // Claimed before the upload, so two uploads of one key cannot both start; shown from then on, as
      // the 409 to the same key names it (GET answered 404 for it until the upload ended).
      let claimed: { busy: string } | undefined;
      try {
        claimed = await records.claim(job);
      } catch (error) {
        body.resume();
        throw error;
      }
      if (claimed) {
        body.resume();
        throw new ImportBusy(claimed.busy);
      }
      const stop = new AbortController();
      let finish!: () => void;
      const entry = { job, stop, done: new Promise<void>((resolve) => (finish = resolve)) };
      running.set(job.id, entry);
      const progress = saver(job);
      let folder: string | undefined;
      // A failure of the spool file is this server's; any other error of the pipeline but the bounds' is the body's.
      let spoolFailed = false;
      const spoolIn = tmpdir();
      try {
        folder = await mkdtemp(join(spoolIn, `crm-import-${process.pid}-`));
        await pipeline(
          body,
          idleBound(options.idleMs ?? 30_000),
          byteLimit(options.maxBytes, (n) => {
            job.bytes = n;
            progress.changed();
          }),
          (options.openSpool ?? createWriteStream)(join(folder, `body.${format}`)).once('error', () => (spoolFailed = true)),
        );
      } catch (caught) {
        const code = (caught as NodeJS.ErrnoException).code;
        const error =
          (folder === undefined || spoolFailed) && typeof code === 'string' && SPOOL_FULL.has(code)
            ? new ImportSpoolFull(spoolIn, caught as NodeJS.ErrnoException)
            : folder === undefined || spoolFailed || caught instanceof ImportTooLarge || caught instanceof ImportStalled
              ? caught
              : new ImportAborted(caught);
        await progress.finish({
          status: 'failed',
          error: `${error instanceof Error ? error.message : String(error)}; nothing was imported: send the file again`,
        });
        running.delete(job.id);
        finish();
        if (folder !== undefined) await rm(folder, { recursive: true, force: true });
        throw error;
      }
      // Awaited, so that the 202 and another replica's GET agree on the size; bounded, as the database may be away
      // (the heartbeat and the end save it then).
      const sized = new AbortController();
      await Promise.race([progress.save(), pause(UPLOAD_SIZE_SAVED_WITHIN_MS, sized.signal)]);
      sized.abort();
      const spooled = folder;
      const file = join(spooled, `body.${format}`);
      /**
       * The import of the spooled file; after a database fault, again from the file's start once the
       * database answers (a reset ended a job of 20,000 rows at its 1,000th, the file deleted). A rerun
       * counts the rows this job stored before as present: they are taken off; the rows it refused
       * before are not reported twice. Before each rerun the job must still be this process's: after an
       * outage longer than IMPORT_ABANDONED_AFTER_MS another server may have recorded it as failed (and
       * started the key's next import), and then this one stops.
       */
      const importSpooled = async (): Promise<ImportOutcome> => {
        const backoff = createBackoff({ initialMs: 200, maxMs: 5_000 });
        /** Rows stored by this job's earlier attempts (each attempt's own, from its raw counts). */
        let storedBefore = 0;
        let attempt: ImportCounts | undefined;
        /** The last line refused and reported by an earlier attempt: a rerun refuses the same rows again. */
        let reportedUpTo = 0;
        let outageSince: number | undefined;
        const ours = <C extends ImportCounts>(counts: C): C => ({ ...counts, alreadyPresent: Math.max(0, counts.alreadyPresent - storedBefore) });
        for (;;) {
          try {
            const outcome = await runImport(options.batch, parseRecords(createReadStream(file), format, encoding), {
              kind,
              actor,
              ...(forbidden ? { forbidden } : {}),
              ...(defaultOwner !== undefined ? { defaultOwner } : {}),
              ...(options.currency !== undefined ? { currency: options.currency } : {}),
              ...(defaultOwnerHint !== undefined ? { defaultOwnerHint } : {}),
              signal: stop.signal,
              onRejected: (row) => {
                if (row.line <= reportedUpTo) return;
                if (job.rejectedRows.length < maxReported) job.rejectedRows.push(row);
                else job.rejectedRowsTruncated = true;
              },
              onProgress: (counts) => {
                attempt = counts;
                job.counts = ours(counts);
                if (outageSince !== undefined) {
                  outageSince = undefined;
                  backoff.reset();
                  job.error = null;
                }
                progress.changed();
              },
            });
            return ours(outcome);
          } catch (error) {
            if (!(error instanceof EventStoreUnavailable) || stop.signal.aborted) throw error;
            outageSince ??= performance.now();
            if (attempt) storedBefore += attempt.imported - attempt.alreadyPresent;
            attempt = undefined;
            reportedUpTo = Math.max(reportedUpTo, job.rejectedRows.at(-1)?.line ?? 0);
            job.error = `waiting for the database (${error.message}); the import goes on by itself, from the start of the file (nothing is stored twice)`;
            progress.changed();
            // Until the database answers (the job's record is saved) and says the job is still ours.
            for (let held: boolean | undefined; held === undefined;) {
              if (performance.now() - outageSince >= DATABASE_AWAITED_MS) throw error;
              await pause(backoff.next(), stop.signal);
              if (stop.signal.aborted)
                throw new Error('stopped by a shutdown while waiting for the database: send the same file again to finish (nothing is appended twice)', {
                  cause: error,
                });
              held = await records.save(job).catch(() => undefined);
              if (held === false) throw new ImportTakenOver();
            }
          }
        }
      };
      void importSpooled()
        .then(
          (outcome): JobEnd => ({
            counts: {
              kind: outcome.kind,
              rows: outcome.rows,
              imported: outcome.imported,
              alreadyPresent: outcome.alreadyPresent,
              rejected: outcome.rejected,
            },
            unreadColumns: outcome.unreadColumns,
            status: outcome.interrupted || outcome.unreadableFrom ? 'failed' : 'done',
            error: outcome.interrupted
              ? 'stopped by a shutdown: send the same file again to finish (nothing is appended twice)'
              : outcome.unreadableFrom
                ? `line ${outcome.unreadableFrom.line}: ${outcome.unreadableFrom.reason}`
                : null,
          }),
          (error: unknown): JobEnd => ({
            status: 'failed',
            error:
              error instanceof EventStoreUnavailable
                ? `${error.message}; waited ${DATABASE_AWAITED_MS / 60_000} minutes for the database: send the same file again once it answers (nothing is appended twice)`
                : error instanceof Error
                  ? error.message
                  : String(error),
          }),
        )
        .then(async (end) => {
          // Removed before the end shows: a job seen ended has left nothing behind.
          await rm(spooled, { recursive: true, force: true }).catch(() => undefined);
          await progress.finish(end);
          running.delete(job.id);
          finish();
        });
      return job;
    },
    get: async (id) => running.get(id)?.job ?? records.get(id),
    async close() {
      await staleSpoolsRemoved;
      for (const r of running.values()) r.stop.abort();
      await Promise.all([...running.values()].map((r) => r.done));
      // An end still being saved is tried once more, then let go: the process is stopping.
      closing.abort();
      await Promise.all(endsBeingSaved);
    },
  };
}
