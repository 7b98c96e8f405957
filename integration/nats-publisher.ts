import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, headers, TimeoutError, type NatsConnection } from '@nats-io/transport-node';
import { BrokerPublisher, type Broker, type BrokerConnection, type BrokerPublisherOptions } from './broker-publisher.ts';
import { integrationSubject, type IntegrationEvent } from './envelope.ts';
import { NATS_PUBLISHER } from './tables.ts';

/** Header carrying the event's global position: a restarted publisher resumes after the stream's last one. */
export const POSITION_HEADER = 'Crm-Position';
/** JetStream's de-duplication header: the event id (`msgID`). */
const MESSAGE_ID_HEADER = 'Nats-Msg-Id';

export interface NatsPublisherOptions extends BrokerPublisherOptions {
  url: string;
  stream: string;
  /** Longest wait for one publish acknowledgement (5 s by default). */
  ackTimeoutMs?: number;
}

/**
 * How often the client pings the server, and how many pings may go unanswered before it takes the
 * connection for dead and reconnects by itself: a connection whose peer is gone without a word is
 * noticed within about 15 s even while nothing is published (the client's defaults, 2 minutes and 2,
 * took 6 minutes).
 */
const PING_INTERVAL_MS = 5_000;
const MAX_PINGS_OUT = 2;

/** Every subject the stream takes. */
const SUBJECTS = 'crm.>';

/**
 * Publishes every integration event to JetStream (integration/broker-publisher.ts), with
 * `Nats-Msg-Id` = event id (JetStream drops a duplicate inside the stream's duplicate window). On
 * start and after every failure (acknowledgements lost, a crash between the acknowledgements and the
 * checkpoint) it first skips past the last position the stream already holds, so a page whose
 * publishes arrived is not published again, however long the failure lasted: the duplicate window
 * alone covers only two minutes.
 */
export const createNatsPublisher = (options: NatsPublisherOptions) => new BrokerPublisher(new NatsBroker(options), options);

interface NatsClients extends BrokerConnection {
  js: JetStreamClient;
  jsm: JetStreamManager;
}

class NatsBroker implements Broker<NatsClients> {
  readonly publisher = NATS_PUBLISHER;
  readonly label = 'NATS';
  readonly check = 'that a NATS server with JetStream on listens at CRM_NATS_URL and is reachable from this host';

  constructor(private readonly options: NatsPublisherOptions) {}

  get url() {
    return this.options.url;
  }

  // An acknowledgement (or a JetStream request) that timed out: the connection may be half-open, its
  // peer gone without a word. The client would notice only after its pings went unanswered; a new
  // connection is made at once instead.
  dropsConnectionOn(error: unknown): boolean {
    return error instanceof TimeoutError;
  }

  /** The clients of a new connection (a JetStream manager asks the server on creation). */
  async connect(lost: (why: string) => void): Promise<NatsClients> {
    const nc = await connect({
      servers: this.options.url,
      timeout: 5_000,
      reconnect: true,
      maxReconnectAttempts: -1,
      pingInterval: PING_INTERVAL_MS,
      maxPingOut: MAX_PINGS_OUT,
      name: 'crm-publisher',
    });
    void watch(nc, lost);
    try {
      const js = jetstream(nc, { timeout: this.options.ackTimeoutMs ?? 5_000 });
      const jsm = await jetstreamManager(nc, { timeout: 5_000 });
      return { js, jsm, publish: (events) => this.publish(js, jsm, events), close: () => nc.close() };
    } catch (error) {
      await nc.close().catch(() => undefined);
      throw error;
    }
  }

  // - the stream, created when missing: a NATS server first reached before JetStream was on, or restarted
  //   without its storage, has no stream, and the client reconnects on its own, so the connection is not new;
  // - the last position it holds: publishes whose acknowledgements were lost did arrive, and the retry may
  //   come after the duplicate window (a long outage), when JetStream would store them a second time.
  async prepare({ jsm }: NatsClients): Promise<void> {
    await this.ensureStream(jsm);
    await this.resumeAfterStream(jsm);
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

  /** Sent in order on one connection, acknowledged together: JetStream stores them in this order. */
  private async publish(js: JetStreamClient, jsm: JetStreamManager, events: readonly IntegrationEvent[]): Promise<void> {
    const acks = events.map((event) => {
      const h = headers();
      h.set(POSITION_HEADER, event.position);
      // Refused unless our stream takes it: when ours was deleted and another stream took the subjects
      // (another installation's), the events went into that one, acknowledged, with nothing said.
      return js.publish(integrationSubject(event.aggregate.kind, event.type), JSON.stringify(event), {
        msgID: event.id,
        headers: h,
        expect: { streamName: this.options.stream },
      });
    });
    await Promise.all(acks).catch(async (error: unknown) => {
      throw await this.explained(error, jsm);
    });
  }
}

/**
 * The client reconnects by itself, for ever and without a word: a publisher with nothing to publish
 * never touched NATS, so an outage showed `running` with no error for as long as it lasted. A
 * connection lost (reset, refused, its pings unanswered: about 15 s for a peer gone silent) is noted
 * (`lost`); the publisher then drops it and connects anew itself, failing (`retrying`, `lastError`)
 * until that works, and looks at the stream again once it does (the server may have come back without it).
 */
async function watch(connection: NatsConnection, lost: (why: string) => void): Promise<void> {
  for await (const status of connection.status()) {
    if (status.type === 'disconnect' || status.type === 'staleConnection')
      lost('NATS connection lost (reset, refused, or its pings unanswered); connecting again');
  }
}
