import { seesPersonalData, type Role } from '../domain/user/roles.ts';
import { z } from 'zod';
import { eventSchemas, personalFields, type CrmEventType } from '../domain/catalogue.ts';
import { ERASED } from '../domain/shared.ts';
import { inUtc } from '../domain/time.ts';
import type { ProjectedEvent } from '../projections/projection.ts';
import type { AggregateKind } from '../domain/catalogue.ts';

/**
 * Public integration events: what webhooks and NATS carry. A contract of its own, separate from the
 * internal event schemas: each public type has its own version, bumped only when its public shape
 * changes, so internal upcasts and refactors never reach subscribers unannounced.
 */

/** The role whose view of personal data a subscriber gets (api/roles.ts; `analyst` is masked). */
export type SubscriberRole = Role;

/** What a personal field reads as for subscribers whose role may not see personal data. */
export const MASKED = '[masked]';

export type { AggregateKind };

export interface IntegrationEvent {
  /** The event id (UUID): receivers dedupe by it (it is also the `webhook-id` and the `Nats-Msg-Id`). */
  id: string;
  type: CrmEventType;
  /** Version of this public type's `data` shape. */
  version: number;
  /** Business time (ISO 8601, UTC). */
  occurredAt: string;
  /** When the store recorded the event (ISO 8601). */
  recordedAt: string;
  /** Global position in the event log, as a decimal string (it may exceed 2^53). Increases in delivery order. */
  position: string;
  aggregate: { kind: AggregateKind; id: string };
  /**
   * The event's revision in its aggregate's stream (0 for the first): consecutive per aggregate, where
   * positions are sparse, so a consumer of every event (NATS) can tell one missing. Added beside the
   * fields before it, which keep their meaning.
   */
  revision: number;
  data: Record<string, unknown>;
}

interface PublicType {
  kind: AggregateKind;
  version: number;
  summary: string;
  /** Fields of `data` that hold personal data: masked for analyst-level roles, `[erased]` after forget. */
  personal: readonly string[];
}

const customer = (summary: string, personal: readonly string[] = []): PublicType => ({ kind: 'customer', version: 1, summary, personal });
const deal = (summary: string): PublicType => ({ kind: 'deal', version: 1, summary, personal: [] });
const campaign = (summary: string): PublicType => ({ kind: 'campaign', version: 1, summary, personal: [] });
const feedback = (summary: string, personal: readonly string[] = []): PublicType => ({ kind: 'feedback', version: 1, summary, personal });
/** Staff and teams (administration): who could see what, when. A user's name and email are masked for analysts. */
const user = (summary: string, personal: readonly string[] = []): PublicType => ({ kind: 'user', version: 1, summary, personal });
const team = (summary: string): PublicType => ({ kind: 'team', version: 1, summary, personal: [] });
const activity = (summary: string, personal: readonly string[] = []): PublicType => ({ kind: 'activity', version: 1, summary, personal });

/** Every public type: the per-type mapping and its documentation (README, OpenAPI). */
export const PUBLIC_EVENT_TYPES: Readonly<Record<CrmEventType, PublicType>> = {
  CustomerRegistered: customer('A customer was registered.', ['name', 'email', 'phone', 'company']),
  CustomerContactDetailsChanged: customer('Contact details changed.', ['name', 'email', 'phone', 'company']),
  CustomerTagged: customer('A tag was added.'),
  CustomerUntagged: customer('A tag was removed.'),
  CustomerMarketingConsentChanged: customer('Marketing consent given or withdrawn.'),
  PurchaseRecorded: customer('A purchase.'),
  PurchaseRefunded: customer('A refund of a purchase.'),
  CustomerMerged: customer('This customer absorbed a duplicate.'),
  CustomerMergedInto: customer('This customer was merged into another.'),
  CustomerDeactivated: customer('The customer was deactivated.'),
  CustomerReactivated: customer('The customer was reactivated.'),
  CustomerForgotten: customer('The customer was forgotten (crypto-shredding).'),
  CustomerOwnerAssigned: customer('The account owner (a user) changed.'),
  DealOpened: deal('A deal was opened.'),
  DealTitleChanged: deal('The title changed.'),
  DealAmountChanged: deal('The amount changed.'),
  DealOwnerChanged: deal('The owner changed.'),
  DealExpectedCloseChanged: deal('The expected close date changed.'),
  DealProbabilityOverridden: deal('The win probability was overridden.'),
  DealStageChanged: deal('The deal moved to another open stage.'),
  DealWon: deal('The deal was won.'),
  DealLost: deal('The deal was lost.'),
  DealReopened: deal('A won or lost deal was reopened.'),
  CampaignCreated: campaign('A campaign was created.'),
  CampaignScheduled: campaign('The campaign was scheduled.'),
  CampaignLaunched: campaign('The campaign was launched.'),
  CampaignPaused: campaign('The campaign was paused.'),
  CampaignResumed: campaign('The campaign was resumed.'),
  CampaignCompleted: campaign('The campaign was completed.'),
  CampaignCancelled: campaign('The campaign was cancelled.'),
  CampaignCostRecorded: campaign('A cost was recorded.'),
  CampaignCostCorrected: campaign('A recorded cost was corrected (0: voided); the cost now stands at amount, where it stood at previousAmount.'),
  CampaignResponseRecorded: campaign("A customer's response (sent, opened, clicked, converted, unsubscribed)."),
  FeedbackSubmitted: feedback('Feedback was submitted.', ['subject', 'body']),
  FeedbackAssigned: feedback('Feedback was assigned.'),
  FeedbackResponded: feedback('Staff responded to the customer.', ['message']),
  FeedbackEscalated: feedback('Feedback was escalated (for example on an SLA breach).'),
  FeedbackResolved: feedback('Feedback was resolved.', ['resolution']),
  FeedbackReopened: feedback('Feedback was reopened.'),
  FeedbackClosed: feedback('Feedback was closed.'),
  FeedbackRated: feedback("The customer's rating of the resolution.", ['comment']),
  TeamCreated: team('A team was created.'),
  TeamRenamed: team('A team was renamed.'),
  UserRegistered: user('A user was registered (role, visibility).', ['name', 'email']),
  UserChanged: user("A user's name or email changed.", ['name', 'email']),
  UserRoleChanged: user("A user's role changed."),
  UserVisibilityChanged: user("A user's visibility (own, team, all) changed."),
  UserJoinedTeam: user('A user joined a team.'),
  UserLeftTeam: user('A user left a team.'),
  UserDeactivated: user('A user was deactivated (their keys stop working).'),
  UserReactivated: user('A user was reactivated.'),
  ActivityLogged: activity('A note, call, meeting or task was logged on a customer or a deal.', ['body']),
  ActivityChanged: activity("An activity's subject, body, due time or assignee changed.", ['body']),
  ActivityCompleted: activity('A task was completed.'),
  ExchangeRateSet: { kind: 'exchangeRate', version: 1, summary: 'An exchange rate to the base currency was set or corrected (same validFrom).', personal: [] },
};

export const PUBLIC_EVENT_TYPE_NAMES = Object.keys(PUBLIC_EVENT_TYPES) as CrmEventType[];

/** The fields of a public type's `data` (version 1 carries the current internal fields as they are). */
export const publicFields = (type: CrmEventType): string[] => Object.keys((eventSchemas[type] as unknown as { shape: object }).shape);

/** The schema under `.optional()` and `.nullable()`. */
const unwrapped = (schema: z.ZodType): z.ZodType => {
  let inner = schema;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodNullable) inner = inner.unwrap() as z.ZodType;
  return inner;
};

/**
 * A value of `schema` with its instants (ISO date-times, at any depth) in UTC, as the envelope's own
 * times: a rate's `validFrom` or a campaign's `startsAt` went out as the client spelt it (`+05:30`,
 * without milliseconds), where the API answers the same instant in UTC.
 */
const withInstantsInUtc = (schema: z.ZodType, value: unknown): unknown => {
  const inner = unwrapped(schema);
  if (typeof value === 'string') return (inner._zod.def as { format?: string }).format === 'datetime' ? inUtc(value) : value;
  if (inner instanceof z.ZodArray && Array.isArray(value)) return value.map((item) => withInstantsInUtc(inner.element as z.ZodType, item));
  if (inner instanceof z.ZodObject && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const shape = inner.shape as Record<string, z.ZodType>;
    return Object.fromEntries(Object.entries(value).map(([field, item]) => [field, shape[field] ? withInstantsInUtc(shape[field], item) : item]));
  }
  return value;
};

/** `customer-<uuid>` -> the aggregate's id. */
const aggregateIdOf = (stream: string): string => stream.slice(stream.indexOf('-') + 1);

/**
 * Maps a decoded internal event to its public envelope for a subscriber with `role`. Personal fields
 * come from the decoder already `[erased]` once the customer is forgotten; for roles without personal
 * data they are masked whatever they hold.
 */
export function toIntegrationEvent(projected: ProjectedEvent, role: SubscriberRole): IntegrationEvent {
  const type = projected.event.type;
  const spec = PUBLIC_EVENT_TYPES[type];
  // Personal fields of this type as the catalogue encrypts them; `spec.personal` documents the same set.
  const encrypted = new Set([...(personalFields[type]?.fields ?? []), ...spec.personal]);
  const data: Record<string, unknown> = {};
  const masked = !seesPersonalData(role);
  const shape = (eventSchemas[type] as unknown as { shape: Record<string, z.ZodType> }).shape;
  for (const [field, value] of Object.entries(projected.event.data as Record<string, unknown>)) {
    if (masked && encrypted.has(field) && value !== null && value !== undefined) data[field] = value === ERASED ? ERASED : MASKED;
    else data[field] = shape[field] ? withInstantsInUtc(shape[field], value) : value;
  }
  return {
    id: projected.id,
    type,
    version: spec.version,
    // In UTC as `recordedAt` is: a client's `+02:00` spelling sorted and compared wrongly as text beside the others.
    occurredAt: inUtc(projected.metadata.occurredAt),
    recordedAt: projected.recordedAt.toISOString(),
    position: projected.position.toString(),
    aggregate: { kind: spec.kind, id: aggregateIdOf(projected.stream) },
    revision: projected.revision,
    data,
  };
}

/**
 * Where a broker carries the event: the NATS subject, and the RabbitMQ routing key on the topic exchange
 * (`crm.<aggregate kind>.<EventType>`, e.g. `crm.customer.PurchaseRecorded`).
 */
export const integrationSubject = (kind: AggregateKind, type: string): string => `crm.${kind}.${type}`;

/**
 * Event-type patterns of a subscription: exact names (`PurchaseRecorded`), a prefix with `*`
 * (`Deal*`), or `*` for everything.
 */
export const EVENT_PATTERN = /^(\*|[A-Z][A-Za-z]{0,99}\*?)$/;

export const matchesPatterns = (patterns: readonly string[], type: string): boolean =>
  patterns.some((p) => (p.endsWith('*') ? type.startsWith(p.slice(0, -1)) : p === type));

/** A pattern that matches no public type is most likely a typo: refused at subscription time. */
export const patternMatchesSomething = (pattern: string): boolean => PUBLIC_EVENT_TYPE_NAMES.some((t) => matchesPatterns([pattern], t));
