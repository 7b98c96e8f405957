import { expect } from 'vitest';
import { eventSchemas, type CrmEventType } from '../../domain/catalogue.ts';
import type { Decider } from '../../domain/decider.ts';
import { DomainError } from '../../domain/errors.ts';

/**
 * Given-events / when-command / then-events-or-error, for any decider.
 * Every decided event is also checked against the catalogue's schema, as the store would read it.
 */
/** A given event with its business time, for deciders that keep when a step happened. */
export interface Timed<E> {
  event: E;
  at: string;
}
export const timed = <E>(event: E, at: string): Timed<E> => ({ event, at });

/** The decider's fold of events (each with its business time where given), from `state`. */
export const fold = <C, E extends { type: string; data: unknown }, S>(
  decider: Decider<C, E, S>,
  events: readonly (E | Timed<E>)[],
  state: S = decider.initialState(),
): S => events.reduce((s, e) => ('event' in e ? decider.evolve(s, e.event, e.at) : decider.evolve(s, e)), state);

export const deciderSpec = <C, E extends { type: string; data: unknown }, S>(decider: Decider<C, E, S>) => ({
  given: (events: (E | Timed<E>)[]) => {
    const state = fold(decider, events);
    return {
      state,
      when: (command: C) => ({
        then: (expected: E[]) => {
          const decided = decider.decide(command, state);
          expect(decided).toEqual(expected);
          for (const event of decided) eventSchemas[event.type as CrmEventType].parse(event.data);
          return fold(decider, decided, state);
        },
        thenNothing: () => expect(decider.decide(command, state)).toEqual([]),
        /**
         * Refused with `code`, naming `field` and carrying exactly `details` when given. Every refusal
         * explains itself in words too: its message becomes the problem's `detail` for the client.
         */
        thenRefused: (code: string, field?: string, details?: Record<string, unknown>): DomainError => {
          let error: unknown;
          try {
            decider.decide(command, state);
          } catch (e) {
            error = e;
          }
          expect(error, `expected refusal ${code}`).toBeInstanceOf(DomainError);
          expect((error as DomainError).code).toBe(code);
          if (field !== undefined) expect((error as DomainError).field).toBe(field);
          if (details !== undefined) expect((error as DomainError).details).toEqual(details);
          expect((error as DomainError).message, `refusal ${code} has no message`).not.toBe('');
          return error as DomainError;
        },
      }),
    };
  },
});
