import { describe, expect, it } from 'vitest';
import { keyGivenTwice } from '../../shared/json-keys.ts';

describe('keyGivenTwice', () => {
  it('finds a key given twice in one object, at any depth, with its path (array items by index)', () => {
    expect(keyGivenTwice('{"tag":"a","tag":"b"}')).toEqual(['tag']);
    expect(keyGivenTwice('{"name":"x","targetSegment":{"tags":["a"], "tags" : ["b"]}}')).toEqual(['targetSegment', 'tags']);
    expect(keyGivenTwice('{"items":[{"a":1},{"a":1,"b":2,"a":3}]}')).toEqual(['items', 1, 'a']);
    // Twice, each in its own object, is once each.
    expect(keyGivenTwice('{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}')).toBeUndefined();
  });

  it('reads keys, not strings: values, escaped quotes, brackets and colons inside strings are text', () => {
    expect(keyGivenTwice('{"a":"a","b":"a"}')).toBeUndefined();
    expect(keyGivenTwice('{"a":"}{\\":","a\\"":1,"b":"[,]"}')).toBeUndefined();
    expect(keyGivenTwice('{"a\\u0062":1,"ab":2}')).toEqual(['ab']);
    expect(keyGivenTwice('["a","a"]')).toBeUndefined();
  });
});
