import { Readable } from 'node:stream';
import pg from 'pg';
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
  it(
    'waits for the database after a reset and a refusal mid-file, twice, then ends done with every row stored once and counted once',
    { timeout: 180_000 },
    async () => {
      // Faults meet the import mid-file twice: when the first run sends its third batch (two stored),
      // and when the rerun sends its second (one of the first run's batches replayed, one not yet).
      // A batch waits at a gate named by its first row's address and how often that batch was sent.
      const gates = new Map<string, { open: () => void; opened: Promise<void> }>();
      for (const name of ['faults-2000@example.com#1', 'faults-1000@example.com#2']) {
        let open!: () => void;
        const opened = new Promise<void>((resolve) => (open = resolve));
        gates.set(name, { open, opened });
      }
      const sent = new Map<string, number>();
      const batch: BatchCommands = {
        ...crm.batch,
        submitBatch: async (items) => {
          const first = items[0] && 'prepared' in items[0] ? String(items[0].prepared.command.email) : '';
          const n = (sent.get(first) ?? 0) + 1;
          sent.set(first, n);
          await gates.get(`${first}#${n}`)?.opened;
          return crm.batch.submitBatch(items);
        },
      };
      const jobs = createImportJobs({ batch, records: createImportJobRecords(crm.database.db, schemas.read), maxBytes: 10_000_000 });
      const rows = 3_500;
      // Line 3 and the last line are refused: each is reported once, whatever the reruns.
      const body = [
        'name,email',
        ...Array.from({ length: rows }, (_, i) => (i === 1 || i === rows - 1 ? `Person ${i},not-an-address` : `Person ${i},faults-${i}@example.com`)),
      ].join('\n');
      const outage = async (job: ImportJob, gate: string) => {
        proxy.resetAll();
        proxy.refuse();
        gates.get(gate)!.open();
        await until('the job to wait for the database', () => /waiting for the database/.test(job.error ?? ''));
        expect(job.status).toBe('running');
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        proxy.pass();
      };
      try {
        const job = await jobs.start({ kind: 'customers', format: 'csv', body: Readable.from([body]), actor, owner: 'key-faults' });
        // Its first two batches reported (1,999 rows: line 3 is refused), its third held at the gate.
        await until('the first run to report two batches', () => sent.get('faults-2000@example.com') === 1 && job.counts.imported === 1_999);
        await outage(job, 'faults-2000@example.com#1');
        // The rerun's first batch (the first run's rows, present) reported, its second held at the gate.
        await until(
          'the rerun to report its first batch',
          () => sent.get('faults-1000@example.com') === 2 && job.counts.imported > 0 && job.counts.imported < 1_500,
        );
        await outage(job, 'faults-1000@example.com#2');
        await until('the job to end', () => job.status !== 'running');
        expect(job).toMatchObject({ status: 'done', error: null, counts: { rows, imported: rows - 2, alreadyPresent: 0, rejected: 2 } });
        expect(job.rejectedRows.map((r) => r.line)).toEqual([3, rows + 1]);
        const stored = await jobs.get(job.id);
        expect(stored).toMatchObject({ status: 'done', counts: { imported: rows - 2, alreadyPresent: 0 } });
        // Every row once in the store: one registration each.
        const registrations = new Map<string, number>();
        for (const e of await crm.store.readAll({ maxCount: 100_000 }))
          if (e.type === 'CustomerRegistered') registrations.set(e.stream, (registrations.get(e.stream) ?? 0) + 1);
        expect(registrations.size).toBe(rows - 2);
        expect([...registrations.values()].every((n) => n === 1)).toBe(true);
      } finally {
        for (const gate of gates.values()) gate.open();
        proxy.pass();
        await jobs.close();
      }
    },
  );

  it('gives up, without a rerun, when another server recorded it failed while it waited, and leaves that record as it is', { timeout: 120_000 }, async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const sent = new Map<string, number>();
    const batch: BatchCommands = {
      ...crm.batch,
      submitBatch: async (items) => {
        const first = items[0] && 'prepared' in items[0] ? String(items[0].prepared.command.email) : '';
        sent.set(first, (sent.get(first) ?? 0) + 1);
        if (first === 'takeover-1000@example.com') await gate;
        return crm.batch.submitBatch(items);
      },
    };
    const jobs = createImportJobs({ batch, records: createImportJobRecords(crm.database.db, schemas.read), maxBytes: 10_000_000 });
    const direct = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await direct.connect();
    const rows = 2_500;
    const body = ['name,email', ...Array.from({ length: rows }, (_, i) => `Person ${i},takeover-${i}@example.com`)].join('\n');
    try {
      const job = await jobs.start({ kind: 'customers', format: 'csv', body: Readable.from([body]), actor, owner: 'key-takeover' });
      await until('the first batch to be reported', () => sent.get('takeover-1000@example.com') === 1 && job.counts.imported === 1_000);
      proxy.resetAll();
      proxy.refuse();
      open();
      await until('the job to wait for the database', () => /waiting for the database/.test(job.error ?? ''));
      // What another server does to a job whose heartbeat went stale (api/import-job-records.ts).
      const taken = await direct.query(
        `UPDATE "${schemas.read}".import_jobs SET status = 'failed', error = 'orphaned elsewhere' WHERE id = $1 AND status = 'running'`,
        [job.id],
      );
      expect(taken.rowCount).toBe(1);
      proxy.pass();
      await until('the job to end', () => job.status !== 'running');
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/another server recorded this import as failed: send the same file again/);
      // No rerun: the file's first batch was sent once, and the other server's record stands.
      expect(sent.get('takeover-0@example.com')).toBe(1);
      const { rows: records } = await direct.query(`SELECT status, error FROM "${schemas.read}".import_jobs WHERE id = $1`, [job.id]);
      expect(records).toEqual([{ status: 'failed', error: 'orphaned elsewhere' }]);
    } finally {
      open();
      proxy.pass();
      await direct.end();
      await jobs.close();
    }
  });
});
