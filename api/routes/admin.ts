import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { SafeText } from '../../domain/shared.ts';
import type { ApiKeyStore } from '../auth/api-keys.ts';
import { IdParams } from '../http.ts';
import { ProblemError } from '../problems.ts';
import { ROLES } from '../roles.ts';

export const ApiKeyView = z
  .object({
    id: z.uuid(),
    name: z.string(),
    role: z.enum(ROLES),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
  })
  .meta({ id: 'ApiKey' });

const CreateApiKey = z.strictObject({
  name: SafeText.trim().min(1).max(200).describe('Who or what holds the key'),
  role: z.enum(ROLES),
});

const CreatedApiKey = ApiKeyView.extend({
  key: z.string().describe('The secret. Shown only in this response: store it now.'),
}).meta({ id: 'CreatedApiKey' });

export const adminRoutes: FastifyPluginAsyncZod<{ keys: ApiKeyStore }> = async (app, { keys }) => {
  app.post(
    '/admin/api-keys',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create an API key; the key itself is returned once and only its hash is stored',
        body: CreateApiKey,
        response: { 201: CreatedApiKey },
      },
    },
    async (request, reply) => {
      const created = await keys.create(request.body);
      request.log.info({ apiKeyId: created.id, role: created.role }, 'API key created');
      return reply.code(201).header('cache-control', 'no-store').send(created);
    },
  );

  app.get(
    '/admin/api-keys',
    { schema: { tags: ['admin'], summary: 'List API keys (never their secrets)', response: { 200: z.object({ items: z.array(ApiKeyView) }) } } },
    async () => ({ items: await keys.list() }),
  );

  app.delete(
    '/admin/api-keys/:id',
    {
      schema: {
        tags: ['admin'],
        summary: 'Revoke an API key (idempotent)',
        params: IdParams,
        response: { 200: ApiKeyView },
      },
    },
    async (request) => {
      const target = (await keys.list()).find((k) => k.id === request.params.id);
      if (target && target.role === 'admin' && target.revokedAt === null) {
        const liveAdmins = (await keys.list()).filter((k) => k.role === 'admin' && k.revokedAt === null);
        if (liveAdmins.length === 1) {
          throw new ProblemError('invalid_state', 'This is the last live admin key: create another admin key before revoking it.', {
            code: 'api_key.last_admin',
          });
        }
      }
      const revoked = await keys.revoke(request.params.id);
      if (!revoked) throw new ProblemError('not_found', `No API key ${request.params.id}.`);
      request.log.info({ apiKeyId: revoked.id }, 'API key revoked');
      return revoked;
    },
  );
};
