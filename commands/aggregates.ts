import { campaignDecider, type CampaignState } from '../domain/campaign/decider.ts';
import { CampaignStreamPrefix } from '../domain/campaign/events.ts';
import type { CrmEvent } from '../domain/catalogue.ts';
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
import { decodeRecordedEvent, type PersonalData } from '../eventstore/personal-data.ts';
import type { ProjectedEvent } from '../shared/events.ts';
import type { AggregateKind } from './schemas.ts';

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
  evolve: (state: S, event: CrmEvent) => S;
}

export const streamPrefixes: Record<AggregateKind, string> = {
  customer: CustomerStreamPrefix,
  deal: DealStreamPrefix,
  campaign: CampaignStreamPrefix,
  feedback: FeedbackStreamPrefix,
  team: TeamStreamPrefix,
  user: UserStreamPrefix,
  activity: ActivityStreamPrefix,
  exchangeRate: ExchangeRateStreamPrefix,
};

export const streamOf = (kind: AggregateKind, id: string): string => `${streamPrefixes[kind]}${id}`;

export const aggregateFolders = (sla: SlaPolicy = defaultSlaPolicy): { [K in AggregateKind]: Folder<AggregateStates[K]> } => {
  const feedback = createFeedbackDecider(sla);
  return {
    customer: { prefix: CustomerStreamPrefix, initialState: customerDecider.initialState, evolve: customerDecider.evolve as Folder<CustomerState>['evolve'] },
    deal: { prefix: DealStreamPrefix, initialState: dealDecider.initialState, evolve: dealDecider.evolve as Folder<DealState>['evolve'] },
    campaign: { prefix: CampaignStreamPrefix, initialState: campaignDecider.initialState, evolve: campaignDecider.evolve as Folder<CampaignState>['evolve'] },
    feedback: { prefix: FeedbackStreamPrefix, initialState: feedback.initialState, evolve: feedback.evolve as Folder<FeedbackState>['evolve'] },
    team: { prefix: TeamStreamPrefix, initialState: teamDecider.initialState, evolve: teamDecider.evolve as Folder<TeamState>['evolve'] },
    user: { prefix: UserStreamPrefix, initialState: userDecider.initialState, evolve: userDecider.evolve as Folder<UserState>['evolve'] },
    activity: { prefix: ActivityStreamPrefix, initialState: activityDecider.initialState, evolve: activityDecider.evolve as Folder<ActivityState>['evolve'] },
    exchangeRate: { prefix: ExchangeRateStreamPrefix, initialState: exchangeRateDecider.initialState, evolve: exchangeRateDecider.evolve as Folder<ExchangeRateState>['evolve'] },
  };
};

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
  /** Every event id of the stream (up to the bound). */
  ids: Map<string, EventRef>;
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
  for (const r of recorded) decoded.push(await decodeRecordedEvent(r, deps.personalData));
  let { state } = base;
  for (const [i, e] of decoded.entries()) {
    // Forgotten by another process: drop our cached key so nothing more is encrypted or read with it.
    if (e.event.type === 'CustomerForgotten') deps.personalData.evict(e.event.data.customerId);
    state = folder.evolve(state, e.event);
    base.ids.set(recorded[i]!.id, refOf(recorded[i]!));
  }
  const last = recorded.at(-1);
  return { state, ids: base.ids, revision: last?.revision ?? base.revision, position: last?.position ?? base.position };
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
