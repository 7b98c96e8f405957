import { afterAll, beforeAll } from 'vitest';
import { createCrmCommands, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas, type TestSchemas } from './postgres.ts';

export interface CommandStore {
  schemas: TestSchemas;
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  /** The one-at-a-time handler (API clients). */
  api: CrmCommands;
}

/**
 * The real PostgreSQL event store with its personal data and the one-at-a-time handler, in schemas of
 * the file's own: opened before its tests and dropped after them. Read the fields inside tests.
 */
export const commandStoreFor = (label: string): CommandStore => {
  const opened = { schemas: testSchemas(label) } as CommandStore;
  beforeAll(async () => {
    opened.database = connectPostgres(opened.schemas.url, { max: 4 });
    opened.store = await createPostgresEventStore(opened.database, { schema: opened.schemas.events });
    opened.personalData = await createPersonalData(opened.database.db, { schema: opened.schemas.events });
    opened.api = createCrmCommands({ store: opened.store, personalData: opened.personalData });
  });
  afterAll(async () => {
    await opened.store?.close();
    await opened.database?.close();
    await opened.schemas.dropSchemas();
  });
  return opened;
};
