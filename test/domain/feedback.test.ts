import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import type { CustomerSnapshot } from '../../domain/customer/decider.ts';
import type { FeedbackCommand } from '../../domain/feedback/commands.ts';
import { createFeedbackDecider, feedbackDecider } from '../../domain/feedback/decider.ts';
import type { FeedbackEvent, FeedbackPriority } from '../../domain/feedback/events.ts';
import { defaultSlaPolicy } from '../../domain/feedback/sla.ts';
import { deciderSpec, fold, timed } from '../support/decider-spec.ts';

const spec = deciderSpec(feedbackDecider);
const submittedAt = '2026-03-02T10:00:00.000Z';
const later = '2026-03-02T13:00:00.000Z';
const F = '66666666-6666-4666-8666-666666666666';
const CUST = '11111111-1111-4111-8111-111111111111';
const customer: CustomerSnapshot = { exists: true, active: true, forgotten: false, mergedInto: null, marketingConsent: true, inactiveSince: null };

const cmd = <T extends FeedbackCommand['type']>(
  type: T,
  fields: Omit<Extract<FeedbackCommand, { type: T }>, 'type' | 'occurredAt' | 'feedbackId'>,
  occurredAt = later,
) => ({ type, occurredAt, feedbackId: F, ...fields }) as unknown as Extract<FeedbackCommand, { type: T }>;
const submit = (priority?: FeedbackPriority, snapshot = customer) =>
  cmd(
    'SubmitFeedback',
    { customerId: CUST, kind: 'complaint', channel: 'email', subject: 'Late', body: 'Parcel late', customer: snapshot, ...(priority ? { priority } : {}) },
    submittedAt,
  );
const submitted = (priority: FeedbackPriority, firstResponseDueAt: string, resolutionDueAt: string): FeedbackEvent => ({
  type: 'FeedbackSubmitted',
  data: {
    feedbackId: F,
    customerId: CUST,
    kind: 'complaint',
    channel: 'email',
    subject: 'Late',
    body: 'Parcel late',
    priority,
    csat: null,
    nps: null,
    firstResponseDueAt,
    resolutionDueAt,
  },
});
const normal = submitted('normal', '2026-03-02T18:00:00.000Z', '2026-03-05T10:00:00.000Z');
const ev = (type: FeedbackEvent['type'], extra: Record<string, unknown> = {}) => ({ type, data: { feedbackId: F, ...extra } }) as FeedbackEvent;
const resolved = ev('FeedbackResolved', { customerId: CUST, resolution: 'Refunded shipping' });
const closed = ev('FeedbackClosed');

describe('feedback: submit and SLA deadlines', () => {
  it('defaults to normal priority: 8 h to first response, 72 h to resolution', () => {
    spec.given([]).when(submit()).then([normal]);
  });
  it('takes deadlines from the priority', () => {
    spec
      .given([])
      .when(submit('urgent'))
      .then([submitted('urgent', '2026-03-02T11:00:00.000Z', '2026-03-02T18:00:00.000Z')]);
    spec
      .given([])
      .when(submit('low'))
      .then([submitted('low', '2026-03-03T10:00:00.000Z', '2026-03-07T10:00:00.000Z')]);
  });
  it('follows a configured policy', () => {
    const custom = deciderSpec(createFeedbackDecider({ ...defaultSlaPolicy, high: { firstResponseHours: 0.25, resolutionHours: 2 } }));
    custom
      .given([])
      .when(submit('high'))
      .then([submitted('high', '2026-03-02T10:15:00.000Z', '2026-03-02T12:00:00.000Z')]);
  });
  it("takes the deadlines given (another system's, an export's), in UTC, and refuses one before the submission", () => {
    const withDeadlines = (fields: Record<string, string>) =>
      cmd('SubmitFeedback', { customerId: CUST, kind: 'complaint', channel: 'email', subject: 'Late', body: 'Parcel late', customer, ...fields }, submittedAt);
    spec
      .given([])
      .when(withDeadlines({ firstResponseDueAt: '2026-03-02T13:30:00+02:00', resolutionDueAt: '2026-03-03T10:00:00Z' }))
      .then([submitted('normal', '2026-03-02T11:30:00.000Z', '2026-03-03T10:00:00.000Z')]);
    // Only one given: the other from the priority.
    spec
      .given([])
      .when(withDeadlines({ resolutionDueAt: '2026-03-04T10:00:00.000Z' }))
      .then([submitted('normal', '2026-03-02T18:00:00.000Z', '2026-03-04T10:00:00.000Z')]);
    spec
      .given([])
      .when(withDeadlines({ firstResponseDueAt: '2026-03-02T09:59:59.000Z' }))
      .thenRefused('feedback.deadline_before_submission', 'firstResponseDueAt');
    spec
      .given([])
      .when(withDeadlines({ resolutionDueAt: '2026-03-01T00:00:00.000Z' }))
      .thenRefused('feedback.deadline_before_submission', 'resolutionDueAt');
    // A resolution due before the first response (given, or the priority's) is refused.
    spec
      .given([])
      .when(withDeadlines({ resolutionDueAt: '2026-03-02T12:00:00.000Z' }))
      .thenRefused('feedback.deadlines_out_of_order', 'resolutionDueAt');
  });
  it('refuses a second submission and unusable customers', () => {
    spec.given([normal]).when(submit()).thenRefused('feedback.already_submitted', 'feedbackId');
    spec
      .given([])
      .when(submit('normal', { ...customer, exists: false }))
      .thenRefused('customer.not_found', 'customerId');
    spec
      .given([])
      .when(submit('normal', { ...customer, forgotten: true }))
      .thenRefused('customer.forgotten', 'customerId');
  });
  it('an inactive customer may still complain', () => {
    spec
      .given([])
      .when(submit(undefined, { ...customer, active: false }))
      .then([normal]);
  });
  it('schema: CSAT 1-5, NPS 0-10, known kinds', () => {
    const base = { customerId: CUST, kind: 'survey', channel: 'web', subject: 'S', body: 'B' };
    expect(commandSchemas.SubmitFeedback.safeParse({ ...base, csat: 5, nps: 0 }).success).toBe(true);
    expect(commandSchemas.SubmitFeedback.safeParse({ ...base, csat: 6 }).success).toBe(false);
    expect(commandSchemas.SubmitFeedback.safeParse({ ...base, nps: 11 }).success).toBe(false);
    expect(commandSchemas.SubmitFeedback.safeParse({ ...base, kind: 'rant' }).success).toBe(false);
  });
});

describe('feedback: assign and respond', () => {
  it('assigns; the same assignee again records nothing', () => {
    spec
      .given([normal])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .then([ev('FeedbackAssigned', { assigneeId: 'sam' })]);
    spec
      .given([normal, ev('FeedbackAssigned', { assigneeId: 'sam' })])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .thenNothing();
  });
  it('an assignee named by a user id is a registered, active user; a name is taken as it is', () => {
    const agent = '77777777-7777-4777-8777-777777777777';
    const given = spec.given([normal]);
    given.when(cmd('AssignFeedback', { assigneeId: agent })).thenRefused('user.not_found', 'assigneeId', { ownerId: agent });
    given.when(cmd('AssignFeedback', { assigneeId: agent, assignee: { exists: true, active: false } })).thenRefused('user.inactive', 'assigneeId');
    given.when(cmd('AssignFeedback', { assigneeId: agent, assignee: { exists: true, active: true } })).then([ev('FeedbackAssigned', { assigneeId: agent })]);
    // The assignee it already has, since deactivated: nothing to decide, nothing refused.
    spec
      .given([normal, ev('FeedbackAssigned', { assigneeId: agent })])
      .when(cmd('AssignFeedback', { assigneeId: agent, assignee: { exists: true, active: false } }))
      .thenNothing();
  });
  it('flags the first response only', () => {
    const reply = cmd('RespondToFeedback', { responderId: 'sam', message: 'Looking into it' });
    spec
      .given([normal])
      .when(reply)
      .then([ev('FeedbackResponded', { customerId: CUST, responderId: 'sam', message: 'Looking into it', firstResponse: true })]);
    spec
      .given([normal, ev('FeedbackResponded', { responderId: 'sam', message: 'x', firstResponse: true })])
      .when(reply)
      .then([ev('FeedbackResponded', { customerId: CUST, responderId: 'sam', message: 'Looking into it', firstResponse: false })]);
  });
  it('refuses responses once resolved or closed, assignment once closed', () => {
    const reply = cmd('RespondToFeedback', { responderId: 'sam', message: 'x' });
    spec.given([normal, resolved]).when(reply).thenRefused('feedback.resolved');
    spec.given([normal, closed]).when(reply).thenRefused('feedback.closed');
    spec
      .given([normal, closed])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .thenRefused('feedback.closed');
  });
});

describe('feedback: escalate', () => {
  it('raises to the next priority and tightens the deadlines from the escalation', () => {
    // normal at 10:00 (due 18:00 / +72 h); escalated at 13:00 to high: 17:00 / 13:00 next day.
    spec
      .given([normal])
      .when(cmd('EscalateFeedback', { reason: 'VIP' }))
      .then([
        ev('FeedbackEscalated', {
          reason: 'VIP',
          priority: 'high',
          firstResponseDueAt: '2026-03-02T17:00:00.000Z',
          resolutionDueAt: '2026-03-03T13:00:00.000Z',
        }),
      ]);
  });
  it('never moves a deadline later', () => {
    const low = submitted('low', '2026-03-02T11:00:00.000Z', '2026-03-02T12:00:00.000Z');
    spec
      .given([low])
      .when(cmd('EscalateFeedback', { reason: 'r', priority: 'normal' }))
      .then([
        ev('FeedbackEscalated', {
          reason: 'r',
          priority: 'normal',
          firstResponseDueAt: '2026-03-02T11:00:00.000Z',
          resolutionDueAt: '2026-03-02T12:00:00.000Z',
        }),
      ]);
  });
  it('refuses lowering or keeping the priority, and escalating an urgent case', () => {
    spec
      .given([normal])
      .when(cmd('EscalateFeedback', { reason: 'r', priority: 'low' }))
      .thenRefused('feedback.priority_not_raised', 'priority');
    spec
      .given([normal])
      .when(cmd('EscalateFeedback', { reason: 'r', priority: 'normal' }))
      .thenRefused('feedback.priority_not_raised', 'priority');
    spec
      .given([submitted('urgent', later, later)])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .thenRefused('feedback.already_urgent', 'priority');
  });
  it('refuses escalating resolved or closed cases; the schema needs a reason', () => {
    spec
      .given([normal, resolved])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .thenRefused('feedback.resolved');
    spec
      .given([normal, closed])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .thenRefused('feedback.closed');
    expect(commandSchemas.EscalateFeedback.safeParse({ feedbackId: F }).success).toBe(false);
  });
});

describe('feedback: resolve, reopen, close', () => {
  it('resolves with a resolution; the schema refuses a blank one', () => {
    spec
      .given([normal])
      .when(cmd('ResolveFeedback', { resolution: 'Refunded shipping' }))
      .then([resolved]);
    expect(commandSchemas.ResolveFeedback.safeParse({ feedbackId: F, resolution: ' ' }).success).toBe(false);
  });
  it('refuses resolving twice or once closed', () => {
    spec
      .given([normal, resolved])
      .when(cmd('ResolveFeedback', { resolution: 'x' }))
      .thenRefused('feedback.resolved');
    spec
      .given([normal, closed])
      .when(cmd('ResolveFeedback', { resolution: 'x' }))
      .thenRefused('feedback.closed');
  });
  it('reopens a resolved case and restarts the resolution clock', () => {
    spec
      .given([normal, resolved])
      .when(cmd('ReopenFeedback', { reason: 'still late' }))
      .then([ev('FeedbackReopened', { reason: 'still late', resolutionDueAt: '2026-03-05T13:00:00.000Z' })]);
  });
  it('refuses reopening an open or a closed case', () => {
    spec.given([normal]).when(cmd('ReopenFeedback', {})).thenRefused('feedback.not_resolved');
    spec.given([normal, resolved, closed]).when(cmd('ReopenFeedback', {})).thenRefused('feedback.closed');
  });
  it('closes from open or resolved, once', () => {
    spec.given([normal]).when(cmd('CloseFeedback', {})).then([closed]);
    spec.given([normal, resolved]).when(cmd('CloseFeedback', {})).then([closed]);
    spec.given([normal, closed]).when(cmd('CloseFeedback', {})).thenRefused('feedback.closed');
  });
  it('every command on unknown feedback is not found', () => {
    for (const c of [
      cmd('AssignFeedback', { assigneeId: 'a' }),
      cmd('RespondToFeedback', { responderId: 'a', message: 'm' }),
      cmd('EscalateFeedback', { reason: 'r' }),
      cmd('ResolveFeedback', { resolution: 'r' }),
      cmd('ReopenFeedback', {}),
      cmd('CloseFeedback', {}),
      cmd('RateFeedback', { csat: 5 }),
    ])
      spec.given([]).when(c).thenRefused('feedback.not_found', 'feedbackId');
  });
});

describe('feedback: rating', () => {
  const rated = ev('FeedbackRated', { customerId: CUST, csat: 4, comment: null });
  it('only after resolve or close', () => {
    spec
      .given([normal])
      .when(cmd('RateFeedback', { csat: 4 }))
      .thenRefused('feedback.not_resolved');
    spec
      .given([normal, resolved])
      .when(cmd('RateFeedback', { csat: 4 }))
      .then([rated]);
    spec
      .given([normal, closed])
      .when(cmd('RateFeedback', { csat: 4 }))
      .then([rated]);
  });
  it('once per resolution: a reopened and re-resolved case may be rated again', () => {
    spec
      .given([normal, resolved, rated])
      .when(cmd('RateFeedback', { csat: 5 }))
      .thenRefused('feedback.already_rated', 'csat');
    const reopened = ev('FeedbackReopened', { reason: null, resolutionDueAt: later });
    spec
      .given([normal, resolved, rated, reopened])
      .when(cmd('RateFeedback', { csat: 5 }))
      .thenRefused('feedback.not_resolved');
    spec
      .given([normal, resolved, rated, reopened, resolved])
      .when(cmd('RateFeedback', { csat: 5, comment: 'better' }))
      .then([ev('FeedbackRated', { customerId: CUST, csat: 5, comment: 'better' })]);
  });
  it('schema: CSAT is an integer from 1 to 5', () => {
    expect(commandSchemas.RateFeedback.safeParse({ feedbackId: F, csat: 0 }).success).toBe(false);
    expect(commandSchemas.RateFeedback.safeParse({ feedbackId: F, csat: 4.5 }).success).toBe(false);
  });
});

describe("feedback: a forgotten customer's item", () => {
  const gone: CustomerSnapshot = { ...customer, forgotten: true };
  const reopened = ev('FeedbackReopened', { reason: null, resolutionDueAt: later });
  it('takes no reply, resolution, reopening or rating: 409 customer.forgotten naming what it would add', () => {
    const details = { customerId: CUST };
    spec
      .given([normal])
      .when(cmd('RespondToFeedback', { responderId: 'sam', message: 'Sorry', customer: gone }))
      .thenRefused('customer.forgotten', 'message', details);
    const resolve = spec
      .given([normal])
      .when(cmd('ResolveFeedback', { resolution: 'Refunded', customer: gone }))
      .thenRefused('customer.forgotten', 'resolution', details);
    expect(resolve.message).toMatch(/close it .*instead/);
    spec
      .given([normal, resolved])
      .when(cmd('ReopenFeedback', { customer: gone }))
      .thenRefused('customer.forgotten', 'feedbackId', details);
    // With or without a comment: the person is gone, and CSAT takes nothing more from them.
    spec
      .given([normal, resolved])
      .when(cmd('RateFeedback', { csat: 5, customer: gone }))
      .thenRefused('customer.forgotten', 'csat', details);
    spec
      .given([normal, closed])
      .when(cmd('RateFeedback', { csat: 2, comment: 'bad', customer: gone }))
      .thenRefused('customer.forgotten', 'csat', details);
  });
  it('is still handed on and ended: assigned, escalated, closed (resolved or not)', () => {
    spec
      .given([normal])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .then([ev('FeedbackAssigned', { assigneeId: 'sam' })]);
    spec
      .given([normal])
      .when(cmd('EscalateFeedback', { reason: 'SLA', priority: 'high' }))
      .then([expect.objectContaining({ type: 'FeedbackEscalated' }) as FeedbackEvent]);
    spec.given([normal]).when(cmd('CloseFeedback', {})).then([closed]);
    spec.given([normal, resolved, reopened]).when(cmd('CloseFeedback', {})).then([closed]);
  });
  it('the state of the case is told first: a closed item says so, whoever its customer', () => {
    spec
      .given([normal, closed])
      .when(cmd('RespondToFeedback', { responderId: 'sam', message: 'x', customer: gone }))
      .thenRefused('feedback.closed');
    spec
      .given([normal, resolved, ev('FeedbackRated', { customerId: CUST, csat: 4, comment: null })])
      .when(cmd('RateFeedback', { csat: 5, customer: gone }))
      .thenRefused('feedback.already_rated');
  });
});

describe('feedback: status and priority as the state reads them', () => {
  const foldFeedback = (events: FeedbackEvent[]) => fold(feedbackDecider, events);
  const assigned = ev('FeedbackAssigned', { assigneeId: 'sam' });
  it('submitted is open; assigned or answered is in progress; a resolved case assigned again stays resolved', () => {
    expect(foldFeedback([normal]).status).toBe('open');
    expect(foldFeedback([normal, assigned])).toMatchObject({ status: 'in_progress', assigneeId: 'sam' });
    expect(foldFeedback([normal, ev('FeedbackResponded', { responderId: 'sam', message: 'x', firstResponse: true })])).toMatchObject({
      status: 'in_progress',
      responded: true,
    });
    spec
      .given([normal, resolved])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .then([assigned]);
    expect(foldFeedback([normal, resolved, assigned]).status).toBe('resolved');
    expect(foldFeedback([normal, resolved, ev('FeedbackResponded', { responderId: 'sam', message: 'x', firstResponse: true })]).status).toBe('resolved');
  });
  it('a reopened case is in progress again and can be resolved', () => {
    const reopened = ev('FeedbackReopened', { reason: null, resolutionDueAt: later });
    expect(foldFeedback([normal, resolved, reopened])).toMatchObject({ status: 'in_progress', resolution: null, resolutionDueAt: later });
    spec
      .given([normal, resolved, reopened])
      .when(cmd('ResolveFeedback', { resolution: 'Resent' }))
      .then([ev('FeedbackResolved', { customerId: CUST, resolution: 'Resent' })]);
  });
  it('escalates one step at a time: low to normal, then high, then urgent, and no further', () => {
    const low = submitted('low', '2026-03-03T10:00:00.000Z', '2026-03-07T10:00:00.000Z');
    // Escalated at 13:00: normal allows 8 h / 72 h from then.
    const toNormal = ev('FeedbackEscalated', {
      reason: 'r',
      priority: 'normal',
      firstResponseDueAt: '2026-03-02T21:00:00.000Z',
      resolutionDueAt: '2026-03-05T13:00:00.000Z',
    });
    spec
      .given([low])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .then([toNormal]);
    expect(foldFeedback([low, toNormal])).toMatchObject({
      priority: 'normal',
      firstResponseDueAt: '2026-03-02T21:00:00.000Z',
      resolutionDueAt: '2026-03-05T13:00:00.000Z',
    });
    const toHigh = ev('FeedbackEscalated', {
      reason: 'r',
      priority: 'high',
      firstResponseDueAt: '2026-03-02T17:00:00.000Z',
      resolutionDueAt: '2026-03-03T13:00:00.000Z',
    });
    spec
      .given([low, toNormal])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .then([toHigh]);
    const toUrgent = ev('FeedbackEscalated', {
      reason: 'r',
      priority: 'urgent',
      firstResponseDueAt: '2026-03-02T14:00:00.000Z',
      resolutionDueAt: '2026-03-02T21:00:00.000Z',
    });
    spec
      .given([low, toNormal, toHigh])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .then([toUrgent]);
    spec
      .given([low, toNormal, toHigh, toUrgent])
      .when(cmd('EscalateFeedback', { reason: 'r' }))
      .thenRefused('feedback.already_urgent', 'priority');
  });
  it('a reopen restarts the resolution clock at the current priority', () => {
    const urgent = submitted('urgent', '2026-03-02T11:00:00.000Z', '2026-03-02T18:00:00.000Z');
    spec
      .given([urgent, resolved])
      .when(cmd('ReopenFeedback', {}))
      .then([ev('FeedbackReopened', { reason: null, resolutionDueAt: '2026-03-02T21:00:00.000Z' })]);
  });
});

describe('feedback: refusals name the case and the facts', () => {
  it('every refusal about the case names feedbackId', () => {
    spec.given([]).when(cmd('CloseFeedback', {})).thenRefused('feedback.not_found', 'feedbackId', { feedbackId: F });
    spec
      .given([normal, resolved])
      .when(cmd('ResolveFeedback', { resolution: 'x' }))
      .thenRefused('feedback.resolved', 'feedbackId');
    spec
      .given([normal, closed])
      .when(cmd('ResolveFeedback', { resolution: 'x' }))
      .thenRefused('feedback.closed', 'feedbackId');
    spec
      .given([normal, closed])
      .when(cmd('AssignFeedback', { assigneeId: 'sam' }))
      .thenRefused('feedback.closed', 'feedbackId');
    spec.given([normal, resolved, closed]).when(cmd('ReopenFeedback', {})).thenRefused('feedback.closed', 'feedbackId');
    spec.given([normal]).when(cmd('ReopenFeedback', {})).thenRefused('feedback.not_resolved', 'feedbackId');
    spec.given([normal, closed]).when(cmd('CloseFeedback', {})).thenRefused('feedback.closed', 'feedbackId');
    spec
      .given([normal])
      .when(cmd('RateFeedback', { csat: 4 }))
      .thenRefused('feedback.not_resolved', 'feedbackId', { status: 'open' });
  });
  it('an escalation that does not raise the priority names the current one', () => {
    spec
      .given([normal])
      .when(cmd('EscalateFeedback', { reason: 'r', priority: 'low' }))
      .thenRefused('feedback.priority_not_raised', 'priority', { current: 'normal' });
  });
});

describe('feedback: business time runs forward', () => {
  const before = '2026-03-01T10:00:00.000Z';
  const respondedAt = '2026-03-03T10:00:00.000Z';
  const resolvedAt = '2026-03-04T10:00:00.000Z';
  const responded = ev('FeedbackResponded', { responderId: 'sam', message: 'x', firstResponse: true });
  const submittedNormal = timed(normal, submittedAt);
  it('nothing is dated before the submission', () => {
    const given = spec.given([submittedNormal]);
    for (const command of [
      cmd('AssignFeedback', { assigneeId: 'sam' }, before),
      cmd('RespondToFeedback', { message: 'On it', responderId: 'sam' }, before),
      cmd('EscalateFeedback', { reason: 'VIP' }, before),
      cmd('ResolveFeedback', { resolution: 'Refunded' }, before),
      cmd('CloseFeedback', {}, before),
    ])
      given.when(command).thenRefused('feedback.before_submission', 'occurredAt', { notBefore: submittedAt });
  });
  it('a resolution is not before the first response, a reopen, closing or rating not before the resolution', () => {
    spec
      .given([submittedNormal, timed(responded, respondedAt)])
      .when(cmd('ResolveFeedback', { resolution: 'Refunded' }, later))
      .thenRefused('feedback.resolved_before_response', 'occurredAt', { notBefore: respondedAt });
    const given = spec.given([submittedNormal, timed(responded, respondedAt), timed(resolved, resolvedAt)]);
    given.when(cmd('ReopenFeedback', {}, respondedAt)).thenRefused('feedback.before_resolution', 'occurredAt', { notBefore: resolvedAt });
    given.when(cmd('CloseFeedback', {}, respondedAt)).thenRefused('feedback.before_resolution', 'occurredAt');
    given.when(cmd('RateFeedback', { csat: 4 }, respondedAt)).thenRefused('feedback.before_resolution', 'occurredAt');
    given.when(cmd('CloseFeedback', {}, resolvedAt)).then([closed]);
  });
  it('a case closed without a resolution is rated after its closing; a later response keeps the first one', () => {
    const closedAt = '2026-03-05T10:00:00.000Z';
    spec
      .given([submittedNormal, timed(closed, closedAt)])
      .when(cmd('RateFeedback', { csat: 2 }, resolvedAt))
      .thenRefused('feedback.before_closing', 'occurredAt', { notBefore: closedAt });
    const second = ev('FeedbackResponded', { responderId: 'sam', message: 'y', firstResponse: false });
    expect(fold(feedbackDecider, [submittedNormal, timed(responded, respondedAt), timed(second, resolvedAt)]).firstRespondedAt).toBe(respondedAt);
  });
});
