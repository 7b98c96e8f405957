import { CampaignStreamPrefix } from '../domain/campaign/events.ts';
import { decodeRecordedEvent } from '../eventstore/personal-data.ts';
import type { AuditDeps } from './deps.ts';
import { readEventLog, type Page } from './history.ts';

/**
 * Campaign responses one by one, read from the events: the campaigns read model keeps counts by kind,
 * not each response, so the responses export (`GET /responses/export`, `crm export responses`) reads
 * the log, a page of response events at a time in log order, as a responses import takes them.
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

export interface CampaignResponseQuery {
  /** One campaign's responses. */
  campaignId?: string;
  /** Business time range, inclusive. */
  from?: string;
  to?: string;
  limit?: number;
  /** The log position of the last response of the page before. */
  cursor?: string;
}

export async function campaignResponses(deps: AuditDeps, query: CampaignResponseQuery): Promise<Page<CampaignResponseView>> {
  const limit = query.limit ?? 500;
  // The log as the audit trail reads it: every committed response, in log order.
  const events = await readEventLog(
    deps,
    { types: ['CampaignResponseRecorded'], stream: query.campaignId ? `${CampaignStreamPrefix}${query.campaignId}` : CampaignStreamPrefix },
    query.cursor ? BigInt(query.cursor) : undefined,
    limit,
    'forwards',
  );
  const from = query.from ? Date.parse(query.from) : -Infinity;
  const to = query.to ? Date.parse(query.to) : Infinity;
  const items: CampaignResponseView[] = [];
  for (const recorded of events) {
    const { event, metadata } = await decodeRecordedEvent(recorded, deps.personalData);
    if (event.type !== 'CampaignResponseRecorded') continue;
    const at = Date.parse(metadata.occurredAt);
    if (at < from || at > to) continue;
    const d = event.data;
    items.push({
      campaignId: d.campaignId,
      customerId: d.customerId,
      response: d.kind,
      revenue: d.revenue,
      currency: d.currency,
      occurredAt: new Date(at).toISOString(),
    });
  }
  return { items, nextCursor: events.length === limit ? events.at(-1)!.position.toString() : null };
}
