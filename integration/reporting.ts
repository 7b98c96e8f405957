import { sql, type Kysely } from 'kysely';
import { ensureSchema, qualifiedName } from '../shared/sql.ts';
import { viewStatements, type ReportingView } from '../projections/reporting.ts';
import { PUBLISHERS } from './tables.ts';

/** `reporting.publisher_status`: the publishers' health beside `projection_status`, for dashboards. */
export const PUBLISHER_STATUS_VIEW: ReportingView = {
  name: 'publisher_status',
  projection: '',
  description: 'One row per integration publisher (webhook subscriptions, NATS JetStream, RabbitMQ): checkpoint, state, deliveries and failures.',
  columns: [
    ['name', "webhook:<subscription id>, 'nats' or 'amqp'"],
    ['kind', 'webhook | nats | amqp'],
    ['state', 'running | retrying (its latest attempt failed, none has succeeded since) | failing (paused after its retries ran out) | disabled'],
    ['position', 'Global position of the last event delivered (or skipped as not subscribed)'],
    ['delivered', 'Events delivered: 2xx answers, JetStream acknowledgements, RabbitMQ publisher confirms'],
    ['failures', 'Failed attempts'],
    ['last_error', 'Error of the latest failed attempt, until a delivery succeeds (the delivery log keeps every attempt)'],
    ['last_status', 'HTTP status of the latest attempt (webhooks)'],
    ['last_latency_ms', 'Latency of the latest attempt, ms'],
    ['next_retry_at', 'When the failing event is tried next'],
    ['updated_at', 'When the row last changed'],
  ],
  // `state` as the API reports it (integration/publishers.ts reportedState).
  select: (schema) =>
    `SELECT name, kind, CASE WHEN state = 'running' AND last_error IS NOT NULL THEN 'retrying' ELSE state END, position, delivered, failures, last_error, last_status, last_latency_ms, next_retry_at, updated_at FROM ${qualifiedName(schema, PUBLISHERS)}`,
};

/** (Re)creates the view; several processes may start at once, so under the integration set-up lock. */
export async function createPublisherStatusView(db: Kysely<unknown>, eventsSchema: string, reportingSchema: string): Promise<void> {
  await ensureSchema(db, reportingSchema);
  await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`crm-integration:${eventsSchema}`}))`.execute(trx);
    for (const statement of viewStatements(PUBLISHER_STATUS_VIEW, eventsSchema, reportingSchema)) await sql.raw(statement).execute(trx);
  });
}
