import { sql, type QueryExecutorProvider } from 'kysely';
import { CHECKPOINT_TABLE } from './checkpoints.ts';
import type { Projection } from './projection.ts';
import { ensureSchema, executeStatements, qualifiedName, quoteLiteral } from '../shared/sql.ts';
import { MAX_MERGE_CHAIN } from '../domain/customer/decider.ts';
import { grantTeamRoles, scopeCondition, scopeStatements } from './reporting-roles.ts';
import { keptOnReportingViews, replaceViewStatement, restoreOnReportingViews, viewsMadeBy, type KeptOnReportingViews } from './reporting-kept.ts';

/**
 * The `reporting` schema: documented views over the read models, the stable interface for BI tools
 * (Metabase, Grafana, psql, spreadsheets). Tables may change shape between versions; these views
 * keep their names and columns. Personal data is limited to a customer's name (with its sort key), email and company.
 */
export interface ReportingView {
  name: string;
  /** The projection whose tables it reads (recreated when that projection is swapped in). */
  projection: string;
  description: string;
  columns: readonly [name: string, description: string][];
  /** SELECT over the read schema, columns in the order of `columns`. */
  select: (readSchema: string, reportingSchema: string) => string;
  /** Rows follow a team reporting role's scope (projections/reporting-roles.ts): a security-barrier view. */
  scoped?: boolean;
}

const q = qualifiedName;

/**
 * Base-currency columns: the same rule as the API (projections/queries/exchange-rates.ts). The base
 * currency is the one recorded in `base_currency` (CRM_BASE_CURRENCY); an amount is converted at the
 * latest rate whose valid_from is at or before its business time, rounded to 4 decimals; NULL while no
 * rate covers it.
 */
const baseOf = (s: string) => `(SELECT b.currency FROM ${q(s, 'base_currency')} b)`;
/** `amount`, `currency` and `at` must be qualified (`t.currency`): `exchange_rates` has a `currency` column too. */
const inBaseSql = (s: string, amount: string, currency: string, at: string) =>
  `(CASE WHEN ${currency} = ${baseOf(s)} THEN ${amount} ELSE round(${amount} * (SELECT r.rate FROM ${q(s, 'exchange_rates')} r
    WHERE r.base_currency = ${baseOf(s)} AND r.currency = ${currency} AND r.valid_from <= ${at} ORDER BY r.valid_from DESC LIMIT 1), 4) END)`;
/**
 * Sum of the converted amounts of the lines `where` picks: 0 when it picks none (as the API answers),
 * NULL when any of them lacks a rate (unknown, not 0: a BI tool would read revenue 0 and ROI -1).
 */
const baseSumSql = (expr: string, where?: string) => {
  const only = where ? ` FILTER (WHERE ${where})` : '';
  return `CASE WHEN bool_and(${expr} IS NOT NULL)${only} IS NOT FALSE THEN COALESCE(sum(${expr})${only}, 0) END`;
};
/** The currency and month of a converted line, as the API names a missing rate: 'JPY 2026-03'. */
const rateMonthSql = (x: string) => `rtrim(${x}.currency) || ' ' || to_char(${x}.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')`;
/** The months and currencies of the converted lines `x` that lack a rate, sorted; empty when none does. */
const missingRatesSql = (x: string) =>
  `COALESCE(array_agg(DISTINCT ${rateMonthSql(x)} ORDER BY ${rateMonthSql(x)}) FILTER (WHERE ${x}.base_amount IS NULL), '{}')`;
/**
 * The lines (`l`) of the customer `id` and of the duplicates merged into it, chains followed: the text
 * of the API's `ofCustomerAndMerged` (projections/queries/customers.ts).
 */
const ofCustomerAndMergedSql = (s: string, id: string) =>
  `l.customer_id = ANY (ARRAY(WITH RECURSIVE members(id, depth) AS (SELECT ${id}, 0
    UNION ALL SELECT d.customer_id, m.depth + 1 FROM ${q(s, 'customers')} d JOIN members m ON d.merged_into = m.id WHERE m.depth < ${MAX_MERGE_CHAIN}
  ) SELECT id FROM members))`;
/** A table's lines converted: its columns plus base_amount. */
const convertedLines = (s: string, table: string, where = 'true') =>
  `(SELECT l.*, ${inBaseSql(s, 'l.amount', 'l.currency', 'l.occurred_at')} AS base_amount FROM ${q(s, table)} l WHERE ${where})`;

export const REPORTING_VIEWS: readonly ReportingView[] = [
  {
    name: 'customers',
    projection: 'customers',
    description: 'One row per customer: contact, status, purchases, revenue net of refunds, open feedback and deal counts.',
    columns: [
      ['customer_id', 'Customer id (uuid)'],
      ['name', "Name, or '[erased]' once the customer is forgotten"],
      ['email', "Email as given, or '[erased]'"],
      ['company', "Company (personal data: a sole trader's business name is their name), or '[erased]'"],
      ['source', 'Acquisition source given at registration'],
      ['tags', 'Tags (text[])'],
      ['status', 'active | inactive | merged | forgotten'],
      ['merged_into', 'Primary customer id when this one was merged into it'],
      ['marketing_consent', 'Marketing consent (boolean)'],
      ['registered_at', 'Business time of registration'],
      ['first_purchase_at', 'Business time of the earliest purchase'],
      ['last_purchase_at', 'Business time of the latest purchase'],
      ['order_count', 'Purchases recorded (refunds do not reduce it)'],
      ['revenue', 'Purchases minus refunds in `currency` (numeric, major units)'],
      ['refunded', 'Refunds in `currency` (numeric)'],
      ['currency', "ISO 4217 code of the customer's first purchase (business time)"],
      ['open_feedback_count', 'Feedback items neither resolved nor closed'],
      ['deals_open', 'Open deals'],
      ['deals_won', 'Won deals'],
      ['deals_lost', 'Lost deals'],
      ['forgotten_at', 'Business time the customer was forgotten'],
      ['updated_at', 'Business time of the last event applied'],
      ['owner_id', 'Account owner (user id), null when none is assigned'],
      ['base_currency', 'ISO 4217 code of the base currency (CRM_BASE_CURRENCY)'],
      [
        'revenue_base',
        'Purchases minus refunds in every currency (merged duplicates included, as for `revenue`), each converted at the rate valid at its business time; 0 without any; null while a rate is missing',
      ],
      ['missing_rates', "Currencies and months of the customer's amounts (merged duplicates included) without a rate ('JPY 2026-03'), empty when none"],
      // Added later: at the end, so that the view is replaced in place (its grants and the views built on it stay).
      ['deactivated_at', 'Business time of the deactivation while the customer is inactive, else null'],
      ['deactivation_reason', 'Reason given with that deactivation (free text), null without one'],
      [
        'name_sort',
        "The name's place in GET /customers?sort=name (dictionary order), compared byte by byte: ORDER BY name_sort, customer_id is the API's order; personal data, as name: a forgotten customer's sorts after every name",
      ],
    ],
    scoped: true,
    select: (s, r) => `SELECT c.customer_id, c.name, c.email, c.company, c.source, c.tags, c.status, c.merged_into, c.marketing_consent, c.registered_at,
      c.first_purchase_at, c.last_purchase_at, c.order_count, c.revenue, c.refunded, c.currency, c.open_feedback_count, c.deals_open, c.deals_won,
      c.deals_lost, c.forgotten_at, c.last_event_at AS updated_at, c.owner_id, ${baseOf(s)} AS base_currency,
      m.revenue_base, m.missing_rates, c.deactivated_at, c.deactivation_reason, c.name_sort
      FROM ${q(s, 'customers')} c,
      LATERAL (SELECT ${baseSumSql('x.base_amount')} AS revenue_base, ${missingRatesSql('x')} AS missing_rates
        FROM ${convertedLines(s, 'revenue_lines', ofCustomerAndMergedSql(s, 'c.customer_id'))} x) m
      WHERE ${scopeCondition.customers(s, r)}`,
  },
  {
    name: 'customer_timeline',
    projection: 'customer_timeline',
    description: "Every event about a customer (their own, deals', feedback's and campaign responses) as a readable entry without personal data.",
    columns: [
      ['customer_id', 'Customer id'],
      ['occurred_at', 'Business time'],
      ['recorded_at', 'When the store recorded the event'],
      ['actor', 'User id of who issued the command'],
      ['event_type', 'Event type, e.g. PurchaseRecorded'],
      ['summary', 'Short description (no personal data, no free text)'],
      ['event_id', 'Event id (uuid)'],
      ['stream', 'Stream of the event, e.g. deal-<uuid>'],
      ['position', 'Global position in the event store'],
    ],
    scoped: true,
    select: (s, r) => `SELECT customer_id, occurred_at, recorded_at, actor, event_type, summary, event_id, stream, position FROM ${q(s, 'customer_timeline')}
      WHERE ${scopeCondition.customer_timeline(s, r)}`,
  },
  {
    name: 'deals',
    projection: 'deals',
    description: 'One row per deal with stage, amounts, probability and time in stage.',
    columns: [
      ['deal_id', 'Deal id'],
      ['customer_id', 'Customer id'],
      ['title', 'Title'],
      ['stage', 'lead | qualified | proposal | negotiation | won | lost'],
      ['is_open', 'True unless won or lost'],
      ['amount', 'Amount (numeric, major units)'],
      ['currency', 'ISO 4217 code'],
      ['owner_id', 'Owner (user id)'],
      ['probability', 'Win probability: the override, else the stage default; won 1, lost 0'],
      ['weighted_amount', 'amount x probability'],
      ['expected_close_date', 'Expected close date'],
      ['expected_close_month', "Expected close month 'YYYY-MM'"],
      ['stage_entered_at', 'Business time the deal entered its stage'],
      ['days_in_stage', 'Whole days since stage_entered_at, at query time'],
      ['opened_at', 'Business time the deal was opened'],
      ['closed_at', 'Business time it was won or lost (null while open)'],
      ['won_reason', "Reason given when won (the command's reason)"],
      ['lost_reason', 'Reason given when lost'],
      ['amount_at', 'Business time the amount was stated (opened, changed, won): its conversion date'],
      ['base_currency', 'ISO 4217 code of the base currency'],
      ['amount_base', 'Amount in the base currency at the rate valid at amount_at; null while no rate covers it'],
      ['weighted_amount_base', 'amount_base x probability'],
    ],
    scoped: true,
    select: (s, r) => `SELECT deal_id, customer_id, title, stage, is_open, amount, currency, owner_id, probability, weighted_amount, expected_close_date,
      expected_close_month, stage_entered_at, days_in_stage, opened_at, closed_at, won_reason, lost_reason, amount_at, base_currency, amount_base,
      round(amount_base * probability, 4) AS weighted_amount_base FROM (
      SELECT deal_id, customer_id, title, stage, stage NOT IN ('won', 'lost') AS is_open, amount, currency, owner_id,
      probability, weighted_amount, expected_close_date, to_char(expected_close_date, 'YYYY-MM') AS expected_close_month,
      stage_entered_at, GREATEST(0, floor(extract(epoch FROM (now() - stage_entered_at)) / 86400))::integer AS days_in_stage,
      opened_at, closed_at, won_reason, lost_reason, amount_at, ${baseOf(s)} AS base_currency,
      ${inBaseSql(s, 't.amount', 't.currency', 't.amount_at')} AS amount_base, customer_owner_id FROM ${q(s, 'deals')} t) d WHERE ${scopeCondition.deals(s, r)}`,
  },
  {
    name: 'pipeline_summary',
    projection: 'deals',
    description: 'Open deals grouped by stage, owner, expected-close month and currency.',
    columns: [
      ['stage', 'Open stage'],
      ['owner_id', 'Owner'],
      ['expected_close_month', "'YYYY-MM'"],
      ['currency', 'ISO 4217 code'],
      ['deal_count', 'Number of deals'],
      ['amount', 'Sum of amounts (numeric)'],
      ['weighted_amount', 'Sum of weighted amounts (numeric)'],
      ['base_currency', 'ISO 4217 code of the base currency'],
      ['amount_base', 'Sum of the amounts in the base currency, each at the rate valid when it was stated; null while a rate is missing'],
      ['weighted_amount_base', 'Sum of the weighted amounts in the base currency; null while a rate is missing'],
    ],
    scoped: true,
    select: (s, r) => `SELECT stage, owner_id, expected_close_month, currency, count(*)::integer AS deal_count, sum(amount) AS amount,
      sum(weighted_amount) AS weighted_amount, ${baseOf(s)} AS base_currency, ${baseSumSql('amount_base')} AS amount_base,
      ${baseSumSql('round(amount_base * probability, 4)')} AS weighted_amount_base
      FROM (SELECT stage, owner_id, customer_owner_id, to_char(expected_close_date, 'YYYY-MM') AS expected_close_month, currency, amount, weighted_amount, probability,
        ${inBaseSql(s, 't.amount', 't.currency', 't.amount_at')} AS amount_base FROM ${q(s, 'deals')} t WHERE stage NOT IN ('won', 'lost')) d
      WHERE ${scopeCondition.deals(s, r)}
      GROUP BY 1, 2, 3, 4`,
  },
  {
    name: 'campaigns',
    projection: 'campaigns',
    description: 'One row per campaign: budget, costs, responses by kind, conversions, revenue, ROI and conversion rate.',
    columns: [
      ['campaign_id', 'Campaign id'],
      ['name', 'Name'],
      ['channel', 'email | sms | social | event | ads'],
      ['status', 'draft | scheduled | active | paused | completed | cancelled'],
      ['budget', 'Budget (numeric)'],
      ['currency', 'ISO 4217 code'],
      ['starts_at', 'Scheduled start'],
      ['ends_at', 'Scheduled end'],
      ['costs', 'Sum of costs, each at its current amount (corrections applied) (numeric)'],
      ['sent_count', "Responses of kind 'sent'"],
      ['opened_count', "Responses of kind 'opened'"],
      ['clicked_count', "Responses of kind 'clicked'"],
      ['converted_count', "Responses of kind 'converted' (conversions)"],
      ['unsubscribed_count', "Responses of kind 'unsubscribed'"],
      ['revenue', 'Revenue attributed to conversions (numeric)'],
      ['roi', '(revenue - costs) / costs; null without costs'],
      [
        'conversion_rate',
        'converted_count / sent_count; null before anything was sent; a conversion counts whether or not the campaign was sent to that customer, so it can pass 1',
      ],
      ['over_budget', 'Costs beyond the budget (recorded with allowOverBudget: true)'],
      ['created_at', 'Business time of creation'],
      ['launched_at', 'First launch'],
      ['completed_at', 'Completion'],
      ['cancelled_at', 'Cancellation'],
      ['base_currency', 'ISO 4217 code of the base currency'],
      ['costs_base', 'Costs in the base currency, each at the rate valid when recorded; 0 without costs; null while a rate is missing'],
      ['revenue_base', 'Revenue of every conversion, whatever its currency, in the base currency; 0 without any; null while a rate is missing'],
      ['missing_rates', "Currencies and months of the campaign's costs and revenue without a rate ('NOK 2025-02'), empty when none"],
      ['roi_base', '(revenue_base - costs_base) / costs_base; null without costs or while a rate is missing'],
      [
        'name_sort',
        "The name's place in GET /campaigns?sort=name (dictionary order), compared byte by byte: ORDER BY name_sort, campaign_id is the API's order",
      ],
    ],
    select: (s) => `SELECT c.campaign_id, c.name, c.channel, c.status, c.budget, c.currency, c.starts_at, c.ends_at, c.costs, c.sent_count, c.opened_count,
      c.clicked_count, c.converted_count, c.unsubscribed_count, c.revenue, c.roi, c.conversion_rate, c.over_budget, c.created_at, c.launched_at, c.completed_at,
      c.cancelled_at, ${baseOf(s)} AS base_currency, m.costs_base, m.revenue_base, m.missing_rates,
      CASE WHEN m.costs_base > 0 THEN round((m.revenue_base - m.costs_base) / m.costs_base, 6) END AS roi_base, c.name_sort
      FROM ${q(s, 'campaigns')} c,
      LATERAL (SELECT ${baseSumSql('x.base_amount', "x.kind = 'cost'")} AS costs_base, ${baseSumSql('x.base_amount', "x.kind = 'revenue'")} AS revenue_base,
        ${missingRatesSql('x')} AS missing_rates
        FROM ${convertedLines(s, 'campaign_money_lines', 'l.campaign_id = c.campaign_id')} x) m`,
  },
  {
    name: 'revenue_monthly',
    projection: 'customers',
    description: 'Purchases net of refunds per month (business time, UTC) and currency, beside the same in the base currency.',
    columns: [
      ['month', "'YYYY-MM' (UTC)"],
      ['currency', 'ISO 4217 code the amounts were paid in'],
      ['purchases', 'Purchases recorded'],
      ['revenue', 'Purchases minus refunds in `currency` (numeric)'],
      ['base_currency', 'ISO 4217 code of the base currency'],
      ['revenue_base', 'The same in the base currency, each amount at the rate valid at its business time; null while a rate is missing'],
      ['missing_rate', "'JPY 2026-03' when amounts of the month lack a rate, else null"],
    ],
    select: (s) => `SELECT to_char(x.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, rtrim(x.currency) AS currency,
      (count(*) FILTER (WHERE x.kind = 'purchase'))::integer AS purchases, sum(x.amount) AS revenue, ${baseOf(s)} AS base_currency,
      ${baseSumSql('x.base_amount')} AS revenue_base,
      CASE WHEN bool_and(x.base_amount IS NOT NULL) THEN NULL ELSE ${rateMonthSql('x')} END AS missing_rate
      FROM ${convertedLines(s, 'revenue_lines')} x GROUP BY 1, 2, to_char(x.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM')`,
  },
  {
    name: 'exchange_rates',
    projection: 'exchange_rates',
    description: 'Rates to the base currency in force from each valid_from until the next (corrections replace the rate they correct).',
    columns: [
      ['base_currency', 'ISO 4217 code the rate is expressed in'],
      ['currency', 'ISO 4217 code the rate is for'],
      ['valid_from', 'Business time from which the rate applies'],
      ['valid_until', 'valid_from of the next rate of the currency (null: still in force)'],
      ['rate', 'Units of base_currency per unit of currency (numeric(20,10))'],
      ['previous_rate', 'The rate this one corrected (same valid_from), if any'],
      ['corrections', 'How many times the rate of this valid_from was corrected'],
      ['set_at', 'Business time the rate was set (or last corrected)'],
    ],
    select: (s) => `SELECT base_currency, currency, valid_from,
      lead(valid_from) OVER (PARTITION BY base_currency, currency ORDER BY valid_from) AS valid_until, rate, previous_rate, corrections, set_at
      FROM ${q(s, 'exchange_rates')}`,
  },
  {
    name: 'feedback',
    projection: 'feedback',
    description: 'One row per feedback item with SLA deadlines, breach flags, response and resolution times and ratings (no subject: personal data).',
    columns: [
      ['feedback_id', 'Feedback id'],
      ['customer_id', 'Customer id'],
      ['kind', 'complaint | request | question | praise | survey'],
      ['channel', 'email | phone | chat | web | social | in_person'],
      ['priority', 'low | normal | high | urgent'],
      ['status', 'open | in_progress | resolved | closed'],
      ['assignee_id', 'Assignee (user id)'],
      ['submitted_at', 'Business time of submission'],
      ['first_response_due_at', 'First-response deadline'],
      ['resolution_due_at', 'Resolution deadline'],
      ['first_responded_at', 'First response'],
      ['resolved_at', 'Latest resolution (cleared by a reopen)'],
      ['closed_at', 'Closing'],
      ['first_response_hours', 'Hours from submission to first response'],
      ['resolution_hours', 'Hours from submission to resolution'],
      ['first_response_breached', 'First response late (by the events, or still missing past its deadline now)'],
      ['resolution_breached', 'Resolution late (by the events, or still open past its deadline now)'],
      ['escalation_count', 'Escalations'],
      ['reopen_count', 'Reopenings'],
      ['csat', 'CSAT 1-5 (latest rating)'],
      ['nps', 'NPS 0-10 given at submission'],
      ['rated_at', 'Business time of the latest rating (kept when reopened, as csat is); null: csat given at submission, or none'],
    ],
    scoped: true,
    select: (s, r) => `SELECT feedback_id, customer_id, kind, channel, priority, status, assignee_id, submitted_at, first_response_due_at,
      resolution_due_at, first_responded_at, resolved_at, closed_at, round((first_response_seconds / 3600)::numeric, 3) AS first_response_hours,
      round((resolution_seconds / 3600)::numeric, 3) AS resolution_hours,
      COALESCE(first_response_breached, false) OR (first_responded_at IS NULL AND status IN ('open', 'in_progress') AND now() > first_response_due_at) AS first_response_breached,
      COALESCE(resolution_breached, false) OR (status IN ('open', 'in_progress') AND now() > resolution_due_at) AS resolution_breached,
      escalation_count, reopen_count, csat, nps, rated_at FROM ${q(s, 'feedback')} WHERE ${scopeCondition.feedback(s, r)}`,
  },
  {
    name: 'activities',
    scoped: true,
    projection: 'activities',
    description: 'One row per note, call, meeting or task on a customer or a deal, with open and overdue flags for tasks (no body: personal data).',
    columns: [
      ['activity_id', 'Activity id'],
      ['customer_id', "Customer id (a deal's activity: the deal's customer)"],
      ['deal_id', 'Deal id when logged on a deal'],
      ['kind', 'note | call | meeting | task'],
      ['subject', 'Subject (short label)'],
      ['assignee_id', 'Assignee (user id)'],
      ['occurred_at', 'Business time: when the note, call or meeting happened, when the task was set'],
      ['due_at', 'Due time (tasks only)'],
      ['completed_at', 'Business time the task was completed'],
      ['is_open', 'A task not completed yet'],
      ['is_overdue', 'An open task past its due time, at query time'],
      ['logged_by', 'User id of who logged it'],
      ['updated_at', 'Business time of the last event applied'],
    ],
    select: (s, r) => `SELECT activity_id, customer_id, deal_id, kind, subject, assignee_id, occurred_at, due_at, completed_at,
      kind = 'task' AND completed_at IS NULL AS is_open, kind = 'task' AND completed_at IS NULL AND COALESCE(now() > due_at, false) AS is_overdue,
      logged_by, last_event_at AS updated_at FROM ${q(s, 'activities')} WHERE ${scopeCondition.activities(s, r)}`,
  },
];

/** Always present: the projections' health, for dashboards. */
export const PROJECTION_STATUS_VIEW: ReportingView = {
  name: 'projection_status',
  projection: '',
  description: 'One row per projection: checkpoint, state and lag as of its last batch.',
  columns: [
    ['name', 'Projection name'],
    ['version', 'Version of its logic and tables'],
    ['state', 'running | stopped | failed | rebuilding'],
    ['position', 'Global position of the last event applied'],
    ['events_behind', 'Events delivered by the feed and still waiting when the last batch committed'],
    ['seconds_behind', 'Age in seconds of the newest event of the last batch when it was applied, on the clock of the database server'],
    ['last_error', 'Error of the poison event, if failed'],
    ['failed_event_id', 'Event it failed on'],
    ['failed_position', 'Position of that event'],
    ['updated_at', 'When the checkpoint last moved'],
    ['failed_stream', 'Stream of that event'],
  ],
  select: (s) => `SELECT name, version, state, position, events_behind, seconds_behind, last_error, failed_event_id, failed_position, updated_at, failed_stream
    FROM ${q(s, CHECKPOINT_TABLE)}`,
};

/** The `reportingViews` hook of the read-model projections: SQL for their views. */
export const viewsOf =
  (projection: string) =>
  ({ readSchema, reportingSchema }: { readSchema: string; reportingSchema: string }): string[] =>
    REPORTING_VIEWS.filter((v) => v.projection === projection).flatMap((v) => viewStatements(v, readSchema, reportingSchema));

export function viewStatements(view: ReportingView, readSchema: string, reportingSchema: string): string[] {
  const name = q(reportingSchema, view.name);
  const columns = view.columns.map(([c]) => `"${c}"`).join(', ');
  return [
    replaceViewStatement(
      name,
      `CREATE OR REPLACE VIEW ${name} (${columns})${view.scoped ? ' WITH (security_barrier)' : ''} AS ${view.select(readSchema, reportingSchema)}`,
    ),
    `COMMENT ON VIEW ${name} IS ${quoteLiteral(view.description)}`,
    ...view.columns.map(([c, d]) => `COMMENT ON COLUMN ${name}."${c}" IS ${quoteLiteral(d)}`),
  ];
}

type ViewNames = { readSchema: string; reportingSchema: string };

/** The statements that make the reporting views of these projections, and `projection_status`. */
const reportingViewStatements = (names: ViewNames, projections: readonly Projection[]): string[] => [
  // The team roles' scope function first: the scoped views call it.
  ...scopeStatements(names.readSchema, names.reportingSchema),
  ...viewStatements(PROJECTION_STATUS_VIEW, names.readSchema, names.reportingSchema),
  ...projections.flatMap((p) => p.reportingViews?.(names) ?? []),
];

/**
 * What others made on the reporting views of these projections (grants, their own views on them):
 * a swap reads it before it drops the tables the views read, and `createReportingViews` makes it again.
 */
export const keptOnViewsOf = (db: QueryExecutorProvider, names: ViewNames, projections: readonly Projection[]): Promise<KeptOnReportingViews> =>
  keptOnReportingViews(db, names.reportingSchema, viewsMadeBy(reportingViewStatements(names, projections)));

/**
 * (Re)creates the reporting views of these projections (and `projection_status`) over `readSchema`,
 * in place where their columns allow it, and makes again the grants on them and the views others
 * built on them (`kept`, read first unless given). Answers the views built on them that could not be
 * made again (a column they read is gone). Pass a transaction to make it part of a swap: views are
 * dropped with the tables they read. `oneRoundTrip` (a PostgreSQL server; PGlite takes one statement
 * a call) sends the 170 and more statements (a comment per column) as one: a rebuild's swap runs them
 * while it holds every read model, and one round trip each kept readers waiting past their lock
 * timeout on a loaded machine.
 */
export async function createReportingViews(
  db: QueryExecutorProvider,
  options: ViewNames & { projections: readonly Projection[]; oneRoundTrip?: boolean; kept?: KeptOnReportingViews },
): Promise<{ notRestored: string[] }> {
  await ensureSchema(db, options.reportingSchema);
  const statements = reportingViewStatements(options, options.projections);
  const kept = options.kept ?? (await keptOnReportingViews(db, options.reportingSchema, viewsMadeBy(statements)));
  await executeStatements(
    db,
    statements.map((statement) => sql.raw(statement)),
    options.oneRoundTrip === true,
  );
  // Views made anew have lost their grants: team reporting roles get theirs back, and so do others'.
  await grantTeamRoles(db, options.reportingSchema);
  return { notRestored: await restoreOnReportingViews(db, kept) };
}
