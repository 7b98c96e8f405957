import { tmpdir } from 'node:os';
import type { CrmApp } from '../../api/app.ts';
import { ensureAdminKey } from '../../api/auth/api-keys.ts';
import { loadConfig } from '../../cli/config.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import type { CrmConfig } from '../../runtime/config.ts';
import type { TestSchemas } from './postgres.ts';

/**
 * The configuration a test starts the CRM with (runtime/crm.ts): PostgreSQL in the file's own
 * schemas, read from an environment as `crm` reads it, quiet unless `env` says otherwise.
 */
export const testConfig = (schemas: TestSchemas, env: Record<string, string> = {}): CrmConfig =>
  loadConfig(
    {
      DATABASE_URL: schemas.url,
      CRM_EVENTS_SCHEMA: schemas.events,
      CRM_READ_SCHEMA: schemas.read,
      CRM_REPORTING_SCHEMA: schemas.reporting,
      LOG_LEVEL: 'silent',
      ...env,
    },
    tmpdir(),
  );

/**
 * A whole CRM in the test's process, as `crm serve` runs it: the runtime with its projections
 * started, and its API with `adminKey` as an admin key.
 */
export const openTestCrm = async (schemas: TestSchemas, adminKey: string): Promise<{ runtime: CrmRuntime; app: CrmApp }> => {
  const runtime = await openCrm(testConfig(schemas, { CRM_ADMIN_KEY: adminKey }));
  await runtime.startProjections();
  const app = await runtime.buildApi({ logger: false });
  await ensureAdminKey(app.keys, { adminKey });
  return { runtime, app };
};
