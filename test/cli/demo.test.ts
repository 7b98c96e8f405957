import pg from 'pg';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { buildDemoPlan, DEFAULT_DEMO_UNTIL } from '../../cli/demo-data.ts';
import { testSchemas } from '../support/postgres.ts';
import { runCrm } from './support.ts';

/** `crm demo` through the command handlers on the real PostgreSQL: deterministic and safe to run twice. */
const schemas = testSchemas('cli_demo');
const env = { DATABASE_URL: schemas.url, CRM_EVENTS_SCHEMA: schemas.events, CRM_READ_SCHEMA: schemas.read, CRM_REPORTING_SCHEMA: schemas.reporting };
afterAll(() => schemas.dropSchemas());

const events = async (): Promise<{ stream: string; revision: number; event_id: string }[]> => {
  const client = new pg.Client({ connectionString: schemas.url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT stream, revision::int AS revision, event_id::text AS event_id FROM "${schemas.events}".events ORDER BY stream, revision`,
    );
    return rows;
  } finally {
    await client.end();
  }
};

describe('crm demo', () => {
  it('records the plan through the command handlers once, however often it runs', async () => {
    const first = await runCrm(['demo', '--customers', '6', '--seed', '3'], { cwd: tmpdir(), env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toContain('refused');
    const recorded = await events();
    const plan = buildDemoPlan({ seed: 3, customers: 6, until: DEFAULT_DEMO_UNTIL });
    // One event per command, two for a merge (both streams record it).
    const merges = plan.filter((a) => a.command.type === 'MergeCustomer').length;
    expect(recorded.length).toBe(plan.length + merges);

    const again = await runCrm(['demo', '--customers', '6', '--seed', '3'], { cwd: tmpdir(), env });
    expect(again.code).toBe(0);
    expect(await events()).toEqual(recorded);

    // Another size of the same seed shares ids but not every command: refused, nothing recorded (it used
    // to resume the other plan, failing on the first command whose key the smaller plan had used).
    const bigger = await runCrm(['demo', '--customers', '9', '--seed', '3'], { cwd: tmpdir(), env });
    expect(bigger.code).toBe(1);
    expect(bigger.stderr).toContain('already holds the demo data set of seed 3 for another number of customers');
    expect(await events()).toEqual(recorded);
  }, 120_000);
});
