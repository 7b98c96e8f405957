import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';
import { teamCommandSchemas } from '../../domain/team/commands.ts';
import { Id } from '../../domain/shared.ts';
import { userCommandSchemas } from '../../domain/user/commands.ts';
import { UserStreamPrefix } from '../../domain/user/events.ts';
import { listTeams, usersWhere as usersIn } from '../../projections/queries/users.ts';
import type { RouteContext } from '../route-context.ts';
import { activeUserRoleIn, VISIBILITIES } from '../auth/viewer.ts';
import type { ApiCommand } from '../deps.ts';
import { CommandAccepted, CommandHeaders, etagOf, executeCommand, IdParams } from '../http.ts';
import { ProblemError, problemResponses } from '../problems.ts';
import { ROLES } from '../roles.ts';

/**
 * Users and teams (administration). Each change is a command, so the audit log shows who could see
 * what, when. A change answers once this process's read models include it (bounded wait) and the
 * key cache is cleared: the user's keys act with the new role, teams and visibility from the next request.
 */

const tags = ['admin'];

export const UserView = z
  .object({
    id: z.uuid(),
    name: z.string(),
    email: z.string(),
    role: z.enum(ROLES),
    visibility: z.enum(VISIBILITIES),
    active: z.boolean(),
    teamIds: z.array(z.uuid()),
    registeredAt: z.string(),
    revision: z.number().int(),
    updatedAt: z.string(),
  })
  .meta({ id: 'User' });
type UserView = z.infer<typeof UserView>;

export const TeamView = z
  .object({ id: z.uuid(), name: z.string(), memberIds: z.array(z.uuid()), createdAt: z.string(), revision: z.number().int() })
  .meta({ id: 'Team' });

const strictBody = (schema: z.ZodObject, without: string) => {
  const shape: Record<string, z.core.$ZodType> = { ...schema.shape };
  delete shape[without];
  return z.strictObject(shape);
};

const errors = problemResponses(400, 401, 403, 404, 409, 422, 428, 429, 503);

export const userRoutes: FastifyPluginAsync<RouteContext> = async (plugin, context) => {
  const app = plugin.withTypeProvider<ZodTypeProvider>();
  const { db } = context.deps.database;
  const read = context.deps.schemas.read;

  /** Runs an administration command, waits (bounded) for the read models, and drops cached key lookups. */
  const run = async (request: FastifyRequest, reply: FastifyReply, command: ApiCommand, status: 200 | 201, location: (id: string) => string) => {
    const accepted = await executeCommand(request, reply, context, {
      command,
      status,
      ifMatch: status === 201 ? 'forbidden' : 'optional',
      location,
    });
    await context.deps.projections?.waitForPosition(BigInt(accepted.position), context.waitForTimeoutMs);
    context.keys.invalidate();
    return accepted;
  };

  /** Users with their teams (projections/queries/users.ts), in name order. */
  const usersWhere = async (where: RawBuilder<unknown>): Promise<UserView[]> =>
    (await usersIn(db, read, where)).map((r) => ({
      id: r.user_id,
      name: r.name,
      email: r.email,
      role: r.role,
      visibility: r.visibility,
      active: r.active,
      teamIds: r.team_ids,
      registeredAt: new Date(r.registered_at).toISOString(),
      revision: Number(r.revision),
      updatedAt: new Date(r.last_event_at).toISOString(),
    }));
  const userById = async (id: string): Promise<UserView | undefined> => (await usersWhere(sql`u.user_id = ${id}::uuid`))[0];

  app.post(
    '/admin/teams',
    {
      schema: {
        operationId: 'createTeam',
        tags,
        summary: 'Create a team',
        headers: CommandHeaders,
        ifMatchHeader: 'forbidden',
        body: strictBody(teamCommandSchemas.CreateTeam, 'teamId').extend({ id: z.uuid().optional() }),
        response: { 201: CommandAccepted, ...errors },
        responseHeaders: { 201: ['etag', 'location'] },
      },
    },
    async (request, reply) => {
      const { id, ...body } = request.body as { id?: string; name: string };
      return run(request, reply, { type: 'CreateTeam', ...body, ...(id ? { teamId: id } : {}) }, 201, (teamId) => `/admin/teams/${teamId}`);
    },
  );

  /** A PATCH that runs one administration command on the team or user its path names (If-Match optional). */
  const changeRoute = (
    collection: 'teams' | 'users',
    type: 'RenameTeam' | 'ChangeUser',
    payload: z.ZodObject,
    idField: 'teamId' | 'userId',
    texts: { summary: string; description?: string },
  ) =>
    app.patch(
      `/admin/${collection}/:id`,
      {
        schema: {
          operationId: collection === 'teams' ? 'renameTeam' : 'changeUser',
          tags,
          ...texts,
          params: IdParams,
          headers: CommandHeaders,
          body: strictBody(payload, idField),
          response: { 200: CommandAccepted, ...errors },
          responseHeaders: { 200: ['etag'] },
        },
      },
      async (request, reply) =>
        run(request, reply, { type, ...(request.body as Record<string, unknown>), [idField]: request.params.id }, 200, (id) => `/admin/${collection}/${id}`),
    );

  changeRoute('teams', 'RenameTeam', teamCommandSchemas.RenameTeam, 'teamId', { summary: 'Rename a team (TeamRenamed)' });

  app.get(
    '/admin/teams',
    {
      schema: {
        operationId: 'listTeams',
        tags,
        summary: 'List teams with their members',
        response: { 200: z.object({ items: z.array(TeamView) }), ...errors },
      },
    },
    async () => {
      const rows = await listTeams(db, read);
      return {
        items: rows.map((r) => ({
          id: r.team_id,
          name: r.name,
          memberIds: r.member_ids,
          createdAt: new Date(r.created_at).toISOString(),
          revision: Number(r.revision),
        })),
      };
    },
  );

  app.post(
    '/admin/users',
    {
      schema: {
        operationId: 'registerUser',
        tags,
        summary: 'Register a user: role, teams and visibility (own, team (default), all)',
        headers: CommandHeaders,
        ifMatchHeader: 'forbidden',
        body: strictBody(userCommandSchemas.RegisterUser, 'userId').extend({ id: z.uuid().optional() }),
        response: { 201: CommandAccepted, ...errors },
        responseHeaders: { 201: ['etag', 'location'] },
      },
    },
    async (request, reply) => {
      const { id, ...body } = request.body as Record<string, unknown> & { id?: string };
      return run(request, reply, { type: 'RegisterUser', ...body, ...(id ? { userId: id } : {}) }, 201, (userId) => `/admin/users/${userId}`);
    },
  );

  app.get(
    '/admin/users',
    { schema: { operationId: 'listUsers', tags, summary: 'List users', response: { 200: z.object({ items: z.array(UserView) }), ...errors } } },
    async () => ({
      items: await usersWhere(sql`true`),
    }),
  );

  app.get(
    '/admin/users/:id',
    {
      schema: {
        operationId: 'getUser',
        tags,
        summary: 'One user (the ETag is the revision to send as If-Match)',
        params: IdParams,
        response: { 200: UserView, ...errors },
        responseHeaders: { 200: ['etag'] },
      },
    },
    async (request, reply) => {
      const user = await userById(request.params.id);
      if (!user) throw new ProblemError('not_found', `No user ${request.params.id}.`);
      reply.header('etag', etagOf(user.revision));
      return user;
    },
  );

  changeRoute('users', 'ChangeUser', userCommandSchemas.ChangeUser, 'userId', {
    summary: 'Change name, email, role, teams (the whole set), visibility, or deactivate (active: false)',
    description: "Applies to the user's keys from the next request: a deactivated user's keys stop working.",
  });
};

/** How long a key's creation waits for the read models to show a user created a moment ago. */
const USER_CATCH_UP_MS = 5_000;

/**
 * The user a key is created for, from the read model: undefined when unknown or deactivated. A user
 * the read model does not show yet may have been created a moment ago (an admin script creating a
 * user, then their key, while the projections are behind): when the user's stream has events, the
 * read models are given a bounded wait to apply its last one first.
 */
export const activeUserRole = async (context: RouteContext, userId: string): Promise<string | undefined> => {
  const { database, schemas, store, projections } = context.deps;
  const role = await activeUserRoleIn(database.db, schemas.read, userId);
  if (role !== undefined || !Id.safeParse(userId).success) return role;
  const [last] = await store.readStream(`${UserStreamPrefix}${userId.toLowerCase()}`, { direction: 'backwards', maxCount: 1 });
  if (!last || !(await projections.waitForPosition(last.position, USER_CATCH_UP_MS))) return undefined;
  return activeUserRoleIn(database.db, schemas.read, userId);
};
