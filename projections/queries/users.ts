import { sql, type RawBuilder } from 'kysely';
import type { QueryExecutorProvider } from 'kysely';
import { isMissingTable } from '../../shared/sql.ts';
import type { TeamRow, UserRow } from '../read-models/users.ts';
import { unlessRebuilding } from './exchange-rates.ts';

/**
 * The user the users read model shows with an address (in any case), the earliest registered when
 * several do; undefined when none does or the read models are not created yet. Users registered
 * before addresses were claimed (2026-12-04) hold no claim: this is how a registration finds them.
 */
export async function userWithAddress(db: QueryExecutorProvider, readSchema: string, email: string): Promise<string | undefined> {
  try {
    const { rows } = await sql<{ user_id: string }>`SELECT user_id::text FROM ${sql.id(readSchema, 'users')}
      WHERE lower(email) = lower(${email}) ORDER BY registered_at, user_id LIMIT 1`.execute(db);
    return rows[0]?.user_id;
  } catch (error) {
    // The read models are not created yet: no user shows the address.
    if (isMissingTable(error)) return undefined;
    throw error;
  }
}

/** A user as GET /admin/users shows them: the row, with the ids of their teams in the order they joined. */
export type UserWithTeams = Omit<UserRow, 'name_sort'> & { team_ids: string[] };
/** A team as GET /admin/teams shows it: the row, with its members' ids. */
export type TeamWithMembers = Omit<TeamRow, 'name_sort'> & { member_ids: string[] };

/**
 * Name order of the users and teams lists: dictionary order, by the `name_sort` column the projection
 * writes (projections/read-models/name-sort.ts), the id as tie-breaker. The tables of the previous
 * version, which keep serving while a rebuild makes the new ones, have no `name_sort`: by `name` there.
 */
const inNameOrder = <R>(list: (sortColumn: 'name_sort' | 'name') => Promise<R>): Promise<R> =>
  unlessRebuilding(
    () => list('name_sort'),
    () => list('name'),
  );

/**
 * The users `where` picks (alias `u`), with their teams, in one query: the list is read whole, and one
 * query per user queued thousands of queries on the pool at once, so the list of a few thousand users
 * answered 503 and held up every other request meanwhile.
 */
export const usersWhere = (db: QueryExecutorProvider, readSchema: string, where: RawBuilder<unknown>): Promise<UserWithTeams[]> =>
  inNameOrder(async (sortColumn) => {
    const { rows } = await sql<UserWithTeams>`SELECT u.user_id, u.name, u.email, u.role, u.visibility, u.active, u.registered_at, u.revision,
      u.last_event_at, ARRAY(SELECT m.team_id::text FROM ${sql.id(readSchema, 'team_members')} m
      WHERE m.user_id = u.user_id ORDER BY m.joined_at, m.team_id) AS team_ids
      FROM ${sql.id(readSchema, 'users')} u WHERE ${where} ORDER BY ${sql.ref(`u.${sortColumn}`)}, u.user_id`.execute(db);
    return rows;
  });

/** Every team with its members (GET /admin/teams), in name order. */
export const listTeams = (db: QueryExecutorProvider, readSchema: string): Promise<TeamWithMembers[]> =>
  inNameOrder(async (sortColumn) => {
    const { rows } = await sql<TeamWithMembers>`SELECT t.team_id, t.name, t.created_at, t.revision, t.last_event_at,
      ARRAY(SELECT m.user_id::text FROM ${sql.id(readSchema, 'team_members')} m WHERE m.team_id = t.team_id ORDER BY m.user_id) AS member_ids
      FROM ${sql.id(readSchema, 'teams')} t ORDER BY ${sql.ref(`t.${sortColumn}`)}, t.team_id`.execute(db);
    return rows;
  });
