import { readModelProjections } from '../../projections/read-models/index.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../cli/config.ts';
import { testSchemas } from '../support/postgres.ts';
import { cleanEnv, CRM_BIN, fetchCaughtUp, poll, Server } from './support.ts';

/**
 * Two `crm project` workers beside an API process on one PostgreSQL: they split the projections by
 * lease, /ready names the holder of each, and a killed worker's projections are taken over.
 */
const schemas = testSchemas('cli_workers');
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_ADMIN_KEY: 'project-workers-test-admin-key-0123',
  CRM_PROJECTIONS: 'off',
  CRM_PROJECTION_LEASE_SECONDS: '2',
  PORT: '0',
  // Lease changes are logged at info.
  LOG_LEVEL: 'info',
};

/** `crm project --worker-id <id>`, output collected. */
class Worker {
  /** Its log: JSON lines, one per part's line. */
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  constructor(readonly id: string) {
    this.child = spawn(process.execPath, [CRM_BIN, 'project', '--worker-id', id], { cwd: tmpdir(), env: cleanEnv(env) });
    this.child.stdout!.on('data', (chunk: Buffer) => (this.stdout += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => resolve(code)));
  }
  running = () => poll(`worker ${this.id} to start`, async () => (/Projections are running/.test(this.stderr) ? true : undefined), 60_000);
  stop = () => (this.child.kill('SIGINT'), this.exited);
  kill = () => {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  };
}

const processes: { kill(): void }[] = [];
afterAll(async () => {
  for (const p of processes) p.kill();
  await schemas.dropSchemas();
});

interface ReadyProjection {
  name: string;
  owner: string | null;
  leaseExpiresAt: string | null;
  position: string;
}

describe('crm project workers', () => {
  it('split the projections, show their leases in GET /audit/projections, and take over a killed worker’s share', async () => {
    const api = new Server(tmpdir(), env);
    processes.push(api);
    const [, url] = await api.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr');
    const one = new Worker('worker-one');
    processes.push(one);
    await one.running();
    const two = new Worker('worker-two');
    processes.push(two);
    await two.running();
    const ready = async () =>
      (
        (await (await fetch(`${url}/audit/projections`, { headers: { authorization: `Bearer ${env.CRM_ADMIN_KEY}` } })).json()) as {
          projections: ReadyProjection[];
        }
      ).projections;

    const split = await poll(
      'the split',
      async () => {
        const projections = await ready();
        const by = (id: string) => projections.filter((p) => p.owner === id).length;
        return by('worker-one') + by('worker-two') === projections.length && by('worker-two') >= 2 ? projections : undefined;
      },
      30_000,
    );
    // Every read model, analytics and forget_in_copies, shared as evenly as two workers can.
    expect(split.length).toBe(readModelProjections().length + 2);
    expect(Math.abs(split.filter((p) => p.owner === 'worker-one').length - split.filter((p) => p.owner === 'worker-two').length)).toBe(split.length % 2);
    for (const p of split) expect(Date.parse(p.leaseExpiresAt!)).not.toBeNaN();

    // worker-two dies without releasing: after the 2 s lease, worker-one holds all and applies new writes.
    two.kill();
    const headers = { authorization: `Bearer ${env.CRM_ADMIN_KEY}`, 'content-type': 'application/json' };
    const created = await fetch(`${url}/customers`, { method: 'POST', headers, body: JSON.stringify({ name: 'Ada Lovelace', email: 'ada@example.com' }) });
    expect(created.status).toBe(201);
    const { id, position } = (await created.json()) as { id: string; position: string };
    await poll('the takeover', async () => ((await ready()).every((p) => p.owner === 'worker-one') ? true : undefined), 30_000);
    // On the shared server a transaction open in another test file can hold the feed past the 5 s bound.
    const read = await fetchCaughtUp(`${url}/customers/${id}?waitFor=${position}`, { headers });
    expect(read.status, `worker-one: ${one.stderr}`).toBe(200);
    expect(((await read.json()) as { name: string }).name).toBe('Ada Lovelace');
    // A server without autovacuum is named at start (the read models' rewritten rows would never be reclaimed); one with it is not.
    const client = new pg.Client({ connectionString: schemas.url });
    await client.connect();
    const { rows } = await client.query<{ on: string }>(`SELECT current_setting('autovacuum') AS on`).finally(() => client.end());
    if (rows[0]?.on === 'off') expect(one.stdout).toContain('autovacuum is off on this PostgreSQL server');
    else expect(one.stdout).not.toContain('autovacuum is off');
    // The take-over is in worker-one's log (JSON lines on stdout, each naming its part): the read models worker-two held, acquired.
    const logged = one.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { part?: string; msg: string; acquired?: string[] });
    const changes = logged.filter((l) => l.part === 'projections' && l.msg === 'projection leases changed').map((l) => ({ acquired: l.acquired ?? [] }));
    const taken = split.filter((p) => p.owner === 'worker-two').map((p) => p.name);
    expect(changes.flatMap((c) => c.acquired)).toEqual(expect.arrayContaining(taken));

    // A clean stop releases the leases at once.
    expect(await one.stop()).toBe(0);
    expect((await ready()).map((p) => p.owner)).toEqual(split.map(() => null));
    expect(await api.stop()).toBe(0);
  }, 120_000);

  it('refuses a malformed --worker-id', async () => {
    const bad = new Worker('has space');
    processes.push(bad);
    expect(await bad.exited).toBe(2);
    expect(bad.stderr).toContain('--worker-id');
  });

  it('reads the lease length from CRM_PROJECTION_LEASE_SECONDS (default 15 s) and names the variable when it is wrong', () => {
    expect(loadConfig({}, '/tmp').projectionLeaseSeconds).toBe(15);
    expect(loadConfig({ CRM_PROJECTION_LEASE_SECONDS: '2.5' }, '/tmp').projectionLeaseSeconds).toBe(2.5);
    for (const bad of ['0', 'soon', '86400']) {
      expect(() => loadConfig({ CRM_PROJECTION_LEASE_SECONDS: bad }, '/tmp')).toThrow(ConfigError);
      expect(() => loadConfig({ CRM_PROJECTION_LEASE_SECONDS: bad }, '/tmp')).toThrow(/CRM_PROJECTION_LEASE_SECONDS/);
    }
  });

  it('the embedded single process holds every lease under a fixed id, and takes them back at once after a crash', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'crm-leases-'));
    // Leases of 10 minutes: a restarted process that waited them out could not answer within the test's bounds.
    const embedded = {
      PORT: '0',
      LOG_LEVEL: 'warn',
      CRM_DEMO: '0',
      CRM_ADMIN_KEY: env.CRM_ADMIN_KEY,
      CRM_PROJECTION_LEASE_SECONDS: '600',
      CRM_MAX_EVENT_LOOP_DELAY_MS: '0',
    };
    try {
      const first = new Server(folder, embedded);
      processes.push(first);
      await first.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr');
      first.kill(); // no release: the leases stay in the database until they run out
      await first.exited;
      const second = new Server(folder, embedded);
      processes.push(second);
      const [, url] = await second.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr');
      const headers = { authorization: `Bearer ${env.CRM_ADMIN_KEY}`, 'content-type': 'application/json' };
      const created = await fetch(`${url}/customers`, { method: 'POST', headers, body: JSON.stringify({ name: 'Ada Lovelace', email: 'ada@example.com' }) });
      expect(created.status, second.stderr).toBe(201);
      const { id, position } = (await created.json()) as { id: string; position: string };
      // Read-your-writes answers long before the leases of the killed process would run out: the restarted
      // process took them back at once. (Each ?waitFor= waits up to 5 s; a loaded machine may need a few.)
      const deadline = Date.now() + 90_000;
      let read = await fetch(`${url}/customers/${id}?waitFor=${position}`, { headers });
      while (read.status === 503 && Date.now() < deadline) read = await fetch(`${url}/customers/${id}?waitFor=${position}`, { headers });
      expect(read.status, second.stderr).toBe(200);
      const projections = ((await (await fetch(`${url}/audit/projections`, { headers })).json()) as { projections: ReadyProjection[] }).projections;
      expect(projections.map((p) => p.owner)).toEqual(projections.map(() => 'embedded'));
      expect(await second.stop()).toBe(0);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  }, 120_000);
});
