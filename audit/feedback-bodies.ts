import { decodeRecordedEvent } from '../eventstore/personal-data.ts';
import type { AuditDeps } from './deps.ts';

/** Streams read at once: each is one round trip. */
const READ_CONCURRENCY = 16;

/**
 * What each feedback item said when it was submitted, from its first event, decrypted: the feedback
 * read model keeps no body (a long personal text kept once, in the events), so the exports read it
 * here. A forgotten customer's items read `[erased]`, as everywhere else.
 */
export async function feedbackBodies(deps: Pick<AuditDeps, 'store' | 'personalData'>, ids: readonly string[]): Promise<Map<string, string>> {
  const bodies = new Map<string, string>();
  const readOne = async (id: string) => {
    const [first] = await deps.store.readStream(`feedback-${id}`, { maxCount: 1 });
    if (first?.type !== 'FeedbackSubmitted') return;
    const { event } = await decodeRecordedEvent(first, deps.personalData);
    if (event.type === 'FeedbackSubmitted') bodies.set(id, event.data.body);
  };
  for (let i = 0; i < ids.length; i += READ_CONCURRENCY) await Promise.all(ids.slice(i, i + READ_CONCURRENCY).map(readOne));
  return bodies;
}
