import { registeredData, type RegistrationFields } from '../domain/customer/decider.ts';
import { normaliseEmail } from '../domain/shared.ts';
import { inUtc } from '../domain/time.ts';

/**
 * The idempotency fingerprint of what an imported command means, not of how its file spelled it. An
 * import hashed the validated payload as written, so the CRM's own export imported back into the
 * same store was refused as "imported before with different values" where nothing had changed: a
 * `registered_at` written `+02:00` came back from the export as the same instant in `Z`, and a
 * `sent` response the file gave `EUR` came back with no currency (only a conversion records one). The meaning compared:
 *
 * - times (fields named `...At`, at any depth) as instants: `1997-01-02T03:00:00+02:00`,
 *   `1997-01-02T01:00:00Z` and `1997-01-02T01:00:00.000Z` are one time;
 * - a field absent, `null` or an empty object alike (an import creates: no phone is no phone, no
 *   target segment is the segment `{}`), and a default the decider fills in as absent (a feedback
 *   item's priority `normal`, which the export writes where the file gave none);
 * - tags as a set (order and repeats say nothing);
 * - an address (`email`) in lower case, as the customer stores it and the email index compares it
 *   (since 2026-12-07: `Ana@Example.com` in one file and `ana@example.com` in the next were two rows);
 * - a campaign response's currency only on a conversion (the only kind that records one);
 * - a step whose time no export writes (a customer's deactivation, a campaign's pause) without its
 *   time: the same step, whenever the file says it happened (as a deal's steps, whose times are
 *   never part of the command).
 *
 * Numbers are numbers already (the schema parsed them), so `12.50` and `12.5` are one amount; any
 * other difference is a change and still refused.
 */

const INSTANT_FIELD = /(^|[a-z])At$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T/;

const instantOf = (value: string): string => (ISO_TIME.test(value) ? inUtc(value) : value);

const meaningOfValue = (key: string, value: unknown): unknown => {
  if (typeof value === 'string') return INSTANT_FIELD.test(key) ? instantOf(value) : key === 'email' ? normaliseEmail(value) : value;
  if (Array.isArray(value)) {
    const items = value.map((item) => meaningOfValue('', item));
    return key === 'tags' ? [...new Set(items.map((item) => JSON.stringify(item)))].sort().map((item) => JSON.parse(item) as unknown) : items;
  }
  if (value !== null && typeof value === 'object') return meaningOfObject(value as Record<string, unknown>);
  return value;
};

const meaningOfObject = (record: Record<string, unknown>): Record<string, unknown> => {
  const meaning: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (value === undefined || value === null) continue;
    const valueMeaning = meaningOfValue(key, value);
    if (valueMeaning !== null && typeof valueMeaning === 'object' && !Array.isArray(valueMeaning) && Object.keys(valueMeaning).length === 0) continue;
    meaning[key] = valueMeaning;
  }
  return meaning;
};

/**
 * The meaning imports fingerprinted before addresses were compared in any case (2026-12-07): the
 * address as spelt. Undefined where that is the meaning already (an address in lower case, or none).
 */
export const meaningAsSpelt = (command: Record<string, unknown>): Record<string, unknown> | undefined => {
  const meaning = meaningOf(command);
  return typeof command.email === 'string' && command.email !== meaning.email ? { ...meaning, email: command.email } : undefined;
};

/**
 * What a customer's registration records, as a RegisterCustomer command: the decider's shaping of it
 * (its defaults filled in), the owner and the business time. `c`: a validated command, or a stored
 * registration's data with its owner and time.
 */
const registrationOf = (c: Record<string, unknown>): Record<string, unknown> =>
  meaningOf({ type: 'RegisterCustomer', ...registeredData(c as unknown as RegistrationFields), ownerId: c.ownerId, occurredAt: c.occurredAt });

/**
 * Whether a RegisterCustomer command (validated) means what a stored registration records: its
 * CustomerRegistered event's data, the owner the registration assigned, its business time. For a row
 * whose stored fingerprint cannot be taken again: until 2026-12-07 it held the address as its file
 * spelt it, which the event (in lower case) does not keep, so `ANA@example.com` is compared so with a
 * row stored as `Ana@Example.com`.
 */
export const registersAsStored = (
  command: Record<string, unknown>,
  stored: { data: Record<string, unknown>; ownerId: string | undefined; occurredAt: string },
): boolean =>
  JSON.stringify(registrationOf(command)) === JSON.stringify(registrationOf({ ...stored.data, ownerId: stored.ownerId, occurredAt: stored.occurredAt }));

/** Steps an export gives no time for: imported back, they come without one. */
const UNTIMED_IN_EXPORTS: ReadonlySet<unknown> = new Set(['DeactivateCustomer', 'PauseCampaign']);

/** The command (`{ type, ...validated payload }`) as it is compared between imports. */
export const meaningOf = (command: Record<string, unknown>): Record<string, unknown> => {
  const meaning = meaningOfObject(command);
  if (meaning.type === 'RecordCampaignResponse' && meaning.kind !== 'converted') delete meaning.currency;
  if (UNTIMED_IN_EXPORTS.has(meaning.type)) delete meaning.occurredAt;
  if (meaning.type === 'SubmitFeedback' && meaning.priority === 'normal') delete meaning.priority;
  return meaning;
};

/**
 * The fields of a command whose meaning differs from the record the store holds for it (the
 * aggregate's state, or the order a purchase recorded): what an import's "imported before with
 * different values" names. Only fields the record holds under the same name are compared, so a
 * difference it cannot see (a time the state does not keep) names nothing.
 */
export const fieldsDiffering = (command: Record<string, unknown>, stored: Record<string, unknown>): string[] => {
  // Absent, null and an empty object alike, as in meaningOfObject.
  const meaning = (key: string, value: unknown): string => JSON.stringify(meaningOfObject({ [key]: value })[key] ?? null);
  return Object.keys(command).filter((key) => key !== 'type' && Object.hasOwn(stored, key) && meaning(key, command[key]) !== meaning(key, stored[key]));
};
