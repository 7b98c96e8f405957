import { MAX_MERGE_CHAIN, type CustomerState } from '../domain/customer/decider.ts';
import { entryOf } from '../domain/entries.ts';
import { DomainError } from '../domain/errors.ts';
import type { PreparedCommand } from './prepare.ts';

type LoadCustomer = (customerId: string) => Promise<CustomerState>;

/**
 * The customers merged into `customer`, breadth first (its own duplicates, then theirs), each with how
 * many merges it is from `customer`, up to `levels` merges away. Read one by one through `load`, so a
 * caller that stops early reads no further.
 */
async function* duplicatesOf(customer: CustomerState, load: LoadCustomer, levels: number): AsyncGenerator<{ id: string; state: CustomerState; away: number }> {
  let level = customer.mergedDuplicates;
  for (let away = 1; away <= levels && level.length > 0; away++) {
    const next: string[] = [];
    for (const id of level) {
      const state = await load(id);
      yield { id, state, away };
      next.push(...state.mergedDuplicates);
    }
    level = next;
  }
}

/**
 * Fills `mergedOrder` of a purchase or refund sent to a customer that absorbed duplicates: the order as
 * one of them recorded it (merge chains followed). A duplicate's orders stay on its own stream and
 * count for the primary, so the primary's state alone would take the same order again and count it
 * twice; a refund of it is recorded on the duplicate that holds it, which the refusal names.
 * `load` reads a customer's current state (through the handler's cache: a duplicate takes no new
 * purchase once merged, so its orders do not move).
 */
export const resolveMergedOrder = async (prepared: PreparedCommand, customer: CustomerState, load: LoadCustomer): Promise<void> => {
  if ((prepared.type !== 'RecordPurchase' && prepared.type !== 'RefundPurchase') || customer.mergedDuplicates.length === 0) return;
  const orderId = prepared.command.orderId as string;
  if (entryOf(customer.orders, orderId)) return;
  for await (const duplicate of duplicatesOf(customer, load, MAX_MERGE_CHAIN)) {
    const order = entryOf(duplicate.state.orders, orderId);
    if (order) {
      prepared.command.mergedOrder = { customerId: duplicate.id, amount: order.amount, currency: order.currency };
      return;
    }
  }
};

/**
 * How many merges the furthest of `customer`'s duplicates is from it, counted up to one past the bound
 * (enough for `decideMerge` to refuse a merge that would take a chain past it). Duplicates take no
 * command once merged, so only the customer's own stream (checked by the merge's append) can change
 * the answer meanwhile.
 */
export const mergeChainDepth = async (customer: CustomerState, load: LoadCustomer): Promise<number> => {
  let depth = 0;
  for await (const duplicate of duplicatesOf(customer, load, MAX_MERGE_CHAIN + 1)) depth = duplicate.away;
  return depth;
};

/**
 * A `customer.merged` refusal naming the customer at the end of the merge chain, the one that takes
 * commands: the decider knows one step (B merged into P), and P merged into Q since refused in turn,
 * each refusal advising the next link. Any other error is returned as it is.
 */
export const namingChainEnd = async (error: unknown, load: LoadCustomer): Promise<unknown> => {
  if (!(error instanceof DomainError) || error.code !== 'customer.merged' || typeof error.details?.primaryId !== 'string') return error;
  const first = error.details.primaryId;
  let end = first;
  for (let hop = 0; hop < MAX_MERGE_CHAIN; hop++) {
    const next = (await load(end)).mergedInto;
    if (!next) break;
    end = next;
  }
  if (end === first) return error;
  const customerId = String(error.details.customerId);
  return new DomainError(
    error.kind,
    error.code,
    `Customer ${customerId} was merged into ${first}, which was merged into others since; use the primary customer ${end}`,
    error.field,
    { ...error.details, primaryId: end },
  );
};
