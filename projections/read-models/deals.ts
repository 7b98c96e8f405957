import { sql, type Kysely } from 'kysely';
import { dealProbability } from '../../domain/deal/decider.ts';
import { dealEventSchemas, type DealStage } from '../../domain/deal/events.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { idsOf, occurredAt } from './common.ts';
import { CUSTOMER_OWNER_EVENTS, CustomerOwners, customerOwnersTable, migrateCustomerOwners } from './customer-owners.ts';
import { MONEY_TYPE, numericOf, minorOf } from '../../shared/money.ts';
import { ensureSchema, RowSet, type Row, type TableSpec } from './rows.ts';
import { applyPipelineChanges, migratePipeline, PIPELINE_MONTHS, PIPELINE_STAGES, pipelineShareOf } from './pipeline.ts';

/**
 * `deals`: one row per deal. `amount_at` is the business time the amount was last stated (opened,
 * changed, won): the base-currency figures convert it at the rate valid then. `weighted_amount` (amount x probability) is a generated column so it
 * can never disagree with its parts; days in stage is computed at query time from `stage_entered_at`.
 * `customer_owner_id` is the account owner of the deal's customer (of the primary after a merge), kept
 * current from the customers' events (customer-owners.ts) for `own`/`team` visibility.
 */
export const DEALS: TableSpec = {
  table: 'deals',
  key: 'deal_id',
  columns: [
    'deal_id',
    'customer_id',
    'title',
    'stage',
    'amount',
    'currency',
    'amount_at',
    'owner_id',
    'probability',
    'probability_override',
    'expected_close_date',
    'stage_entered_at',
    'opened_at',
    'closed_at',
    'won_reason',
    'lost_reason',
    'revision',
    'last_event_at',
    'customer_owner_id',
  ],
  dateColumns: ['expected_close_date'],
};

/** The columns GET /deals sorts by (projections/queries/deals.ts), by index name. */
const SORT_COLUMNS = { opened: 'opened_at', expected_close: 'expected_close_date', amount: 'amount', updated: 'last_event_at' } as const;

export const DEAL_CUSTOMER_OWNERS = customerOwnersTable('deal');

async function migrate(db: Kysely<any>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'deals');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    deal_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    title text NOT NULL,
    stage text NOT NULL CHECK (stage IN ('lead', 'qualified', 'proposal', 'negotiation', 'won', 'lost')),
    amount ${sql.raw(MONEY_TYPE)} NOT NULL,
    currency char(3) NOT NULL,
    amount_at timestamptz NOT NULL,
    owner_id text NOT NULL,
    probability numeric(5,4) NOT NULL,
    probability_override numeric(5,4),
    weighted_amount ${sql.raw(MONEY_TYPE)} GENERATED ALWAYS AS (round(amount * probability, 4)) STORED,
    expected_close_date date NOT NULL,
    stage_entered_at timestamptz NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    won_reason text,
    lost_reason text,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL,
    customer_owner_id uuid
  ) WITH (fillfactor = 80)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_stage_idx ON ${t} (stage)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_customer_idx ON ${t} (customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_expected_close_idx ON ${t} (expected_close_date)`.execute(db);
  // Sort keys of GET /deals (projections/queries/deals.ts) with the id as tie-breaker: keyset pages use the index.
  await sql`CREATE INDEX IF NOT EXISTS deals_sort_expected_close_idx ON ${t} (expected_close_date, deal_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_sort_amount_idx ON ${t} (amount, deal_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_sort_updated_idx ON ${t} (last_event_at, deal_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS deals_sort_opened_idx ON ${t} (opened_at, deal_id)`.execute(db);
  // Visibility: a deal is in a scope through its owner or its customer's owner. Each sort key behind
  // either owner column, so a restricted page merges one index range per owner and column.
  for (const owner of ['owner_id', 'customer_owner_id']) {
    for (const [name, sort] of Object.entries(SORT_COLUMNS)) {
      await sql`CREATE INDEX IF NOT EXISTS ${sql.id(`deals_${owner.replace('_id', '')}_${name}_idx`)} ON ${t} (${sql.id(owner)}, ${sql.id(sort)}, deal_id)`.execute(
        db,
      );
    }
  }
  await migrateCustomerOwners(db, schema, DEAL_CUSTOMER_OWNERS);
  await migratePipeline(db, schema);
}

/** The domain's rule (won 1, lost 0, else the override or the stage default), as a numeric literal. */
const probabilityOf = (stage: DealStage, override: unknown): string =>
  String(dealProbability(stage, override === null || override === undefined ? null : Number(override)));

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const deals = new RowSet(trx, schema, DEALS);
  const owners = new CustomerOwners(trx, schema, DEAL_CUSTOMER_OWNERS);
  const ids = idsOf(events, 'dealId');
  await deals.load(ids);
  // The pipeline counts follow each deal's share before and after the batch (pipeline.ts).
  const sharesBefore = ids.flatMap((id) => {
    const row = deals.get(id);
    const share = row ? pipelineShareOf(row) : null;
    return share ? [share] : [];
  });
  await owners.load(events, ({ event }) => (event.type === 'DealOpened' ? event.data.customerId : undefined));
  for (const e of events) {
    const { event } = e;
    const at = occurredAt(e);
    if (owners.apply(e)) continue;
    if (event.type === 'DealOpened') {
      const d = event.data;
      deals.put({
        deal_id: d.dealId,
        customer_id: d.customerId,
        title: d.title,
        stage: d.stage,
        amount: numericOf(minorOf(d.amount)),
        currency: d.currency,
        amount_at: at,
        owner_id: d.ownerId,
        probability: probabilityOf(d.stage, d.probabilityOverride),
        probability_override: d.probabilityOverride,
        expected_close_date: d.expectedCloseDate,
        stage_entered_at: at,
        opened_at: at,
        closed_at: null,
        won_reason: null,
        lost_reason: null,
        revision: e.revision,
        last_event_at: at,
        customer_owner_id: owners.ownerOf(d.customerId),
      });
      continue;
    }
    const id = (event.data as { dealId?: string }).dealId;
    const row: Row | undefined = id ? deals.get(id) : undefined;
    if (!row || !id) continue;
    const enterStage = (stage: DealStage) => {
      row.stage = stage;
      row.stage_entered_at = at;
      row.probability = probabilityOf(stage, row.probability_override);
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
        row.probability_override = event.data.probabilityOverride;
        row.probability = probabilityOf(row.stage as DealStage, event.data.probabilityOverride);
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
        continue;
    }
    row.revision = e.revision;
    row.last_event_at = at;
    deals.touch(id);
  }
  await deals.flush();
  await owners.flush('deals');
  await applyPipelineChanges(trx, schema, sharesBefore, ids);
}

export const dealsProjection: Projection = {
  name: 'deals',
  // 2: titles change (DealTitleChanged).
  // 3: `amount_at`, the business time the amount was stated (its base-currency conversion date).
  // 4: `customer_owner_id` (visibility by the customer's owner without a join) and `deal_customer_owners`.
  // 5: the pipeline counts (pipeline.ts).
  version: 5,
  tables: ['deals', DEAL_CUSTOMER_OWNERS.table, PIPELINE_STAGES, PIPELINE_MONTHS],
  filter: { eventTypes: [...Object.keys(dealEventSchemas), ...CUSTOMER_OWNER_EVENTS] },
  migrate,
  apply,
  reportingViews: viewsOf('deals'),
};
