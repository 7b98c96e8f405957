import { sql, type QueryExecutorProvider, type RawBuilder } from 'kysely';
import { z } from 'zod';
import { plannedPerRun } from '../../shared/sql.ts';

/** Where the read models are: the handle and the (live) read schema. */
export interface ReadModelSource {
  db: QueryExecutorProvider;
  schema: string;
  /** ISO 4217 code base-currency figures are given in (CRM_BASE_CURRENCY); default EUR. */
  baseCurrency?: string;
}

export interface Page<T = Record<string, unknown>> {
  items: T[];
  nextCursor: string | null;
}

export interface SortSpec {
  /** SQL expression over alias `t`; never NULL (wrap nullable columns in COALESCE). */
  expr: RawBuilder<unknown>;
  /** SQL type to cast the cursor's text back to. */
  type: 'text' | 'timestamptz' | 'numeric' | 'integer' | 'bigint' | 'date';
  /**
   * The expression reads the list's `joined` table (alias `k`), not `t`: the page is then ordered by
   * `k`'s key too, so that an index of `k` gives the order.
   */
  joined?: boolean;
  /**
   * Names the order of a sort whose values changed meaning (`name` by `name_sort` where it was by
   * `lower(name)`): its cursors carry it, so that a cursor of the former order, a position that now
   * means another place in the list, is refused with a 400 saying to start again instead of skipping
   * or repeating rows.
   */
  order?: string;
}

/**
 * `?sort=name` of every list that has it: dictionary order, by the `name_sort` column the projection
 * writes (projections/read-models/name-sort.ts). Cursors of the former `lower(name)` order are refused.
 */
export const NAME_ORDER: SortSpec = { expr: sql`t.name_sort`, type: 'text', order: 'name_sort' };

/** A cursor that cannot be decoded is bad input (400 naming `cursor`), never a 500. */
const badCursor = (input: unknown, message = 'not a cursor returned by this list') => new z.ZodError([{ code: 'custom', path: ['cursor'], message, input }]);

/**
 * A keyset position: `[sort value as text, key]` in JSON, and the sort's `order` when it names one. The
 * API seals it before a client sees it (api/cursor-seal.ts); it is still checked here against the
 * sort's SQL type, so that no position, whoever made it, reaches PostgreSQL as a cast that fails.
 */
const encodeCursor = (sortValue: string, key: string, order: string | undefined): string =>
  JSON.stringify(order === undefined ? [sortValue, key] : [sortValue, key, order]);

/** A real calendar day of years 1-9999 (PostgreSQL refuses year 0 and February 30). */
const isDay = (v: string): boolean => {
  const [y, m, d] = [Number(v.slice(0, 4)), Number(v.slice(5, 7)), Number(v.slice(8, 10))];
  const day = new Date(Date.UTC(2000, m - 1, d));
  day.setUTCFullYear(y);
  return y > 0 && day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
};
const inBigintRange = (v: string): boolean => /^-?\d{1,19}$/.test(v) && BigInt(v) <= 9_223_372_036_854_775_807n && BigInt(v) >= -9_223_372_036_854_775_808n;

/** What PostgreSQL's `::text` of each sort type looks like; anything else would fail the cast back. */
const SORT_VALUE_FORMATS: Record<SortSpec['type'], (value: string) => boolean> = {
  text: (v) => !v.includes('\u0000') && v.length <= 4_000,
  timestamptz: (v) => /^-?infinity$/.test(v) || (/^\d{4}-\d{2}-\d{2} ([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?[+-]\d{2}(:\d{2}){0,2}$/.test(v) && isDay(v)),
  date: (v) => /^-?infinity$/.test(v) || (/^\d{4}-\d{2}-\d{2}$/.test(v) && isDay(v)),
  numeric: (v) => /^(-?\d{1,1000}(\.\d{1,1000})?|NaN|-?Infinity)$/.test(v),
  integer: (v) => /^-?\d{1,10}$/.test(v) && Math.abs(Number(v)) <= 2_147_483_647,
  bigint: inBigintRange,
};

const KEY_FORMATS = { uuid: (v: string) => UUID.test(v), bigint: inBigintRange } as const;

/** The cursor's position; undefined for one of the order the sort had before it named one (`SortSpec.order`). */
const decodeCursor = (cursor: string, sort: SortSpec, keyType: keyof typeof KEY_FORMATS): [string, string] | undefined => {
  let value: unknown;
  try {
    value = JSON.parse(cursor);
  } catch {
    throw badCursor(cursor);
  }
  if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string') {
    const [sortValue, key, order] = value as [string, string, unknown];
    if (value.length === 2 && sort.order !== undefined) return undefined;
    if (value.length === (sort.order === undefined ? 2 : 3) && order === sort.order && KEY_FORMATS[keyType](key) && SORT_VALUE_FORMATS[sort.type](sortValue)) {
      return [sortValue, key];
    }
  }
  throw badCursor(cursor);
};

/**
 * A read-model row as a query reads it. Untyped by default; a list names its row type (`DealQueryRow`)
 * so its view is mapped from typed columns.
 */
export type AnyRow = Record<string, any>;

export interface PageRequest<R extends object = AnyRow> {
  source: ReadModelSource;
  table: string;
  /** Unique column that breaks ties in the order. */
  key: keyof R & string;
  keyType?: 'uuid' | 'bigint';
  /** Extra selected expressions (computed at query time), `expr AS name`. */
  extra?: RawBuilder<unknown>[];
  where: RawBuilder<unknown>[];
  /** The caller's visibility (projections/queries/scope.ts), over alias `t`. */
  scope?: RawBuilder<unknown>;
  /**
   * Read the scope's rows first, behind an optimisation fence (`OFFSET 0`), then filter, order and
   * page them: for a scope that holds a small share of the table.
   */
  fenced?: boolean;
  /**
   * The scope as owners of one or more owner columns (a row is in the scope when any of them names one
   * of the owners), each with an index per sort key that starts with it: the page is merged from one
   * ordered index range per owner and column (each at most a page long), so a restricted page reads
   * about a page per owner and column, not every row of the scope. Replaces `scope`.
   */
  perOwner?: { owners: readonly string[]; columns: readonly { column: string; type: 'uuid' | 'text' }[] };
  /**
   * A table with the same key as `table`, one row per row of it, joined by that key as alias `k`: it
   * holds values that change too often to be indexed on `table` itself (each such index makes every
   * update of a row write all of `table`'s indexes), with their own sort indexes. Joined when the sort
   * reads it (`SortSpec.joined`) or `where` holds conditions on it; when the page is merged per owner
   * with such a sort, it holds the owner columns too.
   */
  joined?: { table: string; where: RawBuilder<unknown>[] };
  sorts: Record<string, SortSpec>;
  /** `field` or `-field` (descending). */
  sort: string;
  defaultSort: string;
  limit?: number;
  cursor?: string;
}

/**
 * Keyset pagination: rows after (sort value, key) of the cursor, in a stable order (the key breaks
 * ties), so pages neither skip nor repeat rows while new rows arrive.
 */
export async function pageOf<R extends object = AnyRow>(request: PageRequest<R>): Promise<Page<Sorted<R>>> {
  const limit = Math.min(Math.max(Math.trunc(request.limit ?? 50), 1), 500);
  const sortName = request.sort || request.defaultSort;
  const desc = sortName.startsWith('-');
  const spec = request.sorts[desc ? sortName.slice(1) : sortName];
  if (!spec) throw new z.ZodError([{ code: 'custom', path: ['sort'], message: `unknown sort ${sortName}`, input: sortName }]);
  if (spec.joined && !request.joined) throw new Error(`sort ${sortName} of ${request.table} reads a joined table the list does not name`);
  const joined = request.joined && (spec.joined || request.joined.where.length > 0) ? request.joined : undefined;
  // The alias whose index gives the order: its key breaks ties, and its owner columns scope a per-owner range.
  const ordered = spec.joined ? 'k' : 't';
  const key = sql.ref(`${ordered}.${request.key}`);
  const where = [...request.where, ...(joined?.where ?? [])];
  const table = sql.id(request.source.schema, request.table);
  const join = joined ? sql`JOIN ${sql.id(request.source.schema, joined.table)} k ON ${sql.ref(`k.${request.key}`)} = ${sql.ref(`t.${request.key}`)}` : sql``;
  if (request.cursor) {
    const keyType = request.keyType ?? 'uuid';
    const position = decodeCursor(request.cursor, spec, keyType);
    if (!position) {
      // Refused only where this order serves: the previous version's tables, serving while a rebuild
      // makes the new ones, lack its column, and the caller's fallback (`unlessRebuilding`) reads the
      // cursor in the order that issued it.
      await sql`SELECT ${spec.expr} FROM ${table} t ${join} LIMIT 0`.execute(request.source.db);
      throw badCursor(request.cursor, 'a cursor of the order this sort had before an upgrade; start again without a cursor');
    }
    const [value, id] = position;
    const cast = sql`CAST(${value} AS ${sql.raw(spec.type)})`;
    const keyValue = sql`CAST(${id} AS ${sql.raw(keyType)})`;
    where.push(desc ? sql`(${spec.expr}, ${key}) < (${cast}, ${keyValue})` : sql`(${spec.expr}, ${key}) > (${cast}, ${keyValue})`);
  }
  const direction = sql.raw(desc ? 'DESC' : 'ASC');
  const order = sql`ORDER BY ${spec.expr} ${direction}, ${key} ${direction} LIMIT ${limit + 1}`;
  const owners = request.perOwner;
  if (owners) {
    // One ordered range per owner and column, each limited to a page, with its sort value (`__sort_key`:
    // the expression may read the joined table); the middle query merges them into the page (a row
    // reached through two columns once), the outer one computes the extra columns for the page's rows only.
    const ranges = owners.columns.map(
      ({ column, type }) => sql`(SELECT t.*, ${spec.expr} AS __sort_key FROM ${table} t ${join}
        WHERE ${sql.join([sql`${sql.ref(`${ordered}.${column}`)} = CAST(scope_owner.id AS ${sql.raw(type)})`, ...where], sql` AND `)} ${order})`,
    );
    const merged = sql`t.__sort_key ${direction}, ${sql.ref(`t.${request.key}`)} ${direction}`;
    const distinct = owners.columns.length > 1 ? sql`DISTINCT ON (t.__sort_key, ${sql.ref(`t.${request.key}`)})` : sql``;
    const { rows } = await sql<Sorted<R>>`${plannedPerRun}SELECT t.*, t.__sort_key::text AS __sort ${sql.join([sql``, ...(request.extra ?? [])], sql`, `)}
      FROM (SELECT ${distinct} t.* FROM unnest(CAST(${[...owners.owners]} AS text[])) AS scope_owner(id)
        CROSS JOIN LATERAL (${sql.join(ranges, sql` UNION ALL `)}) t
        ORDER BY ${merged} LIMIT ${limit + 1}) t
      ORDER BY ${merged}`.execute(request.source.db);
    return pageFrom(rows, limit, request.key, spec.order);
  }
  if (request.scope && !request.fenced) where.push(request.scope);
  const from = request.scope && request.fenced ? sql`(SELECT * FROM ${table} t WHERE ${request.scope} OFFSET 0)` : table;
  // Planned on each run, never prepared: the filters' values decide the plan (shared/sql.ts).
  const { rows } = await sql<Sorted<R>>`${plannedPerRun}SELECT t.*, (${spec.expr})::text AS __sort ${sql.join([sql``, ...(request.extra ?? [])], sql`, `)}
    FROM ${from} t ${join}
    ${where.length > 0 ? sql`WHERE ${sql.join(where, sql` AND `)}` : sql``}
    ${order}`.execute(request.source.db);
  return pageFrom(rows, limit, request.key, spec.order);
}

/** A row of a page: its columns and its sort value as text (`__sort`, for the cursor). */
type Sorted<R> = R & { __sort: string };

/** The page of `limit` rows and the cursor after its last row, when more follow. */
const pageFrom = <R extends object>(rows: Sorted<R>[], limit: number, keyColumn: keyof R & string, order: string | undefined): Page<Sorted<R>> => {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  const last = items[items.length - 1];
  return { items, nextCursor: more && last ? encodeCursor(last.__sort, String(last[keyColumn]), order) : null };
};

/** One read model's list: what `pageOf` needs besides the caller's sort, limit and cursor. */
export type ListSpec<R extends object = AnyRow> = Omit<PageRequest<R>, 'sort' | 'limit' | 'cursor'>;

/** A page of a list: the caller's sort (else the list's default), limit and cursor; each row mapped to its view. */
export async function listOf<T, R extends object = AnyRow>(
  spec: ListSpec<NoInfer<R>>,
  query: { sort?: string; limit?: number; cursor?: string },
  toView: (row: R) => T,
): Promise<Page<T>> {
  const page = await pageOf<R>({ ...spec, sort: query.sort ?? spec.defaultSort, limit: query.limit, cursor: query.cursor });
  return { items: page.items.map((row) => toView(row)), nextCursor: page.nextCursor };
}

/**
 * One read-model row by its uuid key, with the `extra` computed columns; undefined when there is none,
 * or when it is outside the caller's scope (`where`): the caller cannot tell the two apart.
 */
export async function rowById<R extends object = AnyRow>(
  source: ReadModelSource,
  table: string,
  key: NoInfer<keyof R & string>,
  id: string,
  extra: RawBuilder<unknown>[] = [],
  where: RawBuilder<unknown>[] = [],
): Promise<R | undefined> {
  const { rows } = await sql<R>`SELECT t.* ${sql.join([sql``, ...extra], sql`, `)}
    FROM ${sql.id(source.schema, table)} t WHERE ${sql.join([sql`${sql.ref(`t.${key}`)} = ${uuidOf(id)}`, ...where], sql` AND `)}`.execute(source.db);
  return rows[0];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** An id as a uuid parameter (so the primary-key index is used); an id that is no uuid matches nothing. */
export const uuidOf = (id: string) => (UUID.test(id) ? sql`${id}::uuid` : sql`NULL::uuid`);

/**
 * Timestamps as ISO strings, numerics as JS numbers. A `date` column needs neither: both engines give
 * it as its text, 'YYYY-MM-DD' (eventstore/postgres/database.ts).
 */
export const iso = (value: unknown): string | null =>
  value === null || value === undefined ? null : value instanceof Date ? value.toISOString() : new Date(String(value)).toISOString();

export const num = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
