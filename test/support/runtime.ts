import { tmpdir } from 'node:os';
import { loadConfig } from '../../cli/config.ts';
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
