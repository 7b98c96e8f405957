import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { expect } from 'vitest';
import { createCrmCommands, type CommandContext, type CrmCommands } from '../../commands/index.ts';
import type { EventStore } from '../../eventstore/contract.ts';
import { createPersonalData, type PersonalData } from '../../eventstore/personal-data.ts';
import { createEmailIndex } from '../../eventstore/email-index.ts';
import { connectPostgres, createPostgresEventStore, type SqlDatabase } from '../../eventstore/postgres/index.ts';
import type { EventCodec } from '../../projections/apply-batch.ts';
import type { Projection } from '../../projections/projection.ts';
import { compareSchemas, rebuildProjections, replayInto } from '../../projections/rebuild.ts';
import { ProjectionRunner, type ProjectionRunnerOptions } from '../../projections/runner.ts';
import { personalDataCodec } from '../../projections/codec.ts';
import { testSchemas, type TestSchemas } from '../support/postgres.ts';

export interface Harness {
  schemas: TestSchemas;
  database: SqlDatabase;
  store: EventStore;
  personalData: PersonalData;
  codec: EventCodec;
  commands: CrmCommands;
  /** Runs a command as a sales user at a business time that advances one minute per call. */
  run(command: Record<string, unknown> & { type: string }, ctx?: Partial<CommandContext>): Promise<{ id: string; position: bigint }>;
  /** Position of the last command's last event (the head can lag behind it while other transactions run). */
  lastPosition(): bigint;
  close(): Promise<void>;
}

export async function createHarness(label: string): Promise<Harness> {
  const schemas = testSchemas(label);
  const database = connectPostgres(schemas.url, { max: 6 });
  const store = await createPostgresEventStore(database, { schema: schemas.events });
  const personalData = await createPersonalData(database.db, { schema: schemas.events });
  // After the scenario's dated purchases: business time may not run ahead of the command clock.
  let tick = Date.parse('2026-01-21T09:00:00Z');
  const clock = () => new Date((tick += 60_000));
  const commands = createCrmCommands({ store, personalData, clock, emailIndex: await createEmailIndex(database.db, { schema: schemas.events }) });
  let last = 0n;
  return {
    lastPosition: () => last,
    schemas,
    database,
    store,
    personalData,
    codec: personalDataCodec(personalData),
    commands,
    run: async (command, ctx = {}) => {
      const result = await commands.execute(command, {
        actor: { userId: 'ann', roles: ['sales'] },
        correlationId: randomUUID(),
        ...ctx,
      });
      if (result.position > last) last = result.position;
      return { id: result.id, position: result.position };
    },
    close: async () => {
      await store.close();
      await database.close();
      await schemas.dropSchemas();
    },
  };
}

/** Every row of a table as text, ordered by its text: equal outputs mean byte-for-byte equal tables. */
export async function tableRows(database: SqlDatabase, schema: string, table: string): Promise<string[]> {
  const { rows } = await sql<{ r: string }>`SELECT t::text AS r FROM ${sql.id(schema, table)} t ORDER BY 1`.execute(database.db);
  return rows.map((r) => r.r);
}

/**
 * Projects everything the harness stored into `schema`, then stops: the read models an earlier
 * version left behind, for an upgrade test to take back to that version's shape.
 */
export async function projectAll(h: Harness, schema: string, projections: Projection[]): Promise<void> {
  const runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema, projections, codec: h.codec, concurrent: true });
  await runner.start();
  try {
    await runner.waitForPosition(h.lastPosition(), 30_000);
  } finally {
    await runner.stop();
  }
}

/** A runner on `schema` that rebuilds a projection whose version changed, as `crm serve` does on an upgrade. */
export function rebuildingRunner(
  h: Harness,
  schema: string,
  reportingSchema: string,
  projections: Projection[],
  more: Pick<ProjectionRunnerOptions, 'leases' | 'log'> = {},
): ProjectionRunner {
  const deps = { db: h.database.db, store: h.store, codec: h.codec, projections, concurrent: true };
  const runner: ProjectionRunner = new ProjectionRunner({
    ...deps,
    ...more,
    schema,
    onVersionChange: (names) => rebuildProjections({ ...deps, schema, reportingSchema, names, runner }).then(() => undefined),
  });
  return runner;
}

export interface ReplayComparison {
  /** The projections run side by side, as a runner with `concurrent` runs them. */
  concurrent?: boolean;
  /** Every compared table must hold rows: two empty tables are equal whatever the code does. */
  nonEmpty?: boolean;
  /** Further expectations on each replayed schema (`label` names its batches). */
  alsoExpect?: (schema: string, label: string) => Promise<void>;
}

/**
 * Replays the harness's events into fresh schemas, one event per batch and all in one batch, and
 * expects `tables` there to equal the live ones in `h.schemas.read`: batch boundaries must not matter.
 */
export async function expectReplaysEqualLive(
  h: Harness,
  projections: readonly Projection[],
  tables: readonly string[],
  options: ReplayComparison = {},
): Promise<void> {
  const untilPosition = h.lastPosition();
  for (const { label, pageSize, suffix } of [
    { label: 'one event per batch', pageSize: 1, suffix: 'one' },
    { label: 'all in one batch', pageSize: 100_000, suffix: 'all' },
  ]) {
    const replay = await replayInto({
      db: h.database.db,
      store: h.store,
      codec: h.codec,
      projections: [...projections],
      concurrent: options.concurrent ?? false,
      schema: `${h.schemas.read}_${suffix}`,
      untilPosition,
      pageSize,
    });
    const comparison = await compareSchemas(h.database.db, h.schemas.read, replay.schema, [...tables]);
    expect(
      comparison.filter((t) => !t.equal).map((t) => ({ table: t.table, differences: t.differences })),
      `replayed ${label}`,
    ).toEqual([]);
    if (options.nonEmpty)
      expect(
        comparison.filter((t) => t.liveRows === 0).map((t) => t.table),
        `empty tables (${label})`,
      ).toEqual([]);
    await options.alsoExpect?.(replay.schema, label);
  }
}
