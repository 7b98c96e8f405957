import { campaignDecider, type CampaignState } from '../domain/campaign/decider.ts';
import { CampaignStreamPrefix } from '../domain/campaign/events.ts';
import type { CrmEvent } from '../domain/catalogue.ts';
import type { Decider } from '../domain/decider.ts';
import { customerDecider, type CustomerState } from '../domain/customer/decider.ts';
import { CustomerStreamPrefix } from '../domain/customer/events.ts';
import { dealDecider, type DealState } from '../domain/deal/decider.ts';
import { DealStreamPrefix } from '../domain/deal/events.ts';
import { createFeedbackDecider, type FeedbackState } from '../domain/feedback/decider.ts';
import { FeedbackStreamPrefix } from '../domain/feedback/events.ts';
import { activityDecider, type ActivityState } from '../domain/activity/decider.ts';
import { ActivityStreamPrefix } from '../domain/activity/events.ts';
import { defaultSlaPolicy, type SlaPolicy } from '../domain/feedback/sla.ts';
import { teamDecider, type TeamState } from '../domain/team/decider.ts';
import { TeamStreamPrefix } from '../domain/team/events.ts';
import { userDecider, type UserState } from '../domain/user/decider.ts';
import { UserStreamPrefix } from '../domain/user/events.ts';
import { exchangeRateDecider, type ExchangeRateState } from '../domain/exchange-rate/decider.ts';
import { ExchangeRateStreamPrefix } from '../domain/exchange-rate/events.ts';
import type { EventStore, ReadStreamOptions, RecordedEvent } from '../eventstore/contract.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import { readStoredEvent } from '../eventstore/unreadable-event.ts';
import type { ProjectedEvent } from '../shared/events.ts';
import type { AggregateKind } from './schemas.ts';
import type { CompactIds } from './compact-state.ts';

export interface AggregateStates {
  customer: CustomerState;
  deal: DealState;
  campaign: CampaignState;
  feedback: FeedbackState;
  team: TeamState;
  user: UserState;
  activity: ActivityState;
  exchangeRate: ExchangeRateState;
}

/** The fold side of a decider, erased to what loading needs. */
export interface Folder<S> {
  prefix: string;
  initialState: () => S;
  evolve: (state: S, event: CrmEvent, occurredAt?: string) => S;
}

/** An aggregate kind on the command side: its stream prefix and its decider, with the event union erased. */
export interface AggregateEntry<S> extends Folder<S> {
  /** The command belongs to this kind (the route table guarantees it); the type only erases the union. */
  decide: (command: never, state: S) => { type: string; data: unknown }[];
}

const entry = <C, E, S>(prefix: string, decider: Decider<C, E, S>): AggregateEntry<S> => ({
  prefix,
  initialState: decider.initialState,
  evolve: decider.evolve as unknown as Folder<S>['evolve'],
  decide: decider.decide as unknown as AggregateEntry<S>['decide'],
});

/**
 * Every aggregate kind, once: loading folds with it, deciding decides with it, stream names come
 * from it. A new kind is added here (and to `AggregateKind`) and nowhere else on the command side.
 */
export const aggregateRegistry = (sla: SlaPolicy = defaultSlaPolicy): { [K in AggregateKind]: AggregateEntry<AggregateStates[K]> } => ({
  customer: entry(CustomerStreamPrefix, customerDecider),
  deal: entry(DealStreamPrefix, dealDecider),
  campaign: entry(CampaignStreamPrefix, campaignDecider),
  feedback: entry(FeedbackStreamPrefix, createFeedbackDecider(sla)),
  team: entry(TeamStreamPrefix, teamDecider),
  user: entry(UserStreamPrefix, userDecider),
  activity: entry(ActivityStreamPrefix, activityDecider),
  exchangeRate: entry(ExchangeRateStreamPrefix, exchangeRateDecider),
});

const prefixesOf = (registry: ReturnType<typeof aggregateRegistry>): Record<AggregateKind, string> =>
  Object.fromEntries(Object.entries(registry).map(([kind, { prefix }]) => [kind, prefix])) as Record<AggregateKind, string>;

export const streamPrefixes: Record<AggregateKind, string> = prefixesOf(aggregateRegistry());

export const streamOf = (kind: AggregateKind, id: string): string => `${streamPrefixes[kind]}${id}`;

/** The fold side of every kind (loading needs no decide). */
export const aggregateFolders = (sla: SlaPolicy = defaultSlaPolicy): { [K in AggregateKind]: Folder<AggregateStates[K]> } => aggregateRegistry(sla);

/** What the handler keeps of each event: enough to answer a retried command with its first result. */
export interface EventRef {
  revision: number;
  position: bigint;
  commandHash: string | undefined;
}

export interface LoadedStream<S> {
  state: S;
  /** Revision of the last event folded; -1 when the stream has no events (up to the bound). */
  revision: number;
  /** Global position of the last event folded; 0n when none. */
  position: bigint;
  /** Every event id of the stream (up to the bound), or those after `savedIds` when loaded from a saved state. */
  ids: Map<string, EventRef>;
  /**
   * Loaded from a saved state (commands/snapshots.ts): the ids of the events it folds, with a prefix
   * of each command hash but no revision or position; a retried command whose events are among them
   * is answered from the stream read whole (commands/index.ts `firstResultOf`).
   */
  savedIds?: CompactIds;
}

export interface LoadOptions {
  /** A revision (inclusive) or an instant (record time, inclusive): the state as it stood then. */
  asOf?: number | Date | string;
}

export interface StreamLoaderDeps {
  store: EventStore;
  personalData: PersonalData;
  folders: ReturnType<typeof aggregateFolders>;
}

export const refOf = (r: RecordedEvent): EventRef => ({
  revision: r.revision,
  position: r.position,
  commandHash: typeof r.metadata.commandHash === 'string' ? r.metadata.commandHash : undefined,
});

export const foldInto = async <S>(deps: StreamLoaderDeps, folder: Folder<S>, base: LoadedStream<S>, recorded: RecordedEvent[]): Promise<LoadedStream<S>> => {
  const decoded: ProjectedEvent[] = [];
  // An event changed behind the store is named (409 event.unreadable), not a fault of this server (a 500).
  for (const r of recorded) decoded.push(await readStoredEvent(r, deps.personalData));
  let { state } = base;
  for (const [i, e] of decoded.entries()) {
    // Forgotten by another process: drop our cached key so nothing more is encrypted or read with it.
    if (e.event.type === 'CustomerForgotten') deps.personalData.evict(e.event.data.customerId);
    state = folder.evolve(state, e.event, e.metadata.occurredAt);
    base.ids.set(recorded[i]!.id, refOf(recorded[i]!));
  }
  const last = recorded.at(-1);
  return { ...base, state, revision: last?.revision ?? base.revision, position: last?.position ?? base.position };
};

export const emptyStream = <S>(folder: Folder<S>): LoadedStream<S> => ({ state: folder.initialState(), revision: -1, position: 0n, ids: new Map() });

/** Folds a stream from its start, optionally up to a revision or instant (point-in-time queries). */
export const loadStream = async <K extends AggregateKind>(
  deps: StreamLoaderDeps,
  kind: K,
  id: string,
  options: LoadOptions = {},
): Promise<LoadedStream<AggregateStates[K]>> => {
  const folder = deps.folders[kind] as Folder<AggregateStates[K]>;
  const read: ReadStreamOptions = {};
  if (typeof options.asOf === 'number') read.untilRevision = options.asOf;
  else if (options.asOf !== undefined) read.untilTime = new Date(options.asOf);
  const recorded = await deps.store.readStream(streamOf(kind, id), read);
  return foldInto(deps, folder, emptyStream(folder), recorded);
};
