import type { Subscription } from 'rxjs';
import { personalFields, isCrmEventType } from '../domain/catalogue.ts';
import type { EventStore, RecordedEvent } from '../eventstore/contract.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import { decodeBatch, type BatchItem } from '../projections/apply-batch.ts';
import { personalDataCodec } from '../projections/codec.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';

/**
 * What publishers read: the gap-free global feed from a checkpoint, decoded (decrypted, upcast).
 *
 * A publisher may be far behind (a receiver was down for a day) when a customer is forgotten: the
 * events it delivers later must not carry that customer's plaintext. So just before a page is decoded,
 * and again before each delivery of an event holding personal data (`current`), one query tells which
 * of its customers have been forgotten since their keys were cached, by this process or any other;
 * their cached keys are dropped.
 */
export interface FeedPage {
  items: BatchItem[];
  /** Position of the last event read: the checkpoint once every item is delivered. */
  end: bigint;
}

export interface IntegrationFeed {
  read(after: bigint, max: number): Promise<FeedPage>;
  /**
   * An item of a page as it may be delivered now: one holding personal data is decoded again with
   * fresh keys, since its customer may have been forgotten after the page was read (a slow receiver
   * ahead of it, a retry wait); the others as read.
   */
  current(item: BatchItem): Promise<BatchItem>;
  /** Resolves when new events may have been recorded, or after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  /** Whether this store recorded the event `id` at `position`: whether a message names an event of this store. */
  holds(position: bigint, id: string): Promise<boolean>;
  close(): void;
}

const subjectOf = (e: RecordedEvent): string | undefined => {
  if (!isCrmEventType(e.type)) return undefined;
  const spec = personalFields[e.type];
  const value = spec ? (e.data as Record<string, unknown> | null)?.[spec.subject] : undefined;
  return typeof value === 'string' ? value : undefined;
};

export function createIntegrationFeed(store: EventStore, personalData: PersonalData, log?: Log): IntegrationFeed {
  const waiters = new Set<() => void>();
  const ring = () => {
    for (const wake of [...waiters]) wake();
  };
  // A doorbell: the store's live subscription tells when something new was recorded; the pages
  // themselves are read with `readAll`, from each publisher's own checkpoint.
  let doorbell: Subscription | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  // Its loss and its return, one line each per outage (the return was not logged: the log read as lost for good).
  const outage = new OutageLog(log, { failed: 'integration feed doorbell lost; polling until it is back', recovered: 'integration feed doorbell back' });
  const listenAgain = (error: unknown) => {
    outage.failed((error as Error).message);
    retry = setTimeout(() => void listen(), 1_000);
    retry.unref?.();
  };
  const listen = async () => {
    if (closed) return;
    try {
      const head = await store.headPosition();
      doorbell = store.subscribeToAll({ fromPosition: head }).subscribe({
        next: ring,
        error: (error) => {
          doorbell = undefined;
          listenAgain(error);
        },
      });
      // The store answered and the subscription is open again; pages missed meanwhile are read by polling.
      if (doorbell) outage.recovered();
    } catch (error) {
      listenAgain(error);
    }
  };
  void listen();

  const codec = personalDataCodec(personalData);
  const fresh = (events: RecordedEvent[]) => personalData.refreshForgotten(events.map(subjectOf).filter((s): s is string => s !== undefined));

  return {
    async holds(position, id) {
      if (position < 1n) return false;
      // On EventStoreDB the events of one append share their commit position: any of them may be the one.
      const events = await store.readAll({ fromPosition: position - 1n, maxCount: 500, settleMs: 0 });
      return events.some((event) => event.position === position && event.id === id);
    },
    async read(after, max) {
      // What is final now: a publisher comes back on the doorbell or after a short idle, so it need not
      // wait for events committed behind another open transaction.
      const events = await store.readAll({ fromPosition: after, maxCount: max, settleMs: 0 });
      await fresh(events);
      const items = await decodeBatch(codec, events, () => true);
      return { items, end: events.length > 0 ? events[events.length - 1]!.position : after };
    },
    async current(item) {
      if (subjectOf(item.recorded) === undefined) return item;
      await fresh([item.recorded]);
      const [again] = await decodeBatch(codec, [item.recorded], () => true);
      return again!;
    },
    wait(ms, signal) {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    },
    close() {
      closed = true;
      clearTimeout(retry);
      doorbell?.unsubscribe();
      ring();
    },
  };
}
