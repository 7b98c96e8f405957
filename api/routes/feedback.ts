import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { feedbackCommandSchemas } from '../../domain/feedback/commands.ts';
import { FeedbackChannel, FeedbackKind, FeedbackPriority, FeedbackStatus } from '../../domain/feedback/events.ts';
import type { RouteContext } from '../route-context.ts';
import { commandRoute } from '../command-route.ts';
import { FEEDBACK_PERSONAL_FIELDS } from '../mask.ts';
import { BooleanQuery, getRoute, listRoute, resolveMe } from '../query-route.ts';
import { scopeOf } from '../auth/viewer.ts';
import { PersonRef } from '../../domain/shared.ts';

const tags = ['feedback'];

export const FeedbackListFilters = {
  status: FeedbackStatus.optional(),
  priority: FeedbackPriority.optional(),
  kind: FeedbackKind.optional(),
  channel: FeedbackChannel.optional(),
  customerId: z.uuid().optional(),
  assigneeId: PersonRef.optional().describe('An assignee (a user id), or `me`'),
  breached: BooleanQuery.optional().describe('Only items whose first-response or resolution SLA was breached (true) or not (false)'),
  sort: z.enum(['submittedAt', '-submittedAt', 'resolutionDueAt', '-resolutionDueAt', 'priority', '-priority']).default('-submittedAt'),
};

export const feedbackRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const s = feedbackCommandSchemas;
  const base = { idField: 'feedbackId', tags } as const;
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback',
    type: 'SubmitFeedback',
    payload: s.SubmitFeedback,
    summary: 'Submit feedback; SLA deadlines follow the priority',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback/:id/assign',
    type: 'AssignFeedback',
    payload: s.AssignFeedback,
    summary: 'Assign to a person',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback/:id/respond',
    type: 'RespondToFeedback',
    payload: s.RespondToFeedback,
    summary: 'Respond (the first response counts for the SLA)',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback/:id/escalate',
    type: 'EscalateFeedback',
    payload: s.EscalateFeedback,
    summary: 'Escalate to a higher priority',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback/:id/resolve',
    type: 'ResolveFeedback',
    payload: s.ResolveFeedback,
    summary: 'Resolve with a resolution',
  });
  commandRoute(app, context, { ...base, method: 'POST', url: '/feedback/:id/reopen', type: 'ReopenFeedback', payload: s.ReopenFeedback, summary: 'Reopen' });
  commandRoute(app, context, { ...base, method: 'POST', url: '/feedback/:id/close', type: 'CloseFeedback', payload: s.CloseFeedback, summary: 'Close' });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/feedback/:id/rating',
    type: 'RateFeedback',
    payload: s.RateFeedback,
    summary: "Record the customer's rating of the resolution (CSAT 1-5)",
  });

  listRoute(app, context, {
    url: '/feedback',
    operationId: 'listFeedback',
    tags,
    summary: 'List feedback',
    filters: FeedbackListFilters,
    personalFields: FEEDBACK_PERSONAL_FIELDS,
    fetch: (q, query, request) => q.listFeedback(resolveMe(request, query, 'assigneeId'), scopeOf(request)),
  });
  getRoute(app, context, {
    url: '/feedback/:id',
    operationId: 'getFeedback',
    tags,
    summary: 'One feedback item',
    kind: 'feedback',
    personalFields: FEEDBACK_PERSONAL_FIELDS,
    // With what the customer wrote: the read model keeps no body (the events hold it, encrypted), and
    // the service desk answered tickets without seeing them. Masked and erased as everywhere else.
    fetch: async (q, id, request) => {
      const item = await q.getFeedback(id, scopeOf(request));
      if (!item) return item;
      const texts = await context.deps.audit.feedbackTexts([String(item.id)]);
      return { ...item, body: texts.get(String(item.id))?.body ?? null };
    },
  });
};
