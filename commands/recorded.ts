import { fieldsDiffering } from './fingerprint.ts';
import type { AggregateKind } from './schemas.ts';

/**
 * A row of an import that names a record the store holds under another idempotency key: one made
 * through the API (or by another file), exported and imported back into the same store. The batch
 * handler (commands/batch.ts) decides the row's commands on a record of their own, from the kind's
 * initial state with its own decider and fold, and compares that record with the stored one: the row
 * is present when they agree, and refused naming the fields where they do not. The record's creation
 * was refused as `Deal ... already exists` before, so a re-imported backup read as thousands of errors.
 */

/**
 * Fields of a state that a row's commands do not set as the record's history did, so not compared:
 * bookkeeping of the decider (`exists`, the time of the latest status change or edit, the stage a
 * closed deal left), what other files hold (orders, refunds, costs, responses), what a row that holds
 * them is refused for (merged, forgotten), and what another field says already (a deal's probability
 * is its stage's or its override, a feedback item's `responded` its first response's time).
 */
const NOT_SAID_BY_A_ROW: Partial<Record<AggregateKind, ReadonlySet<string>>> = {
  customer: new Set(['exists', 'statusChangedAt', 'orders', 'refunds', 'mergedInto', 'mergedDuplicates', 'forgotten']),
  deal: new Set(['exists', 'lastOpenStage', 'lastChangedAt', 'probability']),
  feedback: new Set(['exists', 'responded']),
  campaign: new Set(['exists', 'statusChangedAt', 'costs', 'responses']),
  activity: new Set(['exists']),
};

/** The command field (hence the file's column: rows.ts columnOf) of a state field named otherwise. */
const FIELD_OF: Readonly<Record<string, string>> = {
  rating: 'csat',
  loggedAt: 'occurredAt',
  completed: 'completedAt',
  launched: 'launchedAt',
  marketingConsentOnly: 'targetSegment',
};

/** Whether a command creates its record on a stream whose state says the record exists. */
export const createsExisting = (creates: boolean, state: unknown): boolean => creates && (state as { exists?: unknown }).exists === true;

/**
 * The fields where the record a row's commands make (`said`, folded from the initial state) differs
 * from the stored one, as command fields; none when the row says what the store holds. Compared by
 * meaning, as fingerprints are (commands/fingerprint.ts): times as instants, tags as a set, an
 * address in any case, absent and null alike.
 */
export const differencesFromRecord = (kind: AggregateKind, said: unknown, stored: unknown): string[] => {
  const silent = NOT_SAID_BY_A_ROW[kind] ?? new Set<string>();
  const compared = Object.fromEntries(Object.entries(said as Record<string, unknown>).filter(([field]) => !silent.has(field)));
  return fieldsDiffering(compared, stored as Record<string, unknown>).map((field) => FIELD_OF[field] ?? field);
};

/** A row naming a stored record that says something else of it; `differsIn`: command fields. */
export class RecordedOtherwise extends Error {
  constructor(
    readonly kind: AggregateKind,
    readonly id: string,
    readonly differsIn: readonly string[],
  ) {
    super(`${kind} ${id} is stored with other values in ${differsIn.join(', ')}`);
  }
}

/**
 * Whether a campaign records this kind of response for the customer already (one sent through the
 * API, under another key): the same response, as far as the campaign's state tells.
 */
export const respondedAlready = (campaign: unknown, command: Record<string, unknown>): boolean => {
  const responses = (campaign as { responses?: Record<string, readonly string[] | undefined> }).responses;
  return responses?.[command.customerId as string]?.includes(command.kind as string) === true;
};
