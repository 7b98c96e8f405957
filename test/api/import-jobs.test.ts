import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { ROLES, type Role } from '../../api/roles.ts';
import type { BatchCommands } from '../../commands/batch.ts';
import {
  createImportJobs,
  ImportAborted,
  ImportBusy,
  ImportStalled,
  ImportTooLarge,
  type ImportJob,
  type ImportJobs,
  type ImportJobsOptions,
} from '../../commands/import/jobs.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { createImportJobRecords, type ImportJobRecordsOptions } from '../../api/import-job-records.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import type { SessionLock } from '../../projections/shadows.ts';

/**
 * The import jobs behind `POST /imports` and `GET /imports/:id`, on the real PostgreSQL: the body
 * spooled and bounded, one import per key at a time, progress and the bad-row report, the jobs kept,
 * a stop between batches; then the same over HTTP.
 */
const MAX_BYTES = 4_000;
/** How long an upload may send nothing (the default is 30 s). */
const IDLE_MS = 1_500;
const actor = { userId: 'api-key:test', roles: ['admin'] };
let schemas: TestSchemas;
let crm: CrmRuntime;
let app: CrmApp;
const keys = {} as Record<Role, string>;
let spool: string;
const previousTmp = process.env.TMPDIR;
const opened: ImportJobs[] = [];

beforeAll(async () => {
  // Spool folders go to a folder of this file's own, so that each one's removal can be checked.
  spool = mkdtempSync(join(tmpdir(), 'crm-import-jobs-test-'));
  process.env.TMPDIR = spool;
  schemas = testSchemas('import_jobs');
  crm = await openCrm(testConfig(schemas, { CRM_PROJECTIONS: 'off' }), {
    overrides: { importMaxBytes: MAX_BYTES, importIdleMs: IDLE_MS, publishers: false, chainSealer: false },
  });
  app = await crm.buildApi({ waitForTimeoutMs: 15_000, backPressure: { ...crm.apiDeps.backPressure, maxEventLoopDelayMs: 0 } });
  for (const role of ROLES) keys[role] = (await app.keys.create({ name: `import ${role}`, role })).key;
}, 120_000);

afterAll(async () => {
  // Bounded: a job that never finishes fails its own test, and must not hold up the rest of the file.
  for (const jobs of opened) await Promise.race([jobs.close(), new Promise((resolve) => setTimeout(resolve, 5_000))]);
  await app?.close();
  await crm?.close();
  await schemas?.dropSchemas();
  if (previousTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = previousTmp;
  rmSync(spool, { recursive: true, force: true });
});

const jobsWith = (options: Partial<ImportJobsOptions> & ImportJobRecordsOptions = {}): ImportJobs => {
  const { keepJobs, keepJobsPerKey, ...rest } = options;
  const records = createImportJobRecords(crm.database.db, schemas.read, {
    ...(keepJobs !== undefined ? { keepJobs } : {}),
    ...(keepJobsPerKey !== undefined ? { keepJobsPerKey } : {}),
  });
  const jobs = createImportJobs({ batch: crm.batch, records, maxBytes: 1_000_000, ...rest });
  opened.push(jobs);
  return jobs;
};

/** A batch handler that holds the `n`th batch (counting from 1) until `open()`: the store stays the real one. */
const held = (n = 1) => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let submitted = 0;
  const batch: BatchCommands = {
    prepare: (item) => crm.batch.prepare(item),
    importedCustomerId: (email) => crm.batch.importedCustomerId(email),
    customersByEmail: (emails) => crm.batch.customersByEmail(emails),
    customersStored: (ids) => crm.batch.customersStored(ids),
    storedAlready: (items) => crm.batch.storedAlready(items),
    registeredAs: (items) => crm.batch.registeredAs(items),
    user: (userId) => crm.batch.user(userId),
    executeBatch: (items) => crm.batch.executeBatch(items),
    submitBatch: async (items) => {
      submitted += 1;
      if (submitted >= n) await gate;
      return crm.batch.submitBatch(items);
    },
  };
  return { batch, open, submitted: () => submitted };
};

const until = async (what: string, done: () => boolean, timeoutMs = 15_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};
const ended = (job: ImportJob) => until(`import ${job.id} to end`, () => job.status !== 'running');
const spoolFolders = () => readdirSync(spool).filter((name) => name.startsWith('crm-import-'));

const csv = (...lines: string[]) => Readable.from([lines.join('\n')]);
const customers = (prefix: string, n: number) => ['name,email', ...Array.from({ length: n }, (_, i) => `Person ${i},${prefix}-${i}@example.com`)].join('\n');
/** Whether a job of `owner` is recorded as running (claimed). */
const runningFor = async (owner: string): Promise<boolean> => {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(schemas.read, 'import_jobs')}
    WHERE owner = ${owner} AND status = 'running'`.execute(crm.database.db);
  return (rows[0]?.n ?? 0) > 0;
};
const start = (jobs: ImportJobs, body: Readable, owner = 'key-1', kind: 'customers' | 'purchases' = 'customers') =>
  jobs.start({ kind, format: 'csv', body, actor, owner });

describe('import jobs', () => {
  it('answers a running job as soon as the body is in, then finishes it with its counts and bad rows', async () => {
    const { batch, open } = held();
    const jobs = jobsWith({ batch });
    const body = 'name,email\nAda,ada@jobs.example\nBad,not-an-email\nGrace,grace@jobs.example';
    const before = Date.now();
    const job = await start(jobs, csv(body));
    expect(job).toStrictEqual({
      id: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      kind: 'customers',
      format: 'csv',
      owner: 'key-1',
      defaultOwner: null,
      status: 'running',
      bytes: Buffer.byteLength(body),
      counts: { kind: 'customers', rows: 0, imported: 0, alreadyPresent: 0, rejected: 0 },
      rejectedRows: [],
      rejectedRowsTruncated: false,
      unreadColumns: [],
      error: null,
      startedAt: expect.any(String),
      finishedAt: null,
    });
    expect(Date.parse(job.startedAt)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(job.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(await jobs.get(job.id)).toBe(job);
    expect(await jobs.get('00000000-0000-4000-8000-000000000000')).toBeUndefined();
    expect(spoolFolders()).toEqual([expect.stringMatching(new RegExp(`^crm-import-${process.pid}-`))]);
    open();
    await ended(job);
    expect(job).toMatchObject({
      status: 'done',
      counts: { kind: 'customers', rows: 3, imported: 2, alreadyPresent: 0, rejected: 1 },
      rejectedRowsTruncated: false,
      error: null,
    });
    expect(job.rejectedRows).toEqual([{ line: 3, reason: expect.stringContaining('email') }]);
    await until('the end of the job', () => job.finishedAt !== null && spoolFolders().length === 0);
    expect(Date.parse(job.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(job.startedAt));
    expect(Date.parse(job.finishedAt!)).toBeLessThanOrEqual(Date.now());
    // The same file again appends nothing twice.
    const again = await start(jobs, csv(body));
    await ended(again);
    expect(again).toMatchObject({ status: 'done', counts: { rows: 3, imported: 2, alreadyPresent: 2, rejected: 1 } });
    expect(again.id).not.toBe(job.id);
  });

  it('names the columns of the file no row read, once it ended, in every process', async () => {
    const jobs = jobsWith();
    const job = await start(jobs, csv('name,email,tgas', 'Typo Tags,typo-tags@example.com,vip'), 'key-unread');
    expect(job.unreadColumns).toEqual([]);
    await ended(job);
    expect(job).toMatchObject({ status: 'done', unreadColumns: ['tgas'], counts: { imported: 1 } });
    expect(await jobsWith().get(job.id)).toMatchObject({ unreadColumns: ['tgas'] });
  });

  it('names a column whose name PostgreSQL cannot store with U+FFFD in its place, and records the job done', async () => {
    // The rows were stored, but the job's record could not be (jsonb refuses NUL and lone surrogates):
    // it read "killed or crashed" with no rows counted, however often the file was sent again.
    const jobs = jobsWith();
    const job = await start(jobs, csv('name,email,no\u0000te,\ud800x', 'Odd Header,odd-header@example.com,a,b'), 'key-odd-header');
    await ended(job);
    expect(job).toMatchObject({ status: 'done', error: null, unreadColumns: ['no\ufffdte', '\ufffdx'], counts: { imported: 1 } });
    expect(await jobsWith().get(job.id)).toMatchObject({ status: 'done', unreadColumns: ['no\ufffdte', '\ufffdx'], counts: { imported: 1 } });
  });

  it('takes NDJSON', async () => {
    const jobs = jobsWith();
    const body = Readable.from([`${JSON.stringify({ name: 'Lin', email: 'lin@jobs.example' })}\n[1]\n`]);
    const job = await jobs.start({ kind: 'customers', format: 'ndjson', body, actor, owner: 'key-1' });
    expect(job.format).toBe('ndjson');
    await ended(job);
    expect(job).toMatchObject({
      status: 'done',
      counts: { rows: 2, imported: 1, rejected: 1 },
      rejectedRows: [{ line: 2, reason: 'row: expected a JSON object' }],
    });
  });

  it('shows the counts of each stored batch while the import runs', async () => {
    const { batch, open } = held(2);
    const jobs = jobsWith({ batch });
    const job = await start(jobs, Readable.from([customers('progress', 1_001)]));
    await until('the first batch in the counts', () => job.counts.imported === 1_000);
    expect(job.status).toBe('running');
    expect(job.counts).toEqual({ kind: 'customers', rows: 1_001, imported: 1_000, alreadyPresent: 0, rejected: 0 });
    open();
    await ended(job);
    expect(job).toMatchObject({ status: 'done', counts: { kind: 'customers', rows: 1_001, imported: 1_001, alreadyPresent: 0, rejected: 0 } });
  });

  it('runs one import per key at a time: refused while its upload or its import runs, other keys go ahead', { timeout: 60_000 }, async () => {
    const { batch, open } = held();
    const jobs = jobsWith({ batch });
    const upload = new PassThrough();
    const first = start(jobs, upload);
    upload.write('name,email\n');
    // Claimed before the upload ends. Waited for: two claims sent together take the key's lock in
    // either order (the second had it first in one CI run, and the first upload was the refused one).
    for (const deadline = Date.now() + 15_000; !(await runningFor('key-1'));) {
      if (Date.now() > deadline) throw new Error('the first upload was not claimed within 15 s');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const refused = new PassThrough();
    refused.end('name,email\nEve,eve@jobs.example\n');
    const busy = await start(jobs, refused).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(busy).toBeInstanceOf(ImportBusy);
    expect((busy as Error).name).toBe('ImportBusy');
    // The refused body is read to its end, so the connection can answer.
    expect(refused.readableFlowing).toBe(true);
    const other = await start(jobs, csv('name,email'), 'key-2');
    expect(other.owner).toBe('key-2');
    upload.end('Tom,tom@jobs.example\n');
    const job = await first;
    const whileImporting = await start(jobs, csv('name,email'), 'key-1').catch((error: unknown) => error);
    expect(whileImporting).toBeInstanceOf(ImportBusy);
    expect((whileImporting as ImportBusy).runningId).toBe(job.id);
    expect((whileImporting as Error).message).toBe(`Import ${job.id} of the same key is still running; wait for it to finish`);
    open();
    await ended(job);
    await ended(other);
    const next = await start(jobs, csv('name,email'), 'key-1');
    await ended(next);
    expect(next.status).toBe('done');
  });

  it('stops an upload over the bound, counting the bytes of every chunk, and frees the key', async () => {
    const jobs = jobsWith({ maxBytes: 100 });
    const exactly = await start(jobs, Readable.from([Buffer.alloc(50, 'a'), Buffer.alloc(50, 'b')]));
    expect(exactly.bytes).toBe(100);
    await ended(exactly);
    const over = await start(jobs, Readable.from([Buffer.alloc(60, 'a'), Buffer.alloc(41, 'b')])).catch((error: unknown) => error);
    expect(over).toBeInstanceOf(ImportTooLarge);
    expect(over).toMatchObject({ name: 'ImportTooLarge', maxBytes: 100, message: 'The import body is larger than 100 bytes' });
    expect(spoolFolders()).toEqual([]);
    // Like a request body, which emits an error only to its listeners.
    const failedSource = new PassThrough().on('error', () => undefined);
    const failed = start(jobs, failedSource);
    failedSource.write('name,email\n');
    await until('the upload to be spooled', () => spoolFolders().length === 1);
    const reset = new Error('connection reset');
    failedSource.destroy(reset);
    // The client went away: told apart from a fault of the server, with the source's error as its cause.
    await expect(failed).rejects.toBeInstanceOf(ImportAborted);
    await expect(failed).rejects.toHaveProperty('cause', reset);
    expect(spoolFolders()).toEqual([]);
    const next = await start(jobs, csv('name,email', 'Kim,kim@jobs.example'));
    await ended(next);
    expect(next).toMatchObject({ status: 'done', bytes: 'name,email\nKim,kim@jobs.example'.length, counts: { imported: 1 } });
  });

  it('cuts an upload that sends nothing for its idle bound, imports nothing of it, and frees the key', async () => {
    const jobs = jobsWith({ idleMs: 200 });
    const body = new PassThrough();
    body.write('name,email\nIdle,idle@jobs.example\n');
    const started = performance.now();
    await expect(jobs.start({ kind: 'customers', format: 'csv', body, actor, owner: 'idle' })).rejects.toBeInstanceOf(ImportStalled);
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(readdirSync(spool).filter((f) => f.startsWith('crm-import-'))).toEqual([]);
    const again = await jobs.start({ kind: 'customers', format: 'csv', body: Readable.from(['name,email\n']), actor, owner: 'idle' });
    expect(again.status).toBe('running');
  });

  it('removes the spool folders left by processes that no longer run, and keeps those of running ones', async () => {
    // A crash mid-upload leaves its body on disk (up to the size bound); the next server removes it.
    const ended = spawnSync(process.execPath, ['-e', '']).pid;
    const other = spawn('sleep', ['30']);
    const stale = `crm-import-${ended}-a1b2c3`;
    const live = `crm-import-${other.pid}-d4e5f6`;
    const unrelated = 'crm-import-notes';
    try {
      for (const name of [stale, live, unrelated]) {
        mkdirSync(join(spool, name));
        writeFileSync(join(spool, name, 'body.csv'), 'name,email\n');
      }
      const jobs = jobsWith();
      await jobs.close();
      expect(
        readdirSync(spool)
          .filter((name) => [stale, live, unrelated].includes(name))
          .sort(),
      ).toEqual([live, unrelated].sort());
    } finally {
      other.kill();
      for (const name of [stale, live, unrelated]) rmSync(join(spool, name), { recursive: true, force: true });
    }
  });

  it('reports the first bad rows up to its bound, and says when there were more', async () => {
    const jobs = jobsWith({ maxReportedRows: 2 });
    const three = await start(jobs, csv('name,email', 'a', 'b', 'c'));
    await ended(three);
    expect(three).toMatchObject({ counts: { rows: 3, rejected: 3 }, rejectedRowsTruncated: true });
    expect(three.rejectedRows.map((r) => r.line)).toEqual([2, 3]);
    const two = await start(jobs, csv('name,email', 'a', 'b'));
    await ended(two);
    expect(two).toMatchObject({ counts: { rows: 2, rejected: 2 }, rejectedRowsTruncated: false });
    expect(two.rejectedRows.map((r) => r.line)).toEqual([2, 3]);
    // By default, the first 10,000.
    const defaults = jobsWith();
    const many = await start(defaults, csv('name,email', ...Array.from({ length: 10_001 }, () => 'x')));
    await ended(many);
    expect(many).toMatchObject({ counts: { rejected: 10_001 }, rejectedRowsTruncated: true });
    expect(many.rejectedRows).toHaveLength(10_000);
    expect(many.rejectedRows.at(-1)!.line).toBe(10_001);
    const bound = await start(defaults, csv('name,email', ...Array.from({ length: 10_000 }, () => 'x')));
    await ended(bound);
    expect(bound).toMatchObject({ counts: { rejected: 10_000 }, rejectedRowsTruncated: false });
    expect(bound.rejectedRows).toHaveLength(10_000);
  });

  it('fails a job whose file cannot be read or whose store fails, with the reason, and frees the key', async () => {
    const jobs = jobsWith();
    const unreadable = await start(jobs, csv('name,email', '"Ada,ada@jobs.example'));
    await ended(unreadable);
    expect(unreadable.status).toBe('failed');
    expect(unreadable.error).toMatch(/quote/i);
    expect(unreadable.finishedAt).not.toBeNull();
    const failing: BatchCommands = {
      prepare: (item) => crm.batch.prepare(item),
      importedCustomerId: (email) => crm.batch.importedCustomerId(email),
      customersByEmail: (emails) => crm.batch.customersByEmail(emails),
      customersStored: (ids) => crm.batch.customersStored(ids),
      storedAlready: (items) => crm.batch.storedAlready(items),
      registeredAs: (items) => crm.batch.registeredAs(items),
      user: (userId) => crm.batch.user(userId),
      executeBatch: () => Promise.reject(new Error('unused')),
      // A fault that is not an Error object is reported as its text.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the fault under test is not an Error
      submitBatch: () => Promise.reject('the store is gone'),
    };
    const broken = jobsWith({ batch: failing });
    const job = await start(broken, csv('name,email', 'Ada,ada@jobs.example'));
    await ended(job);
    expect(job).toMatchObject({ status: 'failed', error: 'the store is gone' });
    const thrown = jobsWith({ batch: { ...failing, submitBatch: () => Promise.reject(new Error('connection terminated')) } });
    const withError = await start(thrown, csv('name,email', 'Ada,ada@jobs.example'));
    await ended(withError);
    expect(withError).toMatchObject({ status: 'failed', error: 'connection terminated' });
    await until('the key to be free', () => spoolFolders().length === 0);
    const next = await start(broken, csv('name,email'));
    await ended(next);
    expect(next.status).toBe('done');
  });

  it("keeps the latest jobs of each key and in all, never dropping one that runs or another key's", async () => {
    const { batch, open } = held();
    const jobs = jobsWith({ batch, keepJobs: 1 });
    const a = await start(jobs, csv('name,email', 'Ann,ann@jobs.example'), 'key-a');
    const b = await start(jobs, csv('name,email', 'Ben,ben@jobs.example'), 'key-b');
    expect(await jobs.get(a.id)).toBe(a);
    expect(await jobs.get(b.id)).toBe(b);
    open();
    await ended(a);
    await ended(b);
    const c = await start(jobs, csv('name,email'), 'key-c');
    expect(await jobs.get(a.id)).toBeUndefined();
    expect(await jobs.get(b.id)).toBeUndefined();
    // c has no rows and may end (and be read back from its record) before this look.
    await ended(c);
    expect(await jobs.get(c.id)).toEqual(c);

    const two = jobsWith({ keepJobs: 2 });
    const first = await start(two, csv('name,email'));
    await ended(first);
    const second = await start(two, csv('name,email'));
    await ended(second);
    // Finished: as recorded, equal to the job as it ended.
    expect(await two.get(first.id)).toEqual(first);
    expect(await two.get(second.id)).toEqual(second);
    const third = await start(two, csv('name,email'));
    await ended(third);
    expect(await two.get(first.id)).toBeUndefined();
    expect([await two.get(second.id), await two.get(third.id)]).toEqual([second, third]);

    // By default, the latest 20 of each key: a key importing again and again drops its own oldest,
    // never another key's (one bound for all let one key push every other key's report out).
    const defaults = jobsWith();
    const other = await start(defaults, csv('name,email'), 'key-other');
    await ended(other);
    const started: ImportJob[] = [];
    for (let i = 0; i < 101; i++) {
      const job = await start(defaults, csv('name,email'), 'key-busy');
      started.push(job);
      await ended(job);
    }
    expect(await defaults.get(other.id)).toEqual(other);
    const kept = await Promise.all(started.map(async (job) => (await defaults.get(job.id)) !== undefined));
    expect(kept).toEqual(started.map((_, i) => i >= 81));
  });

  it('on close, stops a running import between batches and waits for it; a rerun finishes it', async () => {
    const { batch, open, submitted } = held();
    const jobs = jobsWith({ batch });
    // Two full batches: the stop is seen before the second is sent.
    const file = customers('closing', 2_001);
    const job = await start(jobs, Readable.from([file]));
    await until('the first batch to be submitted', () => submitted() === 1);
    let closed = false;
    const closing = jobs.close().then(() => (closed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    open();
    await closing;
    expect(job).toMatchObject({
      status: 'failed',
      error: 'stopped by a shutdown: send the same file again to finish (nothing is appended twice)',
      counts: { kind: 'customers', imported: 1_000, alreadyPresent: 0, rejected: 0 },
    });
    expect(job.finishedAt).not.toBeNull();
    expect(spoolFolders()).toEqual([]);
    const rerun = jobsWith();
    const again = await start(rerun, Readable.from([file]));
    await ended(again);
    expect(again).toMatchObject({ status: 'done', counts: { rows: 2_001, imported: 2_001, alreadyPresent: 1_000 } });
  });

  it('on close, waits for an upload in progress to end', { timeout: 30_000 }, async () => {
    const jobs = jobsWith();
    const upload = new PassThrough().on('error', () => undefined);
    const before = spoolFolders();
    const started = start(jobs, upload).catch((error: unknown) => error);
    upload.write('name,email\n');
    await until('its spool folder', () => spoolFolders().some((name) => !before.includes(name)));
    let closed = false;
    const closing = jobs.close().then(() => (closed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    upload.destroy(new Error('connection reset'));
    expect(await started).toMatchObject({ name: 'ImportAborted', cause: { message: 'connection reset' } });
    await closing;
    expect(closed).toBe(true);
  });
});

describe('import jobs across processes (replicas, a crash)', () => {
  /** Session advisory locks on connections of their own, as the runtime's: ending one is what a dead process's server does. */
  const lockConnections = new Map<string, number>();
  const sessionLock: SessionLock = async (key) => {
    const client = new pg.Client({ connectionString: schemas.url });
    client.on('error', () => undefined);
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_advisory_lock(hashtext($1)), pg_backend_pid() AS pid', [key]);
    lockConnections.set(key, rows[0]!.pid);
    return async () => {
      lockConnections.delete(key);
      await client.end().catch(() => undefined);
    };
  };
  const replica = (batch: BatchCommands, options: ImportJobRecordsOptions = { sessionLock }) => {
    const jobs = createImportJobs({ batch, records: createImportJobRecords(crm.database.db, schemas.read, options), maxBytes: 1_000_000 });
    opened.push(jobs);
    return jobs;
  };

  it('answers for an import another process runs, refuses its key there, and shows the end as that process recorded it', async () => {
    const { batch, open } = held();
    const a = replica(batch);
    const b = replica(crm.batch);
    const job = await start(a, csv('name,email', 'Ann,ann@replicas.example', 'Bad,not-an-email', 'Ben,ben@replicas.example'), 'key-replicas');
    const seen = await b.get(job.id);
    expect(seen).not.toBe(job);
    expect(seen).toMatchObject({ id: job.id, status: 'running', bytes: job.bytes, finishedAt: null });
    await expect(start(b, csv('name,email'), 'key-replicas')).rejects.toMatchObject({ name: 'ImportBusy', runningId: job.id });
    const other = await start(b, csv('name,email'), 'key-replicas-other');
    open();
    await ended(job);
    await ended(other);
    expect(job).toMatchObject({ status: 'done', counts: { rows: 3, imported: 2, rejected: 1 }, rejectedRows: [{ line: 3 }] });
    expect(await b.get(job.id)).toEqual(job);
    const next = await start(b, csv('name,email'), 'key-replicas');
    await ended(next);
    expect(next.status).toBe('done');
  });

  it(
    'keeps a job whose end cannot be saved yet (the database away) held as running, and shows its end once saved, not a crash',
    { timeout: 60_000 },
    async () => {
      const real = createImportJobRecords(crm.database.db, schemas.read, { sessionLock });
      let failures = 7;
      // The end's save fails as it does while the database is away: more times than are tried before `finish` returns.
      const records = {
        ...real,
        finish: async (job: ImportJob) => {
          if (failures-- > 0) throw new EventStoreUnavailable('Lost the connection to PostgreSQL');
          await real.finish(job);
        },
      };
      const a = createImportJobs({ batch: crm.batch, records, maxBytes: 1_000_000 });
      opened.push(a);
      const b = replica(crm.batch);
      const job = await start(a, csv('name,email', 'Dee,dee@replicas.example'), 'key-end-later');
      await ended(job);
      // Ended here, its end not saved yet: the other process reads it as running, not as killed or crashed.
      expect(failures).toBeGreaterThan(0);
      expect(await b.get(job.id)).toMatchObject({ status: 'running', error: null });
      await until('the end to be saved', () => failures < 0, 30_000);
      let seen = await b.get(job.id);
      for (const deadline = Date.now() + 5_000; seen?.status === 'running' && Date.now() < deadline; seen = await b.get(job.id)) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(seen).toMatchObject({ status: 'done', error: null, counts: { imported: 1 } });
    },
  );

  it('tells an import whose process died within seconds, and lets its key import again', async () => {
    const { batch, open } = held();
    const dying = replica(batch);
    const b = replica(crm.batch);
    const job = await start(dying, csv('name,email', 'Cy,cy@replicas.example'), 'key-crash');
    await expect(start(b, csv('name,email'), 'key-crash')).rejects.toMatchObject({ name: 'ImportBusy', runningId: job.id });
    // The process is gone: its server ends its connections and their session locks with them.
    await sql`SELECT pg_terminate_backend(${lockConnections.get(`crm-import:${job.id}`)!})`.execute(crm.database.db);
    // The backend lets the lock go as it exits, a moment after the signal; a free lock is looked at again
    // after the 2 s a live holder would take to take it back: seconds, not the heartbeat's minute.
    let seen = await b.get(job.id);
    for (const deadline = Date.now() + 1_000; seen?.status === 'running' && Date.now() < deadline; seen = await b.get(job.id)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(seen).toMatchObject({
      id: job.id,
      status: 'failed',
      error: expect.stringMatching(/stopped .*send the same file again/),
      finishedAt: expect.any(String),
    });
    // The table says so too, for those who read it with SQL.
    const { rows: recorded } = await sql<{ status: string }>`SELECT status FROM ${sql.id(schemas.read, 'import_jobs')} WHERE id = ${job.id}`.execute(
      crm.database.db,
    );
    expect(recorded).toEqual([{ status: 'failed' }]);
    const again = await start(b, csv('name,email', 'Cy,cy@replicas.example'), 'key-crash');
    await ended(again);
    expect(again).toMatchObject({ status: 'done', counts: { imported: 1 } });
    open();
    await ended(job);
  });

  it('keeps a finished job (its bad rows quote refused cells) 7 days at most', async () => {
    const jobs = replica(crm.batch);
    const job = await start(jobs, csv('name,email', 'Eve,not-an-email'), 'key-expiry');
    await ended(job);
    expect(await jobs.get(job.id)).toMatchObject({ rejectedRows: [{ line: 2, reason: expect.stringContaining('not-an-email') }] });
    const table = (name: string) => sql.id(schemas.read, name);
    await sql`UPDATE ${table('import_jobs')} SET finished_at = now() - interval '6 days 23 hours' WHERE id = ${job.id}`.execute(crm.database.db);
    expect(await jobs.get(job.id)).toMatchObject({ id: job.id });
    await sql`UPDATE ${table('import_jobs')} SET finished_at = now() - interval '7 days 1 minute' WHERE id = ${job.id}`.execute(crm.database.db);
    expect(await jobs.get(job.id)).toBeUndefined();
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${table('import_job_rejected_rows')} WHERE job_id = ${job.id}`.execute(
      crm.database.db,
    );
    expect(rows[0]!.n).toBe(0);
  });

  it('drops a job its killed process left recorded as running, 7 days after its last heartbeat, whether or not its key imports again', async () => {
    const jobs = replica(crm.batch);
    const table = (name: string) => sql.id(schemas.read, name);
    const job = await start(jobs, csv('name,email', 'Kim,not-an-email'), 'key-killed');
    await ended(job);
    // As a process killed mid-import leaves it: still running, its heartbeat stopped 8 days ago.
    await sql`UPDATE ${table('import_jobs')} SET status = 'running', finished_at = NULL, heartbeat_at = now() - interval '8 days' WHERE id = ${job.id}`.execute(
      crm.database.db,
    );
    const other = await start(jobs, csv('name,email', 'Lu,lu@expiry.example'), 'key-other');
    await ended(other);
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${table('import_job_rejected_rows')} WHERE job_id = ${job.id}`.execute(
      crm.database.db,
    );
    expect(rows[0]!.n).toBe(0);
    expect(await jobs.get(job.id)).toBeUndefined();
  });

  it('on the embedded database, reads an import this process did not start as dead (one process per data folder)', async () => {
    const { batch, open } = held();
    const before = replica(batch, { exclusive: true });
    const job = await start(before, csv('name,email', 'Di,di@replicas.example'), 'key-restart');
    const restarted = replica(crm.batch, { exclusive: true });
    expect(await restarted.get(job.id)).toMatchObject({ status: 'failed', error: expect.stringMatching(/stopped/) });
    const again = await start(restarted, csv('name,email'), 'key-restart');
    await ended(again);
    expect(again.status).toBe('done');
    open();
    await ended(job);
  });
});

describe('import jobs over HTTP', () => {
  const auth = (role: Role) => ({ authorization: `Bearer ${keys[role]}` });
  const post = (role: Role, payload: string | Readable, type = 'text/csv', kind = 'customers') =>
    app.inject({ method: 'POST', url: `/imports?kind=${kind}`, headers: { ...auth(role), 'content-type': type }, payload });
  const poll = async (id: string, role: Role) => {
    for (const deadline = Date.now() + 30_000; ;) {
      const response = await app.inject({ method: 'GET', url: `/imports/${id}`, headers: auth(role) });
      expect(response.statusCode).toBe(200);
      const job = response.json<Record<string, unknown>>();
      if (job.status !== 'running') return job;
      if (Date.now() > deadline) throw new Error(`import ${id} still running`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  it('answers 202 with the id and its address; the job is shown to its key and to an admin only, without its owner', async () => {
    const response = await post('sales', 'name,email\nAda,ada@http.example\n');
    expect(response.statusCode).toBe(202);
    const { id } = response.json<{ id: string }>();
    expect(response.headers.location).toBe(`/imports/${id}`);
    const job = await poll(id, 'sales');
    expect(job).toMatchObject({ id, kind: 'customers', format: 'csv', status: 'done', counts: { rows: 1, imported: 1 } });
    expect(job).not.toHaveProperty('owner');
    expect((await poll(id, 'admin')).id).toBe(id);
    expect((await app.inject({ method: 'GET', url: `/imports/${id}`, headers: auth('support') })).statusCode).toBe(404);
    const unknown = await app.inject({ method: 'GET', url: '/imports/00000000-0000-4000-8000-000000000000', headers: auth('admin') });
    expect(unknown.statusCode).toBe(404);
  });

  it('takes NDJSON under each of its media types, and answers 413 to a declared length over the bound', async () => {
    for (const [type, name] of [
      ['application/x-ndjson', 'Spring'],
      ['application/ndjson; charset=utf-8', 'Summer'],
      ['application/jsonl', 'Autumn'],
    ] as const) {
      const accepted = await post('marketing', `${JSON.stringify({ name, channel: 'email', budget: 100 })}\n`, type, 'campaigns');
      expect(accepted.statusCode).toBe(202);
      expect(await poll(accepted.json<{ id: string }>().id, 'marketing')).toMatchObject({ status: 'done', format: 'ndjson', counts: { imported: 1 } });
    }
    const tooLarge = await post('admin', customers('large', 200));
    expect(tooLarge.statusCode).toBe(413);
  });

  /** A chunked upload over a real socket: `rows` rows, one every `everyMs`, then the end (or nothing more when `stall`). */
  const upload = (port: string, rows: number, everyMs: number, stall = false) =>
    new Promise<{ status: number; connection: string | undefined; body: Record<string, unknown> }>((resolve, reject) => {
      const request = httpRequest(
        { host: '127.0.0.1', port, method: 'POST', path: '/imports?kind=customers', headers: { ...auth('admin'), 'content-type': 'text/csv' } },
        (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () =>
            resolve({ status: response.statusCode!, connection: response.headers.connection, body: JSON.parse(text) as Record<string, unknown> }),
          );
        },
      );
      request.on('error', reject);
      request.write('name,email\n');
      let sent = 0;
      const timer = setInterval(() => {
        if (sent === rows) {
          clearInterval(timer);
          if (!stall) request.end();
          return;
        }
        request.write(`Slow ${sent},slow${sent}@upload.example\n`);
        sent += 1;
      }, everyMs);
    });

  it(
    'shows the import a 409 names while its upload runs; a client gone mid-upload fails it, frees the key, and is no server error',
    { timeout: 30_000 },
    async () => {
      // Found by sending half a file and closing the socket: the server logged "unhandled error" (a 500)
      // for an everyday client failure, and while an upload ran, the 409 to the same key named an
      // import that GET /imports/:id said did not exist.
      const logged: string[] = [];
      const server = await crm.buildApi({
        waitForTimeoutMs: 100,
        backPressure: { ...crm.apiDeps.backPressure, maxEventLoopDelayMs: 0 },
        logger: { level: 'warn', stream: { write: (line: string) => void logged.push(line) } },
      });
      try {
        const { port } = new URL(await server.listen({ port: 0, host: '127.0.0.1' }));
        const request = httpRequest({
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/imports?kind=customers',
          headers: { ...auth('sales'), 'content-type': 'text/csv' },
        });
        const gone = new Promise<void>((resolve) => request.on('error', () => resolve()));
        // Another test's spool folder may still be going: this upload's is the one not there before.
        const before = spoolFolders();
        const ours = () => spoolFolders().filter((name) => !before.includes(name));
        request.write('name,email\nHalf,half@upload.example\n');
        let busy: Record<string, unknown> = {};
        await until('the upload to hold the key', () => ours().length === 1);
        const refused = await server.inject({
          method: 'POST',
          url: '/imports?kind=customers',
          headers: { ...auth('sales'), 'content-type': 'text/csv' },
          payload: 'name,email\n',
        });
        expect(refused.statusCode).toBe(409);
        busy = refused.json();
        const id = /Import ([0-9a-f-]{36}) /.exec(String(busy.detail))?.[1];
        expect(id, String(busy.detail)).toBeDefined();
        const shown = await server.inject({ method: 'GET', url: `/imports/${id}`, headers: auth('sales') });
        expect(shown.statusCode, shown.body).toBe(200);
        expect(shown.json()).toMatchObject({ id, status: 'running', finishedAt: null });
        request.destroy();
        await gone;
        await until('the upload to end', () => ours().length === 0);
        const failed = await server.inject({ method: 'GET', url: `/imports/${id}`, headers: auth('sales') });
        expect(failed.json()).toMatchObject({
          id,
          status: 'failed',
          counts: { rows: 0, imported: 0 },
          error: expect.stringContaining('The upload ended before the whole file came'),
          finishedAt: expect.any(String),
        });
        const next = await server.inject({
          method: 'POST',
          url: '/imports?kind=customers',
          headers: { ...auth('sales'), 'content-type': 'text/csv' },
          payload: 'name,email\n',
        });
        expect(next.statusCode).toBe(202);
        expect(logged.filter((line) => line.includes('"level":50'))).toEqual([]);
      } finally {
        await server.close();
      }
    },
  );

  it('takes an upload longer than the request timeout, and cuts one that stops sending with 408', { timeout: 30_000 }, async () => {
    // A request timeout of 2.1 s (at least the read-model wait plus 2 s): the upload takes about 3 s.
    const slow = await crm.buildApi({ waitForTimeoutMs: 100, requestTimeoutMs: 1_000, backPressure: { ...crm.apiDeps.backPressure, maxEventLoopDelayMs: 0 } });
    try {
      const { port } = new URL(await slow.listen({ port: 0, host: '127.0.0.1' }));
      const accepted = await upload(port, 10, 300);
      expect(accepted.status).toBe(202);
      expect(await poll(accepted.body.id as string, 'admin')).toMatchObject({ status: 'done', counts: { rows: 10, imported: 10 } });
      const stalled = await upload(port, 1, 50, true);
      expect(stalled.status).toBe(408);
      // The rest of the body is not read: the connection ends with the answer.
      expect(stalled.connection).toBe('close');
      expect(stalled.body).toMatchObject({ status: 408, detail: expect.stringContaining(`sent nothing for ${IDLE_MS} ms; nothing was imported`) });
    } finally {
      await slow.close();
    }
  });
});

describe('an upload whose temporary folder is full', () => {
  it("answers 507 saying what to do (free space there, or set TMPDIR), where it answered 500; the job says the same; the folder is named in the server's log only", async () => {
    // /dev/full answers every write with ENOSPC, as a full disk does.
    const jobs = jobsWith({ openSpool: () => createWriteStream('/dev/full') });
    const logged: string[] = [];
    const full = await crm.buildApi({ imports: jobs, logger: { level: 'warn', stream: { write: (line: string) => void logged.push(line) } } });
    try {
      const response = await full.inject({
        method: 'POST',
        url: '/imports?kind=customers',
        headers: { authorization: `Bearer ${keys.admin}`, 'content-type': 'text/csv' },
        payload: customers('spool-full', 3),
      });
      expect(response.statusCode, response.body).toBe(507);
      expect(response.headers['content-type']).toContain('application/problem+json');
      expect(response.json()).toMatchObject({
        type: 'https://crm.example/problems/insufficient-storage',
        detail: `The server's temporary folder for uploads is full (ENOSPC), so the upload could not be written there: its operator must free space in it, or set TMPDIR to a folder with room (the server's log names the folder); nothing was imported: send the file again once it has room.`,
      });
      // A path of the server's is no client's business (it named the folder in `details.folder` until 2026-12-07).
      expect(response.body).not.toContain(spool);
      expect(logged.filter((line) => line.includes(`uploads are written to ${spool}, which has no room`))).toHaveLength(1);
      // The job as GET /imports/:id shows it: the same cause, not a bare ENOSPC, and no path either.
      const { rows } = await sql<{
        job: string;
      }>`SELECT j::text AS job FROM ${sql.id(schemas.read, 'import_jobs')} j WHERE j::text LIKE '%spool%' OR j::text LIKE '%temporary folder%'`.execute(
        crm.database.db,
      );
      const recorded = rows.map((r) => r.job).join('\n');
      expect(recorded).toContain("The server's temporary folder for uploads is full (ENOSPC)");
      expect(recorded).not.toContain(spool);
    } finally {
      await full.close();
    }
  });
});
