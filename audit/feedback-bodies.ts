import { FeedbackStreamPrefix } from '../domain/feedback/events.ts';
import { decodeRecordedEvent } from '../eventstore/personal-data.ts';
import type { AuditDeps } from './deps.ts';

/**
 * What each feedback item said when it was submitted, from its first event, decrypted: the feedback
 * read model keeps no body (a long personal text kept once, in the events), so the exports read it
 * here, a page's streams in one read (a feedback stream holds a handful of events). A forgotten
 * customer's items read `[erased]`, as everywhere else.
 */
export async function feedbackBodies(deps: Pick<AuditDeps, 'store' | 'personalData'>, ids: readonly string[]): Promise<Map<string, string>> {
  const streams = await deps.store.readStreams(ids.map((id) => `${FeedbackStreamPrefix}${id}`));
  const bodies = new Map<string, string>();
  for (const id of ids) {
    const first = streams.get(`${FeedbackStreamPrefix}${id}`)?.[0];
    if (first?.type !== 'FeedbackSubmitted') continue;
    const { event } = await decodeRecordedEvent(first, deps.personalData);
    if (event.type === 'FeedbackSubmitted') bodies.set(id, event.data.body);
  }
  return bodies;
}
