import { createHash } from 'node:crypto';
import { PLANNED_PER_RUN_MARK } from '../../shared/sql.ts';

/**
 * Names for the pool's parameterised statements, so that PostgreSQL parses, analyses and (after its
 * fifth run, when the generic plan is no dearer) plans each one once per connection instead of on
 * every execution. Planning dominated the short read-model queries: GET /customers/:id spent 5.7 ms
 * of PostgreSQL CPU per read unnamed and 0.6 ms named (bench/reference, issue 15).
 *
 * - A text is named from its second execution on: a statement run once (a migration, a one-off
 *   report) costs a prepared statement on no connection.
 * - The name is a digest of the text, so one name always means one text (pg refuses a name reused
 *   for another text), whatever the connection.
 * - A text that starts with `PLANNED_PER_RUN_MARK` (shared/sql.ts) is never named: its plan depends
 *   on its values (list filters), which only an unnamed statement is planned for each time.
 * - Each connection keeps at most `perConnection` names; past that its new texts run unnamed. The
 *   texts counted are bounded too (`remembered`): the count restarts when full.
 *
 * Only the pg pool uses it (eventstore/postgres/database.ts). PGlite runs in process through its own
 * dialect, where there is no network round trip and no per-connection plan cache to keep.
 */
export interface StatementNamesOptions {
  /** Names a connection may hold (default 500). */
  perConnection?: number;
  /** Texts whose executions are counted at once (default 5000). */
  remembered?: number;
}

export const DEFAULT_NAMES_PER_CONNECTION = 500;
const DEFAULT_REMEMBERED = 5_000;

/** The prefix of every generated name (the hand-named statements of `SqlDatabase.prepared` use others). */
export const STATEMENT_NAME_PREFIX = 'crm_s_';

export const statementName = (text: string): string => `${STATEMENT_NAME_PREFIX}${createHash('sha1').update(text).digest('hex')}`;

/** SQLSTATE 0A000 with this message: a named statement's result columns changed under it (a table swapped). */
export const isStalePlanError = (error: unknown): boolean => {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && /cached plan must not change result type/i.test(message);
};

export class StatementNames {
  private readonly perConnection: number;
  private readonly remembered: number;
  /** Text -> its name once seen twice; `null` after one execution. */
  private readonly seen = new Map<string, string | null>();
  private readonly byConnection = new WeakMap<object, Set<string>>();

  constructor(options: StatementNamesOptions = {}) {
    this.perConnection = options.perConnection ?? DEFAULT_NAMES_PER_CONNECTION;
    this.remembered = options.remembered ?? DEFAULT_REMEMBERED;
  }

  /**
   * The name to run `text` under on `connection`, or undefined to run it unnamed (first execution,
   * or the connection holds its quota of names already).
   */
  nameFor(connection: object, text: string): string | undefined {
    if (text.startsWith(PLANNED_PER_RUN_MARK)) return undefined;
    let name = this.seen.get(text);
    if (name === undefined) {
      if (this.seen.size >= this.remembered) this.seen.clear();
      this.seen.set(text, null);
      return undefined;
    }
    if (name === null) {
      name = statementName(text);
      this.seen.set(text, name);
    }
    let names = this.byConnection.get(connection);
    if (!names) {
      names = new Set();
      this.byConnection.set(connection, names);
    }
    if (names.has(name)) return name;
    if (names.size >= this.perConnection) return undefined;
    names.add(name);
    return name;
  }

  /** Names held on `connection` (tests and diagnostics). */
  heldBy(connection: object): number {
    return this.byConnection.get(connection)?.size ?? 0;
  }
}
