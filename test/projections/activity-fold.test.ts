import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { foldRecord } from '../../audit/records.ts';
import type { Conversion } from '../../audit/base-figures.ts';
import { ACTIVITIES } from '../../projections/read-models/activities.ts';
import { evolveActivity } from '../../projections/read-models/activity-fold.ts';
import { foldSpec, streamOf } from '../support/fold-spec.ts';

/** The activity fold written once (activity-fold.ts): the live row and the auditor's record come from it. */

const activityId = randomUUID();
const customerId = randomUUID();
const dealId = randomUUID();
const assignee = randomUUID();
/** The record has no money to convert. */
const NO_MONEY: Conversion = { baseCurrency: 'EUR', rates: new Map() };
const at = (day: number) => `2026-07-${String(day).padStart(2, '0')}T09:00:00.000Z`;
const on = streamOf(`activity-${activityId}`);
const activity = foldSpec(evolveActivity);

const logged = on(
  {
    type: 'ActivityLogged',
    data: { activityId, customerId, dealId, kind: 'task', subject: 'Quote', body: 'Three options', dueAt: at(9), assigneeId: null },
  },
  at(3),
);
const changed = (changes: { subject?: string; body?: string | null; dueAt?: string | null; assigneeId?: string | null }, day: number) =>
  on({ type: 'ActivityChanged', data: { activityId, customerId, ...changes } }, at(day));
const completed = on({ type: 'ActivityCompleted', data: { activityId, customerId } }, at(8));

describe('the activity fold', () => {
  it('logs an activity at its business time, by the actor who logged it, and nothing exists before', () => {
    activity
      .given([])
      .when(logged)
      .then({
        activity_id: activityId,
        customer_id: customerId,
        deal_id: dealId,
        kind: 'task',
        subject: 'Quote',
        body: 'Three options',
        due_at: at(9),
        assignee_id: null,
        occurred_at: at(3),
        completed_at: null,
        logged_by: 'ann@sales',
        customer_owner_id: null,
        last_event_at: at(3),
      });
    activity.given([]).when(completed).thenNothing();
  });

  it('a change sets only the fields it names, null clearing one', () => {
    activity
      .given([logged])
      .when(changed({ body: null, assigneeId: assignee }, 4))
      .then({ subject: 'Quote', body: null, due_at: at(9), assignee_id: assignee, occurred_at: at(3), last_event_at: at(4) });
    activity
      .given([logged])
      .when(changed({ subject: 'Quote v2', dueAt: null }, 5))
      .then({ subject: 'Quote v2', body: 'Three options', due_at: null });
  });

  it('completing stamps the completion time, and the occurrence time stays', () => {
    activity
      .given([logged, changed({ body: 'Two options' }, 4)])
      .when(completed)
      .then({ completed_at: at(8), occurred_at: at(3), body: 'Two options', last_event_at: at(8) });
  });

  it('leaves the row alone (same object) for an event of another kind', () => {
    activity
      .given([logged])
      .when(on({ type: 'CustomerTagged', data: { customerId, tag: 'vip' } }, at(4)))
      .thenUnchanged();
  });

  it('keeps every column of the activities table', () => {
    expect(Object.keys(activity.given([logged]).row!).sort()).toEqual([...ACTIVITIES.columns].sort());
  });

  it("is the auditor's record of the activity (audit/records.ts), named as the API names it", () => {
    expect(foldRecord('activity', [logged, changed({ body: 'Two options', assigneeId: assignee }, 4)], NO_MONEY)).toEqual({
      id: activityId,
      customerId,
      dealId,
      kind: 'task',
      subject: 'Quote',
      body: 'Two options',
      dueAt: at(9),
      assigneeId: assignee,
      occurredAt: at(3),
      completedAt: null,
      open: true,
      updatedAt: at(4),
    });
    expect(foldRecord('activity', [logged, completed], NO_MONEY)).toMatchObject({ completedAt: at(8), open: false, updatedAt: at(8) });
    const note = on(
      { type: 'ActivityLogged', data: { activityId, customerId, dealId: null, kind: 'note', subject: 'Met', body: null, dueAt: null, assigneeId: null } },
      at(2),
    );
    expect(foldRecord('activity', [note], NO_MONEY)).toMatchObject({ kind: 'note', open: false, dealId: null });
  });
});
