import type { LightMyRequestResponse } from 'fastify';
import type { CrmApp } from '../../api/app.ts';
import type { ApiDeps } from '../../api/deps.ts';
import { ROLES, type Role } from '../../api/roles.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import type { SqlDatabase } from '../../eventstore/postgres/database.ts';
import type { ProjectionRunner } from '../../projections/runner.ts';
import { openCrm, type CrmRuntime } from '../../runtime/crm.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';
import { testConfig } from '../support/runtime.ts';
import { newestPosition } from '../support/events.ts';

export interface ApiHarness {
  app: CrmApp;
  /** The CRM as the composition root started it (runtime/crm.ts). */
  crm: CrmRuntime;
  store: EventStore;
  database: SqlDatabase;
  schemas: TestSchemas;
  runner: ProjectionRunner;
  /** What the app was built with (to build a variant on the same store). */
  deps: ApiDeps;
  /** One live key per role. */
  keys: Record<Role, string>;
  auth(role: Role): { authorization: string };
  close(): Promise<void>;
}

/**
 * The API on real PostgreSQL schemas of its own, started through the composition root as `crm serve`
 * starts it (event store, command layer, read-model and analytics projections in-process), with a
 * key for every role. `overrides` replace API ports or bounds; publishers and the background chain
 * sealer stay off (tests of delivery and sealing start their own).
 */
export const startApi = async (label: string, overrides: Partial<ApiDeps> = {}, env: Record<string, string> = {}): Promise<ApiHarness> => {
  const schemas = testSchemas(label);
  const crm = await openCrm(testConfig(schemas, env), {
    overrides: { poolMax: 8, publishers: false, chainSealer: false, ...(overrides.importMaxBytes ? { importMaxBytes: overrides.importMaxBytes } : {}) },
  });
  let app: CrmApp | undefined;
  try {
    await crm.startProjections();
    const deps: ApiDeps = {
      ...crm.apiDeps,
      // Generous: on a loaded 2-core machine the projections can fall seconds behind; tests assert effects, not speed.
      waitForTimeoutMs: 15_000,
      // The event-loop bound is off: these tests share their process with the API (inject), so their own
      // synchronous work (a megabyte header, a big fuzz batch) and a busy machine would otherwise turn
      // commands into 503s that say nothing about what is tested. test/api/back-pressure.test.ts turns it on.
      backPressure: { ...crm.apiDeps.backPressure, maxEventLoopDelayMs: 0 },
      ...overrides,
    };
    app = await crm.buildApi(deps);
    const built = app;
    const keys = {} as Record<Role, string>;
    for (const role of ROLES) keys[role] = (await built.keys.create({ name: `test ${role}`, role })).key;
    return {
      app: built,
      crm,
      store: crm.store,
      database: crm.database,
      schemas,
      runner: crm.runner,
      deps,
      keys,
      auth: (role) => ({ authorization: `Bearer ${keys[role]}` }),
      close: async () => {
        await built.close();
        await crm.close();
        await schemas.dropSchemas();
      },
    };
  } catch (error) {
    await app?.close();
    await crm.close();
    await schemas.dropSchemas();
    throw error;
  }
};

export const json = <T = any>(response: LightMyRequestResponse): T => JSON.parse(response.body) as T;

export type Problem = { type: string; title: string; status: number; detail: string; errors?: { field: string; message: string }[]; [k: string]: unknown };

export const expectProblem = (response: LightMyRequestResponse, status: number, typeSuffix?: string): Problem => {
  if (response.statusCode !== status) {
    throw new Error(`expected ${status}, got ${response.statusCode}: ${response.body}`);
  }
  if (!String(response.headers['content-type']).startsWith('application/problem+json')) {
    throw new Error(`expected problem+json, got ${String(response.headers['content-type'])}`);
  }
  const body = json(response);
  if (body.status !== status || typeof body.detail !== 'string' || typeof body.title !== 'string') {
    throw new Error(`not a problem body: ${response.body}`);
  }
  if (typeSuffix && body.type !== `https://crm.example/problems/${typeSuffix}`) {
    throw new Error(`expected type ${typeSuffix}, got ${body.type}`);
  }
  return body as Problem;
};

/**
 * Events stored, counted in SQL. Unlike `headPosition()`, which only shows events once no older
 * transaction is open (the gap-free feed), the count is exact right after an append.
 */
export const eventCount = async (h: ApiHarness): Promise<number> => {
  const row = await h.database.db
    .withSchema(h.schemas.events)
    .selectFrom('events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
};

/**
 * Waits until every projection has applied every stored event, and fails at once, with the
 * projection's error, when one has failed instead. Bounded: a projection stuck for `timeoutMs` fails the test.
 */
export const projectionsSettled = async (h: ApiHarness, timeoutMs = 90_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  const head = await newestPosition(h.store);
  for (;;) {
    const status = await h.runner.status();
    const failed = status.filter((p) => p.state === 'failed');
    if (failed.length > 0) throw new Error(`projection failed: ${failed.map((p) => `${p.name} at ${String(p.failedPosition)}: ${p.lastError}`).join('; ')}`);
    if (status.every((p) => p.position >= head)) return;
    if (Date.now() > deadline)
      throw new Error(`projections did not reach ${head} in ${timeoutMs} ms: ${status.map((p) => `${p.name}@${p.position}`).join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};

/** Polls `GET /imports/:id` as `role` until the import has ended (bounded); answers the job. */
export const importEnded = async (h: ApiHarness, id: string, role: Role = 'admin'): Promise<Record<string, any>> => {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const response = await h.app.inject({ method: 'GET', url: `/imports/${id}`, headers: h.auth(role) });
    if (response.statusCode !== 200) throw new Error(`GET /imports/${id} answered ${response.statusCode}: ${response.body}`);
    const job = response.json<Record<string, any>>();
    if (job.status !== 'running') return job;
    if (Date.now() > deadline) throw new Error(`import ${id} still running after 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

/** `POST /imports?kind=` of a CSV body as an admin, once it has ended (the job as `GET /imports/:id` gives it). */
export const importCsv = async (h: ApiHarness, kind: string, csv: string): Promise<Record<string, any>> => {
  const started = await h.app.inject({
    method: 'POST',
    url: `/imports?kind=${kind}`,
    headers: { ...h.auth('admin'), 'content-type': 'text/csv' },
    payload: csv,
  });
  if (started.statusCode !== 202) throw new Error(`POST /imports?kind=${kind} answered ${started.statusCode}: ${started.body}`);
  return importEnded(h, started.json<{ id: string }>().id);
};

/** `/ready` answers 200 within the bound (it may lag the projections by a poll). */
export const expectReady = async (h: ApiHarness, timeoutMs = 30_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await h.app.inject({ method: 'GET', url: '/ready' });
    if (res.statusCode === 200) return;
    if (Date.now() > deadline) throw new Error(`/ready is ${res.statusCode}: ${res.body}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
};
