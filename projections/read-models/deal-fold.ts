import { dealProbability } from '../../domain/deal/decider.ts';
import type { DealStage } from '../../domain/deal/events.ts';
import type { ProjectedEvent } from '../../shared/events.ts';
import { divideRounded, minorOf, minorOfNumeric, numericOf, roundedMinorOf } from '../../shared/money.ts';
import { latest, occurredAt, type Instant } from './common.ts';

/**
 * A deal folded from its stream, written once: the live projection (deals.ts), rebuild and replay
 * store it as the `deals` row, and the auditor's point-in-time record (audit/records.ts) is read
 * from it.
 *
 * The probability and the weighted amount are computed here and stored as plain columns (the
 * weighted amount was an SQL generated column beside a float copy in the auditor's fold): the record
 * is folded in memory where SQL cannot run, so this is the one place that defines them for both.
 * Both are exact: the probability as `numeric(5,4)` stores it, the weighted amount as PostgreSQL's
 * `round(amount * probability, 4)` on integer ten-thousandths.
 */

/** The `deals` table's columns, typed (DEALS in deals.ts lists them in table order). */
export type DealRow = {
  deal_id: string;
  customer_id: string;
  title: string;
  stage: DealStage;
  /** Money: numeric(28,4) as PostgreSQL returns it ('500.2500'). */
  amount: string;
  currency: string;
  /** Business time the amount was stated (opened, changed, won): its base-currency conversion date. */
  amount_at: Instant;
  owner_id: string;
  /** numeric(5,4) as PostgreSQL returns it ('0.1000'): won 1, lost 0, else the override or the stage default. */
  probability: string;
  probability_override: string | null;
  /** round(amount x probability, 4), numeric(28,4). */
  weighted_amount: string;
  /** 'YYYY-MM-DD' (a `date`, which both engines read as its text). */
  expected_close_date: string;
  stage_entered_at: Instant;
  opened_at: Instant;
  closed_at: Instant | null;
  won_reason: string | null;
  lost_reason: string | null;
  revision: number;
  last_event_at: Instant;
  /**
   * The account owner of the deal's customer (of the primary after a merge), for visibility: set by the
   * projection from the customers' events (customer-owners.ts); this fold starts it at null and carries it along.
   */
  customer_owner_id: string | null;
};

/** A probability as `numeric(5,4)` stores it ('0.3500'), null kept. */
const probabilityText = (value: number | null): string | null => (value === null ? null : numericOf(roundedMinorOf(value)));

/** The figures derived from stage, override and amount: written with every change so the row never holds stale ones. */
const withFigures = (row: DealRow): DealRow => {
  const override = row.probability_override === null ? null : Number(row.probability_override);
  const probability = roundedMinorOf(dealProbability(row.stage, override));
  row.probability = numericOf(probability);
  row.weighted_amount = numericOf(divideRounded(minorOfNumeric(row.amount) * probability, 10_000n));
  return row;
};

/**
 * The deal after one event of its stream; undefined before it was opened. Pure: times are the
 * events' business times, and the row it is given is not changed.
 */
export function evolveDeal(state: DealRow | undefined, e: ProjectedEvent): DealRow | undefined {
  const { event } = e;
  const at = occurredAt(e);
  if (event.type === 'DealOpened') {
    const d = event.data;
    return withFigures({
      deal_id: d.dealId,
      customer_id: d.customerId,
      title: d.title,
      stage: d.stage,
      amount: numericOf(minorOf(d.amount)),
      currency: d.currency,
      amount_at: at,
      owner_id: d.ownerId,
      probability: '0.0000',
      probability_override: probabilityText(d.probabilityOverride),
      weighted_amount: '0.0000',
      expected_close_date: d.expectedCloseDate,
      stage_entered_at: d.stageEnteredAt ?? at,
      opened_at: at,
      closed_at: null,
      won_reason: null,
      lost_reason: null,
      revision: e.revision,
      last_event_at: at,
      customer_owner_id: null,
    });
  }
  if (!state) return state;
  const row: DealRow = { ...state };
  const enterStage = (stage: DealStage) => {
    row.stage = stage;
    row.stage_entered_at = at;
  };
  switch (event.type) {
    case 'DealTitleChanged':
      row.title = event.data.title;
      break;
    case 'DealAmountChanged':
      row.amount = numericOf(minorOf(event.data.amount));
      row.currency = event.data.currency;
      row.amount_at = at;
      break;
    case 'DealOwnerChanged':
      row.owner_id = event.data.ownerId;
      break;
    case 'DealExpectedCloseChanged':
      row.expected_close_date = event.data.expectedCloseDate;
      break;
    case 'DealProbabilityOverridden':
      row.probability_override = probabilityText(event.data.probabilityOverride);
      break;
    case 'DealStageChanged':
      enterStage(event.data.to);
      break;
    case 'DealWon':
      enterStage('won');
      row.amount = numericOf(minorOf(event.data.amount));
      row.currency = event.data.currency;
      row.amount_at = at;
      row.closed_at = at;
      row.won_reason = e.metadata.reason ?? null;
      row.lost_reason = null;
      break;
    case 'DealLost':
      enterStage('lost');
      row.closed_at = at;
      row.lost_reason = event.data.reason;
      row.won_reason = null;
      break;
    case 'DealReopened':
      enterStage(event.data.to);
      row.closed_at = null;
      row.won_reason = null;
      row.lost_reason = null;
      break;
    default:
      // Not an event of a deal stream: the deal is unchanged.
      return state;
  }
  row.revision = e.revision;
  // The latest business time, not the last folded: a change dated back does not make the deal look stale.
  row.last_event_at = latest(row.last_event_at, at);
  return withFigures(row);
}
