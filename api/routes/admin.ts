import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ApiKeyName, type ApiKeyStore } from '../auth/api-keys.ts';
import { actorOfKey, CreationHeaders, IdParams, idempotencyKeyOf } from '../http.ts';
import { createOnce, type IdempotencyGuard } from '../idempotency.ts';
import { ProblemError, problemResponses } from '../problems.ts';
import { ROLES, type Role } from '../roles.ts';

export const ApiKeyView = z
  .object({
    id: z.uuid(),
    name: z.string(),
    role: z.enum(ROLES),
    userId: z.uuid().nullable().describe("The user the key acts as (with the user's role now); null for a service key"),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
    createdBy: z
      .string()
      .nullable()
      .describe('Who created the key: `api-key:<id>` or a user id (as the audit trail names actors), or the CLI; null for keys created before 2026-12-06'),
    revokedBy: z.string().nullable().describe('Who revoked it, named alike; null while it is live'),
  })
  .meta({ id: 'ApiKey' });

const CreateApiKey = z
  .strictObject({
    name: ApiKeyName.describe('Who or what holds the key'),
    role: z.enum(ROLES).optional().describe("A service key's role (whole-company visibility); not with userId"),
    userId: z.uuid().optional().describe("The user the key acts as, with the user's role and visibility"),
  })
  .superRefine((body, ctx) => {
    if (body.userId !== undefined && body.role !== undefined)
      ctx.addIssue({ code: 'custom', path: ['role'], message: "a user's key takes the user's role; send role or userId, not both" });
    if (body.userId === undefined && body.role === undefined)
      ctx.addIssue({ code: 'custom', path: ['role'], message: "required (or userId for a user's key)" });
  });

/** A key as the list shows it: a user's key with the user's role now, and whether it works (its user active). */
const ListedApiKey = ApiKeyView.extend({
  userActive: z.boolean().nullable().describe("A user's key works while its user is active (false: refused, 401); null for a service key"),
}).meta({ id: 'ListedApiKey' });

const CreatedApiKey = ApiKeyView.extend({
  key: z.string().describe('The secret. Shown only in this response: store it now.'),
}).meta({ id: 'CreatedApiKey' });

export const adminRoutes: FastifyPluginAsyncZod<{
  keys: ApiKeyStore;
  idempotency: IdempotencyGuard;
  userRole?: (userId: string) => Promise<string | undefined>;
}> = async (app, { keys, idempotency, userRole }) => {
  app.post(
    '/admin/api-keys',
    {
      schema: {
        operationId: 'createApiKey',
        tags: ['admin'],
        summary: 'Create an API key; the key itself is returned once and only its hash is stored',
        description:
          'With an Idempotency-Key, a retry creates no second key: it is a 409 naming the key the first request created (`details.id`), ' +
          'whose secret was shown only in that answer: keep it, or revoke it (DELETE /admin/api-keys/:id) and create another under a new Idempotency-Key.',
        headers: CreationHeaders,
        body: CreateApiKey,
        response: { 201: CreatedApiKey, ...problemResponses(400, 401, 403, 409, 413, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const { name, role, userId } = request.body;
      let keyRole = role;
      if (userId !== undefined) {
        // Stored for the list; requests use the user's role at the time.
        const current = userId !== undefined && userRole ? await userRole(userId) : undefined;
        if (current === undefined)
          throw new ProblemError('rule_violated', `No active user ${userId}.`, { errors: [{ field: 'userId', message: 'no active user' }] });
        keyRole = current as Role;
      }
      const created = await createOnce(
        idempotency,
        {
          apiKeyId: request.apiKey!.id,
          key: idempotencyKeyOf(request),
          request: { method: 'POST', route: '/admin/api-keys', resourceId: null, body: request.body },
        },
        {
          what: 'API key',
          exists: async (id) => (await keys.list()).some((listed) => listed.id === id),
          removal: (id) => `revoke it (DELETE /admin/api-keys/${id})`,
        },
        (id) => keys.create({ name, role: keyRole!, userId: userId ?? null, createdBy: actorOfKey(request.apiKey!).userId, ...(id ? { id } : {}) }),
      );
      request.log.info({ apiKeyId: created.id, role: created.role, userId: created.userId }, 'API key created');
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  app.get(
    '/admin/api-keys',
    {
      schema: {
        operationId: 'listApiKeys',
        tags: ['admin'],
        summary: 'List API keys (never their secrets)',
        response: { 200: z.object({ items: z.array(ListedApiKey) }), ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async () => ({
      // The role stored with a user's key is the user's at its creation; requests take the user's role now.
      items: await Promise.all(
        (await keys.list()).map(async (k) => {
          if (k.userId === null) return { ...k, userActive: null };
          const current = userRole ? await userRole(k.userId) : undefined;
          return { ...k, role: (current as Role | undefined) ?? k.role, userActive: current !== undefined };
        }),
      ),
    }),
  );

  app.delete(
    '/admin/api-keys/:id',
    {
      schema: {
        operationId: 'revokeApiKey',
        tags: ['admin'],
        summary: 'Revoke an API key (idempotent)',
        params: IdParams,
        response: { 200: ApiKeyView, ...problemResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request) => {
      const target = (await keys.list()).find((k) => k.id === request.params.id);
      if (target && target.role === 'admin' && target.revokedAt === null && target.userId === null) {
        // Only service keys count: a user's admin key stops with the user's role or deactivation.
        const liveAdmins = (await keys.list()).filter((k) => k.role === 'admin' && k.revokedAt === null && k.userId === null);
        if (liveAdmins.length === 1) {
          throw new ProblemError('invalid_state', 'This is the last live admin key: create another admin key before revoking it.', {
            code: 'api_key.last_admin',
          });
        }
      }
      const revoked = await keys.revoke(request.params.id, actorOfKey(request.apiKey!).userId);
      if (!revoked) throw new ProblemError('not_found', `No API key ${request.params.id}.`);
      request.log.info({ apiKeyId: revoked.id }, 'API key revoked');
      return revoked;
    },
  );
};
