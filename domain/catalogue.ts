import type { z } from 'zod';
import { customerEventSchemas, CustomerRegisteredV1, type CustomerEvent } from './customer/events.ts';
import { dealEventSchemas, type DealEvent } from './deal/events.ts';
import { campaignEventSchemas, type CampaignEvent } from './campaign/events.ts';
import { feedbackEventSchemas, type FeedbackEvent } from './feedback/events.ts';
import { teamEventSchemas, type TeamEvent } from './team/events.ts';
import { userEventSchemas, type UserEvent } from './user/events.ts';
import { activityEventSchemas, type ActivityEvent } from './activity/events.ts';
import { exchangeRateEventSchemas, type ExchangeRateEvent } from './exchange-rate/events.ts';

/**
 * The event catalogue: every event type the CRM records, its current schema and version,
 * which fields hold personal data, and how older stored shapes are upcast on read.
 * Stored events are never rewritten (invariant 1).
 */
export const eventSchemas = {
  ...customerEventSchemas,
  ...dealEventSchemas,
  ...campaignEventSchemas,
  ...feedbackEventSchemas,
  ...teamEventSchemas,
  ...userEventSchemas,
  ...activityEventSchemas,
  ...exchangeRateEventSchemas,
} as const;

/** The kinds of stream the CRM writes, one decider each (commands/aggregates.ts maps them). */
export type AggregateKind = 'customer' | 'deal' | 'campaign' | 'feedback' | 'activity' | 'team' | 'user' | 'exchangeRate';

export type CrmEventType = keyof typeof eventSchemas;
export type CrmEvent = CustomerEvent | DealEvent | CampaignEvent | FeedbackEvent | TeamEvent | UserEvent | ActivityEvent | ExchangeRateEvent;

export const isCrmEventType = (type: string): type is CrmEventType => Object.hasOwn(eventSchemas, type);

/** Current schema version of each event type; a type not listed is at version 1. */
const currentVersions: Partial<Record<CrmEventType, number>> = { CustomerRegistered: 2 };
export const schemaVersionOf = (type: CrmEventType): number => currentVersions[type] ?? 1;

/**
 * Personal fields, encrypted in storage with the data key of the customer named by `subject`.
 * Lists every stored version's field names (v1 `fullName` included) because decryption runs before upcasting.
 */
export const personalFields: Partial<Record<CrmEventType, { subject: string; fields: readonly string[] }>> = {
  // `company` too: for a sole trader the company name is the person's name (encrypted in events
  // recorded from version 2 of the customers projection on; earlier events keep it as they stored it).
  CustomerRegistered: { subject: 'customerId', fields: ['name', 'fullName', 'email', 'phone', 'company'] },
  CustomerContactDetailsChanged: { subject: 'customerId', fields: ['name', 'email', 'phone', 'company'] },
  FeedbackSubmitted: { subject: 'customerId', fields: ['subject', 'body'] },
  // Staff replies quote the customer; forgetting the customer erases them too.
  FeedbackResponded: { subject: 'customerId', fields: ['message'] },
  // A resolution says what was done for the customer, quoting them as often as a reply does.
  FeedbackResolved: { subject: 'customerId', fields: ['resolution'] },
  // The customer's comment on a rating is their own words, as the feedback's body is.
  FeedbackRated: { subject: 'customerId', fields: ['comment'] },
  // An activity's body (what was said, what to do) is about the customer, on a deal too (the deal's customer).
  ActivityLogged: { subject: 'customerId', fields: ['body'] },
  ActivityChanged: { subject: 'customerId', fields: ['body'] },
};

type Upcaster = (data: unknown) => unknown;
/** `upcasters[type][v]` turns version v into version v + 1. */
const upcasters: Partial<Record<CrmEventType, Record<number, Upcaster>>> = {
  CustomerRegistered: {
    1: (data) => {
      const v1: z.infer<typeof CustomerRegisteredV1> = CustomerRegisteredV1.parse(data);
      return {
        customerId: v1.customerId,
        name: v1.fullName,
        email: v1.email,
        phone: v1.phone ?? null,
        company: v1.company ?? null,
        tags: [],
        source: null,
        marketingConsent: false,
      };
    },
  },
};

export class UnknownEventType extends Error {
  constructor(readonly type: string) {
    super(`Unknown event type ${type}`);
  }
}

/** Upcasts stored data from `schemaVersion` to the current version and validates it. */
export const parseEvent = (type: string, schemaVersion: number, data: unknown): CrmEvent => {
  if (!isCrmEventType(type)) throw new UnknownEventType(type);
  let current = data;
  for (let v = schemaVersion; v < schemaVersionOf(type); v++) {
    const up = upcasters[type]?.[v];
    if (!up) throw new Error(`No upcaster for ${type} v${v}`);
    current = up(current);
  }
  return { type, data: eventSchemas[type].parse(current) } as CrmEvent;
};
