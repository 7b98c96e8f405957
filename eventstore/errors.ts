import { inCauses } from '../shared/causes.ts';
import type { ExpectedRevision } from './contract.ts';

/** Base class so callers can tell store errors from everything else. */
export class EventStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The stream was not at the revision the caller expected. `actual` is -1 when the stream does not exist. */
export class WrongExpectedRevision extends EventStoreError {
  constructor(
    readonly stream: string,
    readonly expected: ExpectedRevision,
    readonly actual: number,
  ) {
    super(`Stream ${stream} is at revision ${actual}, expected ${String(expected)}`);
  }
}

/** A multi-stream append found one or more streams not at their expected revision; nothing was appended. */
export class WrongExpectedRevisions extends WrongExpectedRevision {
  constructor(readonly conflicts: { stream: string; expected: ExpectedRevision; actual: number }[]) {
    const first = conflicts[0]!;
    super(first.stream, first.expected, first.actual);
    this.message = `${conflicts.length} stream(s) not at their expected revision, first: ${this.message}`;
  }
}

/** An event id that was already appended came back with different content. */
export class IdempotencyConflict extends EventStoreError {
  constructor(
    readonly eventId: string,
    readonly stream: string,
    /** The command's fields that differ from what the stream holds, where the caller could tell (an import names them). */
    readonly differsIn: readonly string[] = [],
  ) {
    super(`Event ${eventId} was already appended to ${stream} with different content`);
  }
}

/** Input the store refuses before touching storage: empty lists, invalid stream names, oversized payloads. */
export class InvalidAppend extends EventStoreError {
  constructor(
    readonly reason: 'empty_event_list' | 'invalid_stream_name' | 'payload_too_large' | 'invalid_event' | 'invalid_expected_revision' | 'invalid_depends_on',
    message: string,
  ) {
    super(message);
  }
}

/** The engine cannot be reached; the message says what to check. */
export class EventStoreUnavailable extends EventStoreError {}

/**
 * The embedded database is open in another crm process (it serves one at a time): nothing to wait
 * for, the message names the process and what to do.
 */
export class EmbeddedDatabaseInUse extends EventStoreUnavailable {}

/**
 * A statement prepared on a pooled connection before a rebuild swapped the tables it reads went stale
 * inside a transaction, which is rolled back: the same work succeeds on another connection (the stale
 * one is discarded on release).
 */
export class StaleStatements extends EventStoreUnavailable {}

/**
 * The connection was lost (or stalled past its bound) after a statement was sent: it may or may not
 * have committed. A command that meets it can be retried with the same idempotency key: a committed
 * first attempt is then found and nothing is appended twice.
 */
export class OutcomeUnknown extends EventStoreUnavailable {
  /** What happened, without the part about the outcome: for callers that wrote nothing (reads). */
  readonly lost: string;
  constructor(message: string, options?: { cause?: unknown; lost?: string }) {
    super(message, options);
    this.lost = options?.lost ?? message;
  }
}

/**
 * The disk holding the embedded database has less free space than it keeps in reserve: writes are
 * refused (nothing of the refused statement is stored) until space is freed. Below the reserve PGlite
 * could reach a WAL flush with no room for a new segment, where it spins for ever instead of failing.
 */
export class DiskFull extends EventStoreUnavailable {}

/** Read options the store refuses (negative counts, revisions that are not integers). */
export class InvalidReadOptions extends EventStoreError {}

/** Refused at start: the stored customer data keys cannot be read with the configured master key (or without one). */
export class MasterKeyMismatch extends EventStoreError {}

/**
 * Refused at start: the stored events do not fit the database they are in (restored onto another
 * PostgreSQL server whose transaction ids are lower, or into schemas renamed after the restore).
 * Nothing was written.
 */
export class StoreDoesNotFitServer extends EventStoreError {}

/**
 * Refused at start: the store was migrated by a newer version of the CRM (a rollback, or an older
 * process started beside newer ones). A store migration changes a table or what events hold (a field
 * now encrypted, one now required): this version would fail on the tables and write events the newer
 * one misreads, and personal data in clear that a forget no longer erases. Nothing was written.
 */
export class StoreFromNewerVersion extends EventStoreError {
  constructor(
    readonly schema: string,
    /** The applied migrations this version does not know. */
    readonly migrations: readonly string[],
  ) {
    super(
      `The event store in schema ${schema} was migrated by a newer version of the CRM than this process (store migrations ${migrations.join(', ')}, ` +
        'which this version does not have). Nothing was written. Run the newer version here, or stop this process. A rollback past a store ' +
        'migration is not possible: to go back to this version, restore a backup taken before the newer version first started ' +
        '(README: "Upgrading").',
    );
  }
}

/**
 * A command that reads what is stored found no store where it was pointed (an embedded data folder
 * with no database in it): opening would have created an empty one and reported on nothing.
 */
export class StoreNotFound extends EventStoreError {}

/** What the database ran short of: SQLSTATE class 53 (insufficient resources). */
export type DatabaseShortage = 'disk' | 'memory' | 'connections' | 'limit';
const SHORTAGES: Record<string, DatabaseShortage> = { '53000': 'limit', '53100': 'disk', '53200': 'memory', '53300': 'connections', '53400': 'limit' };
/** The words of ENOSPC in PostgreSQL's messages; the embedded engine may report a failed write without a SQLSTATE. */
const NO_SPACE = /No space left on device/i;

const shortageOf = (at: Error): DatabaseShortage | undefined => {
  // The embedded database's reserve of free space reached (free-space.ts): the same shortage, told before it happens.
  if (at instanceof DiskFull) return 'disk';
  const code = (at as { code?: unknown }).code;
  if (typeof code === 'string' && Object.hasOwn(SHORTAGES, code)) return SHORTAGES[code];
  // A SQLSTATE or none: a Node error code (ENOSPC of a file of this machine) is not the database's.
  return (code === undefined || (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code))) && NO_SPACE.test(at.message) ? 'disk' : undefined;
};

/** The error (itself or a cause) by which the database said what it ran short of, with what that was. */
export const shortageIn = (error: unknown): { shortage: DatabaseShortage; said: Error } | undefined => {
  const said = inCauses(error, (at) => shortageOf(at) !== undefined);
  return said && { shortage: shortageOf(said)!, said };
};

/**
 * The database refused a statement for want of disk, memory, connection slots or a configured limit,
 * here or in a cause: nothing about the statement or the event is wrong, and it succeeds once the
 * operator frees what ran out.
 */
export const databaseShortage = (error: unknown): DatabaseShortage | undefined => shortageIn(error)?.shortage;

/** statement_timeout (57014) and lock_timeout (55P03): the database did not finish in time; nothing was committed. */
const BUSY_CODES = new Set(['57014', '55P03']);

/** The database was busy, here or in a cause: a lock was held past lock_timeout or a statement ran past statement_timeout. */
export const databaseBusy = (error: unknown): boolean => inCauses(error, (at) => BUSY_CODES.has(String((at as { code?: unknown }).code))) !== undefined;

/**
 * The connection to the database failed, or the server refused the statement for reasons that say
 * nothing about it (shutting down, deadlock, serialization, out of disk, memory or connection
 * slots): worth a retry.
 */
export const isConnectionFault = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code;
  if (
    typeof code === 'string' &&
    (/^08/.test(code) || ['40001', '40P01', '57P01', '57P02', '57P03', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(code))
  ) {
    return true;
  }
  if (error instanceof EventStoreUnavailable || databaseShortage(error) !== undefined) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|connection (is )?closed|timeout exceeded when trying to connect/i.test(message);
};

const CREDENTIALS_REFUSED = 'the server refused the user or password in DATABASE_URL: correct them, or grant that user access';
const REFUSED_SETTINGS: Record<string, string> = {
  '3D000': 'the database named in DATABASE_URL does not exist: create it, or correct the name',
  '28000': CREDENTIALS_REFUSED,
  '28P01': CREDENTIALS_REFUSED,
};
const sqlStateOf = (error: Error): string => String((error as { code?: unknown }).code);
/**
 * The server answered, and refused the database name or the credentials (SQLSTATE 3D000 unknown
 * database, 28000 / 28P01 authorization), here or in a cause: nothing a wait or a retry fixes.
 */
export const refusedConnectionSettings = (error: unknown): string | undefined => {
  const refused = inCauses(error, (at) => Object.hasOwn(REFUSED_SETTINGS, sqlStateOf(at)));
  return refused && REFUSED_SETTINGS[sqlStateOf(refused)];
};
