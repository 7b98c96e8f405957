/** Who a subject access request is about, shared by the generic path (subject-access.ts) and the SQL one (sql/subject-events.ts). */
import type { RecordedEvent } from '../shared/events.ts';

/** Event types that open a stream belonging to the customer named in them. */
export const OWNED_STREAM_OPENERS = ['DealOpened', 'FeedbackSubmitted', 'ActivityLogged'];
/** Data fields through which an event names a customer. */
export const CUSTOMER_FIELDS = ['customerId', 'duplicateId', 'primaryId'];

export const namesCustomer = (event: RecordedEvent, customerId: string): boolean => {
  const data = event.data as Record<string, unknown> | null;
  return typeof data === 'object' && data !== null && CUSTOMER_FIELDS.some((f) => data[f] === customerId);
};

/** The customer and every customer merged into them, through chains of merges, from the `CustomerMerged` events. */
export async function withMergedDuplicates(customerId: string, duplicatesOf: (id: string) => Promise<string[]>): Promise<string[]> {
  const ids = [customerId];
  for (let i = 0; i < ids.length; i++) {
    for (const duplicate of await duplicatesOf(ids[i]!)) if (!ids.includes(duplicate)) ids.push(duplicate);
  }
  return ids;
}

export interface SubjectEvents {
  /** The customer first, then the duplicates merged into them. */
  customers: string[];
  streams: string[];
  events: RecordedEvent[];
}
