import { sql, type Kysely } from 'kysely';

/**
 * Planner statistics of read-model tables after bulk changes.
 *
 * A catch-up (the first start on an existing log, an import, a rebuild into a shadow schema) fills
 * tables with tens of thousands of rows in seconds. Autovacuum gathers statistics only when 10% of a
 * table has changed since its last ANALYZE, checks at most once a minute, and may be turned off;
 * until then a table that was never analysed is planned as a handful of rows. Measured on the
 * queries bench (10,000 customers, no statistics): the customers list took about 1,000 ms instead
 * of 1 ms, its per-row revenue subquery planned as a hash join over every revenue line, the whole
 * plan costed high enough for PostgreSQL to JIT-compile it. So the runner analyses a projection's
 * tables itself after it applied 10,000 events in this process, again each time that count doubles
 * (a few ANALYZE runs over a catch-up of any length, none in steady state), and a rebuild analyses
 * the shadow tables before swapping them in.
 */
export const FIRST_ANALYZE_AFTER_EVENTS = 10_000;

/** ANALYZE of each table (ones that do not exist are passed over); sampling, so about constant time per table. */
export async function analyzeTables(db: Kysely<any>, schema: string, tables: readonly string[]): Promise<void> {
  const { rows } = await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p') AND c.relname = ANY(CAST(${[...tables]} AS text[]))`.execute(db);
  for (const { name } of rows) await sql`ANALYZE ${sql.id(schema, name)}`.execute(db);
}

/**
 * When a projection's tables are due for statistics: after `first` events applied, then each time
 * the count doubles. Counts are per process (a restart starts again: one more ANALYZE after its
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
    this.next.set(name, 2 * total);
    return true;
  }
}
