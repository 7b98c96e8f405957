import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  team: { type: 'string', description: 'the team (uuid) whose records the role sees (GET /admin/teams lists them)' },
  name: { type: 'string', description: 'the PostgreSQL login role to create: lower case, letters, digits and _' },
  json: { type: 'boolean', description: 'print JSON instead of text' },
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const reportingRoleCommand: CliCommand = {
  name: 'reporting-role',
  maxArguments: 0,
  summary: "Create a PostgreSQL login whose queries on the reporting views see only one team's records",
  usage: 'reporting-role --team <id> --name <role>',
  details: `
The role may SELECT the reporting views customers, customer_timeline, deals, pipeline_summary,
feedback, activities and campaigns, and nothing else: no read-model table, no analytics view. The
scoped views show only the team's records, by the rule the API applies to a user with "team"
visibility: customers owned by a member of the team, deals owned by a member or on such a customer,
feedback assigned to a member or about such a customer, activities assigned to a member, on such a
customer or on a deal a member owns. Membership is read at query time, so people joining
or leaving the team change what the role sees at once. Campaigns have no owner and are not scoped.

The role is created without a password: set one in psql (\\password <role>) or use the server's
own authentication. Running it again for an existing team role moves it to the given team. Needs a
database user allowed to create roles (CREATEROLE) and the PostgreSQL server (not the embedded one).

Examples:
  crm reporting-role --team 6f1c2a0e-8b5d-4c1e-9a7f-2d3b4c5d6e7f --name metabase_emea`,
  database: { kind: 'rerunnable', note: 'an existing role is updated, not made twice' },
  options,
  async run(run) {
    const team = stringValue(run, 'team');
    const name = stringValue(run, 'name');
    if (!team) throw new UsageError('--team is required (a team id; see GET /admin/teams)');
    if (!UUID.test(team)) throw new UsageError(`--team must be a team id (uuid), got "${team}"`);
    if (!name) throw new UsageError('--name is required (the login role to create)');
    // Loaded on use, so that `--help` stays instant.
    const { createTeamReportingRole, ReportingRoleError, ROLE_NAME } = await import('../../projections/reporting-roles.ts');
    if (!ROLE_NAME.test(name)) throw new UsageError(`--name must be a lower-case PostgreSQL name (letters, digits, _; at most 63 characters), got "${name}"`);
    if (run.config.database.kind === 'pglite') {
      run.err('reporting-role needs a PostgreSQL server (DATABASE_URL): the embedded database accepts no other logins.');
      return 1;
    }
    const { openDatabase } = await import('../../runtime/crm.ts');
    const database = await openDatabase(run.config);
    try {
      const result = await createTeamReportingRole(database.db, {
        readSchema: run.config.schemas.read,
        reportingSchema: run.config.schemas.reporting,
        teamId: team,
        role: name,
      });
      if (run.values.json) run.out(JSON.stringify(result, null, 2));
      else
        run.out(
          `${result.created ? 'Created' : 'Re-scoped'} role ${result.role}: it sees team ${result.teamName} (${result.teamId}) in ${run.config.schemas.reporting}.*.` +
            `\nSet its password in psql: \\password ${result.role}`,
        );
      return 0;
    } catch (error) {
      if (error instanceof ReportingRoleError) {
        run.err(error.message);
        return 1;
      }
      throw error;
    } finally {
      await database.close();
    }
  },
};
