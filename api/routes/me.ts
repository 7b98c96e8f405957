import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../problems.ts';
import { ROLES } from '../roles.ts';

const Me = z
  .object({
    keyId: z.uuid(),
    keyName: z.string(),
    role: z.enum(ROLES).describe("The role the key acts with now (a user's key: the user's role)"),
    userId: z.uuid().nullable().describe('The user the key acts as; null for a service key'),
    visibility: z.enum(['all', 'team', 'own']).describe('Which records the key sees; a service key sees all'),
    teamIds: z.array(z.uuid()),
  })
  .meta({ id: 'Me' });

/**
 * `GET /me`: who the caller is to the API, so that a client (the web console) offers what the server
 * will take: an admin of visibility `own` or `team` is refused user, key and company-wide audit
 * changes (api/auth/scope-guard.ts). The console found the role by provoking a 403 from
 * `GET /admin/api-keys` on every sign-in, and knew nothing of the visibility.
 */
export const meRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/me',
    {
      schema: {
        operationId: 'getMe',
        tags: ['ops'],
        summary: "The caller's key, role, user, visibility and teams",
        response: { 200: Me, ...problemResponses(400, 401, 429) },
      },
    },
    async (request) => {
      const viewer = request.viewer!;
      return {
        keyId: request.apiKey!.id,
        keyName: request.apiKey!.name,
        role: viewer.role,
        userId: viewer.userId,
        visibility: viewer.visibility,
        teamIds: viewer.teamIds,
      };
    },
  );
};
