import type { Kysely } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import { describeError } from '../projections/errors.ts';
import type { LeaseGuard } from '../projections/leases.ts';
import { createDestinationGuard, type DestinationGuard } from './destinations.ts';
import { lagReader } from '../projections/status.ts';
import type { SubscriberRole } from './envelope.ts';
import { createIntegrationFeed, type IntegrationFeed } from './feed.ts';
import type { Broker, BrokerPublisherOptions } from './broker-publisher.ts';
import { OutageLog, type Log } from '../shared/outage-log.ts';
import { AMQP_PUBLISHER, integrationTables, NATS_PUBLISHER, type IntegrationTables, type PublisherRow, type ReportedPublisherState } from './tables.ts';
import { DEFAULT_DELIVERY_POLICY, unfenced, WebhookLoop, type DeliveryPolicy, type Fenced } from './webhook-loop.ts';

/** The lease partition under which one worker runs every publisher (projections/leases.ts). */
export const PUBLISHERS_PARTITION = 'integration-publishers';

export interface NatsSettings {
  url: string;
  /** JetStream stream name; `CRM_EVENTS` unless a test needs its own. */
  stream: string;
  role: SubscriberRole;
}

export interface AmqpSettings {
  /** `amqp://user:password@host:5672/vhost` (or `amqps://`). */
  url: string;
  /** The durable topic exchange declared at start; `crm.events` unless a test needs its own. */
  exchange: string;
  role: SubscriberRole;
}

/** A broker publisher as the publishers run it (integration/broker-publisher.ts). */
interface RunningBroker {
  start(): void;
  stop(): Promise<void>;
}

/** What every broker publisher is given besides its settings. */
type Common = Omit<BrokerPublisherOptions, 'role'>;

/** A broker configured here: its publisher's name (its row's kind too) and how to make the publisher. */
interface ConfiguredBroker {
  publisher: Broker['publisher'];
  create(common: Common): Promise<RunningBroker>;
}

/**
 * The brokers configured, one publisher each. A broker's client is loaded only where publishing to it
 * is configured (each costs memory to load).
 */
const brokersOf = ({ nats, amqp }: PublishersOptions): ConfiguredBroker[] => {
  const brokers: ConfiguredBroker[] = [];
  if (nats)
    brokers.push({ publisher: NATS_PUBLISHER, create: async (common) => (await import('./nats-publisher.ts')).createNatsPublisher({ ...nats, ...common }) });
  if (amqp)
    brokers.push({ publisher: AMQP_PUBLISHER, create: async (common) => (await import('./amqp-publisher.ts')).createAmqpPublisher({ ...amqp, ...common }) });
  return brokers;
};

export interface PublishersOptions {
  db: Kysely<unknown>;
  /** Events schema: where the integration tables live. */
  schema: string;
  store: EventStore;
  /** Decrypts personal data; forgotten customers are re-checked per page (integration/feed.ts). */
  personalData: PersonalData;
  /** Opens the webhook secrets sealed with it. */
  masterKey?: Uint8Array;
  nats?: NatsSettings;
  amqp?: AmqpSettings;
  policy?: Partial<DeliveryPolicy>;
  /** Which addresses webhook deliveries may connect to; by default public ones only. */
  destinations?: DestinationGuard;
  /** Scale-out: publish only while holding the partition's lease, and fence every checkpoint move with it. */
  leases?: LeaseGuard;
  /** How often subscriptions and the lease are looked at (new, changed, deleted subscriptions). */
  reconcileEveryMs?: number;
  log?: Log;
}

/** What /ready, /metrics, the CLI and the API show per publisher. */
export interface PublisherStatus extends Omit<PublisherRow, 'state'> {
  /** As stored, or `retrying` while attempts fail (`reportedState`). */
  state: ReportedPublisherState;
  /** Events waiting (up to 10,000); null when they could not be counted in time. */
  eventsBehind: number | null;
  /** Age of the oldest event waiting (or, past the read's bound, time since the checkpoint last moved). */
  secondsBehind: number;
}

/**
 * `retrying` for a running publisher whose latest attempt failed and none has succeeded since (the
 * broker publishers retry for ever and never pause: this is how their outages show); the stored state
 * otherwise. The reporting view says the same in SQL (integration/reporting.ts).
 */
export const reportedState = (p: PublisherRow): ReportedPublisherState => (p.state === 'running' && p.lastError !== null ? 'retrying' : p.state);

/** Failing: retrying, or paused after its retries ran out. */
export const isFailing = (p: Pick<PublisherStatus, 'state'>): boolean => p.state === 'retrying' || p.state === 'failing';

/**
 * The publishers are projections with a side effect outside the database: each follows the gap-free
 * feed from its own checkpoint, and the worker holding the `integration-publishers` lease runs them
 * all. Their checkpoints cannot commit with the side effect, so they move after the acknowledgement
 * (at least once; receivers dedupe by event id, JetStream by `Nats-Msg-Id`, RabbitMQ consumers by `message_id`).
 */
export class IntegrationPublishers {
  readonly tables: IntegrationTables;
  private readonly policy: DeliveryPolicy;
  private readonly destinations: DestinationGuard;
  private readonly loops = new Map<string, { loop: WebhookLoop; generation: number }>();
  /** The broker publishers running here, by publisher name. */
  private readonly brokers = new Map<string, RunningBroker>();
  private feed: IntegrationFeed | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Reconcile runs every second: a database away for an hour is one line, not 3,600. */
  private readonly reconcileLog: OutageLog;

  constructor(private readonly options: PublishersOptions) {
    this.tables = integrationTables(options.db, options.schema, options.masterKey);
    this.policy = { ...DEFAULT_DELIVERY_POLICY, ...options.policy };
    this.destinations = options.destinations ?? createDestinationGuard();
    this.reconcileLog = new OutageLog(options.log, {
      failed: 'integration publishers: reconcile failed; retrying',
      recovered: 'integration publishers: reconcile works again',
    });
  }

  private get fenced(): Fenced {
    const { leases, db } = this.options;
    if (!leases) return unfenced(db);
    return (work) =>
      db.transaction().execute(async (trx) => {
        await leases.assertHeld(trx, PUBLISHERS_PARTITION);
        return work(trx);
      });
  }

  async start(): Promise<void> {
    await this.tables.migrate();
    // A broker carries every integration event, history included, from the first start on.
    for (const broker of brokersOf(this.options)) await this.tables.ensurePublisher(broker.publisher, broker.publisher, 0n);
    this.stopped = false;
    this.feed = createIntegrationFeed(this.options.store, this.options.personalData, this.options.log);
    await this.reconcile();
    this.timer = setInterval(() => void this.reconcile(), this.options.reconcileEveryMs ?? 1_000);
    this.timer.unref?.();
  }

  /** Starts loops for new subscriptions, refreshes changed ones, stops deleted ones; everything stops when the lease is gone. */
  reconcile(): Promise<void> {
    this.reconciling = this.reconciling
      .then(() => this.reconcileOnce())
      .then(
        () => this.reconcileLog.recovered(),
        (error) => this.reconcileLog.failed(describeError(error)),
      );
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped || !this.feed) return;
    const held = !this.options.leases || this.options.leases.owns(PUBLISHERS_PARTITION);
    const subscriptions = held ? await this.tables.listSubscriptions() : [];
    const wanted = new Map(subscriptions.map((s) => [s.id, s]));
    for (const [id, entry] of this.loops) {
      const subscription = wanted.get(id);
      if (!subscription) {
        this.loops.delete(id);
        await entry.loop.stop();
      } else if (subscription.generation !== entry.generation) {
        entry.generation = subscription.generation;
        entry.loop.refresh();
      }
    }
    for (const subscription of subscriptions) {
      if (this.loops.has(subscription.id)) continue;
      const loop = new WebhookLoop({
        tables: this.tables,
        feed: this.feed,
        subscriptionId: subscription.id,
        policy: this.policy,
        fenced: this.fenced,
        destinations: this.destinations,
        log: this.options.log,
      });
      this.loops.set(subscription.id, { loop, generation: subscription.generation });
      loop.start();
    }
    for (const broker of brokersOf(this.options)) {
      const running = this.brokers.get(broker.publisher);
      if (held && !running) {
        const publisher = await broker.create({ tables: this.tables, feed: this.feed, fenced: this.fenced, log: this.options.log });
        if (this.stopped || this.brokers.has(broker.publisher)) return;
        this.brokers.set(broker.publisher, publisher);
        publisher.start();
      } else if (running && !held) {
        this.brokers.delete(broker.publisher);
        await running.stop();
      }
    }
  }

  /** Stops every loop after its attempt in flight (bounded by the attempt timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.reconciling;
    const loops = [...this.loops.values()].map((e) => e.loop.stop());
    this.loops.clear();
    const brokers = [...this.brokers.values()].map((b) => b.stop());
    this.brokers.clear();
    await Promise.all([...loops, ...brokers]);
    this.feed?.close();
  }

  /** Every publisher's checkpoint, state, counters and lag (works from any process: it reads the tables). */
  async status(): Promise<PublisherStatus[]> {
    return readPublisherStatus(this.tables, this.options.store);
  }
}

export async function readPublisherStatus(tables: IntegrationTables, store: EventStore): Promise<PublisherStatus[]> {
  const [rows, head, now] = await Promise.all([tables.publishers(), store.headPosition(), tables.databaseNow()]);
  const lag = lagReader(store, head, now);
  return Promise.all(rows.map(async (row) => ({ ...row, state: reportedState(row), ...(await lag(row.position, row.advancedAt)) })));
}
