import type { CampaignStatus, ResponseKind } from '../../domain/campaign/events.ts';
import type { ProjectedEvent } from '../../shared/events.ts';
import { addMoney, divideRounded, minorOf, minorOfNumeric, numericOf, subtractMoney } from '../../shared/money.ts';
import { latest, occurredAt, type Instant } from './common.ts';
import { nameSortOf } from './name-sort.ts';

/**
 * A campaign folded from its stream, written once: the live projection (campaigns.ts), rebuild and
 * replay store it as the `campaigns` row, and the auditor's point-in-time record (audit/records.ts)
 * is read from it.
 *
 * ROI, conversion rate and over-budget are computed here and stored as plain columns (they were SQL
 * generated columns): the auditor's record is folded in memory, where SQL cannot run, so this is the
 * one place that can define them for both. `ratioOf` reproduces PostgreSQL's `round(numeric, 6)`
 * exactly (integer arithmetic on ten-thousandths, half away from zero, six decimals as stored).
 */

/** The `campaigns` table's columns, typed (CAMPAIGNS in campaigns.ts lists them in table order). */
export type CampaignRow = {
  campaign_id: string;
  name: string;
  /** Where the name sorts in `?sort=name` (name-sort.ts `nameSortOf`). */
  name_sort: string;
  channel: string;
  status: CampaignStatus;
  /** Money: numeric(28,4) as PostgreSQL returns it ('5000.0000'). */
  budget: string;
  currency: string;
  starts_at: Instant | null;
  ends_at: Instant | null;
  target_segment: Record<string, unknown>;
  /** Every cost at its current amount: as recorded, or as its latest correction set it. */
  costs: string;
  sent_count: number;
  opened_count: number;
  clicked_count: number;
  converted_count: number;
  unsubscribed_count: number;
  /** Conversions in the campaign's currency (or with none given); every currency is in `campaign_money_lines`. */
  revenue: string;
  /** (revenue - costs) / costs, six decimals; null without costs. */
  roi: string | null;
  /** converted / sent, six decimals; null before anything was sent. */
  conversion_rate: string | null;
  /** Costs beyond the budget (accepted only with `allowOverBudget`). */
  over_budget: boolean;
  created_at: Instant;
  launched_at: Instant | null;
  completed_at: Instant | null;
  cancelled_at: Instant | null;
  revision: number;
  last_event_at: Instant;
};

const COUNT_COLUMNS = {
  sent: 'sent_count',
  opened: 'opened_count',
  clicked: 'clicked_count',
  converted: 'converted_count',
  unsubscribed: 'unsubscribed_count',
} as const satisfies Record<ResponseKind, keyof CampaignRow>;

const PLACES = 6;
const SCALE = 10n ** BigInt(PLACES);

/**
 * `round(numerator / denominator, 6)` as PostgreSQL's numeric gives it, as its text ('0.714286',
 * '-1.000000'): the exact quotient rounded half away from zero, never a float in between.
 */
export const ratioOf = (numerator: bigint, denominator: bigint): string => {
  const scaled = divideRounded(numerator * SCALE, denominator);
  const abs = scaled < 0n ? -scaled : scaled;
  const text = `${abs / SCALE}.${String(abs % SCALE).padStart(PLACES, '0')}`;
  return scaled < 0n ? `-${text}` : text;
};

/** The figures derived from the sums: written with every change so the row never holds stale ones. */
const withFigures = (row: CampaignRow): CampaignRow => {
  const costs = minorOfNumeric(row.costs);
  const revenue = minorOfNumeric(row.revenue);
  row.roi = costs > 0n ? ratioOf(revenue - costs, costs) : null;
  row.conversion_rate = row.sent_count > 0 ? ratioOf(BigInt(row.converted_count), BigInt(row.sent_count)) : null;
  row.over_budget = costs > minorOfNumeric(row.budget);
  return row;
};

/**
 * The campaign after one event of its stream; undefined before it was created. Pure: times are the
 * events' business times, and the row it is given is not changed.
 */
export function evolveCampaign(state: CampaignRow | undefined, e: ProjectedEvent): CampaignRow | undefined {
  const { event } = e;
  const at = occurredAt(e);
  if (event.type === 'CampaignCreated') {
    const d = event.data;
    return withFigures({
      campaign_id: d.campaignId,
      name: d.name,
      name_sort: nameSortOf(d.name),
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
      roi: null,
      conversion_rate: null,
      over_budget: false,
      created_at: at,
      launched_at: null,
      completed_at: null,
      cancelled_at: null,
      revision: e.revision,
      last_event_at: at,
    });
  }
  if (!state) return state;
  const row: CampaignRow = { ...state };
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
      break;
    // The cost stands at its corrected amount in place of the one it had (the event carries both).
    case 'CampaignCostCorrected':
      row.costs = addMoney(subtractMoney(row.costs, event.data.previousAmount), event.data.amount);
      break;
    case 'CampaignResponseRecorded': {
      const d = event.data;
      const column = COUNT_COLUMNS[d.kind];
      row[column] += 1;
      if (d.revenue !== null && (d.currency === null || d.currency === row.currency)) row.revenue = addMoney(row.revenue, d.revenue);
      break;
    }
    default:
      // Not an event of a campaign stream: the campaign is unchanged.
      return state;
  }
  row.revision = e.revision;
  // Never back: a response or cost dated before the last change (history imported late) leaves it.
  row.last_event_at = latest(row.last_event_at, at);
  return withFigures(row);
}
