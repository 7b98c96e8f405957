import { afterAll } from 'vitest';
import type { EventStore } from '../../eventstore/contract.ts';
import { createEmailIndex, type EmailIndex } from '../../eventstore/email-index.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import { testSchemas, type TestSchemas } from './postgres.ts';

/** One "process" of the command layer: its own pool, store, key cache and email index over shared schemas. */
export interface CommandProcess {
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  emailIndex: EmailIndex;
}

/**
 * Processes on one database, for races between replicas (each `start` is another one). Every
 * process started is closed, and the schemas dropped, after the file's tests.
 */
export const processesOnOneDatabase = (label: string): { schemas: TestSchemas; start: () => Promise<CommandProcess> } => {
  const schemas = testSchemas(label);
  const started: CommandProcess[] = [];
  afterAll(async () => {
    for (const p of started) {
      await p.store.close();
      await p.database.close();
    }
    await schemas.dropSchemas();
  });
  const start = async (): Promise<CommandProcess> => {
    const database = connectPostgres(schemas.url, { max: 4 });
    const store = await createPostgresEventStore(database, { schema: schemas.events });
    const personalData = await createPersonalData(database.db, { schema: schemas.events });
    const emailIndex = await createEmailIndex(database.db, { schema: schemas.events });
    const process = { database, store, personalData, emailIndex };
    started.push(process);
    return process;
  };
  return { schemas, start };
};

/** The store with its appends counted (one append is one call to PostgreSQL, one transaction); `before` runs ahead of each. */
export const countingAppends = (store: EventStore, before: () => Promise<void> = async () => undefined) => {
  const appends = { n: 0 };
  const counted: EventStore = {
    ...store,
    engine: store.engine,
    appendToStream: async (stream, events, options) => {
      await before();
      appends.n++;
      return store.appendToStream(stream, events, options);
    },
  };
  return { store: counted, appends };
};

/** The store with its stream reads counted as calls (a read that finds nothing newer still costs a round trip). */
export const countingReadCalls = (store: EventStore) => {
  const reads = { n: 0 };
  const counted: EventStore = {
    ...store,
    engine: store.engine,
    readStream: (stream, options) => {
      reads.n++;
      return store.readStream(stream, options);
    },
  };
  return { store: counted, reads };
};

/**
 * The store with its appends counted, whose next append after `raceNextAppend(write)` first runs
 * `write` (another process writing the stream just before it), once.
 */
export const racingAppends = (store: EventStore) => {
  let race: (() => Promise<unknown>) | undefined;
  const counted = countingAppends(store, async () => {
    const now = race;
    race = undefined;
    await now?.();
  });
  return {
    ...counted,
    raceNextAppend: (write: () => Promise<unknown>) => {
      race = write;
    },
  };
};
