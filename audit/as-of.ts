import { MAX_MERGE_CHAIN } from '../domain/customer/decider.ts';
import { sql } from 'kysely';
import { BUSINESS_TIME_SKEW_MS, isBeyondNow } from '../domain/shared.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import type { ProjectedEvent, RecordedEvent } from '../shared/events.ts';
import type { AuditDeps } from './deps.ts';
import { maskPersonalFields, type PersonalDataMode } from './event-view.ts';
import { InvalidAuditQuery } from './history.ts';
import { customerRecordInBase, foldRecord, RECORD_KINDS, type AnyRecord, type RecordKind } from './records.ts';
import { readStoredEvent } from '../eventstore/unreadable-event.ts';
import { DEFAULT_BASE_CURRENCY, ExchangeRateStreamPrefix } from '../domain/exchange-rate/events.ts';
import { ratesOf, type Conversion } from './base-figures.ts';

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

/** Whether an event counts as of the instant on the axis asked for. */
const upTo = (instant: Date, time: TimeAxis) => (event: RecordedEvent) =>
  (time === 'record' ? event.recordedAt.getTime() : businessTimeOf(event)) <= instant.getTime();

/** The stream's events up to the instant on the axis asked for. */
const eventsUpTo = async (deps: AuditDeps, stream: string, instant: Date, time: TimeAxis): Promise<RecordedEvent[]> => {
  if (time === 'record') return deps.store.readStream(stream, { untilTime: instant });
  const events = await deps.store.readStream(stream);
  return events.filter(upTo(instant, time));
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The streams of the deals and feedback opened for these customers, from the deals and feedback read
 * models (indexed by customer; a deal or feedback item keeps the customer it was opened for). One
 * they have not applied yet is not counted, as it is not in the live record either.
 */
async function linkedStreams(deps: AuditDeps, customerIds: readonly string[]): Promise<string[]> {
  const ids = customerIds.filter((id) => UUID.test(id));
  const db = deps.database.db;
  const { rows: present } = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = ${deps.schemas.read} AND table_name IN ('deals', 'feedback')`.execute(db);
  const streams: string[] = [];
  for (const [table, key, prefix] of [
    ['deals', 'deal_id', 'deal-'],
    ['feedback', 'feedback_id', 'feedback-'],
  ] as const) {
    // Read models never built (a store written by `crm import` alone): nothing to find yet.
    if (!present.some((t) => t.table_name === table)) continue;
    const { rows } = await sql<{ id: string }>`
      SELECT ${sql.id(key)}::text AS id FROM ${sql.id(deps.schemas.read, table)} WHERE customer_id = ANY(${ids}::uuid[])`.execute(db);
    streams.push(...rows.map((r) => `${prefix}${r.id}`));
  }
  return streams;
}

/**
 * A customer's record reads like the customers read model's row: besides its own stream, those of
 * the customers merged into it by then (through chains) and of their deals and feedback, each up to
 * the instant on the axis asked for, applied in position order as the projection applied them. The
 * customers' events are decoded as asked (revealed or masked); the others' personal fields are not
 * needed and stay masked.
 */
async function customerEventsAsOf(
  deps: AuditDeps,
  id: string,
  instant: Date,
  time: TimeAxis,
  personalData: PersonalData,
): Promise<{ own: RecordedEvent[]; decoded: ProjectedEvent[] }> {
  const customers = [id];
  // How many merges each is from the customer asked for: chains are followed as far as the projection
  // follows them (MAX_MERGE_CHAIN), however many duplicates a customer absorbed (a count cap of 64
  // streams left a primary of 70 duplicates short of 7 of them).
  const mergesAway = new Map([[id, 0]]);
  const recorded: RecordedEvent[] = [];
  let own: RecordedEvent[] = [];
  for (let i = 0; i < customers.length; i++) {
    const customer = customers[i]!;
    const events = await eventsUpTo(deps, `customer-${customer}`, instant, time);
    if (i === 0) own = events;
    if (events.length === 0) continue;
    recorded.push(...events);
    const away = mergesAway.get(customer)!;
    if (away >= MAX_MERGE_CHAIN) continue;
    for (const event of events) {
      const duplicate = (event.data as { duplicateId?: unknown }).duplicateId;
      if (event.type === 'CustomerMerged' && typeof duplicate === 'string' && !mergesAway.has(duplicate)) {
        mergesAway.set(duplicate, away + 1);
        customers.push(duplicate);
      }
    }
  }
  if (own.length === 0) return { own, decoded: [] };
  const linked = [...(await deps.store.readStreams(await linkedStreams(deps, customers))).values()].flat().filter(upTo(instant, time));
  const masked = maskingPersonalData(deps.personalData);
  const decoded: ProjectedEvent[] = [];
  for (const event of recorded) decoded.push(await readStoredEvent(event, personalData));
  for (const event of linked) decoded.push(await readStoredEvent(event, masked));
  decoded.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
  return { own, decoded };
}

/**
 * The rates a record as of an instant converts its amounts with: on the record axis those recorded by
 * the instant, so the base figures are what the CRM would have shown then (as `crm replay --as-of`
 * builds them: a rate set or corrected later changes nothing); on the business axis every rate known
 * now, as that axis reads what is known now about then. Either way each amount converts at the rate
 * valid at its own business time. Only the streams of the currencies the record's events name are read.
 */
async function conversionFor(deps: AuditDeps, decoded: readonly ProjectedEvent[], instant: Date, time: TimeAxis): Promise<Conversion> {
  const baseCurrency = deps.baseCurrency ?? DEFAULT_BASE_CURRENCY;
  const currencies = new Set<string>();
  for (const { event } of decoded) {
    const currency = (event.data as { currency?: unknown }).currency;
    if (typeof currency === 'string' && currency !== baseCurrency) currencies.add(currency);
  }
  const masked = maskingPersonalData(deps.personalData);
  const facts: ProjectedEvent[] = [];
  for (const currency of [...currencies].sort()) {
    const stream = `${ExchangeRateStreamPrefix}${currency}`;
    const recorded = time === 'record' ? await eventsUpTo(deps, stream, instant, time) : await deps.store.readStream(stream);
    for (const event of recorded) facts.push(await readStoredEvent(event, masked));
  }
  return { baseCurrency, rates: ratesOf(facts, baseCurrency) };
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
  // What will be recorded after now is not known: an answer for a later instant could change later.
  if (isBeyondNow(instant.getTime(), Date.now())) {
    throw new InvalidAuditQuery(
      'asOf',
      `asOf must not be more than ${BUSINESS_TIME_SKEW_MS / 60_000} minutes past now: the state at a later instant is not known yet (omit asOf for the current state)`,
    );
  }
  const time = options.time ?? 'record';
  const stream = `${recordKind}-${id}`;
  const personalData = options.personalData === 'mask' ? maskingPersonalData(deps.personalData) : deps.personalData;
  let record: AnyRecord | null;
  let last: RecordedEvent | undefined;
  if (recordKind === 'customer') {
    const { own, decoded } = await customerEventsAsOf(deps, id, instant, time, personalData);
    last = own[own.length - 1];
    if (!last) return null;
    record = customerRecordInBase(decoded, id, await conversionFor(deps, decoded, instant, time));
  } else {
    const recorded = await eventsUpTo(deps, stream, instant, time);
    last = recorded[recorded.length - 1];
    if (!last) return null;
    const decoded = [];
    for (const event of recorded) decoded.push(await readStoredEvent(event, personalData));
    record = foldRecord(recordKind, decoded, await conversionFor(deps, decoded, instant, time));
  }
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
