import { assertCustomerUsable, type CustomerSnapshot } from '../customer/decider.ts';
import type { Decider } from '../decider.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { assertNotBefore, isSameInstant } from '../time.ts';
import type { ActivityCommand } from './commands.ts';
import { changesOf, type ActivityChanges, type ActivityEvent, type ActivityKind } from './events.ts';

/**
 * Activities: notes, calls, meetings and tasks on a customer or a deal. Notes, calls and meetings are
 * past facts; a task is open until completed (once: completing it again records nothing). Subject,
 * body and assignee may be changed; only a task has a due time, and a completed task keeps the due
 * time and assignee it was done with. A forgotten customer's activities take no further commands.
 */
export interface ActivityState {
  exists: boolean;
  activityId: string | null;
  customerId: string | null;
  dealId: string | null;
  kind: ActivityKind | null;
  subject: string | null;
  body: string | null;
  dueAt: string | null;
  assigneeId: string | null;
  completed: boolean;
  /** Business time of the logging (when the call happened, when the task was set): null where the fold had none. */
  loggedAt: string | null;
}

export const initialActivityState = (): ActivityState => ({
  exists: false,
  activityId: null,
  customerId: null,
  dealId: null,
  kind: null,
  subject: null,
  body: null,
  dueAt: null,
  assigneeId: null,
  completed: false,
  loggedAt: null,
});

export const evolveActivity = (state: ActivityState, event: ActivityEvent, occurredAt?: string): ActivityState => {
  switch (event.type) {
    case 'ActivityLogged':
      return { ...event.data, exists: true, completed: false, loggedAt: occurredAt ?? null };
    case 'ActivityChanged':
      return { ...state, ...changesOf(event.data) };
    case 'ActivityCompleted':
      return { ...state, completed: true };
  }
};

/** An existing activity; the command is not dated before its logging. */
const assertExists = (state: ActivityState, command: { activityId: string; occurredAt: string }): void => {
  const { activityId } = command;
  if (!state.exists) throw notFound('activity.not_found', `Activity ${activityId} does not exist`, 'activityId', { activityId });
  assertNotBefore(command.occurredAt, state.loggedAt, 'activity.before_logging', 'the activity');
};

/** Work on an existing activity stops once its customer is forgotten (as every command on that customer does). */
const assertNotForgotten = (customer: CustomerSnapshot | undefined, customerId: string | null): void => {
  if (customer?.forgotten) throw invalidState('customer.forgotten', `Customer ${customerId} has been forgotten`, 'customerId', { customerId });
};

/** Same instant, whatever the spelling (`Z` or `+00:00`, with or without milliseconds). */
const sameInstant = (a: string | null, b: string | null): boolean => (a === null || b === null ? a === b : isSameInstant(a, b));

export const decideActivity = (command: ActivityCommand, state: ActivityState): ActivityEvent[] => {
  const { activityId } = command;
  switch (command.type) {
    case 'LogActivity': {
      if (state.exists) throw invalidState('activity.already_logged', `Activity ${activityId} already exists`, 'activityId');
      if (command.dealId !== undefined && !command.deal?.exists)
        throw notFound('deal.not_found', `Deal ${command.dealId} does not exist`, 'dealId', { dealId: command.dealId });
      const customerId = command.customerId;
      // The customer is addressed by the path (POST /customers/:id/activities), so an unknown one is a 404.
      if (customerId === undefined) throw notFound('customer.not_found', 'The activity names no customer', 'customerId');
      assertCustomerUsable(command.customer, customerId, { requireActive: false, addressed: command.dealId === undefined });
      if (command.kind !== 'task' && command.dueAt != null)
        throw ruleViolated('activity.not_a_task', `Only a task has a due time, not a ${command.kind}`, 'dueAt', { kind: command.kind });
      return [
        {
          type: 'ActivityLogged',
          data: {
            activityId,
            customerId,
            dealId: command.dealId ?? null,
            kind: command.kind,
            subject: command.subject,
            body: command.body ?? null,
            dueAt: command.kind === 'task' ? (command.dueAt ?? null) : null,
            assigneeId: command.assigneeId ?? null,
          },
        },
      ];
    }
    case 'ChangeActivity': {
      assertExists(state, command);
      assertNotForgotten(command.customer, state.customerId);
      if (command.dueAt != null && state.kind !== 'task')
        throw ruleViolated('activity.not_a_task', `Only a task has a due time, not a ${state.kind}`, 'dueAt', { kind: state.kind });
      const change: ActivityChanges = {};
      if (command.subject !== undefined && command.subject !== state.subject) change.subject = command.subject;
      if (command.body !== undefined && command.body !== state.body) change.body = command.body;
      if (command.dueAt !== undefined && !sameInstant(command.dueAt, state.dueAt)) change.dueAt = command.dueAt;
      if (command.assigneeId !== undefined && command.assigneeId !== state.assigneeId) change.assigneeId = command.assigneeId;
      if (state.completed) {
        const field = change.dueAt !== undefined ? 'dueAt' : change.assigneeId !== undefined ? 'assigneeId' : undefined;
        if (field) throw invalidState('activity.completed', `Task ${activityId} is completed; its ${field} stays as it was done`, field);
      }
      if (Object.keys(change).length === 0) return [];
      return [{ type: 'ActivityChanged', data: { activityId, customerId: state.customerId!, ...change } }];
    }
    case 'CompleteActivity': {
      assertExists(state, command);
      assertNotForgotten(command.customer, state.customerId);
      if (state.kind !== 'task')
        throw invalidState('activity.not_a_task', `Only a task can be completed; activity ${activityId} is a ${state.kind}`, 'activityId', {
          kind: state.kind,
        });
      if (state.completed) return [];
      return [{ type: 'ActivityCompleted', data: { activityId, customerId: state.customerId! } }];
    }
  }
};

export const activityDecider: Decider<ActivityCommand, ActivityEvent, ActivityState> = {
  initialState: initialActivityState,
  evolve: evolveActivity,
  decide: decideActivity,
};
