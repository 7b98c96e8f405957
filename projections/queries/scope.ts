import { sql, type RawBuilder } from 'kysely';
import type { ReadModelSource } from './page.ts';

/**
 * What a caller may see, as the API resolved it from their key (api/auth/viewer.ts): the user ids
 * whose records are visible. Absent (undefined or null) means everything, for service keys and users
 * with `all` visibility. An empty list sees no owned record at all.
 */
export interface ReadScope {
  owners: readonly string[];
}

const ownersUuid = (scope: ReadScope) => sql`CAST(${[...scope.owners]} AS uuid[])`;
const ownersText = (scope: ReadScope) => sql`CAST(${[...scope.owners]} AS text[])`;

/** Customers of the scope: those whose account owner is one of its users (unowned customers are outside every scope). */
export const customerInScope = (scope: ReadScope): RawBuilder<unknown> => sql`t.owner_id = ANY(${ownersUuid(scope)})`;

/** Customer ids owned within the scope, for records that follow their customer's owner. */
const ownedCustomers = (source: ReadModelSource, scope: ReadScope) =>
  sql`SELECT c.customer_id FROM ${sql.id(source.schema, 'customers')} c WHERE c.owner_id = ANY(${ownersUuid(scope)})`;

/** Deals of the scope: its users own the deal, or own the deal's customer (the account owner sees the account's deals). */
export const dealInScope = (source: ReadModelSource, scope: ReadScope): RawBuilder<unknown> =>
  sql`(t.owner_id = ANY(${ownersText(scope)}) OR t.customer_id IN (${ownedCustomers(source, scope)}))`;

/** Feedback of the scope: assigned to one of its users, or about a customer one of them owns. */
export const feedbackInScope = (source: ReadModelSource, scope: ReadScope): RawBuilder<unknown> =>
  sql`(t.assignee_id = ANY(${ownersText(scope)}) OR t.customer_id IN (${ownedCustomers(source, scope)}))`;

/** The scope's condition, or none for an unrestricted caller. */
export const scoped = (scope: ReadScope | null | undefined, condition: (scope: ReadScope) => RawBuilder<unknown>): RawBuilder<unknown>[] =>
  scope ? [condition(scope)] : [];
