import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoPlan, DEFAULT_DEMO_UNTIL } from '../../cli/demo-data.ts';
import { EventStoreUnavailable } from '../../eventstore/errors.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { poll, schemaEnv, Server } from '../cli/support.ts';
import { TEST_DATABASE_URL, testSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { FaultProxy } from './proxy.ts';

/**
 * `crm serve` loading the demo data on its first start while the database fails under it (through a
 * TCP proxy): connections reset, refused for 3 s, stalled for 8 s. The load waits each fault out and
 * finishes (nothing recorded twice), the process never ends, and /ready says not ready while the
 * data is still loading. And the runtime's start of the projections can be tried again after the
 * database failed under it.
 */
const ADMIN_KEY = 'demo-load-faults-test-admin-key-0123';
const CUSTOMERS = 200;
const proxy = FaultProxy.before(TEST_DATABASE_URL);
const sql = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 1 });
const schemaSets: ReturnType<typeof testSchemas>[] = [];
const servers: Server[] = [];
const runtimes: CrmRuntime[] = [];
let proxied = '';

beforeAll(async () => {
  await proxy.start();
  proxied = proxy.urlThrough(TEST_DATABASE_URL);
});

afterAll(async () => {
  proxy.pass();
  for (const server of servers) server.kill();
  for (const runtime of runtimes) await runtime.close();
  await proxy.close();
  await sql.end();
  for (const schemas of schemaSets) await schemas.dropSchemas();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Ready {
  status: string;
  reasons: string[];
  projections: { name: string; state: string }[];
  demo?: { state: string; done: number; planned: number; lastError: string | null };
}

describe('the demo load of crm serve while the database fails', () => {
  it('waits out resets, refusals and a stall, finishes the load, and /ready tells until it is loaded', async () => {
    const schemas = testSchemas('demo_load_faults');
    schemaSets.push(schemas);
    const server = new Server(
      tmpdir(),
      schemaEnv(schemas, { DATABASE_URL: proxied, CRM_DEMO: '1', CRM_DEMO_CUSTOMERS: String(CUSTOMERS), CRM_ADMIN_KEY: ADMIN_KEY, PORT: '0' }),
    );
    servers.push(server);
    const [, url] = await server.waitFor(/API:\s+(http:\/\/\S+)/, 90_000, 'stderr');
    const ready = async (): Promise<Ready> => (await fetch(`${url}/ready`, { signal: AbortSignal.timeout(5_000) })).json() as Promise<Ready>;
    await server.waitFor(/demo [\d,]+\/[\d,]+ commands/, 60_000, 'stderr');

    const loading = await ready();
    expect(loading.status).toBe('not_ready');
    expect(loading.demo).toMatchObject({ state: 'loading', planned: expect.any(Number) });
    expect(loading.reasons.join('\n')).toMatch(/demo data is loading/);
    // The projections wait for the load: starting (nobody has to start them), one reason for all of them.
    expect(new Set(loading.projections.map((p) => p.state))).toEqual(new Set(['starting']));
    expect(loading.reasons.filter((r) => /projection/.test(r))).toEqual(['projections have not started: they start once the demo data is loaded']);

    proxy.resetAll();
    await sleep(1_000);
    proxy.refuse();
    const waiting = await poll('the load to wait for the database', async () => {
      const body = await ready();
      return body.demo?.state === 'waiting_for_database' ? body : undefined;
    });
    expect(waiting.status).toBe('not_ready');
    expect(waiting.reasons.join('\n')).toMatch(/demo data load is waiting for the database/);
    await sleep(3_000);
    expect(server.running, server.stderr).toBe(true);
    proxy.pass();

    const before = (await ready()).demo!.done;
    await poll('the load to go on', async () => ((await ready()).demo!.done > before ? true : undefined));
    proxy.stall();
    await sleep(8_000);
    proxy.pass();
    expect(server.running, server.stderr).toBe(true);

    await server.waitFor(/Demo data loaded/, 180_000, 'stderr');
    const done = await poll(
      '/ready',
      async () => {
        const body = await ready();
        return body.status === 'ready' ? body : undefined;
      },
      120_000,
    );
    expect(done.demo).toMatchObject({ state: 'loaded', lastError: null });
    expect(done.demo!.done).toBe(done.demo!.planned);
    expect(server.stderr).not.toMatch(/Loading the demo data failed|unexpected error|Unhandled/);

    // Every command of the plan is in the store, none twice.
    const plan = buildDemoPlan({ seed: 42, customers: CUSTOMERS, until: DEFAULT_DEMO_UNTIL });
    const { rows } = await sql.query<{ key: string; events: string }>(
      `SELECT metadata->>'idempotencyKey' AS key, count(*)::text AS events FROM "${schemas.events}".events GROUP BY 1`,
    );
    const stored = new Set(rows.map((r) => r.key));
    expect(plan.filter((a) => !stored.has(a.key)).map((a) => a.key)).toEqual([]);
    const { rows: doubled } = await sql.query(`SELECT event_id FROM "${schemas.events}".events GROUP BY 1 HAVING count(*) > 1`);
    expect(doubled).toEqual([]);

    expect(await server.stop('SIGTERM')).toBe(0);
  }, 300_000);

  it('starts the projections on a second try after the database failed under the first', async () => {
    const schemas = testSchemas('start_retry');
    schemaSets.push(schemas);
    const crm = await openCrm(testConfig(schemas, { DATABASE_URL: proxied }), { overrides: { poolMax: 4, chainSealer: false } });
    runtimes.push(crm);
    proxy.refuse();
    // The database's error (unreachable, or lost mid-statement), naming the server that refused: the proxy.
    const failure = await crm.startProjections().then(
      () => 'started',
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(EventStoreUnavailable);
    expect((failure as Error).message).toContain(`PostgreSQL at postgres://127.0.0.1:${proxy.port}/`);
    proxy.pass();
    // As crm serve does: again until it works (a pooled connection reset by the fault may fail one more try).
    await poll('the projections to start', async () => ((await crm.startProjections().then(() => true)) ? true : undefined), 30_000);
    const customerId = randomUUID();
    const { position } = await poll('the command to go through', () =>
      crm.commands.execute(
        { type: 'RegisterCustomer', customerId, name: 'After the retry', email: 'retry@example.com' },
        { actor: { userId: 'test', roles: ['admin'] }, correlationId: randomUUID(), idempotencyKey: customerId },
      ),
    );
    await crm.runner.waitForPosition(position, 30_000);
    expect((await crm.apiDeps.projections.status()).every((p) => p.state === 'running')).toBe(true);
  }, 120_000);
});
