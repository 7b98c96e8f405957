/**
 * Bulk import (issue 16): `crm import` rates for customers and purchases files beside raw batched
 * INSERTs of purchase-shaped rows in the same run, measured before, between and after the imports
 * (target >= 0.25x of the mean of the two runs around each import); for customers also beside plain
 * INSERTs of the very rows their import stored (see `storedRowsRate`); a CDNOW-sized history (23,570
 * customers, 69,659 purchases) imported and every projection caught up (target < 60 s), and the
 * peak memory (VmHWM) of a `crm import` process on a large purchases file (target < 300 MB for 1M rows;
 * the suite imports 200,000 x scale rows to stay within minutes; `--option memory-rows=1000000` is the
 * 1M run without scaling the rest), run as shipped: no NODE_OPTIONS (`--option node-options=...` sets
 * some, e.g. the `--max-old-space-size=160` earlier runs used). `--scale` multiplies the CDNOW sizes
 * and the memory file; `--option memory-only=1` measures only the memory.
 *
 * `history`: a month of purchases imported into a store that already holds years of them (4,000
 * customers with 40 purchases each), by a fresh handler as each `crm import` process is, with the
 * store's saved states of customer streams (commands/snapshots.ts) and without them, alternating in
 * the same run: the first month with them reads whole streams and saves their states, the next one
 * reads the states. `--option history=0` leaves it out.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openCrm } from '../../runtime/crm.ts';
import { loadConfig } from '../../cli/config.ts';
import { importFile } from '../../cli/import.ts';
import { createBatchCommands } from '../../commands/batch.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { rate, ratio, round, type BenchContext } from '../report.ts';

const CRM_BIN = fileURLToPath(new URL('../../cli/crm.js', import.meta.url));
const CDNOW = { customers: 23_570, purchases: 69_659 };
const day = 86_400_000;
const START = Date.parse('1997-01-01T00:00:00Z');

/** A small deterministic generator, so every run imports the same files. */
const random = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};

const writeLines = async (path: string, header: string, count: number, line: (i: number) => string): Promise<void> => {
  const out = createWriteStream(path);
  out.write(`${header}\n`);
  for (let i = 0; i < count; i++) if (!out.write(`${line(i)}\n`)) await once(out, 'drain');
  out.end();
  await once(out, 'close');
};

const writeCustomers = (path: string, count: number) =>
  writeLines(
    path,
    'name,email,phone,registered_at',
    count,
    (i) => `Customer ${i},c${i}@example.com,+1 555 ${String(i % 10_000).padStart(4, '0')},${new Date(START + (i % 84) * day).toISOString().slice(0, 10)}`,
  );

const writePurchases = (path: string, count: number, customers: number) => {
  const next = random(7);
  return writeLines(path, 'order_id,customer_email,amount,currency,occurred_at', count, (i) => {
    const customer = Math.floor(next() * customers);
    // Purchases after the customer's first day, spread over 1997-1998 as in CDNOW.
    const at = START + (customer % 84) * day + Math.floor(next() * 540) * day;
    return `o${i},c${customer}@example.com,${(5 + next() * 95).toFixed(2)},USD,${new Date(at).toISOString()}`;
  });
};

/** The baseline: the same purchases rows as plain rows, 1,000 per INSERT ... SELECT unnest. */
const rawInsertRate = async (ctx: BenchContext, rows: number): Promise<number> => {
  const schema = await ctx.freshSchema('import_raw');
  const client = new pg.Client({ connectionString: ctx.databaseUrl });
  await client.connect();
  try {
    await client.query(
      `CREATE TABLE ${pg.escapeIdentifier(schema)}.purchases (id bigint PRIMARY KEY, customer text, order_id text, amount numeric, currency text, occurred_at timestamptz, data jsonb)`,
    );
    const next = random(11);
    const started = performance.now();
    for (let from = 0; from < rows; from += 1_000) {
      const n = Math.min(1_000, rows - from);
      const ids = Array.from({ length: n }, (_, i) => from + i);
      const customers = ids.map((i) => `c${i % 5_000}@example.com`);
      const amounts = ids.map(() => (5 + next() * 95).toFixed(2));
      const times = ids.map((i) => new Date(START + (i % 540) * day).toISOString());
      const data = ids.map((i) => JSON.stringify({ orderId: `o${i}`, customer: customers[i - from], amount: amounts[i - from], currency: 'USD' }));
      await client.query(
        `INSERT INTO ${pg.escapeIdentifier(schema)}.purchases SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::numeric[], $5::text[], $6::timestamptz[], $7::jsonb[])`,
        [ids, customers, ids.map((i) => `o${i}`), amounts, ids.map(() => 'USD'), times, data],
      );
    }
    return rate(rows, performance.now() - started);
  } finally {
    await client.end();
  }
};

/** The tables a customer row writes a row of (its stream, its event, its data key, an email claim). */
const CUSTOMER_ROW_TABLES = ['streams', 'events', 'customer_keys', 'customer_email_index'];

/** Rows of one table, every column as text, with the table they came from. */
interface StoredRows {
  from: string;
  name: string;
  columns: { name: string; type: string }[];
  rows: (string | null)[][];
}

/** The rows the import stored in the tables a customer writes to, read once so that they can be inserted again. */
const readStoredRows = async (ctx: BenchContext, source: string): Promise<StoredRows[]> => {
  const client = new pg.Client({ connectionString: ctx.databaseUrl });
  await client.connect();
  try {
    const stored: StoredRows[] = [];
    for (const name of CUSTOMER_ROW_TABLES) {
      const from = `${pg.escapeIdentifier(source)}.${pg.escapeIdentifier(name)}`;
      const { rows: columns } = await client.query<{ name: string; type: string }>(
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
        [from],
      );
      const list = columns.map((c) => `${pg.escapeIdentifier(c.name)}::text`).join(', ');
      const { rows } = await client.query<(string | null)[]>({ text: `SELECT ${list} FROM ${from}`, rowMode: 'array' });
      if (rows.length > 0) stored.push({ from, name, columns, rows });
    }
    return stored;
  } finally {
    await client.end();
  }
};

/**
 * A second baseline for customers: the very rows the customers import stored, inserted again by plain
 * batched INSERTs (1,000 customers a transaction, every column sent as text and cast, as the store's
 * own parameters are) into tables made `LIKE` the import's (same columns, constraints and indexes) in a
 * fresh schema. A customer is not one narrow row as the purchases baseline is: it is a new stream, an
 * event with its metadata and hash, a data key and an email claim, each with its indexes. It tells how much of the gap
 * to the purchases-shaped baseline is the database writing those rows and how much is the import's own
 * work. Customers a second.
 */
const storedRowsRate = async (ctx: BenchContext, stored: StoredRows[], customers: number): Promise<number> => {
  const target = await ctx.freshSchema('import_stored_rows');
  const client = new pg.Client({ connectionString: ctx.databaseUrl });
  await client.connect();
  try {
    const statements = [];
    for (const { from, name, columns } of stored) {
      const into = `${pg.escapeIdentifier(target)}.${pg.escapeIdentifier(name)}`;
      await client.query(`CREATE TABLE ${into} (LIKE ${from} INCLUDING ALL)`);
      const names = columns.map((c) => pg.escapeIdentifier(c.name)).join(', ');
      const casts = columns.map((c, i) => `c${i}::${c.type}`).join(', ');
      const aliases = columns.map((_, i) => `c${i}`).join(', ');
      const unnest = columns.map((_, i) => `$${i + 1}::text[]`).join(', ');
      statements.push(`INSERT INTO ${into} (${names}) SELECT ${casts} FROM unnest(${unnest}) AS u(${aliases})`);
    }
    const batch = 1_000;
    const total = Math.max(...stored.map((t) => t.rows.length));
    const started = performance.now();
    for (let first = 0; first < total; first += batch) {
      await client.query('BEGIN');
      for (const [t, { columns, rows }] of stored.entries()) {
        const slice = rows.slice(first, first + batch);
        if (slice.length > 0)
          await client.query(
            statements[t]!,
            columns.map((_, i) => slice.map((row) => row[i])),
          );
      }
      await client.query('COMMIT');
    }
    return rate(customers, performance.now() - started);
  } finally {
    await client.end();
  }
};

const crmEnv = async (ctx: BenchContext) => ({
  DATABASE_URL: ctx.databaseUrl,
  CRM_EVENTS_SCHEMA: await ctx.freshSchema('import_events'),
  CRM_READ_SCHEMA: await ctx.freshSchema('import_read'),
  CRM_REPORTING_SCHEMA: await ctx.freshSchema('import_reporting'),
  CRM_PROJECTIONS: 'off',
  LOG_LEVEL: 'warn',
});

/** Peak resident memory of a `crm import` process (VmHWM, read until it exits). */
const importPeakMemory = (args: string[], env: Record<string, string>): Promise<{ peakMb: number; ms: number; stdout: string; code: number | null }> =>
  new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CRM_BIN, 'import', ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir(), ...env } });
    let stdout = '';
    let peakKb = 0;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.resume();
    const sample = () => {
      try {
        const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
        peakKb = Math.max(peakKb, kb);
      } catch {
        // The process has ended between two samples.
      }
    };
    const timer = setInterval(sample, 100);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ peakMb: round(peakKb / 1024, 0), ms: Math.round(performance.now() - started), stdout, code });
    });
  });

/** Rates beside the raw INSERT baseline, and the CDNOW-sized import with every projection caught up. */
const measureSpeed = async (ctx: BenchContext, folder: string): Promise<Record<string, unknown>> => {
  const customers = Math.round(CDNOW.customers * ctx.scale);
  const purchases = Math.round(CDNOW.purchases * ctx.scale);
  const customersFile = join(folder, 'customers.csv');
  const purchasesFile = join(folder, 'purchases.csv');
  await writeCustomers(customersFile, customers);
  await writePurchases(purchasesFile, purchases, customers);

  // The baseline is measured before, between and after the two imports, and each import is compared
  // with the mean of the runs on either side of it: this machine's speed drifts (the raw rate has
  // measured 20-98k rows/s in different runs here, and 38-44k within one), and a baseline taken only
  // at the start let any drift during the run into the ratios.
  const raw = async (): Promise<number> => {
    ctx.log(`raw batched INSERTs of ${purchases} rows`);
    return rawInsertRate(ctx, purchases);
  };
  const rawRuns = [await raw()];

  const env = await crmEnv(ctx);
  const runtime = await openCrm(loadConfig(env, folder));
  let customersMs: number, purchasesMs: number, catchUpMs: number;
  let imported: Record<string, unknown>;
  // The stored-rows baseline runs right after the customers import and again at the end, and the import is compared with their mean.
  const storedRuns: number[] = [];
  let storedTables: Record<string, number>;
  try {
    // A handler per file, as each `crm import` process has its own: the purchases start with none of
    // the customers' states in memory (one handler for both files measured 2-9% more purchases a second).
    const freshBatch = () =>
      createBatchCommands({
        store: runtime.store,
        personalData: runtime.personalData,
        emailIndex: runtime.emailIndex,
        customerIdKey: runtime.emailIndex.customerIdKey,
        fingerprintKey: runtime.emailIndex.fingerprintKey,
      });
    ctx.log(`import of ${customers} customers`);
    let started = performance.now();
    const c = await importFile(freshBatch(), { file: customersFile, reportPath: join(folder, 'customers-report.csv') });
    customersMs = performance.now() - started;
    ctx.log(`the customers' stored rows inserted again by plain batched INSERTs`);
    const stored = await readStoredRows(ctx, env.CRM_EVENTS_SCHEMA);
    storedTables = Object.fromEntries(stored.map((t) => [t.name, t.rows.length]));
    storedRuns.push(await storedRowsRate(ctx, stored, customers));
    rawRuns.push(await raw());
    ctx.log(`import of ${purchases} purchases`);
    started = performance.now();
    const p = await importFile(freshBatch(), { file: purchasesFile, reportPath: join(folder, 'purchases-report.csv') });
    purchasesMs = performance.now() - started;
    rawRuns.push(await raw());
    storedRuns.push(await storedRowsRate(ctx, stored, customers));
    imported = { customers: c.imported, customersRejected: c.rejected, purchases: p.imported, purchasesRejected: p.rejected };
    ctx.log('catch-up of every projection');
    started = performance.now();
    const head = await runtime.store.headPosition();
    await runtime.startProjections();
    await runtime.runner.waitForPosition(head, 600_000);
    catchUpMs = performance.now() - started;
  } finally {
    await runtime.close();
  }
  const customersPerSecond = rate(customers, customersMs);
  const purchasesPerSecond = rate(purchases, purchasesMs);
  const mean = (values: number[]) => Math.round(values.reduce((sum, v) => sum + v, 0) / values.length);
  const [before, between, after] = rawRuns as [number, number, number];
  return {
    rawInsert: { rows: purchases, rowsPerSecond: mean(rawRuns), runs: rawRuns },
    customers: {
      rows: customers,
      ms: Math.round(customersMs),
      rowsPerSecond: customersPerSecond,
      rawInsertRowsPerSecond: mean([before, between]),
      ratioToRawInsert: ratio(customersPerSecond, mean([before, between])),
      storedRowsInsert: { customersPerSecond: mean(storedRuns), runs: storedRuns, rowsPerTable: storedTables },
      ratioToStoredRowsInsert: ratio(customersPerSecond, mean(storedRuns)),
    },
    purchases: {
      rows: purchases,
      ms: Math.round(purchasesMs),
      rowsPerSecond: purchasesPerSecond,
      rawInsertRowsPerSecond: mean([between, after]),
      ratioToRawInsert: ratio(purchasesPerSecond, mean([between, after])),
    },
    imported,
    cdnow: {
      importMs: Math.round(customersMs + purchasesMs),
      catchUpMs: Math.round(catchUpMs),
      totalMs: Math.round(customersMs + purchasesMs + catchUpMs),
      targetMs: 60_000,
    },
  };
};

/** A month of purchases into a store with history, with and without saved stream states (see the header). */
const measureHistory = async (ctx: BenchContext, folder: string): Promise<Record<string, unknown>> => {
  const customers = Math.round(4_000 * ctx.scale);
  const perCustomer = 40;
  const customersFile = join(folder, 'history-customers.csv');
  const historyFile = join(folder, 'history-purchases.csv');
  await writeCustomers(customersFile, customers);
  await writePurchases(historyFile, customers * perCustomer, customers);
  const months = ['a', 'b', 'c', 'd'].map((name) => join(folder, `month-${name}.csv`));
  for (const [i, file] of months.entries())
    await writeLines(file, 'order_id,customer_email,amount,currency,occurred_at', customers, (n) => {
      const customer = (n * 7_919 + i * 104_729) % customers;
      return `m${i}-${n},c${customer}@example.com,${(5 + (n % 95)).toFixed(2)},USD,1999-0${i + 1}-15T12:00:00.000Z`;
    });
  const env = await crmEnv(ctx);
  const runtime = await openCrm(loadConfig(env, folder));
  try {
    const handler = (store: EventStore) =>
      createBatchCommands({
        store,
        personalData: runtime.personalData,
        emailIndex: runtime.emailIndex,
        customerIdKey: runtime.emailIndex.customerIdKey,
        fingerprintKey: runtime.emailIndex.fingerprintKey,
      });
    const withSnapshots = runtime.store;
    const withoutSnapshots: EventStore = { ...runtime.store, engine: runtime.store.engine, snapshots: undefined };
    ctx.log(`history: ${customers} customers with ${perCustomer} purchases each`);
    await importFile(handler(withSnapshots), { file: customersFile, reportPath: join(folder, 'history-report.csv') });
    await importFile(handler(withSnapshots), { file: historyFile, reportPath: join(folder, 'history-report.csv') });
    const month = async (file: string, store: EventStore, label: string): Promise<number> => {
      ctx.log(`history: a month of ${customers} purchases ${label}`);
      const started = performance.now();
      const outcome = await importFile(handler(store), { file, reportPath: join(folder, 'month-report.csv') });
      if (outcome.imported !== customers) throw new Error(`history month ${file}: ${outcome.imported} of ${customers} rows imported`);
      return rate(customers, performance.now() - started);
    };
    const [a, b, c, d] = [
      await month(months[0]!, withoutSnapshots, 'without saved states'),
      await month(months[1]!, withSnapshots, 'with saved states (first: reads whole streams, saves them)'),
      await month(months[2]!, withSnapshots, 'with saved states'),
      await month(months[3]!, withoutSnapshots, 'without saved states'),
    ];
    const baseline = Math.round((a + d) / 2);
    return {
      customers,
      purchasesPerCustomer: perCustomer,
      monthRows: customers,
      withoutSnapshotsRowsPerSecond: [a, d],
      firstMonthWithSnapshotsRowsPerSecond: b,
      withSnapshotsRowsPerSecond: c,
      ratioToWithout: ratio(c, baseline),
      firstMonthRatioToWithout: ratio(b, baseline),
    };
  } finally {
    await runtime.close();
  }
};

/** Peak memory of `crm import` processes: 20,000 customers, then `rows` purchases about them. */
const measureMemory = async (ctx: BenchContext, folder: string, rows: number): Promise<Record<string, unknown>> => {
  const memoryNodeOptions = ctx.options['node-options'] ?? '';
  ctx.log(`peak memory of crm import on ${rows} purchases (over 20,000 customers)`);
  const memoryEnv = await crmEnv(ctx);
  const memoryCustomers = join(folder, 'memory-customers.csv');
  const memoryPurchases = join(folder, 'memory-purchases.csv');
  await writeCustomers(memoryCustomers, 20_000);
  await writePurchases(memoryPurchases, rows, 20_000);
  const env = memoryNodeOptions ? { ...memoryEnv, NODE_OPTIONS: memoryNodeOptions } : memoryEnv;
  const customersRun = await importPeakMemory([memoryCustomers, '--report', join(folder, 'm1.csv')], env);
  const purchasesRun = await importPeakMemory([memoryPurchases, '--report', join(folder, 'm2.csv')], env);
  return {
    rows,
    nodeOptions: memoryNodeOptions,
    peakMb: purchasesRun.peakMb,
    targetMb: 300,
    ms: purchasesRun.ms,
    rowsPerSecond: rate(rows, purchasesRun.ms),
    exitCode: purchasesRun.code,
    summary: purchasesRun.stdout.trim(),
    customersPeakMb: customersRun.peakMb,
  };
};

export async function run(ctx: BenchContext): Promise<Record<string, unknown>> {
  const folder = mkdtempSync(join(tmpdir(), 'crm-bench-import-'));
  const memoryRows = ctx.options['memory-rows'] !== undefined ? Number(ctx.options['memory-rows']) : Math.round(200_000 * ctx.scale);
  if (!Number.isSafeInteger(memoryRows) || memoryRows < 1) throw new Error(`memory-rows must be a whole number >= 1, got ${ctx.options['memory-rows']}`);
  const load = { before: loadavg().map((v) => round(v, 2)) };
  try {
    const speed = ctx.options['memory-only'] === '1' ? {} : await measureSpeed(ctx, folder);
    const history = ctx.options['memory-only'] === '1' || ctx.options.history === '0' ? {} : { history: await measureHistory(ctx, folder) };
    const memory = await measureMemory(ctx, folder, memoryRows);
    return { load: { ...load, after: loadavg().map((v) => round(v, 2)) }, ...speed, ...history, memory };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

export const summarize = (result: Record<string, unknown>): string[] => {
  const r = result as {
    rawInsert?: { rowsPerSecond: number; runs: number[] };
    customers: { rowsPerSecond: number; ratioToRawInsert: number; storedRowsInsert?: { customersPerSecond: number }; ratioToStoredRowsInsert?: number };
    purchases: { rowsPerSecond: number; ratioToRawInsert: number };
    cdnow: { importMs: number; catchUpMs: number; totalMs: number };
    memory: { rows: number; peakMb: number; rowsPerSecond: number; nodeOptions: string };
    history?: {
      customers: number;
      purchasesPerCustomer: number;
      withoutSnapshotsRowsPerSecond: number[];
      firstMonthWithSnapshotsRowsPerSecond: number;
      withSnapshotsRowsPerSecond: number;
      ratioToWithout: number;
    };
  };
  const memory = `crm import of ${r.memory.rows} purchases${r.memory.nodeOptions ? ` (NODE_OPTIONS=${r.memory.nodeOptions})` : ''}: peak ${r.memory.peakMb} MB (target < 300 MB), ${r.memory.rowsPerSecond} rows/s`;
  if (!r.rawInsert) return [memory];
  return [
    `raw batched INSERT ${r.rawInsert.rowsPerSecond} rows/s (before, between and after the imports: ${r.rawInsert.runs.join(', ')}); import customers ${r.customers.rowsPerSecond}/s (${r.customers.ratioToRawInsert}x${r.customers.storedRowsInsert ? `; ${r.customers.ratioToStoredRowsInsert}x the ${r.customers.storedRowsInsert.customersPerSecond}/s of plain INSERTs of the rows it stored` : ''}), purchases ${r.purchases.rowsPerSecond}/s (${r.purchases.ratioToRawInsert}x)`,
    `CDNOW-sized: import ${round(r.cdnow.importMs / 1000, 1)} s + catch-up ${round(r.cdnow.catchUpMs / 1000, 1)} s = ${round(r.cdnow.totalMs / 1000, 1)} s (target < 60 s)`,
    ...(r.history
      ? [
          `a month into ${r.history.customers} customers with ${r.history.purchasesPerCustomer} purchases each: ${r.history.withSnapshotsRowsPerSecond} rows/s with saved states (${r.history.ratioToWithout}x), ${r.history.withoutSnapshotsRowsPerSecond.join(' and ')} without, the first month with them ${r.history.firstMonthWithSnapshotsRowsPerSecond}`,
        ]
      : []),
    memory,
  ];
};
