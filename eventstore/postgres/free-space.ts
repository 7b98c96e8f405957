import type { PGlite } from '@electric-sql/pglite';
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { DiskFull } from '../errors.ts';
import { withQuery } from './pglite-query.ts';

/*
 * Why the embedded database keeps free space on its disk (CRM_MIN_FREE_DISK_MB, its default in
 * cli/config.ts): PGlite commits by flushing its WAL; when the flush needs a new 16 MB segment and the
 * disk cannot hold it, PGlite 0.4.6 does not fail: it spins in `XLogFlush` for ever on the process's
 * one thread, so /health, SIGTERM and everything else go with it (only SIGKILL ends it).
 */

/** How often the free space is read again while statements run: a statfs costs about 10 us. */
const CHECK_EVERY_MS = 100;

const MB = 1024 * 1024;

/** Bytes an ordinary user may still write on the file system holding `folder` (or its nearest existing parent). */
export const freeBytes = (folder: string): number => {
  for (let at = folder; ; at = dirname(at)) {
    try {
      const stats = statfsSync(at);
      return stats.bavail * stats.bsize;
    } catch (error) {
      // Not made yet, or a file in the way (which PGlite then reports): the disk is the nearest parent's.
      if (!['ENOENT', 'ENOTDIR'].includes(String((error as NodeJS.ErrnoException).code)) || dirname(at) === at) throw error;
    }
  }
};

const megabytes = (bytes: number): number => Math.floor(bytes / MB);

/**
 * Refuses to open the embedded database in `folder` on a disk with less than `minFreeMb` free: PGlite
 * itself failed there with "failed to initialize properly", which reads as a folder in use.
 */
export const checkFreeSpaceToOpen = (folder: string, minFreeMb: number): void => {
  const free = freeBytes(folder);
  if (free >= minFreeMb * MB) return;
  throw new DiskFull(
    `the disk holding ${folder} has ${megabytes(free)} MB free; the embedded database needs at least ${minFreeMb} MB: free some space ` +
      '(CRM_MIN_FREE_DISK_MB sets that amount).',
  );
};

/** PostgreSQL's refusal of a write in a read-only transaction. */
const READ_ONLY_SQL_TRANSACTION = '25006';

/**
 * The engine, refusing writes while the disk holding `folder` has less than `minFreeMb` free. Between
 * transactions, once the space read (at most every 100 ms) crosses the bound, the session's
 * `default_transaction_read_only` is switched: PostgreSQL itself then refuses every write of the
 * transactions that follow (inserts, updates, DDL, nextval) and nothing of them is stored, while reads
 * run as before. A transaction already open finishes as it began. Its refusal (SQLSTATE 25006) reaches
 * callers as `DiskFull`, an `EventStoreUnavailable`: the API answers 503 and the projections retry with
 * their backoff. Writes are taken again as soon as the space is back.
 */
export const keepingDiskFree = (pglite: PGlite, folder: string, minFreeMb: number): PGlite => {
  let checkedAt = Number.NEGATIVE_INFINITY;
  let free = Number.POSITIVE_INFINITY;
  let readOnly = false;
  const short = (): boolean => {
    const now = performance.now();
    if (now - checkedAt >= CHECK_EVERY_MS) {
      checkedAt = now;
      try {
        free = freeBytes(folder);
      } catch {
        // A folder that cannot be measured is left to PGlite's own errors; the last reading stands.
      }
    }
    return free < minFreeMb * MB;
  };
  const query = async (...args: Parameters<PGlite['query']>) => {
    if (!pglite.isInTransaction()) {
      const refusing = short();
      if (refusing !== readOnly) {
        await pglite.query(`SET default_transaction_read_only = ${refusing ? 'on' : 'off'}`);
        readOnly = refusing;
      }
    }
    try {
      return await pglite.query(...args);
    } catch (error) {
      if (!readOnly || (error as { code?: unknown }).code !== READ_ONLY_SQL_TRANSACTION) throw error;
      throw new DiskFull(
        `The disk holding the embedded database (${folder}) has ${megabytes(free)} MB free, less than the ${minFreeMb} MB it keeps free ` +
          '(CRM_MIN_FREE_DISK_MB): writes are refused until some space is freed, and are taken again as soon as it is.',
        { cause: error },
      );
    }
  };
  return withQuery(pglite, query as PGlite['query']);
};
