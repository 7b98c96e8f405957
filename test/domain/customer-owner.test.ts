import { describe, expect, it } from 'vitest';
import type { CustomerCommand } from '../../domain/customer/commands.ts';
import { customerDecider } from '../../domain/customer/decider.ts';
import type { CustomerEvent } from '../../domain/customer/events.ts';
import type { UserSnapshot } from '../../domain/user/decider.ts';
import { deciderSpec } from '../support/decider-spec.ts';

const spec = deciderSpec(customerDecider);
const at = '2026-03-01T09:00:00.000Z';
const CUST = '11111111-1111-4111-8111-111111111111';
const ALICE = '22222222-2222-4222-8222-222222222222';
const BOB = '33333333-3333-4333-8333-333333333333';
const active: UserSnapshot = { exists: true, active: true };

const registered: CustomerEvent = {
  type: 'CustomerRegistered',
  data: { customerId: CUST, name: 'Grace', email: 'grace@navy.example', phone: null, company: null, tags: [], source: null, marketingConsent: false },
};
const owned = (ownerId: string, previousOwnerId: string | null): CustomerEvent => ({
  type: 'CustomerOwnerAssigned',
  data: { customerId: CUST, ownerId, previousOwnerId },
});
const cmd = (c: Record<string, unknown>) => ({ occurredAt: at, customerId: CUST, ...c }) as unknown as CustomerCommand;

describe('customer: account owner', () => {
  it('is set at registration when named (an active user), and absent otherwise', () => {
    spec
      .given([])
      .when(cmd({ type: 'RegisterCustomer', name: 'Grace', email: 'grace@navy.example', ownerId: ALICE, owner: active }))
      .then([registered, owned(ALICE, null)]);
    const state = spec
      .given([])
      .when(cmd({ type: 'RegisterCustomer', name: 'Grace', email: 'grace@navy.example' }))
      .then([registered]);
    expect(state.ownerId).toBeNull();
  });

  it('is assigned by its own command, recording the previous owner; the same owner again records nothing', () => {
    const state = spec
      .given([registered, owned(ALICE, null)])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB, owner: active }))
      .then([owned(BOB, ALICE)]);
    expect(state.ownerId).toBe(BOB);
    spec
      .given([registered, owned(ALICE, null)])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: ALICE, owner: active }))
      .thenNothing();
  });

  it('changes with the details (PATCH)', () => {
    spec
      .given([registered])
      .when(cmd({ type: 'ChangeCustomerDetails', ownerId: BOB, owner: active }))
      .then([owned(BOB, null)]);
  });

  it('must be a registered, active user (422 naming ownerId)', () => {
    const unknown = spec
      .given([registered])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB, owner: { exists: false, active: false } }))
      .thenRefused('user.not_found', 'ownerId');
    expect(unknown.kind).toBe('rule_violated');
    spec
      .given([registered])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB, owner: { exists: true, active: false } }))
      .thenRefused('user.inactive', 'ownerId');
    // Without the handler's snapshot, the owner is treated as unknown rather than trusted.
    spec
      .given([registered])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB }))
      .thenRefused('user.not_found', 'ownerId');
  });

  it('is refused on an unknown or forgotten customer like every command on it', () => {
    spec
      .given([])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB, owner: active }))
      .thenRefused('customer.not_found', 'customerId');
    spec
      .given([registered, { type: 'CustomerForgotten', data: { customerId: CUST } }])
      .when(cmd({ type: 'AssignCustomerOwner', ownerId: BOB, owner: active }))
      .thenRefused('customer.forgotten');
  });
});
