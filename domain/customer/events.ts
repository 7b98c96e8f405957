import { z } from 'zod';
import { Amount, Currency } from '../money.ts';
import { Id, SafeText, ShortText, Tag } from '../shared.ts';

export const CustomerStreamPrefix = 'customer-';

export const CustomerRegistered = z.object({
  customerId: Id,
  name: ShortText,
  email: SafeText.max(320),
  phone: SafeText.max(50).nullable(),
  company: SafeText.max(200).nullable(),
  tags: z.array(Tag),
  source: SafeText.max(100).nullable(),
  marketingConsent: z.boolean(),
});
/** Version 1 (before tags, source and consent existed; `fullName` was renamed `name`). Upcast on read. */
export const CustomerRegisteredV1 = z.object({
  customerId: Id,
  fullName: ShortText,
  email: SafeText.max(320),
  phone: SafeText.max(50).nullable().optional(),
  company: SafeText.max(200).nullable().optional(),
});

export const CustomerContactDetailsChanged = z.object({
  customerId: Id,
  name: ShortText.optional(),
  email: SafeText.max(320).optional(),
  phone: SafeText.max(50).nullable().optional(),
  company: SafeText.max(200).nullable().optional(),
});
export const CustomerTagged = z.object({ customerId: Id, tag: Tag });
export const CustomerUntagged = z.object({ customerId: Id, tag: Tag });
export const CustomerMarketingConsentChanged = z.object({ customerId: Id, marketingConsent: z.boolean() });

/** A purchase; its business time is the event's `metadata.occurredAt`. */
export const PurchaseRecorded = z.object({
  customerId: Id,
  orderId: SafeText.trim().min(1).max(100),
  amount: Amount,
  currency: Currency,
});
export const PurchaseRefunded = z.object({
  customerId: Id,
  orderId: SafeText.trim().min(1).max(100),
  refundId: SafeText.trim().min(1).max(100),
  amount: Amount,
  currency: Currency,
  reason: SafeText.max(2000).nullable(),
});

/** On the primary's stream: it absorbed a duplicate. */
export const CustomerMerged = z.object({ customerId: Id, duplicateId: Id });
/** On the duplicate's stream: it now points to the primary and refuses further commands. */
export const CustomerMergedInto = z.object({ customerId: Id, primaryId: Id });
export const CustomerDeactivated = z.object({ customerId: Id, reason: SafeText.max(2000).nullable() });
export const CustomerReactivated = z.object({ customerId: Id });
/** The customer's data key was deleted: personal fields in every event now read as `[erased]`. */
export const CustomerForgotten = z.object({ customerId: Id });
/** The account owner (a user) changed; who may see the customer under `own`/`team` visibility follows it. */
export const CustomerOwnerAssigned = z.object({ customerId: Id, ownerId: Id, previousOwnerId: Id.nullable() });

export const customerEventSchemas = {
  CustomerRegistered,
  CustomerContactDetailsChanged,
  CustomerTagged,
  CustomerUntagged,
  CustomerMarketingConsentChanged,
  PurchaseRecorded,
  PurchaseRefunded,
  CustomerMerged,
  CustomerMergedInto,
  CustomerDeactivated,
  CustomerReactivated,
  CustomerForgotten,
  CustomerOwnerAssigned,
} as const;

type Schemas = typeof customerEventSchemas;
export type CustomerEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
