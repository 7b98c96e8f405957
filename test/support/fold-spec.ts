import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { CrmEvent } from '../../domain/catalogue.ts';
import type { ProjectedEvent } from '../../shared/events.ts';

/** A read model's fold (projections/read-models/*-fold.ts): the row after one event, undefined before the first. */
export type Fold<R> = (row: R | undefined, e: ProjectedEvent) => R | undefined;

/**
 * Given-events / when-event / then-row, for a read model's fold, as decider-spec.ts is for deciders.
 * Every `when` also checks that the fold is pure: the row it was given is left as it was.
 */
export const foldSpec = <R>(fold: Fold<R>) => ({
  given: (events: readonly ProjectedEvent[]) => {
    const row = events.reduce<R | undefined>(fold, undefined);
    return {
      row,
      when: (event: ProjectedEvent) => {
        const before = structuredClone(row);
        const after = fold(row, event);
        expect(row, 'the fold changed the row it was given').toEqual(before);
        return {
          after,
          then: (expected: Partial<R>): R => {
            expect(after).toMatchObject(expected);
            return after!;
          },
          thenUnchanged: () => expect(after, 'expected the same row back').toBe(row),
          thenNothing: () => expect(after).toBeUndefined(),
        };
      },
    };
  },
});

/**
 * Events of one stream as a projection receives them: revisions and positions in order, business
 * time (`occurredAt`) as given, so a test can back-date one.
 */
export const streamOf = (stream: string) => {
  let revision = -1;
  return (event: CrmEvent, occurredAt: string): ProjectedEvent => {
    revision += 1;
    return {
      event,
      id: randomUUID(),
      stream,
      revision,
      position: BigInt(revision + 1),
      recordedAt: new Date(occurredAt),
      metadata: { actor: { userId: 'ann@sales', roles: ['sales'] }, correlationId: 'c', causationId: null, occurredAt, schemaVersion: 1, command: 'Test' },
    };
  };
};
