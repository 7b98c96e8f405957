import { sql, type RawBuilder } from 'kysely';
import { byCustomerOwner, type CustomerOwnerLookup, dealInScope, ownedOrCustomerListScope, scoped, type ReadScope } from './scope.ts';
import { baseAmount, baseCurrencyOf, baseSums, inBase, missingLabel, missingRatesOf, unlessRebuilding } from './exchange-rates.ts';
import { ofCustomerAndMerged } from './customers.ts';
import { iso, listOf, num, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';
import type { DealRow } from '../read-models/deal-fold.ts';
import { PIPELINE_MONTHS, PIPELINE_STAGES } from '../read-models/pipeline.ts';
import { inOneSnapshot } from './snapshot.ts';
import { closedDeals, type ClosedDeals, type ClosedDealsQuery } from './closed-deals.ts';

export type DealView = {
  id: string;
  customerId: string;
  title: string;
  stage: 'lead' | 'qualified' | 'proposal' | 'negotiation' | 'won' | 'lost';
  status: 'open' | 'won' | 'lost';
  amount: number;
  currency: string;
  ownerId: string;
  probability: number;
  probabilityOverride: number | null;
  weightedAmount: number;
  expectedCloseDate: string;
  stageEnteredAt: string;
  /** Whole days since the deal entered its stage, at query time. */
  daysInStage: number;
  openedAt: string;
  closedAt: string | null;
  wonReason: string | null;
  lostReason: string | null;
  revision: number;
  updatedAt: string;
};

export interface DealListQuery {
  stage?: string;
  status?: 'open' | 'won' | 'lost';
  ownerId?: string;
  customerId?: string;
  expectedCloseFrom?: string;
  expectedCloseTo?: string;
  currency?: string;
  /** expectedCloseDate | amount | updatedAt | createdAt, `-` for descending. Default `-createdAt`. */
  sort?: string;
  limit?: number;
  cursor?: string;
}

const DAYS_IN_STAGE = sql`GREATEST(0, floor(extract(epoch FROM (now() - t.stage_entered_at)) / 86400))::integer AS days_in_stage`;

/**
 * A `deals` row as the queries read it: the fold's row (a `date` as the driver gives it, a Date from pg)
 * and the columns computed at query time; the base-currency ones are absent while the previous
 * version's tables serve a rebuild, and so may `amount_at` be.
 */
type DealQueryRow = DealStoredRow & {
  days_in_stage: number;
  amount_base?: string | null;
  weighted_base?: string | null;
  missing_label?: string | null;
};

/** A `deals` row as folded (deal-fold.ts) or as stored and read back. */
type DealStoredRow = Omit<DealRow, 'amount_at'> & { amount_at?: DealRow['amount_at'] };

/** What a deal's own row says, named as the API names it: the view's fields but those of the query and the metadata. */
export type DealFields = Omit<DealView, 'daysInStage' | 'wonReason' | 'revision'>;

/** The one naming of a deal row's fields: the view reads it, and so does the auditor's record as of an instant. */
export const dealFieldsOf = (r: DealStoredRow): DealFields => ({
  id: r.deal_id,
  customerId: r.customer_id,
  title: r.title,
  stage: r.stage,
  status: r.stage === 'won' || r.stage === 'lost' ? r.stage : 'open',
  amount: Number(r.amount),
  currency: r.currency.trim(),
  ownerId: r.owner_id,
  probability: Number(r.probability),
  probabilityOverride: num(r.probability_override),
  weightedAmount: Number(r.weighted_amount),
  expectedCloseDate: r.expected_close_date,
  stageEnteredAt: iso(r.stage_entered_at)!,
  openedAt: iso(r.opened_at)!,
  closedAt: iso(r.closed_at),
  lostReason: r.lost_reason,
  updatedAt: iso(r.last_event_at)!,
});

const toDealView = (r: DealQueryRow): DealView => ({ ...dealFieldsOf(r), daysInStage: r.days_in_stage, wonReason: r.won_reason, revision: r.revision });

const sorts: Record<string, SortSpec> = {
  expectedCloseDate: { expr: sql`t.expected_close_date`, type: 'date' },
  amount: { expr: sql`t.amount`, type: 'numeric' },
  updatedAt: { expr: sql`t.last_event_at`, type: 'timestamptz' },
  createdAt: { expr: sql`t.opened_at`, type: 'timestamptz' },
};

/** A deal's amount in the base currency, at the rate valid when the amount was stated (`amountAt`). */
export type DealInBase = {
  amountAt: string;
  baseCurrency: string;
  /** null while no rate covers `amountAt`. */
  amountBase: number | null;
  weightedAmountBase: number | null;
  missingRates: string[];
};

const AMOUNT_BASE = (source: ReadModelSource) => sql`${inBase(source, sql`t.amount`, sql`t.currency`, sql`t.amount_at`)} AS amount_base,
  round(${inBase(source, sql`t.amount`, sql`t.currency`, sql`t.amount_at`)} * t.probability, 4) AS weighted_base`;
const MISSING_LABEL = sql`${missingLabel(sql`t.currency`, sql`t.amount_at`)} AS missing_label`;

const withBase = (source: ReadModelSource, r: DealQueryRow): DealView & DealInBase => {
  const amountBase = baseAmount(r.amount_base);
  return {
    ...toDealView(r),
    // Absent only from the tables of the previous version, while they are rebuilt.
    amountAt: iso(r.amount_at) ?? iso(r.last_event_at)!,
    baseCurrency: baseCurrencyOf(source),
    amountBase,
    weightedAmountBase: baseAmount(r.weighted_base),
    missingRates: amountBase === null && r.missing_label ? [r.missing_label] : [],
  };
};

/** `GET /deals`: filters by stage, status, owner, customer and expected-close range. */
export async function listDeals(source: ReadModelSource, query: DealListQuery = {}, scope?: ReadScope | null): Promise<Page<DealView & DealInBase>> {
  const where: RawBuilder<unknown>[] = [];
  if (query.stage) where.push(sql`t.stage = ${query.stage}`);
  if (query.status === 'open') where.push(sql`t.stage NOT IN ('won', 'lost')`);
  else if (query.status) where.push(sql`t.stage = ${query.status}`);
  if (query.ownerId) where.push(sql`t.owner_id = ${query.ownerId}`);
  // The customer's deals and those of the duplicates merged into it, as its counters count them.
  if (query.customerId) where.push(ofCustomerAndMerged(source, uuidOf(query.customerId), sql`t.customer_id`));
  if (query.expectedCloseFrom) where.push(sql`t.expected_close_date >= ${query.expectedCloseFrom}::date`);
  if (query.expectedCloseTo) where.push(sql`t.expected_close_date <= ${query.expectedCloseTo}::date`);
  if (query.currency) where.push(sql`t.currency = ${query.currency}`);
  const list = (extra: RawBuilder<unknown>[], lookup: CustomerOwnerLookup) =>
    listOf(
      {
        source,
        table: 'deals',
        key: 'deal_id',
        extra: [DAYS_IN_STAGE, ...extra],
        where,
        ...ownedOrCustomerListScope(scope, { column: 'owner_id', type: 'text' }, lookup, (s) => dealInScope(source, s, lookup)),
        sorts,
        defaultSort: '-createdAt',
      },
      query,
      (r: DealQueryRow) => withBase(source, r),
    );
  return byCustomerOwner(scope, (lookup) =>
    unlessRebuilding(
      () => list([AMOUNT_BASE(source), MISSING_LABEL], lookup),
      () => list([], lookup),
    ),
  );
}

/** `GET /deals/:id`; undefined when unknown or outside the scope. */
export async function getDeal(source: ReadModelSource, id: string, scope?: ReadScope | null): Promise<(DealView & DealInBase) | undefined> {
  const row = await byCustomerOwner(scope, (lookup) => {
    const inScope = scoped(scope, (s) => dealInScope(source, s, lookup));
    return unlessRebuilding(
      () => rowById<DealQueryRow>(source, 'deals', 'deal_id', id, [DAYS_IN_STAGE, AMOUNT_BASE(source), MISSING_LABEL], inScope),
      () => rowById<DealQueryRow>(source, 'deals', 'deal_id', id, [DAYS_IN_STAGE], inScope),
    );
  });
  return row ? withBase(source, row) : undefined;
}

export type PipelineGroup = {
  key: string;
  currency: string;
  dealCount: number;
  amount: number;
  weightedAmount: number;
};

export type Pipeline = {
  /** Open deals only. Sums are exact in SQL (numeric), then converted to numbers. */
  currency: string | null;
  ownerId: string | null;
  totals: { currency: string; dealCount: number; amount: number; weightedAmount: number }[];
  byStage: (PipelineGroup & { stage: string })[];
  byOwner: (PipelineGroup & { ownerId: string })[];
  /** Expected-close month as 'YYYY-MM'. */
  byMonth: (PipelineGroup & { month: string })[];
  /**
   * The same figures across currencies in the base currency: each deal's amount converted at the rate
   * valid when the amount was stated (`amountAt`), rounded to 4 decimals; weighted = converted amount x
   * probability, rounded to 4 decimals. A group whose deals need a rate nobody has set has null sums
   * and names the missing rates ('JPY 2026-03'). Null only while the read models are rebuilt after an upgrade.
   */
  base: null | {
    currency: string;
    totals: PipelineBaseGroup;
    byStage: (PipelineBaseGroup & { key: string; stage: string })[];
    byOwner: (PipelineBaseGroup & { key: string; ownerId: string })[];
    byMonth: (PipelineBaseGroup & { key: string; month: string })[];
  };
  /**
   * Deals won and lost (not open: the figures above leave them out), with the win rate, in the period
   * `closedFrom`-`closedTo` when given; the owner, currency and scope filters apply as above. Null
   * only while the read models are rebuilt after an upgrade.
   */
  closed: ClosedDeals | null;
};

export type PipelineBaseGroup = { dealCount: number; amount: number | null; weightedAmount: number | null; missingRates: string[] };

const STAGE_ORDER = sql`array_position(ARRAY['lead','qualified','proposal','negotiation']::text[], t.stage)`;

/**
 * `GET /pipeline`: open deals by stage, by owner and by expected-close month, per currency. Without a
 * scope, from the counts the deals projection keeps per owner, stage or month and currency
 * (read-models/pipeline.ts), open deals in other currencies than the base one converted one by one;
 * a restricted caller's figures, and all of them while the tables of a previous version serve, from
 * the open deals themselves.
 */
export async function pipeline(source: ReadModelSource, query: ClosedDealsQuery = {}, scope?: ReadScope | null): Promise<Pipeline> {
  if (!scope) {
    const kept = await unlessRebuilding(
      () => inOneSnapshot(source, (snapshot) => keptPipeline(snapshot, query)),
      () => null,
    );
    if (kept) return kept;
  }
  return pipelineFromDeals(source, query, scope);
}

/** The pipeline from the open deals themselves, the caller's scope applied (the path a restricted caller takes). */
export const pipelineFromDeals = (source: ReadModelSource, query: ClosedDealsQuery, scope: ReadScope | null | undefined) =>
  byCustomerOwner(scope, (lookup) => inOneSnapshot(source, (snapshot) => pipelineWith(snapshot, query, scope, lookup)));

/** The pipeline from the kept counts (see `pipeline`): the same figures, a few rows per owner and month. */
async function keptPipeline(source: ReadModelSource, query: ClosedDealsQuery): Promise<Pipeline> {
  const filters = (alias: string) => {
    const where = [sql`true`];
    if (query.ownerId) where.push(sql`${sql.ref(`${alias}.owner_id`)} = ${query.ownerId}`);
    if (query.currency) where.push(sql`${sql.ref(`${alias}.currency`)} = ${query.currency}`);
    return sql.join(where, sql` AND `);
  };
  const stages = sql`${sql.id(source.schema, PIPELINE_STAGES)} p`;
  const months = sql`${sql.id(source.schema, PIPELINE_MONTHS)} p`;
  const sums = sql`sum(p.deal_count)::integer AS deal_count, sum(p.amount)::text AS amount, sum(p.weighted_amount)::text AS weighted_amount`;
  const groups = await Promise.all([
    sql<Sums>`SELECT p.currency, ${sums} FROM ${stages} WHERE ${filters('p')} GROUP BY p.currency ORDER BY p.currency`.execute(source.db),
    sql<Keyed<Sums>>`SELECT p.stage AS key, p.currency, ${sums} FROM ${stages} WHERE ${filters('p')} GROUP BY p.stage, p.currency
      ORDER BY min(array_position(ARRAY['lead','qualified','proposal','negotiation']::text[], p.stage)), p.currency`.execute(source.db),
    sql<Keyed<Sums>>`SELECT p.owner_id AS key, p.currency, ${sums} FROM ${stages} WHERE ${filters('p')} GROUP BY p.owner_id, p.currency
      ORDER BY p.owner_id, p.currency`.execute(source.db),
    sql<Keyed<Sums>>`SELECT p.month AS key, p.currency, ${sums} FROM ${months} WHERE ${filters('p')} GROUP BY p.month, p.currency
      ORDER BY 1, p.currency`.execute(source.db),
  ]);
  return pipelineOf(query, groups, await keptPipelineInBase(source, filters), await closedDeals(source, query, [filters('t')]));
}

/**
 * `Pipeline.base` from the kept counts: deals in the base currency need no rate (their amounts and
 * weighted amounts are the counts' sums); open deals in other currencies are converted one by one, as
 * `pipelineInBase` converts every deal, found through the open-deals currency index.
 */
async function keptPipelineInBase(source: ReadModelSource, filters: (alias: string) => RawBuilder<unknown>): Promise<Pipeline['base']> {
  const base = baseCurrencyOf(source);
  const foreign = sql`SELECT x.*, round(x.amount_base * x.probability, 4) AS weighted_base,
      CASE WHEN x.amount_base IS NULL THEN ${missingLabel(sql`x.currency`, sql`x.amount_at`)} END AS missing
    FROM (SELECT t.stage, t.owner_id, to_char(t.expected_close_date, 'YYYY-MM') AS month, t.currency, t.amount_at, t.probability,
        ${inBase(source, sql`t.amount`, sql`t.currency`, sql`t.amount_at`)} AS amount_base
      FROM ${sql.id(source.schema, 'deals')} t
      WHERE t.stage NOT IN ('won', 'lost') AND (t.currency < ${base} OR t.currency > ${base}) AND ${filters('t')}) x`;
  const kept = (table: string, key: string) => sql`SELECT ${sql.ref(`p.${key}`)} AS key, p.deal_count AS n, p.amount AS amount_base,
      p.weighted_amount AS weighted_base, NULL::text AS missing FROM ${sql.id(source.schema, table)} p WHERE p.currency = ${base} AND ${filters('p')}`;
  const rows = (table: string, key: string) =>
    sql`(${kept(table, key)} UNION ALL SELECT ${sql.ref(`f.${key}`)}, 1, f.amount_base, f.weighted_base, f.missing FROM (${foreign}) f) y`;
  const sums = sql`coalesce(sum(y.n), 0)::integer AS deal_count, ${baseSums(['amount_base', 'weighted_base'])}`;
  const groups = await Promise.all([
    sql<BaseSums>`SELECT ${sums} FROM ${rows(PIPELINE_STAGES, 'stage')}`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.key, ${sums} FROM ${rows(PIPELINE_STAGES, 'stage')} GROUP BY y.key
      ORDER BY array_position(ARRAY['lead','qualified','proposal','negotiation']::text[], y.key)`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.key, ${sums} FROM ${rows(PIPELINE_STAGES, 'owner_id')} GROUP BY y.key ORDER BY y.key`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.key, ${sums} FROM ${rows(PIPELINE_MONTHS, 'month')} GROUP BY y.key ORDER BY y.key`.execute(source.db),
  ]);
  return pipelineInBaseOf(base, groups);
}

async function pipelineWith(
  source: ReadModelSource,
  query: ClosedDealsQuery,
  scope: ReadScope | null | undefined,
  lookup: CustomerOwnerLookup,
): Promise<Pipeline> {
  // The caller's scope applies to every total: figures of deals they may not see are not shown either.
  const filters = scoped(scope, (s) => dealInScope(source, s, lookup));
  if (query.ownerId) filters.push(sql`t.owner_id = ${query.ownerId}`);
  if (query.currency) filters.push(sql`t.currency = ${query.currency}`);
  const where = [sql`t.stage NOT IN ('won', 'lost')`, ...filters];
  const from = sql`FROM ${sql.id(source.schema, 'deals')} t WHERE ${sql.join(where, sql` AND `)}`;
  const sums = sql`count(*)::integer AS deal_count, sum(t.amount)::text AS amount, sum(t.weighted_amount)::text AS weighted_amount`;
  const groups = await Promise.all([
    sql<Sums>`SELECT t.currency, ${sums} ${from} GROUP BY t.currency ORDER BY t.currency`.execute(source.db),
    sql<Keyed<Sums>>`SELECT t.stage AS key, t.currency, ${sums} ${from} GROUP BY t.stage, t.currency ORDER BY min(${STAGE_ORDER}), t.currency`.execute(
      source.db,
    ),
    sql<Keyed<Sums>>`SELECT t.owner_id AS key, t.currency, ${sums} ${from} GROUP BY t.owner_id, t.currency ORDER BY t.owner_id, t.currency`.execute(source.db),
    sql<Keyed<Sums>>`SELECT to_char(t.expected_close_date, 'YYYY-MM') AS key, t.currency, ${sums} ${from}
      GROUP BY 1, t.currency ORDER BY 1, t.currency`.execute(source.db),
  ]);
  const base = await unlessRebuilding(
    () => pipelineInBase(source, where),
    () => null,
  );
  // The tables of a previous version failed the base figures, and with them this snapshot: no more queries.
  return pipelineOf(query, groups, base, base && (await closedDeals(source, query, filters)));
}

/** The pipeline's groups in the base currency (see `Pipeline.base`). */
async function pipelineInBase(source: ReadModelSource, where: ReturnType<typeof sql>[]): Promise<Pipeline['base']> {
  const converted = sql`SELECT t.stage, t.owner_id, to_char(t.expected_close_date, 'YYYY-MM') AS month, t.currency, t.amount_at, t.probability,
      ${inBase(source, sql`t.amount`, sql`t.currency`, sql`t.amount_at`)} AS amount_base
    FROM ${sql.id(source.schema, 'deals')} t WHERE ${sql.join(where, sql` AND `)}`;
  const from = sql`FROM (SELECT x.*, round(x.amount_base * x.probability, 4) AS weighted_base,
      CASE WHEN x.amount_base IS NULL THEN ${missingLabel(sql`x.currency`, sql`x.amount_at`)} END AS missing FROM (${converted}) x) y`;
  const sums = sql`count(*)::integer AS deal_count, ${baseSums(['amount_base', 'weighted_base'])}`;
  const groups = await Promise.all([
    sql<BaseSums>`SELECT ${sums} ${from}`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.stage AS key, ${sums} ${from} GROUP BY y.stage
      ORDER BY array_position(ARRAY['lead','qualified','proposal','negotiation']::text[], y.stage)`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.owner_id AS key, ${sums} ${from} GROUP BY y.owner_id ORDER BY y.owner_id`.execute(source.db),
    sql<Keyed<BaseSums>>`SELECT y.month AS key, ${sums} ${from} GROUP BY y.month ORDER BY y.month`.execute(source.db),
  ]);
  return pipelineInBaseOf(baseCurrencyOf(source), groups);
}

/** A group's sums: numeric sums as text, exact until converted here. */
type Sums = { currency: string; deal_count: number; amount: string; weighted_amount: string };
/** A group's base-currency sums (text, null when a rate is missing) and the rates missing. */
type BaseSums = { deal_count: number; amount_base: string | null; weighted_base: string | null; missing_rates: string[] };
type Keyed<T> = T & { key: string };
/** The four result sets of a pipeline: totals, by stage, by owner, by month. */
type Groups<T> = [{ rows: T[] }, { rows: Keyed<T>[] }, { rows: Keyed<T>[] }, { rows: Keyed<T>[] }];

const groupOf = (r: Sums) => ({
  currency: r.currency.trim(),
  dealCount: r.deal_count,
  amount: Number(r.amount),
  weightedAmount: Number(r.weighted_amount),
});

const baseGroupOf = (r: BaseSums): PipelineBaseGroup => ({
  dealCount: r.deal_count,
  amount: baseAmount(r.amount_base),
  weightedAmount: baseAmount(r.weighted_base),
  missingRates: missingRatesOf(r.missing_rates),
});

/** The pipeline answer from its four result sets, whether they came from the kept counts or from the deals. */
const pipelineOf = (
  query: ClosedDealsQuery,
  [totals, byStage, byOwner, byMonth]: Groups<Sums>,
  base: Pipeline['base'],
  closed: Pipeline['closed'],
): Pipeline => ({
  currency: query.currency ?? null,
  ownerId: query.ownerId ?? null,
  totals: totals.rows.map(groupOf),
  byStage: byStage.rows.map((r) => ({ key: r.key, stage: r.key, ...groupOf(r) })),
  byOwner: byOwner.rows.map((r) => ({ key: r.key, ownerId: r.key, ...groupOf(r) })),
  byMonth: byMonth.rows.map((r) => ({ key: r.key, month: r.key, ...groupOf(r) })),
  base,
  closed,
});

/** `Pipeline.base` from its four result sets (see `pipelineOf`). */
const pipelineInBaseOf = (currency: string, [totals, byStage, byOwner, byMonth]: Groups<BaseSums>): NonNullable<Pipeline['base']> => {
  const total = totals.rows[0];
  // No open deal at all sums to 0, not to "unknown".
  const empty = !total || total.deal_count === 0;
  return {
    currency,
    totals: empty ? { dealCount: 0, amount: 0, weightedAmount: 0, missingRates: [] } : baseGroupOf(total),
    byStage: byStage.rows.map((r) => ({ key: r.key, stage: r.key, ...baseGroupOf(r) })),
    byOwner: byOwner.rows.map((r) => ({ key: r.key, ownerId: r.key, ...baseGroupOf(r) })),
    byMonth: byMonth.rows.map((r) => ({ key: r.key, month: r.key, ...baseGroupOf(r) })),
  };
};
