import { sql, type RawBuilder } from 'kysely';
import { byCustomerOwner, feedbackInScope, ownedOrCustomerListScope, scoped, type ReadScope } from './scope.ts';
import { ofCustomerAndMerged } from './customers.ts';
import { iso, listOf, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';
import type { FeedbackRow } from '../read-models/feedback-fold.ts';

export type FeedbackView = {
  id: string;
  customerId: string;
  kind: string;
  channel: string;
  /** Personal data: '[erased]' once the customer is forgotten. */
  subject: string;
  priority: 'low' | 'normal' | 'high' | 'urgent';
  status: 'open' | 'in_progress' | 'resolved' | 'closed';
  assigneeId: string | null;
  submittedAt: string;
  firstResponseDueAt: string;
  resolutionDueAt: string;
  firstRespondedAt: string | null;
  resolvedAt: string | null;
  closedAt: string | null;
  firstResponseSeconds: number | null;
  resolutionSeconds: number | null;
  /** Settled by the events, or (still waiting) by the clock at query time. */
  firstResponseBreached: boolean;
  resolutionBreached: boolean;
  breached: boolean;
  escalationCount: number;
  reopenCount: number;
  csat: number | null;
  nps: number | null;
  ratedAt: string | null;
  revision: number;
  updatedAt: string;
};

export interface FeedbackListQuery {
  status?: string;
  priority?: string;
  kind?: string;
  channel?: string;
  customerId?: string;
  assigneeId?: string;
  breached?: boolean;
  /** submittedAt | resolutionDueAt | priority, `-` for descending. Default `-submittedAt`. */
  sort?: string;
  limit?: number;
  cursor?: string;
}

/** Stored flags plus the clock for items still waiting (the only place the clock is read). */
const FIRST_RESPONSE_BREACHED = sql`(COALESCE(t.first_response_breached, false) OR (t.first_responded_at IS NULL
  AND t.status IN ('open', 'in_progress') AND now() > t.first_response_due_at))`;
const RESOLUTION_BREACHED = sql`(COALESCE(t.resolution_breached, false) OR (t.status IN ('open', 'in_progress')
  AND now() > t.resolution_due_at))`;
const BREACH_COLUMNS = [sql`${FIRST_RESPONSE_BREACHED} AS first_response_breached_now`, sql`${RESOLUTION_BREACHED} AS resolution_breached_now`];

/** A `feedback` row as the queries read it: the fold's row and its breaches now (BREACH_COLUMNS). */
type FeedbackQueryRow = FeedbackRow & { first_response_breached_now: boolean; resolution_breached_now: boolean };

/** What a feedback item's own row says, named as the API names it: the view's fields but the durations, the breaches (the clock) and the revision. */
export type FeedbackFields = Omit<
  FeedbackView,
  'firstResponseSeconds' | 'resolutionSeconds' | 'firstResponseBreached' | 'resolutionBreached' | 'breached' | 'revision'
>;

/** The one naming of a feedback row's fields: the view reads it, and so does the auditor's record as of an instant. */
export const feedbackFieldsOf = (r: FeedbackRow): FeedbackFields => ({
  id: r.feedback_id,
  customerId: r.customer_id,
  kind: r.kind,
  channel: r.channel,
  subject: r.subject,
  priority: r.priority,
  status: r.status,
  assigneeId: r.assignee_id,
  submittedAt: iso(r.submitted_at)!,
  firstResponseDueAt: iso(r.first_response_due_at)!,
  resolutionDueAt: iso(r.resolution_due_at)!,
  firstRespondedAt: iso(r.first_responded_at),
  resolvedAt: iso(r.resolved_at),
  closedAt: iso(r.closed_at),
  escalationCount: r.escalation_count,
  reopenCount: r.reopen_count,
  csat: r.csat,
  nps: r.nps,
  ratedAt: iso(r.rated_at),
  updatedAt: iso(r.last_event_at)!,
});

const toFeedbackView = (r: FeedbackQueryRow): FeedbackView => ({
  ...feedbackFieldsOf(r),
  firstResponseSeconds: r.first_response_seconds,
  resolutionSeconds: r.resolution_seconds,
  firstResponseBreached: r.first_response_breached_now,
  resolutionBreached: r.resolution_breached_now,
  breached: r.first_response_breached_now || r.resolution_breached_now,
  revision: r.revision,
});

const sorts: Record<string, SortSpec> = {
  submittedAt: { expr: sql`t.submitted_at`, type: 'timestamptz' },
  resolutionDueAt: { expr: sql`t.resolution_due_at`, type: 'timestamptz' },
  priority: { expr: sql`array_position(ARRAY['low','normal','high','urgent']::text[], t.priority)`, type: 'integer' },
};

/** `GET /feedback`: filters by status, priority, kind, channel, customer, assignee and SLA breach. */
export async function listFeedback(source: ReadModelSource, query: FeedbackListQuery = {}, scope?: ReadScope | null): Promise<Page<FeedbackView>> {
  const where: RawBuilder<unknown>[] = [];
  if (query.status) where.push(sql`t.status = ${query.status}`);
  if (query.priority) where.push(sql`t.priority = ${query.priority}`);
  if (query.kind) where.push(sql`t.kind = ${query.kind}`);
  if (query.channel) where.push(sql`t.channel = ${query.channel}`);
  // The customer's feedback and that of the duplicates merged into it, as its counters count them.
  if (query.customerId) where.push(ofCustomerAndMerged(source, uuidOf(query.customerId), sql`t.customer_id`));
  if (query.assigneeId) where.push(sql`t.assignee_id = ${query.assigneeId}`);
  if (query.breached === true) where.push(sql`(${FIRST_RESPONSE_BREACHED} OR ${RESOLUTION_BREACHED})`);
  if (query.breached === false) where.push(sql`NOT (${FIRST_RESPONSE_BREACHED} OR ${RESOLUTION_BREACHED})`);
  return byCustomerOwner(scope, (lookup) =>
    listOf(
      {
        source,
        table: 'feedback',
        key: 'feedback_id',
        extra: BREACH_COLUMNS,
        where,
        ...ownedOrCustomerListScope(scope, { column: 'assignee_id', type: 'text' }, lookup, (s) => feedbackInScope(source, s, lookup)),
        sorts,
        defaultSort: '-submittedAt',
      },
      query,
      toFeedbackView,
    ),
  );
}

/** `GET /feedback/:id`; undefined when unknown. */
export async function getFeedback(source: ReadModelSource, id: string, scope?: ReadScope | null): Promise<FeedbackView | undefined> {
  const row = await byCustomerOwner(scope, (lookup) =>
    rowById<FeedbackQueryRow>(
      source,
      'feedback',
      'feedback_id',
      id,
      BREACH_COLUMNS,
      scoped(scope, (s) => feedbackInScope(source, s, lookup)),
    ),
  );
  return row ? toFeedbackView(row) : undefined;
}
