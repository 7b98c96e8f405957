import { describe, expect, it } from 'vitest';
import { LruMap } from '../../shared/lru.ts';

const keysOf = (lru: LruMap<string, number>, candidates: string[]) => candidates.filter((k) => lru.has(k));

/** Capacity 3, holding a = 1, b = 2, c = 3 stored in that order. */
const abc = () => {
  const lru = new LruMap<string, number>(3);
  lru.set('a', 1);
  lru.set('b', 2);
  lru.set('c', 3);
  return lru;
};

/** The caches of stream states and personal-data keys: bounded, least recently used out first. */
describe('a bounded least-recently-used map', () => {
  it('keeps at most its capacity, dropping the entry stored longest ago when none was read', () => {
    const lru = new LruMap<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    expect(lru.size).toBe(2);
    expect(keysOf(lru, ['a', 'b', 'c'])).toEqual(['b', 'c']);
    expect(lru.get('c')).toBe(3);
    expect(lru.get('a')).toBeUndefined();
  });

  it('counts a read (get) or a new value (set) as a use; peek and has do not', () => {
    const lru = abc();
    expect(lru.get('a')).toBe(1);
    lru.set('d', 4); // drops b, the least recently used
    expect(keysOf(lru, ['a', 'b', 'c', 'd'])).toEqual(['a', 'c', 'd']);
    lru.set('c', 30);
    expect(lru.peek('a')).toBe(1);
    expect(lru.has('a')).toBe(true);
    lru.set('e', 5); // a was only peeked at: it goes
    expect(keysOf(lru, ['a', 'c', 'd', 'e'])).toEqual(['c', 'd', 'e']);
    expect(lru.peek('c')).toBe(30);
  });

  it('keeps null values apart from missing ones (a forgotten customer has a null key)', () => {
    const lru = new LruMap<string, Buffer | null>(2);
    lru.set('forgotten', null);
    expect(lru.has('forgotten')).toBe(true);
    expect(lru.get('forgotten')).toBeNull();
    expect(lru.get('unknown')).toBeUndefined();
  });

  it('forgets deleted and cleared entries, and keeps its order consistent afterwards', () => {
    const lru = abc();
    expect(lru.delete('a')).toBe(true);
    expect(lru.delete('a')).toBe(false);
    lru.set('d', 4);
    lru.set('e', 5); // b is now the oldest
    expect(keysOf(lru, ['a', 'b', 'c', 'd', 'e'])).toEqual(['c', 'd', 'e']);
    lru.clear();
    expect(lru.size).toBe(0);
    lru.set('f', 6);
    expect(lru.get('f')).toBe(6);
    expect(lru.size).toBe(1);
  });

  it('holds nothing at capacity 0', () => {
    const lru = new LruMap<string, number>(0);
    lru.set('a', 1);
    expect(lru.size).toBe(0);
    expect(lru.get('a')).toBeUndefined();
  });

  it('agrees with a plain list model over 20,000 random operations', () => {
    let seed = 42;
    const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const capacity = 50;
    const lru = new LruMap<string, number>(capacity);
    // The model: least recently used first.
    let model: [string, number][] = [];
    const touch = (k: string, v: number) => {
      model = model.filter(([key]) => key !== k);
      model.push([k, v]);
      if (model.length > capacity) model.shift();
    };
    for (let i = 0; i < 20_000; i++) {
      const k = `s${Math.floor(next() * 120)}`;
      const op = next();
      if (op < 0.45) {
        lru.set(k, i);
        touch(k, i);
      } else if (op < 0.8) {
        const held = model.find(([key]) => key === k);
        expect(lru.get(k)).toBe(held?.[1]);
        if (held) touch(k, held[1]);
      } else if (op < 0.9) {
        expect(lru.peek(k)).toBe(model.find(([key]) => key === k)?.[1]);
      } else {
        expect(lru.delete(k)).toBe(model.some(([key]) => key === k));
        model = model.filter(([key]) => key !== k);
      }
      expect(lru.size).toBe(model.length);
    }
    // Filling with new keys pushes the rest out in the model's order, oldest first.
    const survivors = model.map(([k]) => k);
    const free = capacity - survivors.length;
    for (let i = 0; i < capacity; i++) {
      lru.set(`new${i}`, i);
      const gone = Math.max(0, i + 1 - free);
      for (const [n, k] of survivors.entries()) expect(lru.has(k)).toBe(n >= gone);
    }
  });
});
