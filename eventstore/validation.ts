import { inspect } from 'node:util';
import {
  MAX_APPEND_BYTES,
  MAX_EVENT_BYTES,
  MAX_STREAMS_PER_APPEND,
  NO_STREAM_REVISION,
  STREAM_NAME_PATTERN,
  type ExpectedRevision,
  type NewEvent,
  type ReadAllOptions,
  type ReadStreamOptions,
  type StreamAppend,
  type StreamRead,
} from './contract.ts';
import { InvalidAppend, InvalidReadOptions } from './errors.ts';

/** An event checked and serialized once, ready for any engine. */
export interface PreparedEvent {
  id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  /** JSON texts, measured against the size limits and sent as is. */
  dataJson: string;
  metadataJson: string;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_TYPE_LENGTH = 200;

export const assertStreamName = (stream: unknown): string => {
  if (typeof stream !== 'string' || !STREAM_NAME_PATTERN.test(stream)) {
    throw new InvalidAppend('invalid_stream_name', `Invalid stream name ${JSON.stringify(stream)}: expected <aggregate>-<id> (e.g. customer-<uuid>)`);
  }
  return stream;
};

/** `'no_stream'` is also accepted as -1 (NO_STREAM_REVISION). */
export const normalizeExpectedRevision = (expected: unknown): ExpectedRevision => {
  if (expected === undefined) return 'any';
  if (expected === 'any' || expected === 'no_stream' || expected === 'exists') return expected;
  if (expected === NO_STREAM_REVISION) return 'no_stream';
  if (typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= 0) return expected;
  throw new InvalidAppend(
    'invalid_expected_revision',
    `Invalid expected revision ${JSON.stringify(expected)}: expected a revision >= 0, 'no_stream', 'exists' or 'any'`,
  );
};

/** The streams an append depends on (AppendOptions.dependsOn), checked: named once each, none of the streams appended to. */
export const checkDependsOn = (written: string | readonly string[], dependsOn: unknown): StreamRead[] => {
  if (dependsOn === undefined) return [];
  if (!Array.isArray(dependsOn)) throw new InvalidAppend('invalid_depends_on', 'dependsOn must be an array of { stream, revision }');
  const seen = new Set<string>(typeof written === 'string' ? [written] : written);
  return dependsOn.map((read: unknown) => {
    const { stream: other, revision } = (read ?? {}) as { stream?: unknown; revision?: unknown };
    const name = assertStreamName(other);
    if (seen.has(name)) throw new InvalidAppend('invalid_depends_on', `dependsOn names ${name} twice, or the stream appended to`);
    seen.add(name);
    const expected = normalizeExpectedRevision(revision);
    if (expected !== 'no_stream' && typeof expected !== 'number')
      throw new InvalidAppend('invalid_depends_on', `dependsOn ${name}: a revision >= 0 or 'no_stream', not ${JSON.stringify(revision)}`);
    return { stream: name, revision: expected };
  });
};

const toJson = (value: unknown, what: string, index: number): string => {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new InvalidAppend('invalid_event', `events[${index}].${what} is not serializable as JSON: ${(error as Error).message}`);
  }
  if (json === undefined) throw new InvalidAppend('invalid_event', `events[${index}].${what} is missing`);
  // PostgreSQL's jsonb cannot hold NUL characters; refuse them for every engine alike.
  if (json.includes('\\u0000')) throw new InvalidAppend('invalid_event', `events[${index}].${what} contains a NUL character`);
  return json;
};

/**
 * An event's size as EventStoreDB measures it against its append limit: data and metadata bytes
 * plus twice the type's length. Every engine measures the same way, so they accept the same appends.
 */
export const storedEventSize = (type: string, dataJson: string, metadataJson: string): number =>
  Buffer.byteLength(dataJson) + Buffer.byteLength(metadataJson) + 2 * type.length;

/** Checks an append's input before any storage call; throws `InvalidAppend` naming the offending field. */
export const prepareAppend = (stream: unknown, events: unknown): PreparedEvent[] => {
  assertStreamName(stream);
  if (!Array.isArray(events) || events.length === 0) {
    throw new InvalidAppend('empty_event_list', 'An append needs at least one event');
  }
  const seen = new Set<string>();
  let total = 0;
  const prepared = events.map((candidate: unknown, index): PreparedEvent => {
    if (candidate === null || typeof candidate !== 'object') {
      throw new InvalidAppend('invalid_event', `events[${index}] is not an object`);
    }
    const event = candidate as Partial<NewEvent>;
    if (typeof event.id !== 'string' || !UUID_PATTERN.test(event.id)) {
      throw new InvalidAppend('invalid_event', `events[${index}].id must be a UUID, got ${JSON.stringify(event.id)}`);
    }
    const id = event.id.toLowerCase();
    if (seen.has(id)) throw new InvalidAppend('invalid_event', `events[${index}].id ${id} appears twice in one append`);
    seen.add(id);
    if (typeof event.type !== 'string' || event.type.length === 0 || event.type.length > MAX_TYPE_LENGTH) {
      throw new InvalidAppend('invalid_event', `events[${index}].type must be a non-empty string of at most ${MAX_TYPE_LENGTH} characters`);
    }
    const metadata = event.metadata ?? {};
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new InvalidAppend('invalid_event', `events[${index}].metadata must be an object`);
    }
    const dataJson = toJson(event.data, 'data', index);
    const metadataJson = toJson(metadata, 'metadata', index);
    // A UTF-8 character takes at most 3 bytes per UTF-16 unit: the exact size is counted only when
    // that bound passes the limit (counting every event's bytes cost more than its JSON's checks).
    const bound = 3 * (dataJson.length + metadataJson.length) + 2 * event.type.length;
    const size = bound > MAX_EVENT_BYTES ? storedEventSize(event.type, dataJson, metadataJson) : bound;
    if (size > MAX_EVENT_BYTES) {
      throw new InvalidAppend('payload_too_large', `events[${index}] is ${size} bytes; the limit is ${MAX_EVENT_BYTES} bytes per event`);
    }
    total += size;
    return { id, type: event.type, data: event.data, metadata: metadata, dataJson, metadataJson };
  });
  // `total` adds bounds where the exact sizes were not counted: count them before refusing.
  if (total > MAX_APPEND_BYTES) total = prepared.reduce((sum, e) => sum + storedEventSize(e.type, e.dataJson, e.metadataJson), 0);
  if (total > MAX_APPEND_BYTES) {
    throw new InvalidAppend('payload_too_large', `The append is ${total} bytes; the limit is ${MAX_APPEND_BYTES} bytes per append`);
  }
  return prepared;
};

const assertCount = (value: unknown, name: string, min: number): void => {
  if (value !== undefined && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)) {
    throw new InvalidReadOptions(`${name} must be an integer >= ${min}, got ${inspect(value)}`);
  }
};

export const checkReadStreamOptions = (options: ReadStreamOptions): void => {
  assertCount(options.maxCount, 'maxCount', 0);
  assertCount(options.fromRevision, 'fromRevision', 0);
  assertCount(options.untilRevision, 'untilRevision', 0);
  if (options.direction !== undefined && options.direction !== 'forwards' && options.direction !== 'backwards') {
    throw new InvalidReadOptions(`direction must be 'forwards' or 'backwards', got ${String(options.direction)}`);
  }
  if (options.untilTime !== undefined && !(options.untilTime instanceof Date && !Number.isNaN(options.untilTime.getTime()))) {
    throw new InvalidReadOptions('untilTime must be a valid Date');
  }
};

export const checkReadAllOptions = (options: ReadAllOptions): void => {
  assertCount(options.maxCount, 'maxCount', 0);
  if (options.fromPosition !== undefined && (typeof options.fromPosition !== 'bigint' || options.fromPosition < 0n)) {
    throw new InvalidReadOptions(`fromPosition must be a bigint >= 0, got ${String(options.fromPosition)}`);
  }
  if (options.direction !== undefined && options.direction !== 'forwards' && options.direction !== 'backwards') {
    throw new InvalidReadOptions(`direction must be 'forwards' or 'backwards', got ${String(options.direction)}`);
  }
};

/** A multi-stream append checked as a whole: each part as a single append, each stream once, ids unique across the batch. */
export const prepareStreamAppends = (appends: unknown): { stream: string; expected: ExpectedRevision; events: PreparedEvent[] }[] => {
  if (!Array.isArray(appends) || appends.length === 0) throw new InvalidAppend('empty_event_list', 'A multi-stream append needs at least one stream');
  if (appends.length > MAX_STREAMS_PER_APPEND) {
    throw new InvalidAppend('payload_too_large', `A multi-stream append takes at most ${MAX_STREAMS_PER_APPEND} streams, got ${appends.length}`);
  }
  const streams = new Set<string>();
  const ids = new Set<string>();
  return appends.map((candidate: unknown, index) => {
    const part = (candidate ?? {}) as Partial<StreamAppend>;
    const events = prepareAppend(part.stream, part.events);
    const stream = part.stream as string;
    if (streams.has(stream)) throw new InvalidAppend('invalid_event', `appends[${index}]: stream ${stream} appears twice in one append`);
    streams.add(stream);
    for (const event of events) {
      if (ids.has(event.id)) throw new InvalidAppend('invalid_event', `appends[${index}]: event id ${event.id} appears twice in one append`);
      ids.add(event.id);
    }
    return { stream, expected: normalizeExpectedRevision(part.expectedRevision), events };
  });
};
