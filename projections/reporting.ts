import { sql, type Kysely, type Transaction } from 'kysely';
import { CHECKPOINT_TABLE } from './checkpoints.ts';
import type { Projection } from './projection.ts';
import { ensureSchema } from '../shared/sql.ts';

/**
 * The `reporting` schema: documented views over the read models, the stable interface for BI tools
 * (Metabase, Grafana, psql, spreadsheets). Tables may change shape between versions; these views
 * keep their names and columns. Personal data is limited to a customer's name and email.
 */
export interface ReportingView {
  name: string;
  /** The projection whose tables it reads (recreated when that projection is swapped in). */
  projection: string;
  description: string;
  columns: readonly [name: string, description: string][];
  /** SELECT over the read schema, columns in the order of `columns`. */
  select: (readSchema: string) => string;
}

const q = (schema: string, table: string) => `"${schema.replace(/"/g, '""')}"."${table}"`;

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
      ['currency', "ISO 4217 code of the customer's first purchase"],
      ['open_feedback_count', 'Feedback items neither resolved nor closed'],
      ['deals_open', 'Open deals'],
      ['deals_won', 'Won deals'],
      ['deals_lost', 'Lost deals'],
      ['forgotten_at', 'Business time the customer was forgotten'],
      ['updated_at', 'Business time of the last event applied'],
    ],
    select: (s) => `SELECT customer_id, name, email, company, source, tags, status, merged_into, marketing_consent, registered_at,
      first_purchase_at, last_purchase_at, order_count, revenue, refunded, currency, open_feedback_count, deals_open, deals_won,
      deals_lost, forgotten_at, last_event_at AS updated_at FROM ${q(s, 'customers')}`,
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
    select: (s) => `SELECT customer_id, occurred_at, recorded_at, actor, event_type, summary, event_id, stream, position FROM ${q(s, 'customer_timeline')}`,
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
    ],
    select: (s) => `SELECT deal_id, customer_id, title, stage, stage NOT IN ('won', 'lost') AS is_open, amount, currency, owner_id,
      probability, weighted_amount, expected_close_date, to_char(expected_close_date, 'YYYY-MM') AS expected_close_month,
      stage_entered_at, GREATEST(0, floor(extract(epoch FROM (now() - stage_entered_at)) / 86400))::integer AS days_in_stage,
      opened_at, closed_at, won_reason, lost_reason FROM ${q(s, 'deals')}`,
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
    ],
    select: (s) => `SELECT stage, owner_id, to_char(expected_close_date, 'YYYY-MM') AS expected_close_month, currency,
      count(*)::integer AS deal_count, sum(amount) AS amount, sum(weighted_amount) AS weighted_amount
      FROM ${q(s, 'deals')} WHERE stage NOT IN ('won', 'lost') GROUP BY 1, 2, 3, 4`,
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
      ['costs', 'Sum of recorded costs (numeric)'],
      ['sent_count', "Responses of kind 'sent'"],
      ['opened_count', "Responses of kind 'opened'"],
      ['clicked_count', "Responses of kind 'clicked'"],
      ['converted_count', "Responses of kind 'converted' (conversions)"],
      ['unsubscribed_count', "Responses of kind 'unsubscribed'"],
      ['revenue', 'Revenue attributed to conversions (numeric)'],
      ['roi', '(revenue - costs) / costs; null without costs'],
      ['conversion_rate', 'converted_count / sent_count; null before anything was sent'],
      ['over_budget', 'Costs beyond the budget (recorded with allowOverBudget: true)'],
      ['created_at', 'Business time of creation'],
      ['launched_at', 'First launch'],
      ['completed_at', 'Completion'],
      ['cancelled_at', 'Cancellation'],
    ],
    select: (s) => `SELECT campaign_id, name, channel, status, budget, currency, starts_at, ends_at, costs, sent_count, opened_count,
      clicked_count, converted_count, unsubscribed_count, revenue, roi, conversion_rate, over_budget, created_at, launched_at, completed_at,
      cancelled_at FROM ${q(s, 'campaigns')}`,
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
    ],
    select: (s) => `SELECT feedback_id, customer_id, kind, channel, priority, status, assignee_id, submitted_at, first_response_due_at,
      resolution_due_at, first_responded_at, resolved_at, closed_at, round((first_response_seconds / 3600)::numeric, 3) AS first_response_hours,
      round((resolution_seconds / 3600)::numeric, 3) AS resolution_hours,
      COALESCE(first_response_breached, false) OR (first_responded_at IS NULL AND status IN ('open', 'in_progress') AND now() > first_response_due_at) AS first_response_breached,
      COALESCE(resolution_breached, false) OR (status IN ('open', 'in_progress') AND now() > resolution_due_at) AS resolution_breached,
      escalation_count, reopen_count, csat, nps FROM ${q(s, 'feedback')}`,
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
    ['seconds_behind', 'Age in seconds of the newest event of the last batch when it was applied'],
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

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

export function viewStatements(view: ReportingView, readSchema: string, reportingSchema: string): string[] {
  const name = q(reportingSchema, view.name);
  return [
    `DROP VIEW IF EXISTS ${name} CASCADE`,
    `CREATE VIEW ${name} (${view.columns.map(([c]) => `"${c}"`).join(', ')}) AS ${view.select(readSchema)}`,
    `COMMENT ON VIEW ${name} IS ${literal(view.description)}`,
    ...view.columns.map(([c, d]) => `COMMENT ON COLUMN ${name}."${c}" IS ${literal(d)}`),
  ];
}

/**
 * (Re)creates the reporting views of these projections (and `projection_status`) over `readSchema`.
 * Pass a transaction to make it part of a swap: views are dropped with the tables they read.
 */
export async function createReportingViews(
  db: Kysely<any> | Transaction<any>,
  options: { readSchema: string; reportingSchema: string; projections: readonly Projection[] },
): Promise<void> {
  await ensureSchema(db, options.reportingSchema);
  const names = { readSchema: options.readSchema, reportingSchema: options.reportingSchema };
  const statements = [
    ...viewStatements(PROJECTION_STATUS_VIEW, options.readSchema, options.reportingSchema),
    ...options.projections.flatMap((p) => p.reportingViews?.(names) ?? []),
  ];
  for (const statement of statements) await sql.raw(statement).execute(db);
}
