import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImportJobRecords } from '../../api/import-job-records.ts';
import type { BatchCommands } from '../../commands/batch.ts';
import { createImportJobs, type ImportJob } from '../../commands/import/jobs.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { FaultProxy } from './proxy.ts';

/**
 * An import sent over HTTP (`POST /imports`) while the database is reset and refused: the job waits
 * for it and imports the spooled file again from its start, by itself, so that it ends `done` with
 * every row stored once (it failed at the first fault, the file deleted, and the client had to send
 * all of it again). The real store, its connections through a TCP proxy.
 */
const schemas = testSchemas('import_job_faults');
const proxy = FaultProxy.before(TEST_DATABASE_URL);
const actor = { userId: 'api-key:faults', roles: ['admin'] };
let crm: CrmRuntime;

beforeAll(async () => {
  await proxy.start();
  crm = await openCrm(testConfig(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL) }), {
    overrides: { poolMax: 4, publishers: false, chainSealer: false },
  });
}, 120_000);

afterAll(async () => {
  proxy.pass();
  await crm?.close();
  await proxy.close();
  await schemas.dropSchemas();
});

const until = async (what: string, done: () => boolean, timeoutMs = 60_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('an import job while the database is away', () => {
  it('waits for the database after a reset and a refusal mid-file, then ends done with every row stored once', { timeout: 120_000 }, async () => {
    // The second batch waits at a gate, so that the faults below meet the import mid-file.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let submitted = 0;
    const batch: BatchCommands = {
      ...crm.batch,
      submitBatch: async (items) => {
        submitted += 1;
        if (submitted === 2) await gate;
        return crm.batch.submitBatch(items);
      },
    };
    const jobs = createImportJobs({ batch, records: createImportJobRecords(crm.database.db, schemas.read), maxBytes: 10_000_000 });
    const rows = 2_500;
    const body = ['name,email', ...Array.from({ length: rows }, (_, i) => `Person ${i},faults-${i}@example.com`)].join('\n');
    let job: ImportJob | undefined;
    try {
      job = await jobs.start({ kind: 'customers', format: 'csv', body: Readable.from([body]), actor, owner: 'key-faults' });
      const running = job;
      await until('the first batch to be stored', () => running.counts.imported >= 1_000);
      proxy.resetAll();
      proxy.refuse();
      open();
      await until('the job to wait for the database', () => /waiting for the database/.test(running.error ?? ''));
      expect(running.status).toBe('running');
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      proxy.pass();
      await until('the job to end', () => running.status !== 'running');
      expect(running).toMatchObject({ status: 'done', error: null, counts: { rows, imported: rows, alreadyPresent: 0, rejected: 0 } });
      expect(running.rejectedRows).toEqual([]);
      // Every row once in the store: one registration each.
      const registrations = new Map<string, number>();
      for (const e of await crm.store.readAll({ maxCount: 100_000 }))
        if (e.type === 'CustomerRegistered') registrations.set(e.stream, (registrations.get(e.stream) ?? 0) + 1);
      expect(registrations.size).toBe(rows);
      expect([...registrations.values()].every((n) => n === 1)).toBe(true);
    } finally {
      open();
      proxy.pass();
      await jobs.close();
    }
  });
});
