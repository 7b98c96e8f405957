import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { testSchemas } from '../support/postgres.ts';
import { fetchCaughtUp, Server } from './support.ts';

/**
 * The split deployment on one PostgreSQL: two stateless API processes (CRM_PROJECTIONS=off) and one
 * `crm project` worker, all started at the same moment (set-up must not race).
 */
const schemas = testSchemas('cli_scale');
const env = {
  DATABASE_URL: schemas.url,
  CRM_EVENTS_SCHEMA: schemas.events,
  CRM_READ_SCHEMA: schemas.read,
  CRM_REPORTING_SCHEMA: schemas.reporting,
  CRM_ADMIN_KEY: 'scale-out-test-admin-key-0123456789',
  CRM_PROJECTIONS: 'off',
  PORT: '0',
  LOG_LEVEL: 'warn',
};
const processes: Server[] = [];
afterAll(async () => {
  for (const p of processes) p.kill();
  await schemas.dropSchemas();
});

describe('API replicas and a projection worker', () => {
  it('start together; a write through one replica is read through the other once the worker applied it', async () => {
    const apiA = new Server(tmpdir(), env);
    const apiB = new Server(tmpdir(), env);
    const worker = new Server(tmpdir(), env, 'project');
    processes.push(apiA, apiB, worker);
    const [[, urlA], [, urlB]] = await Promise.all([
      apiA.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr'),
      apiB.waitFor(/API:\s+(http:\/\/\S+)/, 60_000, 'stderr'),
    ]);
    await worker.waitFor(/Projections are running/, 60_000, 'stderr');
    expect(apiA.stderr).toContain('Admin key: the value of CRM_ADMIN_KEY');

    const headers = { authorization: `Bearer ${env.CRM_ADMIN_KEY}`, 'content-type': 'application/json' };
    const created = await fetch(`${urlA}/customers`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ name: 'Grace Hopper', email: 'grace@example.com' }),
    });
    expect(created.status).toBe(201);
    const { id, position } = (await created.json()) as { id: string; position: string };
    const read = await fetchCaughtUp(`${urlB}/customers/${id}?waitFor=${position}`, { headers });
    expect(read.status, `${await read.clone().text()}\nworker: ${worker.stderr}`).toBe(200);
    expect(((await read.json()) as { name: string }).name).toBe('Grace Hopper');

    expect(await Promise.all([apiA.stop(), apiB.stop(), worker.stop()])).toEqual([0, 0, 0]);
  }, 120_000);
});
