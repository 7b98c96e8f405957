import type { ProjectedEvent } from '../projection.ts';

/** Business time of an event (metadata.occurredAt): read models never read the clock. */
export const occurredAt = (e: ProjectedEvent): string => e.metadata.occurredAt;

/** Milliseconds of a timestamp held as a Date (loaded row) or an ISO string (from an event). */
export const ms = (value: unknown): number => (value instanceof Date ? value.getTime() : Date.parse(String(value)));

export const earliest = (a: unknown, b: string): unknown => (a === null || a === undefined || ms(b) < ms(a) ? b : a);
export const latest = (a: unknown, b: string): unknown => (a === null || a === undefined || ms(b) > ms(a) ? b : a);

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
