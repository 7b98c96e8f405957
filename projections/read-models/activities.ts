import { sql, type Kysely } from 'kysely';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { evolveActivity, type ActivityRow } from './activity-fold.ts';
import { idsOf } from './common.ts';
import { CUSTOMER_OWNER_EVENTS, CustomerOwners, customerOwnersTable, migrateCustomerOwners, type CustomerOwnerRow } from './customer-owners.ts';
import { ACTIVITY_DEAL_OWNERS, DEAL_OWNER_EVENTS, DealOwners, migrateDealOwners, type DealOwnerRow } from './deal-owners.ts';
import { ensureSchema, RowSet, type TableSpec } from './rows.ts';

/**
 * `activities`: one row per note, call, meeting or task, on a customer (and, when logged on a deal,
 * that deal), folded by `evolveActivity` (activity-fold.ts), the same fold the auditor's
 * point-in-time record reads. `body` is personal data: it reads '[erased]' once the customer is forgotten. A task is
 * open while `kind = 'task' AND completed_at IS NULL`; overdue is decided at query time (`now() > due_at`).
 * `customer_owner_id` is the account owner of the activity's customer (of the primary after a merge),
 * kept current from the customers' events (customer-owners.ts) for `own`/`team` visibility, and
 * `deal_owner_id`, the owner of the deal it was logged on, from the deals' events (deal-owners.ts).
 */
export const ACTIVITIES: TableSpec<ActivityRow> = {
  table: 'activities',
  key: 'activity_id',
  columns: [
    'activity_id',
    'customer_id',
    'deal_id',
    'kind',
    'subject',
    'body',
    'due_at',
    'assignee_id',
    'occurred_at',
    'completed_at',
    'logged_by',
    'revision',
    'last_event_at',
    'customer_owner_id',
    'deal_owner_id',
  ],
  keyType: 'uuid',
};

export const ACTIVITY_CUSTOMER_OWNERS = customerOwnersTable('activity');

/** The tables this projection owns, for kysely. */
export interface ActivityTables {
  activities: ActivityRow;
  activity_customer_owners: CustomerOwnerRow;
  activity_deal_owners: DealOwnerRow;
}

async function migrate(db: Kysely<ActivityTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'activities');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    activity_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    deal_id uuid,
    kind text NOT NULL CHECK (kind IN ('note', 'call', 'meeting', 'task')),
    subject text NOT NULL,
    body text,
    due_at timestamptz,
    assignee_id uuid,
    occurred_at timestamptz NOT NULL,
    completed_at timestamptz,
    logged_by text NOT NULL,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL,
    customer_owner_id uuid,
    deal_owner_id text
  ) WITH (fillfactor = 90)`.execute(db);
  // The three lists (projections/queries/activities.ts), each in its order with the id as tie-breaker.
  await sql`CREATE INDEX IF NOT EXISTS activities_customer_idx ON ${t} (customer_id, occurred_at, activity_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS activities_deal_idx ON ${t} (deal_id, occurred_at, activity_id) WHERE deal_id IS NOT NULL`.execute(db);
  // GET /activities without a parent: newest first, all or per assignee.
  await sql`CREATE INDEX IF NOT EXISTS activities_occurred_idx ON ${t} (occurred_at, activity_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS activities_assignee_idx ON ${t} (assignee_id, occurred_at, activity_id) WHERE assignee_id IS NOT NULL`.execute(db);
  // Open tasks per assignee, soonest due first (so overdue first); tasks without a due time last.
  await sql`CREATE INDEX IF NOT EXISTS activities_open_tasks_idx ON ${t} (assignee_id, (COALESCE(due_at, 'infinity'::timestamptz)), activity_id)
    WHERE kind = 'task' AND completed_at IS NULL`.execute(db);
  // Everyone's open tasks in the same order (GET /activities?open=true): without it every open task was sorted for each page.
  await sql`CREATE INDEX IF NOT EXISTS activities_open_tasks_due_idx ON ${t} ((COALESCE(due_at, 'infinity'::timestamptz)), activity_id)
    WHERE kind = 'task' AND completed_at IS NULL`.execute(db);
  // Every activity by due time (sort=dueAt without a filter that has an index of its own).
  await sql`CREATE INDEX IF NOT EXISTS activities_due_idx ON ${t} ((COALESCE(due_at, 'infinity'::timestamptz)), activity_id)`.execute(db);
  // Visibility: activities on the customers a scope's users own, in the list's two orders.
  await sql`CREATE INDEX IF NOT EXISTS activities_customer_owner_idx ON ${t} (customer_owner_id, occurred_at, activity_id) WHERE customer_owner_id IS NOT NULL`.execute(
    db,
  );
  await sql`CREATE INDEX IF NOT EXISTS activities_customer_owner_open_tasks_idx ON ${t} (customer_owner_id, (COALESCE(due_at, 'infinity'::timestamptz)), activity_id)
    WHERE kind = 'task' AND completed_at IS NULL AND customer_owner_id IS NOT NULL`.execute(db);
  // The same for the deals a scope's users own, and the due order of each owner column (sort=dueAt under a scope).
  await sql`CREATE INDEX IF NOT EXISTS activities_deal_owner_idx ON ${t} (deal_owner_id, occurred_at, activity_id) WHERE deal_owner_id IS NOT NULL`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS activities_deal_owner_open_tasks_idx ON ${t} (deal_owner_id, (COALESCE(due_at, 'infinity'::timestamptz)), activity_id)
    WHERE kind = 'task' AND completed_at IS NULL AND deal_owner_id IS NOT NULL`.execute(db);
  for (const column of ['assignee_id', 'customer_owner_id', 'deal_owner_id']) {
    await sql`CREATE INDEX IF NOT EXISTS ${sql.id(`activities_${column.replace(/_id$/, '')}_due_idx`)}
      ON ${t} (${sql.id(column)}, (COALESCE(due_at, 'infinity'::timestamptz)), activity_id) WHERE ${sql.id(column)} IS NOT NULL`.execute(db);
  }
  await migrateCustomerOwners(db, schema, ACTIVITY_CUSTOMER_OWNERS);
  await migrateDealOwners(db, schema);
}

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const activities = new RowSet(trx, schema, ACTIVITIES);
  const owners = new CustomerOwners(trx, schema, ACTIVITY_CUSTOMER_OWNERS);
  const dealOwners = new DealOwners(trx, schema);
  await activities.load(idsOf(events, 'activityId'));
  await owners.load(events, ({ event }) => (event.type === 'ActivityLogged' ? event.data.customerId : undefined));
  await dealOwners.load(events, ({ event }) => (event.type === 'ActivityLogged' ? event.data.dealId : undefined));
  const forgotten: string[] = [];
  for (const e of events) {
    const { event } = e;
    if (owners.apply(e) || dealOwners.apply(e)) continue;
    if (event.type === 'CustomerForgotten') {
      forgotten.push(event.data.customerId);
      for (const row of activities.find((r) => r.customer_id === event.data.customerId && r.body !== null)) {
        row.body = ERASED;
        activities.touch(row.activity_id);
      }
      continue;
    }
    const id = (event.data as { activityId?: string }).activityId;
    if (!id) continue;
    const before = activities.get(id);
    const after = evolveActivity(before, e);
    if (!after || after === before) continue;
    // The fold keeps the activity's own stream; the customer's owner comes from the customer's events.
    if (event.type === 'ActivityLogged') {
      after.customer_owner_id = owners.ownerOf(after.customer_id);
      after.deal_owner_id = dealOwners.ownerOf(after.deal_id);
    }
    activities.put(after);
  }
  await activities.flush();
  await owners.flush('activities');
  await dealOwners.flush();
  // Rows of earlier batches that this batch did not load.
  if (forgotten.length > 0) {
    await sql`UPDATE ${sql.id(schema, 'activities')} SET body = ${ERASED}
      WHERE customer_id = ANY(${forgotten}::uuid[]) AND body IS NOT NULL AND body <> ${ERASED}`.execute(trx);
  }
}

export const activitiesProjection: Projection = {
  name: 'activities',
  // 2: `customer_owner_id` (visibility by the customer's owner without a join) and `activity_customer_owners`.
  // 3: `deal_owner_id` and `activity_deal_owners` (a scope's activities paged per owner, not sorted whole).
  version: 3,
  tables: ['activities', ACTIVITY_CUSTOMER_OWNERS.table, ACTIVITY_DEAL_OWNERS.table],
  filter: {
    eventTypes: ['ActivityLogged', 'ActivityChanged', 'ActivityCompleted', 'CustomerForgotten', ...CUSTOMER_OWNER_EVENTS, ...DEAL_OWNER_EVENTS],
  },
  migrate,
  apply,
  reportingViews: viewsOf('activities'),
};
