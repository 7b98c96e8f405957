import { CampaignStreamPrefix, type CampaignEvent } from '../domain/campaign/events.ts';
import type { CrmEvent } from '../domain/catalogue.ts';
import { readStoredEvent } from '../eventstore/unreadable-event.ts';
import type { AuditDeps } from './deps.ts';
import { readEventLog, type Page } from './history.ts';

/**
 * Campaign responses and costs one by one, read from the events: the campaigns read model keeps
 * counts by kind and sums, not each response or invoice, so their exports (`GET /responses/export`,
 * `GET /costs/export`, `crm export responses|costs`) read the log, a page of such events at a time in
 * log order, as the matching import takes them. A cost is exported as it stands: at its corrected
 * amount when it was corrected, and left out when voided (corrected to 0), so that the file imported
 * again finds each cost already there, and imported elsewhere records the costs the campaign has.
 */

export type CampaignResponseView = {
  campaignId: string;
  customerId: string;
  response: string;
  /** A conversion's revenue in its currency; null for every other kind. */
  revenue: number | null;
  currency: string | null;
  occurredAt: string;
};

export type CampaignCostView = {
  campaignId: string;
  costId: string;
  amount: number;
  currency: string;
  description: string | null;
  occurredAt: string;
};

export interface CampaignRecordQuery {
  /** One campaign's records. */
  campaignId?: string;
  /** Business time range, inclusive. */
  from?: string;
  to?: string;
  limit?: number;
  /** The log position of the last record of the page before. */
  cursor?: string;
}

/** Events of one type from the campaign streams, each as `view` shows it (at its business time), in a business-time range. */
async function campaignRecords<T>(
  deps: AuditDeps,
  type: CampaignEvent['type'],
  query: CampaignRecordQuery,
  view: (event: CrmEvent, occurredAt: string) => T | undefined,
): Promise<Page<T>> {
  const limit = query.limit ?? 500;
  // The log as the audit trail reads it: every committed event of the type, in log order.
  const events = await readEventLog(
    deps,
    { types: [type], stream: query.campaignId ? `${CampaignStreamPrefix}${query.campaignId}` : CampaignStreamPrefix },
    query.cursor ? BigInt(query.cursor) : undefined,
    limit,
    'forwards',
  );
  const from = query.from ? Date.parse(query.from) : -Infinity;
  const to = query.to ? Date.parse(query.to) : Infinity;
  const items: T[] = [];
  for (const recorded of events) {
    const { event, metadata } = await readStoredEvent(recorded, deps.personalData);
    const at = Date.parse(metadata.occurredAt);
    if (at < from || at > to) continue;
    const item = view(event, new Date(at).toISOString());
    if (item !== undefined) items.push(item);
  }
  return { items, nextCursor: events.length === limit ? events.at(-1)!.position.toString() : null };
}

export const campaignResponses = (deps: AuditDeps, query: CampaignRecordQuery): Promise<Page<CampaignResponseView>> =>
  campaignRecords(deps, 'CampaignResponseRecorded', query, (event, occurredAt) =>
    event.type === 'CampaignResponseRecorded'
      ? {
          campaignId: event.data.campaignId,
          customerId: event.data.customerId,
          response: event.data.kind,
          revenue: event.data.revenue,
          currency: event.data.currency,
          occurredAt,
        }
      : undefined,
  );

/** The costs as recorded, before their corrections. */
const recordedCosts = (deps: AuditDeps, query: CampaignRecordQuery): Promise<Page<CampaignCostView>> =>
  campaignRecords(deps, 'CampaignCostRecorded', query, (event, occurredAt) =>
    event.type === 'CampaignCostRecorded'
      ? {
          campaignId: event.data.campaignId,
          costId: event.data.costId,
          amount: event.data.amount,
          currency: event.data.currency,
          description: event.data.description,
          occurredAt,
        }
      : undefined,
  );

/** Log positions read per round trip when looking for corrections. */
const CORRECTIONS_PAGE = 1000;

const costKey = (campaignId: string, costId: string): string => JSON.stringify([campaignId, costId]);

/** The latest corrected amount of each corrected cost of these campaigns, by `costKey`. */
async function correctedAmounts(deps: AuditDeps, campaignIds: readonly string[]): Promise<Map<string, number>> {
  const amounts = new Map<string, number>();
  const within = { streams: campaignIds.map((id) => `${CampaignStreamPrefix}${id}`), prefixes: [] };
  let after: bigint | undefined;
  for (;;) {
    const events = await readEventLog(deps, { types: ['CampaignCostCorrected'], within }, after, CORRECTIONS_PAGE, 'forwards');
    for (const recorded of events) {
      const { event } = await readStoredEvent(recorded, deps.personalData);
      if (event.type === 'CampaignCostCorrected') amounts.set(costKey(event.data.campaignId, event.data.costId), event.data.amount);
    }
    if (events.length < CORRECTIONS_PAGE) return amounts;
    after = events.at(-1)!.position;
  }
}

export const campaignCosts = async (deps: AuditDeps, query: CampaignRecordQuery): Promise<Page<CampaignCostView>> => {
  const page = await recordedCosts(deps, query);
  if (page.items.length === 0) return page;
  const corrected = await correctedAmounts(deps, [...new Set(page.items.map((cost) => cost.campaignId))]);
  const items = page.items.flatMap((cost) => {
    const amount = corrected.get(costKey(cost.campaignId, cost.costId));
    if (amount === undefined) return [cost];
    return amount === 0 ? [] : [{ ...cost, amount }];
  });
  return { ...page, items };
};
