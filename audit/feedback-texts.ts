import { FeedbackStreamPrefix } from '../domain/feedback/events.ts';
import { readStoredEvent } from '../eventstore/unreadable-event.ts';
import type { AuditDeps } from './deps.ts';

/** The texts of a feedback item the read model does not keep: long personal texts, kept once, in the events. */
export interface FeedbackTexts {
  /** What the customer wrote when submitting it. */
  body: string | null;
  /** The first reply to the customer. */
  firstResponse: string | null;
  /** The latest resolution (a reopened item's later one). */
  resolution: string | null;
  /** The customer's comment with their latest rating. */
  ratingComment: string | null;
}

/**
 * Each feedback item's texts, decrypted from its events, a page's streams in one read (a feedback
 * stream holds a handful of events): the body for `GET /feedback/:id`, and every text for the export,
 * whose import reads them back (the replies, resolution and rating comment were left out, and an
 * exported item came back saying "Responded in the previous system"). A forgotten customer's items
 * read `[erased]`, as everywhere else.
 */
export async function feedbackTexts(deps: Pick<AuditDeps, 'store' | 'personalData'>, ids: readonly string[]): Promise<Map<string, FeedbackTexts>> {
  const streams = await deps.store.readStreams(ids.map((id) => `${FeedbackStreamPrefix}${id}`));
  const texts = new Map<string, FeedbackTexts>();
  for (const id of ids) {
    const recorded = streams.get(`${FeedbackStreamPrefix}${id}`) ?? [];
    if (recorded[0]?.type !== 'FeedbackSubmitted') continue;
    const item: FeedbackTexts = { body: null, firstResponse: null, resolution: null, ratingComment: null };
    for (const stored of recorded) {
      if (stored.type !== 'FeedbackSubmitted' && stored.type !== 'FeedbackResponded' && stored.type !== 'FeedbackResolved' && stored.type !== 'FeedbackRated')
        continue;
      const { event } = await readStoredEvent(stored, deps.personalData);
      if (event.type === 'FeedbackSubmitted') item.body = event.data.body;
      else if (event.type === 'FeedbackResponded' && item.firstResponse === null) item.firstResponse = event.data.message;
      else if (event.type === 'FeedbackResolved') item.resolution = event.data.resolution;
      else if (event.type === 'FeedbackRated') item.ratingComment = event.data.comment;
    }
    texts.set(id, item);
  }
  return texts;
}
