import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { EventStoreUnavailable } from '../eventstore/errors.ts';
import { describeError } from '../projections/errors.ts';
import { toIntegrationEvent, type SubscriberRole } from './envelope.ts';
import type { IntegrationFeed } from './feed.ts';
import { loggableUrl } from '../shared/loggable-url.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';
import { NATS_PUBLISHER, type IntegrationTables } from './tables.ts';
import type { Fenced } from './webhook-loop.ts';

/** Header carrying the event's global position: a restarted publisher resumes after the stream's last one. */
export const POSITION_HEADER = 'Crm-Position';
/** JetStream's de-duplication header: the event id (`msgID`). */
const MESSAGE_ID_HEADER = 'Nats-Msg-Id';

export interface NatsPublisherOptions {
  url: string;
  stream: string;
  /** Whose view of personal data the stream carries (api/roles.ts; `analyst` masks it). */
  role: SubscriberRole;
  tables: IntegrationTables;
  feed: IntegrationFeed;
  fenced: Fenced;
  /** Events published per round; their acknowledgements are awaited together. */
  pageSize?: number;
  /** Longest wait for one publish acknowledgement (5 s by default). */
  ackTimeoutMs?: number;
  log?: Log;
}

/** What an operator checks when publishing fails: NATS itself, or the database the events are read from. */
const CHECK_NATS = 'that a NATS server with JetStream on listens at CRM_NATS_URL and is reachable from this host';
const CHECK_DATABASE = 'PostgreSQL (DATABASE_URL), from which the events are read: NATS is not at fault';

/**
 * How often the client pings the server, and how many pings may go unanswered before it takes the
 * connection for dead and reconnects by itself: a connection whose peer is gone without a word is
 * noticed within about 15 s even while nothing is published (the client's defaults, 2 minutes and 2,
 * took 6 minutes).
 */
const PING_INTERVAL_MS = 5_000;
const MAX_PINGS_OUT = 2;
/** Back-off after attempts NATS failed: from 500 ms, doubling, up to 30 s. (The database away: `createBackoff`, up to 1 s.) */
const retryDelayMs = (failures: number) => Math.min(30_000, 250 * 2 ** Math.min(failures, 7));

export const natsSubject = (kind: string, type: string) => `crm.${kind}.${type}`;
/** Every subject the stream takes. */
const SUBJECTS = 'crm.>';

/**
 * Publishes every integration event to JetStream, in position order, with `Nats-Msg-Id` = event id
 * (JetStream drops a duplicate inside the stream's duplicate window). The checkpoint moves only after
 * every publish of a page was acknowledged. On start and after every failure (acknowledgements lost,
 * a crash between the acknowledgements and the checkpoint) it first skips past the last position the
 * stream already holds, so a page whose publishes arrived is not published again, however long the
 * failure lasted: the duplicate window alone covers only two minutes.
 */
export class NatsPublisher {
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;
  private connection: NatsConnection | undefined;
  private clients: { js: JetStreamClient; jsm: JetStreamManager } | undefined;
  /** Why the current connection is no longer to be trusted (`watch`): the loop drops it and fails. */
  private lost: string | undefined;

  constructor(private readonly options: NatsPublisherOptions) {}

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
    let failures = 0;
    // A failure stored by an earlier process (NATS away when it stopped) is cleared by this one's first
    // round that works, with nothing to publish too: only a publish would clear it otherwise.
    let started = true;
    // The database away is tried again as every loop on it is, at most a second apart, so that publishing
    // resumes once it answers: NATS's longer back-off would be spent waiting on a database that is back.
    const databaseBackoff = createBackoff();
    // The lines name the server (without its credentials) and what to look at: the error alone
    // ('ConnectionError: connection refused') named neither.
    const outage = new OutageLog(
      this.options.log,
      { failed: 'NATS publisher error; retrying', recovered: 'NATS publisher publishing again' },
      { server: loggableUrl(this.options.url) },
    );
    // Looked at on start and again after every failure, before anything is published again:
    // - the stream, created when missing: a NATS server first reached before JetStream was on, or restarted
    //   without its storage, has no stream, and the client reconnects on its own, so the connection is not new;
    // - the last position it holds: publishes whose acknowledgements were lost did arrive, and the retry may
    //   come after the duplicate window (a long outage), when JetStream would store them a second time.
    let checked = false;
    while (!this.stopped) {
      try {
        const { js, jsm } = await this.connect();
        if (this.lost) {
          const lost = this.lost;
          await this.dropConnection();
          throw new Error(lost);
        }
        if (!checked) {
          await this.ensureStream(jsm);
          await this.resumeAfterStream(jsm);
          checked = true;
        }
        const idleMs = await this.round(js, jsm);
        if (failures > 0 || started) {
          // Published again (or NATS answers and nothing waits): no longer failing.
          await this.options.tables.clearFailure(NATS_PUBLISHER);
          outage.recovered();
        }
        failures = 0;
        started = false;
        databaseBackoff.reset();
        if (idleMs > 0) await this.options.feed.wait(idleMs, this.controller.signal);
      } catch (error) {
        if (this.stopped) break;
        failures++;
        checked = false;
        // An acknowledgement (or a JetStream request) that timed out: the connection may be half-open, its
        // peer gone without a word. The client would notice only after its pings went unanswered; a new
        // connection is made at once instead.
        if (error instanceof TimeoutError) await this.dropConnection();
        const message = describeError(error);
        outage.failed(message, { check: error instanceof EventStoreUnavailable ? CHECK_DATABASE : CHECK_NATS });
        const delayMs = error instanceof EventStoreUnavailable ? databaseBackoff.next() : retryDelayMs(failures);
        await this.options.tables
          .recordFailure(NATS_PUBLISHER, { error: message, status: null, latencyMs: 0, nextRetryAt: new Date(Date.now() + delayMs), pause: false })
          .catch(() => undefined);
        // A plain sleep, not `feed.wait`: that returns on every new event, so traffic would cut the back-off short
        // (one failed attempt per event while NATS is away).
        await pause(delayMs, this.controller.signal);
      }
    }
  }

  /** The clients of the current connection, made once per connection (a JetStream manager asks the server on creation). */
  private async connect(): Promise<{ js: JetStreamClient; jsm: JetStreamManager }> {
    if (!this.connection || this.connection.isClosed()) {
      this.clients = undefined;
      this.lost = undefined;
      const connection = await connect({
        servers: this.options.url,
        timeout: 5_000,
        reconnect: true,
        maxReconnectAttempts: -1,
        pingInterval: PING_INTERVAL_MS,
        maxPingOut: MAX_PINGS_OUT,
        name: 'crm-publisher',
      });
      this.connection = connection;
      void this.watch(connection);
    }
    this.clients ??= {
      js: jetstream(this.connection, { timeout: this.options.ackTimeoutMs ?? 5_000 }),
      jsm: await jetstreamManager(this.connection, { timeout: 5_000 }),
    };
    return this.clients;
  }

  /**
   * The client reconnects by itself, for ever and without a word: a publisher with nothing to publish
   * never touched NATS, so an outage showed `running` with no error for as long as it lasted. A
   * connection lost (reset, refused, its pings unanswered: about 15 s for a peer gone silent) is noted
   * here; the loop then drops it and connects anew itself, failing (`retrying`, `lastError`) until that
   * works, and looks at the stream again once it does (the server may have come back without it).
   */
  private async watch(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (connection !== this.connection) return;
      if (status.type === 'disconnect' || status.type === 'staleConnection')
        this.lost ??= 'NATS connection lost (reset, refused, or its pings unanswered); connecting again';
    }
  }

  /** Closes the connection without waiting for the server (it may never answer); the next attempt connects anew. */
  private async dropConnection(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.clients = undefined;
    this.lost = undefined;
    await connection?.close().catch(() => undefined);
  }

  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    let info = await jsm.streams.info(this.options.stream).catch(() => undefined);
    if (!info) {
      try {
        // 2 minutes: JetStream's default duplicate window, stated so the behaviour does not hang on a server default.
        info = await jsm.streams.add({ name: this.options.stream, subjects: [SUBJECTS], duplicate_window: 120_000_000_000 });
      } catch (error) {
        // Another stream holds the subjects (another CRM installation on this server, or a stream made by hand):
        // JetStream refuses a second one, so nothing is published until the operator chooses.
        const holder = await jsm.streams.find(SUBJECTS).catch(() => undefined);
        if (holder === undefined || holder === this.options.stream) throw error;
        throw new Error(
          `NATS stream ${this.options.stream} cannot be created: stream ${holder} on this server already takes the subjects ${SUBJECTS}. ` +
            `Give each CRM installation its own NATS account or server (or delete ${holder} if nothing uses it); do not set CRM_NATS_STREAM=${holder}: two installations' events in one stream interleave, and neither keeps its order.`,
          { cause: error },
        );
      }
    }
    if (info.state.last_seq === 0) await this.publishHistoryAgain();
  }

  /**
   * A stream that never held a message (created just now, after it was deleted or its server restarted
   * without its storage) where this store published before: the history is not in it. Publishing on from
   * the checkpoint would store the new events first and any replay of the history after them, for good
   * (and JetStream would drop the replayed copies of the new ones within its duplicate window, so
   * consumers kept the copies out of order). So the checkpoint goes back to the start, and the whole
   * history is published again, in position order, before any new event: nothing lost and the order kept,
   * with no operator needed (pausing until one chose would keep the order too, but hold every consumer
   * without events meanwhile). Decided on the stream's state, not on having created it, so a move cut off
   * by a failure is made on the next attempt.
   */
  private async publishHistoryAgain(): Promise<void> {
    const publisher = await this.options.tables.publisher(NATS_PUBLISHER);
    if (!publisher || publisher.position === 0n) return;
    const moved = await this.options.fenced((trx) => this.options.tables.advance(trx, NATS_PUBLISHER, publisher.position, 0n, 0, null, null));
    if (!moved) throw new Error(`NATS publisher checkpoint moved while the empty stream ${this.options.stream} was found; looking again`);
    this.options.log?.(
      `NATS stream ${this.options.stream} was missing and has been created empty (or was found empty): the events published before (up to position ${publisher.position}) are not in it, so the whole history is published into it again from the start, in order, before any new event`,
      { stream: this.options.stream, position: publisher.position.toString() },
    );
  }

  /**
   * Moves the checkpoint past what the stream already holds from us (a crash after the acks, before the
   * checkpoint): only when its last message is an event of this store (the event recorded at the
   * message's position has the message's id). Another installation's message, or one published by
   * hand, once moved the checkpoint to its position, and every event of ours before it was skipped
   * while the publisher showed running and nothing behind.
   */
  private async resumeAfterStream(jsm: JetStreamManager): Promise<void> {
    const info = await jsm.streams.info(this.options.stream);
    if (info.state.messages === 0) return;
    const last = await jsm.streams.getMessage(this.options.stream, { seq: info.state.last_seq }).catch(() => null);
    const stored = last?.header?.get(POSITION_HEADER);
    if (!stored || !/^\d+$/.test(stored)) return;
    const publisher = await this.options.tables.publisher(NATS_PUBLISHER);
    if (!publisher || BigInt(stored) <= publisher.position) return;
    const id = last?.header?.get(MESSAGE_ID_HEADER);
    if (!id || !(await this.options.feed.holds(BigInt(stored), id))) {
      this.options.log?.("NATS stream's last message is not an event of this store; publishing on from the checkpoint", {
        stream: this.options.stream,
        sequence: info.state.last_seq,
        position: stored,
      });
      return;
    }
    await this.options.fenced((trx) => this.options.tables.advance(trx, NATS_PUBLISHER, publisher.position, BigInt(stored), 0, null, null));
  }

  /**
   * A publish nothing answered reads `JetStreamNotEnabled: jetstream is not enabled` when only our stream
   * is gone (deleted, a server restarted without its storage: no stream takes the subject): said as what
   * happened when JetStream answers and says so.
   */
  private async explained(error: unknown, jsm: JetStreamManager): Promise<unknown> {
    // The client's class for it is not exported: its name tells it.
    if (!(error instanceof Error && error.name === 'JetStreamNotEnabled')) return error;
    const missing = await jsm.streams.info(this.options.stream).then(
      () => false,
      (cause: unknown) => cause instanceof JetStreamApiError && cause.code === JetStreamApiCodes.StreamNotFound,
    );
    return missing
      ? new Error(
          `NATS stream ${this.options.stream} is missing (deleted, or its server restarted without its storage): it is created again and the history published into it first`,
          { cause: error },
        )
      : error;
  }

  private async round(js: JetStreamClient, jsm: JetStreamManager): Promise<number> {
    const { tables, feed } = this.options;
    const publisher = await tables.publisher(NATS_PUBLISHER);
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
    // Sent in order on one connection, acknowledged together: JetStream stores them in this order.
    const acks = page.items.map((item) => {
      const event = toIntegrationEvent(item.projected!, this.options.role);
      const h = headers();
      h.set(POSITION_HEADER, event.position);
      // Refused unless our stream takes it: when ours was deleted and another stream took the subjects
      // (another installation's), the events went into that one, acknowledged, with nothing said.
      return js.publish(natsSubject(event.aggregate.kind, event.type), JSON.stringify(event), {
        msgID: event.id,
        headers: h,
        expect: { streamName: this.options.stream },
      });
    });
    await Promise.all(acks).catch(async (error: unknown) => {
      throw await this.explained(error, jsm);
    });
    const latencyMs = (performance.now() - started) / page.items.length;
    const moved = await this.options.fenced((trx) => tables.advance(trx, NATS_PUBLISHER, publisher.position, page.end, page.items.length, latencyMs, null));
    return moved ? 0 : 100;
  }
}
