import { customerSnapshot, type CustomerSnapshot, type CustomerState } from '../domain/customer/decider.ts';
import type { DealState } from '../domain/deal/decider.ts';
import type { ActivityState } from '../domain/activity/decider.ts';
import type { PreparedCommand } from './prepare.ts';

/** Current states of the streams an activity command refers to (through the handler's cache). */
export interface ParentLoader {
  customer(id: string): Promise<CustomerState>;
  deal(id: string): Promise<DealState>;
  activity(id: string): Promise<ActivityState>;
}

/**
 * Fills what the activity decider needs so that it stays pure: for a new activity, the customer it
 * belongs to (a deal's activity belongs to the deal's customer, or to the primary that customer was
 * merged into, so that it is encrypted with, shown on and forgotten with the surviving record) and the
 * deal; for a change or completion, the customer of the activity (a forgotten one refuses).
 */
export const resolveActivityParent = async (prepared: PreparedCommand, load: ParentLoader): Promise<void> => {
  const { command } = prepared;
  const snapshotOf = async (customerId: string): Promise<CustomerSnapshot> => customerSnapshot(await load.customer(customerId));
  if (prepared.type === 'LogActivity') {
    if (typeof command.dealId === 'string') {
      const deal = await load.deal(command.dealId);
      command.deal = { exists: deal.exists, customerId: deal.customerId };
      // The decider refuses an unknown deal before it looks at a customer.
      if (!deal.exists || deal.customerId === null) return;
      let customerId = deal.customerId;
      let customer = await snapshotOf(customerId);
      if (customer.mergedInto) {
        customerId = customer.mergedInto;
        customer = await snapshotOf(customerId);
      }
      command.customerId = customerId;
      command.customer = customer;
      return;
    }
    command.customer = await snapshotOf(command.customerId as string);
    return;
  }
  if (prepared.type === 'ChangeActivity' || prepared.type === 'CompleteActivity') {
    const activity = await load.activity(prepared.id);
    if (activity.customerId) command.customer = await snapshotOf(activity.customerId);
  }
};
