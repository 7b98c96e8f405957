import { ruleViolated } from './errors.ts';
import { BUSINESS_TIME_SKEW_MS } from './shared.ts';

/** Date arithmetic on ISO-8601 instants (business time travels as strings), and the rule that steps run forward. */

const HOUR_MS = 3_600_000;

export const addHours = (iso: string, hours: number): string => new Date(Date.parse(iso) + hours * HOUR_MS).toISOString();

/** The earlier of two instants, as given. */
export const earlierOf = (a: string, b: string): string => (Date.parse(a) <= Date.parse(b) ? a : b);

/** The later of two instants, as given; `a` may be null (nothing yet). */
export const laterOf = (a: string | null, b: string): string => (a !== null && Date.parse(a) >= Date.parse(b) ? a : b);

export const isBefore = (a: string, b: string): boolean => Date.parse(a) < Date.parse(b);

/** Whether two times name one instant, however written (`+02:00` or `Z`, with or without milliseconds). */
export const isSameInstant = (a: string, b: string): boolean => Date.parse(a) === Date.parse(b);

/** The instant in UTC (`...Z`), as every recorded time is written: text kept as it is when it is no instant. */
export const inUtc = (iso: string): string => {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : new Date(ms).toISOString();
};

/**
 * Whether `later` is dated before `earlier` by more than clocks drift apart (`BUSINESS_TIME_SKEW_MS`):
 * a step recorded without a time of its own (our clock) and the next one with the client's may be
 * a moment out of order, as two clocks are, and that is no contradiction to refuse.
 */
export const isWellBefore = (later: string, earlier: string): boolean => Date.parse(later) < Date.parse(earlier) - BUSINESS_TIME_SKEW_MS;

/**
 * Refuses a command dated well before a step its stream records (a deal's opening, a feedback item's
 * submission): the read models would show durations far below zero, and an import refuses such a row
 * too (commands/import/rows.ts, the same rule). A step whose time the fold did not have (null)
 * refuses nothing.
 */
export const assertNotBefore = (occurredAt: string, step: string | null, code: string, what: string): void => {
  if (step !== null && isWellBefore(occurredAt, step))
    throw ruleViolated(code, `occurredAt ${occurredAt} is before ${what} (${step}), by more than clocks drift apart`, 'occurredAt', { notBefore: step });
};
