import { MAX_MERGE_CHAIN, type CustomerState } from '../domain/customer/decider.ts';
import { entryOf } from '../domain/entries.ts';
import type { PreparedCommand } from './prepare.ts';

/**
 * Fills `mergedOrder` of a purchase sent to a customer that absorbed duplicates: the order as one of
 * them recorded it (merge chains followed). A duplicate's orders stay on its own stream and count for
 * the primary, so the primary's state alone would take the same order again and count it twice.
 * `load` reads a customer's current state (through the handler's cache: a duplicate takes no new
 * purchase once merged, so its orders do not move).
 */
export const resolveMergedOrder = async (
  prepared: PreparedCommand,
  customer: CustomerState,
  load: (customerId: string) => Promise<CustomerState>,
): Promise<void> => {
  if (prepared.type !== 'RecordPurchase' || customer.mergedDuplicates.length === 0) return;
  const orderId = prepared.command.orderId as string;
  if (entryOf(customer.orders, orderId)) return;
  let level = customer.mergedDuplicates;
  for (let depth = 0; depth < MAX_MERGE_CHAIN && level.length > 0; depth++) {
    const next: string[] = [];
    for (const duplicateId of level) {
      const duplicate = await load(duplicateId);
      const order = entryOf(duplicate.orders, orderId);
      if (order) {
        prepared.command.mergedOrder = { customerId: duplicateId, amount: order.amount, currency: order.currency };
        return;
      }
      next.push(...duplicate.mergedDuplicates);
    }
    level = next;
  }
};
