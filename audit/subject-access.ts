import { sql } from 'kysely';
import type { RecordedEvent } from '../shared/events.ts';
import { eventsInSql, type AuditDeps } from './deps.ts';
import { auditEventToJson, toAuditEvent, type AuditEventJson } from './event-view.ts';
import { subjectEventsSql } from './sql/subject-events.ts';
import { namesCustomer, OWNED_STREAM_OPENERS, withMergedDuplicates, type SubjectEvents } from './subjects.ts';
import { customerRecordOf, type CustomerRecord } from './records.ts';
import { readStoredEvent } from '../eventstore/unreadable-event.ts';

/**
 * `GET /customers/:id/export`: everything the CRM holds about one person (GDPR art. 15 subject
 * access), as one JSON document:
 * - the profile as the events say it is now (the customers read model's row: with the figures of
 *   the duplicates merged into it, and its open feedback and deal counts);
 * - the customers merged into this one (`mergedDuplicates`, and those merged into them): the same
 *   person registered twice, so their streams and rows are the person's too;
 * - every event of the person's own stream(s), every event of the deals and feedback opened for them
 *   (their streams are about the person), and any other event naming them (campaign responses,
 *   merges), in global order, decrypted;
 * - every read-model row keyed by the customer (any table of the read schema with a `customer_id`
 *   column), and the analytics rows (`analytics_*` tables) the same way, when they exist.
 * After forget, personal fields read '[erased]' throughout: the export then shows what is left.
 */
export interface SubjectAccessExport {
  customerId: string;
  exportedAt: string;
  /** True once the customer's key was deleted. */
  forgotten: boolean;
  profile: CustomerRecord | null;
  /** Customer ids merged into this one (directly or through another duplicate), whose records are included. */
  mergedDuplicates: string[];
  /** Streams whose every event is included. */
  streams: string[];
  events: AuditEventJson[];
  readModels: Record<string, Record<string, unknown>[]>;
  analytics: Record<string, Record<string, unknown>[]>;
}

/** Every event of the log, page by page. */
async function* wholeLog(deps: AuditDeps): AsyncGenerator<RecordedEvent> {
  let from: bigint | undefined;
  for (;;) {
    const page = await deps.store.readAll({ maxCount: 1_000, ...(from !== undefined ? { fromPosition: from } : {}) });
    yield* page;
    if (page.length < 1_000) return;
    from = page[page.length - 1]!.position;
  }
}

/** Other engines: two passes over the whole log, merges then events (a subject access request is rare; no index to use). */
async function subjectEventsGeneric(deps: AuditDeps, customerId: string): Promise<SubjectEvents> {
  const merges = new Map<string, string[]>();
  for await (const event of wholeLog(deps)) {
    const data = event.data as { customerId?: string; duplicateId?: string };
    if (event.type === 'CustomerMerged' && data.customerId && data.duplicateId) {
      merges.set(data.customerId, [...(merges.get(data.customerId) ?? []), data.duplicateId]);
    }
  }
  const customers = await withMergedDuplicates(customerId, async (id) => merges.get(id) ?? []);
  const streams = new Set(customers.map((id) => `customer-${id}`));
  const events: RecordedEvent[] = [];
  for await (const event of wholeLog(deps)) {
    const named = customers.some((id) => namesCustomer(event, id));
    if (OWNED_STREAM_OPENERS.includes(event.type) && named) streams.add(event.stream);
    if (streams.has(event.stream) || named) events.push(event);
  }
  return { customers, streams: [...streams], events };
}

/** Rows of every table in the read schema that has a `customer_id` column, by table. */
async function rowsAbout(deps: AuditDeps, customers: string[]): Promise<Record<string, Record<string, unknown>[]>> {
  const { rows: tables } = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.columns
     WHERE table_schema = ${deps.schemas.read} AND column_name = 'customer_id'
     ORDER BY table_name`.execute(deps.database.db);
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const { table_name } of tables) {
    const { rows } = await sql<{ row: Record<string, unknown> }>`
      SELECT to_jsonb(t) AS row FROM ${sql.id(deps.schemas.read, table_name)} t WHERE t.customer_id::text = ANY(${customers}::text[])`.execute(
      deps.database.db,
    );
    out[table_name] = rows.map((r) => r.row);
  }
  return out;
}

/** The whole export, or undefined when the CRM holds nothing about this customer id. */
export async function subjectAccessExport(deps: AuditDeps, customerId: string): Promise<SubjectAccessExport | undefined> {
  const { customers, streams, events } = eventsInSql(deps) ? await subjectEventsSql(deps, customerId) : await subjectEventsGeneric(deps, customerId);
  const tables = await rowsAbout(deps, customers);
  if (events.length === 0 && Object.values(tables).every((rows) => rows.length === 0)) return undefined;
  // The profile reads like the customers row: the events of the duplicates, deals and feedback count too (in position order).
  const decoded = [];
  for (const event of events) if (/^(customer|deal|feedback)-/.test(event.stream)) decoded.push(await readStoredEvent(event, deps.personalData));
  const readModels: SubjectAccessExport['readModels'] = {};
  const analytics: SubjectAccessExport['analytics'] = {};
  for (const [table, rows] of Object.entries(tables)) {
    if (table.startsWith('analytics_')) analytics[table] = rows;
    else readModels[table] = rows;
  }
  const auditEvents = [];
  for (const event of events) auditEvents.push(auditEventToJson(await toAuditEvent(event, deps.personalData, 'reveal')));
  return {
    customerId,
    exportedAt: new Date().toISOString(),
    forgotten: await deps.personalData.isForgotten(customerId),
    profile: customerRecordOf(decoded, customerId),
    mergedDuplicates: customers.slice(1),
    streams: streams.filter((s) => events.some((e) => e.stream === s)),
    events: auditEvents,
    readModels,
    analytics,
  };
}
