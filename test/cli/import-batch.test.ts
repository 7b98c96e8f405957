import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { importFile } from '../../cli/import.ts';
import { createBatchCommands } from '../../commands/batch.ts';
import { BATCHES_IN_FLIGHT, runImport } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { rowCommands, type ImportKind } from '../../commands/import/rows.ts';
import { WrongExpectedRevision } from '../../eventstore/errors.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { Readable } from 'node:stream';
import { newestPosition, storedEvents } from '../support/events.ts';
import { TEST_CUSTOMER_ID_KEY, importedCustomerId } from '../support/fixtures.ts';

/**
 * The batch importer against the real PostgreSQL: the same outcome as the rows sent one by one
 * through the command handlers, bad rows reported at batch boundaries, and API writes to the same
 * customers during an import neither lost nor surfaced as conflicts.
 */
const folder = mkdtempSync(join(tmpdir(), 'crm-import-batch-'));
const opened: { runtime: CrmRuntime; schemas: TestSchemas }[] = [];

const open = async (label: string): Promise<CrmRuntime> => {
  const schemas = testSchemas(label);
  const runtime = await openCrm(
    loadConfig(
      {
        DATABASE_URL: schemas.url,
        CRM_EVENTS_SCHEMA: schemas.events,
        CRM_READ_SCHEMA: schemas.read,
        CRM_REPORTING_SCHEMA: schemas.reporting,
        CRM_PROJECTIONS: 'off',
        LOG_LEVEL: 'warn',
      },
      folder,
    ),
  );
  opened.push({ runtime, schemas });
  return runtime;
};

afterAll(async () => {
  for (const { runtime, schemas } of opened) {
    await runtime.close();
    await schemas.dropSchemas();
  }
  rmSync(folder, { recursive: true, force: true });
});

const admin = { userId: 'crm-import', roles: ['admin'] };

const customersCsv = (n: number, bad: Set<number> = new Set()) =>
  [
    'name,email,phone,company,tags,marketing_consent,registered_at',
    ...Array.from({ length: n }, (_, i) =>
      bad.has(i)
        ? `Bad ${i},not-an-email-${i},,,,no,1997-01-02`
        : `Customer ${i},c${i}@example.com,+1 555 ${1000 + i},Co ${i % 3},vip;b2b,${i % 2 ? 'yes' : 'no'},1997-01-${String(1 + (i % 28)).padStart(2, '0')}`,
    ),
  ].join('\n');

const purchasesCsv = (n: number, customers: number) =>
  [
    'order_id,customer_email,amount,currency,occurred_at',
    ...Array.from(
      { length: n },
      (_, i) => `o${i},c${(i * 7) % customers}@example.com,${(10 + (i % 13) * 1.25).toFixed(2)},USD,1997-${String(2 + (i % 10)).padStart(2, '0')}-15`,
    ),
  ].join('\n');

const reportOf = (path: string) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => ({ line: Number(line.split(',')[0]), reason: line.slice(line.indexOf(',') + 1) }));

/** Every read-model table as sorted rows, without the columns that hold store positions or record times (they differ between two stores). */
const readModels = async (runtime: CrmRuntime): Promise<Record<string, unknown[]>> => {
  const schema = runtime.config.schemas.read;
  const { rows: tables } = await sql<{ table_name: string }>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema} AND table_type = 'BASE TABLE' ORDER BY table_name`.execute(
    runtime.database.db,
  );
  const out: Record<string, unknown[]> = {};
  for (const { table_name } of tables) {
    if (/checkpoint|lease|migration|poison|projection_/.test(table_name)) continue;
    const { rows } = await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(`${schema}.${table_name}`)}`.execute(runtime.database.db);
    out[table_name] = rows
      .map((row) => Object.fromEntries(Object.entries(row).filter(([column]) => !/position|recorded_at|projected_at|updated_at|^last_event/.test(column))))
      .map((row) => JSON.stringify(row))
      .sort();
  }
  return out;
};

const catchUp = async (runtime: CrmRuntime) => {
  const newest = await newestPosition(runtime.store);
  await runtime.startProjections();
  await runtime.runner.waitForPosition(newest, 120_000);
};

/**
 * Imports the files in order (each in batches of `batchSize`) into one store, and sends the same rows
 * one command at a time through the command handlers, with the keys and business times the importer
 * gives them, into another. Answers what the import counted and each store's events, with both
 * stores' projections caught up.
 */
const importAndSendOneByOne = async (label: string, files: { kind: ImportKind; text: string }[], batchSize: number) => {
  const imported = await open(`${label}_a`);
  const batch = createBatchCommands({
    customerIdKey: TEST_CUSTOMER_ID_KEY,
    store: imported.store,
    personalData: imported.personalData,
    fingerprintKey: imported.emailIndex.fingerprintKey,
  });
  const counts: { imported: number; rejected: number }[] = [];
  for (const [i, { kind, text }] of files.entries()) {
    writeFileSync(join(folder, `${label}-${i}.csv`), text);
    const outcome = await importFile(batch, { file: join(folder, `${label}-${i}.csv`), reportPath: join(folder, `${label}-r${i}.csv`), batchSize, kind });
    counts.push({ imported: outcome.imported, rejected: outcome.rejected });
  }

  const viaApi = await open(`${label}_b`);
  let apiRejected = 0;
  for (const { kind, text } of files) {
    for await (const record of parseRecords(Readable.from([text]), 'csv')) {
      if (!('row' in record)) continue;
      try {
        for (const rc of rowCommands[kind](record.row, { customerIdFor: importedCustomerId })) {
          await viaApi.commands.execute(rc.command, {
            actor: admin,
            correlationId: `import:${kind}:line-${record.line}`,
            idempotencyKey: rc.key,
            ...(rc.occurredAt ? { occurredAt: rc.occurredAt } : {}),
            ...(rc.reason === null ? {} : { reason: rc.reason ?? `import of ${kind} (line ${record.line})` }),
            fingerprint: { byMeaning: true, ...(rc.formerly ? { formerly: rc.formerly } : {}) },
          });
        }
      } catch {
        apiRejected += 1;
      }
    }
  }

  // An idempotency fingerprint is an HMAC under its installation's key, so two installations' differ by
  // design: compared is that each event carries one (test/commands/keyed-fingerprints.test.ts checks its value).
  const eventsOf = async (runtime: CrmRuntime) =>
    (await storedEvents(runtime.store))
      .map(({ id, stream, revision, type, metadata: { commandHash, ...metadata } }) => ({
        id,
        stream,
        revision,
        type,
        metadata,
        fingerprinted: typeof commandHash === 'string' && commandHash.length === 43,
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
  await catchUp(imported);
  await catchUp(viaApi);
  return { counts, apiRejected, imported, viaApi, events: [await eventsOf(imported), await eventsOf(viaApi)] as const };
};

describe('batch import', () => {
  it('leaves the same events, read models and analytics as the same rows sent one by one through the command handlers', async () => {
    const run = await importAndSendOneByOne(
      'imp_eq',
      [
        { kind: 'customers', text: customersCsv(40, new Set([5, 17])) },
        { kind: 'purchases', text: purchasesCsv(120, 40) },
      ],
      8,
    );
    // Customers 5 and 17 are refused (bad emails), and so are their 3 + 3 purchases (no such customer).
    expect(run.counts).toEqual([
      { imported: 38, rejected: 2 },
      { imported: 114, rejected: 6 },
    ]);
    expect(run.apiRejected).toBe(8);
    const [a, b] = run.events;
    expect(a.length).toBe(38 + 114);
    expect(a).toEqual(b);

    const [modelsA, modelsB] = [await readModels(run.imported), await readModels(run.viaApi)];
    expect(Object.keys(modelsA).length).toBeGreaterThan(3);
    expect(Object.entries(modelsA).filter(([table, rows]) => table.startsWith('analytics_') && rows.length > 0).length).toBeGreaterThan(0);
    expect(modelsA).toEqual(modelsB);
  });

  it('imports refunds, deals, campaigns with their responses, and feedback as the same rows sent one by one would, each with its business time', async () => {
    const [dealWon, dealLost, dealOpen, campaignDone, campaignActive, campaignDraft, feedbackId] = Array.from({ length: 7 }, () => randomUUID());
    const run = await importAndSendOneByOne(
      'imp_kinds',
      [
        { kind: 'customers', text: customersCsv(6) },
        { kind: 'purchases', text: purchasesCsv(12, 6) },
        {
          kind: 'refunds',
          text: [
            'order_id,customer_email,amount,currency,refund_id,refund_reason,occurred_at',
            'o0,c0@example.com,4.00,USD,r0,damaged,1997-06-01',
            'o1,c1@example.com,-3,USD,r1,bad amount,1997-06-02',
            'o7,c1@example.com,2.50,USD,,,1997-09-20',
          ].join('\n'),
        },
        {
          kind: 'deals',
          text: [
            'deal_id,customer_email,title,amount,currency,owner_id,expected_close_date,stage,probability,opened_at,status,closed_at,lost_reason',
            `${dealWon},c0@example.com,Fleet renewal,12000,EUR,sam@sales,1997-09-30,proposal,0.6,1997-03-01,won,1997-08-15,`,
            `${dealLost},c2@example.com,Pilot,3000,EUR,sam@sales,1997-07-31,qualified,,1997-04-01,lost,1997-06-20,price`,
            `${dealOpen},c3@example.com,Upsell,800,USD,ana@sales,1998-01-31,lead,,1997-11-05,open,,`,
            `,c4@example.com,No id,500,EUR,ana@sales,1998-02-28,lead,,1997-12-01,maybe,,`,
          ].join('\n'),
        },
        {
          kind: 'campaigns',
          text: [
            'campaign_id,name,channel,budget,currency,starts_at,ends_at,status,created_at',
            `${campaignDone},Spring mailing,email,2500,EUR,1997-03-01,1997-03-31,completed,1997-02-15`,
            `${campaignActive},Autumn ads,ads,9000,EUR,1997-09-01,,active,1997-08-20`,
            `${campaignDraft},Winter idea,sms,100,EUR,,,draft,1997-10-01`,
            `,Broken,carrier pigeon,10,EUR,,,active,1997-10-02`,
          ].join('\n'),
        },
        {
          kind: 'responses',
          text: [
            'campaign_id,customer_email,response,revenue,currency,occurred_at',
            `${campaignDone},c0@example.com,opened,,,1997-03-03`,
            `${campaignDone},c0@example.com,converted,120.50,EUR,1997-03-05`,
            `${campaignActive},c1@example.com,clicked,,,1997-09-10`,
            `${campaignDraft},c2@example.com,opened,,,1997-10-05`,
          ].join('\n'),
        },
        {
          kind: 'feedback',
          text: [
            'feedback_id,customer_email,kind,channel,subject,body,priority,csat,nps,submitted_at',
            `${feedbackId},c0@example.com,complaint,email,Late delivery,The parcel came a week late,high,2,,1997-05-02`,
            `,c1@example.com,survey,web,Quarterly survey,Fine,,5,9,1997-07-01`,
            `,c2@example.com,rumour,web,Odd,Odd kind,,,,1997-07-02`,
          ].join('\n'),
        },
      ],
      2,
    );
    // Refused: a negative refund; a deal status and a campaign channel outside their lists; a response to
    // a draft campaign; a feedback kind outside its list.
    expect(run.counts.map((c) => c.rejected)).toEqual([0, 0, 1, 1, 1, 1, 1]);
    expect(run.counts.map((c) => c.imported)).toEqual([6, 12, 2, 3, 3, 3, 2]);
    expect(run.apiRejected).toBe(5);
    const [a, b] = run.events;
    expect(a).toEqual(b);
    const types = a.map((e) => e.type);
    for (const type of ['PurchaseRefunded', 'DealWon', 'DealLost', 'CampaignLaunched', 'CampaignCompleted', 'CampaignResponseRecorded', 'FeedbackSubmitted'])
      expect(types, type).toContain(type);
    // Business time from the files: in the payload where the command takes it, else in the metadata.
    const stored = await storedEvents(run.imported.store);
    const at = (type: string) => JSON.stringify(stored.filter((e) => e.type === type).map((e) => [e.data, e.metadata]));
    expect(at('DealWon')).toContain('1997-08-15');
    expect(at('DealLost')).toContain('1997-06-20');
    expect(at('CampaignCompleted')).toContain('1997-03-31');
    expect(at('FeedbackSubmitted')).toContain('1997-05-02');
    expect(await readModels(run.imported)).toEqual(await readModels(run.viaApi));
  });

  it('reports each bad row at batch boundaries with its line, and appends every good row once', async () => {
    const runtime = await open('imp_bounds');
    // Batches of 4 rows: bad rows on the first and last row of batches, a row too short, and a repeated row.
    const lines = ['name,email,registered_at'];
    for (let i = 0; i < 20; i++) {
      if (i === 0 || i === 3 || i === 4 || i === 11 || i === 19) lines.push(`Bad ${i},broken-${i},1997-01-01`);
      else if (i === 8) lines.push('Short row');
      else if (i === 12) lines.push('Customer 1,c1@example.com,1997-01-01');
      else lines.push(`Customer ${i},c${i}@example.com,1997-01-01`);
    }
    const file = join(folder, 'bounds.csv');
    writeFileSync(file, lines.join('\n'));
    const result = await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }), {
      file,
      reportPath: join(folder, 'bounds-report.csv'),
      batchSize: 4,
    });
    const report = reportOf(join(folder, 'bounds-report.csv'));
    // File line = row index + 2 (header on line 1).
    expect(report.map((r) => r.line)).toEqual([2, 5, 6, 10, 13, 21]);
    expect(report.find((r) => r.line === 10)!.reason).toContain('number of fields');
    expect(report.find((r) => r.line === 2)!.reason).toContain('email');
    // Line 14 repeats line 3 (same email, same values): the same command again, so it is already present, not rejected.
    expect(result).toMatchObject({ rows: 20, rejected: 6, imported: 14, alreadyPresent: 1 });
    expect((await storedEvents(runtime.store)).length).toBe(13);
  });

  it('keeps API writes to the same customers made during an import: nothing lost, no conflict surfaced', async () => {
    const runtime = await open('imp_concurrent');
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData });
    writeFileSync(join(folder, 'cc-customers.csv'), customersCsv(20));
    await importFile(batch, { file: join(folder, 'cc-customers.csv'), reportPath: join(folder, 'cc-r1.csv') });
    writeFileSync(join(folder, 'cc-purchases.csv'), purchasesCsv(400, 20));

    let importing = true;
    let apiWrites = 0;
    const api = (async () => {
      // The API keeps writing to the customers the file is about until the import ends.
      for (let i = 0; importing || i < 40; i++) {
        const customerId = importedCustomerId(`c${i % 20}@example.com`);
        // An API client answered 409 retries (the same key), as HTTP clients do.
        for (let attempt = 0; ; attempt++) {
          try {
            await runtime.commands.execute(
              { type: 'RecordPurchase', customerId, orderId: `api-${i}`, amount: 5, currency: 'USD' },
              { actor: admin, correlationId: `api-${i}`, idempotencyKey: `api-${i}` },
            );
            break;
          } catch (error) {
            if (!(error instanceof WrongExpectedRevision) || attempt > 50) throw error;
          }
        }
        apiWrites += 1;
      }
    })();
    const result = await importFile(batch, { file: join(folder, 'cc-purchases.csv'), reportPath: join(folder, 'cc-r2.csv'), batchSize: 25 });
    importing = false;
    await api;
    expect(result).toMatchObject({ rows: 400, imported: 400, rejected: 0 });
    const purchases = (await storedEvents(runtime.store)).filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(purchases.length).toBe(400 + apiWrites);
    expect(new Set(purchases).size).toBe(purchases.length);
    for (let i = 0; i < 400; i++) expect(purchases).toContain(`o${i}`);
  });

  it('gets through a writer that changes every stream of a batch before each append: from the third attempt that won nothing, each takes half as many rows', async () => {
    const runtime = await open('imp_starved');
    await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'st-customers.csv'), customersCsv(8)), join(folder, 'st-customers.csv')),
      reportPath: join(folder, 'st-r1.csv'),
    });
    // Another process records a purchase on every stream of an append of several streams, just
    // before it: an import that keeps appending its streams together never gets one in.
    let writes = 0;
    const appendSizes: number[] = [];
    const store: typeof runtime.store = {
      ...runtime.store,
      engine: runtime.store.engine,
      appendToStreams: async (appends, options) => {
        appendSizes.push(appends.length);
        if (appends.length > 1)
          for (const { stream } of appends) {
            writes += 1;
            await runtime.commands.execute(
              { type: 'RecordPurchase', customerId: stream.slice('customer-'.length), orderId: `other-${writes}`, amount: 1, currency: 'EUR' },
              { actor: admin, correlationId: `other-${writes}` },
            );
          }
        return runtime.store.appendToStreams(appends, options);
      },
    };
    writeFileSync(join(folder, 'st-purchases.csv'), purchasesCsv(24, 8));
    const result = await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData: runtime.personalData }), {
      file: join(folder, 'st-purchases.csv'),
      reportPath: join(folder, 'st-r2.csv'),
      batchSize: 24,
    });
    expect(result).toMatchObject({ rows: 24, imported: 24, rejected: 0 });
    // Halved down to appends of one stream, which the writer leaves alone.
    expect(appendSizes).toContain(1);
    const orders = (await storedEvents(runtime.store)).filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.filter((o) => o.startsWith('other-'))).toHaveLength(writes);
    for (let i = 0; i < 24; i++) expect(orders.filter((o) => o === `o${i}`)).toHaveLength(1);
  });

  it('two runs of one file at once store every row once and count it imported once: the later finds them present', async () => {
    const runtime = await open('imp_twice');
    await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'twice-customers.csv'), customersCsv(5)), join(folder, 'twice-customers.csv')),
      reportPath: join(folder, 'twice-r1.csv'),
    });
    const input = purchasesCsv(30, 5);
    const run = (store: typeof runtime.store) =>
      runImport(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store, personalData: runtime.personalData }),
        parseRecords(Readable.from([input]), 'csv'),
        {
          actor: admin,
          batchSize: 10,
          onRejected: () => undefined,
        },
      );
    // The other run stores the whole file between this run's first decision and its first append.
    let other: Awaited<ReturnType<typeof run>> | undefined;
    const raced = Object.assign(Object.create(runtime.store) as typeof runtime.store, {
      appendToStreams: async (...[appends, options]: Parameters<typeof runtime.store.appendToStreams>) => {
        other ??= await run(runtime.store);
        return runtime.store.appendToStreams(appends, options);
      },
    });
    const late = await run(raced);
    expect(other).toMatchObject({ rows: 30, imported: 30, alreadyPresent: 0, rejected: 0 });
    expect(late).toMatchObject({ rows: 30, imported: 30, alreadyPresent: 30, rejected: 0 });
    const orders = (await storedEvents(runtime.store)).filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.sort()).toEqual(Array.from({ length: 30 }, (_, i) => `o${i}`).sort());
  });

  it('a batch decided on the states of one whose append then meets a conflict is decided again on what was stored', async () => {
    const runtime = await open('imp_pipeline');
    await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'pipe-customers.csv'), customersCsv(5)), join(folder, 'pipe-customers.csv')),
      reportPath: join(folder, 'pipe-r1.csv'),
    });
    // Every batch is about the same five customers; before the second batch's append, an API client
    // records a purchase for one of them, so that append is refused while the third is decided on it.
    let calls = 0;
    const racing = Object.assign(Object.create(runtime.store) as typeof runtime.store, {
      appendToStreams: async (...[appends, options]: Parameters<typeof runtime.store.appendToStreams>) => {
        if ((calls += 1) === 2) {
          await runtime.commands.execute(
            { type: 'RecordPurchase', customerId: importedCustomerId('c0@example.com'), orderId: 'api-1', amount: 5, currency: 'USD' },
            { actor: admin, correlationId: 'api-1', idempotencyKey: 'api-1' },
          );
        }
        return runtime.store.appendToStreams(appends, options);
      },
    });
    const input = purchasesCsv(60, 5);
    const result = await runImport(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: racing, personalData: runtime.personalData }),
      parseRecords(Readable.from([input]), 'csv'),
      {
        actor: admin,
        batchSize: 10,
        onRejected: () => undefined,
      },
    );
    expect(result).toMatchObject({ rows: 60, imported: 60, rejected: 0, alreadyPresent: 0 });
    // Each customer's stream holds its registration, then its orders in revision order, each once.
    const events = await storedEvents(runtime.store);
    const orders = events.filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.sort()).toEqual([...Array.from({ length: 60 }, (_, i) => `o${i}`), 'api-1'].sort());
    for (let c = 0; c < 5; c++) {
      const stream = await runtime.store.readStream(`customer-${importedCustomerId(`c${c}@example.com`)}`);
      expect(stream.map((e) => e.revision)).toEqual(stream.map((_, i) => i));
    }
    // A fresh handler finds every row stored: the states the batches were decided on were the stored ones.
    const rerun = await runImport(
      createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }),
      parseRecords(Readable.from([input]), 'csv'),
      { actor: admin, batchSize: 10, onRejected: () => undefined },
    );
    expect(rerun).toMatchObject({ rows: 60, imported: 60, alreadyPresent: 60 });
  });

  it('a crash in the middle of a batch (before or after its commit) then a rerun leaves every row exactly once', async () => {
    const runtime = await open('imp_crash');
    const text = purchasesCsv(90, 10);
    await importFile(createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'crash-customers.csv'), customersCsv(10)), join(folder, 'crash-customers.csv')),
      reportPath: join(folder, 'crash-r1.csv'),
    });
    for (const when of ['before', 'after'] as const) {
      // The process dies on the third batch: its append is lost, or committed with no answer.
      let calls = 0;
      const crashing = Object.assign(Object.create(runtime.store) as typeof runtime.store, {
        appendToStreams: async (...[appends, options]: Parameters<typeof runtime.store.appendToStreams>) => {
          if ((calls += 1) === 3) {
            if (when === 'after') await runtime.store.appendToStreams(appends, options);
            throw new Error(`simulated crash ${when} the commit`);
          }
          return runtime.store.appendToStreams(appends, options);
        },
      });
      const input = when === 'before' ? text : purchasesCsv(90, 10).replace(/^o(?=\d)/gm, 'p');
      await expect(
        runImport(
          createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: crashing, personalData: runtime.personalData }),
          parseRecords(Readable.from([input]), 'csv'),
          {
            actor: admin,
            batchSize: 10,
            onRejected: () => undefined,
          },
        ),
      ).rejects.toThrow(/simulated crash/);
      // A new process (a fresh batch handler, no cache) runs the same file again.
      const rerun = await runImport(
        createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData }),
        parseRecords(Readable.from([input]), 'csv'),
        { actor: admin, batchSize: 10, onRejected: () => undefined },
      );
      expect(rerun).toMatchObject({ rows: 90, imported: 90, rejected: 0, alreadyPresent: when === 'before' ? 20 : 30 });
    }
    const orders = (await storedEvents(runtime.store)).filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.length).toBe(180);
    expect(new Set(orders).size).toBe(180);
  });

  it('stops between batches on a signal, and a rerun completes the file with every row once', async () => {
    const runtime = await open('imp_resume');
    const batch = createBatchCommands({ customerIdKey: TEST_CUSTOMER_ID_KEY, store: runtime.store, personalData: runtime.personalData });
    const text = customersCsv(60);
    const controller = new AbortController();
    let batches = 0;
    const first = await runImport(batch, parseRecords(Readable.from([text]), 'csv'), {
      actor: admin,
      batchSize: 10,
      signal: controller.signal,
      onRejected: () => undefined,
      onProgress: () => {
        if ((batches += 1) === 2) controller.abort();
      },
    });
    expect(first.interrupted).toBe(true);
    // The batches already decided when the stop came (up to BATCHES_IN_FLIGHT - 1 after the second) are
    // stored whole or not at all; no later one is.
    expect(Array.from({ length: BATCHES_IN_FLIGHT }, (_, i) => 20 + 10 * i)).toContain(first.imported);
    expect((await storedEvents(runtime.store)).length).toBe(first.imported);
    const second = await runImport(batch, parseRecords(Readable.from([text]), 'csv'), { actor: admin, batchSize: 10, onRejected: () => undefined });
    expect(second).toMatchObject({ interrupted: false, rows: 60, imported: 60, alreadyPresent: first.imported, rejected: 0 });
    expect((await storedEvents(runtime.store)).length).toBe(60);
  });
});
