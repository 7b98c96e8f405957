import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { assertMasterKeyCurrent, masterKeyStillCurrent, openText, sealText, type MasterKeyPart } from '../eventstore/master-key.ts';
import { databaseNow } from '../shared/sql.ts';
import type { SubscriberRole } from './envelope.ts';
import { MASKED_PASSWORD, maskedPasswordRefusal, passwordOf, splitPassword, WebhookUrlRefused, withPassword } from './url-password.ts';

/**
 * Where integration publishing keeps its state, in the events schema beside the API keys (made by the
 * event store's migration `0018_integration_tables`, for every engine): webhook subscriptions are
 * configuration, not read models, so a read-model rebuild never touches them.
 *
 * - `webhook_subscriptions`: url, event patterns, role, secret (needed to sign; never returned after
 *   creation; sealed with the master key when one is configured, see eventstore/master-key.ts). A
 *   password in the URL is kept apart in `url_password`, sealed the same way, and `url` holds `***`
 *   in its place (integration/url-password.ts): listing and showing a subscription never opens it.
 * - `integration_publishers`: one row per publisher (`webhook:<id>`, `nats`, `amqp`): checkpoint, state, counters.
 * - `webhook_deliveries`: the recent attempts of each subscription (the last `DELIVERY_LOG_KEEP`).
 */

export const SUBSCRIPTIONS = 'webhook_subscriptions';
export const PUBLISHERS = 'integration_publishers';
export const DELIVERIES = 'webhook_deliveries';
/** Attempts kept per subscription; older ones are pruned as new ones are logged. */
export const DELIVERY_LOG_KEEP = 1_000;

/** `running`: following the feed; `failing`: paused after retries ran out (an operator resumes it); `disabled`: switched off. */
export type PublisherState = 'running' | 'failing' | 'disabled';

/**
 * The state operators are shown (integration/publishers.ts `reportedState`): the stored one, with
 * `retrying` for a running publisher whose latest attempt failed and none has succeeded since. Not
 * stored: the loops go on as for `running`, and a success (which clears `last_error`) ends it.
 */
export const REPORTED_PUBLISHER_STATES = ['running', 'retrying', 'failing', 'disabled'] as const;
export type ReportedPublisherState = (typeof REPORTED_PUBLISHER_STATES)[number];

export interface WebhookSubscription {
  id: string;
  /** With a password in it masked (`***`): deliveries go to `deliveryUrl`. */
  url: string;
  events: string[];
  description: string | null;
  role: SubscriberRole;
  enabled: boolean;
  createdAt: Date;
  updatedAt: Date;
  /** Bumped by every change (PATCH, replay, resume, a new secret): a running loop notices and starts over from the row. */
  generation: number;
  /** Until when deliveries are also signed with the secret a rotation replaced (null: only the current one). */
  previousSecretExpiresAt: Date | null;
}

/** What a publisher delivers to: webhook receivers, NATS JetStream, RabbitMQ (AMQP 0-9-1). */
export type PublisherKind = 'webhook' | 'nats' | 'amqp';

export interface PublisherRow {
  name: string;
  kind: PublisherKind;
  position: bigint;
  state: PublisherState;
  delivered: number;
  failures: number;
  lastError: string | null;
  lastStatus: number | null;
  lastLatencyMs: number | null;
  nextRetryAt: Date | null;
  updatedAt: Date;
  /** When the checkpoint last moved (a delivery, or events not subscribed to passed over); failed attempts leave it. */
  advancedAt: Date;
}

export interface DeliveryAttempt {
  eventId: string;
  position: bigint;
  attempt: number;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  nextRetryAt: Date | null;
  at: Date;
}

export const webhookPublisherName = (subscriptionId: string) => `webhook:${subscriptionId}`;
export const NATS_PUBLISHER = 'nats';
export const AMQP_PUBLISHER = 'amqp';

type Db = QueryExecutorProvider;
/**
 * A rotation that would keep the replaced secret while an earlier replaced one still signs: one is kept,
 * so the earlier one would stop before the time its receiver was promised.
 */
export class RotationInGrace extends Error {
  constructor(readonly previousSecretExpiresAt: Date) {
    super(
      `The secret replaced by the last rotation signs deliveries until ${previousSecretExpiresAt.toISOString()}, and a receiver may still hold it: ` +
        'rotate again after that, or with keepPreviousSeconds 0 to stop every replaced secret now (a leaked secret).',
    );
    this.name = 'RotationInGrace';
  }
}

const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)));
const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : date(v));

/** What a sealed secret is bound to: the subscription (a rotation moves it to `previous_secret` as it is). */
const secretLabel = (subscriptionId: string) => `webhook secret:${subscriptionId}`;
/** What a sealed URL password is bound to: the subscription. */
const urlPasswordLabel = (subscriptionId: string) => `webhook url password:${subscriptionId}`;

/** The advisory lock under which a start (several processes start at once) or a rewrap moves URL passwords and rewraps secrets. */
const lockIntegrationTables = (trx: QueryExecutorProvider, schema: string) =>
  sql`SELECT pg_advisory_xact_lock(hashtext(${`crm-integration:${schema}`}))`.execute(trx);

/**
 * Moves passwords out of the url column into `url_password`: those of rows made by a version that kept
 * them there, and of rows an earlier version still running has written since. Each is sealed with
 * `masterKey` when it is the current one (bare otherwise, as a signing secret stored without one, until
 * `crm master-key rewrap` seals it); a sealed password whose URL no longer has one is erased. Compared
 * with the row as read, so a change made meanwhile is left to the next start.
 */
async function moveUrlPasswords(trx: QueryExecutorProvider, schema: string, masterKey: Uint8Array | undefined): Promise<void> {
  const subs = sql.id(schema, SUBSCRIPTIONS);
  const { rows } = await sql<{ id: string; url: string; url_password: string | null }>`
    SELECT id, url, url_password FROM ${subs} WHERE url LIKE '%@%' OR url_password IS NOT NULL`.execute(trx);
  const moves: { row: (typeof rows)[number]; url: string; password: string | null }[] = [];
  for (const row of rows) {
    const { url, password } = splitPassword(row.url);
    if (password === MASKED_PASSWORD || (password === null && row.url_password === null)) continue;
    moves.push({ row, url, password });
  }
  if (moves.length === 0) return;
  // Sealed only with the key the fingerprint names (share-locked until this commits, as a writer's is):
  // a password sealed with a replaced key would never open again.
  let sealWith: Uint8Array | undefined;
  const { rows: recorded } = await sql<{ present: boolean }>`SELECT to_regclass(${`${schema}.master_key`}) IS NOT NULL AS present`.execute(trx);
  if (masterKey && recorded[0]?.present) {
    const { rows: current } = await sql<{ current: boolean }>`SELECT ${masterKeyStillCurrent(schema, masterKey)} AS current`.execute(trx);
    if (current[0]?.current) sealWith = masterKey;
  }
  for (const { row, url, password } of moves) {
    await sql`UPDATE ${subs} SET url = ${url}, url_password = ${password === null ? null : sealText(sealWith, urlPasswordLabel(row.id), password)}
      WHERE id = ${row.id} AND url = ${row.url}`.execute(trx);
  }
}

/**
 * What a start does to the tables (made by the event store's migration `0018_integration_tables`):
 * moves the URL passwords an earlier version kept in the url column (`moveUrlPasswords`).
 */
export async function migrateIntegrationTables(db: Kysely<unknown>, schema: string, masterKey?: Uint8Array): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await lockIntegrationTables(trx, schema);
    await moveUrlPasswords(trx, schema, masterKey);
  });
}

/**
 * Rewraps the signing secrets (current and previous) and the URL passwords of every subscription under
 * `to`; bare ones (stored before a master key was configured) are sealed for the first time, and so is a
 * password still in the url column of a table an earlier version made (moved out here too: the rewrap
 * may run before any process of this version started).
 */
export const rewrapWebhookSecrets: MasterKeyPart = async (trx, { schema, from, to }) => {
  const { rows: present } = await sql<{ present: boolean }>`SELECT to_regclass(${`${schema}.${SUBSCRIPTIONS}`}) IS NOT NULL AS present`.execute(trx);
  if (!present[0]?.present) return { name: 'webhook secrets', count: 0 };
  await lockIntegrationTables(trx, schema);
  const { rows } = await sql<{ id: string; url: string; url_password: string | null; secret: string; previous_secret: string | null }>`
    SELECT id, url, url_password, secret, previous_secret FROM ${sql.id(schema, SUBSCRIPTIONS)} ORDER BY id FOR UPDATE`.execute(trx);
  const rewrap = (id: string, stored: string) => sealText(to, secretLabel(id), openText(from, secretLabel(id), stored));
  for (const row of rows) {
    const password = passwordOf(row.url, row.url_password, (stored) => openText(from, urlPasswordLabel(row.id), stored));
    await sql`UPDATE ${sql.id(schema, SUBSCRIPTIONS)} SET secret = ${rewrap(row.id, row.secret)},
        previous_secret = ${row.previous_secret === null ? null : rewrap(row.id, row.previous_secret)},
        url = ${splitPassword(row.url).url},
        url_password = ${password === null ? null : sealText(to, urlPasswordLabel(row.id), password)}
      WHERE id = ${row.id}`.execute(trx);
  }
  return { name: 'webhook secrets', count: rows.length };
};

/**
 * The tables' rows as pg and PGlite give them: bigint columns as text (pg) or numbers (PGlite),
 * timestamps as Dates.
 */
type SubscriptionRow = {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  role: SubscriberRole;
  secret: string;
  url_password: string | null;
  enabled: boolean;
  generation: number;
  created_at: Date;
  updated_at: Date;
  previous_secret_expires_at: Date | null;
};

type PublisherTableRow = {
  name: string;
  kind: PublisherKind;
  position: string | number;
  state: PublisherState;
  delivered: string | number;
  failures: string | number;
  last_error: string | null;
  last_status: number | null;
  last_latency_ms: number | null;
  next_retry_at: Date | null;
  updated_at: Date;
  advanced_at: Date;
};

type DeliveryRow = {
  id: string | number;
  subscription_id: string;
  event_id: string;
  position: string | number;
  attempt: number;
  status_code: number | null;
  latency_ms: number;
  error: string | null;
  next_retry_at: Date | null;
  at: Date;
};

const toSubscription = (r: SubscriptionRow): WebhookSubscription => ({
  id: r.id,
  url: r.url,
  events: r.events,
  description: r.description ?? null,
  role: r.role,
  enabled: r.enabled,
  createdAt: date(r.created_at),
  updatedAt: date(r.updated_at),
  generation: Number(r.generation),
  // Past its end the previous secret signs nothing: shown as none.
  previousSecretExpiresAt:
    r.previous_secret_expires_at && date(r.previous_secret_expires_at).getTime() > Date.now() ? date(r.previous_secret_expires_at) : null,
});

const toPublisher = (r: PublisherTableRow): PublisherRow => ({
  name: r.name,
  kind: r.kind,
  position: BigInt(r.position),
  state: r.state,
  delivered: Number(r.delivered),
  failures: Number(r.failures),
  lastError: r.last_error ?? null,
  lastStatus: r.last_status ?? null,
  lastLatencyMs: r.last_latency_ms === null || r.last_latency_ms === undefined ? null : Number(r.last_latency_ms),
  nextRetryAt: dateOrNull(r.next_retry_at),
  updatedAt: date(r.updated_at),
  advancedAt: date(r.advanced_at),
});

export interface NewSubscription {
  /** When the caller derives it (api/idempotency.ts `createOnce`); else a new one. */
  id?: string;
  url: string;
  events: string[];
  description: string | null;
  role: SubscriberRole;
  secret: string;
  /** New subscriptions start at the head: they receive what happens from now on (replay reaches back). */
  startPosition: bigint;
}

/**
 * The tables as the rest of integration/ uses them. Every statement is here, so the columns are
 * named in one file.
 */
export function integrationTables(db: Kysely<unknown>, schema: string, masterKey?: Uint8Array) {
  const subs = sql.id(schema, SUBSCRIPTIONS);
  const sealSecret = (id: string, secret: string) => sealText(masterKey, secretLabel(id), secret);
  const openSecret = (id: string, stored: string) => openText(masterKey, secretLabel(id), stored);
  const sealPassword = (id: string, password: string | null) => (password === null ? null : sealText(masterKey, urlPasswordLabel(id), password));
  const openPassword = (id: string) => (stored: string) => openText(masterKey, urlPasswordLabel(id), stored);
  const pubs = sql.id(schema, PUBLISHERS);
  const deliveries = sql.id(schema, DELIVERIES);
  /** Moves a publisher's checkpoint back (or on) to just before `fromPosition`, resuming it if it was failing. */
  const rewind = async (executor: QueryExecutorProvider, name: string, fromPosition: bigint): Promise<boolean> => {
    const after = fromPosition > 0n ? fromPosition - 1n : 0n;
    const { rows } = await sql`UPDATE ${pubs} SET position = ${after.toString()}::bigint, next_retry_at = NULL, last_error = NULL,
        state = CASE WHEN state = 'failing' THEN 'running' ELSE state END, updated_at = now(), advanced_at = now()
      WHERE name = ${name} RETURNING name`.execute(executor);
    return rows.length === 1;
  };
  return {
    /** For statements outside a checkpoint transaction. */
    db,
    migrate: () => migrateIntegrationTables(db, schema, masterKey),

    async createSubscription(input: NewSubscription): Promise<WebhookSubscription> {
      const id = input.id ?? randomUUID();
      const { url, password } = splitPassword(input.url);
      return db.transaction().execute(async (trx) => {
        await assertMasterKeyCurrent(trx, schema, masterKey, 'new webhook secrets');
        const { rows } = await sql<SubscriptionRow>`INSERT INTO ${subs} (id, url, url_password, events, description, role, secret)
          VALUES (${id}, ${url}, ${sealPassword(id, password)}, ${input.events}::text[], ${input.description}, ${input.role}, ${sealSecret(id, input.secret)})
          RETURNING *`.execute(trx);
        await sql`INSERT INTO ${pubs} (name, kind, position) VALUES (${webhookPublisherName(id)}, 'webhook', ${input.startPosition.toString()}::bigint)`.execute(
          trx,
        );
        return toSubscription(rows[0]!);
      });
    },

    async listSubscriptions(): Promise<WebhookSubscription[]> {
      const { rows } = await sql<SubscriptionRow>`SELECT * FROM ${subs} ORDER BY created_at, id`.execute(db);
      return rows.map(toSubscription);
    },

    async getSubscription(id: string): Promise<WebhookSubscription | undefined> {
      const { rows } = await sql<SubscriptionRow>`SELECT * FROM ${subs} WHERE id = ${id}`.execute(db);
      return rows[0] ? toSubscription(rows[0]) : undefined;
    },

    /**
     * The secrets deliveries are signed with, the current one first (for the delivery loop only). A
     * replaced secret past its time is erased here, so that it does not stay in the table.
     */
    async secretsOf(id: string): Promise<string[] | undefined> {
      const { rows } = await sql<{ secret: string; previous: string | null }>`
        WITH expired AS (
          UPDATE ${subs} SET previous_secret = NULL, previous_secret_expires_at = NULL WHERE id = ${id} AND previous_secret_expires_at <= now()
        )
        SELECT secret, CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous FROM ${subs} WHERE id = ${id}`.execute(db);
      const row = rows[0];
      return row ? [row.secret, ...(row.previous ? [row.previous] : [])].map((stored) => openSecret(id, stored)) : undefined;
    },

    /** The URL deliveries go to, its password (if any) opened: for the delivery loop only. */
    async deliveryUrl(id: string): Promise<string | undefined> {
      const { rows } = await sql<{ url: string; url_password: string | null }>`SELECT url, url_password FROM ${subs} WHERE id = ${id}`.execute(db);
      const row = rows[0];
      if (!row) return undefined;
      const password = passwordOf(row.url, row.url_password, openPassword(id));
      return password === null ? row.url : withPassword(row.url, password);
    },

    /**
     * Replaces the signing secret. The one replaced keeps signing deliveries beside the new one for
     * `keepPreviousSeconds` (0: at once no more, the case of a leaked secret); a secret replaced
     * before that is dropped.
     */
    async rotateSecret(id: string, secret: string, keepPreviousSeconds: number): Promise<WebhookSubscription | undefined> {
      return db.transaction().execute(async (trx) => {
        await assertMasterKeyCurrent(trx, schema, masterKey, 'new webhook secrets');
        if (keepPreviousSeconds > 0) {
          // Only one replaced secret is kept: a second rotation in the grace of the first (a retried request)
          // would drop the secret the receiver was promised until then, and every delivery would fail its check.
          const { rows: current } = await sql<{ until: Date | null }>`SELECT previous_secret_expires_at AS until FROM ${subs}
            WHERE id = ${id} AND previous_secret IS NOT NULL AND previous_secret_expires_at > now() FOR UPDATE`.execute(trx);
          if (current[0]?.until) throw new RotationInGrace(current[0].until);
        }
        const { rows } = await sql<SubscriptionRow>`UPDATE ${subs} SET
            previous_secret = CASE WHEN ${keepPreviousSeconds}::integer > 0 THEN secret END,
            previous_secret_expires_at = CASE WHEN ${keepPreviousSeconds}::integer > 0 THEN now() + make_interval(secs => ${keepPreviousSeconds}::integer) END,
            secret = ${sealSecret(id, secret)}, generation = generation + 1, updated_at = now()
          WHERE id = ${id} RETURNING *`.execute(trx);
        return rows[0] ? toSubscription(rows[0]) : undefined;
      });
    },

    /**
     * Changes url, events and/or enabled; enabling a failing subscription resumes it where it stopped.
     * A new URL's password is sealed again (none: the stored one is erased); given back with the mask as
     * its password, the URL keeps the stored one when scheme, host, port and user are the same
     * (otherwise `WebhookUrlRefused`).
     */
    async updateSubscription(
      id: string,
      change: { url?: string; events?: string[]; enabled?: boolean; description?: string | null },
    ): Promise<WebhookSubscription | undefined> {
      return db.transaction().execute(async (trx) => {
        let newUrl: { url: string; sealedPassword: string | null } | undefined;
        if (change.url !== undefined) {
          const { rows: current } = await sql<{ url: string; url_password: string | null }>`
            SELECT url, url_password FROM ${subs} WHERE id = ${id} FOR UPDATE`.execute(trx);
          if (!current[0]) return undefined;
          const given = splitPassword(change.url);
          let password = given.password;
          if (password === MASKED_PASSWORD) {
            const stored = passwordOf(current[0].url, current[0].url_password, openPassword(id));
            const refused = maskedPasswordRefusal(current[0].url, change.url, stored);
            if (refused) throw new WebhookUrlRefused(refused);
            password = stored;
          }
          if (password !== null) await assertMasterKeyCurrent(trx, schema, masterKey, 'webhook URL passwords');
          newUrl = { url: given.url, sealedPassword: sealPassword(id, password) };
        }
        const { rows } = await sql<SubscriptionRow>`UPDATE ${subs} SET
            url = COALESCE(${newUrl?.url ?? null}, url),
            url_password = CASE WHEN ${newUrl !== undefined} THEN ${newUrl?.sealedPassword ?? null} ELSE url_password END,
            events = COALESCE(${change.events ?? null}::text[], events),
            description = CASE WHEN ${change.description !== undefined} THEN ${change.description ?? null} ELSE description END,
            enabled = COALESCE(${change.enabled ?? null}::boolean, enabled),
            generation = generation + 1, updated_at = now()
          WHERE id = ${id} RETURNING *`.execute(trx);
        const row = rows[0];
        if (!row) return undefined;
        const state: PublisherState = row.enabled ? 'running' : 'disabled';
        // Enabling clears a failing state: the operator fixed the receiver (or wants another round of retries).
        await sql`UPDATE ${pubs} SET state = ${state}, next_retry_at = NULL,
            last_error = CASE WHEN ${state} = 'running' AND state = 'failing' THEN NULL ELSE last_error END, updated_at = now()
          WHERE name = ${webhookPublisherName(id)} AND (${change.enabled !== undefined} OR state <> 'failing')`.execute(trx);
        return toSubscription(row);
      });
    },

    async deleteSubscription(id: string): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const { rows } = await sql`DELETE FROM ${subs} WHERE id = ${id} RETURNING id`.execute(trx);
        await sql`DELETE FROM ${pubs} WHERE name = ${webhookPublisherName(id)}`.execute(trx);
        await sql`DELETE FROM ${deliveries} WHERE subscription_id = ${id}`.execute(trx);
        return rows.length === 1;
      });
    },

    /** Delivers again everything from `fromPosition` (inclusive) on, and resumes a failing subscription. */
    async replay(id: string, fromPosition: bigint): Promise<boolean> {
      return db.transaction().execute(async (trx) => {
        const { rows } = await sql`UPDATE ${subs} SET generation = generation + 1, updated_at = now() WHERE id = ${id} RETURNING enabled`.execute(trx);
        if (rows.length === 0) return false;
        await rewind(trx, webhookPublisherName(id), fromPosition);
        return true;
      });
    },

    /** Publishes to NATS again from `fromPosition` (inclusive) on (a stream created again starts empty); false when NATS never published here. */
    replayNats: (fromPosition: bigint): Promise<boolean> => rewind(db, NATS_PUBLISHER, fromPosition),

    async ensurePublisher(name: string, kind: PublisherRow['kind'], startPosition: bigint): Promise<void> {
      await sql`INSERT INTO ${pubs} (name, kind, position) VALUES (${name}, ${kind}, ${startPosition.toString()}::bigint)
        ON CONFLICT (name) DO NOTHING`.execute(db);
    },

    /** The clock the rows' times (`advanced_at`) were set by, for their ages. */
    databaseNow: (): Promise<Date> => databaseNow(db),

    async publishers(): Promise<PublisherRow[]> {
      const { rows } = await sql<PublisherTableRow>`SELECT * FROM ${pubs} ORDER BY name`.execute(db);
      return rows.map(toPublisher);
    },

    async publisher(name: string): Promise<PublisherRow | undefined> {
      const { rows } = await sql<PublisherTableRow>`SELECT * FROM ${pubs} WHERE name = ${name}`.execute(db);
      return rows[0] ? toPublisher(rows[0]) : undefined;
    },

    /**
     * Moves the checkpoint after the receiver (or JetStream) acknowledged, counting deliveries and
     * clearing the last error (the failure is over; `crm webhooks deliveries` keeps its attempts); false
     * when the row changed under us (replayed, deleted, or the lease fence failed): the loop starts over.
     */
    async advance(
      trx: QueryExecutorProvider,
      name: string,
      from: bigint,
      to: bigint,
      delivered: number,
      latencyMs: number | null,
      status: number | null,
    ): Promise<boolean> {
      const { rows } = await sql`UPDATE ${pubs} SET position = ${to.toString()}::bigint, delivered = delivered + ${delivered},
          last_latency_ms = COALESCE(${latencyMs}::double precision, last_latency_ms), last_status = COALESCE(${status}::integer, last_status),
          next_retry_at = NULL, last_error = NULL, updated_at = now(), advanced_at = now()
        WHERE name = ${name} AND position = ${from.toString()}::bigint AND state = 'running' RETURNING name`.execute(trx);
      return rows.length === 1;
    },

    /**
     * The failure is over though nothing was delivered yet (NATS answers again and no event waits): the
     * last error goes, so the publisher no longer shows as failing.
     */
    async clearFailure(name: string): Promise<void> {
      await sql`UPDATE ${pubs} SET last_error = NULL, next_retry_at = NULL, updated_at = now()
        WHERE name = ${name} AND state = 'running' AND last_error IS NOT NULL`.execute(db);
    },

    async recordFailure(
      name: string,
      failure: { error: string; status: number | null; latencyMs: number; nextRetryAt: Date | null; pause: boolean },
    ): Promise<void> {
      await sql`UPDATE ${pubs} SET failures = failures + 1, last_error = ${failure.error}, last_status = ${failure.status},
          last_latency_ms = ${failure.latencyMs}, next_retry_at = ${failure.nextRetryAt},
          state = CASE WHEN ${failure.pause} AND state = 'running' THEN 'failing' ELSE state END, updated_at = now()
        WHERE name = ${name}`.execute(db);
    },

    /** Logs attempts (in the checkpoint's transaction when given); keeps the last DELIVERY_LOG_KEEP per subscription. */
    async logAttempts(executor: Db, subscriptionId: string, attempts: readonly Omit<DeliveryAttempt, 'at'>[]): Promise<void> {
      if (attempts.length === 0) return;
      const values = attempts.map(
        (a) =>
          sql`(${subscriptionId}, ${a.eventId}, ${a.position.toString()}::bigint, ${a.attempt}, ${a.statusCode}::integer, ${a.latencyMs}::double precision, ${a.error}, ${a.nextRetryAt}::timestamptz)`,
      );
      const { rows } = await sql<{
        id: string;
      }>`INSERT INTO ${deliveries} (subscription_id, event_id, position, attempt, status_code, latency_ms, error, next_retry_at)
        VALUES ${sql.join(values)} RETURNING id::text AS id`.execute(executor);
      // Pruned now and then (when an id crosses a multiple of 100), not on every insert.
      if (rows.some((r) => BigInt(r.id) % 100n === 0n)) {
        await sql`DELETE FROM ${deliveries} WHERE subscription_id = ${subscriptionId} AND id < (
          SELECT min(id) FROM (SELECT id FROM ${deliveries} WHERE subscription_id = ${subscriptionId} ORDER BY id DESC LIMIT ${DELIVERY_LOG_KEEP}) AS recent)`.execute(
          executor,
        );
      }
    },

    async deliveries(subscriptionId: string, limit: number): Promise<DeliveryAttempt[]> {
      const { rows } = await sql<DeliveryRow>`SELECT * FROM ${deliveries} WHERE subscription_id = ${subscriptionId}
        ORDER BY id DESC LIMIT ${limit}`.execute(db);
      return rows.map((r) => ({
        eventId: r.event_id,
        position: BigInt(r.position),
        attempt: Number(r.attempt),
        statusCode: r.status_code ?? null,
        latencyMs: Number(r.latency_ms),
        error: r.error ?? null,
        nextRetryAt: dateOrNull(r.next_retry_at),
        at: date(r.at),
      }));
    },

    /**
     * The series of attempts an event was in when its process stopped, from the delivery log: the
     * latest attempt, when it was to be tried next (null: it was not), and when the series' first
     * attempt was made. Undefined when the log has no attempt of it.
     */
    async lastSeries(subscriptionId: string, eventId: string): Promise<{ attempt: number; nextRetryAt: Date | null; startedAt: Date } | undefined> {
      const { rows } = await sql<{ attempt: number; next_retry_at: Date | null; started_at: Date | null; at: Date }>`
        SELECT attempt, next_retry_at, at,
               (SELECT max(at) FROM ${deliveries} WHERE subscription_id = ${subscriptionId} AND event_id = ${eventId}::uuid AND attempt = 1) AS started_at
          FROM ${deliveries} WHERE subscription_id = ${subscriptionId} AND event_id = ${eventId}::uuid
         ORDER BY id DESC LIMIT 1`.execute(db);
      const row = rows[0];
      if (!row) return undefined;
      return { attempt: Number(row.attempt), nextRetryAt: dateOrNull(row.next_retry_at), startedAt: date(row.started_at ?? row.at) };
    },
  };
}

export type IntegrationTables = ReturnType<typeof integrationTables>;
