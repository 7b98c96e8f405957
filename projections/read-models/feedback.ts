import { sql, type Kysely } from 'kysely';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { idsOf, ms, occurredAt, secondsBetween } from './common.ts';
import { ensureSchema, RowSet, type Row, type TableSpec } from './rows.ts';

/**
 * `feedback`: one row per feedback item with its SLA clock. Breach flags are decided from event
 * times whenever the events settle them (a response or resolution after its due time, or any later
 * event seen past a due time): NULL means "not decided by the events yet"; queries add the clock for
 * items still open. `subject` is personal data: it reads '[erased]' once the customer is forgotten.
 */
export const FEEDBACK: TableSpec = {
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
  ],
};

async function migrate(db: Kysely<any>, schema: string): Promise<void> {
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
    last_event_at timestamptz NOT NULL
  ) WITH (fillfactor = 80)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_status_idx ON ${t} (status, priority)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_assignee_idx ON ${t} (assignee_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_customer_idx ON ${t} (customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_submitted_idx ON ${t} (submitted_at, feedback_id)`.execute(db);
  // Sort keys of GET /feedback (projections/queries/feedback.ts) with the id as tie-breaker.
  await sql`CREATE INDEX IF NOT EXISTS feedback_sort_resolution_due_idx ON ${t} (resolution_due_at, feedback_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS feedback_sort_priority_idx ON ${t} ((array_position(ARRAY['low','normal','high','urgent']::text[], priority)), feedback_id)`.execute(db);
}

/** Any event seen after a due time settles a breach that the missing response/resolution implies. */
const settleBreaches = (row: Row, at: string) => {
  if (row.first_responded_at === null && row.first_response_breached === null && ms(at) > ms(row.first_response_due_at)) {
    row.first_response_breached = true;
  }
  const unresolved = row.status === 'open' || row.status === 'in_progress';
  if (unresolved && row.resolution_breached === null && ms(at) > ms(row.resolution_due_at)) row.resolution_breached = true;
};

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const feedback = new RowSet(trx, schema, FEEDBACK);
  await feedback.load(idsOf(events, 'feedbackId'));
  const forgotten: string[] = [];
  for (const e of events) {
    const { event } = e;
    const at = occurredAt(e);
    if (event.type === 'CustomerForgotten') {
      forgotten.push(event.data.customerId);
      for (const row of feedback.find((r) => r.customer_id === event.data.customerId)) {
        row.subject = ERASED;
        feedback.touch(String(row.feedback_id));
      }
      continue;
    }
    if (event.type === 'FeedbackSubmitted') {
      const d = event.data;
      feedback.put({
        feedback_id: d.feedbackId,
        customer_id: d.customerId,
        kind: d.kind,
        channel: d.channel,
        subject: d.subject,
        priority: d.priority,
        status: 'open',
        assignee_id: null,
        submitted_at: at,
        first_response_due_at: d.firstResponseDueAt,
        resolution_due_at: d.resolutionDueAt,
        first_responded_at: null,
        resolved_at: null,
        closed_at: null,
        first_response_seconds: null,
        resolution_seconds: null,
        first_response_breached: null,
        resolution_breached: null,
        escalation_count: 0,
        reopen_count: 0,
        csat: d.csat,
        nps: d.nps,
        rated_at: null,
        revision: e.revision,
        last_event_at: at,
      });
      continue;
    }
    const id = (event.data as { feedbackId?: string }).feedbackId;
    const row = id ? feedback.get(id) : undefined;
    if (!row || !id) continue;
    settleBreaches(row, at);
    switch (event.type) {
      case 'FeedbackAssigned':
        row.assignee_id = event.data.assigneeId;
        if (row.status === 'open') row.status = 'in_progress';
        break;
      case 'FeedbackResponded':
        if (row.first_responded_at === null) {
          row.first_responded_at = at;
          row.first_response_seconds = secondsBetween(row.submitted_at, at);
          row.first_response_breached = ms(at) > ms(row.first_response_due_at);
        }
        if (row.status === 'open') row.status = 'in_progress';
        break;
      case 'FeedbackEscalated':
        row.priority = event.data.priority;
        row.first_response_due_at = event.data.firstResponseDueAt;
        row.resolution_due_at = event.data.resolutionDueAt;
        row.escalation_count = Number(row.escalation_count) + 1;
        break;
      case 'FeedbackResolved':
        row.status = 'resolved';
        row.resolved_at = at;
        row.resolution_seconds = secondsBetween(row.submitted_at, at);
        row.resolution_breached = ms(at) > ms(row.resolution_due_at);
        // Resolving without a response answers the customer too.
        if (row.first_response_breached === null) row.first_response_breached = ms(at) > ms(row.first_response_due_at);
        break;
      case 'FeedbackReopened':
        row.status = 'open';
        row.resolution_due_at = event.data.resolutionDueAt;
        row.resolved_at = null;
        row.resolution_seconds = null;
        row.resolution_breached = null;
        row.closed_at = null;
        row.reopen_count = Number(row.reopen_count) + 1;
        break;
      case 'FeedbackClosed':
        row.status = 'closed';
        row.closed_at = at;
        break;
      case 'FeedbackRated':
        row.csat = event.data.csat;
        row.rated_at = at;
        break;
      default:
        continue;
    }
    row.revision = e.revision;
    row.last_event_at = at;
    feedback.touch(id);
  }
  await feedback.flush();
  if (forgotten.length > 0) {
    await sql`UPDATE ${sql.id(schema, 'feedback')} SET subject = ${ERASED}
      WHERE customer_id = ANY(${forgotten}::uuid[]) AND subject <> ${ERASED}`.execute(trx);
  }
}

export const feedbackProjection: Projection = {
  name: 'feedback',
  version: 1,
  tables: ['feedback'],
  filter: { streamPrefixes: ['feedback-', 'customer-'] },
  migrate,
  apply,
  reportingViews: viewsOf('feedback'),
};
