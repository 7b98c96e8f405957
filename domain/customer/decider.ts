import type { Decider } from '../decider.ts';
import { dictionary, entryOf, setEntry } from '../entries.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { fromMinor, toMinor } from '../money.ts';
import { ERASED } from '../shared.ts';
import { assertNotBefore, isBefore } from '../time.ts';
import { MAX_CUSTOMER_TAGS, normaliseEmail, type CustomerCommand, type MergeCustomer, type RegisterCustomer } from './commands.ts';
import type { CustomerEvent } from './events.ts';
import { storedTag, tagSet, withoutTag, withTag } from './tags.ts';
import { assertOwnerUsable, type UserSnapshot } from '../user/decider.ts';

/**
 * The most merges a duplicate may be from the customer that takes its commands (B into A, later A into C:
 * B is two away from C). A merge that would put one further away is refused, so that every walk of a
 * chain (the command side, the read models, their queries and the audit) reaches the whole of it with
 * this one bound.
 */
export const MAX_MERGE_CHAIN = 16;

export interface CustomerOrder {
  amount: number;
  currency: string;
  /** Sum of refunds so far, major units (kept exact through minor-unit arithmetic). */
  refunded: number;
  /**
   * When it was bought (business time), in whole seconds since the epoch (a number: a state holds one
   * per order, and the ISO text is three times its size); null where the fold was not given it. A
   * refund is not dated well before it.
   */
  purchasedAt: number | null;
}

export interface CustomerRefund {
  orderId: string;
  amount: number;
  currency: string;
}

/** Plain JSON (no Map/Set) so that a point-in-time state can be returned to auditors as is. */
export interface CustomerState {
  exists: boolean;
  customerId: string | null;
  name: string | null;
  email: string | null;
  phone: string | null;
  company: string | null;
  tags: string[];
  source: string | null;
  marketingConsent: boolean;
  status: 'active' | 'inactive';
  deactivationReason: string | null;
  /**
   * Business time of the registration, then of the latest deactivation or reactivation: the next
   * status change is not dated before it. One field, not two: a state is held per customer of an
   * import (commands/compact-state.ts). Null where the fold had none.
   */
  statusChangedAt: string | null;
  orders: Record<string, CustomerOrder>;
  refunds: Record<string, CustomerRefund>;
  /**
   * Set on a duplicate once merged: every later command is refused and names this primary, but a
   * refund of one of its orders (the order is recorded here, and the primary counts it).
   */
  mergedInto: string | null;
  /** Duplicates this customer absorbed. */
  mergedDuplicates: string[];
  forgotten: boolean;
  /** The account owner (a user id), null until one is assigned. */
  ownerId: string | null;
}

export const initialCustomerState = (): CustomerState => ({
  exists: false,
  customerId: null,
  name: null,
  email: null,
  phone: null,
  company: null,
  tags: [],
  source: null,
  marketingConsent: false,
  status: 'active',
  deactivationReason: null,
  statusChangedAt: null,
  orders: dictionary(),
  refunds: dictionary(),
  mergedInto: null,
  mergedDuplicates: [],
  forgotten: false,
  ownerId: null,
});

export const evolveCustomer = (state: CustomerState, event: CustomerEvent, occurredAt?: string): CustomerState => {
  switch (event.type) {
    case 'CustomerRegistered': {
      const d = event.data;
      return {
        ...state,
        exists: true,
        customerId: d.customerId,
        name: d.name,
        email: d.email,
        phone: d.phone,
        company: d.company,
        tags: tagSet(d.tags),
        source: d.source,
        marketingConsent: d.marketingConsent,
        statusChangedAt: occurredAt ?? null,
      };
    }
    case 'CustomerContactDetailsChanged': {
      const d = event.data;
      return {
        ...state,
        name: d.name ?? state.name,
        email: d.email ?? state.email,
        phone: d.phone !== undefined ? d.phone : state.phone,
        company: d.company !== undefined ? d.company : state.company,
      };
    }
    case 'CustomerTagged':
      return storedTag(state.tags, event.data.tag) !== undefined ? state : { ...state, tags: withTag(state.tags, event.data.tag) };
    case 'CustomerUntagged':
      return { ...state, tags: withoutTag(state.tags, event.data.tag) };
    case 'CustomerMarketingConsentChanged':
      return { ...state, marketingConsent: event.data.marketingConsent };
    case 'PurchaseRecorded': {
      const d = event.data;
      // In place: see `Decider` (linear folds of long streams).
      setEntry(state.orders, d.orderId, {
        amount: d.amount,
        currency: d.currency,
        refunded: 0,
        purchasedAt: occurredAt === undefined ? null : Math.floor(Date.parse(occurredAt) / 1_000),
      });
      return { ...state };
    }
    case 'PurchaseRefunded': {
      const d = event.data;
      const order = entryOf(state.orders, d.orderId);
      if (order) setEntry(state.orders, d.orderId, { ...order, refunded: fromMinor(toMinor(order.refunded) + toMinor(d.amount)) });
      setEntry(state.refunds, d.refundId, { orderId: d.orderId, amount: d.amount, currency: d.currency });
      return { ...state };
    }
    case 'CustomerMerged':
      return state.mergedDuplicates.includes(event.data.duplicateId)
        ? state
        : { ...state, mergedDuplicates: [...state.mergedDuplicates, event.data.duplicateId] };
    case 'CustomerMergedInto':
      return { ...state, mergedInto: event.data.primaryId };
    case 'CustomerDeactivated':
      return { ...state, status: 'inactive', deactivationReason: event.data.reason, statusChangedAt: occurredAt ?? null };
    case 'CustomerReactivated':
      return { ...state, status: 'active', deactivationReason: null, statusChangedAt: occurredAt ?? null };
    case 'CustomerOwnerAssigned':
      return { ...state, ownerId: event.data.ownerId };
    case 'CustomerForgotten':
      return { ...state, forgotten: true, name: ERASED, email: ERASED, phone: state.phone === null ? null : ERASED };
  }
};

/** Refusals shared by every command on an existing customer: unknown, forgotten, merged away. */
export const assertCustomerWritable = (state: CustomerState, customerId: string, field = 'customerId'): void =>
  assertCustomerUsable(customerSnapshot(state), customerId, { requireActive: false, field, addressed: true });

/** The fields of a RegisterCustomer command that its CustomerRegistered event records. */
export type RegistrationFields = Pick<RegisterCustomer, 'customerId' | 'name' | 'email' | 'phone' | 'company' | 'tags' | 'source' | 'marketingConsent'>;

/**
 * The CustomerRegistered data a RegisterCustomer command records, its defaults filled in. The one
 * shaping: an import tells a row from a stored registration through it too (commands/fingerprint.ts
 * registersAsStored), so a default changed here changes both.
 */
export const registeredData = (c: RegistrationFields): Extract<CustomerEvent, { type: 'CustomerRegistered' }>['data'] => ({
  customerId: c.customerId,
  name: c.name,
  email: normaliseEmail(c.email),
  phone: c.phone ?? null,
  company: c.company ?? null,
  tags: tagSet(c.tags ?? []),
  source: c.source ?? null,
  marketingConsent: c.marketingConsent ?? false,
});

const decideRegister = (c: Extract<CustomerCommand, { type: 'RegisterCustomer' }>, s: CustomerState): CustomerEvent[] => {
  if (s.exists) throw invalidState('customer.already_registered', `Customer ${c.customerId} is already registered`, 'customerId');
  return [{ type: 'CustomerRegistered', data: registeredData(c) }, ...decideOwner(c.customerId, c.ownerId, c.owner, s.ownerId)];
};

/** The owner events of a command naming `ownerId`: none when absent or unchanged; refused when not an active user. */
const decideOwner = (customerId: string, ownerId: string | undefined, owner: UserSnapshot | undefined, current: string | null): CustomerEvent[] => {
  if (ownerId === undefined || ownerId === current) return [];
  assertOwnerUsable(owner ?? { exists: false, active: false }, ownerId);
  return [{ type: 'CustomerOwnerAssigned', data: { customerId, ownerId, previousOwnerId: current } }];
};

const decideDetails = (c: Extract<CustomerCommand, { type: 'ChangeCustomerDetails' }>, s: CustomerState): CustomerEvent[] => {
  // Only what actually changes is recorded: a PATCH that repeats current values appends nothing.
  const changed: { name?: string; email?: string; phone?: string | null; company?: string | null } = {};
  if (c.name !== undefined && c.name !== s.name) changed.name = c.name;
  if (c.email !== undefined && normaliseEmail(c.email) !== s.email) changed.email = normaliseEmail(c.email);
  if (c.phone !== undefined && c.phone !== s.phone) changed.phone = c.phone;
  if (c.company !== undefined && c.company !== s.company) changed.company = c.company;
  const events: CustomerEvent[] = [];
  if (Object.keys(changed).length > 0) events.push({ type: 'CustomerContactDetailsChanged', data: { customerId: c.customerId, ...changed } });
  if (c.marketingConsent !== undefined && c.marketingConsent !== s.marketingConsent)
    events.push({ type: 'CustomerMarketingConsentChanged', data: { customerId: c.customerId, marketingConsent: c.marketingConsent } });
  events.push(...decideOwner(c.customerId, c.ownerId, c.owner, s.ownerId));
  return events;
};

const decidePurchase = (c: Extract<CustomerCommand, { type: 'RecordPurchase' }>, s: CustomerState): CustomerEvent[] => {
  // A merged duplicate keeps its orders on its own stream, and the primary counts them: one of them
  // sent again to the primary (as the refusal of the duplicate advises) is the same purchase too.
  const own = entryOf(s.orders, c.orderId);
  const existing = own ?? c.mergedOrder;
  if (existing) {
    // The same order reported twice (a retry, a replayed import) is the same purchase: nothing to record.
    const where = own || !c.mergedOrder ? '' : ` on customer ${c.mergedOrder.customerId}, merged into this one`;
    const recorded = {
      orderId: c.orderId,
      recordedAmount: existing.amount,
      recordedCurrency: existing.currency,
      ...(own || !c.mergedOrder ? {} : { recordedOn: c.mergedOrder.customerId }),
    };
    if (existing.currency !== c.currency)
      throw ruleViolated('purchase.order_conflict', `Order ${c.orderId} was recorded in ${existing.currency}${where}`, 'currency', recorded);
    if (toMinor(existing.amount) !== toMinor(c.amount))
      throw ruleViolated('purchase.order_conflict', `Order ${c.orderId} was recorded with amount ${existing.amount}${where}`, 'amount', recorded);
    // A time stated again must be the recorded one (to the second, as the state keeps it): answered as
    // the same purchase, a corrected date was dropped while the client was told it was taken.
    const recordedAt = own?.purchasedAt ?? null;
    if (c.statedAt !== undefined && recordedAt !== null && Math.floor(Date.parse(c.statedAt) / 1_000) !== recordedAt) {
      const at = new Date(recordedAt * 1_000).toISOString();
      throw ruleViolated('purchase.order_conflict', `Order ${c.orderId} was recorded as bought at ${at}; an order keeps its time`, 'occurredAt', {
        ...recorded,
        recordedAt: at,
      });
    }
    return [];
  }
  return [{ type: 'PurchaseRecorded', data: { customerId: c.customerId, orderId: c.orderId, amount: c.amount, currency: c.currency } }];
};

const decideRefund = (c: Extract<CustomerCommand, { type: 'RefundPurchase' }>, s: CustomerState): CustomerEvent[] => {
  const previous = entryOf(s.refunds, c.refundId);
  if (previous) {
    if (previous.orderId === c.orderId && previous.currency === c.currency && toMinor(previous.amount) === toMinor(c.amount)) return [];
    throw ruleViolated('refund.refund_conflict', `Refund ${c.refundId} was already recorded with different values`, 'refundId', {
      refundId: c.refundId,
    });
  }
  const order = entryOf(s.orders, c.orderId);
  if (!order) {
    // The primary of a merge does not hold its duplicates' orders: say where such a refund is recorded,
    // naming the customer that holds the order (found along the chain), or else the duplicates.
    const holder = c.mergedOrder?.customerId;
    const elsewhere = holder
      ? `; it is recorded on customer ${holder}, merged into this one: record its refund there (POST /customers/${holder}/refunds)`
      : s.mergedDuplicates.length > 0
        ? `; an order of a customer merged into this one is refunded on that customer (${s.mergedDuplicates.join(', ')})`
        : '';
    throw notFound('purchase.not_found', `No purchase with order id ${c.orderId}${elsewhere}`, 'orderId', {
      orderId: c.orderId,
      ...(s.mergedDuplicates.length > 0 ? { mergedDuplicates: s.mergedDuplicates } : {}),
      ...(holder ? { recordedOn: holder } : {}),
    });
  }
  // `== null`: states saved before orders kept their time have none.
  const purchasedAt = order.purchasedAt == null ? null : new Date(order.purchasedAt * 1_000).toISOString();
  assertNotBefore(c.occurredAt, purchasedAt, 'refund.before_purchase', `the purchase of order ${c.orderId}`);
  if (order.currency !== c.currency)
    throw ruleViolated('refund.currency_mismatch', `Order ${c.orderId} was paid in ${order.currency}`, 'currency', {
      expected: order.currency,
    });
  if (toMinor(c.amount) <= 0) throw ruleViolated('refund.amount_not_positive', 'A refund must be greater than zero', 'amount');
  const remaining = toMinor(order.amount) - toMinor(order.refunded);
  if (toMinor(c.amount) > remaining)
    throw ruleViolated(
      'refund.exceeds_purchase',
      `Refund of ${c.amount} exceeds the ${fromMinor(remaining)} ${order.currency} left to refund on order ${c.orderId}`,
      'amount',
      { remaining: fromMinor(remaining), currency: order.currency },
    );
  return [
    {
      type: 'PurchaseRefunded',
      data: {
        customerId: c.customerId,
        orderId: c.orderId,
        refundId: c.refundId,
        amount: c.amount,
        currency: c.currency,
        reason: c.reason ?? null,
      },
    },
  ];
};

/**
 * A deactivation or reactivation is not dated before the status it ends began (the registration, or
 * the previous change): the timeline would show the customer leaving before arriving. `?? null`:
 * states saved before they kept the time have none.
 */
const assertNotBeforeStatusChange = (occurredAt: string, s: CustomerState): void => {
  // An active customer's last change is the registration or a reactivation: the state does not say which.
  const since = s.status === 'inactive' ? "the customer's deactivation" : "the customer's registration or latest reactivation";
  assertNotBefore(occurredAt, s.statusChangedAt ?? null, 'customer.before_status_changed', since);
};

export const decideCustomer = (command: CustomerCommand, state: CustomerState): CustomerEvent[] => {
  if (command.type === 'RegisterCustomer') return decideRegister(command, state);
  if (command.type === 'ForgetCustomer') {
    if (!state.exists) throw notFound('customer.not_found', `Customer ${command.customerId} does not exist`, 'customerId');
    // Forgetting twice is the same request: the handler still re-runs key deletion (safe retry).
    if (state.forgotten) return [];
    return [{ type: 'CustomerForgotten', data: { customerId: command.customerId } }];
  }
  const closed = state.exists && (state.mergedInto !== null || state.forgotten);
  // A merged duplicate's orders stay on its stream: a refund of one is recorded there (the read models
  // and analytics count it for the primary, as they count the order), else finance could record none.
  // So does a forgotten customer's: a refund holds no personal data, and the money history goes on.
  if (command.type === 'RefundPurchase' && closed) return decideRefund(command, state);
  // An order such a customer already holds, sent again (a purchases export imported again), is the
  // same purchase: nothing to record. Any other purchase is refused below.
  if (command.type === 'RecordPurchase' && closed && entryOf(state.orders, command.orderId)) return decidePurchase(command, state);
  assertCustomerWritable(state, command.customerId);
  switch (command.type) {
    case 'ChangeCustomerDetails':
      return decideDetails(command, state);
    case 'TagCustomer':
      // Tagged already, in any case: nothing to record (the first spelling stays).
      if (storedTag(state.tags, command.tag) !== undefined) return [];
      if (state.tags.length >= MAX_CUSTOMER_TAGS)
        throw ruleViolated(
          'customer.too_many_tags',
          `Customer ${command.customerId} has ${state.tags.length} tags, the most a customer carries; remove one first`,
          'tag',
          {
            tags: state.tags.length,
            max: MAX_CUSTOMER_TAGS,
          },
        );
      return [{ type: 'CustomerTagged', data: { customerId: command.customerId, tag: command.tag } }];
    case 'UntagCustomer': {
      // Removed as it is held: `untag vip` removes `VIP`.
      const held = storedTag(state.tags, command.tag);
      return held === undefined ? [] : [{ type: 'CustomerUntagged', data: { customerId: command.customerId, tag: held } }];
    }
    case 'RecordPurchase':
      return decidePurchase(command, state);
    case 'RefundPurchase':
      return decideRefund(command, state);
    case 'DeactivateCustomer':
      if (state.status === 'inactive') throw invalidState('customer.already_inactive', `Customer ${command.customerId} is already inactive`);
      assertNotBeforeStatusChange(command.occurredAt, state);
      return [{ type: 'CustomerDeactivated', data: { customerId: command.customerId, reason: command.reason ?? null } }];
    case 'AssignCustomerOwner':
      return decideOwner(command.customerId, command.ownerId, command.owner, state.ownerId);
    case 'ReactivateCustomer':
      if (state.status === 'active') throw invalidState('customer.already_active', `Customer ${command.customerId} is already active`);
      assertNotBeforeStatusChange(command.occurredAt, state);
      return [{ type: 'CustomerReactivated', data: { customerId: command.customerId } }];
  }
};

export const customerDecider: Decider<CustomerCommand, CustomerEvent, CustomerState> = {
  initialState: initialCustomerState,
  evolve: evolveCustomer,
  decide: decideCustomer,
};

/**
 * Merging touches two streams. The duplicate records `CustomerMergedInto` (and then refuses every
 * command), the primary records `CustomerMerged`. A merge interrupted between the two appends is
 * completed by retrying it: the duplicate already pointing at this primary is not a refusal.
 */
export const decideMerge = (
  command: MergeCustomer,
  primary: CustomerState,
  duplicate: CustomerState,
  /** How many merges the duplicate's own furthest duplicate is from it (0: it absorbed none). */
  duplicateChainDepth = 0,
): { primary: CustomerEvent[]; duplicate: CustomerEvent[] } => {
  const { customerId, duplicateId } = command;
  if (customerId === duplicateId) throw ruleViolated('customer.self_merge', 'A customer cannot be merged into itself', 'duplicateId');
  assertCustomerWritable(primary, customerId, 'customerId');
  // The duplicate is named in the body, not addressed: an unknown one is a rule violation (422), not a 404.
  if (!duplicate.exists) throw ruleViolated('customer.not_found', `Customer ${duplicateId} does not exist`, 'duplicateId', { customerId: duplicateId });
  if (duplicate.mergedInto === customerId) {
    const primaryEvents: CustomerEvent[] = primary.mergedDuplicates.includes(duplicateId)
      ? []
      : [{ type: 'CustomerMerged', data: { customerId, duplicateId } }];
    return { primary: primaryEvents, duplicate: [] };
  }
  if (duplicate.mergedInto)
    throw invalidState('customer.already_merged', `Customer ${duplicateId} was already merged into ${duplicate.mergedInto}`, 'duplicateId', {
      primaryId: duplicate.mergedInto,
    });
  if (duplicate.forgotten) throw invalidState('customer.forgotten', `Customer ${duplicateId} has been forgotten`, 'duplicateId');
  if (duplicateChainDepth + 1 > MAX_MERGE_CHAIN)
    throw ruleViolated(
      'customer.merge_chain_too_long',
      `Customer ${duplicateId} holds duplicates merged ${duplicateChainDepth} deep; merged into ${customerId}, the furthest would be ` +
        `${duplicateChainDepth + 1} merges away, past the ${MAX_MERGE_CHAIN} a merge chain may reach. Merge ${customerId} into ${duplicateId} instead.`,
      'duplicateId',
      { customerId: duplicateId, chainDepth: duplicateChainDepth },
    );
  return {
    duplicate: [{ type: 'CustomerMergedInto', data: { customerId: duplicateId, primaryId: customerId } }],
    primary: [{ type: 'CustomerMerged', data: { customerId, duplicateId } }],
  };
};

/** What other aggregates need to know about a customer they refer to (by id only). */
export interface CustomerSnapshot {
  exists: boolean;
  active: boolean;
  forgotten: boolean;
  mergedInto: string | null;
  /** For campaigns that reach only customers who consented to marketing. */
  marketingConsent: boolean;
  /** Business time of the deactivation of an inactive customer (null while active, or when undated). */
  inactiveSince: string | null;
}

export const customerSnapshot = (state: CustomerState): CustomerSnapshot => ({
  exists: state.exists,
  active: state.status === 'active',
  inactiveSince: state.status === 'inactive' ? state.statusChangedAt : null,
  forgotten: state.forgotten,
  mergedInto: state.mergedInto,
  marketingConsent: state.marketingConsent,
});

/**
 * Refuses work that refers to a customer who is unknown, forgotten, merged away or (when required)
 * inactive. An unknown customer is `not_found` when the command addresses the customer itself, and a
 * `rule_violated` when another aggregate merely refers to it (a deal's customerId is bad input, not a missing resource).
 */
export const assertCustomerUsable = (
  customer: CustomerSnapshot,
  customerId: string,
  options: {
    requireActive: boolean;
    field?: string;
    addressed?: boolean;
    /** Business time of the work: an inactive customer was active before its deactivation (history brought in later). */
    at?: string;
  },
): void => {
  const field = options.field ?? 'customerId';
  if (!customer.exists)
    throw (options.addressed ? notFound : ruleViolated)('customer.not_found', `Customer ${customerId} does not exist`, field, { customerId });
  if (customer.forgotten) throw invalidState('customer.forgotten', `Customer ${customerId} has been forgotten`, field, { customerId });
  if (customer.mergedInto)
    throw invalidState('customer.merged', `Customer ${customerId} was merged into ${customer.mergedInto}; use the primary customer`, field, {
      customerId,
      primaryId: customer.mergedInto,
    });
  const activeThen = options.at !== undefined && customer.inactiveSince !== null && isBefore(options.at, customer.inactiveSince);
  if (options.requireActive && !customer.active && !activeThen)
    throw invalidState(
      'customer.inactive',
      `Customer ${customerId} is deactivated${customer.inactiveSince ? ` (since ${customer.inactiveSince}): only work dated before that is taken` : ''}`,
      field,
      { customerId },
    );
};
