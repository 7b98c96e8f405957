import { sql, type Kysely } from 'kysely';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { idsOf, occurredAt } from './common.ts';
import { addMoney, MONEY_TYPE, numericOf, minorOf } from '../../shared/money.ts';
import { ensureSchema, insertRows, RowSet, type Row, type TableSpec } from './rows.ts';

/**
 * `campaign_money_lines`: every cost and every conversion's revenue in its own currency with its
 * business time, so revenue, costs and ROI can be given in the base currency, each line converted at
 * the rate valid then (projections/queries/exchange-rates.ts). Append-only.
 */
export const CAMPAIGN_MONEY_LINES: TableSpec = {
  table: 'campaign_money_lines',
  key: 'event_id',
  keyType: 'uuid',
  columns: ['event_id', 'campaign_id', 'kind', 'currency', 'amount', 'occurred_at'],
};

/**
 * `campaigns`: one row per campaign with its spend and results. ROI and conversion rate are
 * generated columns: ROI = (revenue - costs) / costs (null without costs); conversion rate =
 * converted / sent (null before anything was sent). Revenue counts conversions in the campaign's
 * currency (or with no currency given). `over_budget` (generated): costs beyond the budget, which
 * the command side accepts only with `allowOverBudget`.
 */
export const CAMPAIGNS: TableSpec = {
  table: 'campaigns',
  key: 'campaign_id',
  columns: [
    'campaign_id',
    'name',
    'channel',
    'status',
    'budget',
    'currency',
    'starts_at',
    'ends_at',
    'target_segment',
    'costs',
    'sent_count',
    'opened_count',
    'clicked_count',
    'converted_count',
    'unsubscribed_count',
    'revenue',
    'created_at',
    'launched_at',
    'completed_at',
    'cancelled_at',
    'revision',
    'last_event_at',
  ],
};

async function migrate(db: Kysely<any>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'campaigns');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    campaign_id uuid PRIMARY KEY,
    name text NOT NULL,
    channel text NOT NULL,
    status text NOT NULL CHECK (status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled')),
    budget ${sql.raw(MONEY_TYPE)} NOT NULL,
    currency char(3) NOT NULL,
    starts_at timestamptz,
    ends_at timestamptz,
    target_segment jsonb NOT NULL,
    costs ${sql.raw(MONEY_TYPE)} NOT NULL DEFAULT 0,
    sent_count integer NOT NULL DEFAULT 0,
    opened_count integer NOT NULL DEFAULT 0,
    clicked_count integer NOT NULL DEFAULT 0,
    converted_count integer NOT NULL DEFAULT 0,
    unsubscribed_count integer NOT NULL DEFAULT 0,
    revenue ${sql.raw(MONEY_TYPE)} NOT NULL DEFAULT 0,
    roi numeric GENERATED ALWAYS AS (CASE WHEN costs > 0 THEN round((revenue - costs) / costs, 6) END) STORED,
    conversion_rate numeric GENERATED ALWAYS AS (CASE WHEN sent_count > 0 THEN round(converted_count::numeric / sent_count, 6) END) STORED,
    over_budget boolean GENERATED ALWAYS AS (costs > budget) STORED,
    created_at timestamptz NOT NULL,
    launched_at timestamptz,
    completed_at timestamptz,
    cancelled_at timestamptz,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL
  ) WITH (fillfactor = 80)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS campaigns_status_idx ON ${t} (status)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS campaigns_created_idx ON ${t} (created_at, campaign_id)`.execute(db);
  // Sort keys of GET /campaigns (projections/queries/campaigns.ts) with the id as tie-breaker.
  await sql`CREATE INDEX IF NOT EXISTS campaigns_sort_name_idx ON ${t} (lower(name), campaign_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS campaigns_sort_revenue_idx ON ${t} (revenue, campaign_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS campaigns_sort_roi_idx ON ${t} ((COALESCE(roi, -1e30)), campaign_id)`.execute(db);
  const lines = sql.id(schema, 'campaign_money_lines');
  await sql`CREATE TABLE IF NOT EXISTS ${lines} (
    event_id uuid PRIMARY KEY,
    campaign_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('cost', 'revenue')),
    currency char(3) NOT NULL,
    amount ${sql.raw(MONEY_TYPE)} NOT NULL,
    occurred_at timestamptz NOT NULL
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS campaign_money_lines_campaign_idx ON ${lines} (campaign_id)`.execute(db);
}

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const campaigns = new RowSet(trx, schema, CAMPAIGNS);
  const moneyLines: Row[] = [];
  await campaigns.load(idsOf(events, 'campaignId'));
  for (const e of events) {
    const { event } = e;
    const at = occurredAt(e);
    if (event.type === 'CampaignCreated') {
      const d = event.data;
      campaigns.put({
        campaign_id: d.campaignId,
        name: d.name,
        channel: d.channel,
        status: 'draft',
        budget: numericOf(minorOf(d.budget)),
        currency: d.currency,
        starts_at: d.schedule?.startsAt ?? null,
        ends_at: d.schedule?.endsAt ?? null,
        target_segment: d.targetSegment,
        costs: '0.0000',
        sent_count: 0,
        opened_count: 0,
        clicked_count: 0,
        converted_count: 0,
        unsubscribed_count: 0,
        revenue: '0.0000',
        created_at: at,
        launched_at: null,
        completed_at: null,
        cancelled_at: null,
        revision: e.revision,
        last_event_at: at,
      });
      continue;
    }
    const id = (event.data as { campaignId?: string }).campaignId;
    const row = id ? campaigns.get(id) : undefined;
    if (!row || !id) continue;
    switch (event.type) {
      case 'CampaignScheduled':
        row.status = 'scheduled';
        row.starts_at = event.data.startsAt;
        row.ends_at = event.data.endsAt;
        break;
      case 'CampaignLaunched':
        row.status = 'active';
        row.launched_at ??= at;
        break;
      case 'CampaignPaused':
        row.status = 'paused';
        break;
      case 'CampaignResumed':
        row.status = 'active';
        break;
      case 'CampaignCompleted':
        row.status = 'completed';
        row.completed_at = at;
        break;
      case 'CampaignCancelled':
        row.status = 'cancelled';
        row.cancelled_at = at;
        break;
      case 'CampaignCostRecorded':
        row.costs = addMoney(row.costs, event.data.amount);
        moneyLines.push({ event_id: e.id, campaign_id: id, kind: 'cost', currency: event.data.currency, amount: numericOf(minorOf(event.data.amount)), occurred_at: at });
        break;
      case 'CampaignResponseRecorded': {
        const d = event.data;
        const column = `${d.kind}_count`;
        row[column] = Number(row[column]) + 1;
        if (d.revenue !== null && (d.currency === null || d.currency === String(row.currency).trim())) {
          row.revenue = addMoney(row.revenue, d.revenue);
        }
        if (d.revenue !== null) {
          const currency = d.currency ?? String(row.currency).trim();
          moneyLines.push({ event_id: e.id, campaign_id: id, kind: 'revenue', currency, amount: numericOf(minorOf(d.revenue)), occurred_at: at });
        }
        break;
      }
      default:
        continue;
    }
    row.revision = e.revision;
    row.last_event_at = at;
    campaigns.touch(id);
  }
  await campaigns.flush();
  if (moneyLines.length > 0) await insertRows(trx, schema, CAMPAIGN_MONEY_LINES, moneyLines);
}

export const campaignsProjection: Projection = {
  name: 'campaigns',
  // 2: the over_budget column.
  // 3: `campaign_money_lines` (costs and revenue in every currency, for base-currency figures).
  version: 3,
  tables: ['campaigns', 'campaign_money_lines'],
  filter: { streamPrefixes: ['campaign-'] },
  migrate,
  apply,
  reportingViews: viewsOf('campaigns'),
};
