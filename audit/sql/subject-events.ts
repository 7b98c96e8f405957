import { sql } from 'kysely';
import type { AuditDeps } from '../deps.ts';
import { OWNED_STREAM_OPENERS, withMergedDuplicates, type SubjectEvents } from '../subjects.ts';
import { EVENT_ROW_COLUMNS, rowToRecorded, type EventRow } from './history.ts';

/** A subject's events straight from `<events schema>.events` (PostgreSQL and PGlite): indexed lookups instead of two passes over the log. */
export async function subjectEventsSql(deps: AuditDeps, customerId: string): Promise<SubjectEvents> {
  const events = sql.id(deps.schemas.events, 'events');
  const customers = await withMergedDuplicates(customerId, async (id) => {
    const { rows } = await sql<{ id: string }>`
      SELECT DISTINCT e.data ->> 'duplicateId' AS id FROM ${events} e
       WHERE e.stream = ${`customer-${id}`} AND e.type = 'CustomerMerged'`.execute(deps.database.db);
    return rows.map((r) => r.id);
  });
  const { rows: opened } = await sql<{ stream: string }>`
    SELECT DISTINCT stream FROM ${events}
     WHERE type = ANY(${OWNED_STREAM_OPENERS}::text[]) AND data ->> 'customerId' = ANY(${customers}::text[])`.execute(deps.database.db);
  const streams = [...customers.map((id) => `customer-${id}`), ...opened.map((r) => r.stream)];
  const { rows } = await sql<EventRow>`
    SELECT ${EVENT_ROW_COLUMNS}
      FROM ${events} e
     WHERE e.stream = ANY(${streams}::text[])
        OR e.data ->> 'customerId' = ANY(${customers}::text[]) OR e.data ->> 'duplicateId' = ANY(${customers}::text[])
        OR e.data ->> 'primaryId' = ANY(${customers}::text[])
     ORDER BY e.position`.execute(deps.database.db);
  return { customers, streams, events: rows.map(rowToRecorded) };
}
