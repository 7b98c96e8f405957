import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { importFile } from '../../cli/import.ts';
import { createBatchCommands } from '../../commands/batch.ts';
import { runImport } from '../../commands/import/importer.ts';
import { parseRecords } from '../../commands/import/parse.ts';
import { customerIdForEmail, rowCommands } from '../../commands/import/rows.ts';
import { WrongExpectedRevision } from '../../eventstore/errors.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { Readable } from 'node:stream';
import { newestPosition, storedEvents } from '../support/events.ts';

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

describe('batch import', () => {
  it('leaves the same events, read models and analytics as the same rows sent one by one through the command handlers', async () => {
    const customers = customersCsv(40, new Set([5, 17]));
    const purchases = purchasesCsv(120, 40);
    writeFileSync(join(folder, 'eq-customers.csv'), customers);
    writeFileSync(join(folder, 'eq-purchases.csv'), purchases);

    const imported = await open('imp_eq_a');
    const batch = createBatchCommands({ store: imported.store, personalData: imported.personalData });
    const c = await importFile(batch, { file: join(folder, 'eq-customers.csv'), reportPath: join(folder, 'eq-r1.csv'), batchSize: 7 });
    const p = await importFile(batch, { file: join(folder, 'eq-purchases.csv'), reportPath: join(folder, 'eq-r2.csv'), batchSize: 9 });
    // Customers 5 and 17 are refused (bad emails), and so are their 3 + 3 purchases (no such customer).
    expect([c.imported, c.rejected, p.imported, p.rejected]).toEqual([38, 2, 114, 6]);

    // The same rows, one command at a time, with the keys and business times the importer gives them.
    const viaApi = await open('imp_eq_b');
    let apiRejected = 0;
    for (const [kind, text] of [
      ['customers', customers],
      ['purchases', purchases],
    ] as const) {
      for await (const record of parseRecords(Readable.from([text]), 'csv')) {
        if (!('row' in record)) continue;
        for (const rc of rowCommands[kind](record.row)) {
          try {
            await viaApi.commands.execute(rc.command, {
              actor: admin,
              correlationId: `import:${kind}:line-${record.line}`,
              idempotencyKey: rc.key,
              ...(rc.occurredAt ? { occurredAt: rc.occurredAt } : {}),
              reason: `import of ${kind} (line ${record.line})`,
            });
          } catch {
            apiRejected += 1;
          }
        }
      }
    }
    expect(apiRejected).toBe(c.rejected + p.rejected);

    const eventsOf = async (runtime: CrmRuntime) =>
      (await storedEvents(runtime.store))
        .map((e) => ({ id: e.id, stream: e.stream, revision: e.revision, type: e.type, metadata: e.metadata }))
        .sort((a, b) => a.id.localeCompare(b.id));
    const [a, b] = [await eventsOf(imported), await eventsOf(viaApi)];
    expect(a.length).toBe(38 + 114);
    expect(a).toEqual(b);

    await catchUp(imported);
    await catchUp(viaApi);
    const [modelsA, modelsB] = [await readModels(imported), await readModels(viaApi)];
    expect(Object.keys(modelsA).length).toBeGreaterThan(3);
    expect(Object.entries(modelsA).filter(([table, rows]) => table.startsWith('analytics_') && rows.length > 0).length).toBeGreaterThan(0);
    expect(modelsA).toEqual(modelsB);
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
    const result = await importFile(createBatchCommands({ store: runtime.store, personalData: runtime.personalData }), {
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
    const batch = createBatchCommands({ store: runtime.store, personalData: runtime.personalData });
    writeFileSync(join(folder, 'cc-customers.csv'), customersCsv(20));
    await importFile(batch, { file: join(folder, 'cc-customers.csv'), reportPath: join(folder, 'cc-r1.csv') });
    writeFileSync(join(folder, 'cc-purchases.csv'), purchasesCsv(400, 20));

    let importing = true;
    let apiWrites = 0;
    const api = (async () => {
      // The API keeps writing to the customers the file is about until the import ends.
      for (let i = 0; importing || i < 40; i++) {
        const customerId = customerIdForEmail(`c${i % 20}@example.com`);
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

  it('a batch decided on the states of one whose append then meets a conflict is decided again on what was stored', async () => {
    const runtime = await open('imp_pipeline');
    await importFile(createBatchCommands({ store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'pipe-customers.csv'), customersCsv(5)), join(folder, 'pipe-customers.csv')),
      reportPath: join(folder, 'pipe-r1.csv'),
    });
    // Every batch is about the same five customers; before the second batch's append, an API client
    // records a purchase for one of them, so that append is refused while the third is decided on it.
    let calls = 0;
    const racing = Object.assign(Object.create(runtime.store) as typeof runtime.store, {
      appendToStreams: async (appends: Parameters<typeof runtime.store.appendToStreams>[0]) => {
        if ((calls += 1) === 2) {
          await runtime.commands.execute(
            { type: 'RecordPurchase', customerId: customerIdForEmail('c0@example.com'), orderId: 'api-1', amount: 5, currency: 'USD' },
            { actor: admin, correlationId: 'api-1', idempotencyKey: 'api-1' },
          );
        }
        return runtime.store.appendToStreams(appends);
      },
    });
    const input = purchasesCsv(60, 5);
    const result = await runImport(createBatchCommands({ store: racing, personalData: runtime.personalData }), parseRecords(Readable.from([input]), 'csv'), {
      actor: admin,
      batchSize: 10,
      onRejected: () => undefined,
    });
    expect(result).toMatchObject({ rows: 60, imported: 60, rejected: 0, alreadyPresent: 0 });
    // Each customer's stream holds its registration, then its orders in revision order, each once.
    const events = await storedEvents(runtime.store);
    const orders = events.filter((e) => e.type === 'PurchaseRecorded').map((e) => (e.data as { orderId: string }).orderId);
    expect(orders.sort()).toEqual([...Array.from({ length: 60 }, (_, i) => `o${i}`), 'api-1'].sort());
    for (let c = 0; c < 5; c++) {
      const stream = await runtime.store.readStream(`customer-${customerIdForEmail(`c${c}@example.com`)}`);
      expect(stream.map((e) => e.revision)).toEqual(stream.map((_, i) => i));
    }
    // A fresh handler finds every row stored: the states the batches were decided on were the stored ones.
    const rerun = await runImport(
      createBatchCommands({ store: runtime.store, personalData: runtime.personalData }),
      parseRecords(Readable.from([input]), 'csv'),
      { actor: admin, batchSize: 10, onRejected: () => undefined },
    );
    expect(rerun).toMatchObject({ rows: 60, imported: 60, alreadyPresent: 60 });
  });

  it('a crash in the middle of a batch (before or after its commit) then a rerun leaves every row exactly once', async () => {
    const runtime = await open('imp_crash');
    const text = purchasesCsv(90, 10);
    await importFile(createBatchCommands({ store: runtime.store, personalData: runtime.personalData }), {
      file: (writeFileSync(join(folder, 'crash-customers.csv'), customersCsv(10)), join(folder, 'crash-customers.csv')),
      reportPath: join(folder, 'crash-r1.csv'),
    });
    for (const when of ['before', 'after'] as const) {
      // The process dies on the third batch: its append is lost, or committed with no answer.
      let calls = 0;
      const crashing = Object.assign(Object.create(runtime.store) as typeof runtime.store, {
        appendToStreams: async (appends: Parameters<typeof runtime.store.appendToStreams>[0]) => {
          if ((calls += 1) === 3) {
            if (when === 'after') await runtime.store.appendToStreams(appends);
            throw new Error(`simulated crash ${when} the commit`);
          }
          return runtime.store.appendToStreams(appends);
        },
      });
      const input = when === 'before' ? text : purchasesCsv(90, 10).replace(/^o(?=\d)/gm, 'p');
      await expect(
        runImport(createBatchCommands({ store: crashing, personalData: runtime.personalData }), parseRecords(Readable.from([input]), 'csv'), {
          actor: admin,
          batchSize: 10,
          onRejected: () => undefined,
        }),
      ).rejects.toThrow(/simulated crash/);
      // A new process (a fresh batch handler, no cache) runs the same file again.
      const rerun = await runImport(
        createBatchCommands({ store: runtime.store, personalData: runtime.personalData }),
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
    const batch = createBatchCommands({ store: runtime.store, personalData: runtime.personalData });
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
    // The batch already decided when the stop came (the third) is stored whole or not at all; no later one is.
    expect([20, 30]).toContain(first.imported);
    expect((await storedEvents(runtime.store)).length).toBe(first.imported);
    const second = await runImport(batch, parseRecords(Readable.from([text]), 'csv'), { actor: admin, batchSize: 10, onRejected: () => undefined });
    expect(second).toMatchObject({ interrupted: false, rows: 60, imported: 60, alreadyPresent: first.imported, rejected: 0 });
    expect((await storedEvents(runtime.store)).length).toBe(60);
  });
});
