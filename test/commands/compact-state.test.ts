import { isDeepStrictEqual, types } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compactState, compactStateForm, compactStateFromForm, CompactIds, expandState, hashPrefix } from '../../commands/compact-state.ts';
import { eventIdFor } from '../../commands/ids.ts';
import { customerDecider, type CustomerState } from '../../domain/customer/decider.ts';
import type { CustomerCommand } from '../../domain/customer/commands.ts';
import { DomainError } from '../../domain/errors.ts';
import { entryOf, setEntry } from '../../domain/entries.ts';

/**
 * The batch handler keeps customer states with their orders and refunds as books: deciding and
 * evolving on a compacted state must give exactly what the plain state gives.
 */
const customerId = '7f0c5a8e-1b2d-4c3e-8f9a-0b1c2d3e4f5a';
const registered = (): CustomerState =>
  customerDecider.evolve(customerDecider.initialState(), {
    type: 'CustomerRegistered',
    data: { customerId, name: 'Ada', email: 'ada@example.com', phone: null, company: null, tags: [], source: null, marketingConsent: false },
  });

type Step =
  | { purchase: true; orderId: string; amount: number; currency: string }
  | { purchase: false; orderId: string; refundId: string; amount: number; currency: string };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    purchase: fc.constant(true as const),
    // Few ids, so that orders repeat (same or different values); `__proto__` and `constructor` are ids too.
    orderId: fc.constantFrom('o1', 'o2', 'o3', '__proto__', 'constructor', 'a"b\\c', 'é'),
    amount: fc.constantFrom(1, 2.5, 10.01, 99.99),
    currency: fc.constantFrom('EUR', 'USD'),
  }),
  fc.record({
    purchase: fc.constant(false as const),
    orderId: fc.constantFrom('o1', 'o2', '__proto__', 'missing'),
    refundId: fc.constantFrom('r1', 'r2', 'toString'),
    amount: fc.constantFrom(0.5, 1, 2.5, 50),
    currency: fc.constantFrom('EUR', 'USD'),
  }),
);

const commandOf = (s: Step): CustomerCommand =>
  (s.purchase
    ? { type: 'RecordPurchase', customerId, orderId: s.orderId, amount: s.amount, currency: s.currency }
    : {
        type: 'RefundPurchase',
        customerId,
        orderId: s.orderId,
        refundId: s.refundId,
        amount: s.amount,
        currency: s.currency,
        reason: null,
      }) as CustomerCommand;

/** Decides and evolves each step; the outcome of each (events or refusal code) and the final state. */
const run = (initial: CustomerState, steps: Step[]) => {
  let state = initial;
  const outcomes: unknown[] = [];
  for (const s of steps) {
    try {
      const events = customerDecider.decide(commandOf(s), state);
      for (const e of events) state = customerDecider.evolve(state, e);
      outcomes.push(events);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      outcomes.push(error.code);
    }
  }
  return { outcomes, state };
};

describe('compact customer states', () => {
  it('decide and evolve on books exactly as on plain dictionaries, including ids that name Object members', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 0, max: 40 }), (steps, split) => {
        const plain = run(registered(), steps);
        // Compacted part-way, as the handler does when it keeps a state read from the store.
        const before = run(registered(), steps.slice(0, split));
        const compacted = run(compactState('customer', before.state), steps.slice(split));
        expect([...before.outcomes, ...compacted.outcomes]).toEqual(plain.outcomes);
        expect(JSON.parse(JSON.stringify(compacted.state))).toEqual(JSON.parse(JSON.stringify(plain.state)));
        expect(Object.keys(compacted.state.orders)).toEqual(Object.keys(plain.state.orders));
      }),
      { numRuns: 300 },
    );
  });

  it('a state saved as text (a stream snapshot) and read back decides and evolves as the plain state, books and all', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 0, max: 40 }), (steps, split) => {
        const plain = run(registered(), steps);
        const before = run(registered(), steps.slice(0, split));
        // Saved once from a plain state and once from a compacted one: both read back the same.
        for (const saved of [before.state, compactState('customer', before.state)]) {
          const text = JSON.stringify(compactStateForm('customer', saved));
          const restored = run(compactStateFromForm<CustomerState>(JSON.parse(text)), steps.slice(split));
          expect([...before.outcomes, ...restored.outcomes]).toEqual(plain.outcomes);
          expect(JSON.parse(JSON.stringify(restored.state))).toEqual(JSON.parse(JSON.stringify(plain.state)));
          expect(Object.keys(restored.state.orders)).toEqual(Object.keys(plain.state.orders));
          expect(Object.keys(restored.state.refunds)).toEqual(Object.keys(plain.state.refunds));
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a saved state expanded again (the API keeps plain states) equals the plain state, dictionaries and all, and decides alike', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 0, max: 40 }), (steps, split) => {
        const plain = run(registered(), steps);
        const before = run(registered(), steps.slice(0, split));
        const text = JSON.stringify(compactStateForm('customer', before.state));
        const expanded = expandState('customer', compactStateFromForm<CustomerState>(JSON.parse(text)));
        // Exactly the fold's state: dictionaries without a prototype, the same entries in the same order
        // (node's strict comparison: vitest's compares the `constructor` members of two objects, an order id here).
        expect(isDeepStrictEqual(expanded, before.state)).toBe(true);
        expect(Object.keys(expanded.orders)).toEqual(Object.keys(before.state.orders));
        expect(Object.getPrototypeOf(expanded.orders)).toBeNull();
        expect(types.isProxy(expanded.orders)).toBe(false);
        const restored = run(expanded, steps.slice(split));
        expect([...before.outcomes, ...restored.outcomes]).toEqual(plain.outcomes);
        expect(isDeepStrictEqual(restored.state, plain.state)).toBe(true);
      }),
      { numRuns: 200 },
    );
    // Other kinds and states without books are returned as they are.
    const state = registered();
    expect(isDeepStrictEqual(expandState('customer', state), state)).toBe(true);
    expect(expandState('deal', state)).toBe(state);
  });

  it('a book reads back what was written, replaces in place and leaves the prototype alone', () => {
    const state = compactState('customer', registered());
    setEntry(state.orders, 'x', { amount: 1.1, currency: 'EUR', refunded: 0, purchasedAt: null });
    setEntry(state.orders, '__proto__', { amount: 2, currency: 'USD', refunded: 0, purchasedAt: 1767323045 });
    setEntry(state.orders, 'x', { amount: 1.1, currency: 'EUR', refunded: 0.6, purchasedAt: null });
    expect(entryOf(state.orders, 'x')).toEqual({ amount: 1.1, currency: 'EUR', refunded: 0.6, purchasedAt: null });
    expect(entryOf(state.orders, '__proto__')).toEqual({ amount: 2, currency: 'USD', refunded: 0, purchasedAt: 1767323045 });
    expect(entryOf(state.orders, 'toString')).toBeUndefined();
    expect(Object.keys(state.orders)).toEqual(['x', '__proto__']);
    expect(Object.getPrototypeOf(state.orders)).toBe(Object.prototype);
    // A state without dictionaries to compact, and one already compacted, are returned as they are.
    expect(compactState('customer', state)).toBe(state);
    const deal = { stage: 'open' };
    expect(compactState('deal', deal)).toBe(deal);
  });
});

describe('a book behind a dictionary', () => {
  /** A compacted customer's orders, and a plain object that has been through the same writes. */
  const pair = () => ({ book: compactState('customer', registered()).orders as Record<string, unknown>, plain: {} as Record<string, unknown> });

  it('reads back every plain JSON value exactly: the common shape, another key order, missing, undefined or extra fields, arrays, null, numbers, strings', () => {
    const values: unknown[] = [
      { amount: 1, currency: 'EUR', refunded: 0 },
      { currency: 'USD', amount: 2, refunded: 0 },
      { refunded: 0, amount: 2.5, currency: 'USD' },
      { amount: 3, currency: 'EUR' },
      { amount: 4, currency: undefined, refunded: 0 },
      { amount: 5, currency: 'EUR', refunded: 0, note: 'x' },
      { amount: 6, currency: null, refunded: 0 },
      [1, 'two'],
      null,
      7,
      'eight',
    ];
    const { book, plain } = pair();
    values.forEach((value, i) => {
      setEntry(book, `k${i}`, value);
      setEntry(plain, `k${i}`, value);
    });
    // JSON text keeps key order: a value is read back with its own keys, in its own order.
    expect(JSON.stringify(book)).toBe(JSON.stringify(plain));
    for (const key of Object.keys(plain)) expect(entryOf(book, key)).toStrictEqual(JSON.parse(JSON.stringify(entryOf(plain, key)) ?? 'null'));
    expect(Object.hasOwn(entryOf(book, 'k4') as object, 'currency')).toBe(false);

    // A book whose first value is an array keeps arrays as arrays.
    const other = pair();
    setEntry(other.book, 'a', [1, 2]);
    setEntry(other.book, 'b', [3, 4]);
    expect(entryOf(other.book, 'b')).toStrictEqual([3, 4]);
  });

  it('answers own-property questions as a plain object: in, hasOwn, descriptors, property names, inherited members', () => {
    const { book, plain } = pair();
    for (const target of [book, plain]) {
      setEntry(target, 'o1', { amount: 1, currency: 'EUR', refunded: 0 });
      target.o2 = { amount: 2, currency: 'EUR', refunded: 0 };
    }
    for (const key of ['o1', 'o2', 'missing', 'toString', 'constructor']) {
      expect([key, key in book]).toEqual([key, key in plain]);
      expect([key, Object.hasOwn(book, key)]).toEqual([key, Object.hasOwn(plain, key)]);
      expect([key, Object.getOwnPropertyDescriptor(book, key)]).toEqual([key, Object.getOwnPropertyDescriptor(plain, key)]);
    }
    expect(Symbol.iterator in book).toBe(false);
    expect(Object.getOwnPropertyNames(book)).toEqual(Object.getOwnPropertyNames(plain));
    expect(Object.getOwnPropertyNames(book)).toEqual(['o1', 'o2']);
    expect(book.toString).toBe(Object.prototype.toString);
    expect(book.hasOwnProperty).toBe(Object.prototype.hasOwnProperty);
    expect(book.o2).toEqual({ amount: 2, currency: 'EUR', refunded: 0 });
  });

  it('deletes an entry as a plain object does, keeping the order of the others; symbols are not entries', () => {
    const { book, plain } = pair();
    for (const target of [book, plain]) {
      for (const id of ['a', 'b', 'c']) setEntry(target, id, { amount: 1, currency: 'EUR', refunded: 0 });
      expect(delete target.b).toBe(true);
      expect(delete target.missing).toBe(true);
    }
    expect(Object.keys(book)).toEqual(['a', 'c']);
    expect(Object.hasOwn(book, 'b')).toBe(false);
    expect(entryOf(book, 'c')).toEqual(entryOf(plain, 'c'));
    const symbol = Symbol('not an entry');
    expect(delete (book as Record<symbol, unknown>)[symbol]).toBe(true);
    expect(() => ((book as Record<symbol, unknown>)[symbol] = 1)).toThrow(TypeError);
    expect(() => Object.defineProperty(book, symbol, { value: 1, writable: true, enumerable: true, configurable: true })).toThrow(TypeError);
    expect(Object.keys(book)).toEqual(['a', 'c']);
    expect(JSON.stringify(book)).toBe(JSON.stringify(plain));
  });
});

describe('compacting a state', () => {
  const isBookObject = (value: unknown) => types.isProxy(value);

  it("puts a customer's orders and refunds in books, keeps books already made, and leaves other states and missing dictionaries alone", () => {
    const plain = registered();
    const compacted = compactState('customer', plain);
    expect(compacted).not.toBe(plain);
    expect(isBookObject(compacted.orders) && isBookObject(compacted.refunds)).toBe(true);
    expect(isBookObject(plain.orders)).toBe(false);
    // A fold replaced the refunds with a new plain object: only they are compacted again.
    const folded = { ...compacted, refunds: { r1: { orderId: 'o1', amount: 1, currency: 'EUR' } } } as unknown as CustomerState;
    const again = compactState('customer', folded);
    expect(again.orders).toBe(compacted.orders);
    expect(isBookObject(again.refunds)).toBe(true);
    expect(JSON.stringify(again.refunds)).toBe(JSON.stringify(folded.refunds));
    // No dictionary to compact (null, absent), or no state at all: the same value back.
    const without = { ...plain, orders: null, refunds: undefined } as unknown as CustomerState;
    expect(compactState('customer', without)).toBe(without);
    const absent = { ...plain, orders: undefined } as unknown as CustomerState;
    expect(compactState('customer', absent).orders).toBeUndefined();
    const halfNull = { ...plain, orders: null } as unknown as CustomerState;
    const half = compactState('customer', halfNull);
    expect(half.orders).toBeNull();
    expect(isBookObject(half.refunds)).toBe(true);
    expect(compactState('customer', null)).toBeNull();
    expect(compactState('customer', undefined)).toBeUndefined();
  });
});

describe('compact event ids', () => {
  it('finds each id with its command hash prefix, and only at a record boundary', () => {
    const ids = new CompactIds();
    const stream = `customer-${customerId}`;
    const wanted = Array.from({ length: 200 }, (_, i) => eventIdFor(stream, `key-${i}`, 0));
    wanted.forEach((id, i) => ids.add(id, i % 7 === 0 ? undefined : `hash${i}`.padEnd(43, 'x')));
    expect(ids.size).toBe(200);
    wanted.forEach((id, i) => {
      expect(ids.hashOf(id)).toBe(hashPrefix(i % 7 === 0 ? undefined : `hash${i}`.padEnd(43, 'x')));
      expect(CompactIds.sameCommand(ids.hashOf(id)!, `hash${i}`.padEnd(43, 'x'))).toBe(i % 7 !== 0);
    });
    expect(ids.hashOf(eventIdFor(stream, 'key-200', 0))).toBeUndefined();
    // An event stored without a command hash holds spaces (never in base64url): no command is the same as it.
    expect(hashPrefix(undefined)).toBe(' '.repeat(8));
    expect(CompactIds.sameCommand(ids.hashOf(wanted[0]!)!, undefined)).toBe(false);
    // An id whose bytes span two records (the tail of one id and the hash prefix after it) is not held.
    const spanning = new CompactIds();
    spanning.add('00000000-0000-0000-0000-0000000000aa', 'AAAAAAAA');
    expect(spanning.hashOf('00000000-0000-0000-0000-00aa41414141')).toBeUndefined();
    // Saved as text and read back (a stream snapshot): the same ids and prefixes; a cut text is refused.
    const back = CompactIds.fromText(ids.toText());
    expect(back.size).toBe(200);
    wanted.forEach((id) => expect(back.hashOf(id)).toBe(ids.hashOf(id)));
    expect(() => CompactIds.fromText(ids.toText().slice(0, 40))).toThrow(/Malformed/);
    // A copy holds the same ids; what is added to it is not added to the original.
    const copy = ids.copy();
    copy.add(eventIdFor(stream, 'key-200', 0), 'newhash');
    expect(copy.size).toBe(201);
    expect(ids.size).toBe(200);
    expect(copy.hashOf(wanted[5]!)).toBe(ids.hashOf(wanted[5]!));
    expect(ids.hashOf(eventIdFor(stream, 'key-200', 0))).toBeUndefined();
  });
});
