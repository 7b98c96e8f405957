import { describe, expect, it } from 'vitest';
import { customerDecider } from '../../domain/customer/decider.ts';
import { copyState, dictionary, entryOf, setEntry } from '../../domain/entries.ts';

describe('state dictionaries', () => {
  it('hold ids that are names of Object.prototype as plain entries', () => {
    const orders = dictionary<number>();
    for (const id of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(entryOf(orders, id)).toBeUndefined();
      setEntry(orders, id, id.length);
    }
    expect(Object.getPrototypeOf(orders)).toBeNull();
    expect(Object.keys(orders)).toEqual(['__proto__', 'constructor', 'toString', 'hasOwnProperty']);
    expect(entryOf(orders, '__proto__')).toBe(9);
  });

  it('start every customer with dictionaries of its own, without a prototype', () => {
    const a = customerDecider.initialState();
    const b = customerDecider.initialState();
    expect(a.orders).not.toBe(b.orders);
    expect(Object.getPrototypeOf(a.orders)).toBeNull();
    expect(Object.getPrototypeOf(a.refunds)).toBeNull();
  });

  it('copy a state deeply, keeping dictionaries prototype-less and other values as they are', () => {
    const orders = dictionary<{ amount: string }>();
    setEntry(orders, '__proto__', { amount: '1.00' });
    const at = new Date('2026-01-01T00:00:00Z');
    const state = { orders, tags: ['vip'], nested: { at }, count: 2, none: null };
    const copied = copyState(state);

    expect(copied).toEqual(state);
    expect(Object.getPrototypeOf(copied.orders)).toBeNull();
    expect(Object.getPrototypeOf(copied)).toBe(Object.prototype);
    expect(copied.nested.at).toBeInstanceOf(Date);
    expect(copied.nested.at).not.toBe(at);
    // Later writes to the copy leave the original as it was.
    entryOf(copied.orders, '__proto__')!.amount = '2.00';
    setEntry(copied.orders, 'o-2', { amount: '3.00' });
    copied.tags.push('churned');
    expect(entryOf(state.orders, '__proto__')!.amount).toBe('1.00');
    expect(entryOf(state.orders, 'o-2')).toBeUndefined();
    expect(state.tags).toEqual(['vip']);
  });
});
