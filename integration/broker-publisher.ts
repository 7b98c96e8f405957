import { createBackoff, pause } from '../eventstore/backoff.ts';
import { EventStoreUnavailable } from '../eventstore/errors.ts';
import { describeError } from '../projections/errors.ts';
import { loggableUrl } from '../shared/loggable-url.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';
import { toIntegrationEvent, type IntegrationEvent, type SubscriberRole } from './envelope.ts';
import type { IntegrationFeed } from './feed.ts';
import type { IntegrationTables, PublisherKind } from './tables.ts';
import type { Fenced } from './webhook-loop.ts';

/**
 * One message broker that every integration event is published to (NATS JetStream, RabbitMQ): what
 * differs between them. Everything else, the loop that follows the feed, the checkpoint moved only
 * after the broker confirmed, the retries with back-off, the status and the log lines, is
 * `BrokerPublisher`'s, the same for each.
 */
export interface Broker<C extends BrokerConnection = BrokerConnection> {
  /** The publisher's row in `integration_publishers` (its name and kind). */
  readonly publisher: Exclude<PublisherKind, 'webhook'>;
  /** How the log lines name it: `NATS`, `RabbitMQ`. */
  readonly label: string;
  /** The server, as configured (printed without its credentials). */
  readonly url: string;
  /** What an operator checks when publishing fails and the database is not at fault. */
  readonly check: string;
  /** A new connection, made within a bound; `lost` is called once it can no longer be trusted (reset, closed, its heartbeats unanswered). */
  connect(lost: (why: string) => void): Promise<C>;
  /** Looked at on start and after every failure, before anything is published again (a stream or an exchange declared, a checkpoint checked). */
  prepare(connection: C): Promise<void>;
  /**
   * Whether, after this error, the connection is dropped at once rather than left to the client: a
   * confirmation that timed out may mean a connection gone half-open, its peer gone without a word.
   */
  dropsConnectionOn(error: unknown): boolean;
}

export interface BrokerConnection {
  /** Sends the events in this order and resolves once the broker confirmed every one (bounded); `PartlyPublished` when it confirmed only the first ones. */
  publish(events: readonly IntegrationEvent[]): Promise<void>;
  /** Closes without waiting for the broker (it may never answer). */
  close(): Promise<void>;
}

/** A page the broker confirmed only in part: the first `confirmed` events, in order, before `cause` (a nack, the channel closed). */
export class PartlyPublished extends Error {
  constructor(
    readonly confirmed: number,
    override readonly cause: unknown,
  ) {
    super(describeError(cause), { cause });
    this.name = 'PartlyPublished';
  }
}

/** `work`, or a rejection saying that the broker did not answer `what` within `ms` (the work runs on, its result dropped). */
export const brokerDeadline = <T>(work: Promise<T>, ms: number, what: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new BrokerTimeout(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
};

/** A broker that did not answer in time (a confirmation, a declaration): its connection is dropped and made anew. */
export class BrokerTimeout extends Error {
  override name = 'BrokerTimeout';
}

export interface BrokerPublisherOptions {
  /** Whose view of personal data the broker carries (api/roles.ts; `analyst` masks it). */
  role: SubscriberRole;
  tables: IntegrationTables;
  feed: IntegrationFeed;
  fenced: Fenced;
  /** Events published per round; their confirmations are awaited together. */
  pageSize?: number;
  log?: Log;
}

const CHECK_DATABASE = (label: string) => `PostgreSQL (DATABASE_URL), from which the events are read: ${label} is not at fault`;
/** Back-off after attempts the broker failed: from 500 ms, doubling, up to 30 s. (The database away: `createBackoff`, up to 1 s.) */
const retryDelayMs = (failures: number) => Math.min(30_000, 250 * 2 ** Math.min(failures, 7));

/**
 * Publishes every integration event to a broker, in position order, on one connection. The
 * checkpoint moves only after the broker confirmed every publish of a page (of the confirmed first
 * ones when it confirmed only those); what it did not confirm is published again by the next attempt
 * (at least once: consumers dedupe by the event id, which every message carries). It retries for
 * ever, never pauses, and shows its outage as `retrying` (its row's `last_error`), one log line at the
 * start of an outage and one at its end.
 */
export class BrokerPublisher<C extends BrokerConnection> {
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;
  private connection: C | undefined;
  /** Why the current connection is no longer to be trusted: the loop drops it and fails. */
  private lost: string | undefined;
  /** Counts the connections dropped. */
  private generation = 0;

  constructor(
    private readonly broker: Broker<C>,
    private readonly options: BrokerPublisherOptions,
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
    await this.dropConnection();
  }

  private get stopped() {
    return this.controller.signal.aborted;
  }

  private async run(): Promise<void> {
    const { broker, options } = this;
    let failures = 0;
    // A failure stored by an earlier process (the broker away when it stopped) is cleared by this one's first
    // round that works, with nothing to publish too: only a publish would clear it otherwise.
    let started = true;
    // The database away is tried again as every loop on it is, at most a second apart, so that publishing
    // resumes once it answers: the broker's longer back-off would be spent waiting on a database that is back.
    const databaseBackoff = createBackoff();
    // The lines name the server (without its credentials) and what to look at: the error alone
    // ('ConnectionError: connection refused') named neither.
    const outage = new OutageLog(
      options.log,
      { failed: `${broker.label} publisher error; retrying`, recovered: `${broker.label} publisher publishing again` },
      { server: loggableUrl(broker.url) },
    );
    // Looked at on start and again after every failure, before anything is published again (`Broker.prepare`).
    let prepared = false;
    while (!this.stopped) {
      try {
        const connection = await this.connect();
        if (!prepared) {
          await broker.prepare(connection);
          prepared = true;
        }
        const idleMs = await this.round(connection);
        if (failures > 0 || started) {
          // Published again (or the broker answers and nothing waits): no longer failing.
          await options.tables.clearFailure(broker.publisher);
          outage.recovered();
        }
        failures = 0;
        started = false;
        databaseBackoff.reset();
        if (idleMs > 0) await options.feed.wait(idleMs, this.controller.signal);
      } catch (error) {
        if (this.stopped) break;
        failures++;
        prepared = false;
        // A connection noted lost meanwhile (the broker closed it, or the channel, on this very error) is made
        // anew by the next attempt, rather than failing it once more with the loss.
        if (this.lost !== undefined || broker.dropsConnectionOn(error)) await this.dropConnection();
        const message = describeError(error);
        const database = error instanceof EventStoreUnavailable;
        outage.failed(message, { check: database ? CHECK_DATABASE(broker.label) : broker.check });
        const delayMs = database ? databaseBackoff.next() : retryDelayMs(failures);
        await options.tables
          .recordFailure(broker.publisher, { error: message, status: null, latencyMs: 0, nextRetryAt: new Date(Date.now() + delayMs), pause: false })
          .catch(() => undefined);
        // A plain sleep, not `feed.wait`: that returns on every new event, so traffic would cut the back-off short
        // (one failed attempt per event while the broker is away).
        await pause(delayMs, this.controller.signal);
      }
    }
  }

  /**
   * The current connection, or a new one. A connection noted lost (`lost`: reset, closed by the broker,
   * its heartbeats unanswered) is dropped here and the attempt fails, so that an idle publisher shows
   * the outage (`retrying`) until connecting works again, and the broker is prepared again after it.
   */
  private async connect(): Promise<C> {
    if (this.lost) {
      const lost = this.lost;
      await this.dropConnection();
      throw new Error(lost);
    }
    if (!this.connection) {
      // A connection dropped since (its generation passed) is no longer reported on.
      const generation = this.generation;
      this.connection = await this.broker.connect((why) => {
        if (generation === this.generation && this.connection) this.lost ??= why;
      });
    }
    return this.connection;
  }

  private async dropConnection(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.lost = undefined;
    this.generation++;
    await connection?.close().catch(() => undefined);
  }

  private async round(connection: C): Promise<number> {
    const { tables, feed, fenced, role } = this.options;
    const name = this.broker.publisher;
    const publisher = await tables.publisher(name);
    if (!publisher || publisher.state !== 'running') return 1_000;
    const page = await feed.read(publisher.position, this.options.pageSize ?? 500);
    if (page.items.length === 0) return 500;
    // A poison event stops the publisher where it is (retried with back-off, shown in its status).
    const undecodable = page.items.find((i) => !i.projected);
    if (undecodable) {
      throw new Error(
        `event ${undecodable.recorded.id} at position ${undecodable.recorded.position} cannot be decoded: ${describeError(undecodable.decodeError)}`,
      );
    }
    const started = performance.now();
    // Personal data as the role may see it; `[erased]` for customers forgotten before the page was read (feed.read).
    const events = page.items.map((item) => toIntegrationEvent(item.projected!, role));
    try {
      await connection.publish(events);
    } catch (error) {
      // What the broker confirmed is not published again: the checkpoint moves past it before the failure counts.
      if (error instanceof PartlyPublished && error.confirmed > 0) {
        const end = page.items[error.confirmed - 1]!.recorded.position;
        const latencyMs = (performance.now() - started) / error.confirmed;
        await fenced((trx) => tables.advance(trx, name, publisher.position, end, error.confirmed, latencyMs, null));
      }
      throw error instanceof PartlyPublished ? error.cause : error;
    }
    const latencyMs = (performance.now() - started) / page.items.length;
    const moved = await fenced((trx) => tables.advance(trx, name, publisher.position, page.end, page.items.length, latencyMs, null));
    return moved ? 0 : 100;
  }
}
