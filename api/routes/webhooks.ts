import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { integrationSubject, PUBLIC_EVENT_TYPE_NAMES, PUBLIC_EVENT_TYPES, publicFields, type AggregateKind } from '../../integration/envelope.ts';
import type { IntegrationServices, PublisherStatus } from '../../integration/index.ts';
import {
  ChangedWebhookUrl,
  DEFAULT_PREVIOUS_SECRET_SECONDS,
  displayUrl,
  EventPatterns,
  KeepPreviousSeconds,
  ReplayPosition,
  WebhookDescription,
  WebhookUrl,
} from '../../integration/validation.ts';
import { REPORTED_PUBLISHER_STATES, RotationInGrace, webhookPublisherName, type DeliveryAttempt, type WebhookSubscription } from '../../integration/tables.ts';
import { WebhookUrlRefused } from '../../integration/url-password.ts';
import { CreationHeaders, decimalNumber, IdParams, idempotencyKeyOf } from '../http.ts';
import { createOnce, type IdempotencyGuard } from '../idempotency.ts';
import { ProblemError, problemResponses, validationProblem } from '../problems.ts';
import { ROLES } from '../roles.ts';

const Url = WebhookUrl;
const Events = EventPatterns;

const CreateWebhook = z.strictObject({
  url: Url,
  events: Events,
  description: WebhookDescription.optional(),
  role: z.enum(ROLES).default('analyst').describe("Whose view of personal data deliveries carry: 'analyst' (the default) masks it; any other role sees it"),
});

const PatchWebhook = z.strictObject({
  url: ChangedWebhookUrl.optional(),
  events: Events.optional(),
  description: WebhookDescription.nullable().optional(),
  enabled: z.boolean().optional().describe('false switches deliveries off; true resumes them, also after the subscription was paused as failing'),
});

const Replay = z.strictObject({
  fromPosition: ReplayPosition,
});

// A POST without a body reads as {} (api/app.ts): the replaced secret then signs for the default day.
const RotateSecret = z.strictObject({ keepPreviousSeconds: KeepPreviousSeconds.default(DEFAULT_PREVIOUS_SECRET_SECONDS) });

const RotatedSecret = z
  .object({
    id: z.uuid(),
    secret: z.string().describe('whsec_<base64>: the new signing secret, shown only in this response'),
    previousSecretExpiresAt: z.string().nullable().describe('Until when deliveries also carry a signature made with the replaced secret'),
  })
  .meta({ id: 'RotatedWebhookSecret' });

export const WebhookView = z
  .object({
    id: z.uuid(),
    url: z.string().describe('A password in it reads ***'),
    events: z.array(z.string()),
    description: z.string().nullable(),
    role: z.enum(ROLES),
    enabled: z.boolean(),
    state: z
      .enum(REPORTED_PUBLISHER_STATES)
      .describe(
        'retrying: the latest delivery failed and none has succeeded since (retried with back-off); failing: retries ran out and deliveries are paused until enabled again or replayed',
      ),
    position: z.string().describe('Checkpoint: every matching event up to here was delivered'),
    eventsBehind: z.number().nullable().describe('Events waiting (up to 10,000); null when they could not be counted in time'),
    secondsBehind: z.number(),
    delivered: z.number(),
    failures: z.number().describe('Failed attempts so far'),
    lastError: z
      .string()
      .nullable()
      .describe('Error of the latest failed attempt; null once a delivery succeeds after it (the deliveries log keeps every attempt)'),
    lastStatus: z.number().nullable(),
    nextRetryAt: z.string().nullable(),
    previousSecretExpiresAt: z.string().nullable().describe('After a secret rotation: until when deliveries are also signed with the replaced secret'),
    createdAt: z.string(),
  })
  .meta({ id: 'Webhook' });

const CreatedWebhook = z
  .object({ id: z.uuid(), secret: z.string().describe('whsec_<base64>: the signing secret, shown only in this response') })
  .meta({ id: 'CreatedWebhook' });

const DeliveryView = z.object({
  eventId: z.uuid(),
  position: z.string(),
  attempt: z.number(),
  statusCode: z.number().nullable(),
  latencyMs: z.number(),
  error: z.string().nullable(),
  nextRetryAt: z.string().nullable(),
  at: z.string(),
});

/** Every aggregate kind an integration event can name, from the public types themselves (a list written here fell behind). */
const AGGREGATE_KINDS = [...new Set(Object.values(PUBLIC_EVENT_TYPES).map((spec) => spec.kind))] as [AggregateKind, ...AggregateKind[]];

/** The public envelope every delivery (and every NATS message) carries: in the OpenAPI components as `IntegrationEvent`. */
export const IntegrationEventSchema = z
  .object({
    id: z.uuid().describe('Event id: the webhook-id and the Nats-Msg-Id; dedupe by it'),
    type: z.enum(PUBLIC_EVENT_TYPE_NAMES).describe('Integration event type (GET /webhooks/event-types lists them with their fields)'),
    version: z.number().int().describe("Version of this type's data shape"),
    occurredAt: z.string().describe('Business time (ISO 8601)'),
    recordedAt: z.string().describe('When the CRM recorded it (ISO 8601)'),
    position: z.string().describe('Global position (decimal string); increases in delivery order'),
    aggregate: z.object({ kind: z.enum(AGGREGATE_KINDS), id: z.string() }),
    revision: z
      .number()
      .int()
      .describe(
        "The event's revision in its aggregate's stream (0 for the first): consecutive per aggregate, so a gap means an event not received (a subscription filtered by type skips the others)",
      ),
    data: z
      .record(z.string(), z.unknown())
      .describe("The type's fields; personal fields read '[masked]' for analyst-level subscriptions and '[erased]' once the customer is forgotten"),
  })
  .meta({ id: 'IntegrationEvent' });

const EventTypeView = z.object({
  type: z.string(),
  version: z.number(),
  aggregate: z.string(),
  summary: z.string(),
  fields: z.array(z.string()),
  personalFields: z.array(z.string()),
  natsSubject: z.string(),
});

const view = (s: WebhookSubscription, status: PublisherStatus | undefined) => ({
  id: s.id,
  url: displayUrl(s.url),
  events: s.events,
  description: s.description,
  role: s.role,
  enabled: s.enabled,
  state: status?.state ?? (s.enabled ? 'running' : 'disabled'),
  position: (status?.position ?? 0n).toString(),
  eventsBehind: status ? status.eventsBehind : 0,
  secondsBehind: status?.secondsBehind ?? 0,
  delivered: status?.delivered ?? 0,
  failures: status?.failures ?? 0,
  lastError: status?.lastError ?? null,
  lastStatus: status?.lastStatus ?? null,
  nextRetryAt: status?.nextRetryAt?.toISOString() ?? null,
  previousSecretExpiresAt: s.previousSecretExpiresAt?.toISOString() ?? null,
  createdAt: s.createdAt.toISOString(),
});

const deliveryView = (d: DeliveryAttempt) => ({
  ...d,
  position: d.position.toString(),
  nextRetryAt: d.nextRetryAt?.toISOString() ?? null,
  at: d.at.toISOString(),
});

/** Webhook subscriptions (integration/): admin only by default (api/roles.ts). */
export const webhookRoutes: FastifyPluginAsyncZod<{ integration: IntegrationServices; idempotency: IdempotencyGuard }> = async (
  app,
  { integration, idempotency },
) => {
  const { tables } = integration;
  await tables.migrate();
  const statusOf = async (id: string) => (await integration.status()).find((p) => p.name === webhookPublisherName(id));
  const found = async (id: string) => {
    const subscription = await tables.getSubscription(id);
    if (!subscription) throw new ProblemError('not_found', `No webhook ${id}.`);
    return subscription;
  };
  const tags = ['webhooks'];
  /** A URL whose host is an address deliveries may not reach is refused here, not only when delivering. */
  const checkDestination = (url: string | undefined) => {
    const refused = url === undefined ? null : integration.urlRefusal(url);
    if (!refused) return;
    throw validationProblem([{ field: 'url', in: 'body', message: refused }]);
  };

  app.post(
    '/webhooks',
    {
      schema: {
        operationId: 'createWebhook',
        tags,
        summary: 'Subscribe a URL to integration events; the signing secret is returned once',
        description:
          'Deliveries are POSTs of one integration event (see the IntegrationEvent schema) with the Standard Webhooks headers webhook-id, ' +
          'webhook-timestamp and webhook-signature (v1,<base64 HMAC-SHA256 of "id.timestamp.body"> keyed with the base64 part of the secret after whsec_). ' +
          'Per subscription in position order, at least once: receivers must dedupe by webhook-id. A new subscription receives events recorded from now on; replay reaches back. ' +
          'With an Idempotency-Key, a retry creates no second subscription: it is a 409 naming the one the first request created (`details.id`), ' +
          'whose secret was shown only in that answer: keep it, rotate its secret (POST /webhooks/:id/rotate-secret), or delete it and subscribe under a new Idempotency-Key.',
        headers: CreationHeaders,
        body: CreateWebhook,
        response: { 201: CreatedWebhook, ...problemResponses(400, 401, 403, 409, 413, 422, 429, 503) },
        responseHeaders: { 201: ['location'] },
      },
    },
    async (request, reply) => {
      checkDestination(request.body.url);
      const created = await createOnce(
        idempotency,
        { apiKeyId: request.apiKey!.id, key: idempotencyKeyOf(request), request: { method: 'POST', route: '/webhooks', resourceId: null, body: request.body } },
        {
          what: 'webhook subscription',
          exists: async (id) => (await tables.getSubscription(id)) !== undefined,
          removal: (id) => `delete it (DELETE /webhooks/${id})`,
        },
        (id) =>
          integration.subscribe({
            url: request.body.url,
            events: request.body.events,
            description: request.body.description ?? null,
            role: request.body.role,
            ...(id ? { id } : {}),
          }),
      );
      request.log.info({ webhookId: created.id }, 'webhook subscription created');
      return reply.code(201).header('cache-control', 'no-store').header('location', `/webhooks/${created.id}`).send(created);
    },
  );

  app.get(
    '/webhooks/event-types',
    {
      schema: {
        operationId: 'listWebhookEventTypes',
        tags,
        summary: 'The integration event types: version, aggregate, fields, personal fields, NATS subject',
        response: { 200: z.object({ envelope: IntegrationEventSchema.optional(), items: z.array(EventTypeView) }), ...problemResponses(400, 401, 403, 429) },
      },
    },
    async () => ({
      items: PUBLIC_EVENT_TYPE_NAMES.map((type) => {
        const spec = PUBLIC_EVENT_TYPES[type];
        return {
          type,
          version: spec.version,
          aggregate: spec.kind,
          summary: spec.summary,
          fields: publicFields(type),
          personalFields: [...spec.personal],
          natsSubject: integrationSubject(spec.kind, type),
        };
      }),
    }),
  );

  app.get(
    '/webhooks',
    {
      schema: {
        operationId: 'listWebhooks',
        tags,
        summary: 'Webhook subscriptions with their delivery state (never their secrets)',
        response: { 200: z.object({ items: z.array(WebhookView) }), ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async () => {
      const [subscriptions, statuses] = await Promise.all([tables.listSubscriptions(), integration.status()]);
      return {
        items: subscriptions.map((s) =>
          view(
            s,
            statuses.find((p) => p.name === webhookPublisherName(s.id)),
          ),
        ),
      };
    },
  );

  app.get(
    '/webhooks/:id',
    {
      schema: {
        operationId: 'getWebhook',
        tags,
        summary: 'One webhook subscription',
        params: IdParams,
        response: { 200: WebhookView, ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const subscription = await found(request.params.id);
      return view(subscription, await statusOf(subscription.id));
    },
  );

  app.patch(
    '/webhooks/:id',
    {
      schema: {
        operationId: 'changeWebhook',
        tags,
        summary: 'Change url, events or description; enable or disable (enabling resumes a failing subscription)',
        description:
          'A url sent back as shown, with *** as its password, keeps the stored password when its scheme, host, port and user are the same; ' +
          'for another address or user it is refused (400 naming url). A url without a password erases the stored one.',
        params: IdParams,
        body: PatchWebhook,
        response: { 200: WebhookView, ...problemResponses(400, 401, 403, 404, 413, 429, 503) },
      },
    },
    async (request) => {
      checkDestination(request.body.url);
      const updated = await tables
        .updateSubscription(request.params.id, {
          url: request.body.url,
          events: request.body.events,
          enabled: request.body.enabled,
          description: request.body.description,
        })
        .catch((error: unknown) => {
          // The URL given back with *** as its password, for another address or user: nothing changed.
          if (!(error instanceof WebhookUrlRefused)) throw error;
          throw validationProblem([{ field: error.field, in: 'body', message: error.message }]);
        });
      if (!updated) throw new ProblemError('not_found', `No webhook ${request.params.id}.`);
      return view(updated, await statusOf(updated.id));
    },
  );

  app.delete(
    '/webhooks/:id',
    {
      schema: {
        operationId: 'deleteWebhook',
        tags,
        summary: 'Delete a webhook subscription and its delivery log',
        params: IdParams,
        response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      if (!(await tables.deleteSubscription(request.params.id))) throw new ProblemError('not_found', `No webhook ${request.params.id}.`);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/webhooks/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: 'Recent delivery attempts, newest first: status code, latency, error, next retry',
        params: IdParams,
        querystring: z.strictObject({ limit: decimalNumber(z.number().int().min(1).max(1000)).default(100) }),
        response: { 200: z.object({ items: z.array(DeliveryView) }), ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      await found(request.params.id);
      return { items: (await tables.deliveries(request.params.id, request.query.limit)).map(deliveryView) };
    },
  );

  app.post(
    '/webhooks/:id/rotate-secret',
    {
      schema: {
        operationId: 'rotateWebhookSecret',
        tags,
        summary: 'Replace the signing secret; the new one is returned once, the replaced one still signs for a while',
        description:
          'Deliveries carry one signature per secret in webhook-signature, separated by a space (v1,<new> v1,<replaced>), until ' +
          'previousSecretExpiresAt: a receiver switches to the new secret whenever it is ready, and nothing is refused meanwhile. ' +
          'keepPreviousSeconds 0 stops signing with the replaced secret at once (a leaked secret). One replaced secret is kept: ' +
          'a rotation keeping it while the one before still signs is refused (409, code webhook.rotation_in_grace, naming until when).',
        params: IdParams,
        body: RotateSecret,
        response: { 200: RotatedSecret, ...problemResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const keep = request.body.keepPreviousSeconds;
      const rotated = await integration.rotateSecret(request.params.id, keep).catch((error: unknown) => {
        if (!(error instanceof RotationInGrace)) throw error;
        throw new ProblemError('invalid_state', error.message, {
          code: 'webhook.rotation_in_grace',
          details: { previousSecretExpiresAt: error.previousSecretExpiresAt.toISOString() },
        });
      });
      if (!rotated) throw new ProblemError('not_found', `No webhook ${request.params.id}.`);
      request.log.info({ webhookId: rotated.id, keepPreviousSeconds: keep }, 'webhook secret rotated');
      return reply.header('cache-control', 'no-store').send({ ...rotated, previousSecretExpiresAt: rotated.previousSecretExpiresAt?.toISOString() ?? null });
    },
  );

  app.post(
    '/webhooks/:id/replay',
    {
      schema: {
        operationId: 'replayWebhookDeliveries',
        tags,
        summary: 'Deliver again from a position on (and resume a failing subscription)',
        params: IdParams,
        body: Replay,
        response: { 202: WebhookView, ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      await found(request.params.id);
      const refusal = await integration.replayRefusal(BigInt(request.body.fromPosition));
      if (refusal) throw validationProblem([{ field: 'fromPosition', message: refusal }]);
      await tables.replay(request.params.id, BigInt(request.body.fromPosition));
      request.log.info({ webhookId: request.params.id, fromPosition: request.body.fromPosition }, 'webhook replay requested');
      return reply.code(202).send(view(await found(request.params.id), await statusOf(request.params.id)));
    },
  );
};
