import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { demoPlan, loadDemo } from '../../cli/demo.ts';
import { testSchemas } from '../support/postgres.ts';
import { expectRequestedSealsJoinAndChainsVerify } from './support.ts';

/** The PGlite scenario of pglite-chain.test.ts on a PostgreSQL server: demo load with the background sealer on, then requested seals. */
const schemas = testSchemas('audit_pg_chain');
let crm: CrmRuntime;
let app: CrmApp;
let adminKey: string;

beforeAll(async () => {
  const env = {
    DATABASE_URL: schemas.url,
    CRM_EVENTS_SCHEMA: schemas.events,
    CRM_READ_SCHEMA: schemas.read,
    CRM_REPORTING_SCHEMA: schemas.reporting,
    LOG_LEVEL: 'silent',
  };
  crm = await openCrm(loadConfig(env, tmpdir()));
  await crm.prepareReadModels();
  app = await crm.buildApi({ logger: false });
  adminKey = (await app.keys.create({ name: 'auditor on duty', role: 'admin' })).key;
  await crm.startProjections();
  await loadDemo(crm.commands, demoPlan({ seed: 42, customers: 15, until: new Date('2026-10-31T18:00:00.000Z') }));
}, 300_000);

afterAll(async () => {
  await app?.close();
  await crm?.close();
  await schemas.dropSchemas();
}, 60_000);

describe('the global chain on PostgreSQL', () => {
  it('requested seals while the background sealer runs all answer 200, and the chains verify after the demo load', async () => {
    await expectRequestedSealsJoinAndChainsVerify(crm, app, adminKey);
  }, 120_000);
});
