import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import type { ActivityCommand } from '../../domain/activity/commands.ts';
import { activityDecider } from '../../domain/activity/decider.ts';
import type { ActivityEvent } from '../../domain/activity/events.ts';
import type { CustomerSnapshot } from '../../domain/customer/decider.ts';
import { deciderSpec, timed } from '../support/decider-spec.ts';

const spec = deciderSpec(activityDecider);
const A = '77777777-7777-4777-8777-777777777777';
const CUST = '11111111-1111-4111-8111-111111111111';
const DEAL = '22222222-2222-4222-8222-222222222222';
const USER = '33333333-3333-4333-8333-333333333333';
const OTHER = '44444444-4444-4444-8444-444444444444';
const at = '2026-03-02T10:00:00.000Z';
const due = '2026-03-09T17:00:00.000Z';
const customer: CustomerSnapshot = { exists: true, active: true, forgotten: false, mergedInto: null, marketingConsent: false, inactiveSince: null };

const cmd = <T extends ActivityCommand['type']>(type: T, fields: Record<string, unknown>) =>
  ({ type, occurredAt: at, activityId: A, ...fields }) as unknown as Extract<ActivityCommand, { type: T }>;
const logTask = (extra: Record<string, unknown> = {}) =>
  cmd('LogActivity', {
    customerId: CUST,
    kind: 'task',
    subject: 'Send the quote',
    body: 'Prices for 40 seats',
    dueAt: due,
    assigneeId: USER,
    customer,
    ...extra,
  });
const logCall = (extra: Record<string, unknown> = {}) =>
  cmd('LogActivity', { customerId: CUST, kind: 'call', subject: 'Intro call', body: 'Wants a demo', customer, ...extra });
const logged = (extra: Partial<Extract<ActivityEvent, { type: 'ActivityLogged' }>['data']> = {}): ActivityEvent => ({
  type: 'ActivityLogged',
  data: {
    activityId: A,
    customerId: CUST,
    dealId: null,
    kind: 'task',
    subject: 'Send the quote',
    body: 'Prices for 40 seats',
    dueAt: due,
    assigneeId: USER,
    ...extra,
  },
});
const call = logged({ kind: 'call', subject: 'Intro call', body: 'Wants a demo', dueAt: null, assigneeId: null });
const completed: ActivityEvent = { type: 'ActivityCompleted', data: { activityId: A, customerId: CUST } };

describe('activity: log', () => {
  it('logs a task with its due time and assignee, and a call as a past fact', () => {
    spec.given([]).when(logTask()).then([logged()]);
    spec.given([]).when(logCall()).then([call]);
  });
  it('on a deal: belongs to the customer the handler resolved from the deal', () => {
    spec
      .given([])
      .when(logCall({ customerId: CUST, dealId: DEAL, deal: { exists: true, customerId: CUST } }))
      .then([{ ...call, data: { ...call.data, dealId: DEAL } } as ActivityEvent]);
  });
  it('refuses an unknown deal (404), an unknown, forgotten or merged customer, and a second log', () => {
    spec
      .given([])
      .when(logCall({ customerId: undefined, dealId: DEAL, deal: { exists: false, customerId: null } }))
      .thenRefused('deal.not_found', 'dealId');
    const unknown = spec
      .given([])
      .when(logCall({ customer: { ...customer, exists: false } }))
      .thenRefused('customer.not_found', 'customerId');
    expect(unknown.kind).toBe('not_found');
    expect(
      spec
        .given([])
        .when(logCall({ customer: { ...customer, forgotten: true } }))
        .thenRefused('customer.forgotten', 'customerId').kind,
    ).toBe('invalid_state');
    const merged = spec
      .given([])
      .when(logCall({ customer: { ...customer, mergedInto: OTHER } }))
      .thenRefused('customer.merged', 'customerId');
    expect(merged.details).toMatchObject({ primaryId: OTHER });
    spec.given([call]).when(logCall()).thenRefused('activity.already_logged', 'activityId');
  });
  it('an inactive customer still gets activities (a call with them happened)', () => {
    spec
      .given([])
      .when(logCall({ customer: { ...customer, active: false } }))
      .then([call]);
  });
  it('only a task has a due time', () => {
    spec
      .given([])
      .when(logCall({ dueAt: due }))
      .thenRefused('activity.not_a_task', 'dueAt');
    const parsed = commandSchemas.LogActivity.safeParse({ customerId: CUST, kind: 'meeting', subject: 'S', dueAt: due });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['dueAt']);
  });
  it('schema: exactly one parent, known kinds, business times, uuid assignee', () => {
    const base = { kind: 'note', subject: 'Met at the fair' };
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST }).success).toBe(true);
    expect(commandSchemas.LogActivity.safeParse({ ...base, dealId: DEAL }).success).toBe(true);
    expect(commandSchemas.LogActivity.safeParse(base).error?.issues[0]?.path).toEqual(['customerId']);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, dealId: DEAL }).success).toBe(false);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, kind: 'email' }).success).toBe(false);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, assigneeId: 'bob' }).success).toBe(false);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, kind: 'task', dueAt: '0000-01-01T00:00:00Z' }).error?.issues[0]?.path).toEqual([
      'dueAt',
    ]);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, body: 'a\u0000b' }).error?.issues[0]?.path).toEqual(['body']);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, subject: '\ud800' }).error?.issues[0]?.path).toEqual(['subject']);
    expect(commandSchemas.LogActivity.safeParse({ ...base, customerId: CUST, subject: '  ' }).success).toBe(false);
  });
});

describe('activity: change', () => {
  it('records only the fields that change; nothing changed records nothing', () => {
    spec
      .given([logged()])
      .when(cmd('ChangeActivity', { subject: 'Send the quote', body: 'Prices for 45 seats', dueAt: '2026-03-09T17:00:00Z', customer }))
      .then([{ type: 'ActivityChanged', data: { activityId: A, customerId: CUST, body: 'Prices for 45 seats' } }]);
    spec
      .given([logged()])
      .when(cmd('ChangeActivity', { subject: 'Send the quote', customer }))
      .thenNothing();
  });
  it('clears body, due time and assignee with null', () => {
    const state = spec
      .given([logged()])
      .when(cmd('ChangeActivity', { body: null, dueAt: null, assigneeId: null, customer }))
      .then([{ type: 'ActivityChanged', data: { activityId: A, customerId: CUST, body: null, dueAt: null, assigneeId: null } }]);
    expect(state).toMatchObject({ body: null, dueAt: null, assigneeId: null, subject: 'Send the quote' });
  });
  it('refuses a due time on a call, an unknown activity and a forgotten customer', () => {
    spec
      .given([call])
      .when(cmd('ChangeActivity', { dueAt: due, customer }))
      .thenRefused('activity.not_a_task', 'dueAt');
    spec
      .given([])
      .when(cmd('ChangeActivity', { subject: 'x', customer }))
      .thenRefused('activity.not_found', 'activityId');
    spec
      .given([call])
      .when(cmd('ChangeActivity', { subject: 'x', customer: { ...customer, forgotten: true } }))
      .thenRefused('customer.forgotten', 'customerId');
  });
  it('a completed task keeps its due time and assignee; its subject and body may still be corrected', () => {
    spec
      .given([logged(), completed])
      .when(cmd('ChangeActivity', { assigneeId: OTHER, customer }))
      .thenRefused('activity.completed', 'assigneeId');
    spec
      .given([logged(), completed])
      .when(cmd('ChangeActivity', { dueAt: at, customer }))
      .thenRefused('activity.completed', 'dueAt');
    spec
      .given([logged(), completed])
      .when(cmd('ChangeActivity', { subject: 'Quote sent', customer }))
      .then([{ type: 'ActivityChanged', data: { activityId: A, customerId: CUST, subject: 'Quote sent' } }]);
  });
  it('schema: at least one field', () => {
    expect(commandSchemas.ChangeActivity.safeParse({ activityId: A }).success).toBe(false);
    expect(commandSchemas.ChangeActivity.safeParse({ activityId: A, occurredAt: at }).success).toBe(false);
    expect(commandSchemas.ChangeActivity.safeParse({ activityId: A, body: null }).success).toBe(true);
  });
});

describe('activity: complete', () => {
  it('completes an open task once; completing again records nothing', () => {
    const state = spec.given([logged()]).when(cmd('CompleteActivity', { customer })).then([completed]);
    expect(state.completed).toBe(true);
    spec.given([logged(), completed]).when(cmd('CompleteActivity', { customer })).thenNothing();
  });
  it('refuses a note, call or meeting (a past fact, nothing to complete), an unknown activity and a forgotten customer', () => {
    expect(spec.given([call]).when(cmd('CompleteActivity', { customer })).thenRefused('activity.not_a_task', 'activityId').kind).toBe('invalid_state');
    spec.given([]).when(cmd('CompleteActivity', { customer })).thenRefused('activity.not_found', 'activityId');
    spec
      .given([logged()])
      .when(cmd('CompleteActivity', { customer: { ...customer, forgotten: true } }))
      .thenRefused('customer.forgotten', 'customerId');
  });
});

describe('activity: what a change compares', () => {
  it('the current values again, the due time spelt otherwise, record nothing', () => {
    spec
      .given([logged()])
      .when(cmd('ChangeActivity', { body: 'Prices for 40 seats', assigneeId: USER, dueAt: '2026-03-09T18:00:00+01:00', customer }))
      .thenNothing();
    // A call has no due time: clearing it again is no change.
    spec
      .given([call])
      .when(cmd('ChangeActivity', { dueAt: null, subject: 'Intro call', customer }))
      .thenNothing();
  });
  it('a call takes changes other than a due time', () => {
    spec
      .given([call])
      .when(cmd('ChangeActivity', { subject: 'Intro call, 30 min', customer }))
      .then([{ type: 'ActivityChanged', data: { activityId: A, customerId: CUST, subject: 'Intro call, 30 min' } }]);
  });
  it('a change without the customer snapshot is decided on the activity alone', () => {
    spec
      .given([logged()])
      .when(cmd('ChangeActivity', { subject: 'Quote v2' }))
      .then([{ type: 'ActivityChanged', data: { activityId: A, customerId: CUST, subject: 'Quote v2' } }]);
  });
});

describe('activity: refusals name what is wrong', () => {
  it('a deal the handler did not find, with or without a snapshot, is not found', () => {
    spec
      .given([])
      .when(logCall({ customerId: undefined, dealId: DEAL }))
      .thenRefused('deal.not_found', 'dealId', { dealId: DEAL });
    spec
      .given([])
      .when(logCall({ customerId: undefined, dealId: DEAL, deal: { exists: false, customerId: null } }))
      .thenRefused('deal.not_found', 'dealId', { dealId: DEAL });
  });
  it('a deal without a customer resolved is refused naming customerId', () => {
    const refused = spec
      .given([])
      .when(logCall({ customerId: undefined, dealId: DEAL, deal: { exists: true, customerId: null } }))
      .thenRefused('customer.not_found', 'customerId');
    expect(refused.kind).toBe('not_found');
  });
  it("on a deal, the deal's unknown customer is bad input (422), not a missing resource", () => {
    const refused = spec
      .given([])
      .when(logCall({ customerId: CUST, dealId: DEAL, deal: { exists: true, customerId: CUST }, customer: { ...customer, exists: false } }))
      .thenRefused('customer.not_found', 'customerId', { customerId: CUST });
    expect(refused.kind).toBe('rule_violated');
  });
  it('not-a-task refusals name the kind; unknown activities and forgotten customers their id', () => {
    spec
      .given([])
      .when(logCall({ dueAt: due }))
      .thenRefused('activity.not_a_task', 'dueAt', { kind: 'call' });
    spec
      .given([call])
      .when(cmd('ChangeActivity', { dueAt: due, customer }))
      .thenRefused('activity.not_a_task', 'dueAt', { kind: 'call' });
    spec.given([call]).when(cmd('CompleteActivity', { customer })).thenRefused('activity.not_a_task', 'activityId', { kind: 'call' });
    spec.given([]).when(cmd('CompleteActivity', { customer })).thenRefused('activity.not_found', 'activityId', { activityId: A });
    spec
      .given([logged()])
      .when(cmd('CompleteActivity', { customer: { ...customer, forgotten: true } }))
      .thenRefused('customer.forgotten', 'customerId', { customerId: CUST });
  });
  it('schema: a task may have a due time, and any kind may send a null one', () => {
    const base = { customerId: CUST, subject: 'S' };
    expect(commandSchemas.LogActivity.safeParse({ ...base, kind: 'task', dueAt: due }).success).toBe(true);
    expect(commandSchemas.LogActivity.safeParse({ ...base, kind: 'meeting', dueAt: null }).success).toBe(true);
  });
});

describe('activity: business time runs forward', () => {
  it('a task is not completed, nor an activity changed, before it was logged', () => {
    const before = '2026-03-01T10:00:00.000Z';
    const given = spec.given([timed(logged(), at)]);
    given.when({ ...cmd('CompleteActivity', {}), occurredAt: before }).thenRefused('activity.before_logging', 'occurredAt', { notBefore: at });
    given.when({ ...cmd('ChangeActivity', { subject: 'Earlier' }), occurredAt: before }).thenRefused('activity.before_logging', 'occurredAt');
    given.when(cmd('CompleteActivity', {})).then([completed]);
  });
});
