import type { ProjectedEvent } from '../projection.ts';

/** Business time of an event (metadata.occurredAt): read models never read the clock. */
export const occurredAt = (e: ProjectedEvent): string => e.metadata.occurredAt;

/** A timestamp as an event carries it (ISO string) or as a loaded row holds it (Date). */
export type Instant = string | Date;

/**
 * A `bigint` column as a loaded row holds it: pg returns its text (it can exceed 2^53), PGlite a
 * number. Folds write it as text; read it through String() or BigInt().
 */
export type Bigint = string | number;

/** Milliseconds of a timestamp held as a Date (loaded row) or an ISO string (from an event). */
export const ms = (value: unknown): number => (value instanceof Date ? value.getTime() : Date.parse(String(value)));

export const earliest = (a: Instant | null, b: string): Instant => (a === null || ms(b) < ms(a) ? b : a);
export const latest = (a: Instant | null, b: string): Instant => (a === null || ms(b) > ms(a) ? b : a);

/** A timestamp as the API shows it: an event's string as given, a loaded Date as ISO. */
export const isoOf = (value: Instant): string => (value instanceof Date ? value.toISOString() : value);

/** Seconds between two timestamps, whole milliseconds kept (3 decimals). */
export const secondsBetween = (from: unknown, to: unknown): number => Math.round(ms(to) - ms(from)) / 1000;

/** Ids of the aggregates a batch is about, keyed by a field of the event data. */
export const idsOf = (events: ProjectedEvent[], field: string): string[] => {
  const ids = new Set<string>();
  for (const e of events) {
    const id = (e.event.data as Record<string, unknown>)[field];
    if (typeof id === 'string') ids.add(id);
  }
  return [...ids];
};
