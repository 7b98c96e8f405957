import { sql, type QueryExecutorProvider } from 'kysely';
import { ERASED } from '../domain/shared.ts';
import type { Projection } from './projection.ts';
import { eraseMatchKeys } from './read-models/customers.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import { ERASED_NAME_SORT } from './read-models/name-sort.ts';

/**
 * Copies of the read models that live outside the live schema (`crm replay --schema s
 * --reporting-schema r`) keep the personal data they were built with. Each copy is registered in
 * `<read schema>.read_model_copies` when it is made, and the `forget_in_copies` projection erases a
 * forgotten customer's personal columns in every registered copy, in the same transaction as its
 * checkpoint, so a forget reaches every copy exactly once, whichever process ran the forget.
 * (Verification shadow schemas are dropped when the check ends; rebuild shadows become the live tables.)
 */

/** Read-model columns holding personal data, by table: what a forget erases in a copy. */
export const PERSONAL_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  customers: ['name', 'email', 'email_search', 'name_search', 'name_sort', 'phone', 'company'],
  feedback: ['subject'],
  activities: ['body'],
};

/** What a personal column reads once erased: '[erased]', but for a name's sort key, which sorts the erased last. */
const erasedValueOf = (column: string): string => (column === 'name_sort' ? ERASED_NAME_SORT : ERASED);

const COPIES_TABLE = 'read_model_copies';

export async function migrateReadModelCopies(db: QueryExecutorProvider, readSchema: string): Promise<void> {
  await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(readSchema)}`.execute(db);
  await sql`
    CREATE TABLE IF NOT EXISTS ${sql.id(readSchema, COPIES_TABLE)} (
      schema_name      text PRIMARY KEY,
      reporting_schema text,
      purpose          text NOT NULL,
      created_at       timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
}

/** Records a copy before it is built, so that a copy interrupted half-way is covered too. */
export async function registerReadModelCopy(
  db: QueryExecutorProvider,
  readSchema: string,
  copy: { schema: string; reportingSchema?: string; purpose: string },
): Promise<void> {
  await migrateReadModelCopies(db, readSchema);
  await sql`
    INSERT INTO ${sql.id(readSchema, COPIES_TABLE)} (schema_name, reporting_schema, purpose)
    VALUES (${copy.schema}, ${copy.reportingSchema ?? null}, ${copy.purpose})
    ON CONFLICT (schema_name) DO UPDATE SET reporting_schema = EXCLUDED.reporting_schema, purpose = EXCLUDED.purpose, created_at = now()`.execute(db);
}

/** Erases the customers' personal columns in every registered copy that still exists (or in `only` of them). */
export async function eraseInCopies(db: QueryExecutorProvider, readSchema: string, customerIds: readonly string[], only?: string): Promise<void> {
  if (customerIds.length === 0) return;
  // With the columns each copy's table has: a copy made by an earlier version lacks the later ones
  // (`name_sort` before customers version 13), and an UPDATE naming one failed the forget.
  const { rows: tables } = await sql<{ schema_name: string; table_name: string; columns: string[] }>`
    SELECT c.schema_name, t.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position) AS columns
      FROM ${sql.id(readSchema, COPIES_TABLE)} c
      JOIN information_schema.tables t ON t.table_schema = c.schema_name AND t.table_name = ANY(${Object.keys(PERSONAL_COLUMNS)}::text[])
      JOIN information_schema.columns k ON k.table_schema = t.table_schema AND k.table_name = t.table_name
     WHERE ${only === undefined ? sql`true` : sql`c.schema_name = ${only}`}
     GROUP BY c.schema_name, t.table_name
     ORDER BY c.schema_name, t.table_name`.execute(db);
  for (const { schema_name, table_name, columns } of tables) {
    // The keys likely duplicates share are personal data too: gone, with the groups they made (copies made before them have none).
    if (table_name === 'customers' && (await hasDuplicateGroups(db, schema_name))) await eraseMatchKeys(db, schema_name, customerIds);
    const assignments = PERSONAL_COLUMNS[table_name]!.filter((column) => columns.includes(column)).map(
      (column) => sql`${sql.id(column)} = CASE WHEN ${sql.id(column)} IS NULL THEN NULL ELSE ${erasedValueOf(column)} END`,
    );
    await sql`
      UPDATE ${sql.id(schema_name, table_name)} SET ${sql.join(assignments)}
       WHERE customer_id::text = ANY(${customerIds}::text[])`.execute(db);
  }
}

/**
 * Once a copy is built: erases in it every customer forgotten by now. A forget made while a replay ran
 * reached the rows the copy held then (`forget_in_copies`); rows the replay wrote afterwards came from
 * events it had read and decrypted before the key was gone, and stayed readable.
 */
export async function eraseForgottenInCopy(db: QueryExecutorProvider, readSchema: string, copy: string, personalData: PersonalData): Promise<void> {
  await eraseInCopies(db, readSchema, await personalData.forgottenCustomers(), copy);
}

const hasDuplicateGroups = async (db: QueryExecutorProvider, schema: string): Promise<boolean> =>
  (await sql`SELECT 1 FROM information_schema.tables WHERE table_schema = ${schema} AND table_name = 'customer_duplicate_groups'`.execute(db)).rows.length > 0;

/** Follows `CustomerForgotten` into every registered copy. Owns no tables of its own to compare or swap. */
export const forgetInCopiesProjection: Projection = {
  name: 'forget_in_copies',
  version: 1,
  tables: [],
  filter: { eventTypes: ['CustomerForgotten'] },
  migrate: migrateReadModelCopies,
  async apply({ trx, schema }, events) {
    const forgotten = events.flatMap((e) => (e.event.type === 'CustomerForgotten' ? [e.event.data.customerId] : []));
    await eraseInCopies(trx, schema, forgotten);
  },
};
