import { z } from 'zod';
import type { CustomerSnapshot } from '../customer/decider.ts';
import { Id, IsoDateTime, LongMultiLineText, DisplayText, withBusinessTime } from '../shared.ts';
import { ActivityKind } from './events.ts';

/**
 * Logged on a customer (`customerId`) or on a deal (`dealId`), exactly one of them; the HTTP routes
 * fill it from the path. `dueAt` only on tasks.
 */
export const LogActivityPayload = z
  .object({
    /** Client-chosen id; generated when absent. */
    activityId: Id.optional(),
    customerId: Id.optional(),
    dealId: Id.optional(),
    kind: ActivityKind,
    subject: DisplayText,
    body: LongMultiLineText.nullable().optional(),
    dueAt: IsoDateTime.nullable().optional(),
    assigneeId: Id.nullable().optional(),
  })
  .strict()
  .refine((c) => (c.customerId === undefined) !== (c.dealId === undefined), { message: 'exactly one of customerId and dealId', path: ['customerId'] })
  .refine((c) => c.kind === 'task' || c.dueAt === undefined || c.dueAt === null, { message: 'only a task has a due time', path: ['dueAt'] });

/** PATCH: the fields to change; `null` clears body, dueAt or assigneeId. */
export const ChangeActivityPayload = z
  .object({
    activityId: Id,
    subject: DisplayText.optional(),
    body: LongMultiLineText.nullable().optional(),
    dueAt: IsoDateTime.nullable().optional(),
    assigneeId: Id.nullable().optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).some((k) => k !== 'activityId' && k !== 'occurredAt'), { message: 'at least one field to change' });

export const CompleteActivityPayload = z.object({ activityId: Id }).strict();

/** Every command takes `occurredAt` (business time: when the call happened, when the task was done). */
export const activityCommandSchemas = withBusinessTime({
  LogActivity: LogActivityPayload,
  ChangeActivity: ChangeActivityPayload,
  CompleteActivity: CompleteActivityPayload,
} as const);

type P<K extends keyof typeof activityCommandSchemas> = z.infer<(typeof activityCommandSchemas)[K]>;
type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;

/** What the decider needs of the deal an activity is logged on. */
export interface DealSnapshot {
  exists: boolean;
  customerId: string | null;
}

/**
 * The handler reads the parent and passes what the rules need: the customer the activity belongs to
 * (for a deal, the deal's customer, or the primary it was merged into) and, for a deal, the deal.
 */
export type LogActivity = Cmd<
  'LogActivity',
  Omit<P<'LogActivity'>, 'activityId' | 'customerId'> & { activityId: string; customerId: string | undefined; customer: CustomerSnapshot; deal?: DealSnapshot }
>;
export type ChangeActivity = Cmd<'ChangeActivity', P<'ChangeActivity'> & { customer?: CustomerSnapshot }>;
export type CompleteActivity = Cmd<'CompleteActivity', P<'CompleteActivity'> & { customer?: CustomerSnapshot }>;

export type ActivityCommand = LogActivity | ChangeActivity | CompleteActivity;
