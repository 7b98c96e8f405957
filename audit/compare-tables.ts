import { randomBytes } from 'node:crypto';
import { sql, type QueryExecutorProvider } from 'kysely';

/**
 * Compares one table in two schemas: whole-table hash first (one aggregate per side), and only when
 * those differ, row hashes merged by primary key to name each differing row and its columns.
 * Each side gets its own query handle, so the live side can be read in a snapshot while the
 * replayed side is read fresh (see verify.ts).
 *
 * The row hashes of a differing table are read through a cursor on each side, a page at a time, and
 * merged as they come: holding both sides whole took 430 bytes a row (a 500,000-row table differing in
 * one row took the process from 113 to 327 MB), so a long history's timeline could not be compared in
 * bounded memory. The cursors are `WITH HOLD` (valid outside a transaction; PostgreSQL keeps the
 * rows, spilling to disk), so each handle must run its statements in one session: a connection
 * of its own (`db.connection()`), a transaction, or PGlite's single session.
 */

type Handle = QueryExecutorProvider;

export interface ColumnDifference {
  column: string;
  live: unknown;
  replayed: unknown;
}

export interface RowDifference {
  table: string;
  /** Primary key of the row (column -> value); the row's content hash for a table without one. */
  key: Record<string, unknown>;
  kind: 'changed' | 'missing_in_live' | 'extra_in_live';
  /** For `changed`: the columns whose values differ. */
  columns?: ColumnDifference[];
}

export interface TableComparison {
  table: string;
  equal: boolean;
  liveRows: number;
  replayedRows: number;
  liveHash: string;
  replayedHash: string;
  /** Differing rows, all of them counted. */
  differences: number;
  /** The first differing rows, in key order, with their differing columns. */
  sample: RowDifference[];
  /** Set when the live table does not exist (the projection never ran there). */
  liveMissing?: true;
}

const SAMPLE_SIZE = 20;

/** Primary key columns of `schema.table`, in key order (empty when it has none). */
async function primaryKey(db: Handle, schema: string, table: string): Promise<string[]> {
  const { rows } = await sql<{ column: string }>`
    SELECT a.attname AS column
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
     WHERE n.nspname = ${schema} AND c.relname = ${table} AND i.indisprimary
     ORDER BY k.ord`.execute(db);
  return rows.map((r) => r.column);
}

/** The row's key as one text value; `\x1f` separates the parts of a composite key. */
const keyExpression = (pk: string[]) =>
  pk.length === 0
    ? sql`md5(to_jsonb(t)::text)`
    : sql.join(
        pk.map((c) => sql`coalesce(${sql.ref(`t.${c}`)}::text, '')`),
        sql` || chr(31) || `,
      );

async function tableHash(db: Handle, schema: string, table: string, pk: string[]): Promise<{ rows: number; hash: string }> {
  const { rows } = await sql<{ n: string; h: string | null }>`
    SELECT count(*)::text AS n, md5(string_agg(md5(to_jsonb(t)::text), ',' ORDER BY ${keyExpression(pk)} COLLATE "C", md5(to_jsonb(t)::text))) AS h
      FROM ${sql.id(schema, table)} t`.execute(db);
  return { rows: Number(rows[0]?.n ?? 0), hash: rows[0]?.h ?? md5Empty };
}
const md5Empty = 'd41d8cd98f00b204e9800998ecf8427e';

/** Rows of each side held at once while merging. */
const PAGE_SIZE = 5_000;

interface RowHash {
  key: string;
  hash: string;
}

/** One side's row hashes in key order, fetched a page at a time from a cursor. */
class RowHashCursor {
  private readonly name = `crm_compare_${randomBytes(6).toString('hex')}`;
  private page: RowHash[] = [];
  private index = 0;
  private exhausted = false;
  private opened = false;

  constructor(
    private readonly db: Handle,
    private readonly source: { schema: string; table: string; pk: string[] },
    private readonly pageSize: number,
  ) {}

  async open(): Promise<void> {
    const { schema, table, pk } = this.source;
    await sql`DECLARE ${sql.id(this.name)} NO SCROLL CURSOR WITH HOLD FOR
      SELECT ${keyExpression(pk)} AS key, md5(to_jsonb(t)::text) AS hash
        FROM ${sql.id(schema, table)} t
       ORDER BY ${keyExpression(pk)} COLLATE "C", md5(to_jsonb(t)::text)`.execute(this.db);
    this.opened = true;
  }

  /** The current row, or undefined past the last one. */
  async peek(): Promise<RowHash | undefined> {
    if (this.index < this.page.length) return this.page[this.index];
    if (this.exhausted) return undefined;
    const { rows } = await sql<RowHash>`FETCH FORWARD ${sql.lit(this.pageSize)} FROM ${sql.id(this.name)}`.execute(this.db);
    this.page = rows;
    this.index = 0;
    if (rows.length < this.pageSize) this.exhausted = true;
    return rows[0];
  }

  next(): void {
    this.index += 1;
  }

  async close(): Promise<void> {
    if (this.opened) await sql`CLOSE ${sql.id(this.name)}`.execute(this.db);
    this.opened = false;
  }
}

async function rowJson(db: Handle, schema: string, table: string, pk: string[], key: string): Promise<Record<string, unknown> | undefined> {
  const { rows } = await sql<{ row: Record<string, unknown> }>`
    SELECT to_jsonb(t) AS row FROM ${sql.id(schema, table)} t WHERE ${keyExpression(pk)} = ${key} LIMIT 1`.execute(db);
  return rows[0]?.row;
}

/** "C" collation order is byte order of the UTF-8 text. */
const compareKeys = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

const keyObject = (pk: string[], key: string, row: Record<string, unknown> | undefined): Record<string, unknown> =>
  pk.length === 0 ? { rowHash: key } : Object.fromEntries(pk.map((c) => [c, row?.[c] ?? null]));

const tableExists = async (db: Handle, schema: string, table: string): Promise<boolean> => {
  const { rows } = await sql<{ found: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = ${schema} AND c.relname = ${table}) AS found`.execute(db);
  return rows[0]?.found ?? false;
};

export interface CompareOptions {
  /** Rows of each side fetched at a time while merging (default 5,000). */
  pageSize?: number;
}

export async function compareTable(
  live: { db: Handle; schema: string },
  replayed: { db: Handle; schema: string },
  table: string,
  options: CompareOptions = {},
): Promise<TableComparison> {
  const pk = await primaryKey(replayed.db, replayed.schema, table);
  if (!(await tableExists(live.db, live.schema, table))) {
    const replayedSum = await tableHash(replayed.db, replayed.schema, table, pk);
    return {
      table,
      equal: replayedSum.rows === 0,
      liveRows: 0,
      replayedRows: replayedSum.rows,
      liveHash: md5Empty,
      replayedHash: replayedSum.hash,
      differences: replayedSum.rows,
      sample: [],
      liveMissing: true,
    };
  }
  const [liveSum, replayedSum] = [await tableHash(live.db, live.schema, table, pk), await tableHash(replayed.db, replayed.schema, table, pk)];
  const base = {
    table,
    liveRows: liveSum.rows,
    replayedRows: replayedSum.rows,
    liveHash: liveSum.hash,
    replayedHash: replayedSum.hash,
  };
  if (liveSum.hash === replayedSum.hash && liveSum.rows === replayedSum.rows) {
    return { ...base, equal: true, differences: 0, sample: [] };
  }
  const pageSize = options.pageSize ?? PAGE_SIZE;
  const liveRows = new RowHashCursor(live.db, { schema: live.schema, table, pk }, pageSize);
  const replayedRows = new RowHashCursor(replayed.db, { schema: replayed.schema, table, pk }, pageSize);
  const pending: { key: string; kind: RowDifference['kind'] }[] = [];
  let differences = 0;
  const note = (key: string, kind: RowDifference['kind']) => {
    differences += 1;
    if (pending.length < SAMPLE_SIZE) pending.push({ key, kind });
  };
  try {
    await liveRows.open();
    await replayedRows.open();
    for (;;) {
      const l = await liveRows.peek();
      const r = await replayedRows.peek();
      if (!l && !r) break;
      const order = !l ? 1 : !r ? -1 : compareKeys(l.key, r.key);
      if (order < 0) {
        note(l!.key, 'extra_in_live');
        liveRows.next();
      } else if (order > 0) {
        note(r!.key, 'missing_in_live');
        replayedRows.next();
      } else {
        if (l!.hash !== r!.hash) note(l!.key, 'changed');
        liveRows.next();
        replayedRows.next();
      }
    }
  } finally {
    await liveRows.close();
    await replayedRows.close();
  }
  const sample: RowDifference[] = [];
  for (const { key, kind } of pending) {
    const liveRow = kind === 'missing_in_live' ? undefined : await rowJson(live.db, live.schema, table, pk, key);
    const replayedRow = kind === 'extra_in_live' ? undefined : await rowJson(replayed.db, replayed.schema, table, pk, key);
    const difference: RowDifference = { table, key: keyObject(pk, key, liveRow ?? replayedRow), kind };
    if (kind === 'changed' && liveRow && replayedRow) {
      const columns = [...new Set([...Object.keys(replayedRow), ...Object.keys(liveRow)])];
      difference.columns = columns
        .filter((c) => JSON.stringify(liveRow[c]) !== JSON.stringify(replayedRow[c]))
        .map((c) => ({ column: c, live: liveRow[c] ?? null, replayed: replayedRow[c] ?? null }));
    }
    sample.push(difference);
  }
  return { ...base, equal: differences === 0, differences, sample };
}
