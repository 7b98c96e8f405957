import { sql, type Kysely } from 'kysely';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { idsOf } from './common.ts';
import { CustomerOwners, customerOwnersTable, migrateCustomerOwners, type CustomerOwnerRow } from './customer-owners.ts';
import { evolveFeedback, type FeedbackRow } from './feedback-fold.ts';
import { ensureSchema, RowSet, type TableSpec } from './rows.ts';

/**
 * `feedback`: one row per feedback item with its SLA clock, folded by `evolveFeedback`
 * (feedback-fold.ts), the same fold the auditor's point-in-time record reads. Breach flags are decided from event
 * times whenever the events settle them (a response or resolution after its due time, or any later
 * event seen past a due time): NULL means "not decided by the events yet"; queries add the clock for
 * items still open. `subject` is personal data: it reads '[erased]' once the customer is forgotten.
 * `customer_owner_id` is the account owner of the item's customer (of the primary after a merge), kept
 * current from the customers' events (customer-owners.ts) for `own`/`team` visibility.
 */
export const FEEDBACK: TableSpec<FeedbackRow> = {
  table: 'feedback',
  key: 'feedback_id',
  columns: [
    'feedback_id',
    'customer_id',
    'kind',
    'channel',
    'subject',
    'priority',
    'status',
    'assignee_id',
    'submitted_at',
    'first_response_due_at',
    'resolution_due_at',
    'first_responded_at',
    'resolved_at',
    'closed_at',
    'first_response_seconds',
    'resolution_seconds',
    'first_response_breached',
    'resolution_breached',
    'escalation_count',
    'reopen_count',
    'csat',
    'nps',
    'rated_at',
    'revision',
    'last_event_at',
    'customer_owner_id',
  ],
};

export const FEEDBACK_CUSTOMER_OWNERS = customerOwnersTable('feedback');

/** The sort keys of GET /feedback (projections/queries/feedback.ts), by index name. */
const SORT_KEYS = {
  submitted: sql`submitted_at`,
  resolution_due: sql`resolution_due_at`,
  priority: sql`(array_position(ARRAY['low','normal','high','urgent']::text[], priority))`,
} as const;

/** The tables this projection owns, for kysely. */
export interface FeedbackTables {
  feedback: FeedbackRow;
  feedback_customer_owners: CustomerOwnerRow;
}

async function migrate(db: Kysely<FeedbackTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'feedback');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    feedback_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    subject text NOT NULL,
    priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status text NOT NULL CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    assignee_id text,
    submitted_at timestamptz NOT NULL,
    first_response_due_at timestamptz NOT NULL,
    resolution_due_at timestamptz NOT NULL,
    first_responded_at timestamptz,
    resolved_at timestamptz,
    closed_at timestamptz,
    first_response_seconds double precision,
    resolution_seconds double precision,
    first_response_breached boolean,
    resolution_breached boolean,
    escalation_count integer NOT NULL DEFAULT 0,
    reopen_count integer NOT NULL DEFAULT 0,
    csat smallint,
    nps smallint,
    rated_at timestamptz,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL,
    customer_owner_id uuid
  ) WITH (fillfactor = 80)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_status_idx ON ${t} (status, priority)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_customer_idx ON ${t} (customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_submitted_idx ON ${t} (submitted_at, feedback_id)`.execute(db);
  // Sort keys of GET /feedback (projections/queries/feedback.ts) with the id as tie-breaker.
  await sql`CREATE INDEX IF NOT EXISTS feedback_sort_resolution_due_idx ON ${t} (resolution_due_at, feedback_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_sort_priority_idx ON ${t} ((array_position(ARRAY['low','normal','high','urgent']::text[], priority)), feedback_id)`.execute(
    db,
  );
  // Visibility: an item is in a scope through its assignee or its customer's owner. Each sort key
  // behind either column, so a restricted page merges one index range per owner and column.
  for (const owner of ['assignee_id', 'customer_owner_id']) {
    for (const [name, sort] of Object.entries(SORT_KEYS)) {
      await sql`CREATE INDEX IF NOT EXISTS ${sql.id(`feedback_${owner.replace('_id', '')}_${name}_idx`)} ON ${t} (${sql.id(owner)}, ${sort}, feedback_id)`.execute(
        db,
      );
    }
  }
  await migrateCustomerOwners(db, schema, FEEDBACK_CUSTOMER_OWNERS);
}

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const feedback = new RowSet(trx, schema, FEEDBACK);
  const owners = new CustomerOwners(trx, schema, FEEDBACK_CUSTOMER_OWNERS);
  await feedback.load(idsOf(events, 'feedbackId'));
  await owners.load(events, ({ event }) => (event.type === 'FeedbackSubmitted' ? event.data.customerId : undefined));
  const forgotten: string[] = [];
  for (const e of events) {
    const { event } = e;
    if (owners.apply(e)) continue;
    if (event.type === 'CustomerForgotten') {
      forgotten.push(event.data.customerId);
      for (const row of feedback.find((r) => r.customer_id === event.data.customerId)) {
        row.subject = ERASED;
        feedback.touch(row.feedback_id);
      }
      continue;
    }
    const id = (event.data as { feedbackId?: string }).feedbackId;
    if (!id) continue;
    const before = feedback.get(id);
    const after = evolveFeedback(before, e);
    if (!after || after === before) continue;
    // The fold keeps the item's own stream; the customer's owner comes from the customer's events.
    if (event.type === 'FeedbackSubmitted') after.customer_owner_id = owners.ownerOf(after.customer_id);
    feedback.put(after);
  }
  await feedback.flush();
  await owners.flush('feedback');
  if (forgotten.length > 0) {
    await sql`UPDATE ${sql.id(schema, 'feedback')} SET subject = ${ERASED}
      WHERE customer_id = ANY(${forgotten}::uuid[]) AND subject <> ${ERASED}`.execute(trx);
  }
}

export const feedbackProjection: Projection = {
  name: 'feedback',
  // 2: `customer_owner_id` (visibility by the customer's owner without a join) and `feedback_customer_owners`.
  // 3: a reopened item is `in_progress`, as the decider's state (it read `open`, which no filter matched with the rules).
  // 4: a reopened item's `rated_at` is cleared, as the decider takes a rating again (the console offered none).
  // 5: a reopened item keeps `rated_at` beside the `csat` it kept: the rating's month was lost, and ticket,
  //    export and reporting figures by month differed from the analytics'.
  version: 5,
  tables: ['feedback', FEEDBACK_CUSTOMER_OWNERS.table],
  filter: { streamPrefixes: ['feedback-', 'customer-'] },
  migrate,
  apply,
  reportingViews: viewsOf('feedback'),
};
