import { sql } from 'kysely';
import { chainHead, formatChainAnchor, verifyChains, type ChainsVerification } from '../audit/index.ts';
import { connectPostgres } from '../eventstore/postgres/database.ts';
import {
  advanceTransactionIds,
  copyStoreTables,
  countRows,
  newestEventTransaction,
  storeTables,
  tablesWithRows,
  TargetNotEmpty,
  type StoreTable,
} from '../eventstore/postgres/copy-store.ts';
import { assertStoreFitsServer, assertStoreNotNewer, migrateEventStore } from '../eventstore/postgres/migrations.ts';
import { CHECKPOINT_TABLE } from '../projections/checkpoints.ts';
import { qualifiedName, type SqlDatabase } from '../shared/sql.ts';
import type { CrmConfig } from './config.ts';
import { assertInstalled, migrateStore, openDatabase } from './crm.ts';

/**
 * `crm move-store`: the embedded store (CRM_DATA_DIR) copied into a PostgreSQL database, then
 * checked. The copy itself is eventstore/postgres/copy-store.ts; this opens both sides, refuses a
 * target that cannot take the store before anything is written, and reads back what was committed.
 * What it finds is returned for the command to say; failures of the databases are thrown as
 * everywhere else.
 */

export { CopyInterrupted } from '../eventstore/postgres/copy-store.ts';

/** What the command shows while it works. */
export interface MoveProgress {
  /** The target server's transaction counter being moved on: ids used so far, of those needed. */
  counter?: (used: number, needed: number) => void;
  /** The copy starts: rows to copy in all. */
  copying?: (total: number) => void;
  /** Rows copied since the last call. */
  copied?: (rows: number) => void;
  /** Events whose chain links were checked so far (the stream chains, then the global chain). */
  verifying?: (checked: number) => void;
}

export type MoveOutcome =
  /** The target did not answer, or refused the connection: nothing written. */
  | { kind: 'unreachable'; cause: string }
  /** The target server is older than the store's positions need. */
  | { kind: 'server_too_old'; version: number }
  /** The target's events schema holds rows already (`tables`), or its read models were built from other events. */
  | { kind: 'target_not_empty'; tables: string[] }
  | { kind: 'read_models_built' }
  /** A table or sequence of the embedded schema the target (made by the CRM's migrations) has not, or not alike. */
  | { kind: 'tables_differ'; detail: string }
  | {
      kind: 'moved';
      /** Each table with its rows in the embedded store and in the copy, read back. */
      tables: { name: string; rows: number; copied: number }[];
      events: number;
      /** Transaction ids used to move the target server's counter past the copied positions. */
      transactionIdsUsed: number;
      chains: ChainsVerification;
      /** The global chain's head as the embedded store sealed it, and as recomputed from the copy. */
      sourceHead: string | null;
      head: string | null;
    };

export interface MoveOptions {
  progress?: MoveProgress;
  /** Stops the copy at the next batch (rolled back: `CopyInterrupted`) or the check (`signal.reason`). */
  signal?: AbortSignal;
}

/** The target pool: the long statement bound for every statement, as rebuilds and verifications have (runtime/crm.ts). */
const openTarget = (config: CrmConfig, url: string): SqlDatabase => {
  const long = config.timeouts.longStatementMs;
  return connectPostgres(url, {
    max: 2,
    timeouts: {
      statementMs: long,
      lockMs: long,
      idleInTransactionMs: Math.max(long, config.timeouts.idleInTransactionMs),
      connectMs: config.timeouts.connectMs,
    },
    namedStatements: false,
  });
};

/** Copies the embedded store of `config` into the PostgreSQL database at `url`, then checks the copy. */
export async function moveStore(config: CrmConfig, url: string, options: MoveOptions = {}): Promise<MoveOutcome> {
  const target = openTarget(config, url);
  try {
    // Before the embedded store opens (which takes a while): a mistyped URL is said at once.
    let version: number;
    try {
      const { rows } = await sql<{ version: number }>`SELECT current_setting('server_version_num')::int AS version`.execute(target.db);
      version = rows[0]!.version;
    } catch (error) {
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause : (error as Error);
      const code = (cause as { code?: unknown }).code;
      return { kind: 'unreachable', cause: `${typeof code === 'string' ? `${code}: ` : ''}${cause.message}` };
    }
    // pg_current_xact_id and xid8, which positions are made of, came with PostgreSQL 13.
    if (version < 130_000) return { kind: 'server_too_old', version };
    const refused = await refuseFilledTarget(target, config);
    if (refused) return refused;
    const source = await openDatabase(config, { existingOnly: true });
    try {
      await assertInstalled(config, source);
      // The embedded tables as this version has them, so that both sides have the same shape.
      await migrateStore(config, source);
      await migrateEventStore(target.db, config.schemas.events);
      return await copyAndCheck(source, target, config.schemas.events, options);
    } finally {
      await source.close();
    }
  } finally {
    await target.close();
  }
}

/**
 * A target whose events schema holds rows (events, or the keys and secrets a start of the CRM made
 * there), or whose read models were built from other events (their checkpoints would skip the copied
 * events below them). Checked before anything is written.
 */
async function refuseFilledTarget(target: SqlDatabase, config: CrmConfig): Promise<MoveOutcome | undefined> {
  const { events, read } = config.schemas;
  await assertStoreNotNewer(target.db, events);
  const { tables } = await storeTables(target.db, events);
  const held = await tablesWithRows(target.db, events, tables);
  if (held.length > 0) return { kind: 'target_not_empty', tables: held };
  const { rows } = await sql<{ table: string | null }>`SELECT to_regclass(${qualifiedName(read, CHECKPOINT_TABLE)})::text AS table`.execute(target.db);
  if (!rows[0]?.table) return undefined;
  const { rows: built } = await sql<{ any: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql.id(read, CHECKPOINT_TABLE)} WHERE position > 0) AS any`.execute(
    target.db,
  );
  return built[0]?.any ? { kind: 'read_models_built' } : undefined;
}

async function copyAndCheck(source: SqlDatabase, target: SqlDatabase, schema: string, options: MoveOptions): Promise<MoveOutcome> {
  const { progress = {}, signal } = options;
  const from = await storeTables(source.db, schema);
  const into = await storeTables(target.db, schema);
  const tables = matchTables(from.tables, into.tables, schema);
  if (typeof tables === 'string') return { kind: 'tables_differ', detail: tables };
  const strange = from.sequences.find((name) => !into.sequences.includes(name));
  if (strange) return { kind: 'tables_differ', detail: `the sequence ${schema}.${strange} of the embedded store is not one the CRM makes` };
  const counts = await countRows(source.db, schema, tables);

  const transactionIdsUsed = await advanceTransactionIds(target, await newestEventTransaction(source.db, schema), {
    ...(progress.counter ? { onProgress: progress.counter } : {}),
    ...(signal ? { signal } : {}),
  });
  progress.copying?.([...counts.values()].reduce((a, b) => a + b, 0));
  try {
    await copyStoreTables(source, target, schema, tables, from.sequences, {
      onRows: (_table, rows) => progress.copied?.(rows),
      ...(signal ? { signal } : {}),
    });
  } catch (error) {
    // Written meanwhile by a process started on the target: refused as if found before.
    if (error instanceof TargetNotEmpty) return { kind: 'target_not_empty', tables: error.tables };
    throw error;
  }

  // What was committed, read back: every table's rows, then the chains recomputed from the copied rows.
  const copied = await countRows(target.db, schema, tables);
  const counted = tables.map((t) => ({ name: t.name, rows: counts.get(t.name)!, copied: copied.get(t.name)! }));
  const chains = await verifyChains(target, schema, {
    onProgress: (p) => {
      if (signal?.aborted) throw signal.reason;
      progress.verifying?.(p.checked);
    },
  });
  const stored = await chainHead(source.db, schema);
  // Positions the server gives new events lie above the copied ones (the check every start makes).
  if (chains.ok) await assertStoreFitsServer(target.db, schema);
  return {
    kind: 'moved',
    tables: counted,
    events: counts.get('events') ?? 0,
    transactionIdsUsed,
    chains,
    sourceHead: stored ? formatChainAnchor(stored) : null,
    head: chains.global.head ? formatChainAnchor(chains.global.head) : null,
  };
}

/**
 * The embedded tables with the target's types for each column, matched by name (a table made long ago
 * had later columns added at its end): both were made by the same migrations, so each side has the
 * other's tables and columns. Otherwise what differs, said.
 */
const matchTables = (from: readonly StoreTable[], into: readonly StoreTable[], schema: string): StoreTable[] | string => {
  const matched: StoreTable[] = [];
  for (const table of from) {
    const there = into.find((t) => t.name === table.name);
    if (!there) return `the table ${schema}.${table.name} of the embedded store is not one the CRM makes`;
    const types = new Map(there.columns.map((c) => [c.name, c.type]));
    const unmatched = [...table.columns.filter((c) => !types.has(c.name)), ...there.columns.filter((c) => !table.columns.some((own) => own.name === c.name))];
    if (unmatched.length > 0)
      return `the table ${schema}.${table.name} differs between the embedded store and the target in the columns ${unmatched.map((c) => c.name).join(', ')}`;
    matched.push({ ...table, columns: table.columns.map((c) => ({ name: c.name, type: types.get(c.name)! })) });
  }
  return matched;
};
