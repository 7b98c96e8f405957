import { changesOf, type ActivityKind } from '../../domain/activity/events.ts';
import type { ProjectedEvent } from '../../shared/events.ts';
import { occurredAt, type Instant } from './common.ts';

/**
 * An activity folded from its stream, written once: the live projection (activities.ts), rebuild and
 * replay store it as the `activities` row, and the auditor's point-in-time record (audit/records.ts)
 * is read from it. (Forgetting the customer, an event of another stream, is the projection's: it
 * erases `body` on every row of that customer; decoded events already read erased.)
 */

/** The `activities` table's columns, typed (ACTIVITIES in activities.ts lists them in table order). */
export type ActivityRow = {
  activity_id: string;
  customer_id: string;
  deal_id: string | null;
  kind: ActivityKind;
  subject: string;
  /** Personal data: '[erased]' once the customer is forgotten. */
  body: string | null;
  due_at: Instant | null;
  assignee_id: string | null;
  /** Business time: when the note, call or meeting happened; when the task was set. */
  occurred_at: Instant;
  completed_at: Instant | null;
  /** The user who logged it (the event's actor). */
  logged_by: string;
  revision: number;
  last_event_at: Instant;
  /**
   * The account owner of the activity's customer (of the primary after a merge), for visibility: set by
   * the projection from the customers' events (customer-owners.ts); this fold starts it at null and carries it along.
   */
  customer_owner_id: string | null;
  /** The owner of the deal it was logged on, for visibility: set by the projection from the deals' events (deal-owners.ts); null here. */
  deal_owner_id: string | null;
};

/**
 * The activity after one event of its stream; undefined before it was logged. Pure: times are the
 * events' business times, and the row it is given is not changed.
 */
export function evolveActivity(state: ActivityRow | undefined, e: ProjectedEvent): ActivityRow | undefined {
  const { event } = e;
  const at = occurredAt(e);
  if (event.type === 'ActivityLogged') {
    const d = event.data;
    return {
      activity_id: d.activityId,
      customer_id: d.customerId,
      deal_id: d.dealId,
      kind: d.kind,
      subject: d.subject,
      body: d.body,
      due_at: d.dueAt,
      assignee_id: d.assigneeId,
      occurred_at: at,
      completed_at: null,
      logged_by: e.metadata.actor.userId,
      revision: e.revision,
      last_event_at: at,
      customer_owner_id: null,
      deal_owner_id: null,
    };
  }
  if (!state) return state;
  const row: ActivityRow = { ...state };
  switch (event.type) {
    case 'ActivityChanged': {
      // Only what the change names; null clears.
      const changes = changesOf(event.data);
      if (changes.subject !== undefined) row.subject = changes.subject;
      if (changes.body !== undefined) row.body = changes.body;
      if (changes.dueAt !== undefined) row.due_at = changes.dueAt;
      if (changes.assigneeId !== undefined) row.assignee_id = changes.assigneeId;
      break;
    }
    case 'ActivityCompleted':
      row.completed_at = at;
      break;
    default:
      // Not an event of an activity stream: the activity is unchanged.
      return state;
  }
  row.revision = e.revision;
  row.last_event_at = at;
  return row;
}
