import { assertCustomerUsable, type CustomerSnapshot } from '../customer/decider.ts';
import type { Decider } from '../decider.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { addHours, assertNotBefore, earlierOf, inUtc } from '../time.ts';
import type { FeedbackCommand } from './commands.ts';
import type { FeedbackEvent, FeedbackPriority, FeedbackStatus } from './events.ts';
import { defaultSlaPolicy, nextPriority, priorityRank, type SlaPolicy } from './sla.ts';
import { assertPersonUsable } from '../user/decider.ts';

/**
 * Feedback lifecycle: open -> in_progress (assigned or answered) -> resolved -> closed.
 * Resolved may be reopened; closed is final. A rating (CSAT) is taken once per resolution,
 * only once resolved or closed. Escalation raises the priority and tightens the deadlines
 * (never extends them); a reopen restarts the resolution clock at the current priority.
 *
 * Once its customer is forgotten, an item takes nothing more from or about the person: no reply, no
 * resolution (a text about them), no rating and no reopening (409 `customer.forgotten` naming the
 * field); it can still be handed on (assigned, escalated) and ended (closed), so that the queue and
 * its SLA figures do not keep a ticket nobody can work.
 */
export interface FeedbackState {
  exists: boolean;
  feedbackId: string | null;
  customerId: string | null;
  status: FeedbackStatus | null;
  priority: FeedbackPriority | null;
  assigneeId: string | null;
  responded: boolean;
  firstResponseDueAt: string | null;
  resolutionDueAt: string | null;
  resolution: string | null;
  /** CSAT given for the current resolution (null after a reopen). */
  rating: number | null;
  /**
   * Business times of the submission, the first response, the current resolution (null after a
   * reopen) and the closing: later steps are not dated before them. Null where the fold had none.
   */
  submittedAt: string | null;
  firstRespondedAt: string | null;
  resolvedAt: string | null;
  closedAt: string | null;
}

export const initialFeedbackState = (): FeedbackState => ({
  exists: false,
  feedbackId: null,
  customerId: null,
  status: null,
  priority: null,
  assigneeId: null,
  responded: false,
  firstResponseDueAt: null,
  resolutionDueAt: null,
  resolution: null,
  rating: null,
  submittedAt: null,
  firstRespondedAt: null,
  resolvedAt: null,
  closedAt: null,
});

export const evolveFeedback = (state: FeedbackState, event: FeedbackEvent, occurredAt?: string): FeedbackState => {
  const at = occurredAt ?? null;
  switch (event.type) {
    case 'FeedbackSubmitted': {
      const d = event.data;
      return {
        ...state,
        submittedAt: at,
        exists: true,
        feedbackId: d.feedbackId,
        customerId: d.customerId,
        status: 'open',
        priority: d.priority,
        firstResponseDueAt: d.firstResponseDueAt,
        resolutionDueAt: d.resolutionDueAt,
      };
    }
    case 'FeedbackAssigned':
      return { ...state, assigneeId: event.data.assigneeId, status: state.status === 'open' ? 'in_progress' : state.status };
    case 'FeedbackResponded':
      return {
        ...state,
        responded: true,
        status: state.status === 'open' ? 'in_progress' : state.status,
        firstRespondedAt: state.responded ? state.firstRespondedAt : at,
      };
    case 'FeedbackEscalated':
      return {
        ...state,
        priority: event.data.priority,
        firstResponseDueAt: event.data.firstResponseDueAt,
        resolutionDueAt: event.data.resolutionDueAt,
      };
    case 'FeedbackResolved':
      return { ...state, status: 'resolved', resolution: event.data.resolution, rating: null, resolvedAt: at };
    case 'FeedbackReopened':
      return { ...state, status: 'in_progress', resolution: null, rating: null, resolutionDueAt: event.data.resolutionDueAt, resolvedAt: null };
    case 'FeedbackClosed':
      return { ...state, status: 'closed', closedAt: at };
    case 'FeedbackRated':
      return { ...state, rating: event.data.csat };
  }
};

/** An existing item's status; the command is not dated before its submission. */
const assertExists = (state: FeedbackState, command: { feedbackId: string; occurredAt: string }): FeedbackStatus => {
  const { feedbackId } = command;
  if (!state.exists || state.status === null) throw notFound('feedback.not_found', `Feedback ${feedbackId} does not exist`, 'feedbackId', { feedbackId });
  assertNotBefore(command.occurredAt, state.submittedAt, 'feedback.before_submission', 'the submission');
  return state.status;
};

/** Work on the case (respond, escalate, resolve) needs it open or in progress. */
const assertWorkable = (state: FeedbackState, command: { feedbackId: string; occurredAt: string }): void => {
  const { feedbackId } = command;
  const status = assertExists(state, command);
  if (status === 'closed') throw invalidState('feedback.closed', `Feedback ${feedbackId} is closed`, 'feedbackId');
  if (status === 'resolved') throw invalidState('feedback.resolved', `Feedback ${feedbackId} is resolved; reopen it first`, 'feedbackId');
};

/**
 * Work for the customer stops once they are forgotten: `field` names what the command would have added.
 * Decided here, not left to the encryption of its texts (which refused a reply but took a rating
 * without a comment, so a forgotten person's score still moved CSAT).
 */
const assertCustomerNotForgotten = (customer: CustomerSnapshot | undefined, customerId: string | null, field: string, instead: string): void => {
  if (customer?.forgotten) throw invalidState('customer.forgotten', `Customer ${customerId} has been forgotten: ${instead}`, field, { customerId });
};

const CLOSE_INSTEAD = 'their item takes no more work for them; close it (or assign it) instead';

export const createFeedbackDecider = (sla: SlaPolicy = defaultSlaPolicy): Decider<FeedbackCommand, FeedbackEvent, FeedbackState> => {
  const decide = (command: FeedbackCommand, state: FeedbackState): FeedbackEvent[] => {
    const { feedbackId } = command;
    switch (command.type) {
      case 'SubmitFeedback': {
        if (state.exists) throw invalidState('feedback.already_submitted', `Feedback ${feedbackId} already exists`, 'feedbackId');
        assertCustomerUsable(command.customer, command.customerId, { requireActive: false });
        const priority = command.priority ?? 'normal';
        const target = sla[priority];
        for (const field of ['firstResponseDueAt', 'resolutionDueAt'] as const) {
          const given = command[field];
          if (given !== undefined && Date.parse(given) < Date.parse(command.occurredAt))
            throw ruleViolated('feedback.deadline_before_submission', `${field} ${given} is before the submission (${command.occurredAt})`, field, {
              submittedAt: command.occurredAt,
            });
        }
        // Given deadlines in UTC, as the computed ones are.
        const firstResponseDueAt = command.firstResponseDueAt ? inUtc(command.firstResponseDueAt) : addHours(command.occurredAt, target.firstResponseHours);
        const resolutionDueAt = command.resolutionDueAt ? inUtc(command.resolutionDueAt) : addHours(command.occurredAt, target.resolutionHours);
        // Checked where a deadline is given: the SLA policy's own are the operator's to set.
        if ((command.firstResponseDueAt || command.resolutionDueAt) && Date.parse(resolutionDueAt) < Date.parse(firstResponseDueAt))
          throw ruleViolated(
            'feedback.deadlines_out_of_order',
            `resolutionDueAt ${resolutionDueAt} is before firstResponseDueAt ${firstResponseDueAt}`,
            'resolutionDueAt',
            {
              firstResponseDueAt,
            },
          );
        return [
          {
            type: 'FeedbackSubmitted',
            data: {
              feedbackId,
              customerId: command.customerId,
              kind: command.kind,
              channel: command.channel,
              subject: command.subject,
              body: command.body,
              priority,
              csat: command.csat ?? null,
              nps: command.nps ?? null,
              firstResponseDueAt,
              resolutionDueAt,
            },
          },
        ];
      }
      case 'AssignFeedback': {
        const status = assertExists(state, command);
        if (status === 'closed') throw invalidState('feedback.closed', `Feedback ${feedbackId} is closed`, 'feedbackId');
        if (state.assigneeId === command.assigneeId) return [];
        assertPersonUsable(command.assignee, command.assigneeId, 'assigneeId');
        return [{ type: 'FeedbackAssigned', data: { feedbackId, assigneeId: command.assigneeId } }];
      }
      case 'RespondToFeedback':
        assertWorkable(state, command);
        assertCustomerNotForgotten(command.customer, state.customerId, 'message', `no reply is sent to them; ${CLOSE_INSTEAD}`);
        return [
          {
            type: 'FeedbackResponded',
            data: {
              feedbackId,
              ...(state.customerId ? { customerId: state.customerId } : {}),
              responderId: command.responderId,
              message: command.message,
              firstResponse: !state.responded,
            },
          },
        ];
      case 'EscalateFeedback': {
        assertWorkable(state, command);
        const current = state.priority ?? 'normal';
        const priority = command.priority ?? nextPriority(current);
        if (priority === null) throw invalidState('feedback.already_urgent', `Feedback ${feedbackId} is already urgent`, 'priority');
        if (priorityRank[priority] <= priorityRank[current])
          throw ruleViolated('feedback.priority_not_raised', `Escalation must raise the priority above ${current}`, 'priority', { current });
        const target = sla[priority];
        // Deadlines restart from the escalation at the stricter target but never move later.
        const firstResponseDueAt = earlierOf(state.firstResponseDueAt ?? command.occurredAt, addHours(command.occurredAt, target.firstResponseHours));
        const resolutionDueAt = earlierOf(state.resolutionDueAt ?? command.occurredAt, addHours(command.occurredAt, target.resolutionHours));
        return [{ type: 'FeedbackEscalated', data: { feedbackId, reason: command.reason, priority, firstResponseDueAt, resolutionDueAt } }];
      }
      case 'ResolveFeedback':
        assertWorkable(state, command);
        assertCustomerNotForgotten(command.customer, state.customerId, 'resolution', `a resolution is a text about them; ${CLOSE_INSTEAD}`);
        assertNotBefore(command.occurredAt, state.firstRespondedAt, 'feedback.resolved_before_response', 'the first response');
        return [
          { type: 'FeedbackResolved', data: { feedbackId, ...(state.customerId ? { customerId: state.customerId } : {}), resolution: command.resolution } },
        ];
      case 'ReopenFeedback': {
        const status = assertExists(state, command);
        if (status === 'closed') throw invalidState('feedback.closed', `Feedback ${feedbackId} is closed`, 'feedbackId');
        if (status !== 'resolved') throw invalidState('feedback.not_resolved', `Feedback ${feedbackId} is ${status}`, 'feedbackId');
        assertCustomerNotForgotten(command.customer, state.customerId, 'feedbackId', CLOSE_INSTEAD);
        assertNotBefore(command.occurredAt, state.resolvedAt, 'feedback.before_resolution', 'the resolution');
        const target = sla[state.priority ?? 'normal'];
        return [
          {
            type: 'FeedbackReopened',
            data: { feedbackId, reason: command.reason ?? null, resolutionDueAt: addHours(command.occurredAt, target.resolutionHours) },
          },
        ];
      }
      case 'CloseFeedback': {
        const status = assertExists(state, command);
        if (status === 'closed') throw invalidState('feedback.closed', `Feedback ${feedbackId} is already closed`, 'feedbackId');
        assertNotBefore(command.occurredAt, state.resolvedAt, 'feedback.before_resolution', 'the resolution');
        return [{ type: 'FeedbackClosed', data: { feedbackId } }];
      }
      case 'RateFeedback': {
        const status = assertExists(state, command);
        if (status !== 'resolved' && status !== 'closed')
          throw invalidState('feedback.not_resolved', `Feedback ${feedbackId} can be rated once resolved or closed`, 'feedbackId', { status });
        if (state.rating !== null) throw invalidState('feedback.already_rated', `Feedback ${feedbackId} was already rated`, 'csat');
        assertCustomerNotForgotten(command.customer, state.customerId, 'csat', 'a rating from them is no longer recorded');
        if (state.resolvedAt !== null) assertNotBefore(command.occurredAt, state.resolvedAt, 'feedback.before_resolution', 'the resolution');
        else assertNotBefore(command.occurredAt, state.closedAt, 'feedback.before_closing', 'the closing');
        return [
          {
            type: 'FeedbackRated',
            data: { feedbackId, ...(state.customerId ? { customerId: state.customerId } : {}), csat: command.csat, comment: command.comment ?? null },
          },
        ];
      }
    }
  };
  return { initialState: initialFeedbackState, evolve: evolveFeedback, decide };
};

export const feedbackDecider = createFeedbackDecider();
