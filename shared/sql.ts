import { sql, type Kysely, type QueryExecutorProvider, type RawBuilder } from 'kysely';

/**
 * The one handle every module uses to reach PostgreSQL, whether a server (pg pool) or the
 * embedded PGlite. Read models, projections and the event store all share it; the engines that
 * open one live in eventstore/postgres/database.ts.
 */
export interface SqlDatabase {
  readonly kind: 'postgres' | 'pglite';
  /** Pooled (pg) or the single PGlite connection. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- one handle for every schema and module: functions take it as QueryExecutorProvider or Kysely<unknown> and name their own tables (README "Code map")
  readonly db: Kysely<any>;
  /** LISTEN on a channel; resolves to a function that stops listening. */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  /**
   * Optional fast path for hot statements: runs `text` as a named prepared statement (parsed and
   * planned once per connection). Only the pg pool offers it; callers fall back to `db`.
   */
  readonly prepared?: <R>(name: string, text: string, params: unknown[]) => Promise<R[]>;
  /** Queries waiting for a pooled connection now (pg pool only): back-pressure reads it. */
  readonly waiting?: () => number;
  close(): Promise<void>;
}

/**
 * The comment that opens a statement the pg pool must not prepare (eventstore/postgres/statement-names.ts):
 * a list whose filter values decide the plan (a tag one customer in 500 has, or none has, is found
 * through the tags index; a common one by walking the sort order). A prepared statement's generic
 * plan, made for the first values seen, would serve every later value alike.
 */
export const PLANNED_PER_RUN_MARK = '/* planned per run */';

/** `PLANNED_PER_RUN_MARK` as a fragment to start a statement with. */
export const plannedPerRun = sql.raw(`${PLANNED_PER_RUN_MARK} `);

/**
 * Creates the schema if needed; every module's migrate starts with it. Like every function that only
 * runs SQL text (`sql`...`.execute(db)`), it takes a `QueryExecutorProvider`: any module's handle or
 * transaction, whatever tables that module declares (a `Kysely<Tables>` accepts only its own `Tables`).
 */
export async function ensureSchema(db: QueryExecutorProvider, schema: string): Promise<void> {
  try {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(schema)}`.execute(db);
  } catch (error) {
    // Two processes creating it at once: the loser sees a unique violation; the schema exists.
    if (!['23505', '42P06'].includes(sqlStateOf(error) ?? '')) throw error;
  }
}

/**
 * Runs statements without parameters in order: in one round trip with `oneRoundTrip` (a PostgreSQL
 * server takes them as one simple query), else one a call (PGlite prepares every query, and a prepared
 * query holds one statement).
 */
export async function executeStatements(db: QueryExecutorProvider, statements: readonly RawBuilder<unknown>[], oneRoundTrip: boolean): Promise<void> {
  if (oneRoundTrip && statements.length > 0) await sql.join(statements, sql`;\n`).execute(db);
  else for (const statement of statements) await statement.execute(db);
}

/**
 * The database server's clock now. Ages of stored timestamps (an event's `recorded_at`, a checkpoint's
 * `updated_at`: both set by the server's `now()`) are taken against it, never against this host's clock:
 * the two can be set apart by any amount, and an API host two minutes ahead showed every projection one
 * event behind as two minutes behind, so /ready answered 503 under steady traffic.
 */
export async function databaseNow(db: QueryExecutorProvider): Promise<Date> {
  const { rows } = await sql<{ now: Date | string }>`SELECT clock_timestamp() AS now`.execute(db);
  const now = rows[0]!.now;
  return now instanceof Date ? now : new Date(now);
}

/** The SQLSTATE PostgreSQL (server or PGlite) answered a failed statement with; undefined for any other failure. */
const sqlStateOf = (error: unknown): string | undefined => {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
};

/**
 * The statement named a table that does not exist (undefined_table, 42P01): on a fresh start the read
 * models are not created yet, and the reads that run before the projections answer "nothing yet".
 */
export const isMissingTable = (error: unknown): boolean => sqlStateOf(error) === '42P01';

/**
 * The statement named a column that does not exist (undefined_column, 42703): the tables of the
 * previous version keep serving while the new ones are rebuilt after an upgrade.
 */
export const isMissingColumn = (error: unknown): boolean => sqlStateOf(error) === '42703';

/** Escapes LIKE wildcards (and the escape character) so that the text matches as written. */
export const likeLiteral = (text: string): string => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** `LIKE` pattern matching a literal prefix. */
export const likePrefix = (prefix: string): string => `${likeLiteral(prefix)}%`;

/** A name as SQL text, quoted (`"a""b"`), for statements built as text: DDL, function bodies, DO blocks. */
export const quoteIdentifier = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** `schema.name` as SQL text, both parts quoted, for statements built as text. */
export const qualifiedName = (schema: string, name: string): string => `${quoteIdentifier(schema)}.${quoteIdentifier(name)}`;

/** A text as an SQL string literal (`'it''s'`), for statements built as text. */
export const quoteLiteral = (text: string): string => `'${text.replace(/'/g, "''")}'`;
