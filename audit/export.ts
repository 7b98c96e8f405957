import { Readable } from 'node:stream';
import { csvField } from '../shared/csv.ts';
import { auditEventToJson, type AuditEvent } from './event-view.ts';

export type ExportFormat = 'ndjson' | 'csv';

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  ndjson: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

/** CSV columns, in order; `data` and `roles` hold JSON so the row stays one line per event. */
export const CSV_COLUMNS = [
  'position',
  'stream',
  'revision',
  'id',
  'type',
  'schema_version',
  'actor',
  'roles',
  'correlation_id',
  'causation_id',
  'command',
  'reason',
  'occurred_at',
  'recorded_at',
  'data',
  // Added after `data` so that readers of the earlier columns by index are unaffected.
  'actor_name',
  'occurred_at_as_written',
] as const;

/** A column's value as a CSV field (shared/csv.ts: quoted, and never run as a formula). */
const csvValue = (value: string | number | null | undefined): string => (value === null || value === undefined ? '' : csvField(String(value)));

export const csvRow = (event: AuditEvent): string =>
  [
    event.position.toString(),
    event.stream,
    event.revision,
    event.id,
    event.type,
    event.schemaVersion,
    event.actor,
    JSON.stringify(event.roles),
    event.correlationId,
    event.causationId,
    event.command,
    event.reason,
    event.occurredAt,
    event.recordedAt.toISOString(),
    JSON.stringify(event.data),
    event.actorName,
    event.occurredAtAsWritten,
  ]
    .map(csvValue)
    .join(',') + '\r\n';

export const ndjsonLine = (event: AuditEvent): string => JSON.stringify(auditEventToJson(event)) + '\n';

async function* lines(events: AsyncIterable<AuditEvent>, format: ExportFormat): AsyncGenerator<string> {
  if (format === 'csv') yield CSV_COLUMNS.join(',') + '\r\n';
  for await (const event of events) yield format === 'csv' ? csvRow(event) : ndjsonLine(event);
}

/**
 * A byte stream of the events, pulled page by page as the client reads: back-pressure from the
 * socket pauses the database reads, so an export of the whole log never sits in memory.
 */
export const exportStream = (events: AsyncIterable<AuditEvent>, format: ExportFormat): Readable => Readable.from(lines(events, format), { objectMode: false });
