import { describe, expect, it } from 'vitest';
import { ERASED_NAME_SORT, nameSortOf } from '../../projections/read-models/name-sort.ts';

/** Names in the order of their `name_sort` keys compared byte by byte, as `COLLATE "C"` compares them. */
const inOrder = (names: readonly string[]): string[] => [...names].sort((a, b) => Buffer.compare(Buffer.from(nameSortOf(a)), Buffer.from(nameSortOf(b))));

/**
 * The `name_sort` column (projections/READ-MODELS.md), which reporting tools read and `?sort=name`
 * orders by: the name's letters in lower case without accents, then, for a name with accents, U+0001
 * and the name in lower case with them. test/projections/name-order.test.ts checks the lists.
 */
describe('the name_sort key', () => {
  it('is the name in lower case when it has no accents', () => {
    expect(nameSortOf('Ada Lovelace')).toBe('ada lovelace');
    expect(nameSortOf('ZOE')).toBe('zoe');
    expect(nameSortOf('김민준')).toBe('김민준');
  });

  it('is the letters without accents, U+0001, then the name in lower case with them', () => {
    expect(nameSortOf('Émile')).toBe('emile\u0001émile');
    expect(nameSortOf('Łukasz')).toBe('lukasz\u0001łukasz');
    expect(nameSortOf('Straße')).toBe('strasse\u0001straße');
    expect(nameSortOf('Ærø')).toBe('aero\u0001ærø');
  });

  it('reads a decomposed accent as the composed one', () => {
    expect(nameSortOf('E\u0301mile')).toBe(nameSortOf('Émile'));
  });

  it('leaves out invisible and control characters (a name recorded before commands refused them)', () => {
    expect(nameSortOf('Bo\u200bb')).toBe('bob');
    expect(nameSortOf('\u2060Zoë\ufeff')).toBe('zoe\u0001zoë');
    expect(nameSortOf('Ana\u0007 Lima\u001b')).toBe('ana lima');
  });

  it('never holds the last code point, so a forgotten customer, keyed by it, sorts after every name', () => {
    expect(nameSortOf('\u{10ffff}Zoë\u{10ffff}')).toBe('zoe\u0001zoë');
    const key = (name: string) => Buffer.from(nameSortOf(name));
    for (const name of ['\u{10ffff}', '\u{10ffff}\u{10ffff}~', '\u{10fffd}', '￿zz'])
      expect(Buffer.compare(key(name), Buffer.from(ERASED_NAME_SORT)), name).toBeLessThan(0);
  });

  it('orders names as a dictionary does: accents decide only between names otherwise equal, the plain one first', () => {
    expect(inOrder(['zoe', 'Émile', 'emilf', 'Ærø', 'emile', 'Łukasz', 'lukas', 'Adam', 'E\u0301milE', 'aero'])).toEqual([
      'Adam',
      'aero',
      'Ærø',
      'emile',
      'Émile',
      'E\u0301milE',
      'emilf',
      'lukas',
      'Łukasz',
      'zoe',
    ]);
  });
});
