import { sql, type QueryExecutorProvider } from 'kysely';
import type { ProjectedEvent } from '../projection.ts';
import { RowSet, type TableSpec } from './rows.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';

/**
 * The account owner of the customer a deal, feedback item or activity belongs to, kept on the record
 * itself (`customer_owner_id`), so that `own`/`team` visibility filters a list by an indexed column of
 * the list's own table instead of looking the owners up in `customers` (projections/queries/scope.ts).
 * After a merge a record follows the primary, as its figures do: its customer owner is the owner at the
 * end of the `merged_into` chain.
 *
 * Each projection that keeps the column follows the customers' owners and merges itself, in a small
 * table of its own (`<prefix>_customer_owners`): a projection reads only its own tables, so that it is
 * rebuilt alone, at its own pace, and its rows never depend on how far another projection has got.
 */

/** The customer events that move a record's customer owner. */
export const CUSTOMER_OWNER_EVENTS = ['CustomerOwnerAssigned', 'CustomerMergedInto'] as const;

/** A `<prefix>_customer_owners` row: a customer's owner (null: none yet) and the primary it was merged into. */
export type CustomerOwnerRow = {
  customer_id: string;
  owner_id: string | null;
  merged_into: string | null;
};

/** `<prefix>_customer_owners`, one per projection that keeps `customer_owner_id`. */
export const customerOwnersTable = (prefix: string): TableSpec<CustomerOwnerRow> => ({
  table: `${prefix}_customer_owners`,
  key: 'customer_id',
  keyType: 'uuid',
  columns: ['customer_id', 'owner_id', 'merged_into'],
});

export async function migrateCustomerOwners(db: QueryExecutorProvider, schema: string, spec: TableSpec<CustomerOwnerRow>): Promise<void> {
  const t = sql.id(schema, spec.table);
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    customer_id uuid PRIMARY KEY,
    owner_id uuid,
    merged_into uuid
  )`.execute(db);
  // An owner change reaches the records of the duplicates merged into the customer too.
  await sql`CREATE INDEX IF NOT EXISTS ${sql.id(`${spec.table}_merged_into_idx`)} ON ${t} (merged_into) WHERE merged_into IS NOT NULL`.execute(db);
}

/**
 * One batch's view of the customers' owners. `load` the customers the batch names, `apply` each event
 * in feed order, read `ownerOf` when a record is created, then `flush` after the records are written:
 * it stores the owners and sets `customer_owner_id` on every stored record of a customer whose owner
 * (or primary) changed in the batch, and of the duplicates merged into it. The column then equals the
 * owner at the end of the chain after every batch, whatever the batch boundaries or the order in
 * which a customer's and its records' events arrived.
 */
export class CustomerOwners {
  private readonly owners: RowSet<CustomerOwnerRow>;
  /** Customers whose owner or primary changed in this batch. */
  private readonly changed = new Set<string>();

  constructor(
    private readonly trx: QueryExecutorProvider,
    private readonly schema: string,
    private readonly spec: TableSpec<CustomerOwnerRow>,
  ) {
    this.owners = new RowSet(trx, schema, spec);
  }

  /** Loads the customers these events name (`customerOf` gives a record event's customer) and their primaries. */
  async load(events: ProjectedEvent[], customerOf: (e: ProjectedEvent) => string | undefined): Promise<void> {
    let wanted = new Set<string>();
    for (const e of events) {
      const { event } = e;
      if (event.type === 'CustomerOwnerAssigned') wanted.add(event.data.customerId);
      else if (event.type === 'CustomerMergedInto') wanted.add(event.data.customerId).add(event.data.primaryId);
      else {
        const id = customerOf(e);
        if (id) wanted.add(id);
      }
    }
    // The customers themselves, then each of up to MAX_MERGE_CHAIN primaries up.
    for (let hop = 0; hop <= MAX_MERGE_CHAIN && wanted.size > 0; hop++) {
      await this.owners.load(wanted);
      const next = new Set<string>();
      for (const id of wanted) {
        const primary = this.owners.get(id)?.merged_into;
        if (primary && !this.owners.get(primary)) next.add(primary);
      }
      wanted = next;
    }
  }

  /** Follows an owner or merge event; false for any other event. */
  apply(e: ProjectedEvent): boolean {
    const { event } = e;
    if (event.type === 'CustomerOwnerAssigned') this.update(event.data.customerId, (row) => (row.owner_id = event.data.ownerId));
    else if (event.type === 'CustomerMergedInto') this.update(event.data.customerId, (row) => (row.merged_into = event.data.primaryId));
    else return false;
    return true;
  }

  /** The owner of the customer at the end of the merge chain; null when it has none. */
  ownerOf(customerId: string): string | null {
    let id = customerId;
    for (let hop = 0; hop < MAX_MERGE_CHAIN; hop++) {
      const next = this.owners.get(id)?.merged_into;
      if (!next) break;
      id = next;
    }
    return this.owners.get(id)?.owner_id ?? null;
  }

  /** Stores the owners, then brings `customer_owner_id` of `records` (rows with a `customer_id`) up to date. */
  async flush(records: string): Promise<void> {
    await this.owners.flush();
    if (this.changed.size === 0) return;
    const roots = [...this.changed].map((id) => ({ customer_id: id, owner_id: this.ownerOf(id) }));
    this.changed.clear();
    // Each changed customer and every duplicate merged into it (chains followed) take the owner at
    // the end of the changed customer's chain.
    await sql`WITH RECURSIVE members(customer_id, owner_id, depth) AS (
        SELECT r.customer_id, r.owner_id, 0 FROM jsonb_to_recordset(${JSON.stringify(roots)}::jsonb) AS r(customer_id uuid, owner_id uuid)
        UNION ALL
        SELECT o.customer_id, m.owner_id, m.depth + 1 FROM ${sql.id(this.schema, this.spec.table)} o
          JOIN members m ON o.merged_into = m.customer_id WHERE m.depth < ${MAX_MERGE_CHAIN}
      )
      UPDATE ${sql.id(this.schema, records)} t SET customer_owner_id = m.owner_id FROM members m
      WHERE t.customer_id = m.customer_id AND t.customer_owner_id IS DISTINCT FROM m.owner_id`.execute(this.trx);
  }

  private update(customerId: string, change: (row: CustomerOwnerRow) => void): void {
    const row = this.owners.get(customerId) ?? { customer_id: customerId, owner_id: null, merged_into: null };
    change(row);
    this.owners.put(row);
    this.changed.add(customerId);
  }
}
