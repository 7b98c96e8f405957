import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, commandHash, eventIdFor, uuidV5 } from '../../commands/ids.ts';

/**
 * Event ids and command hashes are stored: a new way of computing them must give the same values as
 * the one that stored them, or a re-import would append rows twice and retries would conflict.
 */
const NAMESPACE = Buffer.from('6f1c2a5e8b3d4f7a9c0e1b2d3f4a5b6c', 'hex');
const uuidV5Before = (name: string): string => {
  const hash = createHash('sha1').update(NAMESPACE).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
};
const canonicalBefore = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(canonicalBefore);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canonicalBefore((value as Record<string, unknown>)[k])]),
    );
  return value;
};
const commandHashBefore = (command: unknown): string =>
  createHash('sha256')
    .update(JSON.stringify(canonicalBefore(command)))
    .digest('base64url');

describe('ids', () => {
  it('derives the same event ids as before, for any name (unicode, long)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 3000 }), (name) => {
        expect(uuidV5(name)).toBe(uuidV5Before(name));
      }),
      { numRuns: 300 },
    );
    // Names longer than the buffer reused between calls, then short ones again.
    for (const name of ['x'.repeat(600), 'é'.repeat(5000), '', 'a']) expect(uuidV5(name)).toBe(uuidV5Before(name));
    // A known value, so that both cannot drift together.
    expect(eventIdFor('customer-1', 'k', 0)).toBe(uuidV5Before('event\ncustomer-1\nk\n0'));
  });

  it('hashes commands as before: keys sorted, undefined members left out, at any depth', () => {
    const member = fc.oneof(fc.jsonValue(), fc.constant(undefined), fc.date({ noInvalidDate: true }));
    const key = fc.oneof(fc.string(), fc.constantFrom('0', '1', '10', '2', '01', '4294967294', '4294967295', '-1'));
    const command = fc.dictionary(key, fc.oneof(member, fc.array(member), fc.dictionary(key, member)));
    fc.assert(
      fc.property(command, (c) => {
        expect(canonicalJson(c)).toBe(JSON.stringify(canonicalBefore(c)));
        expect(commandHash(c)).toBe(commandHashBefore(c));
      }),
      { numRuns: 500 },
    );
    expect(commandHash({ type: 'RecordPurchase', b: 1, a: [undefined, { z: 1, y: undefined }] })).toBe(
      commandHashBefore({ a: [null, { z: 1 }], b: 1, type: 'RecordPurchase' }),
    );
  });

  it('hashes commands of a shape seen before (member order kept per shape) and of more shapes than it keeps as before', () => {
    const shaped = (i: number) => ({ type: 'RecordPurchase', customerId: `c${i}`, orderId: `o${i}`, amount: i, currency: 'USD', [`k${i % 1_500}`]: i });
    for (let round = 0; round < 2; round++) for (let i = 0; i < 3_000; i += 7) expect(commandHash(shaped(i))).toBe(commandHashBefore(shaped(i)));
    // Same keys in another insertion order, and keys that differ only where a joined list would not tell them apart.
    expect(canonicalJson({ b: 1, a: 2 })).toBe('{"a":2,"b":1}');
    expect(canonicalJson({ a: 2, b: 1 })).toBe('{"a":2,"b":1}');
    expect(canonicalJson({ 'a,b': 1 })).toBe('{"a,b":1}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe('{"a":1,"b":2}');
  });
});
