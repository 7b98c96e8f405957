import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { isMissingTable, qualifiedName } from '../shared/sql.ts';

/**
 * Team-scoped reporting roles (`crm reporting-role --team <id> --name <role>`): PostgreSQL logins whose
 * queries on the `reporting` views see only the records of one team, by the rule the API applies to a
 * `team` user: customers owned by a member of the team, deals owned by a member or on such a customer,
 * feedback assigned to a member or about such a customer, activities assigned to a member or on such a
 * customer or on a deal a member owns, the timelines of those customers.
 *
 * How: the scoped views are security-barrier views (no leaky function of the caller's runs before
 * their condition) whose condition asks `scope_owners()`: NULL (everything) for a login that is not a
 * team role, else the team's member ids. The function runs as its owner (SECURITY DEFINER) and reads
 * `role_teams` (which login belongs to which team) and `team_members` for the caller; the role itself
 * holds no privilege on the read-model tables, only SELECT on the scoped views. Campaigns have no owner
 * and carry no personal data: the campaigns view is granted unscoped. Analytics and integration views
 * are not granted to team roles (they are not scoped).
 */

/** The views a team role may read; all but `campaigns` are scoped. */
export const TEAM_ROLE_VIEWS = ['customers', 'customer_timeline', 'deals', 'pipeline_summary', 'feedback', 'activities', 'campaigns'] as const;

const q = qualifiedName;

/**
 * `(SELECT scope_owners())`: an uncorrelated sub-select, so PostgreSQL evaluates it once per query, not
 * per row. Cast, so that `= ANY(...)` reads it as an array, not as a sub-query of rows.
 */
export const scopeOwners = (reportingSchema: string) => `(SELECT ${q(reportingSchema, 'scope_owners')}())::text[]`;

/** Customers of the caller's team (or every customer): for the timeline, whose rows follow their customer's owner. */
const teamCustomers = (readSchema: string, reportingSchema: string) =>
  `SELECT c.customer_id FROM ${q(readSchema, 'customers')} c WHERE c.owner_id = ANY(${scopeOwners(reportingSchema)}::uuid[])`;

/**
 * The WHERE condition of each scoped view, over its table's columns (no alias). Deals, feedback and
 * activities carry their customer's owner (`customer_owner_id`, the primary's after a merge), and
 * activities their deal's owner (`deal_owner_id`), as the API reads them.
 */
export const scopeCondition = {
  customers: (read: string, rep: string) => `(${scopeOwners(rep)} IS NULL OR owner_id = ANY(${scopeOwners(rep)}::uuid[]))`,
  customer_timeline: (read: string, rep: string) => `(${scopeOwners(rep)} IS NULL OR customer_id IN (${teamCustomers(read, rep)}))`,
  deals: (read: string, rep: string) =>
    `(${scopeOwners(rep)} IS NULL OR owner_id = ANY(${scopeOwners(rep)}) OR customer_owner_id = ANY(${scopeOwners(rep)}::uuid[]))`,
  feedback: (read: string, rep: string) =>
    `(${scopeOwners(rep)} IS NULL OR assignee_id = ANY(${scopeOwners(rep)}) OR customer_owner_id = ANY(${scopeOwners(rep)}::uuid[]))`,
  activities: (read: string, rep: string) =>
    `(${scopeOwners(rep)} IS NULL OR assignee_id = ANY(${scopeOwners(rep)}::uuid[]) OR customer_owner_id = ANY(${scopeOwners(rep)}::uuid[]) OR deal_owner_id = ANY(${scopeOwners(rep)}))`,
} as const;

/**
 * The role-to-team table and the scope function, before the views that call it. The function is
 * PL/pgSQL so that its body is resolved when called, not when created: the users projection's
 * `team_members` may not exist yet on a first start.
 */
export function scopeStatements(readSchema: string, reportingSchema: string): string[] {
  const roles = q(reportingSchema, 'role_teams');
  return [
    `CREATE TABLE IF NOT EXISTS ${roles} (role_name text PRIMARY KEY, team_id uuid NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
    `REVOKE ALL ON ${roles} FROM PUBLIC`,
    `COMMENT ON TABLE ${roles} IS 'Team-scoped reporting roles (crm reporting-role): the login and the team whose records it sees.'`,
    `CREATE OR REPLACE FUNCTION ${q(reportingSchema, 'scope_owners')}() RETURNS text[]
      LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
      DECLARE scoped_team uuid; owners text[];
      BEGIN
        -- session_user: the login, whatever role a SECURITY DEFINER call or SET ROLE runs as.
        SELECT r.team_id INTO scoped_team FROM ${roles} r WHERE r.role_name = session_user::text;
        IF NOT FOUND THEN RETURN NULL; END IF;
        SELECT coalesce(array_agg(m.user_id::text), '{}') INTO owners FROM ${q(readSchema, 'team_members')} m WHERE m.team_id = scoped_team;
        RETURN owners;
      END $fn$`,
    `COMMENT ON FUNCTION ${q(reportingSchema, 'scope_owners')}() IS 'User ids whose records the login may see in the reporting views; NULL: every record.'`,
  ];
}

/** Grants each registered team role its views again (dropping and recreating a view drops its grants). */
export async function grantTeamRoles(db: QueryExecutorProvider, reportingSchema: string): Promise<void> {
  const { rows } = await sql<{ role_name: string }>`SELECT r.role_name FROM ${sql.id(reportingSchema, 'role_teams')} r
    JOIN pg_roles p ON p.rolname = r.role_name ORDER BY r.role_name`.execute(db);
  for (const { role_name } of rows) await grantViews(db, reportingSchema, role_name);
}

const grantViews = async (db: QueryExecutorProvider, reportingSchema: string, role: string): Promise<void> => {
  await sql`GRANT USAGE ON SCHEMA ${sql.id(reportingSchema)} TO ${sql.id(role)}`.execute(db);
  const { rows } = await sql<{ name: string }>`SELECT viewname AS name FROM pg_views WHERE schemaname = ${reportingSchema}
    AND viewname = ANY(${[...TEAM_ROLE_VIEWS]}::text[])`.execute(db);
  for (const { name } of rows) await sql`GRANT SELECT ON ${sql.id(reportingSchema, name)} TO ${sql.id(role)}`.execute(db);
};

export class ReportingRoleError extends Error {}

/**
 * Set on a team role when it is created (ALTER ROLE ... SET; the role's own sessions only, changed
 * with ALTER ROLE). A BI login that leaves a transaction open holds back every projection's feed on
 * the cluster and the locks of the views it read (a start or a rebuild's swap waits for them): the
 * server ends such a session after a minute idle. Read-only by default: a dashboard writes nothing.
 */
export const REPORTING_ROLE_SETTINGS = { idle_in_transaction_session_timeout: '60s', default_transaction_read_only: 'on' } as const;

/** A PostgreSQL identifier we create: lower case, no quoting needed in any tool. */
export const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Creates (or re-scopes) a login role that sees one team's records in the reporting views. The
 * role gets no password: set one with `ALTER ROLE ... PASSWORD` (psql `\password`) or use the
 * server's other authentication. A role that exists but is not a team role is refused.
 */
export async function createTeamReportingRole(
  db: Kysely<unknown>,
  options: { readSchema: string; reportingSchema: string; teamId: string; role: string },
): Promise<{ role: string; teamId: string; teamName: string; created: boolean }> {
  const { readSchema, reportingSchema, teamId, role } = options;
  if (!ROLE_NAME.test(role)) throw new ReportingRoleError(`--name must be a lower-case PostgreSQL name (letters, digits, _; at most 63): "${role}"`);
  const team = await sql<{ name: string }>`SELECT name FROM ${sql.id(readSchema, 'teams')} WHERE team_id = ${teamId}::uuid`
    .execute(db)
    .catch((error: unknown) => {
      if (isMissingTable(error)) throw new ReportingRoleError('The read models are not created yet: start `crm serve` or `crm project` once.');
      throw error;
    });
  const teamName = team.rows[0]?.name;
  if (teamName === undefined) throw new ReportingRoleError(`No team ${teamId} (see GET /admin/teams).`);
  const views = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ${reportingSchema} AND p.proname = 'scope_owners'`.execute(db);
  if (views.rows[0]!.n === 0) throw new ReportingRoleError(`The ${reportingSchema} views are not created yet: start \`crm serve\` or \`crm project\` once.`);
  return db.transaction().execute(async (trx) => {
    const existing = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ${role}`.execute(trx);
    const ours = await sql<{ team_id: string }>`SELECT team_id::text FROM ${sql.id(reportingSchema, 'role_teams')} WHERE role_name = ${role}`.execute(trx);
    const created = existing.rows[0]!.n === 0;
    if (!created && ours.rows.length === 0)
      throw new ReportingRoleError(`Role ${role} already exists and is not a team reporting role: choose another --name.`);
    if (created) {
      await sql`CREATE ROLE ${sql.id(role)} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE`
        .execute(trx)
        .catch((error: { code?: string; message?: string }) => {
          if (error.code === '42501') throw new ReportingRoleError(`The database user may not create roles (CREATEROLE needed): ${error.message}`);
          throw error;
        });
      for (const [setting, value] of Object.entries(REPORTING_ROLE_SETTINGS))
        await sql`ALTER ROLE ${sql.id(role)} SET ${sql.id(setting)} = ${sql.lit(value)}`.execute(trx);
    }
    await sql`INSERT INTO ${sql.id(reportingSchema, 'role_teams')} (role_name, team_id) VALUES (${role}, ${teamId}::uuid)
      ON CONFLICT (role_name) DO UPDATE SET team_id = EXCLUDED.team_id`.execute(trx);
    await grantViews(trx, reportingSchema, role);
    return { role, teamId, teamName, created };
  });
}
