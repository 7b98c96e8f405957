import { sql } from 'kysely';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';
import type { AuditDeps } from '../deps.ts';

/** A duplicate's `CustomerMergedInto` whose primary has no `CustomerMerged` for it: half a merge. */
export interface UnmatchedMerge {
  duplicateId: string;
  primaryId: string;
  /** Position of the duplicate's `CustomerMergedInto`. */
  position: bigint;
  /** The primary is itself merged into the duplicate (two merges raced in opposite directions): no command repairs it. */
  cycle: boolean;
  /** The primary was merged into another customer since: it takes no command, so the merge cannot be sent again. */
  primaryMerged: boolean;
}

/** A customer further than MAX_MERGE_CHAIN merges from the end of its chain (chains were not bounded before 2026-12-07). */
export interface FarMerge {
  customerId: string;
  /** Merges from it to the customer at the end of its chain. */
  mergesAway: number;
}

/**
 * Merges recorded on one side only (PostgreSQL and PGlite). The two sides are appended together since
 * 2026-12-07; before, two merges racing could store the duplicate's side alone, and the read models
 * then agree with a replay while the primary's figures leave the duplicate out.
 */
export async function unmatchedMergesSql(deps: AuditDeps): Promise<UnmatchedMerge[]> {
  const events = sql.id(deps.schemas.events, 'events');
  const { rows } = await sql<{ duplicate_id: string; primary_id: string; position: string; cycle: boolean; primary_merged: boolean }>`
    SELECT d.data ->> 'customerId' AS duplicate_id, d.data ->> 'primaryId' AS primary_id, d.position::text AS position,
           EXISTS (SELECT 1 FROM ${events} back
                    WHERE back.stream = 'customer-' || (d.data ->> 'primaryId') AND back.type = 'CustomerMergedInto'
                      AND back.data ->> 'primaryId' = d.data ->> 'customerId') AS cycle,
           EXISTS (SELECT 1 FROM ${events} up
                    WHERE up.stream = 'customer-' || (d.data ->> 'primaryId') AND up.type = 'CustomerMergedInto') AS primary_merged
      FROM ${events} d
     WHERE d.type = 'CustomerMergedInto'
       AND NOT EXISTS (SELECT 1 FROM ${events} p
                        WHERE p.stream = 'customer-' || (d.data ->> 'primaryId') AND p.type = 'CustomerMerged'
                          AND p.data ->> 'duplicateId' = d.data ->> 'customerId')
     ORDER BY d.position`.execute(deps.database.db);
  return rows.map((r) => ({
    duplicateId: r.duplicate_id,
    primaryId: r.primary_id,
    position: BigInt(r.position),
    cycle: r.cycle,
    primaryMerged: r.primary_merged,
  }));
}

/**
 * Customers more than MAX_MERGE_CHAIN merges from the end of their chain (PostgreSQL and PGlite): every
 * walk of a chain stops there, so their orders count for no one past it, and a purchase of one of their
 * orders sent to the end is taken as new. Chains that long could be made before 2026-12-07.
 */
export async function farMergesSql(deps: AuditDeps): Promise<FarMerge[]> {
  const events = sql.id(deps.schemas.events, 'events');
  // Walked from each chain's end down its duplicates, to one merge past the bound (a cycle has no end: `unmatchedMergesSql` names it).
  const { rows } = await sql<{ customer_id: string; away: number }>`
    WITH RECURSIVE edges AS (
      SELECT DISTINCT data ->> 'customerId' AS duplicate, data ->> 'primaryId' AS primary_id FROM ${events} WHERE type = 'CustomerMergedInto'
    ), down(customer_id, away) AS (
      SELECT e.duplicate, 1 FROM edges e WHERE NOT EXISTS (SELECT 1 FROM edges up WHERE up.duplicate = e.primary_id)
      UNION ALL
      SELECT e.duplicate, d.away + 1 FROM edges e JOIN down d ON e.primary_id = d.customer_id WHERE d.away <= ${MAX_MERGE_CHAIN}
    )
    SELECT customer_id, max(away)::int AS away FROM down WHERE away > ${MAX_MERGE_CHAIN} GROUP BY customer_id ORDER BY 2, 1`.execute(deps.database.db);
  return rows.map((r) => ({ customerId: r.customer_id, mergesAway: r.away }));
}
