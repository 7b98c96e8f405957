import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import { EmbeddedDatabaseInUse, EventStoreUnavailable, StoreNotFound } from '../eventstore/errors.ts';
import { createPersonalData, type PersonalData } from '../eventstore/personal-data.ts';
import { createEmailIndex, type EmailIndex } from '../eventstore/email-index.ts';
import {
  assertStoreNotNewer,
  connectPostgres,
  createPostgresEventStore,
  holdSessionLock,
  migrateEventStore,
  openPglite,
  type SqlDatabase,
} from '../eventstore/postgres/index.ts';
import { toUnavailable, type PoolTimeouts } from '../eventstore/postgres/database.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import type { CrmApp } from '../api/app.ts';
import type { ApiDeps, ReadModelProgress } from '../api/deps.ts';
import { createAnalyticsProjection } from '../analytics/projection.ts';
import { createAuditServices, type AuditServices } from '../audit/index.ts';
import { createReadModelQueries } from '../projections/queries/index.ts';
import { userWithAddress } from '../projections/queries/users.ts';
import { createAnalyticsService, type AnalyticsService } from '../analytics/service.ts';
import { ReadModelStopped } from '../projections/errors.ts';
import { waitForCheckpoints } from '../projections/status.ts';
import { builtOtherwise, CHECKPOINT_TABLE, migrateCheckpoints, readCheckpoints } from '../projections/checkpoints.ts';
import { rebuildProjections, type ReadSideDeps } from '../projections/rebuild.ts';
import { dropAbandonedShadows, type SessionLock } from '../projections/shadows.ts';
import { livenessOn } from '../projections/work-liveness.ts';
import { createReportingViews } from '../projections/reporting.ts';
import { retryWhileHeld } from '../projections/lock-holders.ts';
import { recordBaseCurrency } from '../projections/read-models/exchange-rates.ts';
import { personalDataCodec } from '../projections/codec.ts';
import type { Projection } from '../projections/projection.ts';
import { readModelProjections } from '../projections/read-models/index.ts';
import { forgetInCopiesProjection } from '../projections/read-model-copies.ts';
import { LEASE_TABLE, migrateLeases, ProjectionLeases } from '../projections/leases.ts';
import { isRunning, procStat } from '../shared/processes.ts';
import { OutageLog, withoutRepeats, type Log } from '../shared/outage-log.ts';
import { qualifiedName } from '../shared/sql.ts';
import { DEFAULT_BATCH, ProjectionRunner } from '../projections/runner.ts';
import { createCrmCommands, type CrmCommands } from '../commands/index.ts';
import { createDestinationGuard } from '../integration/destinations.ts';
import { createIntegration, type Integration } from '../integration/index.ts';
import { createBatchCommands, type BatchCommands } from '../commands/batch.ts';
import { createImportJobs } from '../commands/import/jobs.ts';
import { createImportJobRecords } from '../api/import-job-records.ts';
import { ClosingSteps } from './closing.ts';
import { describeDatabase, type CrmConfig } from './config.ts';
import type { Logger } from 'pino';

/** Largest `POST /imports` body (spooled to a temporary file, never held in memory). */
const IMPORT_MAX_BYTES = 1024 ** 3;

/**
 * The composition root: the one place that turns configuration into running services (store,
 * personal-data codec, commands, projections, analytics, audit, integration, the HTTP API).
 * Every subcommand opens the CRM through `openCrm` and closes it when done; the tests and the
 * benchmarks start it the same way, with `OpenOptions.overrides` for what they vary.
 */
export interface CrmRuntime {
  config: CrmConfig;
  /** Read models, checkpoints, API keys (and events unless EventStoreDB is configured). */
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  /** Which customer holds each email address (registrations and email changes claim theirs first). */
  emailIndex: EmailIndex;
  /** Which user (staff) holds each email address, as `emailIndex` for customers. */
  userEmailIndex: EmailIndex;
  commands: CrmCommands;
  /** The batch handler of bulk imports (`crm import`, `POST /imports`). */
  batch: BatchCommands;
  /** Every projection the CRM maintains: read models, then analytics. */
  projections: readonly Projection[];
  runner: ProjectionRunner;
  /** This process's share of the projections when several workers run them (one process holds every lease). */
  leases: ProjectionLeases;
  audit: AuditServices;
  analytics: AnalyticsService;
  /** Webhooks and NATS publishing (integration/): started with the projections. */
  integration: Integration;
  /** What rebuild needs: the live projections, whose analytics rescoring writes the live model tables. */
  readSide: ReadSideDeps;
  /** What replays into other schemas need (`crm replay`): projections that write only to the target schema. */
  replaySide: ReadSideDeps;
  /** Starts following the feed into the read models (inline mode of `serve`, and `project`), and sealing the global hash chain. */
  startProjections: () => Promise<void>;
  /** Releases the set-up lock (see `OpenOptions.holdSetUpLock`); idempotent. */
  setUpDone: () => Promise<void>;
  /**
   * Creates missing read-model tables and reporting views, so queries answer (empty) before the
   * projections run. `ifMissing`: nothing at all where every projection's tables were made already.
   */
  prepareReadModels: (options?: { ifMissing?: boolean }) => Promise<void>;
  /** Everything the HTTP API needs except its logger. */
  apiDeps: Omit<ApiDeps, 'logger'>;
  /** Builds the HTTP API on `apiDeps` (closed by the caller: `app.close()` closes only the HTTP side). */
  buildApi(options?: ApiOptions): Promise<CrmApp>;
  /** Closes everything opened, in reverse order; safe to call twice. */
  close(): Promise<void>;
  /** The closing steps not done yet (the one in progress first), by name: what a shutdown past its deadline waits on. */
  pendingClose(): string[];
}

/** Where PGlite keeps its files inside CRM_DATA_DIR (a subfolder leaves room for our own files beside it). */
export const pgliteFolder = (dataDir: string) => join(dataDir, 'pgdata');

/**
 * When a process started (Linux: clock ticks since boot, field 22 of /proc/<pid>/stat); undefined
 * where there is no /proc. With the pid it names one process: a pid reused after a restart differs.
 */
export const processStartTime = (pid: number): string | undefined => procStat(pid)?.[19];

/** The folder itself (device and inode): a copy of it is another folder, whatever its path. */
const folderIdentity = (dataDir: string): string => {
  const { dev, ino } = statSync(dataDir);
  return `${dev}:${ino}`;
};

/**
 * PGlite has no server to arbitrate: two processes on one data folder would corrupt it. A pid file
 * beside the data keeps a second `crm` out (a stale file of a dead process is taken over). The file
 * holds the pid and its start time: after a crash and a restart (a container, a reboot) the pid may
 * belong to another program by then, which must not keep the folder locked. Its second line names the
 * folder it locks: a copy of a folder in use (a backup taken while the server ran) brings the file
 * along, and its process holds the original, not the copy.
 */
function lockDataDir(dataDir: string): () => void {
  const path = join(dataDir, 'crm.pid');
  const folder = folderIdentity(dataDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${`${process.pid} ${processStartTime(process.pid) ?? ''}`.trim()}\n${folder}`);
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const [owner = '', lockedFolder] = readFileSync(path, 'utf8').trim().split('\n');
      const [pidText = '', started] = owner.trim().split(/\s+/);
      const pid = Number(pidText);
      // A file without a start time (older versions) names the process by its pid alone.
      const sameProcess = started === undefined || processStartTime(pid) === undefined || processStartTime(pid) === started;
      // A file without the folder (before 2026-12-06) is taken as this folder's.
      const thisFolder = lockedFolder === undefined || lockedFolder.trim() === folder;
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isRunning(pid) && sameProcess && thisFolder) {
        throw new EmbeddedDatabaseInUse(
          `The embedded database in ${dataDir} is in use by another crm process (pid ${pid}). ` +
            'Stop it first (the embedded database serves one process at a time), or run both against PostgreSQL with DATABASE_URL. ' +
            `If no crm process uses that folder (pid ${pid} is another program), delete ${path}.`,
        );
      }
      unlinkSync(path);
    }
  }
  throw new EventStoreUnavailable(`Cannot lock the embedded database in ${dataDir} (${path}).`);
}

/** Both pools run repeated statements named unless the config turns it off (a pooler that cannot keep them). */
const namedStatements = (database: Extract<CrmConfig['database'], { kind: 'postgres' }>): boolean => database.preparedStatements !== false;

const apiTimeouts = (config: CrmConfig): PoolTimeouts => ({
  statementMs: config.timeouts.statementMs,
  lockMs: config.timeouts.lockMs,
  idleInTransactionMs: config.timeouts.idleInTransactionMs,
  connectMs: config.timeouts.connectMs,
});

/**
 * Rebuilds, replays, verification and model fits run statements far longer than API work: a small
 * pool of their own with the long bounds (PGlite: the one connection).
 */
const openLongWorkDatabase = (config: CrmConfig, database: SqlDatabase): SqlDatabase =>
  config.database.kind === 'postgres'
    ? connectPostgres(config.database.url, {
        max: 4,
        timeouts: {
          statementMs: config.timeouts.longStatementMs,
          lockMs: config.timeouts.longStatementMs,
          // A rebuild's transaction may wait between its statements as long as one of them may run.
          idleInTransactionMs: Math.max(config.timeouts.idleInTransactionMs, config.timeouts.longStatementMs),
          connectMs: config.timeouts.connectMs,
        },
        namedStatements: namedStatements(config.database),
      })
    : database;

/**
 * Which server and database a worker id stands for: hashed into the id, never printed (messages show
 * the URL through shared/loggable-url.ts). Exactly the text the ids were made from before that helper
 * existed, so that a restart after an upgrade still takes its own leases back at once.
 */
const databaseIdentity = (url: string): string => {
  try {
    const parsed = new URL(url);
    return `PostgreSQL at ${parsed.hostname}:${parsed.port || '5432'}${parsed.pathname}`;
  } catch {
    return 'PostgreSQL (DATABASE_URL)';
  }
};

/**
 * The default projection worker id: the same for every start on this host against this database and
 * these schemas, so that a restart after a crash takes its own leases back at once.
 */
export const defaultWorkerId = (config: CrmConfig): string => {
  const target = config.database.kind === 'postgres' ? databaseIdentity(config.database.url) : config.database.dataDir;
  const digest = createHash('sha256').update(`${target}|${config.schemas.events}|${config.schemas.read}`).digest('hex').slice(0, 10);
  return `${hostname()}-${digest}`;
};

/**
 * The database every command connects through. A store migrated by a newer version is refused here,
 * before anything is written: commands that write without opening the event store (a master key
 * rewrap, API keys, reporting roles, a purge) would otherwise go ahead on it.
 */
export async function openDatabase(config: CrmConfig, options: { poolMax?: number; existingOnly?: boolean } = {}): Promise<SqlDatabase> {
  const database = await connectDatabase(config, options);
  try {
    await assertStoreNotNewer(database.db, config.schemas.events);
  } catch (error) {
    await database.close().catch(() => undefined);
    throw error;
  }
  return database;
}

async function connectDatabase(config: CrmConfig, options: { poolMax?: number; existingOnly?: boolean }): Promise<SqlDatabase> {
  if (config.database.kind === 'pglite') {
    const { dataDir } = config.database;
    // PGlite writes PG_VERSION when it creates a database: without it the folder holds none yet.
    // With the events in EventStoreDB the folder holds only read models, which a new one rebuilds.
    if (options.existingOnly && config.eventStore.kind === 'sql' && !existsSync(join(pgliteFolder(dataDir), 'PG_VERSION')))
      throw new StoreNotFound(
        `no CRM data in ${dataDir}: point CRM_DATA_DIR at the folder \`npm start\` created (.crm-data in the folder it ran in), or set DATABASE_URL`,
      );
    mkdirSync(dataDir, { recursive: true });
    const unlock = lockDataDir(dataDir);
    try {
      const database = await openPglite(pgliteFolder(dataDir), { minFreeDiskMb: config.database.minFreeDiskMb });
      return {
        ...database,
        close: async () => {
          try {
            await database.close();
          } finally {
            unlock();
          }
        },
      };
    } catch (error) {
      unlock();
      throw error;
    }
  }
  const database = connectPostgres(config.database.url, {
    timeouts: apiTimeouts(config),
    namedStatements: namedStatements(config.database),
    ...(options.poolMax ? { max: options.poolMax } : {}),
  });
  // The pool connects lazily: probe now so an unreachable server is reported before anything starts.
  try {
    await sql`SELECT 1`.execute(database.db);
  } catch (error) {
    await database.close().catch(() => undefined);
    const mapped = toUnavailable(error, config.database.url);
    if (mapped instanceof EventStoreUnavailable) throw mapped;
    throw new EventStoreUnavailable(`${describeDatabase(config)} refused the connection: ${(error as Error).message}. Check DATABASE_URL.`, {
      cause: error,
    });
  }
  return database;
}

/**
 * The personal-data keys (beside the events in SQL, even with EventStoreDB: forgetting must be able to
 * delete them). Opening checks the configured master key against the stored keys.
 */
export const openPersonalData = (config: CrmConfig, database: SqlDatabase): Promise<PersonalData> =>
  createPersonalData(database.db, { schema: config.schemas.events, ...(config.masterKey ? { masterKey: config.masterKey } : {}) });

/**
 * Creates or upgrades the event store's tables (with EventStoreDB, those kept in SQL beside its
 * events): for commands that write beside the events without opening the store (API keys, a master
 * key rewrap). Refuses a store migrated by a newer version, as opening does.
 */
export const migrateStore = (config: CrmConfig, database: SqlDatabase): Promise<void> =>
  migrateEventStore(database.db, config.schemas.events, { engineTables: config.eventStore.kind === 'sql' });

async function openEventStore(config: CrmConfig, database: SqlDatabase, overrides: RuntimeOverrides): Promise<EventStore> {
  if (config.eventStore.kind === 'eventstoredb') {
    const { createEventStoreDbStore } = await import('./eventstoredb.ts');
    const store = await createEventStoreDbStore(config.eventStore.url);
    // What is kept in SQL beside the events (API keys, data keys, webhooks...), and the store's
    // migrations: a store migrated by a newer version is refused with EventStoreDB too.
    try {
      await migrateStore(config, database);
    } catch (error) {
      await store.close().catch(() => undefined);
      throw error;
    }
    return store;
  }
  return createPostgresEventStore(database, {
    schema: config.schemas.events,
    ...(overrides.appendsInFlight === undefined ? {} : { appendsInFlight: overrides.appendsInFlight }),
  });
}

/**
 * Several processes starting at once on one PostgreSQL (API replicas, a projection worker) would race
 * on `CREATE TABLE IF NOT EXISTS`. Set-up runs under a session advisory lock held on one pooled
 * connection; the returned function releases it. (PGlite serves one process: nothing to do.)
 */
async function acquireStartupLock(database: SqlDatabase, key: string): Promise<() => Promise<void>> {
  if (database.kind !== 'postgres') return async () => undefined;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let acquired!: () => void;
  let failed!: (error: unknown) => void;
  const ready = new Promise<void>((resolve, reject) => {
    acquired = resolve;
    failed = reject;
  });
  const held = database.db
    .connection()
    .execute(async (connection) => {
      // Tried, not waited for: a blocking wait would run into the statement timeout while another
      // process sets up (which may take longer on a loaded machine).
      const backoff = createBackoff({ initialMs: 20, maxMs: 250 });
      for (;;) {
        const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(hashtext(${key})) AS locked`.execute(connection);
        if (rows[0]?.locked) break;
        await pause(backoff.next());
      }
      acquired();
      await released;
      await sql`SELECT pg_advisory_unlock(hashtext(${key}))`.execute(connection);
    })
    .catch(failed);
  await ready;
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    release();
    await held;
  };
}

/**
 * A session advisory lock on a connection of its own, held until the returned function is called: a
 * rebuild or a verification marks its shadow schema as in use with it (projections/shadows.ts), and a
 * verification or an HTTP import its job (projections/work-liveness.ts), without taking one of the
 * connections its work needs. It is taken again after the connection is lost (`holdSessionLock`).
 * PGlite serves one process: nothing to tell apart, no lock.
 */
const sessionLockFor = (config: CrmConfig): SessionLock | undefined => {
  const { database } = config;
  if (database.kind !== 'postgres') return undefined;
  return (key) => holdSessionLock(database.url, apiTimeouts(config), key);
};

export interface OpenOptions {
  /** Keep the set-up lock until `setUpDone()` (serve and project migrate read models after opening). */
  holdSetUpLock?: boolean;
  /** Names this process in the projection leases (`crm project --worker-id`); default host name and database. */
  workerId?: string;
  /**
   * This process answers commands over HTTP (`crm serve`): the projections' read-ahead is kept under
   * the back-pressure bound on their backlog, so a catch-up alone does not refuse commands.
   */
  servesCommands?: boolean;
  /**
   * The command reads what is stored (verify, export, replay...): an embedded data folder without a
   * database is refused (`StoreNotFound`) instead of created empty.
   */
  existingOnly?: boolean;
  /**
   * The command only reads or manages what a CRM stored (export, verify, lists and statuses): on PostgreSQL, schemas that do not exist are refused
   * (`StoreNotFound`) instead of set up empty (a mistyped CRM_EVENTS_SCHEMA exported nothing, exit 0,
   * and left three new schemas of tables behind).
   */
  installedOnly?: boolean;
  /**
   * The process's one logger (`crm serve`, `crm project`: api/logger.ts): each part logs through a
   * child naming it, as JSON at its level under LOG_LEVEL. Without it (the other commands, whose
   * stdout may carry their output) the parts write plain lines to stderr.
   */
  logger?: Logger;
  /** What tests and benchmarks vary; production leaves it unset. */
  overrides?: RuntimeOverrides;
}

export interface RuntimeOverrides {
  /** Connections of the main pool (PostgreSQL; default 10). */
  poolMax?: number;
  /** Start the integration publishers with the projections (default true; delivery tests start their own). */
  publishers?: boolean;
  /** Seal the global hash chain in the background with the projections (default true). */
  chainSealer?: boolean;
  /** Largest `POST /imports` body (default 1 GiB). */
  importMaxBytes?: number;
  /** How long a `POST /imports` body may send nothing before it is cut with 408 (default 30 s). */
  importIdleMs?: number;
  /** Group commit of the PostgreSQL store: calls in flight (default 1; 0 sends each append alone). */
  appendsInFlight?: number;
}

/** What the HTTP API takes beyond the runtime's services: its logger and the bounds a caller may tune. */
export type ApiOptions = Partial<ApiDeps>;

/**
 * The catch-up batch of a process that answers commands: the runner holds up to about three
 * coalesced batches (one applied, two waiting), all counted as backlog by the back-pressure
 * (CRM_MAX_PROJECTION_BACKLOG). A worker without the API (`crm project`) keeps the larger default.
 */
export const readAheadUnder = (maxProjectionBacklog: number): number =>
  // 0 turns the bound off: nothing to stay under.
  maxProjectionBacklog <= 0
    ? DEFAULT_BATCH.maxCoalescedEvents
    : Math.max(DEFAULT_BATCH.maxEvents, Math.min(DEFAULT_BATCH.maxCoalescedEvents, Math.floor(maxProjectionBacklog / 4)));

/**
 * Refuses (`StoreNotFound`) a PostgreSQL database without the CRM's events schema: a command that
 * only reads or manages what a CRM stored (a status, a list, an export) would otherwise set up a CRM
 * in the wrong database (a mistyped DATABASE_URL or CRM_EVENTS_SCHEMA) and report it empty.
 */
export async function assertInstalled(config: CrmConfig, database: SqlDatabase): Promise<void> {
  if (config.eventStore.kind !== 'sql') return;
  const { rows } = await sql`SELECT 1 FROM pg_namespace WHERE nspname = ${config.schemas.events}`.execute(database.db);
  if (rows.length === 0)
    throw new StoreNotFound(`no CRM data in schema ${config.schemas.events} of this database: check CRM_EVENTS_SCHEMA (and DATABASE_URL); nothing was created`);
}

export async function openCrm(config: CrmConfig, options: OpenOptions = {}): Promise<CrmRuntime> {
  const overrides = options.overrides ?? {};
  const closing = new ClosingSteps();
  const close = () => closing.close();
  /** Lines of a part of the runtime: through the process's logger under the part's name, else to stderr, timed and named; none when silent. */
  const partLog = (part: string): Log | undefined => {
    if (config.logLevel === 'silent') return undefined;
    const logger = options.logger?.child({ part });
    if (logger) return (message, details, level = 'info') => logger[level](details ?? {}, message);
    return (message, details) => process.stderr.write(`${new Date().toISOString()} ${part}: ${message} ${JSON.stringify(details ?? {})}\n`);
  };
  try {
    const database = await openDatabase(config, { poolMax: overrides.poolMax, existingOnly: options.existingOnly === true });
    closing.add('pool', () => database.close());
    // The store only: read models not set up yet are set up (and the command says they are behind).
    if (options.installedOnly) await assertInstalled(config, database);
    const setUpLockKey = `crm-set-up:${config.schemas.events}:${config.schemas.read}`;
    let releaseSetUpLock: (() => Promise<void>) | undefined = await acquireStartupLock(database, setUpLockKey);
    const setUpDone = async () => {
      const release = releaseSetUpLock;
      releaseSetUpLock = undefined;
      await release?.();
    };
    closing.add('set-up lock', setUpDone);
    // Set-up after `setUpDone()` (serve starts inline projections once the demo data is loaded) takes the
    // lock again for its own span; while the first is still held it runs under that one (another
    // connection would wait for it forever).
    const underSetUpLock = async <T>(work: () => Promise<T>): Promise<T> => {
      if (releaseSetUpLock) return work();
      const release = await acquireStartupLock(database, setUpLockKey);
      try {
        return await work();
      } finally {
        await release();
      }
    };
    const store = await openEventStore(config, database, overrides);
    closing.add('event store', () => store.close());
    const personalData = await openPersonalData(config, database);
    const indexOptions = { schema: config.schemas.events, ...(config.masterKey ? { masterKey: config.masterKey } : {}) };
    const emailIndex = await createEmailIndex(database.db, indexOptions);
    const userEmailIndex = await createEmailIndex(database.db, { ...indexOptions, holder: 'user' });
    const userWithAddressIn = (email: string) => userWithAddress(database.db, config.schemas.read, email);
    const commands = createCrmCommands({
      store,
      personalData,
      emailIndex,
      userEmailIndex,
      userWithAddress: userWithAddressIn,
      fingerprintKey: emailIndex.fingerprintKey,
    });
    if (!options.holdSetUpLock) await setUpDone();
    // Live only: forgetting reaches the registered copies (`crm replay`) through `forget_in_copies`.
    const projections: Projection[] = [
      ...readModelProjections(),
      createAnalyticsProjection({ modelSchema: config.schemas.read, baseCurrency: config.baseCurrency }),
      forgetInCopiesProjection,
    ];
    // Replays into other schemas (verify, `crm replay`) must leave the live tables alone: without
    // `modelSchema` the analytics projection keeps its model and score tables in the target schema.
    const isolatedProjections: Projection[] = [...readModelProjections(), createAnalyticsProjection({ baseCurrency: config.baseCurrency })];
    const longWork = openLongWorkDatabase(config, database);
    if (longWork !== database) closing.add('long-work pool', () => longWork.close());
    const sessionLock = sessionLockFor(config);
    const audit = createAuditServices(
      {
        store,
        personalData,
        database: longWork,
        schemas: { events: config.schemas.events, read: config.schemas.read },
        baseCurrency: config.baseCurrency,
        ...(sessionLock ? { sessionLock } : {}),
      },
      { projections: isolatedProjections },
    );
    // Before the pools close: a verification cut short by the shutdown is recorded as such.
    closing.add('verifications', () => audit.stopVerifications());
    const codec = personalDataCodec(personalData);
    // PGlite has a single connection: applying projections side by side would only queue.
    const concurrent = database.kind === 'postgres';
    const readSide: ReadSideDeps = { db: longWork.db, store, codec, projections, concurrent, ...(sessionLock ? { sessionLock } : {}) };
    const replaySide: ReadSideDeps = { ...readSide, projections: isolatedProjections };
    // Each projection is run by the one worker holding its lease; alone, a process holds them all.
    const leases = new ProjectionLeases({
      db: database.db,
      schema: config.schemas.read,
      // The embedded database serves one process (data folder lock), so its id can stay the same across
      // restarts: a restart after a crash takes the leases back at once instead of waiting them out.
      workerId: options.workerId ?? (database.kind === 'pglite' ? 'embedded' : defaultWorkerId(config)),
      // Two processes on one host and database (serve beside project, say) must not share the default.
      ...(options.workerId || database.kind === 'pglite' ? {} : { fallbackWorkerId: `${defaultWorkerId(config)}-${process.pid}` }),
      projections: projections.map((p) => p.name),
      leaseSeconds: config.projectionLeaseSeconds,
      // A projection taken over may be behind the others: follow the feed again from the lowest checkpoint.
      onChange: (change) => {
        if (change.acquired.length > 0) void runner.restartSubscription().catch(() => undefined);
      },
      // A take-over, a hand-over and failed renewals reach the log, as the publishers' lease's do (an
      // operator saw a worker take a crashed one's projections only in `crm projections list`).
      log: withoutRepeats(partLog('projections')),
    });
    const integration = createIntegration({
      db: database.db,
      store,
      personalData,
      ...(config.masterKey ? { masterKey: config.masterKey } : {}),
      schemas: config.schemas,
      nats: config.nats,
      amqp: config.amqp,
      destinations: createDestinationGuard(config.webhookAllowNetworks),
      workerId: () => leases.workerId,
      leaseSeconds: config.projectionLeaseSeconds,
      // Publishers in trouble (NATS, RabbitMQ or the database away, a subscription paused) reach the operator, once per outage.
      log: partLog('publishers'),
    });
    /** Views others built on the reporting views that a re-creation or a swap could not make again (or materialized ones it dropped). */
    const sayNotRestored = (views: string[]) => {
      if (views.length > 0)
        partLog('reporting views')?.(
          'views built on the reporting views are gone (a column they read is gone, or a materialized view): make them anew',
          {
            views,
          },
          'warn',
        );
    };
    const runner: ProjectionRunner = new ProjectionRunner({
      db: database.db,
      store,
      schema: config.schemas.read,
      projections,
      codec,
      concurrent,
      leases,
      sharedBatches: true,
      ...(options.servesCommands ? { batch: { maxCoalescedEvents: readAheadUnder(config.backPressure.maxProjectionBacklog) } } : {}),
      // Faults and poison events reach the operator.
      log: partLog('projections'),
      // A projection whose code changed is rebuilt in a shadow schema while the old tables keep serving.
      onVersionChange: async (names) => {
        const { notRestored } = await rebuildProjections({
          ...readSide,
          schema: config.schemas.read,
          reportingSchema: config.schemas.reporting,
          names,
          runner,
        });
        sayNotRestored(notRestored);
      },
    });
    /** Creates the read-model tables; returns the projections whose version did not change. */
    const migrateReadModels = async () => {
      await migrateCheckpoints(database.db, config.schemas.read);
      await migrateLeases(database.db, config.schemas.read);
      // A rebuild killed mid-way (kill -9, OOM, a lost host) leaves its shadow schema and `rebuilding` marks.
      await dropAbandonedShadows(database.db, config.schemas.read, { pool: database.kind === 'postgres' });
      const checkpoints = await readCheckpoints(database.db, config.schemas.read);
      // A projection whose version (or variant) changed is left to the runner, which rebuilds it in a shadow schema.
      const current = projections.filter((p) => !builtOtherwise(checkpoints.get(p.name), p));
      for (const p of current) await p.migrate(database.db, config.schemas.read);
      // The reporting views give base-currency columns in the configured currency.
      await recordBaseCurrency(database.db, config.schemas.read, config.baseCurrency);
      return current;
    };
    // Under the set-up lock, as the projections' start is: CLI processes started at once (exports from
    // cron, a rebuild beside them) recreate the same views, and one saw another's half-made set.
    /** The reporting views made (again), saying which views others built on them could not be. */
    const makeReportingViews = async (over: readonly Projection[]) => {
      // Views already as this version makes them are left alone; one that must change waits for the BI
      // sessions reading it: tried again for a bounded time, then the sessions are named.
      const { notRestored } = await retryWhileHeld(
        database.db,
        () => createReportingViews(database.db, { readSchema: config.schemas.read, reportingSchema: config.schemas.reporting, projections: over }),
        {
          what: `make the reporting views in schema ${config.schemas.reporting} again`,
          left: 'the views it could make are made, the others are as they were',
          on: { schemas: [config.schemas.reporting] },
        },
      );
      sayNotRestored(notRestored);
    };
    /** Every projection has a checkpoint: its tables were made (it may wait for a rebuild, which the runner does). */
    const readModelsMade = async (): Promise<boolean> => {
      const { rows } = await sql<{ checkpoints: string | null; leases: string | null }>`SELECT
        to_regclass(${qualifiedName(config.schemas.read, CHECKPOINT_TABLE)}) AS checkpoints,
        to_regclass(${qualifiedName(config.schemas.read, LEASE_TABLE)}) AS leases`.execute(database.db);
      if (!rows[0]?.checkpoints || !rows[0].leases) return false;
      const checkpoints = await readCheckpoints(database.db, config.schemas.read);
      return projections.every((p) => checkpoints.has(p.name));
    };
    const prepareReadModels = async (options: { ifMissing?: boolean } = {}) => {
      // A command that only reads makes no DDL where the read models exist: an index created "if not
      // exists" still waits for a share lock behind the projections' writes, and `crm projections list`
      // under traffic failed on the lock timeout, said to be an unavailable database.
      if (options.ifMissing && (await readModelsMade())) {
        // What a killed rebuild or verification left behind still goes: dropping a shadow and clearing
        // `rebuilding` marks waits on no live table.
        await underSetUpLock(() => dropAbandonedShadows(database.db, config.schemas.read, { pool: database.kind === 'postgres' }));
        return;
      }
      await underSetUpLock(async () => {
        await makeReportingViews(await migrateReadModels());
      });
    };
    /**
     * The read models rewrite rows all day (scores at each fit, purchase keys at each purchase) and rely
     * on autovacuum to reclaim them: a server with it off (a soak run found 15,000 dead rows beside 244
     * live in one table) is named once at start, with what to do. The embedded database vacuums itself.
     */
    const warnWithoutAutovacuum = async () => {
      if (database.kind !== 'postgres') return;
      const { rows } = await sql<{ on: string }>`SELECT current_setting('autovacuum') AS on`.execute(database.db);
      if (rows[0]?.on === 'off')
        partLog('projections')?.(
          // The events schema too: webhook deliveries are pruned as they are delivered (a soak found 43,013 dead rows beside 3,202 live).
          "autovacuum is off on this PostgreSQL server: the read models' rewritten rows and the webhook deliveries pruned beside the events are not reclaimed, and their tables grow; turn it on (ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf()) or run VACUUM ANALYZE on both schemas regularly",
          { schema: config.schemas.read, eventsSchema: config.schemas.events },
          'warn',
        );
    };
    /** Every step done: the projections, publishers and chain sealer run. */
    let started = false;
    /** The last failure of `startProjections` while it has not succeeded yet (shown by /ready). */
    let startError: string | undefined;
    let starting: Promise<void> | undefined;
    /** Steps already done by an earlier attempt that failed further on: a retry does not repeat them. */
    const done = { leases: false, runner: false, integration: false };
    const startOnce = async () => {
      // Tables first, under the set-up lock: the runner's own migrations then find them all there and
      // create nothing, so replicas starting at once do not race on the catalogue. Not held while the
      // projections run (a rebuild of a changed projection may take long).
      await underSetUpLock(migrateReadModels);
      if (!done.leases) {
        await warnWithoutAutovacuum();
        await leases.start();
        done.leases = true;
        // Closed in reverse: the runner stops after its batch in flight, then the leases are released.
        closing.add('leases', () => leases.stop());
      }
      if (!done.runner) {
        await runner.start();
        done.runner = true;
        closing.add('projections', () => runner.stop());
      }
      // Publishers follow the feed like projections, under their own lease partition.
      if (overrides.publishers !== false && !done.integration) {
        await integration.start();
        done.integration = true;
        closing.add('publishers', () => integration.stop());
      }
      // Tables exist now: (re)create the documented views BI tools read.
      await underSetUpLock(() => makeReportingViews(projections));
      // The global hash chain is sealed by the process that follows the feed (tamper evidence; PostgreSQL engine only).
      // Its loop catches every failure and tries again on the next tick (a database away is no reason to stop).
      // One line when sealing starts failing and one when it works again, not one a second while the database is away.
      const sealerOutage = new OutageLog(partLog('chain sealer'), { failed: 'sealing failed; trying again every second', recovered: 'sealing again' });
      const sealer =
        overrides.chainSealer === false
          ? undefined
          : audit.startChainSealer({
              onError: (error) => sealerOutage.failed((error as Error).message),
              onSealed: () => sealerOutage.recovered(),
            });
      if (sealer) closing.add('sealer', () => sealer.stop());
      started = true;
      startError = undefined;
    };
    /**
     * Safe to call again after it failed (the database away mid-way): the steps an earlier attempt
     * finished are not repeated, and calls at once share one attempt.
     */
    const startProjections = async () => {
      if (started) return;
      starting ??= startOnce()
        .catch((error: unknown) => {
          startError = (error as Error).message;
          throw error;
        })
        .finally(() => (starting = undefined));
      return starting;
    };
    /**
     * The newest event committed, final or not. Not what readers see (headPosition(), or a backwards
     * read, which waits at most 3 s): while any transaction older than an append stays open, that
     * append is committed but not final, and `?waitFor=` of the position it answered was refused as
     * never recorded.
     */
    const newestPosition = async (): Promise<bigint> => (store.committedHeadPosition ? store.committedHeadPosition() : store.headPosition());
    /**
     * Read-your-writes in this process's runner, which does not wait for a failed or stopped
     * projection. Where one is short of the position the checkpoint table decides: it ends the wait
     * naming the projection (an answer without it would read as complete: a deal just created, 404),
     * or, cleared meanwhile by an operator in another process, it is waited for there.
     */
    const waitInRunner = async (position: bigint, timeoutMs: number): Promise<void> => {
      const until = performance.now() + timeoutMs;
      const names = projections.map((p) => p.name);
      const inTable = () =>
        waitForCheckpoints(database.db, config.schemas.read, position, { timeoutMs: Math.max(0, until - performance.now()), names, refuseStopped: true });
      if (runner.stoppedBefore(position, undefined)) return inTable();
      await runner.waitForPosition(position, timeoutMs);
      if (runner.stoppedBefore(position, undefined)) return inTable();
    };
    const progress: ReadModelProgress = {
      // In this process's runner when it runs the projections; else through the checkpoints another process writes.
      waitForPosition: (position, timeoutMs) =>
        (started && leases.ownsAll()
          ? waitInRunner(position, timeoutMs)
          : waitForCheckpoints(database.db, config.schemas.read, position, { timeoutMs, names: projections.map((p) => p.name), refuseStopped: true })
        ).then(
          () => true,
          // A read model stopped before the position ends the wait with its own answer (api/errors.ts).
          (error: unknown) => {
            if (error instanceof ReadModelStopped) throw error;
            return false;
          },
        ),
      backlog: () => (started ? runner.backlog() : 0),
      newestPosition,
      // Inline projections that have not started yet (serve loads the demo data first, or the start
      // failed and is being tried again) are not ready; `starting`, not `stopped`: nobody has to start them.
      status: async () => {
        if (!started && config.projections !== 'off')
          return projections.map((p) => ({
            name: p.name,
            position: 0n,
            state: 'starting',
            lastError: startError ? `not started yet (${startError}); trying again` : 'they start once the demo data is loaded',
          }));
        const statuses = await runner.status();
        // A projection no worker has run has no checkpoint, and applied nothing of what is recorded: an
        // API replica started before any worker answered ready from empty read models.
        const never = projections.filter((p) => !statuses.some((s) => s.name === p.name));
        if (never.length === 0 || (await store.headPosition()) === 0n) return statuses;
        const run = config.projections === 'off' ? 'start `crm project` (CRM_PROJECTIONS=off here)' : 'they start by themselves';
        return [
          ...statuses,
          ...never.map((p) => ({ name: p.name, position: 0n, state: 'starting', lastError: `no worker has run projection ${p.name} yet: ${run}` })),
        ];
      },
    };
    const analytics = createAnalyticsService({
      db: longWork.db,
      schema: config.schemas.read,
      baseCurrency: config.baseCurrency,
      // Fits see every event recorded before they start: wait for the analytics projection to reach the head.
      catchUp: async () => {
        const head = await newestPosition();
        if (head === 0n) return;
        if (started && leases.owns('analytics')) await runner.waitForPosition(head, 300_000, ['analytics']);
        else await waitForCheckpoints(database.db, config.schemas.read, head, { timeoutMs: 300_000, names: ['analytics'], pollMs: 200 });
      },
    });
    // The Redis client is loaded only where shared rate limits are configured.
    const redis = config.rateLimit.redisUrl
      ? (await import('./redis.ts')).connectRedis(config.rateLimit.redisUrl, (message) => console.error(message))
      : undefined;
    if (redis) closing.add('redis', () => redis.quit().then(() => undefined));
    // Bulk imports over HTTP: the same batch handler as `crm import`, stopped between batches on close.
    const importMaxBytes = overrides.importMaxBytes ?? IMPORT_MAX_BYTES;
    const batch = createBatchCommands({
      store,
      personalData,
      emailIndex,
      customerIdKey: emailIndex.customerIdKey,
      fingerprintKey: emailIndex.fingerprintKey,
    });
    // Recorded in the read schema, so that every replica answers for every import.
    const importRecords = createImportJobRecords(database.db, config.schemas.read, livenessOn(database, sessionLock));
    const imports = createImportJobs({
      batch,
      records: importRecords,
      maxBytes: importMaxBytes,
      currency: config.baseCurrency,
      ...(overrides.importIdleMs ? { idleMs: overrides.importIdleMs } : {}),
    });
    closing.add('imports', () => imports.close());
    const apiDeps: Omit<ApiDeps, 'logger'> = {
      rateLimit: { max: config.rateLimit.perMinute, perRole: config.rateLimit.perRole, timeWindowMs: 60_000, redis },
      backPressure: config.backPressure,
      imports,
      importMaxBytes,
      store,
      commands,
      database,
      schemas: config.schemas,
      fingerprintKey: emailIndex.fingerprintKey,
      projections: progress,
      queries: createReadModelQueries({ db: database.db, schema: config.schemas.read, baseCurrency: config.baseCurrency }),
      baseCurrency: config.baseCurrency,
      pointInTime: audit.pointInTime,
      audit,
      analytics,
      integration: integration.services,
      requestTimeoutMs: config.timeouts.requestMs,
      readyMaxLagSeconds: config.readyMaxLagSeconds,
      ...(config.http.trustProxy !== undefined ? { trustProxy: config.http.trustProxy } : {}),
    };
    // Loaded on use: commands that serve no HTTP (import, verify, fit) do not load fastify.
    const buildApi = async (api: ApiOptions = {}) => (await import('../api/app.ts')).buildApp({ ...apiDeps, ...api });
    return {
      config,
      database,
      store,
      personalData,
      emailIndex,
      userEmailIndex,
      commands,
      batch,
      projections,
      runner,
      leases,
      audit,
      analytics,
      integration,
      readSide,
      replaySide,
      startProjections,
      prepareReadModels,
      setUpDone,
      apiDeps,
      buildApi,
      close,
      pendingClose: () => closing.pending(),
    };
  } catch (error) {
    await close();
    throw error;
  }
}
