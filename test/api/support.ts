import type { LightMyRequestResponse } from 'fastify';
import { buildApp, type CrmApp } from '../../api/app.ts';
import type { ApiDeps, ReadModelProgress } from '../../api/deps.ts';
import { ROLES, type Role } from '../../api/roles.ts';
import { createCrmCommands } from '../../commands/index.ts';
import { createBatchCommands } from '../../commands/batch.ts';
import { createImportJobs } from '../../commands/import/jobs.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';
import { createEmailIndex } from '../../eventstore/email-index.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createIntegration } from '../../integration/index.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

export interface ApiHarness {
  app: CrmApp;
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

/** The runner as the API sees it (the same adapter the composition root uses). */
export const progressOf = (runner: ProjectionRunner): ReadModelProgress => ({
  waitForPosition: (position, timeoutMs) =>
    runner.waitForPosition(position, timeoutMs).then(
      () => true,
      () => false,
    ),
  status: () => runner.status(),
});

/**
 * The API on real PostgreSQL schemas of its own: event store, command layer and the read-model
 * projections running in-process, with a key for every role.
 */
export const startApi = async (label: string, overrides: Partial<ApiDeps> = {}): Promise<ApiHarness> => {
  const schemas = testSchemas(label);
  const database = connectPostgres(schemas.url, { max: 8 });
  const store = await createPostgresEventStore(database, { schema: schemas.events });
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  const commands = createCrmCommands({ store, personalData, emailIndex: await createEmailIndex(database.db, { schema: schemas.events }) });
  const runner = new ProjectionRunner({
    db: database.db,
    store,
    schema: schemas.read,
    // The same projections as the composition root (cli/app.ts): read models and analytics.
    projections: [...readModelProjections(), createAnalyticsProjection({ modelSchema: schemas.read })],
    codec: personalDataCodec(personalData),
    concurrent: true,
  });
  await runner.start();
  const deps: ApiDeps = {
    store,
    database,
    personalData,
    schemas: { events: schemas.events, read: schemas.read },
    commands,
    projections: progressOf(runner),
    // The /webhooks routes and publisher status (no publishers run: tests of delivery start their own).
    integration: createIntegration({ db: database.db, store, personalData, schemas: { events: schemas.events, read: schemas.read }, workerId: 'test', leaseSeconds: 15 }).services,
    // Generous: on a loaded 2-core machine the projections can fall seconds behind; tests assert effects, not speed.
    waitForTimeoutMs: 15_000,
    // Bulk imports, built as the composition root builds them (bounded like `importMaxBytes`).
    imports: createImportJobs({ batch: createBatchCommands({ store, personalData }), maxBytes: overrides.importMaxBytes ?? 1024 ** 3 }),
    ...overrides,
  };
  const app = await buildApp(deps);
  const keys = {} as Record<Role, string>;
  for (const role of ROLES) keys[role] = (await app.keys.create({ name: `test ${role}`, role })).key;
  return {
    app,
    store,
    database,
    schemas,
    runner,
    deps,
    keys,
    auth: (role) => ({ authorization: `Bearer ${keys[role]}` }),
    close: async () => {
      await deps.imports?.close();
      await app.close();
      await runner.stop();
      await store.close();
      await database.close();
      await schemas.dropSchemas();
    },
  };
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
  const row = await h.database.db.withSchema(h.schemas.events).selectFrom('events').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
};

/**
 * Waits until every projection has applied every stored event, and fails at once, with the
 * projection's error, when one has failed instead. Bounded: a projection stuck for `timeoutMs` fails the test.
 */
export const projectionsSettled = async (h: ApiHarness, timeoutMs = 90_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const head = await h.store.headPosition();
    const status = await h.runner.status();
    const failed = status.filter((p) => p.state === 'failed');
    if (failed.length > 0) throw new Error(`projection failed: ${failed.map((p) => `${p.name} at ${String(p.failedPosition)}: ${p.lastError}`).join('; ')}`);
    if (status.every((p) => p.position >= head)) return;
    if (Date.now() > deadline) throw new Error(`projections did not reach ${head} in ${timeoutMs} ms: ${status.map((p) => `${p.name}@${p.position}`).join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
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
