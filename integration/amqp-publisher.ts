import { once } from 'node:events';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import {
  brokerDeadline,
  BrokerPublisher,
  BrokerTimeout,
  PartlyPublished,
  type Broker,
  type BrokerConnection,
  type BrokerPublisherOptions,
} from './broker-publisher.ts';
import { inCauses } from '../shared/causes.ts';
import { integrationSubject, type IntegrationEvent } from './envelope.ts';
import { AMQP_PUBLISHER } from './tables.ts';

/** Headers every message carries beside its properties: the event's global position and its public type's version. */
export const AMQP_POSITION_HEADER = 'crm-position';
export const AMQP_VERSION_HEADER = 'crm-version';

export interface AmqpPublisherOptions extends BrokerPublisherOptions {
  /** `amqp://user:password@host:5672/vhost` (or `amqps://`). */
  url: string;
  /** The durable topic exchange the events are published to (declared at start). */
  exchange: string;
  /** Longest wait for the broker to confirm a page, and for the connection, the channel and the declaration (5 s by default). */
  confirmTimeoutMs?: number;
}

/**
 * Seconds between heartbeats unless the URL says otherwise (`?heartbeat=`): the client takes the
 * connection for dead after two silent intervals, so a broker gone without a word (or a middlebox that
 * dropped the connection) is noticed within about 15 s even while nothing is published. RabbitMQ
 * proposes 60 s, which took minutes.
 */
const HEARTBEAT_SECONDS = 5;

/**
 * Publishes every integration event to a RabbitMQ topic exchange (integration/broker-publisher.ts):
 * routing key `crm.<aggregate kind>.<EventType>` (the NATS subject), persistent, `message_id` = the
 * event id (consumers dedupe by it), `type` = the event type. On a confirm channel, one per
 * connection, so the broker routes the messages in position order and confirms each: the checkpoint
 * moves past the confirmed ones only. An exchange keeps nothing to look back at, so what was sent and
 * not confirmed (a connection reset while confirms were on their way) is published again: at least once.
 */
export const createAmqpPublisher = (options: AmqpPublisherOptions) => new BrokerPublisher(new AmqpBroker(options), options);

interface AmqpConnection extends BrokerConnection {
  channel: ConfirmChannel;
}

class AmqpBroker implements Broker<AmqpConnection> {
  readonly publisher = AMQP_PUBLISHER;
  readonly label = 'RabbitMQ';
  readonly check = 'that RabbitMQ (or another AMQP 0-9-1 broker) listens at CRM_AMQP_URL, is reachable from this host and takes its user and password';

  constructor(private readonly options: AmqpPublisherOptions) {}

  get url() {
    return this.options.url;
  }

  private get timeoutMs() {
    return this.options.confirmTimeoutMs ?? 5_000;
  }

  // A confirmation (or a declaration) that did not come in time: the connection may be half-open; a new one is made at
  // once. An error the broker closed the channel with (a numeric AMQP reply code) leaves nothing to publish on either.
  dropsConnectionOn(error: unknown): boolean {
    return error instanceof BrokerTimeout || inCauses(error, (at) => typeof (at as { code?: unknown }).code === 'number') !== undefined;
  }

  async connect(lost: (why: string) => void): Promise<AmqpConnection> {
    const url = new URL(this.options.url);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(HEARTBEAT_SECONDS));
    // `timeout` bounds the TCP connection and the AMQP handshake together.
    const model: ChannelModel = await connect(url.toString(), { timeout: this.timeoutMs, clientProperties: { connection_name: 'crm-publisher' } });
    // Without an 'error' listener an error event would end the process; the error itself comes with 'close'.
    model.on('error', () => undefined);
    model.on('close', (error?: Error) => lost(`RabbitMQ connection closed${error ? `: ${error.message}` : ''}; connecting again`));
    model.on('blocked', (reason: string) => lost(`RabbitMQ blocked the connection (${reason}); connecting again`));
    const close = () => brokerDeadline(model.close(), this.timeoutMs, 'RabbitMQ closing the connection').catch(() => undefined);
    try {
      const channel = await brokerDeadline(model.createConfirmChannel(), this.timeoutMs, 'RabbitMQ opening a channel');
      // The broker closes a channel on an error of ours (an exchange of another type, an access refused): its reason is kept.
      let closedBecause: string | undefined;
      channel.on('error', (error: Error) => (closedBecause = error.message));
      channel.on('close', () => lost(`RabbitMQ channel closed${closedBecause ? `: ${closedBecause}` : ''}; connecting again`));
      return { channel, publish: (events) => this.publish(channel, events), close };
    } catch (error) {
      await close();
      throw error;
    }
  }

  async prepare({ channel }: AmqpConnection): Promise<void> {
    const { exchange } = this.options;
    try {
      await brokerDeadline(channel.assertExchange(exchange, 'topic', { durable: true }), this.timeoutMs, `RabbitMQ declaring the exchange ${exchange}`);
    } catch (error) {
      // Declared before with other settings (a `direct` exchange by that name): the broker closes the channel (406).
      if (error instanceof Error && /PRECONDITION.FAILED/.test(error.message))
        throw new Error(
          `RabbitMQ exchange ${exchange} exists with other settings than a durable topic exchange: ${error.message}. Delete it (if nothing uses it) or set CRM_AMQP_EXCHANGE to another name`,
          { cause: error },
        );
      throw error;
    }
  }

  /**
   * Sent in order on the one channel, each persistent, and confirmed by the broker: resolves when every
   * one was confirmed; `PartlyPublished` with the first ones confirmed in a row when the broker nacked one
   * or the channel closed; a `BrokerTimeout` when the confirms stop coming.
   */
  private async publish(channel: ConfirmChannel, events: readonly IntegrationEvent[]): Promise<void> {
    // Each settles with null once confirmed or with why not; none rejects, so one left behind by a failure is no unhandled rejection.
    const outcomes: Promise<Error | null>[] = [];
    for (const event of events) {
      let room = true;
      outcomes.push(
        new Promise((settle) => {
          try {
            room = channel.publish(
              this.options.exchange,
              integrationSubject(event.aggregate.kind, event.type),
              Buffer.from(JSON.stringify(event)),
              {
                persistent: true,
                messageId: event.id,
                type: event.type,
                contentType: 'application/json',
                timestamp: Math.floor(Date.parse(event.recordedAt) / 1000),
                appId: 'crm',
                headers: { [AMQP_POSITION_HEADER]: event.position, [AMQP_VERSION_HEADER]: event.version },
              },
              (error: unknown) => settle(error ? notConfirmed(event, error) : null),
            );
          } catch (error) {
            // The channel closed before this one was sent.
            settle(notConfirmed(event, error));
          }
        }),
      );
      // The client's buffer is full (a slow socket): the rest waits until it drains, within the bound.
      if (!room) await brokerDeadline(once(channel, 'drain'), this.timeoutMs, 'RabbitMQ taking the messages');
    }
    const results = await brokerDeadline(Promise.all(outcomes), this.timeoutMs, `RabbitMQ confirming ${events.length} events`);
    const first = results.findIndex((error) => error !== null);
    if (first !== -1) throw new PartlyPublished(first, results[first]);
  }
}

const notConfirmed = (event: IntegrationEvent, error: unknown): Error =>
  new Error(`RabbitMQ did not confirm event ${event.id} at position ${event.position}: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
