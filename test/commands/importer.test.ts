import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { ZodError } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchCommands, type BatchCommands } from '../../commands/batch.ts';
import { createCrmCommands } from '../../commands/index.ts';
import {
  BATCHES_IN_FLIGHT,
  rowReason,
  runImport,
  NoHeaderRow,
  UnknownImportKind,
  type ImportCounts,
  type ImportOptions,
  type RejectedRow,
} from '../../commands/import/importer.ts';
import { parseRecords, type ImportRecord } from '../../commands/import/parse.ts';
import { RowRejected, rowCommands, type FormerKeys, type ImportKind } from '../../commands/import/rows.ts';
import { createdIdFor } from '../../commands/ids.ts';
import { invalidState } from '../../domain/errors.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { IdempotencyConflict } from '../../eventstore/errors.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas } from '../support/postgres.ts';
import { TEST_CUSTOMER_ID_KEY, importedCustomerId } from '../support/fixtures.ts';

/**
 * The import loop against the real PostgreSQL: line-numbered reasons in line order across batches,
 * rows of several commands, counts and progress after each batch, batches cut at their size, the
 * file's kind, business time and metadata, stops between batches, and faults of the store or of the
 * file ending the import after the batches before them are reported.
 */
const schemas = testSchemas('importer');
let database: SqlDatabase;
let store: EventStore;
let personalData: PersonalData;

beforeAll(async () => {
  database = connectPostgres(schemas.url, { max: 4 });
  store = await createPostgresEventStore(database, { schema: schemas.events });
  personalData = await createPersonalData(database.db, { schema: schemas.events });
});
afterAll(async () => {
  await store?.close();
  await database?.close();
  await schemas.dropSchemas();
});

const actor = { userId: 'crm-import', roles: ['admin'] };
const csv = (lines: string[]) => parseRecords(Readable.from([lines.join('\n')]), 'csv');

/** Runs an import, collecting its refusals and a copy of the counts after each batch. */
const importing = async (batch: BatchCommands, records: AsyncIterable<ImportRecord>, options: Partial<ImportOptions> = {}) => {
  const rejected: RejectedRow[] = [];
  const progress: Omit<ImportCounts, 'rows' | 'kind'>[] = [];
  const outcome = await runImport(batch, records, {
    actor,
    onRejected: (row) => void rejected.push(row),
    onProgress: ({ imported, alreadyPresent, rejected }) => void progress.push({ imported, alreadyPresent, rejected }),
    ...options,
  });
  return { outcome, rejected, progress };
};

/** Customers with unique emails, imported; answers their emails. */
const customers = async (n: number): Promise<string[]> => {
  const emails = Array.from({ length: n }, () => `${randomUUID()}@example.com`);
  const { outcome } = await importing(
    createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
    csv(['name,email', ...emails.map((e, i) => `Customer ${i},${e}`)]),
  );
  expect(outcome).toMatchObject({ kind: 'customers', imported: n, rejected: 0 });
  return emails;
};

const storedOf = async (email: string) => store.readStream(`customer-${importedCustomerId(email)}`);

async function* records(list: (ImportRecord | (() => void))[]): AsyncGenerator<ImportRecord> {
  for (const entry of list) {
    if (typeof entry === 'function') entry();
    else yield entry;
  }
}

describe('import: why a row is refused', () => {
  it('names the field, or the row, for every refusal it can explain, and nothing else', () => {
    expect(rowReason(new RowRejected('customer_id: required'))).toBe('customer_id: required');
    const zod = new ZodError([
      { code: 'custom', path: ['schedule', 'endsAt'], message: 'before the start', input: 1 },
      { code: 'custom', path: [], message: 'at least one field to change', input: 1 },
    ]);
    expect(rowReason(zod)).toBe('schedule.endsAt: before the start; row: at least one field to change');
    expect(rowReason(invalidState('deal.closed', 'Deal is closed', 'dealId'))).toBe('dealId: Deal is closed');
    expect(rowReason(invalidState('deal.closed', 'Deal is closed'))).toBe('Deal is closed');
    expect(rowReason(new IdempotencyConflict('e', 's'))).toBe(
      'row: imported before with different values (a row is imported once and the stored one stays; change it through the API where it can be: a purchase is corrected with a refund)',
    );
    // A second conversion of one customer on one campaign is not a changed row: the campaign keeps the first.
    expect(rowReason(new IdempotencyConflict('e', 's'), { type: 'RecordCampaignResponse', row: {} })).toMatch(
      /^row: this customer's response of this kind to this campaign is recorded already \(a campaign keeps one response of each kind per customer/,
    );
    expect(rowReason(new Error('disk full'))).toBeUndefined();
  });

  it('shows a number the schema refuses as the number: 1e400 in NDJSON reads as Infinity, not "null"', () => {
    // Found with {"amount":1e400}: the reason read 'amount: "null" is refused: ... received Infinity'.
    const zod = new ZodError([{ code: 'invalid_type', expected: 'number', path: ['amount'], message: 'expected number, received Infinity', input: Infinity }]);
    const at = (amount: unknown) => ({ type: 'RecordPurchase' as const, row: { amount } });
    expect(rowReason(zod, at(Infinity))).toBe('amount: "Infinity" is refused: expected number, received Infinity');
    expect(rowReason(zod, at(-Infinity))).toBe('amount: "-Infinity" is refused: expected number, received Infinity');
    expect(rowReason(zod, at(true))).toBe('amount: "true" is refused: expected number, received Infinity');
  });

  it('cuts a long value it quotes between two characters, never inside an emoji', () => {
    const zod = new ZodError([{ code: 'custom', path: ['name'], message: 'too long', input: '' }]);
    const at = (name: string) => ({ type: 'RegisterCustomer' as const, row: { name } });
    const a59 = 'a'.repeat(59);
    expect(rowReason(zod, at(`${a59}\u{1F600}tail`))).toBe(`name: "${a59}..." is refused: too long`);
    expect(rowReason(zod, at(`${a59}b\u{1F600}`))).toBe(`name: "${a59}b..." is refused: too long`);
    // Sixty UTF-16 units: shown whole.
    expect(rowReason(zod, at(`${a59.slice(1)}\u{1F600}`))).toBe(`name: "${a59.slice(1)}\u{1F600}" is refused: too long`);
  });

  it("names a customers row's own id column for a bad id, not its email (a purchase's customer is still its email)", () => {
    // Found with {"name":..,"email":..,"id":"NOT-A-UUID"}: the reason named the email, which was fine.
    const zod = new ZodError([{ code: 'invalid_format', format: 'uuid', path: ['customerId'], message: 'Invalid UUID', input: 'NOT-A-UUID' }]);
    const row = { name: 'Nd12', email: 'nd12@x.example', id: 'NOT-A-UUID' };
    // An old system's id says what to do instead.
    const derived =
      'id: "NOT-A-UUID" is refused: Invalid UUID (ids here are UUIDs: leave the column out (or its cell empty) and an id is derived from the row; keep the old system\'s id in another column, such as source or a tag)';
    expect(rowReason(zod, { type: 'RegisterCustomer', row })).toBe(derived);
    expect(rowReason(zod, { type: 'DeactivateCustomer', row })).toBe(derived);
    expect(rowReason(zod, { type: 'RecordPurchase', row: { customer_id: 'CUST-42' } })).toBe(
      'customer_id: "CUST-42" is refused: Invalid UUID (ids here are UUIDs: name the customer by customer_email instead, or by the id this CRM gave it)',
    );
    expect(rowReason(zod, { type: 'RecordPurchase', row: { customer_email: 'x', id: 'y' } })).toBe('customer_email: "x" is refused: Invalid UUID');
  });
});

describe('import: rows, batches and counts', () => {
  it('reports each refused row with its line and reason, in line order across batches, and counts rows after each batch', async () => {
    const [c0, c1] = await customers(2);
    const { outcome, rejected, progress } = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv([
        'order_id,customer_email,amount,currency,occurred_at',
        `o1,${c0},10.00,USD,2024-01-02`,
        'o2,,5,USD,2024-01-02',
        `o3,${c0},ten,USD,2024-01-02`,
        'o4,nobody@example.com,5,USD,2024-01-02',
        'short',
        `o1,${c0},10.00,USD,2024-01-02`,
        `o1,${c0},12.00,USD,2024-01-02`,
        `o5,${c1},7,USD,2024-01-03`,
      ]),
      { batchSize: 2 },
    );
    expect(outcome).toEqual({ kind: 'purchases', rows: 8, imported: 3, alreadyPresent: 1, rejected: 5, interrupted: false, unreadColumns: [] });
    expect(rejected.map((r) => r.line)).toEqual([3, 4, 5, 6, 8]);
    expect(rejected[0]!.reason).toBe('customer_id: required (or customer_email)');
    expect(rejected[1]!.reason).toMatch(/^amount: /);
    // The file's column and value, not the id the importer derives from the address (it used to read
    // `customerId: Customer <that id> does not exist`).
    expect(rejected[2]!.reason).toBe('customer_email: no customer has the address "nobody@example.com"');
    expect(rejected[3]!.reason).toBe('row: the number of fields differs from the header');
    // The same order again with another amount, within the file: the column that differs, as this file has it.
    expect(rejected[4]!.reason).toMatch(/^row: imported before with different values in amount \("12.00" in this file\) \(a row is imported once/);
    // A column the file lacks (or an empty cell) is said so: zod's "expected string, received undefined" told a clerk nothing.
    const deals = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv(['deal_id,customer_email,amount,currency,owner_id,expected_close_date', `${randomUUID()},${c0},5,EUR,sam,2027-01-31`]),
      { kind: 'deals' },
    );
    expect(deals.rejected).toEqual([{ line: 2, reason: 'title: required: the file has no such column, or its cell is empty' }]);
    // The amount `ten` is refused as the row is read: batches of two hold o1 and o4, o1 again and its conflict, o5.
    expect(progress).toEqual([
      { imported: 1, alreadyPresent: 0, rejected: 4 },
      { imported: 2, alreadyPresent: 1, rejected: 5 },
      { imported: 3, alreadyPresent: 1, rejected: 5 },
    ]);
    // Business time from the file, the line in the metadata.
    const stored = await storedOf(c0!);
    expect(stored.map((e) => e.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded']);
    expect(stored[1]!.data).toMatchObject({ orderId: 'o1', amount: 10, currency: 'USD' });
    expect(stored[1]!.metadata).toMatchObject({
      actor,
      correlationId: 'import:purchases:line-2',
      reason: 'import of purchases (line 2)',
      occurredAt: '2024-01-02T00:00:00.000Z',
    });
  });

  it('records the business time of a row as the time of its events', async () => {
    const email = `${randomUUID()}@example.com`;
    const { outcome } = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv(['name,email,registered_at', `Ada,${email},1997-01-02`]),
    );
    expect(outcome).toMatchObject({ imported: 1 });
    const [registered] = await storedOf(email);
    expect(registered!.metadata).toMatchObject({ occurredAt: '1997-01-02T00:00:00.000Z', correlationId: 'import:customers:line-2' });
    expect(registered!.data).not.toHaveProperty('occurredAt');
  });

  it("refuses a refund dated well before its order's purchase, naming occurred_at, and takes one minutes before (clocks drift)", async () => {
    const [c0] = await customers(1);
    const handler = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    await importing(handler, csv(['order_id,customer_email,amount,currency,occurred_at', `p1,${c0},50,EUR,2024-05-01T10:00:00Z`]));
    const { outcome, rejected } = await importing(
      handler,
      csv([
        'refund_id,order_id,customer_email,amount,currency,occurred_at',
        `r1,p1,${c0},5,EUR,2023-12-31T10:00:00Z`,
        `r2,p1,${c0},5,EUR,2024-05-01T09:57:00Z`,
      ]),
    );
    expect(outcome).toMatchObject({ kind: 'refunds', imported: 1, rejected: 1 });
    expect(rejected).toEqual([
      {
        line: 2,
        reason: expect.stringMatching(/^occurred_at: occurredAt 2023-12-31T10:00:00Z is before the purchase of order p1 \(2024-05-01T10:00:00.000Z\)/),
      },
    ]);
    expect((await storedOf(c0!)).map((e) => e.type)).toEqual(['CustomerRegistered', 'PurchaseRecorded', 'PurchaseRefunded']);
  });

  it('imports a row of several commands when all are stored, and counts it present only when all were', async () => {
    const [c0] = await customers(1);
    const dealId = randomUUID();
    const header = 'deal_id,customer_email,title,amount,currency,owner_id,expected_close_date,stage,opened_at,status,closed_at';
    const open = `${dealId},${c0},Fleet,1200,EUR,sam,2027-09-30,proposal,2024-03-01,open,`;
    const won = `${dealId},${c0},Fleet,1200,EUR,sam,2027-09-30,proposal,2024-03-01,won,2024-08-15`;
    const unknown = `${randomUUID()},nobody@example.com,Pilot,300,EUR,sam,2027-07-31,lead,2024-04-01,won,2024-06-20`;
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    expect((await importing(batch, csv([header, open]))).outcome).toMatchObject({ kind: 'deals', imported: 1, alreadyPresent: 0 });
    // The deal is stored; its outcome is new.
    const second = await importing(batch, csv([header, won, unknown]));
    expect(second.outcome).toMatchObject({ imported: 1, alreadyPresent: 0, rejected: 1 });
    // Both commands of the unknown customer's row are refused: the reason is the first one's.
    expect(second.rejected).toEqual([{ line: 3, reason: 'customer_email: no customer has the address "nobody@example.com"' }]);
    const third = await importing(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }), csv([header, won]));
    expect(third.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    const deal = await store.readStream(`deal-${dealId}`);
    expect(deal.map((e) => e.type)).toEqual(['DealOpened', 'DealWon']);
  });

  it("keeps an open deal's time in its stage, refuses one before the opening naming the column, and knows the deal imported without it", async () => {
    const [c0] = await customers(1);
    const [kept, before, earlier] = [randomUUID(), randomUUID(), randomUUID()];
    const header = 'deal_id,customer_email,title,amount,owner_id,expected_close_date,stage,opened_at,stage_entered_at';
    const batch = () => createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    // Imported by a version that did not read the column: the same rows come back present.
    const first = await importing(
      batch(),
      csv([
        'deal_id,customer_email,title,amount,owner_id,expected_close_date,stage,opened_at',
        `${earlier},${c0},Pilot,300,sam,2027-07-31,qualified,2024-02-01`,
      ]),
    );
    expect(first.outcome).toMatchObject({ imported: 1 });
    const { outcome, rejected } = await importing(
      batch(),
      csv([
        header,
        `${kept},${c0},Fleet,1200,sam,2027-09-30,proposal,2024-03-01,2024-05-20T08:00:00+02:00`,
        `${before},${c0},Vans,900,sam,2027-09-30,proposal,2024-03-01,2024-02-28`,
        `${earlier},${c0},Pilot,300,sam,2027-07-31,qualified,2024-02-01,2024-04-01`,
      ]),
    );
    expect(outcome).toMatchObject({ imported: 2, alreadyPresent: 1, rejected: 1 });
    expect(rejected).toEqual([{ line: 3, reason: expect.stringMatching(/^stage_entered_at: stageEnteredAt 2024-02-28T00:00:00.000Z is before the opening/) }]);
    const [opened] = await store.readStream(`deal-${kept}`);
    expect(opened!.data).toMatchObject({ stage: 'proposal', stageEnteredAt: '2024-05-20T06:00:00.000Z' });
    expect(opened!.metadata).toMatchObject({ occurredAt: '2024-03-01T00:00:00.000Z' });
    expect(await store.readStream(`deal-${before}`)).toEqual([]);
    expect((await store.readStream(`deal-${earlier}`)).map((e) => e.data)).toEqual([expect.not.objectContaining({ stageEnteredAt: expect.anything() })]);
  });

  it("brings activities in on customers and on deals (the deal's customer theirs), a task done at its time, each once", async () => {
    const [c0, c1] = (await customers(2)) as [string, string];
    const dealId = randomUUID();
    const batch = () => createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const deal = await importing(
      batch(),
      csv(['deal_id,customer_email,title,amount,owner_id,expected_close_date,opened_at', `${dealId},${c1},Fleet,1200,sam,2027-09-30,2024-03-01`]),
    );
    expect(deal.outcome).toMatchObject({ imported: 1 });
    const [noted, done, onDeal, unknownDeal] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const file = [
      'activity_id,customer_email,deal_id,kind,subject,body,due_at,completed_at,occurred_at',
      `${noted},${c0},,call,Renewal,Wants the blue one,,,2024-02-01T10:00:00Z`,
      `${done},${c0},,task,Send quote,,2024-02-10T09:00:00Z,2024-02-09T16:00:00Z,2024-02-02`,
      // An export writes the deal's customer beside the deal: the deal says whose it is.
      `${onDeal},${c0},${dealId},meeting,Kick-off,,,,2024-03-05`,
      `${unknownDeal},,${randomUUID()},note,Lost,,,,2024-03-06`,
    ];
    const first = await importing(batch(), csv(file));
    expect(first.outcome).toMatchObject({ kind: 'activities', imported: 3, rejected: 1 });
    expect(first.rejected).toEqual([{ line: 5, reason: expect.stringMatching(/^deal_id: /) }]);
    const [call] = await store.readStream(`activity-${noted}`);
    expect(call).toMatchObject({ type: 'ActivityLogged', metadata: { occurredAt: '2024-02-01T10:00:00Z' } });
    expect(call!.data).toMatchObject({ customerId: importedCustomerId(c0), kind: 'call', subject: 'Renewal' });
    // The body is personal data: stored sealed with the customer's key, as the API stores it.
    expect(JSON.stringify(call!.data)).not.toContain('Wants the blue one');
    expect((await store.readStream(`activity-${done}`)).map((e) => [e.type, e.metadata.occurredAt])).toEqual([
      ['ActivityLogged', '2024-02-02T00:00:00.000Z'],
      ['ActivityCompleted', '2024-02-09T16:00:00Z'],
    ]);
    const [meeting] = await store.readStream(`activity-${onDeal}`);
    expect(meeting!.data).toMatchObject({ dealId, customerId: importedCustomerId(c1) });
    const again = await importing(batch(), csv(file));
    expect(again.outcome).toMatchObject({ imported: 3, alreadyPresent: 3, rejected: 1 });
    expect(await store.readStream(`activity-${done}`)).toHaveLength(2);
    // The export's logged_by is who logged it, the event's actor, which no command takes, and its merged_into
    // the primary of a merged customer, as a purchase's: known, not columns not read. Its figures are named.
    const exported = await importing(
      batch(),
      csv([
        'activity_id,customer_email,kind,subject,occurred_at,logged_by,merged_into,open,overdue',
        `${randomUUID()},${c0},note,Hi,2024-04-01,sam,,false,false`,
      ]),
    );
    expect(exported.outcome).toMatchObject({ imported: 1, rejected: 0, unreadColumns: ['open', 'overdue'] });
  });

  it('decides an activity on its parent as the store holds it now, not as this handler last read it', async () => {
    const [c0] = (await customers(1)) as [string];
    const dealId = randomUUID();
    // One handler for both imports, as `crm serve` keeps one for every HTTP import.
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const file = ['activity_id,deal_id,kind,subject,occurred_at', `${randomUUID()},${dealId},note,Kick-off,2024-03-05`];
    const before = await importing(batch, csv(file));
    expect(before.rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^deal_id: /) }]);
    // The deal is opened elsewhere (the API, another import) after this handler read it as missing.
    const opened = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv(['deal_id,customer_email,title,amount,owner_id,expected_close_date,opened_at', `${dealId},${c0},Fleet,1200,sam,2027-09-30,2024-03-01`]),
    );
    expect(opened.outcome).toMatchObject({ imported: 1 });
    const after = await importing(batch, csv(file));
    expect(after.outcome).toMatchObject({ imported: 1, rejected: 0 });
  });

  it('stores none of a row whose later command a schema refuses: a lost deal does not come in open', async () => {
    const [c0] = await customers(1);
    const dealId = randomUUID();
    const feedbackId = randomUUID();
    const deals = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv([
        'deal_id,customer_email,title,amount,owner_id,expected_close_date,status,lost_reason',
        `${dealId},${c0},Fleet,1200,sam,2027-09-30,lost,"price\u0000"`,
      ]),
    );
    expect(deals.outcome).toMatchObject({ kind: 'deals', imported: 0, rejected: 1 });
    expect(deals.rejected[0]!.reason).toMatch(/^lost_reason: "price\\u0000" is refused: /);
    expect(await store.readStream(`deal-${dealId}`)).toEqual([]);
    const feedback = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv([
        'feedback_id,customer_email,kind,subject,body,resolved_at,resolution',
        `${feedbackId},${c0},complaint,Late,Where is it,2024-01-02,${'x'.repeat(10_001)}`,
      ]),
    );
    expect(feedback.outcome).toMatchObject({ kind: 'feedback', imported: 0, rejected: 1 });
    expect(feedback.rejected[0]!.reason).toMatch(/^resolution: /);
    expect(await store.readStream(`feedback-${feedbackId}`)).toEqual([]);
  });

  it('brings feedback in as it stood: each step of its history an event at the time the file gives, once', async () => {
    const [c0] = await customers(1);
    const [resolved, open] = [randomUUID(), randomUUID()];
    const file = [
      'feedback_id,customer_email,kind,channel,subject,body,priority,submitted_at,status,assignee_id,first_responded_at,resolved_at,closed_at,csat,rated_at',
      `${resolved},${c0},complaint,email,Late,Where is it,high,2019-03-04T10:00:00Z,closed,sue,2019-03-04T12:00:00Z,2019-03-05T09:00:00Z,2019-03-06,4,2019-03-07`,
      `${open},${c0},question,web,Sizes,Do you have XL,,2019-03-08,,,,,,,`,
    ];
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    expect((await importing(batch, csv(file))).outcome).toMatchObject({ kind: 'feedback', imported: 2, rejected: 0 });
    const history = await store.readStream(`feedback-${resolved}`);
    expect(history.map((e) => [e.type, e.metadata.occurredAt])).toEqual([
      ['FeedbackSubmitted', '2019-03-04T10:00:00Z'],
      ['FeedbackAssigned', '2019-03-04T10:00:00Z'],
      ['FeedbackResponded', '2019-03-04T12:00:00Z'],
      ['FeedbackResolved', '2019-03-05T09:00:00Z'],
      ['FeedbackClosed', '2019-03-06T00:00:00.000Z'],
      ['FeedbackRated', '2019-03-07T00:00:00.000Z'],
    ]);
    expect(history[2]!.data).toMatchObject({ responderId: 'sue', firstResponse: true });
    expect(history[5]!.data).toMatchObject({ csat: 4 });
    expect((await store.readStream(`feedback-${open}`)).map((e) => e.type)).toEqual(['FeedbackSubmitted']);
    // Again: every step already present, nothing appended.
    expect((await importing(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }), csv(file))).outcome).toMatchObject({
      imported: 2,
      alreadyPresent: 2,
    });
    expect(await store.readStream(`feedback-${resolved}`)).toHaveLength(6);
  });

  it('knows a row by what its times mean, not by how its file spells them, and a row stored under the key importers before made', async () => {
    const [c0] = await customers(1);
    const batch = () => createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const campaignId = randomUUID();
    expect((await importing(batch(), csv(['campaign_id,name,channel,budget', `${campaignId},Keys,email,100`]))).outcome).toMatchObject({ imported: 1 });
    // Each kind whose key holds a time: as a file writes it, then as a spreadsheet re-saved it (`;`, day first) or an export writes it.
    const files: [ImportKind, string, string, string, string][] = [
      [
        'deals',
        'title,customer_email,amount,currency,expected_close_date,opened_at,owner_id',
        `Wartungsvertrag,${c0},2400,EUR,2024-12-31,2024-06-01,sam`,
        `Wartungsvertrag;${c0};2400;EUR;31.12.2024;01.06.2024;sam`,
        `Wartungsvertrag,${c0},2400,EUR,2024-12-31,2024-06-01T00:00:00.000Z,sam`,
      ],
      [
        'feedback',
        'customer_email,kind,subject,body,submitted_at',
        `${c0},complaint,Late,Where is it,2024-03-15T01:00:00+01:00`,
        `${c0};complaint;Late;Where is it;15.03.2024`,
        `${c0},complaint,Late,Where is it,2024-03-15T00:00:00.000Z`,
      ],
      [
        'activities',
        'customer_email,kind,subject,occurred_at',
        `${c0},call,Renewal,2024-03-15T11:00:00+01:00`,
        `${c0};call;Renewal;15.03.2024 10:00`,
        `${c0},call,Renewal,2024-03-15T10:00:00Z`,
      ],
      [
        'costs',
        'campaign_id,amount,description,occurred_at',
        `${campaignId},40,Banner,2024-03-15T01:00:00+01:00`,
        `${campaignId};40;Banner;15.03.2024`,
        `${campaignId},40,Banner,2024-03-15`,
      ],
    ];
    /** The streams holding the first command of each row the file's kind has so far, by their first event. */
    const firstEvents = async (kind: ImportKind) => {
      const events = await store.readAll();
      const type = { deals: 'DealOpened', feedback: 'FeedbackSubmitted', activities: 'ActivityLogged', costs: 'CampaignCostRecorded' }[kind as string];
      return events.filter((e) => e.type === type && String(e.metadata.correlationId).startsWith(`import:${kind}:`)).length;
    };
    for (const [kind, header, written, resaved, exported] of files) {
      const before = await firstEvents(kind);
      expect((await importing(batch(), csv([header, written]), { kind })).outcome, kind).toMatchObject({ imported: 1, alreadyPresent: 0 });
      for (const again of [resaved, exported]) {
        const { outcome, rejected } = await importing(batch(), csv([again.includes(';') ? header.replaceAll(',', ';') : header, again]), { kind });
        expect({ kind, outcome, rejected }).toMatchObject({ kind, outcome: { imported: 1, alreadyPresent: 1 }, rejected: [] });
      }
      expect({ kind, stored: (await firstEvents(kind)) - before }).toEqual({ kind, stored: 1 });
    }
    // Stored as importers before keyed rows (a time as the file wrote it): the same file, its re-saved
    // copy and its export are that row. Written here as they stored it: the commands the row made so.
    const storedAsBefore = async (kind: ImportKind, header: string, line: string, formerKeys: FormerKeys) => {
      const columns = header.split(',');
      const cells = line.split(',');
      const row = Object.fromEntries(columns.map((c, i) => [c, cells[i]]));
      const commands = rowCommands[kind](row, { customerIdFor: importedCustomerId, formerKeys });
      const outcomes = await batch().executeBatch(
        commands.map((c) => ({
          command: c.command,
          ctx: {
            actor,
            correlationId: `import:${kind}:line-2`,
            idempotencyKey: c.key,
            ...(c.occurredAt ? { occurredAt: c.occurredAt } : {}),
            fingerprint: { byMeaning: true as const },
          },
        })),
      );
      expect(outcomes.every((o) => o.ok && !o.alreadyDone)).toBe(true);
      return commands[0]!;
    };
    const [, dealHeader, dealRow, dealResaved, dealExported] = files[0]!;
    const deal = dealRow.replace('Wartungsvertrag', 'Servicevertrag');
    const former = await storedAsBefore('deals', dealHeader, deal, 'written');
    for (const again of [deal, dealResaved.replace('Wartungsvertrag', 'Servicevertrag'), dealExported.replace('Wartungsvertrag', 'Servicevertrag')]) {
      const { outcome, rejected } = await importing(batch(), csv([again.includes(';') ? dealHeader.replaceAll(',', ';') : dealHeader, again]), {
        kind: 'deals',
      });
      expect({ again, outcome, rejected }).toMatchObject({ again, outcome: { imported: 1, alreadyPresent: 1 }, rejected: [] });
    }
    expect(await store.readStream(`deal-${createdIdFor('OpenDeal', former.key)}`)).toHaveLength(1);
    const [, feedbackHeader, feedbackRow] = files[1]!;
    const item = feedbackRow.replace('Late', 'Broken');
    const formerItem = await storedAsBefore('feedback', feedbackHeader, item, 'written');
    expect((await importing(batch(), csv([feedbackHeader, item]), { kind: 'feedback' })).outcome).toMatchObject({ imported: 1, alreadyPresent: 1 });
    expect(await store.readStream(`feedback-${createdIdFor('SubmitFeedback', formerItem.key)}`)).toHaveLength(1);
  });

  it('brings an inactive customer in inactive and refuses a merged one, as an exported customers file holds them', async () => {
    const [inactive, merged] = [`${randomUUID()}@example.com`, `${randomUUID()}@example.com`];
    const file = ['name,email,status,merged_into,deactivated_at', `Ida,${inactive},inactive,,2020-05-06`, `Max,${merged},merged,${randomUUID()},`];
    const { outcome, rejected } = await importing(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }), csv(file));
    expect(outcome).toMatchObject({ kind: 'customers', imported: 1, rejected: 1 });
    expect(rejected[0]).toMatchObject({ line: 3, reason: expect.stringMatching(/^merged_into: merged into /) });
    expect((await storedOf(inactive)).map((e) => [e.type, e.metadata.occurredAt])).toEqual([
      ['CustomerRegistered', expect.any(String)],
      ['CustomerDeactivated', '2020-05-06T00:00:00.000Z'],
    ]);
    expect(await storedOf(merged)).toEqual([]);
    // Its history comes after it: a deal opened before the deactivation is taken, one opened after it refused.
    const [before, after] = [randomUUID(), randomUUID()];
    const deals = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv([
        'deal_id,customer_email,title,amount,currency,owner_id,expected_close_date,opened_at',
        `${before},${inactive},Fleet,1200,EUR,sam,2020-09-30,2020-02-01`,
        `${after},${inactive},Fleet,1200,EUR,sam,2021-09-30,2021-02-01`,
      ]),
    );
    expect(deals.outcome).toMatchObject({ kind: 'deals', imported: 1, rejected: 1 });
    expect(deals.rejected).toEqual([{ line: 3, reason: expect.stringMatching(/^customer_email: .* is deactivated \(since 2020-05-06T00:00:00.000Z\)/) }]);
  });

  it('takes a purchases and refunds export imported again into its store as present: merged duplicates and forgotten customers included', async () => {
    const [primary, duplicate, forgotten] = (await customers(3)).map(importedCustomerId);
    const rows = [`${primary},p-1,10,EUR,,2024-01-01`, `${duplicate},d-1,20,EUR,${primary},2024-01-02`, `${forgotten},f-1,30,EUR,,2024-01-03`];
    const file = ['customer_id,order_id,amount,currency,merged_into,occurred_at', ...rows];
    const refunds = ['customer_id,order_id,refund_id,amount,currency,merged_into,occurred_at', `${duplicate},d-1,r-1,5,EUR,${primary},2024-02-01`];
    const batch = () => createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    expect((await importing(batch(), csv(file))).outcome).toMatchObject({ imported: 3, rejected: 0, unreadColumns: [] });
    expect((await importing(batch(), csv(refunds))).outcome).toMatchObject({ imported: 1, rejected: 0, unreadColumns: [] });
    const api = createCrmCommands({ store, personalData });
    const ctx = { actor, correlationId: 'test' };
    await api.execute({ type: 'MergeCustomer', customerId: primary!, duplicateId: duplicate! }, ctx);
    await api.execute({ type: 'ForgetCustomer', customerId: forgotten! }, ctx);
    const streams = async () => Promise.all([primary!, duplicate!, forgotten!].map(async (id) => (await store.readStream(`customer-${id}`)).length));
    const before = await streams();

    for (const again of [file, refunds]) {
      const { outcome, rejected } = await importing(batch(), csv(again));
      expect(rejected).toEqual([]);
      expect(outcome).toMatchObject({ imported: again.length - 1, alreadyPresent: again.length - 1, rejected: 0 });
    }
    // The advice of a merged customer's refusal followed (the primary named instead): the same purchase.
    const onPrimary = await importing(batch(), csv(['customer_id,order_id,amount,currency,occurred_at', `${primary},d-1,20,EUR,2024-01-02`]));
    expect(onPrimary.outcome).toMatchObject({ imported: 1, alreadyPresent: 1, rejected: 0 });
    expect(await streams()).toEqual(before);
  });

  it("an imported unsubscribe is history: it withdraws no consent (the customers file's stands), where the API's does", async () => {
    const email = `${randomUUID()}@example.com`;
    const batch = () => createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    expect((await importing(batch(), csv(['name,email,marketing_consent', `Una,${email},yes`]))).outcome).toMatchObject({ imported: 1 });
    const api = createCrmCommands({ store, personalData });
    const ctx = { actor, correlationId: 'test' };
    const campaignId = randomUUID();
    await api.execute({ type: 'CreateCampaign', campaignId, name: 'Spring', channel: 'email', budget: 10, currency: 'EUR' }, ctx);
    await api.execute({ type: 'LaunchCampaign', campaignId }, ctx);
    const file = [
      'campaign_id,customer_email,response,occurred_at',
      `${campaignId},${email},sent,2024-04-01`,
      `${campaignId},${email},unsubscribed,2024-04-02`,
    ];
    expect((await importing(batch(), csv(file))).outcome).toMatchObject({ imported: 2, rejected: 0 });
    const consent = async () => (await storedOf(email)).filter((e) => e.type === 'CustomerMarketingConsentChanged');
    expect(await consent()).toEqual([]);
    // The same unsubscribe through the API withdraws it.
    const second = randomUUID();
    await api.execute({ type: 'CreateCampaign', campaignId: second, name: 'Summer', channel: 'email', budget: 10, currency: 'EUR' }, ctx);
    await api.execute({ type: 'LaunchCampaign', campaignId: second }, ctx);
    await api.execute({ type: 'RecordCampaignResponse', campaignId: second, customerId: importedCustomerId(email), kind: 'unsubscribed' }, ctx);
    expect((await consent()).map((e) => e.data)).toEqual([expect.objectContaining({ marketingConsent: false })]);
  });

  it('quotes a refused number as the file wrote it, with its decimal comma', async () => {
    const [email] = await customers(1);
    const { outcome, rejected } = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      csv(['customer_email;order_id;amount;currency', `${email};dc-1;12,34567;EUR`, `${email};dc-2;12,5;EUR`]),
    );
    expect(outcome).toMatchObject({ imported: 1, rejected: 1 });
    expect(rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^amount: "12,34567" is refused: /) }]);
  });

  it('cuts batches at their size: a batch holds exactly batchSize commands', async () => {
    const real = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const sizes: number[] = [];
    const batch: BatchCommands = { ...real, submitBatch: (items) => (sizes.push(items.length), real.submitBatch(items)) };
    const emails = Array.from({ length: 7 }, () => `${randomUUID()}@example.com`);
    const { outcome } = await importing(batch, csv(['name,email', ...emails.map((e) => `C,${e}`)]), { batchSize: 3 });
    expect(outcome).toMatchObject({ rows: 7, imported: 7 });
    expect(sizes).toEqual([3, 3, 1]);
  });

  /** A batch handler that records each batch's size and answers every command as imported, deciding nothing. */
  const batchSizesOnly = () => {
    const sizes: number[] = [];
    const batch: BatchCommands = {
      ...createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      submitBatch: (items) => {
        sizes.push(items.length);
        return Promise.resolve({ outcomes: Promise.resolve(items.map(() => ({ ok: true as const, stream: '', eventIds: [], alreadyDone: false }))) });
      },
    };
    return { batch, sizes };
  };

  it('cuts batches of 1,000 commands unless told otherwise', async () => {
    const { batch, sizes } = batchSizesOnly();
    const rows = Array.from({ length: 1_001 }, (_, i) => `C ${i},c${i}@example.com`);
    expect((await importing(batch, csv(['name,email', ...rows]))).outcome).toMatchObject({ rows: 1_001, imported: 1_001 });
    expect(sizes).toEqual([1_000, 1]);
  });

  it('counts the streams a batch addresses once: rows about streams already in the batch do not end it', async () => {
    const { batch, sizes } = batchSizesOnly();
    // 1,000 customers (as many streams as one append takes), then one more order of the first.
    const ids = Array.from({ length: 1_000 }, () => randomUUID());
    const rows = [...ids.map((id, i) => `o${i},${id},5`), `o-again,${ids[0]},5`];
    expect((await importing(batch, csv(['order_id,customer_id,amount', ...rows]), { batchSize: 5_000 })).outcome).toMatchObject({ imported: 1_001 });
    expect(sizes).toEqual([1_001]);
  });

  it('reports the refusals of a batch after those of the batch before, even when reporting them takes a while', async () => {
    const real = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const submitted: Promise<unknown>[] = [];
    const batch: BatchCommands = {
      ...real,
      submitBatch: async (items) => {
        const s = await real.submitBatch(items);
        submitted.push(s.outcomes);
        return s;
      },
    };
    // Resolves once the second batch is stored and a turn of the event loop has passed: long enough for its report to run.
    const secondStored = async () => {
      while (submitted.length < 2) await new Promise((resolve) => setImmediate(resolve));
      await submitted[1];
      await new Promise((resolve) => setImmediate(resolve));
    };
    const lines: number[] = [];
    const emails = Array.from({ length: 4 }, () => `${randomUUID()}@example.com`);
    await runImport(batch, csv(['name,email', 'Bad,broken-1', `C,${emails[0]}`, 'Bad,broken-2', `C,${emails[1]}`, `C,${emails[2]}`, `C,${emails[3]}`]), {
      actor,
      batchSize: 2,
      onRejected: async (row) => {
        // The first refusal is written slowly: the next batch is stored meanwhile.
        if (row.line === 2) await secondStored();
        lines.push(row.line);
      },
    });
    expect(lines).toEqual([2, 4]);
  }, 20_000);

  it('keeps one batch being stored while the next ones are decided, and no more than BATCHES_IN_FLIGHT in all', async () => {
    const submits: number[] = [];
    let appends = 0;
    let stored = 0;
    let submittedAll!: () => void;
    const all = new Promise<void>((resolve) => (submittedAll = resolve));
    const gated: EventStore = {
      ...store,
      engine: store.engine,
      appendToStreams: async (appends_, options) => {
        // The first append waits until the next batches are decided: they are decided while this one is stored.
        if ((appends += 1) === 1) await all;
        const results = await store.appendToStreams(appends_, options);
        stored += 1;
        return results;
      },
    };
    const real = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: gated, personalData });
    const batch: BatchCommands = {
      ...real,
      submitBatch: async (items) => {
        submits.push(stored);
        const submitted = await real.submitBatch(items);
        if (submits.length === BATCHES_IN_FLIGHT) submittedAll();
        return submitted;
      },
    };
    const emails = Array.from({ length: 10 }, () => `${randomUUID()}@example.com`);
    const { outcome } = await importing(batch, csv(['name,email', ...emails.map((e) => `C,${e}`)]), { batchSize: 2 });
    expect(outcome).toMatchObject({ rows: 10, imported: 10 });
    // Batch n + BATCHES_IN_FLIGHT is submitted once batch n is stored; the ones before it while the first is stored.
    expect(submits.length).toBe(5);
    submits.forEach((storedBefore, n) => expect(storedBefore).toBeGreaterThanOrEqual(n - BATCHES_IN_FLIGHT + 1));
    expect(submits.slice(0, BATCHES_IN_FLIGHT)).toEqual(Array(BATCHES_IN_FLIGHT).fill(0));
  }, 20_000);
});

describe('import: the kind of file', () => {
  it('tells the kind from the first row, or takes the one given, and refuses a file it cannot tell', async () => {
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    await expect(importing(batch, csv(['colour,size', 'red,9']))).rejects.toBeInstanceOf(UnknownImportKind);
    await expect(importing(batch, csv(['colour,size', 'red,9']))).rejects.toHaveProperty(
      'message',
      'Cannot tell the kind of file from its columns; name it (one of customers, purchases, refunds, deals, campaigns, responses, costs, feedback, activities). ' +
        'Customers need "name" and "email", purchases "order_id" and "amount".',
    );
    // A first row that cannot be read is reported, and the next one tells the kind (the whole file was
    // refused as of no known kind, its header notwithstanding).
    const unreadableFirst = await importing(
      batch,
      records([
        { line: 2, unreadable: 'row: not valid JSON' },
        { line: 3, row: { name: 'Una Readable', email: 'una-readable@example.com' } },
      ]),
    );
    expect(unreadableFirst.outcome).toMatchObject({ kind: 'customers', rows: 2, imported: 1, rejected: 1 });
    expect(unreadableFirst.rejected).toEqual([{ line: 2, reason: 'row: not valid JSON' }]);
    const onlyUnreadable = await importing(batch, records([{ line: 2, unreadable: 'row: not valid JSON' }]));
    expect(onlyUnreadable.outcome).toMatchObject({ kind: undefined, rows: 1, rejected: 1 });
    // A first line that names none of a customers file's columns is no header: a file without one (its
    // first customer's cells were reported, and kept with an HTTP import's job, as columns not read).
    await expect(importing(batch, csv(['colour,size', 'red,9']), { kind: 'customers' })).rejects.toThrow(
      /^The first line names none of the columns of a customers file \(such as .*\): the file needs a header row/,
    );
    const headerless = importing(batch, csv(['Henrietta Headerless,henrietta@example.com,+44 20 7946 7777', 'Other Row,other@example.com,']), {
      kind: 'customers',
    });
    await expect(headerless).rejects.toBeInstanceOf(NoHeaderRow);
    await expect(headerless).rejects.not.toThrow(/henrietta/i);
    // Columns a customers file has no use for, beside its own: named, since their cells were left out.
    const given = await importing(batch, csv(['name,email,colour,size', 'Cole Colour,cole-colour@example.com,red,9']), { kind: 'customers' });
    expect(given.outcome).toMatchObject({ kind: 'customers', rows: 1, rejected: 0, imported: 1 });
    expect(given.outcome.unreadColumns).toEqual(['colour', 'size']);
    // Named like members of every object: columns as any other (`__proto__` went unreported).
    const objectNames = await importing(batch, csv(['name,email,__proto__,constructor', 'Pat Proto,pat-proto@example.com,x,y']));
    expect(objectNames.outcome).toMatchObject({ kind: 'customers', imported: 1, unreadColumns: ['__proto__', 'constructor'] });
    // Empty header cells at the end (a spreadsheet's `;;`) name no column: nothing to report.
    const trailing = await importing(batch, csv(['name,email,,', 'Eve Empty,eve-empty@example.com,,']));
    expect(trailing.outcome).toMatchObject({ kind: 'customers', imported: 1, rejected: 0, unreadColumns: [] });
    // A value typed under one is named by its position: it was dropped without a word. The rows come in, as with any column not read.
    const typed = await importing(
      batch,
      csv(['name;email;registered_at;', 'Tom Typed;tom-typed@example.com;2024-01-01;call back!', 'Una Untyped;una-untyped@example.com;2024-01-01;']),
    );
    expect(typed.outcome).toMatchObject({ kind: 'customers', imported: 2, rejected: 0, unreadColumns: ['a column without a header (column 4)'] });
    // In any row, not only those whose columns make the file's.
    const late = Array.from({ length: 1_001 }, (_, i) => `Late ${i},late-${i}@example.com,${i === 1_000 ? 'note' : ''}`);
    expect((await importing(batch, csv(['name,email,', ...late]))).outcome).toMatchObject({
      imported: 1_001,
      unreadColumns: ['a column without a header (column 3)'],
    });
    // A column of the kind that no row needed (a deactivation's, on active customers only) is not unknown.
    const active = await importing(batch, csv(['name,email,status,deactivated_at,deactivation_reason', 'Ann Active,ann-active@example.com,active,,']));
    expect(active.outcome).toMatchObject({ kind: 'customers', imported: 1, unreadColumns: [] });
    // An empty file: the kind given, else none (it said customers, whatever the file was); one (empty) progress report.
    expect((await importing(batch, records([]), { kind: 'purchases' })).outcome).toEqual({
      kind: 'purchases',
      rows: 0,
      imported: 0,
      alreadyPresent: 0,
      rejected: 0,
      interrupted: false,
      unreadColumns: [],
    });
    const empty = await importing(batch, records([]));
    expect(empty.outcome.kind).toBeUndefined();
    expect(empty.progress).toEqual([{ imported: 0, alreadyPresent: 0, rejected: 0 }]);
  });
});

describe('import: stops and faults', () => {
  it('stops on a signal before the next row: the refusals read so far are reported, the unsent rows are not stored', async () => {
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const stopped = new AbortController();
    stopped.abort();
    const none = await importing(batch, csv(['name,email', `Ada,${randomUUID()}@example.com`]), { signal: stopped.signal });
    expect(none.outcome).toMatchObject({ interrupted: true, rows: 0, imported: 0 });
    expect(none.progress).toEqual([]);
    // Stopped at its first row, a refunds file says it is one (it said customers).
    const refunds = await importing(batch, csv(['refund_id,order_id,customer_email,amount', `R-1,O-1,${randomUUID()}@example.com,5`]), {
      signal: stopped.signal,
    });
    expect(refunds.outcome).toMatchObject({ kind: 'refunds', interrupted: true, rows: 0 });

    const controller = new AbortController();
    const email = `${randomUUID()}@example.com`;
    const partial = await importing(
      batch,
      records([
        { line: 2, unreadable: 'row: the number of fields differs from the header' },
        { line: 3, row: { name: 'Ada', email } },
        () => controller.abort(),
        { line: 4, row: { name: 'Bob', email: `${randomUUID()}@example.com` } },
      ]),
      { kind: 'customers', signal: controller.signal },
    );
    expect(partial.outcome).toMatchObject({ interrupted: true, rows: 2, imported: 0, rejected: 1 });
    expect(partial.rejected).toEqual([{ line: 2, reason: 'row: the number of fields differs from the header' }]);
    expect(await storedOf(email)).toEqual([]);
  });

  it('a store fault ends the import after the batches before it are reported', async () => {
    let calls = 0;
    const failing: EventStore = {
      ...store,
      engine: store.engine,
      appendToStreams: async (appends, options) => {
        if ((calls += 1) === 2) throw new Error('disk full');
        return store.appendToStreams(appends, options);
      },
    };
    const rejected: RejectedRow[] = [];
    const emails = Array.from({ length: 6 }, () => `${randomUUID()}@example.com`);
    await expect(
      runImport(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: failing, personalData }),
        csv(['name,email', 'Bad,broken', ...emails.map((e) => `C,${e}`)]),
        {
          actor,
          batchSize: 2,
          onRejected: (row) => void rejected.push(row),
        },
      ),
    ).rejects.toHaveProperty('message', 'disk full');
    expect(rejected).toEqual([{ line: 2, reason: expect.stringMatching(/^email: /) }]);
    expect(await storedOf(emails[0]!)).toHaveLength(1);
    expect(await storedOf(emails[2]!)).toEqual([]);
  });

  it('a store fault on the last batch fails the import', async () => {
    let calls = 0;
    const failing: EventStore = {
      ...store,
      engine: store.engine,
      appendToStreams: async (appends) => {
        if ((calls += 1) === 1) throw new Error('disk full');
        return store.appendToStreams(appends);
      },
    };
    await expect(
      importing(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: failing, personalData }),
        csv(['name,email', `Ada,${randomUUID()}@example.com`]),
      ),
    ).rejects.toHaveProperty('message', 'disk full');
  });

  it('a file that fails while read ends the import once the batches sent are reported', async () => {
    const rejected: RejectedRow[] = [];
    const emails = [`${randomUUID()}@example.com`, `${randomUUID()}@example.com`];
    const failingFile = records([
      { line: 2, row: { name: 'Bad', email: 'broken' } },
      { line: 3, row: { name: 'Ada', email: emails[0] } },
      { line: 4, row: { name: 'Bob', email: emails[1] } },
      () => {
        throw new Error('connection closed');
      },
    ]);
    await expect(
      runImport(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }), failingFile, {
        actor,
        batchSize: 2,
        onRejected: (row) => void rejected.push(row),
      }),
    ).rejects.toHaveProperty('message', 'connection closed');
    expect(rejected.map((r) => r.line)).toEqual([2]);
    expect(await storedOf(emails[0]!)).toHaveLength(1);
  });

  it('a file that cannot be read past a line ends the import there: the rows before it are stored, the line is reported', async () => {
    const emails = [`${randomUUID()}@example.com`, `${randomUUID()}@example.com`, `${randomUUID()}@example.com`];
    const reason = 'file: cannot be read from this line on (Quote Not Closed)';
    const { outcome, rejected } = await importing(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData }),
      records([
        { line: 2, row: { name: 'Bad', email: 'broken' } },
        { line: 3, row: { name: 'Ada', email: emails[0] } },
        { line: 4, row: { name: 'Bob', email: emails[1] } },
        { line: 5, unreadableRest: reason },
        { line: 6, row: { name: 'Lin', email: emails[2] } },
      ]),
      { batchSize: 2 },
    );
    // The unreadable line is reported, but it is no row read and no row refused (it was counted as both).
    expect(outcome).toMatchObject({ interrupted: false, rows: 3, imported: 2, rejected: 1, unreadableFrom: { line: 5, reason } });
    expect(rejected).toEqual([
      { line: 2, reason: expect.stringMatching(/^email: /) },
      { line: 5, reason },
    ]);
    expect(await storedOf(emails[1]!)).toHaveLength(1);
    expect(await storedOf(emails[2]!)).toEqual([]);
  });

  it('a refusal it cannot explain is a fault, not a refused row', async () => {
    const real = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData });
    const batch: BatchCommands = {
      ...real,
      submitBatch: async (items) => {
        const submitted = await real.submitBatch(items);
        return { outcomes: submitted.outcomes.then((outcomes) => outcomes.map(() => ({ ok: false as const, error: new Error('unexpected') }))) };
      },
    };
    await expect(importing(batch, csv(['name,email', `Ada,${randomUUID()}@example.com`]))).rejects.toHaveProperty('message', 'unexpected');
  });
});
