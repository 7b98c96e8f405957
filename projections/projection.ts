import type { Kysely, Transaction } from 'kysely';
import type { EventFilter } from '../eventstore/contract.ts';
import type { ProjectedEvent } from '../shared/events.ts';

/** The decoded event (shared/events.ts), re-exported here for the read models that import it beside `Projection`. */
export type { ProjectedEvent } from '../shared/events.ts';

/** Where a projection writes: the transaction of the batch and the schema it must use for every table. */
export interface ProjectionContext {
  trx: Transaction<unknown>;
  /** Read-model schema (the live one, or a shadow/as-of schema during rebuild and replay). */
  schema: string;
}

/**
 * A read model maintained from the global feed. The runner calls `apply` with a batch of events and
 * commits the batch together with the checkpoint (invariant 5). `apply` must be deterministic:
 * it may not read the clock or random numbers (invariant 6), only the events.
 */
export interface Projection {
  /** Stable name, also the checkpoint key (e.g. `customers`). */
  readonly name: string;
  /** Bump when the projection's logic or tables change: the runner then rebuilds it. */
  readonly version: number;
  /**
   * What its rows depend on besides the code and the events (the analytics' base currency, which their
   * amounts are converted to): recorded with the checkpoint, and a change rebuilds it as a new version does.
   */
  readonly variant?: string;
  /** Tables it owns, in `schema`; verify and rebuild compare and swap exactly these. */
  readonly tables: readonly string[];
  /** Only these events are delivered (everything else still advances the checkpoint). */
  readonly filter?: EventFilter;
  /**
   * Creates its tables and indexes in `schema`; idempotent. Each read model takes the handle as its
   * own tables (`Kysely<DealTables>`) or as `QueryExecutorProvider`, hence `any` here.
   */
  migrate(db: Kysely<any>, schema: string): Promise<void>;
  apply(ctx: ProjectionContext, events: ProjectedEvent[]): Promise<void>;
  /**
   * Optional: the documented `reporting` views over its tables, as SQL statements (`CREATE VIEW ...`).
   * Recreated after every swap, because dropping the old tables drops the views that read them.
   */
  reportingViews?(names: { readSchema: string; reportingSchema: string }): string[];
}
