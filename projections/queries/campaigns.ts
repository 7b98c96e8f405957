import { sql, type RawBuilder } from 'kysely';
import { baseAmount, baseCurrencyOf, baseSums, convertedLines, missingRatesOf, unlessRebuilding } from './exchange-rates.ts';
import { iso, listOf, NAME_ORDER, num, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';
import { ratioOf, type CampaignRow } from '../read-models/campaign-fold.ts';
import { minorOfNumeric } from '../../shared/money.ts';
import { inOneSnapshot } from './snapshot.ts';

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
};

/** A `campaigns` row as the queries read it: the fold's row (jsonb, should a driver give it as text). */
type CampaignQueryRow = Omit<CampaignRow, 'target_segment'> & { target_segment: CampaignRow['target_segment'] | string };

/** What a campaign's own row says, named as the API names it: the view's fields but the revision. */
export type CampaignFields = Omit<CampaignView, 'revision'>;

/** The one naming of a campaign row's fields: the view reads it, and so does the auditor's record as of an instant. */
export const campaignFieldsOf = (r: CampaignQueryRow): CampaignFields => ({
  id: r.campaign_id,
  name: r.name,
  channel: r.channel,
  status: r.status,
  budget: Number(r.budget),
  currency: r.currency.trim(),
  startsAt: iso(r.starts_at),
  endsAt: iso(r.ends_at),
  targetSegment: typeof r.target_segment === 'string' ? (JSON.parse(r.target_segment) as CampaignRow['target_segment']) : r.target_segment,
  costs: Number(r.costs),
  responses: {
    sent: r.sent_count,
    opened: r.opened_count,
    clicked: r.clicked_count,
    converted: r.converted_count,
    unsubscribed: r.unsubscribed_count,
  },
  conversions: r.converted_count,
  revenue: Number(r.revenue),
  roi: num(r.roi),
  conversionRate: num(r.conversion_rate),
  overBudget: r.over_budget,
  createdAt: iso(r.created_at)!,
  launchedAt: iso(r.launched_at),
  completedAt: iso(r.completed_at),
  cancelledAt: iso(r.cancelled_at),
  updatedAt: iso(r.last_event_at)!,
});

const toCampaignView = (r: CampaignQueryRow): CampaignView => ({ ...campaignFieldsOf(r), revision: r.revision });

const sorts: Record<string, SortSpec> = {
  name: NAME_ORDER,
  createdAt: { expr: sql`t.created_at`, type: 'timestamptz' },
  roi: { expr: sql`COALESCE(t.roi, -1e30)`, type: 'numeric' },
  revenue: { expr: sql`t.revenue`, type: 'numeric' },
};
/** The tables of the previous version, which keep serving while the new ones are rebuilt, have no `name_sort`. */
const FORMER_SORTS: Record<string, SortSpec> = { ...sorts, name: { expr: sql`lower(t.name)`, type: 'text' } };

/**
 * `GET /campaigns`: filters by status and channel. Each campaign with its money in the base currency
 * (as `GET /campaigns/:id` has it, but `revenueByCurrency`), read in the page's snapshot: a list showing
 * only the campaign-currency figures showed -100% for a campaign whose conversions came in another currency.
 */
export async function listCampaigns(
  source: ReadModelSource,
  query: { status?: string; channel?: string; sort?: string; limit?: number; cursor?: string } = {},
): Promise<Page<CampaignView & CampaignListInBase>> {
  const where: RawBuilder<unknown>[] = [];
  if (query.status) where.push(sql`t.status = ${query.status}`);
  if (query.channel) where.push(sql`t.channel = ${query.channel}`);
  const list = (sorted: Record<string, SortSpec>) =>
    inOneSnapshot(source, async (snapshot) => {
      const page = await listOf(
        { source: snapshot, table: 'campaigns', key: 'campaign_id', where, sorts: sorted, defaultSort: '-createdAt' },
        query,
        toCampaignView,
      );
      const ids = page.items.map((c) => c.id);
      const base = await unlessRebuilding(
        () => baseFiguresOf(snapshot, ids),
        () => new Map<string, CampaignListInBase>(),
      );
      return { ...page, items: page.items.map((c) => ({ ...c, ...(base.get(c.id) ?? noBaseFigures(source)) })) };
    });
  return unlessRebuilding(
    () => list(sorts),
    () => list(FORMER_SORTS),
  );
}

/** A campaign's money in the base currency (GET /campaigns/:id). */
export type CampaignInBase = {
  baseCurrency: string;
  /** Revenue of conversions in every currency they were paid in, major units. */
  revenueByCurrency: Record<string, number>;
  /** Each cost and conversion converted at the rate valid at its business time; null while a rate is missing. */
  costsBase: number | null;
  revenueBase: number | null;
  /** (revenueBase - costsBase) / costsBase, 6 decimals; null without costs or while a rate is missing. */
  roiBase: number | null;
  missingRates: string[];
};

/** The base-currency figures a list gives of each campaign. */
export type CampaignListInBase = Omit<CampaignInBase, 'revenueByCurrency'>;

/** While the read models are rebuilt after an upgrade: no base figures yet. */
const noBaseFigures = (source: ReadModelSource): CampaignListInBase => ({
  baseCurrency: baseCurrencyOf(source),
  costsBase: null,
  revenueBase: null,
  roiBase: null,
  missingRates: [],
});

/** Costs, revenue and ROI in the base currency of each campaign of `ids`, in one query. */
async function baseFiguresOf(source: ReadModelSource, ids: readonly string[]): Promise<Map<string, CampaignListInBase>> {
  if (ids.length === 0) return new Map();
  const lines = convertedLines(source, 'campaign_money_lines', sql`l.campaign_id = ANY(CAST(${[...ids]} AS uuid[]))`);
  const { rows } = await sql<{
    campaign_id: string;
    kind: 'cost' | 'revenue';
    base_amount: string | null;
    missing_rates: string[];
  }>`SELECT y.campaign_id::text AS campaign_id, y.kind, ${baseSums(['base_amount'])} FROM ${lines} GROUP BY y.campaign_id, y.kind`.execute(source.db);
  return new Map(
    ids.map((id) => {
      const kind = (k: string) => rows.find((r) => r.campaign_id === id && r.kind === k);
      // Nothing recorded of a kind sums to 0.
      const total = (k: string) => (kind(k) ? baseAmount(kind(k)!.base_amount) : 0);
      const costs = total('cost');
      const revenue = total('revenue');
      // The ratio of the exact sums (four decimals at most), rounded as the fold and the reporting view round it.
      const exact = (k: string) => minorOfNumeric(kind(k)?.base_amount ?? '0');
      const figures: CampaignListInBase = {
        baseCurrency: baseCurrencyOf(source),
        costsBase: costs,
        revenueBase: revenue,
        roiBase: costs === null || revenue === null || costs === 0 ? null : Number(ratioOf(exact('revenue') - exact('cost'), exact('cost'))),
        missingRates: [...new Set(rows.filter((r) => r.campaign_id === id).flatMap((r) => missingRatesOf(r.missing_rates)))].sort(),
      };
      return [id, figures];
    }),
  );
}

export async function campaignInBase(source: ReadModelSource, id: string): Promise<CampaignInBase> {
  const lines = convertedLines(source, 'campaign_money_lines', sql`l.campaign_id = ${uuidOf(id)}`);
  // The ids the rows name are in lower case: an id asked in upper case names the same campaign.
  id = id.toLowerCase();
  const [figures, byCurrency] = await Promise.all([
    baseFiguresOf(source, [id]),
    sql<{
      currency: string;
      amount: string;
    }>`SELECT rtrim(y.currency) AS currency, sum(y.amount)::text AS amount FROM ${lines} WHERE y.kind = 'revenue' GROUP BY 1 ORDER BY 1`.execute(source.db),
  ]);
  const { baseCurrency, ...rest } = figures.get(id) ?? noBaseFigures(source);
  return { baseCurrency, revenueByCurrency: Object.fromEntries(byCurrency.rows.map((r) => [r.currency, Number(r.amount)])), ...rest };
}

/** `GET /campaigns/:id`; undefined when unknown. */
export async function getCampaign(source: ReadModelSource, id: string): Promise<(CampaignView & CampaignInBase) | undefined> {
  // The row and its money in the base currency from one snapshot, so that they agree.
  return inOneSnapshot(source, async (snapshot) => {
    const row = await rowById<CampaignQueryRow>(snapshot, 'campaigns', 'campaign_id', id);
    if (!row) return undefined;
    const base = await unlessRebuilding(
      () => campaignInBase(snapshot, id),
      (): CampaignInBase => ({ ...noBaseFigures(source), revenueByCurrency: {} }),
    );
    return { ...toCampaignView(row), ...base };
  });
}
