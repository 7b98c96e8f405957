import { z } from 'zod';
import { CommandAmount, Currency, IsoCurrency } from '../money.ts';
import type { UserSnapshot } from '../user/decider.ts';
import { EmailAddress, Id, IsoDateTime, MultiLineText, SingleLineText, DisplayText, NewTag, Tag, withBusinessTime } from '../shared.ts';

/**
 * Customer command payloads as clients send them (strict: unknown fields are refused).
 * Path ids are fields too (`customerId`), so an HTTP route validates `{ ...body, ...params }`.
 */
/** Compared and stored normalised (the decider normalises it). */
const Email = EmailAddress;
/** Emails compare trimmed and case-insensitively: `GRACE@navy.example` is `grace@navy.example`. */
export { normaliseEmail } from '../shared.ts';
const Phone = SingleLineText.min(3)
  .max(50)
  .regex(/^[+0-9 ()./-]+$/, 'digits, spaces and + ( ) . / -');
const Company = SingleLineText.min(1).max(200);
const OrderId = SingleLineText.min(1).max(100);
const Reason = MultiLineText.max(2000);

/**
 * The most tags a customer carries, however they came (registration, tagging, an import): the same
 * bound everywhere, so that what one path accepts another can take back (tagging had none while a
 * registration took 50, so an exported customer with 63 tags could not be imported). A merge keeps
 * both customers' tags, even past it.
 */
export const MAX_CUSTOMER_TAGS = 500;

export const RegisterCustomerPayload = z
  .object({
    /** Client-chosen id; generated when absent. */
    customerId: Id.optional(),
    name: DisplayText,
    email: Email,
    phone: Phone.nullable().optional(),
    company: Company.nullable().optional(),
    tags: z.array(NewTag).max(MAX_CUSTOMER_TAGS).optional(),
    source: SingleLineText.min(1).max(100).nullable().optional(),
    marketingConsent: z.boolean().optional(),
    /** Register even though another customer has this email (normally refused with 409 naming that customer). */
    allowDuplicate: z.boolean().optional(),
    /** The account owner: a registered, active user (the calling user's own id when a user's key registers without one). */
    ownerId: Id.optional(),
  })
  .strict();

export const ChangeCustomerDetailsPayload = z
  .object({
    customerId: Id,
    name: DisplayText.optional(),
    email: Email.optional(),
    phone: Phone.nullable().optional(),
    company: Company.nullable().optional(),
    marketingConsent: z.boolean().optional(),
    /** A new account owner (a registered, active user). */
    ownerId: Id.optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).some((k) => k !== 'customerId'), { message: 'at least one field to change' });

export const TagCustomerPayload = z.object({ customerId: Id, tag: NewTag }).strict();
export const UntagCustomerPayload = z.object({ customerId: Id, tag: Tag }).strict();

export const RecordPurchasePayload = z
  .object({
    customerId: Id,
    orderId: OrderId,
    amount: CommandAmount,
    currency: IsoCurrency,
    /** Business time of the purchase; defaults to the command's time. */
    occurredAt: IsoDateTime.optional(),
  })
  .strict();

export const RefundPurchasePayload = z
  .object({
    customerId: Id,
    orderId: OrderId,
    /** Idempotency of the refund itself; derived from the idempotency key (or generated) when absent. */
    refundId: SingleLineText.min(1).max(100).optional(),
    amount: CommandAmount,
    // Any three capitals: the decider takes only the order's own currency, which an order recorded
    // before commands checked codes against ISO 4217 may hold (and it must stay refundable).
    currency: Currency,
    reason: Reason.nullable().optional(),
    occurredAt: IsoDateTime.optional(),
  })
  .strict();

/** `customerId` is the primary (the one that stays); `duplicateId` is merged into it. */
export const MergeCustomerPayload = z.object({ customerId: Id, duplicateId: Id }).strict();
export const DeactivateCustomerPayload = z.object({ customerId: Id, reason: Reason.nullable().optional() }).strict();
export const ReactivateCustomerPayload = z.object({ customerId: Id }).strict();
export const ForgetCustomerPayload = z.object({ customerId: Id }).strict();
/** `POST /customers/:id/owner`: the account owner, a registered, active user. */
export const AssignCustomerOwnerPayload = z.object({ customerId: Id, ownerId: Id }).strict();

/** Every command takes `occurredAt` (business time), but merging and forgetting (they happen now). */
export const customerCommandSchemas = withBusinessTime(
  {
    RegisterCustomer: RegisterCustomerPayload,
    ChangeCustomerDetails: ChangeCustomerDetailsPayload,
    TagCustomer: TagCustomerPayload,
    UntagCustomer: UntagCustomerPayload,
    RecordPurchase: RecordPurchasePayload,
    RefundPurchase: RefundPurchasePayload,
    MergeCustomer: MergeCustomerPayload,
    DeactivateCustomer: DeactivateCustomerPayload,
    ReactivateCustomer: ReactivateCustomerPayload,
    ForgetCustomer: ForgetCustomerPayload,
    AssignCustomerOwner: AssignCustomerOwnerPayload,
  } as const,
  ['MergeCustomer', 'ForgetCustomer'] as const,
);

type P<K extends keyof typeof customerCommandSchemas> = z.infer<(typeof customerCommandSchemas)[K]>;
/** Every command reaches `decide` with its business time, filled by the handler. */
type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;

/** `owner`: the named owner's snapshot, filled by the handler when `ownerId` is given. */
type WithOwner = { owner?: UserSnapshot };
export type RegisterCustomer = Cmd<'RegisterCustomer', Omit<P<'RegisterCustomer'>, 'customerId'> & { customerId: string } & WithOwner>;
export type ChangeCustomerDetails = Cmd<'ChangeCustomerDetails', P<'ChangeCustomerDetails'> & WithOwner>;
export type AssignCustomerOwner = Cmd<'AssignCustomerOwner', P<'AssignCustomerOwner'> & WithOwner>;
export type TagCustomer = Cmd<'TagCustomer', P<'TagCustomer'>>;
export type UntagCustomer = Cmd<'UntagCustomer', P<'UntagCustomer'>>;
/** An order as a duplicate merged into the customer (or one merged into that duplicate) recorded it. */
export type MergedOrder = { customerId: string; amount: number; currency: string };
/**
 * `mergedOrder`: the same order on a merged duplicate's stream, filled by the handler (commands/merged-order.ts).
 * `statedAt`: the business time the caller gave (`occurredAt` of the payload); absent where the purchase is
 * dated by its arrival, so that a retry of it, later, is still the same purchase.
 */
export type RecordPurchase = Cmd<'RecordPurchase', Omit<P<'RecordPurchase'>, 'occurredAt'> & { mergedOrder?: MergedOrder; statedAt?: string }>;
/** `mergedOrder`: the order on a merged duplicate's stream (any link of the chain), where its refund is recorded. */
export type RefundPurchase = Cmd<'RefundPurchase', Omit<P<'RefundPurchase'>, 'occurredAt' | 'refundId'> & { refundId: string; mergedOrder?: MergedOrder }>;
export type DeactivateCustomer = Cmd<'DeactivateCustomer', P<'DeactivateCustomer'>>;
export type ReactivateCustomer = Cmd<'ReactivateCustomer', P<'ReactivateCustomer'>>;
export type ForgetCustomer = Cmd<'ForgetCustomer', P<'ForgetCustomer'>>;
/** Decided over two streams by `decideMerge`, not by the single-stream decider. */
export type MergeCustomer = Cmd<'MergeCustomer', P<'MergeCustomer'>>;

export type CustomerCommand =
  | RegisterCustomer
  | ChangeCustomerDetails
  | TagCustomer
  | UntagCustomer
  | RecordPurchase
  | RefundPurchase
  | DeactivateCustomer
  | ReactivateCustomer
  | ForgetCustomer
  | AssignCustomerOwner;
