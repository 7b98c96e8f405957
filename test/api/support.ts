import type { LightMyRequestResponse } from 'fastify';
import { buildApp, type CrmApp } from '../../api/app.ts';
import type { ApiDeps, CommandPort } from '../../api/deps.ts';
import { ROLES, type Role } from '../../api/roles.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { connectPostgres, type SqlDatabase } from '../../eventstore/postgres/database.ts';
import { createPostgresEventStore } from '../../eventstore/postgres/store.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

export interface ApiHarness {
  app: CrmApp;
  store: EventStore;
  database: SqlDatabase;
  schemas: TestSchemas;
  /** One live key per role. */
  keys: Record<Role, string>;
  auth(role: Role): { authorization: string };
  close(): Promise<void>;
}

/** A command port that must never be reached: proves bad requests stop before the command layer. */
export const unreachableCommands = (): CommandPort & { calls: number } => {
  const port = {
    calls: 0,
    async execute(): Promise<never> {
      port.calls++;
      throw new Error('the command layer is not wired in this test');
    },
  };
  return port;
};

/** App on real PostgreSQL schemas of its own, with a key for every role. */
export const startApi = async (label: string, overrides: Partial<ApiDeps> = {}): Promise<ApiHarness> => {
  const schemas = testSchemas(label);
  const database = connectPostgres(schemas.url, { max: 5 });
  const store = await createPostgresEventStore(database, { schema: schemas.events });
  const app = await buildApp({
    store,
    database,
    schemas: { events: schemas.events, read: schemas.read },
    commands: unreachableCommands(),
    ...overrides,
  });
  const keys = {} as Record<Role, string>;
  for (const role of ROLES) keys[role] = (await app.keys.create({ name: `test ${role}`, role })).key;
  return {
    app,
    store,
    database,
    schemas,
    keys,
    auth: (role) => ({ authorization: `Bearer ${keys[role]}` }),
    close: async () => {
      await app.close();
      await store.close();
      await database.close();
      await schemas.dropSchemas();
    },
  };
};

export const json = <T = any>(response: LightMyRequestResponse): T => JSON.parse(response.body) as T;

export const expectProblem = (response: LightMyRequestResponse, status: number, typeSuffix?: string) => {
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
  return body as { type: string; title: string; status: number; detail: string; errors?: { field: string; message: string }[]; [k: string]: unknown };
};

import { createCrmCommands } from '../../commands/index.ts';
import { createPersonalData } from '../../eventstore/personal-data.ts';

/** App with the real command layer (commands/) on the harness's store. */
export const startApiWithCommands = async (label: string, overrides: Partial<ApiDeps> = {}): Promise<ApiHarness> => {
  const schemas = testSchemas(label);
  const database = connectPostgres(schemas.url, { max: 5 });
  const store = await createPostgresEventStore(database, { schema: schemas.events });
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  const commands = createCrmCommands({ store, personalData });
  const app = await buildApp({
    store,
    database,
    personalData,
    schemas: { events: schemas.events, read: schemas.read },
    commands,
    ...overrides,
  });
  const keys = {} as Record<Role, string>;
  for (const role of ROLES) keys[role] = (await app.keys.create({ name: `test ${role}`, role })).key;
  return {
    app,
    store,
    database,
    schemas,
    keys,
    auth: (role) => ({ authorization: `Bearer ${keys[role]}` }),
    close: async () => {
      await app.close();
      await store.close();
      await database.close();
      await schemas.dropSchemas();
    },
  };
};
