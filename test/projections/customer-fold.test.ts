import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { foldRecord } from '../../audit/records.ts';
import { ratesOf } from '../../audit/base-figures.ts';
import { evolveCustomer, revenueLineOf } from '../../projections/read-models/customer-fold.ts';
import { CUSTOMERS } from '../../projections/read-models/customers.ts';
import { foldSpec, streamOf } from '../support/fold-spec.ts';

/** The customer fold written once (customer-fold.ts): the live row and the auditor's record come from it. */

const customerId = randomUUID();
const at = (day: number) => `2026-05-${String(day).padStart(2, '0')}T09:00:00.000Z`;
const on = streamOf(`customer-${customerId}`);
const customer = foldSpec(evolveCustomer);

const registered = on(
  {
    type: 'CustomerRegistered',
    data: {
      customerId,
      name: 'Ann Archer',
      email: 'Ann@Example.com',
      phone: null,
      company: 'Archer Ltd',
      tags: ['vip', 'vip', 'web'],
      source: 'web',
      marketingConsent: false,
    },
  },
  at(1),
);
const purchase = (orderId: string, amount: number, currency: string, day: number) =>
  on({ type: 'PurchaseRecorded', data: { customerId, orderId, amount, currency } }, at(day));
const refund = (orderId: string, amount: number, currency: string, day: number) =>
  on({ type: 'PurchaseRefunded', data: { customerId, orderId, refundId: randomUUID(), amount, currency, reason: null } }, at(day));

describe('the customer fold', () => {
  it('registers an active customer with its tags once each and a search form of the email', () => {
    customer
      .given([])
      .when(registered)
      .then({
        status: 'active',
        tags: ['vip', 'web'],
        email: 'Ann@Example.com',
        email_search: 'ann@example.com',
        order_count: 0,
        revenue: '0.0000',
        currency: null,
        registered_at: at(1),
        revision: 0,
      });
    customer
      .given([])
      .when(purchase('o-0', 1, 'EUR', 2))
      .thenNothing();
  });

  it('keeps tags as one set in any case, as first written, with the keys ?tag= looks them up by', () => {
    const tagged = (tag: string, day: number) => on({ type: 'CustomerTagged', data: { customerId, tag } }, at(day));
    const untagged = (tag: string, day: number) => on({ type: 'CustomerUntagged', data: { customerId, tag } }, at(day));
    customer
      .given([registered])
      .when(tagged('Gold', 2))
      .then({ tags: ['vip', 'web', 'Gold'], tag_keys: ['vip', 'web', 'gold'] });
    // A second spelling (recorded before tags ignored case) is the same tag; untagging either removes it.
    customer
      .given([registered, tagged('Gold', 2)])
      .when(tagged('GOLD', 3))
      .then({ tags: ['vip', 'web', 'Gold'], tag_keys: ['vip', 'web', 'gold'] });
    customer
      .given([registered, tagged('Gold', 2), tagged('GOLD', 3)])
      .when(untagged('gold', 4))
      .then({ tags: ['vip', 'web'], tag_keys: ['vip', 'web'] });
  });

  it('keeps when and why an inactive customer was deactivated, and forgets both at a reactivation', () => {
    const deactivated = on({ type: 'CustomerDeactivated', data: { customerId, reason: 'Moved abroad' } }, at(4));
    customer
      .given([registered])
      .when(deactivated)
      .then({ status: 'inactive', deactivated_at: at(4), deactivation_reason: 'Moved abroad' });
    const reactivated = on({ type: 'CustomerReactivated', data: { customerId } }, at(6));
    customer.given([registered, deactivated]).when(reactivated).then({ status: 'active', deactivated_at: null, deactivation_reason: null });
    // A merged customer is not deactivated: its row keeps what it had.
    const merged = on({ type: 'CustomerMergedInto', data: { customerId, primaryId: randomUUID() } }, at(5));
    customer.given([registered, merged]).when(deactivated).then({ status: 'merged', deactivated_at: null, deactivation_reason: null });
  });

  it('keeps revenue in the first purchase currency; another currency counts as an order only', () => {
    const eur = purchase('o-1', 120.5, 'EUR', 3);
    customer.given([registered]).when(eur).then({ order_count: 1, currency: 'EUR', revenue: '120.5000' });
    customer
      .given([registered, eur])
      .when(purchase('o-2', 99, 'USD', 4))
      .then({ order_count: 2, currency: 'EUR', revenue: '120.5000' });
  });

  it('a refund in the revenue currency lowers revenue and counts as refunded; in another currency it changes neither', () => {
    const given = customer.given([registered, purchase('o-1', 120.5, 'EUR', 3), purchase('o-2', 99, 'USD', 4)]);
    given.when(refund('o-1', 20.25, 'EUR', 5)).then({ revenue: '100.2500', refunded: '20.2500', order_count: 2 });
    given.when(refund('o-2', 9, 'USD', 5)).then({ revenue: '120.5000', refunded: '0.0000' });
  });

  it('the headline currency is the first purchase in business time, not the first recorded, and every currency is kept', () => {
    const usd = purchase('o-1', 99, 'USD', 6);
    // Recorded after the USD purchase, back-dated before it.
    const eur = purchase('o-2', 50, 'EUR', 3);
    customer
      .given([registered, usd])
      .when(eur)
      .then({
        order_count: 2,
        currency: 'EUR',
        revenue: '50.0000',
        currency_figures: {
          USD: { revenue: '99.0000', refunded: '0.0000', first_purchase_at: at(6) },
          EUR: { revenue: '50.0000', refunded: '0.0000', first_purchase_at: at(3) },
        },
      });
    // A tie in business time goes to the first code, whichever was recorded first.
    const gbp = purchase('o-3', 7, 'GBP', 3);
    customer.given([registered, usd, eur]).when(gbp).then({ currency: 'EUR' });
    customer.given([registered, gbp]).when(eur).then({ currency: 'EUR', revenue: '50.0000' });
  });

  it('the same history recorded in any order folds to the same figures', () => {
    const history = [
      purchase('o-1', 99, 'USD', 6),
      purchase('o-2', 50, 'EUR', 3),
      refund('o-1', 9, 'USD', 7),
      purchase('o-3', 20.25, 'EUR', 9),
      refund('o-2', 10, 'EUR', 10),
      purchase('o-4', 1, 'GBP', 3),
    ];
    const figures = (events: typeof history) => {
      let row = evolveCustomer(undefined, registered);
      for (const e of events) row = evolveCustomer(row, e);
      const { currency, revenue, refunded, currency_figures, order_count, first_purchase_at, last_purchase_at } = row!;
      return { currency, revenue, refunded, currency_figures, order_count, first_purchase_at, last_purchase_at };
    };
    const expected = figures(history);
    expect(expected).toMatchObject({ currency: 'EUR', revenue: '60.2500', refunded: '10.0000', order_count: 4 });
    for (let i = 0; i < 20; i++) {
      const shuffled = [...history].sort(() => Math.random() - 0.5);
      expect(figures(shuffled)).toEqual(expected);
    }
  });

  it('purchase dates and the last event time are business times, whatever order the events came in', () => {
    const given = customer.given([registered, purchase('o-1', 10, 'EUR', 10)]);
    // Recorded later, back-dated before the first one.
    const backDated = purchase('o-2', 10, 'EUR', 4);
    given.when(backDated).then({ first_purchase_at: at(4), last_purchase_at: at(10), last_event_at: at(10), revision: backDated.revision });
  });

  it('merging into a primary marks the duplicate merged; a forgotten customer stays forgotten', () => {
    const primaryId = randomUUID();
    const mergedInto = on({ type: 'CustomerMergedInto', data: { customerId, primaryId } }, at(6));
    customer.given([registered]).when(mergedInto).then({ status: 'merged', merged_into: primaryId });
    const forgotten = on({ type: 'CustomerForgotten', data: { customerId } }, at(5));
    customer.given([registered, forgotten]).when(mergedInto).then({ status: 'forgotten', merged_into: primaryId });
  });

  it('deactivates an active customer and reactivates an inactive one, never a merged one', () => {
    const deactivated = on({ type: 'CustomerDeactivated', data: { customerId, reason: null } }, at(3));
    const reactivated = on({ type: 'CustomerReactivated', data: { customerId } }, at(4));
    customer.given([registered]).when(deactivated).then({ status: 'inactive' });
    customer.given([registered, deactivated]).when(reactivated).then({ status: 'active' });
    const merged = on({ type: 'CustomerMergedInto', data: { customerId, primaryId: randomUUID() } }, at(2));
    customer.given([registered, merged]).when(reactivated).then({ status: 'merged' });
  });

  it('forgetting erases the company (stored in plain text before it was encrypted); the rest reads as the events decode it', () => {
    customer
      .given([registered])
      .when(on({ type: 'CustomerForgotten', data: { customerId } }, at(7)))
      .then({
        status: 'forgotten',
        forgotten_at: at(7),
        company: '[erased]',
        phone: null,
        name: 'Ann Archer',
      });
  });

  it('leaves the row alone (same object) for events of other streams about the customer', () => {
    const dealOpened = on(
      {
        type: 'DealOpened',
        data: {
          dealId: randomUUID(),
          customerId,
          title: 'Renewal',
          amount: 10,
          currency: 'EUR',
          ownerId: 'ann',
          stage: 'lead',
          probabilityOverride: null,
          expectedCloseDate: '2026-06-30',
        },
      },
      at(3),
    );
    customer.given([registered]).when(dealOpened).thenUnchanged();
  });

  it('keeps every column of the customers table', () => {
    expect(Object.keys(customer.given([registered]).row!).sort()).toEqual([...CUSTOMERS.columns].sort());
  });

  it('a purchase adds a positive revenue line in its own currency, a refund a negative one', () => {
    const bought = purchase('o-9', 12.3456, 'JPY', 3);
    expect(revenueLineOf(bought)).toEqual({
      event_id: bought.id,
      customer_id: customerId,
      kind: 'purchase',
      order_id: 'o-9',
      currency: 'JPY',
      amount: '12.3456',
      occurred_at: at(3),
      refund_id: null,
      reason: null,
    });
    const refunded = on(
      { type: 'PurchaseRefunded', data: { customerId, orderId: 'o-9', refundId: 'r-1', amount: 2, currency: 'JPY', reason: 'Broken on arrival' } },
      at(4),
    );
    // A refund keeps its own id and reason: the refunds export reads them.
    expect(revenueLineOf(refunded)).toMatchObject({ kind: 'refund', order_id: 'o-9', amount: '-2.0000', refund_id: 'r-1', reason: 'Broken on arrival' });
    expect(revenueLineOf(refund('o-9', 2, 'JPY', 4))).toMatchObject({ kind: 'refund', amount: '-2.0000', reason: null });
    expect(revenueLineOf(registered)).toBeUndefined();
  });

  it("is the auditor's record of the customer (audit/records.ts), with its merged duplicates and revenue per currency", () => {
    const duplicateId = randomUUID();
    const events = [
      registered,
      purchase('o-1', 120.5, 'EUR', 5),
      purchase('o-2', 99, 'USD', 6),
      refund('o-2', 9, 'USD', 7),
      purchase('o-3', 0.1, 'EUR', 3), // back-dated
      on({ type: 'CustomerMerged', data: { customerId, duplicateId } }, at(8)),
    ];
    // USD at 0.9 from before the purchases, corrected to 0.8 from day 7 (the refund's day): each line at its own day's rate.
    const rates = ratesOf(
      [
        on({ type: 'ExchangeRateSet', data: { currency: 'USD', baseCurrency: 'EUR', rate: '0.95', validFrom: at(1), previousRate: null } }, at(1)),
        on({ type: 'ExchangeRateSet', data: { currency: 'USD', baseCurrency: 'EUR', rate: '0.9', validFrom: at(1), previousRate: '0.95' } }, at(2)),
        on({ type: 'ExchangeRateSet', data: { currency: 'USD', baseCurrency: 'EUR', rate: '0.8', validFrom: at(7), previousRate: null } }, at(7)),
        // Against another base: converts nothing here.
        on({ type: 'ExchangeRateSet', data: { currency: 'USD', baseCurrency: 'GBP', rate: '0.7', validFrom: at(1), previousRate: null } }, at(1)),
      ],
      'EUR',
    );
    expect(foldRecord('customer', events, { baseCurrency: 'EUR', rates })).toEqual({
      id: customerId,
      name: 'Ann Archer',
      email: 'Ann@Example.com',
      phone: null,
      company: 'Archer Ltd',
      tags: ['vip', 'web'],
      source: 'web',
      marketingConsent: false,
      status: 'active',
      mergedInto: null,
      mergedDuplicates: [duplicateId],
      firstPurchaseAt: at(3),
      lastPurchaseAt: at(6),
      orderCount: 3,
      revenue: 120.6,
      refunded: 0,
      currency: 'EUR',
      revenueByCurrency: { EUR: 120.6, USD: 90 },
      // 120.6 EUR + 99 USD x 0.9 - 9 USD x 0.8.
      baseCurrency: 'EUR',
      revenueBase: 202.5,
      // `refunded` counts EUR refunds only; every refund in the base currency: 9 USD x 0.8.
      refundedBase: 7.2,
      missingRates: [],
      registeredAt: at(1),
      deactivatedAt: null,
      deactivationReason: null,
      forgottenAt: null,
      ownerId: null,
      updatedAt: at(8),
      // The counters other streams keep: none of them in this stream.
      openFeedbackCount: 0,
      dealsOpen: 0,
      dealsWon: 0,
      dealsLost: 0,
      position: events[events.length - 1]!.position.toString(),
    });
  });
});
