import { randomUUID } from 'node:crypto';
import { eventSchemas, schemaVersionOf, type CrmEventType } from '../domain/catalogue.ts';
import type { MergeCustomer } from '../domain/customer/commands.ts';
import { customerSnapshot, decideMerge, MAX_MERGE_CHAIN, type CustomerSnapshot } from '../domain/customer/decider.ts';
import { defaultSlaPolicy, type SlaPolicy } from '../domain/feedback/sla.ts';
import { MAX_APPEND_BYTES, type AppendResult, type EventStore, type NewEvent, type StreamRead } from '../eventstore/contract.ts';
import { IdempotencyConflict, WrongExpectedRevision } from '../eventstore/errors.ts';
import { type PersonalData } from '../eventstore/personal-data.ts';
import type { EmailIndex } from '../eventstore/email-index.ts';
import { storedEventSize } from '../eventstore/validation.ts';
import {
  aggregateFolders,
  loadStream,
  refOf,
  streamOf,
  type AggregateStates,
  type EventRef,
  type Folder,
  type LoadedStream,
  type LoadOptions,
  type StreamLoaderDeps,
} from './aggregates.ts';
import { createStreamCache, type AppendedEvent } from './stream-cache.ts';
import { createSnapshotCodec } from './snapshots.ts';
import { createStreamQueue, type MemberOutcome, type StreamQueue, type StreamQueueOptions } from './stream-queue.ts';
import { withEmailClaim, withUserEmailClaim, type CustomerVisible } from './email-uniqueness.ts';
import { commandTargets } from './schemas.ts';
import { DomainError, notFound, ruleViolated } from '../domain/errors.ts';
import { copyState } from '../domain/entries.ts';
import { resolveActivityParent } from './activity-parent.ts';
import { mergeChainDepth, namingChainEnd, resolveMergedOrder } from './merged-order.ts';
import { eventIdFor } from './ids.ts';
import { userSnapshot } from '../domain/user/decider.ts';
import {
  createDecide,
  fillDerivedIds,
  needsCustomerSnapshot,
  needsFeedbackCustomer,
  needsKnownTeams,
  namedUserOf,
  prepareCommand,
  protectForCommand,
  type DomainEventList,
  sameCommand,
  type Fingerprinted,
  type PreparedCommand,
  type StoredMetadata,
} from './prepare.ts';
import type { AggregateKind, CommandType, CrmCommand } from './schemas.ts';

export { commandSchemas, commandTargets, commandTypes, type AggregateKind, type CommandType, type CrmCommand } from './schemas.ts';
export { streamOf, type AggregateStates, type LoadOptions } from './aggregates.ts';
export { BUSINESS_TIME_SKEW_MS } from '../domain/shared.ts';
export { CommandsBusy, type StreamQueueOptions } from './stream-queue.ts';
export { defaultSlaPolicy, SlaPolicy } from '../domain/feedback/sla.ts';

import type { CommandContext, CommandResult } from './context.ts';

export type { CommandContext, CommandResult } from './context.ts';

export interface CrmCommands {
  /** Validates, decides and appends. Throws ZodError (bad input), DomainError (refused), WrongExpectedRevision (conflict). */
  execute(command: CrmCommand | { type: string; [field: string]: unknown }, ctx: CommandContext): Promise<CommandResult>;
  /** An aggregate's state as of a revision or an instant (record time), for point-in-time queries. */
  loadAggregate<K extends AggregateKind>(kind: K, id: string, options?: LoadOptions): Promise<{ state: AggregateStates[K]; revision: number }>;
  /** Commands waiting or running in this process (back-pressure). */
  pending(): number;
}

export interface CrmCommandDeps {
  store: EventStore;
  personalData: PersonalData;
  sla?: SlaPolicy;
  clock?: () => Date;
  /** Streams whose current state is kept in memory between commands (0 disables). Default 10 000. */
  cachedStreams?: number;
  /** Who holds each email address: registrations of a taken address are refused. Without it, nothing is checked. */
  emailIndex?: EmailIndex;
  /** Who holds each user's (staff) email address: a user registration or email change to a held one is refused. Without it, nothing is checked. */
  userEmailIndex?: EmailIndex;
  /** The user the users read model shows with an address, for users registered before addresses were claimed. */
  userWithAddress?: (email: string) => Promise<string | undefined>;
  /** Per-stream queue and the time bound on waiting and re-deciding (stream-queue.ts). */
  queue?: Partial<StreamQueueOptions>;
  /**
   * The installation's key for idempotency fingerprints (EmailIndex.fingerprintKey, commands/ids.ts
   * `keyedCommandHash`); without it (tests of other concerns) fingerprints are unkeyed.
   */
  fingerprintKey?: Uint8Array;
}

/**
 * The first result of a command retried with the same idempotency key: the events whose ids derive
 * from (stream, key, index). The key used before for a different request is a conflict, not a retry.
 */
export const firstResult = (id: string, stream: string, ids: Map<string, EventRef>, sent: Fingerprinted): CommandResult | undefined => {
  const key = sent.metadata.idempotencyKey;
  if (!key) return undefined;
  const eventIds: string[] = [];
  for (let i = 0; ids.has(eventIdFor(stream, key, i)); i++) eventIds.push(eventIdFor(stream, key, i));
  if (eventIds.length === 0) return undefined;
  if (!sameCommand(ids.get(eventIds[0]!)!.commandHash, sent)) throw new IdempotencyConflict(eventIds[0]!, stream);
  const last = ids.get(eventIds.at(-1)!)!;
  return { id, stream, revision: last.revision, position: last.position, eventIds, replayed: true };
};

/** Current state of a stream, as a command's checks read it (through the cache, or a group's state in memory). */
type Load = <K extends AggregateKind>(kind: K, id: string) => Promise<LoadedStream<AggregateStates[K]>>;

/** A command waiting to be decided in a group on its stream (stream-queue.ts `join`). */
interface Waiting {
  prepared: PreparedCommand;
  ctx: CommandContext;
}

/**
 * Commands that keep one place in the queue each: a merge writes two streams, a forget deletes keys,
 * and a registration or an email change (of a customer or a user) holds an address in an email index
 * around its append.
 */
const decidedAlone = (type: CrmCommand['type'], deps: Pick<CrmCommandDeps, 'emailIndex' | 'userEmailIndex'>): boolean =>
  type === 'MergeCustomer' ||
  type === 'ForgetCustomer' ||
  (deps.emailIndex !== undefined && (type === 'RegisterCustomer' || type === 'ChangeCustomerDetails')) ||
  (deps.userEmailIndex !== undefined && (type === 'RegisterUser' || type === 'ChangeUser'));

export function createCrmCommands(deps: CrmCommandDeps): CrmCommands {
  const { store, personalData } = deps;
  const sla = deps.sla ?? defaultSlaPolicy;
  const clock = deps.clock ?? (() => new Date());
  const folders = aggregateFolders(sla);
  const decide = createDecide(sla);

  const loader: StreamLoaderDeps = { store, personalData, folders };
  const cache = createStreamCache(loader, deps.cachedStreams ?? 10_000, store.snapshots ? createSnapshotCodec(store.snapshots, personalData) : undefined);
  const queue: StreamQueue = createStreamQueue(deps.queue);
  /** Current state through the cache (caught up with the store); a past state (asOf) folded afresh. */
  const load = <K extends AggregateKind>(kind: K, id: string, options?: LoadOptions): Promise<LoadedStream<AggregateStates[K]>> =>
    options?.asOf === undefined ? cache.load(kind, id, 'fresh') : loadStream(loader, kind, id, options);

  /** Every event id of a stream as stored, with revision, position and command hash: nothing decrypted or folded. */
  const storedIds = async (stream: string): Promise<Map<string, EventRef>> => new Map((await store.readStream(stream)).map((r) => [r.id, refOf(r)]));

  /**
   * `firstResult` on a loaded stream. A retry whose first event is folded into the saved state the
   * stream was loaded from has no revision or position held: those are read from the stored stream
   * (a retry of a command older than the process's first read of its stream; rare).
   */
  const firstResultOf = async (kind: AggregateKind, id: string, loaded: LoadedStream<unknown>, sent: Fingerprinted): Promise<CommandResult | undefined> => {
    const stream = streamOf(kind, id);
    const key = sent.metadata.idempotencyKey;
    const first = key === undefined ? undefined : eventIdFor(stream, key, 0);
    const older = first !== undefined && !loaded.ids.has(first) && loaded.savedIds?.hashOf(first) !== undefined;
    return firstResult(id, stream, older ? await storedIds(stream) : loaded.ids, sent);
  };

  const customerOf = async (customerId: string, from: Load = load): Promise<CustomerSnapshot> => customerSnapshot((await from('customer', customerId)).state);
  const userOf = async (userId: string) => (await load('user', userId)).state;

  /** Snapshots a command's decider needs of other streams (a customer's owner, a user's teams), filled before deciding. */
  const fillReferences = async (prepared: PreparedCommand, from: Load): Promise<void> => {
    const { command, type } = prepared;
    const named = namedUserOf(type, command);
    if (named) command[named.into] = userSnapshot((await from('user', named.userId)).state);
    if (needsKnownTeams(type) && Array.isArray(command.teamIds)) {
      const teams = [...new Set(command.teamIds as string[])];
      const exists = await Promise.all(teams.map(async (t) => (await from('team', t)).state.exists));
      command.knownTeams = teams.filter((_, i) => exists[i]);
    } else if (needsKnownTeams(type)) command.knownTeams = [];
  };

  /**
   * Refuses, as not found, a command on a record outside the caller's scope, and a reference (a deal's
   * or feedback's customer) to a customer outside it: the caller cannot tell it from a missing one.
   */
  const assertVisible = async (prepared: PreparedCommand, scope: CommandContext['scope'], from: Load = load): Promise<void> => {
    if (!scope) return;
    const owns = (ownerId: string | null) => ownerId !== null && scope.owners.includes(ownerId);
    const customerVisible = async (customerId: string) => owns((await from('customer', customerId)).state.ownerId);
    /**
     * A deal, feedback item or activity follows its customer's owner, after a merge the primary's (the
     * end of the chain), as the read models keep it (`customer_owner_id`, projections/read-models/customer-owners.ts).
     */
    const accountVisible = async (customerId: string) => {
      let { state } = await from('customer', customerId);
      for (let hop = 0; hop < MAX_MERGE_CHAIN && state.mergedInto; hop++) ({ state } = await from('customer', state.mergedInto));
      return owns(state.ownerId);
    };
    const { kind, id, command } = prepared;
    const referenced = typeof command.customerId === 'string' && kind !== 'customer' ? command.customerId : undefined;
    const creates = commandTargets[prepared.type].creates;
    const dealVisible = async (dealId: string) => {
      const { state } = await from('deal', dealId);
      return state.exists && (owns(state.ownerId) || (state.customerId !== null && (await accountVisible(state.customerId))));
    };
    const recordVisible = async (of: 'deal' | 'activity' | 'feedback', recordId: string): Promise<boolean> => {
      if (of === 'deal') return dealVisible(recordId);
      if (of === 'activity') {
        // As the read side: assigned to the scope, or on a customer or deal of the scope.
        const { state } = await from('activity', recordId);
        return (
          state.exists &&
          (owns(state.assigneeId) ||
            (state.customerId !== null && (await accountVisible(state.customerId))) ||
            (state.dealId !== null && (await dealVisible(state.dealId))))
        );
      }
      const { state } = await from('feedback', recordId);
      return state.exists && (owns(state.assigneeId) || (state.customerId !== null && (await accountVisible(state.customerId))));
    };
    /**
     * A create whose client-chosen id a record outside the scope already has: 404, as any command on
     * that record answers (never "already registered", which would tell that it exists and what it is).
     */
    const refuseIdOutOfScope = async (): Promise<void> => {
      if (kind !== 'customer' && kind !== 'deal' && kind !== 'feedback' && kind !== 'activity') return;
      const loaded = await from(kind, id);
      if (!loaded.state.exists || (kind === 'customer' ? await customerVisible(id) : await recordVisible(kind, id))) return;
      // The retry of this very create (same Idempotency-Key and request) answers its first result, as ever.
      const retried = await firstResultOf(kind, id, loaded, prepared).catch(() => undefined);
      if (retried === undefined)
        throw notFound(
          `${kind}.not_found`,
          `${kind[0]!.toUpperCase()}${kind.slice(1)} ${id} does not exist, and its id cannot be used: send the command without an id, or with another one`,
          `${kind}Id`,
          { [`${kind}Id`]: id },
        );
    };
    if (prepared.type === 'LogActivity') {
      // Logged under its parent's path: a parent outside the scope answers as a missing one would (404).
      if (typeof command.dealId === 'string') {
        if (!(await dealVisible(command.dealId)))
          throw notFound('deal.not_found', `Deal ${command.dealId} does not exist`, 'dealId', { dealId: command.dealId });
      } else if (referenced !== undefined && !(await customerVisible(referenced))) {
        throw notFound('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
      }
      return refuseIdOutOfScope();
    }
    if (creates && referenced !== undefined && !(await customerVisible(referenced)))
      throw ruleViolated('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
    if (creates) return refuseIdOutOfScope();
    let visible = true;
    if (kind === 'customer') {
      // A refund on a merged duplicate lowers its primary's figures: it is for whoever sees that account
      // (the duplicate's own row keeps its old owner, who could otherwise lower another team's revenue).
      visible = prepared.type === 'RefundPurchase' ? await accountVisible(id) : await customerVisible(id);
      if (visible && prepared.type === 'MergeCustomer') visible = await customerVisible(command.duplicateId as string);
      if (!visible && prepared.type === 'MergeCustomer' && (await customerVisible(id)))
        throw ruleViolated('customer.not_found', `Customer ${String(command.duplicateId)} does not exist`, 'duplicateId');
    } else if (kind === 'deal' || kind === 'activity' || kind === 'feedback') {
      visible = await recordVisible(kind, id);
    } else if (kind === 'campaign') {
      // Campaigns have no owner: visible to every role that may read them; a response must name a customer in the scope.
      if (referenced !== undefined && !(await customerVisible(referenced)))
        throw ruleViolated('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
    }
    // Users and teams are administration (admin-only routes), not records with an owner.
    if (!visible) throw notFound(`${kind}.not_found`, `${kind[0]!.toUpperCase()}${kind.slice(1)} ${id} does not exist`, `${kind}Id`, { [`${kind}Id`]: id });
  };

  /** Whether a caller of `scope` may see a customer (an email's holder); undefined: every customer. */
  const visibleTo = (scope: CommandContext['scope']): CustomerVisible | undefined => {
    if (!scope) return undefined;
    return async (customerId) => {
      const { ownerId } = (await load('customer', customerId)).state;
      return ownerId !== null && scope.owners.includes(ownerId);
    };
  };

  const protect = (type: CrmEventType, data: unknown): Promise<unknown> => protectForCommand(personalData, type, data);

  const assertExpected = (stream: string, ctx: CommandContext, actual: number): void => {
    if (ctx.expectedRevision !== undefined && ctx.expectedRevision !== actual) throw new WrongExpectedRevision(stream, ctx.expectedRevision, actual);
  };

  /** Validates and encrypts decided events: what is stored, and the plain events the cache folds. */
  const encode = async (stream: string, decided: DomainEventList, metadata: StoredMetadata): Promise<{ events: NewEvent[]; plain: AppendedEvent[] }> => {
    const key = metadata.idempotencyKey;
    const events: NewEvent[] = [];
    const plain: AppendedEvent[] = [];
    for (const [index, event] of decided.entries()) {
      const type = event.type as CrmEventType;
      // A safety net: nothing the catalogue would refuse on read is ever stored.
      const data = eventSchemas[type].parse(event.data);
      const eventId = key ? eventIdFor(stream, key, index) : randomUUID();
      plain.push({ id: eventId, event: { type, data } as AppendedEvent['event'], commandHash: metadata.commandHash, occurredAt: metadata.occurredAt });
      events.push({
        id: eventId,
        type,
        data: await protect(type, data),
        metadata: { ...metadata, schemaVersion: schemaVersionOf(type) },
      });
    }
    return { events, plain };
  };

  /**
   * After an append failed: this keyed command's first result when a retry of it won the race (the
   * loser finds the winner's events; their ciphertext differs, so the store cannot tell).
   */
  const storedByRetry = async (error: unknown, id: string, stream: string, sent: Fingerprinted): Promise<CommandResult | undefined> =>
    sent.metadata.idempotencyKey && (error instanceof WrongExpectedRevision || error instanceof IdempotencyConflict)
      ? firstResult(id, stream, await storedIds(stream), sent)
      : undefined;

  /** Validates, encrypts and appends decided events at `revision`; a concurrent retry of the same key returns the first result. */
  const append = async (
    kind: AggregateKind,
    id: string,
    decided: DomainEventList,
    base: LoadedStream<unknown>,
    sent: Fingerprinted,
  ): Promise<CommandResult> => {
    const stream = streamOf(kind, id);
    const revision = base.revision;
    const { events, plain } = await encode(stream, decided, sent.metadata);
    try {
      const result = await store.appendToStream(stream, events, { expectedRevision: revision < 0 ? 'no_stream' : revision });
      cache.appended(kind, id, base, plain, { revision: result.nextExpectedRevision, position: result.position });
      return { id, stream, revision: result.nextExpectedRevision, position: result.position, eventIds: events.map((e) => e.id) };
    } catch (error) {
      // Someone else wrote, or the outcome is unknown: the next load catches up from the store.
      cache.stale(stream);
      const first = await storedByRetry(error, id, stream, sent);
      if (first) return first;
      throw error;
    }
  };

  const run = async (
    kind: AggregateKind,
    id: string,
    ctx: CommandContext,
    sent: Fingerprinted & Pick<PreparedCommand, 'command'>,
    mode: 'fresh' | 'cached' = 'cached',
  ): Promise<CommandResult> => {
    const { command } = sent;
    const stream = streamOf(kind, id);
    // Decided on the kept state: the append's expected revision catches a stale one (the queue then
    // decides again), and an answer without an append (a refusal, a claim that does not match,
    // nothing to record) is decided again on the store's state.
    const loaded = await cache.load(kind, id, mode, commandTargets[command.type as CommandType].creates);
    let decided: DomainEventList;
    try {
      const first = await firstResultOf(kind, id, loaded, sent);
      if (first) return first;
      assertExpected(stream, ctx, loaded.revision);
      decided = decide(kind, command, loaded.state);
    } catch (error) {
      // No append checks an answer without events: one decided on the kept state is decided again on the store's.
      if (mode === 'cached') return run(kind, id, ctx, sent, 'fresh');
      throw error;
    }
    if (decided.length === 0) {
      if (mode === 'cached') return run(kind, id, ctx, sent, 'fresh');
      return { id, stream, revision: loaded.revision, position: loaded.position, eventIds: [] };
    }
    return append(kind, id, decided, loaded, sent);
  };

  /**
   * Merge touches two streams, appended together: the duplicate's `CustomerMergedInto` and the
   * primary's `CustomerMerged` are stored both or neither (PostgreSQL, PGlite), each at the revision
   * read. Two merges racing in opposite directions (X into Y, Y into X), or along a chain (A into B
   * while B into C), stored one side each as separate appends: a cycle or a half-merge no command could
   * repair. A lost race is decided again on fresh state. A half-merge stored before (or by EventStoreDB,
   * which appends stream by stream) is completed by retrying while its primary still takes commands:
   * `decideMerge` sees the duplicate already pointing at this primary and records only the primary's
   * side (`crm verify` names those no retry can complete).
   */
  const merge = async (command: MergeCustomer, ctx: CommandContext, sent: Fingerprinted): Promise<CommandResult> => {
    const { metadata } = sent;
    const primaryStream = streamOf('customer', command.customerId);
    const duplicateStream = streamOf('customer', command.duplicateId);
    const [primary, duplicate] = await Promise.all([load('customer', command.customerId), load('customer', command.duplicateId)]);
    const firstPrimary = await firstResultOf('customer', command.customerId, primary, sent);
    if (firstPrimary) {
      const firstDuplicate = await firstResultOf('customer', command.duplicateId, duplicate, sent);
      return { ...firstPrimary, eventIds: [...(firstDuplicate?.eventIds ?? []), ...firstPrimary.eventIds] };
    }
    assertExpected(primaryStream, ctx, primary.revision);
    const chainDepth = await mergeChainDepth(duplicate.state, async (customerId) => (await load('customer', customerId)).state);
    const decided = decideMerge(command, primary.state, duplicate.state, chainDepth);
    if (decided.primary.length === 0) {
      return { id: command.customerId, stream: primaryStream, revision: primary.revision, position: primary.position, eventIds: [] };
    }
    if (decided.duplicate.length === 0) return append('customer', command.customerId, decided.primary, primary, sent);
    const sides = [
      { id: command.duplicateId, stream: duplicateStream, base: duplicate, ...(await encode(duplicateStream, decided.duplicate, metadata)) },
      { id: command.customerId, stream: primaryStream, base: primary, ...(await encode(primaryStream, decided.primary, metadata)) },
    ];
    let results: AppendResult[];
    try {
      results = await store.appendToStreams(
        sides.map((side) => ({ stream: side.stream, events: side.events, expectedRevision: side.base.revision < 0 ? 'no_stream' : side.base.revision })),
      );
    } catch (error) {
      // Someone else wrote, or the outcome is unknown: the next loads catch up from the store. A lost
      // race (WrongExpectedRevision) is decided again by the queue; nothing of this merge was stored.
      for (const side of sides) cache.stale(side.stream);
      const first = await storedByRetry(error, command.customerId, primaryStream, sent);
      if (first) {
        const firstDuplicate = firstResult(command.duplicateId, duplicateStream, await storedIds(duplicateStream), sent);
        return { ...first, eventIds: [...(firstDuplicate?.eventIds ?? []), ...first.eventIds] };
      }
      throw error;
    }
    sides.forEach((side, i) =>
      cache.appended('customer', side.id, side.base, side.plain, { revision: results[i]!.nextExpectedRevision, position: results[i]!.position }),
    );
    const primaryResult = results[1]!;
    return {
      id: command.customerId,
      stream: primaryStream,
      revision: primaryResult.nextExpectedRevision,
      position: results[0]!.position > primaryResult.position ? results[0]!.position : primaryResult.position,
      eventIds: sides.flatMap((side) => side.events.map((e) => e.id)),
    };
  };

  /**
   * Commands waiting on one stream, decided one after the other in memory (each on the state the ones
   * before it leave, with its own checks and its own refusal) and appended in one append at the
   * revision the first one read. A lost race stores nothing: the queue decides the group again on
   * fresh state. Each command keeps its own answer: its refusal, or its own last revision and event ids.
   */
  const decideGroup = async (kind: AggregateKind, id: string, members: Waiting[]): Promise<'lost' | MemberOutcome<CommandResult>[]> => {
    const stream = streamOf(kind, id);
    const folder = folders[kind] as Folder<unknown>;
    // Decided on the kept state: the append's expected revision catches a stale one (the queue then
    // decides again), and answers without an append are checked below.
    // The members' checks await reads of other streams before deciding: a catch-up meanwhile means
    // the store holds newer events, and the append below then fails on `base.revision`.
    const base: LoadedStream<unknown> = await cache.load(
      kind,
      id,
      'cached',
      members.every((m) => commandTargets[m.prepared.type].creates),
    );
    let state = base.state;
    /** Events of the group folded into `state`; done on a copy, since others read the cached state until the append is stored. */
    let folded = 0;
    const events: NewEvent[] = [];
    const plain: AppendedEvent[] = [];
    let bytes = 0;
    /** `decided`: answered once the append is stored. */
    const outcomes: (MemberOutcome<CommandResult> | 'decided')[] = [];
    /** Members that decided, by index: their revision and event ids (the position comes with the append). */
    const decided = new Map<number, { revision: number; eventIds: string[] }>();
    /** Idempotency keys decided in this group: a retry sent again meanwhile gets the first one's answer. */
    const keys = new Map<string, { index: number; commandHash: string | undefined }>();
    /**
     * The other streams the deciding members read (a deal's customer, an activity's deal), at the
     * revision read: the append stands only while they do (`dependsOn`), so a deal is not opened for a
     * customer forgotten or merged meanwhile, nor a consent-only campaign sent after the consent went.
     */
    const read = new Map<string, number>();
    for (const [index, { prepared, ctx }] of members.entries()) {
      if (folded < plain.length) {
        if (folded === 0) state = copyState(state);
        for (const e of plain.slice(folded)) state = folder.evolve(state, e.event, e.occurredAt);
        folded = plain.length;
      }
      const revision = base.revision + plain.length;
      const current: LoadedStream<unknown> = { state, revision, position: base.position, ids: base.ids };
      // The command's checks read its own stream as the commands before it in the group leave it.
      const readNow = new Map<string, number>();
      const from: Load = async <K extends AggregateKind>(k: K, i: string) => {
        const other = streamOf(k, i);
        if (other === stream) return current as LoadedStream<AggregateStates[K]>;
        const loaded = await load(k, i);
        if (!readNow.has(other)) readNow.set(other, loaded.revision);
        return loaded;
      };
      try {
        const { metadata, command } = prepared;
        await readReferences(prepared, ctx, from);
        const first = await firstResultOf(kind, id, base, prepared);
        if (first) {
          outcomes.push({ value: first });
          continue;
        }
        const key = metadata.idempotencyKey;
        const earlier = key !== undefined ? keys.get(key) : undefined;
        if (key !== undefined && earlier) {
          if (earlier.commandHash !== metadata.commandHash) throw new IdempotencyConflict(eventIdFor(stream, key, 0), stream);
          decided.set(index, decided.get(earlier.index)!);
          outcomes.push('decided');
          continue;
        }
        assertExpected(stream, ctx, revision);
        const encoded = await encode(stream, decide(kind, command, state), metadata);
        const size = encoded.events.reduce((sum, e) => sum + storedEventSize(e.type, JSON.stringify(e.data), JSON.stringify(e.metadata)), 0);
        if (plain.length > 0 && bytes + size > MAX_APPEND_BYTES) {
          // The append is full: this command and the ones after it are decided in the next round.
          while (outcomes.length < members.length) outcomes.push('later');
          break;
        }
        bytes += size;
        events.push(...encoded.events);
        plain.push(...encoded.plain);
        decided.set(index, { revision: base.revision + plain.length, eventIds: encoded.events.map((e) => e.id) });
        if (key !== undefined && encoded.events.length > 0) keys.set(key, { index, commandHash: metadata.commandHash });
        for (const [other, revision] of readNow) if (!read.has(other)) read.set(other, revision);
        outcomes.push('decided');
      } catch (error) {
        outcomes.push({ error });
      }
    }
    let appended: AppendResult | undefined;
    if (events.length === 0 && outcomes.some((o) => o === 'decided' || (typeof o === 'object' && 'error' in o))) {
      // Refusals (a claim that does not match among them) and commands that record nothing have no
      // append to check the kept state: if another process wrote since, they are decided again on the store's.
      if ((await cache.load(kind, id, 'fresh')).revision !== base.revision) return 'lost';
    }
    if (events.length > 0) {
      try {
        const dependsOn = [...read].map(([other, revision]): StreamRead => ({ stream: other, revision: revision < 0 ? 'no_stream' : revision }));
        appended = await store.appendToStream(stream, events, {
          expectedRevision: base.revision < 0 ? 'no_stream' : base.revision,
          ...(dependsOn.length > 0 ? { dependsOn } : {}),
        });
      } catch (error) {
        // Someone else wrote, or the outcome is unknown: the next load catches up from the store.
        cache.stale(stream);
        if (error instanceof WrongExpectedRevision && error.stream !== stream) cache.stale(error.stream);
        // Another process wrote (or stored a retry of one of these keys): nothing of the group is stored, decided again.
        if (error instanceof WrongExpectedRevision || error instanceof IdempotencyConflict) return 'lost';
        throw error;
      }
      cache.appended(
        kind,
        id,
        base,
        plain,
        { revision: appended.nextExpectedRevision, position: appended.position },
        folded > 0 ? { state, count: folded } : undefined,
      );
    }
    return outcomes.map((outcome, index) => {
      if (outcome !== 'decided') return outcome;
      const mine = decided.get(index)!;
      // Before any event of the group, the stream's last position; after, the append's (it covers every event up to it).
      const position = appended && mine.revision > base.revision ? appended.position : base.position;
      return { value: { id, stream, revision: mine.revision, position, eventIds: mine.eventIds } };
    });
  };

  /** What a command reads before its decider runs: the caller's scope, snapshots of the streams it refers to, derived ids. */
  const readReferences = async (prepared: PreparedCommand, ctx: CommandContext, from: Load): Promise<void> => {
    const { type, command } = prepared;
    await assertVisible(prepared, ctx.scope, from);
    fillDerivedIds(prepared, ctx.actor.userId);
    await fillReferences(prepared, from);
    if (needsCustomerSnapshot(type)) command.customer = await customerOf(command.customerId as string, from);
    if (needsFeedbackCustomer(type)) {
      const { customerId } = (await from('feedback', prepared.id)).state;
      if (customerId) command.customer = await customerOf(customerId, from);
    }
    if (type === 'RecordPurchase' || type === 'RefundPurchase')
      await resolveMergedOrder(prepared, (await from('customer', prepared.id)).state, async (id) => (await from('customer', id)).state);
    if (prepared.kind === 'activity') {
      await resolveActivityParent(prepared, {
        customer: async (customerId) => (await from('customer', customerId)).state,
        deal: async (dealId) => (await from('deal', dealId)).state,
        activity: async (activityId) => (await from('activity', activityId)).state,
      });
    }
  };

  const execute = async (input: { type: string; [field: string]: unknown }, ctx: CommandContext): Promise<CommandResult> => {
    const prepared = prepareCommand(input, ctx, clock(), deps.fingerprintKey);
    const result = await (
      !decidedAlone(prepared.type, deps)
        ? // Grouped with this process's other commands waiting on the stream; the group is decided again after a lost race.
          queue.join(prepared.stream, { prepared, ctx }, (members: Waiting[]) => decideGroup(prepared.kind, prepared.id, members))
        : // Queued behind this process's earlier commands on the stream; decided again after a lost race.
          queue.run(prepared.stream, ctx.expectedRevision !== undefined ? prepared.stream : undefined, () => decideAlone(prepared, ctx))
    ).catch(async (error: unknown) => {
      throw await namingChainEnd(error, async (id) => (await load('customer', id)).state);
    });
    return unsubscribed(prepared) ? withdrawConsent(prepared, ctx, result) : result;
  };

  const unsubscribed = (prepared: PreparedCommand): boolean => prepared.type === 'RecordCampaignResponse' && prepared.command.kind === 'unsubscribed';

  /**
   * An unsubscribe withdraws the customer's marketing consent, so that no consent-only campaign is sent
   * to them again (each campaign checks the consent, not the other campaigns' responses). Recorded after
   * the response, on the customer's stream; a retry of the response records it if it was not (it
   * records nothing once the consent is withdrawn). A customer that takes no change (forgotten, merged
   * away) keeps the response alone. The answer's position covers both, for read-your-writes.
   */
  const withdrawConsent = async (prepared: PreparedCommand, ctx: CommandContext, response: CommandResult): Promise<CommandResult> => {
    const { expectedRevision: _campaignRevision, idempotencyKey, ...customerCtx } = ctx;
    const withdrawn = await execute(
      { type: 'ChangeCustomerDetails', customerId: prepared.command.customerId, marketingConsent: false },
      {
        ...customerCtx,
        ...(idempotencyKey !== undefined ? { idempotencyKey: `${idempotencyKey}:consent` } : {}),
        reason: `unsubscribed from campaign ${prepared.id}`,
      },
    ).catch((error: unknown) => {
      if (error instanceof DomainError) return undefined;
      throw error;
    });
    return withdrawn && withdrawn.position > response.position ? { ...response, position: withdrawn.position } : response;
  };

  const decideAlone = async (prepared: PreparedCommand, ctx: CommandContext): Promise<CommandResult> => {
    const { type, id, command } = prepared;
    switch (type) {
      case 'MergeCustomer':
        await assertVisible(prepared, ctx.scope);
        return merge(command as unknown as MergeCustomer, ctx, prepared);
      case 'ForgetCustomer': {
        await assertVisible(prepared, ctx.scope);
        const result = await run('customer', id, ctx, prepared);
        // After CustomerForgotten is stored; re-run on every retry so an interrupted forget completes.
        await personalData.forget(id);
        // A duplicate merged into this customer is the same person registered twice: forgotten too,
        // and the answer's position covers those forgets (read-your-writes waits for them).
        let position = result.position;
        const eventIds = [...result.eventIds];
        // The caller's If-Match is the primary's revision, not a duplicate's: checked against each duplicate's
        // stream it refused their forgets (409) after the primary's was stored, leaving them in clear.
        const { expectedRevision: _primaryRevision, ...duplicateCtx } = ctx;
        for (const duplicateId of (await load('customer', id)).state.mergedDuplicates) {
          const forgotten = await execute(
            { type: 'ForgetCustomer', customerId: duplicateId },
            // The duplicate is the same person: forgotten whoever owned its record (the caller could see the primary).
            {
              ...duplicateCtx,
              scope: null,
              ...(ctx.idempotencyKey !== undefined ? { idempotencyKey: `${ctx.idempotencyKey}\nforget-duplicate\n${duplicateId}` } : {}),
            },
          );
          if (forgotten.position > position) position = forgotten.position;
          eventIds.push(...forgotten.eventIds);
        }
        await deps.emailIndex?.forget(id);
        cache.evict(streamOf('customer', id));
        return { ...result, position, eventIds };
      }
      case 'RegisterUser':
      case 'ChangeUser':
        // A user's registration or change, with their address held in the users' email index.
        await readReferences(prepared, ctx, load);
        return withUserEmailClaim(deps.userEmailIndex!, command, () => run(prepared.kind, id, ctx, prepared), userOf, deps.userWithAddress);
      default:
        // A customer's registration or email change, with the address held in the email index.
        await readReferences(prepared, ctx, load);
        return withEmailClaim(deps.emailIndex!, command, () => run(prepared.kind, id, ctx, prepared), customerOf, visibleTo(ctx.scope));
    }
  };

  return {
    execute,
    pending: () => queue.pending(),
    async loadAggregate(kind, id, options) {
      const { state, revision } = await load(kind, id, options);
      // A copy: the cached state keeps evolving with later commands.
      return { state: copyState(state), revision };
    },
  };
}
