import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { CHECKPOINT_TABLE } from '../../projections/checkpoints.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { json } from './support.ts';

/**
 * An API replica (`CRM_PROJECTIONS=off`) of an older version, started or left running after a newer
 * version rebuilt a read model: it does not refuse to start (only a process running the projections
 * does, exit 78); it serves, answers /ready 503 naming the projection superseded, and says so in /metrics.
 */
let schemas: TestSchemas;
let replica: CrmRuntime | undefined;
let app: CrmApp | undefined;

beforeAll(async () => {
  schemas = testSchemas('older_replica');
  const worker = await openCrm(testConfig(schemas), { overrides: { publishers: false, chainSealer: false } });
  try {
    await worker.startProjections();
  } finally {
    await worker.close();
  }
  // As a newer version's rebuild of customers leaves the checkpoint.
  const newer = await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off' }), { overrides: { publishers: false, chainSealer: false } });
  try {
    await sql`UPDATE ${sql.id(schemas.read, CHECKPOINT_TABLE)} SET version = version + 1 WHERE name = 'customers'`.execute(newer.database.db);
  } finally {
    await newer.close();
  }
}, 120_000);
afterAll(async () => {
  await app?.close();
  await replica?.close();
  await schemas?.dropSchemas();
});

describe('an API replica older than the read models', () => {
  it('starts and serves, but is not ready, naming the projection superseded, and /metrics says so', async () => {
    replica = await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off' }), { overrides: { publishers: false, chainSealer: false } });
    // What crm serve does with CRM_PROJECTIONS=off before it listens (cli/commands/serve.ts): no refusal.
    await replica.prepareReadModels();
    app = await replica.buildApi();
    const ready = await app.inject({ method: 'GET', url: '/ready' });
    expect(ready.statusCode, ready.body).toBe(503);
    expect(json<{ reasons: string[] }>(ready).reasons).toEqual([
      expect.stringMatching(/^projection customers is superseded: its read model was rebuilt by version \d+/),
    ]);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('crm_projection_superseded{projection="customers"} 1');
    expect(metrics).toContain('crm_projection_superseded{projection="deals"} 0');
    // Not a poison event in the read model: every replica of the newer version reads it fine.
    expect(metrics).toMatch(/crm_projection_failed\{projection="customers",position=""\} 0/);
  });
});
