import type { Kysely, QueryExecutorProvider } from 'kysely';
import type { BatchItem } from '../projections/apply-batch.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { describeError } from '../projections/errors.ts';
import { matchesPatterns, toIntegrationEvent } from './envelope.ts';
import type { IntegrationFeed } from './feed.ts';
import type { DestinationGuard } from './destinations.ts';
import { WebhookClient } from './http-post.ts';
import { loggableUrl } from '../shared/loggable-url.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';
import { signWebhook } from './signing.ts';
import { webhookPublisherName, type DeliveryAttempt, type IntegrationTables, type WebhookSubscription } from './tables.ts';

/** How deliveries are attempted and retried. */
export interface DeliveryPolicy {
  /** One attempt waits at most this long for the receiver's answer. */
  timeoutMs: number;
  /** First retry delay; doubled per attempt up to `maxRetryMs`, each with jitter (half to full delay). */
  firstRetryMs: number;
  maxRetryMs: number;
  /** An event still failing this long after its first failure pauses the subscription (state `failing`). */
  retryForMs: number;
  /** Events read from the feed at a time. */
  pageSize: number;
  /**
   * Deliveries acknowledged but not yet checkpointed, at most: the checkpoint (and the delivery log)
   * is written once per this many deliveries or `checkpointEveryMs`, not per event. A crash delivers
   * at most these again, with the same `webhook-id`.
   */
  checkpointEvery: number;
  checkpointEveryMs: number;
}

export const DEFAULT_DELIVERY_POLICY: DeliveryPolicy = {
  timeoutMs: 10_000,
  firstRetryMs: 1_000,
  maxRetryMs: 5 * 60_000,
  retryForMs: 60 * 60_000,
  pageSize: 200,
  checkpointEvery: 100,
  checkpointEveryMs: 250,
};

/** The delay before retry number `attempt` (1-based): exponential, capped, with jitter so receivers coming back are not stampeded. */
export const retryDelay = (policy: DeliveryPolicy, attempt: number, random = Math.random): number => {
  const full = Math.min(policy.maxRetryMs, policy.firstRetryMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(full * (0.5 + random() * 0.5));
};

/** Runs one unit of checkpoint work inside a transaction fenced by the publishers' lease (throws when it was lost). */
export type Fenced = <T>(work: (trx: QueryExecutorProvider) => Promise<T>) => Promise<T>;

export const unfenced =
  (db: Kysely<unknown>): Fenced =>
  (work) =>
    db.transaction().execute(work);

export interface WebhookLoopDeps {
  tables: IntegrationTables;
  feed: IntegrationFeed;
  subscriptionId: string;
  policy: DeliveryPolicy;
  fenced: Fenced;
  /** Which addresses deliveries may connect to (integration/destinations.ts). */
  destinations: DestinationGuard;
  log?: Log;
}

type Success = Omit<DeliveryAttempt, 'at'>;
type Outcome = Success | 'paused' | 'interrupted';

/**
 * One subscription's delivery loop: follows the feed from its checkpoint, POSTs each matching event
 * in position order, and moves the checkpoint only after a 2xx (at least once: a crash between the
 * answer and the checkpoint delivers that event again, with the same `webhook-id`). Each subscription
 * has its own loop, so a slow or dead receiver holds back only its own deliveries.
 */
export class WebhookLoop {
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;
  /** Set when the subscription row changed (PATCH, replay): the loop re-reads it before the next event. */
  private stale = false;
  private interrupt = new AbortController();
  private readonly client: WebhookClient;
  /**
   * The receiver's failures (non-2xx, refused, timed out) as the process log shows them: one line when
   * they start, one when a delivery succeeds again, not one per retry (the delivery log has each attempt).
   * Kept across rounds: a retry interrupted by a change of the subscription is the same outage.
   */
  private readonly receiverOutage: OutageLog;
  /**
   * The event whose retry a round left waiting (a change of the subscription ends the round): the next
   * round goes on counting its attempts from the same first failure, and waits out its back-off when the
   * address is the same. Restarted, a description edit or a rotated secret gave the receiver an attempt
   * at once (a second POST within milliseconds of a 503 with Retry-After), counted from 1, and the
   * hour after which retries give up never ran out for a subscription edited now and then.
   */
  /** The retry series in progress; its times are performance.now() milliseconds (a step of the wall clock stretches no wait). */
  private retry: { eventId: string; attempt: number; firstFailureAt: number; retryAt: number; url: string } | undefined;
  /**
   * Whether the first event this loop delivers was looked up in the delivery log: a restart of the
   * process carries on a series that was waiting as a change of the subscription does (it started
   * over, at attempt 1, at once, with the hour's clock reset).
   */
  private resumed = false;

  constructor(private readonly deps: WebhookLoopDeps) {
    this.client = new WebhookClient(deps.destinations);
    this.receiverOutage = new OutageLog(
      deps.log,
      { failed: 'webhook deliveries failing', recovered: 'webhook deliveries succeeding again' },
      { subscription: deps.subscriptionId },
    );
  }

  get name(): string {
    return webhookPublisherName(this.deps.subscriptionId);
  }

  start(): void {
    this.running ??= this.run();
  }

  /** The subscription changed: stop waiting (a retry back-off, an idle wait) and start over from the row. */
  refresh(): void {
    this.stale = true;
    this.interrupt.abort();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    this.interrupt.abort();
    await this.running;
    this.client.close();
  }

  private get stopped(): boolean {
    return this.controller.signal.aborted;
  }

  private async run(): Promise<void> {
    const backoff = createBackoff({ initialMs: 250, maxMs: 1_000 });
    // Retried every second at most: logged when the trouble starts and when it ends, not per retry.
    const outage = new OutageLog(
      this.deps.log,
      { failed: 'webhook loop error; retrying', recovered: 'webhook loop works again' },
      { subscription: this.deps.subscriptionId },
    );
    while (!this.stopped) {
      this.stale = false;
      this.interrupt = new AbortController();
      try {
        const idleMs = await this.round();
        backoff.reset();
        outage.recovered();
        if (idleMs > 0) await this.deps.feed.wait(idleMs, this.interrupt.signal);
      } catch (error) {
        // Database away, lease lost, receiver misbehaving in a way we did not expect: back off and go again.
        // A pause, not `feed.wait`: that returns on every new event, so traffic would turn this into a busy loop.
        outage.failed(describeError(error));
        await pause(backoff.next(), this.interrupt.signal);
      }
    }
  }

  /** One pass over a page; returns how long to idle afterwards (0: go on at once). */
  private async round(): Promise<number> {
    const { tables, feed, policy } = this.deps;
    const subscription = await tables.getSubscription(this.deps.subscriptionId);
    const publisher = await tables.publisher(this.name);
    if (!subscription || !publisher) {
      this.controller.abort();
      return 0;
    }
    if (!subscription.enabled || publisher.state !== 'running') {
      // Disabled or paused: enabling it again starts a new series of attempts.
      this.retry = undefined;
      return 1_000;
    }
    const secrets = await tables.secretsOf(subscription.id);
    // The subscription's URL is stored with its password masked: deliveries go to the real one.
    const url = await tables.deliveryUrl(subscription.id);
    if (!secrets || url === undefined) return 1_000;
    const page = await feed.read(publisher.position, policy.pageSize);
    if (page.items.length === 0) return 500;
    // Acknowledged deliveries not yet checkpointed; written together (checkpoint + delivery log, one transaction).
    let stored = publisher.position;
    let reached = publisher.position;
    let unsaved: Success[] = [];
    let savedAt = performance.now();
    const save = async (): Promise<boolean> => {
      if (reached === stored) return true;
      const batch = unsaved;
      const last = batch.at(-1);
      const moved = await this.deps.fenced(async (trx) => {
        if (!(await tables.advance(trx, this.name, stored, reached, batch.length, last?.latencyMs ?? null, last?.statusCode ?? null))) return false;
        await tables.logAttempts(trx, subscription.id, batch);
        return true;
      });
      unsaved = [];
      savedAt = performance.now();
      stored = reached;
      return moved;
    };
    for (const item of page.items) {
      if (this.stopped || this.stale) break;
      if (!matchesPatterns(subscription.events, item.recorded.type)) continue;
      let outcome: Outcome;
      try {
        outcome = await this.deliver(subscription, url, secrets, item, save);
      } catch (error) {
        // The database failed mid-page (telling a forget, before an attempt): what the receiver has
        // acknowledged is checkpointed first where it can be, so it is not delivered again.
        await save().catch(() => undefined);
        throw error;
      }
      if (outcome === 'interrupted' || outcome === 'paused') {
        await save();
        return 0;
      }
      unsaved.push(outcome);
      reached = item.recorded.position;
      if (unsaved.length >= policy.checkpointEvery || performance.now() - savedAt >= policy.checkpointEveryMs) {
        // Moved under us (replay, delete, lease lost): start over from the row.
        if (!(await save())) return 0;
      }
    }
    // Events not subscribed to move the checkpoint too (with the page's end).
    if (!this.stopped && !this.stale) reached = page.end;
    await save();
    return 0;
  }

  /**
   * Attempts one event (to `url`, the subscription's URL with its password) until it is acknowledged,
   * the retries run out (paused) or the loop is interrupted. `save` checkpoints what came before, ahead of a retry wait.
   */
  private async deliver(subscription: WebhookSubscription, url: string, secrets: string[], first: BatchItem, save: () => Promise<boolean>): Promise<Outcome> {
    const { tables, feed, policy } = this.deps;
    if (!this.resumed) {
      const series = await tables.lastSeries(subscription.id, first.recorded.id);
      this.resumed = true;
      if (series?.nextRetryAt)
        this.retry = {
          eventId: first.recorded.id,
          attempt: series.attempt,
          // The stored series, set by an earlier process on the wall clock, taken onto this one's monotonic clock.
          firstFailureAt: performance.now() - (Date.now() - series.startedAt.getTime()),
          retryAt: performance.now() + (series.nextRetryAt.getTime() - Date.now()),
          url,
        };
    }
    // Carried while its retry is due: one whose time passed long ago was left when a replay moved the
    // loop elsewhere (or it was disabled between two polls), and this is a new series.
    const carried = this.retry?.eventId === first.recorded.id && performance.now() - this.retry.retryAt <= policy.maxRetryMs ? this.retry : undefined;
    let firstFailureAt = carried?.firstFailureAt;
    // Another address (the URL changed) may answer now: tried at once, still counted on.
    if (carried && carried.url === url && !(await this.waitUntil(carried.retryAt))) return 'interrupted';
    for (let attempt = (carried?.attempt ?? 0) + 1; ; attempt++) {
      if (this.stopped || this.stale) return 'interrupted';
      // Decoded again before each attempt: a customer forgotten since the page was read (while the
      // events ahead of this one were delivered, or during a retry wait) must read '[erased]'.
      const item = await feed.current(first);
      const eventId = first.recorded.id;
      if (!item.projected) {
        const error = `event ${eventId} at position ${first.recorded.position} cannot be decoded: ${describeError(item.decodeError)}`;
        await tables.recordFailure(this.name, { error, status: null, latencyMs: 0, nextRetryAt: null, pause: true });
        return 'paused';
      }
      const body = JSON.stringify(toIntegrationEvent(item.projected, subscription.role));
      const headers = signWebhook(secrets, eventId, Date.now() / 1000, body);
      const started = performance.now();
      const answer = await this.client.post(url, body, { ...headers }, policy.timeoutMs, this.controller.signal);
      const latencyMs = Math.round((performance.now() - started) * 10) / 10;
      if (answer.ok) {
        this.retry = undefined;
        this.receiverOutage.recovered();
        return { eventId, position: first.recorded.position, attempt, statusCode: answer.status, latencyMs, error: null, nextRetryAt: null };
      }
      if (this.stopped) return 'interrupted';
      firstFailureAt ??= performance.now();
      // A receiver that says when to come back (429, 503 with Retry-After) is not asked sooner; the cap
      // still holds, so a hostile or mistaken value cannot park the subscription beyond the usual back-off.
      const delay = Math.max(retryDelay(policy, attempt), Math.min(answer.retryAfterMs ?? 0, policy.maxRetryMs));
      // 410 Gone: the receiver says the endpoint will not come back (Standard Webhooks: stop sending), so
      // the subscription pauses at once instead of retrying for `retryForMs`; enabling it resumes it.
      const gone = answer.status === 410;
      const pause = gone || performance.now() + delay - firstFailureAt > policy.retryForMs;
      const nextRetryAt = pause ? null : new Date(Date.now() + delay);
      const error = gone ? 'HTTP 410: the receiver says this endpoint is gone' : (answer.error ?? `HTTP ${answer.status}`);
      // The receiver as the log may name it: no credentials, in the userinfo, the path or the query.
      this.receiverOutage.failed(error, { url: loggableUrl(subscription.url, { asDelivered: true }), status: answer.status });
      if (attempt === 1) await save();
      await tables.logAttempts(tables.db, subscription.id, [
        { eventId, position: first.recorded.position, attempt, statusCode: answer.status, latencyMs, error, nextRetryAt },
      ]);
      await tables.recordFailure(this.name, { error, status: answer.status, latencyMs, nextRetryAt, pause });
      if (pause) {
        // Enabling it again starts a new series of attempts.
        this.retry = undefined;
        this.deps.log?.(
          gone ? 'webhook subscription paused: the endpoint is gone' : 'webhook subscription paused: retries ran out',
          {
            subscription: subscription.id,
            eventId,
            error,
          },
          'error',
        );
        return 'paused';
      }
      const retryAt = performance.now() + delay;
      this.retry = { eventId, attempt, firstFailureAt, retryAt, url };
      if (!(await this.waitUntil(retryAt))) return 'interrupted';
    }
  }

  /** Waits until `at`; false when the loop stops or the subscription changes first. */
  private async waitUntil(at: number): Promise<boolean> {
    // `wait` also returns early on new events: keep waiting out the delay unless interrupted.
    while (!this.stopped && !this.stale && at > performance.now()) {
      await this.deps.feed.wait(at - performance.now(), AbortSignal.any([this.controller.signal, this.interrupt.signal]));
    }
    return !this.stopped && !this.stale;
  }
}
