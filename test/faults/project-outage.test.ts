import { createServer, type AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { poll, schemaEnv, Server } from '../cli/support.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { FaultProxy } from './proxy.ts';

/**
 * A real `crm project` worker whose database connections go through a TCP proxy: when PostgreSQL
 * goes away (connections refused for a few seconds) the worker keeps running and retrying, and once
 * the database is back it projects the events written meanwhile. Only a signal ends it.
 */
const schemas = testSchemas('project_outage');
const proxy = FaultProxy.before(TEST_DATABASE_URL);
const sql = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
const processes: Server[] = [];
/** Writes the events, straight to PostgreSQL (not through the proxy). */
let writer: CrmRuntime;

beforeAll(async () => {
  await proxy.start();
  writer = await openCrm(testConfig(schemas));
}, 120_000);

afterAll(async () => {
  for (const p of processes) p.kill();
  await writer?.close();
  await proxy.close();
  await sql.end();
  await schemas.dropSchemas();
});

const ctx = () => ({ actor: { userId: 'test', roles: ['admin'] }, correlationId: randomUUID() });

const register = async (name: string) => {
  const customerId = randomUUID();
  await writer.commands.execute({ type: 'RegisterCustomer', customerId, name, email: `${customerId}@example.com` }, ctx());
  return customerId;
};

const projected = (customerId: string, timeoutMs = 60_000) =>
  poll(
    `customer ${customerId} in the read model`,
    async () => {
      const { rows } = await sql.query(`SELECT 1 FROM "${schemas.read}".customers WHERE customer_id = $1`, [customerId]);
      return rows.length > 0 ? true : undefined;
    },
    timeoutMs,
  );

describe('crm project while the database goes away', () => {
  it('stays up through refused connections, projects what was written meanwhile, and stops on SIGTERM', async () => {
    // A short lease: the outage outlasts it, so the worker must claim its projections again.
    const worker = new Server(
      tmpdir(),
      schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), CRM_PROJECTION_LEASE_SECONDS: '2' }),
      'project',
    );
    processes.push(worker);
    await worker.waitFor(/Projections are running/, 90_000, 'stderr');
    await projected(await register('Before the outage'));

    proxy.refuse();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(worker.running, `the worker ended during the outage:\n${worker.stderr}`).toBe(true);
    const meanwhile = await register('During the outage');
    proxy.pass();

    await projected(meanwhile);
    await projected(await register('After the outage'));
    expect(worker.running, worker.stderr).toBe(true);

    expect(await worker.stop('SIGTERM'), worker.stderr).toBe(0);
  }, 180_000);
});

/** A port nothing listens on now. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });

describe('a server started while the database refuses', () => {
  it.each([['serve'], ['project']])(
    'crm %s waits for it, says so, and starts once it answers',
    async (command) => {
      proxy.refuse();
      const server = new Server(tmpdir(), schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), PORT: '0', CRM_DEMO: 'off' }), command);
      processes.push(server);
      await server.waitFor(/The database is not available: .*\n\s+Waiting for it \(up to 10 min; Ctrl-C stops\)/, 60_000, 'stderr');
      await new Promise((r) => setTimeout(r, 2_000));
      expect(server.running, `it ended while the database refused:\n${server.stderr}`).toBe(true);
      proxy.pass();
      await server.waitFor(/The database answers after \d+ s; starting\./, 60_000, 'stderr');
      if (command === 'serve') {
        const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr');
        expect((await fetch(`${url}/health`)).status).toBe(200);
      } else {
        await server.waitFor(/Projections are running/, 60_000, 'stderr');
      }
      await projected(await register(`Started after a wait (${command})`));
      expect(await server.stop('SIGTERM'), server.stderr).toBe(0);
    },
    180_000,
  );

  it('crm serve on a fixed port answers /health (200) and /ready (503, why) while it waits, commands 503, then serves the API there', async () => {
    proxy.refuse();
    const port = await freePort();
    const server = new Server(tmpdir(), schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), PORT: String(port), CRM_DEMO: 'off' }));
    processes.push(server);
    await server.waitFor(/Waiting for it/, 60_000, 'stderr');
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/health`)).status).toBe(200);
    const ready = await fetch(`${base}/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reasons: string[] }).reasons[0]).toMatch(/^waiting for the database: /);
    const command = await fetch(`${base}/customers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(command.status).toBe(503);
    expect(command.headers.get('content-type')).toBe('application/problem+json');
    expect(((await command.json()) as { detail: string }).detail).toContain('Nothing was done');
    proxy.pass();
    await server.waitFor(/API:\s+http:\/\/\S+/, 60_000, 'stderr');
    // The API itself now: a key is asked for.
    expect((await fetch(`${base}/customers`)).status).toBe(401);
    expect(await server.stop('SIGTERM'), server.stderr).toBe(0);
  }, 120_000);

  it('Ctrl-C while it waits stops it at once, saying nothing was started', async () => {
    proxy.refuse();
    const server = new Server(tmpdir(), schemaEnv(schemas, { DATABASE_URL: proxy.urlThrough(TEST_DATABASE_URL), PORT: '0', CRM_DEMO: 'off' }));
    processes.push(server);
    await server.waitFor(/Waiting for it/, 60_000, 'stderr');
    expect(await server.stop('SIGINT')).toBe(130);
    expect(server.stderr).toContain('stopped while waiting for the database; nothing was started');
    proxy.pass();
  }, 120_000);
});
