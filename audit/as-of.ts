import { decodeRecordedEvent, type PersonalData } from '../eventstore/personal-data.ts';
import type { RecordedEvent } from '../shared/events.ts';
import type { AuditDeps } from './deps.ts';
import { maskPersonalFields, type PersonalDataMode } from './event-view.ts';
import { InvalidAuditQuery } from './history.ts';
import { foldRecord, RECORD_KINDS, type AnyRecord, type RecordKind } from './records.ts';

/**
 * A record as it stood at an instant, on one of two time axes.
 *
 * - `record` (the default): RECORD time, when the store accepted each event. The answer is "what did
 *   the CRM say at that moment", which is what an auditor reconstructs and what does not change when
 *   late facts arrive. A purchase recorded today with `occurredAt` last month is absent from a record
 *   as of last month; history imported today did not exist for the CRM before today.
 * - `business`: BUSINESS time (`occurredAt`): the record as what is known now says it stood then. Ten
 *   years of imported history read as they happened, and a back-dated purchase counts from the day it
 *   took place. Every event of the stream whose business time is at or before the instant is folded,
 *   in stream order, so the answer can change when a late fact about that time is recorded.
 */
export const TIME_AXES = ['record', 'business'] as const;
export type TimeAxis = (typeof TIME_AXES)[number];

export interface RecordAsOf<R extends AnyRecord = AnyRecord> {
  kind: RecordKind;
  id: string;
  stream: string;
  /** The instant asked for. */
  asOf: string;
  /** The axis `asOf` was read on. */
  time: TimeAxis;
  /** Revision of the last event folded: the stream revision this state reflects (on the business axis, later revisions may have been left out as later in business time). */
  revision: number;
  /** Record time of that event. */
  recordedAt: string;
  /** Business time of that event. */
  occurredAt: string;
  record: R;
}

/** An event's business time; the record time for an event that carries none. */
const businessTimeOf = (event: RecordedEvent): number => {
  const occurredAt = (event.metadata as { occurredAt?: unknown }).occurredAt;
  const time = typeof occurredAt === 'string' ? Date.parse(occurredAt) : Number.NaN;
  return Number.isNaN(time) ? event.recordedAt.getTime() : time;
};

/** The stream's events up to the instant on the axis asked for. */
const eventsUpTo = async (deps: AuditDeps, stream: string, instant: Date, time: TimeAxis): Promise<RecordedEvent[]> => {
  if (time === 'record') return deps.store.readStream(stream, { untilTime: instant });
  const events = await deps.store.readStream(stream);
  return events.filter((event) => businessTimeOf(event) <= instant.getTime());
};

const KIND_ALIASES: Record<string, RecordKind> = {
  customer: 'customer',
  customers: 'customer',
  deal: 'deal',
  deals: 'deal',
  campaign: 'campaign',
  campaigns: 'campaign',
  feedback: 'feedback',
  activity: 'activity',
  activities: 'activity',
};

export const parseRecordKind = (kind: string): RecordKind => {
  const found = KIND_ALIASES[kind];
  if (!found) throw new InvalidAuditQuery('kind', `kind must be one of ${RECORD_KINDS.join(', ')}`);
  return found;
};

export const parseInstant = (value: Date | string, field = 'asOf'): Date => {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime()) || (typeof value === 'string' && !/^\d{4}-\d{2}-\d{2}/.test(value))) {
    throw new InvalidAuditQuery(field, `${field} must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z`);
  }
  return date;
};

/** Reveal that masks instead: the fold then carries `[masked]` where personal data would be. */
const maskingPersonalData = (inner: PersonalData): PersonalData => ({
  ...inner,
  reveal: async (type, data) => maskPersonalFields(type, data),
});

/**
 * The record of `kind` with `id` as it stood at `asOf` (record time unless `time` says business), or
 * null when it did not exist yet. Stream names are `<kind>-<id>`.
 */
export async function stateAsOf(
  deps: AuditDeps,
  kind: string,
  id: string,
  asOf: Date | string,
  options: { personalData?: PersonalDataMode; time?: TimeAxis } = {},
): Promise<RecordAsOf | null> {
  const recordKind = parseRecordKind(kind);
  const instant = parseInstant(asOf);
  const time = options.time ?? 'record';
  const stream = `${recordKind}-${id}`;
  const recorded = await eventsUpTo(deps, stream, instant, time);
  const last = recorded[recorded.length - 1];
  if (!last) return null;
  const personalData = options.personalData === 'mask' ? maskingPersonalData(deps.personalData) : deps.personalData;
  const decoded = [];
  for (const event of recorded) decoded.push(await decodeRecordedEvent(event, personalData));
  const record = foldRecord(recordKind, decoded);
  if (!record) return null;
  return {
    kind: recordKind,
    id,
    stream,
    asOf: instant.toISOString(),
    time,
    revision: last.revision,
    recordedAt: last.recordedAt.toISOString(),
    occurredAt: new Date(businessTimeOf(last)).toISOString(),
    record,
  };
}
