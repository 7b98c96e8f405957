import { sql, type QueryExecutorProvider } from 'kysely';
import type { ProjectedEvent } from '../projection.ts';
import { RowSet, type TableSpec } from './rows.ts';

/**
 * The owner of the deal an activity was logged on, kept on the activity itself (`deal_owner_id`), so
 * that `own`/`team` visibility pages an owner's activities through an index of the activities table
 * (one range per owner and column, projections/queries/page.ts) instead of reading every activity of
 * the scope and sorting them. The activities projection follows the deals' owners in a small table of
 * its own (`activity_deal_owners`): a projection reads only its own tables (customer-owners.ts).
 */

/** The deal events that set or move a deal's owner. */
export const DEAL_OWNER_EVENTS = ['DealOpened', 'DealOwnerChanged'] as const;

export type DealOwnerRow = { deal_id: string; owner_id: string };

export const ACTIVITY_DEAL_OWNERS: TableSpec<DealOwnerRow> = {
  table: 'activity_deal_owners',
  key: 'deal_id',
  keyType: 'uuid',
  columns: ['deal_id', 'owner_id'],
};

export async function migrateDealOwners(db: QueryExecutorProvider, schema: string): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, ACTIVITY_DEAL_OWNERS.table)} (
    deal_id uuid PRIMARY KEY,
    owner_id text NOT NULL
  )`.execute(db);
}

/**
 * One batch's view of the deals' owners. `load` the deals the batch names, `apply` each event in feed
 * order, read `ownerOf` when an activity is logged, then `flush` after the activities are written: it
 * stores the owners and sets `deal_owner_id` on every stored activity of a deal whose owner changed in
 * the batch. The column then equals the deal's owner after every batch, whatever the batch boundaries.
 */
export class DealOwners {
  private readonly owners: RowSet<DealOwnerRow>;
  /** Deals whose owner changed in this batch (not those opened in it). */
  private readonly changed = new Set<string>();

  constructor(
    private readonly trx: QueryExecutorProvider,
    private readonly schema: string,
  ) {
    this.owners = new RowSet(trx, schema, ACTIVITY_DEAL_OWNERS);
  }

  /** Loads the deals these events name (`dealOf` gives an activity event's deal). */
  async load(events: ProjectedEvent[], dealOf: (e: ProjectedEvent) => string | null | undefined): Promise<void> {
    const wanted = new Set<string>();
    for (const e of events) {
      const { event } = e;
      const id = event.type === 'DealOpened' || event.type === 'DealOwnerChanged' ? event.data.dealId : dealOf(e);
      if (id) wanted.add(id);
    }
    await this.owners.load(wanted);
  }

  /** Follows a deal's opening or owner change; false for any other event. */
  apply(e: ProjectedEvent): boolean {
    const { event } = e;
    if (event.type !== 'DealOpened' && event.type !== 'DealOwnerChanged') return false;
    this.owners.put({ deal_id: event.data.dealId, owner_id: event.data.ownerId });
    // A deal just opened has no stored activity to update: one is logged on a deal only after it exists.
    if (event.type === 'DealOwnerChanged') this.changed.add(event.data.dealId);
    return true;
  }

  /** The deal's owner; null for an activity on no deal (or a deal this projection has not seen). */
  ownerOf(dealId: string | null): string | null {
    return dealId === null ? null : (this.owners.get(dealId)?.owner_id ?? null);
  }

  /** Stores the owners, then brings `deal_owner_id` of the changed deals' activities up to date. */
  async flush(): Promise<void> {
    await this.owners.flush();
    if (this.changed.size === 0) return;
    const deals = [...this.changed];
    this.changed.clear();
    await sql`UPDATE ${sql.id(this.schema, 'activities')} t SET deal_owner_id = o.owner_id
      FROM ${sql.id(this.schema, ACTIVITY_DEAL_OWNERS.table)} o
      WHERE o.deal_id = ANY(${deals}::uuid[]) AND t.deal_id = o.deal_id AND t.deal_owner_id IS DISTINCT FROM o.owner_id`.execute(this.trx);
  }
}
