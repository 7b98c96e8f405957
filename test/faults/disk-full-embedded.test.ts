import { execFileSync } from 'node:child_process';
import { statfsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CrmApp } from '../../api/app.ts';
import { loadConfig } from '../../cli/config.ts';
import { DiskFull } from '../../eventstore/errors.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { runCrm } from '../cli/support.ts';
import { writesShown } from './writes-shown.ts';

/**
 * The embedded database on a disk that fills up. PGlite 0.4.6 does not fail a commit whose WAL flush
 * finds no room for a new segment: it spins for ever, and the whole process with it (found with 8
 * writers on a 50 MB tmpfs: /health unanswered, SIGTERM ignored). The CRM keeps CRM_MIN_FREE_DISK_MB
 * free instead, measured on the real disk: the tests set it relative to the disk's free space and fill
 * the disk with a real file, as another program would.
 */
const MB = 1024 * 1024;
const freeMb = (folder: string): number => {
  const stats = statfsSync(folder);
  return Math.floor((stats.bavail * stats.bsize) / MB);
};
/** Space taken by the filler: far more than other programs on the machine free or take meanwhile. */
const FILLER_MB = 1024;

let folder: string;
let crm: CrmRuntime | undefined;
let app: CrmApp | undefined;
let adminKey = '';
const auth = () => ({ authorization: `Bearer ${adminKey}` });
const register = (name: string) =>
  app!.inject({ method: 'POST', url: '/customers', headers: auth(), payload: { name, email: `${name.toLowerCase()}@disk-full.example` } });
/** Past the guard's 100 ms between two readings of the free space. */
const guardLooksAgain = () => new Promise((resolve) => setTimeout(resolve, 150));

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'crm-disk-full-'));
});

afterAll(async () => {
  await app?.close();
  await crm?.close();
  await rm(folder, { recursive: true, force: true });
});

describe('the embedded database on a disk that fills up', () => {
  it('refuses commands with 503 disk-full and appends nothing, keeps answering /health and queries, and takes commands again once space is freed', async () => {
    // The margin sits half the filler below the free space: open and the first command pass, the filler crosses it.
    const margin = freeMb(tmpdir()) - FILLER_MB / 2;
    crm = await openCrm(loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent', CRM_MIN_FREE_DISK_MB: String(margin) }, folder));
    app = await crm.buildApi({ logger: false });
    adminKey = (await app.keys.create({ name: 'disk', role: 'admin' })).key;
    await crm.startProjections();
    const first = await register('Ada');
    expect(first.statusCode, first.body).toBe(201);
    const { id: adaId } = first.json<{ id: string }>();
    const head = await crm.store.headPosition();
    expect(await writesShown(app)).toMatchObject({ writes: { state: 'accepted', reason: null, since: null, detail: null }, gauge: '0' });

    const filler = join(folder, 'filler');
    execFileSync('fallocate', ['-l', `${FILLER_MB}M`, filler]);
    try {
      await guardLooksAgain();
      const refused = await register('Grace');
      expect(refused.statusCode, refused.body).toBe(503);
      expect(refused.headers['retry-after']).toBe('30');
      // Told as a full database disk is, whether the reserve was reached or PostgreSQL ran out (SQLSTATE 53100).
      expect(refused.json()).toMatchObject({ type: 'https://crm.example/problems/unavailable', code: 'database.disk-full', retrySafeWithIdempotencyKey: true });
      expect(await crm.store.headPosition()).toBe(head);

      expect((await app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
      const listed = await app.inject({ method: 'GET', url: `/customers?limit=5`, headers: auth() });
      expect(listed.statusCode, listed.body).toBe(200);
      // Ready still (queries answer: out of the balancer, reads would go too), saying that writes are refused and why.
      const shown = await writesShown(app);
      expect(shown).toMatchObject({ status: 200, writes: { state: 'refused', reason: 'disk-full' }, gauge: '1' });
      expect(Date.parse(shown.writes.since!)).toBeGreaterThan(Date.now() - 60_000);
      expect(shown.writes.detail).toBe(
        'the disk of the embedded database has less free space than it keeps in reserve (CRM_MIN_FREE_DISK_MB): commands get 503 database.disk-full until some is freed',
      );
      expect(shown.warnings).toContain(`writes are refused since ${shown.writes.since}: ${shown.writes.detail}`);
      // A second refusal is the same state going on: since the first.
      expect((await register('Grace')).statusCode).toBe(503);
      expect((await writesShown(app)).writes.since).toBe(shown.writes.since);

      // The projections' writes (leases, checkpoints) are refused too: they wait and try again, none fails.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const waiting = await crm.runner.status();
      expect(waiting.filter((status) => status.state !== 'running').map((status) => `${status.name}: ${status.state}`)).toEqual([]);
    } finally {
      await rm(filler);
    }

    await guardLooksAgain();
    const taken = await register('Grace');
    expect(taken.statusCode, taken.body).toBe(201);
    expect(await writesShown(app)).toMatchObject({ status: 200, writes: { state: 'accepted', reason: null }, gauge: '0' });
    const { position } = taken.json<{ position: string }>();
    const projected = await app.inject({ method: 'GET', url: `/customers/${adaId}?waitFor=${position}`, headers: auth() });
    expect(projected.statusCode, projected.body).toBe(200);
    await app.close();
    await crm.close();
    app = crm = undefined;
  }, 180_000);

  it('refuses to open a data folder on a disk with less free than the margin, with exit 74 naming the space', async () => {
    const margin = freeMb(tmpdir()) + FILLER_MB;
    await expect(openCrm(loadConfig({ CRM_DATA_DIR: folder, LOG_LEVEL: 'silent', CRM_MIN_FREE_DISK_MB: String(margin) }, folder))).rejects.toBeInstanceOf(
      DiskFull,
    );
    const run = await runCrm(['serve', '--no-demo'], { cwd: folder, env: { CRM_DATA_DIR: folder, CRM_MIN_FREE_DISK_MB: String(margin) }, timeoutMs: 60_000 });
    expect(run.stderr.trim()).toMatch(
      new RegExp(
        `^crm serve: the disk holding ${folder}/pgdata has \\d+ MB free; the embedded database needs at least ${margin} MB: free some space \\(CRM_MIN_FREE_DISK_MB sets that amount\\)\\.$`,
      ),
    );
    expect(run.code).toBe(74);
  }, 120_000);
});
