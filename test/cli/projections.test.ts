import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas } from '../support/postgres.ts';
import { runCrm } from './support.ts';

/** `crm projections list` before any `crm serve` or `crm project` has run on the store. */
const schemas = testSchemas('cli_projections');
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  LOG_LEVEL: 'warn',
};

afterAll(async () => {
  await schemas.dropSchemas();
});

describe('crm projections list on a new store', () => {
  it('lists every projection as not run yet, instead of failing on the missing checkpoint table', async () => {
    const result = await runCrm(['projections', 'list'], { cwd: tmpdir(), env });
    expect(result.stderr).not.toMatch(/unexpected error|\n\s+at /);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(9);
    for (const name of ['customers', 'deals', 'analytics']) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${name} +not run +position 0 of 0 \\(crm serve or crm project runs it\\)$`)));
    }
  });
});
