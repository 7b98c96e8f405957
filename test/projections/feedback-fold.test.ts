import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { foldRecord } from '../../audit/records.ts';
import type { Conversion } from '../../audit/base-figures.ts';
import type { CrmEvent } from '../../domain/catalogue.ts';
import { evolveFeedback as decideFrom, initialFeedbackState } from '../../domain/feedback/decider.ts';
import type { FeedbackEvent } from '../../domain/feedback/events.ts';
import { FEEDBACK } from '../../projections/read-models/feedback.ts';
import { evolveFeedback, type FeedbackState } from '../../projections/read-models/feedback-fold.ts';
import type { ProjectedEvent } from '../../shared/events.ts';

/** The feedback fold written once (feedback-fold.ts): the live row and the auditor's record come from it. */

const feedbackId = randomUUID();
const customerId = randomUUID();
let revision = -1;
/** The record has no money to convert. */
const NO_MONEY: Conversion = { baseCurrency: 'EUR', rates: new Map() };
const at = (day: number, hour = 9) => `2026-03-${String(day).padStart(2, '0')}T${String(hour).padStart(2, '0')}:00:00.000Z`;

const on = (event: CrmEvent, occurredAt: string): ProjectedEvent => {
  revision += 1;
  return {
    event,
    id: randomUUID(),
    stream: `feedback-${feedbackId}`,
    revision,
    position: BigInt(revision + 1),
    recordedAt: new Date(occurredAt),
    metadata: { actor: { userId: 'sue@support', roles: ['support'] }, correlationId: 'c', causationId: null, occurredAt, schemaVersion: 1, command: 'Test' },
  };
};

const submitted = on(
  {
    type: 'FeedbackSubmitted',
    data: {
      feedbackId,
      customerId,
      kind: 'complaint',
      channel: 'email',
      subject: 'Broken',
      body: 'It broke',
      priority: 'high',
      csat: null,
      nps: null,
      firstResponseDueAt: at(2),
      resolutionDueAt: at(4),
    },
  },
  at(1),
);
const assigned = on({ type: 'FeedbackAssigned', data: { feedbackId, assigneeId: 'sue@support' } }, at(3));
const responded = on({ type: 'FeedbackResponded', data: { feedbackId, responderId: 'sue@support', message: 'On it', firstResponse: true } }, at(3, 12));
const resolved = on({ type: 'FeedbackResolved', data: { feedbackId, resolution: 'Replaced' } }, at(5));
const reopened = on({ type: 'FeedbackReopened', data: { feedbackId, reason: null, resolutionDueAt: at(9) } }, at(6));

const fold = (events: ProjectedEvent[]): FeedbackState | undefined => events.reduce<FeedbackState | undefined>(evolveFeedback, undefined);

describe('the feedback fold', () => {
  it('settles a missed first response from the first event seen after its due time', () => {
    const row = fold([submitted, assigned])!;
    expect(row).toMatchObject({
      status: 'in_progress',
      assignee_id: 'sue@support',
      first_responded_at: null,
      first_response_breached: true,
      resolution_breached: null,
      revision: 1,
    });
  });

  it('measures the first response and the resolution against their due times', () => {
    const row = fold([submitted, assigned, responded, resolved])!;
    expect(row).toMatchObject({
      status: 'resolved',
      first_responded_at: at(3, 12),
      first_response_seconds: 2 * 86_400 + 3 * 3_600,
      first_response_breached: true,
      resolved_at: at(5),
      resolution_seconds: 4 * 86_400,
      resolution_breached: true,
      resolution: 'Replaced',
    });
  });

  it('reopening clears the resolution and its breach, and counts', () => {
    const row = fold([submitted, assigned, responded, resolved, reopened])!;
    expect(row).toMatchObject({
      // The decider's status after a reopen, which its rules (a second reopen refused) go by.
      status: 'in_progress',
      resolved_at: null,
      resolution: null,
      resolution_seconds: null,
      resolution_breached: null,
      reopen_count: 1,
      resolution_due_at: at(9),
      revision: 4,
    });
  });

  it('a rated item reopened keeps its last rating with the time it was given, until the next resolution is rated', () => {
    const rated = on({ type: 'FeedbackRated', data: { feedbackId, csat: 2, comment: null } }, at(5));
    const ratedThenReopened = fold([submitted, assigned, responded, resolved, rated, { ...reopened, revision: 5 }])!;
    // As the satisfaction figures count it: in the month it was given (analytics/projection.ts).
    expect(ratedThenReopened).toMatchObject({ status: 'in_progress', csat: 2, rated_at: rated.metadata.occurredAt });
    const resolvedAgain = on({ type: 'FeedbackResolved', data: { feedbackId, resolution: 'Done' } }, at(10));
    const ratedAgain = on({ type: 'FeedbackRated', data: { feedbackId, csat: 5, comment: null } }, at(11));
    expect(fold([submitted, assigned, responded, resolved, rated, reopened, resolvedAgain, ratedAgain])).toMatchObject({
      status: 'resolved',
      csat: 5,
      rated_at: ratedAgain.metadata.occurredAt,
    });
  });

  it("reads every step's status as the decider's state has it, whose rules (assign, resolve, reopen) go by it", () => {
    const closed = on({ type: 'FeedbackClosed', data: { feedbackId } }, at(10));
    const steps = [submitted, assigned, responded, resolved, reopened, resolved, closed];
    steps.forEach((_, i) => {
      const given = steps.slice(0, i + 1);
      const decided = given.reduce((state, e) => decideFrom(state, e.event as FeedbackEvent, e.metadata.occurredAt), initialFeedbackState());
      expect([given.at(-1)!.event.type, fold(given)!.status]).toEqual([given.at(-1)!.event.type, decided.status]);
    });
  });

  it('leaves the state alone (same object) for an event of another kind, and nothing exists before submission', () => {
    const row = fold([submitted])!;
    const other = on({ type: 'CustomerTagged', data: { customerId, tags: ['vip'] } } as unknown as CrmEvent, at(2));
    expect(evolveFeedback(row, other)).toBe(row);
    expect(evolveFeedback(undefined, assigned)).toBeUndefined();
  });

  it('is pure: the state it was given is not changed', () => {
    const row = fold([submitted, assigned])!;
    const copy = structuredClone(row);
    evolveFeedback(row, resolved);
    expect(row).toEqual(copy);
  });

  it('keeps every column of the feedback table', () => {
    expect(Object.keys(fold([submitted])!)).toEqual(expect.arrayContaining([...FEEDBACK.columns]));
  });

  it("is the auditor's record of the item (audit/records.ts), named as the API names it", () => {
    const events = [submitted, assigned, responded, resolved, reopened];
    const row = fold(events)!;
    expect(foldRecord('feedback', events, NO_MONEY)).toEqual({
      id: feedbackId,
      customerId,
      kind: 'complaint',
      channel: 'email',
      subject: 'Broken',
      body: 'It broke',
      priority: 'high',
      status: 'in_progress',
      assigneeId: 'sue@support',
      csat: null,
      nps: null,
      firstResponseDueAt: at(2),
      resolutionDueAt: at(9),
      firstRespondedAt: at(3, 12),
      resolvedAt: null,
      closedAt: null,
      resolution: null,
      escalationCount: 0,
      reopenCount: 1,
      ratedAt: null,
      submittedAt: at(1),
      updatedAt: row.last_event_at,
    });
  });
});
