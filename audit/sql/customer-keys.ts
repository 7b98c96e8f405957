import { sql } from 'kysely';
import type { SqlDatabase } from '../../shared/sql.ts';

/**
 * The words each kind of disagreement is reported with: the advice (audit/summary.ts) is chosen by
 * them, since a finished job keeps only its first broken link's reason.
 */
export const KEY_PUT_BACK = 'was forgotten (CustomerForgotten), yet a data key is stored for it again';
export const KEY_GONE = 'was never forgotten, yet no data key is stored for it';

/** Customers whose data key disagrees with their history (at most this many of each are named). */
export const NAMED_CUSTOMERS = 20;

export interface CustomerKeysVerification {
  ok: boolean;
  /**
   * Forgotten (their stream holds `CustomerForgotten`) yet holding a data key: the key was put back
   * (from a backup, by hand), and their personal data reads in clear again. The hash chains cannot
   * see it: keys are not events.
   */
  unforgotten: string[];
  /**
   * Never forgotten, their registration encrypted, yet holding no key: the key row was deleted, or its
   * key erased. They read as `[erased]`, like a forgotten customer; a deleted row would be replaced by
   * a new key at the next command, leaving their older events unreadable for good.
   */
  missing: string[];
}

/**
 * Compares the customer data keys (`customer_keys`, beside the events) with the forgets the events
 * record. An events schema without keys (no personal data stored yet) has nothing to disagree.
 */
export async function verifyCustomerKeys(database: SqlDatabase, schema: string): Promise<CustomerKeysVerification> {
  const { rows: present } = await sql<{ keys: string | null }>`SELECT to_regclass(${`${schema}.customer_keys`})::text AS keys`.execute(database.db);
  if (!present[0]?.keys) return { ok: true, unforgotten: [], missing: [] };
  const keys = sql.id(schema, 'customer_keys');
  const events = sql.id(schema, 'events');
  const { rows: unforgotten } = await sql<{ customer_id: string }>`
    SELECT k.customer_id FROM ${keys} k
     WHERE k.data_key IS NOT NULL
       AND EXISTS (SELECT 1 FROM ${events} e WHERE e.stream = 'customer-' || k.customer_id AND e.type = 'CustomerForgotten')
     ORDER BY k.customer_id LIMIT ${NAMED_CUSTOMERS}`.execute(database.db);
  const { rows: missing } = await sql<{ customer_id: string }>`
    SELECT substr(e.stream, 10) AS customer_id FROM ${events} e
     WHERE e.type = 'CustomerRegistered' AND e.stream LIKE 'customer-%' AND e.data::text LIKE '%"enc:v%'
       AND NOT EXISTS (SELECT 1 FROM ${keys} k WHERE k.customer_id = substr(e.stream, 10) AND k.data_key IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM ${events} f WHERE f.stream = e.stream AND f.type = 'CustomerForgotten')
     ORDER BY 1 LIMIT ${NAMED_CUSTOMERS}`.execute(database.db);
  return {
    ok: unforgotten.length === 0 && missing.length === 0,
    unforgotten: unforgotten.map((r) => r.customer_id),
    missing: missing.map((r) => r.customer_id),
  };
}
