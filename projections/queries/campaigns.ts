import { sql } from 'kysely';
import { iso, listOf, num, type Page, type ReadModelSource, rowById, type SortSpec } from './page.ts';

export type CampaignView = {
  id: string;
  name: string;
  channel: string;
  status: string;
  budget: number;
  currency: string;
  startsAt: string | null;
  endsAt: string | null;
  targetSegment: Record<string, unknown>;
  costs: number;
  responses: { sent: number; opened: number; clicked: number; converted: number; unsubscribed: number };
  conversions: number;
  revenue: number;
  /** (revenue - costs) / costs; null without costs. */
  roi: number | null;
  /** converted / sent; null before anything was sent. */
  conversionRate: number | null;
  /** Costs beyond the budget (recorded with allowOverBudget). */
  overBudget: boolean;
  createdAt: string;
  launchedAt: string | null;
  completedAt: string | null;
  cancelledAt: string | null;
  revision: number;
  updatedAt: string;
}

const toCampaignView = (r: Record<string, any>): CampaignView => ({
  id: r.campaign_id,
  name: r.name,
  channel: r.channel,
  status: r.status,
  budget: num(r.budget)!,
  currency: String(r.currency).trim(),
  startsAt: iso(r.starts_at),
  endsAt: iso(r.ends_at),
  targetSegment: typeof r.target_segment === 'string' ? JSON.parse(r.target_segment) : (r.target_segment ?? {}),
  costs: num(r.costs)!,
  responses: {
    sent: Number(r.sent_count),
    opened: Number(r.opened_count),
    clicked: Number(r.clicked_count),
    converted: Number(r.converted_count),
    unsubscribed: Number(r.unsubscribed_count),
  },
  conversions: Number(r.converted_count),
  revenue: num(r.revenue)!,
  roi: num(r.roi),
  conversionRate: num(r.conversion_rate),
  overBudget: r.over_budget === true,
  createdAt: iso(r.created_at)!,
  launchedAt: iso(r.launched_at),
  completedAt: iso(r.completed_at),
  cancelledAt: iso(r.cancelled_at),
  revision: Number(r.revision),
  updatedAt: iso(r.last_event_at)!,
});

const sorts: Record<string, SortSpec> = {
  name: { expr: sql`lower(t.name)`, type: 'text' },
  createdAt: { expr: sql`t.created_at`, type: 'timestamptz' },
  roi: { expr: sql`COALESCE(t.roi, -1e30)`, type: 'numeric' },
  revenue: { expr: sql`t.revenue`, type: 'numeric' },
};

/** `GET /campaigns`: filters by status and channel. */
export async function listCampaigns(
  source: ReadModelSource,
  query: { status?: string; channel?: string; sort?: string; limit?: number; cursor?: string } = {},
): Promise<Page<CampaignView>> {
  const where = [];
  if (query.status) where.push(sql`t.status = ${query.status}`);
  if (query.channel) where.push(sql`t.channel = ${query.channel}`);
  return listOf({ source, table: 'campaigns', key: 'campaign_id', where, sorts, defaultSort: '-createdAt' }, query, toCampaignView);
}

/** `GET /campaigns/:id`; undefined when unknown. */
export async function getCampaign(source: ReadModelSource, id: string): Promise<CampaignView | undefined> {
  const row = await rowById(source, 'campaigns', 'campaign_id', id);
  return row ? toCampaignView(row) : undefined;
}
