import { campaignDecider, type CampaignState } from '../domain/campaign/decider.ts';
import { CampaignStreamPrefix } from '../domain/campaign/events.ts';
import type { CrmEvent } from '../domain/catalogue.ts';
import { customerDecider, type CustomerState } from '../domain/customer/decider.ts';
import { CustomerStreamPrefix } from '../domain/customer/events.ts';
import { dealDecider, type DealState } from '../domain/deal/decider.ts';
import { DealStreamPrefix } from '../domain/deal/events.ts';
import { createFeedbackDecider, type FeedbackState } from '../domain/feedback/decider.ts';
import { FeedbackStreamPrefix } from '../domain/feedback/events.ts';
import { defaultSlaPolicy, type SlaPolicy } from '../domain/feedback/sla.ts';
import type { EventStore, ReadStreamOptions, RecordedEvent } from '../eventstore/contract.ts';
import { decodeRecordedEvent, type PersonalData } from '../eventstore/personal-data.ts';
import type { ProjectedEvent } from '../projections/projection.ts';
import type { AggregateKind } from './schemas.ts';

export interface AggregateStates {
  customer: CustomerState;
  deal: DealState;
  campaign: CampaignState;
  feedback: FeedbackState;
}

/** The fold side of a decider, erased to what loading needs. */
interface Folder<S> {
  prefix: string;
  initialState: () => S;
  evolve: (state: S, event: CrmEvent) => S;
}

export const streamPrefixes: Record<AggregateKind, string> = {
  customer: CustomerStreamPrefix,
  deal: DealStreamPrefix,
  campaign: CampaignStreamPrefix,
  feedback: FeedbackStreamPrefix,
};

export const streamOf = (kind: AggregateKind, id: string): string => `${streamPrefixes[kind]}${id}`;

export const aggregateFolders = (sla: SlaPolicy = defaultSlaPolicy): { [K in AggregateKind]: Folder<AggregateStates[K]> } => {
  const feedback = createFeedbackDecider(sla);
  return {
    customer: { prefix: CustomerStreamPrefix, initialState: customerDecider.initialState, evolve: customerDecider.evolve as Folder<CustomerState>['evolve'] },
    deal: { prefix: DealStreamPrefix, initialState: dealDecider.initialState, evolve: dealDecider.evolve as Folder<DealState>['evolve'] },
    campaign: { prefix: CampaignStreamPrefix, initialState: campaignDecider.initialState, evolve: campaignDecider.evolve as Folder<CampaignState>['evolve'] },
    feedback: { prefix: FeedbackStreamPrefix, initialState: feedback.initialState, evolve: feedback.evolve as Folder<FeedbackState>['evolve'] },
  };
};

export interface LoadedStream<S> {
  state: S;
  /** Revision of the last event folded; -1 when the stream has no events (up to the bound). */
  revision: number;
  /** Global position of the last event folded; 0n when none. */
  position: bigint;
  events: ProjectedEvent[];
  recorded: RecordedEvent[];
}

export interface LoadOptions {
  /** A revision (inclusive) or an instant (record time, inclusive): the state as it stood then. */
  asOf?: number | Date | string;
}

export const loadStream = async <K extends AggregateKind>(
  deps: { store: EventStore; personalData: PersonalData; folders: ReturnType<typeof aggregateFolders> },
  kind: K,
  id: string,
  options: LoadOptions = {},
): Promise<LoadedStream<AggregateStates[K]>> => {
  const folder = deps.folders[kind] as Folder<AggregateStates[K]>;
  const read: ReadStreamOptions = {};
  if (typeof options.asOf === 'number') read.untilRevision = options.asOf;
  else if (options.asOf !== undefined) read.untilTime = new Date(options.asOf);
  const recorded = await deps.store.readStream(streamOf(kind, id), read);
  const events: ProjectedEvent[] = [];
  for (const r of recorded) events.push(await decodeRecordedEvent(r, deps.personalData));
  const state = events.reduce((s, e) => folder.evolve(s, e.event), folder.initialState());
  const last = recorded.at(-1);
  return { state, revision: last?.revision ?? -1, position: last?.position ?? 0n, events, recorded };
};
