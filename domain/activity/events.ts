import { z } from 'zod';
import { Id, IsoDateTime, LongText, ShortText } from '../shared.ts';

export const ActivityStreamPrefix = 'activity-';

/** A note, call or meeting is a past fact; a task is work to do, open until completed. */
export const ActivityKind = z.enum(['note', 'call', 'meeting', 'task']);
export type ActivityKind = z.infer<typeof ActivityKind>;

/**
 * An activity on a customer, or on a deal (then `customerId` is the deal's customer). `body` is
 * personal data, encrypted with that customer's key; `subject` is the short label lists show.
 * The business time of the activity (when the call took place, when the task was set) is the
 * event's `metadata.occurredAt`.
 */
export const ActivityLogged = z.object({
  activityId: Id,
  customerId: Id,
  dealId: Id.nullable(),
  kind: ActivityKind,
  subject: ShortText,
  body: LongText.nullable(),
  /** Tasks only. */
  dueAt: IsoDateTime.nullable(),
  /** The user (id) responsible: who owns the task, who made the call. */
  assigneeId: Id.nullable(),
});
/** Only the fields that changed; `null` clears. `customerId` names the key that encrypts `body`. */
export const ActivityChanged = z.object({
  activityId: Id,
  customerId: Id,
  subject: ShortText.optional(),
  body: LongText.nullable().optional(),
  dueAt: IsoDateTime.nullable().optional(),
  assigneeId: Id.nullable().optional(),
});

/** What a change can set: the fields of an activity other than its identity, kind and parent. */
export type ActivityChanges = Partial<Pick<z.infer<typeof ActivityLogged>, 'subject' | 'body' | 'dueAt' | 'assigneeId'>>;
const CHANGEABLE = ['subject', 'body', 'dueAt', 'assigneeId'] as const;
/** The fields an `ActivityChanged` sets (`null` included); absent ones stay as they were. */
export const changesOf = (data: z.infer<typeof ActivityChanged>): ActivityChanges =>
  Object.fromEntries(CHANGEABLE.filter((field) => data[field] !== undefined).map((field) => [field, data[field]]));

/** A task was done; its business time is the completion time. */
export const ActivityCompleted = z.object({ activityId: Id, customerId: Id });

export const activityEventSchemas = { ActivityLogged, ActivityChanged, ActivityCompleted } as const;

type Schemas = typeof activityEventSchemas;
export type ActivityEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
