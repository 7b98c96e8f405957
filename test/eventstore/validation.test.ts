import { describe, expect, it } from 'vitest';
import { MAX_APPEND_BYTES, MAX_EVENT_BYTES, MAX_STREAMS_PER_APPEND, type NewEvent } from '../../eventstore/contract.ts';
import { InvalidAppend, InvalidReadOptions } from '../../eventstore/errors.ts';
import {
  assertStreamName,
  checkReadAllOptions,
  checkReadStreamOptions,
  normalizeExpectedRevision,
  prepareAppend,
  prepareStreamAppends,
  storedEventSize,
} from '../../eventstore/validation.ts';
import { newEvent } from './contract.ts';

/**
 * The checks every engine runs before touching storage. Their refusals reach API clients as the
 * problem's detail, so each must name the offending field (and its index) and carry its reason.
 */

const refusal = (call: () => unknown): InvalidAppend => {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidAppend);
    return error as InvalidAppend;
  }
  throw new Error('expected the call to be refused');
};

const readRefusal = (call: () => unknown): string => {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidReadOptions);
    return (error as Error).message;
  }
  throw new Error('expected the options to be refused');
};

const stream = 'customer-1';

describe('append input', () => {
  it('names an invalid stream as given, quoted', () => {
    expect(assertStreamName('customer-42')).toBe('customer-42');
    const error = refusal(() => assertStreamName('Customer 42'));
    expect(error.reason).toBe('invalid_stream_name');
    expect(error.message).toBe('Invalid stream name "Customer 42": expected <aggregate>-<id> (e.g. customer-<uuid>)');
    expect(refusal(() => assertStreamName(42)).message).toContain('Invalid stream name 42:');
    // Not a string, even one that prints as a valid name (a JSON body may carry an array).
    expect(refusal(() => assertStreamName(['customer-42'])).message).toContain('Invalid stream name ["customer-42"]:');
  });

  it('reads the expected revision: undefined is any, -1 is no_stream, the keywords and revisions pass, anything else is refused', () => {
    expect(normalizeExpectedRevision(undefined)).toBe('any');
    for (const keyword of ['any', 'no_stream', 'exists'] as const) expect(normalizeExpectedRevision(keyword)).toBe(keyword);
    expect(normalizeExpectedRevision(-1)).toBe('no_stream');
    expect(normalizeExpectedRevision(0)).toBe(0);
    expect(normalizeExpectedRevision(7)).toBe(7);
    for (const bad of [-2, 1.5, Number.MAX_SAFE_INTEGER + 1, '3', 'none', null]) {
      const error = refusal(() => normalizeExpectedRevision(bad));
      expect(error.reason).toBe('invalid_expected_revision');
      expect(error.message).toBe(`Invalid expected revision ${JSON.stringify(bad)}: expected a revision >= 0, 'no_stream', 'exists' or 'any'`);
    }
  });

  it('prepares events once: ids lower-cased, metadata defaulted to {}, JSON texts ready to send', () => {
    const id = 'A0B1C2D3-E4F5-4A6B-8C7D-9E0F1A2B3C4D';
    const [event] = prepareAppend(stream, [{ id, type: 'CustomerRegistered', data: { name: 'Ada' } } as NewEvent]);
    expect(event).toEqual({
      id: id.toLowerCase(),
      type: 'CustomerRegistered',
      data: { name: 'Ada' },
      metadata: {},
      dataJson: '{"name":"Ada"}',
      metadataJson: '{}',
    });
    // The same id in two spellings is one id.
    const twice = refusal(() =>
      prepareAppend(stream, [
        { ...newEvent(), id },
        { ...newEvent(), id: id.toLowerCase() },
      ]),
    );
    expect(twice.message).toBe(`events[1].id ${id.toLowerCase()} appears twice in one append`);
  });

  it('refuses each malformed event naming its index and field', () => {
    const cases: [unknown[], InvalidAppend['reason'], string][] = [
      [[], 'empty_event_list', 'An append needs at least one event'],
      [[newEvent(), null], 'invalid_event', 'events[1] is not an object'],
      [[newEvent(), 'event'], 'invalid_event', 'events[1] is not an object'],
      [[{ ...newEvent(), id: 'not-a-uuid' }], 'invalid_event', 'events[0].id must be a UUID, got "not-a-uuid"'],
      [[{ ...newEvent(), id: `x${newEvent().id}` }], 'invalid_event', 'events[0].id must be a UUID'],
      [[{ ...newEvent(), id: `${newEvent().id}0` }], 'invalid_event', 'events[0].id must be a UUID'],
      [[{ ...newEvent(), id: 7 }], 'invalid_event', 'events[0].id must be a UUID, got 7'],
      [[{ ...newEvent(), id: ['a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d'] }], 'invalid_event', 'events[0].id must be a UUID, got ["a0b1'],
      [[newEvent(), { ...newEvent(), type: '' }], 'invalid_event', 'events[1].type must be a non-empty string of at most 200 characters'],
      [[{ ...newEvent(), type: 'T'.repeat(201) }], 'invalid_event', 'events[0].type must be a non-empty string of at most 200 characters'],
      [[{ ...newEvent(), type: 5 }], 'invalid_event', 'events[0].type must be a non-empty string'],
      [[{ ...newEvent(), metadata: [] }], 'invalid_event', 'events[0].metadata must be an object'],
      [[{ ...newEvent(), metadata: 'actor' }], 'invalid_event', 'events[0].metadata must be an object'],
      [[newEvent(), { ...newEvent(), data: undefined }], 'invalid_event', 'events[1].data is missing'],
      [[{ ...newEvent(), data: { n: 1n } }], 'invalid_event', 'events[0].data is not serializable as JSON: Do not know how to serialize a BigInt'],
      [[newEvent('T', { text: 'nul \u0000 char' })], 'invalid_event', 'events[0].data contains a NUL character'],
      [[newEvent('T', {}, { note: '\u0000' })], 'invalid_event', 'events[0].metadata contains a NUL character'],
    ];
    for (const [events, reason, message] of cases) {
      const error = refusal(() => prepareAppend(stream, events));
      expect({ reason: error.reason, message: error.message.slice(0, message.length) }).toEqual({ reason, message });
    }
    expect(refusal(() => prepareAppend(stream, 'events')).reason).toBe('empty_event_list');
    expect(refusal(() => prepareAppend('nope', [newEvent()])).reason).toBe('invalid_stream_name');
    // A type of exactly 200 characters is fine; metadata null counts as none.
    expect(prepareAppend(stream, [{ ...newEvent(), type: 'T'.repeat(200) }])).toHaveLength(1);
    expect(prepareAppend(stream, [{ ...newEvent(), metadata: null as unknown as Record<string, unknown> }])[0]!.metadataJson).toBe('{}');
  });

  it('measures events and appends as EventStoreDB does, and names the size and the limit when refusing', () => {
    // Bytes, not characters: é is two bytes in UTF-8.
    expect(storedEventSize('Ab', '{"é":1}', '{}')).toBe(8 + 2 + 4);
    const sized = (bytes: number, type = 'T'): NewEvent => {
      const event = { ...newEvent(type, { blob: '' }), metadata: {} };
      const fixed = storedEventSize(type, JSON.stringify(event.data), '{}');
      return { ...event, data: { blob: 'x'.repeat(bytes - fixed) } };
    };
    expect(prepareAppend(stream, [sized(MAX_EVENT_BYTES)])).toHaveLength(1);
    const big = refusal(() => prepareAppend(stream, [newEvent(), sized(MAX_EVENT_BYTES + 1)]));
    expect(big.reason).toBe('payload_too_large');
    expect(big.message).toBe(`events[1] is ${MAX_EVENT_BYTES + 1} bytes; the limit is ${MAX_EVENT_BYTES} bytes per event`);
    const half = MAX_APPEND_BYTES / 2;
    expect(prepareAppend(stream, [sized(half), sized(half - 100), sized(100)])).toHaveLength(3);
    const over = refusal(() => prepareAppend(stream, [sized(half), sized(half - 100), sized(101)]));
    expect(over.reason).toBe('payload_too_large');
    expect(over.message).toBe(`The append is ${MAX_APPEND_BYTES + 1} bytes; the limit is ${MAX_APPEND_BYTES} bytes per append`);
  });

  it('counts exact bytes wherever the quick bound (3 bytes a character) passes a limit: near the limits it refuses and accepts as the exact count says', () => {
    // 2-byte characters: the bound (3 a character) is over the event limit, the exact size under it.
    const accented = (chars: number): NewEvent => ({ ...newEvent('T', { text: 'é'.repeat(chars) }), metadata: {} });
    const under = Math.floor((MAX_EVENT_BYTES - 100) / 2);
    expect(prepareAppend(stream, [accented(under)])).toHaveLength(1);
    const twoByteOver = refusal(() => prepareAppend(stream, [accented(MAX_EVENT_BYTES / 2)]));
    expect(twoByteOver.message).toBe(
      `events[0] is ${storedEventSize('T', JSON.stringify({ text: 'é'.repeat(MAX_EVENT_BYTES / 2) }), '{}')} bytes; the limit is ${MAX_EVENT_BYTES} bytes per event`,
    );
    // Bounds that add up past the append limit while the exact total stays under it: accepted.
    const ascii = (chars: number): NewEvent => ({ ...newEvent('T', { text: 'x'.repeat(chars) }), metadata: {} });
    const third = Math.floor(MAX_APPEND_BYTES / 3) - 100;
    expect(prepareAppend(stream, [ascii(third), ascii(third), ascii(third)])).toHaveLength(3);
    const total = refusal(() => prepareAppend(stream, [accented(under), accented(under), ascii(1_000)]));
    expect(total.reason).toBe('payload_too_large');
    expect(total.message).toMatch(/^The append is \d+ bytes; the limit is \d+ bytes per append$/);
  });
});

describe('multi-stream append input', () => {
  it('prepares each part with its own expected revision, in input order', () => {
    const parts = prepareStreamAppends([
      { stream: 'customer-1', events: [newEvent()], expectedRevision: 3 },
      { stream: 'customer-2', events: [newEvent(), newEvent()] },
      { stream: 'deal-1', events: [newEvent()], expectedRevision: -1 },
    ]);
    expect(parts.map((part) => [part.stream, part.expected, part.events.length])).toEqual([
      ['customer-1', 3, 1],
      ['customer-2', 'any', 2],
      ['deal-1', 'no_stream', 1],
    ]);
  });

  it('refuses an empty batch, too many streams, a stream twice and an id twice, naming the part', () => {
    for (const empty of [[], undefined, 'batch']) {
      const error = refusal(() => prepareStreamAppends(empty));
      expect([error.reason, error.message]).toEqual(['empty_event_list', 'A multi-stream append needs at least one stream']);
    }
    const many = Array.from({ length: MAX_STREAMS_PER_APPEND + 1 }, (_, i) => ({ stream: `customer-${i}`, events: [newEvent()] }));
    const tooMany = refusal(() => prepareStreamAppends(many));
    expect([tooMany.reason, tooMany.message]).toEqual([
      'payload_too_large',
      `A multi-stream append takes at most ${MAX_STREAMS_PER_APPEND} streams, got ${MAX_STREAMS_PER_APPEND + 1}`,
    ]);
    expect(prepareStreamAppends(many.slice(1))).toHaveLength(MAX_STREAMS_PER_APPEND);
    const twice = refusal(() =>
      prepareStreamAppends([
        { stream: 'customer-1', events: [newEvent()] },
        { stream: 'customer-2', events: [newEvent()] },
        { stream: 'customer-1', events: [newEvent()] },
      ]),
    );
    expect([twice.reason, twice.message]).toEqual(['invalid_event', 'appends[2]: stream customer-1 appears twice in one append']);
    const shared = newEvent();
    const reused = refusal(() =>
      prepareStreamAppends([
        { stream: 'customer-1', events: [shared] },
        { stream: 'customer-2', events: [newEvent(), shared] },
      ]),
    );
    expect([reused.reason, reused.message]).toEqual(['invalid_event', `appends[1]: event id ${shared.id} appears twice in one append`]);
    // A missing part is checked like an append without a stream.
    expect(refusal(() => prepareStreamAppends([null])).reason).toBe('invalid_stream_name');
    expect(refusal(() => prepareStreamAppends([{ stream: 'customer-1', events: [newEvent()], expectedRevision: -4 }])).reason).toBe(
      'invalid_expected_revision',
    );
  });
});

describe('read options', () => {
  it('accepts the bounds of each stream read option and refuses the rest naming the option and the value', () => {
    checkReadStreamOptions({});
    checkReadStreamOptions({ maxCount: 0, fromRevision: 0, untilRevision: 0, direction: 'backwards', untilTime: new Date() });
    checkReadStreamOptions({ direction: 'forwards' });
    expect(readRefusal(() => checkReadStreamOptions({ maxCount: -1 }))).toBe('maxCount must be an integer >= 0, got -1');
    expect(readRefusal(() => checkReadStreamOptions({ maxCount: '3' as unknown as number }))).toBe("maxCount must be an integer >= 0, got '3'");
    expect(readRefusal(() => checkReadStreamOptions({ maxCount: 2 ** 53 }))).toBe('maxCount must be an integer >= 0, got 9007199254740992');
    expect(readRefusal(() => checkReadStreamOptions({ fromRevision: 1.5 }))).toBe('fromRevision must be an integer >= 0, got 1.5');
    expect(readRefusal(() => checkReadStreamOptions({ untilRevision: -1 }))).toBe('untilRevision must be an integer >= 0, got -1');
    expect(readRefusal(() => checkReadStreamOptions({ direction: 'sideways' as 'forwards' }))).toBe(
      "direction must be 'forwards' or 'backwards', got sideways",
    );
    expect(readRefusal(() => checkReadStreamOptions({ untilTime: new Date('nope') }))).toBe('untilTime must be a valid Date');
    expect(readRefusal(() => checkReadStreamOptions({ untilTime: '2026-01-01' as unknown as Date }))).toBe('untilTime must be a valid Date');
  });

  it('accepts the bounds of each feed read option and refuses the rest naming the option and the value', () => {
    checkReadAllOptions({});
    checkReadAllOptions({ maxCount: 0, fromPosition: 0n, direction: 'backwards' });
    checkReadAllOptions({ direction: 'forwards' });
    expect(readRefusal(() => checkReadAllOptions({ maxCount: -1 }))).toBe('maxCount must be an integer >= 0, got -1');
    expect(readRefusal(() => checkReadAllOptions({ fromPosition: -1n }))).toBe('fromPosition must be a bigint >= 0, got -1');
    expect(readRefusal(() => checkReadAllOptions({ fromPosition: 5 as unknown as bigint }))).toBe('fromPosition must be a bigint >= 0, got 5');
    expect(readRefusal(() => checkReadAllOptions({ direction: 'up' as 'forwards' }))).toBe("direction must be 'forwards' or 'backwards', got up");
  });
});
