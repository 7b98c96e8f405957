import { terminalText } from '../../shared/terminal-text.ts';
import type { Role } from '../../api/roles.ts';
import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  name: { type: 'string', description: 'create: a label for the key (who or what uses it)' },
  role: { type: 'string', description: 'create: admin, sales, marketing, support, analyst or auditor (a service key)' },
  user: { type: 'string', description: "create: the user (id) the key acts as, with the user's role and visibility; instead of --role" },
  json: { type: 'boolean', description: 'print JSON instead of text' },
};

export const apiKeyCommand: CliCommand = {
  name: 'api-key',
  summary: 'Create, list or revoke API keys (stored hashed; a new key is shown once)',
  usage: 'api-key create --name <label> (--role <role> | --user <id>) | api-key list | api-key revoke <id>',
  details: `
Keys authenticate API clients (Authorization: Bearer <key>). Only a key's hash is stored: the key
itself is printed once, when it is created. Revoking takes effect within seconds in running servers.

Examples:
  crm api-key create --name "reporting bot" --role analyst
  crm api-key create --name "Ada's laptop" --user 2f1c...
  crm api-key list
  crm api-key revoke 2f1c...`,
  database: ({ positionals }) => (positionals[0] === 'list' ? { kind: 'reads' } : { kind: 'writes', check: 'crm api-key list' }),
  options,
  async run(run) {
    const [action, id] = run.positionals;
    if (!action || !['create', 'list', 'revoke'].includes(action)) {
      throw new UsageError('api-key needs an action: create, list or revoke (see crm api-key --help)');
    }
    // A usage mistake is told before the database is touched.
    if (action === 'create' && !stringValue(run, 'name')) throw new UsageError('--name is required');
    // Loaded on use, so that `--help` stays instant.
    const { ApiKeyName, createApiKeyStore, ensureAdminKey } = await import('../../api/auth/api-keys.ts');
    // The name as the API takes it: it names the actor of every event the key's commands record.
    const named = action === 'create' ? ApiKeyName.safeParse(stringValue(run, 'name')) : undefined;
    if (named?.error) throw new UsageError(`--name ${named.error.issues[0]?.message}`);
    const { ROLES } = await import('../../api/roles.ts');
    const { assertInstalled, migrateStore, openDatabase } = await import('../../runtime/crm.ts');
    const database = await openDatabase(run.config);
    try {
      // A list reads what a CRM stored; a key may be made before the first `crm serve` sets the rest up,
      // so a create runs the event store's migrations. A list or a revoke does not: run by a newer
      // version, it recorded that version's migrations, and the older CRM beside it then refused to start.
      if (action !== 'create') await assertInstalled(run.config, database);
      else await migrateStore(run.config, database);
      // CRM_ADMIN_KEY is stored as `crm serve` stores it. No key is generated here: after the last admin
      // key was revoked (a leak), a list minted and printed a new one. `crm api-key create --role admin` makes one when it is wanted.
      const keys = createApiKeyStore(database.db, { schema: run.config.schemas.events });
      if (run.config.adminKey) await ensureAdminKey(keys, { adminKey: run.config.adminKey });
      if (action === 'list') {
        const { loadUserViewer } = await import('../../api/auth/viewer.ts');
        // A user's key works while its user is active: a deactivated user's key read "active" here and was refused (401).
        // The role stored with a user's key is the user's at its creation; requests take the user's role now.
        const list = await Promise.all(
          (await keys.list()).map(async (k) => {
            if (k.userId === null) return { ...k, userActive: null };
            const viewer = await loadUserViewer(database.db, run.config.schemas.read, k.userId);
            return { ...k, role: viewer?.role ?? k.role, userActive: viewer !== undefined };
          }),
        );
        const state = (k: (typeof list)[number]) => (k.revokedAt ? `revoked ${k.revokedAt}` : k.userActive === false ? 'refused: user inactive' : 'active');
        if (run.values.json) run.out(JSON.stringify(list, null, 2));
        else if (list.length === 0) run.out('No API keys.');
        else
          for (const k of list)
            run.out(`${k.id}  ${k.role.padEnd(9)} ${state(k).padEnd(32)}  ${terminalText(k.name)}${k.userId ? `  (user ${k.userId})` : ''}`);
        return 0;
      }
      if (action === 'create') {
        const name = named?.data;
        const user = stringValue(run, 'user');
        let role = stringValue(run, 'role');
        if (name === undefined) throw new UsageError('--name is required');
        if (user !== undefined && role !== undefined) throw new UsageError("--user takes the user's role: give --role or --user, not both");
        if (user !== undefined) {
          const { activeUserRoleIn } = await import('../../api/auth/viewer.ts');
          role = await activeUserRoleIn(database.db, run.config.schemas.read, user);
          if (role === undefined) {
            run.err(`No active user ${user} (see GET /admin/users).`);
            return 1;
          }
        }
        if (!role || !(ROLES as readonly string[]).includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')} (or --user <id>)`);
        const created = await keys.create({ name, role: role as Role, userId: user ?? null, createdBy: 'crm api-key' });
        if (run.values.json) run.out(JSON.stringify(created, null, 2));
        else run.out(`Created ${created.role} key ${created.id} (${terminalText(created.name)}).\nKey (shown once, store it now): ${created.key}`);
        return 0;
      }
      if (!id) throw new UsageError('revoke needs the key id (see crm api-key list)');
      const revoked = await keys.revoke(id, 'crm api-key').catch(() => undefined);
      if (!revoked) {
        run.err(`No API key with id ${id}.`);
        return 1;
      }
      run.out(`Revoked ${revoked.id} (${terminalText(revoked.name)}) at ${revoked.revokedAt}.`);
      return 0;
    } finally {
      await database.close();
    }
  },
};
