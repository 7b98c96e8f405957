import { sql, type Kysely } from 'kysely';
import { changesOf } from '../../domain/activity/events.ts';
import type { CrmEvent } from '../../domain/catalogue.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { occurredAt, type Bigint, type Instant } from './common.ts';
import { ensureSchema, insertRows, RowSet, type TableSpec } from './rows.ts';
import { ioTurns } from '../../shared/io-turns.ts';
import { withoutDirectionControls } from '../../shared/direction-controls.ts';

/**
 * `customer_timeline`: every event about a customer (their own, and the deal, feedback and campaign
 * events that name them) as a readable entry. Summaries hold no personal data and no free text, so
 * forgetting a customer leaves no plaintext behind here (an activity shows its kind, never its subject or body).
 * `timeline_subjects`: which customer each deal, feedback item and activity belongs to, and the
 * primary each merged customer's later events go to.
 */
export type TimelineEntry = {
  event_id: string;
  customer_id: string;
  position: Bigint;
  stream: string;
  revision: number;
  event_type: string;
  /** Business time. */
  occurred_at: Instant;
  /** Record time. */
  recorded_at: Instant;
  actor: string;
  summary: string;
};

export type TimelineSubject = {
  subject_id: string;
  customer_id: string;
};

export const TIMELINE: TableSpec<TimelineEntry> = {
  table: 'customer_timeline',
  key: 'event_id',
  columns: ['event_id', 'customer_id', 'position', 'stream', 'revision', 'event_type', 'occurred_at', 'recorded_at', 'actor', 'summary'],
};

export const TIMELINE_SUBJECTS: TableSpec<TimelineSubject> = {
  table: 'timeline_subjects',
  key: 'subject_id',
  columns: ['subject_id', 'customer_id'],
};

/** The tables this projection owns, for kysely. */
export interface TimelineTables {
  customer_timeline: TimelineEntry;
  timeline_subjects: TimelineSubject;
}

async function migrate(db: Kysely<TimelineTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'customer_timeline');
  // One index only, the one the timeline is read by: positions are unique, so (customer, position) is
  // the key; event ids are unique by construction and not indexed (inserts are the hot path of replay).
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    event_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    position bigint NOT NULL,
    stream text NOT NULL,
    revision integer NOT NULL,
    event_type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor text NOT NULL,
    summary text NOT NULL,
    PRIMARY KEY (customer_id, position)
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'timeline_subjects')} (
    subject_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL
  )`.execute(db);
}

const money = (amount: number, currency: string) => `${amount} ${currency}`;
const yesNo = (b: boolean) => (b ? 'given' : 'withdrawn');

/**
 * A short, personal-data-free description of an event. The short texts it quotes (a source, a tag, an
 * order id, a deal's owner) lose their direction controls: a source or a deal owner holding U+202E
 * turned the rest of its entry, amounts and attribution included, around on screen.
 */
export function summarize(event: CrmEvent): string {
  return withoutDirectionControls(describe(event));
}

function describe(event: CrmEvent): string {
  switch (event.type) {
    case 'CustomerRegistered':
      // Nothing was withdrawn at a registration: without consent it reads so.
      return `Customer registered${event.data.source ? ` (source: ${event.data.source})` : ''}, ${event.data.marketingConsent ? 'marketing consent given' : 'no marketing consent'}`;
    case 'CustomerContactDetailsChanged': {
      const fields = ['name', 'email', 'phone', 'company'].filter((f) => (event.data as Record<string, unknown>)[f] !== undefined);
      return `Contact details changed: ${fields.join(', ') || 'none'}`;
    }
    case 'CustomerTagged':
      return `Tagged "${event.data.tag}"`;
    case 'CustomerUntagged':
      return `Untagged "${event.data.tag}"`;
    case 'CustomerMarketingConsentChanged':
      return `Marketing consent ${yesNo(event.data.marketingConsent)}`;
    case 'PurchaseRecorded':
      return `Purchase ${event.data.orderId}: ${money(event.data.amount, event.data.currency)}`;
    case 'PurchaseRefunded':
      return `Refund ${event.data.refundId} of order ${event.data.orderId}: ${money(event.data.amount, event.data.currency)}`;
    case 'CustomerMerged':
      return `Absorbed duplicate customer ${event.data.duplicateId}`;
    case 'CustomerMergedInto':
      return `Merged into customer ${event.data.primaryId}`;
    case 'CustomerDeactivated':
      return 'Customer deactivated';
    case 'CustomerReactivated':
      return 'Customer reactivated';
    case 'CustomerForgotten':
      return 'Personal data forgotten';
    case 'DealOpened':
      return `Deal ${event.data.dealId} opened at stage ${event.data.stage}: ${money(event.data.amount, event.data.currency)}, owner ${event.data.ownerId}, expected close ${event.data.expectedCloseDate}`;
    case 'DealTitleChanged':
      return `Deal ${event.data.dealId} renamed`;
    case 'DealAmountChanged':
      return `Deal ${event.data.dealId} amount changed to ${money(event.data.amount, event.data.currency)}`;
    case 'DealOwnerChanged':
      return `Deal ${event.data.dealId} owner changed to ${event.data.ownerId}`;
    case 'DealExpectedCloseChanged':
      return `Deal ${event.data.dealId} expected close changed to ${event.data.expectedCloseDate}`;
    case 'DealProbabilityOverridden':
      return event.data.probabilityOverride === null
        ? `Deal ${event.data.dealId} probability back to the stage default`
        : `Deal ${event.data.dealId} probability set to ${event.data.probabilityOverride}`;
    case 'DealStageChanged':
      return `Deal ${event.data.dealId} moved from ${event.data.from} to ${event.data.to}`;
    case 'DealWon':
      return `Deal ${event.data.dealId} won: ${money(event.data.amount, event.data.currency)}`;
    case 'DealLost':
      return `Deal ${event.data.dealId} lost at stage ${event.data.from}`;
    case 'DealReopened':
      return `Deal ${event.data.dealId} reopened at stage ${event.data.to}`;
    case 'FeedbackSubmitted':
      return `Feedback ${event.data.feedbackId} submitted: ${event.data.kind} via ${event.data.channel}, priority ${event.data.priority}`;
    case 'FeedbackAssigned':
      return `Feedback ${event.data.feedbackId} assigned to ${event.data.assigneeId}`;
    case 'FeedbackResponded':
      return `Feedback ${event.data.feedbackId} answered by ${event.data.responderId}${event.data.firstResponse ? ' (first response)' : ''}`;
    case 'FeedbackEscalated':
      return `Feedback ${event.data.feedbackId} escalated to priority ${event.data.priority}`;
    case 'FeedbackResolved':
      return `Feedback ${event.data.feedbackId} resolved`;
    case 'FeedbackReopened':
      return `Feedback ${event.data.feedbackId} reopened`;
    case 'FeedbackClosed':
      return `Feedback ${event.data.feedbackId} closed`;
    case 'FeedbackRated':
      return `Feedback ${event.data.feedbackId} rated CSAT ${event.data.csat}/5`;
    case 'ActivityLogged': {
      const d = event.data;
      const what = `${d.kind[0]!.toUpperCase()}${d.kind.slice(1)} ${d.activityId} logged${d.dealId ? ` on deal ${d.dealId}` : ''}`;
      return `${what}${d.dueAt ? `, due ${d.dueAt}` : ''}${d.assigneeId ? `, assigned to ${d.assigneeId}` : ''}`;
    }
    case 'ActivityChanged': {
      return `Activity ${event.data.activityId} changed: ${Object.keys(changesOf(event.data)).join(', ')}`;
    }
    case 'ActivityCompleted':
      return `Task ${event.data.activityId} completed`;
    case 'CampaignResponseRecorded':
      return `Campaign ${event.data.campaignId} response: ${event.data.kind}${
        event.data.revenue !== null ? ` (revenue ${money(event.data.revenue, event.data.currency ?? '')})`.replace(' )', ')') : ''
      }`;
    default:
      return event.type;
  }
}

/** The deal, feedback or activity id an event is about, for events that do not name the customer. */
const subjectOf = (event: CrmEvent): string | undefined => {
  const data = event.data as Record<string, unknown>;
  if (typeof data.activityId === 'string') return data.activityId;
  if (typeof data.dealId === 'string') return data.dealId;
  if (typeof data.feedbackId === 'string') return data.feedbackId;
  return undefined;
};

/**
 * What a merged duplicate's stream still takes after the merge and is its primary's history too: a
 * refund of one of its orders (domain/customer/decider.ts; its own forget stays its own). Only these
 * look up whether their customer was merged, so a batch of purchases reads nothing more.
 */
const PRIMARYS_AFTER_MERGE: ReadonlySet<string> = new Set(['PurchaseRefunded']);

/** The events that name the customer their subject (a deal, a feedback item, an activity) belongs to. */
const OPENS_SUBJECT: ReadonlySet<string> = new Set(['DealOpened', 'FeedbackSubmitted', 'ActivityLogged']);

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const subjects = new RowSet(trx, schema, TIMELINE_SUBJECTS);
  // Every later event of a subject follows the subject's row, which a merge moves to the primary: the
  // customer id some carry (an activity, a feedback reply, resolution or rating) is the one they were
  // recorded for, whose key encrypts their personal fields, and a merge does not change it.
  // A customer is a subject too once merged: its row names the primary (see below).
  await subjects.load(
    events.flatMap((e) => {
      const subject = OPENS_SUBJECT.has(e.event.type) ? undefined : subjectOf(e.event);
      if (subject) return [subject];
      const customerId = (e.event.data as { customerId?: unknown }).customerId;
      return e.stream.startsWith('customer-') && PRIMARYS_AFTER_MERGE.has(e.event.type) && typeof customerId === 'string' ? [customerId] : [];
    }),
  );
  const entries: TimelineEntry[] = [];
  // A catch-up batch holds thousands of events: requests are answered between them (shared/io-turns.ts).
  const turns = ioTurns();
  for (const e of events) {
    if (turns.due()) await turns.give();
    const { event } = e;
    if (e.stream.startsWith('campaign-') && event.type !== 'CampaignResponseRecorded') continue;
    const data = event.data as Record<string, unknown>;
    let customerId = typeof data.customerId === 'string' ? data.customerId : undefined;
    const subject = subjectOf(event);
    if (OPENS_SUBJECT.has(event.type)) {
      if (subject && customerId) subjects.put({ subject_id: subject, customer_id: customerId });
    } else if (subject) {
      customerId = subjects.get(subject)?.customer_id ?? customerId;
    }
    if (!customerId) continue;
    const entry: TimelineEntry = {
      event_id: e.id,
      customer_id: customerId,
      position: e.position.toString(),
      stream: e.stream,
      revision: e.revision,
      event_type: event.type,
      occurred_at: occurredAt(e),
      recorded_at: e.recordedAt,
      actor: e.metadata.actor.userId,
      summary: summarize(event),
    };
    entries.push(entry);
    // A merged duplicate's later refund (which lowers the primary's revenue) is the primary's history
    // too, as its events before the merge were copied at it.
    if (e.stream.startsWith('customer-') && PRIMARYS_AFTER_MERGE.has(event.type)) {
      const primary = subjects.get(customerId)?.customer_id;
      if (primary !== undefined && primary !== customerId) entries.push({ ...entry, customer_id: primary });
    }
    if (event.type === 'CustomerMerged') {
      // The duplicate's history so far becomes the primary's too (the entries of this batch first).
      await insertRows(trx, schema, TIMELINE, entries.splice(0));
      await subjects.flush();
      await absorbTimeline(trx, schema, event.data.customerId, event.data.duplicateId);
      for (const row of subjects.find((r) => r.customer_id === event.data.duplicateId)) row.customer_id = event.data.customerId;
      // The duplicate itself, so that its later events reach the primary (a later merge of the primary moves it on).
      subjects.put({ subject_id: event.data.duplicateId, customer_id: event.data.customerId });
    }
  }
  await subjects.flush();
  if (entries.length > 0) await insertRows(trx, schema, TIMELINE, entries);
}

/**
 * A merge: the primary's timeline gains a copy of every entry of the duplicate's (its registration,
 * purchases, deals, feedback), and the duplicate's deals and feedback items now belong to the primary,
 * so their later events appear there. The duplicate keeps its own entries as they stood.
 */
async function absorbTimeline(trx: ProjectionContext['trx'], schema: string, primaryId: string, duplicateId: string): Promise<void> {
  const t = sql.id(schema, 'customer_timeline');
  await sql`INSERT INTO ${t} (event_id, customer_id, position, stream, revision, event_type, occurred_at, recorded_at, actor, summary)
    SELECT event_id, ${primaryId}::uuid, position, stream, revision, event_type, occurred_at, recorded_at, actor, summary
    FROM ${t} WHERE customer_id = ${duplicateId}::uuid
    ON CONFLICT (customer_id, position) DO NOTHING`.execute(trx);
  await sql`UPDATE ${sql.id(schema, 'timeline_subjects')} SET customer_id = ${primaryId}::uuid WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
}

export const timelineProjection: Projection = {
  name: 'customer_timeline',
  // 2: a primary's timeline includes its merged duplicates' history. 3: a registration without
  // consent reads "no marketing consent" (it read "marketing consent withdrawn"). 4: a feedback item's
  // later events follow the item to the primary after a merge (they went to the duplicate). 5: so do a
  // merged duplicate's own later events (a refund of its order lowered the primary's revenue unseen).
  // 6: summaries drop the direction controls of the texts they quote.
  version: 6,
  tables: ['customer_timeline', 'timeline_subjects'],
  filter: { streamPrefixes: ['customer-', 'deal-', 'feedback-', 'campaign-', 'activity-'] },
  migrate,
  apply,
  reportingViews: viewsOf('customer_timeline'),
};
