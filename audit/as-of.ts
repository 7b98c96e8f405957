import { decodeRecordedEvent, type PersonalData } from '../eventstore/personal-data.ts';
import type { AuditDeps } from './deps.ts';
import { maskPersonalFields, type PersonalDataMode } from './event-view.ts';
import { InvalidAuditQuery } from './history.ts';
import { foldRecord, RECORD_KINDS, type AnyRecord, type RecordKind } from './records.ts';

/**
 * A record as the system knew it at an instant.
 *
 * `asOf` filters on RECORD time (when the store accepted each event), not business time
 * (`occurredAt`, which a caller may back-date): the answer is "what did the CRM say at that moment",
 * which is what an auditor reconstructs and what does not change when late facts arrive. A purchase
 * recorded today with `occurredAt` last month is therefore absent from a record as of last month.
 */
export interface RecordAsOf<R extends AnyRecord = AnyRecord> {
  kind: RecordKind;
  id: string;
  stream: string;
  /** The instant asked for. */
  asOf: string;
  /** Revision of the last event folded: the stream revision this state reflects. */
  revision: number;
  /** Record time of that event. */
  recordedAt: string;
  record: R;
}

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
 * The record of `kind` with `id` as it stood at `asOf` (record time), or null when it did not exist
 * yet. Stream names are `<kind>-<id>`.
 */
export async function stateAsOf(
  deps: AuditDeps,
  kind: string,
  id: string,
  asOf: Date | string,
  options: { personalData?: PersonalDataMode } = {},
): Promise<RecordAsOf | null> {
  const recordKind = parseRecordKind(kind);
  const instant = parseInstant(asOf);
  const stream = `${recordKind}-${id}`;
  const recorded = await deps.store.readStream(stream, { untilTime: instant });
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
    revision: last.revision,
    recordedAt: last.recordedAt.toISOString(),
    record,
  };
}
