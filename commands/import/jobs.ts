import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Actor } from '../../domain/metadata.ts';
import { isRunning } from '../../shared/processes.ts';
import type { BatchCommands } from '../batch.ts';
import { checkDefaultOwner } from './default-owner.ts';
import { runImport, type ImportCounts, type RejectedRow } from './importer.ts';
import type { ImportEncoding } from './encoding.ts';
import { parseRecords, type ImportFormat } from './parse.ts';
import type { ImportKind } from './rows.ts';
import type { CommandType } from '../schemas.ts';

/**
 * Imports sent over HTTP (`POST /imports`): the body is spooled to a temporary file as it arrives
 * (bounded: over `maxBytes` the upload stops), then imported in the background by the same loop as
 * `crm import`. Jobs live in this process's memory (the latest `keepJobsPerKey` of each key, and
 * `keepJobs` in all); a job cut short by a restart is finished by sending the same file again, which
 * appends nothing twice.
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
  get(id: string): ImportJob | undefined;
  /** Stops running imports between batches and waits for them. */
  close(): Promise<void>;
}

export interface ImportJobsOptions {
  batch: BatchCommands;
  maxBytes: number;
  /**
   * An upload that sends nothing for this long is cut (ImportStalled; default 30 s). Uploads are not
   * bounded in time as a whole (a 1 GiB file takes minutes on a slow link), only by their size and this.
   */
  idleMs?: number;
  /** Jobs kept in all (default 100: each holds up to `maxReportedRows` bad rows in memory). */
  keepJobs?: number;
  /**
   * Finished jobs kept per key (default 20): a key that runs import after import drops its own oldest;
   * with one bound for all, one key could push every other key's report out (now it takes five keys).
   */
  keepJobsPerKey?: number;
  maxReportedRows?: number;
}

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

export function createImportJobs(options: ImportJobsOptions): ImportJobs {
  const keepJobs = options.keepJobs ?? 100;
  const keepJobsPerKey = options.keepJobsPerKey ?? 20;
  const maxReported = options.maxReportedRows ?? 10_000;
  const jobs = new Map<string, ImportJob>();
  const running = new Map<string, { job: ImportJob; stop: AbortController; done: Promise<void> }>();
  const staleSpoolsRemoved = removeStaleSpools();

  /** Oldest first (a Map keeps insertion order); a running job is never dropped. */
  const keep = (job: ImportJob) => {
    jobs.set(job.id, job);
    let ofKey = [...jobs.values()].filter((j) => j.owner === job.owner).length;
    for (const [id, old] of jobs) {
      if (ofKey <= keepJobsPerKey) break;
      if (old.owner === job.owner && old.status !== 'running') {
        jobs.delete(id);
        ofKey--;
      }
    }
    for (const [id, old] of jobs) {
      if (jobs.size <= keepJobs) break;
      if (old.status !== 'running') jobs.delete(id);
    }
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
      const busy = [...running.values()].find((r) => r.job.owner === owner);
      if (busy) {
        body.resume();
        throw new ImportBusy(busy.job.id);
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
        error: null,
        startedAt: new Date().toISOString(),
        finishedAt: null,
      };
      // Claimed before the upload, so two uploads of one key cannot both start; shown from then on, as
      // the 409 to the same key names it (GET answered 404 for it until the upload ended).
      const stop = new AbortController();
      let finish!: () => void;
      const entry = { job, stop, done: new Promise<void>((resolve) => (finish = resolve)) };
      running.set(job.id, entry);
      keep(job);
      let folder: string | undefined;
      // A failure of the spool file is this server's; any other error of the pipeline but the bounds' is the body's.
      let spoolFailed = false;
      try {
        folder = await mkdtemp(join(tmpdir(), `crm-import-${process.pid}-`));
        await pipeline(
          body,
          idleBound(options.idleMs ?? 30_000),
          byteLimit(options.maxBytes, (n) => (job.bytes = n)),
          createWriteStream(join(folder, `body.${format}`)).once('error', () => (spoolFailed = true)),
        );
      } catch (caught) {
        const error =
          folder === undefined || spoolFailed || caught instanceof ImportTooLarge || caught instanceof ImportStalled ? caught : new ImportAborted(caught);
        job.status = 'failed';
        job.error = `${error instanceof Error ? error.message : String(error)}; nothing was imported: send the file again`;
        job.finishedAt = new Date().toISOString();
        running.delete(job.id);
        finish();
        if (folder !== undefined) await rm(folder, { recursive: true, force: true });
        throw error;
      }
      const spooled = folder;
      const file = join(spooled, `body.${format}`);
      void runImport(options.batch, parseRecords(createReadStream(file), format, encoding), {
        kind,
        actor,
        ...(forbidden ? { forbidden } : {}),
        ...(defaultOwner !== undefined ? { defaultOwner } : {}),
        ...(defaultOwnerHint !== undefined ? { defaultOwnerHint } : {}),
        signal: stop.signal,
        onRejected: (row) => {
          if (job.rejectedRows.length < maxReported) job.rejectedRows.push(row);
          else job.rejectedRowsTruncated = true;
        },
        onProgress: (counts) => (job.counts = { ...counts }),
      })
        .then(
          (outcome) => {
            job.counts = {
              kind: outcome.kind,
              rows: outcome.rows,
              imported: outcome.imported,
              alreadyPresent: outcome.alreadyPresent,
              rejected: outcome.rejected,
            };
            job.status = outcome.interrupted || outcome.unreadableFrom ? 'failed' : 'done';
            if (outcome.interrupted) job.error = 'stopped by a shutdown: send the same file again to finish (nothing is appended twice)';
            else if (outcome.unreadableFrom) job.error = `line ${outcome.unreadableFrom.line}: ${outcome.unreadableFrom.reason}`;
          },
          (error: unknown) => {
            job.status = 'failed';
            job.error = error instanceof Error ? error.message : String(error);
          },
        )
        .finally(async () => {
          job.finishedAt = new Date().toISOString();
          running.delete(job.id);
          await rm(spooled, { recursive: true, force: true }).catch(() => undefined);
          finish();
        });
      return job;
    },
    get: (id) => jobs.get(id),
    async close() {
      await staleSpoolsRemoved;
      for (const r of running.values()) r.stop.abort();
      await Promise.all([...running.values()].map((r) => r.done));
    },
  };
}
