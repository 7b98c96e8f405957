import { sql, type Kysely } from 'kysely';
import type { UserRole, UserVisibility } from '../../domain/user/events.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { occurredAt, type Instant } from './common.ts';
import { nameSortOf } from './name-sort.ts';
import { ensureSchema } from './rows.ts';

/**
 * `users`, `teams` and `team_members`: who the CRM's staff are, their role and visibility, and which
 * teams they belong to. Authentication reads them on every (uncached) key lookup to resolve what the
 * caller may see, and the reporting roles' scope function reads `team_members`. Administration is
 * rare, so events are applied one statement at a time, in order.
 */
export type UserRow = {
  user_id: string;
  name: string;
  /** Where the name sorts in `GET /admin/users` (name-sort.ts `nameSortOf`). */
  name_sort: string;
  email: string;
  role: UserRole;
  visibility: UserVisibility;
  active: boolean;
  registered_at: Instant;
  revision: number;
  last_event_at: Instant;
};

export type TeamRow = {
  team_id: string;
  name: string;
  /** Where the name sorts in `GET /admin/teams` (name-sort.ts `nameSortOf`). */
  name_sort: string;
  created_at: Instant;
  revision: number;
  last_event_at: Instant;
};

export type TeamMemberRow = {
  team_id: string;
  user_id: string;
  joined_at: Instant;
};

/** The tables this projection owns, for kysely. */
export interface UserTables {
  users: UserRow;
  teams: TeamRow;
  team_members: TeamMemberRow;
}

async function migrate(db: Kysely<UserTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'users')} (
    user_id uuid PRIMARY KEY,
    name text NOT NULL,
    name_sort text COLLATE "C" NOT NULL,
    email text NOT NULL,
    role text NOT NULL,
    visibility text NOT NULL CHECK (visibility IN ('own', 'team', 'all')),
    active boolean NOT NULL,
    registered_at timestamptz NOT NULL,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'teams')} (
    team_id uuid PRIMARY KEY,
    name text NOT NULL,
    name_sort text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'team_members')} (
    team_id uuid NOT NULL,
    user_id uuid NOT NULL,
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
  )`.execute(db);
  // The order of GET /admin/users and GET /admin/teams (api/routes/users.ts), the id as tie-breaker.
  await sql`CREATE INDEX IF NOT EXISTS users_sort_name_idx ON ${sql.id(schema, 'users')} (name_sort, user_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS teams_sort_name_idx ON ${sql.id(schema, 'teams')} (name_sort, team_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS team_members_user_idx ON ${sql.id(schema, 'team_members')} (user_id, team_id)`.execute(db);
}

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const users = sql.id(schema, 'users');
  const teams = sql.id(schema, 'teams');
  const members = sql.id(schema, 'team_members');
  for (const e of events) {
    const at = occurredAt(e);
    const { event } = e;
    /** Every event of a user's stream moves its revision and last change. */
    const touchUser = (userId: string) => sql`UPDATE ${users} SET revision = ${e.revision}, last_event_at = ${at}::timestamptz WHERE user_id = ${userId}::uuid`;
    switch (event.type) {
      case 'TeamCreated':
        await sql`INSERT INTO ${teams} (team_id, name, name_sort, created_at, revision, last_event_at)
          VALUES (${event.data.teamId}::uuid, ${event.data.name}, ${nameSortOf(event.data.name)}, ${at}::timestamptz, ${e.revision}, ${at}::timestamptz)
          ON CONFLICT (team_id) DO NOTHING`.execute(trx);
        break;
      case 'TeamRenamed':
        await sql`UPDATE ${teams} SET name = ${event.data.name}, name_sort = ${nameSortOf(event.data.name)}, revision = ${e.revision}, last_event_at = ${at}::timestamptz
          WHERE team_id = ${event.data.teamId}::uuid`.execute(trx);
        break;
      case 'UserRegistered': {
        const d = event.data;
        await sql`INSERT INTO ${users} (user_id, name, name_sort, email, role, visibility, active, registered_at, revision, last_event_at)
          VALUES (${d.userId}::uuid, ${d.name}, ${nameSortOf(d.name)}, ${d.email}, ${d.role}, ${d.visibility}, true, ${at}::timestamptz, ${e.revision}, ${at}::timestamptz)
          ON CONFLICT (user_id) DO NOTHING`.execute(trx);
        break;
      }
      case 'UserChanged':
        if (event.data.name !== undefined)
          await sql`UPDATE ${users} SET name = ${event.data.name}, name_sort = ${nameSortOf(event.data.name)} WHERE user_id = ${event.data.userId}::uuid`.execute(
            trx,
          );
        if (event.data.email !== undefined) await sql`UPDATE ${users} SET email = ${event.data.email} WHERE user_id = ${event.data.userId}::uuid`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      case 'UserRoleChanged':
        await sql`UPDATE ${users} SET role = ${event.data.role} WHERE user_id = ${event.data.userId}::uuid`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      case 'UserVisibilityChanged':
        await sql`UPDATE ${users} SET visibility = ${event.data.visibility} WHERE user_id = ${event.data.userId}::uuid`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      case 'UserJoinedTeam':
        await sql`INSERT INTO ${members} (team_id, user_id, joined_at) VALUES (${event.data.teamId}::uuid, ${event.data.userId}::uuid, ${at}::timestamptz)
          ON CONFLICT DO NOTHING`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      case 'UserLeftTeam':
        await sql`DELETE FROM ${members} WHERE team_id = ${event.data.teamId}::uuid AND user_id = ${event.data.userId}::uuid`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      case 'UserDeactivated':
      case 'UserReactivated':
        await sql`UPDATE ${users} SET active = ${event.type === 'UserReactivated'} WHERE user_id = ${event.data.userId}::uuid`.execute(trx);
        await touchUser(event.data.userId).execute(trx);
        break;
      default:
        break;
    }
  }
}

export const usersProjection: Projection = {
  name: 'users',
  // 2: `name_sort`, the name's place in dictionary order (name-sort.ts): GET /admin/users and GET /admin/teams
  //    ordered by the database's comparison of `name` (by code point under PGlite and a C locale: "Émile" after "Zoe").
  version: 2,
  tables: ['users', 'teams', 'team_members'],
  filter: { streamPrefixes: ['user-', 'team-'] },
  migrate,
  apply,
};
