import { sql } from 'kysely';
import type { AuditDeps } from '../deps.ts';

/** A duplicate's `CustomerMergedInto` whose primary has no `CustomerMerged` for it: half a merge. */
export interface UnmatchedMerge {
  duplicateId: string;
  primaryId: string;
  /** Position of the duplicate's `CustomerMergedInto`. */
  position: bigint;
  /** The primary is itself merged into the duplicate (two merges raced in opposite directions): no command repairs it. */
  cycle: boolean;
}

/**
 * Merges recorded on one side only (PostgreSQL and PGlite). The two sides are appended together since
 * 2026-12-07; before, two merges racing could store the duplicate's side alone, and the read models
 * then agree with a replay while the primary's figures leave the duplicate out.
 */
export async function unmatchedMergesSql(deps: AuditDeps): Promise<UnmatchedMerge[]> {
  const events = sql.id(deps.schemas.events, 'events');
  const { rows } = await sql<{ duplicate_id: string; primary_id: string; position: string; cycle: boolean }>`
    SELECT d.data ->> 'customerId' AS duplicate_id, d.data ->> 'primaryId' AS primary_id, d.position::text AS position,
           EXISTS (SELECT 1 FROM ${events} back
                    WHERE back.stream = 'customer-' || (d.data ->> 'primaryId') AND back.type = 'CustomerMergedInto'
                      AND back.data ->> 'primaryId' = d.data ->> 'customerId') AS cycle
      FROM ${events} d
     WHERE d.type = 'CustomerMergedInto'
       AND NOT EXISTS (SELECT 1 FROM ${events} p
                        WHERE p.stream = 'customer-' || (d.data ->> 'primaryId') AND p.type = 'CustomerMerged'
                          AND p.data ->> 'duplicateId' = d.data ->> 'customerId')
     ORDER BY d.position`.execute(deps.database.db);
  return rows.map((r) => ({ duplicateId: r.duplicate_id, primaryId: r.primary_id, position: BigInt(r.position), cycle: r.cycle }));
}
