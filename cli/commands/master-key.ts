import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseMasterKey } from '../config.ts';
import { stringValue, UsageError, type CliCommand, type OptionWithHelp } from '../command.ts';

const options: Record<string, OptionWithHelp> = {
  'new-key-file': { type: 'string', description: 'rewrap: file holding the new master key (base64 or hex, 32 bytes)' },
};

export const masterKeyCommand: CliCommand = {
  name: 'master-key',
  summary: 'Generate a master key, or re-wrap every customer data key (and the other secrets it wraps) under a new one',
  usage: 'master-key generate | master-key rewrap --new-key-file <path>',
  details: `
Each customer's personal data is encrypted with their own data key (crm_events.customer_keys). With
CRM_MASTER_KEY (or CRM_MASTER_KEY_FILE) set, those keys are stored wrapped by the master key, and so
are the key of the email address index, the webhook signing secrets and the passwords in webhook URLs,
so the database alone (a backup, a replica, a WAL archive) reveals no personal data, lets nobody sign a
webhook delivery and holds no receiver's password.

  generate   prints a new random master key (base64); keep it in a secret manager, not beside the database.
  rewrap     re-wraps every data key, the email lookup key and every webhook secret and URL password
             under the key in --new-key-file, in one transaction. The current
             master key comes from CRM_MASTER_KEY / CRM_MASTER_KEY_FILE (unset: the keys are stored bare and
             this wraps them for the first time). Then restart every process with the new key configured.

Rotation:
  crm master-key generate > new.key
  CRM_MASTER_KEY_FILE=old.key crm master-key rewrap --new-key-file new.key
  # restart serve/project with CRM_MASTER_KEY_FILE=new.key`,
  database: { kind: 'writes', check: 'a command started with the new key is refused (exit 78) when the rewrap did not commit' },
  options,
  async run(run) {
    const [action] = run.positionals;
    if (action === 'generate') {
      run.out(randomBytes(32).toString('base64'));
      return 0;
    }
    if (action !== 'rewrap') throw new UsageError('master-key needs an action: generate or rewrap (see crm master-key --help)');
    const file = stringValue(run, 'new-key-file');
    if (!file) throw new UsageError('rewrap needs --new-key-file <path>');
    const text = await readFile(resolve(file), 'utf8').catch((error: Error) => {
      throw new UsageError(`cannot read ${file}: ${error.message}`);
    });
    const newKey = parseMasterKey(text);
    if (typeof newKey === 'string') throw new UsageError(`--new-key-file must hold ${newKey}`);
    // Loaded on use, so that `--help` stays instant.
    const { migrateStore, openDatabase, openPersonalData } = await import('../../runtime/crm.ts');
    const { rewrapDataKeys } = await import('../../eventstore/personal-data.ts');
    const { rewrapEmailLookupKey } = await import('../../eventstore/email-index.ts');
    const { rewrapMasterKey } = await import('../../eventstore/master-key.ts');
    const { rewrapWebhookSecrets } = await import('../../integration/index.ts');
    const database = await openDatabase(run.config);
    try {
      // The tables as this version has them (a rewrap may run before any of its processes started).
      await migrateStore(run.config, database);
      // Opening checks the current master key against the stored keys before anything is rewritten.
      await openPersonalData(run.config, database);
      const [keys, , secrets] = await rewrapMasterKey(
        database.db,
        { schema: run.config.schemas.events, ...(run.config.masterKey ? { from: run.config.masterKey } : {}), to: newKey },
        [rewrapDataKeys, rewrapEmailLookupKey, rewrapWebhookSecrets],
      );
      run.out(
        `Re-wrapped ${keys!.count} customer data key(s), the email lookup key and ${secrets!.count} webhook subscription(s)' secrets and URL passwords under the new master key. ` +
          'Restart every crm process with it configured.',
      );
      return 0;
    } finally {
      await database.close();
    }
  },
};
