import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { createVerificationJobs, PERSONAL_VALUE } from '../../audit/verification-jobs.ts';
import { eraseForgottenInCopy } from '../../projections/read-model-copies.ts';
import { ERASED_NAME_SORT } from '../../projections/read-models/name-sort.ts';
import { runCrm } from '../cli/support.ts';
import { testSchemas } from '../support/postgres.ts';
import { sleep } from './support.ts';

/**
 * Forgetting reaches every copy the CRM makes: the live read models and reporting views, a replay
 * made with `crm replay` before the forget, and stored verification results; and `company` (a sole
 * trader's name) is personal data: encrypted in the events, erased on forget.
 */
const schemas = testSchemas('audit_forget_copies');
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  LOG_LEVEL: 'silent',
};
const copy = `${schemas.read}_copy`;
const copyReporting = `${schemas.read}_copy_reporting`;
const ada = randomUUID();
const bob = randomUUID();
/** Ada registered twice; the second registration was merged into the first. */
const adaAgain = randomUUID();
// The last: her name as the duplicates report matches it (lower-cased words, sorted).
const ADA_SECRETS = [
  'Ada Lovelace',
  'ada@example.com',
  'Lovelace Analytical Engines',
  'My engine stopped',
  'A. A. Lovelace',
  'countess@example.com',
  'ada lovelace',
];
let crm: CrmRuntime;

const ctx = () => ({ actor: { userId: 'test', roles: ['admin'] }, correlationId: randomUUID() });

const caughtUp = async (position: bigint) => {
  await crm.runner.waitForPosition(position, 60_000);
};

/** Every row of every table and view in `schema`, as text. */
const everything = async (schema: string): Promise<string> => {
  const { rows: relations } = await sql<{ name: string }>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${schema} ORDER BY 1`.execute(crm.database.db);
  expect(relations.length).toBeGreaterThan(0);
  let text = '';
  for (const { name } of relations) {
    const { rows } = await sql<{ t: string }>`SELECT coalesce(string_agg(to_jsonb(r)::text, E'\\n'), '') AS t FROM ${sql.id(schema, name)} r`.execute(
      crm.database.db,
    );
    text += rows[0]!.t;
  }
  return text;
};

beforeAll(async () => {
  crm = await openCrm(loadConfig(env, tmpdir()));
  await crm.startProjections();
  await crm.commands.execute(
    { type: 'RegisterCustomer', customerId: ada, name: 'Ada Lovelace', email: 'ada@example.com', company: 'Lovelace Analytical Engines' },
    ctx(),
  );
  await crm.commands.execute({ type: 'RegisterCustomer', customerId: bob, name: 'Bob Builder', email: 'bob@example.com' }, ctx());
  await crm.commands.execute({ type: 'RegisterCustomer', customerId: adaAgain, name: 'A. A. Lovelace', email: 'countess@example.com' }, ctx());
  await crm.commands.execute({ type: 'MergeCustomer', customerId: ada, duplicateId: adaAgain }, ctx());
  const last = await crm.commands.execute(
    { type: 'SubmitFeedback', customerId: ada, kind: 'complaint', channel: 'email', subject: 'My engine stopped', body: 'It stopped at step 7' },
    ctx(),
  );
  await caughtUp(last.position);
  const replay = await runCrm(['replay', '--as-of', new Date(Date.now() + 1_000).toISOString(), '--schema', copy, '--reporting-schema', copyReporting], {
    cwd: tmpdir(),
    env,
    timeoutMs: 120_000,
  });
  expect(replay.code, replay.stderr).toBe(0);
}, 180_000);

afterAll(async () => {
  await crm?.close();
  await schemas.dropSchemas();
}, 60_000);

describe('forgetting reaches every copy', () => {
  it('the copy holds the plaintext before the forget (the fixture is meaningful)', async () => {
    const text = await everything(copy);
    for (const secret of [...ADA_SECRETS.slice(0, 3), ...ADA_SECRETS.slice(4)]) expect(text).toContain(secret);
  });

  it('stores company encrypted in the events, like name and email', async () => {
    const { rows } = await sql<{ t: string }>`SELECT data::text AS t FROM ${sql.id(schemas.events, 'events')} WHERE stream = ${`customer-${ada}`}`.execute(
      crm.database.db,
    );
    expect(rows[0]!.t).not.toContain('Lovelace Analytical Engines');
  });

  it('after forget, no plaintext of hers is left in the live and copied read models and reporting views', async () => {
    const forgot = await crm.commands.execute({ type: 'ForgetCustomer', customerId: ada }, ctx());
    await caughtUp(forgot.position);
    for (const schema of [schemas.read, schemas.reporting, copy, copyReporting]) {
      const text = await everything(schema);
      for (const secret of ADA_SECRETS) expect(text, `${secret} in ${schema}`).not.toContain(secret);
    }
    // Her merged duplicate's key is gone too.
    const { rows: keys } = await sql<{ forgotten: boolean }>`
      SELECT data_key IS NULL AS forgotten FROM ${sql.table(`${schemas.events}.customer_keys`)} WHERE customer_id = ${adaAgain}`.execute(crm.database.db);
    expect(keys).toEqual([{ forgotten: true }]);
    // Bob was not forgotten: his copy stays as it was.
    expect(await everything(copy)).toContain('Bob Builder');
    // Her name's sort key too, to the key that lists the forgotten after every name, in the copy as live.
    for (const reporting of [schemas.reporting, copyReporting]) {
      const { rows } = await sql<{
        name: string;
        company: string | null;
        name_sort: string;
      }>`SELECT name, company, name_sort FROM ${sql.id(reporting, 'customers')} WHERE customer_id = ${ada}`.execute(crm.database.db);
      expect(rows, reporting).toEqual([{ name: '[erased]', company: '[erased]', name_sort: ERASED_NAME_SORT }]);
    }
  });

  it('a copy ends with everyone forgotten by then erased: rows a replay wrote after a forget, from events it had decrypted before it', async () => {
    // What a replay racing the forget leaves: the row written after forget_in_copies erased the copy.
    const row = sql.id(copy, 'customers');
    await sql`UPDATE ${row} SET name = 'Ada Lovelace', email = 'ada@example.com' WHERE customer_id = ${ada}`.execute(crm.database.db);
    await eraseForgottenInCopy(crm.database.db, schemas.read, copy, crm.personalData);
    const { rows } = await sql<{ name: string; email: string }>`SELECT name, email FROM ${row} WHERE customer_id = ${ada}`.execute(crm.database.db);
    expect(rows).toEqual([{ name: '[erased]', email: '[erased]' }]);
    // Bob was not forgotten.
    expect(await everything(copy)).toContain('Bob Builder');
    expect(await crm.personalData.forgottenCustomers()).toEqual([ada, adaAgain].sort());
  });

  it('a stored verification result names a differing personal column without keeping its values', async () => {
    // The name, and the match keys made of it; and a duplicate group whose row key is a name's words.
    await sql`UPDATE ${sql.id(schemas.read, 'customers')} SET name = 'Robert Forged', name_key = 'forged robert' WHERE customer_id = ${bob}`.execute(
      crm.database.db,
    );
    await sql`INSERT INTO ${sql.id(schemas.read, 'customer_duplicate_groups')} (reason, match_key, first_customer_id, members)
      VALUES ('name', 'builder bob', ${bob}, 2)`.execute(crm.database.db);
    const job = await crm.audit.startVerification('read_models', 'test');
    await job.done;
    let stored = '';
    for (let i = 0; i < 100 && !stored.includes('columns'); i++) {
      const { rows } = await sql<{
        r: string | null;
      }>`SELECT result::text AS r FROM ${sql.id(schemas.read, 'audit_verifications')} WHERE id = ${job.id}`.execute(crm.database.db);
      stored = rows[0]?.r ?? '';
      if (!stored.includes('columns')) await sleep(100);
    }
    expect(stored).toContain('"column": "name"');
    expect(stored).toContain('"column": "name_key"');
    expect(stored).toContain('"table": "customer_duplicate_groups"');
    expect(stored).toContain(PERSONAL_VALUE);
    for (const value of ['Robert Forged', 'Bob Builder', 'forged robert', 'bob builder', 'builder bob']) expect(stored).not.toContain(value);
    // The API answers the same.
    const served = JSON.stringify((await (await crm.audit.verificationJobs()).get(job.id))?.result);
    expect(served).toContain('customer_duplicate_groups');
    for (const value of ['Robert Forged', 'forged robert', 'builder bob']) expect(served).not.toContain(value);
    // A result stored by an earlier version, with the match keys in clear, is rewritten masked.
    const results = sql.id(schemas.read, 'audit_verifications');
    await sql`UPDATE ${results} SET result = replace(result::text, ${PERSONAL_VALUE}, 'builder bob')::jsonb WHERE id = ${job.id}`.execute(crm.database.db);
    const text = async () => (await sql<{ r: string }>`SELECT result::text AS r FROM ${results} WHERE id = ${job.id}`.execute(crm.database.db)).rows[0]!.r;
    expect(await text()).toContain('builder bob');
    await createVerificationJobs(crm.database.db, schemas.read);
    expect(await text()).not.toContain('builder bob');
    expect(await text()).toContain(PERSONAL_VALUE);
  });
});
