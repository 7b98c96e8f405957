import { sql, type QueryExecutorProvider } from 'kysely';
import type { FastifyRequest } from 'fastify';
import type { ReadScope } from '../deps.ts';
import { ROLES, type Role } from '../roles.ts';
import { isMissingTable } from '../../shared/sql.ts';

/** What a user's keys may see: their own records, their teams', or everything their role may read. */
export const VISIBILITIES = ['own', 'team', 'all'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/**
 * The caller as the read side and the command layer see them, resolved at authentication: the user
 * (null for a service key), the role in force now (a user's current role, not the one their key was
 * issued with), their visibility and teams, and `scope`, the owners whose records they may see
 * (null: everything).
 */
export interface Viewer {
  userId: string | null;
  role: Role;
  visibility: Visibility;
  teamIds: string[];
  scope: ReadScope | null;
}

/** A key without a user: today's behaviour, the whole company for its role. */
export const serviceViewer = (role: Role): Viewer => ({ userId: null, role, visibility: 'all', teamIds: [], scope: null });

/** The caller's scope for read-model queries; null (everything) on public routes and for unrestricted callers. */
export const scopeOf = (request: FastifyRequest): ReadScope | null => request.viewer?.scope ?? null;

/**
 * The viewer of an active user, from the `users` and `team_members` read models; undefined when the
 * user is unknown or deactivated (their keys then stop working).
 */
export async function loadUserViewer(db: QueryExecutorProvider, readSchema: string, userId: string): Promise<Viewer | undefined> {
  let user: { role: string; visibility: Visibility; active: boolean } | undefined;
  try {
    ({
      rows: [user],
    } = await sql<{ role: string; visibility: Visibility; active: boolean }>`SELECT role, visibility, active
      FROM ${sql.id(readSchema, 'users')} WHERE user_id = ${userId}::uuid`.execute(db));
  } catch (error) {
    // The read models are not created yet (a fresh start): no user is known.
    if (isMissingTable(error)) return undefined;
    throw error;
  }
  if (!user || !user.active || !(ROLES as readonly string[]).includes(user.role)) return undefined;
  const { rows: teams } = await sql<{ team_id: string }>`SELECT team_id::text FROM ${sql.id(readSchema, 'team_members')}
    WHERE user_id = ${userId}::uuid ORDER BY team_id`.execute(db);
  const teamIds = teams.map((t) => t.team_id);
  let scope: ReadScope | null = null;
  if (user.visibility === 'own') scope = { owners: [userId] };
  else if (user.visibility === 'team') {
    const { rows } = await sql<{ user_id: string }>`SELECT DISTINCT user_id::text FROM ${sql.id(readSchema, 'team_members')}
      WHERE team_id = ANY(CAST(${teamIds} AS uuid[]))`.execute(db);
    scope = { owners: [...new Set([userId, ...rows.map((r) => r.user_id)])] };
  }
  return { userId, role: user.role as Role, visibility: user.visibility, teamIds, scope };
}

/** The role of an active user (for a key created for them); undefined when unknown, deactivated, or no uuid. */
export async function activeUserRoleIn(db: QueryExecutorProvider, readSchema: string, userId: string): Promise<Role | undefined> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(userId)) return undefined;
  const { rows } = await sql<{ role: string }>`SELECT role FROM ${sql.id(readSchema, 'users')} WHERE user_id = ${userId}::uuid AND active`
    .execute(db)
    .catch((error: unknown) => {
      // The read models are not created yet: no user is known.
      if (isMissingTable(error)) return { rows: [] as { role: string }[] };
      throw error;
    });
  const role = rows[0]?.role;
  return role !== undefined && (ROLES as readonly string[]).includes(role) ? (role as Role) : undefined;
}
