import { sql, type Kysely } from 'kysely';

/**
 * Planner statistics of read-model tables after bulk changes.
 *
 * A catch-up (the first start on an existing log, an import, a rebuild into a shadow schema) fills
 * tables with tens of thousands of rows in seconds. Autovacuum gathers statistics only when 10% of a
 * table has changed since its last ANALYZE, checks at most once a minute, and may be turned off;
 * until then a table never analysed is planned as a handful of rows. In the queries bench
 * (bench/suites/queries.ts) on the code before this, the customers lists took 2.1-4.3 s p50 at
 * 100,000 customers right after the catch-up (about 30 ms with statistics): the revenue of each listed
 * customer was planned as a hash join over every revenue line. So the runner analyses a projection's
 * tables itself after it applied 10,000 events in this process, again each time that count has grown
 * fourfold (a few ANALYZE runs over a catch-up of any length, none in steady state), and a rebuild
 * analyses the shadow tables before swapping them in.
 */
export const FIRST_ANALYZE_AFTER_EVENTS = 10_000;

/** A table is analysed again once this many rows changed since its last ANALYZE, and at least half its size. */
export const ANALYZE_MIN_CHANGED_ROWS = 1_000;

/**
 * ANALYZE of each table (ones that do not exist are passed over); sampling, so about constant time per
 * table. With `minChangedRows`, only the tables never analysed (nor vacuumed) and those where at least
 * that many rows, and half as many as the table had at its last ANALYZE, changed since (the server's
 * own counts, which can lag a second behind): small tables and those the batches hardly touched are
 * left alone once they have statistics. Analysing every table of every projection at each step made
 * a catch-up of 74,000 events about 12% slower (measured interleaved with main's runner); with this,
 * no slower than without.
 */
export async function analyzeTables(db: Kysely<unknown>, schema: string, tables: readonly string[], options: { minChangedRows?: number } = {}): Promise<void> {
  const changed =
    options.minChangedRows !== undefined
      ? sql`AND (c.reltuples < 0 OR s.relid IS NULL OR s.n_mod_since_analyze >= greatest(${options.minChangedRows}, 0.5 * c.reltuples))`
      : sql``;
  const { rows } = await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
    WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p') AND c.relname = ANY(CAST(${[...tables]} AS text[])) ${changed}`.execute(db);
  for (const { name } of rows) await sql`ANALYZE ${sql.id(schema, name)}`.execute(db);
}

/**
 * When a projection's tables are due for statistics: after `first` events applied, then each time
 * the count has grown fourfold (statistics from at least a quarter of what a catch-up loads; each round
 * costs the catch-up time, so few of them). Counts are per process (a restart starts again: one more ANALYZE after its
 * first 10,000 events, harmless).
 */
export class AnalyzeSchedule {
  private readonly applied = new Map<string, number>();
  private readonly next = new Map<string, number>();

  constructor(private readonly first = FIRST_ANALYZE_AFTER_EVENTS) {}

  /** Counts `events` applied to `name`; true when its tables should be analysed now. */
  record(name: string, events: number): boolean {
    const total = (this.applied.get(name) ?? 0) + events;
    this.applied.set(name, total);
    const due = this.next.get(name) ?? this.first;
    if (total < due) return false;
    this.next.set(name, 4 * total);
    return true;
  }
}
