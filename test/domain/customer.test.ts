import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import { MAX_CUSTOMER_TAGS, type CustomerCommand } from '../../domain/customer/commands.ts';
import {
  assertCustomerUsable,
  customerDecider,
  customerSnapshot,
  decideMerge,
  MAX_MERGE_CHAIN,
  initialCustomerState,
  type CustomerState,
} from '../../domain/customer/decider.ts';
import type { CustomerEvent } from '../../domain/customer/events.ts';
import { DomainError } from '../../domain/errors.ts';
import { ERASED } from '../../domain/shared.ts';
import { deciderSpec, fold, timed } from '../support/decider-spec.ts';

const spec = deciderSpec(customerDecider);
const at = '2026-03-01T09:00:00.000Z';
const C = '11111111-1111-4111-8111-111111111111';
const D = '22222222-2222-4222-8222-222222222222';
const E = '33333333-3333-4333-8333-333333333333';

const registered = (customerId = C): CustomerEvent => ({
  type: 'CustomerRegistered',
  data: { customerId, name: 'Ada', email: 'ada@example.com', phone: null, company: null, tags: ['vip'], source: 'web', marketingConsent: false },
});
const purchase = (orderId: string, amount: number, currency = 'EUR'): CustomerEvent => ({
  type: 'PurchaseRecorded',
  data: { customerId: C, orderId, amount, currency },
});
const refund = (orderId: string, refundId: string, amount: number): CustomerEvent => ({
  type: 'PurchaseRefunded',
  data: { customerId: C, orderId, refundId, amount, currency: 'EUR', reason: null },
});
const cmd = <T extends CustomerCommand['type']>(
  type: T,
  fields: Omit<Extract<CustomerCommand, { type: T }>, 'type' | 'occurredAt' | 'customerId'> & { customerId?: string },
) => ({ type, occurredAt: at, customerId: C, ...fields }) as unknown as Extract<CustomerCommand, { type: T }>;
const foldCustomer = (events: CustomerEvent[]): CustomerState => fold(customerDecider, events, initialCustomerState());

describe('customer: register', () => {
  it('records the registration with defaults and a lower-cased email', () => {
    spec
      .given([])
      .when(cmd('RegisterCustomer', { name: 'Ada', email: 'Ada@Example.COM', tags: ['vip', 'vip'] }))
      .then([
        {
          type: 'CustomerRegistered',
          data: { customerId: C, name: 'Ada', email: 'ada@example.com', phone: null, company: null, tags: ['vip'], source: null, marketingConsent: false },
        },
      ]);
  });
  it('refuses a second registration of the same id', () => {
    spec
      .given([registered()])
      .when(cmd('RegisterCustomer', { name: 'Ada', email: 'a@b.co' }))
      .thenRefused('customer.already_registered', 'customerId');
  });
  it('schema refuses an invalid email, unknown fields and a missing name', () => {
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'A', email: 'nope' }).success).toBe(false);
    // Spaces around an address (pasted from a mail client) are dropped, as addresses compare trimmed; inside, refused.
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'A', email: '  Same.Mail@Example.com \t' }).data?.email).toBe('Same.Mail@Example.com');
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'A', email: 'same mail@example.com' }).success).toBe(false);
    expect(commandSchemas.RegisterUser.safeParse({ name: 'A', email: ' ann@example.com ', role: 'sales' }).data?.email).toBe('ann@example.com');
    // Top-level domains in punycode (Russia's, India's, China's); a domain in Unicode is refused saying to write it so.
    for (const email of ['info@example.xn--p1ai', 'info@example.xn--h2brj9c', 'info@example.xn--fiqs8s', 'info@xn--mnchen-3ya.de'])
      expect(commandSchemas.RegisterCustomer.safeParse({ name: 'A', email }).data?.email, email).toBe(email);
    const issues = (email: string) => commandSchemas.RegisterCustomer.safeParse({ name: 'A', email }).error?.issues.map((i) => i.message);
    expect(issues('info@münchen.de')).toEqual([expect.stringContaining('write the domain in punycode (xn--...)')]);
    // An invisible character pasted in is named: "Invalid email address" showed an address that looked valid.
    expect(issues('in\u200bfo@example.com')).toEqual(['the address contains an invisible character (U+200B): type it again without it']);
    for (const mark of ['\u200e', '\u200f', '\u2060'])
      expect(issues(`info@example.com${mark}`)?.[0]).toContain(`(U+${mark.charCodeAt(0).toString(16).toUpperCase()})`);
    expect(issues('info@example.c')).toEqual(['Invalid email address']);
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'A', email: 'a@b.co', vip: true }).success).toBe(false);
    expect(commandSchemas.RegisterCustomer.safeParse({ email: 'a@b.co' }).success).toBe(false);
  });
});

describe('customer: every command on an unknown customer', () => {
  const commands: CustomerCommand[] = [
    cmd('ChangeCustomerDetails', { name: 'X' }),
    cmd('TagCustomer', { tag: 't' }),
    cmd('UntagCustomer', { tag: 't' }),
    cmd('RecordPurchase', { orderId: 'o', amount: 1, currency: 'EUR' }),
    cmd('RefundPurchase', { orderId: 'o', refundId: 'r', amount: 1, currency: 'EUR' }),
    cmd('DeactivateCustomer', {}),
    cmd('ReactivateCustomer', {}),
    cmd('ForgetCustomer', {}),
  ];
  for (const c of commands)
    it(`${c.type} is refused as not found`, () => expect(spec.given([]).when(c).thenRefused('customer.not_found', 'customerId').kind).toBe('not_found'));
});

describe('customer: contact details, consent and tags', () => {
  it('records only the fields that change', () => {
    spec
      .given([registered()])
      .when(cmd('ChangeCustomerDetails', { name: 'Ada', email: 'ADA.L@example.com', phone: '+1 555 0100' }))
      .then([{ type: 'CustomerContactDetailsChanged', data: { customerId: C, email: 'ada.l@example.com', phone: '+1 555 0100' } }]);
  });
  it('records a consent change as its own event', () => {
    spec
      .given([registered()])
      .when(cmd('ChangeCustomerDetails', { company: 'ACME', marketingConsent: true }))
      .then([
        { type: 'CustomerContactDetailsChanged', data: { customerId: C, company: 'ACME' } },
        { type: 'CustomerMarketingConsentChanged', data: { customerId: C, marketingConsent: true } },
      ]);
  });
  it('records nothing when nothing changes', () => {
    spec
      .given([registered()])
      .when(cmd('ChangeCustomerDetails', { name: 'Ada', marketingConsent: false }))
      .thenNothing();
  });
  it('schema refuses a change with no field, and takes one with a field', () => {
    expect(commandSchemas.ChangeCustomerDetails.safeParse({ customerId: C }).success).toBe(false);
    expect(commandSchemas.ChangeCustomerDetails.safeParse({ customerId: C, name: 'Ada L.' }).success).toBe(true);
  });
  it('tags once; untags only a present tag', () => {
    spec
      .given([registered()])
      .when(cmd('TagCustomer', { tag: 'gold' }))
      .then([{ type: 'CustomerTagged', data: { customerId: C, tag: 'gold' } }]);
    spec
      .given([registered()])
      .when(cmd('TagCustomer', { tag: 'vip' }))
      .thenNothing();
    spec
      .given([registered()])
      .when(cmd('UntagCustomer', { tag: 'vip' }))
      .then([{ type: 'CustomerUntagged', data: { customerId: C, tag: 'vip' } }]);
    spec
      .given([registered()])
      .when(cmd('UntagCustomer', { tag: 'gold' }))
      .thenNothing();
  });
  it('takes tags in any case as one tag: tagging VIP again is nothing, untagging Vip removes the vip held', () => {
    spec
      .given([registered()])
      .when(cmd('TagCustomer', { tag: 'VIP' }))
      .thenNothing();
    spec
      .given([registered()])
      .when(cmd('UntagCustomer', { tag: 'Vip' }))
      .then([{ type: 'CustomerUntagged', data: { customerId: C, tag: 'vip' } }]);
    // A history that holds two spellings (tagged before tags ignored case) holds one tag: untagged once, it is gone.
    spec
      .given([registered(), { type: 'CustomerTagged', data: { customerId: C, tag: 'VIP' } }, { type: 'CustomerUntagged', data: { customerId: C, tag: 'vip' } }])
      .when(cmd('TagCustomer', { tag: 'Vip' }))
      .then([{ type: 'CustomerTagged', data: { customerId: C, tag: 'Vip' } }]);
    // A registration's tags are a set in any case, as first written.
    spec
      .given([])
      .when(cmd('RegisterCustomer', { name: 'Ada', email: 'ada@example.com', tags: ['Gold', 'gold', 'GOLD', 'b2b'] }))
      .then([expect.objectContaining({ type: 'CustomerRegistered', data: expect.objectContaining({ tags: ['Gold', 'b2b'] }) })]);
  });
  it('takes as many tags by tagging as a registration takes, and no more', () => {
    const many = Array.from({ length: MAX_CUSTOMER_TAGS }, (_, i) => `t${i}`);
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'Ada', email: 'ada@example.com', tags: many }).success).toBe(true);
    expect(commandSchemas.RegisterCustomer.safeParse({ name: 'Ada', email: 'ada@example.com', tags: [...many, 'one more'] }).success).toBe(false);
    const full: CustomerEvent = { ...registered(), data: { ...(registered().data as object), tags: many } } as CustomerEvent;
    spec
      .given([full])
      .when(cmd('TagCustomer', { tag: 'one more' }))
      .thenRefused('customer.too_many_tags', 'tag', { tags: MAX_CUSTOMER_TAGS, max: MAX_CUSTOMER_TAGS });
    // A tag it has is no change, full or not; one less and it takes another.
    spec
      .given([full])
      .when(cmd('TagCustomer', { tag: 't7' }))
      .thenNothing();
    spec
      .given([{ ...registered(), data: { ...(registered().data as object), tags: many.slice(1) } } as CustomerEvent])
      .when(cmd('TagCustomer', { tag: 'one more' }))
      .then([{ type: 'CustomerTagged', data: { customerId: C, tag: 'one more' } }]);
  });
});

describe('customer: purchases', () => {
  it('records a purchase', () => {
    spec
      .given([registered()])
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 120.5, currency: 'EUR' }))
      .then([purchase('o-1', 120.5)]);
  });
  it('accepts a zero-amount purchase (a free order is still an order)', () => {
    spec
      .given([registered()])
      .when(cmd('RecordPurchase', { orderId: 'o-0', amount: 0, currency: 'EUR' }))
      .then([purchase('o-0', 0)]);
  });
  it('the same order id with the same amount is idempotent (no event)', () => {
    spec
      .given([registered(), purchase('o-1', 0.3)])
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 0.1 + 0.2, currency: 'EUR' }))
      .thenNothing();
  });
  it('the same order id with another amount or currency is refused', () => {
    const e = spec
      .given([registered(), purchase('o-1', 10)])
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 11, currency: 'EUR' }))
      .thenRefused('purchase.order_conflict', 'amount');
    expect(e.kind).toBe('rule_violated');
    spec
      .given([registered(), purchase('o-1', 10)])
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'USD' }))
      .thenRefused('purchase.order_conflict', 'currency');
  });
  it('the same order id with another stated time is refused; sent again without a time (a retry dated by its arrival) it is the same purchase', () => {
    const bought = [registered(), timed(purchase('o-1', 10), '2026-01-01T10:00:00.000Z')];
    spec
      .given(bought)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'EUR', statedAt: '2025-01-01T10:00:00Z' }))
      .thenRefused('purchase.order_conflict', 'occurredAt');
    // The same instant written otherwise, or with milliseconds the state does not keep, is the same purchase.
    spec
      .given(bought)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'EUR', statedAt: '2026-01-01T11:00:00.400+01:00' }))
      .thenNothing();
    spec
      .given(bought)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'EUR' }))
      .thenNothing();
  });
  it('schema refuses negative amounts, more than 4 decimals and non-ISO currencies', () => {
    const base = { customerId: C, orderId: 'o', currency: 'EUR' };
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: -1 }).success).toBe(false);
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1.00001 }).success).toBe(false);
    // Ten decimals are refused however small (1e-10 is 1e-6 ten-thousandths, exactly at the tolerance).
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1e-10 }).success).toBe(false);
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 0.0001 }).success).toBe(true);
    // Not three capitals: told once, not also that ISO 4217 does not list it.
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1, currency: 'eur' }).error?.issues).toEqual([
      expect.objectContaining({ path: ['currency'], message: 'an ISO 4217 code such as EUR' }),
    ]);
    // Three capitals that ISO 4217 does not list (a keying error) are refused; a replaced code is history.
    for (const currency of ['ABC', 'XYZ', 'EUT'])
      expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1, currency }).error?.issues[0]).toMatchObject({
        path: ['currency'],
        message: expect.stringMatching(/ISO 4217/),
      });
    for (const currency of ['JPY', 'KWD', 'XAU', 'DEM', 'VEF'])
      expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1, currency }).success).toBe(true);
    // A fifth decimal is refused however large the amount; four are kept as sent (three from 2^39 up).
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 123456789012.34567 }).success).toBe(false);
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 12345678901.23456 }).success).toBe(false);
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 899999999999.9999 }).success).toBe(false);
    for (const amount of [123456789012.3457, 1234567.89, 549755813887.9999, 899999999999.999, 0.1 + 0.2])
      expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount }).data?.amount).toBe(Number(amount.toFixed(4)));
    expect(commandSchemas.RecordPurchase.safeParse({ ...base, amount: 1, occurredAt: 'yesterday' }).success).toBe(false);
  });
});

describe('customer: refunds', () => {
  const paid = [registered(), purchase('o-1', 100)];
  it('refunds part of a purchase', () => {
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 40, currency: 'EUR', reason: 'damaged' }))
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r-1', amount: 40, currency: 'EUR', reason: 'damaged' } }]);
  });
  it('refunds the rest exactly, summing in minor units', () => {
    const tenths = [registered(), purchase('o-1', 0.3), refund('o-1', 'a', 0.1), refund('o-1', 'b', 0.1)];
    spec
      .given(tenths)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'c', amount: 0.1, currency: 'EUR' }))
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'c', amount: 0.1, currency: 'EUR', reason: null } }]);
  });
  it('never refunds more than was paid for the order', () => {
    const e = spec
      .given([...paid, refund('o-1', 'r-1', 60)])
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-2', amount: 40.0001, currency: 'EUR' }))
      .thenRefused('refund.exceeds_purchase', 'amount');
    expect(e.details).toEqual({ remaining: 40, currency: 'EUR' });
  });
  it('refuses a refund dated well before its purchase, and takes one a moment before (clocks drift)', () => {
    const given = spec.given([registered(), timed(purchase('o-1', 100), at)]);
    const early = { ...cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 10, currency: 'EUR' }), occurredAt: '2025-06-06T12:00:00.000Z' };
    given.when(early).thenRefused('refund.before_purchase', 'occurredAt', { notBefore: at });
    given.when({ ...early, occurredAt: '2026-03-01T08:54:00.000Z' }).thenRefused('refund.before_purchase', 'occurredAt');
    const drift = { ...early, occurredAt: '2026-03-01T08:56:00.000Z' };
    given.when(drift).then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r-1', amount: 10, currency: 'EUR', reason: null } }]);
    // An order folded without its time (a state saved before orders kept it) refuses nothing on it.
    spec
      .given(paid)
      .when(early)
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r-1', amount: 10, currency: 'EUR', reason: null } }]);
  });
  it('refuses a refund of an unknown order, in another currency, or of zero', () => {
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-2', refundId: 'r', amount: 1, currency: 'EUR' }))
      .thenRefused('purchase.not_found', 'orderId');
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r', amount: 1, currency: 'USD' }))
      .thenRefused('refund.currency_mismatch', 'currency');
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r', amount: 0, currency: 'EUR' }))
      .thenRefused('refund.amount_not_positive', 'amount');
  });
  it('the same refund id is idempotent, but not with other values', () => {
    spec
      .given([...paid, refund('o-1', 'r-1', 60)])
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 60, currency: 'EUR' }))
      .thenNothing();
    spec
      .given([...paid, refund('o-1', 'r-1', 60)])
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 10, currency: 'EUR' }))
      .thenRefused('refund.refund_conflict', 'refundId');
  });
  it('evolve keeps the refunded sum per order', () => {
    expect(foldCustomer([...paid, refund('o-1', 'a', 12.34), refund('o-1', 'b', 0.66)]).orders['o-1']).toEqual({
      amount: 100,
      currency: 'EUR',
      refunded: 13,
      purchasedAt: null,
    });
  });
});

describe('customer: deactivate and reactivate', () => {
  const inactive = [registered(), { type: 'CustomerDeactivated', data: { customerId: C, reason: 'moved away' } } as CustomerEvent];
  it('deactivates an active customer and reactivates an inactive one', () => {
    spec
      .given([registered()])
      .when(cmd('DeactivateCustomer', { reason: 'moved away' }))
      .then([inactive[1]!]);
    spec
      .given(inactive)
      .when(cmd('ReactivateCustomer', {}))
      .then([{ type: 'CustomerReactivated', data: { customerId: C } }]);
  });
  it('refuses to deactivate twice or reactivate an active customer', () => {
    spec.given(inactive).when(cmd('DeactivateCustomer', {})).thenRefused('customer.already_inactive');
    spec.given([registered()]).when(cmd('ReactivateCustomer', {})).thenRefused('customer.already_active');
  });
  it('a deactivation is not dated before the registration, a reactivation not before the deactivation', () => {
    const registeredAt = '2021-05-01T00:00:00.000Z';
    const deactivatedAt = '2022-05-01T00:00:00.000Z';
    const deactivated: CustomerEvent = { type: 'CustomerDeactivated', data: { customerId: C, reason: null } };
    const dated = <T extends CustomerCommand>(command: T, occurredAt: string): T => ({ ...command, occurredAt });
    const active = spec.given([timed(registered(), registeredAt)]);
    active
      .when(dated(cmd('DeactivateCustomer', {}), '2000-01-01T00:00:00.000Z'))
      .thenRefused('customer.before_status_changed', 'occurredAt', { notBefore: registeredAt });
    active.when(dated(cmd('DeactivateCustomer', {}), registeredAt)).then([deactivated]);
    const inactive = spec.given([timed(registered(), registeredAt), timed(deactivated, deactivatedAt)]);
    inactive
      .when(dated(cmd('ReactivateCustomer', {}), '2021-12-01T00:00:00.000Z'))
      .thenRefused('customer.before_status_changed', 'occurredAt', { notBefore: deactivatedAt });
    // After a reactivation, the next deactivation follows it.
    const reactivatedAt = '2023-05-01T00:00:00.000Z';
    spec
      .given([
        timed(registered(), registeredAt),
        timed(deactivated, deactivatedAt),
        timed({ type: 'CustomerReactivated', data: { customerId: C } }, reactivatedAt),
      ])
      .when(dated(cmd('DeactivateCustomer', {}), '2022-12-01T00:00:00.000Z'))
      .thenRefused('customer.before_status_changed', 'occurredAt', { notBefore: reactivatedAt });
    // Other steps are not status changes: a purchase dated before the deactivation is still taken.
    inactive
      .when(dated(cmd('RecordPurchase', { orderId: 'o-9', amount: 5, currency: 'EUR' }), '2021-12-01T00:00:00.000Z'))
      .then([{ type: 'PurchaseRecorded', data: { customerId: C, orderId: 'o-9', amount: 5, currency: 'EUR' } }]);
    // A history folded without business times refuses nothing by time.
    spec
      .given([registered()])
      .when(dated(cmd('DeactivateCustomer', {}), '1950-01-01T00:00:00.000Z'))
      .then([deactivated]);
  });
  it('an inactive customer still records purchases (facts from billing are never lost)', () => {
    spec
      .given(inactive)
      .when(cmd('RecordPurchase', { orderId: 'late', amount: 5, currency: 'EUR' }))
      .then([{ type: 'PurchaseRecorded', data: { customerId: C, orderId: 'late', amount: 5, currency: 'EUR' } }]);
  });
});

describe('customer: merge', () => {
  const merge = (customerId: string, duplicateId: string) => ({ type: 'MergeCustomer' as const, occurredAt: at, customerId, duplicateId });
  const refusedMerge = (fn: () => unknown, code: string, field?: string) => {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe(code);
    if (field) expect((error as DomainError).field).toBe(field);
    expect((error as DomainError).message).not.toBe('');
    return error as DomainError;
  };
  const primary = foldCustomer([registered(C)]);
  const duplicate = foldCustomer([registered(D)]);

  it('records on both streams', () => {
    expect(decideMerge(merge(C, D), primary, duplicate)).toEqual({
      duplicate: [{ type: 'CustomerMergedInto', data: { customerId: D, primaryId: C } }],
      primary: [{ type: 'CustomerMerged', data: { customerId: C, duplicateId: D } }],
    });
  });
  it('refuses a merge that would put a duplicate further than MAX_MERGE_CHAIN merges from its primary', () => {
    // The duplicate's own chain one short of the bound: merged, its furthest duplicate is at the bound.
    expect(decideMerge(merge(C, D), primary, duplicate, MAX_MERGE_CHAIN - 1).duplicate).toHaveLength(1);
    const e = refusedMerge(() => decideMerge(merge(C, D), primary, duplicate, MAX_MERGE_CHAIN), 'customer.merge_chain_too_long', 'duplicateId');
    expect(e.kind).toBe('rule_violated');
    expect(e.details).toMatchObject({ customerId: D, chainDepth: MAX_MERGE_CHAIN });
    expect(e.message).toContain(`Merge ${C} into ${D} instead`);
  });
  it('refuses a self-merge and unknown customers', () => {
    refusedMerge(() => decideMerge(merge(C, C), primary, primary), 'customer.self_merge', 'duplicateId');
    refusedMerge(() => decideMerge(merge(C, D), initialCustomerState(), duplicate), 'customer.not_found', 'customerId');
    expect(refusedMerge(() => decideMerge(merge(C, D), primary, initialCustomerState()), 'customer.not_found', 'duplicateId').kind).toBe('rule_violated');
  });
  it('refuses a merge into a merged or forgotten primary', () => {
    const mergedPrimary = foldCustomer([registered(C), { type: 'CustomerMergedInto', data: { customerId: C, primaryId: E } }]);
    const e = refusedMerge(() => decideMerge(merge(C, D), mergedPrimary, duplicate), 'customer.merged', 'customerId');
    expect(e.details).toMatchObject({ primaryId: E });
    const forgottenPrimary = foldCustomer([registered(C), { type: 'CustomerForgotten', data: { customerId: C } }]);
    refusedMerge(() => decideMerge(merge(C, D), forgottenPrimary, duplicate), 'customer.forgotten', 'customerId');
  });
  it('refuses a duplicate already merged elsewhere, or forgotten', () => {
    const elsewhere = foldCustomer([registered(D), { type: 'CustomerMergedInto', data: { customerId: D, primaryId: E } }]);
    refusedMerge(() => decideMerge(merge(C, D), primary, elsewhere), 'customer.already_merged', 'duplicateId');
    const forgotten = foldCustomer([registered(D), { type: 'CustomerForgotten', data: { customerId: D } }]);
    refusedMerge(() => decideMerge(merge(C, D), primary, forgotten), 'customer.forgotten', 'duplicateId');
  });
  it('completes a half-recorded merge and is a no-op once complete', () => {
    const pointing = foldCustomer([registered(D), { type: 'CustomerMergedInto', data: { customerId: D, primaryId: C } }]);
    expect(decideMerge(merge(C, D), primary, pointing)).toEqual({
      duplicate: [],
      primary: [{ type: 'CustomerMerged', data: { customerId: C, duplicateId: D } }],
    });
    const absorbed = foldCustomer([registered(C), { type: 'CustomerMerged', data: { customerId: C, duplicateId: D } }]);
    expect(decideMerge(merge(C, D), absorbed, pointing)).toEqual({ duplicate: [], primary: [] });
  });
  it('the duplicate still takes a refund of its own orders (its stream holds them), within what is left to refund', () => {
    const mergedAway: CustomerEvent[] = [registered(), purchase('o-1', 10), { type: 'CustomerMergedInto', data: { customerId: C, primaryId: E } }];
    spec
      .given(mergedAway)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 4, currency: 'EUR' }))
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r-1', amount: 4, currency: 'EUR', reason: null } }]);
    spec
      .given(mergedAway)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 11, currency: 'EUR' }))
      .thenRefused('refund.exceeds_purchase', 'amount');
    // Forgotten since: a refund holds no personal data, and the primary's revenue must still come down.
    const forgotten: CustomerEvent[] = [...mergedAway, { type: 'CustomerForgotten', data: { customerId: C } }];
    spec
      .given(forgotten)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 4, currency: 'EUR' }))
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r-1', amount: 4, currency: 'EUR', reason: null } }]);
  });

  it("the primary takes a duplicate's order sent to it as the purchase already recorded, and refuses other values", () => {
    const absorbed: CustomerEvent[] = [registered(), { type: 'CustomerMerged', data: { customerId: C, duplicateId: D } }];
    const mergedOrder = { customerId: D, amount: 60, currency: 'USD' };
    spec
      .given(absorbed)
      .when(cmd('RecordPurchase', { orderId: 'd-1', amount: 60, currency: 'USD', mergedOrder }))
      .thenNothing();
    const e = spec
      .given(absorbed)
      .when(cmd('RecordPurchase', { orderId: 'd-1', amount: 61, currency: 'USD', mergedOrder }))
      .thenRefused('purchase.order_conflict', 'amount');
    expect(e.details).toMatchObject({ orderId: 'd-1', recordedAmount: 60, recordedCurrency: 'USD', recordedOn: D });
    expect(e.message).toContain(D);
    spec
      .given(absorbed)
      .when(cmd('RecordPurchase', { orderId: 'd-1', amount: 60, currency: 'EUR', mergedOrder }))
      .thenRefused('purchase.order_conflict', 'currency');
    // Without one (no duplicate holds the order), a new purchase.
    spec
      .given(absorbed)
      .when(cmd('RecordPurchase', { orderId: 'd-1', amount: 60, currency: 'USD' }))
      .then([{ type: 'PurchaseRecorded', data: { customerId: C, orderId: 'd-1', amount: 60, currency: 'USD' } }]);
  });

  it('the duplicate takes its own orders sent again as already recorded (an export imported again), and refuses new ones', () => {
    const mergedAway: CustomerEvent[] = [registered(), purchase('o-1', 10), { type: 'CustomerMergedInto', data: { customerId: C, primaryId: E } }];
    spec
      .given(mergedAway)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'EUR' }))
      .thenNothing();
    spec
      .given(mergedAway)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 12, currency: 'EUR' }))
      .thenRefused('purchase.order_conflict', 'amount');
    spec
      .given(mergedAway)
      .when(cmd('RecordPurchase', { orderId: 'o-2', amount: 10, currency: 'EUR' }))
      .thenRefused('customer.merged', 'customerId');
  });

  it('the primary names its duplicates when asked to refund an order it does not hold', () => {
    const absorbed: CustomerEvent[] = [registered(), { type: 'CustomerMerged', data: { customerId: C, duplicateId: D } }];
    const e = spec
      .given(absorbed)
      .when(cmd('RefundPurchase', { orderId: 'o-9', refundId: 'r-9', amount: 1, currency: 'EUR' }))
      .thenRefused('purchase.not_found', 'orderId');
    expect(e.details).toMatchObject({ orderId: 'o-9', mergedDuplicates: [D] });
    expect(e.message).toContain(D);
  });

  it('the duplicate refuses every later command and names the primary', () => {
    const mergedAway: CustomerEvent[] = [registered(), { type: 'CustomerMergedInto', data: { customerId: C, primaryId: E } }];
    for (const c of [cmd('TagCustomer', { tag: 'x' }), cmd('RecordPurchase', { orderId: 'o', amount: 1, currency: 'EUR' }), cmd('DeactivateCustomer', {})]) {
      const e = spec.given(mergedAway).when(c).thenRefused('customer.merged', 'customerId');
      expect(e.details).toMatchObject({ primaryId: E });
      expect(e.message).toContain(E);
    }
  });
});

describe('customer: forget', () => {
  const forgotten: CustomerEvent[] = [registered(), purchase('o-1', 10), { type: 'CustomerForgotten', data: { customerId: C } }];
  it('records CustomerForgotten', () => {
    spec
      .given([registered()])
      .when(cmd('ForgetCustomer', {}))
      .then([{ type: 'CustomerForgotten', data: { customerId: C } }]);
  });
  it('forgetting again records nothing (a safe retry)', () => {
    spec.given(forgotten).when(cmd('ForgetCustomer', {})).thenNothing();
  });
  it('a forgotten customer refuses everything else', () => {
    for (const c of [
      cmd('ChangeCustomerDetails', { name: 'X' }),
      cmd('TagCustomer', { tag: 'x' }),
      cmd('RecordPurchase', { orderId: 'o-2', amount: 1, currency: 'EUR' }),
      cmd('DeactivateCustomer', {}),
    ])
      spec.given(forgotten).when(c).thenRefused('customer.forgotten', 'customerId');
    spec
      .given(forgotten)
      .when(cmd('RegisterCustomer', { name: 'A', email: 'a@b.co' }))
      .thenRefused('customer.already_registered');
  });
  it('a forgotten customer still takes refunds (no personal data; the money history goes on), and its own orders sent again as recorded', () => {
    spec
      .given(forgotten)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r', amount: 1, currency: 'EUR', reason: 'damaged' }))
      .then([{ type: 'PurchaseRefunded', data: { customerId: C, orderId: 'o-1', refundId: 'r', amount: 1, currency: 'EUR', reason: 'damaged' } }]);
    spec
      .given(forgotten)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r', amount: 11, currency: 'EUR' }))
      .thenRefused('refund.exceeds_purchase', 'amount');
    spec
      .given(forgotten)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'EUR' }))
      .thenNothing();
    spec
      .given(forgotten)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 11, currency: 'EUR' }))
      .thenRefused('purchase.order_conflict', 'amount');
  });
  it('the folded state reads personal fields as erased and keeps the history', () => {
    expect(foldCustomer(forgotten)).toMatchObject({ forgotten: true, name: ERASED, email: ERASED, phone: null, orders: { 'o-1': { amount: 10 } } });
  });
});

describe('customer: what the folded state remembers', () => {
  const details = (data: Record<string, unknown>): CustomerEvent => ({ type: 'CustomerContactDetailsChanged', data: { customerId: C, ...data } });
  it('a details change replaces only the fields it names; a null phone or company clears it', () => {
    const withPhone = foldCustomer([registered(), details({ phone: '+1 555 0100', company: 'ACME' })]);
    expect(withPhone).toMatchObject({ name: 'Ada', email: 'ada@example.com', phone: '+1 555 0100', company: 'ACME' });
    expect(foldCustomer([registered(), details({ phone: '+1 555 0100', company: 'ACME' }), details({ name: 'Ada L.' })])).toMatchObject({
      name: 'Ada L.',
      email: 'ada@example.com',
      phone: '+1 555 0100',
      company: 'ACME',
    });
    expect(foldCustomer([registered(), details({ phone: '+1 555 0100', company: 'ACME' }), details({ phone: null, company: null })])).toMatchObject({
      name: 'Ada',
      phone: null,
      company: null,
    });
  });
  it('a recorded change is not recorded again: the same command afterwards decides nothing', () => {
    const change = cmd('ChangeCustomerDetails', { name: 'Ada L.', email: 'ada.l@example.com', phone: '+1 555 0100', company: 'ACME' });
    const changed = spec
      .given([registered()])
      .when(change)
      .then([details({ name: 'Ada L.', email: 'ada.l@example.com', phone: '+1 555 0100', company: 'ACME' })]);
    expect(customerDecider.decide(change, changed)).toEqual([]);
    // The current values again, the email in another case: nothing.
    const after = [registered(), details({ phone: '+1 555 0100', company: 'ACME' })];
    spec
      .given(after)
      .when(cmd('ChangeCustomerDetails', { name: 'Ada', email: ' ADA@example.com ', phone: '+1 555 0100', company: 'ACME' }))
      .thenNothing();
  });
  it('keeps its tags: tagged once, untagged leaves the others', () => {
    const tagged = (tag: string): CustomerEvent => ({ type: 'CustomerTagged', data: { customerId: C, tag } });
    const untagged = (tag: string): CustomerEvent => ({ type: 'CustomerUntagged', data: { customerId: C, tag } });
    expect(foldCustomer([registered(), tagged('gold'), tagged('gold')]).tags).toEqual(['vip', 'gold']);
    expect(foldCustomer([registered(), tagged('gold'), untagged('vip')]).tags).toEqual(['gold']);
    spec
      .given([registered(), tagged('gold'), untagged('vip')])
      .when(cmd('TagCustomer', { tag: 'vip' }))
      .then([tagged('vip')]);
    spec
      .given([registered(), tagged('gold'), untagged('vip')])
      .when(cmd('TagCustomer', { tag: 'gold' }))
      .thenNothing();
  });
  it('a reactivated customer is active again, without the old reason, and may be deactivated again', () => {
    const history: CustomerEvent[] = [
      registered(),
      { type: 'CustomerDeactivated', data: { customerId: C, reason: 'moved away' } },
      { type: 'CustomerReactivated', data: { customerId: C } },
    ];
    expect(foldCustomer(history)).toMatchObject({ status: 'active', deactivationReason: null });
    expect(customerSnapshot(foldCustomer(history)).active).toBe(true);
    spec
      .given(history)
      .when(cmd('DeactivateCustomer', {}))
      .then([{ type: 'CustomerDeactivated', data: { customerId: C, reason: null } }]);
  });
  it('a forgotten customer with a phone number reads it as erased', () => {
    const state = foldCustomer([registered(), details({ phone: '+1 555 0100' }), { type: 'CustomerForgotten', data: { customerId: C } }]);
    expect(state).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED });
  });
  it('lists the duplicates it absorbed, each once', () => {
    expect(foldCustomer([registered()]).mergedDuplicates).toEqual([]);
    const absorbed: CustomerEvent = { type: 'CustomerMerged', data: { customerId: C, duplicateId: D } };
    expect(foldCustomer([registered(), absorbed, absorbed]).mergedDuplicates).toEqual([D]);
  });
});

describe('customer: what other aggregates see of it', () => {
  it('the snapshot tells an active from a deactivated customer, and a deactivated one is refused where activity is required', () => {
    const active = customerSnapshot(foldCustomer([registered()]));
    expect(active).toEqual({ exists: true, active: true, forgotten: false, mergedInto: null, marketingConsent: false, inactiveSince: null });
    const inactive = customerSnapshot(foldCustomer([registered(), { type: 'CustomerDeactivated', data: { customerId: C, reason: null } }]));
    expect(inactive.active).toBe(false);
    expect(() => assertCustomerUsable(active, C, { requireActive: true })).not.toThrow();
    let error: unknown;
    try {
      assertCustomerUsable(inactive, C, { requireActive: true });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'customer.inactive', field: 'customerId', details: { customerId: C } });
    expect((error as DomainError).message).toContain(C);
  });
  it('refusals name the customer in their details', () => {
    const refused = (snapshot: ReturnType<typeof customerSnapshot>) => {
      try {
        assertCustomerUsable(snapshot, D, { requireActive: false, field: 'duplicateId' });
      } catch (e) {
        return e as DomainError;
      }
      throw new Error('not refused');
    };
    const known = customerSnapshot(foldCustomer([registered(D)]));
    expect(refused({ ...known, exists: false })).toMatchObject({
      code: 'customer.not_found',
      kind: 'rule_violated',
      field: 'duplicateId',
      details: { customerId: D },
    });
    expect(refused({ ...known, forgotten: true })).toMatchObject({ code: 'customer.forgotten', field: 'duplicateId', details: { customerId: D } });
    expect(refused({ ...known, mergedInto: E })).toMatchObject({ code: 'customer.merged', details: { customerId: D, primaryId: E } });
  });
});

describe('customer: refusals carry the facts a client needs', () => {
  const paid = [registered(), purchase('o-1', 10)];
  it('an order conflict names the order as it was recorded', () => {
    const recorded = { orderId: 'o-1', recordedAmount: 10, recordedCurrency: 'EUR' };
    spec
      .given(paid)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 11, currency: 'EUR' }))
      .thenRefused('purchase.order_conflict', 'amount', recorded);
    spec
      .given(paid)
      .when(cmd('RecordPurchase', { orderId: 'o-1', amount: 10, currency: 'USD' }))
      .thenRefused('purchase.order_conflict', 'currency', recorded);
  });
  it('a refund id reused for another order or another currency is a conflict, not a retry', () => {
    const other = [...paid, purchase('o-2', 10), refund('o-1', 'r-1', 5)];
    spec
      .given(other)
      .when(cmd('RefundPurchase', { orderId: 'o-2', refundId: 'r-1', amount: 5, currency: 'EUR' }))
      .thenRefused('refund.refund_conflict', 'refundId', { refundId: 'r-1' });
    spec
      .given(other)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r-1', amount: 5, currency: 'USD' }))
      .thenRefused('refund.refund_conflict', 'refundId', { refundId: 'r-1' });
  });
  it('a refund of an unknown order or in another currency names what was expected', () => {
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-9', refundId: 'r', amount: 1, currency: 'EUR' }))
      .thenRefused('purchase.not_found', 'orderId', { orderId: 'o-9' });
    spec
      .given(paid)
      .when(cmd('RefundPurchase', { orderId: 'o-1', refundId: 'r', amount: 1, currency: 'USD' }))
      .thenRefused('refund.currency_mismatch', 'currency', { expected: 'EUR' });
  });
  it('a refusal is a DomainError by name too, as logs and serialised errors show it', () => {
    const refused = spec
      .given([])
      .when(cmd('TagCustomer', { tag: 'x' }))
      .thenRefused('customer.not_found');
    expect(refused.name).toBe('DomainError');
  });
  it('a merge refusal names the customers involved', () => {
    const merge = { type: 'MergeCustomer' as const, occurredAt: at, customerId: C, duplicateId: D };
    const refusal = (primary: CustomerState, duplicate: CustomerState) => {
      try {
        decideMerge(merge, primary, duplicate);
      } catch (e) {
        return e as DomainError;
      }
      throw new Error('not refused');
    };
    expect(refusal(foldCustomer([registered(C)]), initialCustomerState()).details).toEqual({ customerId: D });
    const elsewhere = foldCustomer([registered(D), { type: 'CustomerMergedInto', data: { customerId: D, primaryId: E } }]);
    expect(refusal(foldCustomer([registered(C)]), elsewhere)).toMatchObject({ code: 'customer.already_merged', details: { primaryId: E } });
  });
});
