import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catchUp } from '../../projections/catch-up.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';
import { eraseInCopies, registerReadModelCopy } from '../../projections/read-model-copies.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { createHarness, type Harness } from './support.ts';

let h: Harness;
const projections = readModelProjections();

beforeAll(async () => {
  h = await createHarness('forget');
  await migrateProjections(h.database.db, h.schemas.read, projections);
});

afterAll(async () => {
  await h?.close();
});

const q0 = () => createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
/** Up to the last command's events, even while a writer elsewhere holds the feed's horizon back. */
const project = () => catchUp({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, untilPosition: h.lastPosition() });

/**
 * The order is forced, not left to a live runner's timing: the read models hold the plaintext
 * before the forget is applied, so only the projections' own handling of CustomerForgotten can
 * erase it. (Projected after the forget, the registration already decodes as `[erased]`.)
 */
describe('forgetting a customer the read models already show', () => {
  it('erases every personal field the read models hold, in each table, once the forget is applied', async () => {
    const customerId = randomUUID();
    const feedbackId = randomUUID();
    const dealId = randomUUID();
    await h.run({
      type: 'RegisterCustomer',
      customerId,
      name: 'Dora Plain',
      email: 'dora@plain.example',
      phone: '+49 30 123456',
      company: 'Plain GmbH',
      tags: ['vip'],
    });
    await h.run({ type: 'RecordPurchase', customerId, orderId: 'd-1', amount: 42, currency: 'EUR' });
    await h.run({
      type: 'SubmitFeedback',
      feedbackId,
      customerId,
      kind: 'complaint',
      channel: 'email',
      subject: 'Dora cannot log in',
      body: 'Call Dora on +49 30 123456',
      priority: 'normal',
      csat: null,
      nps: null,
    });
    await h.run({ type: 'OpenDeal', dealId, customerId, title: 'Dora renewal', amount: 100, currency: 'EUR', ownerId: 'ann', expectedCloseDate: '2026-06-30' });
    const callId = randomUUID();
    const taskId = randomUUID();
    await h.run({ type: 'LogActivity', activityId: callId, customerId, kind: 'call', subject: 'Support call', body: 'Dora Plain rang from +49 30 123456' });
    await h.run({
      type: 'LogActivity',
      activityId: taskId,
      dealId,
      kind: 'task',
      subject: 'Send the renewal quote',
      body: 'Mail dora@plain.example',
      dueAt: '2026-06-01T09:00:00Z',
    });
    await project();
    expect(await q0().getActivity(taskId)).toMatchObject({ body: 'Mail dora@plain.example', customerId, dealId });

    const q = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
    // Precondition: the plaintext really is in the read models now.
    expect(await q.getCustomer(customerId)).toMatchObject({ name: 'Dora Plain', email: 'dora@plain.example' });
    const plaintext = /Dora Plain|dora@plain\.example|123456/;
    const dump = async () => {
      const out: string[] = [];
      for (const table of projections.flatMap((p) => p.tables)) {
        const { rows } = await sql<Record<string, unknown>>`SELECT * FROM ${sql.id(h.schemas.read, table)}`.execute(h.database.db);
        out.push(...rows.map((row) => `${table}: ${JSON.stringify(row)}`));
      }
      return out;
    };
    expect((await dump()).some((row) => plaintext.test(row))).toBe(true);

    await h.run({ type: 'ForgetCustomer', customerId });
    await project();
    expect(await q.getCustomer(customerId)).toMatchObject({ name: '[erased]', email: '[erased]', phone: '[erased]', status: 'forgotten' });
    expect((await dump()).filter((row) => plaintext.test(row))).toEqual([]);
    // Activities keep what is not personal: kind, subject, due time; the body reads erased.
    expect(await q.getActivity(callId)).toMatchObject({ kind: 'call', subject: 'Support call', body: '[erased]' });
    expect(await q.getActivity(taskId)).toMatchObject({
      kind: 'task',
      subject: 'Send the renewal quote',
      body: '[erased]',
      dueAt: '2026-06-01T09:00:00.000Z',
      open: true,
    });
  });
});

describe('forgetting a customer in a replay copy', () => {
  it('erases a copy made by a version without name_sort (customers before version 13), the columns it has', async () => {
    // A copy as `crm replay` made it before name_sort: the customers table of that version.
    const copy = `${h.schemas.read}_old_copy`;
    const customerId = randomUUID();
    await sql`CREATE SCHEMA ${sql.id(copy)}`.execute(h.database.db);
    await sql`CREATE TABLE ${sql.id(copy, 'customers')} (customer_id uuid PRIMARY KEY, name text NOT NULL, email text NOT NULL,
      email_search text NOT NULL, name_search text NOT NULL, phone text, company text)`.execute(h.database.db);
    await sql`INSERT INTO ${sql.id(copy, 'customers')} VALUES (${customerId}, 'Old Copy', 'old@copy.example', 'old@copy.example', 'old copy', '+4912', null)`.execute(
      h.database.db,
    );
    await registerReadModelCopy(h.database.db, h.schemas.read, { schema: copy, purpose: 'replay' });
    await eraseInCopies(h.database.db, h.schemas.read, [customerId], copy);
    const { rows } = await sql`SELECT name, email, email_search, name_search, phone, company FROM ${sql.id(copy, 'customers')}`.execute(h.database.db);
    expect(rows).toEqual([{ name: '[erased]', email: '[erased]', email_search: '[erased]', name_search: '[erased]', phone: '[erased]', company: null }]);
  });
});
