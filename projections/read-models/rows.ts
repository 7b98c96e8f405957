import { CompiledQuery, sql, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { qualifiedName } from '../../shared/sql.ts';

/**
 * Batch-friendly row access for projections: load the rows a batch touches in one query, fold the
 * events in memory, write the changed rows back in a few multi-row upserts. This is what lets a full
 * replay run at tens of thousands of events per second instead of one round trip per event.
 */
export type Row = Record<string, unknown>;

/** A table's layout; `R`, when given, is its typed row, so the compiler checks the column names. */
export interface TableSpec<R extends object = Row> {
  table: string;
  key: keyof R & string;
  /** Writable columns in table order (generated columns excluded). */
  columns: readonly (keyof R & string)[];
  /** SQL type of the key column (e.g. 'uuid', 'text'); looked up in the catalog when absent. */
  keyType?: string;
}

/** SQL type of each table's key column, looked up once (the same in live, shadow and replay schemas). */
const keyTypes = new Map<string, string>();

async function keyTypeOf(trx: QueryExecutorProvider, schema: string, spec: { table: string; key: string; keyType?: string | undefined }): Promise<string> {
  if (spec.keyType) return spec.keyType;
  const cacheKey = `${spec.table}.${spec.key}`;
  let type = keyTypes.get(cacheKey);
  if (!type) {
    const { rows } = await sql<{ type: string }>`SELECT format_type(a.atttypid, NULL) AS type FROM pg_attribute a
      WHERE a.attrelid = ${qualifiedName(schema, spec.table)}::regclass AND a.attname = ${spec.key}`.execute(trx);
    type = rows[0]?.type ?? 'text';
    keyTypes.set(cacheKey, type);
  }
  return type;
}

export class RowSet<R extends object = Row> {
  private readonly rows = new Map<string, R>();
  private readonly dirty = new Set<string>();
  private readonly deleted = new Set<string>();

  constructor(
    private readonly trx: QueryExecutorProvider,
    private readonly schema: string,
    private readonly spec: TableSpec<R>,
  ) {}

  /** Loads the rows with these keys (those already loaded are kept). */
  async load(keys: Iterable<string>): Promise<void> {
    const wanted = [...new Set(keys)].filter((k) => !this.rows.has(k) && !this.deleted.has(k));
    if (wanted.length === 0) return;
    const keyType = await keyTypeOf(this.trx, this.schema, this.spec);
    // `key = ANY(array of the key's own type)` so the primary-key index serves the lookup.
    const text = statementText(
      this.trx,
      'load',
      this.schema,
      this.spec,
      (keys) =>
        sql`SELECT ${sql.join(this.spec.columns.map((c) => sql.id(c)))}
      FROM ${sql.id(this.schema, this.spec.table)} WHERE ${sql.id(this.spec.key)} = ANY(CAST(${keys} AS ${sql.raw(keyType)}[]))`,
    );
    const { rows } = await this.trx.getExecutor().executeQuery<Row>(CompiledQuery.raw(text, [wanted]));
    for (const row of rows) {
      // The columns selected are the spec's, which are R's keys.
      this.rows.set(String(row[this.spec.key]), row as R);
    }
  }

  get(key: string): R | undefined {
    return this.rows.get(key);
  }

  /** Inserts or replaces the row and marks it for writing. */
  put(row: R): void {
    const key = String(row[this.spec.key]);
    this.rows.set(key, row);
    this.deleted.delete(key);
    this.dirty.add(key);
  }

  /** Marks a loaded row as changed (after mutating it in place). */
  touch(key: string): void {
    if (this.rows.has(key)) this.dirty.add(key);
  }

  /** Keys of loaded rows matching a predicate (rows not loaded are not seen). */
  find(predicate: (row: R) => boolean): R[] {
    return [...this.rows.values()].filter(predicate);
  }

  async flush(): Promise<void> {
    const rows = [...this.dirty].map((k) => this.rows.get(k)!).filter(Boolean);
    this.dirty.clear();
    if (rows.length === 0) return;
    await upsertRows(this.trx, this.schema, this.spec, rows);
  }
}

/**
 * Rows travel as ONE jsonb parameter expanded by `jsonb_populate_recordset` into the table's row
 * type: no per-value parameters to build or bind, and PostgreSQL converts each JSON value to the
 * column's type (arrays, numerics as strings, ISO timestamps, jsonb) exactly as a literal would.
 */
const rowsAsRecordset = <R extends object>(schema: string, spec: TableSpec<R>, rows: unknown) =>
  sql`SELECT ${sql.join(spec.columns.map((c) => sql.id(c)))}
      FROM jsonb_populate_recordset(NULL::${sql.id(schema, spec.table)}, ${rows}::jsonb)`;

/**
 * The text of a table's statement in one schema, compiled once with its one parameter: a batch then
 * only binds its value. (Building and compiling the statement, about two nodes per column, on every
 * write was 2-3% of the API's CPU at purchase max.)
 */
const statementTexts = new WeakMap<object, Map<string, string>>();
const statementText = (
  trx: QueryExecutorProvider,
  kind: 'load' | 'upsert' | 'insert' | 'add',
  schema: string,
  spec: object,
  build: (parameter: unknown) => RawBuilder<unknown>,
): string => {
  let texts = statementTexts.get(spec);
  if (!texts) statementTexts.set(spec, (texts = new Map()));
  const key = `${kind} ${schema}`;
  let text = texts.get(key);
  if (text === undefined) {
    const compiled = build(null).compile(trx);
    if (compiled.parameters.length !== 1) throw new Error(`${kind} on ${schema}: one parameter expected, ${compiled.parameters.length} compiled`);
    text = compiled.sql;
    // Schemas come and go (rebuild shadows, replays): a bound, not an LRU, since a text is cheap to make again.
    if (texts.size >= 100) texts.clear();
    texts.set(key, text);
  }
  return text;
};

const rowsJson = <R extends object>(spec: TableSpec<R>, rows: readonly R[]): string => JSON.stringify(rows.map((r) => pick(r, spec.columns)));

const pick = <R extends object>(row: R, columns: readonly (keyof R & string)[]): Row => {
  const out: Row = {};
  for (const c of columns) out[c] = row[c] ?? null;
  return out;
};

/** Bounded statement size: very large batches are split. */
const CHUNK_ROWS = 5_000;

/** Multi-row `INSERT ... ON CONFLICT (key) DO UPDATE` over every writable column. */
export async function upsertRows<R extends object>(trx: QueryExecutorProvider, schema: string, spec: TableSpec<R>, rows: readonly R[]): Promise<void> {
  const cols = spec.columns;
  const text = statementText(trx, 'upsert', schema, spec, (json) => {
    const updates = cols.filter((c) => c !== spec.key).map((c) => sql`${sql.id(c)} = EXCLUDED.${sql.id(c)}`);
    return sql`INSERT INTO ${sql.id(schema, spec.table)} (${sql.join(cols.map((c) => sql.id(c)))})
      ${rowsAsRecordset(schema, spec, json)}
      ON CONFLICT (${sql.id(spec.key)}) DO UPDATE SET ${sql.join(updates)}`;
  });
  for (let i = 0; i < rows.length; i += CHUNK_ROWS) {
    await trx.getExecutor().executeQuery(CompiledQuery.raw(text, [rowsJson(spec, rows.slice(i, i + CHUNK_ROWS))]));
  }
}

/**
 * Adds each row's `count` column to the stored row with its key (a new key is inserted as given) and
 * deletes the rows whose count comes to 0: counters kept as differences, with no read before the write.
 */
export async function addCounts<R extends object>(
  trx: QueryExecutorProvider,
  schema: string,
  spec: TableSpec<R>,
  count: keyof R & string,
  rows: readonly R[],
): Promise<void> {
  const cols = spec.columns;
  const text = statementText(
    trx,
    'add',
    schema,
    spec,
    (json) => sql`INSERT INTO ${sql.id(schema, spec.table)} AS stored (${sql.join(cols.map((c) => sql.id(c)))})
      ${rowsAsRecordset(schema, spec, json)}
      ON CONFLICT (${sql.id(spec.key)}) DO UPDATE SET ${sql.id(count)} = stored.${sql.id(count)} + EXCLUDED.${sql.id(count)}
      RETURNING ${sql.id(spec.key)}::text AS key, ${sql.id(count)} = 0 AS emptied`,
  );
  const emptied: string[] = [];
  for (let i = 0; i < rows.length; i += CHUNK_ROWS) {
    const { rows: added } = await trx
      .getExecutor()
      .executeQuery<{ key: string; emptied: boolean }>(CompiledQuery.raw(text, [rowsJson(spec, rows.slice(i, i + CHUNK_ROWS))]));
    for (const row of added) if (row.emptied) emptied.push(row.key);
  }
  if (emptied.length > 0) {
    const keyType = await keyTypeOf(trx, schema, spec);
    await sql`DELETE FROM ${sql.id(schema, spec.table)} WHERE ${sql.id(spec.key)} = ANY(CAST(${emptied} AS ${sql.raw(keyType)}[]))`.execute(trx);
  }
}

/**
 * Multi-row plain insert for append-only tables (the timeline). No ON CONFLICT: the checkpoint in the
 * same transaction means an event is never applied twice, so a duplicate key is a bug and fails loudly.
 */
export async function insertRows<R extends object>(trx: QueryExecutorProvider, schema: string, spec: TableSpec<R>, rows: readonly R[]): Promise<void> {
  const cols = spec.columns;
  const text = statementText(
    trx,
    'insert',
    schema,
    spec,
    (json) => sql`INSERT INTO ${sql.id(schema, spec.table)} (${sql.join(cols.map((c) => sql.id(c)))})
      ${rowsAsRecordset(schema, spec, json)}`,
  );
  for (let i = 0; i < rows.length; i += CHUNK_ROWS) {
    await trx.getExecutor().executeQuery(CompiledQuery.raw(text, [rowsJson(spec, rows.slice(i, i + CHUNK_ROWS))]));
  }
}

/** Kept here for the read models that import it beside `RowSet`; it lives in shared/sql.ts. */
export { ensureSchema } from '../../shared/sql.ts';
