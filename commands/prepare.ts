import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { CrmEventType } from '../domain/catalogue.ts';
import { invalidState } from '../domain/errors.ts';
import type { SlaPolicy } from '../domain/feedback/sla.ts';
import { EventMetadata } from '../domain/metadata.ts';
import { BUSINESS_TIME_SKEW_MS, inNfc, isBeyondNow, namesUser } from '../domain/shared.ts';
import { CustomerDataKeyMissing, PersonalDataForgotten, type PersonalData } from '../eventstore/personal-data.ts';
import { aggregateRegistry, streamOf } from './aggregates.ts';
import { meaningAsSpelt, meaningOf } from './fingerprint.ts';
import { commandHash, createdIdFor, keyedCommandHash, uuidV5 } from './ids.ts';
import { commandSchemas, commandTargets, isCommandType, type AggregateKind, type CommandType } from './schemas.ts';
import type { CommandContext } from './context.ts';

/**
 * The steps every command takes before its stream is read, shared by the one-at-a-time handler
 * (commands/index.ts) and the batch handler (commands/batch.ts), so both validate and stamp alike.
 */

export type DomainEventList = { type: string; data: unknown }[];
export type StoredMetadata = Omit<EventMetadata, 'schemaVersion'>;

export interface PreparedCommand {
  type: CommandType;
  kind: AggregateKind;
  /** Id of the aggregate addressed. */
  id: string;
  stream: string;
  metadata: StoredMetadata;
  /** The validated payload plus the type, the business time and the aggregate id: what `decide` takes. */
  command: Record<string, unknown>;
  /** Ids the handler fills so that `decide` stays pure; stable across retries of the same key. */
  derived: (what: string) => string;
  /**
   * Other fingerprints that name this same command: its unkeyed one (events stored before fingerprints
   * were keyed), and an import's by meaning (those earlier imports stored for the row, ctx.fingerprint);
   * worked out only when the stored one differs.
   */
  earlierHashes?: () => string[];
  /**
   * The fingerprints of this command without its business time, for a payload that gives one: an
   * import of a file without the time column recorded the row at the import's own time, which an
   * export of it then writes. The same row only where the stored event's time is this one.
   */
  untimedHashes?: () => string[];
}

/** What telling a retry of a command from another command under the same key needs. */
export type Fingerprinted = Pick<PreparedCommand, 'metadata' | 'earlierHashes'>;

/** Whether the fingerprint stored under the command's key is this command's, in its current or an earlier form. */
export const sameCommand = (stored: string | undefined, sent: Fingerprinted): boolean =>
  stored === sent.metadata.commandHash || (stored !== undefined && (sent.earlierHashes?.().includes(stored) ?? false));

/**
 * The fingerprints of commands under the installation's key (`keyedCommandHash`): `stored` is the one
 * new events carry, `every` adds the unkeyed form events stored before carry. Without a key (tests of
 * other concerns), unkeyed.
 */
const fingerprintsUnder = (key: Uint8Array | undefined) => ({
  stored: (command: unknown): string => (key ? keyedCommandHash(key, command) : commandHash(command)),
  every: (command: unknown): string[] => (key ? [keyedCommandHash(key, command), commandHash(command)] : [commandHash(command)]),
});
type Fingerprints = ReturnType<typeof fingerprintsUnder>;

// Built once: zod compiles a schema on first use, and `omit` makes a new one each call.
const StoredMetadataSchema = EventMetadata.omit({ schemaVersion: true });

const invalid = (path: string, message: string, input: unknown) => new z.ZodError([{ code: 'custom', path: [path], message, input }]);

/** The reason an auditor reads in the metadata: the command's own (a refund's, a lost deal's) first, else the caller's. */
const reasonOf = (payload: Record<string, unknown>, ctx: CommandContext): string | undefined =>
  typeof payload.reason === 'string' && payload.reason.trim() !== '' ? payload.reason : ctx.reason;

/** Fields naming a person by text (domain/shared.ts `PersonRef`): a UUID-shaped one is read in lower case. */
const PERSON_REF_FIELDS = ['ownerId', 'assigneeId', 'responderId'] as const;

/**
 * The fingerprints of the payload with its person ids and texts as the caller spelt them, when reading
 * them in lower case (person ids) or in NFC (names, titles, subjects: domain/shared.ts `DisplayText`)
 * changed them (none otherwise): an import fingerprinted a row before they were, with the spelling of
 * its file, and the same file imported again is the same row.
 */
const hashesAsSpelt = (type: CommandType, payload: Record<string, unknown>, fields: Record<string, unknown>, fingerprints: Fingerprints): string[] => {
  let spelt: Record<string, unknown> | undefined;
  for (const [field, read] of Object.entries(payload)) {
    const sent = fields[field];
    if (typeof sent !== 'string' || typeof read !== 'string' || sent.trim() === read) continue;
    const personRef = (PERSON_REF_FIELDS as readonly string[]).includes(field);
    if (personRef || inNfc(sent.trim()) === read) (spelt ??= { ...payload })[field] = sent.trim();
  }
  return spelt ? [...fingerprints.every(meaningOf({ type, ...spelt })), ...fingerprints.every({ type, ...spelt })] : [];
};

/** Times of a payload that tell when something happened, so not later than now (beyond the clock skew). */
const HAPPENED_FIELDS = ['occurredAt', 'stageEnteredAt'] as const;

/**
 * Validates the payload (throws ZodError naming the field) and builds the metadata and ids; the
 * fingerprint of a keyed command is taken under `fingerprintKey` (EmailIndex.fingerprintKey).
 */
export const prepareCommand = (
  input: { type: string; [field: string]: unknown },
  ctx: CommandContext,
  now: Date,
  fingerprintKey?: Uint8Array,
): PreparedCommand => {
  const { type, ...fields } = input;
  if (!isCommandType(type)) throw invalid('type', `Unknown command type ${JSON.stringify(type)}`, type);
  const payload = commandSchemas[type].parse(fields) as Record<string, unknown>;
  const target = commandTargets[type];
  const key = ctx.idempotencyKey;
  // A command may carry its own business time (imports of past history); else the context's.
  for (const field of HAPPENED_FIELDS) {
    const at = payload[field];
    if (typeof at === 'string' && isBeyondNow(Date.parse(at), now.getTime()))
      throw invalid(field, `must not be more than ${BUSINESS_TIME_SKEW_MS / 60_000} minutes in the future`, at);
  }
  const occurredAt = (payload.occurredAt as string | undefined) ?? ctx.occurredAt ?? now.toISOString();
  const fingerprints = fingerprintsUnder(fingerprintKey);
  const metadata = StoredMetadataSchema.parse({
    actor: ctx.actor,
    correlationId: ctx.correlationId,
    causationId: ctx.causationId ?? null,
    occurredAt,
    command: type,
    ...(key !== undefined
      ? { idempotencyKey: key, commandHash: fingerprints.stored(ctx.fingerprint ? meaningOf({ type, ...payload }) : { type, ...payload }) }
      : {}),
    ...(reasonOf(payload, ctx) !== undefined ? { reason: reasonOf(payload, ctx) } : {}),
  });
  const id = (payload[target.idField] as string | undefined) ?? (key ? createdIdFor(type, key) : randomUUID());
  const stream = streamOf(target.kind, id);
  const derived = (what: string) => (key ? uuidV5(`${what}\n${stream}\n${key}`) : randomUUID());
  const command: Record<string, unknown> = { ...payload, type, occurredAt, [target.idField]: id };
  if (type === 'RecordPurchase' && payload.occurredAt !== undefined) command.statedAt = payload.occurredAt;
  const formerly = ctx.fingerprint?.formerly ?? [];
  const storedBefore = ctx.fingerprint?.stored ?? [];
  const formerCommands = (): Record<string, unknown>[] =>
    formerly.flatMap(({ type: formerType, ...formerFields }) => {
      if (!isCommandType(formerType)) return [];
      const former = commandSchemas[formerType].safeParse(formerFields);
      return former.success ? [{ type: formerType, ...(former.data as Record<string, unknown>) }] : [];
    });
  // Stored as its text (importers before fingerprints by meaning) or by its meaning (since; with the
  // address as spelt until addresses were compared in any case).
  const bothHashes = (command: Record<string, unknown>) => {
    const spelt = meaningAsSpelt(command);
    return [...fingerprints.every(command), ...fingerprints.every(meaningOf(command)), ...(spelt ? fingerprints.every(spelt) : [])];
  };
  const earlierHashes =
    key === undefined
      ? undefined
      : ctx.fingerprint
        ? () => [
            ...bothHashes({ type, ...payload }),
            ...hashesAsSpelt(type, payload, fields, fingerprints),
            ...formerCommands().flatMap(bothHashes),
            ...storedBefore,
          ]
        : fingerprintKey
          ? () => [commandHash({ type, ...payload })]
          : undefined;
  const untimedHashes =
    key !== undefined && ctx.fingerprint && typeof payload.occurredAt === 'string'
      ? () => [{ type, ...payload }, ...formerCommands()].flatMap(({ occurredAt: _time, ...untimed }) => bothHashes(untimed))
      : undefined;
  return {
    type,
    kind: target.kind,
    id,
    stream,
    metadata,
    command,
    derived,
    ...(earlierHashes ? { earlierHashes } : {}),
    ...(untimedHashes ? { untimedHashes } : {}),
  };
};

/** Fills the ids a command leaves to the handler (refund, cost, responder). */
export const fillDerivedIds = (prepared: PreparedCommand, actorId: string): void => {
  const { command } = prepared;
  if (prepared.type === 'RefundPurchase') command.refundId ??= prepared.derived('refund');
  else if (prepared.type === 'RecordCampaignCost') command.costId ??= prepared.derived('cost');
  else if (prepared.type === 'RespondToFeedback') command.responderId ??= actorId;
};

/** Commands whose decider needs a snapshot of the customer they name (`command.customer`). */
export const needsCustomerSnapshot = (type: CommandType): boolean => type === 'OpenDeal' || type === 'SubmitFeedback' || type === 'RecordCampaignResponse';

/** Feedback commands whose decider needs a snapshot of the item's customer (a forgotten one's item takes none of them). */
export const needsFeedbackCustomer = (type: CommandType): boolean =>
  type === 'RespondToFeedback' || type === 'ResolveFeedback' || type === 'ReopenFeedback' || type === 'RateFeedback';

/** The field of each command naming a user whose snapshot its decider checks, and where the snapshot goes. */
const NAMED_USERS: Partial<Record<CommandType, { field: 'ownerId' | 'assigneeId'; into: 'owner' | 'assignee' }>> = {
  RegisterCustomer: { field: 'ownerId', into: 'owner' },
  ChangeCustomerDetails: { field: 'ownerId', into: 'owner' },
  AssignCustomerOwner: { field: 'ownerId', into: 'owner' },
  OpenDeal: { field: 'ownerId', into: 'owner' },
  ChangeDeal: { field: 'ownerId', into: 'owner' },
  AssignFeedback: { field: 'assigneeId', into: 'assignee' },
};

/**
 * The user a command names whose snapshot its decider needs (`command.owner`, `command.assignee`):
 * a customer's or a deal's owner, a feedback item's assignee. Only an id names a user: a deal's owner
 * or an assignee may be a name (an import's), whose stream would be no one's.
 */
export const namedUserOf = (type: CommandType, command: Record<string, unknown>): { userId: string; into: 'owner' | 'assignee' } | undefined => {
  const named = NAMED_USERS[type];
  const userId = named === undefined ? undefined : command[named.field];
  return typeof userId === 'string' && namesUser(userId) ? { userId, into: named!.into } : undefined;
};

/** Commands whose decider needs to know which of the named teams exist (`command.knownTeams`). */
export const needsKnownTeams = (type: CommandType): boolean => type === 'RegisterUser' || type === 'ChangeUser';

/** The decide side of every kind's decider, erased to one call. */
export const createDecide = (sla: SlaPolicy) => {
  const registry = aggregateRegistry(sla);
  return (kind: AggregateKind, command: unknown, state: unknown): DomainEventList =>
    (registry[kind].decide as (command: unknown, state: unknown) => DomainEventList)(command, state);
};

/** The refusal of personal data for a customer whose key is gone, as the decider refuses a forgotten customer's commands. */
export const customerForgotten = (customerId: string) =>
  invalidState('customer.forgotten', `Customer ${customerId} has been forgotten`, 'customerId', { customerId });

/** The refusal of a command recording personal data for a customer whose key row is gone (never forgotten). */
export const customerDataKeyMissing = (customerId: string) =>
  invalidState('customer.data_key_missing', new CustomerDataKeyMissing(customerId).message, 'customerId', { customerId });

/** Encrypts personal fields; a customer forgotten between our read and this write (a race) is refused like any forgotten customer. */
export const protectForCommand = async (personalData: PersonalData, type: CrmEventType, data: unknown): Promise<unknown> => {
  try {
    return await personalData.protect(type, data);
  } catch (error) {
    if (error instanceof PersonalDataForgotten) throw customerForgotten(error.customerId);
    if (error instanceof CustomerDataKeyMissing) throw customerDataKeyMissing(error.customerId);
    throw error;
  }
};
