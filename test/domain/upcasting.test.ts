import { describe, expect, it } from 'vitest';
import { parseEvent, schemaVersionOf, UnknownEventType } from '../../domain/catalogue.ts';

const C = '11111111-1111-4111-8111-111111111111';

describe('upcasting on read', () => {
  it('CustomerRegistered is at version 2; others at 1', () => {
    expect(schemaVersionOf('CustomerRegistered')).toBe(2);
    expect(schemaVersionOf('PurchaseRecorded')).toBe(1);
  });
  it('a stored v1 CustomerRegistered (fullName, no tags/source/consent) reads as v2', () => {
    expect(parseEvent('CustomerRegistered', 1, { customerId: C, fullName: 'Grace Hopper', email: 'g@navy.mil', company: 'US Navy' })).toEqual({
      type: 'CustomerRegistered',
      data: { customerId: C, name: 'Grace Hopper', email: 'g@navy.mil', phone: null, company: 'US Navy', tags: [], source: null, marketingConsent: false },
    });
  });
  it('a v2 event passes unchanged and is validated', () => {
    const v2 = { customerId: C, name: 'Ada', email: 'a@b.co', phone: null, company: null, tags: ['vip'], source: 'web', marketingConsent: true };
    expect(parseEvent('CustomerRegistered', 2, v2).data).toEqual(v2);
    expect(() => parseEvent('CustomerRegistered', 2, { ...v2, tags: 'vip' })).toThrow();
  });
  it('refuses a malformed v1 and unknown types', () => {
    expect(() => parseEvent('CustomerRegistered', 1, { customerId: C, name: 'Ada', email: 'a@b.co' })).toThrow();
    expect(() => parseEvent('CustomerTeleported', 1, {})).toThrow(UnknownEventType);
    expect(() => parseEvent('CustomerTeleported', 1, {})).toThrow('Unknown event type CustomerTeleported');
  });
  it('a stored version with no upcaster (below 1, a corrupt row) is refused naming the type and version', () => {
    expect(() => parseEvent('PurchaseRecorded', 0, { customerId: C, orderId: 'o', amount: 1, currency: 'EUR' })).toThrow('No upcaster for PurchaseRecorded v0');
  });
});
