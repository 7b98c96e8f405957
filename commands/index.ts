import { randomUUID } from 'node:crypto';
import { eventSchemas, schemaVersionOf, type CrmEventType } from '../domain/catalogue.ts';
import type { MergeCustomer } from '../domain/customer/commands.ts';
import { customerSnapshot, decideMerge, type CustomerSnapshot } from '../domain/customer/decider.ts';
import { defaultSlaPolicy, type SlaPolicy } from '../domain/feedback/sla.ts';
import { EventMetadata } from '../domain/metadata.ts';
import type { EventStore, NewEvent } from '../eventstore/contract.ts';
import { IdempotencyConflict, WrongExpectedRevision } from '../eventstore/errors.ts';
import { type PersonalData } from '../eventstore/personal-data.ts';
import type { EmailIndex } from '../eventstore/email-index.ts';
import { aggregateFolders, loadStream, refOf, streamOf, type AggregateStates, type EventRef, type LoadedStream, type LoadOptions } from './aggregates.ts';
import { createStreamCache, type AppendedEvent } from './stream-cache.ts';
import { createStreamQueue, type StreamQueue, type StreamQueueOptions } from './stream-queue.ts';
import { withEmailClaim } from './email-uniqueness.ts';
import { commandTargets } from './schemas.ts';
import { notFound, ruleViolated } from '../domain/errors.ts';
import { resolveActivityParent } from './activity-parent.ts';
import { eventIdFor } from './ids.ts';
import { userSnapshot } from '../domain/user/decider.ts';
import {
  createDecide,
  fillDerivedIds,
  needsCustomerSnapshot,
  needsKnownTeams,
  needsOwnerSnapshot,
  prepareCommand,
  protectForCommand,
  type DomainEventList,
  type PreparedCommand,
} from './prepare.ts';
import type { AggregateKind, CrmCommand } from './schemas.ts';

export { commandSchemas, commandTargets, commandTypes, type AggregateKind, type CommandType, type CrmCommand } from './schemas.ts';
export { streamOf, type AggregateStates, type LoadOptions } from './aggregates.ts';
export { BUSINESS_TIME_SKEW_MS } from './prepare.ts';
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
  /** Per-stream queue and the time bound on waiting and re-deciding (stream-queue.ts). */
  queue?: Partial<StreamQueueOptions>;
}

/**
 * The first result of a command retried with the same idempotency key: the events whose ids derive
 * from (stream, key, index). The key used before for a different request is a conflict, not a retry.
 */
export const firstResult = (
  id: string,
  stream: string,
  ids: Map<string, EventRef>,
  metadata: Pick<EventMetadata, 'idempotencyKey' | 'commandHash'>,
): CommandResult | undefined => {
  const key = metadata.idempotencyKey;
  if (!key) return undefined;
  const eventIds: string[] = [];
  for (let i = 0; ids.has(eventIdFor(stream, key, i)); i++) eventIds.push(eventIdFor(stream, key, i));
  if (eventIds.length === 0) return undefined;
  if (ids.get(eventIds[0]!)!.commandHash !== metadata.commandHash) throw new IdempotencyConflict(eventIds[0]!, stream);
  const last = ids.get(eventIds.at(-1)!)!;
  return { id, stream, revision: last.revision, position: last.position, eventIds };
};

export function createCrmCommands(deps: CrmCommandDeps): CrmCommands {
  const { store, personalData } = deps;
  const sla = deps.sla ?? defaultSlaPolicy;
  const clock = deps.clock ?? (() => new Date());
  const folders = aggregateFolders(sla);
  const decide = createDecide(sla);

  const cache = createStreamCache({ store, personalData, folders }, deps.cachedStreams ?? 10_000);
  const queue: StreamQueue = createStreamQueue(deps.queue);
  /** Current state through the cache (caught up with the store); a past state (asOf) folded afresh. */
  const load = <K extends AggregateKind>(kind: K, id: string, options?: LoadOptions): Promise<LoadedStream<AggregateStates[K]>> =>
    options?.asOf === undefined ? cache.load(kind, id, 'fresh') : loadStream({ store, personalData, folders }, kind, id, options);

  const customerOf = async (customerId: string): Promise<CustomerSnapshot> => customerSnapshot((await load('customer', customerId)).state);

  /** Snapshots a command's decider needs of other streams (a customer's owner, a user's teams), filled before deciding. */
  const fillReferences = async (prepared: PreparedCommand): Promise<void> => {
    const { command, type } = prepared;
    if (needsOwnerSnapshot(type) && typeof command.ownerId === 'string') command.owner = userSnapshot((await load('user', command.ownerId)).state);
    if (needsKnownTeams(type) && Array.isArray(command.teamIds)) {
      const teams = [...new Set(command.teamIds as string[])];
      const exists = await Promise.all(teams.map(async (t) => (await load('team', t)).state.exists));
      command.knownTeams = teams.filter((_, i) => exists[i]);
    } else if (needsKnownTeams(type)) command.knownTeams = [];
  };

  /**
   * Refuses, as not found, a command on a record outside the caller's scope, and a reference (a deal's
   * or feedback's customer) to a customer outside it: the caller cannot tell it from a missing one.
   */
  const assertVisible = async (prepared: PreparedCommand, scope: CommandContext['scope']): Promise<void> => {
    if (!scope) return;
    const owns = (ownerId: string | null) => ownerId !== null && scope.owners.includes(ownerId);
    const customerVisible = async (customerId: string) => owns((await load('customer', customerId)).state.ownerId);
    /**
     * A deal, feedback item or activity follows its customer's owner, after a merge the primary's (the
     * end of the chain), as the read models keep it (`customer_owner_id`, projections/read-models/customer-owners.ts).
     */
    const accountVisible = async (customerId: string) => {
      let { state } = await load('customer', customerId);
      for (let hop = 0; hop < 16 && state.mergedInto; hop++) ({ state } = await load('customer', state.mergedInto));
      return owns(state.ownerId);
    };
    const { kind, id, command } = prepared;
    const referenced = typeof command.customerId === 'string' && kind !== 'customer' ? command.customerId : undefined;
    const creates = commandTargets[prepared.type].creates;
    const dealVisible = async (dealId: string) => {
      const { state } = await load('deal', dealId);
      return state.exists && (owns(state.ownerId) || (state.customerId !== null && (await accountVisible(state.customerId))));
    };
    if (prepared.type === 'LogActivity') {
      // Logged under its parent's path: a parent outside the scope answers as a missing one would (404).
      if (typeof command.dealId === 'string') {
        if (!(await dealVisible(command.dealId)))
          throw notFound('deal.not_found', `Deal ${command.dealId} does not exist`, 'dealId', { dealId: command.dealId });
      } else if (referenced !== undefined && !(await customerVisible(referenced))) {
        throw notFound('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
      }
      return;
    }
    if (creates && referenced !== undefined && !(await customerVisible(referenced)))
      throw ruleViolated('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
    if (creates) return;
    let visible = true;
    if (kind === 'customer') {
      visible = await customerVisible(id);
      if (visible && prepared.type === 'MergeCustomer') visible = await customerVisible(command.duplicateId as string);
      if (!visible && prepared.type === 'MergeCustomer' && (await customerVisible(id)))
        throw ruleViolated('customer.not_found', `Customer ${String(command.duplicateId)} does not exist`, 'duplicateId');
    } else if (kind === 'deal') {
      visible = await dealVisible(id);
    } else if (kind === 'activity') {
      // As the read side: assigned to the scope, or on a customer or deal of the scope.
      const { state } = await load('activity', id);
      visible =
        state.exists &&
        (owns(state.assigneeId) ||
          (state.customerId !== null && (await accountVisible(state.customerId))) ||
          (state.dealId !== null && (await dealVisible(state.dealId))));
    } else if (kind === 'feedback') {
      const { state } = await load('feedback', id);
      visible = state.exists && (owns(state.assigneeId) || (state.customerId !== null && (await accountVisible(state.customerId))));
    } else if (kind === 'campaign') {
      // Campaigns have no owner: visible to every role that may read them; a response must name a customer in the scope.
      if (referenced !== undefined && !(await customerVisible(referenced)))
        throw ruleViolated('customer.not_found', `Customer ${referenced} does not exist`, 'customerId', { customerId: referenced });
    }
    // Users and teams are administration (admin-only routes), not records with an owner.
    if (!visible) throw notFound(`${kind}.not_found`, `${kind[0]!.toUpperCase()}${kind.slice(1)} ${id} does not exist`, `${kind}Id`, { [`${kind}Id`]: id });
  };

  const protect = (type: CrmEventType, data: unknown): Promise<unknown> => protectForCommand(personalData, type, data);

  const assertExpected = (stream: string, ctx: CommandContext, actual: number): void => {
    if (ctx.expectedRevision !== undefined && ctx.expectedRevision !== actual) throw new WrongExpectedRevision(stream, ctx.expectedRevision, actual);
  };

  /** Validates, encrypts and appends decided events at `revision`; a concurrent retry of the same key returns the first result. */
  const append = async (
    kind: AggregateKind,
    id: string,
    decided: DomainEventList,
    base: LoadedStream<unknown>,
    metadata: Omit<EventMetadata, 'schemaVersion'>,
  ): Promise<CommandResult> => {
    const stream = streamOf(kind, id);
    const revision = base.revision;
    const key = metadata.idempotencyKey;
    const events: NewEvent[] = [];
    const plain: AppendedEvent[] = [];
    for (const [index, event] of decided.entries()) {
      const type = event.type as CrmEventType;
      // A safety net: nothing the catalogue would refuse on read is ever stored.
      const data = eventSchemas[type].parse(event.data);
      const eventId = key ? eventIdFor(stream, key, index) : randomUUID();
      plain.push({ id: eventId, event: { type, data } as AppendedEvent['event'], commandHash: metadata.commandHash });
      events.push({
        id: eventId,
        type,
        data: await protect(type, data),
        metadata: { ...metadata, schemaVersion: schemaVersionOf(type) },
      });
    }
    try {
      const result = await store.appendToStream(stream, events, { expectedRevision: revision < 0 ? 'no_stream' : revision });
      cache.appended(kind, id, base, plain, { revision: result.nextExpectedRevision, position: result.position });
      return { id, stream, revision: result.nextExpectedRevision, position: result.position, eventIds: events.map((e) => e.id) };
    } catch (error) {
      // Someone else wrote, or the outcome is unknown: the next load catches up from the store.
      cache.stale(stream);
      // Two retries of one command raced: the loser finds the winner's events (ciphertext differs, so the store cannot tell).
      if (key && (error instanceof WrongExpectedRevision || error instanceof IdempotencyConflict)) {
        const first = firstResult(id, stream, new Map((await store.readStream(stream)).map((r) => [r.id, refOf(r)])), metadata);
        if (first) return first;
      }
      throw error;
    }
  };

  const run = async (
    kind: AggregateKind,
    id: string,
    ctx: CommandContext,
    metadata: Omit<EventMetadata, 'schemaVersion'>,
    command: Record<string, unknown>,
  ): Promise<CommandResult> => {
    const stream = streamOf(kind, id);
    // A claimed revision is checked against the store's; otherwise the cached state is decided on and
    // the append's expected revision catches a stale one (the queue then decides again).
    const loaded = await cache.load(kind, id, ctx.expectedRevision !== undefined ? 'fresh' : 'cached');
    const first = firstResult(id, stream, loaded.ids, metadata);
    if (first) return first;
    assertExpected(stream, ctx, loaded.revision);
    const decided = decide(kind, command, loaded.state);
    if (decided.length === 0) return { id, stream, revision: loaded.revision, position: loaded.position, eventIds: [] };
    return append(kind, id, decided, loaded, metadata);
  };

  /**
   * Merge touches two streams, duplicate first (so it stops taking commands as soon as possible),
   * then the primary. If the second append fails, retrying completes it: `decideMerge` sees the
   * duplicate already pointing at this primary and only records the primary's side.
   */
  const merge = async (command: MergeCustomer, ctx: CommandContext, metadata: Omit<EventMetadata, 'schemaVersion'>): Promise<CommandResult> => {
    const primaryStream = streamOf('customer', command.customerId);
    const duplicateStream = streamOf('customer', command.duplicateId);
    const [primary, duplicate] = await Promise.all([load('customer', command.customerId), load('customer', command.duplicateId)]);
    const firstPrimary = firstResult(command.customerId, primaryStream, primary.ids, metadata);
    if (firstPrimary) {
      const firstDuplicate = firstResult(command.duplicateId, duplicateStream, duplicate.ids, metadata);
      return { ...firstPrimary, eventIds: [...(firstDuplicate?.eventIds ?? []), ...firstPrimary.eventIds] };
    }
    assertExpected(primaryStream, ctx, primary.revision);
    const decided = decideMerge(command, primary.state, duplicate.state);
    const duplicateResult = decided.duplicate.length > 0 ? await append('customer', command.duplicateId, decided.duplicate, duplicate, metadata) : undefined;
    const primaryResult =
      decided.primary.length > 0
        ? await append('customer', command.customerId, decided.primary, primary, metadata)
        : { id: command.customerId, stream: primaryStream, revision: primary.revision, position: primary.position, eventIds: [] };
    return { ...primaryResult, eventIds: [...(duplicateResult?.eventIds ?? []), ...primaryResult.eventIds] };
  };

  const execute = async (input: { type: string; [field: string]: unknown }, ctx: CommandContext): Promise<CommandResult> => {
    const prepared = prepareCommand(input, ctx, clock());
    // Queued behind this process's earlier commands on the stream; decided again after a lost race.
    return queue.run(prepared.stream, ctx.expectedRevision !== undefined ? prepared.stream : undefined, () => decideAndAppend(prepared, ctx));
  };

  const decideAndAppend = async (prepared: PreparedCommand, ctx: CommandContext): Promise<CommandResult> => {
    const { type, id, metadata, command } = prepared;
    await assertVisible(prepared, ctx.scope);
    switch (type) {
      case 'MergeCustomer':
        return merge(command as unknown as MergeCustomer, ctx, metadata);
      case 'ForgetCustomer': {
        const result = await run('customer', id, ctx, metadata, command);
        // After CustomerForgotten is stored; re-run on every retry so an interrupted forget completes.
        await personalData.forget(id);
        // A duplicate merged into this customer is the same person registered twice: forgotten too,
        // and the answer's position covers those forgets (read-your-writes waits for them).
        let position = result.position;
        const eventIds = [...result.eventIds];
        for (const duplicateId of (await load('customer', id)).state.mergedDuplicates) {
          const forgotten = await execute(
            { type: 'ForgetCustomer', customerId: duplicateId },
            // The duplicate is the same person: forgotten whoever owned its record (the caller could see the primary).
            { ...ctx, scope: null, ...(ctx.idempotencyKey !== undefined ? { idempotencyKey: `${ctx.idempotencyKey}\nforget-duplicate\n${duplicateId}` } : {}) },
          );
          if (forgotten.position > position) position = forgotten.position;
          eventIds.push(...forgotten.eventIds);
        }
        await deps.emailIndex?.forget(id);
        cache.evict(streamOf('customer', id));
        return { ...result, position, eventIds };
      }
      case 'RegisterCustomer':
      case 'ChangeCustomerDetails':
        await fillReferences(prepared);
        if (deps.emailIndex) return withEmailClaim(deps.emailIndex, command, () => run(prepared.kind, id, ctx, metadata, command), customerOf);
        break;
      default:
        fillDerivedIds(prepared, ctx.actor.userId);
        await fillReferences(prepared);
        if (needsCustomerSnapshot(type)) command.customer = await customerOf(command.customerId as string);
        if (prepared.kind === 'activity') {
          await resolveActivityParent(prepared, {
            customer: async (customerId) => (await load('customer', customerId)).state,
            deal: async (dealId) => (await load('deal', dealId)).state,
            activity: async (activityId) => (await load('activity', activityId)).state,
          });
        }
    }
    return run(prepared.kind, id, ctx, metadata, command);
  };

  return {
    execute,
    pending: () => queue.pending(),
    async loadAggregate(kind, id, options) {
      const { state, revision } = await load(kind, id, options);
      // A copy: the cached state keeps evolving with later commands.
      return { state: structuredClone(state), revision };
    },
  };
}
