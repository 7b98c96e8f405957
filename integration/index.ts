import type { Kysely } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import type { PersonalData } from '../eventstore/personal-data.ts';
import { ProjectionLeases } from '../projections/leases.ts';
import { createDestinationGuard, type DestinationGuard } from './destinations.ts';
import { IntegrationPublishers, PUBLISHERS_PARTITION, readPublisherStatus, type AmqpSettings, type NatsSettings, type PublisherStatus } from './publishers.ts';
import type { SubscriberRole } from './envelope.ts';
import { withoutRepeats, type Log } from '../shared/outage-log.ts';
import { newWebhookSecret } from './signing.ts';
import { createPublisherStatusView } from './reporting.ts';
import { integrationTables, type IntegrationTables } from './tables.ts';
import type { DeliveryPolicy } from './webhook-loop.ts';

export { PUBLISHERS_PARTITION, type AmqpSettings, type NatsSettings, type PublisherStatus } from './publishers.ts';
export { rewrapWebhookSecrets } from './tables.ts';

/** What the API and the CLI use: the subscription tables and the publishers' status, from any process. */
export interface IntegrationServices {
  tables: IntegrationTables;
  status(): Promise<PublisherStatus[]>;
  /** Creates a subscription starting at the store head; the secret is returned here and never again. */
  subscribe(input: { url: string; events: string[]; description: string | null; role: SubscriberRole; id?: string }): Promise<{ id: string; secret: string }>;
  /**
   * A new signing secret, returned here and never again; the replaced one still signs deliveries
   * beside it for `keepPreviousSeconds`. Undefined when there is no such subscription.
   */
  rotateSecret(id: string, keepPreviousSeconds: number): Promise<{ id: string; secret: string; previousSecretExpiresAt: Date | null } | undefined>;
  /** Why deliveries could not go to this URL (its host an address the guard refuses), or null. */
  urlRefusal(url: string): string | null;
  /**
   * Why a replay cannot start at `fromPosition` (past the next event's position), or null. Past the
   * head the checkpoint would wait there, the publisher shown running and nothing behind, while every
   * event recorded meanwhile went undelivered (a digit too many is enough).
   */
  replayRefusal(fromPosition: bigint): Promise<string | null>;
}

export interface IntegrationOptions {
  db: Kysely<unknown>;
  store: EventStore;
  personalData: PersonalData;
  /** Seals the webhook secrets at rest (and opens them), as it wraps the customers' data keys. */
  masterKey?: Uint8Array;
  schemas: { events: string; read: string; reporting?: string };
  nats?: NatsSettings;
  amqp?: AmqpSettings;
  /**
   * The id the publishers' lease is held under: the projection workers' own, read when publishing
   * starts, since their leases settle it at their start (a second process on this host and database
   * takes a fallback id there). Read before, both processes published under one id, took the lease
   * from each other and delivered events twice.
   */
  workerId: () => string;
  leaseSeconds: number;
  policy?: Partial<DeliveryPolicy>;
  /** Which addresses webhook deliveries may connect to; by default public ones only. */
  destinations?: DestinationGuard;
  log?: Log;
}

export interface Integration {
  services: IntegrationServices;
  /** Starts publishing in this process (a projection worker): under the `integration-publishers` lease. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Wiring for the composition root (runtime/crm.ts): services for every process, publishers for workers. */
export function createIntegration(options: IntegrationOptions): Integration {
  const tables = integrationTables(options.db, options.schemas.events, options.masterKey);
  const destinations = options.destinations ?? createDestinationGuard();
  const services: IntegrationServices = {
    tables,
    status: () => readPublisherStatus(tables, options.store),
    async subscribe(input) {
      const secret = newWebhookSecret();
      const created = await tables.createSubscription({ ...input, secret, startPosition: await options.store.headPosition() });
      return { id: created.id, secret };
    },
    async rotateSecret(id, keepPreviousSeconds) {
      const secret = newWebhookSecret();
      const rotated = await tables.rotateSecret(id, secret, keepPreviousSeconds);
      return rotated && { id, secret, previousSecretExpiresAt: rotated.previousSecretExpiresAt };
    },
    urlRefusal: (url) => destinations.urlRefusal(url),
    async replayRefusal(fromPosition) {
      // Every committed event, final or not: a transaction left open elsewhere on the server holds the
      // final head back, and a position an append answered was refused as never recorded.
      const head = await (options.store.committedHeadPosition?.() ?? options.store.headPosition());
      return fromPosition > head + 1n
        ? `nothing is recorded at or after position ${fromPosition}: the last event is at ${head}; give a position of at most ${head + 1n}`
        : null;
    },
  };
  let running: { publishers: IntegrationPublishers; leases: ProjectionLeases } | undefined;
  return {
    services,
    async start() {
      if (running) return;
      // The projection workers' leases (same tables, same worker id), one more partition: two workers never both publish.
      const leases = new ProjectionLeases({
        db: options.db,
        schema: options.schemas.read,
        workerId: options.workerId(),
        projections: [PUBLISHERS_PARTITION],
        leaseSeconds: options.leaseSeconds,
        onChange: () => void publishers.reconcile(),
        // The lease logs each failed renewal (about one a second while the database is away).
        log: withoutRepeats(options.log),
      });
      const publishers = new IntegrationPublishers({
        db: options.db,
        schema: options.schemas.events,
        store: options.store,
        personalData: options.personalData,
        ...(options.masterKey ? { masterKey: options.masterKey } : {}),
        nats: options.nats,
        amqp: options.amqp,
        policy: options.policy,
        destinations,
        leases,
        log: options.log,
      });
      try {
        await leases.start();
        await publishers.start();
        if (options.schemas.reporting) await createPublisherStatusView(options.db, options.schemas.events, options.schemas.reporting);
      } catch (error) {
        // The database went away mid-way: nothing keeps renewing or polling behind a start tried again.
        await publishers.stop().catch(() => undefined);
        await leases.stop({ release: false }).catch(() => undefined);
        throw error;
      }
      running = { publishers, leases };
    },
    async stop() {
      const current = running;
      running = undefined;
      if (!current) return;
      await current.publishers.stop();
      await current.leases.stop();
    },
  };
}
