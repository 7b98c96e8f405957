import type { FeedbackPriority, FeedbackStatus } from '../../domain/feedback/events.ts';
import type { ProjectedEvent } from '../../shared/events.ts';
import { ms, occurredAt, secondsBetween, type Instant } from './common.ts';

/**
 * A feedback item folded from its stream, written once: the live projection (feedback.ts), rebuild
 * and replay store it as the `feedback` row, and the auditor's point-in-time record
 * (audit/records.ts) is read from it. The pattern for the other read models (issue 17, item 3).
 */

export type { Instant };

/** The `feedback` table's columns, typed (FEEDBACK in feedback.ts lists them in table order). */
export type FeedbackRow = {
  feedback_id: string;
  customer_id: string;
  kind: string;
  channel: string;
  /** Personal data: '[erased]' once the customer is forgotten. */
  subject: string;
  priority: FeedbackPriority;
  status: FeedbackStatus;
  assignee_id: string | null;
  submitted_at: Instant;
  first_response_due_at: Instant;
  resolution_due_at: Instant;
  first_responded_at: Instant | null;
  resolved_at: Instant | null;
  closed_at: Instant | null;
  first_response_seconds: number | null;
  resolution_seconds: number | null;
  /** NULL: not decided by the events yet (queries add the clock for items still open). */
  first_response_breached: boolean | null;
  resolution_breached: boolean | null;
  escalation_count: number;
  reopen_count: number;
  csat: number | null;
  nps: number | null;
  rated_at: Instant | null;
  revision: number;
  last_event_at: Instant;
  /**
   * The account owner of the item's customer (of the primary after a merge), for visibility: set by the
   * projection from the customers' events (customer-owners.ts); this fold starts it at null and carries it along.
   */
  customer_owner_id: string | null;
};

/**
 * What the fold keeps: the row, plus what only the auditor's record shows (not stored in the table;
 * undefined on a row loaded from it, which the live projection never reads).
 */
export type FeedbackState = FeedbackRow & {
  body?: string | undefined;
  resolution?: string | null | undefined;
};

/** Any event seen after a due time settles a breach that the missing response/resolution implies. */
const settleBreaches = (row: FeedbackState, at: string): FeedbackState => {
  const next = { ...row };
  if (next.first_responded_at === null && next.first_response_breached === null && ms(at) > ms(next.first_response_due_at)) {
    next.first_response_breached = true;
  }
  const unresolved = next.status === 'open' || next.status === 'in_progress';
  if (unresolved && next.resolution_breached === null && ms(at) > ms(next.resolution_due_at)) next.resolution_breached = true;
  return next;
};

/**
 * The item after one event of its stream; undefined before it was submitted. Pure: times are the
 * events' business times. (Forgetting the customer, an event of another stream, is the
 * projection's: it erases `subject` on every row of that customer.)
 */
export function evolveFeedback(state: FeedbackState | undefined, e: ProjectedEvent): FeedbackState | undefined {
  const { event } = e;
  const at = occurredAt(e);
  if (event.type === 'FeedbackSubmitted') {
    const d = event.data;
    return {
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
      customer_owner_id: null,
      body: d.body,
      resolution: null,
    };
  }
  if (!state) return state;
  const row = settleBreaches(state, at);
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
      row.escalation_count += 1;
      break;
    case 'FeedbackResolved':
      row.status = 'resolved';
      row.resolved_at = at;
      row.resolution = event.data.resolution;
      row.resolution_seconds = secondsBetween(row.submitted_at, at);
      row.resolution_breached = ms(at) > ms(row.resolution_due_at);
      // Resolving without a response answers the customer too.
      if (row.first_response_breached === null) row.first_response_breached = ms(at) > ms(row.first_response_due_at);
      break;
    case 'FeedbackReopened':
      // Being worked again, as the decider has it (domain/feedback/decider.ts): a second reopen is refused.
      row.status = 'in_progress';
      row.resolution_due_at = event.data.resolutionDueAt;
      row.resolved_at = null;
      row.resolution = null;
      row.resolution_seconds = null;
      row.resolution_breached = null;
      row.closed_at = null;
      // The last rating stays, `csat` with its `rated_at`, until the next resolution is rated (the
      // decider takes a rating again): the satisfaction figures count it in the month it was given
      // (analytics/projection.ts), and every door that shows the score says when that was.
      row.reopen_count += 1;
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
      // Not an event of a feedback stream: the item is unchanged.
      return state;
  }
  row.revision = e.revision;
  row.last_event_at = at;
  return row;
}
